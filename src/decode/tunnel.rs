//! Tunnels: IP in IP, IPv6 in IPv4, GRE (with keys, sequence numbers, checksums, transparent
//! Ethernet, WCCP redirects, MPLS, and PPTP's enhanced GRE), VXLAN, Geneve and MPLS over UDP.
//!
//! [`inner`] looks inside one tunnel layer and says where the packet it carries starts. The
//! layers passed through make a [`Path`]; its identity (the outer address pairs, either way, and
//! the VNIs and keys, not the per-direction UDP ports or MPLS labels) keeps two connections with
//! the same inner addresses in different tunnels apart, and its description (innermost first,
//! e.g. `["vxlan vni=42", "ipv4 10.0.0.1>10.0.0.2"]`) becomes the `conn` record's `encap`.
//!
//! Descriptions are kept in one process-wide table, bounded, so that the tracker (which may run
//! on another thread than the decoder) can name a connection's tunnel from its identity alone.

use super::link::{self, Net};
use super::DecodeError;
use crate::types::LinkType;
use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

/// Tunnels inside tunnels beyond this depth are not followed (a crafted loop would otherwise
/// cost a pass per layer).
pub(crate) const MAX_DEPTH: usize = 6;

/// Distinct tunnel paths named; past this, connections in new tunnels are kept apart all the
/// same but their `encap` says the table was full.
const MAX_NAMED: usize = 1 << 16;

const VXLAN_PORT: u16 = 4789;
const GENEVE_PORT: u16 = 6081;
const MPLS_UDP_PORT: u16 = 6635;

/// One layer a packet was carried through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layer {
    /// An outer IP header (the tunnel's endpoints, in this packet's direction).
    Ip {
        src: IpAddr,
        dst: IpAddr,
    },
    Gre {
        key: Option<u32>,
        what: GreKind,
    },
    Vxlan(u32),
    Geneve(u32),
    /// MPLS inside a tunnel (GRE or UDP); labels change hop by hop, so they are not kept.
    Mpls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GreKind {
    Plain,
    Ethernet,
    Wccp,
    Pptp,
}

/// The tunnel layers one packet went through, outermost first.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Path {
    layers: [Option<Layer>; 2 * MAX_DEPTH],
    n: usize,
}

impl Path {
    /// Add a layer; `false` when the path is already as deep as is followed.
    pub(crate) fn push(&mut self, l: Layer) -> bool {
        if self.n == self.layers.len() {
            return false;
        }
        self.layers[self.n] = Some(l);
        self.n += 1;
        true
    }

    fn layers(&self) -> impl DoubleEndedIterator<Item = &Layer> {
        self.layers[..self.n].iter().flatten()
    }

    /// The same for both directions of a connection: address pairs unordered, no ports.
    pub(crate) fn identity(&self) -> u64 {
        let mut h = rustc_hash::FxBuildHasher.build_hasher();
        for l in self.layers() {
            match *l {
                Layer::Ip { src, dst } => {
                    0u8.hash(&mut h);
                    src.min(dst).hash(&mut h);
                    src.max(dst).hash(&mut h);
                }
                Layer::Gre { key, what } => {
                    1u8.hash(&mut h);
                    key.hash(&mut h);
                    (what as u8).hash(&mut h);
                }
                Layer::Vxlan(v) => (2u8, v).hash(&mut h),
                Layer::Geneve(v) => (3u8, v).hash(&mut h),
                Layer::Mpls => 4u8.hash(&mut h),
            }
        }
        // Zero means "no tunnel".
        h.finish().max(1)
    }

    /// Innermost first, as the records show it.
    pub(crate) fn describe(&self) -> Vec<String> {
        self.layers()
            .rev()
            .map(|l| match *l {
                Layer::Ip { src, dst } => {
                    let v = if src.is_ipv4() { "ipv4" } else { "ipv6" };
                    format!("{v} {src}>{dst}")
                }
                Layer::Gre { key, what } => {
                    let kind = match what {
                        GreKind::Plain => "gre",
                        GreKind::Ethernet => "gre ethernet",
                        GreKind::Wccp => "gre wccp",
                        GreKind::Pptp => "gre pptp",
                    };
                    match key {
                        Some(k) if what != GreKind::Pptp => format!("{kind} key={k}"),
                        _ => kind.to_string(),
                    }
                }
                Layer::Vxlan(v) => format!("vxlan vni={v}"),
                Layer::Geneve(v) => format!("geneve vni={v}"),
                Layer::Mpls => "mpls".to_string(),
            })
            .collect()
    }
}

/// The process-wide names of tunnel paths, by identity.
fn names() -> &'static Mutex<HashMap<u64, Arc<[String]>>> {
    static NAMES: OnceLock<Mutex<HashMap<u64, Arc<[String]>>>> = OnceLock::new();
    NAMES.get_or_init(Default::default)
}

