//! TLS decrypted with a key log (`--tls-keylog`), checked against tshark 4.0 decrypting the same
//! captures with the same key log (`tests/fixtures/tls/decrypt`, made by
//! `tests/fixtures/tls/make-decrypt.sh`: curl with SSLKEYLOGFILE against nginx on lo).
//!
//! * Every capture: the HTTP requests and responses (and, in `dec-wss`, the WebSocket frames
//!   after an upgrade; in `dec-keyupdate`, requests after TLS 1.3 KeyUpdates) statescope reads
//!   inside TLS equal tshark's, stream by stream, with the frame that completed each message and each response's
//!   request frame (the comparison `tests/replay.rs` makes for cleartext, frames added); every
//!   `http` record so made says `tls: true`; every protected record is decrypted, except in the
//!   connection whose secrets the key log lacks, counted `no_key`.
//! * Control: the same key log with one bit of one secret flipped. The records that secret
//!   protects fail authentication (counted `auth_failed`), and the comparison with tshark fails.
//! * The older captures of `tests/fixtures/tls` (openssl s_server) decrypt too, except TLS
//!   1.0/1.1's CBC suites, counted `unsupported_cipher`; the request sent as 0-RTT early data
//!   equals tshark's (`tls13-0rtt.http.tsv`), and without the early secret it is counted
//!   `early_data` (control).
//! * A key log still being written (`live`): secrets that appear only after a connection's first
//!   protected records still decrypt the rest (sequence numbers counted meanwhile; TLS 1.3 takes
//!   up the application key when the Finished was missed). Control: the same with a key log
//!   read once leaves that connection undecrypted and the comparison fails.
//! * The command line: a missing key log is one line naming it, exit 1.

#[path = "support/collect.rs"]
mod collect;
#[path = "support/http_oracle.rs"]
mod http_oracle;
#[path = "support/tsv.rs"]
mod tsv;

use collect::Collect;

use statescope::capture::pcap_file;
use statescope::config::OutputConfig;
use statescope::engine::{run_source, Engine, EngineOptions};
use statescope::record::{Record, TlsRec};
use statescope::tcp::PacketSel;
use statescope::tls::keylog::{KeyLog, KeyStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn tls_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls")
}

