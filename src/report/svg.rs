//! Small helpers shared by the drawings: escaping, number formatting, the stylesheet.
//!
//! The SVG is built as strings: the shapes are few and simple, and owning the markup keeps the
//! HTML report and the standalone files identical without a plotting dependency.

use std::fmt::Write;

/// Escape text for SVG/HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A coordinate with one decimal, trimmed: keeps files small.
pub fn n(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r == r.trunc() {
        format!("{}", r as i64)
    } else {
        format!("{r:.1}")
    }
}

/// Width in pixels of `s` in the 11px monospace font the drawings use.
pub fn text_width(s: &str) -> f64 {
    s.chars().count() as f64 * 6.7
}

/// Relative time for labels: `0.000032`, `12.5`.
pub fn secs(t: f64) -> String {
    if t.abs() >= 100.0 {
        format!("{t:.3}")
    } else {
        format!("{t:.6}")
    }
}

/// Axis label for a sequence offset: `0`, `500`, `64K`, `1.5M`.
pub fn human_bytes_axis(v: u64) -> String {
    let f = v as f64;
    let trim = |x: f64| {
        let s = format!("{x:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    };
    if v >= 1_000_000_000 {
        format!("{}G", trim(f / 1e9))
    } else if v >= 1_000_000 {
        format!("{}M", trim(f / 1e6))
    } else if v >= 10_000 {
        format!("{}K", trim(f / 1e3))
    } else {
        v.to_string()
    }
}

/// "Nice" tick step (1, 2 or 5 times a power of ten) giving about `want` ticks over `range`.
pub fn tick_step(range: f64, want: f64) -> f64 {
    if range <= 0.0 || !range.is_finite() {
        return 1.0;
    }
    let raw = range / want;
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    let k = if m < 1.5 {
        1.0
    } else if m < 3.5 {
        2.0
    } else if m < 7.5 {
        5.0
    } else {
        10.0
    };
    k * p
}

/// The opening tag of a standalone SVG document of the given size, with the stylesheet inside.
pub fn open_doc(out: &mut String, w: f64, h: f64, class: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="{class}" width="{}" height="{}" viewBox="0 0 {} {}"><style>{}</style><rect class="bg" width="100%" height="100%"/>"#,
        n(w),
        n(h),
        n(w),
        n(h),
        CSS
    );
}

/// Colours and fonts of the drawings; the HTML report includes the same sheet once.
pub const CSS: &str = r#"
svg text{font:11px ui-monospace,Menlo,Consolas,monospace;fill:#222}
svg .bg{fill:#fff}
svg .head rect{fill:#eceff1;stroke:#546e7a}
svg .head text{font-weight:bold}
svg .tm{fill:#78909c}
svg .arrow path{stroke-width:1.4;fill:none}
svg .arrow path.hd{stroke:none}
svg .c2s path{stroke:#1e63b5}svg .c2s path.hd{fill:#1e63b5}
svg .s2c path{stroke:#0b7a5e}svg .s2c path.hd{fill:#0b7a5e}
svg .ctl text.lb{font-weight:bold}
svg .rst path{stroke:#b71c1c}svg .rst path.hd{fill:#b71c1c}
svg .bad path{stroke:#d32f2f;stroke-dasharray:5 3}svg .bad path.hd{fill:#d32f2f;stroke-dasharray:none}
svg text.an{fill:#c62828}
svg text.http{fill:#4a148c;font-weight:bold}
svg text.ws{fill:#006064;font-weight:bold}
svg .fold-row path{stroke:#90a4ae;stroke-dasharray:2 3;stroke-width:1.4;fill:none}
svg .fold-row text{fill:#455a64;font-style:italic}
svg .fold-row rect{fill:#f5f7f8;stroke:#cfd8dc}
svg .sect-row path{stroke:#ffb74d;stroke-width:1.4;fill:none}
svg .sect-row text{fill:#e65100;font-weight:bold}
svg .sect-row rect{fill:#fff3e0;stroke:#ffb74d}
svg line.life{stroke-width:5;stroke-linecap:butt}
svg .state rect{stroke-width:1.2;fill:#fff}
svg .state text{font-weight:bold;font-size:10.5px;stroke:none}
svg .st-ESTABLISHED{stroke:#2e7d32;fill:#2e7d32}
svg .st-SYN_SENT,svg .st-SYN_RECEIVED{stroke:#f9a825;fill:#f9a825}
svg .st-LISTEN{stroke:#1565c0;fill:#1565c0}
svg .st-FIN_WAIT_1,svg .st-FIN_WAIT_2,svg .st-CLOSING{stroke:#ef6c00;fill:#ef6c00}
svg .st-CLOSE_WAIT,svg .st-LAST_ACK{stroke:#8e24aa;fill:#8e24aa}
svg .st-TIME_WAIT{stroke:#6d4c41;fill:#6d4c41}
svg .st-CLOSED{stroke:#616161;fill:#616161}
svg .st-UNKNOWN{stroke:#bdbdbd;fill:#9e9e9e}
svg .state rect[class^=st-]{fill:#fff}
svg text.tls-st{fill:#ad1457;font-weight:bold;font-size:10px}
svg .h2-lane rect{fill:#f3f6fb;stroke:#90a4ae}
svg .h2-lane text{font-size:10px}
svg text.h2-st{fill:#37474f;font-weight:bold}
svg .lane-0 rect{stroke:#1e88e5}svg .lane-1 rect{stroke:#43a047}svg .lane-2 rect{stroke:#fb8c00}
svg .lane-3 rect{stroke:#8e24aa}svg .lane-4 rect{stroke:#00897b}svg .lane-5 rect{stroke:#e53935}
svg .lane-6 rect{stroke:#6d4c41}svg .lane-7 rect{stroke:#3949ab}
svg .axis path,svg .axis line{stroke:#90a4ae;fill:none}
svg .axis line.grid{stroke:#eceff1}
svg .pts{stroke:#263238;fill:none;stroke-width:1}
svg .pts.retx{stroke:#d32f2f;stroke-width:1.6}
svg .pts.ooo{stroke:#ef6c00;stroke-width:1.6}
svg .ackl{stroke:#2e7d32;fill:none;stroke-width:1.2}
svg .winl{stroke:#c0a000;fill:none;stroke-width:1.2}
svg .dupack{stroke:#d32f2f;fill:none;stroke-width:1.2}
svg .zwin{stroke:#c2185b;fill:none;stroke-width:2}
svg .title{font-weight:bold;font-size:12px}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(n(3.0), "3");
        assert_eq!(n(12.345), "12.3");
        assert_eq!(n(-0.04), "0");
    }

    #[test]
    fn ticks_are_nice() {
        assert_eq!(tick_step(10.0, 5.0), 2.0);
        assert_eq!(tick_step(1000.0, 4.0), 200.0);
        assert_eq!(tick_step(0.0, 4.0), 1.0);
    }
}
