//! The kernel's own account of its sockets' states: the oracle for endpoint states.
//!
//! Linux reports every TCP socket state change on the tracepoint `sock:inet_sock_set_state`.
//! [`Tracer`] records it (tracefs, as root) while a lab runs; [`parse_tsv`] reads the
//! `NAME.transitions.tsv` files that `bench/corpus` writes beside its captures. Linux's
//! bookkeeping differs from RFC 9293's diagram in a few places, and [`rfc_states`] maps them,
//! here and nowhere else:
//!
//! 1. `connect()` logs CLOSE → SYN_SENT before the source port is bound (port 0, so the row names
//!    no connection): a life whose first logged change leaves SYN_SENT began in SYN_SENT.
//! 2. A passive open is a *request socket* until the third ACK: LISTEN → SYN_RECV is logged only
//!    when the child socket is made, although the RFC's SYN-RECEIVED begins at the SYN. A request
//!    socket whose handshake never completes logs nothing at all (`ss` lists it as SYN-RECV);
//!    [`request_socket_only`] says which observer states that allows.
//! 3. An endpoint entering TIME_WAIT, or an orphan entering FIN_WAIT_2, hands its connection to
//!    a timewait socket, logged as → CLOSE; the timewait socket's own FIN_WAIT_2 → TIME_WAIT on
//!    the peer's FIN is not logged. Only an RST (sent or received) or LAST_ACK's end is a real
//!    close.
//!
//! What no packet can show is left out: changes by timers after the connection's last frame
//! (a connect() that times out, TIME_WAIT's end).
//!
//! The lab and the tests compare statescope's `transitions` with what this gives.

use crate::record::{ConnRec, PacketRec, Record};
use crate::tcp::state::State;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// One logged state change of one socket.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// Seconds since the Unix epoch.
    pub ts: f64,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub old: State,
    pub new: State,
}

/// Linux's name of a TCP state (with or without the `TCP_` prefix) as an RFC 9293 state.
pub fn linux_state(name: &str) -> Option<State> {
    Some(match name.strip_prefix("TCP_").unwrap_or(name) {
        "SYN_SENT" => State::SynSent,
        "SYN_RECV" | "NEW_SYN_RECV" => State::SynReceived,
        "ESTABLISHED" => State::Established,
        "FIN_WAIT1" => State::FinWait1,
        "FIN_WAIT2" => State::FinWait2,
        "CLOSE_WAIT" => State::CloseWait,
        "LAST_ACK" => State::LastAck,
        "CLOSING" => State::Closing,
        "TIME_WAIT" => State::TimeWait,
        "CLOSE" => State::Closed,
        "LISTEN" => State::Listen,
        _ => return None,
    })
}

/// `ip:port`, or `[v6]:port`, as written in the transitions files.
fn addr(s: &str) -> Option<SocketAddr> {
    s.parse().ok()
}

/// Read a `ts local remote old new` file (with its header).
pub fn parse_tsv(text: &str) -> Result<Vec<Change>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let row = || format!("transitions line {}: {line:?}", i + 1);
        let [ts, local, remote, old, new] = f[..] else {
            return Err(row());
        };
        out.push(Change {
            ts: ts.parse().map_err(|_| row())?,
            local: addr(local).ok_or_else(row)?,
            remote: addr(remote).ok_or_else(row)?,
            old: linux_state(old).ok_or_else(row)?,
            new: linux_state(new).ok_or_else(row)?,
        });
    }
    Ok(out)
}

