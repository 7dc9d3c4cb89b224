//! The Redis broker: `PUBLISH`/`SUBSCRIBE` for pub-sub, Redis Streams for the queue.
//!
//! | operation      | Redis command                                                     |
//! |----------------|-------------------------------------------------------------------|
//! | publish        | `PUBLISH channel payload`                                         |
//! | subscribe      | `SUBSCRIBE channel` on a connection of its own                    |
//! | join_group     | `XGROUP CREATE stream group $ MKSTREAM` (`BUSYGROUP` = already there) |
//! | append         | `XADD stream * p payload`                                         |
//! | read_group     | `XREADGROUP GROUP g c COUNT n STREAMS s 0` (own pending), then `... BLOCK ms STREAMS s >` |
//! | ack            | `XACK stream group id...`                                         |
//!
//! Commands share one multiplexed connection; each consumer's blocking `XREADGROUP` gets a
//! connection of its own, because a blocked command holds up everything queued behind it on
//! the same connection.
//!
//! When Redis goes away, a command drops its connection, reconnects with backoff
//! ([`super::backoff`]) and retries, up to [`ATTEMPTS`] times; then it returns
//! [`BrokerError::Lost`] and counts a failed operation. From then on a circuit breaker makes
//! other commands fail at once ([`BrokerError::Down`], also counted) and lets one try again
//! every half second, until one succeeds; so an outage costs a busy server counted failures,
//! not a pile of callers each waiting out its own retries. A retried `PUBLISH` or `XADD` may have
//! run once already (the reply, not the command, was lost): delivery is at least once, and
//! consumers that care de-duplicate by message id, as the labs do. A subscription's task
//! reconnects and subscribes again on its own; what was published while it was away is gone,
//! which is pub-sub's nature and what `lab queue` measures.

use super::{
    backoff, BoxFut, Broker, BrokerError, Entry, Stats, StatsSnapshot, Subscription,
    SUBSCRIPTION_BUFFER,
};
use ::redis::aio::MultiplexedConnection;
use ::redis::streams::{StreamRangeReply, StreamReadReply};
use ::redis::{AsyncConnectionConfig, Client, Cmd, FromRedisValue, RedisError};
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Mutex};

/// Tries per command before giving up (about 2.5 s of backoff in all).
pub const ATTEMPTS: u32 = 8;

/// Tries for a subscription to come back before it closes (about 20 s).
const SUBSCRIBE_ATTEMPTS: u32 = 36;

/// Longest `BLOCK` used for a read, kept well under the response timeout.
const MAX_BLOCK: Duration = Duration::from_secs(2);

/// The field that holds a stream entry's payload.
const FIELD: &str = "p";

/// A broker backed by one Redis server.
pub struct RedisBroker {
    url: String,
    client: Client,
    /// Shared connection for non-blocking commands; `None` after it failed.
    conn: Mutex<Option<MultiplexedConnection>>,
    /// One connection per blocking reader, by "stream/group/consumer".
    readers: Mutex<HashMap<String, MultiplexedConnection>>,
    stats: Arc<Stats>,
    /// Set when an operation gave up: until when others fail at once, and why.
    down: std::sync::Mutex<Option<(Instant, String)>>,
}

/// How long operations fail fast after one gave up, before one of them tries again.
const BREAKER: Duration = Duration::from_millis(500);

fn config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(Duration::from_secs(5)))
}

/// Errors that mean "the connection is gone", as opposed to Redis refusing the command.
fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
}

