//! `statescope replay FILE --format jsonl -q ARGS...` through the binary, its records parsed:
//! shared by the tests that read a capture end to end (`tests/report.rs`, `tests/h2.rs`,
//! `tests/mapped_replay.rs`).
#![allow(dead_code)]

use statescope::record::Record;
use std::ffi::OsStr;
use std::path::Path;

/// The run must succeed; its standard error is shown when it does not.
pub fn replay_jsonl(pcap: &Path, args: &[&OsStr]) -> Vec<Record> {
    String::from_utf8(replay_jsonl_text(pcap, args))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// [`replay_jsonl`]'s output as it is printed.
pub fn replay_jsonl_text(pcap: &Path, args: &[&OsStr]) -> Vec<u8> {
    let out = assert_cmd::Command::cargo_bin("statescope")
        .unwrap()
        .args(["replay", "--format", "jsonl", "-q"])
        .arg(pcap)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
