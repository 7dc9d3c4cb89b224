//! `statescope lab`: exercises that answer the lesson's questions from measurements (the
//! command itself, listing them or running one, is [`crate::commands::lab`]).
//!
//! Each exercise is one file opening with what the learner will see and why, registered in
//! [`LABS`]. A lab drives real traffic on loopback, measures, and ends with one `lab` record
//! (`docs/records.md`): the question, an answer built from the measurements, the measured
//! facts, and `ok` when every check the lab makes on its own measurements held.
//!
//! The loopback labs (`tcp-vs-http`, `handshake-and-close`, `websocket`, `login`,
//! `stateless-vs-stateful`) capture `lo` live while they make traffic against an in-process
//! `serve`, save the capture as `OUT_DIR/NAME.pcap`, and print its records (replayed through the
//! engine) before the `lab` record; what they share is in [`common`]. They need root or
//! `CAP_NET_RAW`. Their `--html` report is written after the `lab` record exists, so it opens
//! with the lesson and labels each connection with the lab step that made it
//! ([`common::step`], [`common::write_report`]). Each can run as its own negative control
//! ([`common::CONTROL_ENV`]: a deliberately wrong server, [`crate::server::Fault`], or an
//! observer that missed a segment) and must then end `ok: false` naming the failed check.
//! The scaling labs (`crash`, `scale-*`, `queue`) measure delivery instead, with real child
//! processes and Redis where the lesson is about processes ([`procs`]), and draw an SVG
//! timeline page with `--html`. `tls-resumption` does both: `serve --tls` child processes,
//! killed by PID, and a live capture of `lo` that says how each connection was set up.
//!
//! Every check has a name; a lab's `failed` lists those that did not hold, and its `settings`
//! keep its own knobs apart from the measured `facts`. A scaling lab's negative control runs the
//! same code against a deliberately wrong variant ([`LabCtx::variant`]).

pub mod common;
pub mod crash;
pub mod handshake_close;
pub mod http2;
pub mod login;
pub mod procs;
pub mod queue;
pub mod scale_stateful;
pub mod scale_stateless;
pub mod stateless_vs_stateful;
pub mod tcp_vs_http;
pub mod tls_resumption;
pub mod websocket;

use crate::config::Format;
use crate::record::{LabRec, Record};
use std::io::Write;
use std::path::PathBuf;

/// What a lab gets to work with.
pub struct LabCtx {
    pub format: Format,
    /// A Redis URL given with `--redis`, for labs that use a broker.
    pub redis: Option<String>,
    /// Where the lab writes its capture and reports.
    pub out_dir: PathBuf,
    pub html: Option<PathBuf>,
    /// This program, for labs that start `statescope serve` processes.
    pub exe: PathBuf,
    /// A deliberately wrong variant to run against (`--variant`, hidden): the negative controls
    /// that must end `ok: false`. Each lab names the ones it knows and refuses others.
    pub variant: Option<String>,
}

impl LabCtx {
    /// The variant asked for, if it is one of `known`; an error naming them otherwise.
    pub fn variant_of(
        &self,
        lab: &str,
        known: &[&'static str],
    ) -> anyhow::Result<Option<&'static str>> {
        match &self.variant {
            None => Ok(None),
            Some(v) => known
                .iter()
                .find(|k| **k == v.as_str())
                .map(|k| Some(*k))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "lab {lab} has no variant {v:?}; its variants: {}",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    )
                }),
        }
    }
}

/// Where a lab writes: narrative for people (table format) and records (jsonl).
pub struct LabOut {
    format: Format,
    out: Box<dyn Write>,
}

impl LabOut {
    pub fn new(format: Format, out: Box<dyn Write>) -> Self {
        LabOut { format, out }
    }
    /// A line of narrative: standard output in table format, standard error in jsonl.
    pub fn say(&mut self, line: &str) -> std::io::Result<()> {
        match self.format {
            Format::Table => writeln!(self.out, "{line}"),
            Format::Jsonl => writeln!(std::io::stderr(), "{line}"),
        }
    }
    /// A record: printed as JSON in jsonl format, ignored in table format.
    pub fn record(&mut self, rec: &Record) -> std::io::Result<()> {
        if self.format == Format::Jsonl {
            serde_json::to_writer(&mut self.out, rec).map_err(std::io::Error::other)?;
            writeln!(self.out)?;
        }
        Ok(())
    }
    pub fn format(&self) -> Format {
        self.format
    }
}

/// One exercise.
pub struct LabDef {
    pub name: &'static str,
    /// The lesson's question it answers.
    pub question: &'static str,
    /// One line for the listing.
    pub summary: &'static str,
    pub run: fn(&LabCtx, &mut LabOut) -> anyhow::Result<LabRec>,
}

/// Every exercise, in the order the listing shows them.
pub const LABS: &[LabDef] = &[
    tcp_vs_http::LAB,
    handshake_close::LAB,
    websocket::LAB,
    login::LAB,
    stateless_vs_stateful::LAB,
    crash::LAB,
    scale_stateless::LAB,
    scale_stateful::LAB,
    queue::LAB,
    tls_resumption::LAB,
    http2::LAB,
];
