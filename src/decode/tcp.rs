//! The TCP header (RFC 9293 §3.1) and the options the tracker needs → [`Segment`].
//!
//! Parsed by hand: twenty fixed bytes and a type-length-value list, where exact error offsets and
//! tolerance of odd options matter more than generality. A malformed option ends option parsing
//! (what was read before it is kept); it never fails the segment.

use super::{DecodeError, Flags, Segment, TcpOptions};
use std::net::IpAddr;

fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

/// Decode a TCP segment from `bytes` (the captured IP payload, at most `declared` long).
/// `declared` is the IP payload length from the IP header; `at` is `bytes`' offset in the frame.
pub(crate) fn parse(
    src: IpAddr,
    dst: IpAddr,
    bytes: &[u8],
    declared: usize,
    at: usize,
) -> Result<Segment<'_>, DecodeError> {
    if bytes.len() < 20 {
        return Err(DecodeError::TooShort {
            layer: "TCP",
            offset: at,
        });
    }
    let data_offset = (bytes[12] >> 4) as usize;
    if data_offset < 5 {
        return Err(DecodeError::Malformed {
            layer: "TCP",
            offset: at + 12,
            what: "data offset below 5",
        });
    }
    let header_len = data_offset * 4;
    if header_len > declared.max(bytes.len()) {
        return Err(DecodeError::Malformed {
            layer: "TCP",
            offset: at + 12,
            what: "data offset points beyond the IP packet",
        });
    }
    // A snaplen may cut inside the options: keep the fixed header and the options captured.
    let captured_header = header_len.min(bytes.len());
    Ok(Segment {
        src,
        dst,
        sport: be16(bytes, 0),
        dport: be16(bytes, 2),
        seq: be32(bytes, 4),
        ack: be32(bytes, 8),
        flags: Flags(bytes[13]),
        window: be16(bytes, 14),
        options: parse_options(&bytes[20..captured_header]),
        len: (declared.max(bytes.len()) - header_len) as u32,
        payload: &bytes[captured_header..],
        tunnel: 0,
    })
}

/// Option kinds (IANA "TCP Option Kind Numbers").
const EOL: u8 = 0;
const NOP: u8 = 1;
const MSS: u8 = 2;
const WSCALE: u8 = 3;
const SACK_PERMITTED: u8 = 4;
const SACK: u8 = 5;
const TIMESTAMPS: u8 = 8;

