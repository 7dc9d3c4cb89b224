//! Brokers: how stateful servers share events so that any of them can serve any user.
//!
//! A WebSocket server holds each user's connection, so a message from a user on server 1 must
//! somehow reach users connected to servers 2 and 3. Two mechanisms do that, both behind the one
//! [`Broker`] trait:
//!
//! * **pub-sub** ([`Broker::publish`], [`Broker::subscribe`]): fire and forget. A message reaches
//!   whoever is subscribed at that moment; a server that is down misses it for good.
//! * **a queue with consumer groups** ([`Broker::append`], [`Broker::read_group`],
//!   [`Broker::ack`]): an append-only log, one read offset per group, and per-entry
//!   acknowledgement. A group that stops reading keeps its place; when it comes back it reads
//!   everything appended meanwhile, starting with what it had been given but not acknowledged.
//!
//! Two implementations:
//!
//! | module       | pub-sub                   | queue                                     |
//! |--------------|---------------------------|-------------------------------------------|
//! | [`embedded`] | `tokio::sync::broadcast`  | an in-memory log, per-group offset + pending set |
//! | [`redis`]    | `PUBLISH` / `SUBSCRIBE`   | Redis Streams: `XADD`, `XREADGROUP`, `XACK` |
//!
//! The embedded broker lives inside one process, so it connects servers running in that process
//! only (the labs, on a fresh machine). Redis connects servers on any number of machines.
//!
//! # Use outside the labs
//!
//! ```no_run
//! # async fn demo() -> Result<(), statescope::broker::BrokerError> {
//! use bytes::Bytes;
//! // `None` (or "embedded") gives the in-process broker; "redis://HOST:PORT" a real Redis.
//! let broker = statescope::broker::connect(Some("redis://127.0.0.1:6379")).await?;
//! let mut sub = broker.subscribe("chat").await?;
//! broker.publish("chat", Bytes::from_static(b"hello")).await?;
//! assert_eq!(sub.recv().await.as_deref(), Some(&b"hello"[..]));
//! # Ok(()) }
//! ```
//!
//! [`chat`] is a small stateful WebSocket chat server relaying through a broker; `lab queue`
//! runs three of them (`lab scale-stateful` runs three `serve --broker` processes instead).
//!
//! # Faults
//!
//! Nothing here loses a message silently. A publish or append that cannot reach Redis after
//! reconnecting with backoff returns an error (the caller counts it); a subscriber too slow to
//! keep up has the messages it skipped counted in [`Subscription::lost`]; a Redis subscription
//! whose connection drops reconnects with backoff and counts the reconnect in [`Stats`]. What a
//! subscriber missed while its connection was down cannot be known by pub-sub itself: that is
//! exactly the lesson of `lab queue`, which counts it end to end.

pub mod chat;
pub mod embedded;
pub mod redis;

use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// A boxed future, so that [`Broker`] can be used as `dyn Broker`.
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a broker operation failed. Every message is one line naming the broker and what to do.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot reach Redis at {url}: {reason}; start one (redis-server --port 6379) or leave out the Redis URL to use the embedded broker")]
    Unreachable { url: String, reason: String },
    #[error("Redis at {url} went away during {op} and did not come back after {attempts} attempts: {reason}")]
    Lost {
        url: String,
        op: &'static str,
        attempts: u32,
        reason: String,
    },
    #[error(
        "Redis at {url} is still unreachable ({reason}); {op} not done, next try in under a second"
    )]
    Down {
        url: String,
        op: &'static str,
        reason: String,
    },
    #[error("Redis at {url} refused {op}: {reason}")]
    Command {
        url: String,
        op: &'static str,
        reason: String,
    },
    #[error("unsupported broker URL {0:?}: use redis://HOST:PORT, or \"embedded\"")]
    BadUrl(String),
}

/// One entry of a queue, as handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The broker's id for the entry (Redis stream id form, `"<n>-<m>"`), used to acknowledge.
    pub id: String,
    pub payload: Bytes,
}

/// Counters a broker keeps about its own faults.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections re-established after the broker went away.
    pub reconnects: AtomicU64,
    /// Publishes and appends given up on (each also returned an error to its caller).
    pub failed_ops: AtomicU64,
}

