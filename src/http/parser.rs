//! HTTP/1.x message heads: content sniffing and incremental parsing with httparse.
//!
//! [`parse_head`] is called on a growing buffer and answers [`Parsed::Partial`] (a status, not an
//! error: more bytes are needed), [`Parsed::Complete`] with what the rest of the parser needs to
//! know from the head, or [`Parsed::Invalid`] naming the problem. Detection is by content: a
//! request line starts with a method token and a space, a status line with `HTTP/`.
//! [`start_line_at`] is the stricter test used to find the next message after a gap.

use super::body::BodyKind;

/// Which kind of message a direction carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Request,
    Response,
}

/// Longest head accepted; beyond it the direction is not HTTP (or an attack).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one head.
const MAX_HEADERS: usize = 128;
/// Longest method token considered when sniffing.
const MAX_METHOD: usize = 32;

/// What the parser keeps from a complete head, borrowed from the buffer it was parsed from:
/// parsing allocates nothing, so a capture with millions of messages pays only for the records
/// it prints.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head<'a> {
    /// Bytes the head took in the buffer (start line, fields, empty line).
    pub len: usize,
    pub method: Option<&'a str>,
    pub uri: Option<&'a str>,
    pub status: Option<u16>,
    pub reason: Option<&'a str>,
    /// `"HTTP/1.0"` or `"HTTP/1.1"`.
    pub version: &'static str,
    /// Declared `Content-Length`, when valid.
    pub content_length: Option<u64>,
    /// `Content-Length` present but unusable (not a number, or conflicting values).
    pub bad_content_length: bool,
    /// `Transfer-Encoding` present at all.
    pub te_present: bool,
    /// `chunked` is the final transfer coding.
    pub chunked: bool,
    /// `Connection: close` (or HTTP/1.0 without `keep-alive`).
    pub close: bool,
    /// `Upgrade:` lists `websocket`.
    pub upgrade_websocket: bool,
    /// `Upgrade:` lists `h2c` (HTTP/2 over cleartext, RFC 7540 §3.2).
    pub upgrade_h2c: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// Whether the request carries each of [`CARRIED`].
    pub carries: [bool; 3],
}

/// The fields that show a request carrying its own state, in the order records list them.
pub const CARRIED: [&str; 3] = ["Host", "Cookie", "Authorization"];

impl Head<'_> {
    /// The names of the [`CARRIED`] fields present.
    pub fn carried(&self) -> impl Iterator<Item = &'static str> + '_ {
        CARRIED
            .iter()
            .zip(self.carries)
            .filter(|(_, c)| *c)
            .map(|(n, _)| *n)
    }

    pub fn kind(&self) -> Kind {
        if self.status.is_some() {
            Kind::Response
        } else {
            Kind::Request
        }
    }

    /// Body framing of a request (RFC 9112 §6.3 rules 3–6: no length means no body).
    pub fn request_body(&self) -> BodyKind {
        if self.chunked {
            BodyKind::Chunked
        } else if self.te_present {
            // A request with a non-chunked coding has no determinable length (§6.3 rule 4).
            BodyKind::UntilClose
        } else {
            match self.content_length {
                Some(0) | None => BodyKind::Empty,
                Some(n) => BodyKind::Length(n),
            }
        }
    }

    /// Body framing of a response to a request with `method` (RFC 9112 §6.3 rules 1–8).
    pub fn response_body(&self, method: Option<&str>) -> BodyKind {
        let status = self.status.unwrap_or(200);
        if method == Some("HEAD") || (100..200).contains(&status) || status == 204 || status == 304
        {
            BodyKind::Empty
        } else if self.chunked {
            BodyKind::Chunked
        } else if self.te_present || self.bad_content_length {
            BodyKind::UntilClose
        } else {
            match self.content_length {
                Some(0) => BodyKind::Empty,
                Some(n) => BodyKind::Length(n),
                None => BodyKind::UntilClose,
            }
        }
    }
}

/// Result of parsing a head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// More bytes are needed (an expected condition, not an error).
    Partial,
    Complete(Head<'a>),
    /// Not an HTTP/1.x head: why.
    Invalid(String),
}

