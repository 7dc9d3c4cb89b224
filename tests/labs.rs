//! The loopback labs end to end, through the binary: `statescope lab NAME --format jsonl
//! --out-dir DIR`, as root (live capture on `lo`); without root each test says it is skipped.
//!
//! Each test checks the final `lab` record (ok, and the facts it claims) against the other
//! records of the same output, and that the saved capture replays to the same connections.
//!
//! Every lab also runs as its own negative control (`STATESCOPE_LAB_CONTROL=NAME`: a
//! deliberately wrong server, or an observer that missed a segment) and must then end
//! `ok: false`, exit 1, naming the check the wrong variant breaks. `login` and
//! `stateless-vs-stateful` get a real `redis-server` started here (skipped, and said, where it
//! is not installed).

#[path = "support/redis.rs"]
mod redis;

use assert_cmd::Command;
use serde_json::Value;
use statescope::record::{ConnRec, HttpRec, LabRec, PacketRec, Record, WsRec};
use std::path::Path;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Everything one lab run printed, typed.
struct Run {
    records: Vec<Record>,
    lab: LabRec,
    _dir: tempfile::TempDir,
    pcap: std::path::PathBuf,
}

impl Run {
    fn conns(&self) -> Vec<&ConnRec> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Conn(c) => Some(c),
                _ => None,
            })
            .collect()
    }
    fn conn(&self, i: u64) -> &ConnRec {
        self.conns()
            .into_iter()
            .find(|c| c.conn == i)
            .unwrap_or_else(|| panic!("no conn record {i}"))
    }
    fn packets(&self, conn: u64) -> Vec<&PacketRec> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Packet(p) if p.conn == conn => Some(p),
                _ => None,
            })
            .collect()
    }
    fn http(&self) -> Vec<&HttpRec> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Http(h) => Some(&**h),
                _ => None,
            })
            .collect()
    }
    fn ws(&self) -> Vec<&WsRec> {
        self.records
            .iter()
            .filter_map(|r| match r {
                Record::Ws(w) => Some(w),
                _ => None,
            })
            .collect()
    }
    fn fact(&self, name: &str) -> &Value {
        self.lab
            .facts
            .get(name)
            .unwrap_or_else(|| panic!("lab {} has no fact {name}", self.lab.name))
    }
    fn fact_u64(&self, name: &str) -> u64 {
        self.fact(name)
            .as_u64()
            .unwrap_or_else(|| panic!("fact {name} is not a count: {}", self.fact(name)))
    }
}

