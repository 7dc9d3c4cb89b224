//! JSON-lines formatting throughput, for work on the printer.
//!
//! `format_rate CAPTURE [ROUNDS]`: replay CAPTURE into memory (the records `replay --format
//! jsonl` would print), then format them all ROUNDS times into a reused 64 KiB block as the
//! printer does; prints the best round's nanoseconds per record and bytes per second
//! (formatting only: nothing is written).

use statescope::lab::common::replay_records;
use statescope::output::jsonl::Lines;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: format_rate CAPTURE [ROUNDS]";
    let path = std::path::Path::new(args.get(1).expect(usage));
    let rounds: usize = args.get(2).map_or(5, |r| r.parse().expect(usage));
    let recs = replay_records(path).expect("a capture");
    let mut lines = Lines::default();
    let mut block = Vec::with_capacity((1 << 16) + 1024);
    let mut best = f64::MAX;
    let mut bytes = 0usize;
    for _ in 0..rounds {
        bytes = 0;
        let t = Instant::now();
        for rec in &recs {
            lines.format(rec, &mut block).expect("format");
            if block.len() >= 1 << 16 {
                bytes += block.len();
                std::hint::black_box(&block);
                block.clear();
            }
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{} records, {:.1} ns/record, {:.2} GB/s (best of {rounds})",
        recs.len(),
        best * 1e9 / recs.len() as f64,
        bytes as f64 / best / 1e9
    );
}
