//! HTTP/2 (RFC 9113) on reassembled byte streams: where stateless HTTP meets a stateful
//! connection.
//!
//! [`H2Conn`] takes one connection's in-order bytes per direction, like
//! [`crate::http::HttpConn`] (`on_data`, `on_gap`, `on_end`), and emits an `h2` [`Record`] per
//! frame and an `http` record (`version: "2"`) per message. The state it keeps is the state
//! HTTP/2 needs and HTTP/1 does not:
//!
//! * every stream's state at each endpoint (§5.1: idle, reserved, open, half-closed, closed),
//!   driven by HEADERS, PUSH_PROMISE, END_STREAM and RST_STREAM;
//! * each direction's HPACK dynamic table ([`hpack`]), which both ends must keep in step: a
//!   header block lost in a gap (or a capture that began mid-connection) leaves the table
//!   unknown, and every later block of that direction is reported undecodable, never guessed;
//! * flow-control windows per stream and per connection (§6.9), with
//!   SETTINGS_INITIAL_WINDOW_SIZE and WINDOW_UPDATE;
//! * SETTINGS_HEADER_TABLE_SIZE, which bounds the size updates the peer's encoder may make.
//!
//! How a connection is found to be HTTP/2: the client's preface (prior knowledge, chosen by
//! the engine when a connection's first bytes are `PRI `), an HTTP/1.1 `101` to
//! `Upgrade: h2c` (the HTTP/1 parser hands over, [`H2Conn::upgraded`]), or, for a capture
//! that starts mid-connection, a chain of plausible frame headers ([`frame::plausible_chain`],
//! [`H2Conn::midstream`]).
//!
//! | file | what |
//! |------|------|
//! | [`frame`] | frame headers, payloads, padding, names |
//! | [`hpack`] | one direction's HPACK decoder and its table's size |
//! | `stream.rs` | one stream: its state per endpoint, windows, the message in progress |

pub mod frame;
pub mod hpack;
mod stream;
#[cfg(test)]
mod tests;

use crate::record::{Dir, H2Rec, H2Summary, HttpRec, Record};
use crate::types::Timestamp;
use frame::{FrameHeader, HEADER_LEN, PREFACE};
use hpack::Hpack;
use std::borrow::Cow;
use std::collections::HashMap;
use stream::{Msg, Stream};

/// Diagnostics kept per connection.
const MAX_DIAGNOSTICS: usize = 32;
/// Largest frame payload held to be parsed (control frames and header blocks); longer
/// frames are counted and skipped. The default SETTINGS_MAX_FRAME_SIZE is 16 KiB.
const MAX_HELD: u32 = 1 << 20;
/// Largest header block gathered across CONTINUATION frames.
const MAX_BLOCK: usize = 1 << 20;
/// Closed streams forgotten once this many are kept (later frames on them still say closed).
const MAX_STREAMS: usize = 4096;
/// Streams kept at most, open or not: past it, those without a message in progress are
/// forgotten (their later frames report no state).
const HARD_MAX_STREAMS: usize = 4 * MAX_STREAMS;
/// The initial flow-control window (§6.9.2).
const DEFAULT_WINDOW: i64 = 65_535;

/// How HTTP/2 began on this connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    PriorKnowledge,
    Upgrade,
    Midstream,
}

impl Start {
    fn name(self) -> &'static str {
        match self {
            Start::PriorKnowledge => "prior_knowledge",
            Start::Upgrade => "upgrade",
            Start::Midstream => "midstream",
        }
    }
}

/// Where a direction's reader is in its byte stream.
#[derive(Debug)]
enum Rx {
    /// Matching the client preface; the count of its bytes seen.
    Preface(usize),
    /// Gathering a frame header (`hdr_len` bytes of it so far).
    Header,
    /// Reading the payload of `hdr`: `left` bytes to come, held in `buf` when `keep`.
    Payload {
        hdr: FrameHeader,
        left: u32,
        keep: bool,
    },
    /// Looking for a frame start at the next chunk (after a gap, or mid-connection).
    Resync,
    /// Not HTTP/2 after all (a wrong preface): bytes ignored.
    Lost,
}

