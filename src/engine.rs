//! Frames in, records out: the decoder, the TCP tracker and the HTTP and TLS parsers wired
//! together.
//!
//! Replay, live capture and the labs all drive an [`Engine`] one frame at a time and print what
//! it produces through a [`Sink`]. Per-frame decode problems are counted, never fatal.

use crate::capture::filter::Expr;
use crate::capture::FrameSource;
use crate::config::OutputConfig;
use crate::decode::{DecodeError, Decoder, Segment};
use crate::http::parser::Prepared;
use crate::http::{HttpConn, Settled};
use crate::http2::H2Conn;
use crate::output::Sink;
use crate::record::{ConnRec, Record};
use crate::tcp::reassembly::Chunk;
use crate::tcp::{Events, FlowKey, Footprint, Tracker, TrackerConfig};
use crate::tls::keylog::KeyStore;
use crate::tls::TlsConn;
use crate::types::{Dir, Frame, PacketSel, Timestamp};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::Arc;

/// Counters reported on standard error at the end of a run.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub frames: u64,
    pub segments: u64,
    pub not_tcp: u64,
    /// TCP segments the capture filter ([`EngineOptions::only`]) left out.
    pub filtered_out: u64,
    /// TCP segments of flows in other shards ([`EngineOptions::shard`]).
    pub other_shards: u64,
    /// Decode problems by kind.
    pub decode_errors: BTreeMap<String, u64>,
}

impl Stats {
    pub fn decode_failures(&self) -> u64 {
        self.decode_errors.values().sum()
    }
}

/// A run's counts, from one engine or summed over several ([`crate::workers::run_workers`]).
#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub stats: Stats,
    pub conns_seen: u64,
    /// Most connections held at once (summed over workers: each worker's own peak).
    pub peak_live: usize,
    pub relief: crate::tcp::MemoryRelief,
    /// The memory budget, whole (workers share it).
    pub budget: usize,
    pub shard: Option<(u32, u32)>,
}

impl Totals {
    /// Add another worker's counts to these.
    pub fn add(&mut self, o: &Totals) {
        let (s, t) = (&mut self.stats, &o.stats);
        s.frames += t.frames;
        s.segments += t.segments;
        s.not_tcp += t.not_tcp;
        s.filtered_out += t.filtered_out;
        s.other_shards += t.other_shards;
        for (k, n) in &t.decode_errors {
            *s.decode_errors.entry(k.clone()).or_default() += n;
        }
        self.conns_seen += o.conns_seen;
        self.peak_live += o.peak_live;
        self.relief.evicted += o.relief.evicted;
        self.relief.gap_bytes += o.relief.gap_bytes;
    }

    /// ", N connections evicted for memory (--max-memory 512 MiB), M reassembly bytes given
    /// up" when the budget gave anything up; empty otherwise.
    pub fn memory_note(&self) -> String {
        let r = self.relief;
        if r.evicted == 0 && r.gap_bytes == 0 {
            return String::new();
        }
        format!(
            ", {} connection{} evicted for memory and {} reassembly bytes given up \
             (--max-memory {} MiB)",
            r.evicted,
            if r.evicted == 1 { "" } else { "s" },
            r.gap_bytes,
            self.budget >> 20
        )
    }

    /// One line of counts for standard error.
    pub fn summary_line(&self) -> String {
        let s = &self.stats;
        let mut line = format!(
            "{} frames, {} TCP segments, {} connection{} ({} held at most)",
            s.frames,
            s.segments,
            self.conns_seen,
            if self.conns_seen == 1 { "" } else { "s" },
            self.peak_live
        );
        line.push_str(&self.memory_note());
        if s.decode_failures() > 0 {
            let kinds: Vec<String> = s
                .decode_errors
                .iter()
                .map(|(k, n)| format!("{n} {k}"))
                .collect();
            line.push_str(&format!(
                ", {} frames not decoded ({})",
                s.decode_failures(),
                kinds.join(", ")
            ));
        }
        if s.filtered_out > 0 {
            line.push_str(&format!(
                ", {} TCP segments left out by the filter",
                s.filtered_out
            ));
        }
        if let Some((i, n)) = self.shard {
            line.push_str(&format!(
                ", shard {i}/{n}: {} TCP segments belong to other shards",
                s.other_shards
            ));
        }
        line
    }
}

