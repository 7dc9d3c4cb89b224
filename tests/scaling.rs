//! The scaling labs end to end, against a real `redis-server` and against the embedded broker.
//!
//! Each Redis test starts its own `redis-server` on a free loopback port (no persistence) and
//! kills it by PID when done, through [`RedisServer`]'s `Drop`. Where `redis-server` is not
//! installed the Redis half of a test says it is skipped and why; the embedded half still runs.

use bytes::Bytes;
use statescope::broker::{self, Broker};
use statescope::config::Format;
use statescope::lab::{LabCtx, LabOut, LABS};
use statescope::record::LabRec;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/redis.rs"]
mod redis;
use redis::RedisServer;

fn skip(what: &str) {
    eprintln!("SKIPPED {what} against Redis: redis-server is not installed (apt-get install redis-server; CI installs it)");
}

/// Run lab `name` through the registry, as `statescope lab NAME [--variant V] [--html F]` does.
fn run_lab_with(
    name: &str,
    redis: Option<String>,
    variant: Option<&str>,
    html: Option<PathBuf>,
) -> LabRec {
    let dir = tempfile::tempdir().unwrap();
    let ctx = LabCtx {
        format: Format::Table,
        redis,
        out_dir: dir.path().to_path_buf(),
        html,
        exe: PathBuf::from(env!("CARGO_BIN_EXE_statescope")),
        variant: variant.map(str::to_string),
    };
    let mut out = LabOut::new(Format::Table, Box::new(std::io::sink()));
    let lab = LABS
        .iter()
        .find(|l| l.name == name)
        .expect("lab registered");
    let started = Instant::now();
    let rec = (lab.run)(&ctx, &mut out).unwrap_or_else(|e| panic!("lab {name}: {e:#}"));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "lab {name} took {:?}",
        started.elapsed()
    );
    assert_eq!(rec.name, name);
    assert!(!rec.question.is_empty() && !rec.answer.is_empty());
    // `ok` is exactly "no check failed", and a failed run names its checks.
    assert_eq!(rec.ok, rec.failed.is_empty(), "{rec:?}");
    rec
}

fn run_lab(name: &str, redis: Option<String>) -> LabRec {
    run_lab_with(name, redis, None, None)
}

/// A negative control: the lab against a deliberately wrong variant ends `ok: false`, naming
/// `check` among the failed ones.
fn assert_control_fails(name: &str, redis: Option<String>, variant: &str, check: &str) -> LabRec {
    let rec = run_lab_with(name, redis, Some(variant), None);
    assert!(!rec.ok, "{name} --variant {variant} must fail: {rec:?}");
    assert!(
        rec.failed.iter().any(|f| f == check),
        "{name} --variant {variant}: expected {check:?} among failed {:?}",
        rec.failed
    );
    assert_eq!(rec.settings["variant"], variant);
    rec
}

fn fact(rec: &LabRec, key: &str) -> u64 {
    rec.facts
        .get(key)
        .and_then(|v| v.as_u64())
        .unwrap_or_else(|| panic!("{}: no numeric fact {key:?} in {:?}", rec.name, rec.facts))
}

