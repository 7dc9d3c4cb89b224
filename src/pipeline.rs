//! Replay on several cores: a reader thread reads and decodes frames while the calling thread
//! tracks connections and prints; with [`PrintThread`], a third thread prints, the calling
//! thread formats for it whenever it falls behind (and prints rather than wait for it), and the
//! reader prints for it while tracking has input enough. The printing thread never takes the
//! tracking thread's CPU when woken ([`yield_on_wake`]).
//!
//! Reading a capture (system calls, record headers), decoding link, IP and TCP headers, and
//! working out each segment's connection key ([`FlowKey`]) need no connection state, so they
//! run ahead in their own thread and hand over batches of decoded segments, in capture order,
//! through a bounded channel. Only the captured payload bytes are copied into a batch, and only
//! when something reads them (reassembly for HTTP or `--follow`); from a capture file read
//! through a memory map not even those: the map is lent ([`crate::capture::mapped::Lent`]),
//! items point into it, and each batch's stretch of the file is released once it is done.
//! Empty batches go back to the reader for reuse, so steady state allocates nothing.
//!
//! With HTTP on, the reader also parses each payload as if an HTTP message started at its
//! first byte ([`crate::http::parser::prepare`]): a pure function of the bytes, so it needs no
//! connection state. The HTTP layer uses that parse where a message does start there, and
//! parses for itself everywhere else, so the records are the same; on a busy HTTP capture this
//! moves most of the parsing off the tracking thread, the one that bounds the run. It does so
//! only while the reader is ahead ([`Prepare::WhenAhead`]): a tracking thread waiting for
//! input is better off parsing itself.
//!
//! Everything downstream sees exactly what a single-threaded run sees: the same segments in the
//! same order with the same frame numbers and times, the same decode failures, and a capture
//! error only after every frame before it.

use crate::capture::mapped::Lent;
use crate::capture::{CaptureError, FrameSource, Timestamp};
use crate::decode::{DecodeError, Decoder, Segment};
use crate::engine::{Engine, Progress};
use crate::http::parser::Prepared;
use crate::output::jsonl::Lines;
use crate::output::{Printer, Sink};
use crate::record::Record;
use crate::tcp::FlowKey;
use crate::types::PacketSel;
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

/// Frames per batch: large enough that channel hand-offs cost nothing per frame, small enough
/// that a batch stays in cache. Every batch in flight or recycled keeps room for this many
/// items (about 170 bytes each): 2048 held 0.35 MiB per batch for no speed (issue 26).
const BATCH_FRAMES: usize = 1024;
/// Payload bytes per batch, at most (about): batches in flight and recycled keep their
/// buffers, so without it large frames (8 KiB segments of an out-of-order attack) held
/// 2048 x 8 KiB per batch, 180 MiB over the engine's memory budget. Issue 26: 2 MiB (with
/// 2048 frames and 8 in flight) was ~25 MiB of a full-snaplen capture's peak RSS; with 256 KiB,
/// 1024 frames and 4 in flight, nginx+wrk full-snaplen capture, summary 89 -> 62 MiB and JSON
/// lines 102 -> 73 MiB, wall time no worse (medians of 7 alternating runs 0.67 -> 0.59 s and
/// 1.06 -> 0.80 s; snaplen-256 bench capture 0.65 -> 0.49 s and 0.77 -> 0.77 s). Payloads
/// read in place from a mapped file count too (their pages stay mapped until the batch is
/// done); there 256 KiB made batches of ~230 full-size frames and cost JSON lines 10%: with
/// 1 MiB, summary 0.37 -> 0.34 s and JSON lines 0.63 -> 0.56 s (medians of 7), peak RSS
/// 32 -> 37 and 44 -> 49 MiB.
const BATCH_BYTES: usize = 1 << 20;
/// Batches queued for tracking, beyond which the reader counts as ahead. Not 0: the batch the
/// reader has just sent counts until the tracking thread takes it, even when that thread is
/// waiting for it; with 0 the reader parsed ahead nearly always and became the slower side
/// (summary on two cores, bench capture: 2.81 -> 2.42-2.49 s with 1, 2 or 4; JSON lines, where
/// tracking is the slower side, unchanged).
const AHEAD: usize = 1;
/// Batches in flight between the threads (each keeps its buffers: see [`BATCH_BYTES`]).
const DEPTH: usize = 4;
/// Frames read between looks at whether the printer needs help.
const HELP_EVERY: usize = 256;
/// Batches queued for tracking, at least, for the reader to print instead of reading on.
const HELP_AHEAD: usize = 2;
/// Batches waiting to be printed, at least, for the reader to print one: with one, the
/// printing thread is about to.
const HELP_BEHIND: usize = 2;

