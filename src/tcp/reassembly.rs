//! In-order bytes per direction from segments that arrive out of order, overlap or repeat.
//!
//! Positions are 64-bit relative sequence numbers: 1 is the first byte after the SYN (or, without
//! a SYN in view, the first byte seen), so wrapping is already undone by the caller.
//!
//! # Overlap policy: first wins
//!
//! A byte position, once received, keeps the bytes it was first received with: a retransmission
//! or overlapping segment only contributes the positions nobody covered before it. This is what
//! Linux's receive queue does for in-order data and what Wireshark's Follow TCP Stream shows, so
//! `--follow` and the HTTP parsers see the same bytes those tools would.
//!
//! # What comes out
//!
//! [`Chunk::Data`] for bytes in stream order, and [`Chunk::Gap`] for bytes that exist (the
//! sequence space says so) but can never be delivered:
//! - a segment whose captured payload is shorter than its wire length (snaplen): the missing
//!   suffix is a gap at its place in the stream;
//! - [`Reassembler::acked`]: the peer acknowledged bytes never seen, so they were lost at the
//!   capture point;
//! - the cap: when more than `cap` bytes wait behind a hole, the hole is given up;
//! - [`Reassembler::finish`]: holes between whatever is still held.
//!
//! Every gap is counted in [`Reassembler::dropped`]. Held bytes are freed as they are delivered;
//! the common case (a segment at exactly the next position with nothing held) is delivered straight
//! from the caller's slice without a copy.

use std::collections::BTreeMap;

/// What the reassembler hands on, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    Data(&'a [u8]),
    /// This many bytes were never captured (or were dropped over the cap).
    Gap(u64),
}

/// Bookkeeping cost charged per held piece on top of its bytes, so that many tiny or
/// data-less pieces (snaplen-cut suffixes) also count against the cap.
const PIECE_OVERHEAD: usize = 32;

/// A piece held out of order: bytes, or a run known to exist but not captured.
#[derive(Debug)]
enum Piece {
    Data(Vec<u8>),
    Missing(u64),
}

impl Piece {
    fn len(&self) -> u64 {
        match self {
            Piece::Data(d) => d.len() as u64,
            Piece::Missing(n) => *n,
        }
    }
    fn cost(&self) -> usize {
        PIECE_OVERHEAD
            + match self {
                Piece::Data(d) => d.len(),
                Piece::Missing(_) => 0,
            }
    }
}

/// One direction's reassembly buffer.
#[derive(Debug)]
pub struct Reassembler {
    /// Next position to deliver; everything before it has been handed on.
    next: u64,
    /// Most bytes (plus per-piece overhead) held before the first hole is given up.
    cap: usize,
    /// Bytes delivered as gaps so far.
    dropped: u64,
    /// Pieces beyond `next`, keyed by start position; they never overlap each other.
    held: BTreeMap<u64, Piece>,
    /// Sum of the held pieces' cost.
    held_cost: usize,
}

impl Reassembler {
    /// `cap`: most bytes held out of order before the oldest are given up as a gap.
    pub fn new(cap: usize) -> Self {
        Reassembler {
            next: 1,
            cap,
            dropped: 0,
            held: BTreeMap::new(),
            held_cost: 0,
        }
    }