/// Identities this decoder has already named, so the shared table is locked once a path.
#[derive(Default)]
pub(crate) struct Seen(HashSet<u64>);

impl Seen {
    /// The path's identity, naming it in the shared table the first time it is seen.
    pub(crate) fn identify(&mut self, path: &Path) -> u64 {
        let id = path.identity();
        if self.0.len() < MAX_NAMED && self.0.insert(id) {
            let mut t = names().lock().unwrap_or_else(|e| e.into_inner());
            if t.len() < MAX_NAMED {
                t.entry(id).or_insert_with(|| path.describe().into());
            }
        }
        id
    }
}

/// The layers of the tunnel `id` (0: none), innermost first.
pub fn describe(id: u64) -> Vec<String> {
    if id == 0 {
        return Vec::new();
    }
    let t = names().lock().unwrap_or_else(|e| e.into_inner());
    match t.get(&id) {
        Some(n) => n.to_vec(),
        None => vec![format!("tunnel (not named: over {MAX_NAMED} tunnel paths)")],
    }
}

fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

fn short(layer: &'static str, offset: usize) -> DecodeError {
    DecodeError::TooShort { layer, offset }
}

/// Inside IP protocol `proto` whose payload is `d[at..]`: where the carried packet starts, its
/// network layer, and the tunnel layer passed through. `None` when it carries no tunnel (a UDP
/// datagram to another port, an unknown GRE protocol).
pub(crate) fn inner(
    d: &[u8],
    proto: u8,
    at: usize,
) -> Result<Option<(usize, Net, Option<Layer>)>, DecodeError> {
    match proto {
        4 => Ok(Some((at, Net::Ipv4, None))),
        41 => Ok(Some((at, Net::Ipv6, None))),
        47 => gre(d, at),
        17 => udp(d, at),
        _ => Ok(None),
    }
}

/// GRE (RFC 2784/2890; version 1 is PPTP's, RFC 2637).
fn gre(d: &[u8], at: usize) -> Result<Option<(usize, Net, Option<Layer>)>, DecodeError> {
    if d.len() < at + 4 {
        return Err(short("GRE", at));
    }
    let flags = be16(d, at);
    let proto = be16(d, at + 2);
    let (c, r, k, s) = (
        flags & 0x8000 != 0,
        flags & 0x4000 != 0,
        flags & 0x2000 != 0,
        flags & 0x1000 != 0,
    );
    let mut len = 4;
    let mut key = None;
    match flags & 7 {
        0 => {
            if r {
                // Source routing (RFC 1701) is long obsolete: not followed.
                return Ok(None);
            }
            len += if c { 4 } else { 0 };
            if k {
                if d.len() < at + len + 4 {
                    return Err(short("GRE key", at + len));
                }
                key = Some(be32(d, at + len));
                len += 4;
            }
            len += if s { 4 } else { 0 };
        }
        1 => {
            // Enhanced GRE: key (payload length, call id) always, then sequence and
            // acknowledgement numbers when flagged; the payload is PPP.
            let a = flags & 0x0080 != 0;
            len += 4 + if s { 4 } else { 0 } + if a { 4 } else { 0 };
            if proto != 0x880b || d.len() < at + len {
                return Ok(None);
            }
            let layer = Layer::Gre {
                key: None,
                what: GreKind::Pptp,
            };
            return Ok(link::ppp(d, at + len)?.map(|(o, n)| (o, n, Some(layer))));
        }
        _ => return Ok(None),
    }
    let start = at + len;
    if d.len() < start {
        return Err(short("GRE", at));
    }
    let gre = |what| Some(Layer::Gre { key, what });
    Ok(match proto {
        0x0800 => Some((start, Net::Ipv4, gre(GreKind::Plain))),
        0x86dd => Some((start, Net::Ipv6, gre(GreKind::Plain))),
        0x6558 => ethernet(d, start)?.map(|(o, n)| (o, n, gre(GreKind::Ethernet))),
        // WCCP: a 4-byte redirect header, absent when IPv4 follows directly.
        0x883e => {
            let skip = if d.get(start).map(|b| b >> 4) == Some(4) {
                0
            } else {
                4
            };
            Some((start + skip, Net::Ipv4, gre(GreKind::Wccp)))
        }
        0x8847 | 0x8848 => link::mpls(d, start)?.map(|(o, n)| {
            (
                o,
                n,
                Some(Layer::Gre {
                    key,
                    what: GreKind::Plain,
                }),
            )
        }),
        _ => None,
    })
}

