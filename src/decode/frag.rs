//! Reassembly of fragmented IP datagrams that carry TCP (RFC 791 §3.2, RFC 8200 §4.5).
//!
//! The datagram is handed over at the frame that completes it, whatever order the fragments
//! came in, as Wireshark does. Overlap policy: **first wins** — bytes already received are kept
//! and a later fragment only fills holes (an overlap is a finding for humans, not something to
//! resolve cleverly). A second "last fragment" that disagrees about the end drops the datagram.
//!
//! Bounded: at most [`MAX_DATAGRAMS`] pending datagrams and [`MAX_BYTES`] buffered; beyond that
//! the oldest is dropped. Datagrams older than [`TIMEOUT_NS`] of capture time (Linux's
//! `ipfrag_time`) are expired. Time comes from the frames, never from the clock.

use crate::types::Timestamp;
use std::net::IpAddr;

pub(crate) const MAX_DATAGRAMS: usize = 64;
pub(crate) const MAX_BYTES: usize = 4 << 20;
pub(crate) const TIMEOUT_NS: i64 = 30_000_000_000;
/// An IP datagram's payload cannot end beyond this (16-bit lengths).
const MAX_END: u32 = 65_535;

/// Which datagram a fragment belongs to (the protocol is always TCP here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Key {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
}

#[derive(Debug)]
struct Datagram {
    key: Key,
    first_seen: Timestamp,
    data: Vec<u8>,
    /// Received byte ranges, sorted and merged.
    have: Vec<(u32, u32)>,
    /// End of the payload, known once the last fragment (MF clear) arrived.
    end: Option<u32>,
}

#[derive(Debug, Default)]
pub(crate) struct Reassembler {
    pending: Vec<Datagram>,
    bytes: usize,
    /// The last completed datagram; segments borrow their payload from here.
    done: Vec<u8>,
}

