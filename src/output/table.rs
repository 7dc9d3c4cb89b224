//! The human tables.
//!
//! * The **connection summary**: one row per connection — client, server, packets and bytes
//!   each way, duration, both endpoints' final states, Zeek's conn_state, HTTP counts. Rows are
//!   printed as connections finish (so a long capture streams with flat memory).
//! * The **lifetime** of each connection (small captures, or `--conn N`): handshake, every HTTP
//!   request with the state it carries itself (Host, Cookie, Authorization), responses, the
//!   upgrade to WebSocket, the close — each at its frame.
//! * The **timeline** (`--conn N`, `--packets`): one row per segment with relative seq/ack,
//!   length, window, analysis events, and each endpoint's state where it changes; `--explain`
//!   adds why each event was given.

use super::Sink;
use crate::config::OutputConfig;
use crate::record::{ConnRec, Dir, HttpRec, PacketRec, Record, TlsMsgRec, TlsRec, WsRec};
use crate::types::PacketSel;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};

/// Above this many connections, lifetimes are only printed for `--conn N`.
const LIFETIME_LIMIT: u64 = 20;

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
    /// TLS hints of connections whose `tls` record came, until their `conn` record.
    tls_hints: HashMap<u64, String>,
}

const HEADER: &str = "conn  client                      server                       packets c>s/s>c    bytes c>s/s>c  duration  client_state  server_state  zeek  http";

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
            tls_hints: HashMap::new(),
        }
    }

    fn timeline_for(&self, conn: u64) -> bool {
        self.all_packets || self.selected.contains(&conn)
    }

    /// Lifetimes are kept for selected connections, and for the first few of a small capture.
    fn lifetime_for(&self, conn: u64) -> bool {
        self.timeline_for(conn) || (self.selected.is_empty() && conn < LIFETIME_LIMIT)
    }

    fn packet(&mut self, p: &PacketRec) {
        let timeline = self.timeline_for(p.conn);
        if !self.lifetime_for(p.conn) {
            return;
        }
        let explain = self.explain;
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
            let mut row = format!(
                "{:>7} {:>10.6} {} {:<11} {:>10} {:>10} {:>6} {:>8}  {:<12} {:<12} {}",
                p.frame,
                p.ts - t0,
                if p.dir == Dir::C2s { "c>s" } else { "s>c" },
                p.flags.join(","),
                p.seq,
                p.ack.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                p.len,
                p.win,
                if changed {
                    p.client_state.as_ref()
                } else {
                    "."
                },
                if changed {
                    p.server_state.as_ref()
                } else {
                    "."
                },
                p.analysis.join(",")
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
        let text = if let Some(m) = &h.method {
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
            format!(
                "request {} {m} {} {}  — carries its own state: {carries}",
                pc.requests,
                h.uri.as_deref().unwrap_or(""),
                h.version
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
        if self.blocks {
            let mut row = String::new();
            summary_row(&mut row, c);
            tls_hint(&mut row);
            self.summary.push(row);
        } else {
            if !self.header_done {
                writeln!(self.out, "{HEADER}")?;
                self.header_done = true;
            }
            self.row.clear();
            summary_row(&mut self.row, c);
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
        for (f, e) in &pc.events {
            let _ = writeln!(s, "  frame {f:>6}  {e}");
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
        let _ = writeln!(
            s,
            "  final: client {}, server {}",
            c.client_state, c.server_state
        );
        if self.blocks {
            self.out.write_all(s.as_bytes())?;
        } else {
            self.summary.push(s);
        }
        Ok(())
    }
}

/// One summary row. Written field by field: `format!` with widths costs more than tracking
/// a connection, and a big capture has hundreds of thousands of rows.
fn summary_row(s: &mut String, c: &ConnRec) {
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
    left(s, &c.client_state, 13);
    s.push(' ');
    left(s, &c.server_state, 13);
    s.push(' ');
    left(s, &c.conn_state, 5);
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
        for r in std::mem::take(&mut self.summary) {
            if self.blocks {
                writeln!(self.out, "{r}")?;
            } else {
                write!(self.out, "{r}")?;
            }
        }
        if self.conns == 0 {
            writeln!(self.out, "(no TCP connections)")?;
        }
        self.out.flush()
    }

    /// Packet records feed the lifetimes and timelines: only those connections need them.
    fn wants_packets(&self) -> PacketSel {
        if self.all_packets {
            PacketSel::All
        } else if self.selected.is_empty() {
            PacketSel::Some {
                below: LIFETIME_LIMIT,
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