/// What decoding one frame gave, with the payload as a range of the batch's bytes, or of the
/// capture's lent map when the `bool` says so ([`Batch::payload`]); and the segment's
/// connection key, worked out here rather than on the tracking thread.
pub(crate) enum Decoded {
    Segment(Segment<'static>, Range<usize>, FlowKey, bool),
    NotTcp,
    Failed(DecodeError),
}

pub(crate) struct Item {
    pub(crate) number: u64,
    pub(crate) ts: Timestamp,
    pub(crate) decoded: Decoded,
    /// Index in [`Batch::prepared`] of the payload's head parsed ahead.
    pub(crate) prepared: Option<u32>,
    /// Of [`Split::Workers`]: the worker whose flow this is (0 otherwise).
    pub(crate) owner: u32,
}

/// How the reader divides the segments by flow hash ([`FlowKey::shard`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Split {
    /// Not at all.
    None,
    /// `--shard I/N`: other shards' payloads are neither copied nor parsed.
    Shard(u32, u32),
    /// `--workers N`: each item says which worker owns it.
    Workers(u32),
}

#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) payload: Vec<u8>,
    pub(crate) items: Vec<Item>,
    pub(crate) prepared: Vec<Prepared>,
    /// The source's progress after the last frame of this batch.
    pub(crate) progress: (u64, Option<u64>),
    /// Set on the last batch: how the input ended.
    pub(crate) end: Option<Result<(), CaptureError>>,
    /// The capture's map, when payloads are read where they lie in it rather than copied.
    pub(crate) lent: Option<Lent>,
    /// The stretch of the map this batch's frames used, from the end of the previous batch's:
    /// released once every reader is done with the batch ([`Batch::release`]).
    pub(crate) span: Range<usize>,
    /// Payload bytes of the map the items point at (they count toward [`BATCH_BYTES`]).
    mapped: usize,
}

impl Batch {
    /// A segment's payload (see [`Decoded::Segment`]).
    #[inline]
    pub(crate) fn payload(&self, r: &Range<usize>, in_map: bool) -> &[u8] {
        match (&self.lent, in_map) {
            (Some(l), true) => l.get(r.clone()),
            _ => &self.payload[r.clone()],
        }
    }

    /// Done with this batch and every one before it: give back the pages of its stretch.
    pub(crate) fn release(&self) {
        if let Some(l) = &self.lent {
            l.release(self.span.clone());
        }
    }

    /// Done with this batch and every one before it, whose pages from `from` on are still
    /// mapped: give them back in steps ([`Lent::release_upto`]), moving `from`.
    fn release_from(&self, from: &mut usize) {
        if let Some(l) = &self.lent {
            l.release_upto(from, self.span.end);
        }
    }
}

