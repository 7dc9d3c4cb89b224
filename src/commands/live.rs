//! `statescope live`: a live interface ([`LiveSource`]) through the engine into the chosen
//! printer, with the open connections refreshed in place on a terminal, and a pcap of what was
//! captured on request.

use crate::capture::live::{
    describe_interfaces, install_stop_signals, LiveOptions, LiveSource, SNAPLEN,
};
use crate::capture::pcap_writer::{PcapTee, PcapWriter};
use crate::config::{Format, LiveConfig};
use crate::engine::{run_source_with, Engine, EngineOptions};
use crate::output::{make_sink, Sink};
use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Print a diagnostic line on standard error.
fn note(msg: &str) {
    eprintln!("statescope: {msg}");
}

/// `statescope live`.
pub fn run(cfg: &LiveConfig) -> anyhow::Result<ExitCode> {
    let Some(iface) = cfg.interface.as_deref() else {
        let mut out = io::stdout().lock();
        for line in describe_interfaces() {
            writeln!(out, "{line}")?;
        }
        return Ok(ExitCode::SUCCESS);
    };

    // Piped output streams records as JSON lines unless a format was asked for (or --follow's
    // text goes to standard output, which JSON lines keep for records); on a terminal the
    // table is printed at the end, with a status line meanwhile.
    let mut out = cfg.out.clone();
    out.line_buffered = true;
    let stdout_tty = io::stdout().is_terminal();
    if !stdout_tty && !cfg.format_chosen && !out.follows_to_stdout() {
        out.format = Format::Jsonl;
    }
    // On a terminal the open connections refresh in place on standard error while capturing;
    // the final table goes to standard output at the end.
    let refresh = out.format == Format::Table && !out.quiet && io::stderr().is_terminal();
    let status = false;

    install_stop_signals();
    let mut source = LiveSource::open(
        iface,
        LiveOptions {
            filter: cfg.filter.clone(),
            promisc: cfg.promisc,
            count: cfg.count,
            duration: cfg.duration,
            status,
            stop: None,
            no_ring: false,
        },
    )?;
    let writer = match &cfg.write {
        Some(path) => Some(PcapWriter::create(path, source.linktype(), SNAPLEN)?),
        None => None,
    };
    // Always said, like tcpdump's "listening on": scripts wait for it before making traffic.
    note(&format!(
        "capturing on {iface}{}{} (Ctrl-C to stop)",
        cfg.filter_text
            .as_deref()
            .map(|f| format!(", filter {f:?}"))
            .unwrap_or_default(),
        cfg.write
            .as_ref()
            .map(|p| format!(", writing {}", p.display()))
            .unwrap_or_default()
    ));

    let mut sink = make_sink(&out, Box::new(io::stdout()));
    let mut engine = Engine::new(EngineOptions::from_config(&out, sink.wants_packets()));
    super::follow(&mut engine, &out)?;
    let wants_report = out.wants_report();
    // --svg draws every connection; the HTML page alone keeps only what it draws.
    let mut collect = if out.svg.is_some() {
        crate::report::Collect::new(sink.as_mut())
    } else {
        crate::report::Collect::bounded(sink.as_mut(), out.conns.clone())
    };
    let target: &mut dyn Sink = if wants_report {
        &mut collect
    } else {
        collect.inner
    };
    let mut table = LiveTable::new(refresh);
    let mut tick = |e: &Engine, _: (u64, Option<u64>)| table.draw(e, false);
    // Frames analysed (taken by the writer) and frames in the pcap, when writing one.
    let mut written = None;
    let result = match writer {
        Some(w) => {
            let mut tee = PcapTee::new(&mut source, w);
            let r = run_source_with(&mut tee, &mut engine, target, 1, &mut tick);
            written = Some((tee.writer().frames_taken(), tee.writer().frames_written()));
            r
        }
        None => run_source_with(&mut source, &mut engine, target, 1, &mut tick),
    };
    table.clear();
    // The report covers everything captured, even when the capture ended in an error.
    if wants_report {
        let title = format!("statescope live -i {iface}");
        crate::report::write_requested(&out, &collect, &title)?;
    }
    source.clear_status();
    let st = source.stats();
    let failed: u64 = engine.stats.decode_errors.values().sum();
    // After a write error the records of the last frames analysed have no frames behind them
    // in the pcap: say which.
    let unwritten = match (written, &cfg.write) {
        (Some((taken, on_disk)), Some(path)) if taken > on_disk => format!(
            ", {} frames analysed but not in {} (frames {}-{}: records of them have no frames \
             behind them there)",
            taken - on_disk,
            path.display(),
            on_disk + 1,
            taken
        ),
        _ => String::new(),
    };
    note(&format!(
        "{} frames, {} dropped by kernel, {} failed to decode{}{}",
        st.frames,
        st.dropped,
        failed,
        engine.memory_note(),
        unwritten
    ));
    super::follow_checked(&mut engine, &out)?;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The open connections, redrawn in place on standard error about twice a second.
struct LiveTable {
    on: bool,
    lines: usize,
    last: Instant,
}

impl LiveTable {
    /// Rows shown at most: a screenful.
    const ROWS: usize = 20;

    fn new(on: bool) -> Self {
        LiveTable {
            on,
            lines: 0,
            last: Instant::now(),
        }
    }

    fn draw(&mut self, engine: &Engine, force: bool) {
        if !self.on || (!force && self.last.elapsed() < Duration::from_millis(500)) {
            return;
        }
        self.last = Instant::now();
        let (open, rows) = engine.open_conns(Self::ROWS);
        let (seen, _) = engine.conn_counts();
        let mut s = String::new();
        if self.lines > 0 {
            s.push_str(&format!("\x1b[{}A\x1b[J", self.lines));
        }
        s.push_str(&format!(
            "{} frames, {} connections ({} open, most recent first)\n",
            engine.stats.frames, seen, open
        ));
        s.push_str(&format!(
            "{:>5}  {:<27} {:<27} {:>8} {:>10}  {:<13} {:<13}\n",
            "conn", "client", "server", "packets", "bytes", "client", "server"
        ));
        for c in &rows {
            s.push_str(&format!(
                "{:>5}  {:<27} {:<27} {:>8} {:>10}  {:<13} {:<13}\n",
                c.conn,
                c.client,
                c.server,
                c.packets_c2s + c.packets_s2c,
                c.bytes_c2s + c.bytes_s2c,
                c.client_state,
                c.server_state
            ));
        }
        self.lines = 2 + rows.len();
        eprint!("{s}");
    }

    /// Erase the table before the final output.
    fn clear(&mut self) {
        if self.on && self.lines > 0 {
            eprint!("\x1b[{}A\x1b[J", self.lines);
            self.lines = 0;
        }
    }
}
