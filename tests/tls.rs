//! TLS handshakes from real captures (`tests/fixtures/tls`, made by `make.sh` there with openssl
//! s_server/s_client and curl on lo) through the whole engine, checked against tshark 4.0's
//! dissection of the same captures (`NAME.tls.tsv`) and the clients' own word on how each
//! session was set up (`NAME.conns.tsv`, from `oracle.py`).
//!
//! * Every connection's `tls` record: version, cipher suite, SNI, ALPN, certificate subject,
//!   setup — all equal to the oracle's row, and one record per oracle row.
//! * Every frame's `tls_msg` records: the handshake types in order, the change-cipher-specs,
//!   alerts and encrypted handshake messages counted — equal to tshark's, frame by frame.
//! * Controls: the same comparisons fail on an oracle with one value changed.
//! * Detection: no capture of cleartext HTTP yields a TLS record, no TLS capture an HTTP one.

use statescope::record::{Record, TlsRec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[path = "support/tsv.rs"]
mod tsv;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls")
}

fn captures(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    v.sort();
    v
}

/// Every record of a capture, as `statescope replay` makes them.
fn records(path: &Path) -> Vec<Record> {
    statescope::lab::common::replay_records(path).unwrap()
}

/// A TSV oracle file as rows of (column -> value).
fn tsv(path: &Path) -> Vec<BTreeMap<String, String>> {
    tsv::read(path).unwrap_or_else(|| panic!("cannot read {}", path.display()))
}

fn with(path: &Path, ext: &str) -> PathBuf {
    let stem = path.file_stem().unwrap().to_str().unwrap();
    path.with_file_name(format!("{stem}.{ext}"))
}

/// A connection's fields as the oracle's columns: stream, version, cipher, sni, alpn,
/// subject, setup (`failed` when the handshake never reached a ServerHello).
fn ours_conn(t: &TlsRec) -> Vec<String> {
    vec![
        t.conn.to_string(),
        t.version.as_deref().unwrap_or("").to_string(),
        t.cipher_id.map(|c| c.to_string()).unwrap_or_default(),
        t.sni.clone().unwrap_or_default(),
        t.alpn.clone().unwrap_or_default(),
        t.cert_subject.clone().unwrap_or_default(),
        t.setup.as_deref().unwrap_or("failed").to_string(),
    ]
}

const CONN_COLS: [&str; 7] = [
    "stream", "version", "cipher", "sni", "alpn", "subject", "setup",
];

/// Differences between our `tls` records and the oracle's rows.
fn compare_conns(recs: &[Record], oracle: &[BTreeMap<String, String>]) -> Vec<String> {
    let ours: Vec<Vec<String>> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Tls(t) => Some(ours_conn(t)),
            _ => None,
        })
        .collect();
    let theirs: Vec<Vec<String>> = oracle
        .iter()
        .map(|row| CONN_COLS.iter().map(|c| row[*c].clone()).collect())
        .collect();
    let mut wrong = Vec::new();
    if ours.len() != theirs.len() {
        wrong.push(format!(
            "{} tls records, {} oracle rows",
            ours.len(),
            theirs.len()
        ));
    }
    for (o, t) in ours.iter().zip(&theirs) {
        if o != t {
            wrong.push(format!("ours {o:?}\noracle {t:?}"));
        }
    }
    wrong
}

/// What one frame carries: handshake types in order, then counts of change-cipher-spec,
/// alert and encrypted-handshake records.
#[derive(Debug, Default, PartialEq, Clone)]
struct FrameMsgs {
    handshakes: Vec<u8>,
    ccs: usize,
    alerts: usize,
    encrypted_handshakes: usize,
}

fn ours_frames(recs: &[Record]) -> BTreeMap<u64, FrameMsgs> {
    let mut m: BTreeMap<u64, FrameMsgs> = BTreeMap::new();
    for r in recs {
        if let Record::TlsMsg(t) = r {
            let f = m.entry(t.frame).or_default();
            match (t.content_type, t.handshake_type) {
                (22, Some(h)) => f.handshakes.push(h),
                (22, None) => f.encrypted_handshakes += 1,
                (20, _) => f.ccs += 1,
                (21, _) => f.alerts += 1,
                other => panic!("unexpected tls_msg {other:?}"),
            }
        }
    }
    m
}

fn oracle_frames(rows: &[BTreeMap<String, String>]) -> BTreeMap<u64, FrameMsgs> {
    let mut m = BTreeMap::new();
    for row in rows {
        let list = |c: &str| -> Vec<String> {
            row[c]
                .split(',')
                .filter(|v| !v.is_empty())
                .map(String::from)
                .collect()
        };
        let types = list("tls.record.content_type");
        let f = FrameMsgs {
            handshakes: list("tls.handshake.type")
                .iter()
                .map(|t| t.parse().unwrap())
                .collect(),
            ccs: types.iter().filter(|t| *t == "20").count(),
            alerts: types.iter().filter(|t| *t == "21").count(),
            encrypted_handshakes: row["_ws.col.Info"]
                .matches("Encrypted Handshake Message")
                .count(),
        };
        if f != FrameMsgs::default() {
            m.insert(row["frame.number"].parse().unwrap(), f);
        }
    }
    m
}

