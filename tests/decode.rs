//! The capture reader and the decoder against tshark, and against damaged input.
//!
//! Every capture in tests/fixtures/ with a `NAME.packets.tsv` oracle (tshark 4.0.17, one row per
//! frame) is read and decoded frame by frame: exactly the frames tshark puts in a TCP stream must
//! give a segment, with the same raw seq/ack, length, ports, addresses and capture time.
//!
//! `cargo test --test decode -- --ignored` also runs that check over every capture in
//! `$STATESCOPE_EVAL_DIR` (default /work/shared/eval/public) and prints the agreement.

use statescope::capture::pcap_file::{open, open_reader};
use statescope::capture::{CaptureError, FrameSource, LinkType, Timestamp};
use statescope::decode::{DecodeError, Decoder};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// One tshark row, by column name.
struct Row(HashMap<String, String>);

impl Row {
    fn get(&self, k: &str) -> &str {
        self.0.get(k).map(|s| s.as_str()).unwrap_or("")
    }
}

fn read_oracle(path: &Path) -> Vec<Row> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split('\t')
        .map(String::from)
        .collect();
    lines
        .map(|l| {
            Row(header
                .iter()
                .cloned()
                .zip(l.split('\t').map(String::from))
                .collect())
        })
        .collect()
}

/// "1795826561.899212000" → nanoseconds.
fn epoch_ns(s: &str) -> i64 {
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let frac = format!("{frac:0<9}");
    secs.parse::<i64>().unwrap() * 1_000_000_000 + frac[..9].parse::<i64>().unwrap()
}

#[derive(Default, Debug)]
struct Agreement {
    frames: u64,
    tcp_frames: u64,
    mismatches: u64,
    examples: Vec<String>,
    capture_error: Option<String>,
}

fn compare(pcap: &Path, oracle: &Path) -> Agreement {
    let rows = read_oracle(oracle);
    let mut src = open(pcap).unwrap();
    let mut dec = Decoder::new();
    let mut a = Agreement::default();
    let bad = |a: &mut Agreement, msg: String| {
        a.mismatches += 1;
        if a.examples.len() < 8 {
            a.examples.push(msg);
        }
    };
    loop {
        let frame = match src.next_frame() {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                a.capture_error = Some(e.to_string());
                break;
            }
        };
        a.frames += 1;
        let n = frame.number;
        assert_eq!(n, a.frames, "frame numbers count every frame from 1");
        let Some(row) = rows.get(n as usize - 1) else {
            bad(&mut a, format!("frame {n}: not in the oracle"));
            continue;
        };
        assert_eq!(row.get("frame.number"), n.to_string());
        if frame.ts.0 != epoch_ns(row.get("frame.time_epoch")) {
            bad(
                &mut a,
                format!(
                    "frame {n}: time {} vs {}",
                    frame.ts.0,
                    row.get("frame.time_epoch")
                ),
            );
        }
        let ts = frame.ts;
        let in_stream = !row.get("tcp.stream").is_empty();
        a.tcp_frames += in_stream as u64;
        match (dec.decode(&frame), in_stream) {
            (Ok(Some(seg)), true) => {
                // Inside tunnels tshark lists every IP header's address, outermost first: the
                // segment's own is the innermost of its IP version.
                let innermost = |v4: &str, v6: &str| {
                    let field = if seg.src.is_ipv6() { v6 } else { v4 };
                    row.get(field).rsplit(',').next().unwrap_or("").to_string()
                };
                let ip_src = innermost("ip.src", "ipv6.src");
                let ip_dst = innermost("ip.dst", "ipv6.dst");
                let ours = [
                    seg.seq.to_string(),
                    seg.ack.to_string(),
                    seg.len.to_string(),
                    seg.sport.to_string(),
                    seg.dport.to_string(),
                    seg.src.to_string(),
                    seg.dst.to_string(),
                ];
                let theirs = [
                    row.get("tcp.seq_raw"),
                    row.get("tcp.ack_raw"),
                    row.get("tcp.len"),
                    row.get("tcp.srcport"),
                    row.get("tcp.dstport"),
                    ip_src.as_str(),
                    ip_dst.as_str(),
                ];
                let names = ["seq", "ack", "len", "sport", "dport", "src", "dst"];
                for i in 0..names.len() {
                    // tshark leaves ack_raw empty when the ACK flag is clear
                    if names[i] == "ack" && theirs[i].is_empty() {
                        continue;
                    }
                    if ours[i] != theirs[i] {
                        bad(
                            &mut a,
                            format!(
                                "frame {n}: {} {} vs tshark {}",
                                names[i], ours[i], theirs[i]
                            ),
                        );
                    }
                }
                assert!(seg.payload.len() as u32 <= seg.len);
            }
            (Ok(None), false) | (Err(_), false) => {}
            (got, _) => {
                let got = match got {
                    Ok(Some(_)) => "a segment".to_string(),
                    Ok(None) => "no segment".to_string(),
                    Err(e) => format!("error: {e}"),
                };
                bad(
                    &mut a,
                    format!(
                        "frame {n} at {}: {got}, tshark tcp.stream={in_stream}",
                        ts.0
                    ),
                );
            }
        }
    }
    if a.frames != rows.len() as u64 {
        let msg = format!("read {} frames, tshark {}", a.frames, rows.len());
        bad(&mut a, msg);
    }
    a
}

