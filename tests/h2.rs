//! HTTP/2 cleartext from real captures (`tests/fixtures/h2`, made by `make.sh` there with
//! nghttpx before nginx, nghttp and curl on lo) through the whole engine, checked against
//! tshark 4.0's dissection of the same captures (`NAME.h2.tsv`, from `oracle.py`).
//!
//! * Frames: every HTTP/2 frame's type, stream, flags and length, in order, frame by frame,
//!   equal to tshark's (prior knowledge, `Upgrade: h2c`).
//! * Messages: every request's method, path and stream and every response's status and
//!   stream, with the frame that completed its header block, equal to tshark's.
//! * Mid-connection: frames found again where a segment starts a frame, each one as tshark
//!   has it; header blocks that depend on HPACK state from before the cut are reported
//!   undecodable, never with headers that differ from the full capture's.
//! * HPACK tables over time: each header block's `hpack_size` equals the size summed from the
//!   fields tshark shows added with incremental indexing, capture frame by capture frame.
//! * Controls: an oracle with one value changed fails each comparison, and the capture with
//!   the server's first HEADERS dropped gives an undecodable response that the message
//!   comparison flags.

use statescope::record::{H2Rec, HttpRec, Record};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[path = "support/replay.rs"]
mod replay;
#[path = "support/tsv.rs"]
mod tsv;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/h2")
}

fn records(name: &str) -> Vec<Record> {
    statescope::lab::common::replay_records(&dir().join(format!("{name}.pcap"))).unwrap()
}

use tsv::Row;

fn oracle(name: &str) -> Vec<Row> {
    tsv::read(&dir().join(format!("{name}.h2.tsv"))).expect("the fixture's oracle")
}

fn vals<'a>(r: &'a Row, col: &str) -> Vec<&'a str> {
    r[col].split(',').filter(|v| !v.is_empty()).collect()
}

/// One HTTP/2 frame as both sides can say it: type, stream, flags, length.
type FrameKey = (u8, u32, u8, u32);

/// tshark's frames, per capture frame, in order.
fn oracle_frames(rows: &[Row]) -> BTreeMap<u64, Vec<FrameKey>> {
    rows.iter()
        .map(|r| {
            let types = vals(r, "http2.type");
            let streams = vals(r, "http2.streamid");
            let flags = vals(r, "http2.flags");
            let lens = vals(r, "http2.length");
            assert_eq!(types.len(), streams.len(), "{r:?}");
            let frames = (0..types.len())
                .map(|i| {
                    (
                        types[i].parse().unwrap(),
                        streams[i].parse().unwrap(),
                        u8::from_str_radix(flags[i].trim_start_matches("0x"), 16).unwrap(),
                        lens[i].parse().unwrap(),
                    )
                })
                .collect();
            (r["frame.number"].parse().unwrap(), frames)
        })
        .collect()
}

fn our_frames(recs: &[Record]) -> BTreeMap<u64, Vec<FrameKey>> {
    let mut m: BTreeMap<u64, Vec<FrameKey>> = BTreeMap::new();
    for r in recs {
        if let Record::H2(f) = r {
            m.entry(f.frame)
                .or_default()
                .push((f.frame_type, f.stream, f.flags, f.length));
        }
    }
    m
}

/// Differences frame by frame; with `subset`, capture frames only tshark has are allowed (a
/// capture that starts mid-connection: tshark may take a frame's middle for a header).
fn compare_frames(
    ours: &BTreeMap<u64, Vec<FrameKey>>,
    theirs: &BTreeMap<u64, Vec<FrameKey>>,
    subset: bool,
) -> Vec<String> {
    let mut diffs = Vec::new();
    for (frame, t) in theirs {
        match ours.get(frame) {
            Some(o) if o != t => diffs.push(format!("frame {frame}: ours {o:?}, tshark {t:?}")),
            None if !subset => diffs.push(format!("frame {frame}: only tshark has {t:?}")),
            _ => {}
        }
    }
    for (frame, o) in ours {
        if !theirs.contains_key(frame) {
            diffs.push(format!("frame {frame}: only we have {o:?}"));
        }
    }
    diffs
}

