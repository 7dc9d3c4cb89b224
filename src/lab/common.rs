//! What the loopback labs share: a capture of `lo` running in a thread while the lab makes
//! traffic, the saved capture run back through the [`Engine`], an in-process `serve`, and small
//! blocking HTTP and WebSocket clients that write exactly the bytes the lab means to send.
//!
//! The clients are deliberately raw (`std::net::TcpStream`, requests written by hand): a lab's
//! point is the traffic, and a client library would add headers, pool connections or retry
//! behind the learner's back.
//!
//! Live capture needs root or `CAP_NET_RAW`; [`start_capture`] fails with one line saying so.

use super::{LabCtx, LabOut};
use crate::capture::filter::{Expr, Prim, Proto, Side};
use crate::capture::live::{LiveOptions, LiveSource, SNAPLEN};
use crate::capture::pcap_writer::PcapWriter;
use crate::capture::{pcap_file, FrameSource};
use crate::config::OutputConfig;
use crate::engine::{run_source, Engine, EngineOptions};
use crate::output::Sink;
use crate::record::{ConnRec, HttpRec, LabRec, PacketRec, Record};
use crate::server::{self, ServerConfig, ServerHandle};
use crate::types::PacketSel;
use anyhow::Context;
use serde_json::{Map, Value};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// Longest a lab's capture may run, whatever happens to the lab: a bound, not a target.
const CAPTURE_LIMIT: Duration = Duration::from_secs(60);
/// After the last traffic, how long the capture keeps running so the final ACKs are in.
const SETTLE: Duration = Duration::from_millis(200);
/// Socket read/write timeout of the lab's clients.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A capture of `lo` running in a thread, writing a pcap file.
pub struct CaptureHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<anyhow::Result<(u64, u64)>>>,
    path: PathBuf,
}

/// What a finished capture left.
pub struct Captured {
    pub path: PathBuf,
    pub frames: u64,
    /// Frames the kernel dropped because the capture could not keep up (a busy machine);
    /// checks on the capture may then fail, and the narrative says why.
    pub dropped: u64,
}

/// Start capturing TCP on `lo` to and from any of `ports`, into `path`. Returns once the
/// capture socket is open and filtered, so traffic made after this call is captured.
pub fn start_capture(ports: &[u16], path: &Path) -> anyhow::Result<CaptureHandle> {
    let filter = ports
        .iter()
        .map(|&port| {
            Expr::Prim(Prim::Port {
                proto: Some(Proto::Tcp),
                side: Side::Any,
                port,
            })
        })
        .reduce(Expr::or);
    let stop = Arc::new(AtomicBool::new(false));
    let mut source = LiveSource::open(
        "lo",
        LiveOptions {
            filter,
            duration: Some(CAPTURE_LIMIT),
            stop: Some(stop.clone()),
            ..LiveOptions::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("this lab captures loopback traffic live: {e}"))?;
    let mut writer = PcapWriter::create(path, source.linktype(), SNAPLEN)?;
    let thread = std::thread::Builder::new()
        .name("lab capture".into())
        .spawn(move || {
            let mut frames = 0;
            while let Some(frame) = source.next_frame()? {
                writer.write_frame(&frame)?;
                frames += 1;
            }
            writer.flush()?;
            Ok((frames, source.stats().dropped))
        })
        .context("cannot start the capture thread")?;
    Ok(CaptureHandle {
        stop,
        thread: Some(thread),
        path: path.to_path_buf(),
    })
}

impl CaptureHandle {
    /// Let the last packets arrive, stop, and wait for the pcap to be written.
    pub fn stop(mut self) -> anyhow::Result<Captured> {
        std::thread::sleep(SETTLE);
        self.stop.store(true, Ordering::Relaxed);
        let (frames, dropped) = match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow::anyhow!("the capture thread panicked"))??,
            None => (0, 0),
        };
        Ok(Captured {
            path: self.path.clone(),
            frames,
            dropped,
        })
    }
}

