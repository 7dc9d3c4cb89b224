//! Unit tests of the HTTP/2 connection parser on hand-built frames and header blocks.

use super::*;
use crate::record::{H2Rec, HttpRec};

fn frame(t: u8, flags: u8, sid: u32, payload: &[u8]) -> Vec<u8> {
    let l = (payload.len() as u32).to_be_bytes();
    let s = sid.to_be_bytes();
    let mut v = vec![l[1], l[2], l[3], t, flags, s[0], s[1], s[2], s[3]];
    v.extend_from_slice(payload);
    v
}

/// One side's HPACK encoder, by hand (RFC 7541 §6.1, §6.2.1): a field seen before is sent as
/// an index into the dynamic table, a new one as a literal added to the table; no Huffman
/// coding, no eviction (the tests stay far below 4096 bytes). So every block after the first
/// depends on the blocks before it, as real encoders' do.
struct Peer(Vec<(String, String)>);

impl Peer {
    fn new() -> Self {
        Peer(Vec::new())
    }
    fn block(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut b = Vec::new();
        for &(n, v) in fields {
            match self
                .0
                .iter()
                .position(|(en, ev)| (en.as_str(), ev.as_str()) == (n, v))
            {
                // Newest entry is index 62.
                Some(i) => b.push(0x80 | (62 + i) as u8),
                None => {
                    b.push(0x40);
                    for s in [n, v] {
                        b.push(s.len() as u8);
                        b.extend_from_slice(s.as_bytes());
                    }
                    self.0.insert(0, (n.to_string(), v.to_string()));
                }
            }
        }
        b
    }
}

fn h2(recs: &[Record]) -> Vec<&H2Rec> {
    recs.iter()
        .filter_map(|r| match r {
            Record::H2(f) => Some(f),
            _ => None,
        })
        .collect()
}

fn http(recs: &[Record]) -> Vec<&HttpRec> {
    recs.iter()
        .filter_map(|r| match r {
            Record::Http(h) => Some(&**h),
            _ => None,
        })
        .collect()
}

const TS: Timestamp = Timestamp(0);

/// A prior-knowledge connection whose client sent the preface, a GET of `path` on stream 1
/// (END_STREAM) and `more` requests (method, path) on streams 3, 5, ... without END_STREAM,
/// all in frame 1.
fn opened(path: &str, more: &[(&str, &str)]) -> (H2Conn, Peer, Peer, Vec<Record>) {
    let (mut c, s) = (Peer::new(), Peer::new());
    let mut h = H2Conn::prior_knowledge(1, true);
    let mut out = Vec::new();
    let mut bytes = PREFACE.to_vec();
    let first = c.block(&[(":method", "GET"), (":path", path)]);
    bytes.extend(frame(frame::HEADERS, 5, 1, &first));
    for (i, (m, p)) in more.iter().enumerate() {
        let b = c.block(&[(":method", m), (":path", p)]);
        bytes.extend(frame(frame::HEADERS, 4, 3 + 2 * i as u32, &b));
    }
    h.on_data(Dir::C2s, &bytes, 1, TS, &mut out);
    (h, c, s, out)
}