/// Can a head end in `buf`, given that `buf[..from]` was already found incomplete? A head
/// ends with an empty line, so only a new LF-(CR)-LF can complete it.
pub fn may_complete(buf: &[u8], from: usize) -> bool {
    use memchr::memmem::Finder;
    use std::sync::LazyLock;
    // An empty line ends with LF-CR-LF (the usual CRLF heads) or LF-LF (bare LF, RFC 9112
    // §2.2). Each is one vectorised search; CRLF first, so a complete CRLF head stops the scan
    // at its end instead of running through the body after it. (A memchr per line cost more
    // than the parse on short heads.)
    static CRLF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\r\n"));
    static LF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));
    let hay = &buf[from.saturating_sub(3).min(buf.len())..];
    CRLF.find(hay).is_some() || LF.find(hay).is_some()
}

/// Guess the kind of message `buf` starts with: `None` while too few bytes decide.
pub fn sniff(buf: &[u8]) -> Option<Result<Kind, String>> {
    const HTTP: &[u8] = b"HTTP/";
    let n = buf.len().min(HTTP.len());
    if buf[..n] == HTTP[..n] && n < HTTP.len() {
        return None; // "HT" could be either
    }
    if buf.starts_with(HTTP) {
        return Some(Ok(Kind::Response));
    }
    for (i, &b) in buf.iter().enumerate().take(MAX_METHOD + 1) {
        if b == b' ' && i > 0 {
            return Some(Ok(Kind::Request));
        }
        if !is_tchar(b) {
            return Some(Err(format!(
                "byte {b:#04x} at offset {i} where a method or HTTP/ was expected"
            )));
        }
    }
    if buf.len() > MAX_METHOD {
        Some(Err(format!(
            "no method token in the first {MAX_METHOD} bytes"
        )))
    } else {
        None
    }
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Header slots tried first; a head with more fields is parsed again with [`MAX_HEADERS`].
const FEW_HEADERS: usize = 24;

/// Parse a head of `kind` at the start of `buf`.
pub fn parse_head(buf: &[u8], kind: Kind) -> Parsed<'_> {
    // Uninitialised slots: zeroing 128 header slots (4 KiB) per message cost more than the
    // parse itself. Most heads fit the small array; the rare larger one is parsed again.
    let mut few = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; FEW_HEADERS];
    match parse_into(buf, kind, &mut few) {
        Err(httparse::Error::TooManyHeaders) => {
            let mut many =
                [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            parse_into(buf, kind, &mut many).unwrap_or_else(|e| invalid(kind, e))
        }
        r => r.unwrap_or_else(|e| invalid(kind, e)),
    }
}

fn invalid<'a>(kind: Kind, e: httparse::Error) -> Parsed<'a> {
    match kind {
        Kind::Request => Parsed::Invalid(format!("request head: {e}")),
        Kind::Response => Parsed::Invalid(format!("response head: {e}")),
    }
}

fn parse_into<'b>(
    buf: &'b [u8],
    kind: Kind,
    slots: &mut [std::mem::MaybeUninit<httparse::Header<'b>>],
) -> Result<Parsed<'b>, httparse::Error> {
    match kind {
        Kind::Request => {
            let mut req = httparse::Request::new(&mut []);
            match req.parse_with_uninit_headers(buf, slots)? {
                httparse::Status::Partial => Ok(Parsed::Partial),
                httparse::Status::Complete(len) => {
                    let mut head = fields(req.headers, req.version.unwrap_or(1), len);
                    head.method = req.method;
                    head.uri = req.path;
                    Ok(Parsed::Complete(head))
                }
            }
        }
        Kind::Response => {
            let mut res = httparse::Response::new(&mut []);
            match httparse::ParserConfig::default()
                .parse_response_with_uninit_headers(&mut res, buf, slots)?
            {
                httparse::Status::Partial => Ok(Parsed::Partial),
                httparse::Status::Complete(len) => {
                    let mut head = fields(res.headers, res.version.unwrap_or(1), len);
                    head.status = res.code;
                    head.reason = res.reason;
                    Ok(Parsed::Complete(head))
                }
            }
        }
    }
}

/// Comma-separated list elements of a field value, trimmed, empty ones skipped.
fn tokens(value: &[u8]) -> impl DoubleEndedIterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
}

