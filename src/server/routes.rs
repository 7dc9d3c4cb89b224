//! The endpoints. Each answer is built from the request, the connection it came on, and — only
//! for the routes labelled stateful — what the server keeps on purpose.
//!
//! | route | kind | answer |
//! |-------|------|--------|
//! | `GET /` | stateless | a greeting |
//! | `* /echo` | stateless | everything the server knows about this request, as JSON |
//! | `GET /state` | — | what the server holds right now, measured |
//! | `POST /session/login` | stateful | `user=NAME` → a cookie naming a session kept in memory (or in Redis, with `ServerConfig::session_store`) |
//! | `POST /session/logout` | stateful | forget the session |
//! | `POST /token/login` | stateless | `user=NAME` → `{"token": ...}`, signed, kept nowhere |
//! | `GET /me` | both | who the cookie or `Authorization: Bearer` token says you are, or 401 |
//! | `GET /ws` | stateful | WebSocket with per-connection state ([`super::ws`]) |
//! | `POST`/`GET /records` | stateful | store a line / list them ([`super::records`], for `lab crash`) |

use super::auth;
use super::stats::{InFlight, RequestRecord};
use super::ws;
use super::{App, ConnCtx, Fault};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// Every response body is built whole; nothing streams.
pub type Body = Full<Bytes>;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "sid";

const GREETING: &str = "Hello from statescope: this answer was computed from your request alone.\n";

/// hyper's service: route one request.
pub async fn handle(
    req: Request<Incoming>,
    conn: Arc<ConnCtx>,
) -> Result<Response<Body>, Infallible> {
    let app = &conn.app;
    // If the client vanishes mid-request, hyper drops this future; both guards still drop.
    let _in_flight = InFlight::new(&app.stats);
    let nth = conn.requests.fetch_add(1, Relaxed) + 1;
    let rec = RequestRecord::new(&app.stats, nth);
    // What the log line needs from the request, kept before routing consumes it: cheap
    // clones (a standard method is inline, the path shares hyper's buffer).
    let logged = app
        .log
        .as_ref()
        .map(|_| (req.method().clone(), req.uri().clone(), req.version()));
    let resp = route(req, app, &conn, &rec).await;
    app.stats.requests_total.add(1);
    if let (Some(log), Some((method, uri, version))) = (&app.log, logged) {
        use hyper::body::Body as _;
        let line = super::log::Request {
            peer: &conn.peer_text,
            method: method.as_str(),
            path: uri.path(),
            version,
            status: resp.status().as_u16(),
            body_bytes: resp.body().size_hint().exact().unwrap_or(0),
            conn: conn.serial,
            nth,
            micros: rec.started.elapsed().as_micros() as u64,
        };
        log.write(|b| line.write_to(b));
    }
    Ok(resp)
}

async fn route(
    req: Request<Incoming>,
    app: &Arc<App>,
    conn: &Arc<ConnCtx>,
    rec: &RequestRecord<'_>,
) -> Response<Body> {
    match pick(req.uri().path(), req.method()) {
        Route::Root if app.config.fault == Some(Fault::ConnCounterInRoot) => {
            // The negative control's wrong server: an answer that depends on earlier requests.
            let body = format!(
                "{GREETING}request {} on this connection\n",
                rec.nth_on_connection
            );
            let mut resp = text(StatusCode::OK, "");
            *resp.body_mut() = Body::new(Bytes::from(body));
            resp
        }
        Route::Root => text(StatusCode::OK, GREETING),
        Route::Echo => echo(req, app, conn, rec).await,
        Route::State => state(app),
        Route::SessionLogin => session_login(req, app).await,
        Route::SessionLogout => session_logout(&req, app).await,
        Route::TokenLogin => token_login(req, app).await,
        Route::Me => me(&req, app).await,
        Route::Ws => websocket(req, app, conn),
        Route::Records => super::records::records(req, app).await,
        Route::WrongMethod(allow) => method_not_allowed(allow),
        Route::NotFound => json_response(
            StatusCode::NOT_FOUND,
            json!({
                "error": format!("no such path: {}", req.uri().path()),
                "paths": ["/", "/echo", "/state", "/session/login", "/session/logout",
                          "/token/login", "/me", "/ws", "/records"],
            }),
        ),
    }
}