/// The reader thread: fill batches until the input ends or `send` says the receiver has gone.
#[allow(clippy::too_many_arguments)]
pub(crate) fn read_ahead(
    mut source: Box<dyn FrameSource + Send>,
    keep_payload: bool,
    prepare: Prepare,
    mut send: impl FnMut(Batch) -> bool,
    recycled: Receiver<Batch>,
    queued: Arc<AtomicUsize>,
    printer: Option<PrintHelper>,
    split: Split,
) {
    let mut decoder = Decoder::new();
    // Payloads read in place when the capture is a mapped file: nothing copied.
    let lent = if keep_payload {
        source.lend_map()
    } else {
        None
    };
    let mut span_end = 0;
    // The map's pages before this have been given back.
    let mut released = 0;
    loop {
        let prepare = match prepare {
            Prepare::Never => false,
            Prepare::Always => true,
            Prepare::WhenAhead => queued.load(Ordering::Relaxed) > AHEAD,
        };
        // A batch back from tracking gives its stretch of the map back here, not there:
        // `madvise` and the TLB shootdown it sends cost the tracking thread, the run's
        // busiest, 2% of a JSON-lines run's samples. And not batch by batch
        // ([`crate::capture::mapped::RELEASE_STEP`]).
        let mut batch = match recycled.try_recv() {
            Ok(done) => {
                done.release_from(&mut released);
                done
            }
            Err(_) => Batch::default(),
        };
        batch.payload.clear();
        batch.items.clear();
        batch.prepared.clear();
        batch.lent.clone_from(&lent);
        batch.mapped = 0;
        let span_start = span_end;
        // SIGINT/SIGTERM (once installed) end the input here, once per batch.
        let room = if crate::capture::stop::stop_requested() {
            batch.end = Some(Ok(()));
            0
        } else {
            BATCH_FRAMES
        };
        while batch.items.len() < room && batch.payload.len() + batch.mapped < BATCH_BYTES {
            if batch.items.len().is_multiple_of(HELP_EVERY) {
                if let Some(p) = &printer {
                    // Print while tracking has input and the printer is behind: tracking
                    // would soon wait for the printer, never for this thread.
                    while queued.load(Ordering::Relaxed) >= HELP_AHEAD && p.help(HELP_BEHIND) {}
                }
            }
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
            let mut owner = 0;
            let decoded = match decoder.decode(&frame) {
                Ok(Some(seg)) => {
                    let flow = FlowKey::of(&seg);
                    // Another shard's segment: the engine only counts it, so neither its
                    // payload nor its parse is needed.
                    let mine = match split {
                        Split::None => true,
                        Split::Shard(i, n) => flow.shard(n) == i,
                        Split::Workers(n) => {
                            owner = flow.shard(n);
                            true
                        }
                    };
                    if prepare && mine {
                        if let Some(p) = crate::http::parser::prepare(seg.payload) {
                            prepared = Some(batch.prepared.len() as u32);
                            batch.prepared.push(p);
                        }
                    }
                    let in_map = match &lent {
                        Some(l) if mine => l.range_of(seg.payload),
                        _ => None,
                    };
                    let range = match in_map.clone() {
                        Some(r) => {
                            batch.mapped += r.len();
                            span_end = span_end.max(r.end);
                            r
                        }
                        None => {
                            let start = batch.payload.len();
                            if keep_payload && mine {
                                batch.payload.extend_from_slice(seg.payload);
                            }
                            start..batch.payload.len()
                        }
                    };
                    Decoded::Segment(
                        Segment {
                            payload: &[],
                            ..seg
                        },
                        range,
                        flow,
                        in_map.is_some(),
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
                owner,
            });
        }
        batch.progress = source.progress();
        batch.span = span_start..span_end;
        let last = batch.end.is_some();
        queued.fetch_add(1, Ordering::Relaxed);
        if !send(batch) || last {
            return;
        }
    }
}

/// Let the calling thread, once woken, wait for its turn rather than take the CPU from the
/// thread running there: on Linux its policy becomes `SCHED_BATCH` (same share of the CPU,
/// no preemption on wake-up; any user may ask for it). For the printing thread, which every
/// batch of records wakes on the tracking thread's CPU: before, each wake-up switched the
/// tracking thread out (6,500 context switches per million frames, 41% of them there), and
/// the reader, having filled its queue meanwhile, stopped.
pub(crate) fn yield_on_wake() {
    #[cfg(target_os = "linux")]
    {
        let p = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler only reads the parameter it is given. A failure (a
        // seccomp filter) leaves the thread as it was: slower, same output.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &p) };
    }
}

/// Whether the reader thread parses payloads as HTTP heads ahead of the HTTP layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepare {
    Never,
    Always,
    /// Only while tracking has batches waiting. When it has none it is waiting for the
    /// reader, and parsing on the tracking thread instead is faster (replay's summary on two
    /// cores: the tracking thread waited ~10% of the run for the reader).
    WhenAhead,
}

/// [`crate::engine::run_source_with`] with reading and decoding on a second thread. The engine's
/// own decoder is not used. `keep_payload`: copy payload bytes (needed by reassembly).
/// `prepare`: when to parse payloads as the start of an HTTP message on the reader thread too
/// ([`crate::http::parser::prepare`]), which the HTTP layer then need not do; the records are
/// the same either way. `helper`: when `sink` is (or leads to) a [`PrintThread`], its
/// [`PrintThread::helper`], so that the reader prints for it when it falls behind.
#[allow(clippy::too_many_arguments)]
pub fn run_threaded(
    source: Box<dyn FrameSource + Send>,
    keep_payload: bool,
    prepare: Prepare,
    engine: &mut Engine,
    sink: &mut dyn Sink,
    helper: Option<PrintHelper>,
    every: u32,
    progress: &mut Progress<'_>,
) -> anyhow::Result<()> {
    let (tx, rx) = sync_channel::<Batch>(DEPTH);
    let (back, recycled) = sync_channel::<Batch>(DEPTH + 2);
    let queued = Arc::new(AtomicUsize::new(0));
    let split = match engine.options().shard {
        Some((i, n)) => Split::Shard(i, n),
        None => Split::None,
    };
    let reader = {
        let queued = queued.clone();
        std::thread::Builder::new()
            .name("statescope-read".into())
            .spawn(move || {
                read_ahead(
                    source,
                    keep_payload,
                    prepare,
                    |b| tx.send(b).is_ok(),
                    recycled,
                    queued,
                    helper,
                    split,
                )
            })?
    };
    let mut n = 0u32;
    let mut failure = None;
    // A closed channel without an end marker means the reader thread died: say so.
    let mut ended = false;
    while let Ok(mut batch) = rx.recv() {
        queued.fetch_sub(1, Ordering::Relaxed);
        for item in &batch.items {
            let (decoded, flow) = match &item.decoded {
                Decoded::Segment(seg, range, flow, in_map) => (
                    Ok(Some(Segment {
                        payload: batch.payload(range, *in_map),
                        ..*seg
                    })),
                    Some(*flow),
                ),
                Decoded::NotTcp => (Ok(None), None),
                Decoded::Failed(e) => (Err(e.clone()), None),
            };
            let prepared = item.prepared.map(|i| &batch.prepared[i as usize]);
            engine.on_decoded(item.number, item.ts, decoded, prepared, flow, sink)?;
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
        // The reader releases the batch's pages when it takes it back; one it will never
        // take back (its queue full, or it has ended) is released here.
        if let Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) = back.try_send(batch) {
            b.release();
        }
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

/// Records per hand-over to the printing thread ([`PrintThread::HAND_OVER_AT`]).
const PRINT_BATCH: usize = 512;
/// Room in each batch: the engine hands over once it holds PRINT_BATCH records, and the packet
/// that got it there may have added a few more (its HTTP message, a finished connection's
/// record). Without the slack the batch grew to twice its size there, copying every record,
/// and shrank back (copying again) when it came back for reuse.
const BATCH_ROOM: usize = PRINT_BATCH + PRINT_BATCH / 8;
/// Batches in flight to the printer.
const PRINT_DEPTH: usize = 4;
/// Text buffer kept for reuse: a full batch's lines (512 of about 330 bytes) fit.
const TEXT_KEPT: usize = 256 << 10;
/// Batches formatted ahead of a printer that has fallen behind, at most. Four were 3% faster
/// on the bench capture but left peak memory above 100 MiB on some runs (freed buffers the
/// allocator had not yet returned); two stay near the memory of printing without help.
const BEHIND: usize = 2;

/// A batch on its way to the printing thread: records, and their text when the sending
/// thread already made it.
#[derive(Default)]
struct Job {
    recs: Vec<Record>,
    text: Vec<u8>,
    formatted: bool,
}

/// A printer on its own thread: [`Sink::take`] moves records into a batch, full batches wait
/// in a short queue, and the printer formats and writes them there, in order. Printed batches
/// come back, are emptied here and reused.
///
/// When the printer falls behind (its queue is full) and its output is each record's own
/// text ([`Printer::Lines`]), the sending thread formats the batch itself instead of waiting,
/// and the printer only writes that text, in the batch's place. On two cores the printer
/// shares one with the reader while tracking has the other: measured there, tracking had
/// waited on the printer for a fifth of the run.
///
/// The reader thread prints too, when batches pile up ([`PrintThread::helper`]): a printing thread
/// that is woken but not yet running holds nothing, so whichever thread gets to the printer
/// first prints the oldest batch. Left to the scheduler, the woken printer often waited its
/// turn on the core tracking runs on (half a second of a 2-second run) while the reader's core
/// read further ahead than anything needed.
///
/// A write error (a closed pipe) stops printing; the next call here returns it.
pub struct PrintThread {
    shared: Arc<Printing>,
    recycled: Receiver<Job>,
    batch: Vec<Record>,
    handle: Option<std::thread::JoinHandle<io::Result<()>>>,
    wants: PacketSel,
    /// Set for JSON lines: makes the text here when the printer falls behind.
    formatter: Option<Lines>,
    /// Batches formatted here, in order, that the printer had no room for yet.
    behind: std::collections::VecDeque<Job>,
    /// How many batches were formatted here.
    formatted_here: u64,
    /// Printed batches back for reuse.
    spare: Vec<Job>,
}

/// What the printing thread and the threads that help it share.
struct Printing {
    queue: Mutex<Queue>,
    /// Signalled when a batch is queued, the queue closes or printing fails.
    work: Condvar,
    /// Signalled when a batch leaves the queue or printing fails.
    room: Condvar,
    /// The printer itself. Whoever holds it takes the oldest batch and prints it before
    /// letting go, so batches are printed in the order they were queued.
    printer: Mutex<Printer>,
    /// Printed batches, back to the thread that made them.
    back: SyncSender<Job>,
}

#[derive(Default)]
struct Queue {
    jobs: std::collections::VecDeque<Job>,
    /// No more batches will come.
    closed: bool,
    /// Printing failed: the error, until the printing thread returns it.
    failed: Option<io::Error>,
    /// The printing thread has ended (failed, or panicked): nothing more is printed, and a
    /// sender waiting for room stops waiting.
    stopped: bool,
    /// The printing thread waits for work / a sender waits for room. A condition variable's
    /// `notify_one` is a system call even with no one waiting: these skip it then (one
    /// batch of 512 records at a time, on the tracking thread).
    printer_waits: bool,
    sender_waits: bool,
}

/// Marks printing stopped when the printing thread ends, however it ends: a sender waiting for
/// room would otherwise wait for ever after a panic there.
struct StopOnExit<'a>(&'a Printing);

impl Drop for StopOnExit<'_> {
    fn drop(&mut self) {
        lock(&self.0.queue).stopped = true;
        self.0.work.notify_all();
        self.0.room.notify_all();
    }
}

enum Pushed {
    Queued,
    Full(Job),
    Stopped,
}

/// A lock whose holder panicked is still the lock: the panic itself is reported where the
/// thread is joined.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Printing {
    /// Queue `job`; when the queue is full, wait for room if `wait`, else give it back.
    fn push(&self, job: Job, wait: bool) -> Pushed {
        let mut q = lock(&self.queue);
        loop {
            if q.stopped {
                return Pushed::Stopped;
            }
            if q.jobs.len() < PRINT_DEPTH {
                q.jobs.push_back(job);
                let wake = q.printer_waits;
                drop(q);
                if wake {
                    self.work.notify_one();
                }
                return Pushed::Queued;
            }
            if !wait {
                return Pushed::Full(job);
            }
            q.sender_waits = true;
            q = self.room.wait(q).unwrap_or_else(PoisonError::into_inner);
            q.sender_waits = false;
        }
    }

    /// With the printer held: print the oldest batch if at least `min` are queued. Whether
    /// one was printed.
    fn print_one(&self, printer: &mut Printer, min: usize) -> bool {
        let job = {
            let mut q = lock(&self.queue);
            if q.stopped || q.jobs.len() < min {
                return false;
            }
            match q.jobs.pop_front() {
                Some(job) if q.sender_waits => {
                    drop(q);
                    self.room.notify_one();
                    job
                }
                Some(job) => job,
                None => return false,
            }
        };
        // One match a batch, so each record's call is the printer's own.
        let printed = match printer {
            Printer::Lines(p) if job.formatted => p.write_formatted(&job.text),
            Printer::Lines(p) => job.recs.iter().try_for_each(|rec| p.record(rec)),
            Printer::Records(p) => job.recs.iter().try_for_each(|rec| p.record(rec)),
        };
        // Records go back to be dropped where they were made: freeing on the thread that
        // allocated keeps the allocator's pages local (dropping them here measured 2% slower).
        let _ = self.back.try_send(job);
        if let Err(e) = printed {
            let mut q = lock(&self.queue);
            q.stopped = true;
            q.failed.get_or_insert(e);
            drop(q);
            self.work.notify_all();
            self.room.notify_all();
            return false;
        }
        true
    }

    /// The printing thread: print batches as they come, then finish the printer.
    fn run(&self) -> io::Result<()> {
        loop {
            {
                // Wait without holding the printer, so that a helper can print meanwhile.
                let mut q = lock(&self.queue);
                while q.jobs.is_empty() && !q.closed && !q.stopped {
                    q.printer_waits = true;
                    q = self.work.wait(q).unwrap_or_else(PoisonError::into_inner);
                    q.printer_waits = false;
                }
                if let Some(e) = q.failed.take() {
                    return Err(e);
                }
                if q.stopped {
                    return Err(io::Error::other("printing had already failed"));
                }
                if q.jobs.is_empty() && q.closed {
                    break;
                }
            }
            let mut printer = lock(&self.printer);
            while self.print_one(&mut printer, 1) {}
        }
        lock(&self.printer).finish()
    }

    /// Print the oldest waiting batch if at least `min` are waiting and nobody is printing
    /// right now; never waits. Whether one was printed.
    fn help(&self, min: usize) -> bool {
        // Never wait here: a busy printer means another thread is printing already.
        match self.printer.try_lock() {
            Ok(mut printer) => self.print_one(&mut printer, min),
            Err(_) => false,
        }
    }
}