/// A header block gathered from HEADERS or PUSH_PROMISE and its CONTINUATIONs.
#[derive(Debug)]
struct Block {
    stream: u32,
    /// PUSH_PROMISE: the stream it promises (the block is that stream's request).
    promised: Option<u32>,
    end_stream: bool,
    buf: Vec<u8>,
}

/// One direction.
#[derive(Debug)]
struct Side {
    rx: Rx,
    hdr: [u8; HEADER_LEN],
    hdr_len: usize,
    buf: Vec<u8>,
    /// First payload byte of a skipped frame (a DATA frame's pad length).
    first: Option<u8>,
    /// Payload bytes of the current frame lost in gaps.
    lost: u64,
    block: Option<Block>,
    /// Decodes the header blocks this direction sends.
    hpack: Hpack,
    frames: u64,
    /// What this side may still send on the connection (the peer's receive window).
    conn_window: i64,
    /// SETTINGS_INITIAL_WINDOW_SIZE this side advertised (the peer's initial stream send
    /// window).
    initial_window: i64,
    /// SETTINGS_HEADER_TABLE_SIZE this side advertised and the peer has not yet acknowledged.
    table_pending: Option<u32>,
}

impl Side {
    fn new(rx: Rx, hpack: Hpack) -> Self {
        Side {
            rx,
            hdr: [0; HEADER_LEN],
            hdr_len: 0,
            buf: Vec::new(),
            first: None,
            lost: 0,
            block: None,
            hpack,
            frames: 0,
            conn_window: DEFAULT_WINDOW,
            initial_window: DEFAULT_WINDOW,
            table_pending: None,
        }
    }
}

/// One connection's HTTP/2 state, both directions.
#[derive(Debug)]
pub struct H2Conn {
    conn: u64,
    /// Push `h2` records (frame by frame) as well as `http` ones.
    frames_out: bool,
    /// Push `http` records; a counting parser only counts.
    records: bool,
    start: Start,
    sides: [Side; 2],
    streams: HashMap<u32, Stream>,
    /// Highest stream id opened or reserved, client-initiated (odd) and server-initiated (even):
    /// a stream not in `streams` above it is idle, below it closed (and forgotten).
    highest: [u32; 2],
    streams_opened: u64,
    streams_reset: u64,
    /// Streams were forgotten open ([`HARD_MAX_STREAMS`]): their states are unknown.
    forgot_open: bool,
    /// Closed streams are swept out when `streams` grows past this.
    next_sweep: usize,
    requests: u64,
    responses: u64,
    diagnostics: Vec<String>,
}

impl H2Conn {
    fn with(conn: u64, records: bool, start: Start) -> Self {
        let (c_rx, s_rx, known) = match start {
            Start::PriorKnowledge => (Rx::Preface(0), Rx::Header, true),
            Start::Upgrade => (Rx::Preface(0), Rx::Header, true),
            Start::Midstream => (Rx::Resync, Rx::Resync, false),
        };
        let hp = || {
            if known {
                Hpack::new()
            } else {
                Hpack::unknown()
            }
        };
        H2Conn {
            conn,
            frames_out: records,
            records,
            start,
            sides: [Side::new(c_rx, hp()), Side::new(s_rx, hp())],
            streams: HashMap::new(),
            highest: [0; 2],
            streams_opened: 0,
            streams_reset: 0,
            forgot_open: false,
            next_sweep: MAX_STREAMS,
            requests: 0,
            responses: 0,
            diagnostics: Vec::new(),
        }
    }

    /// A connection whose client sends the preface first: prior knowledge in cleartext, and
    /// also HTTP/2 over TLS (ALPN `h2`), whose decrypted bytes start with the same preface.
    /// `records`: push records (otherwise only count, as the plain summary needs).
    pub fn prior_knowledge(conn: u64, records: bool) -> Self {
        H2Conn::with(conn, records, Start::PriorKnowledge)
    }

