//! The hand-written JSON-lines writer (`src/output/jsonl.rs`) against serde_json on every
//! line of every golden file: each line read back into a [`Record`] must be written again,
//! byte for byte, both by serde_json and by the printer. serde_json parses floats exactly here
//! (its `float_roundtrip` feature, on for tests), so the float printed is the float compared.

use statescope::output::jsonl::JsonlSink;
use statescope::output::Sink;
use statescope::record::Record;
use std::path::Path;

#[test]
fn the_fast_writer_and_serde_write_every_golden_line_alike() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut files: Vec<_> = std::fs::read_dir(&golden)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "golden files missing");
    let mut lines = 0;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        // One printer a file, as a run has: its per-connection caches are exercised too.
        let mut sink = JsonlSink::new(Box::new(std::fs::File::create(&out).unwrap()));
        for (i, line) in text.lines().enumerate() {
            let at = format!("{}:{}", path.display(), i + 1);
            let rec: Record = serde_json::from_str(line).unwrap_or_else(|e| panic!("{at}: {e}"));
            let by_serde = serde_json::to_string(&rec).unwrap();
            assert_eq!(by_serde, line, "{at}: serde_json writes it otherwise");
            sink.record(&rec).unwrap();
            lines += 1;
        }
        sink.finish().unwrap();
        drop(sink);
        let printed = std::fs::read_to_string(&out).unwrap();
        for (i, (got, want)) in printed.lines().zip(text.lines()).enumerate() {
            assert_eq!(
                got,
                want,
                "{}:{}: the printer differs",
                path.display(),
                i + 1
            );
        }
        assert_eq!(printed, text, "{}", path.display());
    }
    assert!(lines > 10_000, "only {lines} golden lines");
}
