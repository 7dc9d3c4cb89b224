//! `lab handshake-and-close`: a TCP connection's whole life, with the kernel's own socket
//! states read at the same moments, side by side with what statescope inferred from packets.
//!
//! What you will see: the three-way handshake (SYN, SYN-ACK, ACK), one request and response,
//! the client closing first (its FIN, the server's FIN, the last ACK) and so waiting in
//! `TIME_WAIT`, and a connection to a port nobody listens on, answered by a RST.
//!
//! At each moment the lab reads `/proc/net/tcp` (what `ss -tan` shows) for both ends of the
//! connection, and compares with the states statescope inferred from the last packet captured
//! before that moment. A socket the kernel no longer lists is `CLOSED`.
//!
//! What that shows is measured, not assumed: on these connections every change the kernel
//! logged (below) came with a captured segment at which statescope showed it. It does not show
//! that this holds on every path. An observer that misses a segment cannot follow (the
//! negative control `missed-segment` drops the server's FIN from the capture, and the
//! comparison fails), and changes driven by timers (the end of `TIME_WAIT`) or by a socket
//! closed without sending anything put nothing on the wire at all.
//!
//! `TIME_WAIT` is visible right after the close; the lab does not wait the 60 s for it to end.
//!
//! Sampled moments can miss a state; the kernel's own log cannot. While the lab runs it records
//! the tracepoint `sock:inet_sock_set_state` (every state change of every TCP socket, with its
//! time) and sets it beside statescope's `transitions`, endpoint by endpoint, through the same
//! comparison the tests use (`crate::kernel::compare`). Two more connections make the states in
//! between last long enough to see: a half-close held open (the client's `shutdown(SHUT_WR)`,
//! FIN_WAIT_2 and CLOSE_WAIT held for a moment) and an abort (SO_LINGER 0: RST instead of FIN).

use super::common::{self, raw_request, Checks, Conn};
use super::{LabCtx, LabDef, LabOut};
use crate::kernel::{self, Tracer};
use crate::record::LabRec;
use crate::server::ServerConfig;
use crate::tcp::state::State;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

pub const LAB: LabDef = LabDef {
    name: "handshake-and-close",
    question: "What states does a TCP connection go through, and can an observer of the packets know them?",
    summary: "three-way handshake, data, active close to TIME_WAIT, a refused connection: the kernel's socket states beside statescope's",
    run,
};

/// After an operation, how long before reading the kernel: lets the packets it caused be
/// captured, so both views describe the same moment.
const PAUSE: Duration = Duration::from_millis(50);

/// How long the plain peer holds CLOSE_WAIT (and so the client FIN_WAIT_2) after a half-close.
const HOLD: Duration = Duration::from_millis(300);

/// A plain socket peer for two connections: the first half-closed by the client (it reads to
/// the client's FIN, holds CLOSE_WAIT for [`HOLD`], answers and closes), the second aborted by
/// the client (it reads until the RST). Bounded by read timeouts.
fn plain_peer(l: TcpListener) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let drain = |s: &mut TcpStream| {
            let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
            let mut b = [0u8; 256];
            while let Ok(n) = s.read(&mut b) {
                if n == 0 {
                    break;
                }
            }
        };
        if let Ok((mut s, _)) = l.accept() {
            drain(&mut s);
            std::thread::sleep(HOLD);
            let _ = s.write_all(b"bye\n");
        }
        if let Ok((mut s, _)) = l.accept() {
            drain(&mut s);
        }
    })
}

/// Close with SO_LINGER {on, 0}: the kernel aborts the connection with an RST.
fn abort(s: TcpStream) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let l = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a linger struct of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &l as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    anyhow::ensure!(rc == 0, "SO_LINGER: {}", std::io::Error::last_os_error());
    drop(s);
    Ok(())
}