    /// After an HTTP/1.1 `101` to `Upgrade: h2c` (RFC 7540 §3.2): the server speaks HTTP/2
    /// from the byte after the 101's head, the client sends the preface next, and the
    /// upgrade request is stream 1, half-closed on the client's side; its response comes on
    /// stream 1. `request_frame`: the HTTP/1.1 request's frame, for the response's record.
    pub fn upgraded(conn: u64, records: bool, request_frame: u64, request_ended: bool) -> Self {
        let mut c = H2Conn::with(conn, records, Start::Upgrade);
        let mut s = Stream::new(1, c.sides[1].initial_window, c.sides[0].initial_window);
        s.opened = true;
        s.ended[Dir::C2s.idx()] = request_ended;
        s.request_frame = Some(request_frame);
        c.streams.insert(1, s);
        c.streams_opened = 1;
        c.highest[0] = 1;
        c
    }

    /// A connection picked up mid-way whose bytes look like HTTP/2 frames: frames are read
    /// from the first plausible header on; header blocks are undecodable (tables unknown).
    pub fn midstream(conn: u64, records: bool) -> Self {
        H2Conn::with(conn, records, Start::Midstream)
    }

    /// In-order bytes of direction `dir`, delivered by the segment in `frame` captured at `ts`.
    pub fn on_data(
        &mut self,
        dir: Dir,
        mut data: &[u8],
        frame: u64,
        ts: Timestamp,
        out: &mut Vec<Record>,
    ) {
        let i = dir.idx();
        while !data.is_empty() {
            let side = &mut self.sides[i];
            match &mut side.rx {
                Rx::Preface(seen) => {
                    let n = (PREFACE.len() - *seen).min(data.len());
                    if data[..n] != PREFACE[*seen..*seen + n] {
                        side.rx = Rx::Lost;
                        self.diag(dir, frame, "not the HTTP/2 client preface; stopped parsing");
                        return;
                    }
                    *seen += n;
                    if *seen == PREFACE.len() {
                        side.rx = Rx::Header;
                    }
                    data = &data[n..];
                }
                Rx::Header => {
                    let n = (HEADER_LEN - side.hdr_len).min(data.len());
                    side.hdr[side.hdr_len..side.hdr_len + n].copy_from_slice(&data[..n]);
                    side.hdr_len += n;
                    data = &data[n..];
                    if side.hdr_len == HEADER_LEN {
                        side.hdr_len = 0;
                        let hdr = FrameHeader::parse(&side.hdr);
                        // Control frames and header blocks are held to be parsed; DATA and
                        // unknown types only counted.
                        let keep = hdr.ftype != frame::DATA
                            && hdr.ftype <= frame::CONTINUATION
                            && hdr.length <= MAX_HELD;
                        side.buf.clear();
                        side.first = None;
                        side.lost = 0;
                        side.rx = Rx::Payload {
                            hdr,
                            left: hdr.length,
                            keep,
                        };
                        if hdr.length == 0 {
                            self.frame_done(dir, frame, ts, out);
                        }
                    }
                }
                Rx::Payload { hdr, left, keep } => {
                    let n = (*left as usize).min(data.len());
                    if *keep {
                        side.buf.extend_from_slice(&data[..n]);
                    } else if side.first.is_none() && *left == hdr.length && n > 0 {
                        side.first = Some(data[0]);
                    }
                    *left -= n as u32;
                    data = &data[n..];
                    if *left == 0 {
                        self.frame_done(dir, frame, ts, out);
                    }
                }
                Rx::Resync => {
                    if frame::plausible_chain(data) {
                        side.rx = Rx::Header;
                        side.hdr_len = 0;
                    } else {
                        return;
                    }
                }
                Rx::Lost => return,
            }
        }
    }

