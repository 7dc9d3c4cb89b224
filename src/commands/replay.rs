//! `statescope replay`: a capture file through the engine, on one to three threads
//! ([`crate::pipeline`]), into the chosen printer and, when asked, the report.

use crate::capture::merge::{Counted, Merged};
use crate::capture::pcap_file;
use crate::capture::stop::{install_stop_signals_restarting, stop_signal};
use crate::capture::FrameSource;
use crate::config::{OutputConfig, ReplayConfig, UsageError, DEFAULT_TABLE_ROWS};
use crate::engine::{run_source_with, Engine, EngineOptions};
use crate::output::{make_printer, Sink};
use crate::pipeline::{self, Prepare, PrintThread};
use crate::types::PacketSel;
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

/// A progress bar on standard error for files big enough to wait for, on a terminal only.
fn progress_bar(files: &[PathBuf], out: &OutputConfig) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if out.quiet || !io::stderr().is_terminal() {
        return None;
    }
    let mut size = 0;
    for f in files {
        size += std::fs::metadata(f).ok()?.len();
    }
    if size < 32 << 20 {
        return None;
    }
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {bytes}/{total_bytes} [{bar:30}] {bytes_per_sec}, {eta} left",
        )
        .ok()?
        .progress_chars("=> "),
    );
    Some(bar)
}

/// `statescope replay`.
pub fn run(cfg: &ReplayConfig) -> anyhow::Result<ExitCode> {
    let out = &cfg.out;
    // Ctrl-C or SIGTERM: stop reading, finish every connection, print everything and the
    // summary, then exit 130 or 143 like a shell reports a process killed by the signal.
    install_stop_signals_restarting();
    let source = open_all(cfg)?;
    let wants_report = out.wants_report();
    let out = &sized_to_terminal(out);
    let printer = make_printer(out, Box::new(io::stdout()));
    // Measured on two cores: reading ahead always pays; a printing thread pays when every
    // packet is printed (JSON lines 1.2x faster), not for the summary.
    let threads = cfg.threads.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        match (cores, printer.wants_packets()) {
            (1, _) => 1,
            (_, PacketSel::All) => 3,
            _ => 2,
        }
    });
    // Printing on its own thread would reorder records against --follow's text on the same
    // standard output, and the report collects records here.
    let (mut sink, helper): (Box<dyn Sink + Send>, _) =
        if threads >= 3 && !out.follows_to_stdout() && !wants_report {
            let printing = PrintThread::new(printer)?;
            let helper = printing.helper();
            (Box::new(printing), Some(helper))
        } else {
            (printer.into_sink(), None)
        };
    let mut engine = Engine::new(
        EngineOptions {
            only: cfg.filter.clone(),
            tls_keys: super::tls_keys(out, false)?,
            ..EngineOptions::from_config(out, sink.wants_packets())
        }
        .sharded(cfg.shard),
    );
    if helper.is_some() {
        engine.hand_over_at(PrintThread::HAND_OVER_AT);
    }
    super::follow(&mut engine, out)?;
    // --svg draws every connection; the HTML page alone keeps only what it draws.
    let mut collect = if out.svg.is_some() {
        crate::report::Collect::new(sink.as_mut())
    } else {
        crate::report::Collect::bounded(sink.as_mut(), out.conns.clone())
    };
    let bar = progress_bar(&cfg.files, out);
    let mut tick = |_: &Engine, (done, _total): (u64, Option<u64>)| {
        if let Some(b) = &bar {
            b.set_position(done);
        }
    };
    let keep_payload = engine.options().tracker.reassemble;
    let target: &mut dyn Sink = if wants_report {
        &mut collect
    } else {
        collect.inner
    };
    let mut totals = None;
    let result = if let Some(n) = cfg.workers {
        let mut tick = |p: (u64, Option<u64>)| tick(&engine, p);
        // Counts of an engine that tracked nothing, with the budget and shard it would have.
        let mut t = engine.totals();
        let result = crate::workers::run_workers(
            source,
            engine.options(),
            (n, cfg.workers_fault),
            target,
            &mut tick,
            &mut t,
        );
        totals = Some(t);
        result
    } else if threads >= 2 {
        let prepare = if engine.options().http {
            Prepare::WhenAhead
        } else {
            Prepare::Never
        };
        pipeline::run_threaded(
            source,
            keep_payload,
            prepare,
            &mut engine,
            target,
            helper,
            16384,
            &mut tick,
        )
    } else {
        let mut source = source;
        run_source_with(source.as_mut(), &mut engine, target, 16384, &mut tick)
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let stopped = stop_signal();
    if let Some(sig) = stopped {
        let name = if sig == libc::SIGTERM {
            "SIGTERM"
        } else {
            "SIGINT"
        };
        eprintln!("statescope: {name}: stopped reading; every connection still open was finished");
    }
    // The workers' counts, summed; or the one engine's.
    let totals = totals.unwrap_or_else(|| engine.totals());
    // Given-up connections or bytes are said even with --quiet: records are missing otherwise.
    if !out.quiet || totals.stats.decode_failures() > 0 || !totals.memory_note().is_empty() {
        eprintln!("statescope: {}", totals.summary_line());
    }
    // The report covers whatever was read, even when the capture ended in an error.
    if wants_report {
        let names: Vec<String> = cfg.files.iter().map(|f| f.display().to_string()).collect();
        let title = format!("statescope replay {}", names.join(" "));
        crate::report::write_requested(out, &collect, &title)?;
    }
    super::follow_checked(&mut engine, out)?;
    // Capture errors name their file; an I/O error here can only be the output's.
    result.map_err(|e| match e.downcast::<io::Error>() {
        Ok(io) => anyhow::Error::new(io).context(
            "writing the records to standard output failed (disk full, or the reader gone?)",
        ),
        Err(other) => other,
    })?;
    unknown_connection(out, totals.conns_seen)?;
    Ok(match stopped {
        Some(sig) => ExitCode::from(128u8.saturating_add(sig as u8)),
        None => ExitCode::SUCCESS,
    })
}

