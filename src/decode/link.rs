//! Link layers: find where the IP header starts and which IP version the link says it is.
//!
//! Written by hand rather than with etherparse: the headers are a few fixed offsets, and
//! etherparse's SLL parser rejects the loopback hardware type that `tcpdump -i any` produces.
//!
//! Besides Ethernet (VLAN tags, MPLS label stacks, PPPoE sessions), Linux cooked captures and
//! raw IP: PPP (9, 50), Cisco HDLC (104), Juniper's Ethernet capture header (178), IP over
//! InfiniBand (242) and ARCnet (7 BSD, 129 Linux), with the layouts Wireshark reads them by.

use super::DecodeError;
use crate::types::LinkType;

/// The network layer a link header announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Net {
    Ipv4,
    Ipv6,
    /// Raw IP: the version nibble decides.
    Either,
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
/// 802.1Q, 802.1ad (QinQ outer tag) and the old pre-standard QinQ value.
const ETH_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];
/// MPLS unicast and multicast.
const ETH_MPLS: [u16; 2] = [0x8847, 0x8848];
/// PPPoE session stage (discovery frames carry no IP).
const ETH_PPPOE: u16 = 0x8864;

fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

fn too_short(layer: &'static str, offset: usize) -> DecodeError {
    DecodeError::TooShort { layer, offset }
}

/// Where the IP header starts in `d`, or `None` when the frame carries something other than IP.
pub(crate) fn locate(lt: LinkType, d: &[u8]) -> Result<Option<(usize, Net)>, DecodeError> {
    match lt.0 {
        // Ethernet: dst(6) src(6) ethertype(2).
        1 => {
            if d.len() < 14 {
                return Err(too_short("Ethernet", 0));
            }
            ethertype(be16(d, 12), d, 14)
        }
        // Linux cooked v1: packet type(2) ARPHRD(2) addr len(2) addr(8) protocol(2).
        113 => {
            if d.len() < 16 {
                return Err(too_short("Linux SLL", 0));
            }
            ethertype(be16(d, 14), d, 16)
        }
        // Linux cooked v2: protocol(2) reserved(2) ifindex(4) ARPHRD(2) type(1) addr len(1)
        // addr(8).
        276 => {
            if d.len() < 20 {
                return Err(too_short("Linux SLL2", 0));
            }
            ethertype(be16(d, 0), d, 20)
        }
        // Raw IP; 12 and 14 are the DLT_RAW values some BSDs write in place of 101.
        101 | 12 | 14 => Ok(Some((0, Net::Either))),
        228 => Ok(Some((0, Net::Ipv4))),
        229 => Ok(Some((0, Net::Ipv6))),
        // BSD loopback: a 4-byte address family, host byte order for NULL and network order for
        // LOOP, but writers disagree, so both orders are accepted for both.
        0 | 108 => {
            if d.len() < 4 {
                return Err(too_short("BSD loopback", 0));
            }
            let le = u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
            let be = le.swap_bytes();
            let net = |f: u32| match f {
                2 => Some(Net::Ipv4),
                // AF_INET6 differs between BSDs (24), FreeBSD (28) and macOS (30).
                24 | 28 | 30 => Some(Net::Ipv6),
                _ => None,
            };
            Ok(net(le).or_else(|| net(be)).map(|n| (4, n)))
        }
        // PPP (9) and PPP in HDLC-like framing (50): address and control bytes (0xff 0x03) are
        // optional, the protocol field may be compressed to one byte (RFC 1661 §6.5).
        9 | 50 => ppp(d, 0),
        // Cisco HDLC: address, control, then an ethertype.
        104 => {
            if d.len() < 4 {
                return Err(too_short("Cisco HDLC", 0));
            }
            ethertype(be16(d, 2), d, 4)
        }
        // Juniper's capture header: "MGC", flags, and with the extension flag a 2-byte length of
        // TLVs; then Ethernet, unless the flags say the link header was stripped, in which case a
        // 4-byte little-endian protocol (2 IPv4, 6 IPv6) precedes the packet.
        178 => {
            if d.len() < 4 {
                return Err(too_short("Juniper", 0));
            }
            if &d[..3] != b"MGC" {
                return Err(DecodeError::Malformed {
                    layer: "Juniper",
                    offset: 0,
                    what: "no MGC magic",
                });
            }
            let flags = d[3];
            let mut at = 4;
            if flags & 0x80 != 0 {
                if d.len() < 6 {
                    return Err(too_short("Juniper extensions", 4));
                }
                at = 6 + be16(d, 4) as usize;
            }
            if flags & 0x02 != 0 {
                if d.len() < at + 4 {
                    return Err(too_short("Juniper", at));
                }
                let proto = u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]]);
                return Ok(match proto {
                    2 => Some((at + 4, Net::Ipv4)),
                    6 => Some((at + 4, Net::Ipv6)),
                    _ => None,
                });
            }
            Ok(locate(LinkType(1), d.get(at..).unwrap_or(&[]))?.map(|(o, n)| (at + o, n)))
        }
        // IP over InfiniBand: a 40-byte pseudo GRH, then the ethertype and two reserved bytes.
        242 => {
            if d.len() < 44 {
                return Err(too_short("IP over InfiniBand", 0));
            }
            ethertype(be16(d, 40), d, 44)
        }
        // ARCnet, Linux (129: with the 2-byte offset field) and BSD (7: without, exceptions).
        129 => arcnet(d, 4, false),
        7 => arcnet(d, 2, true),
        other => Err(DecodeError::LinkType(other)),
    }
}

