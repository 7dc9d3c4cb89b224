//! IPv4 and IPv6 with etherparse's lax slicing: headers, extension headers (hop-by-hop,
//! routing, destination options, fragment, authentication), and the payload length the header
//! declares, which is what a TCP segment's length is computed from even when the snaplen cut the
//! frame short.
//!
//! Only TCP is of interest, and the protocols that may carry a tunnel (IP in IP, IPv6 in IP,
//! GRE, UDP): those are described in a [`Carrier`] for [`super::tunnel`] to look inside (an
//! out-parameter, so the TCP path returns what it always did). Anything else (ICMP, including
//! ICMP errors that quote a TCP header) is `None`.

use super::link::Net;
use super::DecodeError;
use etherparse::err::{ip_auth, ipv4, ipv6, ipv6_exts, Layer, LenError};
use etherparse::{
    IpNumber, Ipv6ExtensionSlice, Ipv6ExtensionsSlice, LaxIpPayloadSlice, LaxIpv4Slice,
    LaxIpv6Slice, LenSource,
};
use std::net::IpAddr;

/// Where a fragment sits in its datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fragment {
    pub id: u32,
    /// Byte offset of this fragment's data in the datagram's payload.
    pub offset: u32,
    /// More fragments follow (MF flag / M bit).
    pub more: bool,
    /// What the reassembled payload starts with: TCP, or (IPv6) an extension header that
    /// follows the fragment header.
    pub next: IpNumber,
}

/// An IP packet that carries TCP (or a fragment of it).
#[derive(Debug)]
pub(crate) struct IpPacket<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The captured payload, trimmed to the declared length (Ethernet padding removed).
    pub payload: &'a [u8],
    /// Payload length the IP header declares (≥ `payload.len()` when the snaplen cut it).
    pub declared: usize,
    /// Offset of the payload in the frame, for error messages.
    pub payload_at: usize,
    pub fragment: Option<Fragment>,
}

/// An unfragmented packet of a protocol that may carry a tunnel; its payload is
/// `payload_at..end` of the frame (cut to what the header declares and was captured).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Carrier {
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub payload_at: usize,
    pub end: usize,
}

/// Protocols a tunnel rides on: IPv4 in IP, IPv6 in IP, GRE, UDP (VXLAN, Geneve, MPLS).
fn carries_tunnels(p: IpNumber) -> bool {
    matches!(p.0, 4 | 41 | 47 | 17)
}

fn layer_name(layer: Layer) -> &'static str {
    match layer {
        Layer::Ipv4Header | Layer::Ipv4Packet => "IPv4",
        Layer::Ipv6Header | Layer::Ipv6Packet => "IPv6",
        Layer::IpAuthHeader => "IP authentication",
        Layer::Ipv6HopByHopHeader => "IPv6 hop-by-hop",
        Layer::Ipv6DestOptionsHeader => "IPv6 destination options",
        Layer::Ipv6RouteHeader => "IPv6 routing",
        Layer::Ipv6FragHeader => "IPv6 fragment",
        Layer::Ipv6ExtHeader => "IPv6 extension",
        _ => "IP",
    }
}

fn len_err(e: &LenError, at: usize) -> DecodeError {
    DecodeError::TooShort {
        layer: layer_name(e.layer),
        offset: at + e.layer_start_offset,
    }
}

/// Parse the IP layer starting at `at`.
/// `Ok(None)` when the packet does not carry TCP; then `carrier` says where a tunnel's
/// payload is, if it may hold one.
pub(crate) fn parse<'a>(
    d: &'a [u8],
    at: usize,
    net: Net,
    carrier: &mut Option<Carrier>,
) -> Result<Option<IpPacket<'a>>, DecodeError> {
    let bytes = d.get(at..).unwrap_or(&[]);
    let net = match net {
        Net::Either => match bytes.first().map(|b| b >> 4) {
            None => {
                return Err(DecodeError::TooShort {
                    layer: "IP",
                    offset: at,
                })
            }
            Some(4) => Net::Ipv4,
            Some(6) => Net::Ipv6,
            Some(_) => {
                return Err(DecodeError::Malformed {
                    layer: "IP",
                    offset: at,
                    what: "version is neither 4 nor 6",
                })
            }
        },
        n => n,
    };
    if net == Net::Ipv4 {
        ipv4(bytes, at, carrier)
    } else {
        ipv6(bytes, at, carrier)
    }
}

