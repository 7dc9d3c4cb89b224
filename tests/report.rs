//! The HTML report and SVG files, rendered from real records (tests/fixtures/records/*.jsonl,
//! produced by the engine from real captures) and checked in a real headless browser.
//!
//! The browser tests need Debian's `chromium` (or `STATESCOPE_CHROMIUM=/path`); without it they
//! print why and return. The page writes what it actually drew into `#selfcheck`; the tests read
//! it back with `--dump-dom` and compare it with counts taken from the JSONL independently of
//! the report code. Screenshots go to target/test-artifacts/.

use statescope::record::{Dir, HttpRec, Record, WsRec};
use statescope::report::{self, HtmlOptions};
use std::collections::{BTreeMap, BTreeSet};
#[path = "support/replay.rs"]
mod replay;
use replay::replay_jsonl;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fixture(name: &str) -> Vec<Record> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/records")
        .join(format!("{name}.jsonl"));
    let text = std::fs::read_to_string(&path).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Counts taken straight from the records, for the connections the page draws.
struct Expect {
    conns: usize,
    drawn: usize,
    packets: usize,
    /// Per drawn connection and direction with something to plot: payload, SYN and FIN segments.
    points: Vec<usize>,
}

fn expect(records: &[Record], limit: usize) -> Expect {
    let mut per: BTreeMap<u64, (usize, [usize; 2])> = BTreeMap::new();
    let mut conns = BTreeSet::new();
    for r in records {
        match r {
            Record::Packet(p) => {
                conns.insert(p.conn);
                let e = per.entry(p.conn).or_default();
                e.0 += 1;
                if p.len > 0 || p.flags.iter().any(|f| f == "SYN" || f == "FIN") {
                    e.1[p.dir.idx()] += 1;
                }
            }
            Record::Conn(c) => {
                conns.insert(c.conn);
            }
            _ => {}
        }
    }
    let drawn: Vec<_> = per.iter().take(limit).collect();
    Expect {
        conns: conns.len(),
        drawn: drawn.len(),
        packets: drawn.iter().map(|(_, e)| e.0).sum(),
        points: drawn
            .iter()
            .flat_map(|(_, e)| e.1.into_iter().filter(|n| *n > 0))
            .collect(),
    }
}

#[test]
fn every_segment_is_an_arrow_or_folded_and_the_page_is_self_contained() {
    for name in [
        "refused",
        "simultaneous",
        "http-keepalive",
        "websocket",
        "zero-window",
        "bulk-loss-rx",
        "many-conns-120",
    ] {
        let recs = fixture(name);
        let want = expect(&recs, 50);
        let full = report::render_html(&recs, name, &HtmlOptions::default());
        // The drawing, without the expand script (which spells the same markup).
        let page = &full[..full
            .find("<script type=\"application/json\" id=\"folds\">")
            .unwrap()];
        let arrows = page.matches("<g class=\"arrow").count();
        let folded: usize = [
            "<div class=\"fold\" data-fold=\"",
            "<div class=\"sect\" data-sect=\"",
        ]
        .iter()
        .flat_map(|div| page.split(div).skip(1))
        .map(|s| {
            let n = s.split("data-n=\"").nth(1).unwrap();
            n[..n.find('"').unwrap()].parse::<usize>().unwrap()
        })
        .sum();
        assert_eq!(arrows + folded, want.packets, "{name}");
        assert_eq!(page.matches("<section class=\"conn\"").count(), want.drawn);
        assert_eq!(
            page.matches("<tr><td>").count(),
            want.conns,
            "{name}: connection table rows"
        );
        // No network: the only URL is the SVG namespace, and a CSP forbids loads anyway.
        assert!(!page.contains("https://"), "{name}");
        assert!(!page.contains("src="), "{name}");
        assert!(page.contains("default-src 'none'"));
        assert!(!full[page.len()..].contains("https://"), "{name}");
    }
}

#[test]
fn long_connections_are_condensed() {
    let recs = fixture("bulk-loss-rx");
    let full = report::render_html(&recs, "bulk", &HtmlOptions::default());
    let page = &full[..full
        .find("<script type=\"application/json\" id=\"folds\">")
        .unwrap()];
    let arrows = page.matches("<g class=\"arrow").count();
    let packets = expect(&recs, 50).packets;
    assert!(packets > 5000);
    // Every analysis event stays visible, yet far fewer arrows are drawn than segments.
    assert!(
        arrows < packets / 5,
        "{arrows} arrows for {packets} segments"
    );
    assert!(page.contains("similar segments"));
}

