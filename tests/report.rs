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
    recs.push(Record::Http(HttpRec {
        conn: 0,
        dir: Dir::C2s,
        frame: 6,
        method: Some("GET".into()),
        uri: Some("/ws".into()),
        version: "HTTP/1.1".into(),
        upgrade: Some("websocket".into()),
        carries: vec!["Host".into()].into(),
        ..HttpRec::default()
    }));
    recs.push(Record::Http(HttpRec {
        conn: 0,
        dir: Dir::S2c,
        frame: 8,
        status: Some(101),
        reason: Some("Switching Protocols".into()),
        version: "HTTP/1.1".into(),
        upgrade: Some("websocket".into()),
        request_frame: Some(6),
        ..HttpRec::default()
    }));
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
            let opts = HtmlOptions {
                detail_limit: limit,
                select: vec![],
                ..HtmlOptions::default()
            };
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
    let out = assert_cmd::Command::cargo_bin("statescope")
        .unwrap()
        .args(["replay", "--format", "jsonl", "-q"])
        .arg(&pcap)
        .arg("--html")
        .arg(&html)
        .arg("--svg")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same run's records, as printed: the report must agree with them.
    let recs: Vec<Record> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
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
    let dom = run_chromium(&bin, &["--virtual-time-budget=5000", "--dump-dom"], &html);
    let sc = selfcheck(&dom);
    assert_eq!(num(&sc, "errors"), 0, "{sc:?}");
    assert_eq!(
        num(&sc, "arrows") + num(&sc, "folded") + num(&sc, "sectioned"),
        expect(&recs, 50).packets
    );
}
