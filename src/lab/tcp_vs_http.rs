//! `lab tcp-vs-http`: the same HTTP requests over one kept-alive TCP connection and over fresh
//! ones, captured, to show which layer remembers and which does not.
//!
//! What you will see:
//!
//! * **TCP carries state from packet to packet.** On the kept-alive connection, each request's
//!   first sequence number is exactly the previous one plus the bytes sent since: both ends
//!   keep counting, and every packet shows both endpoints' states (`ESTABLISHED` until the
//!   close). The fresh connections each start again from a handshake at relative sequence 0.
//! * **HTTP carries none.** Every request is complete in itself (method, path, Host); the
//!   server's `/echo` answers from that request and the connection it came on, and its
//!   `/state` shows no per-request record retained after three plus three requests.
//! * **So a restart changes nothing for HTTP.** The same request to the server, restarted
//!   on the same port, gets byte-for-byte the same answer.
//!
//! The one counter that does grow across requests, `requests_on_this_connection`, belongs to
//! the TCP connection (keep-alive): it is 1, 2, 3 on the shared connection and 1, 1, 1 on the
//! fresh ones.

use super::common::{self, fresh, raw_request, Checks, Conn};
use super::{LabCtx, LabDef, LabOut};
use crate::record::LabRec;
use crate::server::ServerConfig;
use serde_json::json;

pub const LAB: LabDef = LabDef {
    name: "tcp-vs-http",
    question: "Why is TCP stateful and HTTP stateless?",
    summary: "3 requests kept alive, 3 on fresh connections: TCP carries seq/ack and states, HTTP nothing",
    run,
};

const REQUESTS: usize = 3;

