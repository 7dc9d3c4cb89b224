//! Whole TCP streams from real captures through reassembly and the HTTP/WebSocket parsers,
//! checked against tshark 4.0's dissection (and, for the pipelined capture, the client's own log).
//!
//! The fixtures (`tests/fixtures/http/*.segments.tsv`, made by `make.py` there) hold one row per
//! TCP segment as tshark decodes it: relative seq/ack, wire length, flags and the captured payload.
//! [`Harness`] plays the part of the TCP tracker exactly as the engine does: it pushes each
//! segment into the direction's [`Reassembler`], reports ACKs of never-seen bytes with `acked`,
//! hands every chunk to [`HttpConn`] with the frame that delivered it, and ends a direction at its
//! FIN (once everything before the FIN is in), at a RST, or at the end of input.

use base64::Engine as _;
use statescope::capture::Timestamp;
use statescope::http::HttpConn;
use statescope::record::{Dir, HttpRec, Record, WsRec};
use statescope::tcp::reassembly::{Chunk, Reassembler};
use std::collections::BTreeMap;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/http");

/// One TCP segment of a fixture.
#[derive(Clone)]
struct Seg {
    frame: u64,
    stream: u64,
    dir: Dir,
    seq: u64,
    ack: Option<u64>,
    len: u32,
    flags: String,
    data: Vec<u8>,
}

fn load(name: &str) -> Vec<Seg> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{name}.segments.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            Seg {
                frame: f[0].parse().unwrap(),
                stream: f[1].parse().unwrap(),
                dir: if f[2] == "c2s" { Dir::C2s } else { Dir::S2c },
                seq: f[3].parse().unwrap(),
                ack: f[4].parse().ok(),
                len: f[5].parse().unwrap(),
                flags: f[6].to_string(),
                data: base64::engine::general_purpose::STANDARD
                    .decode(f.get(7).unwrap_or(&""))
                    .unwrap(),
            }
        })
        .collect()
}

/// One connection as the engine drives it.
struct Stream {
    reass: [Reassembler; 2],
    http: HttpConn,
    /// Position of each direction's FIN, once seen.
    fin: [Option<u64>; 2],
    ended: [bool; 2],
    /// `--follow` text of this stream, when asked for.
    follow: Option<String>,
}

/// Tracker stand-in: segments in, records out.
struct Harness {
    streams: BTreeMap<u64, Stream>,
    out: Vec<Record>,
    /// Stream whose Follow text is kept.
    follow: Option<u64>,
}

impl Harness {
    fn new() -> Self {
        Harness {
            streams: BTreeMap::new(),
            out: Vec::new(),
            follow: None,
        }
    }

    fn segment(&mut self, s: &Seg) {
        let st = self.streams.entry(s.stream).or_insert_with(|| Stream {
            reass: [Reassembler::new(4 << 20), Reassembler::new(4 << 20)],
            http: HttpConn::new(s.stream),
            fin: [None, None],
            ended: [false, false],
            follow: (self.follow == Some(s.stream)).then(String::new),
        });
        let (d, r) = (s.dir.idx(), s.dir.reverse());
        let ts = Timestamp(s.frame as i64);
        let out = &mut self.out;
        if !s.flags.contains('S') && s.len > 0 {
            let (reass, http, fo) = (&mut st.reass[d], &mut st.http, &mut st.follow);
            reass.push(s.seq, s.len, &s.data, &mut |c| {
                deliver(http, fo, s.dir, c, s.frame, ts, out)
            });
        }
        if s.flags.contains('F') {
            st.fin[d] = Some(s.seq + u64::from(s.len));
        }
        // The peer acknowledges bytes of the reverse direction; a FIN's number is not a byte.
        if let (Some(ack), true) = (s.ack, s.flags.contains('A')) {
            let upto = st.fin[r.idx()].map_or(ack, |f| ack.min(f));
            let (reass, http, fo) = (&mut st.reass[r.idx()], &mut st.http, &mut st.follow);
            reass.acked(upto, &mut |c| deliver(http, fo, r, c, s.frame, ts, out));
        }
        for dir in [Dir::C2s, Dir::S2c] {
            let i = dir.idx();
            let fin_reached = st.fin[i].is_some_and(|f| st.reass[i].next() >= f);
            if !st.ended[i] && (fin_reached || s.flags.contains('R')) {
                end(st, dir, s.frame, out);
            }
        }
    }