enum Route {
    Root,
    Echo,
    State,
    SessionLogin,
    SessionLogout,
    TokenLogin,
    Me,
    Ws,
    Records,
    /// The path exists; these are the methods it takes.
    WrongMethod(&'static str),
    NotFound,
}

fn pick(path: &str, method: &Method) -> Route {
    let get = matches!(*method, Method::GET | Method::HEAD);
    let post = *method == Method::POST;
    match path {
        "/" if get => Route::Root,
        "/echo" => Route::Echo,
        "/state" if get => Route::State,
        "/me" if get => Route::Me,
        "/session/login" if post => Route::SessionLogin,
        "/session/logout" if post => Route::SessionLogout,
        "/token/login" if post => Route::TokenLogin,
        "/ws" => Route::Ws,
        "/records" => Route::Records,
        "/" | "/state" | "/me" => Route::WrongMethod("GET, HEAD"),
        "/session/login" | "/session/logout" | "/token/login" => Route::WrongMethod("POST"),
        _ => Route::NotFound,
    }
}

// ---- stateless ----

/// `/echo`: the request, and the transport facts of the connection it arrived on.
async fn echo(
    req: Request<Incoming>,
    app: &App,
    conn: &ConnCtx,
    rec: &RequestRecord<'_>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    // "name: value" strings, in arrival order (repeats kept); bytes that are not UTF-8 show as
    // U+FFFD.
    let headers: Vec<String> = parts
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {}", lossy(v.as_bytes())))
        .collect();
    let body = match read_body(body, app).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    json_response(
        StatusCode::OK,
        json!({
            "kind": "stateless",
            "note": "everything here comes from this request and the TCP connection it arrived on; \
                     nothing from earlier requests was kept",
            "request": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "query": parts.uri.query(),
                "version": format!("{:?}", parts.version),
                "headers": headers,
                "body_bytes": body.len(),
            },
            "transport": {
                "client": conn.peer.to_string(),
                "server": conn.local.to_string(),
                "requests_on_this_connection": rec.nth_on_connection,
            },
        }),
    )
}

/// `/state`: what this instance holds right now.
fn state(app: &App) -> Response<Body> {
    let s = &app.stats;
    json_response(
        StatusCode::OK,
        json!({
            "transport": {
                "open_tcp_connections": s.open_connections.load(Relaxed),
                "connections_accepted_total": s.connections_total.load(Relaxed),
                "connections_refused_busy": s.connections_refused.load(Relaxed),
                "connections_refused_per_address": s.connections_refused_per_address.load(Relaxed),
            },
            "per_request": {
                "note": "records are counted by their constructor and Drop; this /state request's own \
                         record is alive while this answer is built, so records_live includes it",
                "records_live": s.request_records_live.get(),
                "requests_in_flight": s.requests_in_flight.get(),
                "records_retained": s.records_retained(),
                "requests_total": s.requests_total.get(),
            },
            "stateful_contrasts": {
                "session_store": match &app.shared_sessions {
                    Some(s) => format!("redis {}", s.url()),
                    None => "memory".to_string(),
                },
                "sessions_held": app.sessions.len(),
                "sessions_evicted_oldest": app.sessions.evicted(),
                "websocket_connections_open": s.ws_open.load(Relaxed),
                "websocket_history_entries": s.ws_history_entries.load(Relaxed),
            },
        }),
    )
}

// ---- login, two ways ----

/// The `user` form field of a login request, or the response explaining what is wrong.
async fn login_user(req: Request<Incoming>, app: &App) -> Result<String, Response<Body>> {
    let body = read_body(req.into_body(), app).await?;
    let user = auth::form_field(&body, "user").ok_or_else(|| {
        error(
            StatusCode::BAD_REQUEST,
            "send a form body with a `user` field, e.g. `user=alice` \
             (Content-Type: application/x-www-form-urlencoded)",
        )
    })?;
    auth::valid_user(&user).map_err(|e| error(StatusCode::BAD_REQUEST, e))?;
    Ok(user)
}