fn oracle_pairs(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if let Some(stem) = name.strip_suffix(".packets.tsv") {
            for ext in ["pcap", "pcapng"] {
                let cap = dir.join(format!("{stem}.{ext}"));
                if cap.exists() {
                    out.push((cap, p.clone()));
                }
            }
        }
    }
    out.sort();
    out
}

#[test]
fn fixtures_agree_with_tshark() {
    let pairs = oracle_pairs(&fixtures());
    assert!(pairs.len() >= 19, "fixtures missing: {}", pairs.len());
    for (cap, oracle) in pairs {
        let a = compare(&cap, &oracle);
        assert!(
            a.capture_error.is_none(),
            "{}: {:?}",
            cap.display(),
            a.capture_error
        );
        assert!(a.tcp_frames > 0, "{}: no TCP at all", cap.display());
        assert_eq!(a.mismatches, 0, "{}: {:#?}", cap.display(), a.examples);
    }
}

#[test]
#[ignore = "needs the evaluation corpus; run with --ignored"]
fn eval_corpus_agrees_with_tshark() {
    let dir =
        std::env::var("STATESCOPE_EVAL_DIR").unwrap_or_else(|_| "/work/shared/eval/public".into());
    let dir = Path::new(&dir);
    if !dir.exists() {
        println!("{} not found: nothing to check", dir.display());
        return;
    }
    let (mut frames, mut tcp, mut bad) = (0, 0, 0);
    for (cap, oracle) in oracle_pairs(dir) {
        let a = compare(&cap, &oracle);
        println!(
            "{:<28} frames {:>6}  tcp {:>6}  mismatches {:>3}{}",
            cap.file_name().unwrap().to_string_lossy(),
            a.frames,
            a.tcp_frames,
            a.mismatches,
            a.capture_error
                .map(|e| format!("  ERROR {e}"))
                .unwrap_or_default()
        );
        for ex in &a.examples {
            println!("    {ex}");
        }
        frames += a.frames;
        tcp += a.tcp_frames;
        bad += a.mismatches;
    }
    println!("total: {frames} frames, {tcp} in TCP streams, {bad} mismatches");
    assert_eq!(bad, 0);
}

// ---------------------------------------------------------------------------------------------
// Formats: multi-interface pcapng, byte orders, resolutions, stdin-like dribbling input

#[test]
fn multi_interface_pcapng_has_per_interface_link_types() {
    let mut src = open(&fixtures().join("multi-if.pcapng")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    while let Some(f) = src.next_frame().unwrap() {
        seen.insert(f.linktype.0);
    }
    let want: std::collections::BTreeSet<u32> = [1, 101, 276, 0].into();
    assert_eq!(seen, want);
}

/// Frames of a file as (number, ts, linktype, bytes).
fn all_frames(src: &mut dyn FrameSource) -> Vec<(u64, Timestamp, LinkType, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(f) = src.next_frame().unwrap() {
        out.push((f.number, f.ts, f.linktype, f.data.to_vec()));
    }
    out
}

#[test]
fn byte_orders_and_resolutions_read_the_same_frames() {
    let eth = all_frames(
        open(&fixtures().join("linktype-eth.pcap"))
            .unwrap()
            .as_mut(),
    );
    let be = all_frames(open(&fixtures().join("linktype-be.pcap")).unwrap().as_mut());
    let ng = all_frames(
        open(&fixtures().join("linktype-eth-ng.pcapng"))
            .unwrap()
            .as_mut(),
    );
    assert_eq!(eth, be);
    assert_eq!(eth, ng);
    let nano = all_frames(
        open(&fixtures().join("linktype-nano.pcap"))
            .unwrap()
            .as_mut(),
    );
    assert_eq!(nano.len(), eth.len());
    assert!(nano.iter().any(|f| f.1 .0 % 1000 != 0), "nanoseconds kept");
}

/// A reader that hands out one byte at a time, like a slow pipe.
struct Dribble(Vec<u8>, usize);

impl Read for Dribble {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.1 >= self.0.len() || buf.is_empty() {
            return Ok(0);
        }
        buf[0] = self.0[self.1];
        self.1 += 1;
        Ok(1)
    }
}