#[test]
fn a_lead_and_per_connection_labels_are_placed_and_escaped() {
    let recs = fixture("http-keepalive");
    let plain = report::render_html(&recs, "t", &HtmlOptions::default());
    assert!(!plain.contains("class=\"step\""), "no labels unless given");
    let mut labels = BTreeMap::new();
    labels.insert(0u64, "step <one>".to_string());
    let opts = HtmlOptions {
        lead: "<section id=\"lead\">L</section>".into(),
        labels,
        ..HtmlOptions::default()
    };
    let page = report::render_html(&recs, "t", &opts);
    let h1 = page.find("<h1>").unwrap();
    let lead = page.find("<section id=\"lead\">").unwrap();
    assert!(h1 < lead && lead < page.find("<h2>Connections</h2>").unwrap());
    assert!(page.contains("<div class=\"step\">step &lt;one&gt;</div>"));
    assert!(page.contains("<p class=\"step\">Lab step: step &lt;one&gt;</p>"));
}

#[test]
fn many_connections_draw_the_first_ones_and_selected_ones() {
    let recs = fixture("many-conns-120");
    let opts = HtmlOptions {
        detail_limit: 10,
        select: vec![100],
        ..HtmlOptions::default()
    };
    let page = report::render_html(&recs, "many", &opts);
    assert_eq!(page.matches("<section class=\"conn\"").count(), 11);
    assert!(page.contains("id=\"conn-100\""));
    assert!(!page.contains("id=\"conn-99\""));
    assert!(page.contains("Diagrams are drawn for 11 of the 120 connections"));
}

#[test]
fn svg_files_one_ladder_per_connection_and_a_graph_per_direction_with_data() {
    let dir = tempfile::tempdir().unwrap();
    let recs = fixture("http-keepalive");
    let files = report::write_svgs(&recs, &dir.path().join("svg")).unwrap();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "conn-0-ladder.svg",
            "conn-0-tsg-c2s.svg",
            "conn-0-tsg-s2c.svg"
        ]
    );
    for f in &files {
        let s = std::fs::read_to_string(f).unwrap();
        assert!(s.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(s.trim_end().ends_with("</svg>"));
        assert!(s.contains("<style>"), "standalone files carry their style");
    }
    let ladder = std::fs::read_to_string(&files[0]).unwrap();
    for st in [
        "SYN_SENT",
        "LISTEN",
        "ESTABLISHED",
        "FIN_WAIT_1",
        "TIME_WAIT",
        "CLOSED",
    ] {
        assert!(ladder.contains(&format!(">{st}</text>")), "{st}");
    }
}

#[test]
fn unwritable_paths_are_clear_errors() {
    let recs = fixture("refused");
    let err = report::write_html(&recs, "x", Path::new("/nonexistent-dir/r.html")).unwrap_err();
    assert!(format!("{err:#}").contains("cannot write the HTML report"));
    let file = tempfile::NamedTempFile::new().unwrap();
    let err = report::write_svgs(&recs, &file.path().join("sub")).unwrap_err();
    assert!(format!("{err:#}").contains("cannot create the SVG folder"));
}

/// HTTP and WebSocket records at real frames of the WebSocket capture's records (which were
/// made before the HTTP parser landed), independent of the parser's output: the ladder marks
/// them on the segments that carried them. The parser's own records are checked end to end in
/// `replay_writes_the_report_with_http_and_websocket_marked`.
fn websocket_with_messages() -> Vec<Record> {
    let mut recs = fixture("websocket");
    recs.push(Record::Http(Box::new(HttpRec {
        conn: 0,
        dir: Dir::C2s,
        frame: 6,
        method: Some("GET".into()),
        uri: Some("/ws".into()),
        version: "HTTP/1.1".into(),
        upgrade: Some("websocket".into()),
        carries: vec!["Host".into()].into(),
        ..HttpRec::default()
    })));
    recs.push(Record::Http(Box::new(HttpRec {
        conn: 0,
        dir: Dir::S2c,
        frame: 8,
        status: Some(101),
        reason: Some("Switching Protocols".into()),
        version: "HTTP/1.1".into(),
        upgrade: Some("websocket".into()),
        request_frame: Some(6),
        ..HttpRec::default()
    })));
    for (frame, dir, len) in [(10, Dir::C2s, 15), (11, Dir::S2c, 15)] {
        recs.push(Record::Ws(WsRec {
            conn: 0,
            dir,
            frame,
            opcode: 1,
            fin: true,
            masked: dir == Dir::C2s,
            len,
            close_code: None,
        }));
    }
    recs
}