/// A way for another thread of the run to print for a [`PrintThread`] that falls behind.
#[derive(Clone)]
pub struct PrintHelper(Arc<Printing>);

impl PrintHelper {
    /// Print the oldest waiting batch if at least `min` are waiting and nobody is printing
    /// right now; never waits. Whether one was printed.
    pub fn help(&self, min: usize) -> bool {
        self.0.help(min)
    }
}

impl PrintThread {
    /// How many records the engine should gather before handing them over
    /// ([`crate::engine::Engine::hand_over_at`]): whole batches are moved once on their way
    /// here rather than copied record by record.
    pub const HAND_OVER_AT: usize = PRINT_BATCH;

    pub fn new(inner: Printer) -> io::Result<Self> {
        Self::starting_with(inner, yield_on_wake)
    }

    /// [`PrintThread::new`], the printing thread calling `start` first.
    fn starting_with(inner: Printer, start: impl FnOnce() + Send + 'static) -> io::Result<Self> {
        let wants = inner.wants_packets();
        let formatter = matches!(inner, Printer::Lines(_)).then(Lines::default);
        let (back, recycled) = sync_channel::<Job>(PRINT_DEPTH + BEHIND + 2);
        let shared = Arc::new(Printing {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            room: Condvar::new(),
            printer: Mutex::new(inner),
            back,
        });
        let handle = std::thread::Builder::new()
            .name("statescope-print".into())
            .spawn({
                let shared = shared.clone();
                move || {
                    start();
                    let _stop = StopOnExit(&shared);
                    shared.run()
                }
            })?;
        Ok(PrintThread {
            shared,
            recycled,
            batch: Vec::with_capacity(BATCH_ROOM),
            handle: Some(handle),
            wants,
            formatter,
            behind: Default::default(),
            formatted_here: 0,
            spare: Vec::new(),
        })
    }

