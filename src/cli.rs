//! The command line: clap definitions, their conversion into the checked settings of
//! [`crate::config`], and the dispatch to [`crate::commands`].
//!
//! This is the only module that names clap. Bad usage exits 2: clap's own errors, and every
//! [`UsageError`] the conversions here give (one line naming the flag). Everything else is
//! reported by `main` as a one-line error after whatever records could be produced.

use crate::commands::serve::ServeConfig;
use crate::config::{
    self, Color, Format, LabConfig, LiveConfig, OutputConfig, ReplayConfig, UsageError,
    WorkerFault, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_MEMORY, DEFAULT_REASSEMBLY_CAP,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// Where `--help` sends readers for the JSON-lines records: a file every clone has.
const RECORDS_HELP: &str =
    "The records of --format jsonl, field by field: docs/records.md in statescope's source tree";

#[derive(Parser, Debug)]
#[command(
    name = "statescope",
    version,
    about = "Shows, from real packets, why TCP is stateful and HTTP is stateless",
    after_help = RECORDS_HELP
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
    /// Print a shell completion script for SHELL to standard output
    Completions(CompletionsArgs),
    /// Print the man page (roff) to standard output: `statescope man | man -l -`
    Man,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `--color`'s values.
/// `replay --workers-fault` (hidden): [`WorkerFault`].
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerFaultArg {
    NoRenumber,
    NoTick,
    NoMerge,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColorArg {
    /// On a terminal, unless NO_COLOR is set
    #[default]
    Auto,
    Always,
    Never,
}

/// `--format`'s values ([`Format`] past this module).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FormatArg {
    /// Human tables: a connection summary, timelines on request
    #[default]
    Table,
    /// One JSON object per line, every field described in docs/records.md
    Jsonl,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Table => Format::Table,
            FormatArg::Jsonl => Format::Jsonl,
        }
    }
}

/// Options shared by `replay` and `live`: what to report and how.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Output format [default: table; `live` whose standard output is not a terminal: jsonl]
    #[arg(long, value_enum)]
    pub format: Option<FormatArg>,
    /// Table: the per-packet timeline of connection N (repeatable)
    #[arg(long = "conn", value_name = "N")]
    pub conns: Vec<u64>,
    /// Table: the per-packet timeline of every connection
    #[arg(long)]
    pub packets: bool,
    /// Table: every summary row and every connection's whole lifetime (by default the rows fit
    /// the terminal, or 20 when piped, and only the first few lifetimes are told)
    #[arg(long)]
    pub all: bool,
    /// Print only the records EXPR matches: port N, host ADDR, conn N, type T, state S,
    /// conn_state Z, event E, method M, status N|Nxx, request, response; and/or/not, ( );
    /// tshark-like forms too (tcp.port == 80 && tcp.analysis.retransmission). See README
    #[arg(long = "where", short = 'Y', value_name = "EXPR")]
    pub select: Option<String>,
    /// Colour states and analysis events in tables: auto (a terminal, and NO_COLOR unset),
    /// always, never
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorArg::Auto)]
    pub color: ColorArg,
    /// Explain each analysis event (table), and add a `why` object to packet records (jsonl)
    #[arg(long)]
    pub explain: bool,
    /// Print connection N's reassembled bytes, like Wireshark's Follow TCP Stream (to standard
    /// output before the table; with --format jsonl, --follow-out is needed)
    #[arg(long, value_name = "N")]
    pub follow: Option<u64>,
    /// Write --follow's text to FILE instead of standard output
    #[arg(long, value_name = "FILE")]
    pub follow_out: Option<PathBuf>,
    /// Write a self-contained HTML report (connection table, ladder diagrams, time-sequence graphs)
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Write one SVG ladder diagram and time-sequence graph per connection into DIR
    #[arg(long, value_name = "DIR")]
    pub svg: Option<PathBuf>,
    /// Finish and evict a connection idle for this many seconds of capture time
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_IDLE_TIMEOUT, allow_negative_numbers = true)]
    pub idle_timeout: f64,
    /// Skip HTTP and WebSocket parsing (TCP only)
    #[arg(long)]
    pub no_http: bool,
    /// Most bytes held out of order per direction for reassembly
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_REASSEMBLY_CAP)]
    pub reassembly_cap: usize,
    /// Memory for connections, reassembly and HTTP state together (e.g. 512M, 2G, or bytes);
    /// over it, half-open and unreplied connections are evicted first, then reassembly
    /// buffers given up, then the least recently active connections [default: 160M]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: Option<usize>,
    /// No progress bar on standard error
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Benchmarks only: skip Wireshark analysis (tracking and states only)
    #[arg(long, hide = true)]
    pub no_analysis: bool,
    /// Decrypt TLS with this NSS key log (a client's SSLKEYLOGFILE) and parse the HTTP inside:
    /// TLS 1.2 AES-GCM/ChaCha20-Poly1305 and every TLS 1.3 suite
    #[arg(long, value_name = "FILE")]
    pub tls_keylog: Option<PathBuf>,
}

