//! The lesson inside the picture: a lab's question, answer, measured facts and settings as an
//! HTML section, the "what each server remembers" table, and a self-contained page for labs that
//! draw timelines instead of packets.
//!
//! Everything here is printed from the lab's own `lab` record, so the page can never claim more
//! than the record does.

use super::svg::{esc, CSS};
use crate::record::LabRec;
use serde_json::{Map, Value};
use std::fmt::Write;

/// Extra rules for the lesson section (the page's own sheet is shared with the packet report).
pub const LESSON_CSS: &str = r#"
.lesson{border:1px solid #cfd8dc;border-radius:6px;padding:8px 16px;margin:8px 0 16px;background:#fafcfd}
.lesson .q{font-size:1.15em;font-weight:bold}
.lesson .verdict.ok{color:#2e7d32}.lesson .verdict.bad{color:#c62828}
.lesson table{border-collapse:collapse;margin:6px 0}
.lesson td,.lesson th{border:1px solid #dde3e6;padding:2px 8px;text-align:left;font:12px ui-monospace,Menlo,Consolas,monospace}
.lesson th{background:#eceff1}
.lesson h3{margin:10px 0 2px;font-size:1em}
"#;

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn kv_table(out: &mut String, caption: &str, map: &Map<String, Value>) {
    if map.is_empty() {
        return;
    }
    let _ = write!(out, "<h3>{}</h3><table>", esc(caption));
    for (k, v) in map {
        let _ = write!(
            out,
            "<tr><th>{}</th><td>{}</td></tr>",
            esc(k),
            esc(&value_text(v))
        );
    }
    out.push_str("</table>");
}

/// The lab's question, answer, verdict (with the failed checks by name), facts and settings.
pub fn lesson_html(rec: &LabRec) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<section class="lesson" id="lesson"><p class="q">{}</p><p class="a">{}</p>"#,
        esc(&rec.question),
        esc(&rec.answer)
    );
    if rec.ok {
        out.push_str(r#"<p class="verdict ok">ok: every check held</p>"#);
    } else {
        let _ = write!(
            out,
            r#"<p class="verdict bad">ok: false — failed: {}</p>"#,
            esc(&rec.failed.join(", "))
        );
    }
    kv_table(&mut out, "Measured", &rec.facts);
    kv_table(
        &mut out,
        "Settings (chosen by the lab, not measured)",
        &rec.settings,
    );
    out.push_str("</section>\n");
    out
}

/// "What each server remembers": one row per server design, in the learner's words.
pub fn remembers_html(rows: &[(&str, String)]) -> String {
    let mut out = String::from(
        r#"<section class="lesson"><h3>What each server remembers</h3><table><tr><th>server</th><th>remembers</th></tr>"#,
    );
    for (who, what) in rows {
        let _ = write!(out, "<tr><td>{}</td><td>{}</td></tr>", esc(who), esc(what));
    }
    out.push_str("</table></section>\n");
    out
}

/// A self-contained page for a lab: the lesson first, then `body` (SVG timelines, tables).
pub fn lab_page(rec: &LabRec, body: &str) -> String {
    let title = format!("statescope lab {}", rec.name);
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>{t}</title>
<script>window.__errors=[];addEventListener('error',function(e){{__errors.push(String(e.message))}});</script>
<style>body{{font:14px system-ui,sans-serif;margin:16px 24px;color:#222}}{LESSON_CSS}{CSS}</style></head><body>
<h1>{t}</h1>
{lesson}{body}
</body></html>
"#,
        t = esc(&title),
        lesson = lesson_html(rec),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(ok: bool) -> LabRec {
        let mut facts = Map::new();
        facts.insert("memory_lost".into(), json!(7));
        let mut settings = Map::new();
        settings.insert("requests".into(), json!(120));
        LabRec {
            name: "crash".into(),
            question: "What happens <when> a server crashes?".into(),
            answer: "It forgets.".into(),
            facts,
            ok,
            settings,
            failed: if ok {
                vec![]
            } else {
                vec!["kill_mid_load".into()]
            },
        }
    }

    #[test]
    fn the_lesson_carries_question_answer_facts_and_settings_escaped() {
        let h = lesson_html(&rec(true));
        assert!(h.contains("What happens &lt;when&gt; a server crashes?"));
        assert!(h.contains("It forgets."));
        assert!(h.contains("<th>memory_lost</th><td>7</td>"));
        assert!(h.contains("Settings (chosen by the lab"));
        assert!(h.contains("<th>requests</th><td>120</td>"));
        assert!(h.contains("every check held"));
    }

    #[test]
    fn a_failed_lab_names_its_failed_checks() {
        let h = lesson_html(&rec(false));
        assert!(h.contains("failed: kill_mid_load"));
        assert!(!h.contains("every check held"));
    }

    #[test]
    fn the_page_is_whole() {
        let p = lab_page(&rec(true), "<svg></svg>");
        assert!(p.starts_with("<!DOCTYPE html>"));
        assert!(p.contains("<title>statescope lab crash</title>"));
        assert!(p.trim_end().ends_with("</html>"));
        let r = remembers_html(&[("stateless", "nothing".into())]);
        assert!(r.contains("<td>stateless</td><td>nothing</td>"));
    }
}