/// A snapshot of [`Stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub reconnects: u64,
    pub failed_ops: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            reconnects: self.reconnects.load(Ordering::Relaxed),
            failed_ops: self.failed_ops.load(Ordering::Relaxed),
        }
    }
}

/// Pub-sub and a consumer-group queue, embedded or over Redis.
pub trait Broker: Send + Sync {
    /// `"embedded"` or the Redis URL.
    fn describe(&self) -> String;

    /// Send `payload` to everyone subscribed to `channel` now; returns how many subscribers
    /// (connections, for Redis) it reached. Nobody subscribed is not an error: that is pub-sub.
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Bytes,
    ) -> BoxFut<'a, Result<u64, BrokerError>>;

    /// Receive what is published on `channel` from the moment this returns.
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFut<'a, Result<Subscription, BrokerError>>;

    /// Create consumer group `group` on `stream` if it does not exist, reading from entries
    /// appended after now. An existing group keeps its offset: that is how a restarted consumer
    /// catches up.
    fn join_group<'a>(
        &'a self,
        stream: &'a str,
        group: &'a str,
    ) -> BoxFut<'a, Result<(), BrokerError>>;

    /// Append `payload` to `stream`; returns the new entry's id.
    fn append<'a>(
        &'a self,
        stream: &'a str,
        payload: Bytes,
    ) -> BoxFut<'a, Result<String, BrokerError>>;

    /// Up to `max` entries for `consumer` in `group`: first those it was given before and has
    /// not acknowledged, then new ones, waiting up to `wait` when there are none.
    fn read_group<'a>(
        &'a self,
        stream: &'a str,
        group: &'a str,
        consumer: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFut<'a, Result<Vec<Entry>, BrokerError>>;

    /// Acknowledge entries: `group` will not hand them out again.
    fn ack<'a>(
        &'a self,
        stream: &'a str,
        group: &'a str,
        ids: &'a [String],
    ) -> BoxFut<'a, Result<(), BrokerError>>;

    /// Every entry of `stream`, oldest first (for checking what survived).
    fn entries<'a>(&'a self, stream: &'a str) -> BoxFut<'a, Result<Vec<Entry>, BrokerError>>;

    /// Remove `stream` and its groups (cleanup after a lab).
    fn delete<'a>(&'a self, stream: &'a str) -> BoxFut<'a, Result<(), BrokerError>>;

    fn stats(&self) -> StatsSnapshot;
}

/// `None` or `"embedded"`: a new in-process broker. `redis://…`: a Redis broker, checked with a
/// `PING` so that an unreachable Redis is reported here, once, with its URL.
pub async fn connect(url: Option<&str>) -> Result<Arc<dyn Broker>, BrokerError> {
    match url {
        None | Some("embedded") => Ok(Arc::new(embedded::Embedded::new())),
        Some(u) if u.starts_with("redis://") => Ok(Arc::new(redis::RedisBroker::connect(u).await?)),
        Some(u) => Err(BrokerError::BadUrl(u.to_string())),
    }
}

/// A deliberately wrong broker for the labs' negative controls: passes everything to `inner`
/// except every `every`th publish or append, which it drops while saying it succeeded. A lab
/// run on it must fail its delivery check; nothing else should ever use it.
pub struct Lossy {
    pub inner: Arc<dyn Broker>,
    pub every: u64,
    sent: AtomicU64,
}

