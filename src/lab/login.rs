//! `lab login`: ways to know a user is logged in over a protocol that remembers nothing, and
//! which to choose, from what was measured.
//!
//! HTTP forgets each request once answered, so "logged in" must travel with every request.
//! Instances A and B share a token key file, as a load balancer's pool would; C has no key
//! file; with `--redis URL`, R1 and R2 keep their sessions in that Redis. What you will see:
//!
//! * **Session in one instance's memory.** `POST /session/login` on A returns a cookie holding
//!   only a random id; who it belongs to is kept in A's memory. A recognises the cookie; B does
//!   not (401); after A restarts, A does not either (401). Logout removes the entry: the cookie
//!   stops working at once.
//! * **Session in a shared store (Redis).** The same cookie, but the entry lives in Redis: R2
//!   knows a session R1 created, R1 still knows it after restarting, and a logout on R2 ends it
//!   on R1 at once. The price is a round trip to the store on every request.
//! * **Signed token.** `POST /token/login` returns `user.expiry.signature`. The lab decodes it
//!   without any key, as anyone holding it can: a token is signed, not secret. Neither instance
//!   stores anything: both verify the signature, and so does A after its restart. A token
//!   altered to name another user is refused (the negative control `unchecked-token`, a server
//!   that does not check the signature, accepts it and fails `tampered_token_refused`). There is
//!   nothing to delete at logout: the token stays valid until its expiry, which the lab reads
//!   from the claims.
//! * **The key-file trap.** Without `--token-key-file` each process makes its own key: C's
//!   token dies when C restarts (401), though nothing about the token changed.
//!
//! Every request here goes on its own connection, so no TCP state helps any method.

use super::common::{
    self, cookie_header, fresh, login, me, raw_request, sessions_held, Checks, Response,
};
use super::{LabCtx, LabDef, LabOut};
use crate::record::{Dir, LabRec};
use crate::server::auth::{self, Claims};
use crate::server::{ServerConfig, ServerHandle};
use serde_json::json;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

pub const LAB: LabDef = LabDef {
    name: "login",
    question: "How does a server track whether a user is logged in, and what are the trade-offs?",
    summary: "session in memory, session in Redis, signed token: across instances, a restart, logout and a missing key file",
    run,
};

fn run(ctx: &LabCtx, out: &mut LabOut) -> anyhow::Result<LabRec> {
    common::with_key_file(ctx, "login", |key| run_with_key(ctx, out, key))
}

/// A logout on `addr` with `cookie`: the response and how long it took.
fn logout(addr: SocketAddr, cookie: &str) -> anyhow::Result<(Response, f64)> {
    let t = Instant::now();
    let r = fresh(
        addr,
        &raw_request(addr, "POST", "/session/logout", &[cookie.to_string()], ""),
    )?;
    Ok((r, t.elapsed().as_secs_f64()))
}

