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
    /// What the records handed in leave out (see [`Collect::bounded`]), said on the page.
    pub left_out: LeftOut,
}

impl Default for HtmlOptions {
    fn default() -> Self {
        HtmlOptions {
            detail_limit: DETAIL_LIMIT,
            select: Vec::new(),
            lead: String::new(),
            labels: Default::default(),
            left_out: LeftOut::default(),
        }
    }
}

/// Connections drawn in full by default (the first ones by number).
const DETAIL_LIMIT: usize = 50;
/// Most `conn` records a bounded collection keeps for the connection table.
pub const TABLE_ROWS: u64 = 20_000;
/// Most packet records a bounded collection keeps for the diagrams, all connections together
/// (about 50 MB of records).
pub const DRAWN_PACKETS: u64 = 200_000;
/// Most `http` and `ws` records it keeps for the timelines.
pub const DRAWN_MESSAGES: u64 = 50_000;

/// What a bounded collection ([`Collect::bounded`]) did not keep, so the page can say so.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LeftOut {
    /// Connections past [`TABLE_ROWS`] not listed, and their segments and bytes.
    pub conns: u64,
    pub conn_packets: u64,
    pub conn_bytes: u64,
    /// Packet, `http` and `ws` records of connections not drawn (only counted).
    pub packets: u64,
    pub http: u64,
    pub ws: u64,
    /// Drawn connections whose segments were cut at [`DRAWN_PACKETS`]: segments left out.
    pub cut: std::collections::BTreeMap<u64, u64>,
}

