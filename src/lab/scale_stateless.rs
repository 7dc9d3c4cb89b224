//! `lab scale-stateless`: logged-in users behind a load balancer, with one and with three
//! `serve` processes, and one of the three killed.
//!
//! What you will see: `statescope serve` *processes* sharing one token key file, behind a load
//! balancer. Twelve users log in through it, six with a session cookie (`POST /session/login`:
//! the session lives in the memory of the instance that answered) and six with a signed token
//! (`POST /token/login`: nothing is kept). Then a bounded stream of `GET /me` requests, each
//! user in turn, goes through the balancer:
//!
//! 1. with **one** instance, then with **three**: requests per second for each (on one machine
//!    the instances share its CPUs, so the number says what this machine gives, not a law);
//! 2. with three, instance 2 is killed by its PID (`SIGKILL`) a third of the way in. The
//!    balancer skips it from then on. The session users whose session lived on instance 2 are
//!    sent elsewhere and get `401`: their login is gone. The token users notice nothing: any
//!    instance with the key verifies their token.
//!
//! The balancer is in-process (hyper server and client): round robin, except that a request
//! carrying a session cookie goes to the instance that issued it (sticky sessions, learned from
//! `Set-Cookie`, as a balancer must do for in-memory sessions to work at all); a backend that
//! could not be reached is skipped for a second and the request retried on the next one. For a
//! real deployment the lab writes the nginx equivalent to `OUT_DIR/nginx-upstream.conf`.
//!
//! The negative control `--variant wrong-pinning-balancer` pins every request to instance 1:
//! the kill of instance 2 then shows nothing, and the lab must say
//! `killed_instance_served_before_kill` failed. With `--html FILE` the lab draws requests per
//! instance over time with the kill marked.

use super::procs::{self, svg, Proc};
use super::scale_stateful::{facts, runtime};
use super::{LabCtx, LabDef, LabOut};
use crate::record::LabRec;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub const LAB: LabDef = LabDef {
    name: "scale-stateless",
    question: "Why do stateless servers scale by simply adding instances behind a load balancer?",
    summary: "session and token users behind a balancer: 1 vs 3 serve processes, then one killed",
    run,
};

const INSTANCES: usize = 3;
/// `GET /me` requests per measured run.
const REQUESTS: u64 = 300;
const CONCURRENCY: u64 = 4;
/// Users of each login kind.
const USERS_PER_KIND: usize = 6;
/// How long a backend that failed is skipped (nginx `fail_timeout`).
const FAIL_TIMEOUT: Duration = Duration::from_secs(1);
/// Per-request bound for every hop.
const HOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest body the balancer forwards.
const MAX_BODY: usize = 1 << 20;
/// The wrong variant: a balancer that pins everything to instance 1.
pub const WRONG_PINNING_BALANCER: &str = "wrong-pinning-balancer";

fn run(ctx: &LabCtx, out: &mut LabOut) -> anyhow::Result<LabRec> {
    let variant = ctx.variant_of(LAB.name, &[WRONG_PINNING_BALANCER])?;
    runtime()?.block_on(run_with(ctx, out, variant))
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers (shared with `lab crash`)
// ---------------------------------------------------------------------------------------------

/// Why a forwarded request failed: before anything was sent, or after.
#[derive(Debug)]
pub(crate) enum HopError {
    /// Could not connect or handshake: the request never reached a server; always safe to retry.
    Connect(String),
    /// Sent, but no complete answer came back.
    AfterSend(String),
}

impl std::fmt::Display for HopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HopError::Connect(e) => write!(f, "could not connect: {e}"),
            HopError::AfterSend(e) => write!(f, "no answer: {e}"),
        }
    }
}