impl Drop for CaptureHandle {
    fn drop(&mut self) {
        // A lab that fails midway still ends its capture thread.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A sink that keeps every record.
#[derive(Default)]
struct Collect(Vec<Record>);

impl Sink for Collect {
    fn record(&mut self, rec: &Record) -> io::Result<()> {
        self.0.push(rec.clone());
        Ok(())
    }
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Run a saved capture through the engine, as `statescope replay` does: every record.
pub fn replay_records(path: &Path) -> anyhow::Result<Vec<Record>> {
    let mut source = pcap_file::open(path)?;
    let mut engine = Engine::new(EngineOptions::from_config(
        &OutputConfig::default(),
        PacketSel::All,
    ));
    let mut sink = Collect::default();
    run_source(source.as_mut(), &mut engine, &mut sink)?;
    Ok(sink.0)
}

/// Stop the capture, replay it, and print every record (jsonl) before the lab record. The
/// HTML report waits for the lab record ([`write_report`]), since it opens with the lesson.
pub fn finish_capture(cap: CaptureHandle, out: &mut LabOut) -> anyhow::Result<(Captured, Records)> {
    finish_capture_edited(cap, out, |_| Ok(()))
}

/// [`finish_capture`], letting `edit` change the saved capture before it is replayed (a
/// negative control's observer that missed a segment: [`drop_frame`]).
pub fn finish_capture_edited(
    cap: CaptureHandle,
    out: &mut LabOut,
    edit: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<(Captured, Records)> {
    let captured = cap.stop()?;
    if captured.dropped > 0 {
        out.say(&format!(
            "WARNING: the capture lost {} frames (the machine was too busy to keep up); checks on the capture may fail for that reason alone",
            captured.dropped
        ))?;
    }
    edit(&captured.path)?;
    let records = replay_records(&captured.path)?;
    for r in &records {
        out.record(r)?;
    }
    Ok((captured, Records(records)))
}

/// When `--html` asked for one, write the report of the lab's capture: the lesson first (the
/// lab record's question, answer, verdict, facts and settings), what each server remembers,
/// then every connection labelled with the lab step that made it ([`step`]).
pub fn write_report(
    ctx: &LabCtx,
    out: &mut LabOut,
    rec: &LabRec,
    recs: &Records,
    remembers: &[(&str, String)],
) -> anyhow::Result<()> {
    let steps = take_steps();
    let Some(html) = &ctx.html else {
        return Ok(());
    };
    let labels = steps
        .iter()
        .filter_map(|(client, server, step)| {
            Some((recs.conn_to(*client, *server)?.conn, step.clone()))
        })
        .collect();
    let lead = format!(
        "<style>{}{STEP_CSS}</style>{}{}",
        crate::report::lesson::LESSON_CSS,
        crate::report::lesson::lesson_html(rec),
        crate::report::lesson::remembers_html(remembers)
    );
    let opts = crate::report::HtmlOptions {
        lead,
        labels,
        ..crate::report::HtmlOptions::default()
    };
    crate::report::write_html_with(
        &recs.0,
        &format!("statescope lab {}", rec.name),
        html,
        &opts,
    )?;
    out.say(&format!("HTML report: {}", html.display()))?;
    Ok(())
}

const STEP_CSS: &str = ".step{color:#5d4037;font:italic 12px system-ui,sans-serif}";

/// A connection a lab step made: client, server, the step's name.
type StepConn = (SocketAddr, SocketAddr, String);

thread_local! {
    /// The lab step running on this thread, and every connection it made.
    static STEPS: std::cell::RefCell<(String, Vec<StepConn>)> =
        std::cell::RefCell::default();
}

/// Connections opened from now on (on this thread) belong to lab step `name`; the report labels
/// them with it. A lab's clients run on its own thread, so nothing else's are mixed in.
pub fn step(name: &str) {
    STEPS.with(|s| s.borrow_mut().0 = name.to_string());
}

/// Remember that the current step connected from `client` to `server` (every [`Conn`] does
/// this itself).
pub fn note_conn(client: SocketAddr, server: SocketAddr) {
    STEPS.with(|s| {
        let mut s = s.borrow_mut();
        let label = s.0.clone();
        if !label.is_empty() {
            s.1.push((client, server, label));
        }
    });
}

/// The steps noted so far on this thread, forgetting them (and the current step).
pub fn take_steps() -> Vec<StepConn> {
    STEPS.with(|s| std::mem::take(&mut *s.borrow_mut()).1)
}

/// The environment variable that turns a lab into its own negative control.
pub const CONTROL_ENV: &str = "STATESCOPE_LAB_CONTROL";

/// Negative controls that are not a server variant: the observer's side is wrong.
pub const OBSERVER_CONTROLS: &[&str] = &["missed-segment"];

/// The negative control asked for with [`CONTROL_ENV`] (for the test suite: a lab run against a
/// deliberately wrong variant must end `ok: false`), or `None` for the real lab. An unknown
/// name is an error, so a typo cannot make a control silently run the real thing.
pub fn control() -> anyhow::Result<Option<String>> {
    let Ok(name) = std::env::var(CONTROL_ENV) else {
        return Ok(None);
    };
    if server::Fault::parse(&name).is_none() && !OBSERVER_CONTROLS.contains(&name.as_str()) {
        let known: Vec<&str> = server::Fault::ALL
            .iter()
            .map(|f| f.name())
            .chain(OBSERVER_CONTROLS.iter().copied())
            .collect();
        anyhow::bail!(
            "{CONTROL_ENV}={name}: no such negative control; known: {}",
            known.join(", ")
        );
    }
    Ok(Some(name))
}

/// Start a lab: forget earlier steps, and say on the narrative when this run is a negative
/// control. Returns the control's name, for the lab's settings.
pub fn begin(out: &mut LabOut) -> anyhow::Result<Option<String>> {
    take_steps();
    let c = control()?;
    if let Some(name) = &c {
        out.say(&format!(
            "NEGATIVE CONTROL {name}: this run uses a deliberately wrong variant and must end ok: false"
        ))?;
    }
    Ok(c)
}

/// Rewrite the capture at `path` without frame `number` (1-based), as if the observer had
/// never seen it. Returns the frames kept.
pub fn drop_frame(path: &Path, number: u64) -> anyhow::Result<u64> {
    let tmp = path.with_extension("pcap.tmp");
    let mut source = pcap_file::open(path)?;
    let mut writer: Option<PcapWriter<std::fs::File>> = None;
    let mut kept = 0;
    while let Some(frame) = source.next_frame()? {
        if frame.number == number {
            continue;
        }
        let w = match &mut writer {
            Some(w) => w,
            None => writer.insert(PcapWriter::create(&tmp, frame.linktype, SNAPLEN)?),
        };
        w.write_frame(&frame)?;
        kept += 1;
    }
    if let Some(mut w) = writer {
        w.flush()?;
        drop(w);
        std::fs::rename(&tmp, path)?;
    }
    Ok(kept)
}

/// A negative control's observer that missed a segment: remove from the capture at `path`
/// the first frame `pick` names among its records. Returns that frame, if any.
pub fn drop_first_frame(
    path: &Path,
    pick: impl FnMut(&Record) -> Option<u64>,
) -> anyhow::Result<Option<u64>> {
    let frame = replay_records(path)?.iter().find_map(pick);
    if let Some(f) = frame {
        drop_frame(path, f)?;
    }
    Ok(frame)
}

/// Where a lab's capture goes: `OUT_DIR/NAME.pcap`.
pub fn pcap_path(ctx: &LabCtx, name: &str) -> PathBuf {
    ctx.out_dir.join(format!("{name}.pcap"))
}

/// The records of one lab's capture, with the lookups labs need.
pub struct Records(pub Vec<Record>);

impl Records {
    pub fn conns(&self) -> impl Iterator<Item = &ConnRec> {
        self.0.iter().filter_map(|r| match r {
            Record::Conn(c) => Some(c),
            _ => None,
        })
    }
    pub fn packets(&self) -> impl Iterator<Item = &PacketRec> {
        self.0.iter().filter_map(|r| match r {
            Record::Packet(p) => Some(p),
            _ => None,
        })
    }
    pub fn http(&self) -> impl Iterator<Item = &HttpRec> {
        self.0.iter().filter_map(|r| match r {
            Record::Http(h) => Some(&**h),
            _ => None,
        })
    }
    /// The connection whose client end was `client`. With several servers in one capture the
    /// kernel may reuse a client port towards another server: use [`Records::conn_to`] there.
    pub fn conn_of(&self, client: SocketAddr) -> Option<&ConnRec> {
        let c = client.to_string();
        self.conns().find(|r| *r.client == *c)
    }
    /// The connection from `client` to `server`.
    pub fn conn_to(&self, client: SocketAddr, server: SocketAddr) -> Option<&ConnRec> {
        let (c, s) = (client.to_string(), server.to_string());
        self.conns().find(|r| *r.client == *c && *r.server == *s)
    }
    /// The packets of connection `conn`, in order.
    pub fn packets_of(&self, conn: u64) -> Vec<&PacketRec> {
        self.packets().filter(|p| p.conn == conn).collect()
    }
    /// Both endpoints' inferred states after the last packet of `conn` captured by `at`;
    /// `None` before its first packet.
    pub fn states_at(&self, conn: u64, at: f64) -> Option<(String, String)> {
        self.packets()
            .filter(|p| p.conn == conn && p.ts <= at)
            .last()
            .map(|p| (p.client_state.to_string(), p.server_state.to_string()))
    }
}

/// `POST /{kind}/login` (`session` or `token`) with form field `user`, on a fresh connection.
pub fn login(addr: SocketAddr, kind: &str, user: &str) -> anyhow::Result<Response> {
    let path = format!("/{kind}/login");
    fresh(
        addr,
        &raw_request(addr, "POST", &path, &[], &format!("user={user}")),
    )
}

/// `GET /me` carrying one credential header (a `Cookie:` or `Authorization:` line).
pub fn me(addr: SocketAddr, cred: &str) -> anyhow::Result<Response> {
    fresh(
        addr,
        &raw_request(addr, "GET", "/me", &[cred.to_string()], ""),
    )
}

/// How many sessions the server says it holds (`GET /state`).
pub fn sessions_held(addr: SocketAddr) -> anyhow::Result<Option<u64>> {
    let s = fresh(addr, &raw_request(addr, "GET", "/state", &[], ""))?.json();
    Ok(s["stateful_contrasts"]["sessions_held"].as_u64())
}

/// The `Cookie:` header a browser would send back for a session login response.
pub fn cookie_header(resp: &Response) -> anyhow::Result<String> {
    let set = resp.header("set-cookie").ok_or_else(|| {
        anyhow::anyhow!("the session login set no cookie (status {})", resp.status)
    })?;
    Ok(format!("Cookie: {}", set.split(';').next().unwrap_or("")))
}

/// Run `lab` with a token key file of its own in the lab's folder, removed afterwards.
pub fn with_key_file(
    ctx: &LabCtx,
    tag: &str,
    lab: impl FnOnce(&Path) -> anyhow::Result<LabRec>,
) -> anyhow::Result<LabRec> {
    let key = ctx
        .out_dir
        .join(format!("{tag}-{}.key", std::process::id()));
    let result = lab(&key);
    let _ = std::fs::remove_file(&key);
    result
}

/// One `serve` instance on an ephemeral port, with `lo` captured on that port into the lab's
/// pcap, said in the narrative.
pub fn start_served(
    ctx: &LabCtx,
    name: &str,
    out: &mut LabOut,
) -> anyhow::Result<(ServerHandle, CaptureHandle)> {
    let server = start_server(ServerConfig::default())?;
    let addr = server.addr();
    let cap = start_capture(&[addr.port()], &pcap_path(ctx, name))?;
    out.say(&format!(
        "serve listening on {addr}; capturing lo, tcp port {}",
        addr.port()
    ))?;
    Ok((server, cap))
}

/// A `serve` configuration signing tokens with the key in `key` (shared by every instance).
pub fn key_config(key: &Path) -> ServerConfig {
    ServerConfig {
        token_key_file: Some(key.to_path_buf()),
        ..ServerConfig::default()
    }
}

/// Two `serve` instances sharing the token key file `key`, and a capture of both their ports.
pub fn start_pair(
    ctx: &LabCtx,
    name: &str,
    key: &Path,
) -> anyhow::Result<(ServerHandle, ServerHandle, CaptureHandle)> {
    let a = start_server(key_config(key))?;
    let b = start_server(key_config(key))?;
    let cap = start_capture(&[a.addr().port(), b.addr().port()], &pcap_path(ctx, name))?;
    Ok((a, b, cap))
}

/// Seconds since the epoch now, on the clock capture timestamps use.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// A quiet in-process `serve` on an ephemeral loopback port.
pub fn start_server(config: ServerConfig) -> anyhow::Result<ServerHandle> {
    server::spawn(quiet(config))
}

/// The same server restarted on `addr` (the listener sets `SO_REUSEADDR`, so connections of
/// the old instance lingering in TIME_WAIT do not block the port).
pub fn restart_server(old: ServerHandle, config: ServerConfig) -> anyhow::Result<ServerHandle> {
    let addr = old.addr();
    old.shutdown()?;
    server::spawn_on(addr, quiet(config))
}

fn quiet(config: ServerConfig) -> ServerConfig {
    let fault = control()
        .ok()
        .flatten()
        .and_then(|c| server::Fault::parse(&c));
    ServerConfig {
        quiet: true,
        fault: config.fault.or(fault),
        shutdown_grace: Duration::from_secs(2),
        ..config
    }
}

/// A loopback port nobody listens on, held for as long as the returned socket lives: bound
/// but never listening, so a SYN to it is answered by RST, and (bound without
/// `SO_REUSEADDR`) no other program's server can take the port meanwhile.
pub fn closed_port() -> anyhow::Result<(std::os::fd::OwnedFd, u16)> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor we own; the address structs are sized as
    // passed.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        anyhow::ensure!(fd >= 0, "socket: {}", io::Error::last_os_error());
        let owned = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as libc::sa_family_t;
        sa.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let rc = libc::bind(fd, &sa as *const _ as *const libc::sockaddr, len);
        anyhow::ensure!(rc == 0, "bind: {}", io::Error::last_os_error());
        let mut got: libc::sockaddr_in = std::mem::zeroed();
        let mut got_len = len;
        let rc = libc::getsockname(fd, &mut got as *mut _ as *mut libc::sockaddr, &mut got_len);
        anyhow::ensure!(rc == 0, "getsockname: {}", io::Error::last_os_error());
        Ok((owned, u16::from_be(got.sin_port)))
    }
}

/// One HTTP response as the client read it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Bytes of the request that produced it.
    pub request_bytes: usize,
    /// Bytes of the response (head and body).
    pub response_bytes: usize,
    /// The client's address on the connection it came on.
    pub client: SocketAddr,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw request: `METHOD PATH HTTP/1.1`, Host, the extra header lines, and a body (sent as a
/// form when non-empty).
pub fn raw_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    extra: &[String],
    body: &str,
) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for h in extra {
        r.push_str(h);
        r.push_str("\r\n");
    }
    if !body.is_empty() || method == "POST" {
        r.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        r.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r
}

/// An open connection that carries several requests (keep-alive).
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connect to {addr}"))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        note_conn(stream.local_addr()?, addr);
        Ok(Conn {
            stream,
            buf: Vec::new(),
        })
    }