fn ipv4<'a>(
    bytes: &'a [u8],
    at: usize,
    out: &mut Option<Carrier>,
) -> Result<Option<IpPacket<'a>>, DecodeError> {
    let (ip, ext_err) = LaxIpv4Slice::from_slice(bytes).map_err(|e| match e {
        ipv4::HeaderSliceError::Len(l) => len_err(&l, at),
        ipv4::HeaderSliceError::Content(ipv4::HeaderError::UnexpectedVersion { .. }) => {
            DecodeError::Malformed {
                layer: "IPv4",
                offset: at,
                what: "version is not 4",
            }
        }
        ipv4::HeaderSliceError::Content(_) => DecodeError::Malformed {
            layer: "IPv4",
            offset: at,
            what: "header length (IHL) below 5",
        },
    })?;
    match ext_err {
        Some(ip_auth::HeaderSliceError::Len(l)) => return Err(len_err(&l, at)),
        Some(ip_auth::HeaderSliceError::Content(_)) => {
            return Err(DecodeError::Malformed {
                layer: "IP authentication",
                offset: at + ip.header().slice().len(),
                what: "zero payload length",
            })
        }
        None => {}
    }
    let p = ip.payload();
    if p.ip_number != IpNumber::TCP {
        let h = ip.header();
        let addrs = (h.source_addr().into(), h.destination_addr().into());
        *out = carrier(p, bytes, at, addrs);
        return Ok(None);
    }
    let h = ip.header();
    let header_len = p.payload.as_ptr() as usize - bytes.as_ptr() as usize;
    // With total_len smaller than the header (TSO captures write 0) etherparse falls back to the
    // captured length, as Wireshark does; otherwise the header's length is the wire truth.
    let declared = if p.len_source == LenSource::Ipv4HeaderTotalLen || p.incomplete {
        (h.total_len() as usize).saturating_sub(header_len)
    } else {
        p.payload.len()
    };
    let fragment = p.fragmented.then(|| Fragment {
        id: h.identification() as u32,
        offset: h.fragments_offset().byte_offset() as u32,
        more: h.more_fragments(),
        next: IpNumber::TCP,
    });
    Ok(Some(IpPacket {
        src: IpAddr::V4(h.source_addr()),
        dst: IpAddr::V4(h.destination_addr()),
        payload: p.payload,
        declared,
        payload_at: at + header_len,
        fragment,
    }))
}

/// A non-TCP payload: a [`Carrier`] when it may hold a tunnel.
#[cold]
fn carrier(
    p: &LaxIpPayloadSlice<'_>,
    bytes: &[u8],
    at: usize,
    (src, dst): (IpAddr, IpAddr),
) -> Option<Carrier> {
    let (proto, payload) = (p.ip_number, p.payload);
    if p.fragmented || !carries_tunnels(proto) {
        return None;
    }
    let start = payload.as_ptr() as usize - bytes.as_ptr() as usize;
    Some(Carrier {
        proto: proto.0,
        src,
        dst,
        payload_at: at + start,
        end: at + start + payload.len(),
    })
}

