//! The ladder (sequence) diagram: client and server lifelines, one arrow per segment, and each
//! lifeline coloured and labelled with its endpoint's state as it changes.
//!
//! Rows have a fixed height rather than a time-proportional one (as Wireshark's flow graph):
//! a handshake and a stall both stay readable. [`Painter`] draws rows into an SVG fragment; the
//! standalone file is one fragment, the HTML report cuts the ladder at every fold so that a fold
//! can be swapped for its expanded rows in place (see `html.rs`).

use super::model::{analysis_label, fold_label, notable, seg_label, Band, ConnView, Mark, Row};
use super::svg::{esc, n, open_doc, secs, text_width};
use crate::record::{Dir, PacketRec};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Drawing width.
pub const WIDTH: f64 = 980.0;
/// The client's and the server's lifeline.
pub const CX: f64 = 270.0;
pub const SX: f64 = 850.0;
/// Where the time column starts (the frame column starts at 8).
pub const TX: f64 = 100.0;
/// Height of the header with the two endpoints' addresses.
pub const HEAD: f64 = 44.0;
/// Height of a row, and of one with a second line (analysis, HTTP, WebSocket).
pub const ROW: f64 = 26.0;
pub const ROW2: f64 = 40.0;
/// Height of an HTTP/2 stream band.
pub const BAND: f64 = 20.0;
/// Where the arrow starts and ends below the row's top (the slant suggests transit time).
pub const Y1: f64 = 12.0;
pub const Y2: f64 = 19.0;

/// The whole ladder as a standalone SVG document, folds shown condensed.
pub fn standalone(v: &ConnView<'_>) -> String {
    let rows = v.rows();
    let marks = v.marks();
    let mut p = Painter::new(v, &marks, HEAD, initial_states(v));
    for r in &rows {
        p.row(*r, false);
    }
    p.final_states();
    let (body, h) = p.finish();
    let mut out = String::with_capacity(body.len() + 4096);
    open_doc(&mut out, WIDTH, h + 8.0, "ladder");
    out.push_str(&head(v));
    out.push_str(&body);
    out.push_str("</svg>\n");
    out
}

