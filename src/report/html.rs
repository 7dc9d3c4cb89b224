//! The self-contained HTML page: the connection table, then per connection its ladder, its
//! time-sequence graphs and its timeline table.
//!
//! Nothing is fetched: styles and the small script are inline, and a Content-Security-Policy
//! forbids every network load, so the file opens the same offline. The script only expands
//! folded ladder runs (from the compact row data in `#folds`) and sections (`#sections`) and writes a self-check line
//! (`#selfcheck`) counting what the browser actually drew, which the tests read back.

use super::ladder::{self, Painter, CX, ROW, SX, TX, WIDTH, Y1, Y2};
use super::model::{
    analysis_label, group, human_bytes, seg_label, ConnView, Mark, Row, CONDENSE_ABOVE,
};
use super::svg::{esc, n, secs, CSS};
use super::{tsg, HtmlOptions};
use crate::record::{Dir, Record};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// Timelines with more rows than this start closed.
const OPEN_TIMELINE_ROWS: usize = 150;
/// Ladder rows the whole page may draw up front, shared among the drawn connections...
const PAGE_ROWS: usize = 4000;
/// ...within these bounds per connection.
const MIN_CONN_ROWS: usize = 80;
const MAX_CONN_ROWS: usize = 400;
/// Rows per collapsed section of a ladder longer than its share.
const SECTION_ROWS: usize = 200;

/// Build the page.
pub fn render(records: &[Record], title: &str, opts: &HtmlOptions) -> String {
    let views = group(records);
    let selected: BTreeSet<u64> = opts.select.iter().copied().collect();
    let detailed: BTreeSet<u64> = views
        .iter()
        .enumerate()
        .filter(|(k, v)| *k < opts.detail_limit || selected.contains(&v.id))
        .map(|(_, v)| v.id)
        .collect();
    let t_first = views.iter().map(|v| v.t0()).fold(f64::INFINITY, f64::min);
    let t_first = if t_first.is_finite() { t_first } else { 0.0 };

    let mut page = String::with_capacity(1 << 20);
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>{}</title>
<script>window.__errors=[];addEventListener('error',function(e){{__errors.push(String(e.message))}});addEventListener('securitypolicyviolation',function(e){{__errors.push('blocked '+e.blockedURI)}});</script>
<style>{PAGE_CSS}{CSS}</style></head><body>
<h1>{}</h1>
"#,
        esc(title),
        esc(title)
    );
    page.push_str(&opts.lead);
    summary(&mut page, records, &views, &opts.left_out);
    legend(&mut page);
    page.push_str("<h2>Connections</h2>\n");
    if detailed.len() < views.len() {
        let _ = write!(
            page,
            r#"<p class="note">Diagrams are drawn for {} of the {} connections (the first {} and any selected with <code>--conn N</code>), to keep the page quick to open. Select others with <code>--conn N</code>.</p>"#,
            detailed.len(),
            views.len(),
            opts.detail_limit
        );
    }
    // A long table scrolls in its own box, so the diagrams stay a short scroll away.
    let wrap = if views.len() > 25 { "conns-wrap" } else { "" };
    let _ = write!(page, r#"<div class="{wrap}">"#);
    conn_table(&mut page, &views, &detailed, t_first, &opts.labels);
    page.push_str("</div>\n");
    let budget = (PAGE_ROWS / detailed.len().max(1)).clamp(MIN_CONN_ROWS, MAX_CONN_ROWS);
    let mut folds = Vec::new();
    let mut sections = Vec::new();
    for v in views.iter().filter(|v| detailed.contains(&v.id)) {
        let label = opts.labels.get(&v.id).map(String::as_str);
        section(&mut page, v, label, budget, &mut folds, &mut sections);
    }
    page.push_str("<pre id=\"selfcheck\">selfcheck pending</pre>\n");
    // The expand data stays inert text until the first click: the page opens without
    // compiling megabytes of script.
    page.push_str("<script type=\"application/json\" id=\"folds\">");
    page.push_str(&script_safe(
        &serde_json::to_string(&folds).unwrap_or_else(|_| "[]".into()),
    ));
    page.push_str("</script>\n<script type=\"application/json\" id=\"sections\">");
    page.push_str(&script_safe(
        &serde_json::to_string(&sections).unwrap_or_else(|_| "[]".into()),
    ));
    page.push_str("</script>\n<script>");
    let _ = write!(
        page,
        "\nconst CX={},SX={},TX={},ROW={},Y1={},Y2={},W={};\n",
        n(CX),
        n(SX),
        n(TX),
        n(ROW),
        n(Y1),
        n(Y2),
        n(WIDTH)
    );
    page.push_str(SCRIPT);
    page.push_str("</script>\n</body></html>\n");
    page
}

