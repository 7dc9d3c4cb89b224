//! A vector of frames in memory: for tests and for labs that build traffic themselves.

use super::{CaptureError, Frame, FrameSource, LinkType, Timestamp};

/// Owned frames played back in order, numbered from 1.
pub struct MemorySource {
    frames: Vec<(Timestamp, LinkType, Vec<u8>)>,
    next: usize,
}

impl MemorySource {
    pub fn new(frames: Vec<(Timestamp, LinkType, Vec<u8>)>) -> Self {
        MemorySource { frames, next: 0 }
    }
}

impl FrameSource for MemorySource {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        let Some((ts, lt, data)) = self.frames.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        Ok(Some(Frame {
            number: self.next as u64,
            ts: *ts,
            linktype: *lt,
            data,
            orig_len: data.len() as u32,
        }))
    }
}