#[derive(Args, Debug)]
#[command(after_help = RECORDS_HELP)]
pub struct ReplayArgs {
    /// Capture files (pcap or pcapng, gzip-compressed or not); several are merged by capture
    /// time, as mergecap does; "-" reads standard input
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Stop after this many frames (counted in the merged input, before --port/--host/--filter)
    #[arg(long, short = 'c', value_name = "N")]
    pub count: Option<u64>,
    /// Only TCP traffic to or from this port (repeatable; as on `live`)
    #[arg(long, value_name = "PORT")]
    pub port: Vec<u16>,
    /// Only traffic to or from this address (repeatable; as on `live`)
    #[arg(long, value_name = "ADDR")]
    pub host: Vec<std::net::IpAddr>,
    /// A tcpdump-like filter on segments, as on `live`: "tcp port 80 and host 127.0.0.1"
    #[arg(long, short = 'f')]
    pub filter: Option<String>,
    /// Threads, same output with any: 1 does everything on one; 2 reads and decodes the
    /// capture on a second thread while the first tracks connections; 3 also prints on a
    /// third (not with --html, --svg or --follow to standard output). Default with two cores
    /// or more: 3 when every packet is printed (--format jsonl, --packets), else 2
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=3))]
    pub threads: Option<u8>,
    /// Scale-out by flow: track only the connections whose flow hash (of both endpoints'
    /// addresses and ports, either direction) falls in shard I of N (0 ≤ I < N). N runs with
    /// I = 0..N-1, on one machine or many, split one capture; their records together are one
    /// run's, connection K of shard I numbered I + N×K
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Track on N worker threads in this process, each the connections of its flow hash (the
    /// hash of --shard), merged into the same records, order and connection numbers as one
    /// engine's (the memory budget is split between them). For more than two cores; a reader
    /// thread decodes for all of them
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=64),
          conflicts_with_all = ["shard", "threads", "follow"])]
    pub workers: Option<u8>,
    /// A deliberately wrong merger, for tests' negative controls
    #[arg(long, value_enum, hide = true, requires = "workers")]
    pub workers_fault: Option<WorkerFaultArg>,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(Args, Debug)]
