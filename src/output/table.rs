//! The human tables.
//!
//! * The **connection summary**: one row per connection — client, server, packets and payload
//!   bytes each way, duration, both endpoints' final states, Zeek's conn_state, HTTP counts.
//!   Rows are printed as connections finish (so a long capture streams with flat memory), as
//!   many as fit the terminal (`table_rows`); the rest are counted in one closing line that
//!   says how to see them.
//! * The **lifetime** of the first few connections (or of `--conn N`, or of all with `--all`):
//!   handshake, every HTTP request with the state it carries itself (Host, Cookie,
//!   Authorization), responses, the upgrade to WebSocket, the close — each at its frame, at
//!   most [`LIFETIME_EVENTS`] lines each unless asked for by number or `--all`.
//! * The **timeline** (`--conn N`, `--packets`): one row per segment with relative seq/ack,
//!   length, window, analysis events, and each endpoint's state where it changes; `--explain`
//!   adds why each event was given.
//!
//! With colour on (`--color`, resolved by the command), states and analysis events are
//! painted; widths are computed on the text, so columns stay aligned.

use super::Sink;
use crate::config::{Color, OutputConfig};
use crate::record::{ConnRec, Dir, H2Rec, HttpRec, PacketRec, Record, TlsMsgRec, TlsRec, WsRec};
use crate::types::PacketSel;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};

/// Lifetimes told without being asked: connections 0 to this, less one.
const LIFETIMES: u64 = 3;
/// Lines of a lifetime told without being asked (a keep-alive connection can carry thousands
/// of requests); the rest are counted.
pub const LIFETIME_EVENTS: usize = 30;

#[derive(Default)]
struct PerConn {
    rows: Vec<String>,
    events: Vec<(u64, String)>,
    last_states: Option<(String, String)>,
    first_ts: Option<f64>,
    ws: [u64; 2],
    requests: u64,
}

pub struct TableSink {
    out: BufWriter<Box<dyn Write + Send>>,
    all_packets: bool,
    selected: Vec<u64>,
    explain: bool,
    per: HashMap<u64, PerConn>,
    summary: Vec<String>,
    header_done: bool,
    conns: u64,
    blocks: bool,
    /// The summary row being written, reused.
    row: String,
    /// `--all`: every row, every lifetime, whole.
    all: bool,
    /// Most summary rows; `None`: all.
    rows: Option<usize>,
    /// Summary rows printed (or kept for the end) so far, and those left out.
    shown: usize,
    hidden: u64,
    color: bool,
    /// TLS hints of connections whose `tls` record came, until their `conn` record.
    tls_hints: HashMap<u64, String>,
}

/// The `payload` columns count TCP payload bytes; Wireshark's Conversations count whole frames.
const HEADER: &str = "conn  client                      server                       packets c>s/s>c  payload c>s/s>c  duration  client_state  server_state  zeek  http";

impl TableSink {
    pub fn new(out: Box<dyn Write + Send>, args: &OutputConfig) -> Self {
        TableSink {
            out: BufWriter::new(out),
            all_packets: args.packets,
            selected: args.conns.clone(),
            explain: args.explain,
            per: HashMap::new(),
            summary: Vec::new(),
            header_done: false,
            conns: 0,
            blocks: args.packets || !args.conns.is_empty(),
            row: String::new(),
            all: args.all,
            rows: args.table_rows,
            shown: 0,
            hidden: 0,
            color: args.color == Color::Always,
            tls_hints: HashMap::new(),
        }
    }

    /// Whether the next summary row is printed; counts it either way.
    fn row_fits(&mut self) -> bool {
        if self.rows.is_some_and(|r| self.shown >= r) {
            self.hidden += 1;
            false
        } else {
            self.shown += 1;
            true
        }
    }

    fn timeline_for(&self, conn: u64) -> bool {
        self.all_packets || self.selected.contains(&conn)
    }

    /// Lifetimes are kept for selected connections, and for the first few of a small capture.
    fn lifetime_for(&self, conn: u64) -> bool {
        self.all || self.timeline_for(conn) || (self.selected.is_empty() && conn < LIFETIMES)
    }