impl Reassembler {
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }

    fn remove(&mut self, i: usize) -> Datagram {
        let d = self.pending.remove(i);
        self.bytes -= d.data.len();
        d
    }

    /// Add one fragment; returns the whole payload when this fragment completes it.
    pub(crate) fn add(
        &mut self,
        key: Key,
        ts: Timestamp,
        offset: u32,
        more: bool,
        frag: &[u8],
    ) -> Result<Option<&[u8]>, &'static str> {
        // Expire by capture time; a capture running backwards in time expires nothing.
        let mut i = 0;
        while i < self.pending.len() {
            if ts.0.saturating_sub(self.pending[i].first_seen.0) > TIMEOUT_NS {
                self.remove(i);
            } else {
                i += 1;
            }
        }
        let end = offset + frag.len() as u32;
        if end > MAX_END {
            return Err("fragment extends beyond the largest IP datagram");
        }
        let idx = match self.pending.iter().position(|d| d.key == key) {
            Some(i) => i,
            None => {
                if self.pending.len() >= MAX_DATAGRAMS {
                    self.remove(0);
                }
                self.pending.push(Datagram {
                    key,
                    first_seen: ts,
                    data: Vec::new(),
                    have: Vec::new(),
                    end: None,
                });
                self.pending.len() - 1
            }
        };
        // Consistency of the datagram's end.
        let d = &mut self.pending[idx];
        let known_end = d.end;
        let furthest = d.have.last().map_or(0, |r| r.1);
        let conflict = match (more, known_end) {
            (false, Some(e)) => e != end,
            (false, None) => furthest > end,
            (true, Some(e)) => end > e,
            (true, None) => false,
        };
        if conflict {
            self.remove(idx);
            return Err("fragments disagree about the datagram's length");
        }
        if !more {
            self.pending[idx].end = Some(end);
        }
        // Room for the bytes: evict the oldest other datagrams if needed.
        let grow = (end as usize).saturating_sub(self.pending[idx].data.len());
        let mut idx = idx;
        while self.bytes + grow > MAX_BYTES && self.pending.len() > 1 {
            let victim = if idx == 0 { 1 } else { 0 };
            self.remove(victim);
            if victim < idx {
                idx -= 1;
            }
        }
        let d = &mut self.pending[idx];
        if grow > 0 {
            d.data.resize(end as usize, 0);
            self.bytes += grow;
        }
        // First wins: copy only into holes.
        let mut pos = offset;
        for &(s, e) in &d.have {
            if e <= pos {
                continue;
            }
            if s >= end {
                break;
            }
            if s > pos {
                let (a, b) = (pos as usize, s as usize);
                d.data[a..b].copy_from_slice(&frag[a - offset as usize..b - offset as usize]);
            }
            pos = pos.max(e);
        }
        if pos < end {
            let (a, b) = (pos as usize, end as usize);
            d.data[a..b].copy_from_slice(&frag[a - offset as usize..]);
        }
        if end > offset {
            d.have.push((offset, end));
            d.have.sort_unstable();
            let mut merged: Vec<(u32, u32)> = Vec::with_capacity(d.have.len());
            for &(s, e) in &d.have {
                match merged.last_mut() {
                    Some(last) if s <= last.1 => last.1 = last.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            d.have = merged;
        }
        let complete = match d.end {
            Some(e) => d.have.first() == Some(&(0, e)) || (e == 0 && d.have.is_empty()),
            None => false,
        };
        if !complete {
            return Ok(None);
        }
        let d = self.remove(idx);
        self.done = d.data;
        Ok(Some(&self.done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(id: u32) -> Key {
        Key {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
            id,
        }
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn in_order_and_reversed() {
        let p = payload(3000);
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let mut r = Reassembler::default();
            let parts = [(0u32, true), (1480, true), (2960, false)];
            let mut out = None;
            for (n, &i) in order.iter().enumerate() {
                let (off, more) = parts[i];
                let end = if more { off as usize + 1480 } else { 3000 };
                let got = r
                    .add(key(1), Timestamp(0), off, more, &p[off as usize..end])
                    .unwrap()
                    .map(|d| d.to_vec());
                if n < 2 {
                    assert!(got.is_none());
                } else {
                    out = got;
                }
            }
            assert_eq!(out.as_deref(), Some(&p[..]));
            assert_eq!(r.pending(), 0);
        }
    }

    #[test]
    fn overlap_first_wins() {
        let mut r = Reassembler::default();
        assert!(r
            .add(key(1), Timestamp(0), 0, true, &[1; 16])
            .unwrap()
            .is_none());
        // overlaps bytes 8..16 with different content, and completes
        let got = r
            .add(key(1), Timestamp(0), 8, false, &[2; 16])
            .unwrap()
            .unwrap()
            .to_vec();
        assert_eq!(&got[..16], &[1; 16]);
        assert_eq!(&got[16..], &[2; 8]);
    }

    #[test]
    fn never_completed_is_bounded_and_expires() {
        let mut r = Reassembler::default();
        for id in 0..200 {
            r.add(key(id), Timestamp(0), 0, true, &[0; 1000]).unwrap();
        }
        assert_eq!(r.pending(), MAX_DATAGRAMS);
        assert!(r.bytes <= MAX_BYTES);
        r.add(key(999), Timestamp(TIMEOUT_NS + 1), 0, true, &[0; 8])
            .unwrap();
        assert_eq!(r.pending(), 1);
    }

    #[test]
    fn conflicting_ends_drop_the_datagram() {
        let mut r = Reassembler::default();
        r.add(key(1), Timestamp(0), 16, false, &[0; 8]).unwrap();
        assert!(r.add(key(1), Timestamp(0), 8, false, &[0; 8]).is_err());
        assert_eq!(r.pending(), 0);
        assert!(r.add(key(2), Timestamp(0), 65_530, true, &[0; 8]).is_err());
    }
}
