//! Records grouped per connection, and the condensed row list the ladder and timeline draw.
//!
//! Everything here is bookkeeping over records already produced by the engine: which packets,
//! HTTP messages and WebSocket frames belong to which connection, where an endpoint's state
//! changed, and which runs of ordinary segments can be folded into one row.

use crate::record::{ConnRec, Dir, H2Rec, HttpRec, PacketRec, Record, TlsMsgRec, WsRec};
use std::collections::BTreeMap;

/// Connections with more segments than this get their ordinary runs folded.
pub const CONDENSE_ABOVE: usize = 60;
/// Shortest run worth folding: fewer rows than this are drawn as they are.
pub const MIN_FOLD: usize = 4;
/// Longest fold, so that expanding one never draws more than this many arrows at once.
pub const MAX_FOLD: usize = 400;
/// HTTP/2 streams drawn as bands per connection (the first ones seen); the others are counted.
pub const MAX_LANES: usize = 8;
/// HTTP/2 stream bands drawn per connection at most.
pub const MAX_BANDS: usize = 400;

/// One connection's records, in capture order.
#[derive(Debug, Default)]
pub struct ConnView<'a> {
    pub id: u64,
    /// Absent when the records stop before the connection's `conn` record.
    pub conn: Option<&'a ConnRec>,
    pub packets: Vec<&'a PacketRec>,
    pub http: Vec<&'a HttpRec>,
    pub ws: Vec<&'a WsRec>,
    pub tls_msgs: Vec<&'a TlsMsgRec>,
    /// The negotiated TLS version (from the `tls` record), when known.
    pub tls_version: Option<&'a str>,
    pub h2: Vec<&'a H2Rec>,
    /// Per packet index: the endpoints' TLS handshake labels that changed with it
    /// ([`ConnView::tls_labels`]), filled by [`group`].
    pub tls_states: BTreeMap<usize, [Option<String>; 2]>,
    /// Per packet index: the HTTP/2 stream bands drawn under it, filled by [`group`].
    pub bands: BTreeMap<usize, Vec<Band>>,
    /// HTTP/2 streams seen and streams not drawn ([`MAX_LANES`]), bands not drawn
    /// ([`MAX_BANDS`]).
    pub h2_streams: usize,
    pub h2_streams_more: usize,
    pub bands_more: usize,
}

/// One HTTP/2 stream's frames in one segment, drawn as a band across the ladder with the
/// stream's state at the client and at the server after its last frame there.
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub stream: u32,
    /// The segment's frame.
    pub frame: u64,
    /// The stream's lane (its colour): 0..[`MAX_LANES`].
    pub lane: usize,
    /// `HEADERS →, DATA ← ×3`.
    pub frames: String,
    pub client_state: String,
    pub server_state: String,
    /// A state changed or a frame other than DATA: not folded away.
    pub notable: bool,
}

/// Something an upper layer saw in a segment: an HTTP message or a WebSocket frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub dir: Dir,
    pub text: String,
    /// `"http"` or `"ws"`, for styling.
    pub kind: &'static str,
}

/// One row of the ladder: a segment, or a folded run of ordinary segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Row {
    Seg(usize),
    /// Packets `from..to` (indices into [`ConnView::packets`]).
    Fold {
        from: usize,
        to: usize,
    },
}

