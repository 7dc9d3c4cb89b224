//! Render the HTML report (and optionally the SVGs) from a JSON-lines file of records:
//! `cargo run --example report_from_jsonl -- records.jsonl out.html [svg-dir]`.
//! Used by bench/report.sh to time a large report without a large capture.

use statescope::record::Record;
use std::io::BufRead;
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        anyhow::bail!("usage: report_from_jsonl RECORDS.jsonl OUT.html [SVG_DIR]");
    }
    let file = std::fs::File::open(&args[1])?;
    let mut records = Vec::new();
    for (k, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let rec: Record = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("{}:{}: not a record: {e}", args[1], k + 1))?;
        records.push(rec);
    }
    let t = std::time::Instant::now();
    statescope::report::write_html(&records, &args[1], Path::new(&args[2]))?;
    eprintln!(
        "{} records -> {} in {:?}",
        records.len(),
        args[2],
        t.elapsed()
    );
    if let Some(dir) = args.get(3) {
        let files = statescope::report::write_svgs(&records, Path::new(dir))?;
        eprintln!("{} SVG files in {dir}", files.len());
    }
    Ok(())
}