    /// `len` bytes of direction `dir` were never captured.
    pub fn on_gap(&mut self, dir: Dir, len: u64, frame: u64, _out: &mut Vec<Record>) {
        if len == 0 {
            return;
        }
        let side = &mut self.sides[dir.idx()];
        match &mut side.rx {
            // Inside a DATA frame's payload: the frame boundary and the HPACK table survive.
            Rx::Payload {
                hdr,
                left,
                keep: false,
            } if hdr.ftype == frame::DATA && (len as u128) < *left as u128 => {
                *left -= len as u32;
                side.lost += len;
            }
            Rx::Lost | Rx::Resync => {}
            _ => {
                // A header block may have been lost: the table is unknown from here on.
                let was_known = side.hpack.known();
                side.hpack.lose();
                side.block = None;
                side.rx = Rx::Resync;
                side.hdr_len = 0;
                side.buf = Vec::new();
                let what = if was_known {
                    "; HPACK table unknown from here on"
                } else {
                    ""
                };
                self.diag(
                    dir,
                    frame,
                    format_args!("{len}-byte gap lost the frame boundary{what}"),
                );
            }
        }
    }

    /// Direction `dir` ended (FIN, RST or end of capture).
    pub fn on_end(&mut self, dir: Dir, frame: u64, _ts: Timestamp, out: &mut Vec<Record>) {
        let side = &mut self.sides[dir.idx()];
        match side.rx {
            Rx::Payload { hdr, left, .. } => {
                let name = frame::type_name(hdr.ftype);
                self.diag(
                    dir,
                    frame,
                    format_args!("stream ended inside a {name} frame ({left} bytes missing)"),
                );
            }
            Rx::Header if side.hdr_len > 0 => {
                self.diag(dir, frame, "stream ended inside a frame header")
            }
            _ => {}
        }
        self.sides[dir.idx()].rx = Rx::Lost;
        // Messages this side never finished: out with what they have, cut short.
        let mut ids: Vec<u32> = self
            .streams
            .iter()
            .filter(|(_, s)| s.msg[dir.idx()].is_some())
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        for id in ids {
            self.finish_msg(dir, id, None, out);
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests
    }
    pub fn responses(&self) -> u64 {
        self.responses
    }

    /// Approximate heap bytes held, for the tracker's memory budget. Out of line: an HTTP/1
    /// connection's footprint (counted every segment) only tests that it has none.
    #[inline(never)]
    pub fn footprint(&self) -> usize {
        let mut n = std::mem::size_of::<Self>()
            + self.streams.capacity() * (std::mem::size_of::<Stream>() + 8);
        for s in &self.sides {
            n += s.buf.capacity() + s.block.as_ref().map_or(0, |b| b.buf.capacity());
            n += s.hpack.table().map_or(s.hpack.max(), |(size, _)| size);
        }
        n
    }

    /// The connection's summary (for its `conn` record) and its diagnostics.
    pub fn finish(&mut self) -> (H2Summary, Vec<String>) {
        let pair = |f: &dyn Fn(&Side) -> u64| [f(&self.sides[0]), f(&self.sides[1])];
        let table = |i: usize| self.sides[i].hpack.table();
        let summary = H2Summary {
            start: Cow::Borrowed(self.start.name()),
            frames: pair(&|s| s.frames),
            streams: self.streams_opened,
            streams_reset: self.streams_reset,
            hpack_size: [0, 1].map(|i| table(i).map(|t| t.0 as u64)),
            hpack_entries: [0, 1].map(|i| table(i).map(|t| t.1 as u64)),
            hpack_max: pair(&|s| s.hpack.max() as u64),
            header_blocks: pair(&|s| s.hpack.decoded),
            undecodable_blocks: pair(&|s| s.hpack.undecodable),
            conn_window: (self.start != Start::Midstream)
                .then_some([self.sides[0].conn_window, self.sides[1].conn_window]),
        };
        (summary, std::mem::take(&mut self.diagnostics))
    }

    // ---- frames --------------------------------------------------------------------------

    /// The frame whose header and payload `dir` has just completed, in `frame`.
    fn frame_done(&mut self, dir: Dir, frame: u64, ts: Timestamp, out: &mut Vec<Record>) {
        let i = dir.idx();
        let side = &mut self.sides[i];
        let Rx::Payload { hdr, .. } = side.rx else {
            return;
        };
        side.rx = Rx::Header;
        side.frames += 1;
        let buf = std::mem::take(&mut side.buf);
        let first = side.first.take().map(|b| [b]);
        let payload: &[u8] = match &first {
            Some(b) if hdr.ftype == frame::DATA => b,
            _ => &buf,
        };
        let mut rec = H2Rec {
            conn: self.conn,
            dir,
            frame,
            frame_type: hdr.ftype,
            name: Cow::Borrowed(frame::type_name(hdr.ftype)),
            flags: hdr.flags,
            length: hdr.length,
            stream: hdr.stream,
            ..H2Rec::default()
        };
        // The frame's record goes ahead of the messages it completes.
        let at = out.len();
        let held = hdr.ftype == frame::DATA || buf.len() == hdr.length as usize;
        let header_type = matches!(
            hdr.ftype,
            frame::HEADERS | frame::PUSH_PROMISE | frame::CONTINUATION
        );
        if !held && header_type {
            // Too long to hold: its block fragment is lost to the decoder, and with it the
            // table; the frame still moves the stream's state.
            self.sides[i].hpack.lose();
            let len = hdr.length;
            self.diag(
                dir,
                frame,
                format_args!("{len}-byte header block fragment not held (over 1 MiB); HPACK table unknown from here on"),
            );
        }
        let parsed = if held && hdr.ftype <= 9 {
            frame::parse_payload(&hdr, payload)
        } else {
            Ok(frame::Payload::default())
        };
        match parsed {
            Ok(p) => {
                rec.pad_len = p.pad_len;
                rec.error_code = p.error_code;
                rec.error = p.error_code.map(|c| Cow::Borrowed(frame::error_name(c)));
                rec.window_increment = p.increment;
                rec.last_stream = p.last_stream;
                rec.promised_stream = p.promised;
                self.apply(dir, &hdr, &p, frame, ts, &mut rec, out);
                rec.settings = p.settings;
            }
            Err(frame::Malformed(why)) => {
                let name = frame::type_name(hdr.ftype);
                self.diag(dir, frame, format_args!("malformed {name} frame: {why}"));
                if matches!(
                    hdr.ftype,
                    frame::HEADERS | frame::PUSH_PROMISE | frame::CONTINUATION
                ) {
                    // Its header block fragment is lost to the decoder.
                    self.sides[i].block = None;
                    self.sides[i].hpack.lose();
                    rec.undecodable = true;
                }
            }
        }
        if let Some((c, s)) = self.states(hdr.stream) {
            rec.client_state = Some(Cow::Borrowed(c));
            rec.server_state = Some(Cow::Borrowed(s));
        }
        self.sides[i].buf = buf;
        self.sides[i].buf.clear();
        if self.frames_out {
            out.insert(at, Record::H2(rec));
        }
        self.forget_closed(frame, out);
    }

    /// What a parsed frame does to the connection's state.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &mut self,
        dir: Dir,
        hdr: &FrameHeader,
        p: &frame::Payload<'_>,
        frame: u64,
        ts: Timestamp,
        rec: &mut H2Rec,
        out: &mut Vec<Record>,
    ) {
        let i = dir.idx();
        let peer = dir.reverse().idx();
        match hdr.ftype {
            frame::DATA => {
                let end = hdr.flags & frame::END_STREAM != 0;
                let len = hdr.length as i64;
                self.sides[i].conn_window -= len;
                let lost = self.sides[i].lost;
                let windows = self.start != Start::Midstream;
                if windows {
                    rec.conn_window = Some(self.sides[i].conn_window);
                }
                let st = self.stream(hdr.stream);
                st.window[i] -= len;
                if windows {
                    rec.stream_window = Some(st.window[i]);
                }
                if let Some(m) = st.msg[i].as_mut() {
                    m.body_len += (p.data_len as u64).saturating_sub(lost);
                }
                if end {
                    st.ended[i] = true;
                    self.finish_msg(dir, hdr.stream, Some(frame), out);
                }
                if rec.conn_window.is_some_and(|w| w < 0)
                    || rec.stream_window.is_some_and(|w| w < 0)
                {
                    self.diag(
                        dir,
                        frame,
                        format_args!(
                            "DATA on stream {} beyond the flow-control window",
                            hdr.stream
                        ),
                    );
                }
            }
            frame::HEADERS | frame::PUSH_PROMISE => {
                if self.sides[i].block.is_some() {
                    // The unfinished block was never decoded: whatever it added to the
                    // table is missing, so the table is unknown from here on.
                    self.sides[i].hpack.lose();
                    self.diag(
                        dir,
                        frame,
                        "header block interrupted before END_HEADERS; HPACK table unknown from here on",
                    );
                }
                let block = Block {
                    stream: hdr.stream,
                    promised: p.promised,
                    end_stream: hdr.ftype == frame::HEADERS && hdr.flags & frame::END_STREAM != 0,
                    buf: p.fragment.to_vec(),
                };
                let opened = p.promised.unwrap_or(hdr.stream);
                let h = &mut self.highest[opened.is_multiple_of(2) as usize];
                *h = (*h).max(opened);
                if hdr.ftype == frame::PUSH_PROMISE {
                    let st = self.stream(opened);
                    st.reserved = Some(dir);
                } else {
                    let st = self.stream(hdr.stream);
                    if st.reserved == Some(dir) && !st.opened {
                        // A pushed response: the promiser only sends on it (§5.1 reserved →
                        // half-closed).
                        st.ended[peer] = true;
                    }
                    if !st.opened {
                        st.opened = true;
                        self.streams_opened += 1;
                    }
                }
                self.sides[i].block = Some(block);
                if hdr.flags & frame::END_HEADERS != 0 {
                    self.block_done(dir, frame, ts, rec, out);
                }
            }
            frame::CONTINUATION => match self.sides[i].block.as_mut() {
                Some(b) if b.stream == hdr.stream => {
                    if b.buf.len() + p.fragment.len() > MAX_BLOCK {
                        self.sides[i].block = None;
                        self.sides[i].hpack.lose();
                        self.diag(
                            dir,
                            frame,
                            "header block over 1 MiB; HPACK table unknown from here on",
                        );
                    } else {
                        b.buf.extend_from_slice(p.fragment);
                        if hdr.flags & frame::END_HEADERS != 0 {
                            self.block_done(dir, frame, ts, rec, out);
                        }
                    }
                }
                _ => {
                    // Its HEADERS was never seen: the table lost a block.
                    self.sides[i].hpack.lose();
                    rec.undecodable = true;
                    self.diag(dir, frame, "CONTINUATION without its HEADERS");
                }
            },
            frame::RST_STREAM => {
                let st = self.stream(hdr.stream);
                if !st.reset {
                    st.reset = true;
                    self.streams_reset += 1;
                }
                for d in [Dir::C2s, Dir::S2c] {
                    if let Some(m) = self
                        .streams
                        .get_mut(&hdr.stream)
                        .and_then(|s| s.msg[d.idx()].as_mut())
                    {
                        m.reset = true;
                    }
                    self.finish_msg(d, hdr.stream, None, out);
                }
            }
            frame::SETTINGS => {
                if hdr.flags & frame::ACK != 0 {
                    // `dir` acknowledges the peer's SETTINGS: the table size the peer's
                    // decoder announced now bounds the size updates of `dir`'s encoder.
                    if let Some(t) = self.sides[peer].table_pending.take() {
                        self.sides[i].hpack.allow(t as usize);
                    }
                }
                for &(id, v) in &p.settings {
                    match id {
                        frame::SETTINGS_HEADER_TABLE_SIZE => self.sides[i].table_pending = Some(v),
                        frame::SETTINGS_INITIAL_WINDOW_SIZE => {
                            // §6.9.2: every stream's window the peer sends on moves by the change.
                            let delta = v as i64 - self.sides[i].initial_window;
                            self.sides[i].initial_window = v as i64;
                            for s in self.streams.values_mut() {
                                s.window[peer] += delta;
                            }
                        }
                        _ => {}
                    }
                }
            }
            frame::WINDOW_UPDATE => {
                let inc = p.increment.unwrap_or(0) as i64;
                if hdr.stream == 0 {
                    self.sides[peer].conn_window += inc;
                } else {
                    let st = self.stream(hdr.stream);
                    st.window[peer] += inc;
                }
            }
            _ => {}
        }
    }

