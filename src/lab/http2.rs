//! `lab http2`: many stateless requests on one very stateful connection.
//!
//! What you will see: 100 `GET /` requests multiplexed as 100 streams on one HTTP/2 connection
//! (h2c, prior knowledge), beside the same 100 requests one after another on one HTTP/1.1
//! keep-alive connection, all to an in-process `serve`, captured on `lo` and read back from the
//! capture. The requests carry the same headers, among them a made-up user header
//! (`x-lab-user`), as a stateless request must carry whatever the server needs.
//!
//! The semantics stay stateless: every stream gets the answer a fresh HTTP/1.1 connection gets,
//! and a request on a brand-new HTTP/2 connection gets it too. But the connection is full of
//! state: each stream runs its own state machine at both ends (RFC 9113 §5.1, shown for stream
//! 1 from the capture), and HPACK's dynamic table (RFC 7541) lets the client send a header once
//! and then only its index — the capture shows the first header block and the later ones, and
//! the bytes the table saved against HTTP/1.1's text. Both ends must keep that table in step
//! for the connection's life: the table's size at the end is what the connection remembers.
//!
//! Then the server restarts while HTTP/2 connections are open: it sends GOAWAY, a new request on
//! an open connection is refused, and a stream in flight (a POST whose body is half sent when
//! the restart begins) is still finished and answered, after the GOAWAY; then the connections,
//! their streams and tables are gone.
//!
//! The negative controls: `conn-counter-in-root` (a server whose `/` depends on earlier requests
//! on the connection) must fail `every_stream_answered_alone`; `missed-segment` (the observer
//! never saw the segment with the first request's header block) must fail the checks that rest
//! on the HPACK table: every later block refers to what that one added, so the capture's
//! requests are undecodable, not guessed.

use super::common::{self, Checks};
use super::{LabCtx, LabDef, LabOut};
use crate::record::{Dir, H2Rec, LabRec, Record};
use crate::server::ServerConfig;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use std::net::SocketAddr;

pub const LAB: LabDef = LabDef {
    name: "http2",
    question: "HTTP/2: is HTTP still stateless when one connection carries every request?",
    summary: "100 requests as streams on one HTTP/2 connection vs 100 on HTTP/1.1: stream states, the HPACK table and the bytes it saves, GOAWAY at a restart",
    run,
};

/// Requests each way.
const REQUESTS: usize = 100;
/// Headers every request carries besides the pseudo-headers.
const HEADERS: [(&str, &str); 3] = [
    ("user-agent", "statescope-lab/1"),
    ("accept", "text/plain"),
    (
        "x-lab-user",
        "student-42; course=systems-design; lesson=stateful-vs-stateless",
    ),
];

fn request(addr: SocketAddr) -> hyper::Request<Empty<Bytes>> {
    let mut b = hyper::Request::get(format!("http://{addr}/"));
    for (k, v) in HEADERS {
        b = b.header(k, v);
    }
    b.body(Empty::new()).expect("a valid request")
}

type H2Send = hyper::client::conn::http2::SendRequest<Empty<Bytes>>;

/// An HTTP/2 connection with prior knowledge: its sender and its client address.
async fn h2_connect(addr: SocketAddr) -> anyhow::Result<(H2Send, SocketAddr)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let local = stream.local_addr()?;
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok((send, local))
}

/// One GET on `send`: status and body.
async fn h2_get(send: &mut H2Send, addr: SocketAddr) -> anyhow::Result<(u16, String)> {
    send.ready().await?;
    let resp = send.send_request(request(addr)).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// `n` GETs at once, each its own stream: statuses and bodies in the order sent.
async fn h2_many(send: &H2Send, addr: SocketAddr, n: usize) -> anyhow::Result<Vec<(u16, String)>> {
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = send.clone();
        tasks.push(tokio::spawn(async move { h2_get(&mut s, addr).await }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await??);
    }
    Ok(out)
}

/// `n` GETs one after another on one HTTP/1.1 keep-alive connection.
async fn h1_many(addr: SocketAddr, n: usize) -> anyhow::Result<(Vec<(u16, String)>, SocketAddr)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let local = stream.local_addr()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        send.ready().await?;
        let mut req = request(addr);
        // HTTP/1.1 needs Host; HTTP/2 sends :authority instead.
        req.headers_mut()
            .insert(hyper::header::HOST, addr.to_string().parse()?);
        let resp = send.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        out.push((status, String::from_utf8_lossy(&body).into_owned()));
    }
    Ok((out, local))
}

