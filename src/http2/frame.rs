//! HTTP/2 frame headers and payloads (RFC 9113 §4.1, §6), parsed from complete frames.
//!
//! Only what a passive observer reports: the 9-byte header, padding, the fields of the
//! control frames, and the header block fragment's place in the payload. Nothing is kept.

/// The 24 bytes a client sends first (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Bytes of a frame header.
pub const HEADER_LEN: usize = 9;
/// While resynchronising, a frame longer than this is taken for noise (the protocol allows
/// 16 MiB frames, but only after a SETTINGS_MAX_FRAME_SIZE that large; the default is 16 KiB).
pub const PLAUSIBLE_LEN: u32 = 1 << 20;

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const PRIORITY: u8 = 2;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PUSH_PROMISE: u8 = 5;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;
pub const CONTINUATION: u8 = 9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 1;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 4;

/// A frame type's name as RFC 9113 §6 spells it; `UNKNOWN` for the others.
pub fn type_name(t: u8) -> &'static str {
    match t {
        DATA => "DATA",
        HEADERS => "HEADERS",
        PRIORITY => "PRIORITY",
        RST_STREAM => "RST_STREAM",
        SETTINGS => "SETTINGS",
        PUSH_PROMISE => "PUSH_PROMISE",
        PING => "PING",
        GOAWAY => "GOAWAY",
        WINDOW_UPDATE => "WINDOW_UPDATE",
        CONTINUATION => "CONTINUATION",
        _ => "UNKNOWN",
    }
}

/// An error code's name (RFC 9113 §7); `UNKNOWN` past the registry's first fourteen.
pub fn error_name(code: u32) -> &'static str {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    NAMES.get(code as usize).copied().unwrap_or("UNKNOWN")
}

/// The 9-byte frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub length: u32,
    pub ftype: u8,
    pub flags: u8,
    pub stream: u32,
    /// The reserved bit before the stream id was set (ignored, as the RFC says, but odd).
    pub reserved: bool,
}

impl FrameHeader {
    pub fn parse(b: &[u8; HEADER_LEN]) -> Self {
        let sid = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
        FrameHeader {
            length: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            ftype: b[3],
            flags: b[4],
            stream: sid & 0x7fff_ffff,
            reserved: sid & 0x8000_0000 != 0,
        }
    }

    /// Could this be a real frame header? The checks a resynchronising reader makes: a known
    /// type, a plausible length, the reserved bit clear, the stream id the type needs and the
    /// fixed lengths of the fixed-size frames.
    pub fn plausible(&self) -> bool {
        if self.reserved || self.length > PLAUSIBLE_LEN {
            return false;
        }
        let on_conn = self.stream == 0;
        match self.ftype {
            DATA | HEADERS | CONTINUATION | PUSH_PROMISE => !on_conn,
            PRIORITY => !on_conn && self.length == 5,
            RST_STREAM => !on_conn && self.length == 4,
            SETTINGS => {
                on_conn
                    && self.length.is_multiple_of(6)
                    && (self.flags & ACK == 0 || self.length == 0)
            }
            PING => on_conn && self.length == 8,
            GOAWAY => on_conn && self.length >= 8,
            WINDOW_UPDATE => self.length == 4,
            _ => false,
        }
    }
}

/// Does `data` begin with a chain of plausible frame headers that ends exactly at its end
/// (or whose last frame runs past it)? How a stream picked up mid-connection, or after a
/// gap, is recognised as HTTP/2 and where its frames start. Cheap on anything else: text and
/// TLS records fail on the first header's length.
pub fn plausible_chain(data: &[u8]) -> bool {
    let mut at = 0usize;
    let mut headers = 0;
    while at + HEADER_LEN <= data.len() {
        let h = FrameHeader::parse(data[at..at + HEADER_LEN].try_into().expect("9 bytes"));
        if !h.plausible() {
            return false;
        }
        headers += 1;
        at += HEADER_LEN + h.length as usize;
    }
    // Stopped inside a header: fine only if at least one whole header came before it.
    headers > 0
}

