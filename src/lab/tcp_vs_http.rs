//! `lab tcp-vs-http`: requests over one kept-alive TCP connection and over fresh ones,
//! captured, to show which layer remembers and which does not.
//!
//! What you will see:
//!
//! * **TCP carries state from packet to packet.** On the kept-alive connection, each request's
//!   first sequence number is exactly the previous one plus the bytes sent since, and each
//!   acknowledges every byte the server sent before it: both ends keep counting, and every
//!   packet shows both endpoints' states (`ESTABLISHED` until the close). The fresh
//!   connections each start again from a handshake at relative sequence 0.
//! * **HTTP carries none, even on the same connection.** Right after a login on the kept
//!   connection, `GET /me` without the cookie is refused (401): the login is not remembered
//!   for "this connection"; only the cookie, sent again, makes the next `/me` succeed. The
//!   server's `/state` shows no per-request record retained.
//! * **So a restart changes nothing for a stateless answer.** `GET /` as the last request on the
//!   kept connection and `GET /` on a fresh connection to the restarted server get byte-for-byte
//!   the same answer: a server whose `/` depended on earlier requests (the negative control
//!   `conn-counter-in-root` counts them) would answer differently, and `restart_same_answer`
//!   fails. What the server did keep on purpose, the session, is gone after the restart (401).
//!
//! The one counter that does grow across requests, `/echo`'s `requests_on_this_connection`,
//! belongs to the TCP connection (keep-alive): 1, 2, 3 on the shared connection and 1, 1, 1 on
//! the fresh ones.

use super::common::{self, cookie_header, fresh, raw_request, Checks, Conn};
use super::{LabCtx, LabDef, LabOut};
use crate::record::{Dir, LabRec};
use crate::server::ServerConfig;
use serde_json::json;

pub const LAB: LabDef = LabDef {
    name: "tcp-vs-http",
    question: "Why is TCP stateful and HTTP stateless?",
    summary: "one kept-alive connection (a login, /me without the cookie fails) vs fresh ones: TCP carries seq/ack and states, HTTP nothing",
    run,
};

/// `/echo` requests on the kept connection, and fresh connections.
const REQUESTS: usize = 3;
/// Requests on the kept connection: the echoes, login, `/me` twice, `/`.
const KEPT_REQUESTS: usize = REQUESTS + 4;

fn nth_on_connection(r: &common::Response) -> u64 {
    r.json()["transport"]["requests_on_this_connection"]
        .as_u64()
        .unwrap_or(0)
}