    /// End every direction still open; the records and every connection's diagnostics.
    fn finish(mut self) -> (Vec<Record>, Vec<String>) {
        let last = u64::MAX;
        for st in self.streams.values_mut() {
            for dir in [Dir::C2s, Dir::S2c] {
                if !st.ended[dir.idx()] {
                    end(st, dir, last, &mut self.out);
                }
            }
        }
        let diags = self
            .streams
            .values()
            .flat_map(|s| s.http.diagnostics().to_vec())
            .collect();
        (self.out, diags)
    }
}

fn end(st: &mut Stream, dir: Dir, frame: u64, out: &mut Vec<Record>) {
    let (reass, http, fo) = (&mut st.reass[dir.idx()], &mut st.http, &mut st.follow);
    let ts = Timestamp(frame as i64);
    reass.finish(&mut |c| deliver(http, fo, dir, c, frame, ts, out));
    http.on_end(dir, frame, ts, out);
    st.ended[dir.idx()] = true;
}

fn deliver(
    http: &mut HttpConn,
    follow: &mut Option<String>,
    dir: Dir,
    c: Chunk<'_>,
    frame: u64,
    ts: Timestamp,
    out: &mut Vec<Record>,
) {
    if let Some(text) = follow {
        text.push_str(&statescope::http::follow::format_chunk(dir, &c));
    }
    match c {
        Chunk::Data(d) => http.on_data(dir, d, frame, ts, out),
        Chunk::Gap(n) => http.on_gap(dir, n, frame, out),
    }
}

fn replay_diags(name: &str) -> (Vec<Record>, Vec<String>) {
    let mut h = Harness::new();
    for s in load(name) {
        h.segment(&s);
    }
    h.finish()
}

fn replay(name: &str) -> Vec<Record> {
    replay_diags(name).0
}

// ---- the tshark oracle ---------------------------------------------------------------------------

/// What tshark saw on one stream, in order, each with its frame.
#[derive(Default, Debug, PartialEq)]
struct Seen {
    requests: Vec<(String, String, u64)>,
    responses: Vec<(u16, u64)>,
    ws: Vec<(u8, u64)>,
}

fn oracle(name: &str) -> BTreeMap<u64, Seen> {
    let text = std::fs::read_to_string(format!("{FIXTURES}/{name}.http.tsv")).unwrap();
    let mut lines = text.lines();
    let cols: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |row: &[&str], name: &str| -> String {
        let i = cols.iter().position(|c| *c == name).unwrap();
        row.get(i).unwrap_or(&"").to_string()
    };
    let mut seen: BTreeMap<u64, Seen> = BTreeMap::new();
    for l in lines {
        let row: Vec<&str> = l.split('\t').collect();
        let frame: u64 = col(&row, "frame.number").parse().unwrap();
        let Ok(stream) = col(&row, "tcp.stream").parse::<u64>() else {
            continue;
        };
        let s = seen.entry(stream).or_default();
        let methods = col(&row, "http.request.method");
        let uris = col(&row, "http.request.uri");
        for (m, u) in methods.split(',').zip(uris.split(',')) {
            if !m.is_empty() {
                s.requests.push((m.into(), u.into(), frame));
            }
        }
        for c in col(&row, "http.response.code")
            .split(',')
            .filter(|c| !c.is_empty())
        {
            s.responses.push((c.parse().unwrap(), frame));
        }
        for o in col(&row, "websocket.opcode")
            .split(',')
            .filter(|c| !c.is_empty())
        {
            s.ws.push((o.parse().unwrap(), frame));
        }
    }
    seen
}