/// One line: redis errors can carry newlines in their detail.
fn one_line(e: &impl std::fmt::Display) -> String {
    e.to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

impl RedisBroker {
    /// Open a client for `url` and check it answers `PING`.
    pub async fn connect(url: &str) -> Result<RedisBroker, BrokerError> {
        let unreachable = |e: &dyn std::fmt::Display| BrokerError::Unreachable {
            url: url.to_string(),
            reason: one_line(&e),
        };
        let client = Client::open(url).map_err(|e| unreachable(&e))?;
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config())
            .await
            .map_err(|e| unreachable(&e))?;
        let _: String = ::redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| unreachable(&e))?;
        Ok(RedisBroker {
            url: url.to_string(),
            client,
            conn: Mutex::new(Some(conn)),
            readers: Mutex::new(HashMap::new()),
            stats: Arc::new(Stats::default()),
            down: std::sync::Mutex::new(None),
        })
    }

    /// The connection for `slot` (`None`: the shared one), opening it if needed.
    async fn conn(&self, slot: Option<&str>) -> Result<MultiplexedConnection, RedisError> {
        match slot {
            None => {
                let mut guard = self.conn.lock().await;
                if let Some(c) = guard.as_ref() {
                    return Ok(c.clone());
                }
                let c = self
                    .client
                    .get_multiplexed_async_connection_with_config(&config())
                    .await?;
                self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                *guard = Some(c.clone());
                Ok(c)
            }
            Some(key) => {
                let mut readers = self.readers.lock().await;
                if let Some(c) = readers.get(key) {
                    return Ok(c.clone());
                }
                let c = self
                    .client
                    .get_multiplexed_async_connection_with_config(&config())
                    .await?;
                readers.insert(key.to_string(), c.clone());
                Ok(c)
            }
        }
    }

    async fn forget(&self, slot: Option<&str>) {
        match slot {
            None => *self.conn.lock().await = None,
            Some(key) => {
                self.readers.lock().await.remove(key);
            }
        }
    }

    /// Run `cmd`, reconnecting with backoff while the connection is what fails.
    async fn run<T: FromRedisValue>(
        &self,
        op: &'static str,
        slot: Option<&str>,
        cmd: &Cmd,
    ) -> Result<T, BrokerError> {
        // Circuit breaker: once an operation has given up, the others do not each wait out
        // their own retries; they fail at once (counted) until it is time for one more try.
        let attempts = {
            let mut down = self.down.lock().unwrap_or_else(|e| e.into_inner());
            match down.as_mut() {
                None => ATTEMPTS,
                Some((until, reason)) if Instant::now() < *until => {
                    self.stats.failed_ops.fetch_add(1, Ordering::Relaxed);
                    return Err(BrokerError::Down {
                        url: self.url.clone(),
                        op,
                        reason: reason.clone(),
                    });
                }
                Some((until, _)) => {
                    // This caller is the one that tries; the others keep failing fast meanwhile.
                    *until = Instant::now() + BREAKER;
                    1
                }
            }
        };
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(backoff(attempt - 1)).await;
            }
            let mut conn = match self.conn(slot).await {
                Ok(c) => c,
                Err(e) => {
                    last = one_line(&e);
                    continue;
                }
            };
            match cmd.query_async::<T>(&mut conn).await {
                Ok(v) => {
                    *self.down.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    return Ok(v);
                }
                Err(e) if is_connection_error(&e) => {
                    last = one_line(&e);
                    self.forget(slot).await;
                }
                Err(e) => {
                    return Err(BrokerError::Command {
                        url: self.url.clone(),
                        op,
                        reason: one_line(&e),
                    })
                }
            }
        }
        self.stats.failed_ops.fetch_add(1, Ordering::Relaxed);
        *self.down.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now() + BREAKER, last.clone()));
        Err(BrokerError::Lost {
            url: self.url.clone(),
            op,
            attempts,
            reason: last,
        })
    }
}

/// A subscribed message stream on a connection of its own.
async fn open_subscription(
    client: &Client,
    channel: &str,
) -> Result<::redis::aio::PubSubStream, RedisError> {
    let mut ps = client.get_async_pubsub().await?;
    // Returns once Redis has confirmed the subscription, so nothing published after is missed.
    ps.subscribe(channel).await?;
    Ok(ps.into_on_message())
}

fn to_entries(reply: Option<StreamReadReply>) -> Vec<Entry> {
    reply
        .into_iter()
        .flat_map(|r| r.keys)
        .flat_map(|k| k.ids)
        .map(|sid| Entry {
            payload: Bytes::from(sid.get::<Vec<u8>>(FIELD).unwrap_or_default()),
            id: sid.id,
        })
        .collect()
}

