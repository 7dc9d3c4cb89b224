//! The access log: one line per request (and per closed connection), written in batches.
//!
//! One `write(2)` per line cost `serve` two thirds of its throughput (issue 26). As nginx does
//! with `access_log ... buffer=64k flush=...`, lines collect in memory and leave in one write
//! when [`WAKE_AT`] bytes are pending, every [`FLUSH_EVERY`], and on [`AccessLog::close`] (which
//! the shutdown path calls after a signal, so the last lines are never lost). A writer that
//! cannot keep up (a stalled pipe) makes request threads write themselves past [`HARD_CAP`]
//! bytes: the log slows the server down rather than growing without bound or dropping lines.

use std::cell::RefCell;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Longest a line waits before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Pending bytes at which the flusher is woken early.
const WAKE_AT: usize = 64 << 10;
/// Pending bytes past which the request thread writes the batch itself. Also what bounds the
/// log's memory: two buffers of about this size, whatever the request count.
const HARD_CAP: usize = 256 << 10;

/// Where log lines go: standard error for `serve`, anything `Write` in tests.
pub type Output = Box<dyn Write + Send>;

/// A buffered, line-ordered log shared by every connection of one server.
pub struct AccessLog {
    shared: Arc<Shared>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when the flusher should not wait for its timer.
    wake: Condvar,
    /// Set once a wake-up is asked, so each batch costs one notify, not one per line.
    woken: AtomicBool,
    /// Held across taking a batch and writing it, so batches reach the output in order.
    out: Mutex<Output>,
}

struct Pending {
    buf: Vec<u8>,
    /// Closed: no flusher any more, every line is written at once.
    closed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Appending bytes and swapping buffers leave nothing half-done, so a panic elsewhere is no
    // reason to stop logging.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AccessLog {
    /// A log writing to standard error, with its flusher thread started.
    pub fn stderr() -> Self {
        Self::new(Box::new(std::io::stderr()))
    }

    /// A log writing to `out`, with its flusher thread started.
    pub fn new(out: Output) -> Self {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                buf: Vec::with_capacity(WAKE_AT * 2),
                closed: false,
            }),
            wake: Condvar::new(),
            woken: AtomicBool::new(false),
            out: Mutex::new(out),
        });
        let s = shared.clone();
        let flusher = std::thread::Builder::new()
            .name("serve access log".into())
            .spawn(move || s.run_flusher())
            .ok();
        if flusher.is_none() {
            // No thread: write every line at once rather than hold lines no one will write.
            lock(&shared.pending).closed = true;
        }
        AccessLog {
            shared,
            flusher: Mutex::new(flusher),
        }
    }

    /// Append one line (a newline is added).
    pub fn line(&self, args: fmt::Arguments<'_>) {
        self.write(|b| {
            let _ = b.write_fmt(args);
        });
    }

    /// Append one line that `fill` writes (a newline is added): for the per-request line,
    /// which `format_args!` took five times as long to build as [`Request::write_to`] does.
    pub fn write(&self, fill: impl FnOnce(&mut Vec<u8>)) {
        thread_local! {
            // Filled outside the shared lock, so two workers logging at once wait only for
            // a copy.
            static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        SCRATCH.with(|scratch| {
            let mut line = scratch.borrow_mut();
            line.clear();
            fill(&mut line);
            line.push(b'\n');
            let mut p = lock(&self.shared.pending);
            p.buf.extend_from_slice(&line);
            let len = p.buf.len();
            if p.closed || len >= HARD_CAP {
                drop(p);
                self.shared.flush(&mut Vec::with_capacity(WAKE_AT * 2));
            } else if len >= WAKE_AT && !self.shared.woken.swap(true, Relaxed) {
                drop(p);
                self.shared.wake.notify_one();
            }
        });
    }

    /// Write whatever is pending now.
    pub fn flush(&self) {
        self.shared.flush(&mut Vec::new());
    }

    /// Stop the flusher after a last flush; later lines are written as they come.
    pub fn close(&self) {
        lock(&self.shared.pending).closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = lock(&self.flusher).take() {
            let _ = t.join();
        }
        self.flush();
    }
}

/// One request's access-log line:
/// `PEER "METHOD PATH VERSION" STATUS BYTESB conn#N req#M MS.mmmms`.
pub struct Request<'a> {
    pub peer: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub version: hyper::Version,
    pub status: u16,
    pub body_bytes: u64,
    pub conn: u64,
    pub nth: u64,
    pub micros: u64,
}

