//! Tracking on several cores in one process (`replay --workers N`): one engine per worker, each
//! owning the connections whose flow hash ([`FlowKey::shard`], the hash `--shard` uses) falls
//! to it, and one merger that puts their records back into the order, and the numbering, of
//! a single engine's run.
//!
//! The map, for a newcomer:
//! - the reader thread ([`crate::pipeline::read_ahead`]) reads and decodes as for `--threads`,
//!   and hands every batch to every worker (shared, not copied);
//! - worker `w` tracks the segments whose flow hash of N is `w`. Every other TCP segment only
//!   *ticks* its engine ([`Engine::on_foreign`]): connections past their linger or idle timeout
//!   end at the same frame as in one engine, which sweeps on every segment's capture time;
//! - each worker numbers its own connections 0, 1, 2, ... and says at which frame it started
//!   each one; the merger numbers them as one engine would (in the order of their first
//!   frames) and rewrites every record's `conn`;
//! - records are merged by the frame that produced them: at one frame, connections a sweep
//!   finished come first, in connection order, then the frame's own records; at the end, every
//!   connection still open, in connection order: what one engine prints, in its order.
//!
//! What differs from one engine: the memory budget (`--max-memory`) is split evenly between
//! the workers, so under memory pressure each evicts from its own connections; and the
//! summary line's "held at most" adds the workers' own peaks. Options that name a connection
//! before it is numbered (`--follow`) are refused by the command line; `--conn` works: workers
//! build the records of every connection that could end up with a wanted number, and the
//! merger drops the rest.

use crate::capture::FrameSource;
use crate::config::WorkerFault;
use crate::decode::Segment;
use crate::engine::{Engine, EngineOptions, Totals};
use crate::output::Sink;
use crate::pipeline::{read_ahead, Batch, Decoded, Prepare, Split};
use crate::record::Record;
use crate::types::PacketSel;
use std::io;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

/// Batches in flight to each worker.
const DEPTH: usize = 4;

/// Where a worker's record came from: the frame it was processing and whether it came from the
/// sweep before the frame (phase 0: finished connections, merged by connection) or from the
/// frame itself (phase 1). The end of input is frame `u64::MAX`, phase 0.
#[derive(Debug, Clone, Copy)]
struct Origin {
    frame: u64,
    sweep: bool,
}

/// One worker's output for one batch.
#[derive(Default)]
struct Out {
    recs: Vec<Record>,
    origins: Vec<Origin>,
    /// Frames at which this worker started its connections, in order of its own numbers.
    started: Vec<u64>,
    progress: (u64, Option<u64>),
    /// The input's last batch.
    last: bool,
}

/// A worker's sink: records with where they came from.
struct Gather {
    out: Out,
    at: Origin,
}

