//! Replay on several cores: a reader thread reads and decodes frames while the calling thread
//! tracks connections and prints; with [`PrintThread`], a third thread prints.
//!
//! Reading a capture (system calls, record headers) and decoding link, IP and TCP headers need no
//! connection state, so they run ahead in their own thread and hand over batches of decoded
//! segments, in capture order, through a bounded channel. Only the captured payload bytes are
//! copied into a batch, and only when something reads them (reassembly for HTTP or `--follow`).
//! Empty batches go back to the reader for reuse, so steady state allocates nothing.
//!
//! With HTTP on, the reader also parses each payload as if an HTTP message started at its
//! first byte ([`crate::http::parser::prepare`]): a pure function of the bytes, so it needs no
//! connection state. The HTTP layer uses that parse where a message does start there, and
//! parses for itself everywhere else, so the records are the same; on a busy HTTP capture this
//! moves most of the parsing off the tracking thread, the one that bounds the run.
//!
//! Everything downstream sees exactly what a single-threaded run sees: the same segments in the
//! same order with the same frame numbers and times, the same decode failures, and a capture
//! error only after every frame before it.

use crate::capture::{CaptureError, FrameSource, Timestamp};
use crate::decode::{DecodeError, Decoder, Segment};
use crate::engine::{Engine, Progress};
use crate::http::parser::Prepared;
use crate::output::Sink;
use crate::record::Record;
use crate::tcp::PacketSel;
use std::io;
use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Frames per batch: large enough that channel hand-offs cost nothing per frame, small enough
/// that a batch stays in cache.
const BATCH_FRAMES: usize = 2048;
/// Batches in flight between the threads.
const DEPTH: usize = 8;

/// What decoding one frame gave, with the payload as a range of the batch's bytes.
enum Decoded {
    Segment(Segment<'static>, Range<usize>),
    NotTcp,
    Failed(DecodeError),
}

struct Item {
    number: u64,
    ts: Timestamp,
    decoded: Decoded,
    /// Index in [`Batch::prepared`] of the payload's head parsed ahead.
    prepared: Option<u32>,
}

#[derive(Default)]
struct Batch {
    payload: Vec<u8>,
    items: Vec<Item>,
    prepared: Vec<Prepared>,
    /// The source's progress after the last frame of this batch.
    progress: (u64, Option<u64>),
    /// Set on the last batch: how the input ended.
    end: Option<Result<(), CaptureError>>,
}

/// The reader thread: fill batches until the input ends or the receiver goes away.
fn read_ahead(
    mut source: Box<dyn FrameSource + Send>,
    keep_payload: bool,
    prepare: bool,
    tx: SyncSender<Batch>,
    recycled: Receiver<Batch>,
) {
    let mut decoder = Decoder::new();
    loop {
        let mut batch = recycled.try_recv().unwrap_or_default();
        batch.payload.clear();
        batch.items.clear();
        batch.prepared.clear();
        while batch.items.len() < BATCH_FRAMES {
            let frame = match source.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => {
                    batch.end = Some(Ok(()));
                    break;
                }
                Err(e) => {
                    batch.end = Some(Err(e));
                    break;
                }
            };
            let (number, ts) = (frame.number, frame.ts);
            let mut prepared = None;
            let decoded = match decoder.decode(&frame) {
                Ok(Some(seg)) => {
                    if prepare {
                        if let Some(p) = crate::http::parser::prepare(seg.payload) {
                            prepared = Some(batch.prepared.len() as u32);
                            batch.prepared.push(p);
                        }
                    }
                    let start = batch.payload.len();
                    if keep_payload {
                        batch.payload.extend_from_slice(seg.payload);
                    }
                    let range = start..batch.payload.len();
                    Decoded::Segment(
                        Segment {
                            payload: &[],
                            ..seg
                        },
                        range,
                    )
                }
                Ok(None) => Decoded::NotTcp,
                Err(e) => Decoded::Failed(e),
            };
            batch.items.push(Item {
                number,
                ts,
                decoded,
                prepared,
            });
        }
        batch.progress = source.progress();
        let last = batch.end.is_some();
        if tx.send(batch).is_err() || last {
            return;
        }
    }
}