    pub fn local(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.stream.local_addr()?)
    }

    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Send `raw` and read one response (framed by Content-Length; none for 1xx/204/304).
    pub fn request(&mut self, raw: &str) -> anyhow::Result<Response> {
        self.stream.write_all(raw.as_bytes())?;
        let (status, headers, head_len) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut hs);
            if let httparse::Status::Complete(n) = resp
                .parse(&self.buf)
                .context("the server's response is not HTTP")?
            {
                let headers: Vec<(String, String)> = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                break (resp.code.unwrap_or(0), headers, n);
            }
            self.fill()?;
        };
        let len = if (100..200).contains(&status) || status == 204 || status == 304 {
            0
        } else {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .context("the response has no Content-Length")?
        };
        while self.buf.len() < head_len + len {
            self.fill()?;
        }
        let body = self.buf[head_len..head_len + len].to_vec();
        self.buf.drain(..head_len + len);
        Ok(Response {
            status,
            headers,
            body,
            request_bytes: raw.len(),
            response_bytes: head_len + len,
            client: self.stream.local_addr()?,
        })
    }

    fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 16 << 10];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            anyhow::bail!("the server closed the connection before a whole response");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Bytes read past the last response (the start of a WebSocket stream after a 101).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

/// One request on a fresh connection, which the client closes after the response.
pub fn fresh(addr: SocketAddr, raw: &str) -> anyhow::Result<Response> {
    let mut c = Conn::open(addr)?;
    c.request(raw)
}