/// One line of the tracepoint's text output, e.g. `… 12.345678: inet_sock_set_state:
/// family=AF_INET protocol=IPPROTO_TCP sport=80 dport=4000 saddr=10.0.0.2 daddr=10.0.0.1
/// saddrv6=… daddrv6=… oldstate=TCP_SYN_RECV newstate=TCP_ESTABLISHED`. `offset` turns the
/// trace clock into epoch seconds. Rows of other protocols or with port 0 give `None`.
pub fn parse_trace_line(line: &str, offset: f64) -> Option<Change> {
    let (head, body) = line.split_once(": inet_sock_set_state: ")?;
    let ts: f64 = head
        .rsplit(' ')
        .next()?
        .trim_end_matches(':')
        .parse()
        .ok()?;
    let field = |k: &str| {
        body.split(' ')
            .find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
    };
    if field("protocol")? != "IPPROTO_TCP" {
        return None;
    }
    let v6 = field("family")? == "AF_INET6";
    let (sip, dip) = if v6 {
        (field("saddrv6")?, field("daddrv6")?)
    } else {
        (field("saddr")?, field("daddr")?)
    };
    let (sport, dport): (u16, u16) = (field("sport")?.parse().ok()?, field("dport")?.parse().ok()?);
    if sport == 0 || dport == 0 {
        return None;
    }
    Some(Change {
        ts: ts + offset,
        local: SocketAddr::new(sip.parse().ok()?, sport),
        remote: SocketAddr::new(dip.parse().ok()?, dport),
        old: linux_state(field("oldstate")?)?,
        new: linux_state(field("newstate")?)?,
    })
}

/// One socket's life on one 4-tuple, from its opening to its close.
#[derive(Debug, Clone, PartialEq)]
pub struct Life {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub changes: Vec<Change>,
}

/// Group changes into lives, per 4-tuple, in time order. A listener's own changes are left
/// out; a SYN_SENT, or a LISTEN → SYN_RECV, after the tuple's last life ended starts a new one.
pub fn lifetimes(changes: &[Change]) -> Vec<Life> {
    let mut sorted: Vec<&Change> = changes.iter().collect();
    sorted.sort_by(|a, b| a.ts.total_cmp(&b.ts));
    let mut lives: Vec<Life> = Vec::new();
    for c in sorted {
        if c.new == State::Listen {
            continue;
        }
        let opens = matches!(
            (c.old, c.new),
            (State::Closed, State::SynSent) | (State::Listen, State::SynReceived)
        );
        let open = lives.iter_mut().rev().find(|l| {
            l.local == c.local
                && l.remote == c.remote
                && l.changes.last().is_some_and(|x| x.new != State::Closed)
        });
        match open {
            Some(l) if !opens => l.changes.push(c.clone()),
            _ => lives.push(Life {
                local: c.local,
                remote: c.remote,
                changes: vec![c.clone()],
            }),
        }
    }
    lives
}

/// What the capture shows that the mapping needs: when the peer's FINs and any RST passed,
/// and the connection's last frame (changes well after it are timers no packet shows).
#[derive(Debug, Clone)]
pub struct Evidence {
    pub peer_fins: Vec<f64>,
    pub rsts: Vec<f64>,
    pub last_ts: f64,
}

impl Default for Evidence {
    fn default() -> Self {
        Evidence {
            peer_fins: Vec::new(),
            rsts: Vec::new(),
            last_ts: f64::MAX,
        }
    }
}

/// How long after a connection's last frame a change can still be one a packet caused (s).
const AFTER_LAST: f64 = 0.5;

/// A state the endpoint entered, per RFC 9293, and when. `exact` is false where Linux logs the
/// change at another moment than the RFC's (rules 1 and 2 of the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RfcState {
    pub ts: f64,
    pub state: State,
    pub exact: bool,
}

/// How close an RST or FIN must be to a logged change to have caused it (seconds).
const NEAR: f64 = 0.005;