#[command(after_help = RECORDS_HELP)]
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
    #[arg(long, value_name = "SECS", allow_negative_numbers = true)]
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
    /// Share the interface's traffic with other `live` processes started with the same ID
    /// (Linux PACKET_FANOUT by flow hash): each connection, both directions, goes to one of
    /// them. Start N processes to track on N cores; each numbers its own connections
    #[arg(long, value_name = "ID")]
    pub fanout: Option<u16>,
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
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true)]
    pub header_timeout: f64,
    /// Most simultaneous connections from one client address (IPv6: one /64)
    #[arg(long, default_value_t = 256)]
    pub max_connections_per_address: usize,
    /// Seconds a WebSocket may stay silent before the server closes it
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub ws_idle_timeout: f64,
    /// Where /records keeps records: memory, or redis://HOST:PORT (a stream)
    #[arg(long, value_name = "URL")]
    pub records_store: Option<String>,
    /// The Redis stream /records uses with --records-store redis://…
    #[arg(long, value_name = "KEY", default_value = "statescope:records")]
    pub records_stream: String,
    /// Negative control only: the memory store secretly persists to this file
    #[arg(long, value_name = "PATH", hide = true)]
    pub records_file: Option<PathBuf>,
    /// Negative control only: drop every Nth WebSocket message shared through --broker
    #[arg(long, value_name = "N", hide = true)]
    pub broker_drop_every: Option<u64>,
    /// Serve HTTPS (rustls; a self-signed certificate made at start unless --tls-cert)
    #[arg(long)]
    pub tls: bool,
    /// Certificate chain for --tls (PEM); needs --tls-key
    #[arg(long, value_name = "FILE", requires_all = ["tls", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// Private key for --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, value_name = "FILE", requires_all = ["tls", "tls_cert"])]
    pub tls_key: Option<PathBuf>,
    /// Append TLS session secrets here (NSS key log format, as SSLKEYLOGFILE) to decrypt captures
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub tls_keylog: Option<PathBuf>,
    /// How returning TLS clients resume: ids (server-side cache), tickets (stateless), none
    #[arg(long, value_name = "HOW", default_value = "tickets", value_parser = ["ids", "tickets", "none"])]
    pub tls_resumption: String,
    /// Key file sealing TLS tickets (created on first use; share it between instances)
    #[arg(long, value_name = "PATH", requires = "tls")]
    pub ticket_key_file: Option<PathBuf>,
    /// Allow only this TLS version (default: 1.2 and 1.3)
    #[arg(long, value_name = "VERSION", requires = "tls", value_parser = ["1.2", "1.3"])]
    pub tls_version: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct LabArgs {
    /// The exercise to run; without it, list them
    pub name: Option<String>,
    /// Output format
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    pub format: FormatArg,
    /// Use this Redis (redis://HOST:PORT) where a lab needs a broker
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
    /// Folder for the lab's capture and reports
    #[arg(long, value_name = "DIR", default_value = "lab-out")]
    pub out_dir: PathBuf,
    /// Also write the HTML report of the lab's capture
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Negative control only: run the lab against a deliberately wrong variant
    #[arg(long, value_name = "NAME", hide = true)]
    pub variant: Option<String>,
}

/// `--max-memory SIZE`: bytes, or a number with K, M, G or T (powers of 1024; "MiB" and "MB"
/// read the same), at least 1 MiB.
fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => return Err(format!("{text:?}: give a size such as 512M, 2G or 1048576")),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?}: give a size such as 512M, 2G or 1048576"))?;
    let bytes = n * (1u64 << shift) as f64;
    // NaN fails this too.
    if bytes.is_nan() || bytes < (1 << 20) as f64 {
        return Err(format!("{text:?}: give at least 1M"));
    }
    Ok(bytes.min(usize::MAX as f64) as usize)
}

/// A bad value: the usage error naming it.
fn bad(msg: String) -> UsageError {
    UsageError(msg)
}

impl TryFrom<&OutputArgs> for OutputConfig {
    type Error = UsageError;