/// A WebSocket client over a connection that got `101`: masked text frames out (RFC 6455
/// §5.3), unmasked frames in.
pub struct WsClient {
    conn: Conn,
    buf: Vec<u8>,
}

impl WsClient {
    /// Open a connection and upgrade it with the RFC 6455 §1.3 sample key.
    pub fn connect(addr: SocketAddr) -> anyhow::Result<(WsClient, Response)> {
        let mut conn = Conn::open(addr)?;
        let raw = raw_request(
            addr,
            "GET",
            "/ws",
            &[
                "Connection: Upgrade".into(),
                "Upgrade: websocket".into(),
                "Sec-WebSocket-Version: 13".into(),
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".into(),
            ],
            "",
        );
        let resp = conn.request(&raw)?;
        if resp.status != 101 {
            anyhow::bail!("the WebSocket upgrade got {} instead of 101", resp.status);
        }
        let buf = conn.take_buffered();
        Ok((WsClient { conn, buf }, resp))
    }

    pub fn local(&self) -> anyhow::Result<SocketAddr> {
        self.conn.local()
    }

    /// Send one text message; returns the frame's size on the wire.
    pub fn send_text(&mut self, text: &str) -> anyhow::Result<usize> {
        let frame = ws_frame(0x1, text.as_bytes());
        self.conn.stream().write_all(&frame)?;
        Ok(frame.len())
    }