fn ours(recs: &[Record]) -> BTreeMap<u64, Seen> {
    let mut seen: BTreeMap<u64, Seen> = BTreeMap::new();
    for r in recs {
        match r {
            Record::Http(h) => {
                let s = seen.entry(h.conn).or_default();
                // tshark reports a message at the frame completing it, body included.
                let at = h.end_frame.unwrap_or(h.frame);
                match (&h.method, h.status) {
                    (Some(m), _) => s.requests.push((m.to_string(), h.uri.clone().unwrap(), at)),
                    (None, Some(c)) => s.responses.push((c, at)),
                    _ => panic!("{h:?}"),
                }
            }
            Record::Ws(w) => seen.entry(w.conn).or_default().ws.push((w.opcode, w.frame)),
            _ => {}
        }
    }
    seen
}

fn http_recs(recs: &[Record]) -> Vec<&HttpRec> {
    recs.iter()
        .filter_map(|r| match r {
            Record::Http(h) => Some(&**h),
            _ => None,
        })
        .collect()
}

/// Our records agree with tshark message for message, frame for frame.
fn agrees_with_tshark(name: &str) -> Vec<Record> {
    let (recs, diags) = replay_diags(name);
    assert!(diags.is_empty(), "{name}: {diags:?}");
    let want = oracle(name);
    let got = ours(&recs);
    // A fixture may keep only some streams of its capture.
    let kept: std::collections::BTreeSet<u64> = load(name).iter().map(|s| s.stream).collect();
    assert!(!kept.is_empty());
    for s in want.keys().filter(|s| kept.contains(s)) {
        assert_eq!(got.get(s), want.get(s), "{name} stream {s}");
    }
    for s in got.keys() {
        assert!(
            want.contains_key(s),
            "{name}: messages on stream {s} where tshark saw none"
        );
    }
    recs
}

// ---- the captures ------------------------------------------------------------------------------

#[test]
fn keepalive_five_gets() {
    let recs = agrees_with_tshark("http-keepalive");
    let h = http_recs(&recs);
    assert_eq!(h.len(), 10);
    let bodies: Vec<u64> = h
        .iter()
        .filter(|r| r.status.is_some())
        .map(|r| r.body_len)
        .collect();
    assert_eq!(bodies, [556, 100, 20000, 153, 65536]);
    assert!(h.iter().all(|r| r.end_frame.is_some()));
    assert_eq!(h[0].carries[..], ["Host"]);
    assert_eq!(h[1].request_frame, Some(h[0].frame));
}

#[test]
fn pipelined_matches_the_clients_own_log() {
    let recs = agrees_with_tshark("http-pipelined");
    // The client's log: method status body_bytes, in order of responses.
    let log = std::fs::read_to_string(format!("{FIXTURES}/http-pipelined.app.txt")).unwrap();
    let want: Vec<(String, u16, u64)> = log
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("after"))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].into(), f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect();
    let h = http_recs(&recs);
    let method_of = |frame: Option<u64>| {
        h.iter()
            .find(|r| r.method.is_some() && Some(r.frame) == frame)
            .and_then(|r| r.method.as_deref().map(str::to_owned))
            .unwrap()
    };
    let mut got: Vec<(String, u16, u64)> = h
        .iter()
        .filter(|r| r.status.is_some())
        .map(|r| (method_of(r.request_frame), r.status.unwrap(), r.body_len))
        .collect();
    // The client logs the interim 100 after the final answer to the previous request; order
    // both by (request, interim first) is the protocol order, so compare as multisets.
    got.sort();
    let mut want = want;
    want.sort();
    assert_eq!(got, want);
    let chunked = h.iter().find(|r| r.chunked).unwrap();
    assert_eq!(chunked.body_len, 3438);
    let head = h
        .iter()
        .find(|r| r.method.as_deref() == Some("HEAD"))
        .unwrap();
    let head_resp = h
        .iter()
        .find(|r| r.request_frame == Some(head.frame) && r.status.is_some());
    assert_eq!(head_resp.unwrap().content_length, Some(5000));
    assert_eq!(head_resp.unwrap().body_len, 0);
}