/// Group `records` by connection, in connection order.
pub fn group(records: &[Record]) -> Vec<ConnView<'_>> {
    let mut by_id: BTreeMap<u64, ConnView<'_>> = BTreeMap::new();
    let view = |m: &mut BTreeMap<u64, ConnView<'_>>, id: u64| {
        m.entry(id).or_insert_with(|| ConnView {
            id,
            ..ConnView::default()
        });
    };
    for rec in records {
        match rec {
            Record::Packet(p) => {
                view(&mut by_id, p.conn);
                by_id.get_mut(&p.conn).unwrap().packets.push(p);
            }
            Record::Conn(c) => {
                view(&mut by_id, c.conn);
                by_id.get_mut(&c.conn).unwrap().conn = Some(c);
            }
            Record::Http(h) => {
                view(&mut by_id, h.conn);
                by_id.get_mut(&h.conn).unwrap().http.push(h);
            }
            Record::Ws(w) => {
                view(&mut by_id, w.conn);
                by_id.get_mut(&w.conn).unwrap().ws.push(w);
            }
            Record::TlsMsg(m) => {
                view(&mut by_id, m.conn);
                by_id.get_mut(&m.conn).unwrap().tls_msgs.push(m);
            }
            Record::Tls(t) => {
                view(&mut by_id, t.conn);
                by_id.get_mut(&t.conn).unwrap().tls_version = t.version.as_deref();
            }
            Record::H2(h) => {
                view(&mut by_id, h.conn);
                by_id.get_mut(&h.conn).unwrap().h2.push(h);
            }
            Record::Lab(_) => {}
        }
    }
    let mut views: Vec<ConnView<'_>> = by_id.into_values().collect();
    for v in &mut views {
        if !v.tls_msgs.is_empty() {
            v.tls_states = v.tls_labels();
        }
        if !v.h2.is_empty() {
            v.bands = v.h2_bands();
        }
    }
    views
}

impl<'a> ConnView<'a> {
    /// Time of the first segment: the zero of every relative time shown.
    pub fn t0(&self) -> f64 {
        self.packets
            .first()
            .map(|p| p.ts)
            .or(self.conn.map(|c| c.first_ts))
            .unwrap_or(0.0)
    }

    pub fn client(&self) -> String {
        match (self.conn, self.packets.first()) {
            (Some(c), _) => c.client.to_string(),
            (None, Some(p)) if p.dir == Dir::C2s => p.src.to_string(),
            (None, Some(p)) => p.dst.to_string(),
            _ => "client".into(),
        }
    }

    pub fn server(&self) -> String {
        match (self.conn, self.packets.first()) {
            (Some(c), _) => c.server.to_string(),
            (None, Some(p)) if p.dir == Dir::C2s => p.dst.to_string(),
            (None, Some(p)) => p.src.to_string(),
            _ => "server".into(),
        }
    }

    /// HTTP and WebSocket marks per packet index. A message whose frame is not one of this
    /// connection's packets goes to the first packet after it, so nothing is silently dropped.
    pub fn marks(&self) -> BTreeMap<usize, Vec<Mark>> {
        let mut out: BTreeMap<usize, Vec<Mark>> = BTreeMap::new();
        let mut put = |frame: u64, m: Mark| {
            let i = self.packets.partition_point(|p| p.frame < frame);
            let i = i.min(self.packets.len().saturating_sub(1));
            out.entry(i).or_default().push(m);
        };
        for h in &self.http {
            put(
                h.frame,
                Mark {
                    dir: h.dir,
                    text: http_text(h),
                    kind: "http",
                },
            );
        }
        for w in &self.ws {
            put(
                w.frame,
                Mark {
                    dir: w.dir,
                    text: ws_text(w),
                    kind: "ws",
                },
            );
        }
        out
    }

    /// The packet that carries `frame`: the first at or after it, so nothing is dropped.
    fn packet_of(&self, frame: u64) -> usize {
        let i = self.packets.partition_point(|p| p.frame < frame);
        i.min(self.packets.len().saturating_sub(1))
    }