/// Parse the options area; stops at the end-of-list option or at the first malformed option.
pub(crate) fn parse_options(mut o: &[u8]) -> TcpOptions {
    let mut out = TcpOptions::default();
    while let Some(&kind) = o.first() {
        match kind {
            EOL => break,
            NOP => {
                o = &o[1..];
                continue;
            }
            _ => {}
        }
        let Some(&len) = o.get(1) else { break };
        let len = len as usize;
        if len < 2 || len > o.len() {
            break;
        }
        let body = &o[2..len];
        match (kind, body.len()) {
            (MSS, 2) => out.mss = Some(be16(body, 0)),
            (WSCALE, 1) => out.wscale = Some(body[0]),
            (SACK_PERMITTED, 0) => out.sack_permitted = true,
            // RFC 2018: 1 to 4 blocks of (left, right) edges.
            (SACK, n) if n % 8 == 0 && (8..=32).contains(&n) => {
                for (i, b) in body.chunks_exact(8).enumerate() {
                    out.sack[i] = (be32(b, 0), be32(b, 4));
                }
                out.sack_count = (n / 8) as u8;
            }
            (TIMESTAMPS, 8) => out.timestamps = Some((be32(body, 0), be32(body, 4))),
            (MSS | WSCALE | SACK_PERMITTED | SACK | TIMESTAMPS, _) => break,
            _ => {} // an option we do not need: its length lets us skip it
        }
        o = &o[len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    /// A SYN with MSS 1460, SACK-permitted, timestamps, NOP, window scale 7 (Linux's layout).
    const SYN: [u8; 40] = [
        0xc9, 0xf8, 0x00, 0x50, // ports 51704 → 80
        0x45, 0x6f, 0x4a, 0x45, // seq
        0x00, 0x00, 0x00, 0x00, // ack
        0xa0, 0x02, 0xfa, 0xf0, // data offset 10, SYN, window 64240
        0x00, 0x00, 0x00, 0x00, // checksum, urgent
        0x02, 0x04, 0x05, 0xb4, // MSS 1460
        0x04, 0x02, // SACK permitted
        0x08, 0x0a, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, // TS 1, 0
        0x01, // NOP
        0x03, 0x03, 0x07, // WS 7
    ];

    #[test]
    fn syn_with_options() {
        let s = parse(A, B, &SYN, 40, 34).unwrap();
        assert_eq!((s.sport, s.dport), (51704, 80));
        assert_eq!(s.seq, 0x456f4a45);
        assert!(s.flags.syn() && !s.flags.ack());
        assert_eq!(s.window, 64240);
        assert_eq!(s.options.mss, Some(1460));
        assert!(s.options.sack_permitted);
        assert_eq!(s.options.timestamps, Some((1, 0)));
        assert_eq!(s.options.wscale, Some(7));
        assert_eq!(s.len, 0);
        assert!(s.payload.is_empty());
    }

    #[test]
    fn sack_blocks() {
        let mut o = vec![1, 1, 5, 2 + 16];
        for v in [10u32, 20, 30, 40] {
            o.extend_from_slice(&v.to_be_bytes());
        }
        let opts = parse_options(&o);
        assert_eq!(opts.sack_blocks(), &[(10, 20), (30, 40)]);
        let mut o = vec![5, 2 + 32];
        for v in 1..=8u32 {
            o.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(parse_options(&o).sack_count, 4);
        // five blocks do not fit RFC 2018: parsing stops, nothing invented
        let mut o = vec![5, 2 + 40];
        o.extend_from_slice(&[0; 40]);
        assert_eq!(parse_options(&o).sack_count, 0);
    }

    #[test]
    fn malformed_options_stop_parsing() {
        // zero length would loop forever if not caught
        assert_eq!(parse_options(&[2, 0, 5, 0xb4]), TcpOptions::default());
        // length beyond the area
        assert_eq!(parse_options(&[2, 9, 5]), TcpOptions::default());
        // wrong length for a known kind stops, keeping what came before
        let o = parse_options(&[3, 3, 7, 2, 3, 5, 0xb4, 0]);
        assert_eq!(o.wscale, Some(7));
        assert_eq!(o.mss, None);
        // kind without length byte
        assert_eq!(parse_options(&[30]), TcpOptions::default());
        // unknown options are skipped
        assert_eq!(parse_options(&[30, 4, 0, 0, 2, 4, 1, 0]).mss, Some(256));
        // end of list
        assert_eq!(parse_options(&[0, 2, 4, 1, 0]).mss, None);
    }

    #[test]
    fn lengths_from_the_ip_header() {
        let mut seg = SYN.to_vec();
        seg.extend_from_slice(b"hello");
        // full capture
        let s = parse(A, B, &seg, 45, 0).unwrap();
        assert_eq!((s.len, s.payload), (5, &b"hello"[..]));
        // cut by the snaplen after two payload bytes: wire length still 5
        let s = parse(A, B, &seg[..42], 45, 0).unwrap();
        assert_eq!((s.len, s.payload), (5, &b"he"[..]));
        // cut inside the options
        let s = parse(A, B, &seg[..26], 45, 0).unwrap();
        assert_eq!(s.len, 5);
        assert_eq!(s.options.mss, Some(1460));
        assert!(s.payload.is_empty());
    }

    #[test]
    fn bad_headers() {
        assert_eq!(
            parse(A, B, &SYN[..19], 40, 34).unwrap_err(),
            DecodeError::TooShort {
                layer: "TCP",
                offset: 34
            }
        );
        let mut h = SYN;
        h[12] = 0x40;
        assert!(matches!(
            parse(A, B, &h, 40, 34),
            Err(DecodeError::Malformed { offset: 46, .. })
        ));
        h[12] = 0xf0; // 60-byte header in a 40-byte packet
        assert!(matches!(
            parse(A, B, &h, 40, 34),
            Err(DecodeError::Malformed { offset: 46, .. })
        ));
    }
}
