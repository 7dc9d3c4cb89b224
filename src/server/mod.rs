//! `statescope serve`: the minimal hyper server that keeps no per-request state, and its
//! stateful contrasts.
//!
//! # Map
//!
//! | file | what it holds |
//! |------|---------------|
//! | `mod.rs` | [`ServerConfig`], the accept loop ([`run`]), connection limits, graceful shutdown, [`spawn`] for in-process users, [`run_until_signal`] for `statescope serve` |
//! | [`routes`] | the endpoints: `/`, `/echo`, `/state` (stateless) and `/session/*`, `/token/*`, `/me` (login two ways) |
//! | [`auth`] | server-side sessions versus signed tokens, and the key file |
//! | [`ws`] | `/ws`: WebSocket with per-connection state, and the [`ws::Broker`] seam |
//! | [`records`] | `/records`: a record store in memory or in Redis (`lab crash`) |
//! | [`stats`] | the gauges behind `/state`, each kept by a guard's `Drop` |
//! | [`tls`] | `--tls`: rustls, the certificate, session ids versus tickets, the key log |
//!
//! # What is kept, and for how long
//!
//! - Per request: one [`stats::RequestRecord`], dropped as soon as the response is handed to
//!   hyper. `/state` counts the live ones.
//! - Per TCP connection: its addresses and a request counter ([`ConnCtx`]), dropped when the
//!   connection closes — transport state, which HTTP/1.1 keep-alive rides on.
//! - Per WebSocket connection: a message count and short history ([`ws::WsState`]).
//! - Per login session: `id → user` in [`auth::Sessions`], until logout or expiry; or, with
//!   `session_store`, in Redis ([`auth::SharedSessions`]), where every instance sees it.
//! - Aggregate counters (connections and requests served): a few integers, not records.
//! - Per TLS session, with `--tls --tls-resumption ids`: its secrets in rustls's session cache
//!   (1024; the oldest forgotten). With tickets (the default) nothing: the client carries it.
//!
//! # Limits
//!
//! Header size (`--max-header`, hyper's `max_buf_size`: a larger head gets `431`), header read
//! time (`--header-timeout`, hyper's `header_read_timeout`: the connection is closed, which
//! also ends idle keep-alive connections), body size (`--max-body`: `413`), body read time (the
//! same timeout: `408`), connection count (`--max-connections`: excess connections are
//! accepted, answered `503` with `Connection: close`, and closed; past 64 such answers pending at
//! once, further excess connections are closed without a reply), connections from one client
//! address (`--max-connections-per-address`, turned away the same way, so one address holding
//! idle sockets or WebSockets cannot take every slot), WebSocket silence
//! (`--ws-idle-timeout`), and login sessions (the oldest is forgotten to make room).

pub mod auth;
pub mod bridge;
pub mod log;
pub mod records;
pub mod routes;
pub mod stats;
pub mod tls;
pub mod ws;

use anyhow::Context;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::TokioExecutor;
use hyper_util::rt::{TokioIo, TokioTimer};
use stats::{OpenConnection, Stats};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

/// Validated settings for one server instance. No clap types past this point.
#[derive(Clone)]
pub struct ServerConfig {
    /// No request log on standard error.
    pub quiet: bool,
    /// Most simultaneous TCP connections (HTTP and WebSocket together).
    pub max_connections: usize,
    /// Most simultaneous TCP connections from one client address (IPv6: one /64).
    pub max_connections_per_address: usize,
    /// Largest request body, and largest WebSocket message, in bytes.
    pub max_body: usize,
    /// Largest request head in bytes (at least 8192, hyper's minimum buffer).
    pub max_header: usize,
    /// Time allowed to send a request head, and a request body.
    pub header_timeout: Duration,
    /// Where the token key lives; `None`: a per-process key (tokens die with the process).
    pub token_key_file: Option<PathBuf>,
    /// How long tokens and sessions last after login.
    pub login_ttl: Duration,
    /// Most login sessions held at once.
    pub max_sessions: usize,
    /// A WebSocket connection silent this long is closed.
    pub ws_idle_timeout: Duration,
    /// After a shutdown signal, how long in-flight requests get to finish.
    pub shutdown_grace: Duration,
    /// Where WebSocket messages are shared beyond their connection; `None`: nowhere.
    pub broker: Option<Arc<dyn ws::Broker>>,
    /// Where `/records` keeps records; `None`: a fresh list in memory.
    pub records: Option<Arc<records::RecordStore>>,
    /// A Redis URL to keep login sessions in, shared by every instance given the same one;
    /// `None`: this process's memory.
    pub session_store: Option<String>,
    /// A deliberately wrong variant, for the labs' negative controls only; `None` in `serve`.
    pub fault: Option<Fault>,
    /// Serve HTTPS instead (`--tls`); `None`: cleartext HTTP.
    pub tls: Option<tls::TlsOptions>,
}