/// The halves of the request that is in flight when the server restarts.
const FIRST_HALF: &[u8] = b"first half of a request in flight; ";
const SECOND_HALF: &[u8] = b"second half, sent while the server shuts down";

type InFlight = tokio::task::JoinHandle<anyhow::Result<(u16, String)>>;

/// A `POST /echo` on a new HTTP/2 connection whose body is half sent: the client address, the
/// body's sender (dropping it ends the body) and the response to come.
async fn start_in_flight(
    addr: SocketAddr,
) -> anyhow::Result<(SocketAddr, http_body_util::channel::Sender<Bytes>, InFlight)> {
    use http_body_util::channel::Channel;
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let local = stream.local_addr()?;
    let (mut send, conn) = hyper::client::conn::http2::handshake::<_, _, Channel<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await?;
    tokio::spawn(conn);
    let (mut tx, body) = Channel::<Bytes>::new(1);
    let len = FIRST_HALF.len() + SECOND_HALF.len();
    let req = hyper::Request::post(format!("http://{addr}/echo"))
        .header(hyper::header::CONTENT_LENGTH, len)
        .body(body)?;
    send.ready().await?;
    let answer = tokio::spawn(async move {
        let resp = send.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    });
    tx.send_data(Bytes::from_static(FIRST_HALF)).await?;
    Ok((local, tx, answer))
}