/// `token` with its user replaced by `user`, the signature kept: what a forger would send.
fn tampered(token: &str, user: &str) -> String {
    use base64::Engine;
    let rest = token.split_once('.').map_or("", |(_, r)| r);
    format!(
        "{}.{rest}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(user)
    )
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

fn token_of(r: &Response) -> String {
    r.json()["token"].as_str().unwrap_or("").to_string()
}

/// What the Redis variant measured; `None` without `--redis`.
struct Shared {
    me_r1: u16,
    me_r2: u16,
    me_r1_after_restart: u16,
    logout_status: u16,
    logout_s: f64,
    me_r1_after_logout: u16,
}

fn shared_variant(
    r1: ServerHandle,
    r2: &ServerHandle,
    cfg: &ServerConfig,
) -> anyhow::Result<(ServerHandle, Shared)> {
    let (a1, a2) = (r1.addr(), r2.addr());
    common::step("Redis sessions: login on R1, /me on R1 and R2");
    let cookie = cookie_header(&login(a1, "session", "alice")?)?;
    let me_r1 = me(a1, &cookie)?.status;
    let me_r2 = me(a2, &cookie)?.status;
    let r1 = common::restart_server(r1, cfg.clone())?;
    common::step("Redis sessions: /me on R1 after its restart");
    let me_r1_after_restart = me(a1, &cookie)?.status;
    common::step("Redis sessions: logout on R2, then /me on R1");
    let (lo, logout_s) = logout(a2, &cookie)?;
    let me_r1_after_logout = me(a1, &cookie)?.status;
    Ok((
        r1,
        Shared {
            me_r1,
            me_r2,
            me_r1_after_restart,
            logout_status: lo.status,
            logout_s,
            me_r1_after_logout,
        },
    ))
}

fn run_with_key(ctx: &LabCtx, out: &mut LabOut, key: &Path) -> anyhow::Result<LabRec> {
    let control = common::begin(out)?;
    let keyed = common::key_config(key);
    let a = common::start_server(keyed.clone())?;
    let b = common::start_server(keyed.clone())?;
    let c = common::start_server(ServerConfig::default())?;
    let shared_cfg = ctx.redis.as_ref().map(|url| ServerConfig {
        session_store: Some(url.clone()),
        ..keyed.clone()
    });
    let (r1, r2) = match &shared_cfg {
        Some(cfg) => (
            Some(common::start_server(cfg.clone())?),
            Some(common::start_server(cfg.clone())?),
        ),
        None => (None, None),
    };
    let mut ports = vec![a.addr().port(), b.addr().port(), c.addr().port()];
    ports.extend(r1.iter().chain(r2.iter()).map(|s| s.addr().port()));
    let cap = common::start_capture(&ports, &common::pcap_path(ctx, LAB.name))?;
    let (aa, ba, ca) = (a.addr(), b.addr(), c.addr());
    out.say(&format!(
        "A on {aa} and B on {ba} share a token key file; C on {ca} has none (a key of its own, made at start); capturing every port"
    ))?;
    match (&r1, &r2) {
        (Some(r1), Some(r2)) => out.say(&format!(
            "R1 on {} and R2 on {} keep their sessions in {}",
            r1.addr(),
            r2.addr(),
            ctx.redis.as_deref().unwrap_or("")
        ))?,
        _ => out.say("No --redis given: the shared-store session variant is skipped (give --redis redis://127.0.0.1:6379 to run it)")?,
    }

    // Session in A's memory.
    common::step("memory session: login on A, /me on A and B");
    let cookie = cookie_header(&login(aa, "session", "alice")?)?;
    let s_a = me(aa, &cookie)?.status;
    let s_b = me(ba, &cookie)?.status;
    // Token.
    common::step("token: login on A, /me on A and B");
    let t_login = login(aa, "token", "alice")?;
    let token = token_of(&t_login);
    let claims = auth::read_claims(&token).ok();
    let t_a = me(aa, &bearer(&token))?.status;
    let t_b = me(ba, &bearer(&token))?.status;
    common::step("token altered to say mallory, signature kept");
    let forged = tampered(&token, "mallory");
    let forged_resp = me(aa, &bearer(&forged))?;
    common::step("/state of A and B");
    let held_a = sessions_held(aa)?;
    let held_b = sessions_held(ba)?;

    // A restarts (with the key file).
    let a = common::restart_server(a, keyed.clone())?;
    common::step("A after its restart: /me with the cookie, with the token");
    let s_restart = me(aa, &cookie)?.status;
    let t_restart = me(aa, &bearer(&token))?.status;
    common::step("/state of A after its restart");
    let held_a_restart = sessions_held(aa)?;

    // The key-file trap: C signs with a key of its own, lost when it restarts.
    common::step("C (no key file): token login, /me");
    let c_token = token_of(&login(ca, "token", "carol")?);
    let c_before = me(ca, &bearer(&c_token))?.status;
    let c = common::restart_server(c, ServerConfig::default())?;
    common::step("C after its restart: /me with the same token");
    let c_after = me(ca, &bearer(&c_token))?.status;

    // Logout: a session can be ended; a token cannot.
    common::step("memory session: login on A, /me, logout, /me");
    let cookie2 = cookie_header(&login(aa, "session", "alice")?)?;
    let s_before_logout = me(aa, &cookie2)?.status;
    let (lo, logout_s) = logout(aa, &cookie2)?;
    let s_after_logout = me(aa, &cookie2)?.status;
    common::step("token after the user logged out");
    let t_after_logout = me(aa, &bearer(&token))?.status;
    let token_left_s = claims
        .as_ref()
        .map(|c| c.expires.saturating_sub(auth::unix_now()));

    let shared = match (r1, &r2, &shared_cfg) {
        (Some(r1), Some(r2), Some(cfg)) => {
            let (r1, s) = shared_variant(r1, r2, cfg)?;
            drop(r1);
            Some(s)
        }
        _ => None,
    };
    drop((a, b, c, r2));

    let (cap, recs) = common::finish_capture(cap, out)?;

    // ---- measure ----
    let mut checks = Checks::default();
    checks.check("memory_session_same_instance_200", s_a == 200);
    checks.check("memory_session_other_instance_401", s_b == 401);
    checks.check("memory_session_after_restart_401", s_restart == 401);
    checks.check("token_every_instance_200", t_a == 200 && t_b == 200);
    checks.check("token_after_restart_200", t_restart == 200);
    checks.check(
        "token_claims_readable_without_key",
        claims.as_ref().map(|c| c.user.as_str()) == Some("alice"),
    );
    checks.check("tampered_token_refused", forged_resp.status == 401);
    checks.check(
        "token_without_key_file_dies_on_restart",
        c_before == 200 && c_after == 401,
    );
    checks.check(
        "sessions_held_a1_b0_then_0",
        held_a == Some(1) && held_b == Some(0) && held_a_restart == Some(0),
    );
    checks.check(
        "memory_logout_ends_session_at_once",
        s_before_logout == 200 && lo.status == 200 && s_after_logout == 401,
    );
    checks.check("token_still_valid_after_logout", t_after_logout == 200);
    if let Some(s) = &shared {
        checks.check(
            "redis_session_seen_by_other_instance",
            s.me_r1 == 200 && s.me_r2 == 200,
        );
        checks.check(
            "redis_session_survives_restart",
            s.me_r1_after_restart == 200,
        );
        checks.check(
            "redis_logout_ends_session_everywhere",
            s.logout_status == 200 && s.me_r1_after_logout == 401,
        );
    }
    // The capture holds what the clients saw.
    let mut client_401 = [s_b, s_restart, forged_resp.status, c_after, s_after_logout]
        .iter()
        .filter(|&&s| s == 401)
        .count();
    if let Some(s) = &shared {
        client_401 += [
            s.me_r1,
            s.me_r2,
            s.me_r1_after_restart,
            s.me_r1_after_logout,
        ]
        .iter()
        .filter(|&&s| s == 401)
        .count();
    }
    let unauthorized = recs
        .http()
        .filter(|h| h.dir == Dir::S2c && h.status == Some(401))
        .count();
    checks.check("capture_401s_are_the_clients", unauthorized == client_401);
    let with_cookie = recs
        .http()
        .filter(|h| h.method.is_some() && h.carries.iter().any(|c| c == "Cookie"))
        .count();
    let with_auth = recs
        .http()
        .filter(|h| h.method.is_some() && h.carries.iter().any(|c| c == "Authorization"))
        .count();
    let conns = recs.conns().count();
    checks.check(
        "one_connection_per_request",
        recs.conns().all(|c| c.http_requests == 1),
    );
    let failed = checks.failed(out)?;

    // ---- narrative ----
    let row = |what: &str, s: String, t: String| format!("{what:<38} {s:>8} {t:>8}");
    let st = |s: u16| s.to_string();
    out.say(&row("GET /me with ...", "cookie".into(), "token".into()))?;
    out.say(&row("A, the instance that logged in", st(s_a), st(t_a)))?;
    out.say(&row("B, the other instance", st(s_b), st(t_b)))?;
    out.say(&row("A after its restart", st(s_restart), st(t_restart)))?;
    out.say(&row(
        "A after logout",
        st(s_after_logout),
        st(t_after_logout),
    ))?;
    if let Some(s) = &shared {
        out.say(&row(
            "R2 (Redis sessions), login on R1",
            st(s.me_r2),
            "-".into(),
        ))?;
        out.say(&row(
            "R1 after its restart",
            st(s.me_r1_after_restart),
            "-".into(),
        ))?;
        out.say(&row(
            "R1 after logout on R2",
            st(s.me_r1_after_logout),
            "-".into(),
        ))?;
    }
    let claims_text = claims.as_ref().map_or("(unreadable)".to_string(), |c| {
        format!("user {:?}, expires {} (Unix time)", c.user, c.expires)
    });
    out.say(&format!(
        "The token, decoded without any key: {claims_text}. Altered to say \"mallory\" with the signature kept: {}.",
        forged_resp.status
    ))?;
    out.say(&format!(
        "Key-file trap: C (no --token-key-file) accepted its token ({c_before}), restarted with a new key, then refused the same token ({c_after})."
    ))?;
    out.say(&format!(
        "Sessions held: A {}, B {}, A after restart {}. Logout (memory) took {:.0} µs and ended the session at once; the token still worked ({t_after_logout}) and stays valid {} s more.",
        held_a.unwrap_or(0),
        held_b.unwrap_or(0),
        held_a_restart.unwrap_or(0),
        logout_s * 1e6,
        token_left_s.map_or("?".into(), |s| s.to_string())
    ))?;
    out.say(&format!(
        "Credential sent with every request: cookie header {} bytes, Authorization header {} bytes.",
        cookie.len(),
        bearer(&token).len()
    ))?;
    out.say(&format!(
        "Capture: {} ({} frames, {conns} connections, {unauthorized} responses 401).",
        cap.path.display(),
        cap.frames
    ))?;

    let shared_text = match &shared {
        Some(s) => format!(
            "Kept in a shared store (Redis), the session was known to the other instance ({}), survived a restart ({}), and a logout on one instance ended it on the other at once ({}, logout {:.0} µs): \
             use a shared session store when logout or revocation must take effect immediately, as for browser logins, at the price of a store round trip on every request. ",
            s.me_r2, s.me_r1_after_restart, s.me_r1_after_logout, s.logout_s * 1e6
        ),
        None => "(The shared-store variant was not run: no --redis.) ".to_string(),
    };
    let answer = format!(
        "Either the server remembers (a session: the {}-byte cookie names an entry) or the client carries signed proof (a token, {} bytes). \
         Kept in one instance's memory, the session worked only there: A {s_a}, B {s_b}, A after a restart {s_restart}; a single server only. \
         {shared_text}\
         The token worked on A {t_a}, B {t_b} and after a restart {t_restart} with nothing stored, and its contents are readable by anyone ({claims_text}); an altered one was refused ({}). \
         But logout cannot end it ({t_after_logout} after logout; valid {} s more), so use a signed token where instances must verify without a shared store, with a short expiry, \
         and give every instance the same --token-key-file: without one, a restart changed the key and the token died ({c_before} then {c_after}). Revoking a token early needs a list of revoked tokens checked on every request, which is a shared store again.",
        cookie.len(),
        bearer(&token).len(),
        forged_resp.status,
        token_left_s.map_or("?".into(), |s| s.to_string()),
    );
    let claims_json = claims
        .as_ref()
        .map(|Claims { user, expires }| json!({"user": user, "expires": expires}));
    let rec = LabRec {
        name: LAB.name.into(),
        question: LAB.question.into(),
        answer,
        facts: common::facts(vec![
            ("session_me_same_instance", json!(s_a)),
            ("session_me_other_instance", json!(s_b)),
            ("session_me_after_restart", json!(s_restart)),
            ("session_me_after_logout", json!(s_after_logout)),
            ("session_logout_seconds", json!(logout_s)),
            ("token_me_same_instance", json!(t_a)),
            ("token_me_other_instance", json!(t_b)),
            ("token_me_after_restart", json!(t_restart)),
            ("token_me_after_logout", json!(t_after_logout)),
            ("token_valid_after_logout_seconds", json!(token_left_s)),
            ("token_claims", json!(claims_json)),
            ("tampered_token_status", json!(forged_resp.status)),
            ("no_key_file_token_before_restart", json!(c_before)),
            ("no_key_file_token_after_restart", json!(c_after)),
            ("sessions_held_a", json!(held_a)),
            ("sessions_held_b", json!(held_b)),
            ("sessions_held_a_after_restart", json!(held_a_restart)),
            (
                "redis_session_me_r1",
                json!(shared.as_ref().map(|s| s.me_r1)),
            ),
            (
                "redis_session_me_r2",
                json!(shared.as_ref().map(|s| s.me_r2)),
            ),
            (
                "redis_session_me_r1_after_restart",
                json!(shared.as_ref().map(|s| s.me_r1_after_restart)),
            ),
            (
                "redis_session_me_r1_after_logout_on_r2",
                json!(shared.as_ref().map(|s| s.me_r1_after_logout)),
            ),
            (
                "redis_logout_seconds",
                json!(shared.as_ref().map(|s| s.logout_s)),
            ),
            ("cookie_header_bytes", json!(cookie.len())),
            ("authorization_header_bytes", json!(bearer(&token).len())),
            ("requests_with_cookie", json!(with_cookie)),
            ("requests_with_authorization", json!(with_auth)),
            ("unauthorized_responses", json!(unauthorized)),
            ("conns_total", json!(conns)),
            ("frames", json!(cap.frames)),
            ("pcap", json!(cap.path.display().to_string())),
        ]),
        settings: common::facts(vec![
            ("redis", json!(ctx.redis)),
            ("token_ttl_seconds", json!(keyed.login_ttl.as_secs())),
            ("control", json!(control)),
        ]),
        ok: failed.is_empty(),
        failed,
    };
    let mut remembers = vec![
        (
            "A (session in memory)",
            format!(
                "a session entry on this instance only ({} held); none after its restart",
                held_a.unwrap_or(0)
            ),
        ),
        (
            "B (same pool)",
            format!("nothing of A's sessions ({} held)", held_b.unwrap_or(0)),
        ),
        (
            "A and B for tokens",
            "only the signing key (32 bytes, in the shared key file); nothing per user".into(),
        ),
        (
            "C (no key file)",
            "only a signing key made at start, lost at restart with every token it signed".into(),
        ),
    ];
    if shared.is_some() {
        remembers.push((
            "R1, R2 (sessions in Redis)",
            "nothing themselves; the session entry lives in Redis, seen by both and across restarts".into(),
        ));
    }
    common::write_report(ctx, out, &rec, &recs, &remembers)?;
    Ok(rec)
}
