//! Where frames come from.
//!
//! Every source — a pcap/pcapng file, a live interface, a vector in memory — yields [`Frame`]s
//! through one trait, [`FrameSource`], so replay, live capture and tests share everything after
//! this layer. A frame carries its capture time: nothing later reads the clock.

pub mod bpf;
pub mod filter;
pub mod live;
pub mod mapped;
pub mod memory;
pub mod merge;
pub mod pcap_file;
pub mod pcap_writer;
pub mod ring;
pub mod stop;

pub use crate::types::{Frame, LinkType, Timestamp};
use std::time::Duration;

/// An error reading frames. Displayed as one line naming the source, where and what.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{path}: {what} (at byte offset {offset})")]
    Damaged {
        path: String,
        offset: u64,
        what: String,
    },
    #[error("{path}: {what}")]
    Open { path: String, what: String },
    #[error("{0}")]
    Other(String),
}

/// A source of frames: a file, a live interface or memory.
pub trait FrameSource {
    /// The next frame, `Ok(None)` at the end of input. After an `Err` the source is finished.
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError>;

    /// Bytes consumed so far and the total when known: for progress bars.
    fn progress(&self) -> (u64, Option<u64>) {
        (0, None)
    }

    /// A file read through a memory map: lend the map to whoever reads the frames' bytes in
    /// place on other threads, and from now on leave releasing its pages to them
    /// ([`mapped::Lent::release`]). `None` for every other source.
    fn lend_map(&mut self) -> Option<mapped::Lent> {
        None
    }

    /// The next frame, waiting for it at most about `wait`: [`Polled::Idle`] when none came
    /// in time, so a display can refresh while an interface is quiet. Sources that never wait
    /// (files, memory) never say idle.
    fn poll_frame(&mut self, wait: Duration) -> Result<Polled<'_>, CaptureError> {
        let _ = wait;
        Ok(match self.next_frame()? {
            Some(f) => Polled::Frame(f),
            None => Polled::End,
        })
    }
}

/// What [`FrameSource::poll_frame`] found.
pub enum Polled<'a> {
    Frame(Frame<'a>),
    /// No frame within the wait; the source goes on.
    Idle,
    /// End of input.
    End,
}
