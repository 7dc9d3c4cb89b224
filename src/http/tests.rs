//! HttpConn unit tests: one table row per framing rule, and split-anywhere properties.

use super::*;
use proptest::prelude::*;

const C: Dir = Dir::C2s;
const S: Dir = Dir::S2c;

/// Feed a conversation: each step is one segment's bytes (frame = step number, from 1), then
/// end both directions.
fn run(steps: &[(Dir, &[u8])]) -> (Vec<Record>, HttpConn) {
    let mut conn = HttpConn::new(7);
    let mut out = Vec::new();
    for (n, (dir, bytes)) in steps.iter().enumerate() {
        conn.on_data(*dir, bytes, n as u64 + 1, Timestamp(n as i64), &mut out);
    }
    let end = steps.len() as u64 + 1;
    conn.on_end(C, end, Timestamp(0), &mut out);
    conn.on_end(S, end, Timestamp(0), &mut out);
    (out, conn)
}

/// One line per record, enough to check framing and pairing at a glance.
fn summary(recs: &[Record]) -> Vec<String> {
    recs.iter()
        .map(|r| match r {
            Record::Http(h) if h.method.is_some() => format!(
                "{} {} @{} body={} end={}",
                h.method.as_deref().unwrap_or(""),
                h.uri.as_deref().unwrap_or(""),
                h.frame,
                h.body_len,
                h.end_frame.map_or("-".into(), |f| f.to_string())
            ),
            Record::Http(h) => format!(
                "{} @{} body={} end={} req={}{}",
                h.status.unwrap_or(0),
                h.frame,
                h.body_len,
                h.end_frame.map_or("-".into(), |f| f.to_string()),
                h.request_frame.map_or("-".into(), |f| f.to_string()),
                h.upgrade
                    .as_deref()
                    .map_or(String::new(), |u| format!(" upgrade={u}"))
            ),
            Record::Ws(w) => format!(
                "ws {} op={} fin={} masked={} len={} @{}{}",
                w.dir.as_str(),
                w.opcode,
                w.fin,
                w.masked,
                w.len,
                w.frame,
                w.close_code.map_or(String::new(), |c| format!(" code={c}"))
            ),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Table: a conversation → the records' summaries, and how many diagnostics.
macro_rules! conv {
    ($($name:ident: [$(($dir:expr, $bytes:expr)),* $(,)?] => [$($want:expr),* $(,)?], diags $nd:expr;)*) => {$(
        #[test]
        fn $name() {
            let (recs, conn) = run(&[$(($dir, &$bytes[..])),*]);
            let want: Vec<String> = vec![$($want.to_string()),*];
            assert_eq!(summary(&recs), want, "diagnostics: {:?}", conn.diagnostics());
            assert_eq!(conn.diagnostics().len(), $nd, "{:?}", conn.diagnostics());
        }
    )*};
}

conv! {
    // ---- Content-Length and keep-alive ----
    keepalive_two_gets: [
        (C, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"),
        (S, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel"),
        (S, b"lo"),
        (C, b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"),
        (S, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    ] => ["GET /a @1 body=0 end=1", "200 @2 body=5 end=3 req=1",
          "GET /b @4 body=0 end=4", "404 @5 body=0 end=5 req=4"], diags 0;

    head_split_across_segments: [
        (C, b"GET /long HT"), (C, b"TP/1.1\r\nHo"), (C, b"st: x\r\n\r"), (C, b"\n"),
    ] => ["GET /long @4 body=0 end=4"], diags 0;

    post_body_in_pieces: [
        (C, b"POST /p HTTP/1.1\r\nContent-Length: 6\r\n\r\nab"), (C, b"cd"), (C, b"ef"),
        (S, b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"),
    ] => ["POST /p @1 body=6 end=3", "201 @4 body=0 end=4 req=1"], diags 0;

    // ---- pipelining, HEAD, 1xx ----
    pipelined_head_between_gets: [
        (C, b"GET /1 HTTP/1.1\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n"),
        (S, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"),
    ] => ["GET /1 @1 body=0 end=1", "HEAD /2 @1 body=0 end=1", "GET /3 @1 body=0 end=1",
          "200 @2 body=2 end=2 req=1", "200 @2 body=0 end=2 req=1", "200 @2 body=1 end=2 req=1"], diags 0;

    expect_100_continue: [
        (C, b"POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"),
        (S, b"HTTP/1.1 100 Continue\r\n\r\n"),
        (C, b"abc"),
        (S, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"),
    ] => ["100 @2 body=0 end=2 req=1", "POST /e @1 body=3 end=3", "200 @4 body=3 end=4 req=1"], diags 0;

    status_204_and_304_have_no_body: [
        (C, b"GET /n HTTP/1.1\r\n\r\nGET /m HTTP/1.1\r\n\r\n"),
        (S, b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"),
    ] => ["GET /n @1 body=0 end=1", "GET /m @1 body=0 end=1",
          "204 @2 body=0 end=2 req=1", "304 @2 body=0 end=2 req=1"], diags 0;

    // ---- chunked ----
    chunked_with_trailers: [
        (C, b"GET /c HTTP/1.1\r\n\r\n"),
        (S, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"),
        (S, b"6;ext=1\r\n world\r\n0\r\nX-Checksum: 1\r\n\r\n"),
        (C, b"GET /next HTTP/1.1\r\n\r\n"),
    ] => ["GET /c @1 body=0 end=1", "200 @2 body=11 end=3 req=1", "GET /next @4 body=0 end=4"], diags 0;

    chunk_size_overflow: [
        (C, b"GET / HTTP/1.1\r\n\r\n"),
        (S, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\n"),
    ] => ["GET / @1 body=0 end=1", "200 @2 body=0 end=- req=1"], diags 1;

    // ---- until close ----
    until_close_completes_at_end: [
        (C, b"GET / HTTP/1.0\r\n\r\n"),
        (S, b"HTTP/1.0 200 OK\r\n\r\nsome "), (S, b"bytes"),
    ] => ["GET / @1 body=0 end=1", "200 @2 body=10 end=4 req=1"], diags 0;

    body_cut_short_at_end: [
        (C, b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"),
    ] => ["POST / @1 body=3 end=-"], diags 1;

    message_after_connection_close: [
        (C, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"),
    ] => ["GET / @1 body=0 end=1", "GET /2 @1 body=0 end=1"], diags 1;

    // ---- bad input ----
    not_http: [
        (C, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
        (S, b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76"),
    ] => [], diags 2;

    garbage_after_message: [
        (C, b"GET / HTTP/1.1\r\n\r\n\x00\x01garbage"),
        (C, b"GET /ignored HTTP/1.1\r\n\r\n"),
    ] => ["GET / @1 body=0 end=1"], diags 1;

    header_never_ends: [
        (C, b"GET / HTTP/1.1\r\n"),
        (C, &[b'X'; 70 * 1024]),
    ] => [], diags 1;

    stream_ends_inside_header: [
        (C, b"GET / HTTP/1.1\r\nHost"),
    ] => [], diags 1;

    // ---- WebSocket ----
    websocket_upgrade_and_frames: [
        (C, b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
        (S, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
        (C, ws::encode(true, 1, Some([1, 2, 3, 4]), b"hi")),
        (S, ws::encode(true, 1, None, b"hi")),
        (C, ws::encode(true, 8, Some([9, 9, 9, 9]), &[3, 232])),
    ] => ["GET /chat @1 body=0 end=1", "101 @2 body=0 end=2 req=1 upgrade=websocket",
          "ws c2s op=1 fin=true masked=true len=2 @3", "ws s2c op=1 fin=true masked=false len=2 @4",
          "ws c2s op=8 fin=true masked=true len=2 @5 code=1000"], diags 0;

    websocket_frames_right_after_101_in_one_segment: [
        (C, b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"),
        (S, [&b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"[..], &ws::encode(true, 2, None, &[0; 300])].concat()),
    ] => ["GET /chat @1 body=0 end=1", "101 @2 body=0 end=2 req=1 upgrade=websocket",
          "ws s2c op=2 fin=true masked=false len=300 @2"], diags 0;

    upgrade_declined_goes_on_as_http: [
        (C, b"GET /chat HTTP/1.1\r\nUpgrade: websocket\r\n\r\n"),
        (C, b"GET /x HTTP/1.1\r\n\r\n"),
        (S, b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    ] => ["GET /chat @1 body=0 end=1", "400 @3 body=0 end=3 req=1", "GET /x @2 body=0 end=2",
          "200 @3 body=0 end=3 req=2"], diags 0;
}

// ---- gaps --------------------------------------------------------------------------------------

/// Past the pending queue's depth (8 in unit tests), pairing stops instead of shifting: the
/// queued requests are paired, the rest and their responses are marked unpaired, a HEAD among
/// the queued ones keeps its body-less framing, and pairing resumes once all are answered.
#[test]
fn pipelining_past_the_queue_stops_pairing_and_never_shifts() {
    let n = MAX_PENDING + 3;
    let mut reqs = Vec::new();
    let mut resps = Vec::new();
    for i in 0..n {
        let method = if i == 2 { "HEAD" } else { "GET" };
        reqs.push(format!("{method} /{i} HTTP/1.1\r\n\r\n").into_bytes());
        // The HEAD's answer declares a body it does not carry.
        let body = if i == 2 { "" } else { "x" };
        resps.push(format!("HTTP/1.1 200 R{i}\r\nContent-Length: 1\r\n\r\n{body}").into_bytes());
    }
    let mut steps: Vec<(Dir, &[u8])> = reqs.iter().map(|r| (C, r.as_slice())).collect();
    steps.extend(resps.iter().map(|r| (S, r.as_slice())));
    steps.push((C, b"GET /after HTTP/1.1\r\n\r\n"));
    steps.push((S, b"HTTP/1.1 200 after\r\nContent-Length: 0\r\n\r\n"));
    let (out, conn) = run(&steps);
    let http: Vec<&HttpRec> = out
        .iter()
        .filter_map(|r| match r {
            Record::Http(h) => Some(&**h),
            _ => None,
        })
        .collect();
    let (rq, rs): (Vec<&HttpRec>, Vec<&HttpRec>) =
        http.iter().copied().partition(|h| h.method.is_some());
    assert_eq!((rq.len(), rs.len()), (n + 1, n + 1));
    for i in 0..n {
        let queued = i < MAX_PENDING;
        assert_eq!(rq[i].unpaired, !queued, "request {i}");
        assert_eq!(rs[i].reason.as_deref(), Some(format!("R{i}").as_str()));
        assert_eq!(rs[i].unpaired, !queued, "response {i}");
        let want = queued.then_some(rq[i].frame);
        assert_eq!(rs[i].request_frame, want, "response {i}");
    }
    // Pairing resumed for the request after them.
    assert_eq!(rs[n].reason.as_deref(), Some("after"));
    assert_eq!(rs[n].request_frame, Some(rq[n].frame));
    assert!(!rs[n].unpaired && !rq[n].unpaired);
    let diags = conn.diagnostics();
    assert_eq!(diags.len(), 1, "{diags:?}");
    assert!(diags[0].contains("pairing stops"), "{diags:?}");
}

#[test]
fn gap_inside_a_length_body_keeps_framing() {
    let mut c = HttpConn::new(0);
    let mut out = Vec::new();
    let t = Timestamp(0);
    c.on_data(C, b"GET / HTTP/1.1\r\n\r\n", 1, t, &mut out);
    c.on_data(
        S,
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab",
        2,
        t,
        &mut out,
    );
    c.on_gap(S, 5, 3, &mut out);
    c.on_data(S, b"cde", 4, t, &mut out);
    c.on_data(C, b"GET /2 HTTP/1.1\r\n\r\n", 5, t, &mut out);
    c.on_data(S, b"HTTP/1.1 204 No Content\r\n\r\n", 6, t, &mut out);
    assert_eq!(
        summary(&out),
        [
            "GET / @1 body=0 end=1",
            "200 @2 body=5 end=4 req=1",
            "GET /2 @5 body=0 end=5",
            "204 @6 body=0 end=6 req=5"
        ]
    );
    assert!(c.diagnostics().is_empty());
}

#[test]
fn gap_in_a_header_resyncs_at_the_next_message() {
    let mut c = HttpConn::new(0);
    let mut out = Vec::new();
    let t = Timestamp(0);
    c.on_data(C, b"GET /1 HTTP/1.1\r\nHo", 1, t, &mut out);
    c.on_gap(C, 100, 2, &mut out);
    c.on_data(
        C,
        b"rest of a lost header\r\n\r\nGET /2 HTTP/1.1\r\n",
        3,
        t,
        &mut out,
    );
    c.on_data(C, b"Host: x\r\n\r\n", 4, t, &mut out);
    // The cut request still names itself by its request line (as Wireshark reports it).
    assert_eq!(
        summary(&out),
        ["GET /1 @1 body=0 end=1", "GET /2 @4 body=0 end=4"]
    );
    assert_eq!(c.diagnostics().len(), 1);
}

#[test]
fn gap_after_not_http_allows_resync() {
    let mut c = HttpConn::new(0);
    let mut out = Vec::new();
    let t = Timestamp(0);
    c.on_data(
        S,
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx\x00garbage",
        1,
        t,
        &mut out,
    );
    c.on_data(S, b"HTTP/1.1 500 Lost\r\n\r\n", 2, t, &mut out); // still lost: ignored
    c.on_gap(S, 10, 3, &mut out);
    c.on_data(
        S,
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        4,
        t,
        &mut out,
    );
    assert_eq!(
        summary(&out),
        ["200 @1 body=1 end=1 req=-", "404 @4 body=0 end=4 req=-"]
    );
}

#[test]
fn websocket_gap_inside_payload_is_survived_and_in_header_is_not() {
    let mut c = HttpConn::new(0);
    let mut out = Vec::new();
    let t = Timestamp(0);
    c.on_data(
        C,
        b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        1,
        t,
        &mut out,
    );
    c.on_data(
        S,
        b"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\n\r\n",
        2,
        t,
        &mut out,
    );
    let f = ws::encode(true, 2, None, &[1; 1000]);
    c.on_data(S, &f[..100], 3, t, &mut out);
    c.on_gap(S, 800, 4, &mut out);
    c.on_data(S, &f[900..], 5, t, &mut out);
    c.on_gap(S, 1, 6, &mut out);
    c.on_data(S, &f, 7, t, &mut out);
    let ws: Vec<_> = out.iter().filter(|r| matches!(r, Record::Ws(_))).collect();
    assert_eq!(ws.len(), 1);
    assert_eq!(c.diagnostics().len(), 1, "{:?}", c.diagnostics());
}

// ---- split anywhere ----------------------------------------------------------------------------

/// A realistic conversation touching every framing rule.
fn conversation() -> Vec<(Dir, Vec<u8>)> {
    let mut ws_c = ws::encode(false, 1, Some([1, 2, 3, 4]), b"frag");
    ws_c.extend(ws::encode(true, 0, Some([5, 6, 7, 8]), b"ment"));
    ws_c.extend(ws::encode(true, 8, Some([0, 0, 0, 0]), &[3, 233]));
    let mut ws_s = ws::encode(true, 2, None, &[7; 300]);
    ws_s.extend(ws::encode(true, 2, None, &[7; 70000]));
    vec![
        (C, b"GET /a HTTP/1.1\r\nHost: h\r\nCookie: s=1\r\n\r\nHEAD /b HTTP/1.1\r\n\r\nPOST /c HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n".to_vec()),
        (S, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n".to_vec()),
        (C, b"wxyzGET /d HTTP/1.1\r\n\r\nGET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\n".to_vec()),
        (S, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\nT: 1\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n".to_vec()),
        (C, ws_c),
        (S, ws_s),
    ]
}

fn run_split(conv: &[(Dir, Vec<u8>)], cut: &mut dyn FnMut(usize) -> Vec<usize>) -> Vec<Record> {
    let mut c = HttpConn::new(1);
    let mut out = Vec::new();
    for (n, (dir, bytes)) in conv.iter().enumerate() {
        let mut at = 0;
        let mut cuts = cut(bytes.len());
        cuts.push(bytes.len());
        for end in cuts {
            let end = end.clamp(at, bytes.len());
            c.on_data(*dir, &bytes[at..end], n as u64 + 1, Timestamp(0), &mut out);
            at = end;
        }
    }
    c.on_end(C, 99, Timestamp(0), &mut out);
    c.on_end(S, 99, Timestamp(0), &mut out);
    out
}

#[test]
fn conversation_records() {
    let recs = run_split(&conversation(), &mut |_| vec![]);
    assert_eq!(
        summary(&recs),
        [
            "GET /a @1 body=0 end=1",
            "HEAD /b @1 body=0 end=1",
            "200 @2 body=3 end=2 req=1",
            "200 @2 body=0 end=2 req=1",
            "100 @2 body=0 end=2 req=1",
            "POST /c @1 body=4 end=3",
            "GET /d @3 body=0 end=3",
            "GET /ws @3 body=0 end=3",
            "200 @4 body=4 end=4 req=1",
            "304 @4 body=0 end=4 req=3",
            "101 @4 body=0 end=4 req=3 upgrade=websocket",
            "ws c2s op=1 fin=false masked=true len=4 @5",
            "ws c2s op=0 fin=true masked=true len=4 @5",
            "ws c2s op=8 fin=true masked=true len=2 @5 code=1001",
            "ws s2c op=2 fin=true masked=false len=300 @6",
            "ws s2c op=2 fin=true masked=false len=70000 @6",
        ]
    );
    let Record::Http(a) = &recs[0] else { panic!() };
    assert_eq!(a.carries[..], ["Host", "Cookie"]);
}

#[test]
fn split_at_every_byte_gives_the_same_records() {
    let conv = conversation();
    let whole = run_split(&conv, &mut |_| vec![]);
    // Every single split point of every segment, and every byte on its own.
    for (seg, (_, bytes)) in conv.iter().enumerate() {
        for at in 1..bytes.len().min(400) {
            let got = run_split(&conv, &mut |len| {
                if len == bytes.len() {
                    vec![at]
                } else {
                    vec![]
                }
            });
            assert_eq!(got, whole, "segment {seg} split at {at}");
        }
    }
    let bytewise = run_split(&conv, &mut |len| (1..len).collect());
    assert_eq!(bytewise, whole);
}

proptest! {
    #[test]
    fn random_splits_give_the_same_records(seed in any::<u64>()) {
        let conv = conversation();
        let whole = run_split(&conv, &mut |_| vec![]);
        let mut x = seed | 1;
        let got = run_split(&conv, &mut |len| {
            let mut cuts = Vec::new();
            let mut at = 0;
            while at < len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                at += 1 + (x % 97) as usize;
                cuts.push(at.min(len));
            }
            cuts
        });
        prop_assert_eq!(got, whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        steps in proptest::collection::vec((any::<bool>(), proptest::collection::vec(any::<u8>(), 0..80), 0u64..4), 0..20)
    ) {
        let mut c = HttpConn::new(0);
        let mut out = Vec::new();
        for (n, (d, bytes, gap)) in steps.iter().enumerate() {
            let dir = if *d { C } else { S };
            c.on_data(dir, bytes, n as u64, Timestamp(0), &mut out);
            if *gap == 3 {
                c.on_gap(dir, 17, n as u64, &mut out);
            }
        }
        c.on_end(C, 0, Timestamp(0), &mut out);
        c.on_end(S, 0, Timestamp(0), &mut out);
    }

    #[test]
    fn http_like_bytes_never_panic(
        parts in proptest::collection::vec(prop_oneof![
            Just(b"GET / HTTP/1.1\r\n".to_vec()), Just(b"HTTP/1.1 200 OK\r\n".to_vec()),
            Just(b"Content-Length: 3\r\n".to_vec()), Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
            Just(b"Upgrade: websocket\r\n".to_vec()), Just(b"\r\n".to_vec()), Just(b"3\r\nabc\r\n0\r\n".to_vec()),
            Just(b"HTTP/1.1 101 S\r\n".to_vec()), Just(vec![0x81, 0x7f]), Just(vec![0xff; 9]),
        ], 0..30),
        dirs in proptest::collection::vec(any::<bool>(), 30),
    ) {
        let mut c = HttpConn::new(0);
        let mut out = Vec::new();
        for (n, p) in parts.iter().enumerate() {
            let dir = if dirs[n] { C } else { S };
            c.on_data(dir, p, n as u64, Timestamp(0), &mut out);
        }
        c.on_end(C, 0, Timestamp(0), &mut out);
        c.on_end(S, 0, Timestamp(0), &mut out);
        prop_assert!(c.diagnostics().len() <= MAX_DIAGNOSTICS + 1);
    }
}

#[test]
fn midstream_start_finds_the_next_message() {
    let mut c = HttpConn::new(0);
    c.start_midstream();
    let mut out = Vec::new();
    let t = Timestamp(0);
    c.on_data(
        S,
        b"tail of a body\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
        1,
        t,
        &mut out,
    );
    c.on_data(C, b"ost: x\r\n\r\nGET /n HTTP/1.1\r\n\r\n", 2, t, &mut out);
    assert_eq!(
        summary(&out),
        ["200 @1 body=1 end=1 req=-", "GET /n @2 body=0 end=2"]
    );
    assert!(c.diagnostics().is_empty(), "{:?}", c.diagnostics());
}

#[test]
fn a_response_on_the_request_side_is_a_diagnostic() {
    let (recs, c) = run(&[(C, b"GET / HTTP/1.1\r\n\r\nHTTP/1.1 200 OK\r\n\r\n")]);
    assert_eq!(summary(&recs), ["GET / @1 body=0 end=1"]);
    assert!(c.diagnostics()[0].contains("a response where requests were flowing"));
}

#[test]
fn a_head_trickling_in_one_byte_at_a_time_is_parsed_once_complete() {
    let mut head = b"GET /slow HTTP/1.1\r\n".to_vec();
    for i in 0..2000 {
        head.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let mut c = HttpConn::new(0);
    let mut out = Vec::new();
    for (n, b) in head.iter().enumerate() {
        c.on_data(C, std::slice::from_ref(b), n as u64, Timestamp(0), &mut out);
    }
    // More fields than httparse's table holds: a diagnostic, not a hang or a panic.
    assert!(out.is_empty());
    assert_eq!(c.diagnostics().len(), 1, "{:?}", c.diagnostics());
}

/// A counting parser (the plain summary's) pushes nothing but counts exactly what the recording
/// parser reports, WebSocket frames included.
#[test]
fn counting_parser_counts_what_the_recording_one_reports() {
    let steps: &[(Dir, &[u8])] = &[
        (C, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"),
        (S, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"),
        (C, b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"),
        (S, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x02hi"),
        (C, b"\x81\x82abcd\x09\x0b"),
    ];
    let (recs, full) = run(steps);
    let mut counting = HttpConn::counting(7);
    let mut out = Vec::new();
    for (n, (dir, bytes)) in steps.iter().enumerate() {
        counting.on_data(*dir, bytes, n as u64 + 1, Timestamp(n as i64), &mut out);
    }
    counting.on_end(C, 9, Timestamp(0), &mut out);
    counting.on_end(S, 9, Timestamp(0), &mut out);
    assert!(out.is_empty(), "{out:?}");
    let http = recs.iter().filter(|r| matches!(r, Record::Http(_))).count() as u64;
    let ws = recs.iter().filter(|r| matches!(r, Record::Ws(_))).count() as u64;
    assert_eq!(
        (full.requests(), full.responses(), full.ws_frames()),
        (3, 3, 2)
    );
    assert_eq!(http, full.requests() + full.responses());
    assert_eq!(ws, full.ws_frames());
    assert_eq!(
        (
            counting.requests(),
            counting.responses(),
            counting.ws_frames()
        ),
        (3, 3, 2)
    );
}

/// A snaplen that cuts every response head: both messages are still reported (from their status
/// lines), the cut is described once, and the rest are counted in one line.
#[test]
fn repeated_head_cuts_are_described_once_and_counted() {
    let mut c = HttpConn::new(1);
    let mut out = Vec::new();
    let ts = Timestamp(0);
    for round in 0..3u64 {
        let f = round * 2 + 1;
        c.on_data(C, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", f, ts, &mut out);
        c.on_data(
            S,
            b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDa",
            f + 1,
            ts,
            &mut out,
        );
        c.on_gap(S, 500, f + 1, &mut out);
    }
    assert_eq!((c.requests(), c.responses()), (3, 3));
    assert_eq!(c.diagnostics().len(), 1, "{:?}", c.diagnostics());
    assert!(c.diagnostics()[0].contains("header cut by a 500-byte gap"));
    let all = c.take_diagnostics();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all[1].contains("2 more headers cut by gaps"), "{all:?}");
}

/// Feed `steps` (direction, one segment's bytes, then a gap of that many bytes) to a parser
/// that parses everything itself and to one handed each payload's [`parser::prepare`] as the
/// reader thread hands it: records, counts and diagnostics must match.
/// Returns how many payloads were handed over parsed.
fn prepared_matches_plain(steps: &[(Dir, Vec<u8>, u64)]) -> Result<usize, String> {
    let (mut plain, mut ahead) = (HttpConn::new(3), HttpConn::new(3));
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut used = 0;
    for (n, (dir, bytes, gap)) in steps.iter().enumerate() {
        let (f, ts) = (n as u64 + 1, Timestamp(n as i64));
        plain.on_data(*dir, bytes, f, ts, &mut a);
        match parser::prepare(bytes) {
            Some(p) => {
                used += 1;
                ahead.on_data_prepared(*dir, bytes, &p, f, ts, &mut b)
            }
            None => ahead.on_data(*dir, bytes, f, ts, &mut b),
        }
        plain.on_gap(*dir, *gap, f, &mut a);
        ahead.on_gap(*dir, *gap, f, &mut b);
    }
    for c in [&mut plain, &mut ahead] {
        c.on_end(C, 99, Timestamp(0), &mut Vec::new());
    }
    let counts = |c: &HttpConn| (c.requests(), c.responses(), c.ws_frames());
    if a != b || counts(&plain) != counts(&ahead) || plain.diagnostics() != ahead.diagnostics() {
        return Err(format!(
            "{a:?}\n!=\n{b:?}\n{:?}\n{:?}",
            plain.diagnostics(),
            ahead.diagnostics()
        ));
    }
    Ok(used)
}

#[test]
fn a_head_parsed_ahead_gives_what_parsing_here_gives() {
    // Keep-alive under a snaplen that cuts every response head, as in the benchmark capture.
    let mut steps = Vec::new();
    for _ in 0..3 {
        steps.push((C, b"GET /i HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 0));
        steps.push((
            S,
            b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Le".to_vec(),
            2900,
        ));
    }
    // Every segment of the framing conversation, whole.
    steps.extend(conversation().into_iter().map(|(d, b)| (d, b, 0)));
    assert_eq!(
        prepared_matches_plain(&steps),
        Ok(10),
        "all but the WebSocket payloads"
    );
    // A payload that does start a message but arrives while a body is being read is body.
    let body = vec![
        (
            C,
            b"POST / HTTP/1.1\r\nContent-Length: 27\r\n\r\n".to_vec(),
            0,
        ),
        (C, b"GET /x HTTP/1.1\r\nHost: y\r\n\r\n".to_vec(), 0),
    ];
    assert_eq!(prepared_matches_plain(&body), Ok(2));
    assert!(parser::prepare(b"\r\nGET / HTTP/1.1\r\n\r\n").is_none());
    assert!(matches!(
        parser::prepare(b"HTTP/1.1 200 OK\r\nServer: n"),
        Some(parser::Prepared {
            kind: Kind::Response,
            outcome: parser::Outcome::Partial(Some(_))
        })
    ));
}

proptest! {
    #[test]
    fn heads_parsed_ahead_never_change_the_records(
        steps in proptest::collection::vec((any::<bool>(), proptest::collection::vec(prop_oneof![
            Just(b"GET / HTTP/1.1\r\n".to_vec()), Just(b"HTTP/1.1 200 OK\r\n".to_vec()),
            Just(b"HEAD /h HTTP/1.0\r\n".to_vec()), Just(b"HTTP/1.1 101 S\r\n".to_vec()),
            Just(b"Content-Length: 3\r\n".to_vec()), Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
            Just(b"Upgrade: websocket\r\n".to_vec()), Just(b"Connection: close\r\n".to_vec()),
            Just(b"\r\n".to_vec()), Just(b"3\r\nabc\r\n0\r\n".to_vec()), Just(b"xyz".to_vec()),
            Just(vec![0x81, 0x7f]),
        ], 0..6), prop_oneof![Just(0u64), Just(0), Just(40)]), 0..24),
    ) {
        let steps: Vec<(Dir, Vec<u8>, u64)> = steps
            .into_iter()
            .map(|(d, parts, gap)| (if d { C } else { S }, parts.concat(), gap))
            .collect();
        prop_assert!(prepared_matches_plain(&steps).is_ok(), "{:?}", prepared_matches_plain(&steps));
    }
}

/// `Upgrade: h2c` answered by `101`: both directions go to the HTTP/2 parser (the server's
/// bytes right after the 101's head, the client's preface held until then), the response on
/// stream 1 answers the HTTP/1.1 request. Answered by `200` instead: the held bytes are
/// HTTP/1 again.
#[test]
fn h2c_upgrade_hands_over_or_not() {
    let req: &[u8] = b"GET /u HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n\
        Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
    // The server's SETTINGS (empty) and a HEADERS on stream 1 with `:status 200` (static
    // index 8), END_STREAM | END_HEADERS.
    let mut s2c =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec();
    s2c.extend([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    s2c.extend([0, 0, 1, 1, 5, 0, 0, 0, 1, 0x88]);
    let mut c2s = crate::http2::frame::PREFACE.to_vec();
    c2s.extend([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let (recs, mut conn) = run(&[(C, req), (C, &c2s), (S, &s2c)]);
    let h2 = conn.take_h2().expect("handed over");
    assert_eq!((h2.requests(), h2.responses()), (0, 1));
    let http: Vec<&HttpRec> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Http(h) => Some(&**h),
            _ => None,
        })
        .collect();
    assert_eq!(http.len(), 3, "{recs:?}");
    assert_eq!(http[1].upgrade.as_deref(), Some("h2c"));
    assert_eq!(
        (
            &*http[2].version,
            http[2].status,
            http[2].stream,
            http[2].request_frame
        ),
        ("2", Some(200), Some(1), Some(1))
    );
    let frames = recs.iter().filter(|r| matches!(r, Record::H2(_))).count();
    assert_eq!(frames, 3, "client SETTINGS, server SETTINGS and HEADERS");

    // Declined: the next request is HTTP/1 again, nothing goes to HTTP/2.
    let (recs, mut conn) = run(&[
        (C, req),
        (S, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        (C, b"GET /v HTTP/1.1\r\nHost: x\r\n\r\n"),
    ]);
    assert!(conn.take_h2().is_none());
    assert_eq!(
        summary(&recs),
        [
            "GET /u @1 body=0 end=1",
            "200 @2 body=0 end=2 req=1",
            "GET /v @3 body=0 end=3"
        ]
    );
}

// ---- settling (issue 26) -----------------------------------------------------------------------

/// Feed `steps` (direction, bytes, then a gap of that many bytes) and end `ends`, in order.
fn drive(steps: &[(Dir, Vec<u8>, u64)], ends: &[Dir], records: bool) -> HttpConn {
    let mut c = if records {
        HttpConn::new(3)
    } else {
        HttpConn::counting(3)
    };
    let mut out = Vec::new();
    for (n, (dir, bytes, gap)) in steps.iter().enumerate() {
        let f = n as u64 + 1;
        c.on_data(*dir, bytes, f, Timestamp(f as i64), &mut out);
        c.on_gap(*dir, *gap, f, &mut out);
    }
    for &d in ends {
        c.on_end(d, 90, Timestamp(90), &mut out);
    }
    c
}

/// What the connection's record takes from a parser when the connection is finished.
fn finished(c: &mut HttpConn) -> Settled {
    Settled {
        requests: c.requests(),
        responses: c.responses(),
        ws_frames: c.ws_frames(),
        diagnostics: c.take_diagnostics(),
    }
}

/// Everything that can still reach a parser after its segments: bytes that would be whole
/// messages, WebSocket frames and gaps both ways, and both ends again. The records it made.
fn late_input(c: &mut HttpConn) -> Vec<Record> {
    let mut out = Vec::new();
    let ws = ws::encode(true, 2, None, b"late");
    for (dir, bytes) in [
        (C, &b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n"[..]),
        (S, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
        (C, &ws),
        (S, b"HTTP/1.1 200 OK\r\nDa"),
    ] {
        c.on_data(dir, bytes, 100, Timestamp(100), &mut out);
        c.on_gap(dir, 7, 101, &mut out);
    }
    c.on_end(C, 102, Timestamp(102), &mut out);
    c.on_end(S, 102, Timestamp(102), &mut out);
    out
}

/// Connections ended both ways in the states their ends leave: plain exchanges, a body cut by
/// the end, a head cut by a gap (diagnostics), `Connection: close`, WebSocket (an upgrade
/// answered, and one whose answer never came), a body read until close, not HTTP at all.
fn ended_conversations() -> Vec<Vec<(Dir, Vec<u8>, u64)>> {
    let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc".to_vec();
    let conv = conversation().into_iter().map(|(d, b)| (d, b, 0)).collect();
    vec![
        vec![(C, get.clone(), 0), (S, ok.clone(), 0)],
        conv,
        vec![
            (C, get.clone(), 0),
            (
                S,
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab".to_vec(),
                0,
            ),
        ],
        vec![
            (C, get.clone(), 0),
            (S, b"HTTP/1.1 200 OK\r\nServer: x\r\nDa".to_vec(), 40),
            (C, get.clone(), 0),
            (S, b"HTTP/1.1 200 OK\r\nDa".to_vec(), 40),
        ],
        vec![
            (
                C,
                b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
                0,
            ),
            (
                S,
                b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec(),
                0,
            ),
        ],
        vec![(
            C,
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\n\r\nheld".to_vec(),
            0,
        )],
        vec![
            (C, get.clone(), 0),
            (S, b"HTTP/1.1 200 OK\r\n\r\nuntil close".to_vec(), 0),
        ],
        vec![(C, b"\x16\x03\x01 not http".to_vec(), 0), (S, ok, 0)],
    ]
}

/// A parser settled once both directions ended reports what it would have reported had it
/// stayed until the connection was finished, whatever still came: so the engine can drop the
/// parser while the connection lingers, and no record changes.
#[test]
fn a_settled_parser_reports_what_finishing_later_reports() {
    for (i, steps) in ended_conversations().iter().enumerate() {
        for records in [true, false] {
            for ends in [[C, S], [S, C]] {
                let mut early = drive(steps, &ends, records);
                let settled = early
                    .settle()
                    .unwrap_or_else(|| panic!("conversation {i}: ended both ways, not settled"));
                let mut late = drive(steps, &ends, records);
                let made = late_input(&mut late);
                assert!(
                    made.is_empty(),
                    "conversation {i}: {}",
                    summary(&made).join("; ")
                );
                assert_eq!(settled, finished(&mut late), "conversation {i}");
            }
        }
    }
}

/// Control: a parser with a direction still open is not settled, and rightly: what still comes
/// changes what it reports (so the comparison above can fail).
#[test]
fn control_a_parser_still_open_one_way_is_not_settled() {
    let steps = [(C, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), 0)];
    let mut c = drive(&steps, &[C], true);
    assert!(c.settle().is_none());
    let before = finished(&mut drive(&steps, &[C], true));
    let made = late_input(&mut c);
    assert!(!made.is_empty());
    assert_ne!(before, finished(&mut c));
}