/// The RFC 9293 states one socket went through, Linux's bookkeeping mapped (module docs).
pub fn rfc_states(life: &Life, ev: &Evidence) -> Vec<RfcState> {
    let mut out: Vec<RfcState> = Vec::new();
    let push = |out: &mut Vec<RfcState>, ts: f64, state: State, exact: bool| {
        if out.last().map(|s| s.state) != Some(state) {
            out.push(RfcState { ts, state, exact });
        }
    };
    let Some(first) = life.changes.first() else {
        return out;
    };
    match first.old {
        State::SynSent => push(&mut out, first.ts, State::SynSent, false),
        State::Listen => push(&mut out, first.ts, State::SynReceived, false),
        _ => {}
    }
    let near = |v: &[f64], t: f64| v.iter().any(|&x| (x - t).abs() <= NEAR);
    for c in life
        .changes
        .iter()
        .filter(|c| c.ts <= ev.last_ts + AFTER_LAST)
    {
        match (c.old, c.new) {
            (_, State::Listen) | (State::Listen, State::SynReceived) => {}
            (State::LastAck, State::Closed) => push(&mut out, c.ts, State::Closed, true),
            (_, State::Closed) if near(&ev.rsts, c.ts) => push(&mut out, c.ts, State::Closed, true),
            (
                State::FinWait1 | State::FinWait2 | State::Closing | State::TimeWait,
                State::Closed,
            ) => {
                // Handed to a timewait socket: TIME_WAIT once the peer's FIN has come, else an
                // orphan's FIN_WAIT_2 that turns TIME_WAIT at the peer's FIN, and ends at an RST.
                if c.old == State::Closing || ev.peer_fins.iter().any(|&f| f <= c.ts + NEAR) {
                    push(&mut out, c.ts, State::TimeWait, true);
                } else {
                    push(&mut out, c.ts, State::FinWait2, true);
                    if let Some(&f) = ev.peer_fins.iter().find(|&&f| f > c.ts) {
                        push(&mut out, f, State::TimeWait, true);
                    }
                }
                if let Some(&r) = ev.rsts.iter().find(|&&r| r > c.ts + NEAR) {
                    push(&mut out, r, State::Closed, true);
                }
            }
            (_, new) => push(&mut out, c.ts, new, true),
        }
    }
    out
}

/// Rule 2: where the kernel logged no socket at all, an observer may still rightly show a
/// server's request socket — SYN-RECEIVED from a SYN-ACK it sent, then CLOSED — or nothing.
pub fn request_socket_only(states: &[State]) -> bool {
    matches!(
        states,
        [] | [State::SynReceived] | [State::SynReceived, State::Closed]
    )
}

/// One state change statescope shows for an endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shown {
    pub frame: u64,
    /// The frame's capture time.
    pub ts: f64,
    pub state: State,
    pub inferred: bool,
}

/// One endpoint of one connection: what statescope shows, what the kernel logged (mapped), and
/// where they differ.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub conn: u64,
    /// `"client"` or `"server"`.
    pub role: &'static str,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub shown: Vec<Shown>,
    /// `None` where the kernel logged no socket for it.
    pub kernel: Option<Vec<RfcState>>,
    pub problems: Vec<String>,
}

/// The states of one endpoint in order, as compared: repeats folded, and what came before the
/// endpoint did anything (UNKNOWN, CLOSED, LISTEN) left out.
pub fn fold<I: IntoIterator<Item = State>>(states: I) -> Vec<State> {
    let mut out: Vec<State> = Vec::new();
    for s in states {
        if out.is_empty() && matches!(s, State::Unknown | State::Closed | State::Listen) {
            continue;
        }
        if out.last() != Some(&s) {
            out.push(s);
        }
    }
    out
}

/// The same story: equal, or equal but for a FIN-WAIT-2 right before TIME-WAIT (RFC 9293
/// §3.10.7.4 lets a FIN that also acknowledges ours go from FIN-WAIT-1 straight to TIME-WAIT).
pub fn same_story(a: &[State], b: &[State]) -> bool {
    let drop = |v: &[State]| -> Vec<State> {
        v.iter()
            .enumerate()
            .filter(|&(i, s)| !(*s == State::FinWait2 && v.get(i + 1) == Some(&State::TimeWait)))
            .map(|(_, s)| *s)
            .collect()
    };
    a == b || drop(a) == drop(b)
}

/// Clocks: the kernel's and the capture's are the same machine's; a change falls within a
/// fraction of a millisecond of its frame where the tap sits beside the endpoint.
const SLACK: f64 = 0.0005;
/// A change with a frame this close was seen by the tap (not a path's delay away, not missed).
const SEEN: f64 = 0.001;

