//! What the server holds, measured rather than asserted.
//!
//! Every gauge here is kept by a guard object: incremented when the guard is made, decremented
//! in its `Drop`. So `/state` reports what is actually alive, and a bug that kept per-request
//! data around (say, pushing each [`RequestRecord`] into a log vector) would show up as a
//! non-zero `records_retained`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Instant;

/// One server instance's counters. Several instances in one process (tests, labs) each have
/// their own.
#[derive(Debug, Default)]
pub struct Stats {
    /// TCP connections open now, HTTP or upgraded to WebSocket (transport state).
    pub open_connections: AtomicUsize,
    /// Connections accepted since start (an aggregate counter, not a record per connection).
    pub connections_total: AtomicU64,
    /// Connections turned away with 503 because `--max-connections` were open.
    pub connections_refused: AtomicU64,
    /// Connections turned away with 503 because their address had its limit open.
    pub connections_refused_per_address: AtomicU64,
    /// Requests answered since start (an aggregate counter).
    pub requests_total: Counter,
    /// Requests whose handler is running now.
    pub requests_in_flight: Counter,
    /// [`RequestRecord`]s alive now.
    pub request_records_live: Counter,
    /// WebSocket connections open now.
    pub ws_open: AtomicUsize,
    /// Messages held in WebSocket connections' histories, summed over connections.
    pub ws_history_entries: AtomicUsize,
}

impl Stats {
    /// Per-request records alive beyond those of requests still being answered: zero unless
    /// something kept them.
    pub fn records_retained(&self) -> usize {
        // Two reads, not one snapshot: requests starting or finishing between them can skew
        // the difference by their number; when nothing else is in flight it is exact.
        let in_flight = self.requests_in_flight.get();
        self.request_records_live.get().saturating_sub(in_flight)
    }
}

/// Shards per [`Counter`]; threads beyond this share shards.
const SHARDS: usize = 8;

/// A counter bumped on every request, split over cache lines so that worker threads bumping
/// it at once do not bounce one line between cores (a measurable cost at 100k requests/s).
///
/// Each thread adds to and subtracts from its own shard; a request that moves threads may add
/// on one and subtract on another, so shards wrap freely and only their sum means anything.
/// [`Counter::get`] sums them: exact when nothing is changing, a moment's snapshot otherwise.
#[derive(Debug, Default)]
pub struct Counter {
    shards: [Shard; SHARDS],
}

#[derive(Debug, Default)]
#[repr(align(128))] // two 64-byte lines: adjacent-line prefetch pairs them on x86
struct Shard(AtomicUsize);

impl Counter {
    fn shard(&self) -> &AtomicUsize {
        thread_local! {
            static SHARD: usize = {
                static NEXT: AtomicUsize = AtomicUsize::new(0);
                NEXT.fetch_add(1, Relaxed) % SHARDS
            };
        }
        &self.shards[SHARD.with(|s| *s)].0
    }
    pub fn add(&self, n: usize) {
        self.shard().fetch_add(n, Relaxed);
    }
    pub fn sub(&self, n: usize) {
        self.shard().fetch_sub(n, Relaxed);
    }
    /// The sum over shards.
    pub fn get(&self) -> usize {
        self.shards
            .iter()
            .fold(0usize, |sum, s| sum.wrapping_add(s.0.load(Relaxed)))
    }
}

/// Everything the server knows about one request while answering it, and nothing after: it
/// is dropped as soon as the response is handed to hyper.
#[derive(Debug)]
pub struct RequestRecord<'a> {
    stats: &'a Stats,
    /// When the request's head arrived (for the log line's latency).
    pub started: Instant,
    /// 1-based: this request's position on its TCP connection.
    pub nth_on_connection: u64,
}

impl<'a> RequestRecord<'a> {
    pub fn new(stats: &'a Stats, nth_on_connection: u64) -> Self {
        stats.request_records_live.add(1);
        RequestRecord {
            stats,
            started: Instant::now(),
            nth_on_connection,
        }
    }
}

impl Drop for RequestRecord<'_> {
    fn drop(&mut self) {
        self.stats.request_records_live.sub(1);
    }
}

/// Counts a request as in flight from the handler's start until this guard drops, including
/// when the client vanishes and hyper drops the handler's future half-way.
pub struct InFlight<'a>(&'a Stats);

impl<'a> InFlight<'a> {
    pub fn new(stats: &'a Stats) -> Self {
        stats.requests_in_flight.add(1);
        InFlight(stats)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.requests_in_flight.sub(1);
    }
}

/// Counts one open TCP connection until dropped.
#[derive(Debug)]
pub struct OpenConnection(Arc<Stats>);

impl OpenConnection {
    pub fn new(stats: &Arc<Stats>) -> Self {
        stats.open_connections.fetch_add(1, Relaxed);
        stats.connections_total.fetch_add(1, Relaxed);
        OpenConnection(stats.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_counted_while_alive_and_gone_after() {
        let stats = Arc::new(Stats::default());
        {
            let _f = InFlight::new(&stats);
            let _r = RequestRecord::new(&stats, 1);
            assert_eq!(stats.request_records_live.get(), 1);
            assert_eq!(stats.records_retained(), 0);
        }
        assert_eq!(stats.request_records_live.get(), 0);
        assert_eq!(stats.requests_in_flight.get(), 0);
    }

    #[test]
    fn a_kept_record_shows_as_retained() {
        // What a leak would look like: a record outlives its request.
        let stats = Arc::new(Stats::default());
        let mut kept = Vec::new();
        for n in 1..=3 {
            let _f = InFlight::new(&stats);
            kept.push(RequestRecord::new(&stats, n));
        }
        assert_eq!(stats.records_retained(), 3);
        drop(kept);
        assert_eq!(stats.records_retained(), 0);
    }

    #[test]
    fn counter_sums_over_threads() {
        let c = Arc::new(Counter::default());
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.add(2);
                    }
                    // Subtract more than this thread added: its shard wraps, the sum does not.
                    if i == 0 {
                        c.sub(3000);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.get(), 8000 - 3000);
    }

    #[test]
    fn open_connection_gauge() {
        let stats = Arc::new(Stats::default());
        let a = OpenConnection::new(&stats);
        let _b = OpenConnection::new(&stats);
        drop(a);
        assert_eq!(stats.open_connections.load(Relaxed), 1);
        assert_eq!(stats.connections_total.load(Relaxed), 2);
    }
}