/// A complete frame's payload, its padding removed (RFC 9113 §6.1, §6.2, §6.6).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Payload<'a> {
    /// The pad length octet, for PADDED frames.
    pub pad_len: Option<u8>,
    /// HEADERS with the PRIORITY flag, PRIORITY: (exclusive, stream dependency, weight).
    pub priority: Option<(bool, u32, u8)>,
    /// PUSH_PROMISE: the stream it reserves.
    pub promised: Option<u32>,
    /// RST_STREAM, GOAWAY.
    pub error_code: Option<u32>,
    /// GOAWAY.
    pub last_stream: Option<u32>,
    /// WINDOW_UPDATE.
    pub increment: Option<u32>,
    /// SETTINGS: (identifier, value) pairs in order.
    pub settings: Vec<(u16, u32)>,
    /// HEADERS, PUSH_PROMISE, CONTINUATION: the header block fragment.
    pub fragment: &'a [u8],
    /// DATA: payload bytes after padding.
    pub data_len: u32,
}

/// What is wrong with a frame's payload (a FRAME_SIZE_ERROR or PROTOCOL_ERROR to the peers).
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

/// Parse the payload `p` of a frame with header `h`. DATA frames may be given only their
/// first byte (the pad length); `data_len` is worked out from the header.
pub fn parse_payload<'a>(h: &FrameHeader, p: &'a [u8]) -> Result<Payload<'a>, Malformed> {
    size_ok(h)?;
    if h.ftype != DATA && p.len() != h.length as usize {
        return Err(Malformed("payload shorter than the frame header says"));
    }
    let mut out = Payload::default();
    let be32 = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    // Padding (DATA, HEADERS, PUSH_PROMISE).
    let padded = matches!(h.ftype, DATA | HEADERS | PUSH_PROMISE) && h.flags & PADDED != 0;
    let (mut body, total) = if padded {
        let pad = *p
            .first()
            .ok_or(Malformed("padded frame without a pad length"))?;
        out.pad_len = Some(pad);
        if pad as u32 + 1 > h.length {
            return Err(Malformed("padding longer than the frame"));
        }
        let end = (h.length - pad as u32) as usize;
        (
            &p[1.min(p.len())..end.min(p.len())],
            h.length - 1 - pad as u32,
        )
    } else {
        (p, h.length)
    };
    match h.ftype {
        DATA => out.data_len = total,
        HEADERS => {
            if h.flags & PRIORITY_FLAG != 0 {
                if body.len() < 5 {
                    return Err(Malformed("HEADERS too short for its priority"));
                }
                let dep = be32(body);
                out.priority = Some((dep & 0x8000_0000 != 0, dep & 0x7fff_ffff, body[4]));
                body = &body[5..];
            }
            out.fragment = body;
        }
        PRIORITY => {
            let dep = be32(body);
            out.priority = Some((dep & 0x8000_0000 != 0, dep & 0x7fff_ffff, body[4]));
        }
        RST_STREAM => out.error_code = Some(be32(body)),
        SETTINGS => {
            out.settings = body
                .chunks_exact(6)
                .map(|c| (u16::from_be_bytes([c[0], c[1]]), be32(&c[2..])))
                .collect();
        }
        PUSH_PROMISE => {
            if body.len() < 4 {
                return Err(Malformed("PUSH_PROMISE too short for its promised stream"));
            }
            out.promised = Some(be32(body) & 0x7fff_ffff);
            out.fragment = &body[4..];
        }
        GOAWAY => {
            if body.len() < 8 {
                return Err(Malformed("GOAWAY shorter than 8 bytes"));
            }
            out.last_stream = Some(be32(body) & 0x7fff_ffff);
            out.error_code = Some(be32(&body[4..]));
        }
        WINDOW_UPDATE => out.increment = Some(be32(body) & 0x7fff_ffff),
        CONTINUATION => out.fragment = body,
        _ => {}
    }
    Ok(out)
}

