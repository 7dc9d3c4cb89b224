//! `statescope live` end to end: the real binary captures on `lo` while the test makes real
//! loopback TCP traffic, and the written pcap is checked frame by frame.
//!
//! Capturing needs root (CAP_NET_RAW); without it those tests print "skipped: ..." and return.
//! Other programs may use `lo` at the same time, so every capture filters on a port this test
//! owns.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_statescope");

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        println!("skipped: needs root (CAP_NET_RAW)");
    }
    root
}

/// A running `statescope live`, started once its "capturing on" line is on standard error.
struct Live {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Live {
    fn start(args: &[&str]) -> Live {
        let mut child = Command::new(BIN)
            .arg("live")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run statescope");
        let (tx, rx) = mpsc::channel();
        let err = child.stderr.take().unwrap();
        thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("statescope live starts");
        assert!(first.contains("capturing on "), "{first}");
        Live { child, stderr: rx }
    }

    /// Wait for the exit (at most `limit`); stdout, the remaining stderr lines, the status.
    fn finish(mut self, limit: Duration) -> (String, Vec<String>, std::process::ExitStatus) {
        let mut out = String::new();
        let mut stdout = self.child.stdout.take().unwrap();
        let reader = thread::spawn(move || {
            stdout.read_to_string(&mut out).unwrap();
            out
        });
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                panic!("statescope live did not stop within {limit:?}");
            }
            thread::sleep(Duration::from_millis(20));
        };
        let out = reader.join().unwrap();
        let err: Vec<String> = self.stderr.iter().collect();
        (out, err, status)
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
    }
}

/// The stats line: (frames, dropped, failed to decode).
fn stats_line(err: &[String]) -> (u64, u64, u64) {
    let line = err
        .iter()
        .find(|l| l.contains("dropped by kernel"))
        .unwrap_or_else(|| panic!("no stats line in {err:?}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(nums.len(), 3, "{line}");
    (nums[0], nums[1], nums[2])
}

/// One connection through `listener`: the client sends `n` bytes, the server answers "ok",
/// both close. Real sockets on 127.0.0.1.
fn exchange(listener: &TcpListener, n: usize) {
    let port = listener.local_addr().unwrap().port();
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let data = vec![b'x'; n];
    let writer = thread::spawn(move || {
        client.write_all(&data).unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).unwrap();
        answer
    });
    let mut got = Vec::new();
    server.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), n);
    server.write_all(b"ok").unwrap();
    drop(server);
    assert_eq!(writer.join().unwrap(), b"ok");
}

/// One record of a pcap file.
struct Rec {
    ts_nanos: u64,
    incl: usize,
    orig: usize,
    data: Vec<u8>,
}

/// Read a nanosecond pcap in this machine's byte order (what `live -w` writes).
fn read_pcap(path: &Path) -> (u32, Vec<Rec>) {
    let b = std::fs::read(path).unwrap();
    let u32_at = |at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
    assert_eq!(u32_at(0), 0xa1b2_3c4d, "nanosecond pcap magic");
    let linktype = u32_at(20);
    let mut recs = Vec::new();
    let mut at = 24;
    while at < b.len() {
        let incl = u32_at(at + 8) as usize;
        recs.push(Rec {
            ts_nanos: u64::from(u32_at(at)) * 1_000_000_000 + u64::from(u32_at(at + 4)),
            incl,
            orig: u32_at(at + 12) as usize,
            data: b[at + 16..at + 16 + incl].to_vec(),
        });
        at += 16 + incl;
    }
    assert_eq!(at, b.len(), "no partial record at the end");
    (linktype, recs)
}

/// A TCP segment: (sport, dport, flags, payload length).
type Seg = (u16, u16, u8, usize);