    /// Send a Close frame (code 1000).
    pub fn send_close(&mut self) -> anyhow::Result<()> {
        let frame = ws_frame(0x8, &1000u16.to_be_bytes());
        self.conn.stream().write_all(&frame)?;
        Ok(())
    }

    /// The next frame from the server: (opcode, payload).
    pub fn recv(&mut self) -> anyhow::Result<(u8, Vec<u8>)> {
        loop {
            if let Some((op, payload, used)) = parse_ws_frame(&self.buf) {
                self.buf.drain(..used);
                return Ok((op, payload));
            }
            let mut chunk = [0u8; 16 << 10];
            let n = self.conn.stream().read(&mut chunk)?;
            if n == 0 {
                anyhow::bail!("the server closed the connection (no WebSocket frame)");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// A masked client frame with FIN set.
fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask: [u8; 4] = rand::random();
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// One whole frame at the start of `buf`: (opcode, unmasked payload, bytes used).
fn parse_ws_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let op = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let mask = if masked {
        let m: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(m)
    } else {
        None
    };
    let data = buf.get(at..at.checked_add(len)?)?;
    let payload = match mask {
        Some(m) => data.iter().enumerate().map(|(i, b)| b ^ m[i % 4]).collect(),
        None => data.to_vec(),
    };
    Some((op, payload, at + len))
}

/// Facts as the `lab` record wants them.
pub fn facts(pairs: Vec<(&str, Value)>) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Tally of a lab's checks: each is named, so a failure says which one.
#[derive(Default)]
pub struct Checks {
    failed: Vec<String>,
}

impl Checks {
    pub fn check(&mut self, what: &str, held: bool) {
        if !held {
            self.failed.push(what.to_string());
        }
    }
    /// The names of the checks that did not hold so far.
    pub fn failed_so_far(&self) -> &[String] {
        &self.failed
    }
    /// All held; otherwise say on the narrative which did not.
    pub fn ok(&self, out: &mut LabOut) -> io::Result<bool> {
        for f in &self.failed {
            out.say(&format!("CHECK FAILED: {f}"))?;
        }
        Ok(self.failed.is_empty())
    }
    /// The names of the checks that did not hold (said on the narrative), for the lab
    /// record's `failed`; empty when every check held.
    pub fn failed(&self, out: &mut LabOut) -> io::Result<Vec<String>> {
        self.ok(out)?;
        Ok(self.failed.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_frames_round_trip_at_every_length_class() {
        for n in [0usize, 5, 125, 126, 300, 70_000] {
            let payload: Vec<u8> = (0..n).map(|i| i as u8).collect();
            let f = ws_frame(0x1, &payload);
            let (op, got, used) = parse_ws_frame(&f).unwrap();
            assert_eq!((op, used), (1, f.len()));
            assert_eq!(got, payload);
            // Cut short anywhere: not a frame yet.
            assert!(parse_ws_frame(&f[..f.len() - 1]).is_none());
        }
    }

    #[test]
    fn raw_request_declares_its_body() {
        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let r = raw_request(a, "POST", "/token/login", &[], "user=bob");
        assert!(r.starts_with("POST /token/login HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(r.ends_with("Content-Length: 8\r\n\r\nuser=bob"));
        let g = raw_request(a, "GET", "/", &["Cookie: sid=x".into()], "");
        assert_eq!(
            g,
            "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nCookie: sid=x\r\n\r\n"
        );
    }
}