/// PPP from `at`: optional address/control bytes, then the protocol field.
pub(crate) fn ppp(d: &[u8], mut at: usize) -> Result<Option<(usize, Net)>, DecodeError> {
    if d.len() >= at + 2 && d[at] == 0xff && d[at + 1] == 0x03 {
        at += 2;
    }
    let Some(&first) = d.get(at) else {
        return Err(too_short("PPP", at));
    };
    // An odd first byte is a compressed (one-byte) protocol field.
    let (proto, len) = if first & 1 == 1 {
        (first as u16, 1)
    } else {
        if d.len() < at + 2 {
            return Err(too_short("PPP", at));
        }
        (be16(d, at), 2)
    };
    Ok(match proto {
        0x0021 => Some((at + len, Net::Ipv4)),
        0x0057 => Some((at + len, Net::Ipv6)),
        _ => None,
    })
}

/// ARCnet: source, destination, [offset], protocol ID; RFC 1201 protocols add a split flag and
/// a sequence number (after an exception header on BSD when the flag is 0xff).
fn arcnet(d: &[u8], id_at: usize, exceptions: bool) -> Result<Option<(usize, Net)>, DecodeError> {
    let Some(&id) = d.get(id_at) else {
        return Err(too_short("ARCnet", 0));
    };
    let mut at = id_at + 1;
    // RFC 1051 IP (0xf0) and ARP, diagnose and BACnet carry no fragmentation fields.
    if !matches!(id, 0xf0 | 0xf1 | 0x80 | 0xcd) {
        if exceptions && d.get(at) == Some(&0xff) {
            at += 4;
        }
        at += 3;
    }
    if d.len() < at {
        return Err(too_short("ARCnet", 0));
    }
    Ok(match id {
        0xf0 | 0xd4 => Some((at, Net::Ipv4)),
        0xc4 => Some((at, Net::Ipv6)),
        _ => None,
    })
}

/// An MPLS label stack at `at`: the bottom-of-stack label's payload, IPv4 or IPv6 by its version
/// nibble (Wireshark's guess too); a pseudowire (anything else) is not followed.
pub(crate) fn mpls(d: &[u8], mut at: usize) -> Result<Option<(usize, Net)>, DecodeError> {
    loop {
        if d.len() < at + 4 {
            return Err(too_short("MPLS", at));
        }
        let bottom = d[at + 2] & 1 == 1;
        at += 4;
        if bottom {
            break;
        }
    }
    Ok(match d.get(at).map(|b| b >> 4) {
        Some(4) => Some((at, Net::Ipv4)),
        Some(6) => Some((at, Net::Ipv6)),
        _ => None,
    })
}

