//! Scale-out by flow (`replay --shard I/N`), end to end through the binary: N shard runs of a
//! capture give, together, the records of one unsharded run — every packet, HTTP, WebSocket,
//! TLS and connection record exactly once — with connection K of shard I numbered I + N×K.
//! The controls show the comparison failing when a shard is run twice or left out.

use assert_cmd::Command;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Every shipped and fixture capture that has TCP connections.
fn captures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in ["captures", "tests/fixtures", "tests/fixtures/tls"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                out.push(p);
            }
        }
    }
    out.sort();
    assert!(out.len() > 20, "captures not found");
    out
}

/// `replay FILE --format jsonl [--shard I/N] [--threads T]`.
fn replay(file: &Path, shard: Option<(u32, u32)>, threads: Option<u32>) -> Command {
    let mut cmd = Command::cargo_bin("statescope").unwrap();
    cmd.arg("replay").arg(file).args(["--format", "jsonl"]);
    if let Some((i, n)) = shard {
        cmd.args(["--shard", &format!("{i}/{n}")]);
    }
    if let Some(t) = threads {
        cmd.args(["--threads", &t.to_string()]);
    }
    cmd
}

/// `replay FILE --format jsonl -q [--shard I/N]`: the records.
fn run(file: &Path, shard: Option<(u32, u32)>) -> Vec<Value> {
    let out = replay(file, shard, None).arg("-q").output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Records with each connection index replaced by the connection's identity (client, server,
/// first packet's time), written with sorted keys and sorted: what must be equal between one
/// run and its shards, whatever the connections are numbered.
fn canonical(recs: &[Value]) -> Result<Vec<String>, String> {
    // A connection resumed after an idle eviction has a conn record per part: the first
    // part (not `resumed`) names it.
    let mut ident: HashMap<u64, String> = HashMap::new();
    for r in recs
        .iter()
        .filter(|r| r["type"] == "conn" && r["resumed"] != true)
    {
        let id = format!("{} {} {}", r["client"], r["server"], r["first_ts"]);
        if ident.insert(r["conn"].as_u64().unwrap(), id).is_some() {
            return Err(format!(
                "connection {} has two first conn records",
                r["conn"]
            ));
        }
    }
    let mut out = Vec::with_capacity(recs.len());
    for r in recs {
        let mut r = r.clone();
        if let Some(c) = r.get("conn").and_then(Value::as_u64) {
            let id = ident
                .get(&c)
                .ok_or_else(|| format!("connection {c} has no conn record"))?;
            r["conn"] = Value::String(id.clone());
        }
        // serde_json's map is ordered by key: the text is canonical.
        out.push(serde_json::to_string(&r).unwrap());
    }
    out.sort();
    Ok(out)
}

/// Do these shard runs' records, together, equal the unsharded run's? `Err` says how not.
fn same_as_one_run(one: &[Value], shards: &[(u32, u32, Vec<Value>)]) -> Result<(), String> {
    let mut merged = Vec::new();
    for (i, n, recs) in shards {
        for r in recs {
            if let Some(c) = r.get("conn").and_then(Value::as_u64) {
                if c % u64::from(*n) != u64::from(*i) {
                    return Err(format!("shard {i}/{n} numbered a connection {c}"));
                }
            }
        }
        merged.extend(recs.iter().cloned());
    }
    let (a, b) = (canonical(one)?, canonical(&merged)?);
    if a == b {
        return Ok(());
    }
    let count = |v: &[String]| {
        let mut m = BTreeMap::new();
        for s in v {
            *m.entry(s.clone()).or_insert(0i64) += 1;
        }
        m
    };
    let (ca, cb) = (count(&a), count(&b));
    let first = ca
        .iter()
        .find(|(k, n)| cb.get(*k) != Some(n))
        .map(|(k, n)| format!("{n}x in one run, {:?}x in the shards: {k}", cb.get(k)))
        .or_else(|| {
            cb.iter()
                .find(|(k, n)| ca.get(*k) != Some(n))
                .map(|(k, n)| format!("{n}x in the shards, not in one run: {k}"))
        })
        .unwrap_or_default();
    Err(format!(
        "{} records in one run, {} in the shards; first difference: {first}",
        a.len(),
        b.len()
    ))
}

#[test]
fn shards_together_give_the_records_of_one_run() {
    let mut split = 0;
    for file in captures() {
        let one = run(&file, None);
        for n in [2, 3] {
            let shards: Vec<_> = (0..n).map(|i| (i, n, run(&file, Some((i, n))))).collect();
            if let Err(e) = same_as_one_run(&one, &shards) {
                panic!("{} in {n} shards: {e}", file.display());
            }
            // Shards that each got some connections: the split is real, not all in one.
            let busy = shards
                .iter()
                .filter(|(_, _, r)| r.iter().any(|r| r["type"] == "conn"))
                .count();
            if busy > 1 {
                split += 1;
            }
        }
    }
    assert!(
        split >= 10,
        "only {split} captures were split across shards"
    );
}

/// Control: the same shard run twice instead of shards 0 and 1 is caught.
#[test]
fn control_a_shard_run_twice_is_caught() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/http-keepalive.pcap");
    let one = run(&file, None);
    let twice = vec![
        (0, 2, run(&file, Some((0, 2)))),
        (0, 2, run(&file, Some((0, 2)))),
    ];
    assert!(same_as_one_run(&one, &twice).is_err());
}