fn compare_frames(
    ours: &BTreeMap<u64, FrameMsgs>,
    theirs: &BTreeMap<u64, FrameMsgs>,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for f in ours.keys().chain(theirs.keys()) {
        if ours.get(f) != theirs.get(f)
            && !wrong
                .iter()
                .any(|w: &String| w.starts_with(&format!("frame {f}:")))
        {
            wrong.push(format!(
                "frame {f}: ours {:?}, tshark {:?}",
                ours.get(f),
                theirs.get(f)
            ));
        }
    }
    wrong
}

#[test]
fn tls_records_agree_with_the_oracle_on_every_fixture() {
    let caps = captures(&dir());
    assert!(caps.len() >= 8, "fixtures missing: {caps:?}");
    let (mut conns, mut frames) = (0, 0);
    let mut setups = std::collections::BTreeSet::new();
    for cap in &caps {
        let recs = records(cap);
        let oracle = tsv(&with(cap, "conns.tsv"));
        let wrong = compare_conns(&recs, &oracle);
        assert!(wrong.is_empty(), "{}:\n{}", cap.display(), wrong.join("\n"));
        conns += oracle.len();
        setups.extend(oracle.iter().map(|r| r["setup"].clone()));

        let theirs = oracle_frames(&tsv(&with(cap, "tls.tsv")));
        let wrong = compare_frames(&ours_frames(&recs), &theirs);
        assert!(wrong.is_empty(), "{}:\n{}", cap.display(), wrong.join("\n"));
        frames += theirs.len();

        // Handshakes are not HTTP.
        assert!(
            !recs.iter().any(|r| matches!(r, Record::Http(_))),
            "{}: http records from TLS",
            cap.display()
        );
    }
    // Every kind of setup the issue names is exercised, and a failed handshake.
    let want = [
        "0rtt",
        "failed",
        "full",
        "resumed_id",
        "resumed_psk",
        "resumed_ticket",
    ];
    assert_eq!(setups.into_iter().collect::<Vec<_>>(), want);
    eprintln!("{conns} connections and {frames} frames with TLS messages agree with the oracle");
    assert!(conns >= 16 && frames >= 55, "{conns} {frames}");
}

/// The controls: each comparison finds a single value changed in its oracle.
#[test]
fn a_wrong_oracle_row_fails_the_comparison() {
    let cap = dir().join("tls12-resume-id.pcap");
    let recs = records(&cap);
    let oracle = tsv(&with(&cap, "conns.tsv"));
    assert!(compare_conns(&recs, &oracle).is_empty());
    for (col, wrong_value) in [
        ("setup", "resumed_ticket"),
        ("cipher", "4865"),
        ("sni", "example.com"),
        ("version", "TLSv1.3"),
        ("alpn", "h2"),
        ("subject", "CN=someone else"),
    ] {
        let mut bad = oracle.clone();
        let row = if col == "subject" { 0 } else { 1 };
        bad[row].insert(col.to_string(), wrong_value.to_string());
        assert_eq!(compare_conns(&recs, &bad).len(), 1, "{col}");
    }
    let mut short = oracle.clone();
    short.pop();
    assert!(!compare_conns(&recs, &short).is_empty());

    let theirs = oracle_frames(&tsv(&with(&cap, "tls.tsv")));
    let ours = ours_frames(&recs);
    assert!(compare_frames(&ours, &theirs).is_empty());
    // One handshake message dropped, one alert added, one frame moved.
    let mut bad = theirs.clone();
    bad.values_mut().next().unwrap().handshakes.clear();
    assert_eq!(compare_frames(&ours, &bad).len(), 1);
    let mut bad = theirs.clone();
    bad.values_mut().last().unwrap().alerts += 1;
    assert_eq!(compare_frames(&ours, &bad).len(), 1);
    let mut bad = theirs.clone();
    let (f, m) = bad.pop_first().unwrap();
    bad.insert(f + 1, m);
    assert_eq!(compare_frames(&ours, &bad).len(), 2);
}

/// Detection is by content, and cleartext never looks like TLS: no capture of the other
/// fixtures (HTTP, WebSocket, bare TCP) yields a TLS record.
#[test]
fn cleartext_captures_give_no_tls_records() {
    let all = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let caps = captures(&all);
    assert!(caps.len() > 20);
    let mut http = 0;
    for cap in caps {
        let recs = records(&cap);
        http += recs.iter().filter(|r| matches!(r, Record::Http(_))).count();
        let tls: Vec<_> = recs
            .iter()
            .filter(|r| matches!(r, Record::Tls(_) | Record::TlsMsg(_)))
            .collect();
        assert!(tls.is_empty(), "{}: {tls:?}", cap.display());
    }
    assert!(http > 50, "{http}");
}

/// The summary table's row names the TLS version, SNI, ALPN and resumption.
#[test]
fn the_table_row_carries_a_tls_hint() {
    let exe = env!("CARGO_BIN_EXE_statescope");
    let out = std::process::Command::new(exe)
        .arg("replay")
        .arg(dir().join("tls12-resume-ticket.pcap"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<&str> = text.lines().filter(|l| l.contains("127.0.0.1")).collect();
    assert!(
        rows[0].ends_with("0/0  TLSv1.2 sni=localhost http/1.1"),
        "{text}"
    );
    assert!(
        rows[1].ends_with("0/0  TLSv1.2 sni=localhost http/1.1 resumed_ticket"),
        "{text}"
    );
    assert!(text.contains("TLS s2c new_session_ticket"), "{text}");
}