/// Deliberately wrong server variants. Only the labs set one (from `STATESCOPE_LAB_CONTROL`,
/// see [`crate::lab::common::control`]); each breaks one lesson, so the lab that checks that
/// lesson must end `ok: false` against it. `serve` has no flag for them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `GET /` also says how many requests came before it on its connection: an HTTP answer
    /// that depends on earlier requests.
    ConnCounterInRoot,
    /// Tokens are believed without checking their signature.
    UncheckedToken,
    /// A token login also keeps a session entry: a "stateless" login that holds state.
    TokenLoginsKept,
    /// One WebSocket message count for every connection of the process.
    SharedWsCounter,
    /// Shutdown closes every connection at once, requests in flight included (no grace).
    NoShutdownGrace,
}

impl Fault {
    pub const ALL: [Fault; 5] = [
        Fault::ConnCounterInRoot,
        Fault::UncheckedToken,
        Fault::TokenLoginsKept,
        Fault::SharedWsCounter,
        Fault::NoShutdownGrace,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Fault::ConnCounterInRoot => "conn-counter-in-root",
            Fault::UncheckedToken => "unchecked-token",
            Fault::TokenLoginsKept => "token-logins-kept",
            Fault::SharedWsCounter => "shared-ws-counter",
            Fault::NoShutdownGrace => "no-shutdown-grace",
        }
    }
    pub fn parse(name: &str) -> Option<Fault> {
        Fault::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            quiet: false,
            max_connections: 1024,
            // A quarter of the default total: a classroom behind one NAT still fits, and one
            // address cannot hold every slot.
            max_connections_per_address: 256,
            max_body: 1 << 20,
            max_header: 16 << 10,
            header_timeout: Duration::from_secs(10),
            token_key_file: None,
            login_ttl: Duration::from_secs(3600),
            max_sessions: 100_000,
            // Long enough for a person reading a lab's output between messages; short enough
            // that abandoned sockets give their slots back within a minute.
            ws_idle_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            broker: None,
            session_store: None,
            fault: None,
            records: None,
            tls: None,
        }
    }
}

impl ServerConfig {
    /// Check settings made by hand or from the command line ([`crate::cli`]).
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.max_connections == 0 || self.max_connections > Semaphore::MAX_PERMITS {
            anyhow::bail!(
                "--max-connections {}: give at least 1 (and a sane upper bound)",
                self.max_connections
            );
        }
        if self.max_connections_per_address == 0 {
            anyhow::bail!("--max-connections-per-address 0: give at least 1");
        }
        if self.max_header < 8192 {
            anyhow::bail!(
                "--max-header {}: hyper needs at least 8192 bytes of head buffer",
                self.max_header
            );
        }
        if self.header_timeout.is_zero() {
            anyhow::bail!("--header-timeout must be more than 0 seconds");
        }
        Ok(())
    }
}

/// One server instance: its settings and everything it holds.
pub struct App {
    pub config: ServerConfig,
    pub stats: Arc<Stats>,
    /// The access log; `None` with `--quiet`.
    pub log: Option<log::AccessLog>,
    pub sessions: auth::Sessions,
    /// Sessions kept in Redis instead, with `session_store`.
    pub shared_sessions: Option<auth::SharedSessions>,
    /// The one count of [`Fault::SharedWsCounter`].
    pub ws_shared_count: Arc<AtomicU64>,
    pub token_key: auth::TokenKey,
    /// What `/records` stores into.
    pub records: Arc<records::RecordStore>,
    /// Set to `true` once to tell every connection to wind down.
    pub stop: watch::Sender<bool>,
    /// Open connections per client address ([`address_key`]); entries at zero are removed.
    per_address: Mutex<HashMap<IpAddr, usize>>,
    /// With `--tls`: the handshake every connection goes through first.
    pub tls: Option<tls::Tls>,
}