/// The fields [`fields`] reads; everything else is passed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    ContentLength,
    TransferEncoding,
    Connection,
    Upgrade,
    Expect,
    /// Index in [`CARRIED`].
    Carried(usize),
    Other,
}

/// `name` spells `lower` (lower-case letters and `-`) in any case: a letter's byte OR 0x20
/// (bit 6 marks a letter here, 0x40 >> 1) must be the letter, which only its two cases give;
/// `-` must be itself. One OR and compare a byte, where `eq_ignore_ascii_case` lowers both
/// sides: telling the names below apart that way was 4% of a JSON-lines run's instructions
/// (~590 a message) on the full-payload bench capture.
#[inline(always)]
fn is_name(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len()
        && name
            .iter()
            .zip(lower)
            .all(|(&a, &b)| a | (b & 0x40) >> 1 == b)
}

/// Which field `name` is: by its length first, so most names are one comparison or none.
#[inline(always)]
fn field(name: &str) -> Field {
    let n = name.as_bytes();
    let carried = |i: usize, lower: &[u8]| -> Field {
        debug_assert!(CARRIED[i].eq_ignore_ascii_case(std::str::from_utf8(lower).unwrap_or("")));
        if is_name(n, lower) {
            Field::Carried(i)
        } else {
            Field::Other
        }
    };
    match n.len() {
        14 if is_name(n, b"content-length") => Field::ContentLength,
        17 if is_name(n, b"transfer-encoding") => Field::TransferEncoding,
        10 if is_name(n, b"connection") => Field::Connection,
        7 if is_name(n, b"upgrade") => Field::Upgrade,
        6 if is_name(n, b"expect") => Field::Expect,
        6 => carried(1, b"cookie"),
        4 => carried(0, b"host"),
        13 => carried(2, b"authorization"),
        _ => Field::Other,
    }
}

/// A Content-Length element: digits only (no sign, no space), as a u64 that did not overflow.
#[inline(always)]
fn length_value(t: &[u8]) -> Option<u64> {
    if t.is_empty() {
        return None;
    }
    t.iter().try_fold(0u64, |n, &b| {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(d as u64)
    })
}

/// The header fields the framing and the records need.
fn fields<'a>(headers: &[httparse::Header<'a>], version: u8, len: usize) -> Head<'a> {
    let mut head = Head {
        len,
        version: if version == 0 { "HTTP/1.0" } else { "HTTP/1.1" },
        ..Head::default()
    };
    let mut keep_alive = false;
    for h in headers {
        match field(h.name) {
            Field::ContentLength => {
                // Empty elements count as bad here: "Content-Length: ," is not a length.
                for t in h.value.split(|&b| b == b',').map(|t| t.trim_ascii()) {
                    match length_value(t) {
                        Some(n) => {
                            if head.content_length.is_some_and(|c| c != n) {
                                head.bad_content_length = true;
                            }
                            head.content_length = Some(n);
                        }
                        None => head.bad_content_length = true,
                    }
                }
            }
            Field::TransferEncoding => {
                head.te_present = true;
                // Only the last coding decides (RFC 9112 §6.3 rule 4).
                if let Some(last) = tokens(h.value).next_back() {
                    head.chunked = last.eq_ignore_ascii_case(b"chunked");
                }
            }
            Field::Connection => {
                for t in tokens(h.value) {
                    head.close |= t.eq_ignore_ascii_case(b"close");
                    keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            Field::Upgrade => {
                for t in tokens(h.value) {
                    head.upgrade_websocket |= t.eq_ignore_ascii_case(b"websocket");
                    head.upgrade_h2c |= t.eq_ignore_ascii_case(b"h2c");
                }
            }
            Field::Expect => {
                head.expect_continue |= h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
            }
            Field::Carried(i) => head.carries[i] = true,
            Field::Other => {}
        }
    }
    if head.bad_content_length {
        head.content_length = None;
    }
    // HTTP/1.0 closes after each message unless it asks otherwise (RFC 9112 §9.3).
    head.close |= version == 0 && !keep_alive;
    head
}

/// A byte range `(start, len)` of the buffer a head was parsed from.
type Span = (u32, u32);

/// Bytes of method, URI and reason a [`HeadAt`] carries itself, at most.
const HEAD_TEXT: usize = 64;

/// A [`Head`] whose strings are positions in the buffer it was parsed from, so a head parsed
/// on one thread can travel with its bytes to another ([`prepare`]). Short strings (most:
/// `GET`, a path, `OK`) travel as a copy instead: the thread that parsed them has those bytes
/// in its cache, while the tracking thread, the run's busiest, would otherwise take a cache
/// and TLB miss on each message's first payload line just to read them (5% of a JSON-lines
/// run's time on the full-payload bench capture).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadAt {
    /// Method, URI and reason, one after another, when they fit; the spans are then
    /// positions in here rather than in the buffer.
    text: Option<([u8; HEAD_TEXT], u8)>,
    len: usize,
    method: Option<Span>,
    uri: Option<Span>,
    status: Option<u16>,
    reason: Option<Span>,
    version: &'static str,
    content_length: Option<u64>,
    bad_content_length: bool,
    te_present: bool,
    chunked: bool,
    close: bool,
    upgrade_websocket: bool,
    upgrade_h2c: bool,
    expect_continue: bool,
    carries: [bool; 3],
}

