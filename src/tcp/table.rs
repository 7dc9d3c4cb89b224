//! The connection table: 5-tuple → connection, numbered like Wireshark's `tcp.stream`.
//!
//! A SYN that reuses the 5-tuple of a connection whose initial sequence number differs, or
//! that already saw FIN or RST, starts a new connection (Wireshark's port-reuse rule); so does a
//! SYN-ACK with a new sequence number when the SYN was not captured. Connections idle for the
//! configured timeout, and closed ones after a short linger, are finished and evicted, so memory
//! follows concurrent connections, not the length of the capture.
//!
//! # The memory budget
//!
//! Concurrent connections are bounded too: every connection's [`Conn::footprint`] (its struct,
//! the analysis' and reassembly's buffers, the layer above's state) plus the table's slots is
//! counted against [`TrackerConfig::memory_budget`]. The count is updated after each segment
//! from the connection's capacities (a few loads, and one comparison against the budget).
//! Over the budget, the tracker frees an eighth of it at once, the way conntrack and Zeek shed
//! load:
//! 1. connections that are half-open, unreplied or already closed, least recently active first;
//! 2. then reassembly buffers, the fullest first: their holes are given up (delivered as gaps)
//!    and what they held is handed on;
//! 3. then the least recently active of the rest.
//!
//! Evicted connections are finished like any other, and their `conn` record says
//! `evicted: "memory"`; [`Tracker::memory_relief`] counts them and the reassembly bytes given
//! up. Only capture time orders them: the same input always evicts the same connections.

use super::conn::{pure_syn, Conn, OpenConn, Tomb, TrackerConfig};
use super::{Events, Footprint};
use crate::decode::Segment;
use crate::types::Timestamp;
use hashbrown::HashTable;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};

/// Idle-evicted connections remembered so that a continuation resumes them (about 100 bytes
/// each: 6.5 MB at most).
const MAX_TOMBS: usize = 1 << 16;

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

    /// The flow's shard of `n` (`replay --shard I/N`). Five 64-bit words — the lower
    /// endpoint's address (as a 128-bit number, high half first; an IPv4 address is its 32-bit
    /// value), the higher endpoint's, then `lower port << 16 | higher port` — each folded in as
    /// `h = rotl((h ^ w) × 0x9E3779B97F4A7C15, 29)` from 0, then MurmurHash3's 64-bit finalizer,
    /// modulo `n`. Independent of direction, of the tunnel and of this process (no random seed,
    /// no `usize`), so separate processes on separate machines split a capture the same way.
    /// A few instructions a segment: every shard computes it for every segment of the capture.
    pub fn shard(&self, n: u32) -> u32 {
        let k = &self.key;
        let words = [
            (k.a >> 64) as u64,
            k.a as u64,
            (k.b >> 64) as u64,
            k.b as u64,
            (u64::from(k.ap) << 16) | u64::from(k.bp),
        ];
        let mut h: u64 = 0;
        for w in words {
            h = ((h ^ w).wrapping_mul(0x9E37_79B9_7F4A_7C15)).rotate_left(29);
        }
        // The finalizer mixes every bit into the low ones that `% n` keeps.
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^= h >> 33;
        (h % u64::from(n.max(1))) as u32
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
    /// Bytes counted against the budget: every connection's last counted footprint plus the
    /// table's slots.
    used: usize,
    relief: MemoryRelief,
    /// The order connections are evicted in under memory pressure, smallest key first (a
    /// field so tests can check that a wrong order is caught).
    evict_order: fn(&Conn<U>) -> EvictKey,
}

/// Eviction order: expendable before established, then least recently active, then oldest.
type EvictKey = (bool, Timestamp, u64);

fn evict_key<U: Default>(c: &Conn<U>) -> EvictKey {
    (!c.expendable(), c.last_ts, c.index)
}

/// What the memory budget gave up so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRelief {
    /// Connections finished early to stay within the budget.
    pub evicted: u64,
    /// Reassembly bytes given up (delivered as gaps) to shrink buffers.
    pub gap_bytes: u64,
}

/// Bytes of the table per slot: a pointer and a control byte.
const SLOT_BYTES: usize = std::mem::size_of::<usize>() + 1;

