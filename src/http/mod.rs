//! HTTP/1.x and WebSocket parsed on reassembled byte streams.
//!
//! [`HttpConn`] takes one connection's in-order bytes per direction (from
//! [`crate::tcp::reassembly`]) and emits `http` and `ws` [`Record`]s. Detection is by content,
//! not port. Requests and responses pair in FIFO order; after `101 Switching Protocols` with
//! `Upgrade: websocket` both directions switch to RFC 6455 framing.
//!
//! | file | what |
//! |------|------|
//! | [`parser`] | sniffing and head parsing with httparse; which framing a head implies |
//! | [`body`] | [`body::BodyKind`] and the chunked decoder's step machine |
//! | [`ws`] | RFC 6455 frame headers, payloads counted and never kept |
//! | [`follow`] | Wireshark-style Follow TCP Stream text for `--follow` |
//!
//! # When records come out
//!
//! An `http` record is pushed when its message is complete, body included, so `body_len` is
//! final; its `frame` is still the frame in which the head became complete (the contract's
//! meaning) and `end_frame` the frame that completed the body. A body read until close is
//! complete at [`HttpConn::on_end`]. A message cut short (by the end of the stream or by a gap
//! that loses its framing) is pushed when that is known, without `end_frame`, with a diagnostic.
//! An interim `1xx` response is its own record; the final response then answers the same
//! request. A `ws` record is pushed when the frame's last payload byte arrives (tshark reports
//! WebSocket frames and reassembled messages at the completing frame too, so `ws.frame` and
//! `http.end_frame` line up with tshark's frame numbers).
//!
//! `body_len` counts payload bytes actually captured: for chunked bodies the decoded chunk data
//! (not the size lines or trailers), and never bytes lost in a gap, so `body_len <
//! content_length` on a complete message means the capture missed some of it.
//!
//! # Each direction's mode
//!
//! `Head` (gathering a start line and fields) → `Body` (counting a body by its framing) → `Head`…;
//! a request asking for a WebSocket upgrade parks its side in `AwaitUpgrade` (bytes held) until
//! the response decides between `Ws` and `Head`. Input that is not HTTP puts the side in `Lost`;
//! a gap that breaks the framing puts it in `Resync`, which hunts for the next line that starts
//! a message. `Opaque` ignores everything (tunnels, non-WebSocket upgrades, lost WS framing).
//! Memory per direction is bounded by [`parser::MAX_HEAD`] (the head buffer) plus a WebSocket
//! frame header; bodies and payloads are never stored.

pub mod body;
pub mod follow;
pub mod parser;
pub mod ws;

use crate::http2::H2Conn;
use crate::record::{Dir, HttpRec, Record, WsRec};
use crate::types::Timestamp;
use body::{BodyKind, Chunked};
use parser::{Head, Kind, Outcome, Parsed, Prepared};
use std::borrow::Cow;
use std::collections::VecDeque;
use ws::{WsEvent, WsParser};

/// Diagnostics kept per connection; one more line says the rest were dropped.
const MAX_DIAGNOSTICS: usize = 64;
/// Requests waiting for a response, per connection (pipelining depth). The queue grows only
/// as deep as the capture's pipelining goes; at this depth it holds 8 MiB (32 bytes a
/// request), as much as the two directions' reassembly caps, and real clients stay far below
/// it. Past it, pairing stops rather than guess ([`HttpConn::unqueued`]).
#[cfg(not(test))]
const MAX_PENDING: usize = 1 << 18;
/// Small in unit tests, so they can reach it.
#[cfg(test)]
const MAX_PENDING: usize = 8;

/// How the current body ends, and how far it has got.
#[derive(Debug)]
enum Body {
    /// Bytes still to come of a `Content-Length` body.
    Length(u64),
    Chunked(Chunked),
    UntilClose,
}

/// What a direction is doing with its bytes.
#[derive(Debug, Default)]
enum Mode {
    #[default]
    Head,
    Body(Body),
    AwaitUpgrade,
    Ws(WsParser),
    /// After a `101` to `Upgrade: h2c`: both directions' bytes go to [`HttpConn::take_h2`]'s
    /// parser.
    H2,
    Opaque,
    Lost,
    Resync,
}