/// The header: the two endpoints, centred over their lifelines.
pub fn head(v: &ConnView<'_>) -> String {
    let mut s = String::from(r#"<g class="head">"#);
    for (x, role, addr) in [(CX, "client", v.client()), (SX, "server", v.server())] {
        let text = format!("{role} {addr}");
        let w = text_width(&text) + 16.0;
        let _ = write!(
            s,
            r#"<rect x="{}" y="6" width="{}" height="24" rx="4"/><text x="{}" y="22" text-anchor="middle">{}</text>"#,
            n(x - w / 2.0),
            n(w),
            n(x),
            esc(&text)
        );
    }
    let _ = write!(
        s,
        r#"<text class="tm" x="8" y="40">frame</text><text class="tm" x="{}" y="40">time (s)</text></g>"#,
        n(TX)
    );
    s
}

/// The states before the first segment: the first packet's, which [`Painter`] then marks as a
/// change so both initial states are labelled.
pub fn initial_states(v: &ConnView<'_>) -> [String; 2] {
    match v.packets.first() {
        Some(p) => [p.client_state.to_string(), p.server_state.to_string()],
        None => match v.conn {
            Some(c) => [c.client_state.to_string(), c.server_state.to_string()],
            None => ["UNKNOWN".into(), "UNKNOWN".into()],
        },
    }
}

/// The endpoints' states after the last segment of `rows[..=k]`, for starting a new chunk.
pub fn states_after(v: &ConnView<'_>, row: Row) -> [String; 2] {
    let i = match row {
        Row::Seg(i) => i,
        Row::Fold { to, .. } => to - 1,
    };
    let p = v.packets[i];
    [p.client_state.to_string(), p.server_state.to_string()]
}

/// Draws rows top to bottom into one SVG fragment.
pub struct Painter<'a, 'v> {
    v: &'a ConnView<'v>,
    marks: &'a BTreeMap<usize, Vec<Mark>>,
    out: String,
    y: f64,
    /// Per endpoint: the state being drawn and where its lifeline stretch began.
    life: [(String, f64); 2],
    /// Arrows drawn, fold rows drawn.
    pub arrows: usize,
}

impl<'a, 'v> Painter<'a, 'v> {
    pub fn new(
        v: &'a ConnView<'v>,
        marks: &'a BTreeMap<usize, Vec<Mark>>,
        y0: f64,
        states: [String; 2],
    ) -> Self {
        let [c, s] = states;
        Painter {
            v,
            marks,
            out: String::new(),
            y: y0,
            life: [(c, y0), (s, y0)],
            arrows: 0,
        }
    }

    pub fn row(&mut self, r: Row, clickable: bool) {
        match r {
            Row::Seg(i) => self.seg(i),
            Row::Fold { from, to } => self.fold(from, to, clickable),
        }
    }

    fn seg(&mut self, i: usize) {
        let p = self.v.packets[i];
        let marks = self.marks.get(&i).map(Vec::as_slice).unwrap_or(&[]);
        let an = analysis_label(p);
        let tls = self.v.tls_states.get(&i);
        let second = !an.is_empty() || !marks.is_empty() || tls.is_some();
        let h = if second { ROW2 } else { ROW };
        let y = self.y;
        let (changed_c, changed_s) = self.v.state_changed(i);
        if changed_c || changed_s || i == 0 {
            self.change(0, &p.client_state, y + Y2, changed_c || i == 0);
            self.change(1, &p.server_state, y + Y2, changed_s || i == 0);
        }
        self.arrows += 1;
        let _ = write!(
            self.out,
            r#"<g class="arrow {}" data-frame="{}"><title>{}</title>"#,
            arrow_class(p),
            p.frame,
            esc(&tooltip(p, self.v.t0()))
        );
        self.out.push_str(&arrow_path(p.dir, y, &seg_label(p)));
        let mut line2 = Vec::new();
        if !an.is_empty() {
            // Routine window updates in grey, real events in red.
            line2.push((if notable(p) { "an" } else { "tm" }, an));
        }
        for m in marks {
            let arrow = if m.dir == Dir::C2s { "→" } else { "←" };
            line2.push((m.kind, format!("{arrow} {}", m.text)));
        }
        if !line2.is_empty() {
            let total: f64 = line2.iter().map(|(_, t)| text_width(t) + 12.0).sum();
            let mut x = (CX + SX) / 2.0 - total / 2.0;
            for (class, t) in line2 {
                let _ = write!(
                    self.out,
                    r#"<text class="{class}" x="{}" y="{}">{}</text>"#,
                    n(x),
                    n(y + Y2 + 14.0),
                    esc(&t)
                );
                x += text_width(&t) + 12.0;
            }
        }
        self.out.push_str("</g>");
        if let Some(tls) = tls {
            self.tls_labels(tls, p.frame, y + Y2 + 14.0);
        }
        time_col(&mut self.out, y, p.frame.to_string(), p.ts - self.v.t0());
        self.y += h;
        if let Some(bands) = self.v.bands.get(&i) {
            for b in bands {
                self.band(b);
            }
        }
    }

    /// The TLS handshake states that changed, beside each endpoint's lifeline.
    fn tls_labels(&mut self, tls: &[Option<String>; 2], frame: u64, y: f64) {
        for (e, label) in tls.iter().enumerate() {
            let Some(label) = label else { continue };
            // Inside the lifelines, on the row's second line: the page's width holds any label.
            let (x, anchor, ep) = if e == 0 {
                (CX + 8.0, "start", "client")
            } else {
                (SX - 8.0, "end", "server")
            };
            let _ = write!(
                self.out,
                r#"<text class="tls-st" data-ep="{ep}" data-frame="{frame}" x="{}" y="{}" text-anchor="{anchor}">TLS: {}</text>"#,
                n(x),
                n(y),
                esc(label)
            );
        }
    }

    /// One HTTP/2 stream's band: its frames in this segment, and its state at each end.
    fn band(&mut self, b: &Band) {
        let y = self.y;
        let _ = write!(
            self.out,
            r#"<g class="h2-lane lane-{}" data-stream="{}" data-frame="{}"><rect x="{}" y="{}" width="{}" height="{}" rx="3"/><text class="h2-st" data-ep="client" x="{}" y="{}">{}</text><text class="h2-fr" x="{}" y="{}" text-anchor="middle">stream {}: {}</text><text class="h2-st" data-ep="server" x="{}" y="{}" text-anchor="end">{}</text></g>"#,
            b.lane,
            b.stream,
            b.frame,
            n(CX + 6.0),
            n(y + 2.0),
            n(SX - CX - 12.0),
            n(BAND - 4.0),
            n(CX + 10.0),
            n(y + 14.0),
            esc(&b.client_state),
            n((CX + SX) / 2.0),
            n(y + 14.0),
            b.stream,
            esc(&b.frames),
            n(SX - 10.0),
            n(y + 14.0),
            esc(&b.server_state)
        );
        self.y += BAND;
    }

    fn fold(&mut self, from: usize, to: usize, clickable: bool) {
        let label = fold_label(&self.v.packets[from..to]);
        self.summary("fold-row", &label, from, to, clickable);
    }

    /// A row standing for packets `from..to`: a fold, or (HTML only) a section of rows.
    pub fn summary(&mut self, class: &str, label: &str, from: usize, to: usize, clickable: bool) {
        let pk = &self.v.packets[from..to];
        let y = self.y;
        let (first, last) = (pk[0], pk[pk.len() - 1]);
        let _ = write!(
            self.out,
            r#"<g class="{class}" data-n="{}"><title>frames {}–{}{}</title><rect x="{}" y="{}" width="{}" height="{}" rx="3"/><path d="M{} {}H{}M{} {}H{}"/><text x="{}" y="{}" text-anchor="middle">{}</text></g>"#,
            to - from,
            first.frame,
            last.frame,
            if clickable { ": click to expand" } else { "" },
            n(CX + 8.0),
            n(y + 3.0),
            n(SX - CX - 16.0),
            n(ROW - 6.0),
            n(CX + 6.0),
            n(y + 7.0),
            n(SX - 6.0),
            n(CX + 6.0),
            n(y + ROW - 7.0),
            n(SX - 6.0),
            n((CX + SX) / 2.0),
            n(y + 17.0),
            esc(label)
        );
        time_col(
            &mut self.out,
            y,
            format!("{}–{}", first.frame, last.frame),
            first.ts - self.v.t0(),
        );
        self.y += ROW;
    }

    /// The connection record's final states, when they differ from the last segment's (an idle
    /// eviction or end of capture decided them).
    pub fn final_states(&mut self) {
        let (Some(c), Some(p)) = (self.v.conn, self.v.packets.last()) else {
            return;
        };
        if c.client_state == p.client_state && c.server_state == p.server_state {
            return;
        }
        let y = self.y;
        self.change(0, &c.client_state, y + Y2, c.client_state != p.client_state);
        self.change(1, &c.server_state, y + Y2, c.server_state != p.server_state);
        let _ = write!(
            self.out,
            r#"<text class="tm" x="{}" y="{}" text-anchor="middle">end of records</text>"#,
            n((CX + SX) / 2.0),
            n(y + Y2 + 4.0)
        );
        self.y += ROW2;
    }

    /// Endpoint `e` is in `state` from `y` on; label it when `show`.
    fn change(&mut self, e: usize, state: &str, y: f64, show: bool) {
        let x = if e == 0 { CX } else { SX };
        if self.life[e].0 != state {
            let (old, y0) = std::mem::replace(&mut self.life[e], (state.to_string(), y));
            lifeline(&mut self.out, x, y0, y, &old);
        }
        if show {
            let w = text_width(state) + 10.0;
            let bx = if e == 0 { CX - 10.0 - w } else { SX + 10.0 };
            let _ = write!(
                self.out,
                r#"<g class="state"><rect class="st-{}" x="{}" y="{}" width="{}" height="17" rx="8"/><text class="st-{}" x="{}" y="{}">{}</text></g>"#,
                esc(state),
                n(bx),
                n(y - 9.0),
                n(w),
                esc(state),
                n(bx + 5.0),
                n(y + 3.5),
                esc(state)
            );
        }
    }

    /// Close both lifelines at the current height: the fragment and its height.
    pub fn finish(mut self) -> (String, f64) {
        for (e, x) in [(0, CX), (1, SX)] {
            let (st, y0) = self.life[e].clone();
            lifeline(&mut self.out, x, y0, self.y, &st);
        }
        // Lifelines were appended last: move them under the arrows by drawing them first.
        let (lines, rest): (Vec<&str>, Vec<&str>) = split_keep(&self.out);
        let mut s = String::with_capacity(self.out.len());
        for l in lines {
            s.push_str(l);
        }
        for r in rest {
            s.push_str(r);
        }
        (s, self.y)
    }
}

/// Split a fragment into its lifeline elements and everything else, each in order.
fn split_keep(s: &str) -> (Vec<&str>, Vec<&str>) {
    let mut lines = Vec::new();
    let mut rest = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match s[i..].find("<line class=\"life ") {
            Some(k) => {
                rest.push(&s[i..i + k]);
                let start = i + k;
                let end = start
                    + s[start..]
                        .find("/>")
                        .map(|e| e + 2)
                        .unwrap_or(s.len() - start);
                lines.push(&s[start..end]);
                i = end;
            }
            None => {
                rest.push(&s[i..]);
                break;
            }
        }
    }
    (lines, rest)
}