fn run(ctx: &LabCtx, out: &mut LabOut) -> anyhow::Result<LabRec> {
    let control = common::begin(out)?;
    let (server, cap) = common::start_served(ctx, LAB.name, out)?;
    let addr = server.addr();

    // Part 1: one connection (HTTP/1.1 keep-alive): echoes, a login, /me without and with
    // the cookie, and `/`.
    common::step("kept-alive connection: /echo x3, login, /me without and with the cookie, /");
    let echo = raw_request(addr, "GET", "/echo", &[], "");
    let mut conn = Conn::open(addr)?;
    let keep_client = conn.local()?;
    let mut keep_nth = Vec::new();
    for _ in 0..REQUESTS {
        keep_nth.push(nth_on_connection(&conn.request(&echo)?));
    }
    let login = conn.request(&raw_request(
        addr,
        "POST",
        "/session/login",
        &[],
        "user=alice",
    ))?;
    let cookie = cookie_header(&login)?;
    let me_bare = conn.request(&raw_request(addr, "GET", "/me", &[], ""))?;
    let me_cookie = conn.request(&raw_request(
        addr,
        "GET",
        "/me",
        std::slice::from_ref(&cookie),
        "",
    ))?;
    let root = raw_request(addr, "GET", "/", &[], "");
    let before = conn.request(&root)?;
    drop(conn);

    // Part 2: the same /echo on three fresh connections.
    common::step("fresh connection: /echo");
    let mut fresh_clients = Vec::new();
    let mut fresh_nth = Vec::new();
    for _ in 0..REQUESTS {
        let r = fresh(addr, &echo)?;
        fresh_clients.push(r.client);
        fresh_nth.push(nth_on_connection(&r));
    }

    // Part 3: what the server holds now.
    common::step("/state: what the server holds");
    let state = fresh(addr, &raw_request(addr, "GET", "/state", &[], ""))?.json();
    let retained = state["per_request"]["records_retained"].as_u64();
    let sessions = state["stateful_contrasts"]["sessions_held"].as_u64();

    // Part 4: a restart; the same `/`, and the session kept on purpose.
    let server = common::restart_server(server, ServerConfig::default())?;
    common::step("after the restart: GET /");
    let after = fresh(addr, &root)?;
    common::step("after the restart: /me with the cookie");
    let me_restart = fresh(
        addr,
        &raw_request(addr, "GET", "/me", std::slice::from_ref(&cookie), ""),
    )?;
    drop(server);

    let (cap, recs) = common::finish_capture(cap, out)?;

    // ---- what the capture shows ----
    let mut checks = Checks::default();
    let keep = recs.conn_of(keep_client);
    let keep_conn = keep.map(|c| c.conn);
    let keep_requests = keep.map(|c| c.http_requests).unwrap_or(0);
    checks.check("keepalive_conn_captured", keep.is_some());
    checks.check(
        "keepalive_carried_every_request",
        keep_requests == KEPT_REQUESTS as u64,
    );
    // Each request's first byte: its c2s data segment; the next one starts where it ended, and
    // acknowledges everything the server had sent.
    let mut request_seqs = Vec::new();
    let mut request_acks = Vec::new();
    let mut continuity = true;
    let mut acks_all = true;
    let mut states_on_keep = Vec::new();
    if let Some(c) = keep {
        let pk = recs.packets_of(c.conn);
        let mut server_next = None;
        let mut last_c2s: Option<&crate::record::PacketRec> = None;
        for p in &pk {
            if p.dir == Dir::S2c && p.len > 0 {
                server_next = Some(p.seq.wrapping_add(p.len));
            }
            if p.dir == Dir::C2s && p.len > 0 {
                if let Some(prev) = last_c2s {
                    continuity &= p.seq == prev.seq.wrapping_add(prev.len);
                    acks_all &= server_next.is_some() && p.ack == server_next;
                }
                request_seqs.push(p.seq);
                request_acks.extend(p.ack);
                last_c2s = Some(p);
            }
            let s = format!("{}/{}", p.client_state, p.server_state);
            if states_on_keep.last() != Some(&s) {
                states_on_keep.push(s);
            }
        }
    }
    checks.check(
        "keepalive_seq_continuous",
        continuity && request_seqs.len() == KEPT_REQUESTS,
    );
    checks.check("keepalive_each_request_acks_every_server_byte", acks_all);
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
        "fresh_conns_one_request_each",
        fresh_requests == vec![1; REQUESTS],
    );
    checks.check("fresh_conns_start_with_syn_at_seq_0", fresh_first_seq_zero);
    checks.check(
        "echo_counts_requests_of_its_connection",
        keep_nth == [1, 2, 3] && fresh_nth == [1; REQUESTS],
    );
    checks.check("login_200", login.status == 200);
    checks.check("me_without_cookie_after_login_401", me_bare.status == 401);
    checks.check("me_with_cookie_200", me_cookie.status == 200);
    checks.check("no_per_request_record_retained", retained == Some(0));
    checks.check("only_the_login_session_held", sessions == Some(1));
    let same = before.status == 200 && after.status == 200 && before.body == after.body;
    checks.check("restart_same_answer", same);
    checks.check("session_gone_after_restart", me_restart.status == 401);
    let all_have_host = recs
        .http()
        .filter(|h| h.method.is_some())
        .all(|h| h.carries.iter().any(|x| x == "Host"));
    checks.check("every_request_carries_host", all_have_host);
    let conns_total = recs.conns().count() as u64;
    // 1 kept + 3 fresh + /state + 2 after the restart, each opened by its own SYN. Counted by
    // SYNs, not conn records: on loopback the kernel may reuse a client port still in
    // TIME_WAIT (tcp_tw_reuse), and a reused 4-tuple is one conn record to an observer.
    let handshakes = recs
        .packets()
        .filter(|p| p.dir == Dir::C2s && p.flags.len() == 1 && p.flags[0] == "SYN")
        .count();
    checks.check("seven_handshakes", handshakes == 7);
    let failed = checks.failed(out)?;

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
        "  On that same connection, right after logging in ({}): GET /me without the cookie {}, with it {}. The connection continued; HTTP remembered nothing of the login.",
        login.status, me_bare.status, me_cookie.status
    ))?;
    out.say(&format!(
        "Fresh connections (conns {:?}): 1 request each, each from its own handshake at seq 0.",
        fresh_conns.iter().map(|c| c.conn).collect::<Vec<_>>()
    ))?;
    out.say(&format!(
        "/echo said requests_on_this_connection = {keep_nth:?} kept, {fresh_nth:?} fresh: that count is the TCP connection's."
    ))?;
    out.say(&format!(
        "/state: records_retained = {}, sessions_held = {} (the login, kept on purpose).",
        retained.map_or("?".into(), |v| v.to_string()),
        sessions.map_or("?".into(), |v| v.to_string())
    ))?;
    out.say(&format!(
        "GET / as request {KEPT_REQUESTS} on the kept connection, and on a fresh connection to the restarted server: {} and {}, {} and {} bytes, {}. /me with the cookie after the restart: {}.",
        before.status,
        after.status,
        before.body.len(),
        after.body.len(),
        if same { "identical" } else { "DIFFERENT" },
        me_restart.status
    ))?;
    out.say(&format!(
        "Capture: {} ({} frames; replay it with `statescope replay {}`).",
        cap.path.display(),
        cap.frames,
        cap.path.display()
    ))?;

    let answer = format!(
        "TCP is stateful: on one connection both ends carried sequence numbers, acknowledgements and states from packet to packet \
         ({keep_requests} requests starting at seq {request_seqs:?}, each where the last ended and acknowledging every byte the server had sent), \
         and each new connection needed its own handshake. \
         HTTP is stateless: on that same connection, right after a login, GET /me without the cookie got {} (with it: {}); \
         the server retained {} per-request records, and GET / as request {KEPT_REQUESTS} of a connection and as the first request \
         to a restarted server gave {}. What the server kept on purpose, the session, did not survive the restart ({}).",
        me_bare.status,
        me_cookie.status,
        retained.map_or("?".into(), |v| v.to_string()),
        if same {
            format!("the same {}-byte answer", after.body.len())
        } else {
            "DIFFERENT answers: this server's answer depended on earlier requests".to_string()
        },
        me_restart.status,
    );
    let rec = LabRec {
        name: LAB.name.into(),
        question: LAB.question.into(),
        answer,
        facts: common::facts(vec![
            ("keepalive_conn", json!(keep_conn)),
            ("keepalive_http_requests", json!(keep_requests)),
            ("keepalive_request_seqs", json!(request_seqs)),
            ("keepalive_request_acks", json!(request_acks)),
            ("keepalive_seq_continuous", json!(continuity)),
            ("keepalive_acks_every_server_byte", json!(acks_all)),
            ("keepalive_states", json!(states_on_keep)),
            ("keepalive_requests_on_connection", json!(keep_nth)),
            ("login_status", json!(login.status)),
            ("me_without_cookie_status", json!(me_bare.status)),
            ("me_with_cookie_status", json!(me_cookie.status)),
            (
                "fresh_conns",
                json!(fresh_conns.iter().map(|c| c.conn).collect::<Vec<_>>()),
            ),
            ("fresh_http_requests", json!(fresh_requests)),
            ("fresh_requests_on_connection", json!(fresh_nth)),
            ("records_retained", json!(retained)),
            ("sessions_held", json!(sessions)),
            ("restart_same_answer", json!(same)),
            ("answer_bytes_before_restart", json!(before.body.len())),
            ("answer_bytes_after_restart", json!(after.body.len())),
            (
                "me_with_cookie_after_restart_status",
                json!(me_restart.status),
            ),
            ("conns_total", json!(conns_total)),
            ("handshakes", json!(handshakes)),
            ("frames", json!(cap.frames)),
            ("pcap", json!(cap.path.display().to_string())),
        ]),
        settings: common::facts(vec![
            ("echo_requests", json!(REQUESTS)),
            ("fresh_connections", json!(REQUESTS)),
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
                "serve, between requests",
                format!(
                    "nothing per request ({} records retained): each answer came from its request alone",
                    retained.map_or("?".into(), |v| v.to_string())
                ),
            ),
            (
                "serve, after the login",
                format!(
                    "a session entry on this one instance ({} held), found only when the cookie comes back; gone with the process",
                    sessions.map_or("?".into(), |v| v.to_string())
                ),
            ),
            (
                "each end's kernel (TCP)",
                "per connection: sequence and acknowledgement numbers, windows, the state (ESTABLISHED ... TIME_WAIT)".into(),
            ),
        ],
    )?;
    Ok(rec)
}