/// One direction's parser state.
#[derive(Debug, Default)]
struct Side {
    /// Requests or responses, once the first message decided it.
    role: Option<Kind>,
    mode: Mode,
    /// Partial head (Head), held bytes (AwaitUpgrade) or the resync window (Resync).
    buf: Vec<u8>,
    /// Resync: `buf[0]` is at the start of a line.
    line_start: bool,
    /// [`parser::salvage`] of `buf`, worked out ahead ([`HttpConn::on_data_prepared`]), and
    /// the length `buf` had then: used only while `buf` still holds exactly those bytes.
    salvage: Option<(Option<parser::HeadAt>, usize)>,
    /// The message whose body is being read.
    msg: Option<Msg>,
    /// Heads parsed on this side.
    messages: u64,
    /// The direction has ended.
    ended: bool,
    /// Frame of a message that said `Connection: close` (nothing should follow it).
    closed_at: Option<u64>,
    /// Frame and time of the last bytes seen (for bytes replayed after AwaitUpgrade).
    last_frame: u64,
    last_ts: Timestamp,
}

/// A message between its head and the end of its body.
#[derive(Debug)]
struct Msg {
    request: bool,
    body_len: u64,
    /// The record to push when it ends; only a recording parser builds one.
    /// Boxed: a counting parser never makes one, and the message state stays small to move.
    rec: Option<Box<HttpRec>>,
}

/// A request waiting for its response.
#[derive(Debug, Clone)]
struct Pending {
    method: Cow<'static, str>,
    frame: u64,
}

/// What a finished parser ([`HttpConn::settle`]) leaves for the connection's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub requests: u64,
    pub responses: u64,
    pub ws_frames: u64,
    /// [`HttpConn::take_diagnostics`]'s lines.
    pub diagnostics: Vec<String>,
}

impl Settled {
    /// Approximate heap bytes held, its own struct included (see [`HttpConn::footprint`]).
    pub fn footprint(&self) -> usize {
        std::mem::size_of::<Self>() + self.diagnostics.capacity() * std::mem::size_of::<String>()
    }
}

/// One connection's HTTP/WebSocket parser state, both directions.
#[derive(Debug, Default)]
pub struct HttpConn {
    conn: u64,
    /// Push `http` and `ws` records (otherwise only count them: the plain summary needs no
    /// URIs).
    records: bool,
    requests: u64,
    responses: u64,
    ws_frames: u64,
    diagnostics: Vec<String>,
    /// Indexed by [`Dir::idx`].
    sides: [Side; 2],
    /// Requests not yet answered by a final response, oldest first.
    pending: VecDeque<Pending>,
    /// Requests that came while `pending` was full, not queued. Their responses come after
    /// those of every queued request and are left unpaired; requests stay unqueued until all
    /// of them are answered, so a response is never paired with a request it does not answer.
    unqueued: u64,
    /// Heads cut by a gap, per direction.
    heads_cut: [u64; 2],
    /// The HTTP/2 parser after an upgrade to h2c (boxed: most connections never have one).
    h2: Option<Box<H2Conn>>,
}

impl HttpConn {
    pub fn new(conn: u64) -> Self {
        HttpConn {
            conn,
            records: true,
            ..Default::default()
        }
    }

    /// A parser that only counts messages and frames, pushing no records and keeping no
    /// diagnostics (what the plain summary table needs, and all it shows).
    pub fn counting(conn: u64) -> Self {
        HttpConn {
            records: false,
            ..HttpConn::new(conn)
        }
    }

    /// In-order bytes of direction `dir`, delivered by the segment in `frame` captured at `ts`.
    pub fn on_data(
        &mut self,
        dir: Dir,
        data: &[u8],
        frame: u64,
        ts: Timestamp,
        out: &mut Vec<Record>,
    ) {
        self.arrive(dir, frame, ts);
        self.feed(dir, data, frame, ts, out);
    }

    /// New bytes on `dir`: note where they came from; a salvage worked out ahead for the
    /// bytes held before is no longer about them.
    fn arrive(&mut self, dir: Dir, frame: u64, ts: Timestamp) -> &mut Side {
        let side = &mut self.sides[dir.idx()];
        side.last_frame = frame;
        side.last_ts = ts;
        side.salvage = None;
        side
    }