    fn packet(&mut self, p: &PacketRec) {
        let timeline = self.timeline_for(p.conn);
        if !self.lifetime_for(p.conn) {
            return;
        }
        let explain = self.explain;
        let color = self.color;
        let pc = self.per.entry(p.conn).or_default();
        let t0 = *pc.first_ts.get_or_insert(p.ts);
        let states = (p.client_state.to_string(), p.server_state.to_string());
        let changed = pc.last_states.as_ref() != Some(&states);
        if changed {
            let (c, s) = &states;
            let what = match &pc.last_states {
                None => format!("client {c}, server {s}"),
                Some((pc_, ps)) => {
                    let mut parts = Vec::new();
                    if pc_ != c {
                        parts.push(format!("client {pc_} -> {c}"));
                    }
                    if ps != s {
                        parts.push(format!("server {ps} -> {s}"));
                    }
                    parts.join(", ")
                }
            };
            pc.events.push((
                p.frame,
                format!("{} {}: {what}", p.flags.join("+"), p.dir.as_str()),
            ));
        }
        if timeline {
            let state = |v: &str| {
                if changed {
                    painted(v, 12, state_color(v), color)
                } else {
                    painted(".", 12, None, false)
                }
            };
            let (cs, ss) = (state(&p.client_state), state(&p.server_state));
            let analysis = p
                .analysis
                .iter()
                .map(|a| painted(a, 0, Some(event_color(a)), color))
                .collect::<Vec<_>>()
                .join(",");
            let mut row = format!(
                "{:>7} {:>10.6} {} {:<11} {:>10} {:>10} {:>6} {:>8}  {cs} {ss} {analysis}",
                p.frame,
                p.ts - t0,
                if p.dir == Dir::C2s { "c>s" } else { "s>c" },
                p.flags.join(","),
                p.seq,
                p.ack.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                p.len,
                p.win,
            );
            if explain {
                for (name, why) in &p.why {
                    let _ = write!(row, "\n{:>20} {name}: {why}", "");
                }
                if let Some(l) = &p.likely {
                    let _ = write!(row, "\n{:>20} most likely: {l}", "");
                }
            }
            pc.rows.push(row);
        }
        pc.last_states = Some(states);
    }

