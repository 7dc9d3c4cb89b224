//! `lab scale-stateless`: stateless servers behind a round-robin load balancer, one killed.
//!
//! What you will see: three `statescope serve` processes, each on its own loopback port, behind
//! a load balancer that hands requests to them in turn. A client sends a bounded stream of
//! requests through the balancer; a third of the way in, the lab kills one backend by its PID
//! (`SIGKILL`, no goodbye). The balancer's attempt on the dead backend fails, it retries the
//! request on the next one and stops sending there; the client sees no failure, and no user lost
//! anything, because the servers held nothing about anyone between requests. The lab reports
//! requests served per instance, retries, and failures as the client saw them.
//!
//! The balancer is in-process (hyper server and client, round robin, passive health check:
//! a backend that failed is skipped for a second, retry on the next backend when a backend could
//! not be reached, and also after a send for idempotent methods). For a real deployment the lab
//! prints, and writes to `OUT_DIR/nginx-upstream.conf`, the equivalent nginx configuration.
//!
//! Backends are child processes of this program (`serve --listen 127.0.0.1:PORT --quiet`, their
//! standard error in `OUT_DIR/serve-N.log`) so that one can really be killed by PID. Where `serve` cannot start, the lab says why and uses
//! in-process stateless backends instead (a hyper server each, stopped by aborting its task,
//! which closes its listener and connections as a kill would); `facts.backends` says which ran.

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
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

pub const LAB: LabDef = LabDef {
    name: "scale-stateless",
    question: "Why do stateless servers scale by simply adding instances behind a load balancer?",
    summary: "3 serve instances behind a round-robin balancer; one killed mid-run; count served and failed",
    run,
};

const INSTANCES: usize = 3;
const REQUESTS: u64 = 300;
const CONCURRENCY: u64 = 4;
/// How long a backend that failed is skipped (nginx `fail_timeout`).
const FAIL_TIMEOUT: Duration = Duration::from_secs(1);
/// Per-request bound for every hop.
const HOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest body the balancer forwards.
const MAX_BODY: usize = 1 << 20;