impl LeftOut {
    pub fn is_empty(&self) -> bool {
        *self == LeftOut::default()
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
    collected: &Collect<'_>,
    title: &str,
) -> anyhow::Result<()> {
    let records = &collected.records;
    if let Some(path) = &out.html {
        let opts = HtmlOptions {
            select: out.conns.clone(),
            left_out: collected.left_out.clone(),
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
/// at the end of a run: of every record ([`Collect::new`], what `--svg` draws), or only of what
/// the HTML page draws ([`Collect::bounded`]), so its memory stays bounded for any capture.
pub struct Collect<'a> {
    pub inner: &'a mut dyn crate::output::Sink,
    pub records: Vec<Record>,
    /// `None`: keep everything.
    bound: Option<Bound>,
    pub left_out: LeftOut,
}

/// What a bounded collection keeps: the records of the drawn connections (the first
/// [`DETAIL_LIMIT`] and `--conn N`) up to [`DRAWN_PACKETS`] segments and [`DRAWN_MESSAGES`]
/// messages, and the first [`TABLE_ROWS`] `conn` records (plus the drawn ones').
struct Bound {
    select: Vec<u64>,
    rows: u64,
    packets: u64,
    messages: u64,
}

impl Bound {
    fn drawn(&self, conn: u64) -> bool {
        conn < DETAIL_LIMIT as u64 || self.select.contains(&conn)
    }
}

impl<'a> Collect<'a> {
    /// Keep every record.
    pub fn new(inner: &'a mut dyn crate::output::Sink) -> Self {
        Collect {
            inner,
            records: Vec::new(),
            bound: None,
            left_out: LeftOut::default(),
        }
    }

    /// Keep what the HTML report draws (`select`: the connections of `--conn N`), count the
    /// rest in [`Collect::left_out`].
    pub fn bounded(inner: &'a mut dyn crate::output::Sink, select: Vec<u64>) -> Self {
        Collect {
            bound: Some(Bound {
                select,
                rows: 0,
                packets: 0,
                messages: 0,
            }),
            ..Collect::new(inner)
        }
    }

    /// Whether to keep `rec`, counting it when not.
    fn keep(&mut self, rec: &Record) -> bool {
        let Some(b) = self.bound.as_mut() else {
            return true;
        };
        let left = &mut self.left_out;
        match rec {
            Record::Packet(p) if b.drawn(p.conn) => {
                if b.packets < DRAWN_PACKETS {
                    b.packets += 1;
                    return true;
                }
                *left.cut.entry(p.conn).or_default() += 1;
                false
            }
            Record::Packet(_) => {
                left.packets += 1;
                false
            }
            Record::Http(h) if b.drawn(h.conn) && b.messages < DRAWN_MESSAGES => {
                b.messages += 1;
                true
            }
            Record::Ws(w) if b.drawn(w.conn) && b.messages < DRAWN_MESSAGES => {
                b.messages += 1;
                true
            }
            Record::Http(_) => {
                left.http += 1;
                false
            }
            Record::Ws(_) => {
                left.ws += 1;
                false
            }
            // TLS records of drawn connections are kept like messages (one per connection, or
            // one per handshake message); the rest are not drawn.
            Record::Tls(t) => b.drawn(t.conn),
            Record::TlsMsg(m) if b.drawn(m.conn) && b.messages < DRAWN_MESSAGES => {
                b.messages += 1;
                true
            }
            // HTTP/2 frames of drawn connections likewise (their stream bands).
            Record::H2(h) if b.drawn(h.conn) && b.messages < DRAWN_MESSAGES => {
                b.messages += 1;
                true
            }
            Record::TlsMsg(_) | Record::H2(_) => false,
            Record::Conn(c) => {
                if b.rows < TABLE_ROWS || b.drawn(c.conn) {
                    b.rows += 1;
                    return true;
                }
                left.conns += 1;
                left.conn_packets += c.packets_c2s + c.packets_s2c;
                left.conn_bytes += c.bytes_c2s + c.bytes_s2c;
                false
            }
            Record::Lab(_) => true,
        }
    }
}

impl crate::output::Sink for Collect<'_> {
    fn record(&mut self, rec: &Record) -> std::io::Result<()> {
        if self.keep(rec) {
            self.records.push(rec.clone());
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ConnRec, PacketRec};

    struct Nowhere;
    impl crate::output::Sink for Nowhere {
        fn record(&mut self, _: &Record) -> std::io::Result<()> {
            Ok(())
        }
        fn finish(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// `conns` connections of `packets` segments each, as the engine would hand them over.
    fn feed(c: &mut Collect<'_>, conns: u64, packets: u64) {
        use crate::output::Sink;
        for conn in 0..conns {
            for frame in 0..packets {
                let p = PacketRec {
                    conn,
                    frame: conn * packets + frame + 1,
                    len: 10,
                    ..PacketRec::default()
                };
                c.record(&Record::Packet(p)).unwrap();
            }
            let rec = ConnRec {
                conn,
                packets_c2s: packets,
                bytes_c2s: 10 * packets,
                ..ConnRec::default()
            };
            c.record(&Record::Conn(rec)).unwrap();
        }
    }

    /// Only the drawn connections' segments are kept; the others are counted, the page says
    /// so and its totals still cover everything.
    #[test]
    fn a_bounded_collection_keeps_what_the_page_draws_and_says_what_it_left_out() {
        let mut sink = Nowhere;
        let mut c = Collect::bounded(&mut sink, vec![70]);
        feed(&mut c, 80, 3);
        let kept_packets = c
            .records
            .iter()
            .filter(|r| matches!(r, Record::Packet(_)))
            .count();
        // The first 50 connections and connection 70.
        assert_eq!(kept_packets, 51 * 3);
        assert_eq!(c.left_out.packets, 29 * 3);
        let opts = HtmlOptions {
            select: vec![70],
            left_out: c.left_out.clone(),
            ..HtmlOptions::default()
        };
        let page = render_html(&c.records, "t", &opts);
        assert!(page.contains("80 connections, 240 TCP segments"), "totals");
        assert!(page.contains(r#"id="left-out""#));
        assert!(page.contains("the 87 segments, 0 HTTP messages and 0 WebSocket frames"));
    }

    /// Control: an unbounded collection keeps everything and the page says nothing is left out.
    #[test]
    fn control_an_unbounded_collection_keeps_every_record() {
        let mut sink = Nowhere;
        let mut c = Collect::new(&mut sink);
        feed(&mut c, 80, 3);
        assert_eq!(c.records.len(), 80 * 4);
        assert!(c.left_out.is_empty());
        let page = render_html(&c.records, "t", &HtmlOptions::default());
        assert!(page.contains("80 connections, 240 TCP segments"));
        assert!(!page.contains(r#"id="left-out""#));
    }
}