/// One HTTP/1.1 request on a fresh connection to `addr`; the status and body.
pub(crate) async fn http_request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &hyper::HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, hyper::HeaderMap, Bytes), HopError> {
    let connect = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())
    };
    let (mut sender, conn) = tokio::time::timeout(HOP_TIMEOUT, connect)
        .await
        .map_err(|_| HopError::Connect("timed out".into()))?
        .map_err(HopError::Connect)?;
    // The connection task drives the socket; it ends when the exchange is over.
    let driver = tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Full::new(body))
        .map_err(|e| HopError::Connect(e.to_string()))?;
    for (k, v) in headers {
        if k != hyper::header::HOST && k != hyper::header::CONNECTION {
            req.headers_mut().insert(k.clone(), v.clone());
        }
    }
    let exchange = async {
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((parts.status, parts.headers, body))
    };
    let res = tokio::time::timeout(HOP_TIMEOUT, exchange)
        .await
        .map_err(|_| HopError::AfterSend("timed out".into()))?
        .map_err(HopError::AfterSend);
    driver.abort();
    res
}

/// Serve `listener` with `handle` until the returned task is aborted; aborting it also ends
/// every connection (they live in its `JoinSet`), as a killed process's would.
pub(crate) fn spawn_http<F, Fut>(listener: TcpListener, handle: F) -> tokio::task::JoinHandle<()>
where
    F: Fn(Request<Incoming>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                acc = listener.accept() => {
                    let Ok((stream, _)) = acc else { continue };
                    let handle = handle.clone();
                    conns.spawn(async move {
                        let svc = service_fn(move |req| {
                            let handle = handle.clone();
                            async move { Ok::<_, Infallible>(handle(req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
                Some(_) = conns.join_next() => {}
            }
        }
    })
}

pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

// ---------------------------------------------------------------------------------------------
// The load balancer
// ---------------------------------------------------------------------------------------------

/// One answer the balancer passed back: when (ms since the balancer started), from which
/// backend, with what status.
#[derive(Debug, Clone, Copy)]
struct Served {
    ms: f64,
    backend: usize,
}

/// Round robin with sticky sessions (or, wrongly, everything pinned to backend 0).
struct Balancer {
    backends: Vec<SocketAddr>,
    pinned: bool,
    next: AtomicUsize,
    /// Requests each backend answered.
    served: Vec<AtomicU64>,
    /// Until when each backend is skipped after a failure.
    down_until: Mutex<Vec<Option<Instant>>>,
    /// Session id → the backend that issued it (learned from `Set-Cookie`).
    sticky: Mutex<HashMap<String, usize>>,
    /// Attempts that failed and were retried on another backend.
    retries: AtomicU64,
    /// Requests no backend answered (the client got a 502).
    failed: AtomicU64,
    started: Instant,
    log: Mutex<Vec<Served>>,
}

/// The `sid` value of a `Cookie:` or `Set-Cookie:` header.
fn sid_of(v: &str) -> Option<String> {
    v.split(';')
        .map(str::trim)
        .find_map(|kv| kv.strip_prefix("sid="))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl Balancer {
    fn new(backends: Vec<SocketAddr>, pinned: bool) -> Self {
        let n = backends.len();
        Balancer {
            backends,
            pinned,
            next: AtomicUsize::new(0),
            served: (0..n).map(|_| AtomicU64::new(0)).collect(),
            down_until: Mutex::new(vec![None; n]),
            sticky: Mutex::new(HashMap::new()),
            retries: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            started: Instant::now(),
            log: Mutex::new(Vec::new()),
        }
    }

    fn is_down(&self, i: usize) -> bool {
        self.down_until.lock().unwrap_or_else(|e| e.into_inner())[i]
            .is_some_and(|t| t > Instant::now())
    }

    /// The backend for this request: the session's own when it is up, else the next in turn
    /// among those not being skipped (all of them, if every one is).
    fn pick(&self, sid: Option<&str>) -> usize {
        let n = self.backends.len();
        if self.pinned && !self.is_down(0) {
            return 0;
        }
        if let Some(i) = sid.and_then(|s| {
            self.sticky
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(s)
                .copied()
        }) {
            if !self.is_down(i) {
                return i;
            }
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let live: Vec<usize> = (0..n).filter(|&i| !self.is_down(i)).collect();
        if live.is_empty() {
            turn % n
        } else {
            live[turn % live.len()]
        }
    }

    fn mark_down(&self, i: usize) {
        self.down_until.lock().unwrap_or_else(|e| e.into_inner())[i] =
            Some(Instant::now() + FAIL_TIMEOUT);
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let Ok(body) = Limited::new(body, MAX_BODY).collect().await else {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or cut short\n",
            );
        };
        let body = body.to_bytes();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        let sid = parts
            .headers
            .get(hyper::header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(sid_of);
        // Retrying after the request was sent could run it twice: only for idempotent methods.
        let idempotent = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        let mut tried = HashSet::new();
        for _ in 0..self.backends.len() {
            let mut i = self.pick(sid.as_deref());
            if tried.contains(&i) {
                // Every pick is one not yet tried, so a retry never lands twice on one backend.
                match (0..self.backends.len()).find(|j| !tried.contains(j)) {
                    Some(j) => i = j,
                    None => break,
                }
            }
            tried.insert(i);
            match http_request(
                self.backends[i],
                parts.method.clone(),
                &path,
                &parts.headers,
                body.clone(),
            )
            .await
            {
                Ok((status, headers, body)) => {
                    self.served[i].fetch_add(1, Ordering::Relaxed);
                    self.log
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(Served {
                            ms: self.started.elapsed().as_secs_f64() * 1e3,
                            backend: i,
                        });
                    if let Some(new) = headers
                        .get(hyper::header::SET_COOKIE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(sid_of)
                    {
                        self.sticky
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(new, i);
                    }
                    let mut r = text(status, body);
                    for (k, v) in &headers {
                        if k != hyper::header::CONNECTION && k != hyper::header::TRANSFER_ENCODING {
                            r.headers_mut().insert(k.clone(), v.clone());
                        }
                    }
                    r.headers_mut().insert(
                        "x-statescope-backend",
                        hyper::header::HeaderValue::from(i + 1),
                    );
                    return r;
                }
                Err(e) => {
                    self.mark_down(i);
                    if matches!(e, HopError::AfterSend(_)) && !idempotent {
                        break;
                    }
                    self.retries.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.failed.fetch_add(1, Ordering::Relaxed);
        text(StatusCode::BAD_GATEWAY, "no backend answered\n")
    }
}

/// The nginx equivalent of the in-process balancer, for real deployments.
fn nginx_config(backends: &[SocketAddr]) -> String {
    let mut s = String::from("upstream statescope {\n    # round robin is nginx's default; in-memory sessions also need\n    # the same client on the same server (sticky), e.g. `hash $cookie_sid consistent;`\n");
    for b in backends {
        s += &format!("    server {b} max_fails=1 fail_timeout=1s;\n");
    }
    s += "}\nserver {\n    listen 127.0.0.1:8080;\n    location / {\n        proxy_pass http://statescope;\n";
    s += "        # retry on the next backend when one cannot be reached (GET and other idempotent methods)\n";
    s += "        proxy_next_upstream error timeout;\n    }\n}\n";
    s
}

// ---------------------------------------------------------------------------------------------
// The lab
// ---------------------------------------------------------------------------------------------

/// One logged-in user: its kind and the header that proves it.
#[derive(Debug, Clone)]
struct User {
    name: String,
    session: bool,
    /// `Cookie: sid=…` or `Authorization: Bearer …`.
    cred: (hyper::header::HeaderName, hyper::header::HeaderValue),
    /// The backend that answered the login.
    home: usize,
}

/// A balancer in front of `addrs`, listening; returns it, its address and its task.
async fn start_balancer(
    addrs: Vec<SocketAddr>,
    pinned: bool,
) -> anyhow::Result<(Arc<Balancer>, SocketAddr, tokio::task::JoinHandle<()>)> {
    let lb = Arc::new(Balancer::new(addrs, pinned));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let lb2 = lb.clone();
    let task = spawn_http(listener, move |req| lb2.clone().handle(req));
    Ok((lb, addr, task))
}

/// Log every user in through the balancer at `lb`.
async fn login_all(lb: SocketAddr) -> anyhow::Result<Vec<User>> {
    let mut users = Vec::new();
    for n in 0..USERS_PER_KIND * 2 {
        let session = n % 2 == 0;
        let name = format!("{}{}", if session { "sess" } else { "tok" }, n / 2 + 1);
        let path = if session {
            "/session/login"
        } else {
            "/token/login"
        };
        let mut h = hyper::HeaderMap::new();
        h.insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let (status, headers, body) = http_request(
            lb,
            Method::POST,
            path,
            &h,
            Bytes::from(format!("user={name}")),
        )
        .await
        .map_err(|e| anyhow::anyhow!("login of {name} through the balancer: {e}"))?;
        if status != StatusCode::OK {
            anyhow::bail!("login of {name} through the balancer got {status}");
        }
        let home = headers
            .get("x-statescope-backend")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
            .map_or(0, |b| b - 1);
        let cred = if session {
            let sid = headers
                .get(hyper::header::SET_COOKIE)
                .and_then(|v| v.to_str().ok())
                .and_then(sid_of)
                .ok_or_else(|| anyhow::anyhow!("session login of {name} set no cookie"))?;
            (
                hyper::header::COOKIE,
                hyper::header::HeaderValue::from_str(&format!("sid={sid}"))?,
            )
        } else {
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            let token = v["token"]
                .as_str()
                .ok_or_else(|| anyhow::anyhow!("token login of {name} returned no token"))?;
            (
                hyper::header::AUTHORIZATION,
                hyper::header::HeaderValue::from_str(&format!("Bearer {token}"))?,
            )
        };
        users.push(User {
            name,
            session,
            cred,
            home,
        });
    }
    Ok(users)
}

/// One `GET /me` as the client saw it.
#[derive(Debug, Clone)]
struct MeResult {
    user: usize,
    status: u16,
    /// Which backend answered (0-based), if any did.
    backend: Option<usize>,
    /// When it was sent, ms since the balancer started.
    sent_ms: f64,
}

/// A bounded stream of `GET /me` running in the background.
struct Load {
    done: Arc<AtomicU64>,
    results: Arc<Mutex<Vec<MeResult>>>,
    workers: JoinSet<()>,
}

impl Load {
    /// `requests` `GET /me` through `lb`, user after user, [`CONCURRENCY`] at a time.
    fn start(lb: SocketAddr, started: Instant, users: &[User], requests: u64) -> Load {
        let next = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicU64::new(0));
        let results = Arc::new(Mutex::new(Vec::new()));
        let mut workers = JoinSet::new();
        let users = Arc::new(users.to_vec());
        for _ in 0..CONCURRENCY {
            let (next, done, results, users) =
                (next.clone(), done.clone(), results.clone(), users.clone());
            workers.spawn(async move {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= requests {
                        return;
                    }
                    let u = n as usize % users.len();
                    let mut h = hyper::HeaderMap::new();
                    h.insert(users[u].cred.0.clone(), users[u].cred.1.clone());
                    let sent_ms = started.elapsed().as_secs_f64() * 1e3;
                    let (status, backend) =
                        match http_request(lb, Method::GET, "/me", &h, Bytes::new()).await {
                            Ok((s, headers, _)) => (
                                s.as_u16(),
                                headers
                                    .get("x-statescope-backend")
                                    .and_then(|v| v.to_str().ok())
                                    .and_then(|v| v.parse::<usize>().ok())
                                    .map(|b| b - 1),
                            ),
                            Err(_) => (0, None),
                        };
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(MeResult {
                            user: u,
                            status,
                            backend,
                            sent_ms,
                        });
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        Load {
            done,
            results,
            workers,
        }
    }

    fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Wait for every request (bounded), then what each got.
    async fn finish(mut self) -> (Vec<MeResult>, bool) {
        let drained = tokio::time::timeout(Duration::from_secs(30), async {
            while self.workers.join_next().await.is_some() {}
        })
        .await
        .is_ok();
        self.workers.abort_all();
        let r = self
            .results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        (r, drained)
    }
}

/// Start `n` serve processes sharing the key file `key`.
fn start_instances(
    ctx: &LabCtx,
    tag: &str,
    n: usize,
    key: &std::path::Path,
) -> anyhow::Result<Vec<Proc>> {
    (1..=n)
        .map(|i| {
            procs::start_serve(
                ctx,
                &format!("scale-stateless-{tag}-{i}"),
                &["--token-key-file".to_string(), key.display().to_string()],
            )
        })
        .collect()
}

/// Requests per second over a whole load.
fn rps(results: &[MeResult], elapsed: Duration) -> f64 {
    let r = results.len() as f64 / elapsed.as_secs_f64().max(1e-6);
    (r * 10.0).round() / 10.0
}

/// The lab; `variant` is [`WRONG_PINNING_BALANCER`] for the negative control.
async fn run_with(ctx: &LabCtx, out: &mut LabOut, variant: Option<&str>) -> anyhow::Result<LabRec> {
    let pinned = variant == Some(WRONG_PINNING_BALANCER);
    if pinned {
        out.say(
            "VARIANT wrong-pinning-balancer: every request goes to instance 1; the lab must notice",
        )?;
    }
    let key = ctx
        .out_dir
        .join(format!("scale-stateless-{}.key", std::process::id()));
    let result = measure(ctx, out, pinned, &key).await;
    let _ = std::fs::remove_file(&key);
    let (rec, page) = result?;
    procs::write_page(ctx, &rec, &page, out)?;
    Ok(rec)
}

async fn measure(
    ctx: &LabCtx,
    out: &mut LabOut,
    pinned: bool,
    key: &std::path::Path,
) -> anyhow::Result<(LabRec, String)> {
    let mut c = super::common::Checks::default();

    // 1. One instance.
    let one = start_instances(ctx, "one", 1, key)?;
    let (lb1, lb1_addr, lb1_task) = start_balancer(vec![one[0].addr], pinned).await?;
    out.say(&format!(
        "[1 instance] serve pid {} on {}; balancer on {lb1_addr}",
        one[0].pid, one[0].addr
    ))?;
    let users1 = login_all(lb1_addr).await?;
    let t = Instant::now();
    let (r1, drained1) = Load::start(lb1_addr, lb1.started, &users1, REQUESTS)
        .finish()
        .await;
    let rps1 = rps(&r1, t.elapsed());
    lb1_task.abort();
    drop(one);
    let bad1 = r1.iter().filter(|r| r.status != 200).count();
    out.say(&format!(
        "[1 instance] {} GET /me, {bad1} not 200, {rps1} requests/s",
        r1.len()
    ))?;
    c.check(
        "one_instance_every_login_kind_works",
        drained1 && r1.len() as u64 == REQUESTS && bad1 == 0,
    );

    // 2. Three instances, nothing killed: throughput, and both kinds working behind the balancer.
    let mut three = start_instances(ctx, "three", INSTANCES, key)?;
    let addrs: Vec<SocketAddr> = three.iter().map(|p| p.addr).collect();
    for (i, p) in three.iter().enumerate() {
        out.say(&format!(
            "[3 instances] instance {} pid {} on {}",
            i + 1,
            p.pid,
            p.addr
        ))?;
    }
    let nginx = nginx_config(&addrs);
    let conf_path = ctx.out_dir.join("nginx-upstream.conf");
    if std::fs::write(&conf_path, &nginx).is_ok() {
        out.say(&format!(
            "For a real deployment, the nginx equivalent: {}",
            conf_path.display()
        ))?;
    }
    let (lb3, lb3_addr, lb3_task) = start_balancer(addrs.clone(), pinned).await?;
    let users = login_all(lb3_addr).await?;
    let t = Instant::now();
    let (r3, drained3) = Load::start(lb3_addr, lb3.started, &users, REQUESTS)
        .finish()
        .await;
    let rps3 = rps(&r3, t.elapsed());
    let bad3 = r3.iter().filter(|r| r.status != 200).count();
    let served3: Vec<u64> = (0..INSTANCES)
        .map(|i| r3.iter().filter(|r| r.backend == Some(i)).count() as u64)
        .collect();
    out.say(&format!(
        "[3 instances] {} GET /me, {bad3} not 200, {rps3} requests/s; served per instance {served3:?}",
        r3.len()
    ))?;
    c.check(
        "three_instances_every_login_kind_works",
        drained3 && r3.len() as u64 == REQUESTS && bad3 == 0,
    );
    c.check("every_instance_served", served3.iter().all(|&s| s > 0));

    // 3. Three instances, instance 2 killed a third of the way in.
    let victim = 1;
    let kill_start = lb3.started.elapsed().as_secs_f64() * 1e3;
    let log_from = lb3.log.lock().unwrap_or_else(|e| e.into_inner()).len();
    let load = Load::start(lb3_addr, lb3.started, &users, REQUESTS);
    let deadline = Instant::now() + Duration::from_secs(20);
    while load.done() < REQUESTS / 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let pid = three[victim].pid;
    three[victim].kill();
    let kill_ms = lb3.started.elapsed().as_secs_f64() * 1e3;
    let at = load.done();
    // Answers already on their way when it died are counted within microseconds; after this
    // pause, any further answer from it would mean the kill did not take.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let served_victim_at_pause = lb3.served[victim].load(Ordering::Relaxed);
    out.say(&format!(
        "[kill] after {at} requests: SIGKILL to instance {} (pid {pid})",
        victim + 1
    ))?;
    let (rk, drained_k) = load.finish().await;
    lb3_task.abort();
    drop(three);
    let served_victim_after = lb3.served[victim].load(Ordering::Relaxed) - served_victim_at_pause;
    let log: Vec<Served> = lb3.log.lock().unwrap_or_else(|e| e.into_inner())[log_from..].to_vec();
    let served_victim_before = log
        .iter()
        .filter(|s| s.backend == victim && s.ms <= kill_ms)
        .count() as u64;

    let after: Vec<&MeResult> = rk.iter().filter(|r| r.sent_ms > kill_ms).collect();
    let on_victim: Vec<usize> = users
        .iter()
        .enumerate()
        .filter(|(_, u)| u.session && u.home == victim)
        .map(|(i, _)| i)
        .collect();
    let lost_sessions: HashSet<usize> = after
        .iter()
        .filter(|r| users[r.user].session && r.status == 401)
        .map(|r| r.user)
        .collect();
    let session_401_after = after
        .iter()
        .filter(|r| users[r.user].session && r.status == 401)
        .count() as u64;
    let other_sessions_hurt = after
        .iter()
        .filter(|r| users[r.user].session && users[r.user].home != victim && r.status != 200)
        .count() as u64;
    let token_all: Vec<&MeResult> = r1
        .iter()
        .chain(r3.iter())
        .chain(rk.iter())
        .filter(|r| !users[r.user % users.len()].session)
        .collect();
    let token_failures = token_all.iter().filter(|r| r.status != 200).count() as u64;
    let token_instances_after: HashSet<usize> = after
        .iter()
        .filter(|r| !users[r.user].session && r.status == 200)
        .filter_map(|r| r.backend)
        .collect();
    let failed_other = rk
        .iter()
        .filter(|r| r.status != 200 && r.status != 401)
        .count() as u64;
    for u in &users {
        out.say(&format!(
            "  {:<6} {:<7} logged in on instance {}{}",
            u.name,
            if u.session { "session" } else { "token" },
            u.home + 1,
            if u.session && u.home == victim {
                "  ← its session died with instance 2"
            } else {
                ""
            }
        ))?;
    }
    out.say(&format!(
        "[kill] {} requests after the kill: {session_401_after} session requests got 401 ({} users lost their login); token requests failed {token_failures} times in all runs, served after the kill by instances {:?}",
        after.len(),
        lost_sessions.len(),
        token_instances_after.iter().map(|i| i + 1).collect::<Vec<_>>()
    ))?;

    c.check(
        "killed_instance_served_before_kill",
        served_victim_before > 0,
    );
    c.check(
        "no_answer_from_killed_instance_after_kill",
        served_victim_after == 0,
    );
    c.check(
        "load_continued_after_kill",
        drained_k && rk.len() as u64 == REQUESTS && !after.is_empty(),
    );
    c.check("killed_instance_held_sessions", !on_victim.is_empty());
    c.check(
        "sessions_on_killed_instance_lost",
        !on_victim.is_empty() && lost_sessions == on_victim.iter().copied().collect(),
    );
    c.check("sessions_elsewhere_kept", other_sessions_hurt == 0);
    c.check(
        "tokens_valid_everywhere",
        token_failures == 0 && token_instances_after.len() >= 2,
    );
    c.check("no_request_failed_outright", failed_other == 0);
    let ok = c.ok(out)?;

    let served_k: Vec<u64> = (0..INSTANCES)
        .map(|i| rk.iter().filter(|r| r.backend == Some(i)).count() as u64)
        .collect();
    let answer = format!(
        "Because any instance can answer a stateless request: behind the balancer, {rps1} requests/s with one instance and \
         {rps3} with three (on this machine they share its CPUs). When instance {} was killed, the {} session users whose \
         session lived only in its memory lost their login ({} got 401 afterwards), while the token users were still \
         recognised by every remaining instance ({token_failures} token failures): state kept in one server's memory \
         pins its users to that server and dies with it; a signed token, verified with a shared key, does not.",
        victim + 1,
        on_victim.len(),
        lost_sessions.len()
    );
    let settings = facts(&[
        ("instances", json!(INSTANCES)),
        ("requests_per_run", json!(REQUESTS)),
        ("concurrency", json!(CONCURRENCY)),
        ("session_users", json!(USERS_PER_KIND)),
        ("token_users", json!(USERS_PER_KIND)),
        ("killed_instance", json!(victim + 1)),
        (
            "balancer",
            json!(if pinned {
                "pinned to instance 1 (wrong variant)"
            } else {
                "round robin, sticky sessions"
            }),
        ),
    ]);
    let mut settings = settings;
    if pinned {
        settings.insert("variant".into(), json!(WRONG_PINNING_BALANCER));
    }
    let f = facts(&[
        ("rps_1_instance", json!(rps1)),
        ("rps_3_instances", json!(rps3)),
        ("not_ok_1_instance", json!(bad1)),
        ("not_ok_3_instances", json!(bad3)),
        ("served_per_instance_3", json!(served3)),
        ("served_per_instance_kill_run", json!(served_k)),
        ("killed_pid", json!(pid)),
        ("killed_after_requests", json!(at)),
        ("served_by_killed_before_kill", json!(served_victim_before)),
        ("served_by_killed_after_kill", json!(served_victim_after)),
        ("requests_after_kill", json!(after.len())),
        ("session_users_on_killed", json!(on_victim.len())),
        ("session_users_lost", json!(lost_sessions.len())),
        ("session_401_after_kill", json!(session_401_after)),
        ("session_failures_elsewhere", json!(other_sessions_hurt)),
        ("token_failures", json!(token_failures)),
        (
            "token_instances_after_kill",
            json!(token_instances_after.len()),
        ),
        ("failed_outright", json!(failed_other)),
        (
            "balancer_retries",
            json!(lb3.retries.load(Ordering::Relaxed)),
        ),
        ("balancer_502", json!(lb3.failed.load(Ordering::Relaxed))),
    ]);
    let rec = LabRec {
        name: LAB.name.into(),
        question: LAB.question.into(),
        answer,
        facts: f,
        ok,
        settings,
        failed: c.failed_so_far().to_vec(),
    };
    let page = timeline(&rk, &users, kill_start, kill_ms, victim);
    Ok((rec, page))
}

/// Requests per instance over time in the kill run, the kill marked; session 401s below.
fn timeline(rk: &[MeResult], users: &[User], from_ms: f64, kill_ms: f64, victim: usize) -> String {
    let (left, width, height) = (60.0, 720.0, 200.0);
    let start = from_ms;
    let end = rk.iter().map(|r| r.sent_ms).fold(kill_ms, f64::max) + 1.0;
    const BINS: usize = 30;
    let bin = |ms: f64| {
        (((ms - start) / (end - start)) * BINS as f64).clamp(0.0, BINS as f64 - 1.0) as usize
    };
    let mut per = vec![vec![0u64; BINS]; INSTANCES];
    let mut unauth = vec![0u64; BINS];
    for r in rk {
        if let Some(b) = r.backend {
            per[b][bin(r.sent_ms)] += 1;
        }
        if users[r.user].session && r.status == 401 {
            unauth[bin(r.sent_ms)] += 1;
        }
    }
    let top = per
        .iter()
        .flatten()
        .chain(unauth.iter())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |i: usize| left + (i as f64 + 0.5) / BINS as f64 * width;
    let y = |v: u64| 20.0 + height - v as f64 / top * height;
    let colors = ["#1565c0", "#ef6c00", "#6a1b9a"];
    let mut b = String::new();
    svg::line(
        &mut b,
        left,
        20.0 + height,
        left + width,
        20.0 + height,
        "stroke:#999",
    );
    svg::line(&mut b, left, 20.0, left, 20.0 + height, "stroke:#999");
    svg::text(&mut b, left - 4.0, 24.0, "end", &format!("{top}"));
    svg::text(&mut b, left - 4.0, 20.0 + height, "end", "0");
    for (i, series) in per.iter().enumerate() {
        let pts: Vec<(f64, f64)> = series
            .iter()
            .enumerate()
            .map(|(k, v)| (x(k), y(*v)))
            .collect();
        svg::polyline(&mut b, &pts, "inst", colors[i % 3]);
        let ly = 26.0 + i as f64 * 14.0;
        svg::line(
            &mut b,
            left + width + 4.0,
            ly,
            left + width + 18.0,
            ly,
            &format!("stroke:{};stroke-width:3", colors[i % 3]),
        );
        svg::text(
            &mut b,
            left + width + 22.0,
            30.0 + i as f64 * 14.0,
            "start",
            &format!(
                "instance {}{}",
                i + 1,
                if i == victim { " (killed)" } else { "" }
            ),
        );
    }
    let pts: Vec<(f64, f64)> = unauth
        .iter()
        .enumerate()
        .map(|(k, v)| (x(k), y(*v)))
        .collect();
    svg::polyline(&mut b, &pts, "unauthorized", "#c62828");
    let ly = 26.0 + 3.0 * 14.0;
    svg::line(
        &mut b,
        left + width + 4.0,
        ly,
        left + width + 18.0,
        ly,
        "stroke:#c62828;stroke-width:3",
    );
    svg::text(
        &mut b,
        left + width + 22.0,
        30.0 + 3.0 * 14.0,
        "start",
        "session 401s",
    );
    let kx = left + (kill_ms - start) / (end - start) * width;
    svg::marker(
        &mut b,
        kx,
        20.0,
        20.0 + height,
        &format!("SIGKILL instance {}", victim + 1),
    );
    svg::text(
        &mut b,
        left + width,
        20.0 + height + 16.0,
        "end",
        &format!(
            "time, {:.0} ms (requests per bin of {:.0} ms)",
            end - start,
            (end - start) / BINS as f64
        ),
    );
    let mut page = svg::chart(
        "requests-per-instance",
        "GET /me per instance over time, one instance killed",
        left + width + 150.0,
        height + 50.0,
        &b,
    );
    page.push_str("<p>Each line counts the requests one instance answered in each time bin. After the kill the killed instance's line drops to zero and the others take its share; the red line counts session users refused (401) because their session lived on the killed instance.</p>");
    page
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_skips_a_backend_marked_down_and_keeps_sessions_home() {
        let addrs: Vec<SocketAddr> = (1..=3).map(|p| ([127, 0, 0, 1], p).into()).collect();
        let lb = Balancer::new(addrs.clone(), false);
        lb.sticky.lock().unwrap().insert("abc".into(), 2);
        assert!((0..6).all(|_| lb.pick(Some("abc")) == 2));
        lb.mark_down(1);
        let picks: Vec<usize> = (0..6).map(|_| lb.pick(None)).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        assert!(picks.contains(&0) && picks.contains(&2));
        // Its home down, a session goes elsewhere (where it is unknown).
        lb.mark_down(2);
        assert_eq!(lb.pick(Some("abc")), 0);
        // The wrong, pinning balancer sends everything to the first.
        let pinned = Balancer::new(addrs, true);
        assert!((0..6).all(|_| pinned.pick(None) == 0));
    }

    #[test]
    fn sid_is_read_from_cookie_and_set_cookie() {
        assert_eq!(sid_of("sid=abc; Path=/; HttpOnly").as_deref(), Some("abc"));
        assert_eq!(sid_of("a=1; sid=xyz").as_deref(), Some("xyz"));
        assert_eq!(sid_of("sid=; Max-Age=0"), None);
    }

    #[test]
    fn nginx_config_lists_every_backend() {
        let addrs: Vec<SocketAddr> =
            vec![([127, 0, 0, 1], 8001).into(), ([127, 0, 0, 1], 8002).into()];
        let c = nginx_config(&addrs);
        assert!(c.contains("server 127.0.0.1:8001 max_fails=1 fail_timeout=1s;"));
        assert!(c.contains("server 127.0.0.1:8002"));
        assert!(c.contains("proxy_next_upstream error timeout;"));
    }
}
