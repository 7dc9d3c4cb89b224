//! Issue 19's command-line defects, end to end through the binary on real fixture captures:
//! bad values are bad usage (exit 2, one line), `--follow`'s text never lands among JSON lines,
//! write errors on the follow output are reported, and `live --follow` follows.

use assert_cmd::Command;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn bin() -> Command {
    Command::cargo_bin("statescope").unwrap()
}

/// Exit 2, nothing on standard output, one line on standard error that contains `want`.
fn assert_bad_usage(args: &[&str], want: &str) {
    let out = bin().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?} printed records");
    assert_eq!(err.lines().count(), 1, "{args:?}: not one line: {err}");
    assert!(err.contains(want), "{args:?}: {err}");
}

/// `--idle-timeout -1` and `nan` were accepted and split one keep-alive connection into five.
#[test]
fn r19_bad_idle_timeout_is_bad_usage() {
    let cap = fixture("http-keepalive.pcap");
    let cap = cap.to_str().unwrap();
    for bad in ["-1", "nan", "0", "inf"] {
        assert_bad_usage(&["replay", cap, "--idle-timeout", bad], "--idle-timeout");
        assert_bad_usage(
            &["replay", cap, &format!("--idle-timeout={bad}")],
            "--idle-timeout",
        );
    }
    assert_bad_usage(
        &["live", "-i", "lo", "--idle-timeout", "nan"],
        "--idle-timeout",
    );
    assert_bad_usage(&["live", "-i", "lo", "--duration", "-1"], "--duration");
    // A good value still works, and gives the one connection.
    let out = bin()
        .args([
            "replay",
            "-q",
            "--format",
            "jsonl",
            "--idle-timeout",
            "0.5",
            cap,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let conns = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(r#""type":"conn""#))
        .count();
    assert_eq!(conns, 1);
}

fn run(args: &[&str]) -> std::process::Output {
    let out = bin().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `replay --follow N --format jsonl` wrote the stream's text to standard output ahead of the
/// JSON lines. Now it is bad usage, and with `--follow-out FILE` standard output is exactly
/// the records and the file exactly the text that the table format prints first.
#[test]
fn r19_follow_never_mixes_with_json_lines() {
    let cap = fixture("http-keepalive.pcap");
    let cap = cap.to_str().unwrap();
    assert_bad_usage(
        &["replay", cap, "--follow", "0", "--format", "jsonl"],
        "--follow-out FILE",
    );
    assert_bad_usage(&["replay", cap, "--follow-out", "x.txt"], "--follow N");

    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("follow.txt");
    let text_arg = text.to_str().unwrap();
    for threads in ["1", "2", "3"] {
        let jsonl = [
            "replay",
            "-q",
            "--format",
            "jsonl",
            "--threads",
            threads,
            cap,
        ];
        let plain = run(&jsonl);
        let followed = run(&[&jsonl[..], &["--follow", "0", "--follow-out", text_arg]].concat());
        assert!(plain.stdout == followed.stdout, "records changed");
        let followed_text = std::fs::read(&text).unwrap();
        let shown = String::from_utf8_lossy(&followed_text);
        assert!(shown.contains("\nGET /index.html HTTP/1.1\r\n"), "{shown}");

        // The table format prints the same text to standard output, before the table.
        let table = run(&["replay", "-q", "--threads", threads, cap]);
        let table_followed = run(&["replay", "-q", "--threads", threads, cap, "--follow", "0"]);
        let mut want = followed_text.clone();
        want.extend_from_slice(&table.stdout);
        assert!(
            table_followed.stdout == want,
            "table and follow text differ"
        );
    }
}

/// Write errors on the follow output were ignored: now they are a one-line error naming it.
#[test]
#[cfg(target_os = "linux")]
fn r19_follow_write_errors_are_reported() {
    let cap = fixture("http-keepalive.pcap");
    let out = bin()
        .args(["replay", "-q", "--follow", "0", "--follow-out", "/dev/full"])
        .arg(&cap)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("writing --follow's text to /dev/full failed")
            && err.contains("No space left on device"),
        "{err}"
    );
    // The same to standard output.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_statescope"))
        .args(["replay", "-q", "--follow", "0"])
        .arg(&cap)
        .stdout(full)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("writing --follow's text to standard output failed"),
        "{err}"
    );
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        println!("skipped: needs root (CAP_NET_RAW)");
    }
    root
}

/// `live --follow N` was offered and did nothing: now it prints the stream, to standard
/// output (table format, also when piped) or to `--follow-out` beside JSON lines.
#[test]
fn r19_live_follow_prints_the_stream() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("follow.txt");
    for to_file in [false, true] {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        let mut args = vec!["live", "-i", "lo", "-q", "--port", &port, "--duration", "3"];
        args.extend(["--follow", "0"]);
        if to_file {
            args.extend(["--format", "jsonl", "--follow-out", text.to_str().unwrap()]);
        }
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_statescope"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for "capturing on" before making traffic.
        let mut err = child.stderr.take().unwrap();
        let mut seen = Vec::new();
        let mut byte = [0u8];
        while !seen.ends_with(b"\n") && err.read(&mut byte).unwrap() == 1 {
            seen.push(byte[0]);
        }
        assert!(String::from_utf8_lossy(&seen).contains("capturing on lo"));
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            s.write_all(b"pong from the server\n").unwrap();
        });
        let mut c = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        c.write_all(b"ping from the client\n").unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        server.join().unwrap();
        drop(c);
        std::thread::sleep(Duration::from_millis(200));
        let out = child.wait_with_output().unwrap();
        let mut rest = String::new();
        err.read_to_string(&mut rest).unwrap();
        assert!(out.status.success(), "{rest}");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let followed = if to_file {
            for line in stdout.lines() {
                assert!(line.starts_with('{'), "not a JSON line: {line}");
            }
            std::fs::read_to_string(&text).unwrap()
        } else {
            stdout
        };
        assert!(
            followed.contains("ping from the client") && followed.contains("pong from the server"),
            "{followed}"
        );
    }
}
