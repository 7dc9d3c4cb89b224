//! Every endpoint's state changes against the kernel's own (`tests/fixtures/states/r1..r3`).
//!
//! The fixtures are real kernel traffic between network namespaces, recorded with the
//! tracepoint `sock:inet_sock_set_state` (`bench/corpus/corpus.py states DIR`; see the README
//! there). `statescope::kernel::compare` holds the rules (the one place Linux's bookkeeping is
//! mapped onto RFC 9293): for every socket the kernel logged, the states statescope shows for
//! that endpoint must be the kernel's in order, and each change the kernel timed must sit at the
//! right frame; an endpoint whose kernel kept no socket may show only a request socket.
//! Controls: the same comparison must fail on a copy of statescope's records with FIN-WAIT-1 and
//! CLOSE-WAIT swapped, and on one with every change two frames late.

use statescope::capture::pcap_file;
use statescope::capture::pcap_writer::PcapWriter;
use statescope::kernel::{self, Endpoint};
use statescope::record::Record;
use std::path::{Path, PathBuf};
use std::process::Command;

fn dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/states");
    ["r1", "r2", "r3"].iter().map(|r| root.join(r)).collect()
}

fn captures(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .filter(|p| p.with_extension("transitions.tsv").exists())
        .collect();
    v.sort();
    v
}

fn replay(cap: &Path, extra: &[&str]) -> Vec<Record> {
    let out = Command::new(env!("CARGO_BIN_EXE_statescope"))
        .args(["replay", "--format", "jsonl"])
        .args(extra)
        .arg(cap)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}: {:?}", cap.display(), out);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn kernel_changes(cap: &Path) -> Vec<kernel::Change> {
    let text = std::fs::read_to_string(cap.with_extension("transitions.tsv")).unwrap();
    kernel::parse_tsv(&text).unwrap()
}

fn problems(eps: &[Endpoint]) -> Vec<String> {
    eps.iter()
        .flat_map(|e| {
            e.problems
                .iter()
                .map(move |p| format!("conn {} {} {}: {p}", e.conn, e.role, e.local))
        })
        .collect()
}