/// A request split over HEADERS and CONTINUATION with padding, a response with a padded
/// body, trailers; each record at the frame that completed it.
#[test]
fn continuation_padding_and_trailers() {
    let (mut c, mut s) = (Peer::new(), Peer::new());
    let mut h = H2Conn::prior_knowledge(7, true);
    let mut out = Vec::new();
    let req = c.block(&[(":method", "POST"), (":path", "/up"), (":authority", "x")]);
    let (a, b) = req.split_at(4);
    // The server's SETTINGS: the client may send 10 bytes on a stream before an update.
    h.on_data(
        Dir::S2c,
        &frame(frame::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 10]),
        1,
        TS,
        &mut out,
    );
    let mut bytes = PREFACE.to_vec();
    // HEADERS, PADDED with 3 bytes of padding, no END_HEADERS.
    let mut p = vec![3];
    p.extend_from_slice(a);
    p.extend_from_slice(&[0, 0, 0]);
    bytes.extend(frame(frame::HEADERS, frame::PADDED, 1, &p));
    h.on_data(Dir::C2s, &bytes, 1, TS, &mut out);
    assert!(http(&out).is_empty(), "the block is not complete yet");
    h.on_data(
        Dir::C2s,
        &frame(frame::CONTINUATION, frame::END_HEADERS, 1, b),
        2,
        TS,
        &mut out,
    );
    // 5 body bytes with 2 of padding, then trailers ending the stream.
    h.on_data(
        Dir::C2s,
        &frame(frame::DATA, frame::PADDED, 1, &[2, 1, 2, 3, 4, 5, 0, 0]),
        3,
        TS,
        &mut out,
    );
    let trailers = c.block(&[("x-sum", "15")]);
    h.on_data(
        Dir::C2s,
        &frame(
            frame::HEADERS,
            frame::END_HEADERS | frame::END_STREAM,
            1,
            &trailers,
        ),
        4,
        TS,
        &mut out,
    );
    let msgs = http(&out);
    assert_eq!(msgs.len(), 1);
    let m = msgs[0];
    assert_eq!((m.frame, m.end_frame, m.body_len), (2, Some(4), 5));
    assert_eq!(
        (m.method.as_deref(), m.uri.as_deref()),
        (Some("POST"), Some("/up"))
    );
    assert_eq!(m.authority.as_deref(), Some("x"));
    let frames = h2(&out);
    assert_eq!(frames[1].pad_len, Some(3));
    assert_eq!(frames[0].settings, [(4, 10)]);
    // The server's SETTINGS made the client's initial stream window 10: 8 sent, 2 left.
    let data = frames.iter().find(|f| f.frame_type == frame::DATA).unwrap();
    assert_eq!(data.stream_window, Some(10 - 8));
    assert_eq!(data.conn_window, Some(65_535 - 8));
    assert_eq!(
        (data.client_state.as_deref(), data.server_state.as_deref()),
        (Some("open"), Some("open"))
    );
    let last = frames.last().unwrap();
    assert_eq!(last.client_state.as_deref(), Some("half_closed_local"));

    // The response refers to entries its own first block added: decodable in order.
    for (i, status) in ["200", "204"].into_iter().enumerate() {
        let sid = 1 + 2 * i as u32;
        if sid > 1 {
            let r = c.block(&[(":method", "GET"), (":path", "/"), (":authority", "x")]);
            h.on_data(
                Dir::C2s,
                &frame(frame::HEADERS, 5, sid, &r),
                10,
                TS,
                &mut out,
            );
        }
        let b = s.block(&[(":status", status), ("server", "unit")]);
        h.on_data(
            Dir::S2c,
            &frame(frame::HEADERS, 5, sid, &b),
            11 + i as u64,
            TS,
            &mut out,
        );
    }
    let statuses: Vec<_> = http(&out).iter().filter_map(|m| m.status).collect();
    assert_eq!(statuses, [200, 204]);
    let (sum, _) = h.finish();
    assert_eq!(sum.undecodable_blocks, [0, 0]);
    // Three entries: `:status 200`, `server unit` (referred to by the second response) and
    // `:status 204`, each name + value + 32 bytes.
    assert_eq!(
        (sum.hpack_entries[1], sum.hpack_size[1]),
        (Some(3), Some(3 * 42))
    );
}