/// What the engine does besides tracking.
#[derive(Debug, Clone, Default)]
pub struct EngineOptions {
    pub tracker: TrackerConfig,
    /// Parse the application layers on the reassembled streams: HTTP and WebSocket, or TLS
    /// for connections whose first bytes are a TLS handshake.
    pub http: bool,
    /// Print this connection's reassembled bytes (Follow TCP Stream) to the follow writer.
    pub follow: Option<u64>,
    /// Which connections get `http` and `ws` records; the others' messages are only counted
    /// (the printer's packet selection: the plain summary needs neither).
    pub http_records: PacketSel,
    /// Only segments this capture filter passes are tracked (`replay --port/--host/--filter`);
    /// the others are counted in [`Stats::filtered_out`] and go no further.
    pub only: Option<Expr>,
    /// `replay --shard I/N`: (I, N). Only segments whose [`FlowKey::shard`] of N is I are
    /// tracked; the others are counted in [`Stats::other_shards`]. Set the tracker's
    /// `index_shard` to match (see [`EngineOptions::sharded`]).
    pub shard: Option<(u32, u32)>,
    /// `--tls-keylog`: decrypt TLS connections with these secrets and parse the HTTP inside.
    pub tls_keys: Option<Arc<KeyStore>>,
}

impl EngineOptions {
    /// Options from the shared output settings; `wants_packets` from the chosen printer.
    pub fn from_config(args: &OutputConfig, wants_packets: PacketSel) -> Self {
        let http = !args.no_http;
        let detail = if args.wants_report() {
            PacketSel::All
        } else {
            wants_packets
        };
        EngineOptions {
            tracker: TrackerConfig {
                idle_timeout_ns: args.idle_timeout_ns,
                emit_packets: detail.clone(),
                explain: args.explain,
                reassemble: http || args.follow.is_some(),
                reassembly_cap: args.reassembly_cap,
                analysis: !args.no_analysis,
                memory_budget: args.max_memory,
                ..TrackerConfig::default()
            },
            http,
            follow: args.follow,
            http_records: detail,
            only: None,
            shard: None,
            tls_keys: None,
        }
    }

    /// These options for shard `i` of `n`: its flows only, connection indices `i + n×k`.
    pub fn sharded(mut self, shard: Option<(u32, u32)>) -> Self {
        if let Some((i, n)) = shard {
            self.shard = Some((i, n));
            self.tracker.index_shard = (u64::from(i), u64::from(n));
        }
        self
    }
}

/// Where `--follow`'s text goes, and the first error writing it.
#[derive(Default)]
struct FollowOut {
    out: Option<Box<dyn Write>>,
    /// Once set, nothing more is written; the command reports it when the run ends.
    failed: Option<io::Error>,
}

impl FollowOut {
    fn write(&mut self, text: &[u8]) {
        if let Some(w) = self.out.as_mut() {
            if let Err(e) = w.write_all(text) {
                self.out = None;
                self.failed = Some(e);
            }
        }
    }
}

/// The layers above the tracker, as the tracker sees them.
struct Upper<'a> {
    /// The options, behind one pointer: built per frame, this struct stays small.
    opts: &'a EngineOptions,
    follow_out: &'a mut FollowOut,
    pending: &'a mut Vec<Record>,
    /// The current segment's payload (address and length) and its head parsed ahead, if any.
    prepared: Option<(usize, usize, &'a Prepared)>,
    /// Where `pending` goes when a sweep finishes many connections at once ([`SPILL_AT`]).
    sink: Option<&'a mut dyn Sink>,
    /// The sink's error from such a hand-over, returned once the frame is done.
    failed: Option<io::Error>,
}

/// Records pending, at least, for connections finished while a frame is tracked to be handed
/// to the printer before the next one finishes. A sweep of closed connections past their
/// linger finishes thousands at once (13,500 on a full-snaplen nginx capture): held until the
/// end of the frame, their records were the run's peak memory (issue 26). Handed over in
/// order, as they come, so the output is the same.
const SPILL_AT: usize = 1024;

/// The parser of a connection's application layer.
enum App {
    Http(Box<HttpConn>),
    Tls(Box<TlsApp>),
    H2(Box<H2Conn>),
    /// Picked up mid-stream, nothing seen yet: the first bytes choose between HTTP/2 frames
    /// and HTTP/1 (resynchronising).
    Midstream,
    /// HTTP/1 with both directions ended ([`HttpConn::settle`]): nothing more to parse, only
    /// what the `conn` record takes from it, kept while the connection lingers in the table.
    Settled(Box<Settled>),
}

/// A TLS connection, and with a key log the parser of what it decrypts (made at the first
/// plaintext: HTTP/2 when it starts with the client preface, as after ALPN `h2`, else HTTP/1).
/// Its `http` records are marked `tls`.
struct TlsApp {
    tls: TlsConn,
    /// Boxed: a TLS connection without a key log never makes one.
    inner: Option<Box<Inner>>,
}

/// What runs inside a decrypted TLS connection.
enum Inner {
    Http(HttpConn),
    H2(H2Conn),
}

/// `http` records made from decrypted bytes say so.
fn mark_tls(recs: &mut [Record]) {
    for r in recs {
        if let Record::Http(h) = r {
            h.tls = true;
        }
    }
}