fn run(ctx: &LabCtx, out: &mut LabOut) -> anyhow::Result<LabRec> {
    let control = common::begin(out)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (server, cap) = common::start_served(ctx, LAB.name, out)?;
    let addr = server.addr();

    common::step(&format!(
        "HTTP/2: {REQUESTS} requests as streams on one connection"
    ));
    let (h2, h2_local, h2_answers) = rt.block_on(async {
        let (send, local) = h2_connect(addr).await?;
        // One request first, so the others find the connection's settings agreed.
        let mut first = vec![h2_get(&mut send.clone(), addr).await?];
        first.extend(h2_many(&send, addr, REQUESTS - 1).await?);
        anyhow::Ok((send, local, first))
    })?;
    drop(h2);

    common::step(&format!(
        "HTTP/1.1: {REQUESTS} requests on one keep-alive connection"
    ));
    let (h1_answers, h1_local) = rt.block_on(h1_many(addr, REQUESTS))?;

    common::step("HTTP/2: one request on a fresh connection");
    let (fresh_answer, fresh_local) = rt.block_on(async {
        let (mut send, local) = h2_connect(addr).await?;
        anyhow::Ok((h2_get(&mut send, addr).await?, local))
    })?;

    common::step("HTTP/2: a connection open across a server restart");
    let (mut kept, kept_local) = rt.block_on(h2_connect(addr))?;
    let before_restart = rt.block_on(h2_get(&mut kept, addr))?;
    common::step("HTTP/2: a stream in flight across the restart");
    let (inflight_local, mut body_tx, inflight) = rt.block_on(start_in_flight(addr))?;
    // Restart only once the server is working on that request (its handler waits for the
    // body): `/state` counts it, beside the `/state` request itself.
    let state_get = common::raw_request(addr, "GET", "/state", &[], "");
    let waiting = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while std::time::Instant::now() < waiting {
        let s = common::fresh(addr, &state_get)?.json();
        if s["per_request"]["requests_in_flight"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // The request's second half follows while the server is shutting down.
    let finisher = rt.spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let _ = body_tx.send_data(Bytes::from_static(SECOND_HALF)).await;
    });
    let server = common::restart_server(server, ServerConfig::default())?;
    let inflight_answer = rt.block_on(async {
        let _ = finisher.await;
        tokio::time::timeout(std::time::Duration::from_secs(5), inflight).await
    });
    let inflight_status = match inflight_answer {
        Ok(Ok(Ok((status, body)))) => Some((status, body)),
        _ => None,
    };
    let after_restart = rt.block_on(async {
        tokio::time::timeout(std::time::Duration::from_secs(5), h2_get(&mut kept, addr)).await
    });
    let refused_after_restart = !matches!(after_restart, Ok(Ok((200, _))));
    drop(kept);
    drop(server);
    drop(rt);

    // The negative control `missed-segment`: an observer that never saw the segment carrying
    // the multiplexed connection's first request (its header block fills the client's HPACK
    // table, which every later block refers to).
    let missed = control.as_deref() == Some("missed-segment");
    let mut dropped = None;
    let (cap, recs) = common::finish_capture_edited(cap, out, |path| {
        if missed {
            dropped = common::drop_first_frame(path, |r| match r {
                Record::H2(f) if f.dir == Dir::C2s && f.frame_type == 1 => Some(f.frame),
                _ => None,
            })?;
        }
        Ok(())
    })?;
    if let Some(f) = dropped {
        out.say(&format!(
            "NEGATIVE CONTROL: frame {f} (the first request's header block) removed from the capture before replay"
        ))?;
    }

    // ---- measure, from the capture ----
    let mut checks = Checks::default();
    let conn_id = |local: SocketAddr| recs.conn_of(local).map(|c| c.conn);
    let h2_conn = conn_id(h2_local);
    let h1_conn = conn_id(h1_local);
    let fresh_conn = conn_id(fresh_local);
    let kept_conn = conn_id(kept_local);
    let h2_frames = |conn: Option<u64>| -> Vec<&H2Rec> {
        recs.0
            .iter()
            .filter_map(|r| match r {
                Record::H2(f) if Some(f.conn) == conn => Some(f),
                _ => None,
            })
            .collect()
    };
    let frames = h2_frames(h2_conn);
    let h2_http: Vec<_> = recs
        .http()
        .filter(|h| Some(h.conn) == h2_conn && h.version == "2")
        .collect();
    let h2_requests: Vec<_> = h2_http.iter().filter(|h| h.dir == Dir::C2s).collect();
    let h2_ok = h2_http
        .iter()
        .filter(|h| h.dir == Dir::S2c && h.status == Some(200))
        .count();
    let mut streams: Vec<u32> = h2_requests.iter().filter_map(|h| h.stream).collect();
    streams.sort_unstable();
    streams.dedup();
    let h1_requests = recs
        .http()
        .filter(|h| Some(h.conn) == h1_conn && h.dir == Dir::C2s)
        .count();
    checks.check(
        "one_h2_connection_100_streams",
        h2_requests.len() == REQUESTS
            && streams.len() == REQUESTS
            && h2_ok == REQUESTS
            && streams.iter().all(|s| s % 2 == 1),
    );
    checks.check("h1_100_requests_one_connection", h1_requests == REQUESTS);

    // Stateless semantics: every answer is the one a fresh connection gets.
    let reference = &h1_answers[0];
    let alone = h2_answers.iter().all(|a| a == reference)
        && h1_answers.iter().all(|a| a == reference)
        && fresh_answer == *reference;
    checks.check("every_stream_answered_alone", alone);

    // Stream states, both ends, for stream 1.
    let stream1: Vec<(String, String, String)> = frames
        .iter()
        .filter(|f| f.stream == 1)
        .map(|f| {
            (
                format!("{} {}", f.dir.as_str(), f.name),
                f.client_state.as_deref().unwrap_or("?").to_string(),
                f.server_state.as_deref().unwrap_or("?").to_string(),
            )
        })
        .collect();
    let all_closed = streams.iter().all(|s| {
        frames.iter().rfind(|f| f.stream == *s).is_some_and(|f| {
            f.client_state.as_deref() == Some("closed")
                && f.server_state.as_deref() == Some("closed")
        })
    });
    let passes_half_closed = stream1
        .iter()
        .any(|(_, c, s)| c == "half_closed_local" && s == "half_closed_remote");
    checks.check(
        "streams_end_closed_at_both_ends",
        all_closed && passes_half_closed,
    );

    // HPACK: the client's header blocks, first and later, against HTTP/1.1's text.
    let blocks: Vec<u32> = frames
        .iter()
        .filter(|f| f.dir == Dir::C2s && (f.frame_type == 1 || f.frame_type == 9))
        .map(|f| f.length)
        .collect();
    let h2_header_bytes: u64 = blocks.iter().map(|&l| u64::from(l)).sum();
    let first_block = blocks.first().copied().unwrap_or(0);
    let later_max = blocks.iter().skip(1).copied().max().unwrap_or(0);
    let h1_rec = h1_conn.and_then(|c| recs.conns().find(|r| r.conn == c));
    let h1_request_bytes = h1_rec.map_or(0, |r| r.bytes_c2s);
    let h2_rec = h2_conn.and_then(|c| recs.conns().find(|r| r.conn == c));
    let summary = h2_rec.and_then(|r| r.h2.as_deref());
    let table = summary.map(|s| (s.hpack_size[0], s.hpack_entries[0]));
    let (table_bytes, table_entries) = table.unwrap_or((None, None));
    checks.check(
        "hpack_later_blocks_smaller_than_first",
        blocks.len() == REQUESTS && later_max > 0 && later_max < first_block,
    );
    checks.check(
        "hpack_saves_bytes_against_http1",
        h2_header_bytes > 0 && h1_request_bytes > 2 * h2_header_bytes,
    );
    checks.check(
        "client_table_remembers_headers",
        table_bytes.is_some_and(|b| b > 0) && table_entries.is_some_and(|e| e > 0),
    );

    // The restart: GOAWAY from the server on the kept connection; the next request refused.
    let goaway = h2_frames(kept_conn)
        .into_iter()
        .find(|f| f.dir == Dir::S2c && f.frame_type == 7)
        .map(|f| (f.last_stream, f.error.as_deref().map(str::to_string)));
    checks.check(
        "restart_sends_goaway_and_refuses_new_streams",
        goaway.is_some() && before_restart == *reference && refused_after_restart,
    );
    // The stream in flight: GOAWAY told the client no new streams, and the stream it had
    // open was still answered, after the GOAWAY, with its whole body echoed.
    let inflight_conn = conn_id(inflight_local);
    let inflight_frames = h2_frames(inflight_conn);
    let inflight_goaway = inflight_frames
        .iter()
        .find(|f| f.dir == Dir::S2c && f.frame_type == 7)
        .map(|f| f.frame);
    let inflight_response = inflight_frames
        .iter()
        .find(|f| f.dir == Dir::S2c && f.frame_type == 1 && f.stream == 1)
        .map(|f| f.frame);
    let whole_body = FIRST_HALF.len() + SECOND_HALF.len();
    let echoed = inflight_status.as_ref().is_some_and(|(st, body)| {
        *st == 200 && body.contains(&format!("\"body_bytes\": {whole_body}"))
    });
    let finished_after_goaway = matches!(
        (inflight_goaway, inflight_response),
        (Some(g), Some(r)) if g <= r
    );
    checks.check(
        "stream_in_flight_finishes_after_goaway",
        echoed && finished_after_goaway,
    );
    let fresh_ok = recs
        .http()
        .any(|h| Some(h.conn) == fresh_conn && h.version == "2" && h.status == Some(200));
    checks.check("fresh_h2_connection_answered", fresh_ok);
    let failed = checks.failed(out)?;

    out.say(&format!(
        "HTTP/2 conn {}: {} streams (ids {}..{}), {} frames; HTTP/1.1 conn {}: {h1_requests} requests in turn.",
        h2_conn.map_or("?".into(), |c| c.to_string()),
        streams.len(),
        streams.first().unwrap_or(&0),
        streams.last().unwrap_or(&0),
        frames.len(),
        h1_conn.map_or("?".into(), |c| c.to_string()),
    ))?;
    out.say("Stream 1, frame by frame (client state / server state):")?;
    for (what, c, s) in &stream1 {
        out.say(&format!("  {what:<18} {c} / {s}"))?;
    }
    out.say(&format!(
        "HPACK: the first request's header block {first_block} bytes, later ones at most {later_max}; \
         {REQUESTS} header blocks {h2_header_bytes} bytes against {h1_request_bytes} bytes of HTTP/1.1 request text; \
         the client's table ended at {} bytes in {} entries.",
        table_bytes.map_or("unknown".into(), |b| b.to_string()),
        table_entries.map_or("unknown".into(), |e| e.to_string()),
    ))?;
    out.say(&format!(
        "Restart: GOAWAY {} on the open connection; a new request on it {}.",
        goaway.as_ref().map_or("not seen".into(), |(l, e)| format!(
            "(last stream {}, {})",
            l.map_or("?".into(), |l| l.to_string()),
            e.as_deref().unwrap_or("?")
        )),
        if refused_after_restart {
            "was refused"
        } else {
            "was answered"
        }
    ))?;
    out.say(&format!(
        "In flight at the restart: a POST whose body was half sent; GOAWAY at frame {}, its response at frame {}: {}.",
        inflight_goaway.map_or("?".into(), |f| f.to_string()),
        inflight_response.map_or("?".into(), |f| f.to_string()),
        match &inflight_status {
            Some((st, _)) if echoed => format!("{st}, the whole {whole_body}-byte body echoed"),
            Some((st, _)) => format!("{st}, body not whole"),
            None => "no answer".into(),
        }
    ))?;
    out.say(&format!(
        "Capture: {} ({} frames).",
        cap.path.display(),
        cap.frames
    ))?;

    let saved = h1_request_bytes.saturating_sub(h2_header_bytes);
    let answer = format!(
        "Still stateless in meaning: each of the {} streams on one HTTP/2 connection carried its whole request \
         (method, path, authority and the x-lab-user header) and got the same answer as a fresh connection and as HTTP/1.1. \
         The connection, though, is stateful: every stream ran its own state machine at both ends \
         (stream 1: {}), and HPACK's table let the client send the headers once ({first_block} bytes) and then \
         as indexes (at most {later_max} bytes a request): {h2_header_bytes} header bytes against {h1_request_bytes} of HTTP/1.1 text, \
         {saved} saved, because both ends remembered {} bytes of headers. A restart ended that state: \
         the server sent GOAWAY, the open connection took no new streams, and the stream in flight was still finished.",
        streams.len(),
        stream1
            .iter()
            .map(|(w, c, s)| format!("{w} → {c}/{s}"))
            .collect::<Vec<_>>()
            .join(", "),
        table_bytes.map_or("an unknown number of".into(), |b| b.to_string()),
    );
    let rec = LabRec {
        name: LAB.name.into(),
        question: LAB.question.into(),
        answer,
        facts: common::facts(vec![
            ("h2_streams", json!(streams.len())),
            ("h2_responses_200", json!(h2_ok)),
            ("h2_frames", json!(frames.len())),
            ("h1_requests", json!(h1_requests)),
            ("answers_identical", json!(alone)),
            ("stream1", json!(stream1)),
            ("hpack_first_block_bytes", json!(first_block)),
            ("hpack_later_block_max_bytes", json!(later_max)),
            ("h2_header_bytes", json!(h2_header_bytes)),
            ("h1_request_bytes", json!(h1_request_bytes)),
            ("client_table_bytes", json!(table_bytes)),
            ("client_table_entries", json!(table_entries)),
            ("goaway", json!(goaway)),
            ("refused_after_restart", json!(refused_after_restart)),
            ("in_flight_goaway_frame", json!(inflight_goaway)),
            ("in_flight_response_frame", json!(inflight_response)),
            ("in_flight_answered_whole", json!(echoed)),
            ("conns_total", json!(recs.conns().count())),
            ("frames", json!(cap.frames)),
            ("pcap", json!(cap.path.display().to_string())),
        ]),
        settings: common::facts(vec![
            ("requests", json!(REQUESTS)),
            ("headers", json!(HEADERS)),
            ("control", json!(control)),
        ]),
        ok: failed.is_empty(),
        failed,
    };
    common::write_report(
        ctx,
        out,
        &rec,
        &recs,
        &[
            (
                "serve, per request",
                "nothing once answered, on either protocol".into(),
            ),
            (
                "each HTTP/2 connection (both ends)",
                format!(
                    "every stream's state, flow-control windows, and the HPACK tables ({} bytes on the client's side at the end)",
                    table_bytes.map_or("?".into(), |b| b.to_string())
                ),
            ),
            (
                "after the restart",
                "nothing: the open connection got GOAWAY, its streams and tables are gone".into(),
            ),
        ],
    )?;
    Ok(rec)
}
