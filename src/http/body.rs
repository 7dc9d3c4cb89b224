//! How an HTTP/1.x message body ends (RFC 9112 §6), and the chunked decoder.
//!
//! [`BodyKind`] is decided once from the head; [`Chunked`] is a byte-driven step machine
//! (one `read_<state>` per state, as hyper's `decode.rs` does) that counts payload bytes
//! without keeping them. It never buffers: a chunk-size line, extension or trailer is scanned
//! byte by byte, so a message split at any byte gives the same result.

/// How the body of a message is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all (HEAD responses, 1xx, 204, 304, requests without length).
    Empty,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Read until the sender closes (responses without a length, RFC 9112 §6.3 rule 8).
    UntilClose,
}

/// Where the chunked decoder is (RFC 9112 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkedState {
    /// Hex digits of the chunk size.
    Size,
    /// Whitespace after the size (tolerated, as hyper does).
    SizeLws,
    /// `;name=value` extensions up to the line end: skipped.
    Extension,
    /// The LF ending the size line.
    SizeLf,
    /// Chunk payload.
    Data,
    /// The CRLF after the payload.
    DataCr,
    DataLf,
    /// Start of a trailer line, or the empty line ending the message.
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// The LF of the final empty line.
    EndLf,
    Done,
}

/// A chunked body that cannot be decoded further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkedError {
    #[error("chunk size does not fit in 64 bits")]
    SizeOverflow,
    #[error("invalid byte {0:#04x} in chunk size")]
    BadSize(u8),
    #[error("expected CRLF after chunk data, found {0:#04x}")]
    BadDataEnd(u8),
    #[error("chunk-size line, extension or trailer longer than {0} bytes")]
    LineTooLong(usize),
}

/// Longest chunk extension or trailer line accepted: longer is an attack or not HTTP.
pub const MAX_LINE: usize = 16 * 1024;

/// What one call to [`Chunked::feed`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Input bytes used (all of them unless the body ended inside the input).
    pub consumed: usize,
    /// Payload bytes among them.
    pub payload: u64,
    /// The final chunk and trailers are complete.
    pub done: bool,
}

/// The chunked-body decoder: counts payload, keeps none of it.
#[derive(Debug, Clone)]
pub struct Chunked {
    state: ChunkedState,
    /// Current chunk's size while reading it, then the payload bytes still to come.
    size: u64,
    /// Hex digits read for the current size.
    digits: u32,
    /// Bytes of the current extension or trailer line.
    line: usize,
    /// Chunks seen (data chunks, not the last one).
    pub chunks: u64,
}

impl Default for Chunked {
    fn default() -> Self {
        Self::new()
    }
}