/// One endpoint's changes as a line: kernel or statescope, times from `t0` in ms.
fn story(ep: &kernel::Endpoint, t0: f64) -> (String, String) {
    let ms = |t: f64| (t - t0) * 1e3;
    let kernel = match &ep.kernel {
        None => "(no socket logged)".to_string(),
        Some(v) => v
            .iter()
            .map(|k| {
                if k.exact {
                    format!("{} {:+.3}", k.state.as_str(), ms(k.ts))
                } else {
                    format!("{} (before {:+.3})", k.state.as_str(), ms(k.ts))
                }
            })
            .collect::<Vec<_>>()
            .join(", "),
    };
    let shown = ep
        .shown
        .iter()
        .map(|s| {
            format!(
                "{} f{} {:+.3}{}",
                s.state.as_str(),
                s.frame,
                ms(s.ts),
                if s.inferred { " (inferred)" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    (kernel, shown)
}

/// One TCP socket as `/proc/net/tcp` lists it.
#[derive(Debug, Clone, PartialEq)]
struct KernelSocket {
    local: SocketAddr,
    remote: SocketAddr,
    state: &'static str,
}

/// The kernel's state code (`include/net/tcp_states.h`) in the contract's spelling.
fn state_name(code: u8) -> &'static str {
    match code {
        0x01 => "ESTABLISHED",
        0x02 => "SYN_SENT",
        0x03 => "SYN_RECEIVED",
        0x04 => "FIN_WAIT_1",
        0x05 => "FIN_WAIT_2",
        0x06 => "TIME_WAIT",
        0x07 => "CLOSED",
        0x08 => "CLOSE_WAIT",
        0x09 => "LAST_ACK",
        0x0A => "LISTEN",
        0x0B => "CLOSING",
        0x0C => "SYN_RECEIVED", // TCP_NEW_SYN_RECV: a request socket before the final ACK
        _ => "UNKNOWN",
    }
}

/// `0100007F:1F90` (little-endian IPv4 as hex, port as hex) → 127.0.0.1:8080.
fn parse_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddr::from((ip.to_le_bytes(), port)))
}

/// Every IPv4 TCP socket of this network namespace.
fn parse_proc_net_tcp(text: &str) -> Vec<KernelSocket> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            Some(KernelSocket {
                local: parse_addr(f.get(1)?)?,
                remote: parse_addr(f.get(2)?)?,
                state: state_name(u8::from_str_radix(f.get(3)?, 16).ok()?),
            })
        })
        .collect()
}

fn kernel_sockets() -> anyhow::Result<Vec<KernelSocket>> {
    let text = std::fs::read_to_string("/proc/net/tcp")
        .map_err(|e| anyhow::anyhow!("cannot read /proc/net/tcp for the kernel's view: {e}"))?;
    Ok(parse_proc_net_tcp(&text))
}

/// The kernel's state of the socket bound to `local` talking to `remote`; `CLOSED` if none.
fn kernel_state(socks: &[KernelSocket], local: SocketAddr, remote: SocketAddr) -> &'static str {
    socks
        .iter()
        .find(|s| s.local == local && s.remote == remote)
        .map_or("CLOSED", |s| s.state)
}

/// One moment: the kernel's states of both ends, and when they were read.
struct Moment {
    name: &'static str,
    kernel_client: &'static str,
    kernel_server: &'static str,
    /// `/proc/net/tcp` was read between these two clock readings.
    from: f64,
    at: f64,
}

fn moment(name: &'static str, client: SocketAddr, server: SocketAddr) -> anyhow::Result<Moment> {
    std::thread::sleep(PAUSE);
    let from = common::now_secs();
    let socks = kernel_sockets()?;
    Ok(Moment {
        name,
        kernel_client: kernel_state(&socks, client, server),
        kernel_server: kernel_state(&socks, server, client),
        from,
        at: common::now_secs(),
    })
}

