//! The embedded broker: pub-sub and a consumer-group queue inside this process.
//!
//! Pub-sub is one `tokio::sync::broadcast` channel per channel name: a subscriber that falls more
//! than [`SUBSCRIPTION_BUFFER`] messages behind skips the oldest, and the skip is counted.
//!
//! The queue mirrors Redis Streams' consumer groups on an in-memory log: entries are never
//! removed (until [`Broker::delete`]); each group has the index of the next entry it has not
//! handed out, and a pending map of entries handed out but not yet acknowledged, with the
//! consumer each went to. Ids are `"<index+1>-0"`, the shape of Redis stream ids.
//!
//! It connects servers in this process only, which is all the labs need on a fresh machine.

use super::{BoxFut, Broker, BrokerError, Entry, StatsSnapshot, Subscription, SUBSCRIPTION_BUFFER};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{broadcast, Notify};

/// The in-process broker. Cheap to share behind an `Arc`.
#[derive(Default)]
pub struct Embedded {
    channels: Mutex<HashMap<String, broadcast::Sender<Bytes>>>,
    streams: Mutex<HashMap<String, Log>>,
    /// Woken on every append so that waiting readers look again.
    appended: Notify,
}

/// One stream: the entries and its groups.
#[derive(Default)]
struct Log {
    entries: Vec<Bytes>,
    groups: HashMap<String, Group>,
}

/// One consumer group's place in a log.
#[derive(Default)]
struct Group {
    /// Index of the first entry never handed out to this group.
    next: usize,
    /// Entries handed out and not acknowledged: index → consumer.
    pending: BTreeMap<usize, String>,
}

fn entry_id(index: usize) -> String {
    format!("{}-0", index + 1)
}

fn parse_id(id: &str) -> Option<usize> {
    let (n, _) = id.split_once('-')?;
    n.parse::<usize>().ok()?.checked_sub(1)
}

impl Embedded {
    pub fn new() -> Self {
        Self::default()
    }

    /// The non-waiting part of `read_group`.
    fn take(&self, stream: &str, group: &str, consumer: &str, max: usize) -> Vec<Entry> {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        let log = streams.entry(stream.to_string()).or_default();
        let Log { entries, groups } = log;
        let g = groups.entry(group.to_string()).or_insert_with(|| Group {
            next: entries.len(),
            ..Group::default()
        });
        // Redis hands a consumer its own unacknowledged entries first (XREADGROUP ... 0).
        let mut out: Vec<Entry> = g
            .pending
            .iter()
            .filter(|(_, c)| c.as_str() == consumer)
            .take(max)
            .map(|(&i, _)| Entry {
                id: entry_id(i),
                payload: entries[i].clone(),
            })
            .collect();
        if !out.is_empty() {
            return out;
        }
        while out.len() < max && g.next < entries.len() {
            let i = g.next;
            g.pending.insert(i, consumer.to_string());
            out.push(Entry {
                id: entry_id(i),
                payload: entries[i].clone(),
            });
            g.next += 1;
        }
        out
    }
}

impl Broker for Embedded {
    fn describe(&self) -> String {
        "embedded".to_string()
    }

