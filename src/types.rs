//! The vocabulary every layer shares: capture time, frames and their link types, directions
//! and packet selections.
//!
//! This is the bottom of the crate: it imports nothing from it, and every layer may import
//! it. A type belongs here when two layers that must not know each other both speak it
//! (capture and decode a [`Frame`], tcp and http a [`Dir`] and a [`Timestamp`]).

use serde::{Deserialize, Serialize};
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

/// Direction of a segment or message relative to the connection's client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Dir {
    #[default]
    /// From the client (the sender of the first SYN) to the server.
    C2s,
    /// From the server to the client.
    S2c,
}

impl Dir {
    pub fn reverse(self) -> Dir {
        match self {
            Dir::C2s => Dir::S2c,
            Dir::S2c => Dir::C2s,
        }
    }
    /// 0 for c2s, 1 for s2c: an index into per-direction arrays.
    pub fn idx(self) -> usize {
        self as usize
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::C2s => "c2s",
            Dir::S2c => "s2c",
        }
    }
}

/// Which connections' segments become `packet` records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PacketSel {
    #[default]
    All,
    None,
    /// Connections with an index below `below`, and those listed.
    Some {
        below: u64,
        list: Vec<u64>,
    },
}

impl PacketSel {
    pub fn wants(&self, conn: u64) -> bool {
        match self {
            PacketSel::All => true,
            PacketSel::None => false,
            PacketSel::Some { below, list } => conn < *below || list.contains(&conn),
        }
    }
}

/// Bytes from hex text, whitespace ignored: published test vectors (RFC 7541, RFC 8448) as
/// the RFCs print them. Tests only.
#[cfg(test)]
pub fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
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
