//! `statescope replay -` on SIGINT/SIGTERM (`tcpdump -w - | statescope replay -`, then Ctrl-C):
//! it stops reading, finishes every connection still open, prints every record and the summary,
//! and exits 130 / 143 — the same records a capture ending right there gives.
//!
//! The input is a pipe this test keeps open after writing a fixture's header and its first
//! records, as tcpdump does while it waits for packets. `STATESCOPE_BIN` runs another binary
//! (the control: a build without the handling is killed and prints nothing of the kind).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> PathBuf {
    std::env::var_os("STATESCOPE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_statescope")))
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The file header and the first `n` records of a little-endian legacy pcap, and the number of
/// records in the whole file.
fn pcap_prefix(file: &[u8], n: usize) -> (Vec<u8>, usize) {
    assert_eq!(
        &file[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "little-endian pcap expected"
    );
    let mut at = 24;
    let mut cut = None;
    let mut count = 0;
    while at + 16 <= file.len() {
        if count == n {
            cut = Some(at);
        }
        let caplen = u32::from_le_bytes(file[at + 8..at + 12].try_into().unwrap()) as usize;
        at += 16 + caplen;
        count += 1;
    }
    (file[..cut.unwrap_or(at)].to_vec(), count)
}

/// Bytes written into the pipe and not yet read by the other end.
fn unread(fd: &impl AsRawFd) -> i32 {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    n
}

/// The records of `replay --format jsonl` over a file holding `capture` to its end.
fn replay_to_end(capture: &[u8], threads: u32) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prefix.pcap");
    std::fs::write(&path, capture).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_statescope"))
        .args([
            "replay",
            "--format",
            "jsonl",
            "--threads",
            &threads.to_string(),
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn conn_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| l.contains("\"type\":\"conn\""))
        .collect()
}

/// Feed the first half of `many-conns.pcap` through a pipe held open, send `sig` once the
/// child has read it all, and compare with a replay of the same frames to their end.
fn interrupted(sig: libc::c_int, threads: u32) {
    let file = fixture("many-conns.pcap");
    let (_, total) = pcap_prefix(&file, usize::MAX);
    let frames = total / 2;
    let (prefix, _) = pcap_prefix(&file, frames);

    let mut child = Command::new(bin())
        .args([
            "replay",
            "--format",
            "jsonl",
            "--threads",
            &threads.to_string(),
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    // Read the output meanwhile: a full pipe must not stall the child.
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    // The pipe holds 64 KiB: the writer blocks until the child has read the rest.
    stdin.write_all(&prefix).unwrap();
    stdin.flush().unwrap();
    let start = Instant::now();
    while unread(&stdin) > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the child stopped reading"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // Read is not yet tracked: give the child a moment with the frames (they are tracked
    // either way: the records come from a finished engine).
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: the child's own PID, still running (its standard input is open).
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, sig) }, 0);

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("replay did not end within 20 s of the signal");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(stdin);
    let out = out_reader.join().unwrap();
    let err = err_reader.join().unwrap();

    assert_eq!(
        status.code(),
        Some(128 + sig),
        "exit status {status:?} after signal {sig}; stderr:\n{err}"
    );
    for line in out.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    assert!(out.ends_with('\n') || out.is_empty());
    // The summary, counting every frame written.
    assert!(
        err.contains(&format!("statescope: {frames} frames, ")),
        "no summary of {frames} frames on stderr:\n{err}"
    );
    // Every connection seen, open ones finished: as if the capture had ended there.
    let expected = replay_to_end(&prefix, threads);
    let want = conn_lines(&expected);
    assert!(want.len() > 1, "the prefix should hold several connections");
    assert!(
        want.iter()
            .any(|l| l.contains("\"client_state\":\"ESTABLISHED\"")),
        "the prefix should leave some connection open"
    );
    assert_eq!(conn_lines(&out), want, "conn records differ");
    assert_eq!(
        out, expected,
        "records differ from a replay ending at the same frame"
    );
}

#[test]
fn sigint_one_thread() {
    interrupted(libc::SIGINT, 1);
}

#[test]
fn sigint_two_threads() {
    interrupted(libc::SIGINT, 2);
}

#[test]
fn sigint_three_threads() {
    interrupted(libc::SIGINT, 3);
}

#[test]
fn sigterm_one_thread() {
    interrupted(libc::SIGTERM, 1);
}

#[test]
fn sigterm_three_threads() {
    interrupted(libc::SIGTERM, 3);
}