impl HeadAt {
    /// `head`'s strings as positions in `base`; `None` if one lies outside it.
    fn of(head: &Head<'_>, base: &[u8]) -> Option<HeadAt> {
        let span = |s: Option<&str>| -> Option<Option<Span>> {
            let Some(s) = s else { return Some(None) };
            let start = (s.as_ptr() as usize).checked_sub(base.as_ptr() as usize)?;
            (start + s.len() <= base.len()).then_some(Some((start as u32, s.len() as u32)))
        };
        let (mut method, mut uri, mut reason) =
            (span(head.method)?, span(head.uri)?, span(head.reason)?);
        let strings = [head.method, head.uri, head.reason];
        let total: usize = strings.iter().flatten().map(|s| s.len()).sum();
        let text = (total <= HEAD_TEXT).then(|| {
            let mut bytes = [0u8; HEAD_TEXT];
            let mut at = 0;
            for (s, span) in strings.iter().zip([&mut method, &mut uri, &mut reason]) {
                if let Some(s) = s {
                    bytes[at..at + s.len()].copy_from_slice(s.as_bytes());
                    *span = Some((at as u32, s.len() as u32));
                    at += s.len();
                }
            }
            (bytes, at as u8)
        });
        Some(HeadAt {
            text,
            len: head.len,
            method,
            uri,
            status: head.status,
            reason,
            version: head.version,
            content_length: head.content_length,
            bad_content_length: head.bad_content_length,
            te_present: head.te_present,
            chunked: head.chunked,
            close: head.close,
            upgrade_websocket: head.upgrade_websocket,
            upgrade_h2c: head.upgrade_h2c,
            expect_continue: head.expect_continue,
            carries: head.carries,
        })
    }

    /// The head again, borrowing `buf` (the bytes it was parsed from, or a copy of them)
    /// for strings it does not carry itself.
    pub fn head<'a>(&'a self, buf: &'a [u8]) -> Option<Head<'a>> {
        let from: &[u8] = match &self.text {
            Some((bytes, n)) => &bytes[..*n as usize],
            None => buf,
        };
        let text = |s: Option<Span>| -> Option<Option<&'a str>> {
            let Some((a, n)) = s else { return Some(None) };
            let bytes = from.get(a as usize..a as usize + n as usize)?;
            if bytes.is_ascii() {
                // Method, URI and reason are ASCII but for the odd one: checked inline, where
                // `from_utf8`'s call cost ~75 instructions each (1% of a JSON-lines run).
                // SAFETY: ASCII bytes are UTF-8.
                return Some(Some(unsafe { std::str::from_utf8_unchecked(bytes) }));
            }
            std::str::from_utf8(bytes).ok().map(Some)
        };
        Some(Head {
            len: self.len,
            method: text(self.method)?,
            uri: text(self.uri)?,
            status: self.status,
            reason: text(self.reason)?,
            version: self.version,
            content_length: self.content_length,
            bad_content_length: self.bad_content_length,
            te_present: self.te_present,
            chunked: self.chunked,
            close: self.close,
            upgrade_websocket: self.upgrade_websocket,
            upgrade_h2c: self.upgrade_h2c,
            expect_continue: self.expect_continue,
            carries: self.carries,
        })
    }
}