#[test]
fn websocket_frames_match_tshark_frame_by_frame() {
    let recs = agrees_with_tshark("websocket");
    let ws: Vec<&WsRec> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Ws(w) => Some(w),
            _ => None,
        })
        .collect();
    assert_eq!(ws.len(), 19);
    assert!(ws.iter().filter(|w| w.dir == Dir::C2s).all(|w| w.masked));
    assert!(ws.iter().filter(|w| w.dir == Dir::S2c).all(|w| !w.masked));
    assert!(ws.iter().any(|w| w.len == 70000), "64-bit length");
    let closes: Vec<Option<u16>> = ws
        .iter()
        .filter(|w| w.opcode == 8)
        .map(|w| w.close_code)
        .collect();
    assert_eq!(closes.len(), 2);
    assert!(closes.iter().all(|c| c.is_some()), "{closes:?}");
    let h = http_recs(&recs);
    assert_eq!(h[1].upgrade.as_deref(), Some("websocket"));
}

#[test]
fn close_delimited_and_seq_wrap() {
    agrees_with_tshark("http-close");
    agrees_with_tshark("seq-wrap");
}

#[test]
fn many_short_connections() {
    let recs = agrees_with_tshark("many-conns");
    assert!(http_recs(&recs).len() >= 70);
}

#[test]
fn reordered_segments_with_snaplen_cut_bodies() {
    // Bodies beyond relative seq 2048 keep their length but no captured bytes: gaps inside a
    // Content-Length body must not lose the framing.
    let recs = replay("reorder");
    let h = http_recs(&recs);
    assert_eq!(h.len(), 2, "{h:?}");
    let resp = h[1];
    assert_eq!(resp.status, Some(200));
    assert!(resp.end_frame.is_some());
    let want = oracle("reorder");
    let got = ours(&recs);
    assert_eq!(got[&0].requests, want[&0].requests);
    assert_eq!(got[&0].responses.len(), 1);
    assert_eq!(got[&0], want[&0], "even the frame completing the response");
}

#[test]
fn lost_segments_become_gaps_via_acks() {
    // Receiver-side capture with 2% loss before the capture point, snaplen 384, cut at 1200
    // frames: the response is still being received when input ends.
    let recs = replay("bulk-loss-rx");
    let h = http_recs(&recs);
    assert_eq!(h.len(), 2, "{h:?}");
    assert_eq!(h[0].method.as_deref(), Some("GET"));
    assert_eq!(h[1].status, Some(200));
    assert!(h[1].body_len > 0 && h[1].body_len < h[1].content_length.unwrap());
    assert_eq!(h[1].end_frame, None, "cut short by the end of input");
}

#[test]
fn same_records_whatever_the_segmentation() {
    // Re-cut every payload of the keep-alive and websocket captures into 7-byte segments: the
    // reassembler and the parsers must produce the same messages.
    for name in ["http-pipelined", "websocket"] {
        let whole = ours(&replay(name));
        let mut h = Harness::new();
        for s in load(name) {
            if s.data.len() as u32 == s.len && s.len > 7 && !s.flags.contains('F') {
                for (k, piece) in s.data.chunks(7).enumerate() {
                    let sub = Seg {
                        frame: s.frame,
                        stream: s.stream,
                        dir: s.dir,
                        seq: s.seq + 7 * k as u64,
                        ack: s.ack,
                        len: piece.len() as u32,
                        flags: s.flags.clone(),
                        data: piece.to_vec(),
                    };
                    h.segment(&sub);
                }
            } else {
                h.segment(&s);
            }
        }
        assert_eq!(ours(&h.finish().0), whole, "{name}");
    }
}