    fn try_from(a: &OutputArgs) -> Result<Self, UsageError> {
        let t = a.idle_timeout;
        // NaN and negative values would finish every connection at its next packet.
        if !(t.is_finite() && t > 0.0) {
            return Err(bad(format!(
                "--idle-timeout {t}: give a number of seconds more than 0"
            )));
        }
        let format = a.format.map(Format::from).unwrap_or_default();
        match (a.follow, &a.follow_out) {
            (None, Some(_)) => {
                return Err(bad("--follow-out needs --follow N".into()));
            }
            (Some(n), None) if format == Format::Jsonl => {
                return Err(bad(format!(
                    "--follow {n} with --format jsonl: standard output carries only the records; \
                     give --follow-out FILE for the stream's text"
                )));
            }
            _ => {}
        }
        let select = a
            .select
            .as_deref()
            .map(crate::select::parse)
            .transpose()
            .map_err(|e| bad(e.to_string()))?;
        Ok(OutputConfig {
            all: a.all,
            table_rows: if a.all {
                None
            } else {
                Some(config::DEFAULT_TABLE_ROWS)
            },
            color: match a.color {
                ColorArg::Auto => Color::Auto,
                ColorArg::Always => Color::Always,
                ColorArg::Never => Color::Never,
            },
            select,
            format,
            conns: a.conns.clone(),
            packets: a.packets,
            explain: a.explain,
            follow: a.follow,
            follow_out: a.follow_out.clone(),
            html: a.html.clone(),
            svg: a.svg.clone(),
            idle_timeout_ns: config::idle_timeout_ns(t),
            no_http: a.no_http,
            reassembly_cap: a.reassembly_cap,
            max_memory: a.max_memory.unwrap_or(DEFAULT_MAX_MEMORY),
            quiet: a.quiet,
            no_analysis: a.no_analysis,
            line_buffered: false,
            tls_keylog: a.tls_keylog.clone(),
        })
    }
}

impl TryFrom<&ReplayArgs> for ReplayConfig {
    type Error = UsageError;

    fn try_from(a: &ReplayArgs) -> Result<Self, UsageError> {
        if a.files.iter().filter(|f| f.as_os_str() == "-").count() > 1 {
            return Err(bad("\"-\" (standard input) can be given only once".into()));
        }
        if a.count == Some(0) {
            return Err(bad("--count 0: give a number of frames ≥ 1".into()));
        }
        let filter = crate::capture::filter::from_options(&a.port, &a.host, a.filter.as_deref())
            .map_err(|e| bad(e.to_string()))?;
        let shard = a.shard.as_deref().map(parse_shard).transpose()?;
        Ok(ReplayConfig {
            files: a.files.clone(),
            count: a.count,
            filter,
            shard,
            threads: a.threads,
            workers: a.workers.map(usize::from).filter(|&w| w > 1),
            workers_fault: a.workers_fault.map(|f| match f {
                WorkerFaultArg::NoRenumber => WorkerFault::NoRenumber,
                WorkerFaultArg::NoTick => WorkerFault::NoTick,
                WorkerFaultArg::NoMerge => WorkerFault::NoMerge,
            }),
            out: OutputConfig::try_from(&a.out)?,
        })
    }
}

/// `--shard I/N`: shard I (counted from 0) of N.
fn parse_shard(s: &str) -> Result<(u32, u32), UsageError> {
    let why = || {
        bad(format!(
            "--shard {s}: give I/N with 0 ≤ I < N, e.g. 0/2 and 1/2"
        ))
    };
    let (i, n) = s.split_once('/').ok_or_else(why)?;
    let (i, n): (u32, u32) = (
        i.trim().parse().map_err(|_| why())?,
        n.trim().parse().map_err(|_| why())?,
    );
    if i >= n {
        return Err(why());
    }
    Ok((i, n))
}

impl TryFrom<&LiveArgs> for LiveConfig {
    type Error = UsageError;

    fn try_from(a: &LiveArgs) -> Result<Self, UsageError> {
        let filter = crate::capture::filter::from_options(&a.port, &a.host, a.filter.as_deref())
            .map_err(|e| bad(e.to_string()))?;
        let duration = match a.duration {
            Some(s) if !(s.is_finite() && s >= 0.0) => {
                return Err(bad(format!("--duration {s}: give a number of seconds ≥ 0")));
            }
            s => s.map(std::time::Duration::from_secs_f64),
        };
        Ok(LiveConfig {
            interface: a.interface.clone(),
            write: a.write.clone(),
            count: a.count,
            duration,
            filter,
            filter_text: a.filter.clone(),
            promisc: a.promisc,
            fanout: a.fanout,
            format_chosen: a.out.format.is_some(),
            out: OutputConfig::try_from(&a.out)?,
        })
    }
}