    /// `dir` finished a header block (END_HEADERS): decode it and start or end a message.
    fn block_done(
        &mut self,
        dir: Dir,
        frame: u64,
        ts: Timestamp,
        rec: &mut H2Rec,
        out: &mut Vec<Record>,
    ) {
        let i = dir.idx();
        let Some(block) = self.sides[i].block.take() else {
            return;
        };
        let fields = self.sides[i].hpack.decode(&block.buf);
        if fields.is_none() {
            rec.undecodable = true;
        }
        if let Some((size, entries)) = self.sides[i].hpack.table() {
            rec.hpack_size = Some(size as u64);
            rec.hpack_entries = Some(entries as u64);
        }
        // The message this block belongs to: a PUSH_PROMISE carries the promised stream's
        // request (sent by the server, but a request); otherwise this side's message on it.
        let (msg_dir, sid) = match block.promised {
            Some(p) => (dir.reverse(), p),
            None => (dir, block.stream),
        };
        let mi = msg_dir.idx();
        let records = self.records;
        let st = self.stream(sid);
        if st.msg[mi].is_some() {
            // A second block on a message in progress: trailers.
            if block.end_stream {
                st.ended[mi] = true;
                self.finish_msg(msg_dir, sid, Some(frame), out);
            }
            return;
        }
        let mut m = Msg::new(frame, ts);
        if let Some(fields) = &fields {
            for (n, v) in fields {
                let text = || String::from_utf8_lossy(v).into_owned();
                match n.as_slice() {
                    b":status" => {
                        m.status = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok())
                    }
                    b":method" if records => m.method = Some(text()),
                    b":path" if records => m.path = Some(text()),
                    b":authority" if records => {
                        m.authority = Some(text());
                        m.carries[0] = true;
                    }
                    b"host" => m.carries[0] = true,
                    b"cookie" => m.carries[1] = true,
                    b"authorization" => m.carries[2] = true,
                    b"content-length" => {
                        m.content_length = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok())
                    }
                    _ => {}
                }
            }
        } else {
            m.undecodable = true;
        }
        m.request = block.promised.is_some() || dir == Dir::C2s;
        m.promised = block.promised.is_some();
        // 1xx is interim (§8.1): a record of its own; the final response follows.
        m.interim = m.status.is_some_and(|s| (100..200).contains(&s));
        if !m.request {
            m.request_frame = st.request_frame;
        } else {
            st.request_frame = Some(frame);
        }
        let ends_here = block.end_stream || m.interim || block.promised.is_some();
        st.msg[mi] = Some(m);
        if block.end_stream {
            st.ended[mi] = true;
        }
        if ends_here {
            // A promised request has no body (§8.4); an interim response ends at its block.
            self.finish_msg(msg_dir, sid, Some(frame), out);
        }
    }

    /// Push the message on `sid` sent by `dir`; `end_frame` None when it was cut short.
    fn finish_msg(&mut self, dir: Dir, sid: u32, end_frame: Option<u64>, out: &mut Vec<Record>) {
        let Some(st) = self.streams.get_mut(&sid) else {
            return;
        };
        let Some(m) = st.msg[dir.idx()].take() else {
            return;
        };
        if m.request {
            self.requests += 1;
        } else {
            self.responses += 1;
        }
        if !self.records {
            return;
        }
        out.push(Record::Http(Box::new(HttpRec {
            conn: self.conn,
            dir: if m.promised { Dir::S2c } else { dir },
            frame: m.frame,
            ts: Some(m.ts.as_secs_f64()),
            method: m.method.map(Cow::Owned),
            uri: m.path,
            version: Cow::Borrowed("2"),
            status: m.status,
            content_length: m.content_length,
            body_len: m.body_len,
            request_frame: m.request_frame,
            end_frame,
            stream: Some(sid),
            authority: m.authority,
            undecodable: m.undecodable,
            reset: m.reset,
            // The same names as an HTTP/1 request's (`:authority` stands for Host).
            carries: Cow::Borrowed(crate::record::carried_names(
                &["Host", "Cookie", "Authorization"],
                if m.request { m.carries } else { [false; 3] },
            )),
            ..HttpRec::default()
        })));
    }

    /// The stream `sid`, made idle when first named.
    fn stream(&mut self, sid: u32) -> &mut Stream {
        let (wc, ws) = (self.sides[1].initial_window, self.sides[0].initial_window);
        self.streams
            .entry(sid)
            .or_insert_with(|| Stream::new(sid, wc, ws))
    }

    /// The stream's state at the client and at the server; `None` for the connection
    /// (stream 0), and mid-connection for a stream opened before the capture began.
    fn states(&self, sid: u32) -> Option<(&'static str, &'static str)> {
        if sid == 0 {
            return None;
        }
        let midstream = self.start == Start::Midstream || self.forgot_open;
        match self.streams.get(&sid) {
            Some(s) if midstream && !s.opened && s.reserved.is_none() => None,
            Some(s) => Some((s.state(Dir::C2s), s.state(Dir::S2c))),
            None if midstream => None,
            None if sid > self.highest[sid.is_multiple_of(2) as usize] => Some(("idle", "idle")),
            None => Some(("closed", "closed")),
        }
    }

    /// Forget closed streams whose messages are out, once many are kept; past
    /// [`HARD_MAX_STREAMS`], every stream, pushing the messages in progress as cut short.
    fn forget_closed(&mut self, frame: u64, out: &mut Vec<Record>) {
        if self.streams.len() <= self.next_sweep {
            return;
        }
        self.streams.retain(|_, s| !s.done());
        // Swept again only once as many more are kept: each frame costs O(1) on average.
        self.next_sweep = (2 * self.streams.len()).clamp(MAX_STREAMS, HARD_MAX_STREAMS);
        if self.streams.len() > HARD_MAX_STREAMS {
            self.next_sweep = MAX_STREAMS;
            let mut ids: Vec<u32> = self.streams.keys().copied().collect();
            ids.sort_unstable();
            for id in ids {
                for d in [Dir::C2s, Dir::S2c] {
                    self.finish_msg(d, id, None, out);
                }
            }
            self.streams.clear();
            self.forgot_open = true;
            self.diag(
                Dir::C2s,
                frame,
                format_args!(
                    "more than {HARD_MAX_STREAMS} streams open; their messages pushed as cut short and their states forgotten"
                ),
            );
        }
    }

    fn diag(&mut self, dir: Dir, frame: u64, what: impl std::fmt::Display) {
        if !self.records {
            return;
        }
        if self.diagnostics.len() < MAX_DIAGNOSTICS {
            self.diagnostics
                .push(format!("h2 {} frame {frame}: {what}", dir.as_str()));
        } else if self.diagnostics.len() == MAX_DIAGNOSTICS {
            self.diagnostics.push("h2: more diagnostics dropped".into());
        }
    }
}

/// Do a connection's first bytes begin the client preface? (As much of it as they hold, at
/// least `PRI `: a first segment may be shorter than the preface.)
pub fn is_preface_start(first: &[u8]) -> bool {
    let n = first.len().min(PREFACE.len());
    n >= 4 && first[..n] == PREFACE[..n]
}
