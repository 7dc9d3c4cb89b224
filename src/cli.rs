//! The command line: clap definitions and the dispatch to each command.
//!
//! Bad usage exits 2 (clap's own errors); everything else is reported by `main` as a one-line
//! error after whatever records could be produced.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "statescope",
    version,
    about = "Shows, from real packets, why TCP is stateful and HTTP is stateless"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Read a pcap or pcapng file ("-" for standard input) and report every TCP connection
    Replay(ReplayArgs),
    /// The same, from a live interface, until Ctrl-C or a limit (no -i: list interfaces)
    Live(LiveArgs),
    /// The minimal HTTP server that keeps no per-request state, with stateful contrasts
    Serve(ServeArgs),
    /// List the lab exercises, or run one end to end on loopback
    Lab(LabArgs),
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Human tables: a connection summary, timelines on request
    #[default]
    Table,
    /// One JSON object per line (shared/CONTRACT.md)
    Jsonl,
}

/// Default idle timeout (seconds of capture time) after which a connection is finished.
pub const DEFAULT_IDLE_TIMEOUT: f64 = 300.0;
/// Default per-direction reassembly cap in bytes.
pub const DEFAULT_REASSEMBLY_CAP: usize = 4 << 20;

/// Options shared by `replay` and `live`: what to report and how.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Table: the per-packet timeline of connection N (repeatable)
    #[arg(long = "conn", value_name = "N")]
    pub conns: Vec<u64>,
    /// Table: the per-packet timeline of every connection
    #[arg(long)]
    pub packets: bool,
    /// Explain each analysis event (table), and add a `why` object to packet records (jsonl)
    #[arg(long)]
    pub explain: bool,
    /// Print connection N's reassembled bytes, like Wireshark's Follow TCP Stream
    #[arg(long, value_name = "N")]
    pub follow: Option<u64>,
    /// Write a self-contained HTML report (connection table, ladder diagrams, time-sequence graphs)
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write one SVG ladder diagram and time-sequence graph per connection into DIR
    #[arg(long, value_name = "DIR")]
    pub svg: Option<PathBuf>,
    /// Finish and evict a connection idle for this many seconds of capture time
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_IDLE_TIMEOUT)]
    pub idle_timeout: f64,
    /// Skip HTTP and WebSocket parsing (TCP only)
    #[arg(long)]
    pub no_http: bool,
    /// Most bytes held out of order per direction for reassembly
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_REASSEMBLY_CAP)]
    pub reassembly_cap: usize,
    /// No progress bar on standard error
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Benchmarks only: skip Wireshark analysis (tracking and states only)
    #[arg(long, hide = true)]
    pub no_analysis: bool,
    /// Flush every JSON line as it is written (live capture: records as they happen)
    #[arg(skip)]
    pub line_buffered: bool,
}

impl Default for OutputArgs {
    /// The same values the command line gives when no flag is passed.
    fn default() -> Self {
        OutputArgs {
            format: Format::Table,
            conns: Vec::new(),
            packets: false,
            explain: false,
            follow: None,
            html: None,
            svg: None,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            no_http: false,
            reassembly_cap: DEFAULT_REASSEMBLY_CAP,
            quiet: false,
            no_analysis: false,
            line_buffered: false,
        }
    }
}

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The capture file (pcap or pcapng); "-" reads standard input
    pub file: PathBuf,
    /// Threads, same output with any: 1 does everything on one; 2 reads and decodes the
    /// capture on a second thread while the first tracks connections; 3 also prints on a
    /// third (not with --follow, --html or --svg). Default with two cores or more: 3 when
    /// every packet is printed (--format jsonl, --packets), else 2
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=3))]
    pub threads: Option<u8>,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Args, Debug)]
pub struct LiveArgs {
    /// Interface to capture on; without it, list the interfaces
    #[arg(short = 'i', long = "interface")]
    pub interface: Option<String>,
    /// Also write every captured frame to this pcap file
    #[arg(short = 'w', long = "write", value_name = "OUT.pcap")]
    pub write: Option<PathBuf>,
    /// Stop after this many frames
    #[arg(long, short = 'c')]
    pub count: Option<u64>,
    /// Stop after this many seconds
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Only TCP traffic to or from this port (repeatable)
    #[arg(long)]
    pub port: Vec<u16>,
    /// Only traffic to or from this address (repeatable)
    #[arg(long)]
    pub host: Vec<std::net::IpAddr>,
    /// A tcpdump-like filter for the common cases: "tcp port 80 and host 127.0.0.1"
    #[arg(long, short = 'f')]
    pub filter: Option<String>,
    /// Put the interface in promiscuous mode
    #[arg(long)]
    pub promisc: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default; anything else is an explicit choice)
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Key file for signed login tokens (created on first use; share it between instances)
    #[arg(long, value_name = "PATH")]
    pub token_key_file: Option<PathBuf>,
    /// Share WebSocket events through this broker (redis://HOST:PORT) instead of in-process
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,
    /// No request log on standard error
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Most simultaneous connections
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Largest request body accepted, in bytes
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body: usize,
    /// Largest request head accepted, in bytes
    #[arg(long, default_value_t = 16 << 10)]
    pub max_header: usize,
    /// Seconds a client may take to send a request head (slowloris guard)
    #[arg(long, default_value_t = 10.0)]
    pub header_timeout: f64,
    /// Most simultaneous connections from one client address (IPv6: one /64)
    #[arg(long, default_value_t = 256)]
    pub max_connections_per_address: usize,
    /// Seconds a WebSocket may stay silent before the server closes it
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub ws_idle_timeout: f64,
}

#[derive(Args, Debug, Clone)]
pub struct LabArgs {
    /// The exercise to run; without it, list them
    pub name: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Use this Redis (redis://HOST:PORT) where a lab needs a broker
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Folder for the lab's capture and reports
    #[arg(long, value_name = "DIR", default_value = "lab-out")]
    pub out_dir: PathBuf,
    /// Also write the HTML report of the lab's capture
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// Run the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay(args) => crate::engine::replay_command(&args),
        Command::Live(args) => crate::capture::live::live_command(&args),
        Command::Serve(args) => crate::server::serve_command(&args),
        Command::Lab(args) => crate::lab::lab_command(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `OutputArgs::default()` must equal what clap gives with no flags.
    #[test]
    fn output_defaults_match_the_command_line() {
        let cli = Cli::try_parse_from(["statescope", "replay", "x.pcap"]).unwrap();
        let Command::Replay(r) = cli.command else {
            panic!("not replay")
        };
        let d = OutputArgs::default();
        assert_eq!(r.out.idle_timeout, d.idle_timeout);
        assert_eq!(r.out.reassembly_cap, d.reassembly_cap);
        assert_eq!(r.out.format, d.format);
    }

    #[test]
    fn bad_usage_is_an_error() {
        assert!(Cli::try_parse_from(["statescope", "replay"]).is_err());
        assert!(Cli::try_parse_from(["statescope", "replay", "x", "--format", "xml"]).is_err());
    }
}