/// Compare statescope's records of a capture with the kernel's changes during it: every
/// endpoint on a host the kernel log covers. Each must show the kernel's states (mapped by
/// [`rfc_states`]) in order, and each change the kernel timed and the tap saw at the right frame:
/// between the connection's frames just before and just after the one statescope names (a
/// sender's change comes before the segment that announces it, a receiver's after the one that
/// causes it). Inferred changes are held to the order only; an endpoint with no kernel socket
/// may show only a request socket ([`request_socket_only`]).
pub fn compare(recs: &[Record], changes: &[Change]) -> Vec<Endpoint> {
    let mut frames: HashMap<u64, Vec<&PacketRec>> = HashMap::new();
    let mut conns: Vec<&ConnRec> = Vec::new();
    for r in recs {
        match r {
            Record::Packet(p) => frames.entry(p.conn).or_default().push(p),
            Record::Conn(c) => conns.push(c),
            _ => {}
        }
    }
    conns.sort_by(|a, b| a.first_ts.total_cmp(&b.first_ts));
    let lives = lifetimes(changes);
    let hosts: Vec<_> = lives.iter().map(|l| l.local.ip()).collect();
    let mut used: HashMap<(SocketAddr, SocketAddr), usize> = HashMap::new();
    let mut out = Vec::new();
    for c in conns {
        let (Ok(client), Ok(server)) = (
            c.client.parse::<SocketAddr>(),
            c.server.parse::<SocketAddr>(),
        ) else {
            continue;
        };
        let pk: &[&PacketRec] = frames.get(&c.conn).map_or(&[], |v| v.as_slice());
        for (role, local, remote) in [("client", client, server), ("server", server, client)] {
            if !hosts.contains(&local.ip()) {
                continue;
            }
            let ts_of = |f: u64| pk.iter().find(|p| p.frame == f).map_or(f64::NAN, |p| p.ts);
            let shown: Vec<Shown> = c
                .transitions
                .iter()
                .filter(|t| t.endpoint == role)
                .filter_map(|t| {
                    Some(Shown {
                        frame: t.frame,
                        ts: ts_of(t.frame),
                        state: State::from_name(&t.state)?,
                        inferred: t.inferred.is_some(),
                    })
                })
                .collect();
            let n = used.entry((local, remote)).or_default();
            let life = lives
                .iter()
                .filter(|l| (l.local, l.remote) == (local, remote))
                .nth(*n);
            *n += life.is_some() as usize;
            let mut ep = Endpoint {
                conn: c.conn,
                role,
                local,
                remote,
                shown,
                kernel: None,
                problems: Vec::new(),
            };
            let got = fold(ep.shown.iter().map(|s| s.state));
            let Some(life) = life else {
                if !request_socket_only(&got) {
                    ep.problems
                        .push(format!("statescope {got:?}, the kernel had no socket"));
                }
                out.push(ep);
                continue;
            };
            let ev = Evidence {
                peer_fins: pk
                    .iter()
                    .filter(|p| p.src.0 == remote && p.flags.iter().any(|f| f == "FIN"))
                    .map(|p| p.ts)
                    .collect(),
                rsts: pk
                    .iter()
                    .filter(|p| p.flags.iter().any(|f| f == "RST"))
                    .map(|p| p.ts)
                    .collect(),
                last_ts: c.last_ts,
            };
            let want = rfc_states(life, &ev);
            let want_states = fold(want.iter().map(|w| w.state));
            if !same_story(&got, &want_states) {
                ep.problems
                    .push(format!("statescope {got:?}, kernel {want_states:?}"));
            } else {
                let seen = |ts: f64| pk.iter().any(|p| (p.ts - ts).abs() < SEEN);
                for w in want.iter().filter(|w| w.exact && seen(w.ts)) {
                    let Some(s) = ep.shown.iter().rev().find(|s| s.state == w.state) else {
                        continue; // FIN-WAIT-2 folded into FIN-WAIT-1 -> TIME-WAIT
                    };
                    if !s.inferred && !placed(pk, s.frame, w.ts) {
                        ep.problems.push(format!(
                            "{} at frame {}, the kernel at {:.6}",
                            w.state.as_str(),
                            s.frame,
                            w.ts
                        ));
                    }
                }
            }
            ep.kernel = Some(want);
            out.push(ep);
        }
    }
    // Kernel sockets no connection accounts for.
    for life in &lives {
        let key = (life.local, life.remote);
        let nth = lives[..]
            .iter()
            .filter(|l| (l.local, l.remote) == key)
            .position(|l| std::ptr::eq(l, life))
            .unwrap_or(0);
        if nth >= used.get(&key).copied().unwrap_or(0) {
            out.push(Endpoint {
                conn: u64::MAX,
                role: "?",
                local: life.local,
                remote: life.remote,
                shown: Vec::new(),
                kernel: Some(rfc_states(life, &Evidence::default())),
                problems: vec!["a kernel socket that no connection shows".into()],
            });
        }
    }
    out
}