/// A gap that swallows a header block makes that direction's later blocks undecodable; a
/// gap inside a DATA payload keeps both the framing and the table.
#[test]
fn gaps_and_the_hpack_table() {
    let (mut h, mut c, mut s, mut out) = opened("/a", &[]);
    // Response headers, then a 100-byte DATA frame of which 60 bytes are lost.
    h.on_data(
        Dir::S2c,
        &frame(frame::HEADERS, 4, 1, &s.block(&[(":status", "200")])),
        2,
        TS,
        &mut out,
    );
    let data = frame(frame::DATA, frame::END_STREAM, 1, &[7; 100]);
    h.on_data(Dir::S2c, &data[..30], 3, TS, &mut out);
    h.on_gap(Dir::S2c, 60, 4, &mut out);
    h.on_data(Dir::S2c, &data[90..], 5, TS, &mut out);
    let resp = http(&out).into_iter().find(|m| m.status.is_some()).unwrap();
    assert_eq!((resp.body_len, resp.end_frame), (40, Some(5)));
    assert!(h.sides[1].hpack.known());

    // Now a whole header block of the client's is lost: the next one cannot be decoded.
    let lost = frame(
        frame::HEADERS,
        5,
        3,
        &c.block(&[(":method", "GET"), (":path", "/secret")]),
    );
    h.on_gap(Dir::C2s, lost.len() as u64, 6, &mut out);
    let next = frame(
        frame::HEADERS,
        5,
        5,
        &c.block(&[(":method", "GET"), (":path", "/secret")]),
    );
    h.on_data(Dir::C2s, &next, 7, TS, &mut out);
    let m = http(&out)
        .into_iter()
        .find(|m| m.stream == Some(5))
        .unwrap();
    assert!(m.undecodable && m.uri.is_none(), "{m:?}");
    assert!(h2(&out).last().unwrap().undecodable);
    let (sum, diags) = h.finish();
    assert_eq!(sum.undecodable_blocks, [1, 0]);
    assert_eq!(sum.hpack_size[0], None);
    assert!(
        diags.iter().any(|d| d.contains("HPACK table unknown")),
        "{diags:?}"
    );
}

/// PUSH_PROMISE reserves a stream: its request comes from the promise, its states go
/// reserved → half-closed; RST_STREAM closes a stream and marks its message reset; GOAWAY
/// and an unknown frame type are reported.
#[test]
fn push_reset_goaway_and_unknown() {
    let (mut h, _, mut s, mut out) = opened("/", &[("PUT", "/x")]);
    let mut pp = vec![0, 0, 0, 2];
    pp.extend(s.block(&[(":method", "GET"), (":path", "/style.css")]));
    let mut b = frame(frame::PUSH_PROMISE, 4, 1, &pp);
    b.extend(frame(frame::HEADERS, 4, 2, &s.block(&[(":status", "200")])));
    b.extend(frame(frame::RST_STREAM, 0, 3, &[0, 0, 0, 8]));
    b.extend(frame(0xa, 0, 0, b"xy"));
    b.extend(frame(frame::GOAWAY, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 0]));
    h.on_data(Dir::S2c, &b, 2, TS, &mut out);
    let f = h2(&out);
    let promise = f
        .iter()
        .find(|f| f.frame_type == frame::PUSH_PROMISE)
        .unwrap();
    assert_eq!(promise.promised_stream, Some(2));
    let pushed = f.iter().find(|f| f.stream == 2).unwrap();
    assert_eq!(
        (
            pushed.client_state.as_deref(),
            pushed.server_state.as_deref()
        ),
        (Some("half_closed_local"), Some("half_closed_remote"))
    );
    let rst = f
        .iter()
        .find(|f| f.frame_type == frame::RST_STREAM)
        .unwrap();
    assert_eq!(
        (rst.error.as_deref(), rst.client_state.as_deref()),
        (Some("CANCEL"), Some("closed"))
    );
    assert_eq!(
        f.iter().find(|f| f.frame_type == 0xa).unwrap().name,
        "UNKNOWN"
    );
    assert_eq!(f.last().unwrap().last_stream, Some(3));
    let msgs = http(&out);
    let promised = msgs
        .iter()
        .find(|m| m.uri.as_deref() == Some("/style.css"))
        .unwrap();
    assert_eq!((promised.dir, promised.stream), (Dir::S2c, Some(2)));
    let put = msgs
        .iter()
        .find(|m| m.method.as_deref() == Some("PUT"))
        .unwrap();
    assert!(put.reset && put.end_frame.is_none());
}

