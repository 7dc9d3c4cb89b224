//! The connection table: 5-tuple → connection, numbered like Wireshark's `tcp.stream`.
//!
//! A SYN that reuses the 5-tuple of a connection whose initial sequence number differs, or
//! that already saw FIN or RST, starts a new connection (Wireshark's port-reuse rule); so does a
//! SYN-ACK with a new sequence number when the SYN was not captured. Connections idle for the
//! configured timeout, and closed ones after a short linger, are finished and evicted, so memory
//! follows concurrent connections, not the length of the capture.

use super::conn::{pure_syn, Conn, OpenConn, TrackerConfig};
use super::Events;
use crate::decode::Segment;
use crate::types::Timestamp;
use hashbrown::HashTable;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};

/// Both endpoints, in a canonical order so either direction finds the same entry. Addresses
/// as plain integers (and the family apart, so 10.0.0.1 and ::a00:1 differ): comparing and
/// hashing them costs a few instructions, on the path of every segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    a: u128,
    b: u128,
    ap: u16,
    bp: u16,
    v6: bool,
    /// The tunnel's identity (0: none): the same addresses in two tunnels are two connections.
    tunnel: u64,
}

impl Key {
    fn of(seg: &Segment<'_>) -> Key {
        fn bits(ip: IpAddr) -> u128 {
            match ip {
                IpAddr::V4(a) => u32::from(a).into(),
                IpAddr::V6(a) => a.into(),
            }
        }
        let (s, d) = (bits(seg.src), bits(seg.dst));
        let v6 = seg.src.is_ipv6();
        if (s, seg.sport) <= (d, seg.dport) {
            Key {
                a: s,
                b: d,
                ap: seg.sport,
                bp: seg.dport,
                v6,
                tunnel: seg.tunnel,
            }
        } else {
            Key {
                a: d,
                b: s,
                ap: seg.dport,
                bp: seg.sport,
                v6,
                tunnel: seg.tunnel,
            }
        }
    }

    fn hash(&self) -> u64 {
        rustc_hash::FxBuildHasher.hash_one(self)
    }
}

/// A segment's connection key and its hash: a pure function of the segment's addresses and
/// ports, so a thread reading ahead can work it out (see [`crate::pipeline`]) and take it off
/// the tracking thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowKey {
    key: Key,
    hash: u64,
}

impl FlowKey {
    pub fn of(seg: &Segment<'_>) -> FlowKey {
        let key = Key::of(seg);
        FlowKey {
            hash: key.hash(),
            key,
        }
    }
}

/// A connection with the key (and its hash, for the table's growth) that finds it.
struct Entry<U> {
    flow: FlowKey,
    conn: Conn<U>,
}

/// Follows every connection; frames in (as segments), records and stream data out.
///
/// `U` is the layer above's state kept in each connection (see [`Events`]).
pub struct Tracker<U = ()> {
    cfg: TrackerConfig,
    open: Open<U>,
    next_sweep: Timestamp,
}

/// The open connections, found by key. The table holds pointers (8 bytes a connection): a
/// lookup reads the table's control bytes, one pointer and the entry it then works on.
struct Open<U> {
    table: HashTable<Box<Entry<U>>>,
    next_conn: u64,
    /// Most connections held at once (for memory reports).
    peak: usize,
}

impl<U: Default> Tracker<U> {
    pub fn new(cfg: TrackerConfig) -> Self {
        Tracker {
            cfg,
            open: Open {
                table: HashTable::new(),
                next_conn: 0,
                peak: 0,
            },
            next_sweep: Timestamp(i64::MIN),
        }
    }

    /// Most connections held at once (for memory reports).
    pub fn peak_live(&self) -> usize {
        self.open.peak
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.cfg
    }

    /// Connections started so far.
    pub fn conns_seen(&self) -> u64 {
        self.open.next_conn
    }

    /// One TCP segment from frame `frame` captured at `ts`.
    pub fn on_segment(
        &mut self,
        seg: &Segment<'_>,
        frame: u64,
        ts: Timestamp,
        events: &mut dyn Events<U>,
    ) {
        self.on_keyed_segment(seg, FlowKey::of(seg), frame, ts, events)
    }

