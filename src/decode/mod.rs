//! Frame bytes → [`Segment`]: the only module that knows link layers, IP and TCP wire formats.
//!
//! Link types: Ethernet (with 802.1Q/QinQ, MPLS, PPPoE), Linux cooked SLL and SLL2, raw IP, BSD
//! null/loop, PPP, Cisco HDLC, Juniper Ethernet, IP over InfiniBand, ARCnet. Tunnels: IP in IP,
//! IPv6 in IPv4, GRE, VXLAN, Geneve, MPLS in GRE/UDP; the segment names its tunnel by identity
//! ([`Segment::tunnel`], described by [`tunnel_path`]).
//! IPv4 with reassembly of fragments that carry TCP (the segment is reported at the frame that
//! completes it, as Wireshark does), IPv6 with extension headers. Frames cut by the snaplen are
//! decoded from what was captured; lengths come from the IP header.
//!
//! | file | what |
//! |------|------|
//! | `link` | link-layer headers → where the IP header starts and which version |
//! | `ip` | IPv4/IPv6 (etherparse's lax slicing), extension headers, lengths from the header |
//! | `frag` | bounded reassembly of fragmented datagrams that carry TCP |
//! | `tunnel` | looking inside tunnels; their identities and descriptions |
//! | `tcp` | the TCP header and its options → [`Segment`] |
//!
//! Nothing here rejects odd TCP: SYN+FIN is a finding for the tracker, not an error. Checksums
//! are not verified (offload makes them wrong in local captures).

mod frag;
mod ip;
mod link;
mod tcp;
mod tunnel;

pub use tunnel::describe as tunnel_path;

use crate::types::Frame;
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
    /// The tunnel the segment came through: 0 for none, else an identity that is the same for
    /// both directions ([`tunnel_path`] names it). Part of the connection's key.
    pub tunnel: u64,
}