impl TryFrom<&ServeArgs> for ServeConfig {
    /// Not a [`UsageError`]: `serve` has always reported bad values with exit status 1, and
    /// scripts may rely on it.
    type Error = anyhow::Error;

    fn try_from(a: &ServeArgs) -> anyhow::Result<Self> {
        let listen = crate::server::parse_listen(&a.listen)?;
        let secs = |flag: &str, t: f64| {
            if !(t.is_finite() && t > 0.0 && t <= 86_400.0) {
                anyhow::bail!("{flag} {t}: give a number of seconds between 0 and 86400");
            }
            Ok(std::time::Duration::from_secs_f64(t))
        };
        let server = crate::server::ServerConfig {
            quiet: a.quiet,
            max_connections: a.max_connections,
            max_connections_per_address: a.max_connections_per_address,
            ws_idle_timeout: secs("--ws-idle-timeout", a.ws_idle_timeout)?,
            max_body: a.max_body,
            max_header: a.max_header,
            header_timeout: secs("--header-timeout", a.header_timeout)?,
            token_key_file: a.token_key_file.clone(),
            tls: tls_options(a)?,
            ..crate::server::ServerConfig::default()
        };
        server.validate()?;
        Ok(ServeConfig {
            listen,
            broker: a.broker.clone(),
            extra: crate::server::ServeExtra {
                records: crate::server::records::RecordsOptions {
                    store: a.records_store.clone(),
                    stream: a.records_stream.clone(),
                    secret_file: a.records_file.clone(),
                },
                broker_drop_every: a.broker_drop_every,
            },
            server,
        })
    }
}

/// `serve`'s `--tls*` flags, checked; `None` without `--tls`.
fn tls_options(a: &ServeArgs) -> anyhow::Result<Option<crate::server::tls::TlsOptions>> {
    use crate::server::tls::{Resumption, TlsOptions, TlsVersion};
    if !a.tls {
        return Ok(None);
    }
    let resumption = Resumption::parse(&a.tls_resumption).unwrap_or_default();
    if a.ticket_key_file.is_some() && resumption != Resumption::Tickets {
        anyhow::bail!(
            "--ticket-key-file goes with --tls-resumption tickets, not {}",
            resumption.name()
        );
    }
    Ok(Some(TlsOptions {
        cert: a.tls_cert.clone().zip(a.tls_key.clone()),
        keylog: a.tls_keylog.clone(),
        resumption,
        ticket_key_file: a.ticket_key_file.clone(),
        version: a.tls_version.as_deref().and_then(TlsVersion::parse),
    }))
}

impl From<&LabArgs> for LabConfig {
    fn from(a: &LabArgs) -> Self {
        LabConfig {
            name: a.name.clone(),
            format: a.format.into(),
            redis: a.redis.clone(),
            out_dir: a.out_dir.clone(),
            html: a.html.clone(),
            variant: a.variant.clone(),
        }
    }
}

