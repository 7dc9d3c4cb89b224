//! `statescope serve` end to end: real servers on `127.0.0.1:0`, real HTTP/1.1 over TCP, real
//! WebSocket (tokio-tungstenite), and the binary itself for the command-line failures.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use statescope::server::{self, auth::TokenKey, ServerConfig, ServerHandle};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

fn quiet() -> ServerConfig {
    ServerConfig {
        quiet: true,
        ..ServerConfig::default()
    }
}

fn start(config: ServerConfig) -> ServerHandle {
    server::spawn(config).expect("server starts")
}

/// One response as read off the wire.
#[derive(Debug)]
struct Resp {
    status: u16,
    /// Status line and headers, as sent.
    head: String,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
    /// The whole response with what legitimately varies masked: the Date header and the given
    /// port numbers (client and server ports are chosen by the OS).
    fn masked(&self, ports: &[u16]) -> String {
        let mut all = format!("{}{}", self.head, self.body);
        all = all
            .lines()
            .map(|l| {
                if l.to_ascii_lowercase().starts_with("date:") {
                    "date: MASKED"
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        for p in ports {
            all = all.replace(&format!(":{p}"), ":PORT");
        }
        all
    }
}

/// A keep-alive HTTP/1.1 client on one TCP connection: just enough to read Content-Length
/// framed responses.
struct Client {
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Client {
            r: BufReader::new(s),
        }
    }
    fn port(&self) -> u16 {
        self.r.get_ref().local_addr().unwrap().port()
    }
    fn send(&mut self, raw: &[u8]) {
        self.r.get_mut().write_all(raw).unwrap();
    }
    fn read(&mut self) -> Resp {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            let n = self.r.read_line(&mut line).unwrap();
            assert!(
                n > 0,
                "connection closed before a full response; got {head:?}"
            );
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let status = head[9..12].parse().unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0; len];
        self.r.read_exact(&mut body).unwrap();
        Resp {
            status,
            head,
            body: String::from_utf8(body).unwrap(),
        }
    }
    fn req(&mut self, raw: &str) -> Resp {
        self.send(raw.as_bytes());
        self.read()
    }
    fn get(&mut self, path: &str, extra: &str) -> Resp {
        self.req(&format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n"))
    }
    /// True when the server closes the connection (EOF or reset) within `within`.
    fn closed_within(&mut self, within: Duration) -> bool {
        self.r.get_ref().set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 1];
        matches!(self.r.read(&mut b), Ok(0))
            || matches!(self.r.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    }
}

fn post_form(path: &str, form: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n{extra}\r\n{form}",
        form.len()
    )
}

fn state(addr: SocketAddr) -> Value {
    Client::connect(addr).get("/state", "").json()
}

/// Poll `/state` until `ok` holds (connection teardown is asynchronous), for at most 5 s.
fn wait_state(addr: SocketAddr, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = state(addr);
        if ok(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `n` requests over `conns` keep-alive connections, from parallel threads: bounded load.
fn load(addr: SocketAddr, conns: usize, n: usize) {
    let threads: Vec<_> = (0..conns)
        .map(|i| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for j in 0..n / conns {
                    let path = ["/", "/echo", "/state", "/missing"][(i + j) % 4];
                    assert!(c.get(path, "X-Load: yes\r\n").status < 500);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// The same fixed conversation on one new connection.
fn script(addr: SocketAddr) -> (u16, Vec<Resp>) {
    let mut c = Client::connect(addr);
    let out = vec![
        c.get("/", ""),
        c.get("/echo?x=1", "Accept: */*\r\nX-Student: yes\r\n"),
        c.req("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"),
        c.get("/echo", ""),
        c.get("/nowhere", ""),
        c.req("DELETE / HTTP/1.1\r\nHost: t\r\n\r\n"),
        c.get("/me", ""),
    ];
    (c.port(), out)
}

#[test]
fn identical_answers_from_fresh_and_busy_instances() {
    let busy = start(quiet());
    let (p0, fresh) = script(busy.addr());
    load(busy.addr(), 8, 2000);
    let (p1, after) = script(busy.addr());
    let other = start(quiet());
    let (p2, second) = script(other.addr());
    let (sa, sb) = (busy.addr().port(), other.addr().port());
    for ((f, a), s) in fresh.iter().zip(&after).zip(&second) {
        let f = f.masked(&[p0, sa]);
        assert_eq!(
            f,
            a.masked(&[p1, sa]),
            "same instance, before and after load"
        );
        assert_eq!(f, s.masked(&[p2, sb]), "busy instance versus a fresh one");
    }
    // The script exercises what it should.
    let codes: Vec<u16> = fresh.iter().map(|r| r.status).collect();
    assert_eq!(codes, [200, 200, 200, 200, 404, 405, 401]);
    let st = state(busy.addr());
    assert!(st["per_request"]["requests_total"].as_u64().unwrap() >= 2000);
}

#[test]
fn several_requests_ride_one_connection_each_answered_alone() {
    let srv = start(quiet());
    let mut c = Client::connect(srv.addr());
    for n in 1..=3u64 {
        let e = c.get("/echo", "X-N: whatever\r\n").json();
        assert_eq!(e["kind"], "stateless");
        assert_eq!(e["transport"]["requests_on_this_connection"], n);
        assert_eq!(
            e["transport"]["client"],
            format!("127.0.0.1:{}", c.port()),
            "same TCP connection"
        );
        assert_eq!(e["transport"]["server"], srv.addr().to_string());
        assert_eq!(e["request"]["method"], "GET");
        let headers = e["request"]["headers"].as_array().unwrap();
        assert!(headers.iter().any(|h| h == "x-n: whatever"), "{headers:?}");
    }
    let s = c.get("/state", "").json();
    assert_eq!(s["transport"]["open_tcp_connections"], 1);
    // A new connection starts counting again.
    let e = Client::connect(srv.addr()).get("/echo", "").json();
    assert_eq!(e["transport"]["requests_on_this_connection"], 1);
}

#[test]
fn no_per_request_records_retained_after_load() {
    let srv = start(quiet());
    load(srv.addr(), 10, 3000);
    // Clients that vanish mid-request: half a head, and a head with half its body.
    for raw in [
        &b"GET /echo HTTP/1.1\r\nHost"[..],
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc",
    ] {
        let mut c = TcpStream::connect(srv.addr()).unwrap();
        c.write_all(raw).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    let s = wait_state(srv.addr(), |s| {
        s["transport"]["open_tcp_connections"] == 1 && s["per_request"]["records_live"] == 1
    });
    let per = &s["per_request"];
    assert_eq!(per["records_retained"], 0, "{s}");
    // Only this /state request's own record is alive, and it is the only one in flight.
    assert_eq!(per["records_live"], 1, "{s}");
    assert_eq!(per["requests_in_flight"], 1, "{s}");
    assert_eq!(s["transport"]["open_tcp_connections"], 1, "{s}");
    assert!(per["requests_total"].as_u64().unwrap() >= 3000);
}

fn login(addr: SocketAddr) -> (String, String) {
    let mut c = Client::connect(addr);
    let r = c.req(&post_form("/session/login", "user=alice", ""));
    assert_eq!(r.status, 200, "{r:?}");
    let cookie = r.header("set-cookie").unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let cookie = cookie.split(';').next().unwrap().to_string();
    let r = c.req(&post_form("/token/login", "user=bob%20b", ""));
    assert_eq!(r.status, 200, "{r:?}");
    let token = r.json()["token"].as_str().unwrap().to_string();
    (cookie, token)
}

fn me(addr: SocketAddr, cred: &str) -> Resp {
    Client::connect(addr).get("/me", cred)
}

#[test]
fn session_lost_on_restart_token_survives() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("token.key");
    let cfg = ServerConfig {
        token_key_file: Some(key.clone()),
        ..quiet()
    };
    let first = start(cfg.clone());
    let (cookie, token) = login(first.addr());
    let r = me(first.addr(), &format!("Cookie: {cookie}\r\n"));
    assert_eq!(
        (r.status, r.json()["kind"].as_str()),
        (200, Some("session"))
    );
    assert_eq!(r.json()["user"], "alice");
    let r = me(first.addr(), &format!("Authorization: Bearer {token}\r\n"));
    assert_eq!((r.status, r.json()["kind"].as_str()), (200, Some("token")));
    assert_eq!(r.json()["user"], "bob b");
    assert_eq!(
        state(first.addr())["stateful_contrasts"]["sessions_held"],
        1
    );

    // A second instance sharing the key file, while the first still runs...
    let second = start(cfg.clone());
    assert_eq!(
        me(second.addr(), &format!("Cookie: {cookie}\r\n")).status,
        401
    );
    assert_eq!(
        me(second.addr(), &format!("Authorization: Bearer {token}\r\n")).status,
        200
    );
    drop(second);

    // ...and a restart: the session is gone, the token still works.
    first.shutdown().unwrap();
    let restarted = start(cfg);
    let r = me(restarted.addr(), &format!("Cookie: {cookie}\r\n"));
    assert_eq!(r.status, 401);
    assert!(r.body.contains("restarted"), "{}", r.body);
    assert!(r.header("www-authenticate").is_some());
    let r = me(
        restarted.addr(),
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!((r.status, r.json()["user"].as_str()), (200, Some("bob b")));
    assert_eq!(
        state(restarted.addr())["stateful_contrasts"]["sessions_held"],
        0
    );

    // An instance with another key does not believe the token.
    let other = start(ServerConfig {
        token_key_file: Some(dir.path().join("other.key")),
        ..quiet()
    });
    let r = me(other.addr(), &format!("Authorization: Bearer {token}\r\n"));
    assert_eq!(r.status, 401);
    assert!(r.body.contains("signature"), "{}", r.body);
}

#[test]
fn bad_credentials_get_401_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    let srv = start(ServerConfig {
        token_key_file: Some(key.clone()),
        ..quiet()
    });
    let expired = TokenKey::load_or_create(&key)
        .unwrap()
        .sign("alice", 1_000_000);
    let cases = [
        (format!("Authorization: Bearer {expired}\r\n"), "expired"),
        ("Authorization: Bearer abc.def\r\n".into(), "malformed"),
        ("Authorization: Basic YTpi\r\n".into(), "Bearer"),
        ("Cookie: sid=forged-session-id\r\n".into(), "forged"),
        (String::new(), "no credentials"),
    ];
    for (cred, why) in cases {
        let r = me(srv.addr(), &cred);
        assert_eq!(r.status, 401, "{cred}");
        assert!(r.body.contains(why), "{cred}: {}", r.body);
    }
    // A forged token over a real user: the MAC does not match.
    let (_, token) = login(srv.addr());
    let forged = format!("YWRtaW4{}", &token[token.find('.').unwrap()..]);
    let r = me(srv.addr(), &format!("Authorization: Bearer {forged}\r\n"));
    assert_eq!(r.status, 401);
    assert!(r.body.contains("signature"), "{}", r.body);
    // Logging out forgets the session.
    let (cookie, _) = login(srv.addr());
    let mut c = Client::connect(srv.addr());
    let r = c.req(&post_form(
        "/session/logout",
        "",
        &format!("Cookie: {cookie}\r\n"),
    ));
    assert_eq!(r.json()["logged_out"], true);
    assert_eq!(me(srv.addr(), &format!("Cookie: {cookie}\r\n")).status, 401);
    // Bad login forms.
    for form in ["", "name=x", "user=", "user=%0a"] {
        assert_eq!(
            c.req(&post_form("/token/login", form, "")).status,
            400,
            "{form}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_state_grows_per_connection_and_is_gone_after() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let srv = tokio::spawn(server::run(listener, quiet(), async {
        let _ = stopped.await;
    }));
    let url = format!("ws://{addr}/ws");
    let (mut a, resp) = tokio_tungstenite::connect_async(&url).await.unwrap();
    assert_eq!(resp.status(), 101);
    let mut last = Value::Null;
    for i in 1..=3u64 {
        a.send(Message::text(format!("a{i}"))).await.unwrap();
        let reply = a.next().await.unwrap().unwrap();
        last = serde_json::from_str(reply.to_text().unwrap()).unwrap();
        assert_eq!(last["messages_on_this_connection"], i);
        assert_eq!(last["history"].as_array().unwrap().len() as u64, i);
    }
    assert_eq!(last["kind"], "stateful");
    assert_eq!(last["history"], serde_json::json!(["a1", "a2", "a3"]));

    // Another connection starts from nothing.
    let (mut b, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    b.send(Message::text("b1")).await.unwrap();
    let reply: Value =
        serde_json::from_str(b.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(reply["messages_on_this_connection"], 1);
    assert_eq!(reply["history"], serde_json::json!(["b1"]));

    let s = tokio::task::spawn_blocking(move || state(addr))
        .await
        .unwrap();
    assert_eq!(s["stateful_contrasts"]["websocket_connections_open"], 2);
    assert_eq!(s["stateful_contrasts"]["websocket_history_entries"], 4);

    // Close both: their state is gone.
    a.close(None).await.unwrap();
    drop(b); // vanishes without a close frame
    let s = tokio::task::spawn_blocking(move || {
        wait_state(addr, |s| {
            s["stateful_contrasts"]["websocket_connections_open"] == 0
                && s["transport"]["open_tcp_connections"] == 1
        })
    })
    .await
    .unwrap();
    assert_eq!(
        s["stateful_contrasts"]["websocket_connections_open"], 0,
        "{s}"
    );
    assert_eq!(
        s["stateful_contrasts"]["websocket_history_entries"], 0,
        "{s}"
    );
    assert_eq!(s["transport"]["open_tcp_connections"], 1, "{s}");

    // A plain GET on /ws is told what it needs.
    let r = tokio::task::spawn_blocking(move || Client::connect(addr).get("/ws", ""))
        .await
        .unwrap();
    assert_eq!(r.status, 426);

    // Shutdown closes a WebSocket that is still open, with a Close frame.
    let (mut c, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    stop.send(()).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), c.next())
        .await
        .unwrap();
    assert!(matches!(got, Some(Ok(Message::Close(Some(_))))), "{got:?}");
    tokio::time::timeout(Duration::from_secs(5), srv)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_messages_reach_other_connections_through_a_broker() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = ServerConfig {
        broker: Some(std::sync::Arc::new(server::ws::LocalBroker::new(16))),
        ..quiet()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let srv = tokio::spawn(server::run(listener, cfg, async {
        let _ = stopped.await;
    }));
    let url = format!("ws://{addr}/ws");
    let (mut a, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (mut b, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    a.send(Message::text("hi from a")).await.unwrap();
    let own: Value =
        serde_json::from_str(a.next().await.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(own["kind"], "stateful");
    let relayed = tokio::time::timeout(Duration::from_secs(5), b.next())
        .await
        .unwrap();
    let relayed: Value =
        serde_json::from_str(relayed.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(relayed["kind"], "relay");
    assert_eq!(relayed["text"], "hi from a");
    // The sender does not get its own message back as a relay.
    let more = tokio::time::timeout(Duration::from_millis(200), a.next()).await;
    assert!(more.is_err(), "{more:?}");
    stop.send(()).unwrap();
    srv.await.unwrap().unwrap();
}

#[test]
fn oversized_and_malformed_requests_get_the_right_status() {
    let srv = start(ServerConfig {
        max_body: 1000,
        max_header: 8192,
        ..quiet()
    });
    let big = "x".repeat(9000);
    let mut c = Client::connect(srv.addr());
    assert_eq!(c.get("/", &format!("X-Big: {big}\r\n")).status, 431);
    let mut c = Client::connect(srv.addr());
    let r = c.req("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n");
    assert_eq!(r.status, 413);
    assert_eq!(r.header("connection"), Some("close"));
    // Chunked, with no declared length: caught while reading.
    let mut c = Client::connect(srv.addr());
    let chunk = format!("7d0\r\n{}\r\n0\r\n\r\n", "y".repeat(2000));
    let r = c.req(&format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}"
    ));
    assert_eq!(r.status, 413);
    for junk in [
        "NOT HTTP AT ALL\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Header Line\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
    ] {
        let mut c = Client::connect(srv.addr());
        assert_eq!(c.req(junk).status, 400, "{junk:?}");
    }
    // The server is still fine.
    assert_eq!(Client::connect(srv.addr()).get("/", "").status, 200);
}

#[test]
fn slow_clients_are_cut_off() {
    let srv = start(ServerConfig {
        header_timeout: Duration::from_millis(300),
        ..quiet()
    });
    // Slowloris: a head that never ends.
    let mut c = Client::connect(srv.addr());
    c.send(b"GET / HTTP/1.1\r\nHost: t\r\n");
    let t = Instant::now();
    assert!(c.closed_within(Duration::from_secs(3)));
    assert!(t.elapsed() < Duration::from_secs(2));
    // An idle keep-alive connection is closed too (the head timer runs while waiting for the
    // next request).
    let mut c = Client::connect(srv.addr());
    assert_eq!(c.get("/", "").status, 200);
    assert!(c.closed_within(Duration::from_secs(3)));
    // A body that never ends: 408.
    let mut c = Client::connect(srv.addr());
    let r = c.req("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    assert_eq!(r.status, 408);
    // Nothing is left behind.
    let s = wait_state(srv.addr(), |s| s["transport"]["open_tcp_connections"] == 1);
    assert_eq!(s["transport"]["open_tcp_connections"], 1, "{s}");
    assert_eq!(s["per_request"]["records_retained"], 0, "{s}");
}

#[test]
fn connections_over_the_limit_get_503() {
    let srv = start(ServerConfig {
        max_connections: 2,
        ..quiet()
    });
    let mut a = Client::connect(srv.addr());
    let mut b = Client::connect(srv.addr());
    assert_eq!(a.get("/", "").status, 200);
    assert_eq!(b.get("/", "").status, 200);
    let mut c = Client::connect(srv.addr());
    let r = c.get("/", "");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("connection"), Some("close"));
    drop(a);
    // The slot comes back once a connection closes.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = Client::connect(srv.addr()).get("/state", "");
        if r.status == 200 {
            assert!(
                r.json()["transport"]["connections_refused_busy"]
                    .as_u64()
                    .unwrap()
                    >= 1
            );
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn graceful_shutdown_lets_the_request_in_flight_finish() {
    let srv = start(quiet());
    let addr = srv.addr();
    let mut c = Client::connect(addr);
    assert_eq!(c.get("/", "").status, 200);
    // Half a request in flight...
    c.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello");
    std::thread::sleep(Duration::from_millis(100));
    let stopping = std::thread::spawn(move || srv.shutdown());
    std::thread::sleep(Duration::from_millis(200));
    // ...new connections are refused, the old one is still served...
    assert!(TcpStream::connect(addr).is_err());
    c.send(b"world");
    let r = c.read();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["request"]["body_bytes"], 10);
    // ...and then closed.
    assert!(c.closed_within(Duration::from_secs(3)));
    stopping.join().unwrap().unwrap();
}

// ---- the binary ----

fn bin() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("statescope").unwrap()
}

#[test]
fn cli_port_in_use_and_bad_addresses_are_clear_errors() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = bin()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .timeout(Duration::from_secs(10))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("already in use"), "{err}");
    for (args, want) in [
        (&["serve", "--listen", "nonsense"][..], "invalid --listen"),
        (&["serve", "--listen", "192.0.2.1:80"], "no interface"),
        (
            &["serve", "--broker", "redis://127.0.0.1:1"],
            "redis://127.0.0.1:1",
        ),
        (&["serve", "--max-header", "10"], "8192"),
    ] {
        let out = bin()
            .args(args)
            .timeout(Duration::from_secs(10))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one-line error: {err}");
    }
}

#[test]
fn cli_serves_logs_and_stops_on_sigterm() {
    use std::process::{Command, Stdio};
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("statescope"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    for _ in 0..5 {
        let mut line = String::new();
        err.read_line(&mut line).unwrap();
        if let Some(a) = line.trim().strip_prefix("listening on ") {
            addr = Some(a.parse::<SocketAddr>().unwrap());
            break;
        }
    }
    let addr = addr.expect("a `listening on` line");
    assert_eq!(Client::connect(addr).get("/echo", "").status, 200);
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(
        line.contains("\"GET /echo HTTP/1.1\" 200"),
        "log line: {line}"
    );
    sigterm_and_wait(&mut child);
}

/// SIGTERM to a child we started, by its PID; it must exit successfully within 15 s.
fn sigterm_and_wait(child: &mut std::process::Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

/// Two real `serve` processes sharing one real Redis (`serve --broker redis://…`): a WebSocket
/// message sent to instance A is relayed to a client of instance B. Needs redis-server (CI
/// installs it); skipped with a message otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_websocket_messages_through_redis() {
    use std::process::{Child, Command, Stdio};
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: redis-server is not installed (apt-get install redis-server)");
        return;
    }
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let rport = free();
    let _redis = Kill(
        Command::new("redis-server")
            .args([
                "--port",
                &rport.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("redis://127.0.0.1:{rport}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", rport)).is_err() {
        assert!(Instant::now() < deadline, "redis did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut instances = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..2 {
        let port = free();
        let child = Command::new(assert_cmd::cargo::cargo_bin("statescope"))
            .args([
                "serve",
                "--quiet",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--broker",
                &url,
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        instances.push(Kill(child));
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "serve did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        addrs.push(port);
    }
    let (mut a, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/ws", addrs[0]))
        .await
        .unwrap();
    let (mut b, _) = tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/ws", addrs[1]))
        .await
        .unwrap();
    // Subscriptions are set up at start; give the relay a moment, then send.
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.send(Message::text("across instances")).await.unwrap();
    let relayed = tokio::time::timeout(Duration::from_secs(5), b.next())
        .await
        .expect("no relay within 5 s");
    let relayed: Value =
        serde_json::from_str(relayed.unwrap().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(relayed["kind"], "relay");
    assert_eq!(relayed["text"], "across instances");
}

/// `serve` as a user runs it, standard error redirected to a file: SIGTERM right after the last
/// of N answered requests still leaves all N access-log lines (the log is buffered, issue 26).
#[test]
fn cli_sigterm_right_after_n_requests_leaves_all_n_log_lines() {
    use std::process::{Command, Stdio};
    const N: usize = 3000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("statescope"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stderr(std::fs::File::create(&path).unwrap())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr: SocketAddr = loop {
        let text = std::fs::read_to_string(&path).unwrap();
        if let Some(a) = text.lines().find_map(|l| l.strip_prefix("listening on ")) {
            break a.parse().unwrap();
        }
        assert!(Instant::now() < deadline, "serve did not start: {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Several keep-alive connections, each answered in full before the signal.
    let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(addr)).collect();
    for i in 0..N {
        assert_eq!(clients[i % 4].get("/", "").status, 200);
    }
    drop(clients);
    sigterm_and_wait(&mut child);
    let text = std::fs::read_to_string(&path).unwrap();
    let logged = text
        .lines()
        .filter(|l| l.contains("\"GET / HTTP/1.1\" 200"))
        .count();
    assert_eq!(logged, N, "{}", &text[text.len().saturating_sub(2000)..]);
}

// ---- hardening: the real binary under hostile load from one address ----

/// A `statescope serve` process, stopped by its PID when dropped.
struct ServeProcess {
    child: std::process::Child,
    addr: SocketAddr,
}

impl ServeProcess {
    /// Start `statescope serve -q --listen 127.0.0.1:0 EXTRA...` and wait for its address.
    fn start(extra: &[&str]) -> ServeProcess {
        use std::process::{Command, Stdio};
        let mut child = Command::new(assert_cmd::cargo::cargo_bin("statescope"))
            .args(["serve", "-q", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let addr = loop {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "serve exited early");
            if let Some(a) = line.trim().strip_prefix("listening on ") {
                break a.parse().unwrap();
            }
        };
        ServeProcess { child, addr }
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Room for a few thousand sockets in this test process (the server is a child and inherits it).
fn raise_nofile(want: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    if lim.rlim_cur < want {
        lim.rlim_cur = want.min(lim.rlim_max);
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    }
}

/// A TCP connection to `to` from the loopback address `from` (all of 127/8 is local on Linux).
async fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind(SocketAddr::from((from, 0)))?;
    s.connect(to).await
}

/// `GET /` from the loopback address `from`: the status code, within 5 s.
async fn get_root_from(from: [u8; 4], to: SocketAddr) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = connect_from(from, to).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got))
        .await
        .expect("no answer within 5 s")
        .unwrap();
    let text = String::from_utf8_lossy(&got);
    text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_get_answered_while_one_address_holds_2000_idle_sockets_and_1000_websockets() {
    raise_nofile(8192);
    let srv = ServeProcess::start(&[]);
    let addr = srv.addr;
    // 2,000 idle TCP connections from 127.0.0.1: connected, never a byte sent.
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(connect_from([127, 0, 0, 1], addr).await.unwrap());
    }
    // 1,000 WebSockets from 127.0.0.3, each left silent after its handshake.
    let mut sockets = Vec::new();
    let mut refused = 0;
    let url = format!("ws://{addr}/ws");
    for _ in 0..1000 {
        let tcp = connect_from([127, 0, 0, 3], addr).await.unwrap();
        match tokio_tungstenite::client_async(url.as_str(), tcp).await {
            Ok((ws, _)) => sockets.push(ws),
            Err(_) => refused += 1,
        }
    }
    // Each address got its share and no more; the rest were turned away.
    assert_eq!(sockets.len(), 256, "websockets opened");
    assert_eq!(refused, 744);
    // A client from another address is answered at once.
    let t = Instant::now();
    assert_eq!(get_root_from([127, 0, 0, 2], addr).await, 200);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    // ...while the flood is still open, as /state (asked from a third address) shows.
    let mut s = connect_from([127, 0, 0, 4], addr).await.unwrap();
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET /state HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).await.unwrap();
        let state: Value = serde_json::from_str(got.split("\r\n\r\n").nth(1).unwrap()).unwrap();
        let t = &state["transport"];
        // 256 idle + 256 WebSockets + this one; plus, for a moment, the GET's connection
        // above, which the client saw closed before the server's task for it had ended.
        assert!(
            t["open_tcp_connections"].as_u64().unwrap() <= 2 * 256 + 2,
            "{t}"
        );
        assert!(
            t["connections_refused_per_address"].as_u64().unwrap() >= 1744 + 744,
            "{t}"
        );
        assert_eq!(
            state["stateful_contrasts"]["websocket_connections_open"],
            256
        );
    }
    assert_eq!(idle.len(), 2000);
    drop(sockets);
    drop(idle);
}

#[test]
fn real_logins_succeed_after_200k_anonymous_ones() {
    const FLOOD: usize = 200_000;
    const THREADS: usize = 4;
    const BATCH: usize = 200;
    let srv = ServeProcess::start(&[]);
    let addr = srv.addr;
    let deadline = Instant::now() + Duration::from_secs(240);
    // Password-less logins, pipelined in batches on a few keep-alive connections.
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for b in 0..FLOOD / THREADS / BATCH {
                    assert!(Instant::now() < deadline, "flood too slow");
                    let batch: String = (0..BATCH)
                        .map(|i| post_form("/session/login", &format!("user=anon{t}x{b}x{i}"), ""))
                        .collect();
                    c.send(batch.as_bytes());
                    for _ in 0..BATCH {
                        assert_eq!(c.read().status, 200);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // A real user logs in after the flood, and the session works.
    let (cookie, _) = login(addr);
    let r = me(addr, &format!("Cookie: {cookie}\r\n"));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["user"], "alice");
    let s = state(addr);
    let held = s["stateful_contrasts"]["sessions_held"].as_u64().unwrap();
    let evicted = s["stateful_contrasts"]["sessions_evicted_oldest"]
        .as_u64()
        .unwrap();
    assert_eq!(held, 100_000, "{s}");
    assert_eq!(evicted, FLOOD as u64 + 1 - 100_000, "{s}");
}

/// `GET path` over HTTP/2 with prior knowledge (h2c) on a fresh connection, `n` times as
/// concurrent streams: each status, version and body.
async fn h2_gets(addr: SocketAddr, path: &str, n: usize) -> Result<Vec<(u16, String)>, String> {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (send, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<bytes::Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut streams = Vec::new();
    for _ in 0..n {
        let mut send = send.clone();
        let req = hyper::Request::get(format!("http://{addr}{path}"))
            .body(Empty::new())
            .unwrap();
        streams.push(tokio::spawn(async move {
            let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
            let (status, version) = (resp.status().as_u16(), resp.version());
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>((
                status,
                format!("{version:?} {}", String::from_utf8_lossy(&body.to_bytes())),
            ))
        }));
    }
    let mut out = Vec::new();
    for s in streams {
        out.push(s.await.map_err(|e| e.to_string())??);
    }
    Ok(out)
}

/// HTTP/2 on the same port as HTTP/1.1 (h2c with prior knowledge): ten concurrent streams on
/// one connection, each answered alone with the same stateless greeting HTTP/1.1 gets.
/// Control: an HTTP/1-only hyper server on the same test refuses the HTTP/2 preface.
#[test]
fn http2_prior_knowledge_streams_each_answered_alone() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let h = start(quiet());
    let addr = h.addr();
    let got = rt.block_on(h2_gets(addr, "/", 10)).expect("h2c works");
    let one = Client::connect(addr).get("/", "");
    assert_eq!(one.status, 200);
    assert_eq!(got.len(), 10);
    for (status, text) in &got {
        assert_eq!(*status, 200);
        assert_eq!(text, &format!("HTTP/2.0 {}", one.body));
    }
    let echo = rt.block_on(h2_gets(addr, "/echo", 1)).unwrap();
    assert!(
        echo[0].1.contains("\"version\": \"HTTP/2.0\""),
        "{}",
        echo[0].1
    );
    h.shutdown().unwrap();

    // Control: a server that speaks HTTP/1 only.
    let only1 = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(
                    hyper_util::rt::TokioIo::new(s),
                    hyper::service::service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from("hi")),
                        ))
                    }),
                ));
            }
        });
        addr
    });
    assert!(rt.block_on(h2_gets(only1, "/", 1)).is_err());
}