    fn publish<'a>(
        &'a self,
        channel: &'a str,
        payload: Bytes,
    ) -> BoxFut<'a, Result<u64, BrokerError>> {
        Box::pin(async move {
            let channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            // No channel, or no receivers: the message reaches nobody, as PUBLISH returning 0.
            Ok(channels
                .get(channel)
                .and_then(|tx| tx.send(payload).ok())
                .unwrap_or(0) as u64)
        })
    }

    fn subscribe<'a>(&'a self, channel: &'a str) -> BoxFut<'a, Result<Subscription, BrokerError>> {
        Box::pin(async move {
            let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
            let tx = channels
                .entry(channel.to_string())
                .or_insert_with(|| broadcast::channel(SUBSCRIPTION_BUFFER).0);
            Ok(Subscription {
                inner: super::SubInner::Embedded(tx.subscribe()),
                lost: Arc::new(AtomicU64::new(0)),
            })
        })
    }

    fn join_group<'a>(
        &'a self,
        stream: &'a str,
        group: &'a str,
    ) -> BoxFut<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            let log = streams.entry(stream.to_string()).or_default();
            let next = log.entries.len();
            log.groups
                .entry(group.to_string())
                .or_insert_with(|| Group {
                    next,
                    ..Group::default()
                });
            Ok(())
        })
    }

    fn append<'a>(
        &'a self,
        stream: &'a str,
        payload: Bytes,
    ) -> BoxFut<'a, Result<String, BrokerError>> {
        Box::pin(async move {
            let id = {
                let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
                let log = streams.entry(stream.to_string()).or_default();
                log.entries.push(payload);
                entry_id(log.entries.len() - 1)
            };
            self.appended.notify_waiters();
            Ok(id)
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
            let deadline = tokio::time::Instant::now() + wait;
            loop {
                // Register for the wake-up before looking, so an append in between is not missed.
                let notified = self.appended.notified();
                let got = self.take(stream, group, consumer, max.max(1));
                if !got.is_empty() {
                    return Ok(got);
                }
                if tokio::time::timeout_at(deadline, notified).await.is_err() {
                    return Ok(Vec::new());
                }
            }
        })
    }

    fn ack<'a>(
        &'a self,
        stream: &'a str,
        group: &'a str,
        ids: &'a [String],
    ) -> BoxFut<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(g) = streams
                .get_mut(stream)
                .and_then(|l| l.groups.get_mut(group))
            {
                for i in ids.iter().filter_map(|id| parse_id(id)) {
                    g.pending.remove(&i);
                }
            }
            Ok(())
        })
    }

    fn entries<'a>(&'a self, stream: &'a str) -> BoxFut<'a, Result<Vec<Entry>, BrokerError>> {
        Box::pin(async move {
            let streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            Ok(streams
                .get(stream)
                .map(|l| {
                    l.entries
                        .iter()
                        .enumerate()
                        .map(|(i, p)| Entry {
                            id: entry_id(i),
                            payload: p.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default())
        })
    }

    fn delete<'a>(&'a self, stream: &'a str) -> BoxFut<'a, Result<(), BrokerError>> {
        Box::pin(async move {
            self.streams
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(stream);
            Ok(())
        })
    }

    fn stats(&self) -> StatsSnapshot {
        // Nothing to reconnect to; nothing can fail.
        StatsSnapshot::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[tokio::test]
    async fn publish_reaches_current_subscribers_only() {
        let e = Embedded::new();
        assert_eq!(e.publish("c", b("early")).await.unwrap(), 0);
        let mut s1 = e.subscribe("c").await.unwrap();
        let mut s2 = e.subscribe("c").await.unwrap();
        assert_eq!(e.publish("c", b("hi")).await.unwrap(), 2);
        assert_eq!(s1.recv().await.unwrap(), b("hi"));
        assert_eq!(s2.recv().await.unwrap(), b("hi"));
    }

    #[tokio::test]
    async fn slow_subscriber_counts_what_it_skipped() {
        let e = Embedded::new();
        let mut s = e.subscribe("c").await.unwrap();
        let n = SUBSCRIPTION_BUFFER + 10;
        for i in 0..n {
            e.publish("c", b(&i.to_string())).await.unwrap();
        }
        let mut got = 0;
        while got + (s.lost() as usize) < n {
            s.recv().await.unwrap();
            got += 1;
        }
        assert_eq!(s.lost(), 10);
        assert_eq!(got, SUBSCRIPTION_BUFFER);
    }

    #[tokio::test]
    async fn group_keeps_its_place_and_redelivers_unacked() {
        let e = Embedded::new();
        e.append("s", b("before")).await.unwrap();
        e.join_group("s", "g").await.unwrap();
        for m in ["a", "b", "c"] {
            e.append("s", b(m)).await.unwrap();
        }
        let w = Duration::from_millis(10);
        let first = e.read_group("s", "g", "c1", 2, w).await.unwrap();
        assert_eq!(
            first.iter().map(|x| x.payload.clone()).collect::<Vec<_>>(),
            [b("a"), b("b")]
        );
        // Not acknowledged: the same consumer gets them again first.
        let again = e.read_group("s", "g", "c1", 10, w).await.unwrap();
        assert_eq!(again, first);
        let ids: Vec<String> = first.iter().map(|x| x.id.clone()).collect();
        e.ack("s", "g", &ids).await.unwrap();
        let rest = e.read_group("s", "g", "c1", 10, w).await.unwrap();
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].payload, b("c"));
        // Joining again keeps the offset.
        e.join_group("s", "g").await.unwrap();
        e.ack("s", "g", &[rest[0].id.clone()]).await.unwrap();
        assert!(e
            .read_group("s", "g", "c1", 10, w)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(e.entries("s").await.unwrap().len(), 4);
    }

    #[tokio::test]
    async fn read_group_wakes_on_append() {
        let e = Arc::new(Embedded::new());
        e.join_group("s", "g").await.unwrap();
        let e2 = e.clone();
        let reader = tokio::spawn(async move {
            e2.read_group("s", "g", "c", 10, Duration::from_secs(5))
                .await
                .unwrap()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        e.append("s", b("x")).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), reader)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.len(), 1);
    }

    #[test]
    fn ids_round_trip() {
        for i in [0, 1, 41, 100_000] {
            assert_eq!(parse_id(&entry_id(i)), Some(i));
        }
        assert_eq!(parse_id("0-0"), None);
        assert_eq!(parse_id("x"), None);
    }

    // However appends, reads and acknowledgements interleave across consumers, once every
    // consumer drains (read, acknowledge, until nothing comes) the entries acknowledged are
    // exactly those appended after the group joined: none skipped, none from before, none
    // invented. (An entry can be handed out again while unacknowledged: that is the point.)
    #[derive(Debug, Clone)]
    enum Op {
        Append,
        Read {
            consumer: usize,
            max: usize,
        },
        /// Acknowledge what `consumer` was last given.
        Ack {
            consumer: usize,
        },
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Op::Append),
            (0..3usize, 1..4usize).prop_map(|(consumer, max)| Op::Read { consumer, max }),
            (0..3usize).prop_map(|consumer| Op::Ack { consumer }),
        ]
    }

    proptest::proptest! {
        #[test]
        fn drained_group_has_acknowledged_exactly_what_came_after_join(before in 0..3usize, ops in proptest::collection::vec(op(), 0..60)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let e = Embedded::new();
                let w = Duration::ZERO;
                for _ in 0..before {
                    e.append("s", b("old")).await.unwrap();
                }
                e.join_group("s", "g").await.unwrap();
                let mut appended = Vec::new();
                let mut last: [Vec<String>; 3] = Default::default();
                let mut acked = Vec::new();
                for op in ops {
                    match op {
                        Op::Append => appended.push(e.append("s", b("x")).await.unwrap()),
                        Op::Read { consumer, max } => {
                            let got = e.read_group("s", "g", &consumer.to_string(), max, w).await.unwrap();
                            assert!(got.len() <= max);
                            last[consumer] = got.into_iter().map(|x| x.id).collect();
                        }
                        Op::Ack { consumer } => {
                            let ids = std::mem::take(&mut last[consumer]);
                            e.ack("s", "g", &ids).await.unwrap();
                            acked.extend(ids);
                        }
                    }
                }
                for (c, given) in last.iter_mut().enumerate() {
                    // What was handed out but not acknowledged comes back to the same consumer.
                    e.ack("s", "g", given).await.unwrap();
                    acked.extend(std::mem::take(given));
                    loop {
                        let got = e.read_group("s", "g", &c.to_string(), 5, w).await.unwrap();
                        if got.is_empty() {
                            break;
                        }
                        let ids: Vec<String> = got.into_iter().map(|x| x.id).collect();
                        e.ack("s", "g", &ids).await.unwrap();
                        acked.extend(ids);
                    }
                }
                let mut sorted = acked.clone();
                sorted.sort_by_key(|id| parse_id(id));
                sorted.dedup();
                assert_eq!(sorted, appended);
            });
        }
    }
}
