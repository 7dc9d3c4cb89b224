//! The time-sequence graph of one direction, as Wireshark's "tcptrace" graph draws it: each
//! data segment an I-bar from its first to its last sequence number over its capture time; the
//! other side's ACK as a step line, the ACK plus its advertised window as a second one above it.
//! Retransmissions and out-of-order segments are coloured, duplicate ACKs ticked and zero windows
//! crossed. Long transfers are thinned per pixel column so a graph never holds more than a few
//! thousand marks.

use super::model::ConnView;
use super::svg::{esc, human_bytes_axis, n, open_doc, secs, tick_step};
use crate::record::Dir;
use std::fmt::Write;

pub const WIDTH: f64 = 980.0;
pub const HEIGHT: f64 = 340.0;
const L: f64 = 84.0;
const R: f64 = 24.0;
const T: f64 = 40.0;
const B: f64 = 36.0;
/// Above this many data segments the graph keeps, per pixel column, the lowest and highest.
pub const MAX_POINTS: usize = 2000;

/// Sequence numbers unwrapped to 64 bits, so a transfer past 4 GiB keeps climbing.
#[derive(Default)]
struct Unwrap {
    last: Option<u32>,
    base: u64,
}

impl Unwrap {
    fn get(&mut self, v: u32) -> u64 {
        let Some(last) = self.last else {
            self.last = Some(v);
            return v as u64;
        };
        let fwd = v.wrapping_sub(last);
        if fwd < 1 << 31 {
            if v < last {
                self.base += 1 << 32;
            }
            self.last = Some(v);
            self.base + v as u64
        } else {
            // An older number (a retransmission): behind the current one, maybe across a wrap.
            let back = last.wrapping_sub(v) as u64;
            (self.base + last as u64).saturating_sub(back)
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Normal,
    Retx,
    Ooo,
}

struct Seg {
    t: f64,
    lo: u64,
    hi: u64,
    kind: Kind,
}

struct AckPt {
    t: f64,
    ack: u64,
    win_edge: u64,
    dup: bool,
    zero: bool,
}

/// Does direction `dir` carry anything to draw (payload, SYN or FIN)?
pub fn has_data(v: &ConnView<'_>, dir: Dir) -> bool {
    v.packets.iter().any(|p| p.dir == dir && occupies(p))
}

fn occupies(p: &crate::record::PacketRec) -> bool {
    p.len > 0 || p.flags.iter().any(|f| f == "SYN" || f == "FIN")
}

/// The graph for `dir`'s data as an SVG document; `standalone` adds the XML namespace and
/// stylesheet. Returns the SVG and the number of data marks drawn.
pub fn render(v: &ConnView<'_>, dir: Dir, standalone: bool) -> (String, usize) {
    let t0 = v.t0();
    let mut segs = Vec::new();
    let mut acks = Vec::new();
    let (mut useq, mut uack) = (Unwrap::default(), Unwrap::default());
    for p in &v.packets {
        if p.dir == dir && occupies(p) {
            let lo = useq.get(p.seq);
            let span = p.len as u64 + p.flags.iter().any(|f| f == "SYN" || f == "FIN") as u64;
            let kind = if p.analysis.iter().any(|a| a.contains("retransmission")) {
                Kind::Retx
            } else if p.analysis.iter().any(|a| a == "out_of_order") {
                Kind::Ooo
            } else {
                Kind::Normal
            };
            segs.push(Seg {
                t: p.ts - t0,
                lo,
                hi: lo + span.max(1),
                kind,
            });
        } else if p.dir != dir {
            if let Some(a) = p.ack {
                let ack = uack.get(a);
                acks.push(AckPt {
                    t: p.ts - t0,
                    ack,
                    win_edge: ack + p.win,
                    dup: p.analysis.iter().any(|x| x == "dup_ack"),
                    zero: p.analysis.iter().any(|x| x == "zero_window"),
                });
            }
        }
    }
    let tmax = v.packets.last().map(|p| p.ts - t0).unwrap_or(0.0).max(1e-6);
    let ylo = segs
        .iter()
        .map(|s| s.lo)
        .chain(acks.iter().map(|a| a.ack))
        .min()
        .unwrap_or(0);
    let data_hi = segs
        .iter()
        .map(|s| s.hi)
        .chain(acks.iter().map(|a| a.ack))
        .max()
        .unwrap_or(1)
        .max(ylo + 1);
    // Let the window line show, but not squash the data when the window dwarfs the transfer.
    let win_hi = acks.iter().map(|a| a.win_edge).max().unwrap_or(data_hi);
    let yhi = win_hi.min(data_hi + (data_hi - ylo) / 4).max(data_hi);

    let pw = WIDTH - L - R;
    let ph = HEIGHT - T - B;
    let xs = |t: f64| L + (t / tmax) * pw;
    let ys = |s: u64| T + ph - ((s.saturating_sub(ylo)) as f64 / (yhi - ylo) as f64) * ph;

    let mut out = String::new();
    if standalone {
        open_doc(&mut out, WIDTH, HEIGHT, "tsg");
    } else {
        let _ = write!(
            out,
            r#"<svg class="tsg" width="{}" height="{}" viewBox="0 0 {} {}">"#,
            n(WIDTH),
            n(HEIGHT),
            n(WIDTH),
            n(HEIGHT)
        );
    }
    let (from, to) = match dir {
        Dir::C2s => (v.client(), v.server()),
        Dir::S2c => (v.server(), v.client()),
    };
    let _ = write!(
        out,
        r#"<text class="title" x="{}" y="16">conn {} {}: sequence numbers of {} → {} over time</text>"#,
        n(L),
        v.id,
        dir.as_str(),
        esc(&from),
        esc(&to)
    );
    legend(&mut out);
    axes(&mut out, tmax, ylo, yhi, &xs, &ys);
    let clip = format!("clip-{}-{}", v.id, dir.as_str());
    let _ = write!(
        out,
        r#"<clipPath id="{clip}"><rect x="{}" y="{}" width="{}" height="{}"/></clipPath><g clip-path="url(#{clip})">"#,
        n(L),
        n(T),
        n(pw),
        n(ph)
    );

    // Step lines: the receive window edge first (under), then the ACK.
    let thin = acks.len() > MAX_POINTS;
    let step = |pick: &dyn Fn(&AckPt) -> u64| {
        let mut pts: Vec<(f64, u64)> = Vec::new();
        let mut i = 0;
        while i < acks.len() {
            // Thinned: per pixel column the lowest value and the last one, so dips stay visible.
            let col = xs(acks[i].t).floor();
            let mut j = i + 1;
            while thin && j < acks.len() && xs(acks[j].t).floor() == col {
                j += 1;
            }
            let low = acks[i..j].iter().map(pick).min().unwrap_or(0);
            let last = pick(&acks[j - 1]);
            if low != last && j - i > 1 {
                pts.push((xs(acks[i].t), low));
            }
            pts.push((xs(acks[j - 1].t), last));
            i = j;
        }
        let mut d = String::new();
        for (k, (x, v)) in pts.iter().enumerate() {
            if k == 0 {
                let _ = write!(d, "M{} {}", n(*x), n(ys(*v)));
            } else {
                let _ = write!(d, "H{}V{}", n(*x), n(ys(*v)));
            }
        }
        if !d.is_empty() {
            let _ = write!(d, "H{}", n(xs(tmax)));
        }
        d
    };
    let _ = write!(out, r#"<path class="winl" d="{}"/>"#, step(&|a| a.win_edge));
    let _ = write!(out, r#"<path class="ackl" d="{}"/>"#, step(&|a| a.ack));

    let mut drawn = 0;
    for (kind, class) in [
        (Kind::Normal, "pts"),
        (Kind::Retx, "pts retx"),
        (Kind::Ooo, "pts ooo"),
    ] {
        let chosen = thin_segs(&segs, kind, &xs);
        drawn += chosen.len();
        let mut d = String::new();
        for s in chosen {
            let (x, y0, y1) = (xs(s.t), ys(s.lo), ys(s.hi));
            let _ = write!(
                d,
                "M{} {}V{}M{} {}h4M{} {}h4",
                n(x),
                n(y0),
                n(y1),
                n(x - 2.0),
                n(y0),
                n(x - 2.0),
                n(y1)
            );
        }
        let _ = write!(out, r#"<path class="{class}" d="{d}"/>"#);
    }
    let mut dup = String::new();
    let mut zero = String::new();
    for a in acks.iter().filter(|a| a.dup).take(MAX_POINTS) {
        let _ = write!(dup, "M{} {}v8", n(xs(a.t)), n(ys(a.ack)));
    }
    for a in acks.iter().filter(|a| a.zero).take(MAX_POINTS) {
        let (x, y) = (xs(a.t), ys(a.ack));
        let _ = write!(
            zero,
            "M{} {}l8 8M{} {}l-8 8",
            n(x - 4.0),
            n(y - 4.0),
            n(x + 4.0),
            n(y - 4.0)
        );
    }
    let _ = write!(
        out,
        r#"<path class="dupack" d="{dup}"/><path class="zwin" d="{zero}"/></g></svg>"#
    );
    out.push('\n');
    (out, drawn)
}

/// The segments of one kind to draw: all of them, or when there are too many, per pixel column
/// the one reaching lowest and the one reaching highest (the envelope a viewer sees anyway).
fn thin_segs<'s>(segs: &'s [Seg], kind: Kind, xs: &dyn Fn(f64) -> f64) -> Vec<&'s Seg> {
    let all: Vec<&Seg> = segs.iter().filter(|s| s.kind == kind).collect();
    if all.len() <= MAX_POINTS {
        return all;
    }
    let mut out: Vec<&Seg> = Vec::new();
    let mut i = 0;
    while i < all.len() {
        let col = xs(all[i].t).floor();
        let mut j = i;
        let (mut lo, mut hi) = (i, i);
        while j < all.len() && xs(all[j].t).floor() == col {
            if all[j].lo < all[lo].lo {
                lo = j;
            }
            if all[j].hi > all[hi].hi {
                hi = j;
            }
            j += 1;
        }
        out.push(all[lo]);
        if hi != lo {
            out.push(all[hi]);
        }
        i = j;
    }
    out
}

fn legend(out: &mut String) {
    let items = [
        ("pts", "data"),
        ("pts retx", "retransmission"),
        ("pts ooo", "out of order"),
        ("ackl", "ACK"),
        ("winl", "ACK + window"),
        ("dupack", "dup ACK"),
        ("zwin", "zero window"),
    ];
    let mut x = L;
    for (class, label) in items {
        let _ = write!(
            out,
            r#"<path class="{class}" d="M{} 30h14"/><text x="{}" y="34">{label}</text>"#,
            n(x),
            n(x + 18.0)
        );
        x += 30.0 + label.len() as f64 * 6.7;
    }
}

fn axes(
    out: &mut String,
    tmax: f64,
    ylo: u64,
    yhi: u64,
    xs: &dyn Fn(f64) -> f64,
    ys: &dyn Fn(u64) -> f64,
) {
    let _ = write!(
        out,
        r#"<g class="axis"><path d="M{} {}V{}H{}"/>"#,
        n(L),
        n(T),
        n(HEIGHT - B),
        n(WIDTH - R)
    );
    let dt = tick_step(tmax, 8.0);
    let mut t = 0.0;
    while t <= tmax * 1.0001 {
        let x = xs(t);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{}" y1="{}" x2="{}" y2="{}"/><text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            n(x),
            n(T),
            n(x),
            n(HEIGHT - B),
            n(x),
            n(HEIGHT - B + 14.0),
            trim_secs(t, dt)
        );
        t += dt;
    }
    let dy = tick_step((yhi - ylo) as f64, 6.0).max(1.0);
    let mut s = (ylo as f64 / dy).ceil() * dy;
    while s <= yhi as f64 {
        let y = ys(s as u64);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{}" y1="{}" x2="{}" y2="{}"/><text x="{}" y="{}" text-anchor="end">{}</text>"#,
            n(L),
            n(y),
            n(WIDTH - R),
            n(y),
            n(L - 6.0),
            n(y + 4.0),
            human_bytes_axis(s as u64)
        );
        s += dy;
    }
    let _ = write!(out, r#"<text x="8" y="{}">rel. seq</text>"#, n(T - 4.0));
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" text-anchor="end">time (s)</text></g>"#,
        n(WIDTH - R),
        n(HEIGHT - 4.0)
    );
}

fn trim_secs(t: f64, step: f64) -> String {
    let digits = (-step.log10().floor()).max(0.0) as usize;
    if digits > 6 {
        return secs(t);
    }
    format!("{t:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwrap_climbs_across_the_32_bit_wrap_and_places_old_numbers_behind() {
        let mut u = Unwrap::default();
        assert_eq!(u.get(u32::MAX - 10), (u32::MAX - 10) as u64);
        assert_eq!(u.get(5), (1u64 << 32) + 5);
        // A retransmission of a segment from before the wrap.
        assert_eq!(u.get(u32::MAX - 10), (u32::MAX - 10) as u64);
        assert_eq!(u.get(100), (1u64 << 32) + 100);
    }
}