    /// Send the current batch; if the printer has stopped, its error.
    fn send(&mut self) -> io::Result<()> {
        // Every batch that comes back is kept for reuse: a new one is made only when none is
        // spare, so their number stays bounded by what can be in flight and their buffers are
        // not freed and made again.
        while let Ok(mut done) = self.recycled.try_recv() {
            done.recs.clear();
            done.text.clear();
            // A batch that grew for a burst (a sweep finishing thousands of connections at
            // once) goes back to the usual size rather than staying large in circulation.
            done.recs.shrink_to(BATCH_ROOM);
            done.text.shrink_to(TEXT_KEPT);
            self.spare.push(done);
        }
        let Job {
            recs: next, text, ..
        } = self.spare.pop().unwrap_or_else(|| Job {
            recs: Vec::with_capacity(BATCH_ROOM),
            ..Job::default()
        });
        let job = Job {
            recs: std::mem::replace(&mut self.batch, next),
            text,
            formatted: false,
        };
        if self.handle.is_none() {
            return self.join();
        }
        let Some(f) = self.formatter.as_mut() else {
            return match self.shared.push(job, true) {
                Pushed::Queued => Ok(()),
                _ => self.join(),
            };
        };
        // Batches formatted here wait their turn in `behind`; any still waiting go first.
        let mut sent = true;
        while let Some(first) = self.behind.pop_front() {
            match self.shared.push(first, false) {
                Pushed::Queued => {}
                Pushed::Full(first) => {
                    self.behind.push_front(first);
                    break;
                }
                Pushed::Stopped => sent = false,
            }
        }
        let job = if self.behind.is_empty() {
            match self.shared.push(job, false) {
                Pushed::Queued => None,
                Pushed::Full(job) => Some(job),
                Pushed::Stopped => {
                    sent = false;
                    None
                }
            }
        } else {
            Some(job)
        };
        if let Some(mut job) = job {
            // The printer is behind: make the text here rather than wait for it.
            for rec in &job.recs {
                f.format(rec, &mut job.text)?;
            }
            job.formatted = true;
            self.formatted_here += 1;
            self.behind.push_back(job);
            if self.behind.len() > BEHIND {
                if let Some(first) = self.behind.pop_front() {
                    sent &= self.push_or_print(first);
                }
            }
        }
        if sent {
            Ok(())
        } else {
            self.join()
        }
    }

