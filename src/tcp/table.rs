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
use rustc_hash::FxHashMap;
use std::net::{IpAddr, SocketAddr};

/// Both endpoints, in a canonical order so either direction finds the same entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    a: IpAddr,
    b: IpAddr,
    ap: u16,
    bp: u16,
}

impl Key {
    fn of(seg: &Segment<'_>) -> Key {
        if (seg.src, seg.sport) <= (seg.dst, seg.dport) {
            Key {
                a: seg.src,
                b: seg.dst,
                ap: seg.sport,
                bp: seg.dport,
            }
        } else {
            Key {
                a: seg.dst,
                b: seg.src,
                ap: seg.dport,
                bp: seg.sport,
            }
        }
    }
}

/// Follows every connection; frames in (as segments), records and stream data out.
pub struct Tracker {
    cfg: TrackerConfig,
    index: FxHashMap<Key, u32>,
    slots: Vec<Option<Box<(Key, Conn)>>>,
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
            index: FxHashMap::default(),
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
        let src = SocketAddr::new(seg.src, seg.sport);
        let dst = SocketAddr::new(seg.dst, seg.dport);
        let slot = match self.index.get(&key) {
            Some(&slot) => {
                let conn = &self.slots[slot as usize]
                    .as_ref()
                    .expect("indexed slot is live")
                    .1;
                if self.starts_new(conn, seg, src) {
                    self.evict(slot, events);
                    self.insert(key, seg, src, dst, ts, events)
                } else {
                    slot
                }
            }
            None => self.insert(key, seg, src, dst, ts, events),
        };
        let conn = &mut self.slots[slot as usize].as_mut().expect("live slot").1;
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

    fn insert(
        &mut self,
        key: Key,
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
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = Some(Box::new((key, conn)));
                s
            }
            None => {
                self.slots.push(Some(Box::new((key, conn))));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(key, slot);
        self.live += 1;
        self.peak_live = self.peak_live.max(self.live);
        slot
    }

    fn evict(&mut self, slot: u32, events: &mut dyn Events) {
        if let Some(entry) = self.slots[slot as usize].take() {
            let (key, conn) = *entry;
            self.index.remove(&key);
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
                let c = &entry.1;
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
        let mut open: Vec<&Conn> = self.slots.iter().flatten().map(|e| &e.1).collect();
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
            .filter_map(|(i, s)| s.as_ref().map(|e| (e.1.index, i as u32)))
            .collect();
        rest.sort_unstable();
        for (_, slot) in rest {
            self.evict(slot, events);
        }
    }
}