/// The fields tshark gives per type, per capture frame, each list in frame order: RST_STREAM
/// error codes, GOAWAY error codes, GOAWAY last stream ids, WINDOW_UPDATE increments,
/// SETTINGS identifiers.
type Fields = [Vec<u64>; 5];

const FIELD_COLS: [&str; 5] = [
    "http2.rst_stream.error",
    "http2.goaway.error",
    "http2.goaway.last_stream_id",
    "http2.window_update.window_size_increment",
    "http2.settings.id",
];

fn oracle_fields(rows: &[Row]) -> BTreeMap<u64, Fields> {
    rows.iter()
        .map(|r| {
            let f = FIELD_COLS.map(|c| vals(r, c).iter().map(|v| v.parse().unwrap()).collect());
            (r["frame.number"].parse().unwrap(), f)
        })
        .filter(|(_, f): &(u64, Fields)| f.iter().any(|v| !v.is_empty()))
        .collect()
}

fn our_fields(recs: &[Record]) -> BTreeMap<u64, Fields> {
    let mut m: BTreeMap<u64, Fields> = BTreeMap::new();
    for f in h2_frames(recs) {
        let e = m.entry(f.frame).or_default();
        match f.frame_type {
            3 => e[0].extend(f.error_code.map(u64::from)),
            7 => {
                e[1].extend(f.error_code.map(u64::from));
                e[2].extend(f.last_stream.map(u64::from));
            }
            8 => e[3].extend(f.window_increment.map(u64::from)),
            4 => e[4].extend(f.settings.iter().map(|s| u64::from(s.0))),
            _ => {}
        }
    }
    m.retain(|_, f| f.iter().any(|v| !v.is_empty()));
    m
}

/// A message as both sides say it: (frame, stream, method, path, status).
type MsgKey = (u64, u32, String, String, String);

/// tshark's messages: the k-th HEADERS frame of a capture frame carries its k-th method and
/// path (client) or status (server); the fixtures' blocks all carry them (no trailers).
fn oracle_msgs(rows: &[Row], server_port: &str) -> Vec<MsgKey> {
    let mut out = Vec::new();
    for r in rows {
        let frame: u64 = r["frame.number"].parse().unwrap();
        let types = vals(r, "http2.type");
        let streams = vals(r, "http2.streamid");
        let headers: Vec<u32> = (0..types.len())
            .filter(|&i| types[i] == "1")
            .map(|i| streams[i].parse().unwrap())
            .collect();
        let from_server = r["tcp.srcport"] == server_port;
        let (methods, paths, statuses) = (
            vals(r, "http2.headers.method"),
            vals(r, "http2.headers.path"),
            vals(r, "http2.headers.status"),
        );
        for (k, sid) in headers.into_iter().enumerate() {
            let get = |v: &[&str]| v.get(k).map(|s| s.to_string()).unwrap_or_default();
            if from_server {
                out.push((frame, sid, String::new(), String::new(), get(&statuses)));
            } else {
                out.push((frame, sid, get(&methods), get(&paths), String::new()));
            }
        }
    }
    out.sort();
    out
}

fn msg_of(h: &HttpRec) -> MsgKey {
    (
        h.frame,
        h.stream.unwrap(),
        h.method.as_deref().unwrap_or("").to_string(),
        h.uri.clone().unwrap_or_default(),
        h.status.map(|s| s.to_string()).unwrap_or_default(),
    )
}

fn our_msgs(recs: &[Record]) -> Vec<MsgKey> {
    let mut v: Vec<MsgKey> = h2_http(recs).map(msg_of).collect();
    v.sort();
    v
}

fn h2_http(recs: &[Record]) -> impl Iterator<Item = &HttpRec> {
    recs.iter().filter_map(|r| match r {
        Record::Http(h) if h.version == "2" => Some(&**h),
        _ => None,
    })
}

