//! The connection table: 5-tuple → connection, numbered like Wireshark's `tcp.stream`.
//!
//! A SYN that reuses the 5-tuple of a connection whose initial sequence number differs, or
//! that already saw FIN or RST, starts a new connection (Wireshark's port-reuse rule); so does a
//! SYN-ACK with a new sequence number when the SYN was not captured. Connections idle for the
//! configured timeout, and closed ones after a short linger, are finished and evicted, so memory
//! follows concurrent connections, not the length of the capture.

use super::conn::{pure_syn, Conn, TrackerConfig};
use super::Events;
use crate::capture::Timestamp;
use crate::decode::Segment;
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
            }
        } else {
            Key {
                a: d,
                b: s,
                ap: seg.dport,
                bp: seg.sport,
                v6,
            }
        }
    }

    fn hash(&self) -> u64 {
        rustc_hash::FxBuildHasher.hash_one(self)
    }
}

/// A connection with the key (and its hash) that finds it.
struct Entry {
    key: Key,
    hash: u64,
    conn: Conn,
}

/// Follows every connection; frames in (as segments), records and stream data out.
pub struct Tracker {
    cfg: TrackerConfig,
    /// Slot numbers, found by their entry's key: the table itself stays small (4 bytes a
    /// connection), and the one comparison per lookup reads the entry that is used next anyway.
    index: HashTable<u32>,
    slots: Vec<Option<Box<Entry>>>,
    free: Vec<u32>,
    next_conn: u64,
    next_sweep: Timestamp,
    live: usize,
    /// Most connections held at once (for memory reports).
    pub peak_live: usize,
}

impl Tracker {
    pub fn new(cfg: TrackerConfig) -> Self {
        Tracker {
            cfg,
            index: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            next_conn: 0,
            next_sweep: Timestamp(i64::MIN),
            live: 0,
            peak_live: 0,
        }
    }

    pub fn config(&self) -> &TrackerConfig {
        &self.cfg
    }

    /// Connections started so far.
    pub fn conns_seen(&self) -> u64 {
        self.next_conn
    }

    /// One TCP segment from frame `frame` captured at `ts`.
    pub fn on_segment(
        &mut self,
        seg: &Segment<'_>,
        frame: u64,
        ts: Timestamp,
        events: &mut dyn Events,
    ) {
        if ts >= self.next_sweep {
            self.sweep(ts, events);
        }
        let key = Key::of(seg);
        let hash = key.hash();
        let src = SocketAddr::new(seg.src, seg.sport);
        let dst = SocketAddr::new(seg.dst, seg.dport);
        let slots = &self.slots;
        let found = self
            .index
            .find(hash, |&s| {
                slots[s as usize].as_ref().is_some_and(|e| e.key == key)
            })
            .copied();
        let slot = match found {
            Some(slot) => {
                let conn = &self.slots[slot as usize]
                    .as_ref()
                    .expect("indexed slot is live")
                    .conn;
                if self.starts_new(conn, seg, src) {
                    self.evict(slot, events);
                    self.insert(key, hash, seg, src, dst, ts, events)
                } else {
                    slot
                }
            }
            None => self.insert(key, hash, seg, src, dst, ts, events),
        };
        let conn = &mut self.slots[slot as usize].as_mut().expect("live slot").conn;
        let dir = conn.dir_of(src);
        conn.on_segment(seg, dir, frame, ts, &self.cfg, events);
    }