#[cfg(test)]
impl Segment<'static> {
    /// A segment for tests: addresses as `ip:port`, window 1000, no options, no payload bytes
    /// (`len` counts what the IP header would say).
    pub fn for_test(src: &str, dst: &str, flags: u8, seq: u32, ack: u32, len: u32) -> Self {
        let src: std::net::SocketAddr = src.parse().unwrap();
        let dst: std::net::SocketAddr = dst.parse().unwrap();
        Segment {
            src: src.ip(),
            dst: dst.ip(),
            sport: src.port(),
            dport: dst.port(),
            seq,
            ack,
            flags: Flags(flags),
            window: 1000,
            options: TcpOptions::default(),
            len,
            payload: &[],
            tunnel: 0,
        }
    }
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
    tunnels: tunnel::Seen,
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
        let mut carried = None;
        match ip::parse(data, at, net, &mut carried)? {
            Some(ip) => self.segment(frame, ip, 0),
            None => match carried {
                None => Ok(None),
                Some(c) => self.tunneled(frame, c),
            },
        }
    }

    /// Inside tunnels, layer by layer, to the TCP segment they carry. Kept out of the plain
    /// path: a segment that is not in a tunnel pays nothing for them.
    #[cold]
    #[inline(never)]
    fn tunneled<'a>(
        &'a mut self,
        frame: &Frame<'a>,
        mut c: ip::Carrier,
    ) -> Result<Option<Segment<'a>>, DecodeError> {
        let mut path = tunnel::Path::default();
        let mut data = frame.data;
        loop {
            // What follows is cut to the outer header's length (Ethernet padding out).
            data = &data[..c.end];
            let Some((at, net, layer)) = tunnel::inner(data, c.proto, c.payload_at)? else {
                return Ok(None);
            };
            let room = path.push(tunnel::Layer::Ip {
                src: c.src,
                dst: c.dst,
            }) && layer.is_none_or(|l| path.push(l));
            if !room {
                return Ok(None);
            }
            let mut carried = None;
            match ip::parse(data, at, net, &mut carried)? {
                Some(ip) => {
                    let id = self.tunnels.identify(&path);
                    return self.segment(frame, ip, id);
                }
                None => match carried {
                    None => return Ok(None),
                    Some(next) => c = next,
                },
            }
        }
    }

    /// The segment in an IP packet (reassembling fragments), in tunnel `tunnel` (0: none).
    #[inline(always)]
    fn segment<'a>(
        &'a mut self,
        frame: &Frame<'a>,
        ip: ip::IpPacket<'a>,
        tunnel: u64,
    ) -> Result<Option<Segment<'a>>, DecodeError> {
        let mut seg = match ip.fragment {
            None => {
                // A header claiming more than the wire carried lies (or the frame was cut before
                // capture): the frame's own length bounds it, as in tshark.
                let wire = (frame.orig_len as usize).saturating_sub(ip.payload_at);
                let declared = ip.declared.min(wire.max(ip.payload.len()));
                tcp::parse(ip.src, ip.dst, ip.payload, declared, ip.payload_at)?
            }
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
                tcp::parse(ip.src, ip.dst, tcp_bytes, tcp_bytes.len(), ip.payload_at)?
            }
        };
        seg.tunnel = tunnel;
        Ok(Some(seg))
    }

    /// Fragmented datagrams waiting for their missing pieces.
    pub fn pending_fragments(&self) -> usize {
        self.frags.pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{LinkType, Timestamp};
    use etherparse::{PacketBuilder, TcpOptionElement};
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const PAYLOAD: &[u8] = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n";

    fn frame(linktype: u32, data: &[u8]) -> Frame<'_> {
        Frame {
            number: 1,
            ts: Timestamp(0),
            linktype: LinkType(linktype),
            data,
            orig_len: data.len() as u32,
        }
    }

    /// A raw IPv4 packet carrying a TCP segment with options and a payload.
    fn ipv4_tcp(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(51704, 80, 0xfffffff0, 502)
            .ack(1234)
            .psh()
            .options(&[
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::Timestamp(7, 9),
            ])
            .unwrap();
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn ipv6_tcp(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv6(
            Ipv6Addr::LOCALHOST.octets(),
            Ipv6Addr::LOCALHOST.octets(),
            64,
        )
        .tcp(40000, 443, 1, 1024)
        .syn()
        .options(&[
            TcpOptionElement::MaximumSegmentSize(1440),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::WindowScale(7),
        ])
        .unwrap();
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn check_v4(seg: &Segment<'_>) {
        assert_eq!(seg.src, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(seg.dst, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
        assert_eq!((seg.sport, seg.dport), (51704, 80));
        assert_eq!((seg.seq, seg.ack, seg.window), (0xfffffff0, 1234, 502));
        assert_eq!(seg.flags.0, Flags::ACK | Flags::PSH);
        assert_eq!(seg.options.timestamps, Some((7, 9)));
        assert_eq!(seg.len as usize, PAYLOAD.len());
        assert_eq!(seg.payload, PAYLOAD);
    }

    fn check_v6(seg: &Segment<'_>) {
        assert_eq!(seg.src, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!((seg.sport, seg.dport, seg.seq), (40000, 443, 1));
        assert!(seg.flags.syn());
        assert_eq!(seg.options.mss, Some(1440));
        assert_eq!(seg.options.wscale, Some(7));
        assert!(seg.options.sack_permitted);
        assert_eq!(seg.payload, PAYLOAD);
    }

    fn ethernet(tags: &[u16], ethertype: u16, ip: &[u8]) -> Vec<u8> {
        let mut v = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        for &t in tags {
            v.extend_from_slice(&t.to_be_bytes());
            v.extend_from_slice(&[0x00, 0x4d]);
        }
        v.extend_from_slice(&ethertype.to_be_bytes());
        v.extend_from_slice(ip);
        v
    }

    fn sll(ethertype: u16, ip: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0, 0x03, 0x04, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0];
        v.extend_from_slice(&ethertype.to_be_bytes());
        v.extend_from_slice(ip);
        v
    }

    fn sll2(ethertype: u16, ip: &[u8]) -> Vec<u8> {
        let mut v = ethertype.to_be_bytes().to_vec();
        v.extend_from_slice(&[0, 0, 0, 0, 0, 1, 0x03, 0x04, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0]);
        v.extend_from_slice(ip);
        v
    }

    fn family(f: [u8; 4], ip: &[u8]) -> Vec<u8> {
        let mut v = f.to_vec();
        v.extend_from_slice(ip);
        v
    }

    /// (link type, frame) for every supported link type, IPv4 and IPv6.
    fn all_link_frames() -> Vec<(u32, Vec<u8>, bool)> {
        let v4 = ipv4_tcp(PAYLOAD);
        let v6 = ipv6_tcp(PAYLOAD);
        let mut padded = ethernet(&[], 0x0800, &v4);
        padded.extend_from_slice(&[0; 6]); // Ethernet trailer beyond the IP total length
        vec![
            (1, ethernet(&[], 0x0800, &v4), true),
            (1, padded, true),
            (1, ethernet(&[0x8100], 0x0800, &v4), true),
            (1, ethernet(&[0x88a8, 0x8100], 0x0800, &v4), true),
            (1, ethernet(&[0x9100, 0x8100], 0x86dd, &v6), false),
            (1, ethernet(&[], 0x86dd, &v6), false),
            (113, sll(0x0800, &v4), true),
            (113, sll(0x86dd, &v6), false),
            (276, sll2(0x0800, &v4), true),
            (276, sll2(0x86dd, &v6), false),
            (101, v4.clone(), true),
            (101, v6.clone(), false),
            (228, v4.clone(), true),
            (229, v6.clone(), false),
            (0, family(2u32.to_le_bytes(), &v4), true),
            (0, family(30u32.to_le_bytes(), &v6), false),
            (0, family(24u32.to_be_bytes(), &v6), false),
            (108, family(2u32.to_be_bytes(), &v4), true),
            (108, family(28u32.to_be_bytes(), &v6), false),
        ]
    }

    #[test]
    fn every_link_type_gives_the_segment() {
        for (lt, data, is_v4) in all_link_frames() {
            let mut d = Decoder::new();
            let f = frame(lt, &data);
            let seg = d
                .decode(&f)
                .unwrap_or_else(|e| panic!("linktype {lt}: {e}"))
                .unwrap_or_else(|| panic!("linktype {lt}: no segment"));
            if is_v4 {
                check_v4(&seg)
            } else {
                check_v6(&seg)
            }
        }
    }

    #[test]
    fn not_tcp_is_none() {
        let mut d = Decoder::new();
        let mut udp = Vec::new();
        PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 9)
            .udp(53, 53)
            .write(&mut udp, b"dns")
            .unwrap();
        assert!(d.decode(&frame(101, &udp)).unwrap().is_none());
        // ICMP destination unreachable quoting the start of a TCP packet
        let mut quoted = ipv4_tcp(PAYLOAD);
        quoted.truncate(28);
        let mut icmp = Vec::new();
        PacketBuilder::ipv4([2, 2, 2, 2], [10, 0, 0, 1], 9)
            .icmpv4_raw(3, 3, [0; 4])
            .write(&mut icmp, &quoted)
            .unwrap();
        assert!(d.decode(&frame(101, &icmp)).unwrap().is_none());
        let arp = ethernet(&[], 0x0806, &[0; 28]);
        assert!(d.decode(&frame(1, &arp)).unwrap().is_none());
        let unknown_family = family(7u32.to_le_bytes(), &ipv4_tcp(b""));
        assert!(d.decode(&frame(0, &unknown_family)).unwrap().is_none());
    }

    // --- IPv4 fragments -----------------------------------------------------------------------

    /// Split a raw IPv4 packet into fragments carrying `size` bytes (a multiple of 8) each.
    fn ipv4_fragments(packet: &[u8], size: usize, id: u16) -> Vec<Vec<u8>> {
        let ihl = ((packet[0] & 0xf) * 4) as usize;
        let payload = &packet[ihl..];
        payload
            .chunks(size)
            .enumerate()
            .map(|(i, part)| {
                let mut h = packet[..ihl].to_vec();
                h[2..4].copy_from_slice(&((ihl + part.len()) as u16).to_be_bytes());
                h[4..6].copy_from_slice(&id.to_be_bytes());
                let more = (i + 1) * size < payload.len();
                let field = (if more { 0x2000 } else { 0 }) | (i * size / 8) as u16;
                h[6..8].copy_from_slice(&field.to_be_bytes());
                h.extend_from_slice(part);
                h
            })
            .collect()
    }

    /// Feed fragments in `order`; the segment must appear exactly at the last one.
    fn reassemble(frags: &[Vec<u8>], order: &[usize]) {
        let mut d = Decoder::new();
        for (n, &i) in order.iter().enumerate() {
            let got = d.decode(&frame(101, &frags[i])).unwrap();
            if n + 1 < order.len() {
                assert!(got.is_none(), "segment before the datagram is complete");
            } else {
                check_v4(&got.expect("segment at the completing fragment"));
            }
        }
        assert_eq!(d.pending_fragments(), 0);
    }

    #[test]
    fn ipv4_fragments_in_any_order() {
        // 32-byte TCP header + 34-byte payload: 16+16+16+16+2
        let frags = ipv4_fragments(&ipv4_tcp(PAYLOAD), 16, 77);
        assert_eq!(frags.len(), 5);
        reassemble(&frags, &[0, 1, 2, 3, 4]);
        reassemble(&frags, &[4, 3, 2, 1, 0]);
        reassemble(&frags, &[2, 0, 4, 3, 1]);
    }

    #[test]
    fn ipv4_overlapping_fragments() {
        let packet = ipv4_tcp(PAYLOAD);
        let small = ipv4_fragments(&packet, 16, 5);
        let big = ipv4_fragments(&packet, 32, 5);
        // 0..32 from the big split overlaps 0..16 and 16..32; 32..64 overlaps nothing received;
        // the 2-byte tail completes.
        let mut d = Decoder::new();
        assert!(d.decode(&frame(101, &small[1])).unwrap().is_none());
        assert!(d.decode(&frame(101, &big[0])).unwrap().is_none());
        assert!(d.decode(&frame(101, &small[0])).unwrap().is_none());
        assert!(d.decode(&frame(101, &big[1])).unwrap().is_none());
        assert!(d.decode(&frame(101, &small[3])).unwrap().is_none());
        let seg = d.decode(&frame(101, &small[4])).unwrap().unwrap();
        check_v4(&seg);
    }

    #[test]
    fn ipv4_fragments_never_completed_stay_bounded() {
        let mut d = Decoder::new();
        for id in 0..1000u16 {
            let frags = ipv4_fragments(&ipv4_tcp(PAYLOAD), 16, id);
            assert!(d.decode(&frame(101, &frags[0])).unwrap().is_none());
        }
        assert_eq!(d.pending_fragments(), frag::MAX_DATAGRAMS);
        // an unfragmented packet still decodes
        check_v4(&d.decode(&frame(101, &ipv4_tcp(PAYLOAD))).unwrap().unwrap());
    }

    #[test]
    fn ipv4_fragment_cut_by_snaplen_is_an_error() {
        let frags = ipv4_fragments(&ipv4_tcp(PAYLOAD), 16, 1);
        let mut d = Decoder::new();
        let cut = &frags[0][..frags[0].len() - 3];
        assert!(matches!(
            d.decode(&frame(101, cut)),
            Err(DecodeError::Malformed {
                layer: "IP fragment",
                ..
            })
        ));
    }

    #[test]
    fn non_tcp_fragments_are_not_buffered() {
        let mut udp = Vec::new();
        PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 9)
            .udp(53, 53)
            .write(&mut udp, &[0; 64])
            .unwrap();
        let mut d = Decoder::new();
        for f in ipv4_fragments(&udp, 16, 3) {
            assert!(d.decode(&frame(101, &f)).unwrap().is_none());
        }
        assert_eq!(d.pending_fragments(), 0);
    }

    // --- IPv6 extension headers -----------------------------------------------------------------

    /// Insert extension headers (kind, 8-byte body with next-header patched) after the IPv6
    /// header of `packet`.
    fn with_exts(packet: &[u8], kinds: &[u8]) -> Vec<u8> {
        let mut h = packet[..40].to_vec();
        let upper = h[6];
        let mut exts = Vec::new();
        for (i, _) in kinds.iter().enumerate() {
            let next = kinds.get(i + 1).copied().unwrap_or(upper);
            exts.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]); // PadN option
        }
        h[6] = kinds[0];
        let plen = (packet.len() - 40 + exts.len()) as u16;
        h[4..6].copy_from_slice(&plen.to_be_bytes());
        h.extend_from_slice(&exts);
        h.extend_from_slice(&packet[40..]);
        h
    }

    #[test]
    fn ipv6_extension_headers() {
        let v6 = ipv6_tcp(PAYLOAD);
        let mut d = Decoder::new();
        // hop-by-hop, destination options, routing (type 4 with no segments left), dest opts
        for kinds in [&[0u8][..], &[0, 60], &[0, 60, 43, 60], &[60]] {
            let p = with_exts(&v6, kinds);
            let seg = d.decode(&frame(229, &p)).unwrap().unwrap();
            check_v6(&seg);
            assert_eq!(seg.len as usize, PAYLOAD.len());
        }
        // hop-by-hop anywhere but first is malformed
        let p = with_exts(&v6, &[60, 0]);
        assert!(matches!(
            d.decode(&frame(229, &p)),
            Err(DecodeError::Malformed { .. })
        ));
        // an extension header cut short
        let p = with_exts(&v6, &[0, 60]);
        assert!(matches!(
            d.decode(&frame(229, &p[..44])),
            Err(DecodeError::TooShort { .. })
        ));
    }

    /// IPv6 fragments: hop-by-hop in the unfragmentable part, destination options in the
    /// fragmentable part (so non-first fragments start mid-header).
    fn ipv6_fragments(packet: &[u8], size: usize) -> Vec<Vec<u8>> {
        let fragmentable = {
            let mut v = vec![6u8, 0, 1, 4, 0, 0, 0, 0];
            v.extend_from_slice(&packet[40..]);
            v
        };
        fragmentable
            .chunks(size)
            .enumerate()
            .map(|(i, part)| {
                let mut h = packet[..40].to_vec();
                h[6] = 0;
                let more = (i + 1) * size < fragmentable.len();
                let mut body = vec![44u8, 0, 1, 4, 0, 0, 0, 0];
                body.extend_from_slice(&[60, 0]);
                let off = ((i * size / 8) as u16) << 3 | more as u16;
                body.extend_from_slice(&off.to_be_bytes());
                body.extend_from_slice(&0xabcdu32.to_be_bytes());
                body.extend_from_slice(part);
                h[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
                h.extend_from_slice(&body);
                h
            })
            .collect()
    }

    #[test]
    fn ipv6_fragments_with_headers_after_the_fragment_header() {
        let frags = ipv6_fragments(&ipv6_tcp(PAYLOAD), 24);
        assert!(frags.len() >= 3);
        for order in [
            (0..frags.len()).collect::<Vec<_>>(),
            (0..frags.len()).rev().collect(),
        ] {
            let mut d = Decoder::new();
            for (n, &i) in order.iter().enumerate() {
                let got = d.decode(&frame(229, &frags[i])).unwrap();
                if n + 1 < order.len() {
                    assert!(got.is_none());
                } else {
                    check_v6(&got.unwrap());
                }
            }
        }
    }

    // --- bad input never panics ------------------------------------------------------------------

    #[test]
    fn every_truncation_of_every_link_type() {
        for (lt, data, _) in all_link_frames() {
            let mut d = Decoder::new();
            for cut in 0..data.len() {
                let f = frame(lt, &data[..cut]);
                if let Ok(Some(seg)) = d.decode(&f) {
                    assert!(seg.payload.len() <= seg.len as usize);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            lt in prop::sample::select(vec![0u32, 1, 12, 101, 108, 113, 228, 229, 276, 147]),
            data in prop::collection::vec(any::<u8>(), 0..200),
        ) {
            let mut d = Decoder::new();
            let _ = d.decode(&frame(lt, &data));
        }

        #[test]
        fn mutated_frames_never_panic(
            pick in 0usize..19,
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let (lt, mut data, _) = all_link_frames().swap_remove(pick);
            for (i, v) in flips {
                let at = i.index(data.len());
                data[at] = v;
            }
            let len = cut.index(data.len() + 1);
            let mut d = Decoder::new();
            if let Ok(Some(seg)) = d.decode(&frame(lt, &data[..len])) {
                prop_assert!(seg.payload.len() <= seg.len as usize);
            }
        }
    }
}