fn h2_frames(recs: &[Record]) -> impl Iterator<Item = &H2Rec> {
    recs.iter().filter_map(|r| match r {
        Record::H2(f) => Some(f),
        _ => None,
    })
}

/// The server's port, as the capture's ports.txt names it.
fn port(name: &str) -> String {
    let text = std::fs::read_to_string(dir().join("ports.txt")).unwrap();
    text.lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next().unwrap().to_string())
        })
        .unwrap()
}

fn compare_msgs(ours: &[MsgKey], theirs: &[MsgKey]) -> Vec<String> {
    let mut diffs = Vec::new();
    for m in theirs.iter().filter(|m| !ours.contains(m)) {
        diffs.push(format!("tshark's {m:?} missing or different in ours"));
    }
    for m in ours.iter().filter(|m| !theirs.contains(m)) {
        diffs.push(format!("our {m:?} not in tshark's"));
    }
    diffs
}

#[test]
fn frames_agree_with_tshark_frame_by_frame() {
    for name in ["h2c-prior", "h2c-upgrade"] {
        let recs = records(name);
        let theirs = oracle_frames(&oracle(name));
        let ours = our_frames(&recs);
        let n: usize = theirs.values().map(Vec::len).sum();
        assert!(n >= 10, "{name}: only {n} frames in the oracle");
        let diffs = compare_frames(&ours, &theirs, false);
        assert!(diffs.is_empty(), "{name}:\n{}", diffs.join("\n"));
        // What each type carries: error codes, last stream, increments, settings.
        let fields = oracle_fields(&oracle(name));
        assert!(fields.len() >= 2, "{name}: {fields:?}");
        assert_eq!(our_fields(&recs), fields, "{name}");
        // Every type the fixtures carry is among them.
        let types: std::collections::BTreeSet<u8> =
            h2_frames(&recs).map(|f| f.frame_type).collect();
        eprintln!("{name}: {n} frames agree; types {types:?}");
    }
}

#[test]
fn messages_agree_with_tshark() {
    for name in ["h2c-prior", "h2c-upgrade"] {
        let recs = records(name);
        let theirs = oracle_msgs(&oracle(name), &port(name));
        let ours = our_msgs(&recs);
        assert!(theirs.len() >= 3, "{name}: {theirs:?}");
        let diffs = compare_msgs(&ours, &theirs);
        assert!(diffs.is_empty(), "{name}:\n{}", diffs.join("\n"));
        // Nothing undecodable in a complete capture, and each response names its request.
        for h in h2_http(&recs) {
            assert!(!h.undecodable, "{name}: {h:?}");
            if h.status.is_some() {
                assert!(h.request_frame.is_some(), "{name}: {h:?}");
            }
        }
    }
}

/// What the fixtures show beyond tshark's fields: the 404, the POST body counted, the big
/// response's flow control (its windows run down to 0 and WINDOW_UPDATE opens them), the
/// upgrade's stream 1 answered in HTTP/2 for an HTTP/1.1 request.
#[test]
fn bodies_windows_and_the_upgrade() {
    let recs = records("h2c-prior");
    let msgs: Vec<&HttpRec> = h2_http(&recs).collect();
    assert!(msgs.iter().any(|h| h.status == Some(404)));
    let post = msgs
        .iter()
        .find(|h| h.method.as_deref() == Some("POST"))
        .unwrap();
    assert_eq!((post.body_len, post.content_length), (20000, Some(20000)));
    let big = msgs
        .iter()
        .find(|h| h.status == Some(200) && h.body_len > 100_000)
        .unwrap();
    assert_eq!(Some(big.body_len), big.content_length);
    let big_frames: Vec<&H2Rec> = h2_frames(&recs)
        .filter(|f| f.conn == big.conn && f.stream == big.stream.unwrap() && f.frame_type == 0)
        .collect();
    assert!(big_frames
        .iter()
        .any(|f| f.stream_window == Some(0) || f.conn_window == Some(0)));
    assert!(big_frames.iter().all(|f| f.stream_window.unwrap() >= 0));
    let conns: Vec<_> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Conn(c) => c.h2.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(conns.len(), 2);
    for s in &conns {
        assert_eq!(s.start, "prior_knowledge");
        assert!(
            s.hpack_entries.iter().all(|e| e.is_some_and(|n| n > 0)),
            "{s:?}"
        );
        assert_eq!(s.undecodable_blocks, [0, 0]);
    }

    let recs = records("h2c-upgrade");
    let http1: Vec<&HttpRec> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Http(h) if h.version != "2" => Some(&**h),
            _ => None,
        })
        .collect();
    assert_eq!(http1.len(), 2, "the upgrade request and the 101");
    assert_eq!(http1[1].upgrade.as_deref(), Some("h2c"));
    let first = h2_http(&recs).next().unwrap();
    assert_eq!(
        (first.stream, first.request_frame),
        (Some(1), Some(http1[0].frame))
    );
}