impl Lossy {
    pub fn new(inner: Arc<dyn Broker>, every: u64) -> Self {
        Lossy {
            inner,
            every: every.max(1),
            sent: AtomicU64::new(0),
        }
    }
    fn drops_next(&self) -> bool {
        (self.sent.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(self.every)
    }
}

impl Broker for Lossy {
    fn describe(&self) -> String {
        format!(
            "{} (dropping every {}th message)",
            self.inner.describe(),
            self.every
        )
    }
    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Bytes,
    ) -> BoxFut<'a, Result<u64, BrokerError>> {
        if self.drops_next() {
            return Box::pin(async { Ok(1) });
        }
        self.inner.publish(channel, payload)
    }
    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFut<'a, Result<Subscription, BrokerError>> {
        self.inner.subscribe(channel)
    }
    fn join_group<'a>(
        &'a self,
        stream: &'a str,
        group: &'a str,
    ) -> BoxFut<'a, Result<(), BrokerError>> {
        self.inner.join_group(stream, group)
    }
    fn append<'a>(
        &'a self,
        stream: &'a str,
        payload: Bytes,
    ) -> BoxFut<'a, Result<String, BrokerError>> {
        if self.drops_next() {
            return Box::pin(async { Ok("0-0".to_string()) });
        }
        self.inner.append(stream, payload)
    }
    fn read_group<'a>(
        &'a self,
        stream: &'a str,
        group: &'a str,
        consumer: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFut<'a, Result<Vec<Entry>, BrokerError>> {
        self.inner.read_group(stream, group, consumer, max, wait)
    }
    fn ack<'a>(
        &'a self,
        stream: &'a str,
        group: &'a str,
        ids: &'a [String],
    ) -> BoxFut<'a, Result<(), BrokerError>> {
        self.inner.ack(stream, group, ids)
    }
    fn entries<'a>(&'a self, stream: &'a str) -> BoxFut<'a, Result<Vec<Entry>, BrokerError>> {
        self.inner.entries(stream)
    }
    fn delete<'a>(&'a self, stream: &'a str) -> BoxFut<'a, Result<(), BrokerError>> {
        self.inner.delete(stream)
    }
    fn stats(&self) -> StatsSnapshot {
        self.inner.stats()
    }
}

/// Most messages a subscription buffers for a slow reader before it starts skipping (counted).
pub const SUBSCRIPTION_BUFFER: usize = 4096;

/// What a subscriber receives. Dropping it unsubscribes.
pub struct Subscription {
    inner: SubInner,
    lost: Arc<AtomicU64>,
}

enum SubInner {
    Embedded(tokio::sync::broadcast::Receiver<Bytes>),
    /// Fed by a task that owns the Redis connection and reconnects; aborted on drop.
    Forwarded {
        rx: mpsc::Receiver<Bytes>,
        task: tokio::task::AbortHandle,
    },
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let SubInner::Forwarded { task, .. } = &self.inner {
            task.abort();
        }
    }
}

impl Subscription {
    /// The next message; `None` only when the broker itself is gone.
    pub async fn recv(&mut self) -> Option<Bytes> {
        match &mut self.inner {
            SubInner::Embedded(rx) => loop {
                use tokio::sync::broadcast::error::RecvError;
                match rx.recv().await {
                    Ok(b) => return Some(b),
                    // The reader fell behind by more than the buffer: those messages are gone
                    // for this subscriber; count them and go on with the oldest kept.
                    Err(RecvError::Lagged(n)) => {
                        self.lost.fetch_add(n, Ordering::Relaxed);
                    }
                    Err(RecvError::Closed) => return None,
                }
            },
            SubInner::Forwarded { rx, .. } => rx.recv().await,
        }
    }

    /// Messages this subscriber skipped because it read too slowly.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

/// Retry delays for reconnecting: 20 ms doubling to 640 ms, then that; bounded by `attempts`.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(20u64 << attempt.min(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps() {
        assert_eq!(backoff(0), Duration::from_millis(20));
        assert_eq!(backoff(1), Duration::from_millis(40));
        assert_eq!(backoff(5), Duration::from_millis(640));
        assert_eq!(backoff(30), Duration::from_millis(640));
    }

    #[tokio::test]
    async fn connect_rejects_unknown_scheme() {
        let err = connect(Some("amqp://x")).await.err().unwrap();
        assert!(err.to_string().contains("amqp://x"), "{err}");
    }

    #[tokio::test]
    async fn connect_names_an_unreachable_redis() {
        // Bind then drop a listener so the port is (almost certainly) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("redis://127.0.0.1:{port}");
        let err = connect(Some(&url)).await.err().unwrap().to_string();
        assert!(err.contains(&url) && err.contains("redis-server"), "{err}");
        assert!(!err.contains('\n'));
    }
}
