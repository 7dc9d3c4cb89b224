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
//! * **The user's context is at hand.** A request that needs to know who the user is: `/me`
//!   with a session kept in this instance's memory against the same request whose session must
//!   be fetched from a shared store (Redis, with `--redis`) every time, and against a token
//!   verified every time; medians of interleaved requests on kept-alive connections.
//! * **Smaller requests.** The session cookie is a short id; the token carries the user, the
//!   expiry and a signature on every request: request bytes as captured.
//! * **Revocation is immediate.** Deleting a session logs the user out at once; a token stays
//!   valid until it expires.
//! * **A conversation is cheaper than a series of requests.** On a WebSocket the connection
//!   already knows who and what it is about; a message is a few bytes of framing plus the text,
//!   against a full HTTP request head every time.
//!
//! Not a win of either design: **reusing a connection** (HTTP keep-alive). Ten requests on one
//! kept-alive connection against ten on fresh connections cost fewer packets and less time,
//! but that is TCP's state, kept by both ends' kernels; the stateless server here uses it just
//! as well. The lab measures it and says so.

use super::common::{
    self, cookie_header, fresh, login, me, raw_request, sessions_held, Checks, Conn, WsClient,
};
use super::{LabCtx, LabDef, LabOut};
use crate::record::{Dir, LabRec};
use crate::server::ServerConfig;
use serde_json::json;
use std::net::SocketAddr;
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
/// `/me` requests per way of finding the user's context, for the latency medians.
const CONTEXT_REQUESTS: usize = 60;