/// A capture that starts mid-connection: frames found where a segment starts one, each as
/// tshark has it; header blocks undecodable, never different from the full capture's.
#[test]
fn midstream_resynchronises_and_never_guesses_headers() {
    let recs = records("h2c-midstream");
    let ours = our_frames(&recs);
    let theirs = oracle_frames(&oracle("h2c-midstream"));
    let diffs = compare_frames(&ours, &theirs, true);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    let on_first_conn = h2_frames(&recs).filter(|f| f.conn == 0).count();
    assert!(
        on_first_conn >= 5,
        "only {on_first_conn} frames found again"
    );
    // The same after a gap (the dropped segment): frames found again agree with tshark's.
    for name in ["h2c-drop", "h2c-midstream-hpack"] {
        let ours = our_frames(&records(name));
        let diffs = compare_frames(&ours, &oracle_frames(&oracle(name)), true);
        assert!(diffs.is_empty(), "{name}: {}", diffs.join("\n"));
        assert!(ours.len() >= 2, "{name}: {ours:?}");
    }

    let recs = records("h2c-midstream-hpack");
    let full = oracle_msgs(&oracle("h2c-upgrade"), &port("h2c-upgrade"));
    let msgs: Vec<&HttpRec> = h2_http(&recs).collect();
    assert!(!msgs.is_empty());
    for h in &msgs {
        if h.undecodable {
            assert!(
                h.method.is_none() && h.uri.is_none() && h.status.is_none(),
                "{h:?}"
            );
            continue;
        }
        // Decoded: then it is what the full capture says for that stream.
        let (_, sid, m, p, s) = msg_of(h);
        assert!(
            full.iter()
                .any(|f| (f.1, &f.2, &f.3, &f.4) == (sid, &m, &p, &s)),
            "{h:?} differs from the full capture"
        );
    }
    assert!(msgs.iter().any(|h| h.undecodable));
    let summary = recs
        .iter()
        .find_map(|r| match r {
            Record::Conn(c) => c.h2.clone(),
            _ => None,
        })
        .unwrap();
    assert_eq!(summary.start, "midstream");
    assert_eq!(summary.hpack_size, [None, None]);
    assert!(summary.undecodable_blocks.iter().sum::<u64>() >= 2);
}