/// TCP in an Ethernet + IPv4 frame.
fn tcp(frame: &[u8]) -> Option<Seg> {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] || frame[23] != 6 {
        return None;
    }
    let ihl = usize::from(frame[14] & 0xf) * 4;
    let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
    let t = 14 + ihl;
    let doff = usize::from(frame[t + 12] >> 4) * 4;
    Some((
        u16::from_be_bytes([frame[t], frame[t + 1]]),
        u16::from_be_bytes([frame[t + 2], frame[t + 3]]),
        frame[t + 13],
        total - ihl - doff,
    ))
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// Capture one 60 KB exchange; return the pcap's records, live's stdout and stderr.
fn capture_exchange(
    dir: &Path,
    use_filter: bool,
    extra: &[&str],
) -> (u16, Vec<Rec>, String, Vec<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let pcap = dir.join("live.pcap");
    let port_s = port.to_string();
    let mut args = vec!["-i", "lo", "-w", pcap.to_str().unwrap(), "--duration", "3"];
    args.extend(extra);
    let filter = format!("tcp port {port}");
    if use_filter {
        args.extend(["--filter", &filter]);
    } else {
        args.extend(["--port", &port_s]);
    }
    let live = Live::start(&args);
    exchange(&listener, 60_000);
    let (out, err, status) = live.finish(Duration::from_secs(15));
    assert!(status.success(), "{status:?} {err:?}");
    let (linktype, recs) = read_pcap(&pcap);
    assert_eq!(linktype, 1, "Ethernet on lo");
    (port, recs, out, err)
}

#[test]
fn live_writes_every_frame_of_a_loopback_connection_whole_and_once() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (port, recs, out, err) = capture_exchange(dir.path(), false, &["--format", "jsonl"]);

    let segs: Vec<Seg> = recs.iter().filter_map(|r| tcp(&r.data)).collect();
    assert_eq!(segs.len(), recs.len(), "the filter passed only TCP");
    assert!(segs.iter().all(|s| s.0 == port || s.1 == port));
    let count = |f: &dyn Fn(&Seg) -> bool| segs.iter().filter(|s| f(s)).count();
    // The handshake and both FINs, each exactly once: the outgoing copies on lo are gone.
    assert_eq!(count(&|s| s.2 & (SYN | ACK) == SYN && s.1 == port), 1);
    assert_eq!(count(&|s| s.2 & (SYN | ACK) == SYN | ACK && s.0 == port), 1);
    assert_eq!(count(&|s| s.2 & FIN != 0 && s.1 == port), 1);
    assert_eq!(count(&|s| s.2 & FIN != 0 && s.0 == port), 1);
    assert!(count(&|s| s.2 == ACK && s.3 == 0) >= 1);
    for (i, a) in recs.iter().enumerate() {
        assert!(
            recs[i + 1..].iter().all(|b| b.data != a.data),
            "frame {} is duplicated",
            i + 1
        );
    }
    // Not truncated: every byte the client sent is in the capture, in frames > 4096 bytes.
    let sent: usize = segs.iter().filter(|s| s.1 == port).map(|s| s.3).sum();
    assert_eq!(sent, 60_000);
    assert!(recs.iter().any(|r| r.incl > 4096), "large loopback frames");
    for r in &recs {
        assert_eq!(r.incl, r.orig, "a frame was cut");
        assert_eq!(r.incl, r.data.len());
    }
    // Kernel timestamps: in order, within the last minute, with sub-microsecond digits somewhere.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    assert!(recs.windows(2).all(|w| w[0].ts_nanos <= w[1].ts_nanos));
    assert!(recs.iter().all(|r| now - r.ts_nanos < 60_000_000_000));
    assert!(recs.iter().any(|r| r.ts_nanos % 1000 != 0));

    let (frames, dropped, _) = stats_line(&err);
    assert_eq!(frames as usize, recs.len());
    assert_eq!(dropped, 0);
    // stdout holds JSON lines only.
    for line in out.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }

    // tcpdump, where installed, reads the file and sees the same frames.
    if let Ok(o) = Command::new("tcpdump")
        .args(["-nn", "-r"])
        .arg(dir.path().join("live.pcap"))
        .output()
    {
        let text = String::from_utf8_lossy(&o.stdout);
        assert_eq!(text.lines().count(), recs.len(), "{text}");
        assert!(text.contains("Flags [S]") && text.contains("Flags [F.]"));
    }
}

#[test]
fn filter_expression_selects_like_port_option() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (port, recs, _, _) = capture_exchange(dir.path(), true, &["--format", "jsonl", "-q"]);
    assert!(recs.len() >= 8, "{} frames", recs.len());
    assert!(recs
        .iter()
        .filter_map(|r| tcp(&r.data))
        .all(|s| s.0 == port || s.1 == port));
}