/// Not the preface, frames cut at any byte, nonsense after the preface: never a panic, and
/// a wrong preface stops parsing with one diagnostic.
#[test]
fn bad_input_never_panics() {
    let mut h = H2Conn::prior_knowledge(1, true);
    let mut out = Vec::new();
    h.on_data(Dir::C2s, b"PRI * HTTP/1.1\r\n\r\n", 1, TS, &mut out);
    let (_, d) = h.finish();
    assert_eq!(d.len(), 1, "{d:?}");

    let mut c = Peer::new();
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(
        frame::HEADERS,
        5,
        1,
        &c.block(&[(":method", "GET"), (":path", "/")]),
    ));
    bytes.extend(frame(frame::SETTINGS, 0, 0, &[1, 2, 3])); // not a multiple of 6
    bytes.extend(frame(frame::DATA, frame::PADDED, 1, &[200, 1])); // padding past the end
    bytes.extend(frame(frame::WINDOW_UPDATE, 0, 0, &[0, 0, 1])); // short
    bytes.extend((0..=255u8).cycle().take(3000));
    for cut in 1..bytes.len().min(400) {
        let mut h = H2Conn::prior_knowledge(1, true);
        let mut out = Vec::new();
        for piece in bytes.chunks(cut) {
            h.on_data(Dir::C2s, piece, 1, TS, &mut out);
            h.on_data(Dir::S2c, piece, 1, TS, &mut out);
        }
        h.on_gap(Dir::C2s, 5, 2, &mut out);
        h.on_end(Dir::C2s, 3, TS, &mut out);
        h.on_end(Dir::S2c, 3, TS, &mut out);
        let _ = h.finish();
    }
}

/// A header block left unfinished (a HEADERS without END_HEADERS followed by another HEADERS)
/// or carried in a malformed frame never reaches the decoder: the table is unknown after it.
/// The control: the same blocks, whole, decode.
#[test]
fn unfinished_or_malformed_blocks_lose_the_table() {
    for broken in [true, false] {
        let (mut h, mut c, _, mut out) = opened("/", &[]);
        let b = c.block(&[(":method", "GET"), (":path", "/b")]);
        let flags = if broken { 0 } else { frame::END_HEADERS };
        h.on_data(
            Dir::C2s,
            &frame(frame::HEADERS, flags, 3, &b),
            2,
            TS,
            &mut out,
        );
        let b = c.block(&[(":method", "GET"), (":path", "/b")]);
        h.on_data(Dir::C2s, &frame(frame::HEADERS, 5, 5, &b), 3, TS, &mut out);
        let last = http(&out)
            .into_iter()
            .find(|m| m.stream == Some(5))
            .unwrap();
        assert_eq!(last.undecodable, broken, "{last:?}");
        assert_eq!(last.uri.is_some(), !broken);
    }
    for broken in [true, false] {
        let (mut h, mut c, _, mut out) = opened("/", &[]);
        let b = c.block(&[(":method", "GET"), (":path", "/c")]);
        // PADDED with a pad length past the frame's end, or a correct pad length of 0.
        let mut p = vec![if broken { 250 } else { 0 }];
        p.extend(&b);
        let f = frame(frame::HEADERS, 5 | frame::PADDED, 3, &p);
        h.on_data(Dir::C2s, &f, 2, TS, &mut out);
        let b = c.block(&[(":method", "GET"), (":path", "/c")]);
        h.on_data(Dir::C2s, &frame(frame::HEADERS, 5, 5, &b), 3, TS, &mut out);
        let last = http(&out)
            .into_iter()
            .find(|m| m.stream == Some(5))
            .unwrap();
        assert_eq!(last.undecodable, broken, "{last:?}");
    }
}