impl Sink for Gather {
    fn record(&mut self, rec: &Record) -> io::Result<()> {
        self.out.recs.push(rec.clone());
        self.out.origins.push(self.at);
        Ok(())
    }
    fn take(&mut self, recs: &mut Vec<Record>) -> io::Result<()> {
        self.out
            .origins
            .extend(std::iter::repeat_n(self.at, recs.len()));
        self.out.recs.append(recs);
        Ok(())
    }
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A selection every connection numbered `g` in one engine's run passes if `wants(g)`, seen
/// from a worker, whose own number for it is at most `g`.
fn superset(sel: &PacketSel) -> PacketSel {
    match sel {
        PacketSel::Some { below, list } => PacketSel::Some {
            below: list.iter().map(|c| c + 1).fold(*below, u64::max),
            list: Vec::new(),
        },
        other => other.clone(),
    }
}

/// Track `source` on `n` workers into `sink`, records as one engine with `opts` makes them.
/// `progress` gets (bytes read, total) after each batch; `totals` gets the workers' counts (of
/// what was read, however the run ended). A capture error comes after every record before it
/// has been handed to `sink`, and the sink finished.
pub fn run_workers(
    source: Box<dyn FrameSource + Send>,
    opts: &EngineOptions,
    (n, fault): (usize, Option<WorkerFault>),
    sink: &mut dyn Sink,
    progress: &mut dyn FnMut((u64, Option<u64>)),
    totals: &mut Totals,
) -> anyhow::Result<()> {
    let n = n.max(1);
    let mut wopts = opts.clone();
    wopts.tracker.emit_packets = superset(&opts.tracker.emit_packets);
    wopts.http_records = superset(&opts.http_records);
    if wopts.tracker.memory_budget != usize::MAX {
        wopts.tracker.memory_budget /= n;
    }
    let keep_payload = opts.tracker.reassemble;
    let (back, recycled) = sync_channel::<Batch>(n * DEPTH + 2);
    let mut to_workers = Vec::with_capacity(n);
    let mut from_workers = Vec::with_capacity(n);
    let mut handles = Vec::with_capacity(n);
    for w in 0..n {
        let (tx, rx) = sync_channel::<Arc<Batch>>(DEPTH);
        let (otx, orx) = sync_channel::<Out>(DEPTH);
        let (o, back) = (wopts.clone(), back.clone());
        let tick = fault != Some(WorkerFault::NoTick);
        handles.push(
            std::thread::Builder::new()
                .name(format!("statescope-work{w}"))
                .spawn(move || work(w, o, tick, rx, otx, back))?,
        );
        to_workers.push(tx);
        from_workers.push(orx);
    }
    drop(back);
    let reader = std::thread::Builder::new()
        .name("statescope-read".into())
        .spawn(move || {
            read_ahead(
                source,
                keep_payload,
                Prepare::Never,
                |b| {
                    let b = Arc::new(b);
                    to_workers.iter().all(|tx| tx.send(b.clone()).is_ok())
                },
                recycled,
                Arc::new(AtomicUsize::new(0)),
                None,
                Split::Workers(n as u32),
            )
        })?;
    let mut merger = Merger {
        n,
        fault,
        packets: opts.tracker.emit_packets.clone(),
        http: opts.http_records.clone(),
        numbers: vec![Vec::new(); n],
        next: 0,
        out: Vec::new(),
    };
    let mut result = Ok(());
    'batches: loop {
        let mut outs = Vec::with_capacity(n);
        for rx in &from_workers {
            match rx.recv() {
                Ok(o) => outs.push(o),
                // A worker stopped early: it failed (its join says how).
                Err(_) => break 'batches,
            }
        }
        progress(outs[0].progress);
        let last = outs[0].last;
        merger.merge(&mut outs);
        if let Err(e) = sink.take(&mut merger.out) {
            result = Err(e);
            break;
        }
        if last {
            break;
        }
    }
    // Stop everything upstream (after an output error), then collect how each thread ended.
    drop(from_workers);
    let mut failure: Option<anyhow::Error> = None;
    for h in handles {
        match h.join() {
            Ok((t, end)) => {
                totals.add(&t);
                if let Some(e) = end {
                    failure.get_or_insert(e);
                }
            }
            Err(_) => {
                failure.get_or_insert(anyhow::anyhow!(
                    "a tracking worker stopped unexpectedly; run again without --workers and report this"
                ));
            }
        }
    }
    if reader.join().is_err() {
        failure.get_or_insert(anyhow::anyhow!(
            "the capture reader thread stopped unexpectedly; run again without --workers and report this"
        ));
    }
    result?;
    sink.finish()?;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One worker: its flows tracked, every other TCP segment a tick, its records to the merger.
/// Returns its counts (of what it tracked before it stopped) and, from worker 0, the capture
/// error that ended the input, if one did.
fn work(
    w: usize,
    opts: EngineOptions,
    tick: bool,
    rx: Receiver<Arc<Batch>>,
    tx: SyncSender<Out>,
    back: SyncSender<Batch>,
) -> (Totals, Option<anyhow::Error>) {
    let mut engine = Engine::new(opts);
    let end = track(w, &mut engine, tick, rx, tx, back);
    (engine.totals(), end)
}

/// [`work`]'s loop.
fn track(
    w: usize,
    engine: &mut Engine,
    tick: bool,
    rx: Receiver<Arc<Batch>>,
    tx: SyncSender<Out>,
    back: SyncSender<Batch>,
) -> Option<anyhow::Error> {
    let mut g = Gather {
        out: Out::default(),
        at: Origin {
            frame: 0,
            sweep: false,
        },
    };
    while let Ok(batch) = rx.recv() {
        for item in &batch.items {
            let number = item.number;
            match &item.decoded {
                Decoded::Segment(seg, range, flow, in_map) => {
                    let mine = item.owner as usize == w;
                    // Most segments are another worker's and sweep nothing: skip them at once.
                    if !(mine || (tick && engine.sweep_due(item.ts))) {
                        continue;
                    }
                    let seg = Segment {
                        payload: batch.payload(range, *in_map),
                        ..*seg
                    };
                    if engine.sweep_due(item.ts) {
                        g.at = Origin {
                            frame: number,
                            sweep: true,
                        };
                        let _ = engine.on_foreign(item.ts, &seg, &mut g);
                    }
                    if mine {
                        g.at = Origin {
                            frame: number,
                            sweep: false,
                        };
                        let before = engine.conns_seen();
                        let prepared = item.prepared.map(|i| &batch.prepared[i as usize]);
                        let _ = engine.on_decoded(
                            number,
                            item.ts,
                            Ok(Some(seg)),
                            prepared,
                            Some(*flow),
                            &mut g,
                        );
                        if engine.conns_seen() != before {
                            g.out.started.push(number);
                        }
                    }
                }
                // Frames that are not TCP are counted once, by worker 0.
                Decoded::NotTcp if w == 0 => {
                    let _ = engine.on_decoded(number, item.ts, Ok(None), None, None, &mut g);
                }
                Decoded::Failed(e) if w == 0 => {
                    let _ = engine.on_decoded(number, item.ts, Err(e.clone()), None, None, &mut g);
                }
                Decoded::NotTcp | Decoded::Failed(_) => {}
            }
        }
        g.out.progress = batch.progress;
        let end = match &batch.end {
            Some(Ok(())) => Some(None),
            // Said once, by worker 0, as its text (the error itself stays with the batch).
            Some(Err(e)) => Some(Some(anyhow::anyhow!("{e}"))),
            None => None,
        };
        if end.is_some() {
            g.at = Origin {
                frame: u64::MAX,
                sweep: true,
            };
            // Gathering never fails.
            let _ = engine.finish(&mut g);
            g.out.last = true;
        }
        // The last worker done with a batch (so with every batch before it too; `into_inner`
        // gives it to exactly one of them) releases its stretch of a mapped capture and gives
        // it back to the reader for reuse.
        if let Some(b) = Arc::into_inner(batch) {
            b.release();
            let _ = back.try_send(b);
        }
        if tx.send(std::mem::take(&mut g.out)).is_err() {
            return None;
        }
        if let Some(end) = end {
            // Worker 0 reports how the input ended; the others only stop.
            return if w == 0 { end } else { None };
        }
    }
    None
}

/// Puts the workers' records in one engine's order and numbering.
struct Merger {
    n: usize,
    fault: Option<WorkerFault>,
    /// The printer's selections, on one engine's numbers.
    packets: PacketSel,
    http: PacketSel,
    /// Per worker: its connection numbers to the run's.
    numbers: Vec<Vec<u64>>,
    /// The run's next connection number.
    next: u64,
    /// The merged batch, for the sink.
    out: Vec<Record>,
}

impl Merger {
    fn merge(&mut self, outs: &mut [Out]) {
        // Number the batch's new connections in the order of their first frames (a frame
        // starts at most one connection, and belongs to one worker).
        let mut started: Vec<(u64, usize)> = outs
            .iter()
            .enumerate()
            .flat_map(|(w, o)| o.started.iter().map(move |&f| (f, w)))
            .collect();
        started.sort_unstable();
        for (_, w) in started {
            self.numbers[w].push(self.next);
            self.next += 1;
        }
        let mut pos = vec![0usize; self.n];
        let mut recs: Vec<std::vec::IntoIter<Record>> = outs
            .iter_mut()
            .map(|o| std::mem::take(&mut o.recs).into_iter())
            .collect();
        let total: usize = outs.iter().map(|o| o.origins.len()).sum();
        self.out.reserve(total);
        for _ in 0..total {
            let w = if self.fault == Some(WorkerFault::NoMerge) {
                (0..self.n)
                    .find(|&w| pos[w] < outs[w].origins.len())
                    .expect("a record left")
            } else {
                self.next_worker(outs, &pos, &mut recs)
            };
            let mut rec = recs[w].next().expect("one record per origin");
            pos[w] += 1;
            if let Some(c) = rec.conn_mut() {
                *c = self.global(w, *c);
            }
            if self.keep(&mut rec) {
                self.out.push(rec);
            }
        }
    }