/// Controls: one value changed in an oracle is caught by each comparison; a capture missing
/// the server's first HEADERS makes the next response undecodable, which the message
/// comparison against tshark flags (tshark itself still prints a status for it).
#[test]
fn controls_fail_the_comparisons() {
    let rows = oracle("h2c-prior");
    let recs = records("h2c-prior");
    let port = port("h2c-prior");

    let mut altered = rows.clone();
    let row = altered
        .iter_mut()
        .find(|r| !r["http2.headers.status"].is_empty())
        .unwrap();
    let status = row["http2.headers.status"].replacen("200", "201", 1);
    row.insert("http2.headers.status".into(), status);
    assert!(!compare_msgs(&our_msgs(&recs), &oracle_msgs(&altered, &port)).is_empty());

    let mut altered = rows.clone();
    let row = altered
        .iter_mut()
        .find(|r| r["http2.length"].contains(','))
        .unwrap();
    let lens = row["http2.length"].replacen(',', "1,", 1);
    row.insert("http2.length".into(), lens);
    assert!(!compare_frames(&our_frames(&recs), &oracle_frames(&altered), false).is_empty());
    // In subset mode too: a frame both have but that differs is still caught.
    assert!(!compare_frames(&our_frames(&recs), &oracle_frames(&altered), true).is_empty());

    let mut altered = rows.clone();
    let row = altered
        .iter_mut()
        .find(|r| !r["http2.window_update.window_size_increment"].is_empty())
        .unwrap();
    row.insert(
        "http2.window_update.window_size_increment".into(),
        "1".into(),
    );
    assert_ne!(our_fields(&recs), oracle_fields(&altered));

    let recs = records("h2c-drop");
    let diffs = compare_msgs(
        &our_msgs(&recs),
        &oracle_msgs(&oracle("h2c-drop"), &self::port("h2c-drop")),
    );
    assert!(!diffs.is_empty(), "a lost HEADERS went unnoticed");
    let later = h2_http(&recs)
        .find(|h| h.dir == statescope::record::Dir::S2c)
        .unwrap();
    assert!(later.undecodable && later.status.is_none(), "{later:?}");
}

/// Detection costs the plain path nothing it did not pay: no HTTP/1 or TLS fixture yields an
/// h2 record.
#[test]
fn no_h2_from_http1_or_tls_captures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for sub in ["", "tls"] {
        for e in std::fs::read_dir(root.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "pcap") {
                let recs = statescope::lab::common::replay_records(&p).unwrap();
                assert!(
                    !recs.iter().any(|r| matches!(r, Record::H2(_))),
                    "{}",
                    p.display()
                );
            }
        }
    }
}

