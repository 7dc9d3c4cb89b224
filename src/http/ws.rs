//! RFC 6455 WebSocket framing (§5.2), one direction, without keeping payloads.
//!
//! [`WsParser::feed`] takes stream bytes and reports each frame when its last payload byte has
//! arrived (tshark reports a frame at the capture frame that completes it, and so do we). Only the
//! frame header (at most 14 bytes) is buffered; payload bytes are counted and dropped, except the
//! first two of a Close frame, unmasked, for its status code (§5.5.1). Protocol violations that
//! leave the framing intact (reserved opcodes, oversized or fragmented control frames) are
//! reported as warnings and parsing carries on.

/// One complete frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsFrame {
    pub fin: bool,
    pub opcode: u8,
    pub masked: bool,
    /// Payload length from the header.
    pub len: u64,
    /// Close frames: the status code, when the payload has one (and it was captured).
    pub close_code: Option<u16>,
}

/// What [`WsParser::feed`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    Frame(WsFrame),
    /// A violation that leaves the framing intact.
    Warning(String),
}

/// The framing is lost: nothing after this can be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WsError {
    #[error("64-bit payload length {0:#x} has the most significant bit set (RFC 6455 §5.2)")]
    LengthTopBit(u64),
}

/// The frame whose payload is being read.
#[derive(Debug, Clone)]
struct Current {
    frame: WsFrame,
    mask: [u8; 4],
    /// Payload bytes still to come.
    remaining: u64,
    /// Close frames: first payload bytes seen so far (unmasked), for the code.
    close: [u8; 2],
    close_seen: u8,
    /// A gap swallowed part of the payload: the close code may be unknowable.
    gap: bool,
}

/// Parser state for one direction.
#[derive(Debug, Clone, Default)]
pub struct WsParser {
    /// Header bytes gathered so far (2 to 14).
    hdr: [u8; 14],
    hlen: usize,
    cur: Option<Current>,
    /// Inside a fragmented data message (a non-FIN data frame was seen).
    in_message: bool,
}

