//! The default table does not flood: rows fit the terminal (20 when piped) and a closing line
//! says how many were left out and how to see them; lifetimes are told for a few connections
//! and a few dozen lines each unless asked; `--all` shows everything. Unknown `--conn` /
//! `--follow` numbers are bad usage. Colour: `--color always` paints states and events,
//! `never`, NO_COLOR and a pipe do not; on a terminal (a pseudo-terminal made by `script`)
//! `auto` paints unless NO_COLOR is set. Shell completions and the man page come from the
//! clap definitions.

use assert_cmd::Command;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn table(args: &[&str]) -> String {
    let out = Command::cargo_bin("statescope")
        .unwrap()
        .arg("replay")
        .args(args)
        .arg("-q")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Summary rows: lines that start with a right-aligned connection number.
fn rows(text: &str) -> usize {
    text.lines()
        .filter(|l| l.len() > 6 && l[..4].trim().parse::<u64>().is_ok() && &l[4..6] == "  ")
        .count()
}

#[test]
fn the_default_table_fits_and_says_what_it_left_out() {
    let cap = fixture("many-conns.pcap"); // 450 connections
    let c = cap.to_str().unwrap();
    let short = table(&[c]);
    assert_eq!(rows(&short), 20, "{short}");
    assert!(
        short.contains("430 more connections: use --conn N, --all, --format jsonl or --html"),
        "{short}"
    );
    assert_eq!(short.matches("\nConnection ").count(), 3, "three lifetimes");
    assert!(short.contains("Lifetimes told for connections 0 to 2 of 450"));
    assert!(
        short.lines().count() < 80,
        "{} lines",
        short.lines().count()
    );
    // Control: --all prints every row and every lifetime, and no "more" line.
    let all = table(&[c, "--all"]);
    assert_eq!(rows(&all), 450);
    assert_eq!(all.matches("\nConnection ").count(), 450);
    assert!(!all.contains("more connection"));
    // The header names what the byte columns count.
    assert!(short.lines().next().unwrap().contains("payload c>s/s>c"));
    // A small capture is whole, with no closing line.
    let small = table(&[fixture("http-keepalive.pcap").to_str().unwrap()]);
    assert_eq!(rows(&small), 1);
    assert!(!small.contains("more connection") && !small.contains("Lifetimes told"));
}

#[test]
fn unknown_connection_numbers_are_bad_usage() {
    let cap = fixture("http-keepalive.pcap"); // one connection
    let c = cap.to_str().unwrap();
    for args in [
        &["--conn", "9"][..],
        &["--follow", "1"],
        &["--conn", "0", "--conn", "5"],
    ] {
        let out = Command::cargo_bin("statescope")
            .unwrap()
            .args(["replay", c, "-q"])
            .args(args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("the capture has one TCP connection, number 0"),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    // Control: the connection that exists.
    assert!(table(&[c, "--conn", "0"]).contains("Connection 0:"));
    assert!(table(&[c, "--follow", "0"]).contains("GET /index.html"));
}

const ESC: &str = "\x1b[";

#[test]
fn colour_when_asked_and_on_terminals_only() {
    let cap = fixture("bulk-loss-rx.pcap");
    let c = cap.to_str().unwrap();
    let painted = table(&[c, "--color", "always", "--conn", "0"]);
    assert!(painted.contains("\x1b[32mESTABLISHED\x1b[0m"), "{painted}");
    assert!(
        painted.contains("\x1b[31mretransmission\x1b[0m"),
        "{painted}"
    );
    // Colour does not move the columns: without the escapes, the same text.
    let plain = table(&[c, "--color", "never", "--conn", "0"]);
    assert!(!plain.contains(ESC));
    let stripped = painted.replace("\x1b[0m", "").replace("\x1b[1;33m", "");
    let stripped = ["31", "32", "33", "35", "36", "2"]
        .iter()
        .fold(stripped, |t, code| t.replace(&format!("\x1b[{code}m"), ""));
    assert_eq!(stripped, plain);
    // Piped, auto is off.
    assert!(!table(&[c, "--conn", "0"]).contains(ESC));
    // On a terminal (script(1) gives the command a pseudo-terminal), auto paints, and
    // NO_COLOR turns it off.
    let script = std::process::Command::new("sh")
        .args(["-c", "command -v script"])
        .output();
    if !script.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIP: script (util-linux) not installed: no pseudo-terminal test");
        return;
    }
    let on_tty = |no_color: Option<&str>| -> String {
        let cmd = format!(
            "{} replay -q {c} --conn 0",
            env!("CARGO_BIN_EXE_statescope")
        );
        let mut p = std::process::Command::new("script");
        p.args(["-qec", &cmd, "/dev/null"]).env_remove("NO_COLOR");
        if let Some(v) = no_color {
            p.env("NO_COLOR", v);
        }
        let out = p.output().unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tty = on_tty(None);
    assert!(tty.contains("\x1b[32mESTABLISHED"), "{tty}");
    assert!(!on_tty(Some("1")).contains(ESC));
    // An empty NO_COLOR does not count (no-color.org).
    assert!(on_tty(Some("")).contains(ESC));
}

#[test]
fn completions_and_man_page_come_from_the_definitions() {
    let run = |args: &[&str]| -> String {
        let out = Command::cargo_bin("statescope")
            .unwrap()
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    for word in [
        "replay", "live", "serve", "lab", "--where", "--conn", "--format",
    ] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    assert!(bash.contains("complete -F"), "not a bash completion script");
    // Control: a word that is no subcommand or option is not offered.
    assert!(!bash.contains("--no-such-option"));
    for shell in ["zsh", "fish"] {
        assert!(run(&["completions", shell]).contains("replay"), "{shell}");
    }
    let bad = Command::cargo_bin("statescope")
        .unwrap()
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    let man = run(&["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH statescope"),
        "not roff"
    );
    for want in [
        ".SH \"STATESCOPE REPLAY\"",
        ".SH \"STATESCOPE LIVE\"",
        "\\-\\-where",
        "\\-\\-idle\\-timeout",
        "\\-\\-max\\-connections",
        "\\-\\-all",
    ] {
        assert!(man.contains(want), "man page lacks {want}");
    }
    // man(1) itself reads it, when installed.
    let rendered = std::process::Command::new("sh")
        .args(["-c", "command -v man >/dev/null && statescope_man=$(cat) && printf '%s' \"$statescope_man\" | MANWIDTH=100 man -l - 2>/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(man.as_bytes())?;
            c.wait_with_output()
        });
    match rendered {
        Ok(o) if o.status.success() && !o.stdout.is_empty() => {
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(text.contains("--reassembly-cap"), "{text}");
        }
        _ => eprintln!("SKIP: man(1) not installed: roff not rendered"),
    }
}