// ---- the browser ----

fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("STATESCOPE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        for name in ["chromium", "chromium-browser"] {
            let p = Path::new(dir).join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Run headless chromium with `extra` on `page`, bounded in time; its standard output.
fn run_chromium(bin: &Path, extra: &[&str], page: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::from(out.reopen().unwrap()))
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromium");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s on {}", page.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::fs::read_to_string(out.path()).unwrap()
}

/// The page as the browser built it and its self-check, which must report no script error.
fn dom_selfcheck(bin: &Path, html: &Path) -> (String, BTreeMap<String, String>) {
    let dom = run_chromium(bin, &["--virtual-time-budget=5000", "--dump-dom"], html);
    let sc = selfcheck(&dom);
    assert_eq!(num(&sc, "errors"), 0, "{sc:?}");
    (dom, sc)
}

/// The `key=value` pairs of the page's self-check line.
fn selfcheck(dom: &str) -> BTreeMap<String, String> {
    let start = dom
        .find("<pre id=\"selfcheck\">")
        .expect("selfcheck element in DOM")
        + 20;
    let line = &dom[start..start + dom[start..].find('<').unwrap()];
    assert!(
        !line.contains("pending"),
        "the self-check script did not run: {line}"
    );
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn num(m: &BTreeMap<String, String>, k: &str) -> usize {
    m.get(k)
        .unwrap_or_else(|| panic!("{k} missing in {m:?}"))
        .parse()
        .unwrap()
}

fn check_in_browser(bin: &Path, name: &str, recs: &[Record]) -> BTreeMap<String, String> {
    let dir = artifacts();
    let html = dir.join(format!("report-{name}.html"));
    report::write_html(recs, name, &html).unwrap();
    let dom = run_chromium(bin, &["--virtual-time-budget=5000", "--dump-dom"], &html);
    let sc = selfcheck(&dom);
    eprintln!("{name}: {sc:?}");
    let want = expect(recs, 50);
    assert_eq!(num(&sc, "errors"), 0, "{name}: page errors {sc:?}");
    assert_eq!(num(&sc, "conns"), want.conns, "{name}");
    assert_eq!(num(&sc, "ladders"), want.drawn, "{name}");
    assert_eq!(
        num(&sc, "arrows") + num(&sc, "folded") + num(&sc, "sectioned"),
        want.packets,
        "{name}: every segment is an arrow or inside a fold or section"
    );
    assert_eq!(num(&sc, "tsgs"), want.points.len(), "{name}");
    // Below the thinning threshold every data segment is one I-bar.
    if want.points.iter().all(|n| *n <= 2000) {
        assert_eq!(
            num(&sc, "points"),
            want.points.iter().sum::<usize>(),
            "{name}"
        );
    } else {
        assert!(num(&sc, "points") > 500, "{name}: {sc:?}");
    }
    let expand = &sc["expand_ok"];
    let (ok, of) = expand.split_once('/').unwrap();
    assert_eq!(
        ok, of,
        "{name}: expanding folds gives one arrow per segment"
    );
    assert!(num(&sc, "ladder_px") > 100, "{name}: ladders have height");

    let shot = dir.join(format!("report-{name}.png"));
    let _ = std::fs::remove_file(&shot);
    run_chromium(
        bin,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1400,2000",
        ],
        &html,
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "{name}: screenshot {} is {size} bytes",
        shot.display()
    );
    sc
}