    /// [`Self::on_segment`] with the segment's key worked out already (`FlowKey::of(seg)`).
    pub fn on_keyed_segment(
        &mut self,
        seg: &Segment<'_>,
        flow: FlowKey,
        frame: u64,
        ts: Timestamp,
        events: &mut dyn Events<U>,
    ) {
        debug_assert_eq!(flow, FlowKey::of(seg));
        if ts >= self.next_sweep {
            self.sweep(ts, events);
        }
        let src = SocketAddr::new(seg.src, seg.sport);
        let dst = SocketAddr::new(seg.dst, seg.dport);
        let (cfg, open) = (&self.cfg, &mut self.open);
        let entry = match open.table.find_entry(flow.hash, |e| e.flow.key == flow.key) {
            Ok(found) if starts_new(&found.get().conn, seg, src) => {
                let (old, _) = found.remove();
                old.conn.finish(events);
                open.insert(cfg, flow, seg, (src, dst), ts, events)
            }
            Ok(found) => found.into_mut(),
            Err(_) => open.insert(cfg, flow, seg, (src, dst), ts, events),
        };
        let conn = &mut entry.conn;
        let dir = conn.dir_of(src);
        conn.on_segment(seg, dir, frame, ts, cfg, events);
    }

    /// Finish connections idle past the timeout, and closed ones past the linger, in index order.
    fn sweep(&mut self, now: Timestamp, events: &mut dyn Events<U>) {
        let idle = self.cfg.idle_timeout_ns;
        let linger = self.cfg.closed_linger_ns.min(idle);
        let done = self.open.table.extract_if(|e| {
            let c = &e.conn;
            let quiet = now.0.saturating_sub(c.last_ts.0);
            quiet > idle || (quiet > linger && c.both_closed())
        });
        finish_in_order(done.collect(), events);
        let step = (linger / 4).clamp(1_000_000_000, 60_000_000_000);
        self.next_sweep = Timestamp(now.0.saturating_add(step));
    }

    /// Every open connection as it stands, into `out` (emptied first), in no set order.
    /// For live displays: nothing is finished or changed.
    pub fn open_now(&self, out: &mut Vec<OpenConn>) {
        out.clear();
        out.extend(self.open.table.iter().map(|e| e.conn.now()));
    }

    /// End of input: finish every connection still open, in index order.
    pub fn finish(&mut self, events: &mut dyn Events<U>) {
        finish_in_order(self.open.table.drain().collect(), events);
    }
}

impl<U: Default> Open<U> {
    /// Open connection number `next_conn` for `seg`, sent from `src` to `dst`.
    fn insert(
        &mut self,
        cfg: &TrackerConfig,
        flow: FlowKey,
        seg: &Segment<'_>,
        (src, dst): (SocketAddr, SocketAddr),
        ts: Timestamp,
        events: &mut dyn Events<U>,
    ) -> &mut Entry<U> {
        // The client sent the first SYN; a SYN-ACK's receiver is the client; otherwise the
        // sender of the first segment seen.
        let (client, server) = if seg.flags.syn() && seg.flags.ack() {
            (dst, src)
        } else {
            (src, dst)
        };
        let mut conn = Conn::new(self.next_conn, client, server, ts, cfg);
        conn.tunnel = seg.tunnel;
        if !pure_syn(seg.flags) {
            events.midstream(self.next_conn, &mut conn.upper);
        }
        self.next_conn += 1;
        self.peak = self.peak.max(self.table.len() + 1);
        let entry = Box::new(Entry { flow, conn });
        self.table
            .insert_unique(flow.hash, entry, |e| e.flow.hash)
            .into_mut()
    }
}

/// Port reuse: does this SYN (or SYN-ACK) begin a new connection on an old 5-tuple?
fn starts_new<U: Default>(conn: &Conn<U>, seg: &Segment<'_>, src: SocketAddr) -> bool {
    if !seg.flags.syn() {
        return false;
    }
    let Some(base) = conn.base(conn.dir_of(src)) else {
        return false;
    };
    if pure_syn(seg.flags) {
        seg.seq != base || conn.saw_fin || conn.saw_rst
    } else {
        seg.seq != base
    }
}