/// Run a lab through the binary, as a negative control when `control` names one; `None`
/// (after saying so) when not root. Checks only what every run must hold: one lab record, last.
fn run_any(name: &str, redis: Option<&str>, control: Option<&str>) -> Option<(Run, bool)> {
    if !is_root() {
        eprintln!("skipped: needs root (live capture on lo)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::cargo_bin("statescope").unwrap();
    cmd.args(["lab", name, "--format", "jsonl", "--out-dir"])
        .arg(dir.path())
        .env_remove("STATESCOPE_LAB_CONTROL")
        .timeout(std::time::Duration::from_secs(90));
    if let Some(url) = redis {
        cmd.args(["--redis", url]);
    }
    if let Some(c) = control {
        cmd.env("STATESCOPE_LAB_CONTROL", c);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let records: Vec<Record> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad record {l}: {e}")))
        .collect();
    let Some(Record::Lab(lab)) = records.last().cloned() else {
        panic!(
            "lab {name}: the last record is not the lab record: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    assert_eq!(lab.name, name);
    assert!(!lab.question.is_empty() && !lab.answer.is_empty());
    let lab_records = records
        .iter()
        .filter(|r| matches!(r, Record::Lab(_)))
        .count();
    assert_eq!(lab_records, 1, "exactly one lab record");
    assert_eq!(
        lab.ok,
        lab.failed.is_empty(),
        "ok is exactly 'nothing failed'"
    );
    assert_eq!(
        lab.settings.get("control").and_then(|v| v.as_str()),
        control,
        "the lab says in its settings which control it ran"
    );
    let pcap = dir.path().join(format!("{name}.pcap"));
    let success = out.status.success();
    assert_eq!(success, lab.ok, "exit status follows ok");
    Some((
        Run {
            records,
            lab,
            pcap,
            _dir: dir,
        },
        success,
    ))
}

/// The real lab: every check holds, and the capture replays to what it printed.
fn run_lab_with(name: &str, redis: Option<&str>) -> Option<Run> {
    let (run, _) = run_any(name, redis, None)?;
    assert!(run.lab.ok, "lab {name} says a check failed: {:?}", run.lab);
    check_replay(&run);
    Some(run)
}

fn run_lab(name: &str) -> Option<Run> {
    run_lab_with(name, None)
}

/// The lab against its deliberately wrong variant: `ok: false`, and exactly the checks in
/// `must_fail` failed (or, with `at_least`, at least those).
fn run_control(name: &str, control: &str, redis: Option<&str>, must_fail: &[&str], at_least: bool) {
    let Some((run, success)) = run_any(name, redis, Some(control)) else {
        return;
    };
    assert!(
        !success && !run.lab.ok,
        "control {control} of {name} ended ok"
    );
    if at_least {
        for f in must_fail {
            assert!(
                run.lab.failed.iter().any(|x| x == f),
                "control {control} of {name}: {f} did not fail; failed: {:?}",
                run.lab.failed
            );
        }
    } else {
        assert_eq!(
            run.lab.failed, must_fail,
            "control {control} of {name}: the wrong checks failed"
        );
    }
}

/// A redis-server for one test, or `None` after saying the Redis part is skipped.
fn redis_for(what: &str) -> Option<redis::RedisServer> {
    let r = redis::RedisServer::start();
    if r.is_none() {
        eprintln!("{what}: the Redis part is skipped: redis-server is not installed (apt-get install redis-server; CI installs it)");
    }
    r
}

/// The saved capture exists, is the one the lab names, and `statescope replay` of it gives the
/// same connections as the lab printed.
fn check_replay(run: &Run) {
    assert!(run.pcap.exists(), "no capture at {}", run.pcap.display());
    assert_eq!(
        run.fact("pcap").as_str().map(Path::new),
        Some(run.pcap.as_path())
    );
    let out = Command::cargo_bin("statescope")
        .unwrap()
        .args(["replay", "--format", "jsonl"])
        .arg(&run.pcap)
        .output()
        .unwrap();
    assert!(out.status.success());
    let replayed: Vec<ConnRec> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| match serde_json::from_str::<Record>(l) {
            Ok(Record::Conn(c)) => Some(c),
            _ => None,
        })
        .collect();
    let mine: Vec<ConnRec> = run.conns().into_iter().cloned().collect();
    assert_eq!(
        replayed.len(),
        mine.len(),
        "replay gives the same conn count"
    );
    assert_eq!(replayed, mine, "replay gives the same conn records");
    if let Some(total) = run.lab.facts.get("conns_total") {
        assert_eq!(total.as_u64(), Some(mine.len() as u64));
    }
}

fn u64s(v: &Value) -> Vec<u64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect()
}

#[test]
fn tcp_vs_http() {
    let Some(run) = run_lab("tcp-vs-http") else {
        return;
    };
    let keep = run.conn(run.fact_u64("keepalive_conn"));
    assert_eq!(keep.http_requests, 7);
    assert_eq!(run.fact_u64("keepalive_http_requests"), 7);
    // On that connection, right after the login: /me without the cookie was refused, in the
    // capture too (the 5th request's response).
    assert_eq!(run.fact_u64("me_without_cookie_status"), 401);
    let keep_statuses: Vec<u16> = run
        .http()
        .iter()
        .filter(|h| h.conn == keep.conn && h.dir == statescope::record::Dir::S2c)
        .filter_map(|h| h.status)
        .collect();
    assert_eq!(keep_statuses, [200, 200, 200, 200, 401, 200, 200]);
    // The claimed sequence numbers are the request segments' own.
    let seqs: Vec<u64> = run
        .packets(keep.conn)
        .iter()
        .filter(|p| p.len > 0 && p.dir == statescope::record::Dir::C2s)
        .map(|p| u64::from(p.seq))
        .collect();
    assert_eq!(seqs, u64s(run.fact("keepalive_request_seqs")));
    assert_eq!(seqs[0], 1);
    let fresh = u64s(run.fact("fresh_conns"));
    assert_eq!(fresh.len(), 3);
    for c in fresh {
        assert_eq!(run.conn(c).http_requests, 1);
        assert_ne!(c, keep.conn);
    }
    assert_eq!(
        u64s(run.fact("keepalive_requests_on_connection")),
        [1, 2, 3]
    );
    assert_eq!(run.fact_u64("records_retained"), 0);
    assert_eq!(run.fact("restart_same_answer"), &Value::Bool(true));
    assert_eq!(run.fact_u64("me_with_cookie_after_restart_status"), 401);
    let requests = run.http().iter().filter(|h| h.method.is_some()).count();
    assert_eq!(
        requests, 13,
        "7 kept + 3 fresh + /state + 2 after the restart"
    );
}

#[test]
fn tcp_vs_http_control_server_counting_requests_in_root() {
    run_control(
        "tcp-vs-http",
        "conn-counter-in-root",
        None,
        &["restart_same_answer"],
        false,
    );
}

#[test]
fn handshake_and_close() {
    let Some(run) = run_lab("handshake-and-close") else {
        return;
    };
    let conn = run.conn(run.fact_u64("conn"));
    // The inferred final state equals the kernel's after the close, and the conn record agrees.
    assert_eq!(
        run.fact("after_the_client_closed_kernel_client"),
        "TIME_WAIT"
    );
    assert_eq!(
        run.fact("after_the_client_closed_inferred_client"),
        run.fact("after_the_client_closed_kernel_client")
    );
    assert_eq!(conn.client_state, "TIME_WAIT");
    assert_eq!(
        run.fact("after_the_client_closed_kernel_server"),
        run.fact("after_the_client_closed_inferred_server")
    );
    for m in ["after_connect", "after_the_response"] {
        assert_eq!(run.fact(&format!("{m}_kernel_client")), "ESTABLISHED");
        assert_eq!(run.fact(&format!("{m}_inferred_client")), "ESTABLISHED");
    }
    let flags: Vec<String> = run
        .packets(conn.conn)
        .iter()
        .map(|p| p.flags.join("+"))
        .collect();
    assert_eq!(&flags[..3], ["SYN", "SYN+ACK", "ACK"]);
    assert_eq!(run.fact_u64("packets"), flags.len() as u64);
    let rej = run.conn(run.fact_u64("refused_conn"));
    assert_eq!(rej.conn_state, "REJ");
    assert_eq!(run.fact("refused_conn_state"), "REJ");
    assert_eq!(run.fact("refused_kernel_client"), "CLOSED");
    // The kernel's own transitions beside statescope's: four connections, both ends each
    // (the refused one's server has no kernel socket and must show no SYN_RECEIVED).
    assert!(run.fact_u64("kernel_changes") >= 15);
    assert_eq!(run.fact_u64("endpoints_compared"), 8);
    assert_eq!(run.fact_u64("endpoints_agree"), 8);
    assert!(
        run.fact_u64("changes_inferred") >= 3,
        "passive opens are inferred"
    );
    assert!(run.fact("half_close_fin_wait_2_ms").as_f64().unwrap() >= 150.0);
}

#[test]
fn websocket() {
    let Some(run) = run_lab("websocket") else {
        return;
    };
    let upgrades = run
        .http()
        .iter()
        .filter(|h| h.status == Some(101) && h.upgrade.as_deref() == Some("websocket"))
        .count() as u64;
    assert_eq!(upgrades, 3);
    assert_eq!(run.fact_u64("upgrades"), upgrades);
    assert_eq!(run.fact_u64("ws_frames"), run.ws().len() as u64);
    assert_eq!(u64s(run.fact("counts_first")), [1, 2, 3]);
    // The history the server kept is what was sent on that connection, and only that.
    assert_eq!(
        run.fact("history_first"),
        &serde_json::json!(["hello 1", "hello 2", "hello 3"])
    );
    // The captured text frames up are those messages' sizes (7 bytes each).
    let up_lens: Vec<u64> = run
        .ws()
        .iter()
        .filter(|w| w.opcode == 1 && w.dir == statescope::record::Dir::C2s)
        .map(|w| w.len)
        .collect();
    assert_eq!(&up_lens[..3], [7, 7, 7]);
    assert_eq!(u64s(run.fact("counts_after_restart")), [1]);
    assert_eq!(run.fact_u64("ws_open_before_restart"), 2);
    assert_eq!(run.fact_u64("ws_open_after_restart"), 1);
    // The server's Close frames (opcode 8) on the two connections open at the restart.
    let closes = run
        .ws()
        .iter()
        .filter(|w| w.opcode == 8 && w.dir == statescope::record::Dir::S2c)
        .count();
    assert!(closes >= 2, "server Close frames: {closes}");
    for c in run.fact("ws_conns").as_array().unwrap() {
        let rec = run.conn(c["conn"].as_u64().unwrap());
        assert_eq!(rec.http_requests, 1);
        let up = run
            .ws()
            .iter()
            .filter(|w| w.conn == rec.conn && w.dir == statescope::record::Dir::C2s)
            .count() as u64;
        assert_eq!(c["ws_c2s"].as_u64(), Some(up));
    }
}

#[test]
fn websocket_control_one_count_for_every_connection() {
    run_control(
        "websocket",
        "shared-ws-counter",
        None,
        &["second_connection_counts_from_1"],
        false,
    );
}

#[test]
fn login() {
    let redis = redis_for("login");
    let url = redis.as_ref().map(|r| r.url());
    let Some(run) = run_lab_with("login", url.as_deref()) else {
        return;
    };
    if redis.is_some() {
        assert_eq!(run.fact_u64("redis_session_me_r2"), 200);
        assert_eq!(run.fact_u64("redis_session_me_r1_after_restart"), 200);
        assert_eq!(run.fact_u64("redis_session_me_r1_after_logout_on_r2"), 401);
    }
    assert_eq!(run.fact("token_claims")["user"], "alice");
    assert_eq!(run.fact_u64("tampered_token_status"), 401);
    assert_eq!(run.fact_u64("no_key_file_token_after_restart"), 401);
    assert!(run.fact_u64("token_valid_after_logout_seconds") > 3000);
    assert!(run.lab.answer.contains("--token-key-file"));
    assert_eq!(run.fact_u64("session_me_same_instance"), 200);
    assert_eq!(run.fact_u64("session_me_other_instance"), 401);
    assert_eq!(run.fact_u64("session_me_after_restart"), 401);
    assert_eq!(run.fact_u64("token_me_other_instance"), 200);
    assert_eq!(run.fact_u64("token_me_after_restart"), 200);
    let unauthorized = run.http().iter().filter(|h| h.status == Some(401)).count() as u64;
    assert_eq!(run.fact_u64("unauthorized_responses"), unauthorized);
    let carrying = |what: &str| {
        run.http()
            .iter()
            .filter(|h| h.method.is_some() && h.carries.iter().any(|c| c == what))
            .count() as u64
    };
    assert_eq!(run.fact_u64("requests_with_cookie"), carrying("Cookie"));
    assert_eq!(
        run.fact_u64("requests_with_authorization"),
        carrying("Authorization")
    );
    assert!(run.fact_u64("cookie_header_bytes") < run.fact_u64("authorization_header_bytes"));
    // Every request on its own connection.
    assert!(run.conns().iter().all(|c| c.http_requests == 1));
}

#[test]
fn login_control_token_not_checked() {
    run_control(
        "login",
        "unchecked-token",
        None,
        &[
            "tampered_token_refused",
            "token_without_key_file_dies_on_restart",
        ],
        false,
    );
}

#[test]
fn stateless_vs_stateful() {
    let redis = redis_for("stateless-vs-stateful");
    let url = redis.as_ref().map(|r| r.url());
    let Some(run) = run_lab_with("stateless-vs-stateful", url.as_deref()) else {
        return;
    };
    let n = run.lab.settings["requests"].as_u64().unwrap();
    if redis.is_some() {
        let local = run
            .fact("context_local_memory_median_seconds")
            .as_f64()
            .unwrap();
        let shared = run
            .fact("context_shared_store_median_seconds")
            .as_f64()
            .unwrap();
        assert!(local > 0.0 && local < shared);
    }
    // Keep-alive is not listed as a win of stateful design.
    let answer = &run.lab.answer;
    let stateful = &answer[answer.find("Stateful:").unwrap()..];
    let stateful = &stateful[..stateful.find("Reusing a connection").unwrap()];
    assert!(!stateful.contains("keep-alive") && !stateful.contains("reusing"));
    assert_eq!(run.fact_u64("round_robin_token_ok"), n);
    assert_eq!(run.fact_u64("round_robin_session_ok"), n / 2);
    let keep = run.conn(run.fact_u64("keepalive_conn"));
    assert_eq!(keep.http_requests, n);
    assert_eq!(
        run.fact_u64("keepalive_packets"),
        keep.packets_c2s + keep.packets_s2c
    );
    let fresh = u64s(run.fact("fresh_conns"));
    assert_eq!(fresh.len() as u64, n);
    let fresh_packets: u64 = fresh
        .iter()
        .map(|&c| run.conn(c).packets_c2s + run.conn(c).packets_s2c)
        .sum();
    assert_eq!(run.fact_u64("fresh_packets"), fresh_packets);
    assert!(keep.packets_c2s + keep.packets_s2c < fresh_packets);
    assert!(run.fact_u64("cookie_request_bytes") < run.fact_u64("token_request_bytes"));
    assert_eq!(
        run.fact_u64("sessions_held_after_session_logins")
            - run.fact_u64("sessions_held_after_token_logins"),
        run.lab.settings["users"].as_u64().unwrap()
    );
    assert_eq!(run.fact_u64("logout_session_status"), 401);
    assert_eq!(run.fact_u64("logout_token_status"), 200);
}

#[test]
fn stateless_vs_stateful_control_token_logins_that_keep_state() {
    run_control(
        "stateless-vs-stateful",
        "token-logins-kept",
        None,
        &["token_logins_leave_nothing_held"],
        false,
    );
}

#[test]
fn handshake_and_close_control_observer_missed_the_servers_fin() {
    run_control(
        "handshake-and-close",
        "missed-segment",
        None,
        // The kernel's log is the comparison that cannot miss a moment; the three sampled
        // moments may fall before the server's FIN, so they are not required to differ.
        &["every_endpoint_matches_kernel"],
        true,
    );
}

#[test]
fn an_unknown_control_is_an_error_not_the_real_lab() {
    let out = Command::cargo_bin("statescope")
        .unwrap()
        .args(["lab", "tcp-vs-http", "--out-dir"])
        .arg(tempfile::tempdir().unwrap().path())
        .env("STATESCOPE_LAB_CONTROL", "no-such-control")
        .timeout(std::time::Duration::from_secs(30))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no such negative control"), "{err}");
}

/// `--html FILE` writes the report of the lab's capture (table format, as a person runs it).
#[test]
fn html_report_of_a_lab() {
    if !is_root() {
        eprintln!("skipped: needs root (live capture on lo)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let html = dir.path().join("lab.html");
    let out = Command::cargo_bin("statescope")
        .unwrap()
        .args(["lab", "handshake-and-close", "--out-dir"])
        .arg(dir.path())
        .arg("--html")
        .arg(&html)
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("Checks:   all held"), "{stdout}");
    assert!(stdout.contains("TIME_WAIT"), "{stdout}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<html") && page.contains("statescope lab handshake-and-close"));
    // The lesson opens the page, before the connections; connections carry their step.
    let lesson = page
        .find(r#"<section class="lesson" id="lesson">"#)
        .expect("lesson");
    assert!(lesson < page.find("<h2>Connections</h2>").unwrap());
    assert!(page.contains("What each server remembers"));
    assert!(page.contains("Lab step: handshake, GET /, the client closes first"));
    assert!(page.contains("Lab step: abort (SO_LINGER 0: RST)"));
}

#[test]
fn http2() {
    let Some(run) = run_lab("http2") else {
        return;
    };
    assert_eq!(run.fact_u64("h2_streams"), 100);
    assert_eq!(run.fact_u64("h2_responses_200"), 100);
    assert_eq!(run.fact_u64("h1_requests"), 100);
    assert_eq!(run.fact("answers_identical"), &Value::Bool(true));
    // HPACK: headers sent once, then as indexes; the table is what the connection remembers.
    let first = run.fact_u64("hpack_first_block_bytes");
    let later = run.fact_u64("hpack_later_block_max_bytes");
    assert!(
        later > 0 && later * 4 < first,
        "{first} then at most {later}"
    );
    assert!(run.fact_u64("h1_request_bytes") > 10 * run.fact_u64("h2_header_bytes"));
    assert!(run.fact_u64("client_table_bytes") > 0);
    // The capture's own http records: 100 HTTP/2 requests on one connection, odd stream ids.
    let h2: Vec<_> = run
        .http()
        .into_iter()
        .filter(|h| h.version == "2" && h.method.is_some())
        .collect();
    // 100 multiplexed, 1 on a fresh connection, 1 on the kept one before the restart, the POST
    // in flight across it; none after.
    assert_eq!(h2.len(), 103);
    assert_eq!(run.fact("refused_after_restart"), &Value::Bool(true));
    // The stream in flight was answered whole after the server's GOAWAY.
    assert_eq!(run.fact("in_flight_answered_whole"), &Value::Bool(true));
    assert!(run.fact_u64("in_flight_goaway_frame") <= run.fact_u64("in_flight_response_frame"));
}

#[test]
fn http2_control_server_counting_requests_in_root() {
    run_control(
        "http2",
        "conn-counter-in-root",
        None,
        &["every_stream_answered_alone"],
        false,
    );
}

/// The observer missed the segment with the first request's header block: every later block
/// refers to the HPACK entries it added, so the checks that rest on the table fail (the
/// requests are reported undecodable, never guessed).
#[test]
fn http2_control_observer_missed_the_first_header_block() {
    run_control(
        "http2",
        "missed-segment",
        None,
        &[
            "one_h2_connection_100_streams",
            "streams_end_closed_at_both_ends",
            "hpack_later_blocks_smaller_than_first",
            "client_table_remembers_headers",
        ],
        false,
    );
}

/// A server whose shutdown closes every connection at once: the POST in flight at the restart
/// is never answered.
#[test]
fn http2_control_server_without_shutdown_grace() {
    run_control(
        "http2",
        "no-shutdown-grace",
        None,
        &["stream_in_flight_finishes_after_goaway"],
        false,
    );
}