    /// A segment at position `pos` with `len` bytes on the wire, of which `data` (a prefix) was
    /// captured. Delivers whatever became contiguous.
    pub fn push(&mut self, pos: u64, len: u32, data: &[u8], deliver: &mut dyn FnMut(Chunk<'_>)) {
        // Nothing can sit past the end of the position space: cut there, so sums never wrap.
        let len = u64::from(len).min(u64::MAX - pos);
        // The wire length is the authority; extra captured bytes (padding) are not payload.
        let data = &data[..data.len().min(len as usize)];
        let end = pos + len;
        if end <= self.next {
            return; // all old: a retransmission of delivered bytes
        }
        // Trim what was already delivered (first wins).
        let skip = self.next.saturating_sub(pos);
        let (mut pos, mut data) = if skip > 0 {
            let s = skip.min(data.len() as u64) as usize;
            (self.next, &data[s..])
        } else {
            (pos, data)
        };
        // Fast path: in order, before anything held, delivered without a copy.
        if pos == self.next && !data.is_empty() {
            let limit = self.held.keys().next().map_or(u64::MAX, |&k| k - pos);
            let n = (data.len() as u64).min(limit) as usize;
            deliver(Chunk::Data(&data[..n]));
            self.next += n as u64;
            pos += n as u64;
            data = &data[n..];
        }
        // Snaplen fast path: the uncaptured suffix of an in-order segment, with nothing held
        // before its end, is a gap right away (what holding it as Missing would deliver).
        if pos == self.next
            && data.is_empty()
            && pos < end
            && self.held.keys().next().is_none_or(|&k| k >= end)
        {
            self.dropped += end - pos;
            deliver(Chunk::Gap(end - pos));
            self.next = end;
            self.drain(deliver);
            return;
        }
        if !data.is_empty() {
            self.insert(pos, Some(data), data.len() as u64);
        }
        let data_end = pos + data.len() as u64;
        if data_end < end {
            let start = data_end.max(self.next);
            if start < end {
                self.insert(start, None, end - start);
            }
        }
        self.drain(deliver);
        self.enforce_cap(deliver);
    }

    /// The peer acknowledged everything before `pos`: bytes below it still missing were never
    /// captured, so deliver them as a gap and move on. `pos` must not count a FIN.
    pub fn acked(&mut self, pos: u64, deliver: &mut dyn FnMut(Chunk<'_>)) {
        while self.next < pos {
            match self.held.keys().next() {
                Some(&k) if k < pos => self.skip_to(k, deliver),
                _ => self.skip_to(pos, deliver),
            }
            self.drain(deliver);
        }
    }

    /// End of the stream: flush what is held, with gaps for the holes.
    pub fn finish(&mut self, deliver: &mut dyn FnMut(Chunk<'_>)) {
        while let Some(&k) = self.held.keys().next() {
            self.skip_to(k, deliver);
            self.drain(deliver);
        }
    }

    /// Next position expected in order.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Bytes given up as gaps so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes (plus bookkeeping) held out of order right now.
    pub fn held(&self) -> usize {
        self.held_cost
    }

    /// Pieces held out of order right now.
    pub fn pieces(&self) -> usize {
        self.held.len()
    }

    /// Give up every hole now and deliver everything held (the memory budget's way to shrink
    /// this buffer). Returns the bytes given up as gaps.
    pub fn release(&mut self, deliver: &mut dyn FnMut(Chunk<'_>)) -> u64 {
        let before = self.dropped;
        self.finish(deliver);
        self.dropped - before
    }

    /// Hold `[start, start+len)` (bytes from `data`, or a missing run when `None`) wherever no
    /// held piece covers it already: first wins.
    fn insert(&mut self, start: u64, data: Option<&[u8]>, len: u64) {
        let end = start.saturating_add(len);
        let mut covered: Vec<(u64, u64)> = Vec::new();
        if let Some((&k, p)) = self.held.range(..start).next_back() {
            if k + p.len() > start {
                covered.push((k, k + p.len()));
            }
        }
        covered.extend(self.held.range(start..end).map(|(&k, p)| (k, k + p.len())));
        let mut cur = start;
        let mut fill = Vec::new();
        for (cs, ce) in covered {
            if cs > cur {
                fill.push((cur, cs.min(end)));
            }
            cur = cur.max(ce);
            if cur >= end {
                break;
            }
        }
        if cur < end {
            fill.push((cur, end));
        }
        for (a, b) in fill {
            let piece = match data {
                Some(d) => Piece::Data(d[(a - start) as usize..(b - start) as usize].to_vec()),
                None => Piece::Missing(b - a),
            };
            self.held_cost += piece.cost();
            self.held.insert(a, piece);
        }
    }

    /// Deliver held pieces that start at (or before) `next`.
    fn drain(&mut self, deliver: &mut dyn FnMut(Chunk<'_>)) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() > self.next {
                break;
            }
            let k = *entry.key();
            let piece = entry.remove();
            self.held_cost -= piece.cost();
            let end = k + piece.len();
            if end <= self.next {
                continue;
            }
            let skip = self.next - k;
            match &piece {
                Piece::Data(d) => deliver(Chunk::Data(&d[skip as usize..])),
                Piece::Missing(n) => {
                    self.dropped += n - skip;
                    deliver(Chunk::Gap(n - skip));
                }
            }
            self.next = end;
        }
    }

    /// Give up the hole before `to`: deliver it as a gap.
    fn skip_to(&mut self, to: u64, deliver: &mut dyn FnMut(Chunk<'_>)) {
        if to > self.next {
            let n = to - self.next;
            self.dropped += n;
            self.next = to;
            deliver(Chunk::Gap(n));
        }
    }

    fn enforce_cap(&mut self, deliver: &mut dyn FnMut(Chunk<'_>)) {
        while self.held_cost > self.cap {
            let Some(&k) = self.held.keys().next() else {
                break;
            };
            self.skip_to(k, deliver);
            self.drain(deliver);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Pushes and collects: data bytes, and gaps as a list of (offset in output, len).
    #[derive(Default)]
    struct Out {
        bytes: Vec<u8>,
        gaps: Vec<(usize, u64)>,
    }

    impl Out {
        fn sink(&mut self) -> impl FnMut(Chunk<'_>) + '_ {
            |c| match c {
                Chunk::Data(d) => {
                    assert!(!d.is_empty(), "empty data chunk");
                    self.bytes.extend_from_slice(d)
                }
                Chunk::Gap(n) => {
                    assert!(n > 0, "empty gap");
                    self.gaps.push((self.bytes.len(), n))
                }
            }
        }
    }

    fn push(r: &mut Reassembler, out: &mut Out, pos: u64, data: &[u8]) {
        r.push(pos, data.len() as u32, data, &mut out.sink());
    }

    // ---- in order and out of order -------------------------------------------------------

    #[test]
    fn in_order_is_delivered_at_once() {
        let mut r = Reassembler::new(1000);
        let mut o = Out::default();
        push(&mut r, &mut o, 1, b"abc");
        push(&mut r, &mut o, 4, b"def");
        assert_eq!(o.bytes, b"abcdef");
        assert_eq!(r.next(), 7);
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn out_of_order_waits_for_the_hole() {
        let mut r = Reassembler::new(1000);
        let mut o = Out::default();
        push(&mut r, &mut o, 4, b"def");
        assert!(o.bytes.is_empty());
        push(&mut r, &mut o, 1, b"abc");
        assert_eq!(o.bytes, b"abcdef");
        assert_eq!(r.held(), 0, "memory released once delivered");
    }

    #[test]
    fn overlap_first_wins() {
        let mut r = Reassembler::new(1000);
        let mut o = Out::default();
        push(&mut r, &mut o, 3, b"CD");
        push(&mut r, &mut o, 1, b"abcdef"); // c,d already held as C,D: kept
        assert_eq!(o.bytes, b"abCDef");
        push(&mut r, &mut o, 2, b"XXXXXg"); // delivered bytes are not replaced
        assert_eq!(o.bytes, b"abCDefg");
    }

    // ---- gaps ----------------------------------------------------------------------------

    #[test]
    fn snaplen_cut_suffix_is_a_gap_in_place() {
        let mut r = Reassembler::new(1000);
        let mut o = Out::default();
        r.push(1, 10, b"abcd", &mut o.sink());
        push(&mut r, &mut o, 11, b"xyz");
        assert_eq!(o.bytes, b"abcdxyz");
        assert_eq!(o.gaps, vec![(4, 6)]);
        assert_eq!(r.dropped(), 6);
    }

    #[test]
    fn cut_suffix_out_of_order_is_held_as_missing() {
        let mut r = Reassembler::new(1000);
        let mut o = Out::default();
        r.push(5, 6, b"ef", &mut o.sink());
        push(&mut r, &mut o, 1, b"abcd");
        assert_eq!(o.bytes, b"abcdef");
        assert_eq!(o.gaps, vec![(6, 4)]);
        assert_eq!(r.next(), 11);
    }

    #[test]
    fn acked_gives_up_never_seen_bytes() {
        let mut r = Reassembler::new(1000);
        let mut o = Out::default();
        push(&mut r, &mut o, 1, b"ab");
        push(&mut r, &mut o, 6, b"fg");
        r.acked(8, &mut o.sink());
        assert_eq!(o.bytes, b"abfg");
        assert_eq!(o.gaps, vec![(2, 3)]);
        r.acked(10, &mut o.sink());
        assert_eq!(o.gaps, vec![(2, 3), (4, 2)]);
        assert_eq!(r.next(), 10);
        r.acked(5, &mut o.sink()); // old ack: nothing
        assert_eq!(r.dropped(), 5);
    }

    #[test]
    fn cap_gives_up_the_oldest_hole() {
        let mut r = Reassembler::new(3 * PIECE_OVERHEAD + 13);
        let mut o = Out::default();
        push(&mut r, &mut o, 11, b"0123456789");
        push(&mut r, &mut o, 31, b"abc");
        assert!(o.bytes.is_empty());
        push(&mut r, &mut o, 41, b"xyz"); // over the cap: hole 1..11 given up
        assert_eq!(o.bytes, b"0123456789");
        assert_eq!(o.gaps, vec![(0, 10)]);
        assert!(r.held() <= 3 * PIECE_OVERHEAD + 13);
    }

    #[test]
    fn finish_flushes_with_gaps() {
        let mut r = Reassembler::new(1000);
        let mut o = Out::default();
        push(&mut r, &mut o, 3, b"c");
        push(&mut r, &mut o, 6, b"f");
        r.finish(&mut o.sink());
        assert_eq!(o.bytes, b"cf");
        assert_eq!(o.gaps, vec![(0, 2), (1, 2)]);
        assert_eq!(r.held(), 0);
    }

    // ---- odd input -----------------------------------------------------------------------

    #[test]
    fn huge_positions_and_empty_segments_do_not_panic() {
        let mut r = Reassembler::new(100);
        let mut o = Out::default();
        r.push(u64::MAX - 1, 100, b"abcdefgh", &mut o.sink());
        r.push(u64::MAX, 0, b"", &mut o.sink());
        r.push(0, 0, b"", &mut o.sink());
        r.push(0, 3, b"xyz", &mut o.sink()); // starts before 1: trimmed
        r.push(5, 2, b"longer than len", &mut o.sink());
        r.acked(u64::MAX, &mut o.sink());
        r.finish(&mut o.sink());
        assert_eq!(&o.bytes[..2], b"yz");
    }

    // ---- against a naive model -----------------------------------------------------------

    /// The naive model: a byte array written first-wins, read from the start.
    fn model(segs: &[(u64, Vec<u8>)], total: usize) -> Vec<Option<u8>> {
        let mut m = vec![None; total];
        for (pos, d) in segs {
            for (i, &b) in d.iter().enumerate() {
                let p = (*pos - 1) as usize + i;
                if p < total && m[p].is_none() {
                    m[p] = Some(b);
                }
            }
        }
        m
    }

    fn segments() -> impl Strategy<Value = (Vec<u8>, Vec<(u64, Vec<u8>)>)> {
        proptest::collection::vec(any::<u8>(), 1..400).prop_flat_map(|s| {
            let n = s.len();
            let seg = (0..n, 1..64usize).prop_map(move |(a, l)| (a, l));
            (Just(s), proptest::collection::vec(seg, 0..40), any::<u64>()).prop_map(
                |(s, extra, seed)| {
                    // Cover the whole string with a random segmentation, add random
                    // duplicates/overlaps, then shuffle.
                    let mut segs = Vec::new();
                    let mut at = 0;
                    let mut x = seed | 1;
                    while at < s.len() {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let l = 1 + (x % 50) as usize;
                        let e = (at + l).min(s.len());
                        segs.push((at as u64 + 1, s[at..e].to_vec()));
                        at = e;
                    }
                    for (a, l) in extra {
                        let e = (a + l).min(s.len());
                        segs.push((a as u64 + 1, s[a..e].to_vec()));
                    }
                    for i in (1..segs.len()).rev() {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        segs.swap(i, (x % (i as u64 + 1)) as usize);
                    }
                    (s, segs)
                },
            )
        })
    }

    proptest! {
        #[test]
        fn delivers_the_string_whatever_the_order((s, segs) in segments()) {
            let mut r = Reassembler::new(1 << 20);
            let mut o = Out::default();
            for (pos, d) in &segs {
                push(&mut r, &mut o, *pos, d);
            }
            prop_assert_eq!(&o.bytes, &s);
            prop_assert!(o.gaps.is_empty());
            prop_assert_eq!(r.held(), 0);
            prop_assert_eq!(r.next(), s.len() as u64 + 1);
        }

        #[test]
        fn first_wins_like_the_model(
            segs in proptest::collection::vec(
                (1u64..200, proptest::collection::vec(any::<u8>(), 0..40)), 0..30)
        ) {
            let mut r = Reassembler::new(1 << 20);
            let mut o = Out::default();
            for (pos, d) in &segs {
                push(&mut r, &mut o, *pos, d);
            }
            r.finish(&mut o.sink());
            // Rebuild the stream from the chunks and compare with the model byte by byte.
            let m = model(&segs, 260);
            let mut got: Vec<Option<u8>> = Vec::new();
            let mut gi = 0;
            for (i, &b) in o.bytes.iter().enumerate() {
                while gi < o.gaps.len() && o.gaps[gi].0 == i {
                    got.extend(std::iter::repeat_n(None, o.gaps[gi].1 as usize));
                    gi += 1;
                }
                got.push(Some(b));
            }
            for g in &o.gaps[gi..] {
                got.extend(std::iter::repeat_n(None, g.1 as usize));
            }
            let last = m.iter().rposition(|b| b.is_some()).map_or(0, |p| p + 1);
            prop_assert_eq!(&got[..], &m[..last]);
            prop_assert_eq!(r.dropped(), got.iter().filter(|b| b.is_none()).count() as u64);
        }

        #[test]
        fn cap_bounds_memory(
            segs in proptest::collection::vec(
                (1u64..5000, proptest::collection::vec(any::<u8>(), 0..100)), 0..60),
            cap in 0usize..600,
        ) {
            let mut r = Reassembler::new(cap);
            let mut o = Out::default();
            for (pos, d) in &segs {
                push(&mut r, &mut o, *pos, d);
                prop_assert!(r.held() <= cap);
            }
            r.finish(&mut o.sink());
            prop_assert_eq!(r.held(), 0);
            let gaps: u64 = o.gaps.iter().map(|g| g.1).sum();
            prop_assert_eq!(o.bytes.len() as u64 + gaps + 1, r.next());
        }
    }
}