/// The message a head cut short (by a gap, typically a snaplen shorter than the head) still
/// names when its first line arrived whole: that line parsed as a head of its own, as
/// Wireshark reports such a message. Positions are in `buf`.
pub fn salvage(buf: &[u8]) -> Option<HeadAt> {
    let eol = memchr::memchr(b'\n', buf)?;
    let mut line = Vec::with_capacity(eol + 4);
    line.extend_from_slice(buf[..eol].strip_suffix(b"\r").unwrap_or(&buf[..eol]));
    line.extend_from_slice(b"\r\n\r\n");
    let kind = match sniff(&line) {
        Some(Ok(k)) => k,
        _ => return None,
    };
    match parse_head(&line, kind) {
        // The line is a copy of the start of `buf`: positions in it are positions in `buf`.
        Parsed::Complete(head) => HeadAt::of(&head, &line),
        _ => None,
    }
}

/// A segment's payload parsed, ahead of time and on another thread, as if a message started
/// at its first byte: what [`crate::http::HttpConn`] would work out itself when one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    /// What [`sniff`] says the payload starts with.
    pub kind: Kind,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A complete head of `kind` at the start of the payload.
    Complete(HeadAt),
    /// No complete head: [`salvage`] of the payload, for when a gap follows it.
    Partial(Option<HeadAt>),
}

/// Parse `payload` as the start of a message, or `None` when it does not clearly start one
/// (blank lines first, too short to tell, not HTTP, an invalid head, longer than
/// [`MAX_HEAD`]): the parser then does its own work on those bytes.
pub fn prepare(payload: &[u8]) -> Option<Prepared> {
    if payload.len() > MAX_HEAD || matches!(payload.first(), None | Some(b'\r' | b'\n')) {
        return None;
    }
    let Some(Ok(kind)) = sniff(payload) else {
        return None;
    };
    // No `may_complete` first: on one whole payload, httparse finding the end (or not) costs
    // less than searching for the empty line before it, which then parses the same bytes.
    let outcome = match parse_head(payload, kind) {
        Parsed::Complete(head) => Outcome::Complete(HeadAt::of(&head, payload)?),
        Parsed::Partial => Outcome::Partial(salvage(payload)),
        Parsed::Invalid(_) => return None,
    };
    Some(Prepared { kind, outcome })
}

/// Methods accepted when hunting for a message start after a gap: a short known list keeps
/// body bytes that happen to look like `WORD / HTTP/1.1` rare.
const METHODS: &[&[u8]] = &[
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH",
];

/// Does a start line of `kind` (any kind when `None`) begin at `buf[0]`? `None` while the line
/// is incomplete, at most [`MAX_RESYNC_LINE`] bytes.
pub fn start_line_at(buf: &[u8], kind: Option<Kind>) -> Option<bool> {
    const V: &[u8] = b"HTTP/1.";
    let line_end = memchr::memchr(b'\n', buf);
    let line = &buf[..line_end.unwrap_or(buf.len())];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if kind != Some(Kind::Request) {
        // "HTTP/1.1 200"
        let n = buf.len().min(12);
        let pat_ok = buf[..n].iter().enumerate().all(|(i, &b)| match i {
            0..=6 => b == V[i],
            7 => b == b'0' || b == b'1',
            8 => b == b' ',
            _ => b.is_ascii_digit(),
        });
        if pat_ok && n == 12 {
            return Some(true);
        }
        if pat_ok && line_end.is_none() {
            return None;
        }
    }
    if kind != Some(Kind::Response) {
        // `METHOD ` or a prefix of it (the line may still be arriving).
        let method_ok = METHODS.iter().any(|m| {
            let n = buf.len().min(m.len());
            buf[..n] == m[..n] && buf.get(m.len()).is_none_or(|&b| b == b' ')
        });
        if method_ok {
            if line_end.is_none() {
                return if buf.len() > MAX_RESYNC_LINE {
                    Some(false)
                } else {
                    None
                };
            }
            // "... HTTP/1.x" at the line's end.
            let l = line.len();
            let ok = l >= 10
                && line[l - 8..l - 1] == *V
                && matches!(line[l - 1], b'0' | b'1')
                && line[l - 9] == b' ';
            return Some(ok);
        }
    }
    Some(false)
}