impl App {
    /// Check the settings and load (or create) the token key.
    pub fn new(config: ServerConfig) -> anyhow::Result<Self> {
        config.validate()?;
        let token_key = match &config.token_key_file {
            Some(path) => auth::TokenKey::load_or_create(path)?,
            None => auth::TokenKey::ephemeral(),
        };
        let tls = config.tls.as_ref().map(|t| t.build()).transpose()?;
        Ok(App {
            tls,
            sessions: auth::Sessions::new(config.max_sessions, config.login_ttl),
            shared_sessions: match &config.session_store {
                Some(url) => Some(auth::SharedSessions::open(url, config.login_ttl)?),
                None => None,
            },
            ws_shared_count: Arc::new(AtomicU64::new(0)),
            stats: Arc::new(Stats::default()),
            log: (!config.quiet).then(log::AccessLog::stderr),
            token_key,
            records: config
                .records
                .clone()
                .unwrap_or_else(|| Arc::new(records::RecordStore::memory())),
            stop: watch::channel(false).0,
            per_address: Mutex::new(HashMap::new()),
            config,
        })
    }

    /// Tell every connection, and every one that subscribes later, to wind down.
    ///
    /// `send_replace`, not `send`: `send` stores nothing when no receiver exists at that
    /// moment, which is the case between a WebSocket's 101 (its HTTP connection task gone)
    /// and its session subscribing; that session then never heard of the shutdown.
    pub fn ask_stop(&self) {
        self.stop.send_replace(true);
    }
}

/// One TCP connection, as its requests see it. Dropped when the connection (or the WebSocket
/// it was upgraded to) closes, which releases its slot under `--max-connections`.
pub struct ConnCtx {
    /// The server this connection belongs to.
    pub app: Arc<App>,
    /// 1-based accept order, for the log only.
    pub serial: u64,
    /// The client's address and port.
    pub peer: SocketAddr,
    /// `peer` as the access log writes it, made once per connection (empty with `--quiet`).
    pub peer_text: Box<str>,
    /// Our address and port.
    pub local: SocketAddr,
    /// Requests seen on this connection so far.
    pub requests: AtomicU64,
    _open: OpenConnection,
    _permit: OwnedSemaphorePermit,
    _address: AddressSlot,
    /// Held so shutdown can wait for every connection to end.
    _alive: mpsc::Sender<()>,
}

/// What the per-address limit counts by: the IP address, or for IPv6 its /64, which one
/// client usually holds whole.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (!0u128 << 64))),
        v4 => v4,
    }
}

/// One connection counted against its client address until dropped.
struct AddressSlot {
    app: Arc<App>,
    key: IpAddr,
}