impl TlsApp {
    fn on_data(&mut self, dir: Dir, d: &[u8], frame: u64, ts: Timestamp, out: &mut Vec<Record>) {
        self.tls.on_data(dir, d, frame, ts, out);
        let conn = self.tls.conn();
        let records = self.tls.makes_records();
        let Some(plain) = self.tls.plaintext().filter(|p| !p.is_empty()) else {
            return;
        };
        let inner = self.inner.get_or_insert_with(|| {
            Box::new(
                if plain.starts_with(b"PRI ") && crate::http2::is_preface_start(plain) {
                    Inner::H2(H2Conn::prior_knowledge(conn, records))
                } else if records {
                    Inner::Http(HttpConn::new(conn))
                } else {
                    Inner::Http(HttpConn::counting(conn))
                },
            )
        });
        let from = out.len();
        match inner.as_mut() {
            Inner::Http(h) => h.on_data(dir, plain, frame, ts, out),
            Inner::H2(h) => h.on_data(dir, plain, frame, ts, out),
        }
        self.tls.plaintext_done();
        mark_tls(&mut out[from..]);
    }

    fn on_end(&mut self, dir: Dir, frame: u64, ts: Timestamp, out: &mut Vec<Record>) {
        if let Some(inner) = self.inner.as_mut() {
            let from = out.len();
            match inner.as_mut() {
                Inner::Http(h) => h.on_end(dir, frame, ts, out),
                Inner::H2(h) => h.on_end(dir, frame, ts, out),
            }
            mark_tls(&mut out[from..]);
        }
    }

    fn footprint(&self) -> usize {
        self.tls.footprint()
            + self.inner.as_ref().map_or(0, |i| match i.as_ref() {
                Inner::Http(h) => h.footprint(),
                Inner::H2(h) => h.footprint(),
            })
    }
}

impl App {
    /// Called for every segment (the memory budget): plain HTTP's is inlined above, the other
    /// layers' stay out of its way.
    #[inline(never)]
    fn footprint_cold(&self) -> usize {
        match self {
            App::Http(h) => h.footprint(),
            App::Tls(t) => t.footprint(),
            App::H2(h) => h.footprint(),
            App::Settled(s) => s.footprint(),
            App::Midstream => 0,
        }
    }
}

/// What the engine keeps in each of the tracker's connections: its application-layer parser,
/// made on first use (never, with HTTP off). Boxed, so a connection without one costs little.
type AppSlot = Option<App>;

impl Footprint for AppSlot {
    #[inline(always)]
    fn footprint(&self) -> usize {
        match self {
            Some(App::Http(h)) => h.footprint(),
            None => 0,
            Some(other) => other.footprint_cold(),
        }
    }
}

/// The connection's parser, made on its first bytes: TLS when they look like a TLS handshake
/// (three bytes compared, once per connection), HTTP/2 when they are the client preface
/// (four bytes, `PRI `, then the rest), HTTP otherwise.
fn app_of<'u>(
    slot: &'u mut AppSlot,
    conn: u64,
    sel: &PacketSel,
    keys: Option<&Arc<KeyStore>>,
    first: &[u8],
) -> &'u mut App {
    slot.get_or_insert_with(|| {
        if crate::tls::looks_like_tls(first) {
            let mut tls = if sel.wants(conn) {
                TlsConn::new(conn)
            } else {
                TlsConn::counting(conn)
            };
            if let Some(k) = keys {
                tls = tls.with_keys(k.clone());
            }
            App::Tls(Box::new(TlsApp { tls, inner: None }))
        } else if first.starts_with(b"PRI ") && crate::http2::is_preface_start(first) {
            App::H2(Box::new(H2Conn::prior_knowledge(conn, sel.wants(conn))))
        } else {
            App::Http(Box::new(new_http(conn, sel)))
        }
    })
}

/// A connection picked up mid-stream, on its first bytes: HTTP/2 when they are a chain of
/// plausible frame headers, HTTP/1 (looking for a message start) otherwise.
#[cold]
fn midstream_app(conn: u64, sel: &PacketSel, first: &[u8]) -> App {
    if crate::http2::frame::plausible_chain(first) {
        App::H2(Box::new(H2Conn::midstream(conn, sel.wants(conn))))
    } else {
        let mut h = new_http(conn, sel);
        h.start_midstream();
        App::Http(Box::new(h))
    }
}