/// [`crate::engine::run_source_with`] with reading and decoding on a second thread. The engine's
/// own decoder is not used. `keep_payload`: copy payload bytes (needed by reassembly).
/// `prepare`: parse each payload as the start of an HTTP message on the reader thread too
/// ([`crate::http::parser::prepare`]), which the HTTP layer then need not do.
pub fn run_threaded(
    source: Box<dyn FrameSource + Send>,
    keep_payload: bool,
    prepare: bool,
    engine: &mut Engine,
    sink: &mut dyn Sink,
    every: u32,
    progress: &mut Progress<'_>,
) -> anyhow::Result<()> {
    let (tx, rx) = sync_channel::<Batch>(DEPTH);
    let (back, recycled) = sync_channel::<Batch>(DEPTH + 2);
    let reader = std::thread::Builder::new()
        .name("statescope-read".into())
        .spawn(move || read_ahead(source, keep_payload, prepare, tx, recycled))?;
    let mut n = 0u32;
    let mut failure = None;
    // A closed channel without an end marker means the reader thread died: say so.
    let mut ended = false;
    while let Ok(mut batch) = rx.recv() {
        for item in &batch.items {
            let decoded = match &item.decoded {
                Decoded::Segment(seg, range) => Ok(Some(Segment {
                    payload: &batch.payload[range.clone()],
                    ..*seg
                })),
                Decoded::NotTcp => Ok(None),
                Decoded::Failed(e) => Err(e.clone()),
            };
            let prepared = item.prepared.map(|i| &batch.prepared[i as usize]);
            engine.on_decoded(item.number, item.ts, decoded, prepared, sink)?;
            n = n.wrapping_add(1);
            if n.is_multiple_of(every.max(1)) {
                progress(engine, batch.progress);
            }
        }
        if let Some(end) = batch.end.take() {
            failure = end.err();
            ended = true;
            break;
        }
        let _ = back.try_send(batch);
    }
    drop(rx);
    if reader.join().is_err() || !ended {
        anyhow::bail!("the capture reader thread stopped unexpectedly; run again with --threads 1 and report this");
    }
    engine.finish(sink)?;
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Records per hand-over to the printing thread.
const PRINT_BATCH: usize = 512;

/// A printer on its own thread: [`Sink::take`] moves records into a batch, full batches go
/// through a bounded channel, and the printer formats and writes them there, in order. Printed
/// batches come back, are emptied here and reused.
///
/// A write error (a closed pipe) stops the printing thread; the next call here returns it.
pub struct PrintThread {
    tx: Option<SyncSender<Vec<Record>>>,
    recycled: Receiver<Vec<Record>>,
    batch: Vec<Record>,
    handle: Option<std::thread::JoinHandle<io::Result<()>>>,
    wants: PacketSel,
}

impl PrintThread {
    pub fn new(mut inner: Box<dyn Sink + Send>) -> io::Result<Self> {
        let wants = inner.wants_packets();
        let (tx, rx) = sync_channel::<Vec<Record>>(DEPTH);
        let (back, recycled) = sync_channel::<Vec<Record>>(DEPTH + 2);
        let handle = std::thread::Builder::new()
            .name("statescope-print".into())
            .spawn(move || {
                while let Ok(batch) = rx.recv() {
                    for rec in &batch {
                        inner.record(rec)?;
                    }
                    // Records go back to be dropped where they were made: freeing on the
                    // thread that allocated keeps the allocator's pages local.
                    let _ = back.try_send(batch);
                }
                inner.finish()
            })?;
        Ok(PrintThread {
            tx: Some(tx),
            recycled,
            batch: Vec::with_capacity(PRINT_BATCH),
            handle: Some(handle),
            wants,
        })
    }

    /// Send the current batch; if the printer has stopped, its error.
    fn send(&mut self) -> io::Result<()> {
        let mut next = None;
        while let Ok(mut done) = self.recycled.try_recv() {
            done.clear();
            next.get_or_insert(done);
        }
        let next = next.unwrap_or_else(|| Vec::with_capacity(PRINT_BATCH));
        let full = std::mem::replace(&mut self.batch, next);
        let sent = match &self.tx {
            Some(tx) => tx.send(full).is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            self.join()
        }
    }

    /// Wait for the printer to end: its error. Once it has been reported, later calls fail
    /// without one (never as a closed pipe, which would count as success).
    fn join(&mut self) -> io::Result<()> {
        self.tx = None;
        match self.handle.take().map(|h| h.join()) {
            Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err(io::Error::other(
                "the printing thread stopped unexpectedly; run again with --threads 2 and report this",
            )),
            None => Err(io::Error::other("printing had already failed")),
        }
    }
}

impl Sink for PrintThread {
    fn record(&mut self, rec: &Record) -> io::Result<()> {
        self.take(&mut vec![rec.clone()])
    }
    fn take(&mut self, recs: &mut Vec<Record>) -> io::Result<()> {
        if self.batch.is_empty() {
            // The engine gathered a whole batch: take its vector, leave it this empty one.
            std::mem::swap(&mut self.batch, recs);
        } else {
            self.batch.append(recs);
        }
        if self.batch.len() >= PRINT_BATCH {
            self.send()?;
        }
        Ok(())
    }
    fn finish(&mut self) -> io::Result<()> {
        if !self.batch.is_empty() {
            self.send()?;
        }
        self.join()
    }
    fn wants_packets(&self) -> PacketSel {
        self.wants.clone()
    }
    fn hand_over_at(&self) -> usize {
        PRINT_BATCH
    }
}

impl Drop for PrintThread {
    /// Dropped without `finish` (an error upstream): let the printer write what it has.
    fn drop(&mut self) {
        if self.handle.is_some() {
            let _ = self.finish();
        }
    }
}