    /// [`Self::on_data`] for bytes that are exactly one segment's payload, which
    /// [`parser::prepare`] parsed ahead (on the reader thread) as if a message started there.
    /// Where this direction does expect a message at the first byte, that parse is used
    /// instead of parsing again; otherwise the bytes go the usual way. Same records either way.
    pub fn on_data_prepared(
        &mut self,
        dir: Dir,
        data: &[u8],
        prep: &Prepared,
        frame: u64,
        ts: Timestamp,
        out: &mut Vec<Record>,
    ) {
        let side = self.arrive(dir, frame, ts);
        // The checks step_head and step_resync make before they parse from the first byte.
        let at_start = side.buf.is_empty()
            && side.role.is_none_or(|r| r == prep.kind)
            && match side.mode {
                Mode::Head => true,
                Mode::Resync => {
                    side.line_start && parser::start_line_at(data, side.role) == Some(true)
                }
                _ => false,
            };
        if at_start {
            match prep.outcome {
                Outcome::Complete(at) => {
                    if let Some(head) = at.head(data) {
                        side.mode = Mode::Head;
                        let used = head.len;
                        self.on_head(dir, head, frame, ts, out);
                        self.feed(dir, &data[used..], frame, ts, out);
                        return;
                    }
                }
                Outcome::Partial(salvage) => {
                    side.mode = Mode::Head;
                    side.buf.extend_from_slice(data);
                    side.salvage = Some((salvage, data.len()));
                    return;
                }
            }
        }
        self.feed(dir, data, frame, ts, out);
    }

    /// `len` bytes of direction `dir` were never captured: resynchronise at the next message start.
    pub fn on_gap(&mut self, dir: Dir, len: u64, frame: u64, out: &mut Vec<Record>) {
        if len == 0 {
            return;
        }
        let i = dir.idx();
        match &mut self.sides[i].mode {
            Mode::Head => {
                let held = self.sides[i].buf.len();
                if held > 0 {
                    // A snaplen shorter than the heads cuts every one of them: say it once,
                    // and count the rest.
                    self.heads_cut[i] += 1;
                    if self.heads_cut[i] == 1 {
                        self.diag(dir, frame, format_args!("header cut by a {len}-byte gap after {held} bytes; looking for the next message"));
                    }
                    self.salvage_first_line(dir, frame, out);
                }
                self.resync(dir);
            }
            Mode::Body(Body::Length(rem)) => {
                if len < *rem {
                    *rem -= len;
                } else {
                    let past = len - *rem;
                    self.finish_msg(dir, Some(frame), out);
                    if past > 0 {
                        self.resync(dir);
                    } else {
                        self.sides[i].mode = Mode::Head;
                    }
                }
            }
            Mode::Body(Body::Chunked(c)) => {
                if !c.skip(len) {
                    self.diag(
                        dir,
                        frame,
                        format_args!("chunked body framing lost in a {len}-byte gap"),
                    );
                    self.finish_msg(dir, None, out);
                    self.resync(dir);
                }
            }
            Mode::Body(Body::UntilClose) | Mode::Opaque => {}
            Mode::H2 => {
                if let Some(h2) = self.h2.as_mut() {
                    h2.on_gap(dir, len, frame, out);
                }
            }
            Mode::AwaitUpgrade => {
                self.diag(
                    dir,
                    frame,
                    format_args!("{len}-byte gap while waiting for the upgrade response"),
                );
                self.resync(dir);
            }
            Mode::Ws(p) => {
                let mut warnings = Vec::new();
                let mut frames = Vec::new();
                let ok = p.skip(len, &mut |e| collect(e, &mut frames, &mut warnings));
                self.push_ws(dir, frame, frames, warnings, out);
                if !ok {
                    self.diag(
                        dir,
                        frame,
                        format_args!("WebSocket framing lost in a {len}-byte gap"),
                    );
                    self.sides[i].mode = Mode::Opaque;
                }
            }
            Mode::Lost | Mode::Resync => self.resync(dir),
        }
    }

    /// Direction `dir` ended (FIN, RST or end of capture): completes bodies read until close.
    pub fn on_end(&mut self, dir: Dir, frame: u64, ts: Timestamp, out: &mut Vec<Record>) {
        let i = dir.idx();
        if self.sides[i].ended {
            return;
        }
        self.sides[i].ended = true;
        self.sides[i].last_frame = frame;
        self.sides[i].last_ts = ts;
        match &self.sides[i].mode {
            Mode::Head if !self.sides[i].buf.is_empty() => {
                let n = self.sides[i].buf.len();
                self.diag(
                    dir,
                    frame,
                    format_args!("stream ended inside a header ({n} bytes)"),
                );
            }
            Mode::Body(Body::UntilClose) => self.finish_msg(dir, Some(frame), out),
            Mode::Body(b) => {
                let what = match b {
                    Body::Length(rem) => format!("{rem} bytes before the end of the body"),
                    _ => "inside a chunked body".to_string(),
                };
                self.diag(dir, frame, format_args!("stream ended {what}"));
                self.finish_msg(dir, None, out);
            }
            Mode::Ws(p) if !p.at_boundary() => {
                self.diag(dir, frame, "stream ended inside a WebSocket frame")
            }
            Mode::H2 => {
                if let Some(h2) = self.h2.as_mut() {
                    h2.on_end(dir, frame, ts, out);
                }
            }
            // Held bytes wait for the other side's response to decide what they are.
            Mode::AwaitUpgrade => return,
            _ => {}
        }
        self.sides[i].mode = Mode::Opaque;
        self.sides[i].buf = Vec::new();
        // No response will come to release a side waiting for an upgrade: parse what it holds.
        let other = dir.reverse();
        if self.sides[other.idx()].role == Some(Kind::Request)
            && matches!(self.sides[other.idx()].mode, Mode::AwaitUpgrade)
        {
            self.switch_mode(other, Mode::Head, out);
            if self.sides[other.idx()].ended {
                self.sides[other.idx()].ended = false;
                self.on_end(other, frame, ts, out);
            }
        }
    }

