//! `lab stateless-vs-stateful`: what each design buys, each advantage shown by a measurement.
//!
//! Two server instances, A and B, share a token key file, as instances behind a load balancer
//! would. The lab measures:
//!
//! Stateless wins
//! * **Any instance can answer.** Ten `/me` requests spread round-robin over A and B: with a
//!   signed token all succeed; with a session cookie (kept in A's memory) only A's half do.
//! * **Restarts lose nothing.** After A restarts, the token still works; the session is gone.
//! * **Server memory does not grow with users.** Twenty token logins leave A holding nothing;
//!   twenty session logins leave twenty sessions in its memory.
//!
//! Stateful wins
//! * **Reusing state is cheaper.** Ten requests on one kept-alive TCP connection against ten on
//!   fresh connections: packets per request and time per request, both from the capture and
//!   the clock. The handshake and close are paid once instead of every time.
//! * **Smaller requests.** The session cookie is a short id; the token carries the user, the
//!   expiry and a signature on every request: request bytes as captured.
//! * **Revocation is immediate.** Deleting a session logs the user out at once; a token stays
//!   valid until it expires.
//! * **A conversation is cheaper than a series of requests.** On a WebSocket the connection
//!   already knows who and what it is about; a message is a few bytes of framing plus the text,
//!   against a full HTTP request head every time.

use super::common::{
    self, cookie_header, fresh, login, me, raw_request, sessions_held, Checks, Conn, WsClient,
};
use super::{LabCtx, LabDef, LabOut};
use crate::record::{Dir, LabRec};
use serde_json::json;
use std::time::Instant;

pub const LAB: LabDef = LabDef {
    name: "stateless-vs-stateful",
    question: "What are the advantages of stateless and of stateful designs?",
    summary: "each side's advantages measured: any-instance, restarts, memory vs reuse, request size, revocation, WebSocket",
    run,
};

/// Requests per comparison.
const N: usize = 10;
/// Logins for the memory comparison.
const USERS: usize = 20;

fn run(ctx: &LabCtx, out: &mut LabOut) -> anyhow::Result<LabRec> {
    common::with_key_file(ctx, "svs", |key| run_with_key(ctx, out, key))
}