impl WsParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// True between frames (nothing partial held).
    pub fn at_boundary(&self) -> bool {
        self.hlen == 0 && self.cur.is_none()
    }

    /// Parse `data`; `on` gets each frame and warning in stream order.
    pub fn feed(&mut self, mut data: &[u8], on: &mut dyn FnMut(WsEvent)) -> Result<(), WsError> {
        while !data.is_empty() {
            if let Some(cur) = &mut self.cur {
                let n = (data.len() as u64).min(cur.remaining) as usize;
                if cur.frame.opcode == 8 {
                    let offset = cur.frame.len - cur.remaining;
                    for (i, &b) in data[..n].iter().enumerate() {
                        let at = offset + i as u64;
                        if at >= 2 {
                            break;
                        }
                        cur.close[at as usize] = b ^ cur.mask[at as usize % 4];
                        cur.close_seen += 1;
                    }
                }
                cur.remaining -= n as u64;
                data = &data[n..];
                if cur.remaining == 0 {
                    self.complete(on);
                }
                continue;
            }
            let need = self.header_len();
            let take = (need - self.hlen).min(data.len());
            self.hdr[self.hlen..self.hlen + take].copy_from_slice(&data[..take]);
            self.hlen += take;
            data = &data[take..];
            if self.hlen == self.header_len() {
                self.start_frame(on)?;
            }
        }
        Ok(())
    }

    /// `n` bytes of this direction were never captured. Survivable inside a payload only;
    /// returns false when the framing is lost.
    pub fn skip(&mut self, n: u64, on: &mut dyn FnMut(WsEvent)) -> bool {
        match &mut self.cur {
            Some(cur) if n <= cur.remaining => {
                cur.remaining -= n;
                cur.gap = true;
                if cur.remaining == 0 {
                    self.complete(on);
                }
                true
            }
            _ => false,
        }
    }

    /// Header length implied by the bytes gathered so far (2 until the length byte is known).
    fn header_len(&self) -> usize {
        if self.hlen < 2 {
            return 2;
        }
        let ext = match self.hdr[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.hdr[1] & 0x80 != 0 { 4 } else { 0 };
        2 + ext + mask
    }

    fn start_frame(&mut self, on: &mut dyn FnMut(WsEvent)) -> Result<(), WsError> {
        let h = &self.hdr;
        let fin = h[0] & 0x80 != 0;
        let opcode = h[0] & 0x0f;
        let masked = h[1] & 0x80 != 0;
        let (len, at) = match h[1] & 0x7f {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&h[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        if len >> 63 != 0 {
            return Err(WsError::LengthTopBit(len));
        }
        let mut mask = [0u8; 4];
        if masked {
            mask.copy_from_slice(&h[at..at + 4]);
        }
        self.hlen = 0;
        // §5.2: opcodes 3-7 and 11-15 are reserved; §5.5: control frames are short and whole.
        match opcode {
            0 if !self.in_message => on(WsEvent::Warning(
                "continuation frame outside a fragmented message (RFC 6455 §5.4)".into(),
            )),
            1 | 2 if self.in_message => on(WsEvent::Warning(
                "new data frame inside a fragmented message (RFC 6455 §5.4)".into(),
            )),
            3..=7 | 11..=15 => on(WsEvent::Warning(format!(
                "reserved opcode {opcode} (RFC 6455 §5.2)"
            ))),
            8..=10 if !fin || len > 125 => on(WsEvent::Warning(format!(
                "control frame opcode {opcode} fragmented or longer than 125 bytes (RFC 6455 §5.5)"
            ))),
            _ => {}
        }
        if opcode <= 2 {
            self.in_message = !fin;
        }
        self.cur = Some(Current {
            frame: WsFrame {
                fin,
                opcode,
                masked,
                len,
                close_code: None,
            },
            mask,
            remaining: len,
            close: [0; 2],
            close_seen: 0,
            gap: false,
        });
        if len == 0 {
            self.complete(on);
        }
        Ok(())
    }

    fn complete(&mut self, on: &mut dyn FnMut(WsEvent)) {
        if let Some(cur) = self.cur.take() {
            let mut frame = cur.frame;
            if frame.opcode == 8 && cur.close_seen == 2 {
                frame.close_code = Some(u16::from_be_bytes(cur.close));
            }
            on(WsEvent::Frame(frame));
        }
    }
}

/// Build a frame's wire bytes (tests and fixtures): header, masked payload when `mask` is given.
pub fn encode(fin: bool, opcode: u8, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![(u8::from(fin) << 7) | (opcode & 0x0f)];
    let m = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        v.push(m | len as u8);
    } else if len <= 0xffff {
        v.push(m | 126);
        v.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        v.push(m | 127);
        v.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(k) => {
            v.extend_from_slice(&k);
            v.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => v.extend_from_slice(payload),
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frames(input: &[u8]) -> (Vec<WsFrame>, Vec<String>) {
        let mut p = WsParser::new();
        let (mut f, mut w) = (Vec::new(), Vec::new());
        p.feed(input, &mut |e| match e {
            WsEvent::Frame(x) => f.push(x),
            WsEvent::Warning(s) => w.push(s),
        })
        .unwrap();
        (f, w)
    }

    fn fr(fin: bool, opcode: u8, masked: bool, len: u64) -> WsFrame {
        WsFrame {
            fin,
            opcode,
            masked,
            len,
            close_code: None,
        }
    }

    #[test]
    fn seven_bit_masked_text() {
        let (f, w) = frames(&encode(true, 1, Some([1, 2, 3, 4]), b"hello"));
        assert_eq!(f, vec![fr(true, 1, true, 5)]);
        assert!(w.is_empty());
    }

    #[test]
    fn sixteen_and_sixty_four_bit_lengths() {
        let mut input = encode(true, 2, None, &vec![7; 300]);
        input.extend(encode(true, 2, Some([9; 4]), &vec![7; 70000]));
        let (f, _) = frames(&input);
        assert_eq!(f, vec![fr(true, 2, false, 300), fr(true, 2, true, 70000)]);
    }

    #[test]
    fn close_code_unmasked() {
        let mut payload = 1001u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"going away");
        let (f, _) = frames(&encode(true, 8, Some([0xde, 0xad, 0xbe, 0xef]), &payload));
        assert_eq!(f[0].close_code, Some(1001));
        let (f, _) = frames(&encode(true, 8, None, &[]));
        assert_eq!(f[0].close_code, None);
    }

    #[test]
    fn fragments_and_interleaved_control() {
        let mut input = encode(false, 1, None, b"frag");
        input.extend(encode(true, 9, None, b"p"));
        input.extend(encode(false, 0, None, b"men"));
        input.extend(encode(true, 0, None, b""));
        let (f, w) = frames(&input);
        let ops: Vec<u8> = f.iter().map(|x| x.opcode).collect();
        assert_eq!(ops, vec![1, 9, 0, 0]);
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn violations_are_warnings() {
        let mut input = encode(true, 0, None, b"x"); // continuation with no message
        input.extend(encode(true, 3, None, b"")); // reserved
        input.extend(encode(false, 9, None, b"")); // fragmented ping
        let (f, w) = frames(&input);
        assert_eq!(f.len(), 3);
        assert_eq!(w.len(), 3, "{w:?}");
    }

    #[test]
    fn top_bit_length_is_fatal() {
        let mut p = WsParser::new();
        let mut input = vec![0x82, 127];
        input.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(p.feed(&input, &mut |_| {}).is_err());
    }

    #[test]
    fn gap_inside_payload_is_survived() {
        let mut p = WsParser::new();
        let mut got = Vec::new();
        let input = encode(true, 2, None, &[0; 100]);
        p.feed(&input[..50], &mut |e| got.push(e)).unwrap();
        assert!(p.skip(40, &mut |e| got.push(e)));
        p.feed(&input[90..], &mut |e| got.push(e)).unwrap();
        assert_eq!(got, vec![WsEvent::Frame(fr(true, 2, false, 100))]);
        assert!(
            !p.skip(1, &mut |_| {}),
            "a gap in a header loses the framing"
        );
    }

    proptest! {
        #[test]
        fn any_split_same_frames(cuts in proptest::collection::vec(0usize..400, 0..8)) {
            let mut input = encode(true, 1, Some([1, 2, 3, 4]), b"hi");
            input.extend(encode(true, 2, None, &[5; 200]));
            input.extend(encode(false, 1, Some([4; 4]), b"a"));
            input.extend(encode(true, 0, Some([4; 4]), b"b"));
            input.extend(encode(true, 8, Some([7, 7, 7, 7]), &[3, 232, b'x']));
            let whole = frames(&input);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
            cuts.sort();
            let mut p = WsParser::new();
            let mut f = Vec::new();
            let mut at = 0;
            for end in cuts.into_iter().chain([input.len()]) {
                p.feed(&input[at..end], &mut |e| if let WsEvent::Frame(x) = e { f.push(x) }).unwrap();
                at = end;
            }
            prop_assert_eq!(&f, &whole.0);
            prop_assert_eq!(f.len(), 5);
            prop_assert_eq!(f[4].close_code, Some(1000));
        }

        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut p = WsParser::new();
            let _ = p.feed(&input, &mut |_| {});
        }
    }
}