impl Upper<'_> {
    fn http_chunk(
        &mut self,
        h: &mut HttpConn,
        dir: Dir,
        chunk: Chunk<'_>,
        frame: u64,
        ts: Timestamp,
    ) {
        match chunk {
            Chunk::Data(d) => match self.prepared {
                // The same bytes the reader thread parsed (the whole payload, not a reassembled
                // or trimmed piece): use its parse.
                Some((at, n, prep)) if d.as_ptr() as usize == at && d.len() == n => {
                    h.on_data_prepared(dir, d, prep, frame, ts, self.pending)
                }
                _ => h.on_data(dir, d, frame, ts, self.pending),
            },
            Chunk::Gap(n) => h.on_gap(dir, n, frame, self.pending),
        }
    }

    /// A connection's first chunk (its parser made here), or a chunk of TLS or HTTP/2: out of
    /// the plain HTTP path.
    #[inline(never)]
    fn other_chunk(
        &mut self,
        conn: u64,
        upper: &mut AppSlot,
        dir: Dir,
        chunk: Chunk<'_>,
        frame: u64,
        ts: Timestamp,
    ) {
        let first = match chunk {
            Chunk::Data(d) => d,
            Chunk::Gap(_) => &[],
        };
        let opts = self.opts;
        match app_of(
            upper,
            conn,
            &opts.http_records,
            opts.tls_keys.as_ref(),
            first,
        ) {
            App::Http(h) => self.http_chunk(h, dir, chunk, frame, ts),
            App::Tls(t) => match chunk {
                Chunk::Data(d) => t.on_data(dir, d, frame, ts, self.pending),
                Chunk::Gap(n) => t.tls.on_gap(dir, n, frame),
            },
            App::H2(h) => match chunk {
                Chunk::Data(d) => h.on_data(dir, d, frame, ts, self.pending),
                Chunk::Gap(n) => h.on_gap(dir, n, frame, self.pending),
            },
            App::Midstream => {
                *upper = Some(midstream_app(conn, &opts.http_records, first));
                self.other_chunk(conn, upper, dir, chunk, frame, ts)
            }
            // Late bytes after both ends: the parser it replaced ignored them too.
            App::Settled(_) => {}
        }
    }
}

impl Upper<'_> {
    /// Hand the pending records to the sink now (see [`SPILL_AT`]); its first error is kept.
    /// Not with `--follow`: its text for the frame may share standard output with the records,
    /// which it precedes when they wait for the end of the frame.
    #[cold]
    fn spill(&mut self) {
        if self.opts.follow.is_some() {
            return;
        }
        if let (Some(sink), None) = (self.sink.as_mut(), self.failed.as_ref()) {
            if let Err(e) = sink.take(self.pending) {
                self.failed = Some(e);
            }
        }
    }
}

impl Events<AppSlot> for Upper<'_> {
    fn record(&mut self, rec: Record) {
        self.pending.push(rec);
    }
    fn midstream(&mut self, _conn: u64, upper: &mut AppSlot) {
        if self.opts.http && upper.is_none() {
            // Picked up mid-stream: no handshake to recognize TLS by; the first bytes tell
            // HTTP/2 frames from HTTP/1, which resynchronizes.
            *upper = Some(App::Midstream);
        }
    }
    fn chunk(
        &mut self,
        conn: u64,
        upper: &mut AppSlot,
        dir: Dir,
        chunk: Chunk<'_>,
        frame: u64,
        ts: Timestamp,
    ) {
        if self.opts.follow == Some(conn) {
            self.follow_out
                .write(crate::http::follow::format_chunk(dir, &chunk).as_bytes());
        }
        if !self.opts.http {
            return;
        }
        // Plain HTTP, every chunk after a connection's first: straight to its parser.
        if let Some(App::Http(h)) = upper {
            return self.http_chunk(h, dir, chunk, frame, ts);
        }
        self.other_chunk(conn, upper, dir, chunk, frame, ts)
    }
    fn end(&mut self, _conn: u64, upper: &mut AppSlot, dir: Dir, frame: u64, ts: Timestamp) {
        match upper.as_mut() {
            Some(App::Http(h)) => {
                h.on_end(dir, frame, ts, self.pending);
                if !settling() {
                    return;
                }
                if let Some(s) = h.settle() {
                    *upper = Some(App::Settled(Box::new(s)));
                }
            }
            Some(App::H2(h)) => h.on_end(dir, frame, ts, self.pending),
            Some(App::Tls(t)) => t.on_end(dir, frame, ts, self.pending),
            _ => {}
        }
    }
    fn conn_finished(&mut self, mut rec: ConnRec, upper: AppSlot) {
        let d = match upper {
            Some(App::Http(mut h)) => {
                rec.http_requests = h.requests();
                rec.http_responses = h.responses();
                rec.ws_frames = h.ws_frames();
                let mut d = h.take_diagnostics();
                // Upgraded to h2c: the HTTP/2 part's messages, summary and diagnostics.
                if let Some(mut h2) = h.take_h2() {
                    rec.http_requests += h2.requests();
                    rec.http_responses += h2.responses();
                    let (summary, more) = h2.finish();
                    rec.h2 = Some(Box::new(summary));
                    d.extend(more);
                }
                d
            }
            Some(App::Settled(s)) => {
                let Settled {
                    requests,
                    responses,
                    ws_frames,
                    diagnostics,
                } = *s;
                rec.http_requests = requests;
                rec.http_responses = responses;
                rec.ws_frames = ws_frames;
                diagnostics
            }
            Some(App::H2(mut h)) => {
                rec.http_requests = h.requests();
                rec.http_responses = h.responses();
                let (summary, d) = h.finish();
                rec.h2 = Some(Box::new(summary));
                d
            }
            Some(App::Tls(t)) => {
                let TlsApp { tls, inner } = *t;
                let (tls, mut d) = tls.finish();
                self.pending.push(Record::Tls(tls));
                match inner.map(|i| *i) {
                    Some(Inner::Http(mut h)) => {
                        rec.http_requests = h.requests();
                        rec.http_responses = h.responses();
                        rec.ws_frames = h.ws_frames();
                        d.extend(h.take_diagnostics());
                    }
                    Some(Inner::H2(mut h)) => {
                        rec.http_requests = h.requests();
                        rec.http_responses = h.responses();
                        let (summary, more) = h.finish();
                        rec.h2 = Some(Box::new(summary));
                        d.extend(more);
                    }
                    None => {}
                }
                d
            }
            Some(App::Midstream) | None => Vec::new(),
        };
        if rec.diagnostics.is_empty() {
            rec.diagnostics = d;
        } else {
            rec.diagnostics.extend(d);
        }
        self.pending.push(Record::Conn(rec));
        if self.pending.len() >= SPILL_AT {
            self.spill();
        }
    }
}