/// Is a change at `ts` placed right at `frame` (between its neighbours in the connection)?
fn placed(pk: &[&PacketRec], frame: u64, ts: f64) -> bool {
    let Some(i) = pk.iter().position(|p| p.frame == frame) else {
        return false;
    };
    let lo = if i > 0 { pk[i - 1].ts } else { f64::MIN };
    let hi = pk.get(i + 1).map_or(f64::MAX, |p| p.ts);
    lo - SLACK <= ts && ts <= hi + SLACK
}

/// Records `sock:inet_sock_set_state` in a tracefs instance of its own while it lives, so other
/// users of tracing are left alone. Needs root (or tracefs access).
pub struct Tracer {
    dir: PathBuf,
    offset: f64,
}

impl Tracer {
    /// Start recording. Errors name what is missing (tracefs, privilege).
    pub fn start() -> Result<Tracer, String> {
        let root = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.join("instances").is_dir())
            .ok_or(
                "tracefs is not mounted: as root, `mount -t tracefs nodev /sys/kernel/tracing`",
            )?;
        let dir = root.join(format!("instances/statescope-{}", std::process::id()));
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).map_err(|e| {
            format!(
                "cannot create a tracing instance in {} ({e}): run as root",
                root.display()
            )
        })?;
        let t = Tracer {
            dir,
            offset: tai_offset(),
        };
        let put = |f: &str, v: &str| {
            std::fs::write(t.dir.join(f), v).map_err(|e| format!("tracefs {f}: {e}"))
        };
        // TAI runs beside the realtime clock that stamps captured frames.
        put("trace_clock", "tai")?;
        // The ring overwrites its oldest events when full, and it logs every TCP socket on the
        // machine: on a busy one the default (about 1.4 MB per CPU) lost a lab's first
        // transitions within seconds. Best effort: a smaller ring still records.
        let _ = put("buffer_size_kb", "8192");
        put("events/sock/inet_sock_set_state/enable", "1")?;
        put("tracing_on", "1")?;
        Ok(t)
    }

    /// Every change recorded so far.
    pub fn changes(&self) -> Result<Vec<Change>, String> {
        let text = std::fs::read_to_string(self.dir.join("trace"))
            .map_err(|e| format!("reading the trace: {e}"))?;
        Ok(text
            .lines()
            .filter_map(|l| parse_trace_line(l, -self.offset))
            .collect())
    }
}