// ---- loopback recordings (tests/fixtures/http/record_lo.py says what was sent) ------------------

/// One line per record: what a reader of the records would check.
fn lines(recs: &[Record]) -> Vec<String> {
    recs.iter()
        .map(|r| match r {
            Record::Http(h) => format!(
                "{} {} @{}..{} body={} cl={} req={}{}{}",
                h.dir.as_str(),
                h.method
                    .as_ref()
                    .map(|m| format!("{m} {}", h.uri.as_deref().unwrap_or("")))
                    .unwrap_or_else(|| h.status.unwrap_or(0).to_string()),
                h.frame,
                h.end_frame.map_or("-".into(), |f| f.to_string()),
                h.body_len,
                h.content_length.map_or("-".into(), |c| c.to_string()),
                h.request_frame.map_or("-".into(), |f| f.to_string()),
                if h.chunked { " chunked" } else { "" },
                if h.carries.is_empty() {
                    String::new()
                } else {
                    format!(" carries={}", h.carries.join("+"))
                },
            ),
            Record::Ws(w) => format!(
                "{} ws op={} fin={} masked={} len={} @{}{}",
                w.dir.as_str(),
                w.opcode,
                w.fin,
                w.masked,
                w.len,
                w.frame,
                w.close_code.map_or(String::new(), |c| format!(" code={c}"))
            ),
            _ => String::new(),
        })
        .collect()
}

#[test]
fn loopback_pipelined_head_chunked_trailers_304_204_expect_until_close() {
    let (recs, diags) = replay_diags("lo-http");
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(
        lines(&recs),
        [
            "c2s GET /a @4..4 body=0 cl=- req=- carries=Host",
            "c2s HEAD /b @4..4 body=0 cl=- req=- carries=Host",
            "c2s GET /c @4..4 body=0 cl=- req=-",
            "s2c 200 @6..6 body=11 cl=11 req=4",
            // The pipelined HEAD's answer declares 5000 bytes and has none (tshark 4.0 waits
            // for them and misreads what follows).
            "s2c 200 @8..8 body=0 cl=5000 req=4",
            "s2c 200 @10..12 body=21 cl=- req=4 chunked",
            "c2s GET /d @14..14 body=0 cl=- req=- carries=Host+Cookie",
            "c2s GET /e @16..16 body=0 cl=- req=- carries=Authorization",
            "s2c 304 @18..18 body=0 cl=1234 req=14",
            "s2c 204 @20..20 body=0 cl=- req=16",
            "s2c 100 @23..23 body=0 cl=- req=22",
            "c2s POST /f @22..24 body=10 cl=10 req=- carries=Host",
            // No length and Connection: close: the body ends when the server's FIN arrives.
            "s2c 200 @25..31 body=3500 cl=- req=22",
        ]
    );
}

#[test]
fn loopback_websocket_16_and_64_bit_lengths_fragments_close_codes() {
    let (recs, diags) = replay_diags("lo-ws");
    assert!(diags.is_empty(), "{diags:?}");
    assert_eq!(
        lines(&recs),
        [
            "c2s GET /chat @4..4 body=0 cl=- req=- carries=Host",
            "s2c 101 @6..6 body=0 cl=- req=4",
            "c2s ws op=1 fin=true masked=true len=200 @8",
            "c2s ws op=2 fin=false masked=true len=3 @10",
            "c2s ws op=9 fin=true masked=true len=4 @12",
            "s2c ws op=10 fin=true masked=false len=4 @14",
            "c2s ws op=0 fin=false masked=true len=3 @15",
            "c2s ws op=0 fin=true masked=true len=3 @17",
            "s2c ws op=2 fin=true masked=false len=1000 @19",
            "s2c ws op=2 fin=true masked=false len=70000 @22",
            "c2s ws op=8 fin=true masked=true len=5 @23 code=1000",
            "s2c ws op=8 fin=true masked=false len=2 @24 code=1001",
        ]
    );
    let Record::Http(up) = &recs[1] else { panic!() };
    assert_eq!(up.upgrade.as_deref(), Some("websocket"));
}