fn facts_list(rec: &LabRec, key: &str) -> Vec<u64> {
    rec.facts[key]
        .as_array()
        .unwrap_or_else(|| panic!("{}: no list {key:?}", rec.name))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

/// The lab's own knobs are settings, never facts.
fn settings_not_facts(rec: &LabRec, knobs: &[&str]) {
    for k in knobs {
        assert!(
            rec.settings.contains_key(*k),
            "{}: setting {k} missing",
            rec.name
        );
        assert!(
            !rec.facts.contains_key(*k),
            "{}: {k} is a setting, not a fact",
            rec.name
        );
    }
}

// ---------------------------------------------------------------------------------------------
// scale-stateful: 3 serve --broker processes; every user receives every other user's messages;
// without the broker, user 2 receives only what server 2 got
// ---------------------------------------------------------------------------------------------

fn check_scale_stateful(rec: &LabRec) {
    assert!(rec.ok, "{rec:?}");
    settings_not_facts(rec, &["users", "messages_per_user", "servers"]);
    assert_eq!(fact(rec, "sent"), 60);
    assert_eq!(facts_list(rec, "answered_per_user"), [20, 20, 20]);
    assert_eq!(facts_list(rec, "relayed_per_user"), [40, 40, 40]);
    assert_eq!(fact(rec, "expected"), 120);
    assert_eq!(fact(rec, "delivered"), 120);
    assert_eq!(fact(rec, "lost"), 0);
    assert_eq!(facts_list(rec, "no_broker_answered_per_user"), [20, 20, 20]);
    assert_eq!(facts_list(rec, "no_broker_relayed_per_user"), [0, 0, 0]);
    let pids = facts_list(rec, "server_pids");
    assert_eq!(pids.len(), 3);
    assert!(pids.iter().all(|&p| p != std::process::id() as u64));
}

#[test]
fn scale_stateful_with_its_own_redis() {
    if RedisServer::start().is_none() {
        return skip("scale-stateful");
    }
    check_scale_stateful(&run_lab("scale-stateful", None));
}

#[test]
fn scale_stateful_redis() {
    let Some(redis) = RedisServer::start() else {
        return skip("scale-stateful");
    };
    let rec = run_lab("scale-stateful", Some(redis.url()));
    assert_eq!(rec.settings["broker"], redis.url().as_str());
    check_scale_stateful(&rec);
}

#[test]
fn scale_stateful_control_dropping_broker_fails() {
    let Some(redis) = RedisServer::start() else {
        return skip("scale-stateful control");
    };
    let rec = assert_control_fails(
        "scale-stateful",
        Some(redis.url()),
        "wrong-dropping-broker",
        "broker_every_user_received_every_message",
    );
    assert!(facts_list(&rec, "relayed_per_user").iter().all(|&r| r < 40));
    assert!(fact(&rec, "lost") > 0);
    assert_eq!(
        fact(&rec, "delivered") + fact(&rec, "lost"),
        fact(&rec, "expected")
    );
}

// ---------------------------------------------------------------------------------------------
// queue: pub-sub loses exactly what was published during the outage; the queue loses nothing
// ---------------------------------------------------------------------------------------------

fn check_queue(rec: &LabRec) {
    assert!(rec.ok, "{rec:?}");
    settings_not_facts(rec, &["messages_per_user_per_phase", "servers"]);
    for m in ["pubsub", "queue"] {
        assert_eq!(fact(rec, &format!("{m}_sent")), 40);
        assert_eq!(fact(rec, &format!("{m}_expected")), 120);
        assert_eq!(fact(rec, &format!("{m}_outage_published")), 10);
    }
    assert_eq!(fact(rec, "pubsub_lost"), 10);
    assert_eq!(fact(rec, "pubsub_user3_missed"), 10);
    assert_eq!(fact(rec, "pubsub_delivered"), 110);
    assert_eq!(fact(rec, "queue_lost"), 0);
    assert_eq!(fact(rec, "queue_delivered"), 120);
}

#[test]
fn queue_embedded() {
    check_queue(&run_lab("queue", None));
}

#[test]
fn queue_redis() {
    let Some(redis) = RedisServer::start() else {
        return skip("queue");
    };
    check_queue(&run_lab("queue", Some(redis.url())));
}

#[test]
fn queue_control_dropping_broker_fails() {
    let rec = assert_control_fails("queue", None, "wrong-dropping-broker", "queue_lost_nothing");
    assert!(fact(&rec, "queue_lost") > 0);
}

// ---------------------------------------------------------------------------------------------
// crash: a serve process SIGKILLed mid-load; every acknowledged record kept in memory is lost
// (measured against a new process), none kept in Redis
// ---------------------------------------------------------------------------------------------

fn check_crash(rec: &LabRec) {
    assert!(rec.ok, "{rec:?}");
    settings_not_facts(rec, &["records", "kill_after", "clients"]);
    for p in ["memory", "external"] {
        let acked = fact(rec, &format!("{p}_acked"));
        assert!(acked >= 60, "{rec:?}");
        assert!(fact(rec, &format!("{p}_acked_at_kill")) >= 60);
        // The kill landed mid-load: requests went on after it, and none sent after the process
        // was gone was acknowledged.
        let after = fact(rec, &format!("{p}_sent_after_kill"));
        assert!(after > 0, "{rec:?}");
        assert_eq!(fact(rec, &format!("{p}_acked_sent_after_kill")), 0);
        assert!(
            fact(rec, &format!("{p}_sent")) < 400,
            "load was still going"
        );
        assert_ne!(
            fact(rec, &format!("{p}_pid_killed")),
            fact(rec, &format!("{p}_pid_restarted"))
        );
    }
    let acked = fact(rec, "memory_acked");
    assert_eq!(fact(rec, "memory_lost"), acked);
    assert_eq!(fact(rec, "memory_survived"), 0);
    assert_eq!(fact(rec, "external_lost"), 0);
    assert!(fact(rec, "external_survived") >= fact(rec, "external_acked"));
}

#[test]
fn crash_redis() {
    let Some(redis) = RedisServer::start() else {
        return skip("crash");
    };
    let rec = run_lab("crash", Some(redis.url()));
    assert_eq!(rec.settings["external_store"], redis.url().as_str());
    check_crash(&rec);
}

#[test]
fn crash_control_persisting_memory_store_fails() {
    let Some(redis) = RedisServer::start() else {
        return skip("crash control");
    };
    let rec = assert_control_fails(
        "crash",
        Some(redis.url()),
        "wrong-persisting-store",
        "memory_lost_every_acked_record",
    );
    // Measured against the new process: the secret file gave it every record back.
    assert_eq!(fact(&rec, "memory_lost"), 0);
    assert!(fact(&rec, "memory_survived") >= fact(&rec, "memory_acked"));
}

// ---------------------------------------------------------------------------------------------
// scale-stateless: logged-in users behind the balancer, 1 and 3 serve processes, one killed
// ---------------------------------------------------------------------------------------------

#[test]
fn scale_stateless_sessions_die_with_their_instance_tokens_do_not() {
    let rec = run_lab("scale-stateless", None);
    assert!(rec.ok, "{rec:?}");
    settings_not_facts(&rec, &["instances", "requests_per_run", "killed_instance"]);
    assert!(rec.facts["rps_1_instance"].as_f64().unwrap() > 0.0);
    assert!(rec.facts["rps_3_instances"].as_f64().unwrap() > 0.0);
    assert_eq!(fact(&rec, "not_ok_1_instance"), 0);
    assert_eq!(fact(&rec, "not_ok_3_instances"), 0);
    assert!(facts_list(&rec, "served_per_instance_3")
        .iter()
        .all(|&s| s > 0));
    assert!(fact(&rec, "served_by_killed_before_kill") > 0);
    assert_eq!(fact(&rec, "served_by_killed_after_kill"), 0);
    let on_killed = fact(&rec, "session_users_on_killed");
    assert!(on_killed > 0);
    assert_eq!(fact(&rec, "session_users_lost"), on_killed);
    assert_eq!(fact(&rec, "session_failures_elsewhere"), 0);
    assert_eq!(fact(&rec, "token_failures"), 0);
    assert!(fact(&rec, "token_instances_after_kill") >= 2);
}

#[test]
fn scale_stateless_control_pinning_balancer_fails() {
    let rec = assert_control_fails(
        "scale-stateless",
        None,
        "wrong-pinning-balancer",
        "killed_instance_served_before_kill",
    );
    assert_eq!(fact(&rec, "served_by_killed_before_kill"), 0);
}

#[test]
fn an_unknown_variant_is_refused_by_name() {
    let out = Command::new(env!("CARGO_BIN_EXE_statescope"))
        .args(["lab", "queue", "--variant", "nonsense", "--out-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nonsense") && err.contains("wrong-dropping-broker"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// The timelines: each scaling lab's page renders its SVG in headless chromium
// ---------------------------------------------------------------------------------------------

fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("STATESCOPE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| std::path::Path::new(d).join(n)))
        .find(|p| p.is_file())
}

/// Headless chromium's DOM of `page` after its scripts ran, bounded in time.
fn dump_dom(bin: &std::path::Path, page: &std::path::Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
        ])
        .args([
            "--disable-background-networking",
            "--disable-component-update",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=5000", "--dump-dom"])
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::from(out.reopen().unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s on {}", page.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(out.path()).unwrap()
}

/// The page's self-check line: `charts=… drawn_w=… drawn_h=… marks=… errors=…`.
fn selfcheck(dom: &str) -> std::collections::BTreeMap<String, u64> {
    let at = dom
        .find("<pre id=\"selfcheck\">")
        .expect("selfcheck in DOM")
        + 20;
    let line = &dom[at..at + dom[at..].find('<').unwrap()];
    assert!(!line.contains("pending"), "the page's script did not run");
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

#[test]
fn scaling_lab_timelines_render_in_chromium() {
    let Some(bin) = chromium() else {
        eprintln!(
            "skipped: chromium not found (apt-get install chromium, or set STATESCOPE_CHROMIUM)"
        );
        return;
    };
    let Some(redis) = RedisServer::start() else {
        return skip("timelines");
    };
    let dir = tempfile::tempdir().unwrap();
    for (name, svg_id) in [
        ("crash", "crash-timeline"),
        ("scale-stateful", "pubsub-swimlane"),
        ("scale-stateless", "requests-per-instance"),
        ("queue", "queue-fates"),
    ] {
        let html = dir.path().join(format!("{name}.html"));
        let rec = run_lab_with(name, Some(redis.url()), None, Some(html.clone()));
        assert!(rec.ok, "{rec:?}");
        let dom = dump_dom(&bin, &html);
        let sc = selfcheck(&dom);
        eprintln!("{name}: {sc:?}");
        assert_eq!(sc["errors"], 0, "{name}: script errors");
        assert_eq!(sc["charts"], 1, "{name}");
        assert!(sc["drawn_w"] > 300 && sc["drawn_h"] > 100, "{name}: {sc:?}");
        assert!(dom.contains(&format!("id=\"{svg_id}\"")), "{name}");
        // The lesson opens the page, from the record.
        assert!(dom.contains("class=\"lesson\""), "{name}");
        assert!(dom.contains("every check held"), "{name}");
        // What is drawn is what was measured.
        let count = |class: &str| dom.matches(&format!("class=\"{class}\"")).count() as u64;
        match name {
            "crash" => {
                assert_eq!(
                    count("ack"),
                    fact(&rec, "memory_acked") + fact(&rec, "external_acked")
                );
                assert_eq!(
                    count("fail"),
                    fact(&rec, "memory_failed") + fact(&rec, "external_failed")
                );
                assert_eq!(count("kill"), 2);
            }
            "scale-stateful" => {
                assert_eq!(
                    count("arrived"),
                    20,
                    "every message of user 1 reached user 2"
                );
                assert_eq!(count("not-arrived"), 20, "none did without the broker");
            }
            "scale-stateless" => {
                assert_eq!(count("inst"), 3);
                assert_eq!(count("kill"), 1);
            }
            "queue" => {
                assert_eq!(count("missed"), fact(&rec, "pubsub_user3_missed"));
                assert_eq!(count("got") + count("missed"), 80);
            }
            _ => unreachable!(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Faults: Redis unreachable, Redis going away and coming back
// ---------------------------------------------------------------------------------------------

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn unreachable_redis_is_one_clear_line() {
    let url = format!("redis://127.0.0.1:{}", closed_port());
    let out = Command::new(env!("CARGO_BIN_EXE_statescope"))
        .args(["lab", "scale-stateful", "--redis", &url, "--out-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(&url) && err.contains("redis-server"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn redis_going_away_and_back_is_survived_and_counted() {
    let Some(first) = RedisServer::start() else {
        return skip("reconnect");
    };
    let port = first.port();
    let url = first.url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let b: Arc<dyn Broker> = broker::connect(Some(&url)).await.unwrap();
        let mut sub = b.subscribe("t").await.unwrap();
        assert_eq!(b.publish("t", Bytes::from_static(b"one")).await.unwrap(), 1);
        assert_eq!(sub.recv().await.unwrap(), Bytes::from_static(b"one"));

        // Redis dies: a publish gives up after its bounded retries, with an error naming the URL.
        drop(first);
        let t = Instant::now();
        let err = b
            .publish("t", Bytes::from_static(b"lost"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&url), "{err}");
        assert!(t.elapsed() < Duration::from_secs(15));
        assert_eq!(b.stats().failed_ops, 1);
        // While it is down, others fail at once instead of each retrying for seconds.
        let t = Instant::now();
        let err = b
            .publish("t", Bytes::from_static(b"lost too"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&url) && err.contains("still unreachable"),
            "{err}"
        );
        assert!(
            t.elapsed() < Duration::from_millis(400),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(b.stats().failed_ops, 2);

        // Redis comes back on the same port: commands reconnect, the subscription resubscribes.
        let _second = RedisServer::start_on(Some(port)).expect("restart redis-server");
        let deadline = Instant::now() + Duration::from_secs(15);
        let got = loop {
            assert!(Instant::now() < deadline, "subscription never came back");
            // Right after the outage the breaker may still refuse (counted) for a moment.
            if b.publish("t", Bytes::from_static(b"two")).await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), sub.recv()).await
            {
                break m;
            }
        };
        assert_eq!(got, Bytes::from_static(b"two"));
        assert!(b.stats().reconnects >= 2, "{:?}", b.stats());
    });
}

#[test]
fn redis_queue_group_catches_up() {
    let Some(redis) = RedisServer::start() else {
        return skip("consumer groups");
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let b = broker::connect(Some(&redis.url())).await.unwrap();
        let w = Duration::from_millis(50);
        b.append("s", Bytes::from_static(b"before")).await.unwrap();
        b.join_group("s", "g").await.unwrap();
        b.join_group("s", "g").await.unwrap(); // again: keeps its place, no error
        for m in ["a", "b", "c"] {
            b.append("s", Bytes::from(m)).await.unwrap();
        }
        let first = b.read_group("s", "g", "c1", 2, w).await.unwrap();
        assert_eq!(
            first.iter().map(|e| e.payload.clone()).collect::<Vec<_>>(),
            [Bytes::from("a"), Bytes::from("b")]
        );
        // Not acknowledged: handed out again first.
        assert_eq!(b.read_group("s", "g", "c1", 10, w).await.unwrap(), first);
        let ids: Vec<String> = first.iter().map(|e| e.id.clone()).collect();
        b.ack("s", "g", &ids).await.unwrap();
        let rest = b.read_group("s", "g", "c1", 10, w).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].payload, Bytes::from("c"));
        b.ack("s", "g", &[rest[0].id.clone()]).await.unwrap();
        assert!(b
            .read_group("s", "g", "c1", 10, w)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(b.entries("s").await.unwrap().len(), 4);
        b.delete("s").await.unwrap();
        assert!(b.entries("s").await.unwrap().is_empty());
    });
}

#[test]
fn lab_record_is_the_last_jsonl_line() {
    if RedisServer::start().is_none() {
        return skip("the jsonl record");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_statescope"))
        .args(["lab", "scale-stateful", "--format", "jsonl", "--out-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout carries the record only: {stdout}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["type"], "lab");
    assert_eq!(
        v["facts"]["relayed_per_user"],
        serde_json::json!([40, 40, 40])
    );
    assert_eq!(v["settings"]["messages_per_user"], 20);
    assert_eq!(v["ok"], true);
}

#[test]
fn chat_counts_what_a_redis_outage_cost() {
    use statescope::broker::chat::{wait_for, ChatClient, ChatNode, Relay, SharedInbox};
    use std::sync::atomic::Ordering;
    let Some(first) = RedisServer::start() else {
        return skip("chat through a Redis outage");
    };
    let port = first.port();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let b = broker::connect(Some(&first.url())).await.unwrap();
        let n1 = ChatNode::start("s1", "127.0.0.1:0", b.clone(), Relay::PubSub, "room")
            .await
            .unwrap();
        let n2 = ChatNode::start("s2", "127.0.0.1:0", b.clone(), Relay::PubSub, "room")
            .await
            .unwrap();
        let (i1, i2) = (SharedInbox::default(), SharedInbox::default());
        let mut u1 = ChatClient::connect(n1.addr, "u1", i1.clone())
            .await
            .unwrap();
        let _u2 = ChatClient::connect(n2.addr, "u2", i2.clone())
            .await
            .unwrap();
        u1.send(1, "before").await.unwrap();
        assert!(wait_for(&[(i1.clone(), 1), (i2.clone(), 1)], Duration::from_secs(5)).await);

        // Redis goes away: the server cannot pass these on; it must count them.
        drop(first);
        u1.send(2, "during").await.unwrap();
        u1.send(3, "during").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while n1.stats.publish_failed.load(Ordering::Relaxed) < 2 {
            assert!(
                Instant::now() < deadline,
                "failed publishes were not counted"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Redis comes back: the nodes' subscriptions return by themselves; chat goes on.
        let _second = RedisServer::start_on(Some(port)).expect("restart redis-server");
        let mut seq = 100;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            assert!(
                Instant::now() < deadline,
                "chat did not recover after Redis came back"
            );
            seq += 1;
            u1.send(seq, "after").await.unwrap();
            if wait_for(&[(i2.clone(), 2)], Duration::from_millis(200)).await {
                break;
            }
        }
        let got = i2.lock().unwrap().got.clone();
        assert!(!got.contains(&("u1".to_string(), 2)) && !got.contains(&("u1".to_string(), 3)));
        // Every message u1 sent is accounted for: published, or counted as failed.
        // (The server may still be handling the last one: give it a moment.)
        let sent = 3 + (seq - 100);
        let accounted = || {
            n1.stats.published.load(Ordering::Relaxed)
                + n1.stats.publish_failed.load(Ordering::Relaxed)
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while accounted() < sent && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(accounted(), sent);
        assert!(n1.stats.publish_failed.load(Ordering::Relaxed) >= 2);
        assert!(b.stats().reconnects >= 1);
    });
}

/// Redis killed while labs run: each lab ends (a record with its counts, or one clear error
/// naming the URL) within the time bound; nothing panics, nothing hangs.
#[test]
fn labs_end_cleanly_when_redis_dies_mid_run() {
    for (name, after_ms) in [("queue", 300), ("crash", 50), ("scale-stateful", 20)] {
        let Some(redis) = RedisServer::start() else {
            return skip("Redis dying mid-lab");
        };
        let url = redis.url();
        let (tx, rx) = std::sync::mpsc::channel();
        let url2 = url.clone();
        std::thread::spawn(move || {
            let dir = tempfile::tempdir().unwrap();
            let ctx = LabCtx {
                format: Format::Table,
                redis: Some(url2),
                out_dir: dir.path().to_path_buf(),
                html: None,
                exe: PathBuf::from(env!("CARGO_BIN_EXE_statescope")),
                variant: None,
            };
            let mut out = LabOut::new(Format::Table, Box::new(std::io::sink()));
            let lab = LABS.iter().find(|l| l.name == name).unwrap();
            let _ = tx.send((lab.run)(&ctx, &mut out).map_err(|e| format!("{e:#}")));
        });
        std::thread::sleep(Duration::from_millis(after_ms));
        drop(redis);
        let res = rx
            .recv_timeout(Duration::from_secs(45))
            .unwrap_or_else(|_| panic!("lab {name} did not end after Redis died"));
        match res {
            Ok(rec) => {
                eprintln!(
                    "{name} with Redis killed: ok={} facts={:?}",
                    rec.ok, rec.facts
                );
                for prefix in ["", "pubsub_", "queue_"] {
                    if let (Some(d), Some(l), Some(e)) = (
                        rec.facts
                            .get(&format!("{prefix}delivered"))
                            .and_then(|v| v.as_u64()),
                        rec.facts
                            .get(&format!("{prefix}lost"))
                            .and_then(|v| v.as_u64()),
                        rec.facts
                            .get(&format!("{prefix}expected"))
                            .and_then(|v| v.as_u64()),
                    ) {
                        assert_eq!(
                            d + l,
                            e,
                            "{name}: every expected delivery is delivered or counted lost"
                        );
                    }
                }
            }
            Err(e) => {
                eprintln!("{name} with Redis killed: {e}");
                assert!(e.contains(&url), "{e}");
                assert_eq!(e.lines().count(), 1, "{e}");
            }
        }
    }
}