fn decrypt_captures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(tls_dir().join("decrypt"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    v.sort();
    assert_eq!(v.len(), 6, "{v:?}");
    v
}

/// Every record of `pcap` replayed with the secrets of `keylog` (text).
fn records_with(pcap: &Path, keylog: &str) -> Vec<Record> {
    let mut log = KeyLog::default();
    log.add_text(keylog);
    assert_eq!(log.bad_lines, 0, "{:?}", log.first_bad);
    let mut opts = EngineOptions::from_config(&OutputConfig::default(), PacketSel::All);
    opts.tls_keys = Some(Arc::new(KeyStore::from_log(log)));
    let mut engine = Engine::new(opts);
    let mut src = pcap_file::open(pcap).unwrap();
    let mut sink = Collect(Vec::new());
    run_source(src.as_mut(), &mut engine, &mut sink).unwrap();
    sink.0
}

fn keylog_of(pcap: &Path) -> String {
    std::fs::read_to_string(pcap.with_extension("keylog")).unwrap()
}

fn tls_records(recs: &[Record]) -> Vec<&TlsRec> {
    recs.iter()
        .filter_map(|r| match r {
            Record::Tls(t) => Some(t),
            _ => None,
        })
        .collect()
}

/// The differences with tshark's decrypted HTTP (these captures begin before every
/// connection's SYN, so connection N is tcp.stream N).
fn against_tshark(pcap: &Path, recs: &[Record]) -> Vec<String> {
    let rows = http_oracle::tsv(&pcap.with_extension("http.tsv")).unwrap();
    assert!(rows.len() >= 3, "{}: a thin oracle", pcap.display());
    http_oracle::compare_http(&rows, recs, &|c| Some(c), true)
}

#[test]
fn decrypted_http_agrees_with_tshark_on_every_capture() {
    let mut total = 0;
    for pcap in decrypt_captures() {
        let name = pcap.file_stem().unwrap().to_str().unwrap().to_string();
        let recs = records_with(&pcap, &keylog_of(&pcap));
        let bad = against_tshark(&pcap, &recs);
        assert!(bad.is_empty(), "{name}:\n{}", bad.join("\n"));
        let http: Vec<_> = recs
            .iter()
            .filter_map(|r| match r {
                Record::Http(h) => Some(&**h),
                _ => None,
            })
            .collect();
        assert!(
            http.iter().all(|h| h.tls),
            "{name}: an http record without tls"
        );
        total += http.len();
        let tls = tls_records(&recs);
        let conns = match name.as_str() {
            "dec-nokey" => 2,
            "dec-wss" | "dec-keyupdate" => 1,
            _ => 3,
        };
        assert_eq!(tls.len(), conns, "{name}");
        for t in &tls {
            let d = t.decrypted.expect("decrypted counted with a key log");
            let missing = name == "dec-nokey" && t.conn == 1;
            if missing {
                // Every protected record of it, each way, is counted: no key for its random.
                assert_eq!(d, [0, 0], "{name} conn {}", t.conn);
                let n = t.not_decrypted.get("no_key").copied().unwrap_or(0);
                assert!(n >= t.app_records[0] + t.app_records[1], "{name}: {t:?}");
                assert_eq!(t.not_decrypted.len(), 1, "{name}: {t:?}");
                assert!(
                    !http.iter().any(|h| h.conn == 1),
                    "{name}: HTTP without a key"
                );
                assert_eq!(t.alerts, ["encrypted"], "{name}: {t:?}");
            } else {
                assert!(t.not_decrypted.is_empty(), "{name} conn {}: {t:?}", t.conn);
                // curl's close_notify, named once decrypted (in TLS 1.3 seen only so);
                // s_client and s_server both send one.
                let closes = if name == "dec-keyupdate" { 2 } else { 1 };
                assert_eq!(
                    t.alerts,
                    vec!["warning close_notify"; closes],
                    "{name}: {t:?}"
                );
                // What TLS 1.3 encrypts, read from the decrypted handshake (the control without
                // a key log is in `older_captures_...`).
                assert_eq!(
                    t.cert_subject.as_deref(),
                    Some("CN=localhost, O=statescope fixtures"),
                    "{name}: {t:?}"
                );
                assert_eq!(t.alpn.as_deref(), Some("http/1.1"), "{name}: {t:?}");
                assert!(
                    d[0] >= t.app_records[0] && d[1] >= t.app_records[1],
                    "{t:?}"
                );
                // Four requests and their responses on each connection (keep-alive); on the
                // WebSocket one a page, the upgrade, and eight frames (two messages, their
                // answers, ping, pong, both closes).
                let n = http.iter().filter(|h| h.conn == t.conn).count();
                let ws = recs.iter().filter(|r| matches!(r, Record::Ws(_))).count();
                if name == "dec-wss" {
                    assert_eq!((n, ws), (4, 8), "{name}");
                } else if name == "dec-keyupdate" {
                    // Three requests, the second after a KeyUpdate each way, the third after
                    // another from the client (s_server only reads).
                    assert_eq!((n, ws), (3, 0), "{name}");
                } else {
                    assert_eq!((n, ws), (8, 0), "{name} conn {}", t.conn);
                }
            }
        }
    }
    assert_eq!(
        total,
        3 * 8 * 3 + 8 + 4 + 3,
        "HTTP messages over all captures"
    );
}

/// Flip one bit of the `nth` secret in a key log's text (the last hex digit of that line).
fn corrupt(keylog: &str, label: &str, nth: usize) -> String {
    let mut seen = 0;
    keylog
        .lines()
        .map(|l| {
            if l.starts_with(label) {
                seen += 1;
                if seen == nth + 1 {
                    let (head, last) = l.split_at(l.len() - 1);
                    let d = u8::from_str_radix(last, 16).unwrap() ^ 1;
                    return format!("{head}{d:x}\n");
                }
            }
            format!("{l}\n")
        })
        .collect()
}

#[test]
fn control_a_flipped_secret_fails_authentication_and_the_comparison() {
    let d = tls_dir().join("decrypt");
    for (name, label) in [
        ("dec-tls12-ecdsa", "CLIENT_RANDOM "),
        ("dec-tls12-rsa", "CLIENT_RANDOM "),
        ("dec-tls13", "SERVER_TRAFFIC_SECRET_0 "),
        ("dec-tls13", "CLIENT_TRAFFIC_SECRET_0 "),
    ] {
        let pcap = d.join(format!("{name}.pcap"));
        let bad_log = corrupt(&keylog_of(&pcap), label, 1);
        assert_ne!(bad_log, keylog_of(&pcap));
        let recs = records_with(&pcap, &bad_log);
        let tls = tls_records(&recs);
        let t = tls.iter().find(|t| t.conn == 1).unwrap();
        let failed = t.not_decrypted.get("auth_failed").copied().unwrap_or(0);
        assert!(failed > 0, "{name} {label}: {t:?}");
        // The other connections' secrets are intact.
        for other in tls.iter().filter(|t| t.conn != 1) {
            assert!(other.not_decrypted.is_empty(), "{name}: {other:?}");
        }
        let diff = against_tshark(&pcap, &recs);
        assert!(
            diff.iter().any(|l| l.starts_with("stream 1 ")),
            "{name} {label}: the comparison passed with a wrong secret"
        );
    }
}

#[test]
fn older_captures_decrypt_what_can_be_and_count_the_rest() {
    for (name, reason) in [
        ("tls12-curl", None),
        ("tls13-curl", None),
        ("tls12-resume-id", None),
        ("tls12-resume-ticket", None),
        ("tls13-resume", None),
        ("tls13-0rtt", None),
        ("tls10-11", Some("unsupported_cipher")),
    ] {
        let pcap = tls_dir().join(format!("{name}.pcap"));
        let recs = records_with(&pcap, &keylog_of(&pcap));
        let mut reasons = std::collections::BTreeSet::new();
        for t in tls_records(&recs) {
            reasons.extend(t.not_decrypted.keys().cloned());
        }
        let want: std::collections::BTreeSet<String> =
            reason.into_iter().map(String::from).collect();
        assert_eq!(reasons, want, "{name}");
        // s_server -www answers each GET: a request and a response per decrypted connection.
        let reqs = recs
            .iter()
            .filter(|r| matches!(r, Record::Http(h) if h.method.is_some() && h.tls))
            .count();
        match name {
            "tls10-11" => assert_eq!(reqs, 0, "{name}"),
            // The request went as 0-RTT early data, which s_server only reads.
            "tls13-0rtt" => {
                assert_eq!(reqs, 1, "{name}");
                let rows = http_oracle::tsv(&pcap.with_extension("http.tsv")).unwrap();
                assert_eq!(rows.len(), 1);
                let bad = http_oracle::compare_http(&rows, &recs, &|c| Some(c), true);
                assert!(bad.is_empty(), "{name}:\n{}", bad.join("\n"));
                // Control: without its early secret the request is not read, and counted.
                let log: String = keylog_of(&pcap)
                    .lines()
                    .filter(|l| !l.starts_with("CLIENT_EARLY_TRAFFIC_SECRET"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                let recs = records_with(&pcap, &log);
                assert!(!http_oracle::compare_http(&rows, &recs, &|c| Some(c), true).is_empty());
                let t = tls_records(&recs)
                    .into_iter()
                    .find(|t| t.conn == 1)
                    .unwrap();
                assert_eq!(t.not_decrypted.get("early_data"), Some(&2), "{t:?}");
                // A flipped early secret: the 0-RTT records fail authentication (both), and the
                // client's handshake and application records after them still open.
                let recs = records_with(&pcap, &corrupt(&keylog_of(&pcap), "CLIENT_EARLY", 0));
                let t = tls_records(&recs)
                    .into_iter()
                    .find(|t| t.conn == 1)
                    .unwrap();
                assert_eq!(t.not_decrypted.get("auth_failed"), Some(&2), "{t:?}");
                assert_eq!(t.not_decrypted.len(), 1, "{t:?}");
                assert_eq!(t.decrypted, Some([2, 4]), "{t:?}");
            }
            _ => assert!(reqs >= 2, "{name}: {reqs} requests"),
        }
    }
    // Without a key log nothing is decrypted and no new field appears.
    let pcap = tls_dir().join("tls13-curl.pcap");
    let recs = statescope::lab::common::replay_records(&pcap).unwrap();
    for t in tls_records(&recs) {
        assert!(t.decrypted.is_none() && t.not_decrypted.is_empty(), "{t:?}");
        assert!(
            t.cert_subject.is_none(),
            "TLS 1.3 without keys shows no certificate: {t:?}"
        );
    }
    assert!(!recs.iter().any(|r| matches!(r, Record::Http(_))));
}

#[test]
fn the_command_decrypts_and_refuses_a_missing_key_log() {
    let pcap = tls_dir().join("decrypt/dec-tls13.pcap");
    let out = assert_cmd::Command::cargo_bin("statescope")
        .unwrap()
        .args(["replay", "-q", "--format", "jsonl", "--tls-keylog"])
        .arg(pcap.with_extension("keylog"))
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let tls_http = text
        .lines()
        .filter(|l| l.starts_with("{\"type\":\"http\"") && l.ends_with(",\"tls\":true}"))
        .count();
    assert_eq!(tls_http, 24, "{text}");

    // A line the key log cannot read is skipped and counted, once, on standard error.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("keys.log");
    std::fs::write(&log, format!("junk line\n{}", keylog_of(&pcap))).unwrap();
    let out = assert_cmd::Command::cargo_bin("statescope")
        .unwrap()
        .args(["replay", "--format", "jsonl", "--tls-keylog"])
        .arg(&log)
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    let note: Vec<&str> = err.lines().filter(|l| l.contains("--tls-keylog")).collect();
    assert_eq!(note.len(), 1, "{err}");
    assert!(
        note[0].contains("1 line not understood") && note[0].contains("line 1"),
        "{err}"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches(",\"tls\":true}").count(), 24);

    // The table's TLS hint says which connection was decrypted and which had no key.
    let nokey = tls_dir().join("decrypt/dec-nokey.pcap");
    let out = assert_cmd::Command::cargo_bin("statescope")
        .unwrap()
        .args(["replay", "-q", "--color", "never", "--tls-keylog"])
        .arg(nokey.with_extension("keylog"))
        .arg(&nokey)
        .output()
        .unwrap();
    let table = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = table.lines().skip(1).take(2).collect();
    assert!(
        rows[0].ends_with("TLSv1.3 sni=localhost http/1.1 decrypted"),
        "{table}"
    );
    assert!(rows[0].contains(" 4/4 "), "{table}");
    assert!(
        rows[1].contains(" 0/0 ") && rows[1].contains(" no_key "),
        "{table}"
    );

    let out = assert_cmd::Command::cargo_bin("statescope")
        .unwrap()
        .args(["replay", "--tls-keylog", "/nonexistent/keys.log"])
        .arg(&pcap)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/keys.log"), "{err}");
}

/// Replay `pcap` frame by frame with a key log file that is empty until frame `at`, when the
/// capture's whole key log is written to it (a client writing as it goes). `growing`: the
/// store reads the file again for a random it lacks.
fn records_with_late_keys(pcap: &Path, at: u64, growing: bool) -> Vec<Record> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.log");
    std::fs::write(&path, "# SSL/TLS secrets log file\n").unwrap();
    let mut store = KeyStore::open(&path).unwrap();
    if growing {
        store = store.growing();
    }
    let mut opts = EngineOptions::from_config(&OutputConfig::default(), PacketSel::All);
    opts.tls_keys = Some(Arc::new(store));
    let mut engine = Engine::new(opts);
    let mut src = pcap_file::open(pcap).unwrap();
    let mut sink = Collect(Vec::new());
    while let Some(frame) = src.next_frame().unwrap() {
        if frame.number == at {
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            std::io::Write::write_all(&mut f, keylog_of(pcap).as_bytes()).unwrap();
        }
        engine.on_frame(&frame, &mut sink).unwrap();
    }
    engine.finish(&mut sink).unwrap();
    sink.0
}

#[test]
fn keys_written_late_still_decrypt_the_rest() {
    let d = tls_dir().join("decrypt");
    // TLS 1.3: the server's whole encrypted flight (frame 6) goes by before the keys; TLS 1.2:
    // both Finished messages do (frames 8 and 9 of connection 0).
    for (name, at) in [("dec-tls13", 7), ("dec-tls12-ecdsa", 10)] {
        let pcap = d.join(format!("{name}.pcap"));
        let recs = records_with_late_keys(&pcap, at, true);
        let bad = against_tshark(&pcap, &recs);
        assert!(bad.is_empty(), "{name}:\n{}", bad.join("\n"));
        let t = tls_records(&recs)
            .into_iter()
            .find(|t| t.conn == 0)
            .unwrap();
        assert!(
            t.not_decrypted.get("no_key").is_some_and(|&n| n >= 1),
            "{t:?}"
        );
        assert!(!t.not_decrypted.contains_key("auth_failed"), "{t:?}");
        // Control: read once, the key log never has this connection's secrets.
        let recs = records_with_late_keys(&pcap, at, false);
        let bad = against_tshark(&pcap, &recs);
        assert!(
            bad.iter().any(|l| l.starts_with("stream 0 ")),
            "{name}: decrypted without its keys"
        );
    }
}