// ---- reordering, duplication and re-segmentation of real streams --------------------------------

/// Messages without frame numbers (which legitimately move when segments are reordered).
fn shape(recs: &[Record]) -> Vec<String> {
    recs.iter()
        .map(|r| match r {
            Record::Http(h) => format!(
                "{} {:?} {:?} {:?} body={} complete={}",
                h.dir.as_str(),
                h.method,
                h.uri,
                h.status,
                h.body_len,
                h.end_frame.is_some()
            ),
            Record::Ws(w) => format!("{} ws {} {} {}", w.dir.as_str(), w.opcode, w.fin, w.len),
            _ => String::new(),
        })
        .collect()
}

mod shuffled {
    use super::*;
    use proptest::prelude::*;

    /// Re-cut each data segment at random, repeat some pieces, and swap neighbours within a
    /// small window, as a path with reordering and retransmission would. ACKs are left out: an
    /// ACK overtaking its data would (rightly) declare a gap.
    fn mangle(segs: Vec<Seg>, seed: u64) -> Vec<Seg> {
        let mut x = seed | 1;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n.max(1)
        };
        let mut out = Vec::new();
        for s in segs {
            if s.len == 0 || s.flags.contains('S') || s.flags.contains('F') {
                out.push(Seg { ack: None, ..s });
                continue;
            }
            let mut at = 0usize;
            while at < s.data.len() {
                let n = 1 + rnd(900) as usize;
                let end = (at + n).min(s.data.len());
                let piece = Seg {
                    frame: s.frame,
                    stream: s.stream,
                    dir: s.dir,
                    seq: s.seq + at as u64,
                    ack: None,
                    len: (end - at) as u32,
                    flags: s.flags.clone(),
                    data: s.data[at..end].to_vec(),
                };
                if rnd(5) == 0 {
                    out.push(piece.clone()); // a retransmission
                }
                out.push(piece);
                at = end;
            }
        }
        // Swap neighbouring data segments of the same direction, never across a FIN.
        for i in 1..out.len() {
            let ok = |s: &Seg| s.len > 0 && !s.flags.contains('F');
            if rnd(3) == 0 && ok(&out[i]) && ok(&out[i - 1]) && out[i].dir == out[i - 1].dir {
                out.swap(i, i - 1);
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn same_messages_whatever_the_path(seed in any::<u64>()) {
            for name in ["http-pipelined", "lo-http", "lo-ws"] {
                let want = shape(&replay(name));
                let mut h = Harness::new();
                for s in mangle(load(name), seed) {
                    h.segment(&s);
                }
                let (got, diags) = h.finish();
                prop_assert!(diags.is_empty(), "{}: {:?}", name, diags);
                prop_assert_eq!(shape(&got), want, "{}", name);
            }
        }
    }
}

// ---- --follow ------------------------------------------------------------------------------------

#[test]
fn follow_text_is_tsharks() {
    // Not compared on snaplen-cut captures: tshark 4.0 prints a cut segment's missing tail only
    // once some earlier segment was lost, which is a quirk of its follow code, not a rule.
    for name in ["http-pipelined", "websocket"] {
        let want = std::fs::read_to_string(format!("{FIXTURES}/{name}.follow.txt")).unwrap();
        let mut h = Harness::new();
        h.follow = Some(0);
        for s in load(name) {
            h.segment(&s);
        }
        let text = h.streams[&0].follow.clone().unwrap();
        // tshark's banner names the endpoints (the fixture has no addresses): compare from the
        // first chunk on, and the banner's shape separately.
        let nodes: Vec<&str> = want.lines().filter(|l| l.starts_with("Node ")).collect();
        let banner = statescope::http::follow::format_header(0, &nodes[0][8..], &nodes[1][8..]);
        assert!(want.starts_with(&banner), "{name} banner");
        let ours = format!(
            "{banner}{text}{}",
            statescope::http::follow::format_footer()
        );
        assert_eq!(ours, want, "{name}");
    }
}

// ---- crafted captures through the real binary -----------------------------------------------------

/// One TCP connection built frame by frame (Ethernet, IPv4, TCP) into a legacy pcap in memory,
/// each side's sequence numbers kept as a real stack would.
struct Crafted {
    pcap: Vec<u8>,
    frames: u64,
    /// Next sequence number of the client and the server.
    next: [u32; 2],
}

impl Crafted {
    /// A connection through its three-way handshake.
    fn handshake() -> Crafted {
        let mut pcap = Vec::new();
        for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
            pcap.extend(v.to_le_bytes());
        }
        // The magic and version fields are one u32 each above only for brevity: fix version.
        pcap[4..8].copy_from_slice(&[2, 0, 4, 0]);
        let mut c = Crafted {
            pcap,
            frames: 0,
            next: [1_000, 50_000],
        };
        c.segment(true, "S", b"");
        c.segment(false, "SA", b"");
        c.segment(true, "A", b"");
        c
    }