impl AddressSlot {
    /// A slot for a connection from `ip`, or `None` when that address has its limit open.
    fn take(app: &Arc<App>, ip: IpAddr) -> Option<Self> {
        let key = address_key(ip);
        let mut map = app.per_address.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(key).or_insert(0);
        if *n >= app.config.max_connections_per_address {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            app: app.clone(),
            key,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut map = self
            .app
            .per_address
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// Serve on `listener` until `shutdown` completes, then let in-flight requests finish (up to
/// [`ServerConfig::shutdown_grace`]).
pub async fn run(
    listener: TcpListener,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    serve(listener, Arc::new(App::new(config)?), shutdown).await
}

/// Replies to connections turned away, pending at once; past this, excess connections are
/// closed without one.
const MAX_PENDING_REFUSALS: usize = 64;

async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let http = Arc::new(http_builder(&app.config));
    let slots = Arc::new(Semaphore::new(app.config.max_connections));
    let refusals = Arc::new(Semaphore::new(MAX_PENDING_REFUSALS));
    let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
    let mut serial = 0u64;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    eprintln!("statescope serve: accept failed: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        serial += 1;
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            app.stats.connections_refused.fetch_add(1, Relaxed);
            // A TLS client cannot read a cleartext 503: it is only closed.
            if app.tls.is_some() {
                continue;
            }
            if let Ok(p) = refusals.clone().try_acquire_owned() {
                tokio::spawn(refuse(stream, p, BUSY));
            }
            continue;
        };
        let Some(address) = AddressSlot::take(&app, peer.ip()) else {
            app.stats
                .connections_refused_per_address
                .fetch_add(1, Relaxed);
            if app.tls.is_some() {
                continue;
            }
            if let Ok(p) = refusals.clone().try_acquire_owned() {
                tokio::spawn(refuse(stream, p, PER_ADDRESS));
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok(local) = stream.local_addr() else {
            continue; // already reset by the client
        };
        let conn = Arc::new(ConnCtx {
            app: app.clone(),
            serial,
            peer,
            peer_text: if app.log.is_some() {
                peer.to_string().into()
            } else {
                Box::default()
            },
            local,
            requests: AtomicU64::new(0),
            _open: OpenConnection::new(&app.stats),
            _permit: permit,
            _address: address,
            _alive: alive_tx.clone(),
        });
        match &app.tls {
            None => tokio::spawn(plain(stream, conn, http.clone())),
            Some(t) => tokio::spawn(tls::connection(
                t.acceptor.clone(),
                stream,
                conn,
                http.clone(),
            )),
        };
    }
    drop(listener);
    // Lines still buffered go out before the shutdown messages, so the log stays in order.
    if let Some(log) = &app.log {
        log.flush();
    }
    app.ask_stop();
    drop(alive_tx);
    let open = app.stats.open_connections.load(Relaxed);
    if open > 0 && !app.config.quiet {
        eprintln!("statescope serve: shutting down; waiting for {open} open connection(s)");
    }
    // Every connection task holds a sender; recv() returns None once they are all gone.
    let grace = if app.config.fault == Some(Fault::NoShutdownGrace) {
        Duration::ZERO
    } else {
        app.config.shutdown_grace
    };
    if tokio::time::timeout(grace, alive_rx.recv()).await.is_err() {
        eprintln!(
            "statescope serve: {} connection(s) still open after {:?}; closing them",
            app.stats.open_connections.load(Relaxed),
            grace
        );
    }
    if let Some(log) = &app.log {
        log.close();
    }
    Ok(())
}

/// What serves connections: hyper's HTTP/1.1 and HTTP/2 builders. The protocol is chosen per
/// connection before either runs ([`sniff`], or ALPN over `--tls`), not by hyper-util's `auto`
/// builder, whose wrapping of every read cost 1.3 µs a request (17%) in `bench/serve.sh`.
pub(crate) struct Http {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

/// The protocol a connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    H1,
    H2,
}

fn http_builder(config: &ServerConfig) -> Http {
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(config.max_header)
        .keep_alive(true);
    // The same bound on a header block as HTTP/1's head; streams per connection as
    // hyper's default (200) would let one connection hold 200 requests in flight.
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_header_list_size(config.max_header as u32)
        .max_concurrent_streams(100);
    Http { h1, h2 }
}

/// HTTP/2 with prior knowledge (h2c) begins with the client preface `PRI * HTTP/2.0…`; any
/// other first bytes are HTTP/1. Peeked, so the chosen builder reads them again. `None`: the
/// client sent nothing within `limit` (as HTTP/1's header timeout would, the connection closes).
async fn sniff(stream: &TcpStream, limit: Duration) -> Option<Proto> {
    const PRI: &[u8] = b"PRI ";
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 4];
    loop {
        match tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await {
            Ok(Ok(n)) if n >= PRI.len() => {
                return Some(if buf == PRI { Proto::H2 } else { Proto::H1 })
            }
            // Closed at once: HTTP/1's parser reports it as it always has.
            Ok(Ok(0)) | Ok(Err(_)) => return Some(Proto::H1),
            Ok(Ok(n)) if !PRI.starts_with(&buf[..n]) => return Some(Proto::H1),
            // A few bytes of what may be the preface: wait for the rest.
            Ok(Ok(_)) => tokio::time::sleep(Duration::from_millis(1)).await,
            Err(_) => return None,
        }
    }
}

/// A cleartext connection: its protocol from its first bytes, then served.
async fn plain(stream: TcpStream, conn: Arc<ConnCtx>, http: Arc<Http>) {
    if let Some(proto) = sniff(&stream, conn.app.config.header_timeout).await {
        connection(stream, conn, http, proto).await
    }
}

/// Serve HTTP/1.1 or HTTP/2 on one connection (TCP, or TLS over it) until the client leaves
/// or shutdown is asked.
async fn connection<S>(stream: S, conn: Arc<ConnCtx>, http: Arc<Http>, proto: Proto)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let app = conn.app.clone();
    let svc = {
        let conn = conn.clone();
        // One Arc clone per request: the future hyper polls must own what it uses.
        service_fn(move |req| routes::handle(req, conn.clone()))
    };
    // Shutdown reaches this connection through a oneshot of its own, set by a watcher task
    // parked on the shared stop channel. Selecting on the shared channel directly would take
    // its lock on every poll of every connection — a measurable cost at 100k requests/s.
    let (tell, told) = tokio::sync::oneshot::channel::<()>();
    let mut stop = app.stop.subscribe();
    let watcher = tokio::spawn(async move {
        stopped(&mut stop).await;
        let _ = tell.send(());
    });
    // Serve until done; on shutdown, finish the request in flight (if any), then close
    // instead of keeping alive (HTTP/2: GOAWAY, then the open streams finish).
    macro_rules! drive {
        ($served:expr) => {{
            let served = $served;
            tokio::pin!(served);
            tokio::select! {
                r = served.as_mut() => r,
                _ = told => {
                    served.as_mut().graceful_shutdown();
                    served.await
                }
            }
        }};
    }
    let io = TokioIo::new(stream);
    let result = match proto {
        // `with_upgrades` lets `/ws` take the connection over after its 101 response.
        Proto::H1 => drive!(http.h1.serve_connection(io, svc).with_upgrades()),
        Proto::H2 => drive!(http.h2.serve_connection(io, svc)),
    };
    watcher.abort();
    if let (Err(e), Some(log)) = (result, &app.log) {
        log.line(format_args!(
            "{} conn#{} closed: {e}",
            conn.peer, conn.serial
        ));
    }
}

/// Completes once shutdown has been asked (at once if it already has been).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard wait_for returns is not Send; drop it here rather than across an await.
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

const BUSY: &str = "server busy: too many open connections; try again shortly\n";
const PER_ADDRESS: &str =
    "too many open connections from your address; close some and try again shortly\n";

/// Turn away a connection over a limit: a 503 and close, bounded in time.
async fn refuse(mut stream: TcpStream, _pending: OwnedSemaphorePermit, body: &'static str) {
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\n\
         content-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(reply.as_bytes()).await?;
        stream.shutdown().await?;
        // Drain what the client sent so closing does not reset the connection and destroy
        // the 503 before the client reads it.
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// A server running on its own thread and runtime, for labs and other in-process users.
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl ServerHandle {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting, let in-flight requests finish, and wait for the thread.
    pub fn shutdown(mut self) -> anyhow::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("the server thread panicked"))?,
            None => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Start a server on an ephemeral loopback port (`127.0.0.1:0`).
pub fn spawn(config: ServerConfig) -> anyhow::Result<ServerHandle> {
    spawn_on(SocketAddr::from(([127, 0, 0, 1], 0)), config)
}

/// Start a server on `addr`, on its own thread with a two-worker runtime.
pub fn spawn_on(addr: SocketAddr, config: ServerConfig) -> anyhow::Result<ServerHandle> {
    let app = Arc::new(App::new(config)?);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the server's runtime")?;
    let listener = rt.block_on(bind(addr))?;
    let addr = listener.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name(format!("serve {addr}"))
        .spawn(move || {
            rt.block_on(serve(listener, app, async {
                let _ = rx.await;
            }))
        })
        .context("cannot start the server thread")?;
    Ok(ServerHandle {
        addr,
        stop: Some(tx),
        thread: Some(thread),
    })
}

/// Bind, turning the common failures into advice.
async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
            "cannot listen on {addr}: the port is already in use; stop the other server or pick \
             another port with --listen"
        ),
        std::io::ErrorKind::AddrNotAvailable => anyhow::anyhow!(
            "cannot listen on {addr}: no interface here has that address; use 127.0.0.1 or an \
             address this machine owns"
        ),
        std::io::ErrorKind::PermissionDenied => anyhow::anyhow!(
            "cannot listen on {addr}: permission denied (ports below 1024 need privileges)"
        ),
        _ => anyhow::Error::new(e).context(format!("cannot listen on {addr}")),
    })
}