fn lifeline(out: &mut String, x: f64, y0: f64, y1: f64, state: &str) {
    if y1 <= y0 {
        return;
    }
    let _ = write!(
        out,
        r#"<line class="life st-{}" x1="{}" y1="{}" x2="{}" y2="{}"/>"#,
        esc(state),
        n(x),
        n(y0),
        n(x),
        n(y1)
    );
}

fn time_col(out: &mut String, y: f64, frame: String, t: f64) {
    let _ = write!(
        out,
        r#"<text class="tm" x="8" y="{}">{}</text><text class="tm" x="{}" y="{}">{}</text>"#,
        n(y + Y2),
        esc(&frame),
        n(TX),
        n(y + Y2),
        secs(t)
    );
}

/// The arrow with its head and the label above it. Shared with the page's expand script, which
/// draws the same shapes for folded rows.
pub fn arrow_path(dir: Dir, y: f64, label: &str) -> String {
    let (x1, x2, head) = match dir {
        Dir::C2s => (CX + 3.0, SX - 3.0, -1.0),
        Dir::S2c => (SX - 3.0, CX + 3.0, 1.0),
    };
    format!(
        r#"<path d="M{} {}L{} {}"/><path class="hd" d="M{} {}l{} -4l0 8z"/><text class="lb" x="{}" y="{}" text-anchor="middle">{}</text>"#,
        n(x1),
        n(y + Y1),
        n(x2),
        n(y + Y2),
        n(x2),
        n(y + Y2),
        n(head * 9.0),
        n((CX + SX) / 2.0),
        n(y + Y1 - 2.0),
        esc(label)
    )
}