    /// Each endpoint's TLS handshake state as the `tls_msg` records show it, per packet where
    /// it changed: what the endpoint last sent or received (`ClientHello sent`, `got
    /// ServerHello`), `encrypted` once it sent its ChangeCipherSpec (for TLS 1.3, both from
    /// the ServerHello on), `handshake done` once both Finished messages went by (TLS 1.2, or
    /// decrypted), `alert sent` / `got alert`. Only what the messages say; nothing guessed.
    pub fn tls_labels(&self) -> BTreeMap<usize, [Option<String>; 2]> {
        let mut out: BTreeMap<usize, [Option<String>; 2]> = BTreeMap::new();
        if self.packets.is_empty() {
            return out;
        }
        let tls13 = self.tls_version == Some("TLSv1.3");
        let mut now: [String; 2] = Default::default();
        // Which endpoints sent their Finished (in clear after decryption, or the encrypted
        // handshake message that follows a ChangeCipherSpec).
        let mut finished = [false; 2];
        let mut ccs = [false; 2];
        for m in &self.tls_msgs {
            let (s, r) = (m.dir.idx(), m.dir.reverse().idx());
            let mut next = now.clone();
            match m.msg.as_ref() {
                "change_cipher_spec" => {
                    ccs[s] = true;
                    next[s] = "encrypted".into();
                    if !ccs[r] {
                        next[r] = "got ChangeCipherSpec".into();
                    }
                }
                "server_hello" if tls13 => {
                    next = ["encrypted".into(), "encrypted".into()];
                    ccs = [true; 2];
                }
                "encrypted_handshake" | "finished" if ccs[s] || m.msg == "finished" => {
                    finished[s] = true;
                    next[s] = "Finished sent".into();
                    if finished[r] {
                        next = ["handshake done".into(), "handshake done".into()];
                    }
                }
                "alert" | "encrypted_alert" => {
                    next[s] = "alert sent".into();
                    next[r] = "got alert".into();
                }
                name if !ccs[s] => {
                    let name = camel(name);
                    next[s] = format!("{name} sent");
                    next[r] = format!("got {name}");
                }
                _ => {}
            }
            for e in 0..2 {
                if next[e] != now[e] {
                    let i = self.packet_of(m.frame);
                    out.entry(i).or_default()[e] = Some(next[e].clone());
                }
            }
            now = next;
        }
        out
    }

    /// The HTTP/2 stream bands per packet: one per stream with frames in the packet, for the
    /// first [`MAX_LANES`] streams and up to [`MAX_BANDS`] bands; the others are counted.
    pub fn h2_bands(&mut self) -> BTreeMap<usize, Vec<Band>> {
        let mut out: BTreeMap<usize, Vec<Band>> = BTreeMap::new();
        if self.packets.is_empty() {
            return out;
        }
        let mut lanes: Vec<u32> = Vec::new();
        let mut more: std::collections::BTreeSet<u32> = Default::default();
        let mut last: BTreeMap<u32, (String, String)> = BTreeMap::new();
        let mut bands = 0;
        let mut bands_more = 0;
        for h in &self.h2 {
            // The connection's own frames, and frames on streams idle at both ends (PRIORITY
            // for a dependency tree), say nothing about a stream's life.
            let idle = h.client_state.as_deref() == Some("idle")
                && h.server_state.as_deref() == Some("idle");
            if h.stream == 0 || idle {
                continue;
            }
            let lane = match lanes.iter().position(|s| *s == h.stream) {
                Some(l) => l,
                None if lanes.len() < MAX_LANES => {
                    lanes.push(h.stream);
                    lanes.len() - 1
                }
                None => {
                    more.insert(h.stream);
                    continue;
                }
            };
            let states = (
                h.client_state.as_deref().unwrap_or("unknown").to_string(),
                h.server_state.as_deref().unwrap_or("unknown").to_string(),
            );
            let changed = last.get(&h.stream) != Some(&states);
            last.insert(h.stream, states.clone());
            let i = self.packet_of(h.frame);
            let row = out.entry(i).or_default();
            let arrow = if h.dir == Dir::C2s { "→" } else { "←" };
            let frame = format!("{} {arrow}", h.name);
            match row.iter_mut().find(|b| b.stream == h.stream) {
                Some(b) => {
                    b.frames = append_frame(&b.frames, &frame);
                    (b.client_state, b.server_state) = states;
                    b.notable |= changed || h.frame_type != 0;
                }
                None if bands < MAX_BANDS => {
                    bands += 1;
                    row.push(Band {
                        stream: h.stream,
                        frame: self.packets[i].frame,
                        lane,
                        frames: frame,
                        client_state: states.0,
                        server_state: states.1,
                        notable: changed || h.frame_type != 0,
                    });
                }
                None => bands_more += 1,
            }
        }
        out.retain(|_, v| !v.is_empty());
        self.h2_streams = lanes.len() + more.len();
        self.h2_streams_more = more.len();
        self.bands_more = bands_more;
        out
    }

    /// Did either endpoint's state change with packet `i` (the first packet always counts)?
    pub fn state_changed(&self, i: usize) -> (bool, bool) {
        let p = self.packets[i];
        match i.checked_sub(1).map(|j| self.packets[j]) {
            None => (true, true),
            Some(q) => (
                q.client_state != p.client_state,
                q.server_state != p.server_state,
            ),
        }
    }