/// The fixed payload sizes the RFC requires, checked before [`parse_payload`] reads them.
pub fn size_ok(h: &FrameHeader) -> Result<(), Malformed> {
    let ok = match h.ftype {
        PRIORITY => h.length == 5,
        RST_STREAM | WINDOW_UPDATE => h.length == 4,
        PING => h.length == 8,
        SETTINGS => h.length.is_multiple_of(6),
        GOAWAY => h.length >= 8,
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Malformed("frame size wrong for its type"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(len: u32, t: u8, flags: u8, sid: u32) -> [u8; 9] {
        let l = len.to_be_bytes();
        let s = sid.to_be_bytes();
        [l[1], l[2], l[3], t, flags, s[0], s[1], s[2], s[3]]
    }

    #[test]
    fn header_fields_and_reserved_bit() {
        let h = FrameHeader::parse(&hdr(0x0001_0203, HEADERS, 0x25, 0x8000_0003));
        assert_eq!(h.length, 0x010203);
        assert_eq!((h.ftype, h.flags, h.stream, h.reserved), (1, 0x25, 3, true));
    }

    #[test]
    fn padding_and_priority_are_removed_from_the_fragment() {
        let h = FrameHeader::parse(&hdr(11, HEADERS, PADDED | PRIORITY_FLAG | END_HEADERS, 1));
        // pad 2, priority (exclusive, dep 3, weight 15), fragment "abc", 2 pad bytes
        let p = [2, 0x80, 0, 0, 3, 15, b'a', b'b', b'c', 0, 0];
        let out = parse_payload(&h, &p).unwrap();
        assert_eq!(out.pad_len, Some(2));
        assert_eq!(out.priority, Some((true, 3, 15)));
        assert_eq!(out.fragment, b"abc");
        // Padding longer than the frame is refused, not sliced past the end.
        let bad = FrameHeader::parse(&hdr(3, DATA, PADDED, 1));
        assert!(parse_payload(&bad, &[5, 0, 0]).is_err());
        // DATA: the body length without the pad octet and padding, from the first byte alone.
        let d = FrameHeader::parse(&hdr(100, DATA, PADDED, 1));
        assert_eq!(parse_payload(&d, &[9]).unwrap().data_len, 90);
    }

    #[test]
    fn control_frames() {
        let s = FrameHeader::parse(&hdr(12, SETTINGS, 0, 0));
        let p = [0, 1, 0, 0, 0x10, 0, 0, 4, 0, 0x60, 0, 0];
        assert_eq!(
            parse_payload(&s, &p).unwrap().settings,
            vec![(1, 4096), (4, 0x60_0000)]
        );
        let g = FrameHeader::parse(&hdr(8, GOAWAY, 0, 0));
        let out = parse_payload(&g, &[0, 0, 0, 7, 0, 0, 0, 2]).unwrap();
        assert_eq!((out.last_stream, out.error_code), (Some(7), Some(2)));
        assert_eq!(error_name(2), "INTERNAL_ERROR");
        assert_eq!(error_name(99), "UNKNOWN");
    }

    #[test]
    fn chains_of_plausible_headers() {
        let mut s = hdr(6, SETTINGS, 0, 0).to_vec();
        s.extend_from_slice(&[0, 3, 0, 0, 0, 100]);
        s.extend_from_slice(&hdr(4, WINDOW_UPDATE, 0, 0));
        s.extend_from_slice(&[0, 0, 1, 0]);
        assert!(plausible_chain(&s));
        // A frame running past the end is fine (it continues in the next segment).
        assert!(plausible_chain(&s[..20]));
        // Text, TLS and a SETTINGS on a stream are not.
        assert!(!plausible_chain(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!plausible_chain(&[
            0x16, 3, 1, 0, 0xc8, 1, 0, 0, 0xc4, 3, 3
        ]));
        assert!(!plausible_chain(&hdr(6, SETTINGS, 0, 1)));
        assert!(!plausible_chain(&s[..5]));
    }
}
