//! `statescope lab`: exercises that answer the lesson's questions from measurements.
//!
//! Each exercise is one file opening with what the learner will see and why, registered in
//! [`LABS`]. A lab drives real traffic on loopback, measures, and ends with one `lab` record
//! (`shared/CONTRACT.md`): the question, an answer built from the measurements, the measured
//! facts, and `ok` when every check the lab makes on its own measurements held.
//!
//! The loopback labs (`tcp-vs-http`, `handshake-and-close`, `websocket`, `login`,
//! `stateless-vs-stateful`) capture `lo` live while they make traffic against an in-process
//! `serve`, save the capture as `OUT_DIR/NAME.pcap`, and print its records (replayed through the
//! engine) before the `lab` record; what they share is in [`common`]. They need root or
//! `CAP_NET_RAW`. The scaling labs (`crash`, `scale-*`, `queue`) measure delivery instead.

pub mod common;
pub mod crash;
pub mod handshake_close;
pub mod login;
pub mod queue;
pub mod scale_stateful;
pub mod scale_stateless;
pub mod stateless_vs_stateful;
pub mod tcp_vs_http;
pub mod websocket;

use crate::cli::{Format, LabArgs};
use crate::record::{LabRec, Record};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

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
];

/// `statescope lab [NAME]`.
pub fn lab_command(args: &LabArgs) -> anyhow::Result<ExitCode> {
    let Some(name) = &args.name else {
        println!("Lab exercises (statescope lab NAME):");
        for lab in LABS {
            println!("  {:<24} {}", lab.name, lab.summary);
        }
        return Ok(ExitCode::SUCCESS);
    };
    let Some(lab) = LABS.iter().find(|l| l.name == name) else {
        let names: Vec<_> = LABS.iter().map(|l| l.name).collect();
        anyhow::bail!("no lab named {name:?}; the labs are: {}", names.join(", "));
    };
    let ctx = LabCtx {
        format: args.format,
        redis: args.redis.clone(),
        out_dir: args.out_dir.clone(),
        html: args.html.clone(),
        exe: std::env::current_exe()?,
    };
    std::fs::create_dir_all(&ctx.out_dir)?;
    let mut out = LabOut::new(args.format, Box::new(std::io::stdout()));
    let rec = (lab.run)(&ctx, &mut out)?;
    if let Some(h) = &args.html {
        if !h.exists() {
            // The scaling labs measure messages between processes, not packets: say so rather
            // than leave the user looking for a file.
            eprintln!(
                "statescope: lab {name} captures no packets, so there is no report to write to {}",
                h.display()
            );
        }
    }
    let ok = rec.ok;
    if args.format == Format::Table {
        out.say("")?;
        out.say(&format!("Question: {}", rec.question))?;
        out.say(&format!("Answer:   {}", rec.answer))?;
        out.say(&format!(
            "Checks:   {}",
            if ok { "all held" } else { "SOME FAILED" }
        ))?;
    }
    out.record(&Record::Lab(rec))?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
