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
pub mod pcap_file;
pub mod pcap_writer;
pub mod ring;

use std::fmt;

/// Link-layer header type, as numbered by tcpdump.org's LINKTYPE_ registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkType(pub u32);

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    pub const RAW: LinkType = LinkType(101);
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Capture time in nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn from_secs_nanos(secs: i64, nanos: i64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
    }
    /// Seconds since the epoch as a float, as the records print it: the float nearest the
    /// capture's own time whenever that is whole microseconds (most captures), so records show
    /// `…613.196271` as the file says, not a neighbour like `…613.1962712` that converting
    /// the nanosecond count in one step gives (2^53 is below today's count of nanoseconds).
    pub fn as_secs_f64(self) -> f64 {
        if self.0 % 1000 == 0 {
            // Microseconds since the epoch are exact in a float for 285 years either side,
            // and one division rounds once.
            (self.0 / 1000) as f64 / 1e6
        } else {
            self.0.div_euclid(1_000_000_000) as f64 + self.0.rem_euclid(1_000_000_000) as f64 / 1e9
        }
    }
    /// `self - earlier` in seconds (negative when the capture is out of time order).
    pub fn secs_since(self, earlier: Timestamp) -> f64 {
        (self.0 - earlier.0) as f64 / 1e9
    }
}

/// One captured frame, borrowed from its source until the next call.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// 1-based position in the capture, counting every frame (Wireshark's `frame.number`).
    pub number: u64,
    pub ts: Timestamp,
    pub linktype: LinkType,
    /// The captured bytes (possibly cut short by the snaplen).
    pub data: &'a [u8],
    /// The frame's length on the wire.
    pub orig_len: u32,
}

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
}

#[cfg(test)]
mod tests {
    use super::Timestamp;

    proptest::proptest! {
        /// Whole microseconds give exactly the float their decimal text reads as.
        #[test]
        fn micros_give_the_float_of_their_text(secs in -5_000_000_000i64..5_000_000_000, us in 0i64..1_000_000) {
            let t = Timestamp(secs * 1_000_000_000 + us * 1000);
            let text = if secs < 0 && us > 0 {
                // -1.5 s is secs -2 plus 0.5 s.
                let total = -(secs * 1_000_000 + us);
                format!("-{}.{:06}", total / 1_000_000, total % 1_000_000)
            } else {
                format!("{secs}.{us:06}")
            };
            proptest::prop_assert_eq!(t.as_secs_f64(), text.parse::<f64>().unwrap());
        }

        /// Other times are within one unit in the last place of their text's float.
        #[test]
        fn nanos_are_close(secs in 0i64..5_000_000_000, ns in 0i64..1_000_000_000) {
            let t = Timestamp(secs * 1_000_000_000 + ns);
            let exact: f64 = format!("{secs}.{ns:09}").parse().unwrap();
            let err = (t.as_secs_f64() - exact).abs();
            proptest::prop_assert!(err <= exact.max(1.0) * f64::EPSILON, "{err}");
        }
    }
}