/// Follow VLAN tags, MPLS and PPPoE from an ethertype at `at` to IPv4/IPv6, or `None` for
/// anything else.
pub(crate) fn ethertype(
    mut et: u16,
    d: &[u8],
    mut at: usize,
) -> Result<Option<(usize, Net)>, DecodeError> {
    loop {
        match et {
            ETH_IPV4 => return Ok(Some((at, Net::Ipv4))),
            ETH_IPV6 => return Ok(Some((at, Net::Ipv6))),
            v if ETH_MPLS.contains(&v) => return mpls(d, at),
            ETH_PPPOE => {
                // Version/type, code, session id, length, then PPP's protocol field.
                if d.len() < at + 6 {
                    return Err(too_short("PPPoE", at));
                }
                return ppp(d, at + 6);
            }
            v if ETH_VLAN.contains(&v) => {
                // Tag control(2) then the inner ethertype(2); each tag consumes 4 bytes, so
                // the loop ends with the frame.
                if d.len() < at + 4 {
                    return Err(too_short("VLAN", at));
                }
                et = be16(d, at + 2);
                at += 4;
            }
            _ => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(types: &[u16]) -> Vec<u8> {
        let mut v = vec![0u8; 12];
        for (i, t) in types.iter().enumerate() {
            if i > 0 {
                v.extend_from_slice(&[0x00, 0x05]); // VLAN TCI
            }
            v.extend_from_slice(&t.to_be_bytes());
        }
        v.push(0x45);
        v
    }

    #[test]
    fn ethernet_plain_and_tagged() {
        let d = eth(&[0x0800]);
        assert_eq!(locate(LinkType(1), &d), Ok(Some((14, Net::Ipv4))));
        let d = eth(&[0x8100, 0x86dd]);
        assert_eq!(locate(LinkType(1), &d), Ok(Some((18, Net::Ipv6))));
        let d = eth(&[0x88a8, 0x8100, 0x0800]);
        assert_eq!(locate(LinkType(1), &d), Ok(Some((22, Net::Ipv4))));
        let d = eth(&[0x9100, 0x0800]);
        assert_eq!(locate(LinkType(1), &d), Ok(Some((18, Net::Ipv4))));
    }

    #[test]
    fn ethernet_not_ip() {
        assert_eq!(locate(LinkType(1), &eth(&[0x0806])), Ok(None));
        // an 802.3 length field
        assert_eq!(locate(LinkType(1), &eth(&[0x0040])), Ok(None));
    }

    #[test]
    fn ethernet_truncated() {
        assert_eq!(
            locate(LinkType(1), &[0u8; 13]),
            Err(DecodeError::TooShort {
                layer: "Ethernet",
                offset: 0
            })
        );
        let d = eth(&[0x8100]);
        assert_eq!(
            locate(LinkType(1), &d[..15]),
            Err(DecodeError::TooShort {
                layer: "VLAN",
                offset: 14
            })
        );
    }

    #[test]
    fn sll_and_sll2() {
        let mut sll = vec![0u8; 16];
        sll[2..4].copy_from_slice(&772u16.to_be_bytes()); // ARPHRD_LOOPBACK
        sll[14..16].copy_from_slice(&0x0800u16.to_be_bytes());
        assert_eq!(locate(LinkType(113), &sll), Ok(Some((16, Net::Ipv4))));
        assert!(locate(LinkType(113), &sll[..15]).is_err());
        let mut sll2 = vec![0u8; 20];
        sll2[0..2].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert_eq!(locate(LinkType(276), &sll2), Ok(Some((20, Net::Ipv6))));
        sll2[0..2].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(locate(LinkType(276), &sll2), Ok(None));
        assert!(locate(LinkType(276), &sll2[..19]).is_err());
    }

    #[test]
    fn raw_and_typed_ip() {
        assert_eq!(locate(LinkType(101), &[0x45]), Ok(Some((0, Net::Either))));
        assert_eq!(locate(LinkType(228), &[0x45]), Ok(Some((0, Net::Ipv4))));
        assert_eq!(locate(LinkType(229), &[0x60]), Ok(Some((0, Net::Ipv6))));
    }

    #[test]
    fn null_and_loop_both_orders() {
        for lt in [0, 108] {
            assert_eq!(
                locate(LinkType(lt), &[2, 0, 0, 0]),
                Ok(Some((4, Net::Ipv4)))
            );
            assert_eq!(
                locate(LinkType(lt), &[0, 0, 0, 2]),
                Ok(Some((4, Net::Ipv4)))
            );
            for f in [24u32, 28, 30] {
                assert_eq!(
                    locate(LinkType(lt), &f.to_le_bytes()),
                    Ok(Some((4, Net::Ipv6)))
                );
                assert_eq!(
                    locate(LinkType(lt), &f.to_be_bytes()),
                    Ok(Some((4, Net::Ipv6)))
                );
            }
            assert_eq!(locate(LinkType(lt), &[7, 0, 0, 0]), Ok(None));
            assert!(locate(LinkType(lt), &[2, 0, 0]).is_err());
        }
    }

    #[test]
    fn unknown_link_type() {
        assert_eq!(
            locate(LinkType(147), &[0; 40]),
            Err(DecodeError::LinkType(147))
        );
    }
}