/// Run the parsed command line: check it, then hand the settings to the command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    use crate::commands;
    match &cli.command {
        Command::Replay(a) => commands::replay::run(&ReplayConfig::try_from(a)?),
        Command::Live(a) => commands::live::run(&LiveConfig::try_from(a)?),
        Command::Serve(a) => commands::serve::run(ServeConfig::try_from(a)?),
        Command::Lab(a) => commands::lab::run(&LabConfig::from(a)),
        Command::Completions(a) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(a.shell, &mut cmd, "statescope", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            man_page(&cmd, &mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The man page: the command's own page, then each subcommand's options as sections of it
/// (one file to install: `statescope man > /usr/local/share/man/man1/statescope.1`).
fn man_page(cmd: &clap::Command, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    man.render(out)?;
    for sub in cmd.get_subcommands() {
        let name = sub.get_name();
        let sub_man = clap_mangen::Man::new(sub.clone().name(format!("statescope {name}")));
        let mut text = Vec::new();
        sub_man.render_synopsis_section(&mut text)?;
        sub_man.render_options_section(&mut text)?;
        // One section per subcommand, its options a subsection of it.
        let text = String::from_utf8_lossy(&text)
            .replace(
                ".SH SYNOPSIS",
                &format!(".SH \"STATESCOPE {}\"", name.to_uppercase()),
            )
            .replace(".SH OPTIONS", ".SS Options");
        out.write_all(text.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(extra: &[&str]) -> Result<ReplayConfig, String> {
        let mut argv = vec!["statescope", "replay", "x.pcap"];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let Command::Replay(r) = cli.command else {
            panic!("not replay")
        };
        ReplayConfig::try_from(&r).map_err(|e| e.to_string())
    }

    fn serve(extra: &[&str]) -> anyhow::Result<ServeConfig> {
        let mut argv = vec!["statescope", "serve"];
        argv.extend_from_slice(extra);
        match Cli::parse_from(argv).command {
            Command::Serve(a) => ServeConfig::try_from(&a),
            _ => unreachable!(),
        }
    }

    /// `OutputConfig::default()` must equal what the command line gives with no flags.
    #[test]
    fn output_defaults_match_the_command_line() {
        let r = replay(&[]).unwrap();
        let d = OutputConfig::default();
        assert_eq!(r.out.idle_timeout_ns, d.idle_timeout_ns);
        assert_eq!(r.out.idle_timeout_ns, 300_000_000_000);
        assert_eq!(r.out.reassembly_cap, d.reassembly_cap);
        assert_eq!(r.out.max_memory, d.max_memory);
        assert_eq!(r.out.format, d.format);
    }

    #[test]
    fn max_memory_reads_sizes_and_refuses_nonsense() {
        let mem = |v: &str| replay(&["--max-memory", v]).map(|r| r.out.max_memory);
        assert_eq!(mem("512M").unwrap(), 512 << 20);
        assert_eq!(mem("2GiB").unwrap(), 2 << 30);
        assert_eq!(mem("1.5g").unwrap(), 3 << 29);
        assert_eq!(mem("1048576").unwrap(), 1 << 20);
        for bad in ["", "lots", "12Q", "-5M", "100K", "nanM"] {
            assert!(mem(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_usage_is_an_error() {
        assert!(Cli::try_parse_from(["statescope", "replay"]).is_err());
        assert!(Cli::try_parse_from(["statescope", "replay", "x", "--format", "xml"]).is_err());
    }

    #[test]
    fn idle_timeout_must_be_a_positive_number() {
        for bad in ["-1", "nan", "NaN", "0", "inf", "-0"] {
            let err = replay(&["--idle-timeout", bad]).unwrap_err();
            assert!(err.starts_with("--idle-timeout "), "{bad}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
        assert_eq!(
            replay(&["--idle-timeout", "0.5"])
                .unwrap()
                .out
                .idle_timeout_ns,
            500_000_000
        );
    }

    #[test]
    fn follow_and_its_output_must_agree() {
        let err = replay(&["--follow", "0", "--format", "jsonl"]).unwrap_err();
        assert!(err.contains("--follow-out FILE"), "{err}");
        assert!(replay(&["--follow-out", "f.txt"]).is_err());
        let ok = replay(&[
            "--follow",
            "0",
            "--format",
            "jsonl",
            "--follow-out",
            "f.txt",
        ])
        .unwrap();
        assert!(!ok.out.follows_to_stdout());
        assert!(replay(&["--follow", "0"]).unwrap().out.follows_to_stdout());
    }

    #[test]
    fn live_values_are_checked() {
        let live = |extra: &[&str]| {
            let mut argv = vec!["statescope", "live", "-i", "lo"];
            argv.extend_from_slice(extra);
            let Command::Live(a) = Cli::try_parse_from(argv).unwrap().command else {
                panic!("not live")
            };
            LiveConfig::try_from(&a).map_err(|e| e.to_string())
        };
        assert!(live(&["--duration", "-1"])
            .unwrap_err()
            .contains("--duration"));
        assert!(live(&["--duration", "nan"]).is_err());
        assert!(live(&["--idle-timeout", "nan"]).is_err());
        assert!(live(&["--filter", "tcp portrange 1-9"]).is_err());
        let c = live(&["--duration", "1.5", "--port", "80"]).unwrap();
        assert_eq!(c.duration, Some(std::time::Duration::from_millis(1500)));
        assert!(c.filter.is_some() && !c.format_chosen);
        assert!(live(&["--format", "table"]).unwrap().format_chosen);
    }

    #[test]
    fn serve_config_from_args() {
        let c = serve(&["--quiet", "--max-body", "10"]).unwrap();
        assert!(c.server.quiet);
        assert_eq!(c.server.max_body, 10);
        assert_eq!(c.server.header_timeout, std::time::Duration::from_secs(10));
        assert_eq!(c.server.ws_idle_timeout, std::time::Duration::from_secs(60));
        assert_eq!(c.server.max_connections_per_address, 256);
        let c = serve(&["--ws-idle-timeout", "2.5"]).unwrap();
        assert_eq!(
            c.server.ws_idle_timeout,
            std::time::Duration::from_millis(2500)
        );
    }

    #[test]
    fn serve_config_rejects_bad_values() {
        for bad in [
            &["--max-header", "100"][..],
            &["--max-connections", "0"],
            &["--header-timeout", "0"],
            &["--header-timeout", "NaN"],
            &["--header-timeout", "-1"],
            &["--ws-idle-timeout", "0"],
            &["--max-connections-per-address", "0"],
            &["--listen", "nonsense"],
        ] {
            assert!(serve(bad).is_err(), "{bad:?} accepted");
        }
    }
}

#[cfg(test)]
mod tls_flag_tests {
    use super::*;

    fn serve(extra: &[&str]) -> Result<ServeConfig, String> {
        let mut argv = vec!["statescope", "serve"];
        argv.extend_from_slice(extra);
        let cli = Cli::try_parse_from(argv).map_err(|e| e.to_string())?;
        let Command::Serve(a) = cli.command else {
            panic!("not serve")
        };
        ServeConfig::try_from(&a).map_err(|e| e.to_string())
    }

    #[test]
    fn tls_flags() {
        use crate::server::tls::{Resumption, TlsVersion};
        assert!(serve(&[]).unwrap().server.tls.is_none());
        let t = serve(&["--tls"]).unwrap().server.tls.unwrap();
        assert_eq!(t.resumption, Resumption::Tickets);
        assert!(t.cert.is_none() && t.version.is_none());
        let t = serve(&[
            "--tls",
            "--tls-resumption",
            "ids",
            "--tls-version",
            "1.2",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
        ])
        .unwrap()
        .server
        .tls
        .unwrap();
        assert_eq!(t.resumption, Resumption::Ids);
        assert_eq!(t.version, Some(TlsVersion::V12));
        assert!(t.cert.is_some());
        // Each flag needs --tls; a certificate needs its key; the ticket key needs tickets.
        for bad in [
            &["--tls-keylog", "k.log"][..],
            &["--ticket-key-file", "t.key"],
            &["--tls-version", "1.2"],
            &["--tls", "--tls-cert", "c.pem"],
            &["--tls", "--tls-version", "1.1"],
            &["--tls", "--tls-resumption", "cache"],
        ] {
            assert!(serve(bad).is_err(), "{bad:?} accepted");
        }
        let e = serve(&["--tls", "--tls-resumption", "ids", "--ticket-key-file", "t"])
            .err()
            .unwrap();
        assert!(e.contains("--ticket-key-file goes with"), "{e}");
    }
}