impl Request<'_> {
    /// The line without its newline, built from slices and integers (no `fmt` machinery).
    pub fn write_to(&self, b: &mut Vec<u8>) {
        use hyper::Version as V;
        let mut n = itoa::Buffer::new();
        let version = match self.version {
            V::HTTP_09 => "HTTP/0.9",
            V::HTTP_10 => "HTTP/1.0",
            V::HTTP_11 => "HTTP/1.1",
            V::HTTP_2 => "HTTP/2.0",
            V::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/?",
        };
        for part in [
            self.peer,
            " \"",
            self.method,
            " ",
            self.path,
            " ",
            version,
            "\" ",
        ] {
            b.extend_from_slice(part.as_bytes());
        }
        b.extend_from_slice(n.format(self.status).as_bytes());
        b.push(b' ');
        b.extend_from_slice(n.format(self.body_bytes).as_bytes());
        b.extend_from_slice(b"B conn#");
        b.extend_from_slice(n.format(self.conn).as_bytes());
        b.extend_from_slice(b" req#");
        b.extend_from_slice(n.format(self.nth).as_bytes());
        b.push(b' ');
        b.extend_from_slice(n.format(self.micros / 1000).as_bytes());
        let frac = self.micros % 1000;
        b.extend_from_slice(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
        ]);
        b.extend_from_slice(b"ms");
    }
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    fn run_flusher(&self) {
        // Swapped with the pending buffer each round, so neither reallocates in steady state.
        let mut spare = Vec::with_capacity(WAKE_AT * 2);
        loop {
            let closed = {
                let p = lock(&self.pending);
                let p = if p.closed {
                    p
                } else {
                    self.wake
                        .wait_timeout(p, FLUSH_EVERY)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                };
                p.closed
            };
            self.woken.store(false, Relaxed);
            self.flush(&mut spare);
            if closed {
                return;
            }
        }
    }

    /// Take the pending lines (leaving `spare`'s buffer in their place) and write them.
    fn flush(&self, spare: &mut Vec<u8>) {
        let mut out = lock(&self.out);
        std::mem::swap(&mut lock(&self.pending).buf, spare);
        if !spare.is_empty() {
            // A closed standard error is no reason to stop serving; the lines are lost then,
            // as they would be unbuffered.
            let _ = out.write_all(spare);
            let _ = out.flush();
            spare.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output tests can read back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(lock(&self.0).clone()).unwrap()
        }
    }

    #[test]
    fn lines_arrive_after_the_timer_and_all_at_close() {
        let sink = Sink::default();
        let log = AccessLog::new(Box::new(sink.clone()));
        log.line(format_args!("one {}", 1));
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while sink.text().is_empty() {
            assert!(std::time::Instant::now() < deadline, "timer never flushed");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(sink.text(), "one 1\n");
        for i in 0..10_000 {
            log.line(format_args!("line {i}"));
        }
        log.close();
        let text = sink.text();
        assert_eq!(text.lines().count(), 10_001);
        // In order, nothing lost or interleaved.
        for (i, l) in text.lines().skip(1).enumerate() {
            assert_eq!(l, format!("line {i}"));
        }
        // After close, lines go straight out.
        log.line(format_args!("late"));
        assert!(sink.text().ends_with("late\n"));
    }

    #[test]
    fn request_line_reads_as_the_format_string_it_replaced() {
        let mut b = Vec::new();
        Request {
            peer: "127.0.0.1:5000",
            method: "GET",
            path: "/echo",
            version: hyper::Version::HTTP_11,
            status: 200,
            body_bytes: 74,
            conn: 3,
            nth: 12,
            micros: 1_042,
        }
        .write_to(&mut b);
        let want = format!(
            "{} \"{} {} {:?}\" {} {}B conn#{} req#{} {:.3}ms",
            "127.0.0.1:5000",
            "GET",
            "/echo",
            hyper::Version::HTTP_11,
            200,
            74,
            3,
            12,
            1.042
        );
        assert_eq!(String::from_utf8(b).unwrap(), want);
    }

    #[test]
    fn threads_logging_at_once_keep_whole_lines() {
        let sink = Sink::default();
        let log = Arc::new(AccessLog::new(Box::new(sink.clone())));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        log.line(format_args!("t{t} {i} {}", "x".repeat(i % 50)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        log.close();
        let text = sink.text();
        assert_eq!(text.lines().count(), 80_000);
        for l in text.lines() {
            let mut f = l.split(' ');
            let _t = f.next().unwrap();
            let i: usize = f.next().unwrap().parse().unwrap();
            assert_eq!(f.next().unwrap_or("").len(), i % 50, "{l}");
        }
    }
}
