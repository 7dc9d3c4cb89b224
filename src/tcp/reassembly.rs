//! In-order bytes per direction from segments that arrive out of order, overlap or repeat.
//!
//! Positions are 64-bit relative sequence numbers: 1 is the first byte after the SYN (or, without
//! a SYN in view, the first byte seen), so wrapping is already undone by the caller.

/// What the reassembler hands on, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    Data(&'a [u8]),
    /// This many bytes were never captured (or were dropped over the cap).
    Gap(u64),
}

/// One direction's reassembly buffer.
#[derive(Debug)]
pub struct Reassembler {
    next: u64,
    cap: usize,
    dropped: u64,
}

impl Reassembler {
    /// `cap`: most bytes held out of order before the oldest are given up as a gap.
    pub fn new(cap: usize) -> Self {
        Reassembler {
            next: 1,
            cap,
            dropped: 0,
        }
    }

    /// A segment at position `pos` with `len` bytes on the wire, of which `data` (a prefix) was
    /// captured. Delivers whatever became contiguous.
    pub fn push(&mut self, pos: u64, len: u32, data: &[u8], deliver: &mut dyn FnMut(Chunk<'_>)) {
        let _ = (pos, len, data, deliver, self.cap);
    }

    /// The peer acknowledged everything before `pos`: bytes below it still missing were never
    /// captured, so deliver them as a gap and move on.
    pub fn acked(&mut self, pos: u64, deliver: &mut dyn FnMut(Chunk<'_>)) {
        let _ = (pos, deliver);
    }

    /// End of the stream: flush what is held, with gaps for the holes.
    pub fn finish(&mut self, deliver: &mut dyn FnMut(Chunk<'_>)) {
        let _ = deliver;
    }

    /// Next position expected in order.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Bytes given up as gaps so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}
