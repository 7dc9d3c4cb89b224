//! Narrowing what `replay` reads and prints, end to end through the binary on shipped captures:
//! several files merged by time (against mergecap's merge of the same files), gzip input,
//! `-c N`, `--port`/`--host`/`--filter`, and `--where`. Each has a control that fails on the
//! wrong variant.

use assert_cmd::Command;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `replay ARGS --format jsonl -q`: exit 0, the records as text.
fn jsonl(args: &[&str]) -> String {
    let out = Command::cargo_bin("statescope")
        .unwrap()
        .arg("replay")
        .args(args)
        .args(["--format", "jsonl", "-q"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn records(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn of_type<'a>(recs: &'a [Value], ty: &str) -> Vec<&'a Value> {
    recs.iter().filter(|r| r["type"] == ty).collect()
}

/// A tool from Wireshark (mergecap, editcap), or `None` with a note when it is not installed.
fn tool(name: &str) -> Option<PathBuf> {
    let out = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "SKIP: {name} not installed (Debian package wireshark-common; .ci/run installs it)"
        );
        return None;
    }
    Some(PathBuf::from(String::from_utf8(out.stdout).ok()?.trim()))
}

fn run(tool: &Path, args: &[&str]) {
    let st = std::process::Command::new(tool)
        .args(args)
        .status()
        .unwrap();
    assert!(st.success(), "{} {args:?}", tool.display());
}