    /// One segment from the client (`from_client`) or the server with `flags` (letters S A P
    /// F R) and `payload`; returns its frame number.
    fn segment(&mut self, from_client: bool, flags: &str, payload: &[u8]) -> u64 {
        let (me, peer) = if from_client { (0, 1) } else { (1, 0) };
        let (src, dst, sport, dport) = if from_client {
            ([10, 0, 0, 1], [10, 0, 0, 2], 40_000, 80)
        } else {
            ([10, 0, 0, 2], [10, 0, 0, 1], 80, 40_000)
        };
        let mut b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .tcp(sport, dport, self.next[me], 65_535);
        for f in flags.chars() {
            b = match f {
                'S' => b.syn(),
                'A' => b.ack(self.next[peer]),
                'P' => b.psh(),
                'F' => b.fin(),
                'R' => b.rst(),
                _ => panic!("flag {f}"),
            };
        }
        let mut frame = Vec::new();
        b.write(&mut frame, payload).unwrap();
        // A RST's data occupies no sequence space: the receiver never takes it in.
        let step = if flags.contains('R') {
            0
        } else {
            payload.len() as u32 + u32::from(flags.contains('S') || flags.contains('F'))
        };
        self.next[me] = self.next[me].wrapping_add(step);
        self.frames += 1;
        let us = self.frames * 100;
        for v in [
            1_700_000_000 + (us / 1_000_000) as u32,
            (us % 1_000_000) as u32,
            frame.len() as u32,
            frame.len() as u32,
        ] {
            self.pcap.extend(v.to_le_bytes());
        }
        self.pcap.extend(frame);
        self.frames
    }

    /// Send `bytes` from one side in segments of at most 1448 bytes, cut only between
    /// messages (`msgs` are the messages, concatenated); returns each message's frame.
    fn send_packed(&mut self, from_client: bool, msgs: &[Vec<u8>]) -> Vec<u64> {
        let mut frames = Vec::with_capacity(msgs.len());
        let mut seg = Vec::new();
        let mut waiting = 0;
        for m in msgs {
            if !seg.is_empty() && seg.len() + m.len() > 1448 {
                let f = self.segment(from_client, "AP", &seg);
                frames.extend(std::iter::repeat_n(f, waiting));
                seg.clear();
                waiting = 0;
            }
            seg.extend_from_slice(m);
            waiting += 1;
        }
        if !seg.is_empty() {
            let f = self.segment(from_client, "AP", &seg);
            frames.extend(std::iter::repeat_n(f, waiting));
        }
        frames
    }