impl Broker for RedisBroker {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Bytes,
    ) -> BoxFut<'a, Result<u64, BrokerError>> {
        Box::pin(async move {
            let cmd = ::redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload.as_ref())
                .to_owned();
            self.run("PUBLISH", None, &cmd).await
        })
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFut<'a, Result<Subscription, BrokerError>> {
        Box::pin(async move {
            let mut last = String::new();
            let mut first = None;
            for attempt in 0..ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(backoff(attempt - 1)).await;
                }
                match open_subscription(&self.client, channel).await {
                    Ok(s) => {
                        first = Some(s);
                        break;
                    }
                    Err(e) => last = one_line(&e),
                }
            }
            let Some(mut stream) = first else {
                return Err(BrokerError::Lost {
                    url: self.url.clone(),
                    op: "SUBSCRIBE",
                    attempts: ATTEMPTS,
                    reason: last,
                });
            };
            let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
            let lost = Arc::new(AtomicU64::new(0));
            let (client, channel, stats, lost2) = (
                self.client.clone(),
                channel.to_string(),
                self.stats.clone(),
                lost.clone(),
            );
            let task = tokio::spawn(async move {
                'outer: loop {
                    while let Some(msg) = stream.next().await {
                        match tx.try_send(Bytes::copy_from_slice(msg.get_payload_bytes())) {
                            Ok(()) => {}
                            // A slow reader: skip and count, rather than let Redis buffer
                            // without bound (it would cut us off at its output limit).
                            Err(mpsc::error::TrySendError::Full(_)) => {
                                lost2.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(mpsc::error::TrySendError::Closed(_)) => return,
                        }
                    }
                    // The connection ended: Redis went away. Come back and subscribe again.
                    for attempt in 0..SUBSCRIBE_ATTEMPTS {
                        tokio::time::sleep(backoff(attempt)).await;
                        if let Ok(s) = open_subscription(&client, &channel).await {
                            stats.reconnects.fetch_add(1, Ordering::Relaxed);
                            stream = s;
                            continue 'outer;
                        }
                    }
                    // Gave up: dropping `tx` ends the subscriber's `recv` with `None`.
                    return;
                }
            });
            Ok(Subscription {
                inner: super::SubInner::Forwarded {
                    rx,
                    task: task.abort_handle(),
                },
                lost,
            })
        })
    }

    fn join_group<'a>(
        &'a self,
        stream: &'a str,
        group: &'a str,
    ) -> BoxFut<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let cmd = ::redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(stream)
                .arg(group)
                .arg("$")
                .arg("MKSTREAM")
                .to_owned();
            match self.run::<()>("XGROUP CREATE", None, &cmd).await {
                Ok(()) => Ok(()),
                // The group exists: keep its offset, which is the whole point.
                Err(BrokerError::Command { reason, .. }) if reason.contains("BUSYGROUP") => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    fn append<'a>(
        &'a self,
        stream: &'a str,
        payload: Bytes,
    ) -> BoxFut<'a, Result<String, BrokerError>> {
        Box::pin(async move {
            let cmd = ::redis::cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg(FIELD)
                .arg(payload.as_ref())
                .to_owned();
            self.run("XADD", None, &cmd).await
        })
    }

    fn read_group<'a>(
        &'a self,
        stream: &'a str,
        group: &'a str,
        consumer: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFut<'a, Result<Vec<Entry>, BrokerError>> {
        Box::pin(async move {
            let read = |id: &str, block: Option<Duration>| {
                let mut c = ::redis::cmd("XREADGROUP");
                c.arg("GROUP")
                    .arg(group)
                    .arg(consumer)
                    .arg("COUNT")
                    .arg(max.max(1));
                if let Some(b) = block {
                    c.arg("BLOCK")
                        .arg(b.min(MAX_BLOCK).as_millis().max(1) as u64);
                }
                c.arg("STREAMS").arg(stream).arg(id);
                c
            };
            // Own pending entries first: what this consumer was given and never acknowledged.
            let pending: Option<StreamReadReply> =
                self.run("XREADGROUP", None, &read("0", None)).await?;
            let pending = to_entries(pending);
            if !pending.is_empty() {
                return Ok(pending);
            }
            let slot = format!("{stream}/{group}/{consumer}");
            let fresh: Option<StreamReadReply> = self
                .run("XREADGROUP", Some(&slot), &read(">", Some(wait)))
                .await?;
            Ok(to_entries(fresh))
        })
    }

    fn ack<'a>(
        &'a self,
        stream: &'a str,
        group: &'a str,
        ids: &'a [String],
    ) -> BoxFut<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            if ids.is_empty() {
                return Ok(());
            }
            let cmd = ::redis::cmd("XACK")
                .arg(stream)
                .arg(group)
                .arg(ids)
                .to_owned();
            self.run::<u64>("XACK", None, &cmd).await.map(|_| ())
        })
    }

    fn entries<'a>(&'a self, stream: &'a str) -> BoxFut<'a, Result<Vec<Entry>, BrokerError>> {
        Box::pin(async move {
            let cmd = ::redis::cmd("XRANGE")
                .arg(stream)
                .arg("-")
                .arg("+")
                .to_owned();
            let reply: StreamRangeReply = self.run("XRANGE", None, &cmd).await?;
            Ok(reply
                .ids
                .into_iter()
                .map(|sid| Entry {
                    payload: Bytes::from(sid.get::<Vec<u8>>(FIELD).unwrap_or_default()),
                    id: sid.id,
                })
                .collect())
        })
    }

    fn delete<'a>(&'a self, stream: &'a str) -> BoxFut<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let cmd = ::redis::cmd("DEL").arg(stream).to_owned();
            self.run::<u64>("DEL", None, &cmd).await.map(|_| ())
        })
    }

    fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }
}