#[test]
fn every_endpoint_state_matches_the_kernel() {
    let (mut total, mut bad) = (0, Vec::new());
    for dir in dirs() {
        for cap in captures(&dir) {
            let eps = kernel::compare(&replay(&cap, &[]), &kernel_changes(&cap));
            total += eps.len();
            for p in problems(&eps) {
                bad.push(format!("{}: {p}", cap.display()));
            }
        }
    }
    assert!(total >= 3 * 40, "only {total} endpoints compared");
    assert!(
        bad.is_empty(),
        "{} of {total}:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// Apply `f` to every transition of every `conn` record.
fn alter(recs: &[Record], f: impl Fn(&mut statescope::record::Transition)) -> Vec<Record> {
    let mut recs = recs.to_vec();
    for r in &mut recs {
        if let Record::Conn(c) = r {
            c.transitions.iter_mut().for_each(&f);
        }
    }
    recs
}

/// Controls: the comparison notices a wrong state, and changes placed at the wrong frames.
#[test]
fn the_comparison_fails_on_wrong_states_and_frames() {
    let (mut swaps, mut noticed, mut checked) = (0, 0, 0);
    let (mut placeable, mut late_noticed) = (0, 0);
    for cap in captures(&dirs()[0]) {
        let recs = replay(&cap, &[]);
        let changes = kernel_changes(&cap);
        checked += 1;
        let swapped = alter(&recs, |t| {
            t.state = match &*t.state {
                "FIN_WAIT_1" => "CLOSE_WAIT".into(),
                "CLOSE_WAIT" => "FIN_WAIT_1".into(),
                _ => t.state.clone(),
            }
        });
        if swapped != recs {
            swaps += 1;
            noticed += !problems(&kernel::compare(&swapped, &changes)).is_empty() as usize;
        }
        // Only where the tap saw a segment within a millisecond of some kernel change can a
        // frame be checked (not where every change came by timer or behind a delay).
        let ts: Vec<f64> = recs
            .iter()
            .filter_map(|r| match r {
                Record::Packet(p) => Some(p.ts),
                _ => None,
            })
            .collect();
        if changes
            .iter()
            .filter(|c| ts.iter().any(|t| (t - c.ts).abs() < 0.001))
            .count()
            >= 2
        {
            placeable += 1;
            let late = alter(&recs, |t| {
                t.frame += 2;
                t.inferred = None;
            });
            late_noticed += !problems(&kernel::compare(&late, &changes)).is_empty() as usize;
        }
    }
    assert!(checked >= 15 && swaps >= 10 && placeable >= 15);
    assert_eq!(noticed, swaps, "swapped states noticed in only {noticed}");
    assert_eq!(
        late_noticed, placeable,
        "late frames noticed in only {late_noticed}"
    );
}

/// `--no-analysis` ("tracking and states only") gives the same states as the default.
#[test]
fn states_do_not_depend_on_the_analysis() {
    for cap in captures(&dirs()[0]) {
        let states = |recs: Vec<Record>| -> Vec<String> {
            recs.iter()
                .filter_map(|r| match r {
                    Record::Conn(c) => Some(format!("{} {:?}", c.conn, c.transitions)),
                    Record::Packet(p) => Some(format!("{} {}", p.client_state, p.server_state)),
                    _ => None,
                })
                .collect()
        };
        let a = states(replay(&cap, &[]));
        let b = states(replay(&cap, &["--no-analysis"]));
        assert_eq!(a, b, "{}", cap.display());
    }
}

/// `cap` with its first `skip` frames left out (read and written by the project's own pcap
/// reader and writer): the same traffic, picked up later.
fn without_first_frames(cap: &Path, skip: usize) -> tempfile::NamedTempFile {
    let f = tempfile::NamedTempFile::new().unwrap();
    let mut src = pcap_file::open(cap).unwrap();
    let mut w: Option<PcapWriter<std::fs::File>> = None;
    let mut n = 0;
    while let Some(frame) = src.next_frame().unwrap() {
        n += 1;
        if n > skip {
            w.get_or_insert_with(|| PcapWriter::create(f.path(), frame.linktype, 262144).unwrap())
                .write_frame(&frame)
                .unwrap();
        }
    }
    w.expect("frames after the skipped ones").flush().unwrap();
    f
}

/// Each endpoint's (state, inferred) changes of connection 0.
fn first_conn_changes(recs: &[Record]) -> Vec<(String, String, Option<String>)> {
    recs.iter()
        .find_map(|r| match r {
            Record::Conn(c) if c.conn == 0 => Some(c),
            _ => None,
        })
        .expect("a conn record for connection 0")
        .transitions
        .iter()
        .map(|t| {
            let inferred = t.inferred.as_ref().map(|w| w.to_string());
            (t.endpoint.to_string(), t.state.to_string(), inferred)
        })
        .collect()
}

/// Picked up without its handshake, a connection's ESTABLISHED is shown, not seen: the record
/// says so. Control: from the start of the same capture, no ESTABLISHED is marked inferred.
#[test]
fn a_connection_picked_up_midway_is_established_by_inference() {
    let cap = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/http-keepalive.pcap");
    let established = |changes: &[(String, String, Option<String>)], who: &str| {
        changes
            .iter()
            .find(|c| c.0 == who && c.1 == "ESTABLISHED")
            .unwrap_or_else(|| panic!("{who} never ESTABLISHED: {changes:?}"))
            .2
            .clone()
    };
    let whole = first_conn_changes(&replay(&cap, &[]));
    for who in ["client", "server"] {
        assert_eq!(established(&whole, who), None, "{whole:?}");
    }
    // Two ARP frames, then SYN, SYN-ACK and the third ACK, left out.
    let tail = without_first_frames(&cap, 5);
    let picked_up = first_conn_changes(&replay(tail.path(), &[]));
    for who in ["client", "server"] {
        let why = established(&picked_up, who);
        assert!(
            why.as_deref()
                .is_some_and(|w| w.contains("no handshake captured")),
            "{who}: {picked_up:?}"
        );
    }
    // What happens in view (the close) stays seen.
    assert!(
        picked_up
            .iter()
            .any(|c| c.1 != "ESTABLISHED" && c.2.is_none()),
        "{picked_up:?}"
    );
}