    /// Both sides close.
    fn close(&mut self) {
        self.segment(true, "AF", b"");
        self.segment(false, "AF", b"");
        self.segment(true, "A", b"");
    }

    /// `statescope replay --format jsonl` on this capture: its `http` records.
    fn http_records(&self) -> Vec<serde_json::Value> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crafted.pcap");
        std::fs::write(&path, &self.pcap).unwrap();
        let out = assert_cmd::Command::cargo_bin("statescope")
            .unwrap()
            .args(["replay", "--format", "jsonl", "-q"])
            .arg(&path)
            .timeout(std::time::Duration::from_secs(120))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["type"] == "http")
            .collect()
    }
}

/// 100 k requests pipelined on one connection before the first response (far past the 4,096
/// the queue once held, after which every response was paired one request too late): every
/// response names its own request's frame, and a HEAD every 1,000 requests keeps its
/// response body-less.
#[test]
fn hundred_thousand_pipelined_requests_each_paired_with_its_response() {
    const N: usize = 100_000;
    let mut c = Crafted::handshake();
    let head = |i: usize| i % 1000 == 999;
    let requests: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            let m = if head(i) { "HEAD" } else { "GET" };
            format!("{m} /{i} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
        })
        .collect();
    let responses: Vec<Vec<u8>> = (0..N)
        .map(|i| {
            // The HEAD's answer declares the length a GET would get, and carries no body.
            let body = if head(i) { "" } else { "x" };
            format!("HTTP/1.1 200 R{i}\r\nContent-Length: 1\r\n\r\n{body}").into_bytes()
        })
        .collect();
    let req_frames = c.send_packed(true, &requests);
    c.send_packed(false, &responses);
    c.close();
    let recs = c.http_records();
    let (reqs, resps): (Vec<_>, Vec<_>) = recs.iter().partition(|r| r["dir"] == "c2s");
    assert_eq!((reqs.len(), resps.len()), (N, N));
    for i in 0..N {
        assert_eq!(reqs[i]["uri"], format!("/{i}"));
        assert_eq!(reqs[i]["frame"], req_frames[i], "request {i}");
        assert_eq!(resps[i]["reason"], format!("R{i}"));
        assert_eq!(
            resps[i]["request_frame"], req_frames[i],
            "response {i} paired with the wrong request"
        );
        assert_eq!(resps[i]["body_len"], u64::from(!head(i)), "response {i}");
        assert!(resps[i].get("unpaired").is_none(), "response {i}");
    }
}

/// Data on a RST is never the application's (RFC 1122 §4.2.2.12; tshark shows no request
/// there): a RST carrying a whole request with a Cookie, at the very sequence number the
/// client's next bytes take, yields no HTTP, and the real request sent there afterwards on the
/// same connection is found and paired.
#[test]
fn a_rst_carrying_a_request_yields_no_http_and_the_real_request_is_found() {
    let mut c = Crafted::handshake();
    c.segment(
        true,
        "AR",
        b"GET /evil HTTP/1.1\r\nHost: t\r\nCookie: sid=stolen\r\n\r\n",
    );
    let real = c.segment(true, "AP", b"GET /real HTTP/1.1\r\nHost: t\r\n\r\n");
    let answer = c.segment(
        false,
        "AP",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    );
    c.close();
    let recs = c.http_records();
    assert_eq!(recs.len(), 2, "{recs:#?}");
    assert_eq!(recs[0]["uri"], "/real");
    assert_eq!(recs[0]["frame"], real);
    assert!(recs[0]
        .get("carries")
        .is_none_or(|c| !c.to_string().contains("Cookie")));
    assert_eq!(recs[1]["status"], 200);
    assert_eq!(recs[1]["frame"], answer);
    assert_eq!(recs[1]["request_frame"], real);
    assert_eq!(recs[1]["body_len"], 2);
}