    /// The rows to draw: every segment, with runs of ordinary ones folded when the connection
    /// is long.
    pub fn rows(&self) -> Vec<Row> {
        let n = self.packets.len();
        if n <= CONDENSE_ABOVE {
            return (0..n).map(Row::Seg).collect();
        }
        let marks = self.marks();
        let plain: Vec<bool> = (0..n)
            .map(|i| {
                let (c, s) = self.state_changed(i);
                is_ordinary(self.packets[i])
                    && !c
                    && !s
                    && !marks.contains_key(&i)
                    && !self.tls_states.contains_key(&i)
                    && !self
                        .bands
                        .get(&i)
                        .is_some_and(|b| b.iter().any(|b| b.notable))
            })
            .collect();
        let mut rows = Vec::new();
        let mut i = 0;
        while i < n {
            if !plain[i] {
                rows.push(Row::Seg(i));
                i += 1;
                continue;
            }
            let mut j = i;
            while j < n && plain[j] && j - i < MAX_FOLD {
                j += 1;
            }
            if j - i >= MIN_FOLD {
                rows.push(Row::Fold { from: i, to: j });
            } else {
                rows.extend((i..j).map(Row::Seg));
            }
            i = j;
        }
        rows
    }
}

/// A segment that tells nothing new on its own: ACK (maybe PSH), no analysis event except a
/// window update (routine while a receiver drains its buffer).
pub fn is_ordinary(p: &PacketRec) -> bool {
    p.flags.iter().any(|f| f == "ACK")
        && p.flags.iter().all(|f| f == "ACK" || f == "PSH")
        && p.analysis.iter().all(|a| a == "window_update")
}

/// Analysis events worth colouring a segment for (everything but routine window updates).
pub fn notable(p: &PacketRec) -> bool {
    p.analysis.iter().any(|a| a != "window_update")
}

/// Wireshark's flow-graph label: `[SYN, ACK] Seq=0 Ack=1 Win=65160 Len=0`.
pub fn seg_label(p: &PacketRec) -> String {
    let mut s = format!("[{}] Seq={}", p.flags.join(", "), p.seq);
    if let Some(a) = p.ack {
        s.push_str(&format!(" Ack={a}"));
    }
    s.push_str(&format!(" Win={} Len={}", p.win, p.len));
    s
}

