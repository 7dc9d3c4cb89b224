//! `lab login`: two ways to know a user is logged in over a protocol that remembers nothing.
//!
//! HTTP forgets each request once answered, so "logged in" must travel with every request.
//! What you will see, with two server instances (A and B, sharing a token key file, as a load
//! balancer's pool would) and one restart of A:
//!
//! * **Server-side session.** `POST /session/login` on A returns a cookie holding only a random
//!   id; who it belongs to is kept in A's memory. A recognises the cookie; B does not (401);
//!   after A restarts, A does not either (401). Logout removes the entry: the cookie stops
//!   working at once.
//! * **Signed token.** `POST /token/login` returns a token carrying the user and expiry,
//!   signed. Neither instance stores anything: both verify the signature, and so does A after
//!   its restart (200). The price: the token is larger than the cookie, sent with every
//!   request, and there is nothing to delete at logout: it stays valid until it expires.
//!
//! Every request here goes on its own connection, so no TCP state helps either method.

use super::common::{self, cookie_header, fresh, login, me, raw_request, sessions_held, Checks};
use super::{LabCtx, LabDef, LabOut};
use crate::record::{Dir, LabRec};
use serde_json::json;

pub const LAB: LabDef = LabDef {
    name: "login",
    question: "How does a server track whether a user is logged in, and what are the trade-offs?",
    summary: "server-side session vs signed token across two instances and a restart: who still knows you",
    run,
};

fn run(ctx: &LabCtx, out: &mut LabOut) -> anyhow::Result<LabRec> {
    common::with_key_file(ctx, "login", |key| run_with_key(ctx, out, key))
}