/// The input: one file as it is, several merged by capture time; cut after `-c N` frames.
fn open_all(cfg: &ReplayConfig) -> anyhow::Result<Box<dyn FrameSource + Send>> {
    let mut sources = Vec::with_capacity(cfg.files.len());
    for f in &cfg.files {
        sources.push(pcap_file::open(f)?);
    }
    let source = if sources.len() == 1 {
        sources.pop().expect("one source")
    } else {
        Box::new(Merged::new(sources))
    };
    Ok(match cfg.count {
        Some(n) => Box::new(Counted::new(source, n)),
        None => source,
    })
}

/// The settings with what depends on standard output made definite: the summary's rows fit
/// the terminal (unless `--all`), and `--color auto` is on or off.
fn sized_to_terminal(out: &OutputConfig) -> OutputConfig {
    use std::io::IsTerminal;
    let terminal = io::stdout().is_terminal();
    let mut out = out.clone();
    out.color = out.color.resolve(terminal);
    if terminal && out.table_rows.is_some() {
        // Room for the header, the "more connections" line and the shell's prompt.
        out.table_rows =
            Some(terminal_height().map_or(DEFAULT_TABLE_ROWS, |h| h.saturating_sub(4).max(5)));
    }
    out
}

/// Standard output's terminal height in rows, if it is a terminal that says.
fn terminal_height() -> Option<usize> {
    // SAFETY: TIOCGWINSZ fills the winsize struct it is given, nothing else.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some(ws.ws_row as usize)
}

/// `--conn N` / `--follow N` naming a connection the capture does not have: bad usage (exit
/// 2), said after the output, which could not know before the end of input.
fn unknown_connection(out: &OutputConfig, seen: u64) -> Result<(), UsageError> {
    let asked = out.conns.iter().map(|&n| ("--conn", n));
    let asked = asked.chain(out.follow.map(|n| ("--follow", n)));
    for (flag, n) in asked {
        if n >= seen {
            return Err(UsageError(match seen {
                0 => format!("{flag} {n}: the capture has no TCP connection"),
                1 => format!("{flag} {n}: the capture has one TCP connection, number 0"),
                _ => format!(
                    "{flag} {n}: the capture has {seen} TCP connections, numbered 0 to {}",
                    seen - 1
                ),
            }));
        }
    }
    Ok(())
}