/// The analysis events of a segment, Wireshark style: `dup_ack #2 of 17`.
pub fn analysis_label(p: &PacketRec) -> String {
    p.analysis
        .iter()
        .map(|a| match (a.as_ref(), p.dup_ack_num, p.dup_ack_frame) {
            ("dup_ack", Some(n), Some(f)) => format!("dup_ack #{n} of {f}"),
            _ => a.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a folded run contains, in one line: `▸ 83 similar segments (→ 5 data 10 ACK, ← 67 data
/// 1 ACK; 87.9 KB) …`.
pub fn fold_label(pk: &[&PacketRec]) -> String {
    let (mut data, mut acks, mut bytes) = ([0u64; 2], [0u64; 2], 0u64);
    for p in pk {
        let d = p.dir.idx();
        if p.len > 0 {
            data[d] += 1;
            bytes += p.len as u64;
        } else {
            acks[d] += 1;
        }
    }
    let mut parts = Vec::new();
    for dir in [Dir::C2s, Dir::S2c] {
        let d = dir.idx();
        let mut s = String::from(if dir == Dir::C2s { "→" } else { "←" });
        if data[d] > 0 {
            s.push_str(&format!(" {} data", data[d]));
        }
        if acks[d] > 0 {
            s.push_str(&format!(" {} ACK", acks[d]));
        }
        if data[d] + acks[d] > 0 {
            parts.push(s);
        }
    }
    format!(
        "▸ {} similar segments ({}; {}) …",
        pk.len(),
        parts.join(", "),
        human_bytes(bytes)
    )
}

/// `client_hello` → `ClientHello`.
fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Add `frame` to a band's list, counting repeats of the last one: `DATA ← ×3`.
fn append_frame(list: &str, frame: &str) -> String {
    if list.ends_with('…') {
        return list.to_string();
    }
    if list.len() > 80 {
        return format!("{list}, …");
    }
    let (head, last) = list.rsplit_once(", ").unwrap_or(("", list));
    let (name, n) = match last.rsplit_once(" ×") {
        Some((name, n)) => (name, n.parse::<u32>().unwrap_or(1)),
        None => (last, 1),
    };
    let joined = |tail: String| {
        if head.is_empty() {
            tail
        } else {
            format!("{head}, {tail}")
        }
    };
    if name == frame {
        joined(format!("{frame} ×{}", n + 1))
    } else {
        format!("{list}, {frame}")
    }
}

fn http_text(h: &HttpRec) -> String {
    let mut s = match (&h.method, &h.status) {
        (Some(m), _) => format!("{m} {} {}", h.uri.as_deref().unwrap_or(""), h.version),
        (None, Some(st)) => format!("{} {st} {}", h.version, h.reason.as_deref().unwrap_or("")),
        _ => format!("HTTP message {}", h.version),
    };
    if let Some(u) = &h.upgrade {
        s.push_str(&format!(" (upgrade: {u})"));
    }
    if !h.carries.is_empty() {
        s.push_str(&format!(" carries {}", h.carries.join("+")));
    }
    s.trim_end().to_string()
}

fn ws_text(w: &WsRec) -> String {
    let op = match w.opcode {
        0 => "continuation",
        1 => "text",
        2 => "binary",
        8 => "close",
        9 => "ping",
        10 => "pong",
        _ => "reserved",
    };
    let mut s = format!("WS {op} {} B", w.len);
    if !w.fin {
        s.push_str(" (not fin)");
    }
    if let Some(c) = w.close_code {
        s.push_str(&format!(" code {c}"));
    }
    s
}

/// `1.5 KB`, `3.2 MB`: sizes for people.
pub fn human_bytes(n: u64) -> String {
    match n {
        0..=9_999 => format!("{n} B"),
        10_000..=9_999_999 => format!("{:.1} KB", n as f64 / 1e3),
        _ => format!("{:.1} MB", n as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(frame: u64, dir: Dir, flags: &[&str], len: u32, states: (&str, &str)) -> Record {
        Record::Packet(PacketRec {
            frame,
            ts: frame as f64 * 0.001,
            conn: 7,
            dir,
            flags: flags.iter().map(|s| s.to_string().into()).collect(),
            len,
            ack: Some(1),
            client_state: states.0.to_string().into(),
            server_state: states.1.to_string().into(),
            ..PacketRec::default()
        })
    }

    fn long_conn(n: u64) -> Vec<Record> {
        let est = ("ESTABLISHED", "ESTABLISHED");
        let mut v = vec![
            pkt(1, Dir::C2s, &["SYN"], 0, ("SYN_SENT", "LISTEN")),
            pkt(
                2,
                Dir::S2c,
                &["SYN", "ACK"],
                0,
                ("ESTABLISHED", "SYN_RECEIVED"),
            ),
            pkt(3, Dir::C2s, &["ACK"], 0, est),
        ];
        for f in 4..4 + n {
            let dir = if f % 3 == 0 { Dir::C2s } else { Dir::S2c };
            let len = if dir == Dir::S2c { 1448 } else { 0 };
            v.push(pkt(f, dir, &["ACK"], len, est));
        }
        v
    }

    #[test]
    fn short_connections_are_not_folded() {
        let recs = long_conn(20);
        let views = group(&recs);
        assert_eq!(views.len(), 1);
        let rows = views[0].rows();
        assert_eq!(rows.len(), 23);
        assert!(rows.iter().all(|r| matches!(r, Row::Seg(_))));
    }

    #[test]
    fn long_runs_fold_and_every_packet_stays_accounted_for() {
        let n = 1000;
        let mut recs = long_conn(n);
        // A retransmission in the middle breaks the run, and an HTTP message marks a frame.
        if let Record::Packet(p) = &mut recs[500] {
            p.analysis.push("retransmission".into());
        }
        recs.push(Record::Http(Box::new(HttpRec {
            conn: 7,
            dir: Dir::C2s,
            frame: 300,
            method: Some("GET".into()),
            uri: Some("/".into()),
            version: "HTTP/1.1".into(),
            ..HttpRec::default()
        })));
        let views = group(&recs);
        let v = &views[0];
        let rows = v.rows();
        let mut covered = 0;
        for r in &rows {
            covered += match r {
                Row::Seg(_) => 1,
                Row::Fold { from, to } => {
                    assert!(to - from >= MIN_FOLD && to - from <= MAX_FOLD);
                    to - from
                }
            };
        }
        assert_eq!(covered, v.packets.len());
        assert!(rows.len() < 20, "{} rows", rows.len());
        assert!(rows.contains(&Row::Seg(500)));
        let marked = v.packets.iter().position(|p| p.frame == 300).unwrap();
        assert!(rows.contains(&Row::Seg(marked)));
        assert_eq!(v.marks()[&marked][0].text, "GET / HTTP/1.1");
    }

    /// Bounded: at most [`MAX_LANES`] streams and [`MAX_BANDS`] bands, the rest counted; a
    /// segment with frames on a stream whose state changed is never folded away.
    #[test]
    fn h2_bands_are_bounded_and_counted() {
        let mut recs = long_conn(1500);
        let frames: Vec<u64> = recs
            .iter()
            .filter_map(|r| match r {
                Record::Packet(p) if p.frame >= 4 => Some(p.frame),
                _ => None,
            })
            .collect();
        for (k, f) in frames.iter().enumerate() {
            let stream = 1 + 2 * (k as u32 % 20);
            let state = if k < 20 { "open" } else { "half_closed_local" };
            recs.push(Record::H2(H2Rec {
                conn: 7,
                frame: *f,
                stream,
                name: "DATA".into(),
                client_state: Some(state.into()),
                server_state: Some("open".into()),
                ..H2Rec::default()
            }));
        }
        let views = group(&recs);
        let v = &views[0];
        assert_eq!((v.h2_streams, v.h2_streams_more), (20, 12));
        let drawn: usize = v.bands.values().map(Vec::len).sum();
        assert_eq!(drawn, MAX_BANDS);
        assert!(v.bands_more > 0);
        assert!(v.bands.values().flatten().all(|b| b.lane < MAX_LANES));
        let first = v.packets.iter().position(|p| p.frame == frames[0]).unwrap();
        assert!(v.rows().contains(&Row::Seg(first)));
    }

    /// TLS 1.2 as the messages show it: each endpoint's label at the packet that changed it.
    #[test]
    fn tls_labels_follow_the_messages() {
        let mut recs = long_conn(6);
        let msg = |frame, dir, name: &str| {
            Record::TlsMsg(TlsMsgRec {
                conn: 7,
                dir,
                frame,
                msg: name.to_string().into(),
                ..TlsMsgRec::default()
            })
        };
        recs.extend([
            msg(4, Dir::C2s, "client_hello"),
            msg(5, Dir::S2c, "server_hello"),
            msg(5, Dir::S2c, "server_hello_done"),
            msg(6, Dir::C2s, "client_key_exchange"),
            msg(6, Dir::C2s, "change_cipher_spec"),
            msg(6, Dir::C2s, "encrypted_handshake"),
            msg(7, Dir::S2c, "change_cipher_spec"),
            msg(7, Dir::S2c, "encrypted_handshake"),
        ]);
        let views = group(&recs);
        let at = |frame: u64| {
            let i = views[0].packet_of(frame);
            views[0].tls_states[&i].clone()
        };
        let s = |x: &str| Some(x.to_string());
        assert_eq!(at(4), [s("ClientHello sent"), s("got ClientHello")]);
        assert_eq!(at(5), [s("got ServerHelloDone"), s("ServerHelloDone sent")]);
        assert_eq!(at(6), [s("Finished sent"), s("got ChangeCipherSpec")]);
        assert_eq!(at(7), [s("handshake done"), s("handshake done")]);
    }

    #[test]
    fn labels_read_like_wireshark() {
        let recs = long_conn(0);
        let views = group(&recs);
        let syn_ack = views[0].packets[1];
        assert_eq!(seg_label(syn_ack), "[SYN, ACK] Seq=0 Ack=1 Win=0 Len=0");
        let recs = long_conn(3);
        let views = group(&recs);
        let label = fold_label(&views[0].packets[3..6]);
        assert_eq!(label, "▸ 3 similar segments (→ 1 ACK, ← 2 data; 2896 B) …");
        assert_eq!(human_bytes(87_489), "87.5 KB");
    }
}