fn run_with_key(ctx: &LabCtx, out: &mut LabOut, key: &std::path::Path) -> anyhow::Result<LabRec> {
    let (a, b, cap) = common::start_pair(ctx, LAB.name, key)?;
    let (aa, ba) = (a.addr(), b.addr());
    out.say(&format!(
        "instance A on {aa}, instance B on {ba} (same token key file); capturing both ports"
    ))?;

    // Session: the server remembers.
    let s_login = login(aa, "session", "alice")?;
    let cookie = cookie_header(&s_login)?;
    let s_a = me(aa, &cookie)?.status;
    let s_b = me(ba, &cookie)?.status;
    // Token: the client carries it all.
    let t_login = login(aa, "token", "alice")?;
    let token = t_login.json()["token"].as_str().unwrap_or("").to_string();
    let bearer = format!("Authorization: Bearer {token}");
    let t_a = me(aa, &bearer)?.status;
    let t_b = me(ba, &bearer)?.status;
    let held_a = sessions_held(aa)?;
    let held_b = sessions_held(ba)?;

    // A restarts.
    let a = common::restart_server(a, common::key_config(key))?;
    let s_restart = me(aa, &cookie)?.status;
    let t_restart = me(aa, &bearer)?.status;
    let held_a_restart = sessions_held(aa)?;

    // Logout: a session can be ended; a token cannot.
    let cookie2 = cookie_header(&login(aa, "session", "alice")?)?;
    let s_before_logout = me(aa, &cookie2)?.status;
    let logout = fresh(
        aa,
        &raw_request(
            aa,
            "POST",
            "/session/logout",
            std::slice::from_ref(&cookie2),
            "",
        ),
    )?;
    let s_after_logout = me(aa, &cookie2)?.status;
    let t_after_logout = me(aa, &bearer)?.status;
    drop((a, b));

    let (cap, recs) = common::finish_capture(cap, out)?;

    // ---- measure ----
    let mut checks = Checks::default();
    checks.check("session: A knows the cookie", s_a == 200);
    checks.check("session: B does not (401)", s_b == 401);
    checks.check("session: A after restart does not (401)", s_restart == 401);
    checks.check("token: A and B both accept it", t_a == 200 && t_b == 200);
    checks.check("token: A after restart accepts it", t_restart == 200);
    checks.check(
        "A held 1 session, B none; 0 after the restart",
        held_a == Some(1) && held_b == Some(0) && held_a_restart == Some(0),
    );
    checks.check(
        "logout ends the session at once",
        s_before_logout == 200 && logout.status == 200 && s_after_logout == 401,
    );
    checks.check(
        "the token still works after the user 'logged out'",
        t_after_logout == 200,
    );
    let responses: Vec<u16> = recs
        .http()
        .filter(|h| h.dir == Dir::S2c)
        .filter_map(|h| h.status)
        .collect();
    let unauthorized = responses.iter().filter(|&&s| s == 401).count();
    checks.check("the capture shows three 401s", unauthorized == 3);
    let with_cookie = recs
        .http()
        .filter(|h| h.method.is_some() && h.carries.iter().any(|c| c == "Cookie"))
        .count();
    let with_auth = recs
        .http()
        .filter(|h| h.method.is_some() && h.carries.iter().any(|c| c == "Authorization"))
        .count();
    checks.check(
        "the capture shows 6 requests carrying the cookie and 4 the token",
        with_cookie == 6 && with_auth == 4,
    );
    let conns = recs.conns().count();
    checks.check("one connection per request (16)", conns == 16);

    let row = |what: &str, s: u16, t: u16| format!("{what:<34} {s:>7} {t:>7}");
    out.say(&format!(
        "{:<34} {:>7} {:>7}",
        "GET /me with ...", "cookie", "token"
    ))?;
    out.say(&row("A, the instance that logged in", s_a, t_a))?;
    out.say(&row("B, the other instance", s_b, t_b))?;
    out.say(&row("A after its restart", s_restart, t_restart))?;
    out.say(&row("A after logout", s_after_logout, t_after_logout))?;
    out.say(&format!(
        "Sessions held: A {}, B {}, A after restart {}. Credential sent with every request: cookie header {} bytes, Authorization header {} bytes.",
        held_a.unwrap_or(0),
        held_b.unwrap_or(0),
        held_a_restart.unwrap_or(0),
        cookie.len(),
        bearer.len()
    ))?;
    out.say(&format!(
        "Capture: {} ({} frames, {conns} connections, {unauthorized} responses 401).",
        cap.path.display(),
        cap.frames
    ))?;

    let answer = format!(
        "Either the server remembers (session: the {}-byte cookie names an entry in A's memory) or the client carries proof (token: {} bytes, signed). \
         The session worked only where it was stored: A {s_a}, B {s_b}, A after restart {s_restart}; but logout ended it at once ({s_after_logout}). \
         The token worked on A {t_a}, B {t_b} and after the restart {t_restart}, with nothing stored, but it is {:.1}x the cookie's size on every request and still worked after logout ({t_after_logout}) until it expires. \
         Sessions need shared or sticky storage to scale; tokens need expiry (or a revocation list, which is state again).",
        cookie.len(),
        bearer.len(),
        bearer.len() as f64 / cookie.len().max(1) as f64
    );
    Ok(LabRec {
        name: LAB.name.into(),
        question: LAB.question.into(),
        answer,
        facts: common::facts(vec![
            ("session_me_same_instance", json!(s_a)),
            ("session_me_other_instance", json!(s_b)),
            ("session_me_after_restart", json!(s_restart)),
            ("session_me_after_logout", json!(s_after_logout)),
            ("token_me_same_instance", json!(t_a)),
            ("token_me_other_instance", json!(t_b)),
            ("token_me_after_restart", json!(t_restart)),
            ("token_me_after_logout", json!(t_after_logout)),
            ("sessions_held_a", json!(held_a)),
            ("sessions_held_b", json!(held_b)),
            ("sessions_held_a_after_restart", json!(held_a_restart)),
            ("cookie_header_bytes", json!(cookie.len())),
            ("authorization_header_bytes", json!(bearer.len())),
            ("requests_with_cookie", json!(with_cookie)),
            ("requests_with_authorization", json!(with_auth)),
            ("unauthorized_responses", json!(unauthorized)),
            ("conns_total", json!(conns)),
            ("frames", json!(cap.frames)),
            ("pcap", json!(cap.path.display().to_string())),
        ]),
        ok: checks.ok(out)?,
        ..Default::default()
    })
}
