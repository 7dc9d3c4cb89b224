//! Link layers: find where the IP header starts and which IP version the link says it is.
//!
//! Written by hand rather than with etherparse: the headers are a few fixed offsets, and
//! etherparse's SLL parser rejects the loopback hardware type that `tcpdump -i any` produces.

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
        other => Err(DecodeError::LinkType(other)),
    }
}

/// Follow VLAN tags from an ethertype at `at` to IPv4/IPv6, or `None` for anything else.
fn ethertype(mut et: u16, d: &[u8], mut at: usize) -> Result<Option<(usize, Net)>, DecodeError> {
    loop {
        match et {
            ETH_IPV4 => return Ok(Some((at, Net::Ipv4))),
            ETH_IPV6 => return Ok(Some((at, Net::Ipv6))),
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