/// Finish connections taken out of the table, in index order (the order records come in).
/// Boxed, so sorting moves pointers rather than kilobyte-sized connections.
#[allow(clippy::vec_box)]
fn finish_in_order<U: Default>(mut done: Vec<Box<Entry<U>>>, events: &mut dyn Events<U>) {
    done.sort_unstable_by_key(|e| e.conn.index);
    for e in done {
        e.conn.finish(events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Flags;
    use crate::record::{ConnRec, Record};
    use crate::tcp::reassembly::Chunk;
    use crate::tcp::Dir;

    #[derive(Default)]
    struct Finished(Vec<ConnRec>);

    impl Events for Finished {
        fn record(&mut self, _: Record) {}
        fn midstream(&mut self, _: u64, _: &mut ()) {}
        fn chunk(&mut self, _: u64, _: &mut (), _: Dir, _: Chunk<'_>, _: u64, _: Timestamp) {}
        fn end(&mut self, _: u64, _: &mut (), _: Dir, _: u64, _: Timestamp) {}
        fn conn_finished(&mut self, rec: ConnRec, _: ()) {
            self.0.push(rec);
        }
    }

    fn seg(src: &str, dst: &str, flags: u8, seq: u32, ack: u32) -> Segment<'static> {
        Segment::for_test(src, dst, flags, seq, ack, 0)
    }

    /// Feed segments, finish, and give each connection as "index client packets".
    fn run(segs: &[Segment<'_>]) -> Vec<String> {
        let mut t = Tracker::new(TrackerConfig::default());
        let mut ev = Finished::default();
        for (i, s) in segs.iter().enumerate() {
            t.on_segment(s, i as u64 + 1, Timestamp(i as i64 * 1000), &mut ev);
        }
        t.finish(&mut ev);
        ev.0.iter()
            .map(|c| format!("{} {} {}", c.conn, c.client, c.packets_c2s + c.packets_s2c))
            .collect()
    }

    const SYN: u8 = Flags::SYN;
    const SYN_ACK: u8 = Flags::SYN | Flags::ACK;
    const ACK: u8 = Flags::ACK;
    const RST: u8 = Flags::RST;

    #[test]
    fn a_flow_key_is_the_same_both_ways_and_names_one_connection() {
        let key = |a, b| FlowKey::of(&seg(a, b, ACK, 1, 1));
        let ab = key("10.0.0.1:1000", "10.0.0.2:80");
        assert_eq!(ab, key("10.0.0.2:80", "10.0.0.1:1000"));
        for other in [
            key("10.0.0.1:1001", "10.0.0.2:80"),
            key("10.0.0.1:1000", "10.0.0.3:80"),
            key("10.0.0.1:80", "10.0.0.2:1000"),
            // the same address bits in the other family
            key("[::a00:1]:1000", "[::a00:2]:80"),
        ] {
            assert_ne!(ab.key, other.key);
        }
    }

    #[test]
    fn both_directions_find_one_connection() {
        let got = run(&[
            seg("10.0.0.2:40000", "10.0.0.1:80", SYN, 100, 0),
            seg("10.0.0.1:80", "10.0.0.2:40000", SYN_ACK, 500, 101),
            seg("10.0.0.2:40000", "10.0.0.1:80", ACK, 101, 501),
        ]);
        assert_eq!(got, ["0 10.0.0.2:40000 3"]);
    }

    /// An IPv4 address and the IPv6 address with the same low bits are different hosts.
    #[test]
    fn address_families_never_share_a_connection() {
        let got = run(&[
            seg("10.0.0.2:40000", "10.0.0.1:80", SYN, 100, 0),
            seg("[::a00:2]:40000", "[::a00:1]:80", SYN, 100, 0),
            seg("10.0.0.1:80", "10.0.0.2:40000", SYN_ACK, 500, 101),
        ]);
        assert_eq!(got, ["0 10.0.0.2:40000 2", "1 [::a00:2]:40000 1"]);
    }

    /// A SYN with a new ISN on the 5-tuple of a reset connection starts connection 1.
    #[test]
    fn port_reuse_starts_a_new_connection() {
        let got = run(&[
            seg("10.0.0.2:40000", "10.0.0.1:80", SYN, 100, 0),
            seg("10.0.0.1:80", "10.0.0.2:40000", RST | ACK, 0, 101),
            seg("10.0.0.2:40000", "10.0.0.1:80", SYN, 9000, 0),
            seg("10.0.0.1:80", "10.0.0.2:40000", SYN_ACK, 700, 9001),
        ]);
        assert_eq!(got, ["0 10.0.0.2:40000 2", "1 10.0.0.2:40000 2"]);
    }
}