    fn http(&mut self, h: &HttpRec) {
        if !self.lifetime_for(h.conn) {
            return;
        }
        let pc = self.per.entry(h.conn).or_default();
        let text = if h.undecodable {
            format!(
                "HTTP/2 {} on stream {}: header block undecodable (HPACK table unknown), {} body bytes",
                h.dir.as_str(),
                h.stream.unwrap_or(0),
                h.body_len
            )
        } else if let Some(m) = &h.method {
            pc.requests += 1;
            let carries = ["Host", "Cookie", "Authorization"]
                .iter()
                .map(|k| {
                    if h.carries.iter().any(|c| c.eq_ignore_ascii_case(k)) {
                        format!("{k}: yes")
                    } else {
                        format!("{k}: no")
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            let version = match h.stream {
                Some(s) => format!("HTTP/2 stream {s}"),
                None => h.version.to_string(),
            };
            format!(
                "request {} {m} {} {version}  — carries its own state: {carries}",
                pc.requests,
                h.uri.as_deref().unwrap_or(""),
            )
        } else {
            let mut t = format!(
                "response {} {} ({} body bytes)",
                h.status.map(|s| s.to_string()).unwrap_or_default(),
                h.reason.as_deref().unwrap_or(""),
                h.body_len
            );
            if let Some(f) = h.request_frame {
                let _ = write!(t, " to the request at frame {f}");
            }
            if let Some(s) = h.stream {
                let _ = write!(t, " on HTTP/2 stream {s}");
            }
            if let Some(u) = &h.upgrade {
                let _ = write!(
                    t,
                    " — switched to {u}: from here the connection itself holds the session"
                );
            }
            t
        };
        pc.events.push((h.frame, text));
    }

    fn ws(&mut self, w: &WsRec) {
        if let Some(pc) = self.per.get_mut(&w.conn) {
            pc.ws[w.dir.idx()] += 1;
        }
    }

    /// The connection's TLS hint, for its summary row and its lifetime.
    fn tls(&mut self, t: &TlsRec) {
        let hint = t.hint();
        if self.lifetime_for(t.conn) {
            let at = t.frame.unwrap_or(0);
            let pc = self.per.entry(t.conn).or_default();
            pc.events.push((at, format!("TLS: {hint}")));
        }
        self.tls_hints.insert(t.conn, hint);
    }

    fn tls_msg(&mut self, m: &TlsMsgRec) {
        if let Some(pc) = self.per.get_mut(&m.conn) {
            let mut text = format!("TLS {} {}", m.dir.as_str(), m.msg);
            if let Some(a) = &m.alert {
                let _ = write!(text, " ({a})");
            }
            pc.events.push((m.frame, text));
        }
    }

    /// An HTTP/2 frame in its connection's lifetime lines, with the stream's state at each
    /// endpoint after it: control frames, header blocks, and of the DATA frames (type 0) only
    /// those that end a stream (the rest would drown the lines, and change no state).
    fn h2(&mut self, f: &H2Rec) {
        if f.frame_type == 0 && f.flags & 1 == 0 {
            return;
        }
        if let Some(pc) = self.per.get_mut(&f.conn) {
            let mut text = format!("H2 {} {}", f.dir.as_str(), f.name);
            // SETTINGS (4) and PING (6): flag 0x1 is ACK.
            if matches!(f.frame_type, 4 | 6) && f.flags & 1 != 0 {
                text.push_str(" ACK");
            }
            if f.stream != 0 {
                let _ = write!(text, " stream {}", f.stream);
            }
            if let (Some(c), Some(s)) = (&f.client_state, &f.server_state) {
                let _ = write!(text, " (client {c}, server {s})");
            }
            if let Some(e) = &f.error {
                let _ = write!(text, " {e}");
            }
            if f.undecodable {
                text.push_str(" undecodable");
            }
            pc.events.push((f.frame, text));
        }
    }

    fn conn(&mut self, c: &ConnRec) -> io::Result<()> {
        self.conns += 1;
        // Checked first: cleartext captures never hash a key here.
        let tls = if self.tls_hints.is_empty() {
            None
        } else {
            self.tls_hints.remove(&c.conn)
        };
        let tls_hint = |row: &mut String| {
            if let Some(h) = &tls {
                row.push_str("  ");
                row.push_str(h);
            }
        };
        if let Some(pc) = self.per.remove(&c.conn) {
            if self.blocks || !pc.events.is_empty() {
                self.print_block(c, pc)?;
            }
        }
        if !self.row_fits() {
            return Ok(());
        }
        if self.blocks {
            let mut row = String::new();
            summary_row(&mut row, c, self.color);
            tls_hint(&mut row);
            self.summary.push(row);
        } else {
            if !self.header_done {
                writeln!(self.out, "{HEADER}")?;
                self.header_done = true;
            }
            self.row.clear();
            summary_row(&mut self.row, c, self.color);
            tls_hint(&mut self.row);
            self.row.push('\n');
            self.out.write_all(self.row.as_bytes())?;
        }
        Ok(())
    }

    fn print_block(&mut self, c: &ConnRec, mut pc: PerConn) -> io::Result<()> {
        if !self.blocks {
            // Lifetimes of small captures go after the summary table: keep them for finish().
            pc.rows.clear();
        }
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\nConnection {}: {} -> {}  ({}, {} packets, {:.6} s)",
            c.conn,
            c.client,
            c.server,
            c.conn_state,
            c.packets_c2s + c.packets_s2c,
            c.last_ts - c.first_ts
        );
        if roles_guessed(c) {
            let _ = writeln!(
                s,
                "  roles guessed: no handshake captured, so the client is whoever sent the first \
                 segment seen (HTTP requests, if any, show who really asked)"
            );
        }
        if !pc.rows.is_empty() {
            let _ = writeln!(
                s,
                "{:>7} {:>10} dir {:<11} {:>10} {:>10} {:>6} {:>8}  {:<12} {:<12} analysis",
                "frame", "time", "flags", "seq", "ack", "len", "win", "client", "server"
            );
            for r in &pc.rows {
                let _ = writeln!(s, "{r}");
            }
            let _ = writeln!(s, "  lifetime:");
        }
        pc.events.sort_by_key(|(f, _)| *f);
        let whole = self.all || self.selected.contains(&c.conn);
        let told = if whole {
            pc.events.len()
        } else {
            pc.events.len().min(LIFETIME_EVENTS)
        };
        for (f, e) in &pc.events[..told] {
            let _ = writeln!(s, "  frame {f:>6}  {e}");
        }
        if told < pc.events.len() {
            let _ = writeln!(
                s,
                "  ... {} more events up to frame {}: --conn {} tells them all",
                pc.events.len() - told,
                pc.events.last().map_or(0, |e| e.0),
                c.conn
            );
        }
        // Changes no captured segment caused, but a later one revealed: said where they began.
        for t in &c.transitions {
            if let Some(why) = &t.inferred {
                let _ = writeln!(
                    s,
                    "  inferred: {} {} since frame {} ({why})",
                    t.endpoint, t.state, t.frame
                );
            }
        }
        if pc.ws != [0, 0] {
            let _ = writeln!(s, "  WebSocket frames: {} client->server, {} server->client, all on this one connection", pc.ws[0], pc.ws[1]);
        }
        if pc.requests > 1 {
            let _ = writeln!(s, "  {} HTTP requests rode this one TCP connection; each named its own Host and carried whatever state it needed itself — HTTP is stateless, the TCP connection under it is not.", pc.requests);
        }
        let color = self.color;
        let _ = writeln!(
            s,
            "  final: client {}, server {}",
            painted(&c.client_state, 0, state_color(&c.client_state), color),
            painted(&c.server_state, 0, state_color(&c.server_state), color)
        );
        if self.blocks {
            self.out.write_all(s.as_bytes())?;
        } else {
            self.summary.push(s);
        }
        Ok(())
    }
}

/// No SYN or SYN-ACK in view (Zeek's history has none), and not the continuation of a record
/// that had one: which end is the client is only the order of the first segments seen.
fn roles_guessed(c: &ConnRec) -> bool {
    !c.resumed && !c.history.contains(['S', 's', 'H', 'h'])
}

/// One summary row. Written field by field: `format!` with widths costs more than tracking
/// a connection, and a big capture has hundreds of thousands of rows.
fn summary_row(s: &mut String, c: &ConnRec, color: bool) {
    let mut num = itoa::Buffer::new();
    let right = |s: &mut String, v: &str, w: usize| {
        s.extend(std::iter::repeat_n(' ', w.saturating_sub(v.len())));
        s.push_str(v);
    };
    let left = |s: &mut String, v: &str, w: usize| {
        s.push_str(v);
        s.extend(std::iter::repeat_n(
            ' ',
            w.saturating_sub(v.chars().count()),
        ));
    };
    right(s, num.format(c.conn), 4);
    s.push_str("  ");
    left(s, &c.client, 27);
    s.push(' ');
    left(s, &c.server, 27);
    s.push(' ');
    right(s, num.format(c.packets_c2s), 9);
    s.push('/');
    left(s, num.format(c.packets_s2c), 9);
    s.push(' ');
    right(s, num.format(c.bytes_c2s), 9);
    s.push('/');
    left(s, num.format(c.bytes_s2c), 9);
    let _ = write!(s, " {:>8.3}s  ", c.last_ts - c.first_ts);
    if color {
        s.push_str(&painted(
            &c.client_state,
            13,
            state_color(&c.client_state),
            true,
        ));
        s.push(' ');
        s.push_str(&painted(
            &c.server_state,
            13,
            state_color(&c.server_state),
            true,
        ));
        s.push(' ');
        s.push_str(&painted(&c.conn_state, 5, zeek_color(&c.conn_state), true));
    } else {
        left(s, &c.client_state, 13);
        s.push(' ');
        left(s, &c.server_state, 13);
        s.push(' ');
        left(s, &c.conn_state, 5);
    }
    s.push(' ');
    s.push_str(num.format(c.http_requests));
    s.push('/');
    s.push_str(num.format(c.http_responses));
}

impl Sink for TableSink {
    fn record(&mut self, rec: &Record) -> io::Result<()> {
        match rec {
            Record::Packet(p) => self.packet(p),
            Record::Http(h) => self.http(h),
            Record::Ws(w) => self.ws(w),
            Record::Conn(c) => self.conn(c)?,
            Record::Tls(t) => self.tls(t),
            Record::TlsMsg(m) => self.tls_msg(m),
            Record::H2(f) => self.h2(f),
            Record::Lab(_) => {}
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        if self.blocks {
            writeln!(self.out, "\n{HEADER}")?;
        } else if !self.header_done {
            writeln!(self.out, "{HEADER}")?;
        }
        let summary = std::mem::take(&mut self.summary);
        if self.blocks {
            for r in &summary {
                writeln!(self.out, "{r}")?;
            }
        }
        if self.hidden > 0 {
            writeln!(
                self.out,
                "{} more connection{}: use --conn N, --all, --format jsonl or --html",
                self.hidden,
                if self.hidden == 1 { "" } else { "s" }
            )?;
        }
        if !self.blocks {
            // The lifetimes, after the table.
            for r in &summary {
                write!(self.out, "{r}")?;
            }
            if !self.all && self.conns > LIFETIMES {
                writeln!(
                    self.out,
                    "\nLifetimes told for connections 0 to {} of {}: --conn N tells one, --all every one.",
                    LIFETIMES - 1,
                    self.conns
                )?;
            }
        }
        if self.conns == 0 {
            writeln!(self.out, "(no TCP connections)")?;
        }
        self.out.flush()
    }

    /// Packet records feed the lifetimes and timelines: only those connections need them.
    fn wants_packets(&self) -> PacketSel {
        if self.all_packets || self.all {
            PacketSel::All
        } else if self.selected.is_empty() {
            PacketSel::Some {
                below: LIFETIMES,
                list: Vec::new(),
            }
        } else {
            PacketSel::Some {
                below: 0,
                list: self.selected.clone(),
            }
        }
    }
}

/// `v` padded to `width` columns, wrapped in the SGR `code` when colour is on.
fn painted(v: &str, width: usize, code: Option<&str>, on: bool) -> String {
    let pad = width.saturating_sub(v.chars().count());
    match code {
        Some(code) if on => format!("\x1b[{code}m{v}\x1b[0m{:pad$}", ""),
        _ => format!("{v}{:pad$}", ""),
    }
}

/// Green for a connection in use, cyan while opening, yellow while closing, bold yellow for
/// CLOSE_WAIT (the peer closed and the application has not yet), dim when unknown.
fn state_color(state: &str) -> Option<&'static str> {
    Some(match state {
        "ESTABLISHED" => "32",
        "SYN_SENT" | "SYN_RECEIVED" | "LISTEN" => "36",
        "FIN_WAIT_1" | "FIN_WAIT_2" | "CLOSING" | "LAST_ACK" | "TIME_WAIT" => "33",
        "CLOSE_WAIT" => "1;33",
        "UNKNOWN" => "2",
        _ => return None,
    })
}

/// Zeek's codes: a normal close green, refusals and resets red, half-seen connections yellow.
fn zeek_color(code: &str) -> Option<&'static str> {
    Some(match code {
        "SF" => "32",
        "REJ" | "RSTO" | "RSTR" | "RSTOS0" | "RSTRH" => "31",
        "S0" | "S1" | "S2" | "S3" | "SH" | "SHR" | "OTH" => "33",
        _ => return None,
    })
}

/// Loss and its repair red, window trouble magenta, the rest (keep-alives, updates) cyan.
fn event_color(event: &str) -> &'static str {
    match event {
        "retransmission"
        | "fast_retransmission"
        | "spurious_retransmission"
        | "out_of_order"
        | "dup_ack"
        | "lost_segment"
        | "ack_lost_segment" => "31",
        "zero_window" | "zero_window_probe" | "zero_window_probe_ack" | "window_full" => "35",
        _ => "36",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::SharedOut;
    use crate::record::HttpRec;
    use std::borrow::Cow;

    /// `n` requests on connection 0, then its `conn` record, printed with `args`.
    fn printed(n: u64, conn: ConnRec, args: &OutputConfig) -> String {
        let out = SharedOut::default();
        let mut t = TableSink::new(Box::new(out.clone()), args);
        for i in 0..n {
            let req = HttpRec {
                conn: 0,
                frame: 10 + i,
                method: Some(Cow::Borrowed("GET")),
                uri: Some(format!("/{i}")),
                version: Cow::Borrowed("HTTP/1.1"),
                ..HttpRec::default()
            };
            t.record(&Record::Http(Box::new(req))).unwrap();
        }
        t.record(&Record::Conn(conn)).unwrap();
        t.finish().unwrap();
        let text = out.0.lock().unwrap().clone();
        String::from_utf8(text).unwrap()
    }

    /// One keep-alive connection carrying `n` requests, printed with `args`.
    fn keep_alive(n: u64, args: &OutputConfig) -> String {
        let conn = ConnRec {
            client: "10.0.0.1:1000".into(),
            server: "10.0.0.2:80".into(),
            ..ConnRec::default()
        };
        printed(n, conn, args)
    }

    fn told(text: &str) -> usize {
        text.lines().filter(|l| l.starts_with("  frame ")).count()
    }

    /// A connection with thousands of requests told a few dozen lines, saying how to see all.
    #[test]
    fn a_long_lifetime_is_cut_unless_asked() {
        let text = keep_alive(100, &OutputConfig::default());
        assert_eq!(told(&text), LIFETIME_EVENTS, "{text}");
        assert!(
            text.contains("... 70 more events up to frame 109: --conn 0 tells them all"),
            "{text}"
        );
        // Asked by number, or with --all: whole.
        let asked = OutputConfig {
            conns: vec![0],
            ..OutputConfig::default()
        };
        assert_eq!(told(&keep_alive(100, &asked)), 100);
        let all = OutputConfig {
            all: true,
            table_rows: None,
            ..OutputConfig::default()
        };
        let whole = keep_alive(100, &all);
        assert_eq!(told(&whole), 100);
        assert!(!whole.contains("more events"));
        // Control: a short lifetime is not cut.
        let short = keep_alive(LIFETIME_EVENTS as u64, &OutputConfig::default());
        assert_eq!(told(&short), LIFETIME_EVENTS);
        assert!(!short.contains("more events"));
    }

    /// A connection without a handshake in view says its roles are a guess; one with a SYN,
    /// or only a SYN-ACK, or continuing a record that had one, does not.
    #[test]
    fn roles_are_said_to_be_guessed_only_without_a_handshake() {
        let block = |history: &str, resumed: bool| {
            let conn = ConnRec {
                client: "10.0.0.1:80".into(),
                server: "10.0.0.2:40000".into(),
                history: history.into(),
                resumed,
                ..ConnRec::default()
            };
            printed(1, conn, &OutputConfig::default()).contains("roles guessed")
        };
        assert!(block("Dd", false));
        assert!(block("DadAF", false));
        assert!(!block("ShADadFf", false));
        assert!(!block("hADadFf", false));
        assert!(!block("Dd", true));
    }

    #[test]
    fn painted_pads_the_text_not_the_codes() {
        assert_eq!(painted("SF", 5, Some("32"), true), "\x1b[32mSF\x1b[0m   ");
        assert_eq!(painted("SF", 5, Some("32"), false), "SF   ");
        assert_eq!(painted("CLOSED", 3, None, true), "CLOSED");
    }
}
