//! Pictures from records: ladder diagrams with endpoint states, time-sequence graphs, HTML.
//!
//! This module reads [`Record`]s only; it never re-analyses packets. Everything it draws (flags,
//! relative numbers, analysis events, each endpoint's state) is what the engine already put in
//! the records, so the pictures always agree with `--format jsonl`.
//!
//! | file        | what it does |
//! |-------------|--------------|
//! | `model.rs`  | groups records per connection; folds runs of ordinary segments in long ones |
//! | `ladder.rs` | the ladder (sequence) diagram, lifelines coloured by endpoint state |
//! | `tsg.rs`    | the time-sequence ("tcptrace") graph of one direction, thinned when long |
//! | `html.rs`   | the self-contained page: connection table, diagrams, timelines, self-check |
//! | `svg.rs`    | escaping, number formatting, the shared stylesheet |
//! | `lesson.rs` | a lab's question, answer, facts and settings; its self-contained page |
//!
//! Entry points: [`write_html`] (`--html FILE`) and [`write_svgs`] (`--svg DIR`).

mod html;
mod ladder;
pub mod lesson;
mod model;
mod svg;
mod tsg;

use crate::record::{Dir, Record};
use anyhow::Context;
use std::path::{Path, PathBuf};

pub use model::{CONDENSE_ABOVE, MAX_FOLD};

/// What the HTML report draws in full.
#[derive(Debug, Clone)]
pub struct HtmlOptions {
    /// Draw ladders and graphs for this many connections (the table always lists all).
    pub detail_limit: usize,
    /// Connections drawn whatever their position (`--conn N`).
    pub select: Vec<u64>,
    /// HTML placed right under the title (a lab's lesson: [`lesson::lesson_html`]); trusted,
    /// written by this program, never from captured bytes.
    pub lead: String,
    /// A label per connection id (a lab's step that made it), shown in the table and the
    /// connection's heading.
    pub labels: std::collections::BTreeMap<u64, String>,
}

impl Default for HtmlOptions {
    fn default() -> Self {
        HtmlOptions {
            detail_limit: 50,
            select: Vec::new(),
            lead: String::new(),
            labels: Default::default(),
        }
    }
}

/// The HTML report as a string.
pub fn render_html(records: &[Record], title: &str, opts: &HtmlOptions) -> String {
    html::render(records, title, opts)
}

/// Write the self-contained HTML report of `records` to `path`.
pub fn write_html(records: &[Record], title: &str, path: &Path) -> anyhow::Result<()> {
    write_html_with(records, title, path, &HtmlOptions::default())
}

/// [`write_html`] with explicit options.
pub fn write_html_with(
    records: &[Record],
    title: &str,
    path: &Path,
    opts: &HtmlOptions,
) -> anyhow::Result<()> {
    let page = render_html(records, title, opts);
    std::fs::write(path, page).with_context(|| {
        format!(
            "cannot write the HTML report to {}: check that its folder exists and is writable",
            path.display()
        )
    })
}

/// What `--html FILE` and `--svg DIR` asked for, written from the collected `records`; the
/// HTML draws the connections of `--conn N` whatever their position. Says on standard error
/// what it wrote unless `--quiet`.
pub fn write_requested(
    out: &crate::config::OutputConfig,
    records: &[Record],
    title: &str,
) -> anyhow::Result<()> {
    if let Some(path) = &out.html {
        let opts = HtmlOptions {
            select: out.conns.clone(),
            ..HtmlOptions::default()
        };
        write_html_with(records, title, path, &opts)?;
        if !out.quiet {
            eprintln!("statescope: wrote {}", path.display());
        }
    }
    if let Some(dir) = &out.svg {
        let files = write_svgs(records, dir)?;
        if !out.quiet {
            eprintln!(
                "statescope: wrote {} SVG files into {}",
                files.len(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// A [`crate::output::Sink`] that passes records on and keeps a copy, for the report written
/// at the end of a run.
pub struct Collect<'a> {
    pub inner: &'a mut dyn crate::output::Sink,
    pub records: Vec<Record>,
}

impl crate::output::Sink for Collect<'_> {
    fn record(&mut self, rec: &Record) -> std::io::Result<()> {
        self.records.push(rec.clone());
        self.inner.record(rec)
    }
    fn finish(&mut self) -> std::io::Result<()> {
        self.inner.finish()
    }
    /// The report draws every segment, whatever the printer wants.
    fn wants_packets(&self) -> crate::types::PacketSel {
        crate::types::PacketSel::All
    }
}

/// Write, for every connection, `conn-N-ladder.svg` and one `conn-N-tsg-c2s.svg` /
/// `conn-N-tsg-s2c.svg` per direction that carried data, into `dir` (created if missing).
/// Returns the files written, in connection order.
pub fn write_svgs(records: &[Record], dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create the SVG folder {}: check the path and permissions",
            dir.display()
        )
    })?;
    let mut written = Vec::new();
    for v in model::group(records) {
        let mut files = vec![(format!("conn-{}-ladder.svg", v.id), ladder::standalone(&v))];
        for d in [Dir::C2s, Dir::S2c] {
            if tsg::has_data(&v, d) {
                let name = format!("conn-{}-tsg-{}.svg", v.id, d.as_str());
                files.push((name, tsg::render(&v, d, true).0));
            }
        }
        for (name, body) in files {
            let path = dir.join(name);
            std::fs::write(&path, body)
                .with_context(|| format!("cannot write {}", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}