impl Drop for Tracer {
    fn drop(&mut self) {
        let _ = std::fs::write(self.dir.join("tracing_on"), "0");
        let _ = std::fs::write(self.dir.join("events/sock/inet_sock_set_state/enable"), "0");
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// CLOCK_TAI - CLOCK_REALTIME, in seconds.
fn tai_offset() -> f64 {
    let read = |clock| {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the timespec we own.
        unsafe { libc::clock_gettime(clock, &mut t) };
        t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
    };
    (read(libc::CLOCK_TAI) - read(libc::CLOCK_REALTIME)).round()
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::*;

    fn ch(ts: f64, old: State, new: State) -> Change {
        Change {
            ts,
            local: "10.0.0.1:4000".parse().unwrap(),
            remote: "10.0.0.2:80".parse().unwrap(),
            old,
            new,
        }
    }

    fn states(v: &[RfcState]) -> Vec<State> {
        v.iter().map(|s| s.state).collect()
    }

    #[test]
    fn trace_lines_parse() {
        let l = "          <idle>-0       [001] ..s2. 1796212564.742030: inet_sock_set_state: family=AF_INET protocol=IPPROTO_TCP sport=8017 dport=49814 saddr=10.99.0.2 daddr=10.99.0.1 saddrv6=::ffff:10.99.0.2 daddrv6=::ffff:10.99.0.1 oldstate=TCP_LISTEN newstate=TCP_SYN_RECV";
        let c = parse_trace_line(l, 0.0).unwrap();
        assert_eq!(c.local, "10.99.0.2:8017".parse().unwrap());
        assert_eq!((c.old, c.new), (Listen, SynReceived));
        assert!((c.ts - 1_796_212_564.742_03).abs() < 1e-6);
        assert!(parse_trace_line(&l.replace("sport=8017", "sport=0"), 0.0).is_none());
        assert!(parse_trace_line(&l.replace("IPPROTO_TCP", "IPPROTO_MPTCP"), 0.0).is_none());
        assert!(parse_trace_line("garbage", 0.0).is_none());
    }

    #[test]
    fn tsv_parses_and_names_a_bad_line() {
        let t =
            "ts\tlocal\tremote\told\tnew\n1.5\t[fd00::1]:80\t[fd00::2]:4000\tFIN_WAIT1\tCLOSE\n";
        let v = parse_tsv(t).unwrap();
        assert_eq!((v[0].old, v[0].new), (FinWait1, Closed));
        assert!(parse_tsv("h\n1\t2\n").unwrap_err().contains("line 2"));
    }

    #[test]
    fn timewait_handover_with_the_peer_fin_is_time_wait() {
        let life = lifetimes(&[
            ch(1.0, SynSent, Established),
            ch(2.0, Established, FinWait1),
            ch(2.1, FinWait1, FinWait2),
            ch(2.2, FinWait2, Closed),
        ]);
        let ev = Evidence {
            peer_fins: vec![2.2],
            rsts: vec![],
            ..Evidence::default()
        };
        let got = states(&rfc_states(&life[0], &ev));
        assert_eq!(got, [SynSent, Established, FinWait1, FinWait2, TimeWait]);
    }

    #[test]
    fn orphan_fin_wait_2_turns_time_wait_at_the_later_fin() {
        let life = lifetimes(&[
            ch(1.0, SynSent, Established),
            ch(2.0, Established, FinWait1),
            ch(2.1, FinWait1, FinWait2),
            ch(2.1, FinWait2, Closed),
        ]);
        let ev = Evidence {
            peer_fins: vec![2.5],
            rsts: vec![],
            ..Evidence::default()
        };
        let got = rfc_states(&life[0], &ev);
        assert_eq!(
            states(&got),
            [SynSent, Established, FinWait1, FinWait2, TimeWait]
        );
        assert_eq!(got.last().unwrap().ts, 2.5);
        // Without the peer's FIN in view it stays FIN_WAIT_2.
        let got = states(&rfc_states(&life[0], &Evidence::default()));
        assert_eq!(got, [SynSent, Established, FinWait1, FinWait2]);
    }

    #[test]
    fn an_rst_makes_close_real_and_passive_opens_start_at_syn_received() {
        let life = lifetimes(&[
            ch(1.0, Listen, SynReceived),
            ch(1.0, SynReceived, Established),
            ch(2.0, Established, FinWait1),
            ch(2.1, FinWait1, FinWait2),
            ch(3.0, FinWait2, Closed),
        ]);
        let ev = Evidence {
            peer_fins: vec![],
            rsts: vec![3.001],
            ..Evidence::default()
        };
        let got = rfc_states(&life[0], &ev);
        assert_eq!(
            states(&got),
            [SynReceived, Established, FinWait1, FinWait2, Closed]
        );
        assert!(!got[0].exact && got[1].exact);
    }

    #[test]
    fn a_new_connect_on_the_tuple_is_a_new_life() {
        let lives = lifetimes(&[
            ch(1.0, SynSent, Established),
            ch(1.1, LastAck, Closed),
            ch(2.0, Closed, SynSent),
            ch(2.1, SynSent, Established),
        ]);
        assert_eq!(lives.len(), 2);
    }

    #[test]
    fn request_sockets_allow_only_syn_received_then_closed() {
        assert!(request_socket_only(&[SynReceived, Closed]));
        assert!(request_socket_only(&[]));
        assert!(!request_socket_only(&[SynReceived, Established]));
    }
}