/// The open connections, found by key. The table holds pointers (8 bytes a connection): a
/// lookup reads the table's control bytes, one pointer and the entry it then works on.
struct Open<U> {
    table: HashTable<Box<Entry<U>>>,
    next_conn: u64,
    /// Connections evicted for idleness, by key, oldest first out (bounded: [`MAX_TOMBS`]).
    tombs: HashMap<Key, Tomb>,
    tomb_order: VecDeque<Key>,
    /// Most connections held at once (for memory reports).
    peak: usize,
}

impl<U: Default + Footprint> Tracker<U> {
    pub fn new(cfg: TrackerConfig) -> Self {
        Tracker {
            cfg,
            open: Open {
                table: HashTable::new(),
                next_conn: 0,
                tombs: HashMap::new(),
                tomb_order: VecDeque::new(),
                peak: 0,
            },
            next_sweep: Timestamp(i64::MIN),
            used: 0,
            relief: MemoryRelief::default(),
            evict_order: evict_key,
        }
    }

    /// What the memory budget gave up so far.
    pub fn memory_relief(&self) -> MemoryRelief {
        self.relief
    }

    /// Bytes counted against the memory budget right now.
    pub fn memory_used(&self) -> usize {
        self.used
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

    /// Capture time `ts` of a segment tracked elsewhere (another worker's flow, see
    /// [`crate::workers`]): finish what a segment at `ts` would have swept here, so
    /// that connections end at the same frame as in one tracker that sees every segment.
    pub fn tick(&mut self, ts: Timestamp, events: &mut dyn Events<U>) {
        if self.sweep_due(ts) {
            self.sweep(ts, events);
        }
    }

    /// Whether a segment at `ts` would sweep (see [`Self::tick`]).
    #[inline]
    pub fn sweep_due(&self, ts: Timestamp) -> bool {
        ts >= self.next_sweep
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
        let slots = open.table.capacity();
        let entry = match open.table.find_entry(flow.hash, |e| e.flow.key == flow.key) {
            Ok(found) if starts_new(&found.get().conn, seg, src) => {
                let (old, _) = found.remove();
                self.used -= old.conn.counted;
                old.conn.finish(events);
                open.insert(cfg, flow, seg, (src, dst), ts, events)
            }
            Ok(found) => found.into_mut(),
            Err(_) => open.insert(cfg, flow, seg, (src, dst), ts, events),
        };
        let conn = &mut entry.conn;
        let dir = conn.dir_of(src);
        conn.on_segment(seg, dir, frame, ts, cfg, events);
        // Count the connection's footprint now, and the table's slots when it grew.
        let now = conn.footprint();
        self.used = self.used - conn.counted + now;
        conn.counted = now;
        let grown = open.table.capacity();
        if grown != slots {
            self.used = self.used - slots * SLOT_BYTES + grown * SLOT_BYTES;
        }
        if self.used > self.cfg.memory_budget {
            self.relieve(events);
        }
    }

    /// Over the memory budget: free an eighth of it (see the module docs for the order).
    fn relieve(&mut self, events: &mut dyn Events<U>) {
        let budget = self.cfg.memory_budget;
        let target = budget - budget / 8;
        let key = self.evict_order;
        let mut order: Vec<(EvictKey, u64)> = self
            .open
            .table
            .iter()
            .map(|e| (key(&e.conn), e.flow.hash))
            .collect();
        order.sort_unstable();
        let mut victims = Vec::new();
        // Bytes of the victims chosen so far.
        let mut planned = 0usize;
        let mut shrunk = false;
        for ((established, _, index), hash) in order {
            if self.used.saturating_sub(planned) <= target {
                break;
            }
            if established && !shrunk {
                // The expendable are gone; before evicting live connections, shrink buffers.
                shrunk = true;
                self.evict(std::mem::take(&mut victims), events);
                planned = 0;
                if self.used <= target {
                    break;
                }
                self.shrink_reassembly(target, events);
                if self.used <= target {
                    break;
                }
            }
            if let Some(e) = self.open.table.find(hash, |e| e.conn.index == index) {
                planned += e.conn.counted;
                victims.push((hash, index));
            }
        }
        self.evict(victims, events);
    }

    /// Finish the connections `victims` (hash, index) as evicted for memory, in index order.
    fn evict(&mut self, victims: Vec<(u64, u64)>, events: &mut dyn Events<U>) {
        let mut done = Vec::with_capacity(victims.len());
        for (hash, index) in victims {
            if let Ok(found) = self.open.table.find_entry(hash, |e| e.conn.index == index) {
                let (mut e, _) = found.remove();
                e.conn.evicted = Some("memory");
                self.used -= e.conn.counted;
                done.push(e);
            }
        }
        self.relief.evicted += done.len() as u64;
        finish_in_order(done, events);
    }

    /// Give up the holes of the fullest reassembly buffers, and hand on what they held, until
    /// the count is down to `target`.
    fn shrink_reassembly(&mut self, target: usize, events: &mut dyn Events<U>) {
        let mut holding: Vec<(std::cmp::Reverse<usize>, u64, u64)> = self
            .open
            .table
            .iter()
            .filter_map(|e| {
                let held = e.conn.reassembly_held();
                (held > 0).then_some((std::cmp::Reverse(held), e.conn.index, e.flow.hash))
            })
            .collect();
        holding.sort_unstable();
        for (_, index, hash) in holding {
            if self.used <= target {
                break;
            }
            let Some(e) = self.open.table.find_mut(hash, |e| e.conn.index == index) else {
                continue;
            };
            let c = &mut e.conn;
            self.relief.gap_bytes += c.release_reassembly(events);
            // Recounted as it is now: the layer above may have grown with what was handed on.
            let now = c.footprint();
            self.used = self.used - c.counted + now;
            c.counted = now;
        }
    }

    /// Finish connections idle past the timeout, and closed ones past the linger, in index order.
    fn sweep(&mut self, now: Timestamp, events: &mut dyn Events<U>) {
        let idle = self.cfg.idle_timeout_ns;
        let linger = self.cfg.closed_linger_ns.min(idle);
        let mut freed = 0;
        let mut tombs = Vec::new();
        let done = self.open.table.extract_if(|e| {
            let c = &mut e.conn;
            let quiet = now.0.saturating_sub(c.last_ts.0);
            // A closed connection past its linger ended on its own, however long ago.
            let closed = quiet > linger && c.both_closed();
            let idle = !closed && quiet > idle;
            if idle {
                c.evicted = Some("idle");
                tombs.extend(c.tomb().map(|t| (e.flow.key, t)));
            }
            if closed || idle {
                freed += c.counted;
            }
            closed || idle
        });
        finish_in_order(done.collect(), events);
        self.used -= freed;
        let open = &mut self.open;
        for (key, t) in tombs {
            if open.tombs.insert(key, t).is_none() {
                open.tomb_order.push_back(key);
            }
            while open.tomb_order.len() > MAX_TOMBS {
                if let Some(old) = open.tomb_order.pop_front() {
                    open.tombs.remove(&old);
                }
            }
        }
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
        let mut closing = self.close_all();
        while closing.finish_next(usize::MAX, events) {}
    }

    /// End of input, a batch at a time: every open connection taken out of the table, to be
    /// finished in index order by [`Closing::finish_next`] (so the caller can print each batch's
    /// records before the next, rather than hold a record for every connection at once).
    pub fn close_all(&mut self) -> Closing<U> {
        self.used = 0;
        let mut all: Vec<Box<Entry<U>>> = self.open.table.drain().collect();
        // Highest index first: `finish_next` pops from the end.
        all.sort_unstable_by_key(|e| std::cmp::Reverse(e.conn.index));
        Closing(all)
    }
}

/// Connections taken out at the end of input, finished a batch at a time.
pub struct Closing<U>(Vec<Box<Entry<U>>>);

impl<U: Default> Closing<U> {
    /// Finish the next `n` connections in index order; whether any are left.
    pub fn finish_next(&mut self, n: usize, events: &mut dyn Events<U>) -> bool {
        for _ in 0..n {
            match self.0.pop() {
                Some(e) => e.conn.finish(events),
                None => break,
            }
        }
        !self.0.is_empty()
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
        // The same 5-tuple going on without a SYN after an idle eviction (a capture's clock
        // stepped, files merged): the same connection, as tshark's `tcp.stream` keeps it.
        let tomb = if seg.flags.syn() {
            None
        } else {
            self.tombs.remove(&flow.key)
        };
        let (index, client, server) = match &tomb {
            Some(t) => (t.index, t.client, if t.client == src { dst } else { src }),
            None => (
                cfg.index_shard.0 + self.next_conn * cfg.index_shard.1,
                client,
                server,
            ),
        };
        let mut conn = Conn::new(index, client, server, ts, cfg);
        conn.tunnel = seg.tunnel;
        if let Some(t) = &tomb {
            conn.resume(t);
        }
        if !pure_syn(seg.flags) {
            events.midstream(index, &mut conn.upper);
        }
        if tomb.is_none() {
            self.next_conn += 1;
        }
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

    /// A flow's shard is the same both ways and pinned (other machines and versions must split
    /// a capture the same way); the shards of many flows spread over all of them.
    #[test]
    fn a_flows_shard_is_the_same_both_ways_and_stable() {
        let f = FlowKey::of(&seg("10.0.0.1:40000", "10.0.0.2:80", 0, 1, 0));
        let r = FlowKey::of(&seg("10.0.0.2:80", "10.0.0.1:40000", 0, 1, 0));
        for n in 1..=8 {
            assert_eq!(f.shard(n), r.shard(n));
        }
        // The documented function worked out independently (python3).
        assert_eq!(
            [f.shard(2), f.shard(3), f.shard(7), f.shard(1000)],
            [1, 1, 1, 489]
        );
        let mut seen = [0u32; 4];
        for port in 40000..40400 {
            let k = FlowKey::of(&seg(&format!("10.0.0.1:{port}"), "10.0.0.2:80", 0, 1, 0));
            seen[k.shard(4) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 60), "{seen:?}");
        // Client ports 512 apart (both bytes' last bits fixed), the structure that made a
        // first choice, FNV-1a alone, put all 126 in one shard of 2 (its last bit is the
        // parity of the bytes' last bits): python3 gives 53/73 for the documented function.
        let mut halves = [0u32; 2];
        for port in (1024..=65535).step_by(512) {
            let k = FlowKey::of(&seg(&format!("10.0.0.1:{port}"), "10.0.0.2:80", 0, 1, 0));
            halves[k.shard(2) as usize] += 1;
        }
        assert_eq!(halves, [53, 73]);
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

    /// Segments at given times (ms), finished; each record as "index resumed evicted".
    fn timed(segs: &[(i64, Segment<'_>)]) -> Vec<String> {
        let mut t = Tracker::new(TrackerConfig::default());
        let mut ev = Finished::default();
        for (i, (ms, s)) in segs.iter().enumerate() {
            t.on_segment(s, i as u64 + 1, Timestamp(ms * 1_000_000), &mut ev);
        }
        t.finish(&mut ev);
        ev.0.iter()
            .map(|c| format!("{} {} {:?}", c.conn, c.resumed, c.evicted.as_deref()))
            .collect()
    }

    /// After an hour's silence (past the idle timeout) a connection that goes on without a SYN
    /// is the same connection, resumed; a new SYN on the 5-tuple (the control) is a new one.
    #[test]
    fn an_idle_evicted_connection_that_goes_on_is_resumed_not_new() {
        let hour = 3_600_000;
        let open = [
            (0, seg("10.0.0.2:40000", "10.0.0.1:80", SYN, 100, 0)),
            (1, seg("10.0.0.1:80", "10.0.0.2:40000", SYN_ACK, 500, 101)),
            (2, seg("10.0.0.2:40000", "10.0.0.1:80", ACK, 101, 501)),
        ];
        let mut goes_on = open.to_vec();
        goes_on.push((hour, seg("10.0.0.1:80", "10.0.0.2:40000", ACK, 501, 101)));
        assert_eq!(timed(&goes_on), ["0 false Some(\"idle\")", "0 true None"]);
        let mut new_syn = open.to_vec();
        new_syn.push((hour, seg("10.0.0.2:40000", "10.0.0.1:80", SYN, 9000, 0)));
        assert_eq!(timed(&new_syn), ["0 false Some(\"idle\")", "1 false None"]);
    }

    /// The record that continues an idle-evicted connection shows its ESTABLISHED as shown by
    /// its ACKs, not entered there, and says why; a midstream connection says it had no
    /// handshake in view (the other reason, so a wrong choice between them fails).
    #[test]
    fn a_resumed_record_says_its_states_continue() {
        let run = |segs: &[(i64, Segment<'_>)]| {
            let mut t = Tracker::new(TrackerConfig::default());
            let mut ev = Finished::default();
            for (i, (ms, s)) in segs.iter().enumerate() {
                t.on_segment(s, i as u64 + 1, Timestamp(ms * 1_000_000), &mut ev);
            }
            t.finish(&mut ev);
            ev.0
        };
        let reasons = |c: &ConnRec| -> Vec<String> {
            c.transitions
                .iter()
                .filter(|t| t.state == "ESTABLISHED")
                .map(|t| t.inferred.as_deref().unwrap_or("seen").to_string())
                .collect()
        };
        let later = seg("10.0.0.1:80", "10.0.0.2:40000", ACK, 501, 101);
        let recs = run(&[
            (0, seg("10.0.0.2:40000", "10.0.0.1:80", SYN, 100, 0)),
            (1, seg("10.0.0.1:80", "10.0.0.2:40000", SYN_ACK, 500, 101)),
            (2, seg("10.0.0.2:40000", "10.0.0.1:80", ACK, 101, 501)),
            (3_600_000, later),
        ]);
        assert_eq!(reasons(&recs[0]), ["seen", "seen"]);
        let resumed = reasons(&recs[1]);
        assert_eq!(resumed.len(), 2);
        assert!(
            resumed.iter().all(|r| r.contains("idle eviction")),
            "{resumed:?}"
        );
        let midstream = reasons(&run(&[(0, later)])[0]);
        assert_eq!(midstream.len(), 2);
        assert!(
            midstream.iter().all(|r| r.contains("no handshake")),
            "{midstream:?}"
        );
    }

    /// A run under a memory budget: the connections evicted for memory while the segments
    /// were fed (before the end of input), and what the budget gave up.
    struct Budgeted {
        evicted: Vec<u64>,
        relief: MemoryRelief,
        finished: Vec<ConnRec>,
    }

    /// Feed `segs` (segment `i` at `i` ms) twice: with no budget, to learn what is counted
    /// after each segment; then with a budget just under the count after the last segment
    /// and over every count before it, so that only the last segment trips it.
    fn budgeted(
        segs: &[Segment<'_>],
        cfg: TrackerConfig,
        order: Option<fn(&Conn<()>) -> EvictKey>,
    ) -> Budgeted {
        let mut free = Tracker::new(cfg.clone());
        let mut ev = Finished::default();
        let mut used = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            free.on_segment(s, i as u64 + 1, Timestamp(i as i64 * 1_000_000), &mut ev);
            used.push(free.memory_used());
        }
        let (last, before) = used.split_last().unwrap();
        let most_before = *before.iter().max().unwrap();
        assert!(
            *last > most_before,
            "the last segment must add to the count"
        );
        let budget = most_before + (last - most_before) / 2;
        let mut t = Tracker::new(TrackerConfig {
            memory_budget: budget,
            ..cfg
        });
        if let Some(o) = order {
            t.evict_order = o;
        }
        let mut ev = Finished::default();
        for (i, s) in segs.iter().enumerate() {
            t.on_segment(s, i as u64 + 1, Timestamp(i as i64 * 1_000_000), &mut ev);
        }
        let evicted =
            ev.0.iter()
                .filter(|c| c.evicted.as_deref() == Some("memory"))
                .map(|c| c.conn)
                .collect();
        let relief = t.memory_relief();
        t.finish(&mut ev);
        Budgeted {
            evicted,
            relief,
            finished: ev.0,
        }
    }

    /// The three segments of a handshake from client port `port`.
    fn handshake(port: u16) -> [Segment<'static>; 3] {
        let c = format!("10.0.0.2:{port}");
        [
            seg(&c, "10.0.0.1:80", SYN, 100, 0),
            seg("10.0.0.1:80", &c, SYN_ACK, 500, 101),
            seg(&c, "10.0.0.1:80", ACK, 101, 501),
        ]
    }

    /// Two established connections, then a half-open one, then a new SYN that goes over the
    /// budget: the half-open one is evicted, not the established connection 0 though it is
    /// older and less recently active.
    fn half_open_case() -> Vec<Segment<'static>> {
        let mut segs = Vec::new();
        segs.extend(handshake(1000));
        segs.extend(handshake(1001));
        segs.push(seg("10.0.0.2:1002", "10.0.0.1:80", SYN, 100, 0));
        segs.push(seg("10.0.0.2:1003", "10.0.0.1:80", SYN, 100, 0));
        segs
    }

    #[test]
    fn memory_pressure_evicts_half_open_connections_first() {
        let run = budgeted(&half_open_case(), TrackerConfig::default(), None);
        assert_eq!(run.evicted, [2]);
        assert_eq!(run.relief.evicted, 1);
        // Every connection still has its record; only the evicted one says so.
        let mut finished = run.finished;
        finished.sort_by_key(|c| c.conn);
        let said: Vec<_> = finished.iter().map(|c| c.evicted.clone()).collect();
        assert_eq!(said, [None, None, Some("memory".into()), None]);
    }

    /// Control: least-recently-active alone (no half-open class) evicts connection 0, and the
    /// test above would catch it.
    #[test]
    fn control_an_order_without_the_half_open_class_is_caught() {
        let lru_only: fn(&Conn<()>) -> EvictKey = |c| (true, c.last_ts, c.index);
        let run = budgeted(&half_open_case(), TrackerConfig::default(), Some(lru_only));
        assert_ne!(run.evicted, [2]);
        assert_eq!(run.evicted, [0]);
    }

    /// Three established connections; the oldest (0) is active again later, then connection
    /// 1's fifth unacknowledged segment grows its analysis state over the budget: connection
    /// 2, the least recently active, goes, not the oldest.
    fn lru_case() -> Vec<Segment<'static>> {
        let mut segs = Vec::new();
        segs.extend(handshake(1000));
        segs.extend(handshake(1001));
        segs.extend(handshake(1002));
        segs.push(seg("10.0.0.1:80", "10.0.0.2:1000", ACK, 501, 101));
        for k in 0..5 {
            segs.push(Segment::for_test(
                "10.0.0.2:1001",
                "10.0.0.1:80",
                ACK,
                101 + k * 100,
                501,
                100,
            ));
        }
        segs
    }

    fn no_reassembly() -> TrackerConfig {
        TrackerConfig {
            reassemble: false,
            ..TrackerConfig::default()
        }
    }

    #[test]
    fn then_the_least_recently_active_connection_goes() {
        let run = budgeted(&lru_case(), no_reassembly(), None);
        assert_eq!(run.evicted, [2]);
        assert_eq!(run.relief.gap_bytes, 0);
    }

    /// Control: oldest-first (by index, ignoring activity) evicts connection 0, and the test
    /// above would catch it.
    #[test]
    fn control_oldest_first_instead_of_least_recently_active_is_caught() {
        let oldest: fn(&Conn<()>) -> EvictKey = |c| (!c.expendable(), Timestamp(0), c.index);
        let run = budgeted(&lru_case(), no_reassembly(), Some(oldest));
        assert_ne!(run.evicted, [2]);
        assert_eq!(run.evicted, [0]);
    }

    /// Before an established connection is evicted, reassembly buffers are given up: the
    /// connection holding bytes behind a hole keeps going, its hole and held bytes delivered
    /// as gaps and counted.
    #[test]
    fn reassembly_buffers_are_given_up_before_established_connections() {
        let mut segs = Vec::new();
        segs.extend(handshake(1000));
        segs.extend(handshake(1001));
        // Connection 1: 20 pieces held behind a 100-byte hole (no payload captured: each
        // piece held costs its bookkeeping); the last piece trips the budget.
        for k in 0..20 {
            segs.push(Segment::for_test(
                "10.0.0.2:1001",
                "10.0.0.1:80",
                ACK,
                201 + k * 100,
                501,
                100,
            ));
        }
        let run = budgeted(&segs, TrackerConfig::default(), None);
        assert_eq!(run.evicted, Vec::<u64>::new());
        assert_eq!(run.relief.evicted, 0);
        assert_eq!(run.relief.gap_bytes, 2100);
        assert_eq!(run.finished[1].gap_bytes, 2100);
    }
}