#[test]
fn a_slow_stream_reads_like_the_file() {
    for name in ["linktype-eth.pcap", "linktype-eth-ng.pcapng"] {
        let path = fixtures().join(name);
        let want = all_frames(open(&path).unwrap().as_mut());
        let bytes = std::fs::read(&path).unwrap();
        let mut src = open_reader("pipe".into(), Box::new(Dribble(bytes, 0)), None).unwrap();
        assert_eq!(all_frames(src.as_mut()), want, "{name}");
        assert_eq!(src.progress().1, None);
    }
}

#[test]
fn progress_reaches_the_file_size() {
    let path = fixtures().join("linktype-eth.pcap");
    let size = std::fs::metadata(&path).unwrap().len();
    let mut src = open(&path).unwrap();
    let mut last = 0;
    while src.next_frame().unwrap().is_some() {
        let (done, total) = src.progress();
        assert!(done > last && done <= size);
        assert_eq!(total, Some(size));
        last = done;
    }
    assert_eq!(last, size);
}

// --- a hand-built pcapng: several interfaces, if_tsresol, if_tsoffset, SPB, obsolete PB, both
// byte orders

struct Ng {
    be: bool,
    out: Vec<u8>,
}

impl Ng {
    fn u16(&self, v: u16) -> [u8; 2] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn u32(&self, v: u32) -> [u8; 4] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn block(&mut self, kind: u32, body: &[u8]) {
        let mut body = body.to_vec();
        while !body.len().is_multiple_of(4) {
            body.push(0);
        }
        let len = body.len() as u32 + 12;
        let (k, l) = (self.u32(kind), self.u32(len));
        self.out.extend_from_slice(&k);
        self.out.extend_from_slice(&l);
        self.out.extend_from_slice(&body);
        self.out.extend_from_slice(&l);
    }
    fn shb(&mut self) {
        let mut b = self.u32(0x1A2B3C4D).to_vec();
        b.extend_from_slice(&self.u16(1));
        b.extend_from_slice(&self.u16(0));
        b.extend_from_slice(&[0xff; 8]);
        self.block(0x0A0D0D0A, &b);
    }
    fn idb(&mut self, linktype: u16, tsresol: Option<u8>, tsoffset: Option<i64>) {
        let mut b = self.u16(linktype).to_vec();
        b.extend_from_slice(&[0, 0]);
        b.extend_from_slice(&self.u32(0));
        if let Some(r) = tsresol {
            b.extend_from_slice(&self.u16(9));
            b.extend_from_slice(&self.u16(1));
            b.extend_from_slice(&[r, 0, 0, 0]);
        }
        if let Some(o) = tsoffset {
            b.extend_from_slice(&self.u16(14));
            b.extend_from_slice(&self.u16(8));
            b.extend_from_slice(&if self.be {
                o.to_be_bytes()
            } else {
                o.to_le_bytes()
            });
        }
        if tsresol.is_some() || tsoffset.is_some() {
            b.extend_from_slice(&[0, 0, 0, 0]);
        }
        self.block(1, &b);
    }
    fn epb(&mut self, ifid: u32, ts: u64, data: &[u8]) {
        let mut b = self.u32(ifid).to_vec();
        b.extend_from_slice(&self.u32((ts >> 32) as u32));
        b.extend_from_slice(&self.u32(ts as u32));
        b.extend_from_slice(&self.u32(data.len() as u32));
        b.extend_from_slice(&self.u32(data.len() as u32));
        b.extend_from_slice(data);
        self.block(6, &b);
    }
    fn spb(&mut self, data: &[u8]) {
        let mut b = self.u32(data.len() as u32).to_vec();
        b.extend_from_slice(data);
        self.block(3, &b);
    }
    fn obsolete_pb(&mut self, ifid: u16, ts: u64, data: &[u8]) {
        let mut b = self.u16(ifid).to_vec();
        b.extend_from_slice(&self.u16(0));
        b.extend_from_slice(&self.u32((ts >> 32) as u32));
        b.extend_from_slice(&self.u32(ts as u32));
        b.extend_from_slice(&self.u32(data.len() as u32));
        b.extend_from_slice(&self.u32(data.len() as u32));
        b.extend_from_slice(data);
        self.block(2, &b);
    }
}