/// Whether a parser ended both ways is settled ([`App::Settled`]); off only in a test's control.
#[cfg(not(test))]
#[inline(always)]
fn settling() -> bool {
    true
}

#[cfg(test)]
thread_local! {
    static SETTLING: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

#[cfg(test)]
fn settling() -> bool {
    SETTLING.with(|s| s.get())
}

fn new_http(conn: u64, records: &PacketSel) -> HttpConn {
    if records.wants(conn) {
        HttpConn::new(conn)
    } else {
        HttpConn::counting(conn)
    }
}

/// The engine's fields a frame passes through once decoded, borrowed apart from the decoder
/// (whose buffers the segment may borrow).
struct Parts<'a> {
    tracker: &'a mut Tracker<AppSlot>,
    stats: &'a mut Stats,
    upper: Upper<'a>,
}

impl Parts<'_> {
    fn track(
        &mut self,
        number: u64,
        ts: Timestamp,
        decoded: Result<Option<Segment<'_>>, DecodeError>,
        flow: Option<FlowKey>,
    ) {
        self.stats.frames += 1;
        match decoded {
            // One test of an `Option` per segment when no filter was asked.
            Ok(Some(seg))
                if self
                    .upper
                    .opts
                    .only
                    .as_ref()
                    .is_some_and(|f| !f.matches_tcp(seg.src, seg.dst, seg.sport, seg.dport)) =>
            {
                self.stats.filtered_out += 1;
            }
            Ok(Some(seg)) => {
                let flow = flow.unwrap_or_else(|| FlowKey::of(&seg));
                if let Some((i, n)) = self.upper.opts.shard {
                    if flow.shard(n) != i {
                        self.stats.other_shards += 1;
                        return;
                    }
                }
                self.stats.segments += 1;
                self.tracker
                    .on_keyed_segment(&seg, flow, number, ts, &mut self.upper);
            }
            Ok(None) => self.stats.not_tcp += 1,
            Err(e) => *self.stats.decode_errors.entry(e.kind()).or_default() += 1,
        }
    }
}

/// The engine's tracking half, borrowed field by field so the decoder's output (which may
/// borrow the decoder's fragment buffers) can be passed in alongside.
macro_rules! parts {
    ($e:expr) => {
        parts!($e, None)
    };
    ($e:expr, $sink:expr) => {
        Parts {
            tracker: &mut $e.tracker,
            stats: &mut $e.stats,
            upper: Upper {
                opts: &$e.opts,
                follow_out: &mut $e.follow_out,
                pending: &mut $e.pending,
                prepared: None,
                sink: $sink,
                failed: None,
            },
        }
    };
}

pub struct Engine {
    decoder: Decoder,
    tracker: Tracker<AppSlot>,
    opts: EngineOptions,
    pending: Vec<Record>,
    /// Records gathered before they are handed to the printer (see [`Engine::hand_over_at`]).
    hand_over_at: usize,
    /// Where `--follow` output goes (nowhere until [`Engine::follow_to`]).
    follow_out: FollowOut,
    pub stats: Stats,
}