    /// The capture started inside this connection (no SYN seen): its first bytes may sit in
    /// the middle of a message, so both directions start by looking for a message start
    /// instead of declaring the stream non-HTTP. Call before the first `on_data`.
    pub fn start_midstream(&mut self) {
        for dir in [Dir::C2s, Dir::S2c] {
            self.resync(dir);
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests
    }
    pub fn responses(&self) -> u64 {
        self.responses
    }
    pub fn ws_frames(&self) -> u64 {
        self.ws_frames
    }
    /// The HTTP/2 parser the connection was upgraded to (`Upgrade: h2c`), if it was.
    pub fn take_h2(&mut self) -> Option<Box<H2Conn>> {
        self.h2.take()
    }
    /// Counted problems (parse errors, caps hit), one line each.
    pub fn diagnostics(&self) -> &[String] {
        &self.diagnostics
    }

    /// Approximate heap bytes held, its own struct included (for the tracker's memory budget):
    /// the buffers' and queue's capacities, and a record under construction per direction.
    pub fn footprint(&self) -> usize {
        let mut n = std::mem::size_of::<Self>()
            + self.pending.capacity() * std::mem::size_of::<Pending>()
            + self.diagnostics.capacity() * std::mem::size_of::<String>();
        n += self.h2.as_ref().map_or(0, |h| h.footprint());
        for s in &self.sides {
            n += s.buf.capacity();
            if let Some(Msg { rec: Some(_), .. }) = &s.msg {
                // The record's struct and, roughly, its URI, headers and body sample.
                n += std::mem::size_of::<HttpRec>() + 256;
            }
        }
        n
    }

    /// The diagnostics, handed over when the connection is done, with a last line per
    /// direction counting heads cut by gaps after the first.
    pub fn take_diagnostics(&mut self) -> Vec<String> {
        let mut d = std::mem::take(&mut self.diagnostics);
        if !self.records {
            return d;
        }
        for dir in [Dir::C2s, Dir::S2c] {
            let more = self.heads_cut[dir.idx()].saturating_sub(1);
            if more > 0 {
                d.push(format!(
                    "http {}: {more} more headers cut by gaps (a snaplen shorter than the headers?)",
                    dir.as_str()
                ));
            }
        }
        d
    }

    /// Once both directions have ended and neither is left waiting for an upgrade answer, the
    /// parser is done: every side ignores what may still come ([`Mode::Opaque`]: late bytes,
    /// gaps, ends change nothing it reports). Then (and unless an HTTP/2 part remains, which
    /// is finished later) what the connection's record takes from it, so the parser itself can
    /// go while the connection lingers in the table (issue 26). `None` while it may still change.
    pub fn settle(&mut self) -> Option<Settled> {
        let done = self
            .sides
            .iter()
            .all(|s| s.ended && matches!(s.mode, Mode::Opaque));
        if !done || self.h2.is_some() {
            return None;
        }
        Some(Settled {
            requests: self.requests,
            responses: self.responses,
            ws_frames: self.ws_frames,
            diagnostics: self.take_diagnostics(),
        })
    }

    // ---- the per-mode steps ------------------------------------------------------------------

    /// Run `data` through direction `dir`'s modes until all of it is used.
    fn feed(
        &mut self,
        dir: Dir,
        mut data: &[u8],
        frame: u64,
        ts: Timestamp,
        out: &mut Vec<Record>,
    ) {
        while !data.is_empty() {
            let i = dir.idx();
            let used = match &mut self.sides[i].mode {
                Mode::Head => self.step_head(dir, data, frame, ts, out),
                Mode::Body(_) => self.step_body(dir, data, frame, out),
                Mode::AwaitUpgrade => {
                    let side = &mut self.sides[i];
                    let room = parser::MAX_HEAD.saturating_sub(side.buf.len());
                    if data.len() > room {
                        self.diag(
                            dir,
                            frame,
                            "more than 64 KiB sent before the upgrade response; stopped parsing",
                        );
                        self.sides[i].buf = Vec::new();
                        self.sides[i].mode = Mode::Lost;
                    } else {
                        side.buf.extend_from_slice(data);
                    }
                    data.len()
                }
                Mode::Ws(p) => {
                    let mut warnings = Vec::new();
                    let mut frames = Vec::new();
                    let r = p.feed(data, &mut |e| collect(e, &mut frames, &mut warnings));
                    self.push_ws(dir, frame, frames, warnings, out);
                    if let Err(e) = r {
                        self.diag(dir, frame, format_args!("WebSocket: {e}; stopped parsing"));
                        self.sides[i].mode = Mode::Opaque;
                    }
                    data.len()
                }
                Mode::H2 => {
                    if let Some(h2) = self.h2.as_mut() {
                        h2.on_data(dir, data, frame, ts, out);
                    }
                    data.len()
                }
                Mode::Opaque | Mode::Lost => data.len(),
                Mode::Resync => self.step_resync(dir, data, frame, ts, out),
            };
            if used == 0 {
                // Every step consumes or changes mode; this guards against a loop regardless.
                self.diag(dir, frame, "internal: parser made no progress; stopped");
                self.sides[i].mode = Mode::Lost;
                return;
            }
            data = &data[used.min(data.len())..];
        }
    }

    fn step_head(
        &mut self,
        dir: Dir,
        data: &[u8],
        frame: u64,
        ts: Timestamp,
        out: &mut Vec<Record>,
    ) -> usize {
        let i = dir.idx();
        let side = &mut self.sides[i];
        if side.buf.is_empty() {
            // Empty lines between messages are ignored (RFC 9112 §2.2).
            let blank = data
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            if blank > 0 {
                return blank;
            }
        }
        let old = side.buf.len();
        // A head split over segments is gathered in the side's buffer, taken out while parsed
        // so the head can borrow it as the rest of the parser changes state.
        let mut held = std::mem::take(&mut side.buf);
        let appended = if old > 0 {
            let n = data
                .len()
                .min(parser::MAX_HEAD + 1 - old.min(parser::MAX_HEAD));
            held.extend_from_slice(&data[..n]);
            n
        } else {
            0
        };
        let role = side.role;
        let input: &[u8] = if old > 0 { &held } else { data };
        // Sniffing looks at the first few bytes only: it catches non-HTTP at once, while the
        // full parse waits for an empty line, so a head trickling in byte by byte costs O(n).
        let kind = match (parser::sniff(input), role) {
            (Some(Err(e)), _) => Err(Some(e)),
            (Some(Ok(k)), Some(role)) if k != role => Err(Some(format!(
                "a {} where {}s were flowing",
                kind_name(k),
                kind_name(role)
            ))),
            (Some(Ok(k)), _) => Ok(k),
            (None, Some(role)) => Ok(role),
            (None, None) => Err(None),
        };
        let parsed = match kind {
            Ok(k) if parser::may_complete(input, old) => parser::parse_head(input, k),
            Ok(_) | Err(None) => Parsed::Partial,
            Err(Some(e)) => Parsed::Invalid(e),
        };
        let consumed_all = if old > 0 { appended } else { data.len() };
        match parsed {
            Parsed::Partial => {
                if input.len() > parser::MAX_HEAD {
                    self.sides[i].mode = Mode::Lost;
                    self.diag(
                        dir,
                        frame,
                        "header longer than 64 KiB without an end; stopped parsing until a gap",
                    );
                } else if old == 0 {
                    self.sides[i].buf.extend_from_slice(data);
                } else {
                    self.sides[i].buf = held;
                }
                consumed_all
            }
            Parsed::Invalid(e) => {
                let n = self.sides[i].messages;
                self.sides[i].mode = Mode::Lost;
                if n == 0 {
                    self.diag(
                        dir,
                        frame,
                        format_args!("not HTTP ({e}); stopped parsing until a gap"),
                    );
                } else {
                    self.diag(
                        dir,
                        frame,
                        format_args!(
                            "garbage after message {n} ({e}); stopped parsing until a gap"
                        ),
                    );
                }
                consumed_all
            }
            Parsed::Complete(head) => {
                let used = head.len - old;
                self.on_head(dir, head, frame, ts, out);
                // Keep the buffer's capacity for the next split head.
                if old > 0 && self.sides[i].buf.is_empty() {
                    held.clear();
                    self.sides[i].buf = held;
                }
                used
            }
        }
    }

    fn step_body(&mut self, dir: Dir, data: &[u8], frame: u64, out: &mut Vec<Record>) -> usize {
        let i = dir.idx();
        let side = &mut self.sides[i];
        let Mode::Body(body) = &mut side.mode else {
            return 0;
        };
        let (used, payload, done) = match body {
            Body::Length(rem) => {
                let n = (data.len() as u64).min(*rem);
                *rem -= n;
                (n as usize, n, *rem == 0)
            }
            Body::UntilClose => (data.len(), data.len() as u64, false),
            Body::Chunked(c) => match c.feed(data) {
                Ok(f) => (f.consumed, f.payload, f.done),
                Err(e) => {
                    self.diag(
                        dir,
                        frame,
                        format_args!("chunked body: {e}; stopped parsing until a gap"),
                    );
                    self.finish_msg(dir, None, out);
                    self.sides[i].mode = Mode::Lost;
                    return data.len();
                }
            },
        };
        if let Some(m) = &mut side.msg {
            m.body_len += payload;
        }
        if done {
            self.finish_msg(dir, Some(frame), out);
            self.sides[i].mode = Mode::Head;
        }
        used
    }

    fn step_resync(
        &mut self,
        dir: Dir,
        data: &[u8],
        frame: u64,
        ts: Timestamp,
        out: &mut Vec<Record>,
    ) -> usize {
        let side = &mut self.sides[dir.idx()];
        let role = side.role;
        if side.buf.is_empty() {
            // Nothing held (the common case: a gap ended at a segment boundary): search the
            // segment in place and hand the message start straight to the head parser.
            let mut at = if side.line_start {
                Some(0)
            } else {
                next_line(data, 0)
            };
            while let Some(c) = at {
                match parser::start_line_at(&data[c..], role) {
                    Some(false) => at = next_line(data, c),
                    None => {
                        side.buf.extend_from_slice(&data[c..]);
                        side.line_start = true;
                        return data.len();
                    }
                    Some(true) => {
                        side.mode = Mode::Head;
                        return c + self.step_head(dir, &data[c..], frame, ts, out);
                    }
                }
            }
            side.line_start = false;
            return data.len();
        }
        // A partial line is held: look again from its start, with the new bytes after it.
        side.buf.extend_from_slice(data);
        let mut at = if side.line_start {
            Some(0)
        } else {
            next_line(&side.buf, 0)
        };
        while let Some(c) = at {
            match parser::start_line_at(&side.buf[c..], role) {
                Some(false) => at = next_line(&side.buf, c),
                None => {
                    side.buf.drain(..c);
                    side.line_start = true;
                    return data.len();
                }
                Some(true) => {
                    let rest = side.buf.split_off(c);
                    side.buf = Vec::new();
                    side.mode = Mode::Head;
                    self.feed(dir, &rest, frame, ts, out);
                    return data.len();
                }
            }
        }
        side.buf.clear();
        side.line_start = false;
        data.len()
    }

    // ---- messages ----------------------------------------------------------------------------

    /// A complete head: record what it says and choose how its body ends.
    fn on_head(
        &mut self,
        dir: Dir,
        head: Head<'_>,
        frame: u64,
        ts: Timestamp,
        out: &mut Vec<Record>,
    ) {
        let i = dir.idx();
        self.sides[i].role = Some(head.kind());
        self.sides[i].messages += 1;
        if let Some(at) = self.sides[i].closed_at {
            self.diag(
                dir,
                frame,
                format_args!("message after the Connection: close of frame {at}"),
            );
        }
        if head.close {
            self.sides[i].closed_at = Some(frame);
        }
        // A counting parser (the plain summary's) builds no record: it only needs the framing.
        let mut rec = self.records.then(|| {
            Box::new(HttpRec {
                conn: self.conn,
                dir,
                frame,
                ts: Some(ts.as_secs_f64()),
                version: Cow::Borrowed(head.version),
                content_length: head.content_length,
                chunked: head.chunked,
                ..HttpRec::default()
            })
        });
        // Mode after a message without a body.
        let mut after = Mode::Head;
        // What the other side switches to, once this record is out.
        let mut other_mode = None;
        let body = match head.kind() {
            Kind::Request => {
                let method = intern(head.method.unwrap_or_default(), &METHODS);
                if let Some(rec) = rec.as_mut() {
                    rec.method = Some(method.clone());
                    rec.uri = head.uri.map(str::to_owned);
                    rec.carries = Cow::Borrowed(carried_names(head.carries));
                }
                if head.upgrade_websocket || head.upgrade_h2c || method == "CONNECT" {
                    after = Mode::AwaitUpgrade;
                }
                if self.unqueued == 0 && self.pending.len() < MAX_PENDING {
                    self.pending.push_back(Pending { method, frame });
                } else {
                    if self.unqueued == 0 {
                        self.diag(
                            dir,
                            frame,
                            format_args!(
                                "more than {MAX_PENDING} requests unanswered; pairing stops \
                                 until they are answered (records marked unpaired)"
                            ),
                        );
                    }
                    self.unqueued += 1;
                    if let Some(rec) = rec.as_mut() {
                        rec.unpaired = true;
                    }
                }
                head.request_body()
            }
            Kind::Response => {
                let status = head.status.unwrap_or(0);
                if let Some(rec) = rec.as_mut() {
                    rec.status = head.status;
                    rec.reason = head.reason.map(|r| intern(r, &REASONS));
                }
                // 1xx other than 101 is interim: the request still awaits its final response.
                let interim = (100..200).contains(&status) && status != 101;
                let req = if interim {
                    self.pending.front().cloned()
                } else {
                    self.pending.pop_front()
                };
                // Past the queue: a final response to one of the unqueued requests.
                let unpaired = req.is_none() && self.unqueued > 0;
                if unpaired && !interim {
                    self.unqueued -= 1;
                }
                // A deep burst answered: give its memory back rather than hold it for the
                // connection's life.
                if self.pending.is_empty() && self.pending.capacity() > 4096 {
                    self.pending = VecDeque::new();
                }
                if let Some(rec) = rec.as_mut() {
                    rec.request_frame = req.as_ref().map(|r| r.frame);
                    rec.unpaired = unpaired;
                }
                let method = req.as_ref().map(|r| r.method.as_ref());
                if status == 101 {
                    // RFC 9110 §15.2.2: the protocol changes right after this response's head.
                    if head.upgrade_websocket {
                        if let Some(rec) = rec.as_mut() {
                            rec.upgrade = Some("websocket".into());
                        }
                        after = Mode::Ws(WsParser::new());
                        other_mode = Some(Mode::Ws(WsParser::new()));
                    } else if head.upgrade_h2c {
                        // RFC 7540 §3.2: the server's HTTP/2 starts right after this head, the
                        // client's with the preface; the request is stream 1.
                        if let Some(rec) = rec.as_mut() {
                            rec.upgrade = Some("h2c".into());
                        }
                        let req_frame = req.as_ref().map_or(0, |r| r.frame);
                        self.h2 = Some(Box::new(H2Conn::upgraded(
                            self.conn,
                            self.records,
                            req_frame,
                            true,
                        )));
                        after = Mode::H2;
                        other_mode = Some(Mode::H2);
                    } else {
                        after = Mode::Opaque;
                        other_mode = Some(Mode::Opaque);
                    }
                } else if method == Some("CONNECT") && (200..300).contains(&status) {
                    after = Mode::Opaque;
                    other_mode = Some(Mode::Opaque);
                } else if !interim {
                    other_mode = Some(Mode::Head);
                }
                head.response_body(method)
            }
        };
        self.sides[i].msg = Some(Msg {
            request: head.kind() == Kind::Request,
            body_len: 0,
            rec,
        });
        match body {
            BodyKind::Empty => {
                self.finish_msg(dir, Some(frame), out);
                self.sides[i].mode = after;
            }
            BodyKind::Length(n) => self.sides[i].mode = Mode::Body(Body::Length(n)),
            BodyKind::Chunked => self.sides[i].mode = Mode::Body(Body::Chunked(Chunked::new())),
            BodyKind::UntilClose => self.sides[i].mode = Mode::Body(Body::UntilClose),
        }
        if let Some(mode) = other_mode {
            self.switch_mode(dir.reverse(), mode, out);
        }
    }

    /// Push the message in progress on `dir`; `end_frame` is None when it was cut short.
    fn finish_msg(&mut self, dir: Dir, end_frame: Option<u64>, out: &mut Vec<Record>) {
        if let Some(msg) = self.sides[dir.idx()].msg.take() {
            if msg.request {
                self.requests += 1;
            } else {
                self.responses += 1;
            }
            if let Some(mut rec) = msg.rec {
                rec.end_frame = end_frame;
                rec.body_len = msg.body_len;
                out.push(Record::Http(rec));
            }
        }
    }

    /// The other side's response decided what a side waiting for an upgrade carries: switch it
    /// (if it is waiting, or idle between messages) and parse what it held.
    fn switch_mode(&mut self, dir: Dir, mode: Mode, out: &mut Vec<Record>) {
        let side = &mut self.sides[dir.idx()];
        let switchable = match side.mode {
            Mode::AwaitUpgrade => true,
            // A side idle between messages switches too (an upgrade it did not ask for).
            Mode::Head => !matches!(mode, Mode::Head),
            _ => false,
        };
        if !switchable {
            return;
        }
        let held = std::mem::take(&mut side.buf);
        side.mode = mode;
        let (frame, ts) = (side.last_frame, side.last_ts);
        if !held.is_empty() {
            self.feed(dir, &held, frame, ts, out);
        }
    }

    /// A head cut by a gap (typically a snaplen shorter than the head) still names its message
    /// when its first line arrived whole: report that message with the fields of that line,
    /// as Wireshark does, and count no body for it.
    fn salvage_first_line(&mut self, dir: Dir, _gap_frame: u64, out: &mut Vec<Record>) {
        let i = dir.idx();
        let buf = std::mem::take(&mut self.sides[i].buf);
        let salvaged = match self.sides[i].salvage.take() {
            Some((ahead, len)) if len == buf.len() => ahead,
            _ => parser::salvage(&buf),
        };
        if let Some(head) = salvaged.as_ref().and_then(|h| h.head(&buf)) {
            let (at, ts) = (self.sides[i].last_frame, self.sides[i].last_ts);
            self.on_head(dir, head, at, ts, out);
            // The rest of the head (and any body length it declared) was never seen.
            if matches!(self.sides[i].mode, Mode::Body(_)) || self.sides[i].msg.is_some() {
                self.finish_msg(dir, None, out);
            }
        }
    }

    fn resync(&mut self, dir: Dir) {
        let side = &mut self.sides[dir.idx()];
        side.buf = Vec::new();
        side.salvage = None;
        side.line_start = true;
        side.mode = Mode::Resync;
    }

    fn push_ws(
        &mut self,
        dir: Dir,
        frame: u64,
        frames: Vec<ws::WsFrame>,
        warnings: Vec<String>,
        out: &mut Vec<Record>,
    ) {
        for f in frames {
            self.ws_frames += 1;
            if !self.records {
                continue;
            }
            out.push(Record::Ws(WsRec {
                conn: self.conn,
                dir,
                frame,
                opcode: f.opcode,
                fin: f.fin,
                masked: f.masked,
                len: f.len,
                close_code: f.close_code,
            }));
        }
        for w in warnings {
            self.diag(dir, frame, format_args!("WebSocket: {w}"));
        }
    }

    /// Formats `what` only while under the limit: a snaplen-cut capture raises the same
    /// diagnostic for every message.
    fn diag(&mut self, dir: Dir, frame: u64, what: impl std::fmt::Display) {
        if !self.records {
            return; // the plain summary shows no diagnostics: formatting them is wasted
        }
        match self.diagnostics.len() {
            n if n < MAX_DIAGNOSTICS => self
                .diagnostics
                .push(format!("http {} frame {frame}: {what}", dir.as_str())),
            MAX_DIAGNOSTICS => self
                .diagnostics
                .push("http: further diagnostics on this connection suppressed".into()),
            _ => {}
        }
    }
}

/// Common methods and reasons, kept without an allocation per message.
const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];
const REASONS: [&str; 8] = [
    "OK",
    "Not Modified",
    "Not Found",
    "Switching Protocols",
    "No Content",
    "Continue",
    "Moved Permanently",
    "Found",
];

fn intern(s: &str, table: &[&'static str]) -> Cow<'static, str> {
    match table.iter().find(|t| **t == s) {
        Some(t) => Cow::Borrowed(t),
        None => Cow::Owned(s.to_owned()),
    }
}

/// Where the line after the one holding `buf[from]` starts (just past the next LF).
fn next_line(buf: &[u8], from: usize) -> Option<usize> {
    memchr::memchr(b'\n', &buf[from..]).map(|p| from + p + 1)
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::Request => "request",
        Kind::Response => "response",
    }
}

fn collect(e: WsEvent, frames: &mut Vec<ws::WsFrame>, warnings: &mut Vec<String>) {
    match e {
        WsEvent::Frame(f) => frames.push(f),
        WsEvent::Warning(w) => warnings.push(w),
    }
}

/// The names of the carried fields, borrowed from a table of the eight combinations.
fn carried_names(carries: [bool; 3]) -> &'static [crate::record::Name] {
    crate::record::carried_names(&parser::CARRIED, carries)
}

#[cfg(test)]
mod tests;