fn run(ctx: &LabCtx, out: &mut LabOut) -> anyhow::Result<LabRec> {
    runtime()?.block_on(run_with(ctx, out, REQUESTS))
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
// Backends
// ---------------------------------------------------------------------------------------------

/// One stateless server instance.
enum Backend {
    /// A `statescope serve` child process; killed by its PID.
    Process { child: Child, addr: SocketAddr },
    /// A hyper server task in this process; stopped by aborting it.
    InProcess {
        task: tokio::task::JoinHandle<()>,
        addr: SocketAddr,
    },
}

impl Backend {
    fn addr(&self) -> SocketAddr {
        match self {
            Backend::Process { addr, .. } | Backend::InProcess { addr, .. } => *addr,
        }
    }

    /// Kill it: `SIGKILL` to the child's PID, or abort the task. Returns the PID if any.
    fn kill(&mut self) -> Option<u32> {
        match self {
            Backend::Process { child, .. } => {
                let pid = child.id();
                let _ = child.kill();
                let _ = child.wait();
                Some(pid)
            }
            Backend::InProcess { task, .. } => {
                task.abort();
                None
            }
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Start `exe serve --listen 127.0.0.1:PORT --quiet` and wait until it accepts connections.
/// Its standard error goes to `log`, read back to explain an early exit.
async fn start_process_backend(exe: &Path, log: &Path) -> anyhow::Result<Backend> {
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut child = Command::new(exe)
        .args(["serve", "--listen", &addr.to_string(), "--quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run {}: {e}", exe.display()))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(status) = child.try_wait()? {
            let err = std::fs::read_to_string(log).unwrap_or_default();
            let why = err.lines().last().unwrap_or("").trim().to_string();
            anyhow::bail!("`{} serve` exited ({status}): {why}", exe.display());
        }
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(Backend::Process { child, addr });
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!(
                "`{} serve` did not accept connections on {addr} within 5 s",
                exe.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A stateless HTTP server in this process: answers every request from the request alone.
async fn start_inprocess_backend(n: usize) -> anyhow::Result<Backend> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = spawn_http(listener, move |req: Request<Incoming>| async move {
        text(
            StatusCode::OK,
            format!("instance {n}: {} {}\n", req.method(), req.uri()),
        )
    });
    Ok(Backend::InProcess { task, addr })
}

// ---------------------------------------------------------------------------------------------
// The load balancer
// ---------------------------------------------------------------------------------------------

/// Round-robin balancer state.
struct Balancer {
    backends: Vec<SocketAddr>,
    next: AtomicUsize,
    /// Requests each backend answered.
    served: Vec<AtomicU64>,
    /// Until when each backend is skipped after a failure.
    down_until: Mutex<Vec<Option<Instant>>>,
    /// Attempts that failed and were retried on another backend.
    retries: AtomicU64,
    /// Requests no backend answered (the client got a 502).
    failed: AtomicU64,
}

impl Balancer {
    fn new(backends: Vec<SocketAddr>) -> Self {
        let n = backends.len();
        Balancer {
            backends,
            next: AtomicUsize::new(0),
            served: (0..n).map(|_| AtomicU64::new(0)).collect(),
            down_until: Mutex::new(vec![None; n]),
            retries: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// The next backend in turn among those not being skipped (so the live ones share the load
    /// evenly); if all are being skipped, the next in turn anyway.
    fn pick(&self) -> usize {
        let n = self.backends.len();
        let down = self.down_until.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let live: Vec<usize> = (0..n)
            .filter(|&i| down[i].is_none_or(|t| t <= now))
            .collect();
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
        // Retrying after the request was sent could run it twice: only for idempotent methods.
        let idempotent = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        for _ in 0..self.backends.len() {
            let i = self.pick();
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
    let mut s = String::from("upstream statescope {\n    # round robin is nginx's default\n");
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

/// The lab with `requests` requests in all.
pub async fn run_with(ctx: &LabCtx, out: &mut LabOut, requests: u64) -> anyhow::Result<LabRec> {
    let mut backends = Vec::new();
    let mut kind = "statescope serve processes";
    let mut fallback_reason = None;
    'instances: for n in 1..=INSTANCES {
        let log = ctx.out_dir.join(format!("serve-{n}.log"));
        // The free port picked can be taken by someone else before serve binds it: try again
        // with another before concluding that serve itself cannot run.
        for attempt in 1..=3 {
            match start_process_backend(&ctx.exe, &log).await {
                Ok(b) => {
                    backends.push(b);
                    continue 'instances;
                }
                Err(e) if attempt == 3 => {
                    fallback_reason = Some(e.to_string());
                    break 'instances;
                }
                Err(_) => {}
            }
        }
    }
    if let Some(why) = &fallback_reason {
        backends.clear();
        kind = "in-process stateless servers";
        out.say(&format!(
            "Could not start `serve` backends ({why}); using in-process stateless servers instead."
        ))?;
        for n in 1..=INSTANCES {
            backends.push(start_inprocess_backend(n).await?);
        }
    }
    let addrs: Vec<SocketAddr> = backends.iter().map(Backend::addr).collect();
    for (i, b) in backends.iter().enumerate() {
        let who = match b {
            Backend::Process { child, .. } => format!("pid {}", child.id()),
            Backend::InProcess { .. } => "in-process".into(),
        };
        out.say(&format!("instance {} on {} ({who})", i + 1, b.addr()))?;
    }

    let lb = Arc::new(Balancer::new(addrs.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let lb_addr = listener.local_addr()?;
    let lb2 = lb.clone();
    let lb_task = spawn_http(listener, move |req| lb2.clone().handle(req));
    let nginx = nginx_config(&addrs);
    let conf_path = ctx.out_dir.join("nginx-upstream.conf");
    let wrote = std::fs::write(&conf_path, &nginx).is_ok();
    out.say(&format!(
        "load balancer on {lb_addr} (round robin, retry on the next instance)"
    ))?;
    out.say(&format!(
        "For a real deployment, the same with nginx{}:",
        if wrote {
            format!(" (written to {})", conf_path.display())
        } else {
            String::new()
        }
    ))?;
    for line in nginx.lines() {
        out.say(&format!("    {line}"))?;
    }

    // Clients: bounded workers, each request on a new connection; no retries of their own.
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let client_failed = Arc::new(AtomicU64::new(0));
    let kill_at = requests / 3;
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (next, done, client_failed) = (next.clone(), done.clone(), client_failed.clone());
        workers.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let ok = matches!(
                    http_request(lb_addr, Method::GET, "/", &hyper::HeaderMap::new(), Bytes::new()).await,
                    Ok((s, _, _)) if s.is_success()
                );
                if !ok {
                    client_failed.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    // Kill instance 2 once a third of the requests are answered.
    let victim = 1;
    let deadline = Instant::now() + Duration::from_secs(20);
    while done.load(Ordering::Relaxed) < kill_at && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let pid = backends[victim].kill();
    let at = done.load(Ordering::Relaxed);
    // Answers already on their way when it died are counted within microseconds; after this
    // pause, any further answer from it would mean the kill did not take.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let served_before_kill = lb.served[victim].load(Ordering::Relaxed);
    out.say(&format!(
        "after {at} requests: killed instance {}{}",
        victim + 1,
        pid.map(|p| format!(" (SIGKILL to pid {p})"))
            .unwrap_or_default()
    ))?;
    let drain = tokio::time::timeout(Duration::from_secs(25), async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    let elapsed = started.elapsed();
    lb_task.abort();
    drop(backends);

    let served: Vec<u64> = lb
        .served
        .iter()
        .map(|s| s.load(Ordering::Relaxed))
        .collect();
    let served_after_kill = served[victim] - served_before_kill;
    let answered: u64 = served.iter().sum();
    let failed = client_failed.load(Ordering::Relaxed);
    let retries = lb.retries.load(Ordering::Relaxed);
    let completed = done.load(Ordering::Relaxed);
    for (i, s) in served.iter().enumerate() {
        out.say(&format!(
            "instance {} served {s}{}",
            i + 1,
            if i == victim { " (killed)" } else { "" }
        ))?;
    }
    out.say(&format!(
        "{completed} requests, {answered} answered, {failed} failed as the client saw it, {retries} retried by the balancer, in {} ms",
        elapsed.as_millis()
    ))?;

    let ok = drain.is_ok()
        && completed == requests
        && failed == 0
        && answered == requests
        && served_after_kill == 0
        && served.iter().all(|&s| s > 0);
    let answer = format!(
        "Because any instance can answer any request: with instance {} killed after {at} of {requests} requests, \
         the balancer retried {retries} attempt(s) on the others and the client saw {failed} failures; the \
         instances served {}; no user lost anything, since no instance held anything about a user.",
        victim + 1,
        served.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" / ")
    );
    let mut f = facts(&[
        ("backends", json!(kind)),
        ("instances", json!(INSTANCES)),
        ("requests", json!(requests)),
        ("answered", json!(answered)),
        ("failed", json!(failed)),
        ("retried", json!(retries)),
        ("killed_instance", json!(victim + 1)),
        ("killed_after", json!(at)),
        ("served_per_instance", json!(served)),
        ("served_by_killed_after_kill", json!(served_after_kill)),
        ("elapsed_ms", json!(elapsed.as_millis() as u64)),
    ]);
    for (i, s) in served.iter().enumerate() {
        f.insert(format!("served_instance_{}", i + 1), json!(s));
    }
    if let Some(why) = fallback_reason {
        f.insert("serve_unavailable".into(), json!(why));
    }
    Ok(LabRec {
        name: LAB.name.into(),
        question: LAB.question.into(),
        answer,
        facts: f,
        ok,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_skips_a_backend_marked_down() {
        let addrs: Vec<SocketAddr> = (1..=3).map(|p| ([127, 0, 0, 1], p).into()).collect();
        let lb = Balancer::new(addrs);
        lb.mark_down(1);
        let picks: Vec<usize> = (0..6).map(|_| lb.pick()).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        assert!(picks.contains(&0) && picks.contains(&2));
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