/// Longest request line waited for when resynchronising.
pub const MAX_RESYNC_LINE: usize = 8 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn head(input: &[u8], kind: Kind) -> Head<'_> {
        match parse_head(input, kind) {
            Parsed::Complete(h) => h,
            other => panic!("{other:?}"),
        }
    }

    /// Table: request bytes → (body framing, selected fields).
    macro_rules! req {
        ($($name:ident: $input:expr => $body:expr, |$h:ident| $check:expr;)*) => {$(
            #[test]
            fn $name() {
                let $h = head($input, Kind::Request);
                assert_eq!($h.request_body(), $body);
                assert!($check, "{:?}", $h);
            }
        )*};
    }

    /// Table: response bytes and the request method → body framing.
    macro_rules! res {
        ($($name:ident: $input:expr, $method:expr => $body:expr;)*) => {$(
            #[test]
            fn $name() {
                let h = head($input, Kind::Response);
                assert_eq!(h.response_body($method), $body);
            }
        )*};
    }

    req! {
        req_get_no_body: b"GET /a?b=c HTTP/1.1\r\nHost: x\r\n\r\n" => BodyKind::Empty,
            |h| h.method == Some("GET") && h.uri == Some("/a?b=c")
                && h.version == "HTTP/1.1" && h.carried().eq(["Host"]) && !h.close;
        req_content_length: b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n" => BodyKind::Length(12),
            |h| h.content_length == Some(12);
        req_chunked: b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" => BodyKind::Chunked,
            |h| h.chunked;
        req_chunked_wins_over_length: b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" => BodyKind::Chunked,
            |h| h.chunked;
        req_expect: b"POST / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n" => BodyKind::Length(3),
            |h| h.expect_continue;
        req_carries_all: b"GET / HTTP/1.1\r\nauthorization: Basic x\r\nCOOKIE: a=b\r\nhost: h\r\n\r\n" => BodyKind::Empty,
            |h| h.carried().eq(CARRIED);
        req_http10_closes: b"GET / HTTP/1.0\r\n\r\n" => BodyKind::Empty,
            |h| h.close && h.version == "HTTP/1.0";
        req_http10_keepalive: b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n" => BodyKind::Empty,
            |h| !h.close;
        req_upgrade: b"GET /chat HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\n" => BodyKind::Empty,
            |h| h.upgrade_websocket;
        req_conflicting_lengths: b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n" => BodyKind::Empty,
            |h| h.bad_content_length;
        req_same_lengths: b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n" => BodyKind::Length(5),
            |h| !h.bad_content_length;
    }

    res! {
        res_length: b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", Some("GET") => BodyKind::Length(5);
        res_head_has_no_body: b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n", Some("HEAD") => BodyKind::Empty;
        res_204: b"HTTP/1.1 204 No Content\r\n\r\n", Some("GET") => BodyKind::Empty;
        res_304: b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", Some("GET") => BodyKind::Empty;
        res_100: b"HTTP/1.1 100 Continue\r\n\r\n", Some("POST") => BodyKind::Empty;
        res_chunked: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", Some("GET") => BodyKind::Chunked;
        res_until_close: b"HTTP/1.0 200 OK\r\n\r\n", Some("GET") => BodyKind::UntilClose;
        res_unknown_coding: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", None => BodyKind::UntilClose;
        res_bad_length: b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", None => BodyKind::UntilClose;
        res_zero_length: b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", None => BodyKind::Empty;
    }

    #[test]
    fn partial_and_invalid() {
        assert_eq!(
            parse_head(b"GET / HTTP/1.1\r\nHost:", Kind::Request),
            Parsed::Partial
        );
        assert!(matches!(
            parse_head(b"GET / HTTX/1.1\r\n\r\n", Kind::Request),
            Parsed::Invalid(_)
        ));
    }

    #[test]
    fn completion_needs_an_empty_line() {
        assert!(!parser_may(b"GET / HTTP/1.1\r\nHost: x\r\n", 0));
        assert!(parser_may(b"GET / HTTP/1.1\r\n\r\n", 0));
        assert!(parser_may(b"GET / HTTP/1.1\n\n", 14));
        assert!(!parser_may(b"GET / HTTP/1.1\r\n\r\nxyz", 21));
    }

    fn parser_may(b: &[u8], from: usize) -> bool {
        may_complete(b, from)
    }

    proptest::proptest! {
        /// The vectorised search answers as a byte-by-byte look at every LF from `from - 3`.
        #[test]
        fn completion_search_matches_a_byte_walk(
            b in proptest::collection::vec(proptest::sample::select(b"\r\nab".to_vec()), 0..40),
            from in 0usize..44,
        ) {
            let start = from.saturating_sub(3).min(b.len());
            let walk = (start..b.len()).any(|i| {
                b[i] == b'\n' && (b.get(i + 1) == Some(&b'\n') || b.get(i + 1..i + 3) == Some(b"\r\n"))
            });
            proptest::prop_assert_eq!(may_complete(&b, from), walk);
        }
    }

    /// A head parsed ahead reads back as parsing here gives it, whether its strings travel as
    /// a copy (up to HEAD_TEXT bytes together) or as positions in the payload (beyond).
    #[test]
    fn heads_parsed_ahead_read_back_whole_carried_or_not() {
        let mut carried = [0; 2];
        for n in [1, 40, 59, 60, 61, 62, 200, 3000] {
            let path = format!("/{}", "p".repeat(n - 1));
            let reason = "R".repeat(n);
            for payload in [
                format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\nbody"),
                format!("HTTP/1.1 404 {reason}\r\nContent-Length: 4\r\n\r\nbody"),
                // Not ASCII: read back through the UTF-8 check.
                format!("GET {path}/gr\u{fc}n HTTP/1.1\r\nHost: h\r\n\r\nbody"),
            ] {
                let bytes = payload.as_bytes();
                let kind = sniff(bytes).unwrap().unwrap();
                let Parsed::Complete(want) = parse_head(bytes, kind) else {
                    panic!("{payload}")
                };
                let Some(Prepared {
                    outcome: Outcome::Complete(at),
                    ..
                }) = prepare(bytes)
                else {
                    panic!("{payload}")
                };
                let len = [want.method, want.uri, want.reason]
                    .iter()
                    .flatten()
                    .map(|s| s.len())
                    .sum::<usize>();
                assert_eq!(at.text.is_some(), len <= HEAD_TEXT, "{payload}");
                carried[at.text.is_some() as usize] += 1;
                assert_eq!(at.head(bytes), Some(want.clone()), "{payload}");
                // Carried strings need no payload at all; the others read it.
                if at.text.is_some() {
                    assert_eq!(at.head(b""), Some(want), "{payload}");
                } else {
                    assert_eq!(at.head(b""), None, "{payload}");
                }
            }
        }
        assert!(carried[0] > 0 && carried[1] > 0, "{carried:?}");
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"HT"), None);
        assert_eq!(sniff(b"HTTP/1.1 200"), Some(Ok(Kind::Response)));
        assert_eq!(sniff(b"GET "), Some(Ok(Kind::Request)));
        assert_eq!(sniff(b"GE"), None);
        assert!(matches!(sniff(b"\x16\x03\x01"), Some(Err(_))));
        assert!(matches!(sniff(&[b'a'; 40]), Some(Err(_))));
    }

    #[test]
    fn start_lines() {
        assert_eq!(start_line_at(b"HTTP/1.1 200 OK\r\n", None), Some(true));
        assert_eq!(start_line_at(b"HTTP/1.", None), None);
        assert_eq!(
            start_line_at(b"HTTP/1.1 200", Some(Kind::Request)),
            Some(false)
        );
        assert_eq!(start_line_at(b"GET /x HTTP/1.1\r\n", None), Some(true));
        assert_eq!(start_line_at(b"GET /x HTTP/1.1\n", None), Some(true));
        assert_eq!(start_line_at(b"GET /x HT", None), None);
        assert_eq!(start_line_at(b"GET /x\r\n", None), Some(false));
        assert_eq!(start_line_at(b"GETX / HTTP/1.1\r\n", None), Some(false));
        assert_eq!(start_line_at(b"", None), None);
        assert_eq!(start_line_at(b"xyz", None), Some(false));
    }

    /// How fields were told apart before [`field`]: one case-insensitive comparison after
    /// another, in this order.
    fn field_by_comparisons(name: &str) -> Field {
        for (want, f) in [
            ("content-length", Field::ContentLength),
            ("transfer-encoding", Field::TransferEncoding),
            ("connection", Field::Connection),
            ("upgrade", Field::Upgrade),
            ("expect", Field::Expect),
        ] {
            if name.eq_ignore_ascii_case(want) {
                return f;
            }
        }
        CARRIED
            .iter()
            .position(|w| name.eq_ignore_ascii_case(w))
            .map_or(Field::Other, Field::Carried)
    }

    /// Token characters (RFC 9110 §5.6.2), what httparse lets a field name hold.
    const TCHARS: &[u8] =
        b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    /// Every known name with its first, last or only wrong byte, and each byte's other case.
    #[test]
    fn fields_one_byte_off_are_other_fields() {
        let names = [
            "content-length",
            "transfer-encoding",
            "connection",
            "upgrade",
            "expect",
            "host",
            "cookie",
            "authorization",
        ];
        for base in names {
            let upper = base.to_ascii_uppercase();
            assert_eq!(field(&upper), field_by_comparisons(base), "{upper}");
            for at in 0..base.len() {
                for &b in TCHARS.iter().chain(b"\r\n\x00 :\x7f\xc3") {
                    let mut name = base.as_bytes().to_vec();
                    name[at] = b;
                    let Ok(name) = std::str::from_utf8(&name) else {
                        continue;
                    };
                    assert_eq!(field(name), field_by_comparisons(name), "{name:?}");
                }
            }
        }
    }

    /// A Content-Length element's value, against parsing it as the old code did.
    #[test]
    fn length_values_parse_as_u64_does() {
        for t in [
            "",
            "0",
            "007",
            "5",
            "+5",
            "-5",
            " 5",
            "5 ",
            "5a",
            "a5",
            "1_0",
            "\u{663}",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            let t = t.as_bytes();
            let old = (!t.is_empty() && t.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(t).ok()?.parse::<u64>().ok())
                .flatten();
            assert_eq!(length_value(t), old, "{:?}", String::from_utf8_lossy(t));
        }
    }

    proptest::proptest! {
        /// Any name of token characters, and the known names in any mix of cases, are told apart
        /// as one comparison after another told them apart.
        #[test]
        fn fields_are_told_apart_as_by_comparisons(
            pick in 0usize..8,
            cases in proptest::num::u32::ANY,
            junk in proptest::collection::vec(proptest::sample::select(TCHARS), 0..20),
        ) {
            let names = ["content-length", "transfer-encoding", "connection", "upgrade", "expect", "host", "cookie", "authorization"];
            let mixed: String = names[pick]
                .chars()
                .enumerate()
                .map(|(i, c)| if cases >> (i % 32) & 1 == 1 { c.to_ascii_uppercase() } else { c })
                .collect();
            for name in [mixed.as_str(), std::str::from_utf8(&junk).unwrap()] {
                proptest::prop_assert_eq!(field(name), field_by_comparisons(name), "{}", name);
            }
        }

        /// Any digits, and digits with one other byte, parse as the old way parsed them.
        #[test]
        fn length_values_any(digits in "[0-9]{0,24}", other in proptest::num::u8::ANY, at in 0usize..25) {
            let mut t = digits.into_bytes();
            let plain = t.clone();
            if !t.is_empty() {
                let i = at % t.len();
                t[i] = other;
            }
            for t in [&plain[..], &t[..]] {
                let old = (!t.is_empty() && t.iter().all(u8::is_ascii_digit))
                    .then(|| std::str::from_utf8(t).ok()?.parse::<u64>().ok())
                    .flatten();
                proptest::prop_assert_eq!(length_value(t), old);
            }
        }
    }
}