    /// Queue `job`, printing the oldest queued batch here for room rather than waiting for
    /// the printing thread while nobody else is printing. Whether it was queued.
    fn push_or_print(&mut self, mut job: Job) -> bool {
        loop {
            match self.shared.push(job, false) {
                Pushed::Queued => return true,
                Pushed::Stopped => return false,
                Pushed::Full(back) if self.shared.help(1) => job = back,
                Pushed::Full(back) => {
                    return matches!(self.shared.push(back, true), Pushed::Queued);
                }
            }
        }
    }

    /// Send every batch still waiting here, in order.
    fn send_behind(&mut self) -> io::Result<()> {
        while let Some(first) = self.behind.pop_front() {
            if !matches!(self.shared.push(first, true), Pushed::Queued) {
                return self.join();
            }
        }
        Ok(())
    }

    /// Wait for the printer to end: its error. Once it has been reported, later calls fail
    /// without one (never as a closed pipe, which would count as success).
    fn join(&mut self) -> io::Result<()> {
        lock(&self.shared.queue).closed = true;
        self.shared.work.notify_all();
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
        if recs.len() > BATCH_ROOM {
            // A burst (a sweep, or the end of input, finishing thousands of connections at
            // once) goes in batches of the usual size: as one, its records and their text
            // were megabytes held at once, the run's peak memory.
            let mut burst = recs.drain(..);
            loop {
                let room = PRINT_BATCH.saturating_sub(self.batch.len());
                self.batch.extend(burst.by_ref().take(room));
                if self.batch.len() < PRINT_BATCH {
                    break;
                }
                self.send()?;
            }
            drop(burst);
            recs.shrink_to(BATCH_ROOM);
            return Ok(());
        }
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
        self.send_behind()?;
        self.join()
    }
    fn wants_packets(&self) -> PacketSel {
        self.wants.clone()
    }
}