fn run(ctx: &LabCtx, out: &mut LabOut) -> anyhow::Result<LabRec> {
    let (server, cap) = common::start_served(ctx, LAB.name, out)?;
    let addr = server.addr();

    // Part 1: three requests on one connection (HTTP/1.1 keep-alive).
    let echo = raw_request(addr, "GET", "/echo", &[], "");
    let mut conn = Conn::open(addr)?;
    let keep_client = conn.local()?;
    let mut keep_nth = Vec::new();
    for _ in 0..REQUESTS {
        let r = conn.request(&echo)?;
        keep_nth.push(
            r.json()["transport"]["requests_on_this_connection"]
                .as_u64()
                .unwrap_or(0),
        );
    }
    drop(conn);

    // Part 2: the same request on three fresh connections.
    let mut fresh_clients = Vec::new();
    let mut fresh_nth = Vec::new();
    for _ in 0..REQUESTS {
        let r = fresh(addr, &echo)?;
        fresh_clients.push(r.client);
        fresh_nth.push(
            r.json()["transport"]["requests_on_this_connection"]
                .as_u64()
                .unwrap_or(0),
        );
    }

    // Part 3: what the server holds now.
    let state = fresh(addr, &raw_request(addr, "GET", "/state", &[], ""))?.json();
    let retained = state["per_request"]["records_retained"].as_u64();
    let sessions = state["stateful_contrasts"]["sessions_held"].as_u64();

    // Part 4: the same request before and after a restart.
    let root = raw_request(addr, "GET", "/", &[], "");
    let before = fresh(addr, &root)?;
    let server = common::restart_server(server, ServerConfig::default())?;
    let after = fresh(addr, &root)?;
    drop(server);

    let (cap, recs) = common::finish_capture(cap, ctx, LAB.name, out)?;

    // ---- what the capture shows ----
    let mut checks = Checks::default();
    let keep = recs.conn_of(keep_client);
    let keep_conn = keep.map(|c| c.conn);
    let keep_requests = keep.map(|c| c.http_requests).unwrap_or(0);
    checks.check(
        "the keep-alive connection is in the capture",
        keep.is_some(),
    );
    checks.check(
        "the keep-alive connection carried 3 HTTP requests",
        keep_requests == REQUESTS as u64,
    );
    // Each request's first byte: its c2s data segment; the next one starts where it ended.
    let mut request_seqs = Vec::new();
    let mut request_acks = Vec::new();
    let mut continuity = true;
    let mut states_on_keep = Vec::new();
    if let Some(c) = keep {
        let pk = recs.packets_of(c.conn);
        let data: Vec<_> = pk
            .iter()
            .filter(|p| p.dir == crate::record::Dir::C2s && p.len > 0)
            .collect();
        for w in data.windows(2) {
            continuity &= w[1].seq == w[0].seq.wrapping_add(w[0].len);
        }
        request_seqs = data.iter().map(|p| p.seq).collect();
        request_acks = data.iter().filter_map(|p| p.ack).collect();
        for p in &pk {
            let s = format!("{}/{}", p.client_state, p.server_state);
            if states_on_keep.last() != Some(&s) {
                states_on_keep.push(s);
            }
        }
    }
    checks.check(
        "each request on the kept connection starts where the previous ended",
        continuity && request_seqs.len() == REQUESTS,
    );
    let fresh_conns: Vec<_> = fresh_clients
        .iter()
        .filter_map(|c| recs.conn_of(*c))
        .collect();
    let fresh_requests: Vec<u64> = fresh_conns.iter().map(|c| c.http_requests).collect();
    let fresh_first_seq_zero = fresh_conns.iter().all(|c| {
        recs.packets_of(c.conn)
            .first()
            .is_some_and(|p| p.seq == 0 && p.flags.iter().any(|f| f == "SYN"))
    });
    checks.check(
        "3 fresh connections, 1 request each",
        fresh_requests == vec![1; REQUESTS],
    );
    checks.check(
        "each fresh connection starts with a SYN at relative seq 0",
        fresh_first_seq_zero,
    );
    checks.check(
        "/echo counted 1,2,3 on the kept connection and 1,1,1 on fresh ones",
        keep_nth == [1, 2, 3] && fresh_nth == [1; REQUESTS],
    );
    checks.check(
        "/state: no per-request record retained",
        retained == Some(0),
    );
    checks.check("/state: no session held", sessions == Some(0));
    let same = before.status == 200 && before.body == after.body;
    checks.check("the restarted server gave the same answer", same);
    let carries_self: Vec<Vec<std::borrow::Cow<str>>> = recs
        .http()
        .filter(|h| h.method.is_some())
        .map(|h| h.carries.to_vec())
        .collect();
    let all_have_host = carries_self.iter().all(|c| c.iter().any(|x| x == "Host"));
    checks.check("every request carries its own Host", all_have_host);
    let conns_total = recs.conns().count() as u64;
    checks.check(
        "7 connections: 1 kept + 3 fresh + /state + 2 around the restart",
        conns_total == 7,
    );

    // ---- narrative ----
    if let Some(c) = keep {
        out.say(&format!(
            "Kept-alive connection (conn {}, {} -> {}): {} requests on {} packets; the requests start at relative seq {:?}: each where the previous ended, acknowledging the server's bytes up to {:?}.",
            c.conn,
            c.client,
            c.server,
            keep_requests,
            c.packets_c2s + c.packets_s2c,
            request_seqs,
            request_acks
        ))?;
        out.say(&format!(
            "  Both endpoints' states along the way (client/server): {}",
            states_on_keep.join(" -> ")
        ))?;
    }
    out.say(&format!(
        "Fresh connections (conns {:?}): 1 request each, each from its own handshake at seq 0.",
        fresh_conns.iter().map(|c| c.conn).collect::<Vec<_>>()
    ))?;
    out.say(&format!(
        "/echo said requests_on_this_connection = {keep_nth:?} kept, {fresh_nth:?} fresh: the only memory is the TCP connection's."
    ))?;
    out.say(&format!(
        "/state after {} requests: records_retained = {}, sessions_held = {}.",
        2 * REQUESTS,
        retained.map_or("?".into(), |v| v.to_string()),
        sessions.map_or("?".into(), |v| v.to_string())
    ))?;
    out.say(&format!(
        "GET / before and after restarting the server: {} and {}, {} bytes, {}.",
        before.status,
        after.status,
        after.body.len(),
        if same { "identical" } else { "DIFFERENT" }
    ))?;
    out.say(&format!(
        "Capture: {} ({} frames; replay it with `statescope replay {}`).",
        cap.path.display(),
        cap.frames,
        cap.path.display()
    ))?;

    let answer = format!(
        "TCP is stateful: on one connection both ends carried sequence numbers and states from packet to packet \
         ({} requests starting at seq {:?}, each where the last ended), and each new connection needed its own handshake. \
         HTTP is stateless: each request carried everything needed (method, path, Host), the server retained {} per-request records \
         after {} requests, and a restarted server gave the same {}-byte answer.",
        keep_requests,
        request_seqs,
        retained.unwrap_or(u64::MAX),
        2 * REQUESTS,
        after.body.len()
    );
    Ok(LabRec {
        name: LAB.name.into(),
        question: LAB.question.into(),
        answer,
        facts: common::facts(vec![
            ("keepalive_conn", json!(keep_conn)),
            ("keepalive_http_requests", json!(keep_requests)),
            ("keepalive_request_seqs", json!(request_seqs)),
            ("keepalive_request_acks", json!(request_acks)),
            ("keepalive_seq_continuous", json!(continuity)),
            ("keepalive_states", json!(states_on_keep)),
            ("keepalive_requests_on_connection", json!(keep_nth)),
            (
                "fresh_conns",
                json!(fresh_conns.iter().map(|c| c.conn).collect::<Vec<_>>()),
            ),
            ("fresh_http_requests", json!(fresh_requests)),
            ("fresh_requests_on_connection", json!(fresh_nth)),
            ("records_retained", json!(retained)),
            ("sessions_held", json!(sessions)),
            ("restart_same_answer", json!(same)),
            ("answer_bytes", json!(after.body.len())),
            ("conns_total", json!(conns_total)),
            ("frames", json!(cap.frames)),
            ("pcap", json!(cap.path.display().to_string())),
        ]),
        ok: checks.ok(out)?,
        ..Default::default()
    })
}