#[test]
fn reports_load_in_a_real_browser_with_every_diagram_drawn() {
    let Some(bin) = chromium() else {
        eprintln!(
            "skipped: chromium not found (apt-get install chromium, or set STATESCOPE_CHROMIUM)"
        );
        return;
    };
    for name in [
        "refused",
        "http-keepalive",
        "zero-window",
        "bulk-loss-rx",
        "many-conns-120",
    ] {
        let recs = fixture(name);
        let sc = check_in_browser(&bin, name, &recs);
        if name == "bulk-loss-rx" {
            // 5147 segments: folded, and still longer than one ladder's share, so sectioned.
            assert!(num(&sc, "folds") > 10, "{sc:?}");
            assert!(num(&sc, "sections") >= 1, "{sc:?}");
        }
    }
}

#[test]
fn http_and_websocket_messages_are_marked_on_the_ladder_in_the_browser() {
    let Some(bin) = chromium() else {
        eprintln!(
            "skipped: chromium not found (apt-get install chromium, or set STATESCOPE_CHROMIUM)"
        );
        return;
    };
    let recs = websocket_with_messages();
    check_in_browser(&bin, "websocket-messages", &recs);
    let page = std::fs::read_to_string(artifacts().join("report-websocket-messages.html")).unwrap();
    assert!(page.contains("→ GET /ws HTTP/1.1 (upgrade: websocket) carries Host"));
    assert!(page.contains("← HTTP/1.1 101 Switching Protocols (upgrade: websocket)"));
    assert_eq!(page.matches("<text class=\"ws\"").count(), 2);
}

// ---- any records: never a panic, never a lost segment ----

mod any_records {
    use super::*;
    use proptest::prelude::*;
    use statescope::record::PacketRec;

    const STATES: [&str; 5] = [
        "SYN_SENT",
        "ESTABLISHED",
        "FIN_WAIT_1",
        "CLOSE_WAIT",
        "CLOSED",
    ];
    const FLAGS: [&[&str]; 5] = [
        &["ACK"],
        &["PSH", "ACK"],
        &["SYN"],
        &["FIN", "ACK"],
        &["RST"],
    ];
    const EVENTS: [&str; 4] = ["", "window_update", "dup_ack", "retransmission"];

    fn packet() -> impl Strategy<Value = (u64, bool, usize, usize, usize, u32, u32, u32)> {
        (
            0u64..2,
            any::<bool>(),
            prop::sample::select(vec![0usize, 0, 0, 0, 1, 1, 2, 3, 4]),
            prop::sample::select(vec![0usize, 0, 0, 0, 0, 1, 2, 3]),
            prop::sample::select(vec![1usize, 1, 1, 1, 1, 1, 0, 2, 3, 4]),
            any::<u32>(),
            0u32..3000,
            any::<u32>(),
        )
    }

    proptest! {
        // Up to 3000 segments over two connections: most cases are long enough to be folded
        // and cut into sections (36 of 48 when counted).
        #![proptest_config(ProptestConfig {
            cases: 48,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]
        #[test]
        fn every_segment_is_drawn_or_folded(
            pks in prop::collection::vec(packet(), 0..3000),
            limit in 1usize..4,
        ) {
            let recs: Vec<Record> = pks
                .iter()
                .enumerate()
                .map(|(k, &(conn, c2s, fl, ev, st, seq, len, win))| {
                    Record::Packet(PacketRec {
                        frame: k as u64 + 1,
                        ts: k as f64 * 1e-3,
                        conn,
                        dir: if c2s { Dir::C2s } else { Dir::S2c },
                        flags: FLAGS[fl].iter().map(|s| s.to_string().into()).collect(),
                        seq,
                        ack: Some(seq / 2),
                        len,
                        win: win as u64,
                        analysis: if ev == 0 { vec![] } else { vec![EVENTS[ev].into()] },
                        client_state: STATES[st].into(),
                        server_state: STATES[(st + k / 700) % 5].into(),
                        ..PacketRec::default()
                    })
                })
                .collect();
            let opts = HtmlOptions { detail_limit: limit, ..HtmlOptions::default() };
            let full = report::render_html(&recs, "<any>", &opts);
            let page = &full[..full.find("<script type=\"application/json\" id=\"folds\">").unwrap()];
            let arrows = page.matches("<g class=\"arrow").count();
            let folded: usize = ["<div class=\"fold\" data-fold=\"", "<div class=\"sect\" data-sect=\""]
                .iter()
                .flat_map(|div| page.split(div).skip(1))
                .map(|s| {
                    let n = s.split("data-n=\"").nth(1).unwrap();
                    n[..n.find('"').unwrap()].parse::<usize>().unwrap()
                })
                .sum();
            prop_assert_eq!(arrows + folded, expect(&recs, limit).packets);
            prop_assert!(!full.contains("<any>"), "the title is escaped");
        }
    }
}