impl Engine {
    pub fn new(opts: EngineOptions) -> Self {
        Engine {
            decoder: Decoder::new(),
            tracker: Tracker::new(opts.tracker.clone()),
            opts,
            pending: Vec::new(),
            hand_over_at: 1,
            follow_out: FollowOut::default(),
            stats: Stats::default(),
        }
    }

    /// Gather `n` records before handing them to the printer ([`Sink::take`]); 1, the
    /// default, suits printers that print as they go. A printer on another thread takes whole
    /// batches ([`crate::pipeline::PrintThread::HAND_OVER_AT`]), so that a record is moved once
    /// on its way there rather than twice.
    pub fn hand_over_at(&mut self, n: usize) {
        self.hand_over_at = n.max(1);
    }

    /// The options it was made with.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Write the followed connection's text (`--follow`) to `out`. A write error stops the
    /// writing; [`Engine::follow_error`] gives it once the run is over.
    pub fn follow_to(&mut self, out: Box<dyn Write>) {
        self.follow_out.out = Some(out);
    }

    /// The error that stopped `--follow`'s text, if any.
    pub fn follow_error(&mut self) -> Option<io::Error> {
        self.follow_out.failed.take()
    }

    /// One frame: decode, track, and print what it produced.
    #[inline]
    pub fn on_frame(&mut self, frame: &Frame<'_>, sink: &mut dyn Sink) -> io::Result<()> {
        let decoded = self.decoder.decode(frame);
        let mut parts = parts!(self, Some(&mut *sink));
        parts.track(frame.number, frame.ts, decoded, None);
        if let Some(e) = parts.upper.failed {
            return Err(e);
        }
        self.flush(sink)
    }

    /// One frame decoded elsewhere (see [`crate::pipeline`]): track it and print what it
    /// produced. `prepared`: the segment's payload parsed ahead by [`crate::http::parser::prepare`];
    /// `flow`: the segment's [`FlowKey`], if worked out ahead.
    pub fn on_decoded(
        &mut self,
        number: u64,
        ts: Timestamp,
        decoded: Result<Option<Segment<'_>>, DecodeError>,
        prepared: Option<&Prepared>,
        flow: Option<FlowKey>,
        sink: &mut dyn Sink,
    ) -> io::Result<()> {
        let mut parts = parts!(self, Some(&mut *sink));
        if let (Some(p), Ok(Some(seg))) = (prepared, &decoded) {
            parts.upper.prepared = Some((seg.payload.as_ptr() as usize, seg.payload.len(), p));
        }
        parts.track(number, ts, decoded, flow);
        if let Some(e) = parts.upper.failed {
            return Err(e);
        }
        self.flush(sink)
    }

    /// A TCP segment another worker tracks ([`crate::workers::run_workers`]): only its
    /// capture time matters here (connections past their linger or idle timeout end now, as
    /// they would in one engine that saw it). A segment the filter leaves out ticks nothing,
    /// as it reaches no tracker in one engine either. Not counted.
    pub fn on_foreign(
        &mut self,
        ts: Timestamp,
        seg: &Segment<'_>,
        sink: &mut dyn Sink,
    ) -> io::Result<()> {
        if let Some(f) = &self.opts.only {
            if !f.matches_tcp(seg.src, seg.dst, seg.sport, seg.dport) {
                return Ok(());
            }
        }
        let parts = parts!(self, Some(&mut *sink));
        let mut upper = parts.upper;
        parts.tracker.tick(ts, &mut upper);
        if let Some(e) = upper.failed {
            return Err(e);
        }
        self.flush(sink)
    }

    /// Whether a segment at `ts` would finish connections past their linger or idle timeout
    /// (see [`Engine::on_foreign`]).
    #[inline]
    pub fn sweep_due(&self, ts: Timestamp) -> bool {
        self.tracker.sweep_due(ts)
    }

    fn flush(&mut self, sink: &mut dyn Sink) -> io::Result<()> {
        if self.pending.len() < self.hand_over_at {
            return Ok(());
        }
        sink.take(&mut self.pending)
    }

    /// End of input: finish every connection and print the rest.
    pub fn finish(&mut self, sink: &mut dyn Sink) -> io::Result<()> {
        let mut closing = self.tracker.close_all();
        loop {
            // A batch at a time: records of a million open connections are never all held.
            let more = closing.finish_next(4096, &mut parts!(self).upper);
            if !self.pending.is_empty() {
                sink.take(&mut self.pending)?;
            }
            if !more {
                break;
            }
        }
        if let Some(w) = self.follow_out.out.as_mut() {
            if let Err(e) = w.flush() {
                self.follow_out.failed.get_or_insert(e);
            }
        }
        sink.finish()
    }

    /// Every open connection as it stands now, into `out`: for displays that refresh while
    /// capturing (they keep the clock; the engine only answers).
    pub fn open_now(&self, out: &mut Vec<crate::tcp::OpenConn>) {
        self.tracker.open_now(out)
    }