/// Two captures whose packets interleave in time give, merged by `replay a b`, exactly the
/// records of mergecap's merged file; appended in file order instead (`mergecap -a`), they
/// would not.
#[test]
fn several_files_merge_as_mergecap_does() {
    let (Some(mergecap), Some(editcap)) = (tool("mergecap"), tool("editcap")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = fixture("half-close.pcap"); // 00:41:57.22 to 57.48
    let shifted = dir.path().join("abort-shifted.pcap");
    // abort-rst.pcap (00:42:01.30 to 01.34) moved to 00:41:57.32, inside half-close's span.
    run(
        &editcap,
        &["-t", "-3.98", s(&fixture("abort-rst.pcap")), s(&shifted)],
    );
    let merged = dir.path().join("merged.pcap");
    run(
        &mergecap,
        &["-F", "pcap", "-w", s(&merged), s(&a), s(&shifted)],
    );
    let appended = dir.path().join("appended.pcap");
    run(
        &mergecap,
        &["-a", "-F", "pcap", "-w", s(&appended), s(&a), s(&shifted)],
    );

    let ours = jsonl(&[s(&a), s(&shifted)]);
    let theirs = jsonl(&[s(&merged)]);
    assert_eq!(ours, theirs, "replay a b differs from mergecap's merge");

    // The merge really interleaves: the two files' connections overlap in frame numbers.
    let recs = records(&ours);
    let conns = of_type(&recs, "conn");
    assert!(conns.len() >= 2, "{} connections", conns.len());
    let frames_of = |conn: u64| -> Vec<u64> {
        of_type(&recs, "packet")
            .iter()
            .filter(|p| p["conn"] == conn)
            .map(|p| p["frame"].as_u64().unwrap())
            .collect()
    };
    let first = frames_of(0);
    let other = frames_of(1);
    assert!(
        other
            .iter()
            .any(|f| f > &first[0] && f < first.last().unwrap()),
        "no interleaving: {first:?} / {other:?}"
    );
    // Negative control: file order is not time order.
    assert_ne!(
        ours,
        jsonl(&[s(&appended)]),
        "appending would have passed too"
    );
    // And the files in the other order on the command line merge the same.
    assert_eq!(jsonl(&[s(&shifted), s(&a)]), ours);
}

/// A gzip-compressed capture is recognised by its bytes, whatever its name, and gives the same
/// records as the plain file; a damaged gzip stream is an error after the records before it.
#[test]
fn gzip_input_by_magic_bytes() {
    use std::io::Write;
    let plain = fixture("http-keepalive.pcap");
    let bytes = std::fs::read(&plain).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gz = dir.path().join("capture.pcap"); // no .gz in the name
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&bytes).unwrap();
    let packed = enc.finish().unwrap();
    std::fs::write(&gz, &packed).unwrap();
    let want = jsonl(&[s(&plain)]);
    assert!(want.lines().count() > 50);
    assert_eq!(jsonl(&[s(&gz)]), want);
    // Standard input too.
    let out = Command::cargo_bin("statescope")
        .unwrap()
        .args(["replay", "-", "--format", "jsonl", "-q"])
        .write_stdin(packed.clone())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), want);
    // Control: the same bytes cut short decompress part of the way, print what came before,
    // and fail with a message naming the file.
    let cut = dir.path().join("cut.pcap.gz");
    std::fs::write(&cut, &packed[..packed.len() / 2]).unwrap();
    let out = Command::cargo_bin("statescope")
        .unwrap()
        .args(["replay", s(&cut), "--format", "jsonl", "-q"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cut.pcap.gz"), "{err}");
    let got = String::from_utf8(out.stdout).unwrap();
    assert!(!got.is_empty() && want.starts_with(&got[..got.rfind("\"packet\"").unwrap()]));
}

/// `-c N` stops after N frames: the packet records are those of the first N frames.
#[test]
fn count_stops_after_n_frames() {
    let cap = fixture("http-keepalive.pcap");
    let all = records(&jsonl(&[s(&cap)]));
    let some = records(&jsonl(&[s(&cap), "-c", "8"]));
    let frames: Vec<u64> = of_type(&some, "packet")
        .iter()
        .map(|p| p["frame"].as_u64().unwrap())
        .collect();
    assert!(!frames.is_empty());
    assert!(frames.iter().all(|&f| f <= 8), "{frames:?}");
    let all_first: Vec<u64> = of_type(&all, "packet")
        .iter()
        .map(|p| p["frame"].as_u64().unwrap())
        .filter(|&f| f <= 8)
        .collect();
    assert_eq!(frames, all_first);
    // Control: without -c there are later frames.
    assert!(of_type(&all, "packet")
        .iter()
        .any(|p| p["frame"].as_u64().unwrap() > 8));
    let bad = Command::cargo_bin("statescope")
        .unwrap()
        .args(["replay", s(&cap), "-c", "0"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

/// `--port`/`--host`/`--filter` on replay keep only the matching connections, as live's kernel
/// filter would; the other port keeps the others.
#[test]
fn port_and_host_narrow_replay() {
    // Port 81 on 10.99.0.2, refused; port 80 on 10.77.0.2.
    let a = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/refused.pcap");
    let b = fixture("http-keepalive.pcap"); // port 80
    let both = records(&jsonl(&[s(&a), s(&b)]));
    let servers = |recs: &[Value]| -> Vec<String> {
        of_type(recs, "conn")
            .iter()
            .map(|c| c["server"].as_str().unwrap().to_string())
            .collect()
    };
    let all = servers(&both);
    assert!(all.iter().any(|s| s.ends_with(":80")) && all.iter().any(|s| s.ends_with(":81")));
    let p80 = servers(&records(&jsonl(&[s(&a), s(&b), "--port", "80"])));
    assert!(
        !p80.is_empty() && p80.iter().all(|s| s.ends_with(":80")),
        "{p80:?}"
    );
    let p81 = servers(&records(&jsonl(&[s(&a), s(&b), "--port", "81"])));
    assert!(
        !p81.is_empty() && p81.iter().all(|s| s.ends_with(":81")),
        "{p81:?}"
    );
    assert_eq!(p80.len() + p81.len(), all.len());
    let by_host = servers(&records(&jsonl(&[s(&a), s(&b), "--host", "10.99.0.2"])));
    assert_eq!(by_host, p81);
    let f = servers(&records(&jsonl(&[
        s(&a),
        s(&b),
        "-f",
        "tcp port 80 or port 81",
    ])));
    assert_eq!(f.len(), all.len());
    let none = jsonl(&[s(&a), s(&b), "--filter", "udp"]);
    assert_eq!(none, "", "udp passes no TCP segment");
}

/// `--where`: connections in a state, a Zeek code, HTTP methods and statuses, analysis events,
/// tshark's spelling; an unsupported token is bad usage naming it.
#[test]
fn where_selects_records() {
    let cap = fixture("http-keepalive.pcap");
    let c = s(&cap);
    let all = records(&jsonl(&[c]));
    let get = records(&jsonl(&[c, "--where", "method GET"]));
    assert!(!get.is_empty());
    assert!(get
        .iter()
        .all(|r| r["type"] == "http" && r["method"] == "GET"));
    assert_eq!(
        get.len(),
        of_type(&all, "http")
            .iter()
            .filter(|r| r["method"] == "GET")
            .count()
    );
    // The tshark spelling means the same.
    assert_eq!(
        jsonl(&[c, "-Y", "http.request.method == \"GET\""]),
        jsonl(&[c, "--where", "method GET"])
    );
    let st = records(&jsonl(&[c, "--where", "status 2xx and not status 204"]));
    assert!(!st.is_empty() && st.iter().all(|r| r["status"].as_u64().unwrap() / 100 == 2));
    let conns = records(&jsonl(&[c, "--where", "type conn and conn_state SF"]));
    assert_eq!(conns.len(), of_type(&all, "conn").len());
    assert_eq!(
        jsonl(&[c, "--where", "conn_state REJ"]),
        "",
        "keep-alive was no refusal"
    );
    let refused = records(&jsonl(&[
        s(&fixture("refused.pcap")),
        "--where",
        "conn_state REJ",
    ]));
    assert!(!refused.is_empty() && refused.iter().all(|r| r["conn_state"] == "REJ"));
    // Packets in a state, with the connection's endpoints: and binds tighter than or.
    let tw = records(&jsonl(&[
        c,
        "--where",
        "type packet and (state FIN_WAIT_1 or state CLOSE_WAIT)",
    ]));
    assert!(!tw.is_empty());
    assert!(tw.iter().all(|r| ["FIN_WAIT_1", "CLOSE_WAIT"]
        .iter()
        .any(|s| r["client_state"] == *s || r["server_state"] == *s)));
    // http records by port: their endpoints come from the connection's packets.
    let on80 = records(&jsonl(&[c, "--where", "port 80 and request"]));
    assert_eq!(on80.len(), get.len());
    assert_eq!(jsonl(&[c, "--where", "port 81 and request"]), "");
    // Analysis events, in a capture that has them, and in tshark's words.
    let lossy = fixture("bulk-loss-rx.pcap");
    let l = s(&lossy);
    let rtx = records(&jsonl(&[
        l,
        "--where",
        "event retransmission and type packet",
    ]));
    assert!(!rtx.is_empty());
    assert!(rtx.iter().all(|r| r["analysis"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a == "retransmission")));
    assert_eq!(
        jsonl(&[
            l,
            "-Y",
            "tcp.port == 80 && tcp.analysis.retransmission && !tcp.stream == 99"
        ]),
        jsonl(&[l, "--where", "port 80 and event retransmission"])
    );
    // Errors: exit 2, one line naming the token.
    for (bad, token) in [
        ("portt 80", "\"portt\""),
        ("state OPEN", "\"OPEN\""),
        ("tcp.len == 0", "\"tcp.len\""),
        ("port 80 and", "test was expected"),
    ] {
        let out = Command::cargo_bin("statescope")
            .unwrap()
            .args(["replay", c, "--where", bad])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {err}");
        assert!(
            err.contains(token) && err.lines().count() == 1,
            "{bad}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
}