// ---- end to end: `statescope replay CAPTURE --html FILE --svg DIR` ----

#[test]
fn replay_writes_the_report_with_http_and_websocket_marked() {
    let dir = artifacts();
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/websocket.pcap");
    let html = dir.join("replay-websocket.html");
    let svg = dir.join("replay-websocket-svg");
    let _ = std::fs::remove_dir_all(&svg);
    // The same run's records, as printed: the report must agree with them.
    let recs = replay_jsonl(
        &pcap,
        &[
            "--html".as_ref(),
            html.as_ref(),
            "--svg".as_ref(),
            svg.as_ref(),
        ],
    );
    let http = recs.iter().filter(|r| matches!(r, Record::Http(_))).count();
    let ws = recs.iter().filter(|r| matches!(r, Record::Ws(_))).count();
    assert!(http >= 2 && ws >= 2, "{http} http, {ws} ws records");
    let page = std::fs::read_to_string(&html).unwrap();
    let drawing = &page[..page.find("<script type=\"application/json\"").unwrap()];
    // Each message is marked once, on the ladder (HTTP in purple, WebSocket in teal).
    assert_eq!(drawing.matches("<text class=\"http\"").count(), http);
    assert_eq!(drawing.matches("<text class=\"ws\"").count(), ws);
    assert!(drawing.contains("(upgrade: websocket)"));
    let svgs: BTreeSet<String> = std::fs::read_dir(&svg)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(svgs.contains("conn-0-ladder.svg"), "{svgs:?}");

    let Some(bin) = chromium() else {
        eprintln!("browser part skipped: chromium not found");
        return;
    };
    let (_, sc) = dom_selfcheck(&bin, &html);
    assert_eq!(
        num(&sc, "arrows") + num(&sc, "folded") + num(&sc, "sectioned"),
        expect(&recs, 50).packets
    );
}