    /// Port reuse: does this SYN (or SYN-ACK) begin a new connection on an old 5-tuple?
    fn starts_new(&self, conn: &Conn, seg: &Segment<'_>, src: SocketAddr) -> bool {
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

    #[allow(clippy::too_many_arguments)]
    fn insert(
        &mut self,
        key: Key,
        hash: u64,
        seg: &Segment<'_>,
        src: SocketAddr,
        dst: SocketAddr,
        ts: Timestamp,
        events: &mut dyn Events,
    ) -> u32 {
        // The client sent the first SYN; a SYN-ACK's receiver is the client; otherwise the
        // sender of the first segment seen.
        let (client, server) = if seg.flags.syn() && seg.flags.ack() {
            (dst, src)
        } else {
            (src, dst)
        };
        let mut conn = Conn::new(self.next_conn, client, server, ts, &self.cfg);
        if !pure_syn(seg.flags) {
            events.midstream(self.next_conn, &mut conn.upper);
        }
        self.next_conn += 1;
        let entry = Some(Box::new(Entry { key, hash, conn }));
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = entry;
                s
            }
            None => {
                self.slots.push(entry);
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.index.insert_unique(hash, slot, |&s| {
            slots[s as usize].as_ref().map_or(0, |e| e.hash)
        });
        self.live += 1;
        self.peak_live = self.peak_live.max(self.live);
        slot
    }

    fn evict(&mut self, slot: u32, events: &mut dyn Events) {
        if let Some(entry) = self.slots[slot as usize].take() {
            let Entry { hash, conn, .. } = *entry;
            if let Ok(found) = self.index.find_entry(hash, |&s| s == slot) {
                found.remove();
            }
            self.free.push(slot);
            self.live -= 1;
            conn.finish(events);
        }
    }

    /// Finish connections idle past the timeout, and closed ones past the linger, in index order.
    fn sweep(&mut self, now: Timestamp, events: &mut dyn Events) {
        let idle = self.cfg.idle_timeout_ns;
        let linger = self.cfg.closed_linger_ns.min(idle);
        let mut done: Vec<(u64, u32)> = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            if let Some(entry) = s {
                let c = &entry.conn;
                let quiet = now.0.saturating_sub(c.last_ts.0);
                if quiet > idle || (quiet > linger && c.both_closed()) {
                    done.push((c.index, i as u32));
                }
            }
        }
        done.sort_unstable();
        for (_, slot) in done {
            self.evict(slot, events);
        }
        let step = (linger / 4).clamp(1_000_000_000, 60_000_000_000);
        self.next_sweep = Timestamp(now.0.saturating_add(step));
    }

    /// Summaries of the open connections, most recently active first, at most `limit`; and how
    /// many are open in all. For live displays: nothing is finished or changed.
    pub fn open_summaries(&self, limit: usize) -> (usize, Vec<crate::record::ConnRec>) {
        let mut open: Vec<&Conn> = self.slots.iter().flatten().map(|e| &e.conn).collect();
        let total = open.len();
        open.sort_unstable_by_key(|c| std::cmp::Reverse((c.last_ts, c.index)));
        (
            total,
            open.into_iter().take(limit).map(Conn::summary).collect(),
        )
    }

    /// End of input: finish every connection still open, in index order.
    pub fn finish(&mut self, events: &mut dyn Events) {
        let mut rest: Vec<(u64, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|e| (e.conn.index, i as u32)))
            .collect();
        rest.sort_unstable();
        for (_, slot) in rest {
            self.evict(slot, events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Flags, TcpOptions};
    use crate::record::{ConnRec, Record};
    use crate::tcp::reassembly::Chunk;
    use crate::tcp::{Dir, UpperState};

    #[derive(Default)]
    struct Finished(Vec<ConnRec>);

    impl Events for Finished {
        fn record(&mut self, _: Record) {}
        fn midstream(&mut self, _: u64, _: &mut UpperState) {}
        fn chunk(
            &mut self,
            _: u64,
            _: &mut UpperState,
            _: Dir,
            _: Chunk<'_>,
            _: u64,
            _: Timestamp,
        ) {
        }
        fn end(&mut self, _: u64, _: &mut UpperState, _: Dir, _: u64, _: Timestamp) {}
        fn conn_finished(&mut self, rec: ConnRec, _: UpperState) {
            self.0.push(rec);
        }
    }

    fn seg(src: &str, dst: &str, flags: u8, seq: u32, ack: u32) -> Segment<'static> {
        let src: SocketAddr = src.parse().unwrap();
        let dst: SocketAddr = dst.parse().unwrap();
        Segment {
            src: src.ip(),
            dst: dst.ip(),
            sport: src.port(),
            dport: dst.port(),
            seq,
            ack,
            flags: Flags(flags),
            window: 1000,
            options: TcpOptions::default(),
            len: 0,
            payload: &[],
        }
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