/// The median of `v` (seconds), 0 when empty.
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Medians of `/me` on kept-alive connections, one per credential, the requests interleaved so
/// that load on the machine falls on all alike. Every response must be 200.
fn context_latency(targets: &[(SocketAddr, String)]) -> anyhow::Result<Vec<f64>> {
    let mut conns = targets
        .iter()
        .map(|(a, cred)| {
            Ok((
                Conn::open(*a)?,
                raw_request(*a, "GET", "/me", std::slice::from_ref(cred), ""),
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut times = vec![Vec::new(); targets.len()];
    for round in 0..CONTEXT_REQUESTS + 5 {
        for (i, (c, req)) in conns.iter_mut().enumerate() {
            let t = Instant::now();
            let r = c.request(req)?;
            let dt = t.elapsed().as_secs_f64();
            anyhow::ensure!(r.status == 200, "/me answered {} while timing", r.status);
            // The first few warm the connections (and the store's) up.
            if round >= 5 {
                times[i].push(dt);
            }
        }
    }
    Ok(times.into_iter().map(median).collect())
}

fn run(ctx: &LabCtx, out: &mut LabOut) -> anyhow::Result<LabRec> {
    common::with_key_file(ctx, "svs", |key| run_with_key(ctx, out, key))
}

fn run_with_key(ctx: &LabCtx, out: &mut LabOut, key: &std::path::Path) -> anyhow::Result<LabRec> {
    let control = common::begin(out)?;
    let a = common::start_server(common::key_config(key))?;
    let b = common::start_server(common::key_config(key))?;
    let r = match &ctx.redis {
        Some(url) => Some(common::start_server(ServerConfig {
            session_store: Some(url.clone()),
            ..common::key_config(key)
        })?),
        None => None,
    };
    let mut ports = vec![a.addr().port(), b.addr().port()];
    ports.extend(r.iter().map(|s| s.addr().port()));
    let cap = common::start_capture(&ports, &common::pcap_path(ctx, LAB.name))?;
    let (aa, ba) = (a.addr(), b.addr());
    out.say(&format!(
        "instances A on {aa} and B on {ba}; capturing both ports"
    ))?;
    match &r {
        Some(r) => out.say(&format!(
            "instance R on {} keeps its sessions in {}",
            r.addr(),
            ctx.redis.as_deref().unwrap_or("")
        ))?,
        None => out.say("No --redis given: the user-context latency against a shared store is skipped (give --redis redis://127.0.0.1:6379)")?,
    }

    // Credentials, both issued by A.
    common::step("logins on A: session and token");
    let set = login(aa, "session", "alice")?;
    let cookie = cookie_header(&set)?;
    let token = login(aa, "token", "alice")?.json()["token"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let bearer = format!("Authorization: Bearer {token}");

    // 1. Any instance: round-robin A, B, A, B, ...
    common::step("round-robin /me over A and B");
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
    common::step("memory: logins on B");
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
    common::step("A after its restart: /me");
    let session_restart = me(aa, &cookie)?.status;
    let token_restart = me(aa, &bearer)?.status;

    // 4. Reuse: N requests kept alive vs N fresh (TCP's state, not the server's).
    common::step("keep-alive (TCP's state): N requests on one connection");
    let req = raw_request(aa, "GET", "/", &[], "");
    let t0 = Instant::now();
    let mut conn = Conn::open(aa)?;
    let keep_client = conn.local()?;
    for _ in 0..N {
        conn.request(&req)?;
    }
    drop(conn);
    let keep_time = t0.elapsed().as_secs_f64();
    common::step("N requests on fresh connections");
    let t0 = Instant::now();
    let mut fresh_clients = Vec::new();
    for _ in 0..N {
        fresh_clients.push(fresh(aa, &req)?.client);
    }
    let fresh_time = t0.elapsed().as_secs_f64();

    // 5. Revocation.
    common::step("revocation: login, logout, /me");
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
    common::step("a WebSocket conversation");
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
    common::step("the same text as an HTTP request");
    let http_msg_resp = fresh(aa, &http_msg)?;

    // 7. The user's context: in local memory, fetched from a shared store, verified each time.
    let context = match &r {
        Some(r) => {
            common::step("timing /me: session in A's memory");
            let local = login(aa, "session", "ctx")?;
            common::step("timing /me: session fetched from Redis");
            let shared = login(r.addr(), "session", "ctx")?;
            common::step("timing /me: token verified");
            let t = login(aa, "token", "ctx")?.json()["token"]
                .as_str()
                .unwrap_or("")
                .to_string();
            let m = context_latency(&[
                (aa, cookie_header(&local)?),
                (r.addr(), cookie_header(&shared)?),
                (aa, format!("Authorization: Bearer {t}")),
            ])?;
            Some((m[0], m[1], m[2]))
        }
        None => None,
    };
    drop((a, b, r));

    let (cap, recs) = common::finish_capture(cap, out)?;

    // ---- from the capture ----
    let mut checks = Checks::default();
    let keep = recs.conn_to(keep_client, aa);
    let keep_packets = keep.map_or(0, |c| c.packets_c2s + c.packets_s2c);
    let fresh_recs: Vec<_> = fresh_clients
        .iter()
        .filter_map(|c| recs.conn_to(*c, aa))
        .collect();
    let fresh_packets: u64 = fresh_recs
        .iter()
        .map(|c| c.packets_c2s + c.packets_s2c)
        .sum();
    checks.check(
        "keepalive_carried_n_requests",
        keep.map(|c| c.http_requests) == Some(N as u64),
    );
    checks.check("n_fresh_connections_captured", fresh_recs.len() == N);
    checks.check(
        "keepalive_fewer_packets_per_request",
        keep_packets < fresh_packets,
    );
    // Request bytes: one /me with the cookie, one with the token, as captured (bytes_c2s).
    let cookie_req_bytes = session_clients
        .first()
        .and_then(|c| recs.conn_to(*c, aa))
        .map_or(0, |c| c.bytes_c2s);
    let token_req_bytes = recs
        .http()
        .filter(|h| h.dir == Dir::C2s && h.carries.iter().any(|c| c == "Authorization"))
        .filter_map(|h| recs.conns().find(|c| c.conn == h.conn))
        .map(|c| c.bytes_c2s)
        .next()
        .unwrap_or(0);
    checks.check(
        "cookie_request_smaller_than_token_request",
        cookie_req_bytes > 0 && cookie_req_bytes < token_req_bytes,
    );
    if let Some((local, shared, _)) = context {
        checks.check("local_context_faster_than_shared_store", local < shared);
    }
    let ws_rec = recs.conn_to(ws_client, aa);
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
        .conn_to(http_msg_resp.client, aa)
        .map_or(0, |c| c.bytes_c2s);
    checks.check("n_ws_messages_captured", ws_msgs.len() == N);
    checks.check(
        "ws_message_smaller_than_http_request",
        ws_msg_bytes > 0.0 && ws_msg_bytes < http_msg_bytes as f64,
    );
    checks.check("token_every_instance_answered", token_ok == N);
    checks.check("session_only_a_half_answered", session_ok == N / 2);
    checks.check(
        "restart_token_200_session_401",
        token_restart == 200 && session_restart == 401,
    );
    checks.check("token_logins_leave_nothing_held", held_b_tokens == held_b0);
    checks.check(
        "session_logins_one_entry_each",
        held_b_sessions == held_b_tokens + USERS as u64,
    );
    checks.check(
        "revocation_session_at_once_token_not",
        session_after_logout == 401 && token_after_logout == 200,
    );
    let failed = checks.failed(out)?;

    let per = |x: f64| x / N as f64;
    let us = |x: f64| x * 1e6;
    out.say("Stateless wins:")?;
    out.say(&format!("  any instance:  {N} /me requests round-robin over A and B: token {token_ok}/{N} answered, session cookie {session_ok}/{N}"))?;
    out.say(&format!(
        "  restarts:      after A restarted: token {token_restart}, session {session_restart}"
    ))?;
    out.say(&format!("  memory:        sessions held by B: {held_b0} -> {held_b_tokens} after {USERS} token logins -> {held_b_sessions} after {USERS} session logins"))?;
    out.say("Stateful wins:")?;
    match context {
        Some((local, shared, token)) => out.say(&format!(
            "  user context:  GET /me, median of {CONTEXT_REQUESTS}: session in this instance's memory {:.0} µs; session fetched from Redis {:.0} µs; token verified {:.0} µs",
            us(local), us(shared), us(token)
        ))?,
        None => out.say("  user context:  not measured (no --redis)")?,
    }
    out.say(&format!("  request size:  GET /me with the session cookie {cookie_req_bytes} bytes; with the token {token_req_bytes} bytes"))?;
    out.say(&format!("  revocation:    after logout: session {session_after_logout}; the token still {token_after_logout}"))?;
    out.say(&format!("  conversation:  a WebSocket message {ws_msg_bytes:.0} bytes on the wire; the same text as an HTTP request {http_msg_bytes} bytes"))?;
    out.say("Neither design's win (TCP's state, which the stateless server used too):")?;
    out.say(&format!(
        "  keep-alive:    {N} requests on one connection: {:.1} packets and {:.0} µs per request; on fresh connections: {:.1} packets and {:.0} µs",
        per(keep_packets as f64), us(per(keep_time)), per(fresh_packets as f64), us(per(fresh_time))
    ))?;
    out.say(&format!(
        "Capture: {} ({} frames, {} connections).",
        cap.path.display(),
        cap.frames,
        recs.conns().count()
    ))?;

    let context_text = match context {
        Some((local, shared, token)) => format!(
            "a request needing the user's context found it in local memory in {:.0} µs (median) against {:.0} µs when the session had to be fetched from a shared store each time ({:.0} µs verifying a token), ",
            us(local), us(shared), us(token)
        ),
        None => String::new(),
    };
    let answer = format!(
        "Stateless: any instance answers (token {token_ok}/{N} round-robin vs session {session_ok}/{N}), a restart loses nothing (token {token_restart}, session {session_restart}), \
         and memory does not grow with users ({USERS} token logins: {} sessions held; {USERS} session logins: {}). \
         Stateful: {context_text}a session cookie request is {cookie_req_bytes} bytes against {token_req_bytes} with a token, \
         logout takes effect at once (session {session_after_logout}, token {token_after_logout}), and a WebSocket message costs {ws_msg_bytes:.0} bytes against {http_msg_bytes} for an HTTP request. \
         Reusing a connection (keep-alive: {:.1} instead of {:.1} packets per request) is a win of neither: it is TCP's state, and the stateless server used it too.",
        held_b_tokens.saturating_sub(held_b0),
        held_b_sessions.saturating_sub(held_b0),
        per(keep_packets as f64),
        per(fresh_packets as f64),
    );
    let rec = LabRec {
        name: LAB.name.into(),
        question: LAB.question.into(),
        answer,
        facts: common::facts(vec![
            ("round_robin_token_ok", json!(token_ok)),
            ("round_robin_session_ok", json!(session_ok)),
            ("restart_token_status", json!(token_restart)),
            ("restart_session_status", json!(session_restart)),
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
            (
                "context_local_memory_median_seconds",
                json!(context.map(|c| c.0)),
            ),
            (
                "context_shared_store_median_seconds",
                json!(context.map(|c| c.1)),
            ),
            (
                "context_token_verify_median_seconds",
                json!(context.map(|c| c.2)),
            ),
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
        settings: common::facts(vec![
            ("requests", json!(N)),
            ("users", json!(USERS)),
            ("context_requests", json!(CONTEXT_REQUESTS)),
            ("redis", json!(ctx.redis)),
            ("control", json!(control)),
        ]),
        ok: failed.is_empty(),
        failed,
    };
    let mut remembers = vec![
        (
            "stateless server (token)",
            format!("only the signing key: {} sessions held after {USERS} token logins", held_b_tokens.saturating_sub(held_b0)),
        ),
        (
            "stateful server (session in memory)",
            format!("a session entry per user on one instance: {} after {USERS} logins, lost at restart", held_b_sessions.saturating_sub(held_b_tokens)),
        ),
        (
            "stateful server (WebSocket)",
            "a per-connection history, for as long as the connection lasts".into(),
        ),
        (
            "both servers' kernels",
            "TCP's per-connection state, which keep-alive reuses whatever the design".into(),
        ),
    ];
    if context.is_some() {
        remembers.push((
            "R (sessions in Redis)",
            "nothing itself; fetches the session from the shared store on every request".into(),
        ));
    }
    common::write_report(ctx, out, &rec, &recs, &remembers)?;
    Ok(rec)
}