/// SETTINGS_HEADER_TABLE_SIZE honoured: once the client has acknowledged the server's 256,
/// a size update to 4096 in the client's next block is a decoding error (undecodable), while
/// one to 256 is followed (the table's maximum becomes 256). The control: without the
/// server's setting, the update to 4096 is allowed.
#[test]
fn header_table_size_setting_bounds_size_updates() {
    for (advertised, update, ok) in [
        (Some(256u32), [0x3f, 0xe1, 0x1f], false),
        (Some(256), [0x3f, 0xe1, 0x01], true),
        (None, [0x3f, 0xe1, 0x1f], true),
    ] {
        let (mut h, mut c, _, mut out) = opened("/", &[]);
        if let Some(v) = advertised {
            let mut p = vec![0, 1];
            p.extend(v.to_be_bytes());
            h.on_data(Dir::S2c, &frame(frame::SETTINGS, 0, 0, &p), 2, TS, &mut out);
            h.on_data(
                Dir::C2s,
                &frame(frame::SETTINGS, frame::ACK, 0, &[]),
                3,
                TS,
                &mut out,
            );
        }
        let mut b = update.to_vec();
        b.extend(c.block(&[(":method", "GET"), (":path", "/t")]));
        h.on_data(Dir::C2s, &frame(frame::HEADERS, 5, 3, &b), 4, TS, &mut out);
        let m = http(&out)
            .into_iter()
            .find(|m| m.stream == Some(3))
            .unwrap();
        assert_eq!(!m.undecodable, ok, "{advertised:?} {update:?}");
        let (sum, _) = h.finish();
        if ok {
            let want = if update[2] == 0x01 { 256 } else { 4096 };
            assert_eq!(sum.hpack_max[0], want);
        }
    }
}

/// The same bytes in any chunking give the same records (frame numbers aside): the reader
/// holds partial headers, payloads and header blocks across chunks.
mod chunking {
    use super::*;
    use proptest::prelude::*;