fn run_with_key(ctx: &LabCtx, out: &mut LabOut, key: &std::path::Path) -> anyhow::Result<LabRec> {
    let (a, b, cap) = common::start_pair(ctx, LAB.name, key)?;
    let (aa, ba) = (a.addr(), b.addr());
    out.say(&format!(
        "instances A on {aa} and B on {ba}; capturing both ports"
    ))?;

    // Credentials, both issued by A.
    let set = login(aa, "session", "alice")?;
    let cookie = cookie_header(&set)?;
    let token = login(aa, "token", "alice")?.json()["token"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let bearer = format!("Authorization: Bearer {token}");

    // 1. Any instance: round-robin A, B, A, B, ...
    let mut session_ok = 0;
    let mut token_ok = 0;
    let mut session_clients = Vec::new();
    for i in 0..N {
        let to = if i % 2 == 0 { aa } else { ba };
        let r = fresh(
            to,
            &raw_request(to, "GET", "/me", std::slice::from_ref(&cookie), ""),
        )?;
        session_clients.push(r.client);
        session_ok += usize::from(r.status == 200);
        token_ok += usize::from(me(to, &bearer)?.status == 200);
    }

    // 2. Memory: USERS logins of each kind on B.
    let held_b0 = sessions_held(ba)?.unwrap_or(u64::MAX);
    for u in 0..USERS {
        login(ba, "token", &format!("user{u}"))?;
    }
    let held_b_tokens = sessions_held(ba)?.unwrap_or(u64::MAX);
    for u in 0..USERS {
        login(ba, "session", &format!("user{u}"))?;
    }
    let held_b_sessions = sessions_held(ba)?.unwrap_or(u64::MAX);

    // 3. Restart A.
    let a = common::restart_server(a, common::key_config(key))?;
    let session_restart = me(aa, &cookie)?.status;
    let token_restart = me(aa, &bearer)?.status;

    // 4. Reuse: N requests kept alive vs N fresh.
    let req = raw_request(aa, "GET", "/", &[], "");
    let t0 = Instant::now();
    let mut conn = Conn::open(aa)?;
    let keep_client = conn.local()?;
    for _ in 0..N {
        conn.request(&req)?;
    }
    drop(conn);
    let keep_time = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let mut fresh_clients = Vec::new();
    for _ in 0..N {
        fresh_clients.push(fresh(aa, &req)?.client);
    }
    let fresh_time = t0.elapsed().as_secs_f64();

    // 5. Revocation.
    let set2 = login(aa, "session", "alice")?;
    let cookie2 = format!(
        "Cookie: {}",
        set2.header("set-cookie")
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
    );
    fresh(
        aa,
        &raw_request(
            aa,
            "POST",
            "/session/logout",
            std::slice::from_ref(&cookie2),
            "",
        ),
    )?;
    let session_after_logout = me(aa, &cookie2)?.status;
    let token_after_logout = me(aa, &bearer)?.status;

    // 6. A conversation: N messages on one WebSocket.
    let (mut ws, _) = WsClient::connect(aa)?;
    let ws_client = ws.local()?;
    for i in 0..N {
        ws.send_text(&format!("message {i}"))?;
        ws.recv()?;
    }
    ws.send_close()?;
    let _ = ws.recv();
    drop(ws);
    let http_msg = raw_request(
        aa,
        "GET",
        "/echo?text=message+0",
        std::slice::from_ref(&cookie),
        "",
    );
    let http_msg_resp = fresh(aa, &http_msg)?;
    drop((a, b));

    let (cap, recs) = common::finish_capture(cap, out)?;

    // ---- from the capture ----
    let mut checks = Checks::default();
    let keep = recs.conn_of(keep_client);
    let keep_packets = keep.map_or(0, |c| c.packets_c2s + c.packets_s2c);
    let fresh_recs: Vec<_> = fresh_clients
        .iter()
        .filter_map(|c| recs.conn_of(*c))
        .collect();
    let fresh_packets: u64 = fresh_recs
        .iter()
        .map(|c| c.packets_c2s + c.packets_s2c)
        .sum();
    checks.check(
        "the kept-alive connection carried N requests",
        keep.map(|c| c.http_requests) == Some(N as u64),
    );
    checks.check("N fresh connections captured", fresh_recs.len() == N);
    checks.check(
        "fewer packets per request on the kept connection",
        keep_packets < fresh_packets,
    );
    // Request bytes: one /me with the cookie, one with the token, as captured (bytes_c2s).
    let cookie_req_bytes = session_clients
        .first()
        .and_then(|c| recs.conn_of(*c))
        .map_or(0, |c| c.bytes_c2s);
    let token_req_bytes = recs
        .http()
        .filter(|h| h.dir == Dir::C2s && h.carries.iter().any(|c| c == "Authorization"))
        .filter_map(|h| recs.conns().find(|c| c.conn == h.conn))
        .map(|c| c.bytes_c2s)
        .next()
        .unwrap_or(0);
    checks.check(
        "the cookie request is smaller than the token request",
        cookie_req_bytes > 0 && cookie_req_bytes < token_req_bytes,
    );
    let ws_rec = recs.conn_of(ws_client);
    let ws_msgs: Vec<u32> = ws_rec
        .map(|c| recs.packets_of(c.conn))
        .unwrap_or_default()
        .iter()
        .filter(|p| p.dir == Dir::C2s && p.len > 0)
        .skip(1) // the upgrade request
        .take(N)
        .map(|p| p.len)
        .collect();
    let ws_msg_bytes =
        ws_msgs.iter().map(|&l| u64::from(l)).sum::<u64>() as f64 / ws_msgs.len().max(1) as f64;
    let http_msg_bytes = recs
        .conn_of(http_msg_resp.client)
        .map_or(0, |c| c.bytes_c2s);
    checks.check("N WebSocket messages captured", ws_msgs.len() == N);
    checks.check(
        "a WebSocket message is smaller than an HTTP request",
        ws_msg_bytes > 0.0 && ws_msg_bytes < http_msg_bytes as f64,
    );
    checks.check("token: every instance answered", token_ok == N);
    checks.check("session: only A's half answered", session_ok == N / 2);
    checks.check(
        "restart: token 200, session 401",
        token_restart == 200 && session_restart == 401,
    );
    checks.check(
        "memory: token logins left nothing, session logins one each",
        held_b_tokens == held_b0 && held_b_sessions == held_b0 + USERS as u64,
    );
    checks.check(
        "revocation: session 401 at once, token still 200",
        session_after_logout == 401 && token_after_logout == 200,
    );

    let per = |x: f64| x / N as f64;
    out.say("Stateless wins:")?;
    out.say(&format!("  any instance:  {N} /me requests round-robin over A and B: token {token_ok}/{N} answered, session cookie {session_ok}/{N}"))?;
    out.say(&format!(
        "  restarts:      after A restarted: token {token_restart}, session {session_restart}"
    ))?;
    out.say(&format!("  memory:        sessions held by B: {held_b0} -> {held_b_tokens} after {USERS} token logins -> {held_b_sessions} after {USERS} session logins"))?;
    out.say("Stateful wins:")?;
    out.say(&format!(
        "  reuse:         {N} requests on one kept-alive connection: {:.1} packets and {:.0} µs per request; on fresh connections: {:.1} packets and {:.0} µs",
        per(keep_packets as f64), per(keep_time) * 1e6, per(fresh_packets as f64), per(fresh_time) * 1e6
    ))?;
    out.say(&format!("  request size:  GET /me with the session cookie {cookie_req_bytes} bytes; with the token {token_req_bytes} bytes"))?;
    out.say(&format!("  revocation:    after logout: session {session_after_logout}; the token still {token_after_logout}"))?;
    out.say(&format!("  conversation:  a WebSocket message {ws_msg_bytes:.0} bytes on the wire; the same text as an HTTP request {http_msg_bytes} bytes"))?;
    out.say(&format!(
        "Capture: {} ({} frames, {} connections).",
        cap.path.display(),
        cap.frames,
        recs.conns().count()
    ))?;

    let answer = format!(
        "Stateless: any instance answers (token {token_ok}/{N} round-robin vs session {session_ok}/{N}), a restart loses nothing (token {token_restart}, session {session_restart}), \
         and memory does not grow with users ({USERS} token logins: {} sessions held; {USERS} session logins: {}). \
         Stateful: reusing a connection cut packets per request from {:.1} to {:.1} and time from {:.0} to {:.0} µs, a session cookie request is {cookie_req_bytes} bytes against {token_req_bytes} with a token, \
         logout takes effect at once (session {session_after_logout}, token {token_after_logout}), and a WebSocket message costs {ws_msg_bytes:.0} bytes against {http_msg_bytes} for an HTTP request.",
        held_b_tokens - held_b0,
        held_b_sessions - held_b0,
        per(fresh_packets as f64),
        per(keep_packets as f64),
        per(fresh_time) * 1e6,
        per(keep_time) * 1e6,
    );
    Ok(LabRec {
        name: LAB.name.into(),
        question: LAB.question.into(),
        answer,
        facts: common::facts(vec![
            ("requests", json!(N)),
            ("round_robin_token_ok", json!(token_ok)),
            ("round_robin_session_ok", json!(session_ok)),
            ("restart_token_status", json!(token_restart)),
            ("restart_session_status", json!(session_restart)),
            ("users", json!(USERS)),
            ("sessions_held_before", json!(held_b0)),
            ("sessions_held_after_token_logins", json!(held_b_tokens)),
            ("sessions_held_after_session_logins", json!(held_b_sessions)),
            ("keepalive_conn", json!(keep.map(|c| c.conn))),
            ("keepalive_packets", json!(keep_packets)),
            (
                "fresh_conns",
                json!(fresh_recs.iter().map(|c| c.conn).collect::<Vec<_>>()),
            ),
            ("fresh_packets", json!(fresh_packets)),
            ("keepalive_seconds", json!(keep_time)),
            ("fresh_seconds", json!(fresh_time)),
            ("cookie_request_bytes", json!(cookie_req_bytes)),
            ("token_request_bytes", json!(token_req_bytes)),
            ("logout_session_status", json!(session_after_logout)),
            ("logout_token_status", json!(token_after_logout)),
            ("ws_message_bytes", json!(ws_msgs)),
            ("http_message_bytes", json!(http_msg_bytes)),
            ("conns_total", json!(recs.conns().count())),
            ("frames", json!(cap.frames)),
            ("pcap", json!(cap.path.display().to_string())),
        ]),
        ok: checks.ok(out)?,
        ..Default::default()
    })
}