    /// Connections seen and the most held at once.
    pub fn conn_counts(&self) -> (u64, usize) {
        (self.tracker.conns_seen(), self.tracker.peak_live())
    }

    /// What the memory budget gave up: connections evicted, reassembly bytes given up.
    pub fn memory_relief(&self) -> crate::tcp::MemoryRelief {
        self.tracker.memory_relief()
    }

    /// The run's counts as they stand: what the summary line says.
    pub fn totals(&self) -> Totals {
        Totals {
            stats: self.stats.clone(),
            conns_seen: self.tracker.conns_seen(),
            peak_live: self.tracker.peak_live(),
            relief: self.tracker.memory_relief(),
            budget: self.tracker.config().memory_budget,
            shard: self.opts.shard,
        }
    }

    /// ", N connections evicted for memory (--max-memory 512 MiB), M reassembly bytes given
    /// up" when the budget gave anything up; empty otherwise.
    pub fn memory_note(&self) -> String {
        self.totals().memory_note()
    }

    /// One line of counts for standard error.
    pub fn summary_line(&self) -> String {
        self.totals().summary_line()
    }

    /// How many connections have been seen so far (the next connection's index).
    pub fn conns_seen(&self) -> u64 {
        self.tracker.conns_seen()
    }
}

/// Drive `source` through an engine into `sink`. A capture error stops the run after everything
/// before it has been printed.
pub fn run_source(
    source: &mut dyn FrameSource,
    engine: &mut Engine,
    sink: &mut dyn Sink,
) -> anyhow::Result<()> {
    run_source_with(source, engine, sink, u32::MAX, &mut |_, _| {})
}

/// Called while a run goes on: the engine, and (bytes read, total bytes when known).
pub type Progress<'a> = dyn FnMut(&Engine, (u64, Option<u64>)) + 'a;