    fn conversation() -> (Vec<u8>, Vec<u8>) {
        let (mut c, mut s) = (Peer::new(), Peer::new());
        let mut up = PREFACE.to_vec();
        up.extend(frame(frame::SETTINGS, 0, 0, &[0, 1, 0, 0, 0x10, 0]));
        let req = c.block(&[(":method", "POST"), (":path", "/p"), (":authority", "a")]);
        up.extend(frame(frame::HEADERS, 0, 1, &req[..3]));
        up.extend(frame(frame::CONTINUATION, frame::END_HEADERS, 1, &req[3..]));
        up.extend(frame(
            frame::DATA,
            frame::PADDED | frame::END_STREAM,
            1,
            &[1, 9, 9, 0],
        ));
        let mut down = frame(frame::SETTINGS, 0, 0, &[]);
        down.extend(frame(frame::SETTINGS, frame::ACK, 0, &[]));
        down.extend(frame(frame::HEADERS, 4, 1, &s.block(&[(":status", "200")])));
        down.extend(frame(frame::DATA, 0, 1, &[5; 300]));
        down.extend(frame(frame::WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
        down.extend(frame(frame::DATA, frame::END_STREAM, 1, &[6; 20]));
        (up, down)
    }

    fn run(up: &[u8], down: &[u8], cut: usize) -> Vec<String> {
        let mut h = H2Conn::prior_knowledge(3, true);
        let mut out = Vec::new();
        for (i, piece) in up.chunks(cut).enumerate() {
            h.on_data(Dir::C2s, piece, i as u64, TS, &mut out);
        }
        for (i, piece) in down.chunks(cut).enumerate() {
            h.on_data(Dir::S2c, piece, i as u64, TS, &mut out);
        }
        h.on_end(Dir::C2s, 0, TS, &mut out);
        h.on_end(Dir::S2c, 0, TS, &mut out);
        out.into_iter()
            .map(|r| match r {
                Record::H2(mut f) => {
                    f.frame = 0;
                    format!("{f:?}")
                }
                Record::Http(mut m) => {
                    (m.frame, m.end_frame, m.request_frame) = (0, None, None);
                    format!("{m:?}")
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    proptest! {
        /// Arbitrary bytes after the preface (or from the start, mid-connection), in any
        /// chunking, with gaps: no panic, and the held state stays within its caps.
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..2000),
            cut in 1usize..100,
            gap_every in 1usize..8,
            midstream in any::<bool>(),
        ) {
            let mut h = if midstream {
                H2Conn::midstream(1, true)
            } else {
                H2Conn::prior_knowledge(1, true)
            };
            let mut out = Vec::new();
            if !midstream {
                h.on_data(Dir::C2s, PREFACE, 1, TS, &mut out);
            }
            for (i, piece) in bytes.chunks(cut).enumerate() {
                let dir = if i % 2 == 0 { Dir::C2s } else { Dir::S2c };
                if i % gap_every == gap_every - 1 {
                    h.on_gap(dir, piece.len() as u64, i as u64, &mut out);
                } else {
                    h.on_data(dir, piece, i as u64, TS, &mut out);
                }
            }
            h.on_end(Dir::C2s, 0, TS, &mut out);
            h.on_end(Dir::S2c, 0, TS, &mut out);
            prop_assert!(h.footprint() < 8 << 20);
            let _ = h.finish();
        }

        /// A valid conversation with one byte changed anywhere: no panic.
        #[test]
        fn a_changed_byte_never_panics(at in any::<usize>(), to in any::<u8>(), cut in 1usize..64) {
            let (mut up, mut down) = conversation();
            let n = up.len() + down.len();
            let at = at % n;
            if at < up.len() {
                up[at] = to;
            } else {
                down[at - up.len()] = to;
            }
            let _ = run(&up, &down, cut);
        }

        #[test]
        fn any_chunking_gives_the_same_records(cut in 1usize..200) {
            let (up, down) = conversation();
            let whole = run(&up, &down, usize::MAX);
            prop_assert_eq!(whole.len(), 10 + 2);
            prop_assert_eq!(run(&up, &down, cut), whole);
        }
    }
}

/// A flood of streams that never end stays bounded: past the cap, their messages are pushed
/// (cut short) and the streams forgotten, with one diagnostic.
#[test]
fn streams_stay_bounded() {
    let mut c = Peer::new();
    let mut h = H2Conn::prior_knowledge(1, true);
    let mut out = Vec::new();
    h.on_data(Dir::C2s, PREFACE, 1, TS, &mut out);
    let b = c.block(&[(":method", "GET"), (":path", "/")]);
    let n = HARD_MAX_STREAMS as u32 + 10;
    for i in 0..n {
        // HEADERS without END_STREAM: each request stays in progress.
        h.on_data(
            Dir::C2s,
            &frame(frame::HEADERS, 4, 1 + 2 * i, &b),
            2,
            TS,
            &mut out,
        );
    }
    assert!(h.streams.len() <= HARD_MAX_STREAMS);
    let cut = http(&out).iter().filter(|m| m.end_frame.is_none()).count();
    assert!(cut > HARD_MAX_STREAMS, "{cut}");
    let (_, d) = h.finish();
    assert!(d.iter().any(|d| d.contains("streams open")), "{d:?}");
}

/// A HEADERS frame too long to hold (over 1 MiB) is not decoded against a table it skipped:
/// its message is undecodable and so are the later blocks of that direction.
#[test]
fn an_oversized_header_block_is_undecodable() {
    let (mut h, mut c, _, mut out) = opened("/", &[]);
    let huge = vec![0u8; MAX_HELD as usize + 1];
    h.on_data(
        Dir::C2s,
        &frame(frame::HEADERS, 5, 3, &huge),
        2,
        TS,
        &mut out,
    );
    let b = c.block(&[(":method", "GET"), (":path", "/")]);
    h.on_data(Dir::C2s, &frame(frame::HEADERS, 5, 5, &b), 3, TS, &mut out);
    for sid in [3, 5] {
        let m = http(&out)
            .into_iter()
            .find(|m| m.stream == Some(sid))
            .unwrap();
        assert!(m.undecodable && m.method.is_none(), "{m:?}");
    }
    let f = h2(&out).into_iter().find(|f| f.stream == 3).unwrap();
    assert_eq!(f.client_state.as_deref(), Some("half_closed_local"));
}
