//! Frame bytes → [`Segment`]: the only module that knows link layers, IP and TCP wire formats.
//!
//! Link types: Ethernet (with 802.1Q/QinQ), Linux cooked SLL and SLL2, raw IP, BSD null/loop.
//! IPv4 with reassembly of fragments that carry TCP (the segment is reported at the frame that
//! completes it, as Wireshark does), IPv6 with extension headers. Frames cut by the snaplen are
//! decoded from what was captured; lengths come from the IP header.
//!
//! | file | what |
//! |------|------|
//! | `link` | link-layer headers → where the IP header starts and which version |
//! | `ip` | IPv4/IPv6 (etherparse's lax slicing), extension headers, lengths from the header |
//! | `frag` | bounded reassembly of fragmented datagrams that carry TCP |
//! | `tcp` | the TCP header and its options → [`Segment`] |
//!
//! Nothing here rejects odd TCP: SYN+FIN is a finding for the tracker, not an error. Checksums
//! are not verified (offload makes them wrong in local captures).

mod frag;
mod ip;
mod link;
mod tcp;

use crate::capture::Frame;
use std::net::IpAddr;

/// TCP flags as the bitset on the wire (FIN = 0x01 … CWR = 0x80).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Flags(pub u8);

impl Flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
    /// Names in the contract's order: `FIN SYN RST PSH ACK URG ECE CWR`.
    pub const NAMES: [&'static str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];

    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
    pub fn fin(self) -> bool {
        self.has(Self::FIN)
    }
    pub fn syn(self) -> bool {
        self.has(Self::SYN)
    }
    pub fn rst(self) -> bool {
        self.has(Self::RST)
    }
    pub fn ack(self) -> bool {
        self.has(Self::ACK)
    }
    /// The set flags' names, in the contract's order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        (0..8)
            .filter(move |i| self.0 & (1 << i) != 0)
            .map(|i| Self::NAMES[i])
    }
}

/// What the tracker needs from a TCP header's options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    /// Window scale shift (RFC 7323), as sent (values over 14 are kept; the tracker clamps).
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    /// SACK blocks (left, right) as raw sequence numbers; `sack_count` of them are valid.
    pub sack: [(u32, u32); 4],
    pub sack_count: u8,
    /// Timestamps option (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
}

impl TcpOptions {
    pub fn sack_blocks(&self) -> &[(u32, u32)] {
        &self.sack[..self.sack_count as usize]
    }
}

/// One TCP segment, borrowing its payload from the frame (or from the fragment buffer).
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: Flags,
    /// Raw 16-bit window, before scaling.
    pub window: u16,
    pub options: TcpOptions,
    /// Payload length from the IP header (may exceed `payload.len()` when the snaplen cut it).
    pub len: u32,
    /// The captured payload bytes: `payload.len() <= len`.
    pub payload: &'a [u8],
}

/// Why a frame gave no segment. Counted and summarised, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unsupported link type {0}")]
    LinkType(u32),
    #[error("{layer} header too short at offset {offset}")]
    TooShort { layer: &'static str, offset: usize },
    #[error("malformed {layer} header at offset {offset}: {what}")]
    Malformed {
        layer: &'static str,
        offset: usize,
        what: &'static str,
    },
}

impl DecodeError {
    /// A short stable key for counting diagnostics by kind.
    pub fn kind(&self) -> String {
        match self {
            DecodeError::LinkType(l) => format!("unsupported link type {l}"),
            DecodeError::TooShort { layer, .. } => format!("{layer} header too short"),
            DecodeError::Malformed { layer, what, .. } => format!("malformed {layer}: {what}"),
        }
    }
}

/// Decodes frames; owns the IPv4/IPv6 fragment reassembly buffers (bounded).
#[derive(Default)]
pub struct Decoder {
    frags: frag::Reassembler,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decode one frame. `Ok(None)` for frames that carry no TCP segment (ARP, UDP, ICMP, a
    /// fragment still waiting for the rest of its datagram).
    ///
    /// Unfragmented frames are decoded without allocating; the segment borrows the frame.
    pub fn decode<'a>(&'a mut self, frame: &Frame<'a>) -> Result<Option<Segment<'a>>, DecodeError> {
        let data = frame.data;
        let Some((at, net)) = link::locate(frame.linktype, data)? else {
            return Ok(None);
        };
        let ip = ip::parse(data, at, net)?;
        let Some(ip) = ip else {
            return Ok(None);
        };
        match ip.fragment {
            None => tcp::parse(ip.src, ip.dst, ip.payload, ip.declared, ip.payload_at).map(Some),
            Some(f) => {
                if ip.payload.len() < ip.declared {
                    return Err(DecodeError::Malformed {
                        layer: "IP fragment",
                        offset: ip.payload_at,
                        what: "fragment cut short by the snaplen; cannot reassemble",
                    });
                }
                let key = frag::Key {
                    src: ip.src,
                    dst: ip.dst,
                    id: f.id,
                };
                let done = self
                    .frags
                    .add(key, frame.ts, f.offset, f.more, ip.payload)
                    .map_err(|what| DecodeError::Malformed {
                        layer: "IP fragment",
                        offset: ip.payload_at,
                        what,
                    })?;
                let Some(datagram) = done else {
                    return Ok(None);
                };
                let Some(tcp_bytes) = ip::after_fragment_header(f.next, datagram, ip.payload_at)?
                else {
                    return Ok(None);
                };
                tcp::parse(ip.src, ip.dst, tcp_bytes, tcp_bytes.len(), ip.payload_at).map(Some)
            }
        }
    }

    /// Fragmented datagrams waiting for their missing pieces.
    pub fn pending_fragments(&self) -> usize {
        self.frags.pending()
    }
}