/// The JSON lines of the small h2c captures are byte for byte `tests/golden/NAME.pcap.jsonl`
/// (so tests/cli_docs.rs checks their fields are documented, and tests/jsonl.rs that the fast
/// writer writes them as serde does). `UPDATE_GOLDEN=1 cargo test --test h2` regenerates them.
#[test]
fn golden_jsonl() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for name in ["h2c-upgrade", "h2c-drop", "h2c-midstream-hpack"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_statescope"))
            .args(["replay", "--format", "jsonl", "--threads", "1"])
            .arg(dir().join(format!("{name}.pcap")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let file = golden.join(format!("{name}.pcap.jsonl"));
        if update {
            std::fs::write(&file, &out.stdout).unwrap();
            continue;
        }
        let want = std::fs::read(&file).unwrap_or_default();
        assert!(
            out.stdout == want,
            "{} differs (UPDATE_GOLDEN=1 to regenerate)",
            file.display()
        );
    }
}

/// `replay --tls-keylog NAME.keylog --format jsonl` of a fixture: its records.
fn records_decrypted(name: &str, keylog: bool) -> Vec<Record> {
    let keys = dir().join(format!("{name}.keylog"));
    let args: Vec<&std::ffi::OsStr> = if keylog {
        vec!["--tls-keylog".as_ref(), keys.as_os_str()]
    } else {
        Vec::new()
    };
    replay::replay_jsonl(&dir().join(format!("{name}.pcap")), &args)
}

/// HTTP/2 inside TLS (`serve --tls`, ALPN h2, curl), decrypted with the server's key log: the
/// frames and messages agree with tshark's decryption of the same capture, and the messages say
/// `tls`. Control: without the key log there is no HTTP/2 to see, and the comparison fails.
#[test]
fn decrypted_h2_agrees_with_tshark() {
    let name = "h2-tls";
    let recs = records_decrypted(name, true);
    let theirs = oracle_frames(&oracle(name));
    let n: usize = theirs.values().map(Vec::len).sum();
    assert!(n >= 20, "only {n} frames in the oracle");
    let diffs = compare_frames(&our_frames(&recs), &theirs, false);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    let msgs = oracle_msgs(&oracle(name), &port(name));
    assert_eq!(msgs.len(), 8, "{msgs:?}");
    let diffs = compare_msgs(&our_msgs(&recs), &msgs);
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
    assert!(h2_http(&recs).all(|h| h.tls));
    // Control: the same capture without the key log.
    let blind = records_decrypted(name, false);
    assert_eq!(h2_frames(&blind).count(), 0);
    assert!(!compare_frames(&our_frames(&blind), &theirs, false).is_empty());
    assert!(!compare_msgs(&our_msgs(&blind), &msgs).is_empty());
}

/// What is wrong with the `hpack_size`/`hpack_entries` of a capture's `h2` records, if
/// anything: every frame that ends a header block carries the sender's table (and no other
/// frame does); per direction the table only grows while it is far below its 4096-byte
/// maximum (nothing can be evicted), an entry is at least 32 bytes (§4.1), the first block
/// already leaves entries, and the last block's table is the `conn` record's final one.
fn hpack_over_time_faults(recs: &[Record]) -> Vec<String> {
    let mut faults = Vec::new();
    let mut seen: BTreeMap<(u64, usize), Vec<(u64, u64)>> = BTreeMap::new();
    for f in h2_frames(recs) {
        let ends_block = matches!(f.frame_type, 1 | 5 | 9) && f.flags & 0x4 != 0;
        match (ends_block, f.hpack_size, f.hpack_entries) {
            (true, Some(s), Some(e)) => {
                if s < 32 * e {
                    faults.push(format!("frame {}: {s} bytes for {e} entries", f.frame));
                }
                seen.entry((f.conn, f.dir as usize))
                    .or_default()
                    .push((s, e));
            }
            (false, None, None) => {}
            _ => faults.push(format!(
                "frame {} {}: table {:?}",
                f.frame, f.name, f.hpack_size
            )),
        }
    }
    for r in recs {
        let Record::Conn(c) = r else { continue };
        let Some(h2) = &c.h2 else { continue };
        for d in 0..2 {
            let Some(tables) = seen.get(&(c.conn, d)) else {
                faults.push(format!("conn {} dir {d}: no header block", c.conn));
                continue;
            };
            if tables[0].1 == 0 {
                faults.push(format!(
                    "conn {} dir {d}: first block added nothing",
                    c.conn
                ));
            }
            if tables
                .windows(2)
                .any(|w| w[1].0 < w[0].0 || w[1].1 < w[0].1)
            {
                faults.push(format!("conn {} dir {d}: table shrank: {tables:?}", c.conn));
            }
            let last = tables.last().unwrap();
            if h2.hpack_size[d] != Some(last.0) || h2.hpack_entries[d] != Some(last.1) {
                faults.push(format!(
                    "conn {} dir {d}: last block {last:?}, conn record {:?} {:?}",
                    c.conn, h2.hpack_size[d], h2.hpack_entries[d]
                ));
            }
        }
    }
    faults
}

/// The HPACK table over time (`hpack_size`, `hpack_entries` on the frames that end header
/// blocks) on the prior-knowledge capture: the client's table fills with its first block and
/// the server's grows from block to block; each ends at the `conn` record's final size.
/// Controls: a last block's size one byte off, a block without its table, and a table put on
/// a frame that ends no block each make the check fail.
#[test]
fn hpack_table_over_time() {
    let recs = records("h2c-prior");
    let faults = hpack_over_time_faults(&recs);
    assert!(faults.is_empty(), "{}", faults.join("\n"));
    let sizes = |d: u8| -> Vec<u64> {
        h2_frames(&recs)
            .filter(|f| f.conn == 0 && f.dir as u8 == d)
            .filter_map(|f| f.hpack_size)
            .collect()
    };
    let (client, server) = (sizes(0), sizes(1));
    assert!(
        client.len() >= 4 && server.len() >= 4,
        "{client:?} {server:?}"
    );
    assert!(client[0] > 0, "{client:?}");
    assert!(server.windows(2).any(|w| w[1] > w[0]), "{server:?}");
    // Controls.
    let last_block = recs
        .iter()
        .rposition(|r| matches!(r, Record::H2(f) if f.hpack_size.is_some()))
        .unwrap();
    let mut off = recs.clone();
    if let Record::H2(f) = &mut off[last_block] {
        f.hpack_size = f.hpack_size.map(|s| s + 1);
    }
    assert!(!hpack_over_time_faults(&off).is_empty());
    let mut missing = recs.clone();
    if let Record::H2(f) = &mut missing[last_block] {
        (f.hpack_size, f.hpack_entries) = (None, None);
    }
    assert!(!hpack_over_time_faults(&missing).is_empty());
    let mut stray = recs.clone();
    let data = stray
        .iter_mut()
        .find_map(|r| match r {
            Record::H2(f) if f.frame_type == 0 => Some(f),
            _ => None,
        })
        .unwrap();
    (data.hpack_size, data.hpack_entries) = (Some(0), Some(0));
    assert!(!hpack_over_time_faults(&stray).is_empty());
}

/// tshark's HPACK tables: per capture frame that carries header fields, the sender's dynamic
/// table size after it, summed from the fields tshark shows added with incremental indexing
/// (name length + value length + 32 each, RFC 7541 §4.1), per connection and direction. Valid
/// while no table reaches its 4096-byte default (nothing evicted), which it asserts.
fn oracle_table_sizes(rows: &[Row]) -> BTreeMap<u64, u64> {
    let mut size: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for r in rows {
        let reprs = vals(r, "http2.header.repr");
        if reprs.is_empty() {
            continue;
        }
        let names = vals(r, "http2.header.name.length");
        let values = vals(r, "http2.header.value.length");
        assert_eq!(
            (reprs.len(), names.len()),
            (values.len(), values.len()),
            "{r:?}"
        );
        let s = size
            .entry((r["tcp.stream"].clone(), r["tcp.srcport"].clone()))
            .or_default();
        for i in 0..reprs.len() {
            if reprs[i].contains("with Incremental Indexing") {
                *s += names[i].parse::<u64>().unwrap() + values[i].parse::<u64>().unwrap() + 32;
            }
        }
        assert!(
            *s < 4096,
            "a table reached its maximum: the sum no longer holds"
        );
        out.insert(r["frame.number"].parse().unwrap(), *s);
    }
    out
}

/// Ours: the `hpack_size` of the last header block each capture frame ends.
fn our_table_sizes(recs: &[Record]) -> BTreeMap<u64, u64> {
    h2_frames(recs)
        .filter_map(|f| Some((f.frame, f.hpack_size?)))
        .collect()
}

/// The HPACK table sizes over time agree with tshark's header fields, capture frame by capture
/// frame, on the full captures (prior knowledge, `Upgrade: h2c`, and h2 inside TLS decrypted
/// with its key log). Control: one header length changed in the oracle makes it differ.
#[test]
fn hpack_table_sizes_agree_with_tshark() {
    for name in ["h2c-prior", "h2c-upgrade", "h2-tls"] {
        let recs = if name == "h2-tls" {
            records_decrypted(name, true)
        } else {
            records(name)
        };
        let rows = oracle(name);
        let theirs = oracle_table_sizes(&rows);
        assert!(theirs.len() >= 2, "{name}: {theirs:?}");
        assert_eq!(our_table_sizes(&recs), theirs, "{name}");
        // Control: a value one byte longer in the first block tshark shows.
        let mut wrong = rows.clone();
        let r = wrong
            .iter_mut()
            .find(|r| r["http2.header.repr"].contains("with Incremental Indexing"))
            .unwrap();
        let lens: Vec<String> = r["http2.header.value.length"]
            .split(',')
            .map(|v| (v.parse::<u64>().unwrap() + 1).to_string())
            .collect();
        r.insert("http2.header.value.length".into(), lens.join(","));
        assert_ne!(our_table_sizes(&recs), oracle_table_sizes(&wrong), "{name}");
    }
}