/// A lab's page, as `statescope lab NAME --html` writes it, opened in the browser: the lesson
/// (question, answer, every measured fact, the verdict) comes first, every connection says
/// which step of the lab made it, and the page has no script errors. Needs root (the lab
/// captures `lo`) and chromium; says so and returns without either.
#[test]
fn a_lab_page_shows_its_lesson_in_the_browser() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root (the lab captures lo live)");
        return;
    }
    let Some(bin) = chromium() else {
        eprintln!(
            "skipped: chromium not found (apt-get install chromium, or set STATESCOPE_CHROMIUM)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let html = artifacts().join("lab-tcp-vs-http.html");
    let out = Command::new(env!("CARGO_BIN_EXE_statescope"))
        .args(["lab", "tcp-vs-http", "--format", "jsonl", "--out-dir"])
        .arg(dir.path())
        .arg("--html")
        .arg(&html)
        .env_remove("STATESCOPE_LAB_CONTROL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(Ok(Record::Lab(lab))) = stdout.lines().last().map(serde_json::from_str::<Record>)
    else {
        panic!("no lab record: {stdout}");
    };
    let conns = stdout
        .lines()
        .filter(|l| l.contains(r#""type":"conn""#))
        .count();
    let dom = run_chromium(&bin, &["--virtual-time-budget=5000", "--dump-dom"], &html);
    let sc = selfcheck(&dom);
    assert_eq!(num(&sc, "errors"), 0, "page errors {sc:?}");
    let text = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let lesson = dom.find(r#"id="lesson""#).expect("the lesson section");
    let table = dom
        .find("<h2>Connections</h2>")
        .expect("the connection table");
    assert!(lesson < table, "the lesson opens the page");
    let section = &dom[lesson..table];
    assert!(section.contains(&text(&lab.question)), "question");
    assert!(section.contains(&text(&lab.answer)), "answer");
    assert!(section.contains("every check held"), "verdict");
    for (k, v) in &lab.facts {
        let v = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert!(
            section.contains(&format!("<th>{}</th><td>{}</td>", text(k), text(&v))),
            "fact {k} = {v} on the page"
        );
    }
    assert!(section.contains("What each server remembers"));
    // Every connection drawn carries the step that made it.
    assert_eq!(dom.matches(r#"<p class="step">Lab step: "#).count(), conns);
    assert_eq!(
        dom.matches("Lab step: kept-alive connection").count(),
        1,
        "one kept-alive connection"
    );
    assert_eq!(dom.matches("Lab step: fresh connection: /echo").count(), 3);
}

// ---- TLS handshake labels and HTTP/2 stream bands, from real captures ----

/// `replay CAPTURE --format jsonl --html FILE`: the records printed and the page written.
fn replay_html(capture: &str, name: &str) -> (Vec<Record>, PathBuf) {
    let pcap = Path::new(env!("CARGO_MANIFEST_DIR")).join(capture);
    let html = artifacts().join(format!("replay-{name}.html"));
    let recs = replay_jsonl(&pcap, &["--html".as_ref(), html.as_ref()]);
    (recs, html)
}

/// The value of attribute `name` in the markup `tag` (one element's opening tag).
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(&tag[at..at + tag[at..].find('"')?])
}

/// Every element opening with `open` in `markup`: its opening tag and its markup up to the
/// next such element (enough to hold its text and children).
fn elements<'a>(markup: &'a str, open: &str) -> Vec<(&'a str, &'a str)> {
    markup
        .split(open)
        .skip(1)
        .map(|rest| (&rest[..rest.find('>').unwrap_or(rest.len())], rest))
        .collect()
}

/// The text of the first `<text class="CLASS" data-ep="EP"…>` in `markup`.
fn ep_text<'a>(markup: &'a str, class: &str, ep: &str) -> Option<&'a str> {
    elements(markup, &format!("<text class=\"{class}\""))
        .into_iter()
        .find(|(tag, _)| attr(tag, "data-ep") == Some(ep))
        .map(|(_, rest)| {
            let t = &rest[rest.find('>').unwrap() + 1..];
            &t[..t.find('<').unwrap()]
        })
}

/// The TLS labels the page (or the dumped DOM) shows: (frame, endpoint) → label.
fn tls_labels(page: &str) -> BTreeMap<(u64, String), String> {
    elements(page, "<text class=\"tls-st\"")
        .into_iter()
        .map(|(tag, rest)| {
            let t = &rest[rest.find('>').unwrap() + 1..];
            let frame = attr(tag, "data-frame").unwrap().parse().unwrap();
            let ep = attr(tag, "data-ep").unwrap().to_string();
            ((frame, ep), t[..t.find('<').unwrap()].to_string())
        })
        .collect()
}

/// What is missing or wrong in the page's TLS labels, against the `tls_msg` records alone:
/// each ClientHello's frame says `ClientHello sent` at the client and `got ClientHello` at
/// the server; for TLS 1.3 the ServerHello's frame says `encrypted` at both; for TLS 1.2 the
/// frame of the second encrypted handshake message (the later Finished) says `handshake done`
/// at both; and no label is drawn on a connection without `tls_msg` records.
fn tls_label_faults(page: &str, recs: &[Record]) -> Vec<String> {
    let shown = tls_labels(page);
    let mut want: Vec<(u64, &str, &str)> = Vec::new();
    let mut tls_frames = BTreeSet::new();
    let version: BTreeMap<u64, String> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Tls(t) => Some((t.conn, t.version.as_deref()?.to_string())),
            _ => None,
        })
        .collect();
    let mut finished: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut ccs: BTreeSet<(u64, usize)> = BTreeSet::new();
    for r in recs {
        let Record::TlsMsg(m) = r else { continue };
        tls_frames.insert(m.conn);
        let v13 = version.get(&m.conn).is_some_and(|v| v == "TLSv1.3");
        match m.msg.as_ref() {
            "client_hello" => {
                want.push((m.frame, "client", "ClientHello sent"));
                want.push((m.frame, "server", "got ClientHello"));
            }
            "server_hello" if v13 => {
                want.push((m.frame, "client", "encrypted"));
                want.push((m.frame, "server", "encrypted"));
            }
            "change_cipher_spec" => {
                ccs.insert((m.conn, m.dir.idx()));
            }
            "encrypted_handshake" if !v13 && ccs.contains(&(m.conn, m.dir.idx())) => {
                let f = finished.entry(m.conn).or_default();
                f.push(m.frame);
                if f.len() == 2 {
                    want.push((m.frame, "client", "handshake done"));
                    want.push((m.frame, "server", "handshake done"));
                }
            }
            _ => {}
        }
    }
    let mut faults = Vec::new();
    if want.is_empty() {
        faults.push("no TLS handshake in the records".to_string());
    }
    for (frame, ep, label) in want {
        match shown.get(&(frame, ep.to_string())) {
            Some(s) if *s == format!("TLS: {label}") => {}
            other => faults.push(format!(
                "frame {frame} {ep}: want {label:?}, page {other:?}"
            )),
        }
    }
    // Labels only on TLS connections' packets.
    let tls_packets: BTreeSet<u64> = recs
        .iter()
        .filter_map(|r| match r {
            Record::Packet(p) if tls_frames.contains(&p.conn) => Some(p.frame),
            _ => None,
        })
        .collect();
    for (frame, _) in shown.keys() {
        if !tls_packets.contains(frame) {
            faults.push(format!(
                "frame {frame}: a TLS label on a non-TLS connection"
            ));
        }
    }
    faults
}

/// The HTTP/2 bands the page shows: (frame, stream) → (client state, server state).
fn h2_bands(page: &str) -> BTreeMap<(u64, u32), (String, String)> {
    elements(page, "<g class=\"h2-lane")
        .into_iter()
        .map(|(tag, rest)| {
            let rest = &rest[..rest.find("</g>").unwrap()];
            (
                (
                    attr(tag, "data-frame").unwrap().parse().unwrap(),
                    attr(tag, "data-stream").unwrap().parse().unwrap(),
                ),
                (
                    ep_text(rest, "h2-st", "client").unwrap_or("").to_string(),
                    ep_text(rest, "h2-st", "server").unwrap_or("").to_string(),
                ),
            )
        })
        .collect()
}

/// What differs between the page's HTTP/2 bands and the `h2` records alone: every frame on a
/// stream (not idle at both ends) has its band at its frame, whose states are those after the
/// stream's last frame in that segment, and no other band is drawn.
fn h2_band_faults(page: &str, recs: &[Record]) -> Vec<String> {
    let mut want: BTreeMap<(u64, u32), (String, String)> = BTreeMap::new();
    for r in recs {
        let Record::H2(h) = r else { continue };
        let (c, s) = (
            h.client_state.as_deref().unwrap_or("unknown"),
            h.server_state.as_deref().unwrap_or("unknown"),
        );
        if h.stream != 0 && !(c == "idle" && s == "idle") {
            want.insert((h.frame, h.stream), (c.to_string(), s.to_string()));
        }
    }
    let shown = h2_bands(page);
    let mut faults = Vec::new();
    if want.is_empty() {
        faults.push("no HTTP/2 stream frames in the records".to_string());
    }
    for (k, w) in &want {
        if shown.get(k) != Some(w) {
            faults.push(format!("{k:?}: want {w:?}, page {:?}", shown.get(k)));
        }
    }
    for k in shown.keys() {
        if !want.contains_key(k) {
            faults.push(format!("{k:?}: a band no record asks for"));
        }
    }
    faults
}

/// The TLS fixture's report, opened in the browser, labels each endpoint's handshake state
/// where the handshake messages change it (TLS 1.2: ClientHello → handshake done after both
/// Finished; TLS 1.3: encrypted from the ServerHello), checked against the `tls_msg` records
/// of the same run. Controls: a cleartext HTTP/1 capture's page has no label, and the page of
/// the records with the ServerHello's and the Finished's messages removed fails the check.
#[test]
fn tls_handshake_states_are_labelled_beside_the_lifelines() {
    for name in ["tls12-curl", "tls13-curl"] {
        let (recs, html) = replay_html(&format!("tests/fixtures/tls/{name}.pcap"), name);
        let page = std::fs::read_to_string(&html).unwrap();
        let faults = tls_label_faults(&page, &recs);
        assert!(faults.is_empty(), "{name}: {}", faults.join("\n"));
        // Control: the same records without the ServerHello and the encrypted handshake
        // messages draw a page whose labels the check rejects.
        let cut: Vec<Record> = recs
            .iter()
            .filter(|r| {
                !matches!(r, Record::TlsMsg(m) if m.msg == "server_hello" || m.msg == "encrypted_handshake")
            })
            .cloned()
            .collect();
        let altered = report::render_html(&cut, name, &HtmlOptions::default());
        assert!(!tls_label_faults(&altered, &recs).is_empty(), "{name}");
        let Some(bin) = chromium() else {
            eprintln!("browser part skipped: chromium not found");
            continue;
        };
        let (dom, sc) = dom_selfcheck(&bin, &html);
        assert_eq!(num(&sc, "tls_labels"), tls_labels(&page).len(), "{sc:?}");
        assert!(num(&sc, "tls_labels") >= 4, "{sc:?}");
        let faults = tls_label_faults(&dom, &recs);
        assert!(
            faults.is_empty(),
            "{name} in the browser: {}",
            faults.join("\n")
        );
    }
    // Control: cleartext HTTP/1 has no TLS label and no HTTP/2 band.
    let (recs, html) = replay_html("tests/fixtures/http-keepalive.pcap", "http-keepalive-tls");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(tls_labels(&page).is_empty() && h2_bands(&page).is_empty());
    assert!(!tls_label_faults(&page, &recs).is_empty());
}

/// The h2c prior-knowledge capture's report, opened in the browser, draws each HTTP/2 stream
/// as its own band under the segments carrying its frames, with the stream's state at the
/// client and at the server exactly as the `h2` records of the same run say; PRIORITY frames
/// on idle streams draw nothing. Controls: a cleartext HTTP/1 capture's page has no band, and
/// the page of the records with one stream state altered fails the comparison.
#[test]
fn http2_streams_are_drawn_as_bands_with_both_states() {
    let (recs, html) = replay_html("tests/fixtures/h2/h2c-prior.pcap", "h2c-prior");
    let page = std::fs::read_to_string(&html).unwrap();
    let faults = h2_band_faults(&page, &recs);
    assert!(faults.is_empty(), "{}", faults.join("\n"));
    let streams: BTreeSet<(u64, u32)> = recs
        .iter()
        .filter_map(|r| match r {
            Record::H2(h) if h.stream != 0 && h.client_state.as_deref() != Some("idle") => {
                Some((h.conn, h.stream))
            }
            _ => None,
        })
        .collect();
    assert!(streams.len() >= 4, "{streams:?}");
    // Control: one state altered in the records draws a band the comparison rejects.
    let mut altered = recs.clone();
    let h = altered
        .iter_mut()
        .rev()
        .find_map(|r| match r {
            Record::H2(h) if h.stream != 0 => Some(h),
            _ => None,
        })
        .unwrap();
    h.server_state = Some("open".into());
    let wrong = report::render_html(&altered, "h2c-prior", &HtmlOptions::default());
    assert!(!h2_band_faults(&wrong, &recs).is_empty());
    // Control: HTTP/1 draws none, and the comparison says there is nothing to compare.
    let (h1, h1_html) = replay_html("tests/fixtures/http-keepalive.pcap", "http-keepalive-h2");
    let h1_page = std::fs::read_to_string(&h1_html).unwrap();
    assert!(h2_bands(&h1_page).is_empty());
    assert!(!h2_band_faults(&h1_page, &h1).is_empty());

    let Some(bin) = chromium() else {
        eprintln!("browser part skipped: chromium not found");
        return;
    };
    let (dom, sc) = dom_selfcheck(&bin, &html);
    assert_eq!(num(&sc, "h2_lanes"), streams.len(), "{sc:?}");
    assert_eq!(num(&sc, "h2_bands"), h2_bands(&page).len(), "{sc:?}");
    assert_eq!(num(&sc, "h2_stated"), num(&sc, "h2_bands"), "{sc:?}");
    let faults = h2_band_faults(&dom, &recs);
    assert!(faults.is_empty(), "in the browser: {}", faults.join("\n"));
    let (_, sc) = dom_selfcheck(&bin, &h1_html);
    assert_eq!((num(&sc, "h2_bands"), num(&sc, "tls_labels")), (0, 0));
}