#[test]
fn pcapng_interfaces_resolutions_offsets_and_block_kinds() {
    for be in [false, true] {
        let mut ng = Ng {
            be,
            out: Vec::new(),
        };
        ng.shb();
        ng.idb(1, None, None); // Ethernet, microseconds
        ng.idb(101, Some(9), Some(100)); // raw IP, nanoseconds, +100 s
        ng.idb(113, Some(0x80 | 10), None); // SLL, 2^-10 s
        ng.epb(1, 5_000_000_123, b"raw");
        ng.epb(0, 7_000_001, b"eth");
        ng.spb(b"simple");
        ng.epb(2, 3 * 1024 + 512, b"sll");
        ng.obsolete_pb(1, 42, b"old");
        // unknown block types are skipped
        ng.block(0x0BAD, &[1, 2, 3, 4]);
        // a second section starts afresh with its own interfaces
        ng.shb();
        ng.idb(276, None, None);
        ng.epb(0, 1, b"sll2");
        let mut src =
            open_reader("built".into(), Box::new(std::io::Cursor::new(ng.out)), None).unwrap();
        let got = all_frames(src.as_mut());
        let want = vec![
            (
                1,
                Timestamp(105_000_000_123),
                LinkType(101),
                b"raw".to_vec(),
            ),
            (2, Timestamp(7_000_001_000), LinkType(1), b"eth".to_vec()),
            // SPB: no timestamp of its own
            (3, Timestamp(7_000_001_000), LinkType(1), b"simple".to_vec()),
            (4, Timestamp(3_500_000_000), LinkType(113), b"sll".to_vec()),
            (
                5,
                Timestamp(100_000_000_042),
                LinkType(101),
                b"old".to_vec(),
            ),
            (6, Timestamp(1_000), LinkType(276), b"sll2".to_vec()),
        ];
        assert_eq!(got, want, "big endian: {be}");
    }
}

#[test]
fn packet_block_for_missing_interface_is_damage() {
    let mut ng = Ng {
        be: false,
        out: Vec::new(),
    };
    ng.shb();
    ng.idb(1, None, None);
    ng.epb(0, 1, b"ok");
    let at = ng.out.len() as u64;
    ng.epb(3, 2, b"bad");
    let mut src =
        open_reader("built".into(), Box::new(std::io::Cursor::new(ng.out)), None).unwrap();
    assert!(src.next_frame().unwrap().is_some());
    match src.next_frame() {
        Err(CaptureError::Damaged { offset, what, .. }) => {
            assert_eq!(offset, at);
            assert!(what.contains("interface 3"), "{what}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        src.next_frame().unwrap().is_none(),
        "finished after an error"
    );
}

// ---------------------------------------------------------------------------------------------
// Damaged files

fn write_temp(bytes: &[u8]) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, bytes).unwrap();
    f
}

/// End offset of every frame's record, from a clean read.
fn record_ends(path: &Path) -> Vec<u64> {
    let mut src = open(path).unwrap();
    let mut ends = Vec::new();
    while src.next_frame().unwrap().is_some() {
        ends.push(src.progress().0);
    }
    ends
}

