//! Decoder and reader throughput, for bench/read.sh.
//!
//! `decode_rate decode FILE [ROUNDS]`: load FILE's frames into memory, decode them ROUNDS times,
//! print packets per second (decode only).
//! `decode_rate read FILE`: read and decode FILE once (for timing against other tools).

use statescope::capture::pcap_file::open;
use statescope::capture::{Frame, LinkType, Timestamp};
use statescope::decode::Decoder;
use std::path::Path;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: decode_rate decode|read FILE [ROUNDS]";
    let mode = args.get(1).expect(usage);
    let path = Path::new(args.get(2).expect(usage));
    match mode.as_str() {
        "decode" => {
            let rounds: u64 = args.get(3).map_or(200, |r| r.parse().expect(usage));
            decode_only(path, rounds)
        }
        "read" => read_and_decode(path),
        _ => panic!("{usage}"),
    }
}

fn decode_only(path: &Path, rounds: u64) {
    // One contiguous buffer, as frames sit in a reader's buffer.
    let mut bytes = Vec::new();
    let mut frames: Vec<(LinkType, usize, usize)> = Vec::new();
    let mut src = open(path).unwrap_or_else(|e| panic!("{e}"));
    while let Some(f) = src.next_frame().unwrap_or_else(|e| panic!("{e}")) {
        frames.push((f.linktype, bytes.len(), f.data.len()));
        bytes.extend_from_slice(f.data);
    }
    let mut decoder = Decoder::new();
    let mut segments = 0u64;
    let mut payload = 0u64;
    let start = Instant::now();
    for _ in 0..rounds {
        for &(linktype, at, len) in &frames {
            let frame = Frame {
                number: 1,
                ts: Timestamp(0),
                linktype,
                data: &bytes[at..at + len],
                orig_len: len as u32,
            };
            if let Ok(Some(seg)) = decoder.decode(&frame) {
                segments += 1;
                payload += seg.len as u64;
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let packets = frames.len() as u64 * rounds;
    println!(
        "decode only: {packets} frames ({segments} segments, {payload} payload bytes) in {secs:.3} s = {:.2} M frames/s",
        packets as f64 / secs / 1e6
    );
}

fn read_and_decode(path: &Path) {
    let start = Instant::now();
    let mut src = open(path).unwrap_or_else(|e| panic!("{e}"));
    let mut decoder = Decoder::new();
    let (mut frames, mut segments) = (0u64, 0u64);
    while let Some(f) = src.next_frame().unwrap_or_else(|e| panic!("{e}")) {
        frames += 1;
        segments += matches!(decoder.decode(&f), Ok(Some(_))) as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "read+decode: {frames} frames ({segments} segments) in {secs:.3} s = {:.2} M frames/s",
        frames as f64 / secs / 1e6
    );
}
