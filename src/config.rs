//! Validated settings, one struct per command, built from the command line by `TryFrom` in
//! [`crate::cli`]. (`serve`'s are [`crate::server::ServerConfig`], checked there, plus the
//! address: [`crate::commands::serve::ServeConfig`].)
//!
//! Every value here has been checked once, where it was parsed: ranges, NaN, and flags that
//! contradict each other. Nothing below the CLI names clap or re-checks a flag; what a command
//! decides at run time (is standard output a terminal?) is the command's, not a field here
//! pretending to be a flag.

use crate::capture::filter::Expr;
use crate::select::Where;
use std::path::PathBuf;
use std::time::Duration;

/// Default idle timeout (seconds of capture time) after which a connection is finished.
pub const DEFAULT_IDLE_TIMEOUT: f64 = 300.0;
/// Default per-direction reassembly cap in bytes.
pub const DEFAULT_REASSEMBLY_CAP: usize = 4 << 20;
/// Summary rows printed when standard output is not a terminal (on one: its height).
pub const DEFAULT_TABLE_ROWS: usize = 20;

/// Colour on the table: `--color`. `Auto` is resolved by the command (a terminal, and no
/// `NO_COLOR`), so printers only ever see `Always` or `Never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Color {
    #[default]
    Auto,
    Always,
    Never,
}

impl Color {
    /// `Auto` made definite: colour on a terminal unless `NO_COLOR` is set to anything but the
    /// empty string (no-color.org). An explicit `always` or `never` wins over both.
    pub fn resolve(self, terminal: bool) -> Color {
        match self {
            Color::Auto => {
                let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
                if terminal && !no_color {
                    Color::Always
                } else {
                    Color::Never
                }
            }
            c => c,
        }
    }
}

/// Default `--max-memory`, in bytes: small enough that replaying a million-connection SYN
/// flood or 300 connections of out-of-order data stays under 256 MiB of peak RSS
/// (bench/memory.sh), large enough for about 110 000 concurrent connections.
pub const DEFAULT_MAX_MEMORY: usize = 160 << 20;

/// A value the command line gave that cannot be used: bad usage, exit status 2, reported as one
/// line naming the flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// How records are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Human tables: a connection summary, timelines on request.
    #[default]
    Table,
    /// One JSON object per line (`docs/records.md`).
    Jsonl,
}

/// What `replay` and `live` report and how.
#[derive(Debug, Clone)]
pub struct OutputConfig {
    pub format: Format,
    /// Table: the per-packet timelines of these connections; HTML: draw them whatever their
    /// position.
    pub conns: Vec<u64>,
    /// Table: the per-packet timeline of every connection.
    pub packets: bool,
    /// Say why each analysis event was given.
    pub explain: bool,
    /// Print this connection's reassembled bytes (Follow TCP Stream).
    pub follow: Option<u64>,
    /// Where `follow`'s text goes; `None`: standard output (table format only, so the text
    /// never lands among JSON lines).
    pub follow_out: Option<PathBuf>,
    /// Write the HTML report here.
    pub html: Option<PathBuf>,
    /// Write SVG diagrams into this folder.
    pub svg: Option<PathBuf>,
    /// Finish a connection idle this long, in nanoseconds of capture time (more than 0).
    pub idle_timeout_ns: i64,
    /// Skip HTTP and WebSocket parsing.
    pub no_http: bool,
    /// Most bytes held out of order per direction for reassembly.
    pub reassembly_cap: usize,
    /// The engine's memory budget in bytes (connections, reassembly, HTTP state).
    pub max_memory: usize,
    /// No progress bar or summary line on standard error.
    pub quiet: bool,
    /// Benchmarks only: skip Wireshark analysis.
    pub no_analysis: bool,
    /// Flush every JSON line as it is written. Not a flag: `live` sets it, so records appear
    /// as they happen.
    pub line_buffered: bool,
    /// `--all`: every summary row, and every connection's whole lifetime.
    pub all: bool,
    /// Table: most summary rows printed before "N more connections"; `None`: all. Not a flag:
    /// the command sizes it to the terminal ([`DEFAULT_TABLE_ROWS`] when not on one).
    pub table_rows: Option<usize>,
    /// `--color` (resolved by the command before printers see it).
    pub color: Color,
    /// `--where`: print only the records it matches.
    pub select: Option<Where>,
    /// `--tls-keylog`: the NSS key log to decrypt TLS with.
    pub tls_keylog: Option<PathBuf>,
}