    /// The worker whose next record comes first in one engine's order.
    fn next_worker(
        &self,
        outs: &[Out],
        pos: &[usize],
        recs: &mut [std::vec::IntoIter<Record>],
    ) -> usize {
        let mut best: Option<(usize, (u64, u8, u64))> = None;
        for w in 0..self.n {
            let Some(o) = outs[w].origins.get(pos[w]) else {
                continue;
            };
            // Finished connections merge by number; a frame's own records come after them.
            let conn = if o.sweep {
                recs[w]
                    .as_mut_slice()
                    .first_mut()
                    .and_then(|r| r.conn_mut().map(|c| *c))
                    .map_or(0, |c| self.global(w, c))
            } else {
                0
            };
            let key = (o.frame, u8::from(!o.sweep), conn);
            if best.is_none_or(|(_, k)| key < k) {
                best = Some((w, key));
            }
        }
        best.expect("a record left").0
    }

    /// The run's number for worker `w`'s connection `local`.
    fn global(&self, w: usize, local: u64) -> u64 {
        if self.fault == Some(WorkerFault::NoRenumber) {
            return local;
        }
        self.numbers[w]
            .get(local as usize)
            .copied()
            .unwrap_or(local)
    }

    /// Whether one engine with the printer's selections would have made `rec` (workers make
    /// the records of more connections than it: see [`superset`]); a connection record loses
    /// the state changes it would not have kept.
    fn keep(&self, rec: &mut Record) -> bool {
        match rec {
            Record::Packet(p) => self.packets.wants(p.conn),
            Record::Conn(c) => {
                if !self.packets.wants(c.conn) {
                    c.transitions.clear();
                }
                true
            }
            Record::Http(r) => self.http.wants(r.conn),
            Record::Ws(r) => self.http.wants(r.conn),
            Record::Tls(r) => self.http.wants(r.conn),
            Record::TlsMsg(r) => self.http.wants(r.conn),
            Record::H2(r) => self.http.wants(r.conn),
            Record::Lab(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superset_covers_every_number_a_worker_can_have() {
        let sel = PacketSel::Some {
            below: 3,
            list: vec![10, 7],
        };
        let s = superset(&sel);
        // A worker's number for the run's connection g is at most g.
        for g in 0..20u64 {
            if sel.wants(g) {
                for local in 0..=g {
                    assert!(s.wants(local), "run {g} local {local}");
                }
            }
        }
        assert!(!s.wants(11));
        assert_eq!(superset(&PacketSel::All), PacketSel::All);
    }
}