#[test]
fn truncated_pcap_yields_everything_before_the_cut() {
    let path = fixtures().join("linktype-eth.pcap");
    let bytes = std::fs::read(&path).unwrap();
    let ends = record_ends(&path);
    let mut starts = vec![24u64];
    starts.extend_from_slice(&ends[..ends.len() - 1]);
    for cut in 1..bytes.len() {
        let f = write_temp(&bytes[..cut]);
        let opened = open(f.path());
        if cut < 24 {
            match opened {
                Err(CaptureError::Damaged { offset: 0, .. }) => continue,
                other => panic!("cut {cut}: {:?}", other.map(|_| ())),
            }
        }
        let mut src = opened.unwrap();
        let mut n = 0;
        let result = loop {
            match src.next_frame() {
                Ok(Some(_)) => n += 1,
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        let complete = ends.iter().filter(|&&e| e <= cut as u64).count();
        assert_eq!(n, complete, "cut {cut}: frames before the cut");
        let at_boundary = cut == 24 || ends.contains(&(cut as u64));
        match result {
            None => assert!(at_boundary, "cut {cut}: damage not reported"),
            Some(CaptureError::Damaged { offset, what, path }) => {
                assert!(!at_boundary);
                assert_eq!(offset, starts[complete], "cut {cut}: {what}");
                assert!(what.contains("truncated"), "{what}");
                assert_eq!(path, f.path().display().to_string());
            }
            Some(e) => panic!("cut {cut}: {e}"),
        }
    }
}

#[test]
fn truncated_pcapng_yields_everything_before_the_cut() {
    let path = fixtures().join("linktype-eth-ng.pcapng");
    let bytes = std::fs::read(&path).unwrap();
    let ends = record_ends(&path);
    for cut in (1..bytes.len()).step_by(3) {
        let f = write_temp(&bytes[..cut]);
        let Ok(mut src) = open(f.path()) else {
            continue; // cut inside the section header: covered by the error message test
        };
        let mut n = 0;
        let result = loop {
            match src.next_frame() {
                Ok(Some(_)) => n += 1,
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        let complete = ends.iter().filter(|&&e| e <= cut as u64).count();
        assert_eq!(n, complete, "cut {cut}");
        match result {
            None => assert!(
                cut.is_multiple_of(4),
                "cut {cut}: mid-block cut not reported"
            ),
            Some(CaptureError::Damaged { offset, .. }) => {
                assert!(offset <= cut as u64);
                assert!(offset >= ends.get(complete.wrapping_sub(1)).copied().unwrap_or(0));
            }
            Some(e) => panic!("cut {cut}: {e}"),
        }
    }
}

#[test]
fn bad_files_get_one_line_errors() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "empty file"),
        (
            "garbage",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            "not a pcap",
        ),
        ("short magic", vec![0xd4, 0xc3], "truncated"),
        (
            "short header",
            vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0],
            "truncated",
        ),
        (
            "short ng",
            vec![0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0],
            "truncated",
        ),
    ];
    for (name, bytes, want) in cases {
        let f = write_temp(&bytes);
        let err = open(f.path())
            .err()
            .unwrap_or_else(|| panic!("{name}: opened"));
        let msg = err.to_string();
        assert!(msg.contains(want), "{name}: {msg}");
        assert!(
            msg.contains(&f.path().display().to_string()),
            "{name}: {msg}"
        );
        assert!(!msg.contains('\n'), "{name}: one line");
    }
    let missing = open(Path::new("/nonexistent/x.pcap")).err().unwrap();
    assert!(missing.to_string().contains("cannot open"), "{missing}");
}

