//! The loopback labs end to end, through the binary: `statescope lab NAME --format jsonl
//! --out-dir DIR`, as root (live capture on `lo`); without root each test says it is skipped.
//!
//! Each test checks the final `lab` record (ok, and the facts it claims) against the other
//! records of the same output, and that the saved capture replays to the same connections.

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
                Record::Http(h) => Some(h),
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

/// Run a lab; `None` (after saying so) when not root.
fn run_lab(name: &str) -> Option<Run> {
    if !is_root() {
        eprintln!("skipped: needs root (live capture on lo)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("statescope")
        .unwrap()
        .args(["lab", name, "--format", "jsonl", "--out-dir"])
        .arg(dir.path())
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "lab {name} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        stdout
    );
    let records: Vec<Record> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad record {l}: {e}")))
        .collect();
    let Some(Record::Lab(lab)) = records.last().cloned() else {
        panic!("lab {name}: the last record is not the lab record");
    };
    assert_eq!(lab.name, name);
    assert!(lab.ok, "lab {name} says a check failed: {lab:?}");
    assert!(!lab.question.is_empty() && !lab.answer.is_empty());
    let lab_records = records
        .iter()
        .filter(|r| matches!(r, Record::Lab(_)))
        .count();
    assert_eq!(lab_records, 1, "exactly one lab record");
    let pcap = dir.path().join(format!("{name}.pcap"));
    let run = Run {
        records,
        lab,
        pcap,
        _dir: dir,
    };
    check_replay(&run);
    Some(run)
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
    assert_eq!(keep.http_requests, 3);
    assert_eq!(run.fact_u64("keepalive_http_requests"), 3);
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
    let requests = run.http().iter().filter(|h| h.method.is_some()).count();
    assert_eq!(
        requests, 9,
        "3 kept + 3 fresh + /state + 2 around the restart"
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
fn login() {
    let Some(run) = run_lab("login") else {
        return;
    };
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
fn stateless_vs_stateful() {
    let Some(run) = run_lab("stateless-vs-stateful") else {
        return;
    };
    let n = run.fact_u64("requests");
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
        run.fact_u64("users")
    );
    assert_eq!(run.fact_u64("logout_session_status"), 401);
    assert_eq!(run.fact_u64("logout_token_status"), 200);
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
}