/// Control: a shard left out is caught (a capture whose connections fall in both shards).
#[test]
fn control_a_missing_shard_is_caught() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/http-pipelined.pcap");
    let one = run(&file, None);
    let all: Vec<_> = (0..2).map(|i| (i, 2, run(&file, Some((i, 2))))).collect();
    assert!(same_as_one_run(&one, &all).is_ok());
    for left_out in 0..2 {
        let some: Vec<_> = all.iter().filter(|s| s.0 != left_out).cloned().collect();
        let has_conns = all[left_out as usize].2.iter().any(|r| r["type"] == "conn");
        assert_eq!(same_as_one_run(&one, &some).is_err(), has_conns);
    }
}

#[test]
fn a_bad_shard_is_a_usage_error() {
    for bad in ["2/2", "1", "a/2", "0/0", "-1/2"] {
        let out = Command::cargo_bin("statescope")
            .unwrap()
            .args(["replay", &format!("--shard={bad}"), "captures/refused.pcap"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--shard {bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--shard"), "--shard {bad}: {err}");
    }
}

/// A run's summary line (standard error, last line), as counts: frames, TCP segments it
/// tracked, segments it left to other shards, and what it says of frames it could not decode.
#[derive(Debug, Clone, PartialEq)]
struct Counts {
    frames: u64,
    segments: u64,
    others: u64,
    not_decoded: String,
}

/// `replay FILE --format jsonl [--shard I/N] [--threads T]`: the records' text and the counts.
fn run_counted(file: &Path, shard: Option<(u32, u32)>, threads: Option<u32>) -> (String, Counts) {
    let out = replay(file, shard, threads).output().unwrap();
    assert!(out.status.success(), "{}", file.display());
    let err = String::from_utf8(out.stderr).unwrap();
    let line = err.lines().last().unwrap_or_default().to_string();
    let number_before = |what: &str| -> u64 {
        let end = line
            .find(what)
            .unwrap_or_else(|| panic!("{what:?} not in {line:?}"));
        let start = line[..end].rfind([' ', '(']).map_or(0, |s| s + 1);
        line[start..end].parse().unwrap()
    };
    let counts = Counts {
        frames: number_before(" frames, "),
        segments: number_before(" TCP segments, "),
        others: if shard.is_some() {
            number_before(" TCP segments belong to other shards")
        } else {
            0
        },
        not_decoded: line
            .split(", ")
            .filter(|p| p.contains("frames not decoded"))
            .collect(),
    };
    (String::from_utf8(out.stdout).unwrap(), counts)
}

/// Do the shards' counts add up to one run's? Each shard read every frame, decoded the same
/// ones, tracked its segments and counted the rest as others'; the shards' own segments add up
/// to all of them.
fn counts_add_up(one: &Counts, shards: &[Counts]) -> Result<(), String> {
    for s in shards {
        if (s.frames, &s.not_decoded) != (one.frames, &one.not_decoded) {
            return Err(format!("a shard read {s:?}, one run {one:?}"));
        }
        if s.segments + s.others != one.segments {
            return Err(format!(
                "a shard's segments and others' {s:?}, one run {one:?}"
            ));
        }
    }
    let own: u64 = shards.iter().map(|s| s.segments).sum();
    if own != one.segments {
        return Err(format!(
            "the shards tracked {own} segments, one run {}",
            one.segments
        ));
    }
    Ok(())
}

/// A shard's counts add up to one run's (every frame read, the same ones not decoded, each
/// segment tracked by exactly one shard and counted as others' by the rest), and the two ways
/// of reading — the reader thread (default) and `--threads 1`'s one loop, which decide "another
/// shard's" in different places — give the same records and counts.
#[test]
fn shard_counts_add_up_and_threads_agree() {
    for file in captures() {
        let (_, one) = run_counted(&file, None, None);
        for n in [2, 3] {
            let mut shards = Vec::new();
            for i in 0..n {
                let (recs, counts) = run_counted(&file, Some((i, n)), None);
                let (recs1, counts1) = run_counted(&file, Some((i, n)), Some(1));
                assert!(
                    recs == recs1 && counts == counts1,
                    "{} shard {i}/{n}: --threads 1 differs ({counts:?} / {counts1:?})",
                    file.display()
                );
                shards.push(counts);
            }
            if let Err(e) = counts_add_up(&one, &shards) {
                panic!("{} in {n} shards: {e}", file.display());
            }
        }
    }
}

/// Control: the counts check catches a shard run twice instead of shards 0 and 1.
#[test]
fn control_counts_of_a_shard_run_twice_do_not_add_up() {
    // 450 connections: both shards get some.
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/many-conns.pcap");
    let (_, one) = run_counted(&file, None, None);
    let (_, s0) = run_counted(&file, Some((0, 2)), None);
    let (_, s1) = run_counted(&file, Some((1, 2)), None);
    assert!(s0.segments > 0 && s1.segments > 0, "{s0:?} {s1:?}");
    assert!(counts_add_up(&one, &[s0.clone(), s1]).is_ok());
    assert!(counts_add_up(&one, &[s0.clone(), s0]).is_err());
}
