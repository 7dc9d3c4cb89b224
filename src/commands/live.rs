//! `statescope live`: a live interface ([`LiveSource`]) through the engine into the chosen
//! printer, with the open connections redrawn in place on a terminal on a timer (see
//! [`crate::output::live_view`]), and a pcap of what was captured on request.

use crate::capture::live::{
    describe_interfaces, install_stop_signals, LiveOptions, LiveSource, SNAPLEN,
};
use crate::capture::pcap_writer::{PcapTee, PcapWriter};
use crate::capture::{FrameSource, Polled};
use crate::config::{Format, LiveConfig};
use crate::engine::{Engine, EngineOptions};
use crate::output::live_view::{terminal_size, AboveView, LiveView, Region, Screen};
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
    // table is printed at the end, with the live view meanwhile.
    let mut out = cfg.out.clone();
    out.line_buffered = true;
    let stdout_tty = io::stdout().is_terminal();
    if !stdout_tty && !cfg.format_chosen && !out.follows_to_stdout() {
        out.format = Format::Jsonl;
    }
    // On a terminal the open connections are redrawn in place on standard error while
    // capturing; the final table goes to standard output at the end, below the erased view.
    // (Not with --follow's text on standard output: it is written past the view's erasing.)
    let refresh = out.format == Format::Table
        && !out.quiet
        && !out.follows_to_stdout()
        && io::stderr().is_terminal();
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
            fanout: cfg.fanout,
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

    let region = Region::default();
    let stdout: Box<dyn Write + Send> = if refresh && stdout_tty {
        Box::new(AboveView::new(io::stdout(), region.clone()))
    } else {
        Box::new(io::stdout())
    };
    let mut sink = make_sink(&out, stdout);
    let mut engine = Engine::new(EngineOptions {
        tls_keys: super::tls_keys(&out, true)?,
        ..EngineOptions::from_config(&out, sink.wants_packets())
    });
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
    let mut view = refresh.then(|| View::new(region.clone()));
    // Frames analysed (taken by the writer) and frames in the pcap, when writing one.
    let mut written = None;
    let result = match writer {
        Some(w) => {
            let mut tee = PcapTee::new(&mut source, w);
            let r = capture(&mut tee, &mut engine, target, view.as_mut());
            written = Some((tee.writer().frames_taken(), tee.writer().frames_written()));
            r
        }
        None => capture(&mut source, &mut engine, target, view.as_mut()),
    };
    // Whatever ended the capture, the view is gone before anything more is said.
    region.erase();
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

/// Frames from `source` through `engine` into `sink` until the capture ends, redrawing `view`
/// on its timer meanwhile; the view is erased before the engine's final output. A capture
/// error ends the run after everything before it has been printed.
fn capture(
    source: &mut dyn FrameSource,
    engine: &mut Engine,
    sink: &mut dyn Sink,
    mut view: Option<&mut View>,
) -> anyhow::Result<()> {
    let mut failure = None;
    loop {
        let wait = view
            .as_ref()
            .map_or(Duration::MAX, |v| v.screen.until_due(Instant::now()));
        let frame = match source.poll_frame(wait) {
            Ok(Polled::Frame(f)) => {
                engine.on_frame(&f, sink)?;
                true
            }
            Ok(Polled::Idle) => false,
            Ok(Polled::End) => break,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        if let Some(v) = view.as_mut() {
            v.tick(engine, frame);
        }
    }
    if let Some(v) = view {
        v.screen.erase();
    }
    engine.finish(sink)?;
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// The live view and where it is drawn.
struct View {
    view: LiveView,
    screen: Screen,
    open: Vec<crate::tcp::OpenConn>,
    /// `STATESCOPE_LIVE_VIEW_STALE=1`: redraw only when a frame arrives, as before the view
    /// had a timer. Only for the terminal test's negative control, which shows that its check
    /// catches a stale view.
    stale: bool,
}

impl View {
    fn new(region: Region) -> Self {
        View {
            view: LiveView::new(),
            screen: Screen::new(region),
            open: Vec::new(),
            stale: std::env::var_os("STATESCOPE_LIVE_VIEW_STALE").is_some_and(|v| v == "1"),
        }
    }

    /// Redraw from the engine's state now, if due. `frame`: a frame has just been handled.
    fn tick(&mut self, engine: &Engine, frame: bool) {
        let now = Instant::now();
        if !self.screen.due(now) || (self.stale && !frame) {
            return;
        }
        engine.open_now(&mut self.open);
        self.view.update(now, &self.open);
        let (seen, _) = engine.conn_counts();
        let lines = self
            .view
            .render(now, engine.stats.frames, seen, terminal_size());
        self.screen.draw(now, &lines);
    }
}