fn run(ctx: &LabCtx, out: &mut LabOut) -> anyhow::Result<LabRec> {
    let control = common::begin(out)?;
    let server = common::start_server(ServerConfig::default())?;
    let addr = server.addr();
    let (_held, closed) = common::closed_port()?;
    let closed_addr = SocketAddr::from(([127, 0, 0, 1], closed));
    let plain = TcpListener::bind("127.0.0.1:0")?;
    let plain_addr = plain.local_addr()?;
    let cap = common::start_capture(
        &[addr.port(), closed, plain_addr.port()],
        &common::pcap_path(ctx, LAB.name),
    )?;
    let tracer = Tracer::start();
    if let Err(e) = &tracer {
        out.say(&format!(
            "the kernel's transition log is not available: {e}"
        ))?;
    }
    out.say(&format!(
        "serve listening on {addr}; port {closed} has no listener; capturing lo on both ports"
    ))?;
    let listening = kernel_sockets()?
        .iter()
        .find(|s| s.local == addr && s.state == "LISTEN")
        .map_or("CLOSED", |s| s.state);

    // The connection's life, the kernel read at each step.
    common::step("handshake, GET /, the client closes first");
    let mut conn = Conn::open(addr)?;
    let client = conn.local()?;
    let mut moments = vec![moment("after connect", client, addr)?];
    let resp = conn.request(&raw_request(addr, "GET", "/", &[], ""))?;
    moments.push(moment("after the response", client, addr)?);
    drop(conn); // the client closes first: the active close
                // The server closes when it notices the client's FIN; on a busy machine that can take a
                // while, so wait (bounded) until the kernel shows the client past FIN_WAIT.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        let socks = kernel_sockets()?;
        if !kernel_state(&socks, client, addr).starts_with("FIN_WAIT") {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    moments.push(moment("after the client closed", client, addr)?);

    // A port nobody listens on.
    common::step("connect to a port nobody listens on");
    let refused = TcpStream::connect(closed_addr);
    let refused_error = match &refused {
        Ok(_) => "connected".to_string(),
        Err(e) => e.kind().to_string(),
    };
    std::thread::sleep(PAUSE);
    // Only a socket still trying (SYN_SENT) can be the refused one: once refused, the port is
    // free again, and a concurrent program may listen on it and take connections.
    let refused_kernel = kernel_sockets()?
        .iter()
        .find(|s| s.remote == closed_addr && s.state == "SYN_SENT")
        .map_or("CLOSED", |s| s.state);
    drop(refused);

    // A half-close held open, then an abort, against the plain peer.
    let peer = plain_peer(plain);
    let mut half = TcpStream::connect(plain_addr)?;
    common::step("half-close held open");
    common::note_conn(half.local_addr()?, plain_addr);
    half.set_read_timeout(Some(Duration::from_secs(3)))?;
    half.write_all(b"hello\n")?;
    half.shutdown(Shutdown::Write)?; // FIN: FIN_WAIT_1, then FIN_WAIT_2 once it is ACKed
    let mut reply = Vec::new();
    half.read_to_end(&mut reply)?; // the peer's answer and FIN after HOLD: TIME_WAIT
    let half_client = half.local_addr()?;
    drop(half);
    let mut ab = TcpStream::connect(plain_addr)?;
    common::step("abort (SO_LINGER 0: RST)");
    common::note_conn(ab.local_addr()?, plain_addr);
    ab.write_all(b"x")?;
    std::thread::sleep(PAUSE);
    let abort_client = ab.local_addr()?;
    abort(ab)?;
    let _ = peer.join();
    std::thread::sleep(PAUSE);
    drop(server);

    let missed = control.as_deref() == Some("missed-segment");
    let mut dropped = None;
    let (cap, recs) = common::finish_capture_edited(cap, out, |path| {
        if missed {
            // The negative control: an observer that never saw the server's FIN.
            dropped = common::drop_first_frame(path, |r| match r {
                crate::record::Record::Packet(p)
                    if p.dst.0 == client && p.flags.iter().any(|f| f == "FIN") =>
                {
                    Some(p.frame)
                }
                _ => None,
            })?;
        }
        Ok(())
    })?;
    if let Some(f) = dropped {
        out.say(&format!(
            "NEGATIVE CONTROL: frame {f} (the server's FIN) removed from the capture before replay"
        ))?;
    }

    // ---- the kernel's own transitions beside statescope's ----
    let mut checks = Checks::default();
    let ports = [addr.port(), closed, plain_addr.port()];
    let changes: Vec<kernel::Change> = match tracer.map(|t| t.changes()) {
        Ok(Ok(v)) => v
            .into_iter()
            .filter(|c| ports.contains(&c.local.port()) || ports.contains(&c.remote.port()))
            .collect(),
        Ok(Err(e)) => {
            out.say(&format!(
                "the kernel's transition log could not be read: {e}"
            ))?;
            Vec::new()
        }
        Err(_) => Vec::new(), // said when it failed to start
    };
    checks.check("kernel_transition_log_recorded", !changes.is_empty());
    let eps = kernel::compare(&recs.0, &changes);
    out.say("The kernel's own state changes (tracepoint sock:inet_sock_set_state) beside statescope's, ms from each connection's first frame:")?;
    for e in &eps {
        let t0 = recs
            .conns()
            .find(|c| c.conn == e.conn)
            .map_or(0.0, |c| c.first_ts);
        let (k, shown) = story(e, t0);
        out.say(&format!("  conn {} {} {}", e.conn, e.role, e.local))?;
        out.say(&format!("    kernel      {k}"))?;
        out.say(&format!("    statescope  {shown}"))?;
        for p in &e.problems {
            out.say(&format!("    <- differ: {p}"))?;
        }
    }
    let agreeing = eps.iter().filter(|e| e.problems.is_empty()).count();
    checks.check(
        "every_endpoint_matches_kernel",
        !eps.is_empty() && agreeing == eps.len(),
    );
    let kernel_of = |local: SocketAddr| {
        eps.iter()
            .find(|e| e.local == local)
            .and_then(|e| e.kernel.clone())
            .unwrap_or_default()
    };
    // How long the half-closed client sat in FIN_WAIT_2, by the kernel's clock.
    let half_k = kernel_of(half_client);
    let fin_wait_2_ms = half_k
        .windows(2)
        .find(|w| w[0].state == State::FinWait2)
        .map(|w| (w[1].ts - w[0].ts) * 1e3);
    checks.check(
        "half_close_held_fin_wait_2",
        fin_wait_2_ms.is_some_and(|ms| ms >= HOLD.as_secs_f64() * 1e3 / 2.0),
    );
    let abort_k = kernel_of(abort_client);
    checks.check(
        "abort_closed_from_established",
        abort_k.iter().map(|k| k.state).collect::<Vec<_>>()
            == [State::SynSent, State::Established, State::Closed],
    );
    checks.check(
        "refused_server_never_syn_received",
        eps.iter()
            .filter(|e| e.local == closed_addr)
            .all(|e| e.shown.iter().all(|s| s.state != State::SynReceived)),
    );
    let inferred = eps
        .iter()
        .flat_map(|e| &e.shown)
        .filter(|s| s.inferred)
        .count();
    let shown_total: usize = eps.iter().map(|e| e.shown.len()).sum();

    // ---- compare at the sampled moments ----
    let conn_rec = recs.conn_to(client, addr);
    checks.check("conn_captured", conn_rec.is_some());
    checks.check("server_socket_listen", listening == "LISTEN");
    let conn_idx = conn_rec.map(|c| c.conn).unwrap_or(u64::MAX);
    let pk = recs.packets_of(conn_idx);
    let flags: Vec<String> = pk.iter().map(|p| p.flags.join("+")).collect();
    let handshake_ok = flags.len() >= 3 && flags[..3] == ["SYN", "SYN+ACK", "ACK"];
    checks.check("handshake_syn_synack_ack", handshake_ok);
    let fins: Vec<_> = pk
        .iter()
        .filter(|p| p.flags.iter().any(|f| f == "FIN"))
        .map(|p| p.dir.as_str())
        .collect();
    checks.check("client_fin_first", fins == ["c2s", "s2c"]);
    out.say(&format!(
        "Connection {} -> {}: {} packets: {}",
        client,
        addr,
        pk.len(),
        flags.join(", ")
    ))?;
    out.say(&format!(
        "  handshake RTT {:.1} µs; request {} bytes, response {} ({} bytes)",
        conn_rec.and_then(|c| c.initial_rtt).unwrap_or(0.0) * 1e6,
        conn_rec.map_or(0, |c| c.bytes_c2s),
        resp.status,
        conn_rec.map_or(0, |c| c.bytes_s2c)
    ))?;
    out.say(&format!(
        "{:<26} {:>13} {:>13}   {:>13} {:>13}",
        "moment", "kernel client", "inferred", "kernel server", "inferred"
    ))?;
    let mut facts = Vec::new();
    let mut all_agree = true;
    for m in &moments {
        // The kernel was read at some instant between `from` and `at`: each side agrees when
        // its state matches the inferred one at the start of that window or after any segment
        // inside it (on a busy machine a FIN can go out while /proc is being read).
        let none = || ("NONE".to_string(), "NONE".to_string());
        let mut during = vec![recs.states_at(conn_idx, m.from).unwrap_or_else(none)];
        during.extend(
            pk.iter()
                .filter(|p| p.ts > m.from && p.ts <= m.at)
                .map(|p| (p.client_state.to_string(), p.server_state.to_string())),
        );
        let (ic, is) = recs.states_at(conn_idx, m.at).unwrap_or_else(none);
        let agree = during.iter().any(|(c, _)| c == m.kernel_client)
            && during.iter().any(|(_, s)| s == m.kernel_server);
        let (ic, is) = if agree {
            (m.kernel_client.to_string(), m.kernel_server.to_string())
        } else {
            (ic, is)
        };
        all_agree &= agree;
        out.say(&format!(
            "{:<26} {:>13} {:>13}   {:>13} {:>13}{}",
            m.name,
            m.kernel_client,
            ic,
            m.kernel_server,
            is,
            if agree { "" } else { "   <- differ" }
        ))?;
        let key = m.name.replace(' ', "_");
        facts.push((format!("{key}_kernel_client"), json!(m.kernel_client)));
        facts.push((format!("{key}_inferred_client"), json!(ic)));
        facts.push((format!("{key}_kernel_server"), json!(m.kernel_server)));
        facts.push((format!("{key}_inferred_server"), json!(is)));
    }
    checks.check("sampled_moments_agree", all_agree);
    let last = moments.last().map(|m| m.kernel_client).unwrap_or("");
    checks.check("active_closer_time_wait", last == "TIME_WAIT");
    let final_client = conn_rec.map(|c| c.client_state.clone()).unwrap_or_default();
    checks.check("conn_record_client_time_wait", final_client == "TIME_WAIT");

    let rej = recs.conns().find(|c| *c.server == *closed_addr.to_string());
    let rej_flags: Vec<String> = rej
        .map(|c| recs.packets_of(c.conn))
        .unwrap_or_default()
        .iter()
        .map(|p| p.flags.join("+"))
        .collect();
    checks.check("refused_connect_failed", refused_error != "connected");
    checks.check("refused_syn_rst_ack", rej_flags == ["SYN", "RST+ACK"]);
    checks.check("refused_no_kernel_socket", refused_kernel == "CLOSED");
    let rej_state = rej.map(|c| (c.client_state.clone(), c.conn_state.clone()));
    out.say(&format!(
        "Refused: connect to {closed_addr} -> {refused_error}; packets {}; kernel socket {refused_kernel}; inferred client {}, Zeek state {}",
        rej_flags.join(", "),
        rej_state.as_ref().map_or("?", |s| s.0.as_ref()),
        rej_state.as_ref().map_or("?", |s| s.1.as_ref()),
    ))?;
    out.say(&format!(
        "Capture: {} ({} frames).",
        cap.path.display(),
        cap.frames
    ))?;

    let answer = format!(
        "Handshake (SYN, SYN+ACK, ACK) to ESTABLISHED, data, and the active close ({}) left the client in {} \
         while the server's socket was gone; a SYN to a closed port got RST+ACK and left no socket; a half-close \
         held FIN_WAIT_2 for {:.0} ms; an abort went from ESTABLISHED straight to CLOSED. Against the kernel's own log \
         of every state change, statescope showed the same states in the same order for {} of {} endpoints, each change \
         the kernel timed at its frame; the three sampled moments {}. {} of its {} changes were inferred rather than seen \
         (a passive open shows only in the SYN-ACK), and it says so. So on these {} endpoints an observer of the packets \
         followed both state machines; that is what was measured, not a law: it needs every segment seen (the control \
         that misses the server's FIN fails), and changes made by timers, like the end of TIME_WAIT, put nothing on the wire.",
        fins.join(" FIN, then ") + " FIN",
        last,
        fin_wait_2_ms.unwrap_or(0.0),
        agreeing,
        eps.len(),
        if all_agree { "agreed too" } else { "did NOT all agree" },
        inferred,
        shown_total,
        eps.len(),
    );
    let mut f = vec![
        ("conn", json!(conn_idx)),
        ("packets", json!(pk.len())),
        ("flags", json!(flags)),
        ("handshake_rtt", json!(conn_rec.and_then(|c| c.initial_rtt))),
        ("bytes_c2s", json!(conn_rec.map(|c| c.bytes_c2s))),
        ("bytes_s2c", json!(conn_rec.map(|c| c.bytes_s2c))),
        ("listen_kernel", json!(listening)),
        ("final_inferred_client", json!(final_client)),
        ("states_agree", json!(all_agree)),
        ("refused_conn", json!(rej.map(|c| c.conn))),
        ("refused_flags", json!(rej_flags)),
        ("refused_error", json!(refused_error)),
        ("refused_kernel_client", json!(refused_kernel)),
        ("refused_conn_state", json!(rej_state.map(|s| s.1))),
        ("kernel_changes", json!(changes.len())),
        ("endpoints_compared", json!(eps.len())),
        ("endpoints_agree", json!(agreeing)),
        ("changes_shown", json!(shown_total)),
        ("changes_inferred", json!(inferred)),
        ("half_close_fin_wait_2_ms", json!(fin_wait_2_ms)),
        ("frames", json!(cap.frames)),
        ("pcap", json!(cap.path.display().to_string())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect::<Vec<_>>();
    f.extend(facts);
    let failed = checks.failed(out)?;
    let rec = LabRec {
        name: LAB.name.into(),
        question: LAB.question.into(),
        answer,
        facts: f.into_iter().collect(),
        settings: common::facts(vec![
            ("pause_ms", json!(PAUSE.as_millis() as u64)),
            ("half_close_hold_ms", json!(HOLD.as_millis() as u64)),
            ("control", json!(control)),
            ("dropped_frame", json!(dropped)),
        ]),
        ok: failed.is_empty(),
        failed,
    };
    common::write_report(
        ctx,
        out,
        &rec,
        &recs,
        &[
            (
                "each end's kernel",
                format!(
                    "per connection, its TCP state: ESTABLISHED, then for the client that closed first {last}; {} state changes logged",
                    changes.len()
                ),
            ),
            (
                "serve",
                "nothing once the response was sent".into(),
            ),
            (
                "statescope (the observer)",
                "both ends' states, inferred from the segments it saw and nothing else".into(),
            ),
        ],
    )?;
    Ok(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_tcp_lines() {
        let text = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
            0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n   \
            1: 0100007F:D2A4 0100007F:1F90 06 00000000:00000000 03:00000F9F 00000000     0        0 0 3 0\n";
        let s = parse_proc_net_tcp(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].local, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(s[0].state, "LISTEN");
        assert_eq!(s[1].state, "TIME_WAIT");
        let c: SocketAddr = "127.0.0.1:53924".parse().unwrap();
        let srv: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(kernel_state(&s, c, srv), "TIME_WAIT");
        assert_eq!(kernel_state(&s, srv, c), "CLOSED");
        // A damaged line is skipped, not a panic.
        assert!(parse_proc_net_tcp("header\n 0: zz:1 00:0 01\n").is_empty());
    }
}