/// [`run_source`], calling `progress(engine, (bytes_done, bytes_total))` every `every` frames.
pub fn run_source_with(
    source: &mut dyn FrameSource,
    engine: &mut Engine,
    sink: &mut dyn Sink,
    every: u32,
    progress: &mut Progress<'_>,
) -> anyhow::Result<()> {
    let mut failure = None;
    let mut n = 0u32;
    loop {
        match source.next_frame() {
            Ok(Some(frame)) => engine.on_frame(&frame, sink)?,
            Ok(None) => break,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        n = n.wrapping_add(1);
        if n.is_multiple_of(every.max(1)) {
            progress(engine, source.progress());
            // SIGINT/SIGTERM (once installed) end the input here, once per `every` frames.
            if crate::capture::stop::stop_requested() {
                break;
            }
        }
    }
    engine.finish(sink)?;
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Flags;

    /// Remembers how many records each hand-over brought, and every record's kind in order.
    #[derive(Default)]
    struct Takes {
        sizes: Vec<usize>,
        kinds: Vec<&'static str>,
    }

    impl Sink for Takes {
        fn record(&mut self, rec: &Record) -> io::Result<()> {
            self.take(&mut vec![rec.clone()])
        }
        fn take(&mut self, recs: &mut Vec<Record>) -> io::Result<()> {
            self.sizes.push(recs.len());
            for r in recs.drain(..) {
                self.kinds.push(match r {
                    Record::Conn(_) => "conn",
                    Record::Packet(_) => "packet",
                    _ => "other",
                });
            }
            Ok(())
        }
        fn finish(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// `n` connections opened and closed within a millisecond, then, 10 s later, one SYN: the
    /// sweep it triggers finishes all `n` at once. `spill`: track as `on_decoded` does, else
    /// with no sink to hand over to before the frame ends (the variant that held them all).
    fn sweep_burst(n: u16, spill: bool, follow: Option<u64>) -> Takes {
        let mut engine = Engine::new(EngineOptions {
            tracker: TrackerConfig {
                emit_packets: PacketSel::None,
                ..TrackerConfig::default()
            },
            follow,
            ..EngineOptions::default()
        });
        let mut sink = Takes::default();
        let (syn, ack, fin) = (Flags::SYN, Flags::ACK, Flags::FIN | Flags::ACK);
        let mut frame = 0u64;
        let mut feed = |e: &mut Engine, sink: &mut Takes, seg: Segment<'static>, ns: i64| {
            frame += 1;
            let ts = Timestamp(ns);
            if spill {
                e.on_decoded(frame, ts, Ok(Some(seg)), None, None, sink)
                    .unwrap();
            } else {
                parts!(e).track(frame, ts, Ok(Some(seg)), None);
                e.flush(sink).unwrap();
            }
        };
        for port in 0..n {
            let c = format!("10.0.0.1:{}", 1024 + port);
            let (c, s) = (c.as_str(), "10.0.0.2:80");
            for (from, to, flags, seq, ackn) in [
                (c, s, syn, 100, 0),
                (s, c, syn | Flags::ACK, 500, 101),
                (c, s, ack, 101, 501),
                (c, s, fin, 101, 501),
                (s, c, fin, 501, 102),
                (c, s, ack, 102, 502),
            ] {
                let seg = Segment::for_test(from, to, flags, seq, ackn, 0);
                feed(&mut engine, &mut sink, seg, i64::from(port) * 100);
            }
        }
        let late = Segment::for_test("10.0.0.3:999", "10.0.0.2:80", syn, 1, 0, 0);
        feed(&mut engine, &mut sink, late, 10_000_000_000);
        sink
    }

    /// Bytes the memory budget counts per connection after `n` HTTP connections (a request, a
    /// response, closed both ways) that all still linger in the table; with `settle` off, the
    /// variant that kept each one's HTTP parser until it was finished.
    fn lingering_footprint(n: u16, settle: bool) -> usize {
        SETTLING.with(|s| s.set(settle));
        let mut engine = Engine::new(EngineOptions {
            tracker: TrackerConfig {
                emit_packets: PacketSel::None,
                ..TrackerConfig::default()
            },
            http: true,
            http_records: PacketSel::None,
            ..EngineOptions::default()
        });
        let mut sink = Takes::default();
        let req: &'static [u8] = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n";
        let resp: &'static [u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let (q, r) = (req.len() as u32, resp.len() as u32);
        let (syn, ack, fin, psh) = (
            Flags::SYN,
            Flags::ACK,
            Flags::FIN | Flags::ACK,
            Flags::PSH | Flags::ACK,
        );
        let mut frame = 0;
        for port in 0..n {
            let c = format!("10.0.0.1:{}", 1024 + port);
            let (c, s) = (c.as_str(), "10.0.0.2:80");
            for (from, to, flags, seq, ackn, payload) in [
                (c, s, syn, 100, 0, &[][..]),
                (s, c, syn | Flags::ACK, 500, 101, &[]),
                (c, s, ack, 101, 501, &[]),
                (c, s, psh, 101, 501, req),
                (s, c, psh, 501, 101 + q, resp),
                (c, s, fin, 101 + q, 501 + r, &[]),
                (s, c, fin, 501 + r, 102 + q, &[]),
                (c, s, ack, 102 + q, 502 + r, &[]),
            ] {
                frame += 1;
                let seg = Segment {
                    payload,
                    ..Segment::for_test(from, to, flags, seq, ackn, payload.len() as u32)
                };
                let ts = Timestamp(i64::from(port) * 1000);
                engine
                    .on_decoded(frame, ts, Ok(Some(seg)), None, None, &mut sink)
                    .unwrap();
            }
        }
        SETTLING.with(|s| s.set(true));
        assert_eq!(engine.tracker.conns_seen(), u64::from(n));
        assert!(
            sink.kinds.is_empty(),
            "a connection finished before the end"
        );
        engine.tracker.memory_used() / usize::from(n)
    }

    /// A connection closed both ways waits out its linger in the table (most of those held on a
    /// busy HTTP capture): what it keeps there is its tracking state, not its HTTP parser. The
    /// bound is on what the memory budget counts per connection (issue 26; 1,328 bytes here, 2,048
    /// with the parser kept).
    #[test]
    fn a_lingering_closed_connection_keeps_little() {
        let each = lingering_footprint(500, true);
        assert!(each < 1536, "{each} bytes counted per lingering connection");
        // Control: keeping the parser until the connection is finished goes over the bound.
        let kept = lingering_footprint(500, false);
        assert!(kept >= 1536, "{kept} bytes with the parser kept");
    }

    /// A sweep that finishes thousands of closed connections at once hands their records over
    /// as they come, a batch at a time, rather than holding them all until the frame ends; the
    /// records and their order are the same.
    #[test]
    fn a_large_sweep_hands_its_records_over_in_batches() {
        let n = 3 * SPILL_AT as u16 + 5;
        let spilled = sweep_burst(n, true, None);
        assert_eq!(
            spilled.kinds.len(),
            usize::from(n),
            "every connection finished"
        );
        assert!(spilled.kinds.iter().all(|k| *k == "conn"));
        let most = spilled.sizes.iter().copied().max().unwrap_or(0);
        assert!(most <= SPILL_AT, "{most} records held at once");
        // Control: without a sink to hand over to, the sweep holds every record at once.
        let held = sweep_burst(n, false, None);
        assert_eq!(held.sizes, [usize::from(n)]);
        assert_eq!(held.kinds, spilled.kinds);
        // With --follow the records wait for the end of the frame, after its followed text.
        let following = sweep_burst(n, true, Some(0));
        assert_eq!(following.sizes, [usize::from(n)]);
    }
}