/// Meaningful once the engine and the pcap reader are merged: live's records must be exactly
/// what `replay` makes of the file live wrote (same frames, numbers and timestamps).
#[test]
fn live_records_equal_replay_records_of_the_written_pcap() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_, recs, live_out, _) = capture_exchange(dir.path(), false, &["--format", "jsonl", "-q"]);
    assert!(!recs.is_empty());
    let replay: Output = Command::new(BIN)
        .args(["replay", "--format", "jsonl", "-q"])
        .arg(dir.path().join("live.pcap"))
        .output()
        .unwrap();
    assert!(
        replay.status.success(),
        "replay: {}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let parse = |s: &str| -> Vec<serde_json::Value> {
        s.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let live = parse(&live_out);
    let replayed = parse(&String::from_utf8_lossy(&replay.stdout));
    let packets = live.iter().filter(|r| r["type"] == "packet").count();
    assert_eq!(
        packets,
        recs.len(),
        "one packet record per captured segment"
    );
    assert!(live.iter().any(|r| r["type"] == "conn"));
    assert_eq!(live, replayed);
}

#[test]
fn ctrl_c_and_sigterm_stop_an_idle_capture_cleanly() {
    if !is_root() {
        return;
    }
    // A port nobody uses: the interface is idle as far as the filter is concerned.
    let unused = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = unused.local_addr().unwrap().port().to_string();
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let dir = tempfile::tempdir().unwrap();
        let pcap = dir.path().join("idle.pcap");
        let live = Live::start(&["-i", "lo", "--port", &port, "-w", pcap.to_str().unwrap()]);
        thread::sleep(Duration::from_millis(300));
        let sent = Instant::now();
        live.signal(sig);
        let (_, err, status) = live.finish(Duration::from_secs(5));
        assert!(sent.elapsed() < Duration::from_secs(2), "stopped promptly");
        assert!(status.success(), "signal {sig}: {status:?} {err:?}");
        assert_eq!(stats_line(&err), (0, 0, 0));
        let (linktype, frames) = read_pcap(&pcap);
        assert_eq!((linktype, frames.len()), (1, 0), "a valid empty pcap");
    }
}

