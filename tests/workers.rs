//! Tracking on several workers in one process (`replay --workers N`), end to end through the
//! binary: on every shipped and fixture capture, the output is byte for byte one engine's —
//! JSON lines, the summary table, `--conn`'s selection — for 2 and 3 workers. The controls:
//! each deliberately wrong merger (`--workers-fault`: workers' own connection numbers, no
//! ticks from other workers' segments, records not merged by frame) makes the comparison fail
//! on at least one of these captures.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

/// Every shipped and fixture capture, in subfolders too.
fn captures() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    walk(&root.join("captures"), &mut out);
    walk(&root.join("tests/fixtures"), &mut out);
    out.sort();
    assert!(out.len() > 40, "captures not found");
    out
}

/// Standard output of `replay FILE ARGS...` (it may fail on a damaged fixture: then its
/// standard error's first line too, which must match as well).
fn run(file: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::cargo_bin("statescope")
        .unwrap()
        .arg("replay")
        .arg(file)
        .args(args)
        .output()
        .unwrap();
    let mut text = out.stdout;
    if !out.status.success() {
        text.extend_from_slice(format!("exit {:?}: ", out.status.code()).as_bytes());
        text.extend_from_slice(&out.stderr);
    }
    text
}

/// The captures on which `args` with `--workers N` (and `extra`) differ from `args` alone.
fn differing(n: u32, args: &[&str], extra: &[&str]) -> Vec<String> {
    let w = n.to_string();
    let mut diff = Vec::new();
    for f in captures() {
        let one = run(&f, args);
        let mut wargs = args.to_vec();
        wargs.extend(["--workers", &w]);
        wargs.extend(extra);
        if run(&f, &wargs) != one {
            diff.push(f.display().to_string());
        }
    }
    diff
}

const JSONL: &[&str] = &["--format", "jsonl"];

#[test]
fn workers_print_one_engines_json_lines() {
    for n in [2, 3] {
        let d = differing(n, JSONL, &[]);
        assert!(d.is_empty(), "--workers {n} differs on {d:?}");
    }
}

#[test]
fn workers_print_one_engines_summary_and_selections() {
    for args in [
        &["-q"][..],
        &["-q", "--all"][..],
        &["-q", "--format", "jsonl", "--conn", "4"][..],
        &["-q", "--packets", "--conn", "1", "--conn", "6"][..],
    ] {
        let d = differing(2, args, &[]);
        assert!(d.is_empty(), "{args:?} with --workers 2 differs on {d:?}");
    }
}

/// The controls: each wrong merger is caught by the comparisons above.
#[test]
fn each_wrong_merger_is_caught() {
    for fault in ["no-renumber", "no-tick", "no-merge"] {
        let d = differing(2, JSONL, &["--workers-fault", fault]);
        assert!(
            !d.is_empty(),
            "--workers-fault {fault}: no capture told it from one engine"
        );
    }
}

#[test]
fn workers_refuse_what_names_a_connection_before_numbering() {
    let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/http-keepalive.pcap");
    for args in [
        &["--workers", "2", "--follow", "0"][..],
        &["--workers", "2", "--shard", "0/2"][..],
        &["--workers", "2", "--threads", "2"][..],
        &["--workers", "0"][..],
        &["--workers", "65"][..],
    ] {
        let out = Command::cargo_bin("statescope")
            .unwrap()
            .arg("replay")
            .arg(&f)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--workers"), "{args:?}: {err}");
    }
}