fn patched_header(offset: usize, value: u32) -> Vec<u8> {
    let mut b = std::fs::read(fixtures().join("linktype-eth.pcap")).unwrap();
    b[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    b
}

#[test]
fn absurd_snaplen_is_damage() {
    let f = write_temp(&patched_header(16, 0x7fff_ffff));
    match open(f.path()) {
        Err(CaptureError::Damaged {
            offset: 16, what, ..
        }) => assert!(what.contains("snaplen")),
        other => panic!("{:?}", other.map(|_| ())),
    }
}

/// snaplen 0 in a legacy header means "no limit", as libpcap reads it: every frame of the
/// patched copy reads as in the original, streamed and mapped alike.
#[test]
fn snaplen_0_reads_as_no_limit() {
    let original = std::fs::read(fixtures().join("linktype-eth.pcap")).unwrap();
    let streamed = |bytes: Vec<u8>| {
        let mut src =
            open_reader("x".into(), Box::new(std::io::Cursor::new(bytes)), None).expect("opens");
        frames_and_end(src.as_mut())
    };
    let want = streamed(original);
    assert!(want.0.len() > 3 && want.1 == "end", "{want:?}");
    let patched = write_temp(&patched_header(16, 0));
    assert_eq!(streamed(patched_header(16, 0)), want);
    let file = std::fs::File::open(patched.path()).unwrap();
    let mut mapped = statescope::capture::mapped::open("patched", &file)
        .unwrap()
        .expect("a legacy pcap is mapped");
    assert_eq!(frames_and_end(mapped.as_mut()), want);
}

#[test]
fn absurd_record_length_is_damage_after_the_good_frames() {
    let path = fixtures().join("linktype-eth.pcap");
    let ends = record_ends(&path);
    // record 4 starts where record 3 ends; its caplen is at +8
    let at = ends[2] as usize;
    let f = write_temp(&patched_header(at + 8, 0x7fff_0000));
    let mut src = open(f.path()).unwrap();
    for _ in 0..3 {
        assert!(src.next_frame().unwrap().is_some());
    }
    match src.next_frame() {
        Err(CaptureError::Damaged { offset, what, .. }) => {
            assert_eq!(offset, at as u64);
            assert!(what.contains("absurd record length"), "{what}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

// ---------------------------------------------------------------------------------------------
// The decoder on frames from a real capture

#[test]
fn snaplen_cut_frames_report_wire_length() {
    // Re-write linktype-eth.pcap with every record cut to 70 bytes.
    let path = fixtures().join("linktype-eth.pcap");
    let full = all_frames(open(&path).unwrap().as_mut());
    let mut out = std::fs::read(&path).unwrap()[..24].to_vec();
    out[16..20].copy_from_slice(&70u32.to_le_bytes());
    for (_, ts, _, data) in &full {
        let cap = data.len().min(70);
        out.extend_from_slice(&((ts.0 / 1_000_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((ts.0 % 1_000_000_000 / 1000) as u32).to_le_bytes());
        out.extend_from_slice(&(cap as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&data[..cap]);
    }
    let f = write_temp(&out);
    let mut cut = open(f.path()).unwrap();
    let mut whole = open(&path).unwrap();
    let (mut d1, mut d2) = (Decoder::new(), Decoder::new());
    let mut checked = 0;
    while let Some(a) = whole.next_frame().unwrap() {
        let b = cut.next_frame().unwrap().unwrap();
        assert_eq!(b.orig_len as usize, a.data.len());
        let (Ok(Some(sa)), Ok(Some(sb))) = (d1.decode(&a), d2.decode(&b)) else {
            continue;
        };
        assert_eq!((sa.seq, sa.ack, sa.len), (sb.seq, sb.ack, sb.len));
        assert!(sb.payload.len() <= sa.payload.len());
        assert_eq!(sb.payload, &sa.payload[..sb.payload.len()]);
        checked += 1;
    }
    assert!(checked > 10);
}

#[test]
fn decode_errors_name_layer_and_offset() {
    let mut src = open(&fixtures().join("linktype-eth.pcap")).unwrap();
    let mut dec = Decoder::new();
    // the SYN is frame 3
    let mut syn = None;
    while let Some(f) = src.next_frame().unwrap() {
        if f.number == 3 {
            syn = Some(f.data.to_vec());
            break;
        }
    }
    let syn = syn.unwrap();
    fn frame(d: &[u8]) -> statescope::capture::Frame<'_> {
        statescope::capture::Frame {
            number: 1,
            ts: Timestamp(0),
            linktype: LinkType::ETHERNET,
            data: d,
            orig_len: d.len() as u32,
        }
    }
    let e = dec.decode(&frame(&syn[..30])).unwrap_err();
    assert_eq!(
        e,
        DecodeError::TooShort {
            layer: "IPv4",
            offset: 14
        }
    );
    let e = dec.decode(&frame(&syn[..40])).unwrap_err();
    assert_eq!(
        e,
        DecodeError::TooShort {
            layer: "TCP",
            offset: 34
        }
    );
    let mut bad = syn.clone();
    bad[46] = 0x30; // data offset 3
    let e = dec.decode(&frame(&bad)).unwrap_err();
    assert!(
        matches!(
            e,
            DecodeError::Malformed {
                layer: "TCP",
                offset: 46,
                ..
            }
        ),
        "{e}"
    );
    let e = dec
        .decode(&statescope::capture::Frame {
            linktype: LinkType(147),
            ..frame(&syn)
        })
        .unwrap_err();
    assert_eq!(e, DecodeError::LinkType(147));
}

// ---------------------------------------------------------------------------------------------
// The hot path does not allocate

mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        /// Allocations made by this thread (tests run on several threads at once).
        pub static ALLOCS: Cell<u64> = const { Cell::new(0) };
    }

    pub struct Counting;

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
            System.alloc(layout)
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout)
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
            System.realloc(ptr, layout, new_size)
        }
    }

    pub fn count() -> u64 {
        ALLOCS.with(|c| c.get())
    }
}

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

#[test]
fn decoding_unfragmented_frames_does_not_allocate() {
    let mut frames = Vec::new();
    for name in [
        "linktype-eth.pcap",
        "linktype-sll2.pcap",
        "linktype-lo.pcap",
        "ipv6-lo.pcap",
    ] {
        let mut src = open(&fixtures().join(name)).unwrap();
        while let Some(f) = src.next_frame().unwrap() {
            frames.push((f.linktype, f.data.to_vec()));
        }
    }
    let mut dec = Decoder::new();
    let before = counting::count();
    let mut segments = 0;
    for (lt, data) in &frames {
        let f = statescope::capture::Frame {
            number: 1,
            ts: Timestamp(0),
            linktype: *lt,
            data,
            orig_len: data.len() as u32,
        };
        segments += matches!(dec.decode(&f), Ok(Some(_))) as u32;
    }
    assert_eq!(counting::count() - before, 0, "allocations while decoding");
    assert!(segments > 50);
}

#[test]
fn reading_frames_does_not_allocate_per_frame() {
    let mut src = open(&fixtures().join("linktype-lo.pcap")).unwrap();
    src.next_frame().unwrap();
    let before = counting::count();
    let mut n = 0;
    while src.next_frame().unwrap().is_some() {
        n += 1;
    }
    assert!(n > 10);
    assert_eq!(
        counting::count() - before,
        0,
        "allocations while reading a pcap"
    );
}

/// A good packet block, then one that `patch` damages (given the file, the damaged block's
/// start and end), then another: the good frame comes out, then damage at the block's start
/// whose message contains `says`.
fn damaged_packet_block(be: bool, patch: impl Fn(&mut Vec<u8>, usize, usize), says: &str) {
    let mut ng = Ng {
        be,
        out: Vec::new(),
    };
    ng.shb();
    ng.idb(1, None, None);
    ng.epb(0, 1, b"good");
    let at = ng.out.len();
    ng.epb(0, 2, b"bad!");
    let end = ng.out.len();
    patch(&mut ng.out, at, end);
    ng.epb(0, 3, b"never reached");
    let mut src =
        open_reader("built".into(), Box::new(std::io::Cursor::new(ng.out)), None).unwrap();
    assert_eq!(src.next_frame().unwrap().unwrap().data, b"good");
    match src.next_frame() {
        Err(CaptureError::Damaged { offset, what, .. }) => {
            assert_eq!(offset, at as u64);
            assert!(what.contains(says), "{what}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}

#[test]
fn packet_block_overrunning_itself_is_damage() {
    // caplen (block offset 20) larger than the block
    let caplen = |out: &mut Vec<u8>, at: usize, _| {
        out[at + 20..at + 24].copy_from_slice(&1000u32.to_be_bytes())
    };
    damaged_packet_block(true, caplen, "claims 1000");
}

#[test]
fn packet_block_with_a_different_trailing_length_is_damage() {
    let trailer =
        |out: &mut Vec<u8>, _, end: usize| out[end - 4..end].copy_from_slice(&40u32.to_le_bytes());
    damaged_packet_block(false, trailer, "lengths or fields disagree");
}

#[test]
fn unknown_link_type_is_a_decode_error_not_a_file_error() {
    // LINKTYPE_USER0 (147) in the file header
    let f = write_temp(&patched_header(20, 147));
    let mut src = open(f.path()).unwrap();
    let mut dec = Decoder::new();
    let mut n = 0;
    while let Some(frame) = src.next_frame().unwrap() {
        assert_eq!(frame.linktype, LinkType(147));
        assert_eq!(dec.decode(&frame).unwrap_err(), DecodeError::LinkType(147));
        n += 1;
    }
    assert_eq!(n, 18);
    // FCS bits above the 16-bit link type are not part of it
    let f = write_temp(&patched_header(20, 0x1000_0001));
    let mut src = open(f.path()).unwrap();
    assert_eq!(
        src.next_frame().unwrap().unwrap().linktype,
        LinkType::ETHERNET
    );
}

// ---------------------------------------------------------------------------------------------
// Large files are read through a memory map: the same frames and the same errors

/// A frame's number, time, link type, bytes, wire length, and the source's progress after it.
type FrameSeen = (u64, Timestamp, LinkType, Vec<u8>, u32, u64);

/// Every frame and how the input ended, from `src`.
fn frames_and_end(src: &mut dyn FrameSource) -> (Vec<FrameSeen>, String) {
    let mut out = Vec::new();
    loop {
        match src.next_frame() {
            Ok(Some(f)) => {
                let rec = (f.number, f.ts, f.linktype, f.data.to_vec(), f.orig_len, 0);
                out.push(rec);
                out.last_mut().unwrap().5 = src.progress().0;
            }
            Ok(None) => return (out, "end".into()),
            Err(e) => return (out, e.to_string()),
        }
    }
}

/// Read `bytes` both ways (as a file mapped, as a stream) and compare everything.
fn mapped_reads_as_streamed(name: &str, bytes: &[u8]) {
    let f = write_temp(bytes);
    let shown = f.path().display().to_string();
    let file = std::fs::File::open(f.path()).unwrap();
    let streamed = open_reader(
        shown.clone(),
        Box::new(std::io::Cursor::new(bytes.to_vec())),
        None,
    );
    let mapped = statescope::capture::mapped::open(&shown, &file);
    match (mapped, streamed) {
        (Ok(Some(mut m)), Ok(mut s)) => {
            assert_eq!(
                frames_and_end(m.as_mut()),
                frames_and_end(s.as_mut()),
                "{name}"
            );
        }
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{name}"),
        (a, b) => panic!(
            "{name}: mapped {:?}, streamed {:?}",
            a.map(|m| m.is_some()),
            b.map(|_| ())
        ),
    }
}

#[test]
fn a_mapped_pcap_reads_exactly_as_a_streamed_one() {
    let mut legacy = 0;
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "pcap") {
            let bytes = std::fs::read(&path).unwrap();
            legacy += 1;
            mapped_reads_as_streamed(&path.display().to_string(), &bytes);
        }
    }
    assert!(legacy > 20, "{legacy} legacy fixtures");
    // Cut anywhere (inside the header, inside a record header, inside the data), with an
    // absurd record length, and with a bad header.
    let bytes = std::fs::read(fixtures().join("linktype-eth.pcap")).unwrap();
    for cut in 4..bytes.len() {
        mapped_reads_as_streamed(&format!("cut {cut}"), &bytes[..cut]);
    }
    let ends = record_ends(&fixtures().join("linktype-eth.pcap"));
    mapped_reads_as_streamed("absurd", &patched_header(ends[2] as usize + 8, 0x7fff_0000));
    mapped_reads_as_streamed("snaplen 0", &patched_header(16, 0));
    // Neither pcap nor pcapng: not mapped, the caller reads it and says what is wrong.
    let other = write_temp(b"GET / HTTP/1.1\r\n\r\n");
    let file = std::fs::File::open(other.path()).unwrap();
    assert!(statescope::capture::mapped::open("text", &file)
        .unwrap()
        .is_none());
}

#[test]
fn a_mapped_pcapng_reads_exactly_as_a_streamed_one() {
    for name in ["linktype-eth-ng.pcapng", "multi-if.pcapng"] {
        let bytes = std::fs::read(fixtures().join(name)).unwrap();
        mapped_reads_as_streamed(name, &bytes);
    }
    // Every block kind, both byte orders, and a section of each order in one file.
    let built = |be: bool| {
        let mut ng = Ng {
            be,
            out: Vec::new(),
        };
        ng.shb();
        ng.idb(1, None, None);
        ng.idb(101, Some(9), Some(100));
        ng.epb(1, 5_000_000_123, b"raw");
        ng.epb(0, 7_000_001, b"eth");
        ng.spb(b"simple");
        ng.obsolete_pb(1, 42, b"old");
        ng.block(0x0BAD, &[1, 2, 3, 4]);
        // A packet block with options after its data (a comment, then the end of options).
        let mut b = Vec::new();
        for v in [0u32, 0, 9, 5, 5] {
            b.extend_from_slice(&ng.u32(v));
        }
        b.extend_from_slice(b"opts!\0\0\0");
        b.extend_from_slice(&ng.u16(1));
        b.extend_from_slice(&ng.u16(2));
        b.extend_from_slice(b"hi\0\0");
        b.extend_from_slice(&[0, 0, 0, 0]);
        ng.block(6, &b);
        ng.out
    };
    let (le, be) = (built(false), built(true));
    mapped_reads_as_streamed("little-endian", &le);
    mapped_reads_as_streamed("big-endian", &be);
    let both = [le.clone(), be].concat();
    mapped_reads_as_streamed("two sections", &both);
    // Cut anywhere: inside the section header, a block header, a packet's data, its trailer.
    for cut in 4..le.len() {
        mapped_reads_as_streamed(&format!("cut {cut}"), &le[..cut]);
    }
    // Damage inside packet blocks: caplen past the block, trailer length differing from the
    // header's, a length that is not a multiple of 4, a missing interface.
    let first_epb = le.len() - built_tail_len(&le);
    for (at, value) in [(20, 1000u32), (4, 40), (4, 41), (8, 7)] {
        let mut bad = le.clone();
        bad[first_epb + at..first_epb + at + 4].copy_from_slice(&value.to_le_bytes());
        mapped_reads_as_streamed(&format!("patched {at}={value}"), &bad);
    }
}

/// Bytes from the first enhanced packet block of a file `built` above to its end.
fn built_tail_len(bytes: &[u8]) -> usize {
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let kind = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        if kind == 6 {
            return bytes.len() - at;
        }
        at += u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    }
    panic!("no packet block")
}