#[test]
fn count_and_duration_stop_by_themselves() {
    if !is_root() {
        return;
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let live = Live::start(&["-i", "lo", "--port", &port, "--count", "3", "-q"]);
    exchange(&listener, 100);
    let (_, err, status) = live.finish(Duration::from_secs(10));
    assert!(status.success());
    assert_eq!(stats_line(&err).0, 3);

    let start = Instant::now();
    let live = Live::start(&["-i", "lo", "--port", &port, "--duration", "0.5"]);
    let (_, err, status) = live.finish(Duration::from_secs(10));
    assert!(status.success());
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(stats_line(&err).0, 0);
}

#[test]
fn write_error_is_one_clear_line() {
    if !is_root() {
        return;
    }
    let o = Command::new(BIN)
        .args(["live", "-i", "lo", "-w", "/dev/full", "--duration", "1"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("writing /dev/full: No space left on device"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// Whole records in a pcap that may end in a partial one (a disk filled mid-record).
fn whole_records(path: &Path) -> u64 {
    let b = std::fs::read(path).unwrap();
    let mut at = 24;
    let mut n = 0;
    while at + 16 <= b.len() {
        let incl = u32::from_ne_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
        if at + 16 + incl > b.len() {
            break;
        }
        n += 1;
        at += 16 + incl;
    }
    n
}

/// `-w` into a 64 KiB tmpfs while 1 MB crosses lo: the pcap fills, and both the error and the
/// summary line say which frames were analysed but are not in it; the records on standard
/// output go exactly that far. Control: the same capture into a roomy tmpfs says nothing of
/// the kind.
#[test]
fn a_full_disk_says_which_analysed_frames_the_pcap_lacks() {
    if !is_root() {
        return;
    }
    for (size, fills) in [("64k", true), ("64m", false)] {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(mnt)
            .status()
            .unwrap();
        if !ok.success() {
            println!("skipped: cannot mount a tmpfs here");
            return;
        }
        let pcap = mnt.join("out.pcap");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port().to_string();
        let live = Live::start(&[
            "-i",
            "lo",
            "-w",
            pcap.to_str().unwrap(),
            "--port",
            &port,
            "--duration",
            "2",
            "--format",
            "jsonl",
        ]);
        exchange(&listener, 1_000_000);
        let (out, err, status) = live.finish(Duration::from_secs(15));
        let in_file = whole_records(&pcap);
        let _ = Command::new("umount").arg(mnt).status();
        let last_frame = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|r| r["frame"].as_u64())
            .max()
            .unwrap_or(0);
        let said = err
            .iter()
            .find(|l| l.contains("were analysed but are not in it"));
        let summary = err
            .iter()
            .find(|l| l.contains("dropped by kernel"))
            .unwrap();
        if fills {
            assert_eq!(status.code(), Some(1), "{err:?}");
            let said = said.unwrap_or_else(|| panic!("{err:?}"));
            let lost = last_frame - in_file;
            assert!(lost > 0, "{err:?}");
            assert!(
                said.contains(&format!(
                    "it holds frames 1-{in_file} only; frames {}-{last_frame} ({lost}) were \
                     analysed but are not in it",
                    in_file + 1
                )),
                "{said}"
            );
            assert!(
                summary.contains(&format!(
                    ", {lost} frames analysed but not in {} (frames {}-{last_frame}",
                    pcap.display(),
                    in_file + 1
                )),
                "{summary}"
            );
        } else {
            assert!(status.success(), "{err:?}");
            assert!(said.is_none(), "{err:?}");
            assert!(!summary.contains("analysed but not in"), "{summary}");
            assert_eq!(in_file, last_frame);
        }
    }
}

#[test]
fn without_privileges_it_says_how_to_fix() {
    if !is_root() {
        return;
    }
    // Drop to nobody with no capabilities, as an ordinary user would run it.
    let o = match Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .args([BIN, "live", "-i", "lo", "--duration", "1"])
        .output()
    {
        Ok(o) => o,
        Err(_) => {
            println!("skipped: setpriv is not installed");
            return;
        }
    };
    let err = String::from_utf8_lossy(&o.stderr);
    if err.contains("Permission denied") && !err.contains("CAP_NET_RAW") {
        println!("skipped: nobody cannot run {BIN}");
        return;
    }
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.contains("CAP_NET_RAW"), "{err}");
    assert!(
        err.contains("setcap cap_net_raw,cap_net_admin+eip"),
        "{err}"
    );
}

#[test]
fn interface_errors_name_the_problem() {
    let o = Command::new(BIN)
        .args(["live", "-i", "no-such-if0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no-such-if0: no such interface (there are: "),
        "{err}"
    );
    assert!(err.contains("lo") && err.contains("\"any\""), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");

    // Without -i: the list, with up/down and addresses.
    let o = Command::new(BIN).arg("live").output().unwrap();
    assert!(o.status.success());
    let list = String::from_utf8_lossy(&o.stdout);
    let lo = list
        .lines()
        .find(|l| l.starts_with("lo "))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(lo.contains(" up ") && lo.contains("127.0.0.1/8"), "{lo}");
    assert!(list.lines().any(|l| l.starts_with("any ")), "{list}");

    // An interface that is down, where the machine has one.
    if let Some(down) = list
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("down"))
    {
        let name = down.split_whitespace().next().unwrap();
        let o = Command::new(BIN)
            .args(["live", "-i", name])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("the interface is down"), "{err}");
    } else {
        println!("skipped: no interface is down here");
    }
}

#[test]
fn unsupported_filter_is_bad_usage() {
    let o = Command::new(BIN)
        .args(["live", "-i", "lo", "--filter", "tcp portrange 1-9"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unsupported \"portrange\""), "{err}");
    assert!(err.contains("[tcp|udp] [src|dst] port N"), "{err}");
}

/// `-i any` (Linux cooked capture): a loopback connection is seen once per packet, exactly as
/// on `lo`; `-w` writes LINUX_SLL2 frames that `replay` reads back to the same records.
#[test]
fn any_sees_loopback_as_lo_does_and_writes_sll2() {
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let pcap = dir.path().join("any.pcap");
    let any = Live::start(&[
        "-i",
        "any",
        "--port",
        &port,
        "--format",
        "jsonl",
        "-q",
        "-w",
        pcap.to_str().unwrap(),
    ]);
    let lo = Live::start(&["-i", "lo", "--port", &port, "--format", "jsonl", "-q"]);
    exchange(&listener, 3000);
    thread::sleep(Duration::from_millis(300));
    any.signal(libc::SIGINT);
    lo.signal(libc::SIGINT);
    let (any_out, err, status) = any.finish(Duration::from_secs(10));
    assert!(status.success(), "{err:?}");
    let (lo_out, _, _) = lo.finish(Duration::from_secs(10));
    // What a packet is, apart from when and where it was captured.
    let packets = |s: &str| -> Vec<serde_json::Value> {
        s.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|r| r["type"] == "packet")
            .map(|mut r| {
                let o = r.as_object_mut().unwrap();
                for k in ["ts", "ack_rtt", "frame", "acks_frame"] {
                    o.remove(k);
                }
                r
            })
            .collect()
    };
    let (on_any, on_lo) = (packets(&any_out), packets(&lo_out));
    assert!(on_lo.len() >= 8, "{lo_out}");
    assert_eq!(on_any, on_lo, "each packet once, as on lo");
    assert!(
        any_out.contains("\"client_state\":\"TIME_WAIT\""),
        "{any_out}"
    );

    let (linktype, frames) = read_pcap(&pcap);
    assert_eq!(linktype, 276, "LINUX_SLL2");
    assert_eq!(frames.len(), on_any.len());
    // The cooked header: IPv4, the loopback's hardware type.
    assert_eq!(&frames[0].data[0..2], &[0x08, 0x00]);
    assert_eq!(&frames[0].data[8..10], &772u16.to_be_bytes());
    let replay = Command::new(BIN)
        .args(["replay", "--format", "jsonl", "-q"])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(replay.status.success());
    assert_eq!(packets(&String::from_utf8_lossy(&replay.stdout)), on_any);
}

/// Each connection's record by its client address, without what differs between two sockets
/// capturing the same packets: the index and frame numbers (each process numbers its own),
/// times (each socket's copy is stamped as it is delivered, microseconds apart).
/// (client address, the record without what differs), sorted.
type Conns = Vec<(String, String)>;

fn by_client(out: &str) -> Conns {
    let mut v: Vec<(String, String)> = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["type"] == "conn")
        .map(|mut r| {
            let o = r.as_object_mut().unwrap();
            for k in ["conn", "first_ts", "last_ts", "initial_rtt", "diagnostics"] {
                o.remove(k);
            }
            for t in o["transitions"].as_array_mut().unwrap() {
                t.as_object_mut().unwrap().remove("frame");
            }
            (r["client"].to_string(), r.to_string())
        })
        .collect();
    v.sort();
    v
}