impl Default for OutputConfig {
    /// The same values the command line gives when no flag is passed.
    fn default() -> Self {
        OutputConfig {
            format: Format::Table,
            conns: Vec::new(),
            packets: false,
            explain: false,
            follow: None,
            follow_out: None,
            html: None,
            svg: None,
            idle_timeout_ns: idle_timeout_ns(DEFAULT_IDLE_TIMEOUT),
            no_http: false,
            reassembly_cap: DEFAULT_REASSEMBLY_CAP,
            max_memory: DEFAULT_MAX_MEMORY,
            quiet: false,
            no_analysis: false,
            line_buffered: false,
            all: false,
            table_rows: Some(DEFAULT_TABLE_ROWS),
            color: Color::Auto,
            select: None,
            tls_keylog: None,
        }
    }
}

impl OutputConfig {
    /// Whether `--html` or `--svg` asked for pictures (drawn from every record at the end).
    pub fn wants_report(&self) -> bool {
        self.html.is_some() || self.svg.is_some()
    }

    /// Whether `--follow`'s text goes to standard output, among the printer's output.
    pub fn follows_to_stdout(&self) -> bool {
        self.follow.is_some() && self.follow_out.is_none()
    }
}

/// `--idle-timeout SECS` in nanoseconds; the caller has checked that `secs` is finite and
/// more than 0 (a conversion that overflows saturates: "never").
pub fn idle_timeout_ns(secs: f64) -> i64 {
    (secs * 1e9) as i64
}

/// `statescope replay`.
#[derive(Debug, Clone)]
pub struct ReplayConfig {
    /// The capture files (at least one), merged by capture time when several; "-" is
    /// standard input (at most once).
    pub files: Vec<PathBuf>,
    /// `-c N`: stop after N frames read (before `filter`).
    pub count: Option<u64>,
    /// `--port`, `--host` and `--filter` together, parsed: only TCP segments it passes are
    /// tracked.
    pub filter: Option<Expr>,
    /// `--shard I/N`: (I, N), only the flows of shard I are tracked.
    pub shard: Option<(u32, u32)>,
    /// 1 to 3, or `None` to choose by core count.
    pub threads: Option<u8>,
    /// `--workers N` (N ≥ 2): track on N worker threads ([`crate::workers`]).
    pub workers: Option<usize>,
    /// Tests' negative controls: a wrong merger.
    pub workers_fault: Option<WorkerFault>,
    pub out: OutputConfig,
}

/// A deliberately wrong merger of `replay --workers`, for the tests' negative controls
/// (`--workers-fault`, hidden).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerFault {
    /// Keep each worker's own connection numbers.
    NoRenumber,
    /// Workers do not tick on other workers' segments.
    NoTick,
    /// Each batch's records worker after worker, not merged by frame.
    NoMerge,
}

/// `statescope live`.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// `None`: list the interfaces instead of capturing.
    pub interface: Option<String>,
    /// Also write every captured frame to this pcap file.
    pub write: Option<PathBuf>,
    /// Stop after this many frames.
    pub count: Option<u64>,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// `--port`, `--host` and `--filter` together, parsed.
    pub filter: Option<Expr>,
    /// `--filter` as given, for the "capturing on" line.
    pub filter_text: Option<String>,
    pub promisc: bool,
    /// `--fanout ID`: join this PACKET_FANOUT group.
    pub fanout: Option<u16>,
    /// Whether `--format` was given; without it, piped output is JSON lines.
    pub format_chosen: bool,
    pub out: OutputConfig,
}

/// `statescope lab`.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// `None`: list the labs.
    pub name: Option<String>,
    pub format: Format,
    /// A Redis URL for labs that use a broker.
    pub redis: Option<String>,
    /// Folder for the lab's capture and reports.
    pub out_dir: PathBuf,
    /// Also write the HTML report of the lab's capture.
    pub html: Option<PathBuf>,
    /// A deliberately wrong variant (negative controls).
    pub variant: Option<String>,
}
