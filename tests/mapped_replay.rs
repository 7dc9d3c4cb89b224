//! Payloads read where they lie in a mapped capture (the reader thread lends the file's map
//! instead of copying each payload out; `src/capture/mapped.rs`, `Lent`): the records are the
//! same as when everything runs on one thread (which reads the map itself, releasing pages as
//! it goes), with the printing thread, and with `--workers`. The capture is made here, big
//! enough to be mapped, from the fixtures with loss, reordering, capture gaps and many
//! connections back to back, as pcap and as pcapng. The control: the same capture with one
//! HTTP payload byte changed gives other records, so the comparison does read payload bytes.

use statescope::capture::pcap_file;
use statescope::capture::pcap_writer::PcapWriter;
use statescope::types::{Frame, LinkType, Timestamp};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

mod support {
    pub mod replay;
}

/// Ethernet fixtures with lost, reordered and missing segments, many connections and HTTP.
const PARTS: &[&str] = &[
    "tests/fixtures/bulk-loss-rx.pcap",
    "tests/fixtures/capture-gap.pcap",
    "tests/fixtures/reorder.pcap",
    "tests/fixtures/many-conns.pcap",
    "tests/fixtures/midstream.pcap",
    "captures/pipelined.pcap",
    "captures/websocket.pcap",
];

/// Write `copies` rounds of [`PARTS`] one after another (each part shifted in time past the
/// one before, so connections of one end before the next begins) to `out`. With `poke`, the
/// first byte of the first payload that reads "HTTP/1.1 200" becomes "HTTP/1.1 500".
fn make(out: &Path, copies: u32, poke: bool) -> u64 {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut w = PcapWriter::create(out, LinkType(1), 262144).unwrap();
    let mut shift = 0i64;
    let mut poked = !poke;
    for _ in 0..copies {
        for part in PARTS {
            let mut src = pcap_file::open(&root.join(part)).unwrap();
            let (mut first, mut last) = (None, 0i64);
            while let Some(f) = src.next_frame().unwrap() {
                assert_eq!(f.linktype, LinkType(1), "{part}");
                let first = *first.get_or_insert(f.ts.0);
                last = f.ts.0;
                let mut data = f.data.to_vec();
                if !poked {
                    if let Some(at) = find(&data, b"HTTP/1.1 200") {
                        data[at + 9] = b'5';
                        poked = true;
                    }
                }
                w.write_frame(&Frame {
                    ts: Timestamp(f.ts.0 - first + shift),
                    data: &data,
                    ..f
                })
                .unwrap();
            }
            // Ten minutes apart: past every linger and idle timeout.
            shift += last - first.unwrap_or(0) + 600_000_000_000;
        }
    }
    w.flush().unwrap();
    assert!(poked, "no HTTP response to change");
    std::fs::metadata(out).unwrap().len()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn run(file: &Path, args: &[&str]) -> Vec<u8> {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    support::replay::replay_jsonl_text(file, &args)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("statescope-mapped-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Every way of running gives one thread's records; `file` must be big enough to be mapped.
fn same_every_way(file: &Path) -> Vec<u8> {
    let f = std::fs::File::open(file).unwrap();
    let mut mapped = statescope::capture::mapped::open("test", &f)
        .unwrap()
        .expect("big enough to be mapped");
    assert!(mapped.lend_map().is_some(), "the map can be lent");
    let one = run(file, &["--threads", "1"]);
    assert!(one.len() > 1 << 20, "records expected");
    for args in [
        &["--threads", "2"][..],
        &["--threads", "3"][..],
        &["--workers", "2"][..],
        &["--workers", "3"][..],
    ] {
        assert!(run(file, args) == one, "{args:?} differs from --threads 1");
    }
    one
}

#[test]
fn payloads_read_in_place_give_the_records_of_one_thread() {
    let pcap = tmp("big.pcap");
    let size = make(&pcap, 4, false);
    assert!(
        size >= statescope::capture::mapped::MIN_MAPPED,
        "{size} bytes: too small to be mapped"
    );
    let records = same_every_way(&pcap);

    // The same frames as pcapng (editcap, from Wireshark's tools, which CI installs).
    let ng = tmp("big.pcapng");
    match std::process::Command::new("editcap")
        .args(["-F", "pcapng"])
        .arg(&pcap)
        .arg(&ng)
        .status()
    {
        Ok(s) if s.success() => assert!(same_every_way(&ng) == records, "pcapng differs"),
        _ => eprintln!("editcap not found (apt-get install wireshark-common): pcapng part skipped"),
    }

    // The control: one payload byte changed shows in the records.
    let poked = tmp("poked.pcap");
    make(&poked, 4, true);
    assert!(
        run(&poked, &["--threads", "2"]) != records,
        "a changed payload byte left the records as they were"
    );
    let _ = std::fs::remove_dir_all(pcap.parent().unwrap());
}