async fn session_login(req: Request<Incoming>, app: &App) -> Response<Body> {
    let user = match login_user(req, app).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let (id, note) = match &app.shared_sessions {
        Some(shared) => match shared.create(&user).await {
            Ok(id) => (
                id,
                "the cookie holds only a random id; who it belongs to is kept in the shared \
                 session store, so every instance using that store knows it, restarts included",
            ),
            Err(e) => return store_down(&e),
        },
        None => (
            app.sessions.create(&user),
            "the cookie holds only a random id; who it belongs to is kept in this server's \
             memory, so a restart or another instance will not know it",
        ),
    };
    let mut resp = json_response(
        StatusCode::OK,
        json!({
            "kind": "session",
            "stateful": true,
            "user": user,
            "note": note,
        }),
    );
    let cookie = format!(
        "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        app.sessions.ttl().as_secs()
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

async fn session_logout(req: &Request<Incoming>, app: &App) -> Response<Body> {
    let removed = match (session_id(req), &app.shared_sessions) {
        (None, _) => false,
        (Some(id), None) => app.sessions.remove(id),
        (Some(id), Some(shared)) => match shared.remove(id).await {
            Ok(r) => r,
            Err(e) => return store_down(&e),
        },
    };
    let mut resp = json_response(
        StatusCode::OK,
        json!({ "kind": "session", "logged_out": removed }),
    );
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("sid=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    resp
}

async fn token_login(req: Request<Incoming>, app: &App) -> Response<Body> {
    let user = match login_user(req, app).await {
        Ok(u) => u,
        Err(resp) => return resp,
    };
    let expires = auth::unix_now().saturating_add(app.config.login_ttl.as_secs());
    if app.config.fault == Some(Fault::TokenLoginsKept) {
        // The negative control's wrong server: a token login that keeps state after all.
        app.sessions.create(&user);
    }
    json_response(
        StatusCode::OK,
        json!({
            "token": app.token_key.sign(&user, expires),
            "kind": "token",
            "stateful": false,
            "user": user,
            "expires": expires,
            "note": "the server keeps nothing: the token carries the user and expiry, signed; any \
                     instance with the same key file verifies it",
        }),
    )
}

fn session_id(req: &Request<Incoming>) -> Option<&str> {
    let values = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .map(|v| v.as_bytes());
    auth::cookie(values, SESSION_COOKIE)
}

/// `/me`: who the credentials say you are. A Bearer token is checked first, then the session
/// cookie; 200 for the first one that holds, else 401 naming what was wrong with each.
async fn me(req: &Request<Incoming>, app: &App) -> Response<Body> {
    let mut problems = Vec::new();
    if let Some(auth) = req.headers().get(header::AUTHORIZATION) {
        match auth.to_str().ok().and_then(|a| a.strip_prefix("Bearer ")) {
            None => problems.push("Authorization header is not `Bearer TOKEN`".to_string()),
            Some(token) => match verify_token(app, token.trim()) {
                Ok(claims) => {
                    return json_response(
                        StatusCode::OK,
                        json!({
                            "user": claims.user,
                            "kind": "token",
                            "expires": claims.expires,
                            "how": "verified the token's signature with the key; nothing was looked up",
                        }),
                    )
                }
                Err(e) => problems.push(e.to_string()),
            },
        }
    }
    if let Some(id) = session_id(req) {
        let (found, how) = match &app.shared_sessions {
            None => (
                app.sessions.lookup(id),
                "looked the cookie's session id up in this server's memory",
            ),
            Some(shared) => match shared.lookup(id).await {
                Ok(u) => (
                    u,
                    "looked the cookie's session id up in the shared session store (a round trip)",
                ),
                Err(e) => return store_down(&e),
            },
        };
        match found {
            Some(user) => {
                return json_response(
                    StatusCode::OK,
                    json!({
                        "user": user,
                        "kind": "session",
                        "how": how,
                    }),
                )
            }
            None => problems.push(
                "session cookie names no session here (forged, expired, logged out, or held by a \
                 server that has since restarted)"
                    .to_string(),
            ),
        }
    }
    if problems.is_empty() {
        problems
            .push("no credentials: send the session cookie or Authorization: Bearer TOKEN".into());
    }
    let mut resp = json_response(
        StatusCode::UNAUTHORIZED,
        json!({ "error": "not logged in", "problems": problems }),
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"statescope\""),
    );
    resp
}

fn verify_token(app: &App, token: &str) -> Result<auth::Claims, auth::TokenError> {
    let checked = app.token_key.verify(token, auth::unix_now());
    match checked {
        // The negative control's wrong server: believes what the token says, signed or not.
        Err(auth::TokenError::BadSignature) if app.config.fault == Some(Fault::UncheckedToken) => {
            auth::read_claims(token)
        }
        other => other,
    }
}

/// The shared session store did not answer: say so, rather than call the user logged out.
fn store_down(e: &redis::RedisError) -> Response<Body> {
    let line = e
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("the session store is unreachable ({line}); is Redis running?"),
    )
}

// ---- WebSocket ----

fn websocket(mut req: Request<Incoming>, app: &Arc<App>, conn: &Arc<ConnCtx>) -> Response<Body> {
    let accept = match ws::check_handshake(req.method(), req.headers()) {
        Ok(a) => a,
        Err(why) => {
            let mut resp = error(StatusCode::UPGRADE_REQUIRED, &why);
            resp.headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            return resp;
        }
    };
    let upgrade = hyper::upgrade::on(&mut req);
    let relay = app.config.broker.as_ref().map(|b| b.subscribe());
    tokio::spawn(ws::session(upgrade, app.clone(), conn.clone(), relay));
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    ws::switching_headers(&accept, resp.headers_mut());
    resp
}

// ---- helpers ----

/// Read a request body within `--max-body` and the body timeout, or the response saying why not.
pub(super) async fn read_body(body: Incoming, app: &App) -> Result<Bytes, Response<Body>> {
    use hyper::body::Body as _;
    let max = app.config.max_body;
    if body.size_hint().lower() > max as u64 {
        return Err(too_large(max));
    }
    let collected =
        tokio::time::timeout(app.config.header_timeout, Limited::new(body, max).collect()).await;
    match collected {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(max)),
        Ok(Err(e)) => Err(error(
            StatusCode::BAD_REQUEST,
            &format!("could not read the request body: {e}"),
        )),
        Err(_) => Err(error(
            StatusCode::REQUEST_TIMEOUT,
            "the request body arrived too slowly",
        )),
    }
}

fn too_large(max: usize) -> Response<Body> {
    let mut resp = error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body over the {max}-byte limit (--max-body)"),
    );
    // The unread rest of the body would be taken for the next request: close instead.
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn json_response(status: StatusCode, value: Value) -> Response<Body> {
    let mut body = serde_json::to_vec_pretty(&value).unwrap_or_default();
    body.push(b'\n');
    let mut resp = Response::new(Body::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub(super) fn error(status: StatusCode, msg: &str) -> Response<Body> {
    json_response(status, json!({ "error": msg }))
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here");
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}