/// Ethernet carried at `start` (gretap, VXLAN, Geneve).
fn ethernet(d: &[u8], start: usize) -> Result<Option<(usize, Net)>, DecodeError> {
    let inner = d.get(start..).unwrap_or(&[]);
    Ok(link::locate(LinkType(1), inner)?.map(|(o, n)| (start + o, n)))
}

/// UDP: VXLAN, Geneve and MPLS by their registered ports, the lower port tried first as
/// Wireshark does.
fn udp(d: &[u8], at: usize) -> Result<Option<(usize, Net, Option<Layer>)>, DecodeError> {
    if d.len() < at + 8 {
        return Err(short("UDP", at));
    }
    let (sp, dp) = (be16(d, at), be16(d, at + 2));
    let start = at + 8;
    for port in [sp.min(dp), sp.max(dp)] {
        match port {
            VXLAN_PORT => {
                if d.len() < start + 8 {
                    return Err(short("VXLAN", start));
                }
                let vni = be32(d, start + 4) >> 8;
                return Ok(ethernet(d, start + 8)?.map(|(o, n)| (o, n, Some(Layer::Vxlan(vni)))));
            }
            GENEVE_PORT => {
                if d.len() < start + 8 {
                    return Err(short("Geneve", start));
                }
                let opts = (d[start] & 0x3f) as usize * 4;
                let proto = be16(d, start + 2);
                let vni = be32(d, start + 4) >> 8;
                let body = start + 8 + opts;
                let layer = Some(Layer::Geneve(vni));
                return Ok(match proto {
                    0x6558 => ethernet(d, body)?.map(|(o, n)| (o, n, layer)),
                    0x0800 => Some((body, Net::Ipv4, layer)),
                    0x86dd => Some((body, Net::Ipv6, layer)),
                    _ => None,
                });
            }
            MPLS_UDP_PORT => {
                return Ok(link::mpls(d, start)?.map(|(o, n)| (o, n, Some(Layer::Mpls))));
            }
            _ => {}
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(a: u8, b: u8) -> Layer {
        Layer::Ip {
            src: IpAddr::V4(Ipv4Addr::new(10, 0, 0, a)),
            dst: IpAddr::V4(Ipv4Addr::new(10, 0, 0, b)),
        }
    }

    #[test]
    fn identity_is_the_same_both_ways_and_differs_by_vni() {
        let mut fwd = Path::default();
        fwd.push(ip(1, 2));
        fwd.push(Layer::Vxlan(42));
        let mut back = Path::default();
        back.push(ip(2, 1));
        back.push(Layer::Vxlan(42));
        assert_eq!(fwd.identity(), back.identity());
        let mut other = Path::default();
        other.push(ip(1, 2));
        other.push(Layer::Vxlan(43));
        assert_ne!(fwd.identity(), other.identity());
        assert_ne!(fwd.identity(), 0);
        assert_eq!(
            fwd.describe(),
            [
                "vxlan vni=42".to_string(),
                "ipv4 10.0.0.1>10.0.0.2".to_string()
            ]
        );
    }

    #[test]
    fn named_paths_are_found_by_identity() {
        let mut p = Path::default();
        p.push(ip(7, 8));
        p.push(Layer::Gre {
            key: Some(77),
            what: GreKind::Plain,
        });
        let id = Seen::default().identify(&p);
        assert_eq!(describe(id), ["gre key=77", "ipv4 10.0.0.7>10.0.0.8"]);
        assert!(describe(0).is_empty());
    }

    #[test]
    fn the_path_stops_growing_at_its_depth() {
        let mut p = Path::default();
        for _ in 0..2 * MAX_DEPTH {
            assert!(p.push(Layer::Mpls));
        }
        assert!(!p.push(Layer::Mpls));
    }

    #[test]
    fn gre_header_lengths_follow_the_flags() {
        // checksum + key + sequence: 16 bytes, then IPv4
        let mut d = vec![0xb0, 0x00, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0, 77, 0, 0, 0, 1];
        d.push(0x45);
        let (at, net, layer) = inner(&d, 47, 0).unwrap().unwrap();
        assert_eq!((at, net), (16, Net::Ipv4));
        assert_eq!(
            layer,
            Some(Layer::Gre {
                key: Some(77),
                what: GreKind::Plain
            })
        );
        // routing present: not followed; cut short: an error, never a panic
        assert_eq!(inner(&[0x40, 0, 8, 0, 0, 0, 0, 0], 47, 0), Ok(None));
        assert!(inner(&[0x20, 0, 8, 0, 0], 47, 0).is_err());
    }

    #[test]
    fn udp_to_other_ports_is_not_a_tunnel() {
        let d = [0x30, 0x39, 0x00, 0x35, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(inner(&d, 17, 0), Ok(None));
    }
}