fn ipv6<'a>(
    bytes: &'a [u8],
    at: usize,
    out: &mut Option<Carrier>,
) -> Result<Option<IpPacket<'a>>, DecodeError> {
    let (ip, ext_err) = LaxIpv6Slice::from_slice(bytes).map_err(|e| match e {
        ipv6::HeaderSliceError::Len(l) => len_err(&l, at),
        ipv6::HeaderSliceError::Content(_) => DecodeError::Malformed {
            layer: "IPv6",
            offset: at,
            what: "version is not 6",
        },
    })?;
    if ip.payload().fragmented {
        // Headers after the fragment header belong to the fragmentable part (RFC 8200 §4.5):
        // in non-first fragments what etherparse read past it is payload, so its errors there
        // mean nothing. Reassemble first, parse those headers after.
        return Ok(ipv6_fragment(&ip, bytes, at));
    }
    if let Some((e, layer)) = ext_err {
        return Err(match e {
            ipv6_exts::HeaderSliceError::Len(l) => len_err(&l, at),
            ipv6_exts::HeaderSliceError::Content(c) => DecodeError::Malformed {
                layer: layer_name(layer),
                offset: at + 40 + ip.extensions().slice().len(),
                what: match c {
                    ipv6_exts::HeaderError::HopByHopNotAtStart => {
                        "hop-by-hop header not directly after the IPv6 header"
                    }
                    ipv6_exts::HeaderError::IpAuth(_) => "zero payload length",
                },
            },
        });
    }
    let p = ip.payload();
    if p.ip_number != IpNumber::TCP {
        let h = ip.header();
        let addrs = (h.source_addr().into(), h.destination_addr().into());
        *out = carrier(p, bytes, at, addrs);
        return Ok(None);
    }
    let h = ip.header();
    let header_len = p.payload.as_ptr() as usize - bytes.as_ptr() as usize;
    let declared = if p.len_source == LenSource::Ipv6HeaderPayloadLen || p.incomplete {
        (40 + h.payload_length() as usize).saturating_sub(header_len)
    } else {
        p.payload.len()
    };
    Ok(Some(IpPacket {
        src: IpAddr::V6(h.source_addr()),
        dst: IpAddr::V6(h.destination_addr()),
        payload: p.payload,
        declared,
        payload_at: at + header_len,
        fragment: None,
    }))
}

/// The fragment of an IPv6 packet with a fragment header, if it may carry TCP.
fn ipv6_fragment<'a>(ip: &LaxIpv6Slice<'a>, bytes: &'a [u8], at: usize) -> Option<IpPacket<'a>> {
    let f = ip
        .extensions()
        .clone()
        .into_iter()
        .find_map(|ext| match ext {
            Ipv6ExtensionSlice::Fragment(f) => Some(f),
            _ => None,
        })?;
    let next = f.next_header();
    if ![
        IpNumber::TCP,
        IpNumber::IPV6_DESTINATION_OPTIONS,
        IpNumber::IPV6_ROUTE_HEADER,
        IpNumber::AUTHENTICATION_HEADER,
    ]
    .contains(&next)
    {
        return None;
    }
    let base = bytes.as_ptr() as usize;
    let start = f.slice().as_ptr() as usize - base + f.slice().len();
    let p = ip.payload();
    let captured_end = p.payload.as_ptr() as usize - base + p.payload.len();
    let declared_end = if p.len_source == LenSource::Ipv6HeaderPayloadLen || p.incomplete {
        40 + ip.header().payload_length() as usize
    } else {
        captured_end
    };
    let h = ip.header();
    Some(IpPacket {
        src: IpAddr::V6(h.source_addr()),
        dst: IpAddr::V6(h.destination_addr()),
        payload: &bytes[start..captured_end],
        declared: declared_end.saturating_sub(start),
        payload_at: at + start,
        fragment: Some(Fragment {
            id: f.identification(),
            offset: f.fragment_offset().byte_offset() as u32,
            more: f.more_fragments(),
            next,
        }),
    })
}

/// In a reassembled payload, skip the IPv6 extension headers that followed the fragment header;
/// the TCP bytes, or `None` when the datagram turns out not to be TCP.
pub(crate) fn after_fragment_header(
    next: IpNumber,
    datagram: &[u8],
    at: usize,
) -> Result<Option<&[u8]>, DecodeError> {
    if next == IpNumber::TCP {
        return Ok(Some(datagram));
    }
    let (_, ip_number, rest, err) = Ipv6ExtensionsSlice::from_slice_lax(next, datagram);
    if let Some((e, layer)) = err {
        return Err(match e {
            ipv6_exts::HeaderSliceError::Len(l) => len_err(&l, at),
            ipv6_exts::HeaderSliceError::Content(_) => DecodeError::Malformed {
                layer: layer_name(layer),
                offset: at,
                what: "bad extension header in the reassembled datagram",
            },
        });
    }
    Ok((ip_number == IpNumber::TCP).then_some(rest))
}