impl Chunked {
    pub fn new() -> Self {
        Chunked {
            state: ChunkedState::Size,
            size: 0,
            digits: 0,
            line: 0,
            chunks: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == ChunkedState::Done
    }

    /// Decode as much of `input` as belongs to this body.
    pub fn feed(&mut self, input: &[u8]) -> Result<Fed, ChunkedError> {
        let mut fed = Fed::default();
        while fed.consumed < input.len() && self.state != ChunkedState::Done {
            let rest = &input[fed.consumed..];
            if self.state == ChunkedState::Data {
                let n = (rest.len() as u64).min(self.size);
                self.size -= n;
                fed.consumed += n as usize;
                fed.payload += n;
                if self.size == 0 {
                    self.state = ChunkedState::DataCr;
                }
                continue;
            }
            self.step(rest[0])?;
            fed.consumed += 1;
        }
        fed.done = self.is_done();
        Ok(fed)
    }

    /// `n` bytes of the body were never captured. Survivable only inside one chunk's payload;
    /// returns false when the framing is lost.
    pub fn skip(&mut self, n: u64) -> bool {
        if self.state == ChunkedState::Data && n <= self.size {
            self.size -= n;
            if self.size == 0 {
                self.state = ChunkedState::DataCr;
            }
            true
        } else {
            false
        }
    }

    fn step(&mut self, b: u8) -> Result<(), ChunkedError> {
        use ChunkedState::*;
        self.state = match self.state {
            Size => self.read_size(b)?,
            SizeLws => match b {
                b' ' | b'\t' => SizeLws,
                b';' => Extension,
                b'\r' => SizeLf,
                b'\n' => self.size_line_done(),
                _ => return Err(ChunkedError::BadSize(b)),
            },
            Extension => self.read_line(b, Extension, SizeLf, true)?,
            SizeLf => match b {
                b'\n' => self.size_line_done(),
                _ => return Err(ChunkedError::BadSize(b)),
            },
            DataCr => match b {
                b'\r' => DataLf,
                b'\n' => Size, // bare LF: tolerated
                _ => return Err(ChunkedError::BadDataEnd(b)),
            },
            DataLf => match b {
                b'\n' => Size,
                _ => return Err(ChunkedError::BadDataEnd(b)),
            },
            TrailerStart => match b {
                b'\r' => EndLf,
                b'\n' => Done,
                _ => {
                    self.line = 1;
                    Trailer
                }
            },
            Trailer => self.read_line(b, Trailer, TrailerStart, false)?,
            EndLf => match b {
                b'\n' => Done,
                // A CR not followed by LF: part of a malformed trailer line; keep scanning.
                _ => Trailer,
            },
            Data | Done => self.state, // handled by feed
        };
        Ok(())
    }

    fn read_size(&mut self, b: u8) -> Result<ChunkedState, ChunkedError> {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ if self.digits == 0 => return Err(ChunkedError::BadSize(b)),
            b' ' | b'\t' => return Ok(ChunkedState::SizeLws),
            b';' => return Ok(ChunkedState::Extension),
            b'\r' => return Ok(ChunkedState::SizeLf),
            b'\n' => return Ok(self.size_line_done()),
            _ => return Err(ChunkedError::BadSize(b)),
        };
        self.size = self
            .size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(digit)))
            .ok_or(ChunkedError::SizeOverflow)?;
        self.digits += 1;
        Ok(ChunkedState::Size)
    }

    /// Extension or trailer bytes up to LF; `cr_ends` lets a CR end the line (extensions).
    fn read_line(
        &mut self,
        b: u8,
        same: ChunkedState,
        next: ChunkedState,
        cr_ends: bool,
    ) -> Result<ChunkedState, ChunkedError> {
        match b {
            b'\r' if cr_ends => Ok(next),
            b'\n' => {
                self.line = 0;
                Ok(if cr_ends { self.size_line_done() } else { next })
            }
            _ => {
                self.line += 1;
                if self.line > MAX_LINE {
                    Err(ChunkedError::LineTooLong(MAX_LINE))
                } else {
                    Ok(same)
                }
            }
        }
    }

    fn size_line_done(&mut self) -> ChunkedState {
        self.digits = 0;
        self.line = 0;
        if self.size == 0 {
            ChunkedState::TrailerStart
        } else {
            self.chunks += 1;
            ChunkedState::Data
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `input` whole; returns (consumed, payload, done) or the error.
    fn decode(input: &[u8]) -> Result<(usize, u64, bool), ChunkedError> {
        let mut c = Chunked::new();
        let f = c.feed(input)?;
        Ok((f.consumed, f.payload, f.done))
    }

    /// Table: input, expected result.
    macro_rules! chunked {
        ($($name:ident: $input:expr => $want:expr;)*) => {$(
            #[test]
            fn $name() {
                assert_eq!(decode($input), $want);
            }
        )*};
    }

    chunked! {
        one_chunk: b"5\r\nhello\r\n0\r\n\r\n" => Ok((15, 5, true));
        two_chunks_and_more_after: b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nGET" => Ok((20, 5, true));
        upper_hex: b"A\r\n0123456789\r\n0\r\n\r\n" => Ok((20, 10, true));
        extension_skipped: b"3;name=\"v\"\r\nabc\r\n0\r\n\r\n" => Ok((22, 3, true));
        whitespace_after_size: b"3 \t\r\nabc\r\n0\r\n\r\n" => Ok((15, 3, true));
        trailers: b"3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n" => Ok((31, 3, true));
        bare_lf_lines: b"3\nabc\n0\n\n" => Ok((9, 3, true));
        partial: b"10\r\nabc" => Ok((7, 3, false));
        overflow: b"10000000000000000\r\n" => Err(ChunkedError::SizeOverflow);
        max_size_fits: b"ffffffffffffffff\r\nab" => Ok((20, 2, false));
        not_hex: b"zz\r\n" => Err(ChunkedError::BadSize(b'z'));
        empty_size: b"\r\n" => Err(ChunkedError::BadSize(b'\r'));
        missing_crlf_after_data: b"3\r\nabcX" => Err(ChunkedError::BadDataEnd(b'X'));
    }

    #[test]
    fn skip_inside_payload_only() {
        let mut c = Chunked::new();
        c.feed(b"a\r\n01").unwrap();
        assert!(c.skip(8));
        assert!(c.feed(b"\r\n0\r\n\r\n").unwrap().done);
        let mut c = Chunked::new();
        c.feed(b"a\r\n01").unwrap();
        assert!(!c.skip(9), "a gap past the chunk loses the framing");
    }

    proptest! {
        /// Any split of the input gives the same payload count and end.
        #[test]
        fn split_anywhere_same_result(cuts in proptest::collection::vec(0usize..60, 0..6)) {
            let input: &[u8] = b"4;x=y\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nT: v\r\n\r\n";
            let whole = decode(input).unwrap();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
            cuts.sort();
            let mut c = Chunked::new();
            let (mut consumed, mut payload, mut at) = (0, 0, 0);
            for end in cuts.into_iter().chain([input.len()]) {
                let f = c.feed(&input[at..end]).unwrap();
                consumed += f.consumed;
                payload += f.payload;
                at = end;
            }
            prop_assert_eq!((consumed, payload, c.is_done()), whole);
            prop_assert_eq!(whole, (input.len(), 24, true));
        }

        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&input);
        }
    }
}