impl PrintThread {
    /// For the reader thread of [`run_threaded`]: printing it may do for this printer.
    pub fn helper(&self) -> PrintHelper {
        PrintHelper(self.shared.clone())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::jsonl::JsonlSink;
    use crate::record::{Dir, PacketRec};
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    /// Collects what is written; holds the printing thread's first write until `open`
    /// receives (a sender printing for it is not held: it would wait for itself).
    struct Gated {
        open: Option<Receiver<()>>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gated {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if std::thread::current().name() == Some("statescope-print") {
                if let Some(open) = self.open.take() {
                    let _ = open.recv();
                }
            }
            self.out.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn batch(n: usize) -> Vec<Record> {
        (0..PRINT_BATCH)
            .map(|i| {
                let k = (n * PRINT_BATCH + i) as u64;
                Record::Packet(PacketRec {
                    frame: k + 1,
                    ts: 1.5 + k as f64,
                    conn: k % 7,
                    dir: if k.is_multiple_of(3) {
                        Dir::C2s
                    } else {
                        Dir::S2c
                    },
                    src: format!("10.0.0.{}:{}", k % 5, 1000 + k % 11)
                        .parse()
                        .unwrap(),
                    dst: "10.0.0.9:80".parse().unwrap(),
                    seq: k as u32,
                    ..PacketRec::default()
                })
            })
            .collect()
    }

    /// A printer that falls behind gets batches formatted by the sender, and the output is
    /// still every record's line in order, as printing on one thread gives.
    #[test]
    fn formatting_ahead_keeps_the_order() {
        let batches = 2 * (1 + PRINT_DEPTH + BEHIND);
        let mut expected = Vec::new();
        let mut lines = crate::output::jsonl::Lines::default();
        for n in 0..batches {
            for rec in batch(n) {
                lines.format(&rec, &mut expected).unwrap();
            }
        }
        let (open, gate) = sync_channel(1);
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = JsonlSink::new(Box::new(Gated {
            open: Some(gate),
            out: out.clone(),
        }));
        let mut printer = PrintThread::new(Printer::Lines(sink)).unwrap();
        // The printer holds the first batch at its first write: the queue fills, and the
        // sender formats as many as it may keep before it would have to wait (one more if
        // the printer had not yet taken the first when the queue filled).
        for n in 0..1 + PRINT_DEPTH + BEHIND {
            printer.take(&mut batch(n)).unwrap();
        }
        assert!(printer.formatted_here >= BEHIND as u64);
        open.send(()).unwrap();
        for n in 1 + PRINT_DEPTH + BEHIND..batches {
            printer.take(&mut batch(n)).unwrap();
        }
        printer.finish().unwrap();
        let got = out.lock().unwrap().clone();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "lines out of order or changed");
    }

    /// A printing thread that has not yet run (woken, waiting for a CPU) holds nothing up:
    /// a sender whose queue is full prints the oldest batch itself rather than waiting, and
    /// the output is still every line in order.
    #[test]
    fn a_sender_prints_for_a_printing_thread_that_has_not_run() {
        let batches = 2 * (1 + PRINT_DEPTH + BEHIND);
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = JsonlSink::new(Box::new(Gated {
            open: None,
            out: out.clone(),
        }));
        let (start, held) = sync_channel::<()>(1);
        let mut printer = PrintThread::starting_with(Printer::Lines(sink), move || {
            let _ = held.recv();
        })
        .unwrap();
        let (sent, all_sent) = sync_channel(1);
        let (go, finish) = sync_channel::<()>(1);
        let sender = std::thread::spawn(move || {
            for n in 0..batches {
                printer.take(&mut batch(n)).unwrap();
            }
            let _ = sent.send(());
            let _ = finish.recv();
            printer.finish()
        });
        let waited = all_sent
            .recv_timeout(std::time::Duration::from_secs(30))
            .is_err();
        let printed_meanwhile = out.lock().unwrap().len();
        start.send(()).unwrap();
        go.send(()).unwrap();
        sender.join().unwrap().unwrap();
        assert!(
            !waited,
            "the sender waited for a printing thread that never ran"
        );
        assert!(
            printed_meanwhile > 0,
            "nothing printed before the printing thread ran"
        );
        assert!(
            *out.lock().unwrap() == expected_lines(batches),
            "lines out of order or changed"
        );
    }

    /// The printing thread runs as `SCHED_BATCH` ([`yield_on_wake`]).
    #[cfg(target_os = "linux")]
    #[test]
    fn the_printing_thread_yields_on_wake() {
        /// Each write's thread name and scheduling policy.
        type Seen = Arc<Mutex<Vec<(Option<String>, i32)>>>;
        struct Policy(Seen);
        impl Write for Policy {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                let name = std::thread::current().name().map(str::to_string);
                // SAFETY: asks for the calling thread's policy; no memory is passed.
                let policy = unsafe { libc::sched_getscheduler(0) };
                self.0.lock().unwrap().push((name, policy));
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = JsonlSink::new(Box::new(Policy(seen.clone())));
        let mut printer = PrintThread::new(Printer::Lines(sink)).unwrap();
        printer.take(&mut batch(0)).unwrap();
        printer.finish().unwrap();
        let seen = seen.lock().unwrap();
        let printing: Vec<i32> = seen
            .iter()
            .filter(|(name, _)| name.as_deref() == Some("statescope-print"))
            .map(|&(_, p)| p)
            .collect();
        assert!(
            !printing.is_empty(),
            "the printing thread wrote nothing: {seen:?}"
        );
        assert!(
            printing.iter().all(|&p| p == libc::SCHED_BATCH),
            "policies {printing:?}, want SCHED_BATCH ({})",
            libc::SCHED_BATCH
        );
    }

    fn expected_lines(batches: usize) -> Vec<u8> {
        let mut expected = Vec::new();
        let mut lines = crate::output::jsonl::Lines::default();
        for n in 0..batches {
            for rec in batch(n) {
                lines.format(&rec, &mut expected).unwrap();
            }
        }
        expected
    }

    fn job(n: usize) -> Job {
        Job {
            recs: batch(n),
            ..Job::default()
        }
    }

    /// A helper prints the oldest batch, only when at least `min` wait and the printer is
    /// free; what it and the printing loop print together is in order.
    #[test]
    fn a_helper_prints_the_oldest_batch_when_enough_wait() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = JsonlSink::new(Box::new(Gated {
            open: None,
            out: out.clone(),
        }));
        let (back, _recycled) = sync_channel(PRINT_DEPTH + BEHIND + 2);
        let printing = Printing {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            room: Condvar::new(),
            printer: Mutex::new(Printer::Lines(sink)),
            back,
        };
        for n in 0..3 {
            assert!(matches!(printing.push(job(n), false), Pushed::Queued));
        }
        {
            let _busy = printing.printer.lock().unwrap();
            assert!(!printing.help(1), "printed while the printer was held");
        }
        assert!(printing.help(2));
        assert!(printing.help(2));
        assert!(!printing.help(2), "printed with one batch waiting");
        assert!(matches!(printing.push(job(3), false), Pushed::Queued));
        lock(&printing.queue).closed = true;
        printing.run().unwrap();
        assert!(*out.lock().unwrap() == expected_lines(4));
    }

    /// A printer that panics ends the run with an error; the sender never waits for ever.
    #[test]
    fn a_printer_that_panics_stops_the_sender() {
        struct Panics;
        impl Sink for Panics {
            fn record(&mut self, _: &Record) -> io::Result<()> {
                panic!("printer bug (expected by this test)");
            }
            fn finish(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (done, result) = sync_channel(1);
        std::thread::spawn(move || {
            let mut printer = PrintThread::new(Printer::Records(Box::new(Panics))).unwrap();
            let mut sent = Ok(());
            for n in 0..4 * (PRINT_DEPTH + BEHIND + 2) {
                sent = printer.take(&mut batch(n));
                if sent.is_err() {
                    break;
                }
            }
            let finished = printer.finish();
            let _ = done.send(sent.is_err() || finished.is_err());
        });
        let failed = result
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("the sender hung after the printer panicked");
        assert!(failed, "a panicking printer went unreported");
    }

    /// The printing thread, a sender formatting ahead and a thread helping all at once: every
    /// line once, in order.
    #[test]
    fn helpers_racing_the_printing_thread_keep_the_order() {
        let batches = 200;
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = JsonlSink::new(Box::new(Gated {
            open: None,
            out: out.clone(),
        }));
        let mut printer = PrintThread::new(Printer::Lines(sink)).unwrap();
        let helper = printer.helper();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let helping = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut printed = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    printed += helper.help(1) as u64;
                }
                printed
            }
        });
        for n in 0..batches {
            printer.take(&mut batch(n)).unwrap();
        }
        printer.finish().unwrap();
        stop.store(true, Ordering::Relaxed);
        helping.join().unwrap();
        assert!(*out.lock().unwrap() == expected_lines(batches));
    }
}