/// JSON inside `<script>`: `</` would end the element early.
fn script_safe(json: &str) -> String {
    json.replace("</", "<\\/")
}

fn summary(page: &mut String, records: &[Record], views: &[ConnView<'_>], left: &super::LeftOut) {
    let (mut pk, mut http, mut ws) = (0, 0, 0);
    for r in records {
        match r {
            Record::Packet(_) => pk += 1,
            Record::Http(_) => http += 1,
            Record::Ws(_) => ws += 1,
            _ => {}
        }
    }
    let cut: u64 = left.cut.values().sum();
    let _ = writeln!(
        page,
        r#"<p class="sum">{} connections, {} TCP segments, {} HTTP messages, {} WebSocket frames. Made by statescope {} from its records alone.</p>"#,
        views.len() as u64 + left.conns,
        pk + left.packets + cut,
        http + left.http,
        ws + left.ws,
        env!("CARGO_PKG_VERSION")
    );
    if left.is_empty() {
        return;
    }
    // Said, so that nothing on the page pretends to be the whole capture.
    let mut parts = Vec::new();
    if left.conns > 0 {
        parts.push(format!(
            "{} connections are not listed in the table (only the first {}; together they carried {} segments and {} bytes)",
            left.conns,
            super::TABLE_ROWS,
            left.conn_packets,
            left.conn_bytes
        ));
    }
    if left.packets + left.http + left.ws > 0 {
        parts.push(format!(
            "the {} segments, {} HTTP messages and {} WebSocket frames of connections not drawn were counted, not kept",
            left.packets, left.http, left.ws
        ));
    }
    for (conn, n) in &left.cut {
        parts.push(format!(
            "connection {conn}'s last {n} segments are not drawn (the page keeps {} segments in all)",
            super::DRAWN_PACKETS
        ));
    }
    let _ = writeln!(
        page,
        r#"<p class="note" id="left-out">To keep this page (and the memory making it) bounded: {}.</p>"#,
        esc(&parts.join("; "))
    );
}

fn legend(page: &mut String) {
    page.push_str(r#"<p class="legend">Endpoint states: "#);
    for st in [
        "LISTEN",
        "SYN_SENT",
        "SYN_RECEIVED",
        "ESTABLISHED",
        "FIN_WAIT_1",
        "CLOSE_WAIT",
        "LAST_ACK",
        "TIME_WAIT",
        "CLOSED",
        "UNKNOWN",
    ] {
        let _ = write!(page, r#"<span class="sw st-{st}">{st}</span> "#);
    }
    page.push_str(
        "· arrows: <span class=\"k c2s\">client → server</span> <span class=\"k s2c\">server → client</span> <span class=\"k bad\">analysis event</span></p>\n",
    );
}

fn conn_table(
    page: &mut String,
    views: &[ConnView<'_>],
    detailed: &BTreeSet<u64>,
    t0: f64,
    labels: &BTreeMap<u64, String>,
) {
    page.push_str(
        "<table class=\"conns\"><thead><tr><th>conn</th><th>client</th><th>server</th><th>start (s)</th><th>duration (s)</th><th>segments →/←</th><th>bytes →/←</th><th>client state</th><th>server state</th><th>conn_state</th><th>history</th><th>HTTP req/resp</th><th>WS frames</th><th>analysis</th></tr></thead><tbody>\n",
    );
    for v in views {
        let id = if detailed.contains(&v.id) {
            format!(r##"<a href="#conn-{0}">{0}</a>"##, v.id)
        } else {
            v.id.to_string()
        };
        let id = match labels.get(&v.id) {
            Some(l) => format!(r#"{id}<div class="step">{}</div>"#, esc(l)),
            None => id,
        };
        let (seg, bytes, dur) = match v.conn {
            Some(c) => (
                format!("{}/{}", c.packets_c2s, c.packets_s2c),
                format!("{}/{}", c.bytes_c2s, c.bytes_s2c),
                c.last_ts - c.first_ts,
            ),
            None => {
                let mut s = [0u64; 2];
                let mut b = [0u64; 2];
                for p in &v.packets {
                    s[p.dir.idx()] += 1;
                    b[p.dir.idx()] += p.len as u64;
                }
                let d = v.packets.last().map(|p| p.ts - v.t0()).unwrap_or(0.0);
                (
                    format!("{}/{}", s[0], s[1]),
                    format!("{}/{}", b[0], b[1]),
                    d,
                )
            }
        };
        let (cs, ss, zs, hist, req, ws, an) = match v.conn {
            Some(c) => (
                c.client_state.as_ref(),
                c.server_state.as_ref(),
                c.conn_state.as_ref(),
                c.history.as_str(),
                format!("{}/{}", c.http_requests, c.http_responses),
                c.ws_frames.to_string(),
                c.analysis_counts
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            None => {
                let last = v.packets.last();
                (
                    last.map(|p| p.client_state.as_ref()).unwrap_or("?"),
                    last.map(|p| p.server_state.as_ref()).unwrap_or("?"),
                    "—",
                    "—",
                    format!("{}/—", v.http.iter().filter(|h| h.dir == Dir::C2s).count()),
                    v.ws.len().to_string(),
                    "(no conn record)".to_string(),
                )
            }
        };
        let _ = writeln!(
            page,
            r#"<tr><td>{id}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{seg}</td><td>{bytes}</td><td><span class="sw st-{}">{}</span></td><td><span class="sw st-{}">{}</span></td><td>{}</td><td>{}</td><td>{req}</td><td>{ws}</td><td>{}</td></tr>"#,
            esc(&v.client()),
            esc(&v.server()),
            secs(v.t0() - t0),
            secs(dur),
            esc(cs),
            esc(cs),
            esc(ss),
            esc(ss),
            esc(zs),
            esc(hist),
            esc(&an)
        );
    }
    page.push_str("</tbody></table>\n");
}

/// One folded run for the expand script: its endpoints' states and compact rows
/// `[frame, time, dir (0 c2s, 1 s2c), label]`.
#[derive(serde::Serialize)]
struct Fold {
    c: String,
    s: String,
    r: Vec<(u64, String, u8, String)>,
}

fn section(
    page: &mut String,
    v: &ConnView<'_>,
    label: Option<&str>,
    budget: usize,
    folds: &mut Vec<Fold>,
    sections: &mut Vec<String>,
) {
    let _ = write!(
        page,
        r#"<section class="conn" id="conn-{}"><h2>Connection {}: {} → {}</h2>"#,
        v.id,
        v.id,
        esc(&v.client()),
        esc(&v.server())
    );
    if let Some(l) = label {
        let _ = write!(page, r#"<p class="step">Lab step: {}</p>"#, esc(l));
    }
    if let Some(c) = v.conn {
        let mut facts = format!(
            "final states: client <b>{}</b>, server <b>{}</b> · Zeek conn_state {} history {} · {} segments, {} bytes →, {} bytes ←",
            esc(&c.client_state),
            esc(&c.server_state),
            esc(&c.conn_state),
            esc(&c.history),
            c.packets_c2s + c.packets_s2c,
            c.bytes_c2s,
            c.bytes_s2c
        );
        // Wireshark times a refused SYN's RST too; a handshake RTT needs a SYN-ACK (Zeek's `h`).
        if let Some(r) = c.initial_rtt.filter(|_| c.history.contains('h')) {
            facts.push_str(&format!(" · handshake RTT {:.3} ms", r * 1e3));
        }
        if c.gap_bytes > 0 {
            facts.push_str(&format!(" · {} bytes never captured", c.gap_bytes));
        }
        for d in &c.diagnostics {
            facts.push_str(&format!(" · {}", esc(d)));
        }
        let _ = write!(page, r#"<p class="facts">{facts}</p>"#);
    }
    let rows = v.rows();
    let marks = v.marks();
    if v.packets.is_empty() {
        page.push_str(r#"<p class="note">No packet records for this connection, so nothing to draw (were they filtered out before the report?).</p></section>"#);
        return;
    }
    if v.packets.len() > CONDENSE_ABOVE && rows.len() < v.packets.len() {
        let _ = write!(
            page,
            r#"<p class="note">{} segments drawn as {} rows: runs of ordinary segments (no flags but ACK/PSH, no analysis event, no state change, no HTTP or WebSocket message) are folded; click a fold to expand it.</p>"#,
            v.packets.len(),
            rows.len()
        );
    }
    if v.h2_streams > 0 {
        let mut note = format!(
            "HTTP/2: {} stream{}, each drawn as a band under the segments that carry its frames, with the stream's state at the client (left) and at the server (right) after them",
            v.h2_streams,
            if v.h2_streams == 1 { "" } else { "s" }
        );
        if v.h2_streams_more > 0 {
            note.push_str(&format!(
                "; the first {} drawn, {} more not drawn",
                super::model::MAX_LANES,
                v.h2_streams_more
            ));
        }
        if v.bands_more > 0 {
            note.push_str(&format!(
                "; {} more bands not drawn (at most {} per connection)",
                v.bands_more,
                super::model::MAX_BANDS
            ));
        }
        let _ = write!(page, r#"<p class="note h2-note">{}.</p>"#, esc(&note));
    }
    if !v.tls_states.is_empty() {
        page.push_str(r#"<p class="note tls-note">TLS: each endpoint's handshake state, as the handshake messages seen show it, is written beside its lifeline where it changes.</p>"#);
    }
    let _ = write!(
        page,
        r#"<h3>Ladder</h3><div class="ladder" data-conn="{}" data-packets="{}">"#,
        v.id,
        v.packets.len()
    );
    let _ = write!(
        page,
        r#"<svg class="lad" width="{}" height="{}" viewBox="0 0 {} {}">{}</svg>"#,
        n(WIDTH),
        n(ladder::HEAD),
        n(WIDTH),
        n(ladder::HEAD),
        ladder::head(v)
    );
    if rows.len() <= budget {
        page.push_str(&ladder_range(v, &rows, 0, rows.len(), &marks, folds));
    } else {
        // Too long even folded: the start and the end drawn, the middle in sections of rows
        // whose markup waits in #sections until clicked.
        let (head, tail) = (budget * 3 / 4, budget / 4);
        page.push_str(&ladder_range(v, &rows, 0, head, &marks, folds));
        let mut a = head;
        while a < rows.len() - tail {
            let b = (a + SECTION_ROWS).min(rows.len() - tail);
            let (from, to) = (first_packet(rows[a]), last_packet(rows[b - 1]) + 1);
            let label = section_label(v, from, to, b - a);
            let mut p = Painter::new(v, &marks, 0.0, ladder::states_after(v, rows[a]));
            p.summary("sect-row", &label, from, to, true);
            let (body, h) = p.finish();
            let _ = write!(
                page,
                r#"<div class="sect" data-sect="{}" data-n="{}">{}</div>"#,
                sections.len(),
                to - from,
                svg_chunk(&body, h)
            );
            sections.push(ladder_range(v, &rows, a, b, &marks, folds));
            a = b;
        }
        page.push_str(&ladder_range(
            v,
            &rows,
            rows.len() - tail,
            rows.len(),
            &marks,
            folds,
        ));
    }
    page.push_str("</div>\n");

    let dirs: Vec<Dir> = [Dir::C2s, Dir::S2c]
        .into_iter()
        .filter(|d| tsg::has_data(v, *d))
        .collect();
    if !dirs.is_empty() {
        page.push_str("<h3>Time-sequence graph</h3>");
        for d in dirs {
            page.push_str(&tsg::render(v, d, false).0);
        }
    }
    timeline(page, v, &rows, &marks, budget);
    page.push_str("</section>\n");
}

/// The ladder markup of `rows[a..b]`: plain stretches as one SVG each, every fold its own
/// clickable SVG (its rows go to `folds` for the expand script). The final states are drawn
/// when the range reaches the end.
fn ladder_range(
    v: &ConnView<'_>,
    rows: &[Row],
    a: usize,
    b: usize,
    marks: &BTreeMap<usize, Vec<Mark>>,
    folds: &mut Vec<Fold>,
) -> String {
    let mut out = String::new();
    let mut states = match a.checked_sub(1) {
        Some(k) => ladder::states_after(v, rows[k]),
        None => ladder::initial_states(v),
    };
    let mut k = a;
    while k < b {
        if let Row::Fold { from, to } = rows[k] {
            let mut p = Painter::new(v, marks, 0.0, states.clone());
            p.row(rows[k], true);
            let (body, h) = p.finish();
            let _ = write!(
                out,
                r#"<div class="fold" data-fold="{}" data-n="{}">{}</div>"#,
                folds.len(),
                to - from,
                svg_chunk(&body, h)
            );
            folds.push(fold_data(v, from, to));
            states = ladder::states_after(v, rows[k]);
            k += 1;
            continue;
        }
        let mut p = Painter::new(v, marks, 0.0, states.clone());
        while k < b && matches!(rows[k], Row::Seg(_)) {
            p.row(rows[k], false);
            states = ladder::states_after(v, rows[k]);
            k += 1;
        }
        if k == rows.len() {
            p.final_states();
        }
        let (body, h) = p.finish();
        out.push_str(&svg_chunk(&body, h));
    }
    if b == rows.len() && matches!(rows.last(), Some(Row::Fold { .. })) {
        let mut p = Painter::new(v, marks, 0.0, states);
        p.final_states();
        let (body, h) = p.finish();
        if h > 0.0 {
            out.push_str(&svg_chunk(&body, h));
        }
    }
    out
}

fn first_packet(r: Row) -> usize {
    match r {
        Row::Seg(i) => i,
        Row::Fold { from, .. } => from,
    }
}

fn last_packet(r: Row) -> usize {
    match r {
        Row::Seg(i) => i,
        Row::Fold { to, .. } => to - 1,
    }
}

/// `▸ 1893 segments in 200 rows: 40 dup_ack, 12 retransmission …`
fn section_label(v: &ConnView<'_>, from: usize, to: usize, rows: usize) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for p in &v.packets[from..to] {
        // Window updates are routine while a receiver drains; they would crowd out the rest.
        for a in p.analysis.iter().filter(|a| *a != "window_update") {
            *counts.entry(a.as_ref()).or_default() += 1;
        }
    }
    let mut counts: Vec<(&str, usize)> = counts.into_iter().collect();
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    let events: Vec<String> = counts
        .iter()
        .take(3)
        .map(|(k, n)| format!("{n} {k}"))
        .collect();
    let mut s = format!("▸ {} segments in {rows} rows", to - from);
    if !events.is_empty() {
        s.push_str(&format!(": {}", events.join(", ")));
        if counts.len() > 3 {
            s.push_str(", …");
        }
    }
    s
}

fn svg_chunk(body: &str, h: f64) -> String {
    format!(
        r#"<svg class="lad" width="{}" height="{}" viewBox="0 0 {} {}">{body}</svg>"#,
        n(WIDTH),
        n(h),
        n(WIDTH),
        n(h)
    )
}

fn fold_data(v: &ConnView<'_>, from: usize, to: usize) -> Fold {
    let first = v.packets[from];
    let t0 = v.t0();
    Fold {
        c: first.client_state.to_string(),
        s: first.server_state.to_string(),
        r: v.packets[from..to]
            .iter()
            .map(|p| {
                let mut label = seg_label(p);
                let an = analysis_label(p);
                if !an.is_empty() {
                    label.push_str(&format!(" ({an})"));
                }
                (p.frame, secs(p.ts - t0), p.dir.idx() as u8, label)
            })
            .collect(),
    }
}

fn timeline(
    page: &mut String,
    v: &ConnView<'_>,
    rows: &[Row],
    marks: &BTreeMap<usize, Vec<Mark>>,
    budget: usize,
) {
    let open = if rows.len() <= OPEN_TIMELINE_ROWS {
        " open"
    } else {
        ""
    };
    let _ = write!(
        page,
        "<details class=\"timeline\"{open}><summary>Timeline ({} rows)</summary><table><thead><tr><th>frame</th><th>time (s)</th><th>dir</th><th>flags</th><th>seq</th><th>ack</th><th>len</th><th>win</th><th>analysis</th><th>client</th><th>server</th><th>HTTP / WebSocket</th></tr></thead><tbody>",
        rows.len()
    );
    let t0 = v.t0();
    let (head, tail) = (budget * 3 / 4, budget / 4);
    for (k, r) in rows.iter().enumerate() {
        if rows.len() > budget && k >= head && k < rows.len() - tail {
            if k == head {
                let (from, to) = (first_packet(*r), last_packet(rows[rows.len() - tail - 1]));
                let _ = write!(
                    page,
                    r#"<tr class="foldrow"><td>{}–{}</td><td>{}</td><td colspan="10">… {} rows ({} segments) not listed here; expand the sections in the ladder …</td></tr>"#,
                    v.packets[from].frame,
                    v.packets[to].frame,
                    secs(v.packets[from].ts - t0),
                    rows.len() - head - tail,
                    to + 1 - from
                );
            }
            continue;
        }
        match *r {
            Row::Seg(i) => {
                let p = v.packets[i];
                let (cc, sc) = v.state_changed(i);
                let chg = |c: bool| if c { " class=\"chg\"" } else { "" };
                let msgs: Vec<String> = marks
                    .get(&i)
                    .map(|ms| ms.iter().map(|m| esc(&m.text)).collect())
                    .unwrap_or_default();
                let _ = write!(
                    page,
                    r#"<tr class="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="an">{}</td><td{}>{}</td><td{}>{}</td><td>{}</td></tr>"#,
                    p.dir.as_str(),
                    p.frame,
                    secs(p.ts - t0),
                    if p.dir == Dir::C2s { "→" } else { "←" },
                    esc(&p.flags.join(",")),
                    p.seq,
                    p.ack.map(|a| a.to_string()).unwrap_or_default(),
                    p.len,
                    p.win,
                    esc(&analysis_label(p)),
                    chg(cc),
                    esc(&p.client_state),
                    chg(sc),
                    esc(&p.server_state),
                    msgs.join("<br>")
                );
            }
            Row::Fold { from, to } => {
                let pk = &v.packets[from..to];
                let bytes: u64 = pk.iter().map(|p| p.len as u64).sum();
                let _ = write!(
                    page,
                    r#"<tr class="foldrow"><td>{}–{}</td><td>{}</td><td colspan="10">… {} similar segments, {} of payload (expand the fold in the ladder to see each) …</td></tr>"#,
                    pk[0].frame,
                    pk[pk.len() - 1].frame,
                    secs(pk[0].ts - t0),
                    pk.len(),
                    human_bytes(bytes)
                );
            }
        }
    }
    page.push_str("</tbody></table></details>\n");
}

const PAGE_CSS: &str = r#"
body{font:14px system-ui,sans-serif;margin:16px 24px;color:#222;background:#fafafa}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}h3{font-size:14px;margin:14px 0 6px}
table{border-collapse:collapse;font:12px ui-monospace,Menlo,Consolas,monospace;background:#fff}
th,td{border:1px solid #e0e0e0;padding:2px 6px;text-align:left;white-space:nowrap}
th{background:#eceff1;position:sticky;top:0}
table.conns{margin-bottom:8px}
.conns-wrap{max-height:420px;overflow:auto;display:inline-block;border:1px solid #e0e0e0}
.note{color:#555;font-style:italic}
.sum,.facts{color:#333}
section.conn{border-top:2px solid #cfd8dc;margin-top:24px}
.ladder{background:#fff;border:1px solid #e0e0e0;display:inline-block;line-height:0}
.ladder svg{display:block}
.fold,.sect{cursor:pointer}.fold:hover rect,.sect:hover rect{fill:#e3f2fd}
svg.tsg{display:block;background:#fff;border:1px solid #e0e0e0;margin-bottom:8px}
.sw{display:inline-block;padding:0 6px;border-radius:8px;border:1.5px solid;font:bold 11px ui-monospace,monospace;background:#fff}
.sw.st-ESTABLISHED{color:#2e7d32}.sw.st-SYN_SENT,.sw.st-SYN_RECEIVED{color:#f9a825}.sw.st-LISTEN{color:#1565c0}
.sw.st-FIN_WAIT_1,.sw.st-FIN_WAIT_2,.sw.st-CLOSING{color:#ef6c00}.sw.st-CLOSE_WAIT,.sw.st-LAST_ACK{color:#8e24aa}
.sw.st-TIME_WAIT{color:#6d4c41}.sw.st-CLOSED{color:#616161}.sw.st-UNKNOWN{color:#9e9e9e}
.k{font-weight:bold}.k.c2s{color:#1e63b5}.k.s2c{color:#0b7a5e}.k.bad{color:#d32f2f}
tr.s2c td{background:#f3faf7}td.an{color:#c62828}td.chg{font-weight:bold;background:#fff8e1}
tr.foldrow td{color:#607d8b;font-style:italic;background:#f5f7f8}
#selfcheck{color:#999;font-size:11px}
"#;

/// Expanding folds, and the self-check the tests read with `chromium --dump-dom`.
const SCRIPT: &str = r#"
function esc(s){return String(s).replace(/[&<>"']/g,function(c){return '&#'+c.charCodeAt(0)+';'})}
function foldSvg(f){
  var h=f.r.length*ROW, s='<svg class="lad" width="'+W+'" height="'+h+'" viewBox="0 0 '+W+' '+h+'">';
  s+='<line class="life st-'+esc(f.c)+'" x1="'+CX+'" y1="0" x2="'+CX+'" y2="'+h+'"/>';
  s+='<line class="life st-'+esc(f.s)+'" x1="'+SX+'" y1="0" x2="'+SX+'" y2="'+h+'"/>';
  for(var k=0;k<f.r.length;k++){
    var r=f.r[k], y=k*ROW, c2s=r[2]===0;
    var x1=c2s?CX+3:SX-3, x2=c2s?SX-3:CX+3, hd=c2s?-9:9;
    s+='<g class="arrow '+(c2s?'c2s':'s2c')+'" data-frame="'+r[0]+'"><title>frame '+r[0]+'</title>'
      +'<path d="M'+x1+' '+(y+Y1)+'L'+x2+' '+(y+Y2)+'"/>'
      +'<path class="hd" d="M'+x2+' '+(y+Y2)+'l'+hd+' -4l0 8z"/>'
      +'<text class="lb" x="'+((CX+SX)/2)+'" y="'+(y+Y1-2)+'" text-anchor="middle">'+esc(r[3])+'</text></g>'
      +'<text class="tm" x="8" y="'+(y+Y2)+'">'+r[0]+'</text><text class="tm" x="'+TX+'" y="'+(y+Y2)+'">'+esc(r[1])+'</text>';
  }
  return s+'</svg>';
}
var cache={};
function data(id){return cache[id]||(cache[id]=JSON.parse(document.getElementById(id).textContent))}
function expand(div){
  var w=document.createElement('div');
  if(div.classList.contains('sect'))w.innerHTML=data('sections')[+div.getAttribute('data-sect')];
  else w.innerHTML=foldSvg(data('folds')[+div.getAttribute('data-fold')]);
  div.replaceWith.apply(div,Array.prototype.slice.call(w.childNodes));
}
document.addEventListener('click',function(e){
  var d=e.target.closest&&e.target.closest('.fold,.sect');
  if(d)expand(d);
});
(function selfcheck(){
  var t=performance.now();
  function all(q,root){return Array.prototype.slice.call((root||document).querySelectorAll(q))}
  var arrows=all('.ladder g.arrow').length, folds=all('.ladder .fold');
  function sum(l){return l.reduce(function(a,f){return a+(+f.getAttribute('data-n'))},0)}
  var folded=sum(folds), sects=all('.ladder .sect'), sectioned=sum(sects);
  var points=all('svg.tsg path.pts').reduce(function(a,p){return a+((p.getAttribute('d')||'').match(/V/g)||[]).length},0);
  // Expand every section and fold of up to three condensed ladders (of moderate size) in
  // detached copies: each must give back one arrow per segment.
  var checked=0, ok=0;
  all('.ladder').forEach(function(l){
    if(checked>=3||!l.querySelector('.fold,.sect')||+l.getAttribute('data-packets')>20000)return;
    checked++;
    var w=document.createElement('div');w.appendChild(l.cloneNode(true));
    all('.sect',w).forEach(expand);
    all('.fold',w).forEach(expand);
    if(all('g.arrow',w).length===+l.getAttribute('data-packets'))ok++;
  });
  var tlsLabels=all('.ladder text.tls-st').length, bands=all('.ladder g.h2-lane'), lanes=0, stated=0;
  all('.ladder').forEach(function(l){
    var seen={};
    all('g.h2-lane',l).forEach(function(b){seen[b.getAttribute('data-stream')]=1});
    lanes+=Object.keys(seen).length;
  });
  bands.forEach(function(b){
    var st=all('text.h2-st',b).map(function(t){return t.textContent});
    if(st.length===2&&st.every(function(x){return x&&x!=='unknown'}))stated++;
  });
  var drawnH=all('.ladder').reduce(function(a,l){return a+l.getBoundingClientRect().height},0);
  document.getElementById('selfcheck').textContent=
    'conns='+all('table.conns tbody tr').length+' ladders='+all('.ladder').length
    +' arrows='+arrows+' folds='+folds.length+' folded='+folded+' sections='+sects.length+' sectioned='+sectioned
    +' tsgs='+all('svg.tsg').length+' points='+points
    +' tls_labels='+tlsLabels+' h2_bands='+bands.length+' h2_lanes='+lanes+' h2_stated='+stated
    +' expand_ok='+ok+'/'+checked+' ladder_px='+Math.round(drawnH)
    +' parse_ms='+Math.round(t)+' check_ms='+Math.round(performance.now()-t)
    +' errors='+__errors.length+(__errors.length?' first_error='+__errors[0]:'');
})();
"#;