/// Two `live --fanout` members: `same` group or two groups (the control). Returns the
/// reference capture's connections and each member's.
fn fanout_run(same: bool) -> (Conns, [Conns; 2]) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let group = 1000 + (std::process::id() % 30000) as u16 * 2;
    let groups = [group, if same { group } else { group + 1 }];
    // Connection records only: packet lines would fill the unread pipe and stall the capture.
    let common = [
        "-i",
        "lo",
        "--port",
        &port,
        "--format",
        "jsonl",
        "-q",
        "--where",
        "type conn",
    ];
    let start = |g: Option<u16>| {
        let g = g.map(|g| g.to_string());
        let mut args: Vec<&str> = common.to_vec();
        if let Some(g) = &g {
            args.extend(["--fanout", g]);
        }
        Live::start(&args)
    };
    let reference = start(None);
    let members = [start(Some(groups[0])), start(Some(groups[1]))];
    for _ in 0..40 {
        exchange(&listener, 100);
    }
    thread::sleep(Duration::from_millis(300));
    let stop = |l: Live| {
        // SAFETY: kill has no memory preconditions; the pid is our own child's.
        unsafe { libc::kill(l.child.id() as i32, libc::SIGINT) };
        let (out, err, status) = l.finish(Duration::from_secs(20));
        assert!(status.code().is_some(), "{err:?}");
        by_client(&out)
    };
    let [a, b] = members;
    let got = [stop(a), stop(b)];
    (stop(reference), got)
}

/// `live --fanout ID` in two processes: the kernel's flow hash gives each connection, both
/// directions, to one of them; together they hold exactly the connections (records equal, but
/// for the index) of a capture without fanout. Control: two different groups each see all.
#[test]
fn fanout_members_split_connections_between_them() {
    if !is_root() {
        return;
    }
    let check = |reference: &Conns, got: &[Conns; 2]| {
        let mut union: Vec<_> = got.iter().flatten().cloned().collect();
        union.sort();
        if let Some((a, b)) = union.iter().zip(reference).find(|(a, b)| a != b) {
            println!("first difference:\n{}\n{}", a.1, b.1);
        }
        &union == reference && got.iter().all(|g| !g.is_empty())
    };
    let (reference, got) = fanout_run(true);
    assert_eq!(reference.len(), 40, "{} {}", got[0].len(), got[1].len());
    assert!(
        check(&reference, &got),
        "members {} + {}, reference {}",
        got[0].len(),
        got[1].len(),
        reference.len()
    );
    // Control: not one group, so no split: every connection twice.
    let (reference, got) = fanout_run(false);
    assert!(!check(&reference, &got));
    assert_eq!(got[0].len() + got[1].len(), 2 * reference.len());
}