fn arrow_class(p: &PacketRec) -> String {
    let mut c = p.dir.as_str().to_string();
    if p.flags.iter().any(|f| f == "RST") {
        c.push_str(" rst ctl");
    } else if p.flags.iter().any(|f| f == "SYN" || f == "FIN") {
        c.push_str(" ctl");
    }
    if notable(p) {
        c.push_str(" bad");
    }
    c
}

/// The hover text: everything the record says about the segment.
pub fn tooltip(p: &PacketRec, t0: f64) -> String {
    let mut s = format!(
        "frame {}  t={}  {} → {}\nseq_raw={}",
        p.frame,
        secs(p.ts - t0),
        p.src,
        p.dst,
        p.seq_raw
    );
    if let Some(a) = p.ack_raw {
        s.push_str(&format!(" ack_raw={a}"));
    }
    if let Some(b) = p.bytes_in_flight {
        s.push_str(&format!("\nbytes in flight {b}"));
    }
    if let Some(r) = p.ack_rtt {
        s.push_str(&format!(
            "\nACK RTT {:.3} ms (acks frame {})",
            r * 1e3,
            p.acks_frame.unwrap_or(0)
        ));
    }
    s.push_str(&format!(
        "\nclient {}  server {}",
        p.client_state, p.server_state
    ));
    for (k, w) in &p.why {
        s.push_str(&format!("\n{k}: {w}"));
    }
    if let Some(l) = &p.likely {
        s.push_str(&format!("\nlikely: {l}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::model::group;
    use super::*;
    use crate::record::Record;

    fn handshake() -> Vec<Record> {
        let mk = |frame, dir, flags: &[&str], c: &str, s: &str| {
            Record::Packet(PacketRec {
                frame,
                ts: 1.0 + frame as f64 * 1e-4,
                dir,
                flags: flags.iter().map(|f| f.to_string().into()).collect(),
                client_state: c.to_string().into(),
                server_state: s.to_string().into(),
                src: "10.0.0.1:5000".parse().unwrap(),
                dst: "10.0.0.2:80".parse().unwrap(),
                ..PacketRec::default()
            })
        };
        vec![
            mk(1, Dir::C2s, &["SYN"], "SYN_SENT", "LISTEN"),
            mk(2, Dir::S2c, &["SYN", "ACK"], "ESTABLISHED", "SYN_RECEIVED"),
            mk(3, Dir::C2s, &["ACK"], "ESTABLISHED", "ESTABLISHED"),
        ]
    }

    #[test]
    fn handshake_ladder_has_three_arrows_and_every_state() {
        let recs = handshake();
        let views = group(&recs);
        let svg = standalone(&views[0]);
        assert_eq!(svg.matches("<g class=\"arrow").count(), 3);
        for st in ["SYN_SENT", "LISTEN", "SYN_RECEIVED", "ESTABLISHED"] {
            assert!(svg.contains(&format!(">{st}</text>")), "{st} missing");
        }
        assert!(svg.contains("[SYN, ACK] Seq=0"));
        // Lifelines are drawn before (under) the first arrow.
        assert!(svg.find("class=\"life").unwrap() < svg.find("class=\"arrow").unwrap());
        assert!(svg.ends_with("</svg>\n"));
    }
}