/// Parse `--listen`: `IP:PORT`, or `localhost:PORT`.
pub fn parse_listen(s: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    if let Some(port) = s.strip_prefix("localhost:") {
        if let Ok(port) = port.parse::<u16>() {
            return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
        }
    }
    anyhow::bail!(
        "invalid --listen address {s:?}: give IP:PORT, such as 127.0.0.1:8080 or [::1]:8080"
    )
}

/// Completes on Ctrl-C or SIGTERM. The handlers are installed here, when called, not when the
/// future is first polled: the caller says it is listening only after this, and a SIGTERM sent
/// right after a first request (before the accept loop polled the future again) used to find
/// the default action still in place and kill the process.
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{signal, Signal, SignalKind};
    async fn wait(s: Option<Signal>) {
        match s {
            Some(mut s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    let int = signal(SignalKind::interrupt()).ok();
    let term = signal(SignalKind::terminate()).ok();
    async move {
        tokio::select! {
            _ = wait(int) => {}
            _ = wait(term) => {}
        }
    }
}

/// `serve`'s settings that need the async runtime to take effect.
#[derive(Clone, Debug, Default)]
pub struct ServeExtra {
    /// Where `/records` stores.
    pub records: records::RecordsOptions,
    /// The deliberately wrong broker of the labs' negative controls: drop every Nth message
    /// this instance publishes (hidden `--broker-drop-every`).
    pub broker_drop_every: Option<u64>,
}

/// Serve on `addr` until SIGINT or SIGTERM (`statescope serve`), sharing WebSocket events
/// through `broker` when given.
pub fn run_until_signal(
    addr: SocketAddr,
    mut config: ServerConfig,
    broker: Option<&str>,
    extra: &ServeExtra,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        if let Some(url) = broker {
            config.broker = Some(bridge::connect(url, extra.broker_drop_every).await?);
            eprintln!("sharing WebSocket messages through {url} (channel {})", bridge::CHANNEL);
        }
        config.records = extra.records.open().await?;
        if let Some(store) = &config.records {
            eprintln!("records: {}", store.describe());
        }
        let app = Arc::new(App::new(config)?);
        let listener = bind(addr).await?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            eprintln!(
                "statescope serve: note: {addr} is not a loopback address; other machines may reach this server"
            );
        }
        match app.token_key.file() {
            Some(f) => eprintln!("token key: {}", f.display()),
            None => eprintln!(
                "token key: per-process (tokens die with this process; share one with --token-key-file)"
            ),
        }
        let signal = shutdown_signal();
        let shutdown = {
            let app = app.clone();
            async move {
                signal.await;
                // The lines logged before the signal come before the message saying so.
                if let Some(log) = &app.log {
                    log.flush();
                }
                eprintln!("statescope serve: signal received; finishing in-flight requests");
            }
        };
        if let Some(t) = &app.tls {
            eprintln!("{}", t.about);
        }
        eprintln!("listening on {addr}");
        serve(listener, app, shutdown).await
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_parses_from_its_name_and_nothing_else_does() {
        for f in Fault::ALL {
            assert_eq!(Fault::parse(f.name()), Some(f));
        }
        assert_eq!(Fault::parse("conn-counter"), None);
        assert!(ServerConfig::default().fault.is_none());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(parse_listen("127.0.0.1:80").unwrap().port(), 80);
        assert!(parse_listen("[::1]:80").unwrap().ip().is_loopback());
        assert_eq!(parse_listen("localhost:9").unwrap().port(), 9);
        let err = parse_listen("nonsense").unwrap_err().to_string();
        assert!(err.contains("invalid --listen"), "{err}");
        assert!(parse_listen("127.0.0.1:99999").is_err());
    }

    #[test]
    fn per_address_key_is_the_ip_or_the_ipv6_64() {
        let k = |s: &str| address_key(s.parse().unwrap()).to_string();
        assert_eq!(k("192.0.2.7"), "192.0.2.7");
        assert_eq!(k("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(k("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::");
    }

    /// A WebSocket session subscribes only after its upgrade, when no other receiver may be
    /// left: a stop asked before that must still reach it (a CI run hung on exactly this).
    #[tokio::test]
    async fn stop_asked_with_no_one_listening_reaches_later_subscribers() {
        let app = App::new(ServerConfig {
            quiet: true,
            ..ServerConfig::default()
        })
        .unwrap();
        assert_eq!(app.stop.receiver_count(), 0);
        app.ask_stop();
        let mut late = app.stop.subscribe();
        tokio::time::timeout(Duration::from_secs(1), stopped(&mut late))
            .await
            .expect("a later subscriber sees the stop");
    }

    /// Control: the plain `send` the server used before loses the stop in that window.
    #[tokio::test]
    async fn control_plain_send_with_no_one_listening_is_lost() {
        let (tx, _) = watch::channel(false);
        assert!(tx.send(true).is_err());
        let mut late = tx.subscribe();
        let waited = tokio::time::timeout(Duration::from_millis(50), stopped(&mut late)).await;
        assert!(waited.is_err(), "plain send stored the stop after all");
    }
}
