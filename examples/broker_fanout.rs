//! Fan-out throughput through a broker, 3 servers: run by `bench/broker.sh`.
//!
//! `broker_fanout BROKER LEVEL MESSAGES` where BROKER is `embedded` or `redis://HOST:PORT` and
//! LEVEL is
//!
//! * `broker`: 3 subscriptions (one per server) and 3 publishers (one per server), each
//!   publisher keeping up to 64 publishes in flight.
//! * `chat`: the whole path of `lab scale-stateful`: 3 WebSocket chat servers, one user each,
//!   each user sending MESSAGES/3 messages.
//!
//! Messages go in batches of [`BATCH`]; each batch is timed until every subscriber (user) has
//! it, so the rate is what the path sustains without overflowing any buffer.
//!
//! Prints one JSON line: messages, deliveries, lost, seconds, messages/s, deliveries/s.

use bytes::Bytes;
use futures_util::StreamExt;
use statescope::broker::chat::{ChatClient, ChatNode, Relay, SharedInbox};
use statescope::broker::{self, Broker};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERVERS: usize = 3;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, level, messages] = args.as_slice() else {
        anyhow::bail!("usage: broker_fanout embedded|redis://HOST:PORT broker|chat MESSAGES");
    };
    let per = messages.parse::<u64>()? / SERVERS as u64;
    let b = broker::connect(Some(url)).await?;
    let topic = format!("statescope:bench:{}", std::process::id());
    let (delivered, secs) = match level.as_str() {
        "broker" => broker_level(&b, &topic, per).await?,
        "chat" => chat_level(&b, &topic, per).await?,
        other => anyhow::bail!("unknown level {other:?}: broker or chat"),
    };
    let sent = per * SERVERS as u64;
    let expected = sent * SERVERS as u64;
    println!(
        "{}",
        serde_json::json!({
            "broker": b.describe(), "level": level, "servers": SERVERS,
            "messages": sent, "deliveries": delivered, "lost": expected - delivered,
            "seconds": secs, "messages_per_s": sent as f64 / secs,
            "deliveries_per_s": delivered as f64 / secs,
        })
    );
    Ok(())
}

/// Messages per batch (all servers together): small enough that no subscriber buffer
/// ([`broker::SUBSCRIPTION_BUFFER`]) or user queue overflows, so the rate measured is one the
/// path sustains without dropping anything.
const BATCH: u64 = 1_500;

/// Wait until `count()` reaches `want`; give up when it has not moved for a second.
async fn settle(count: impl Fn() -> u64, want: u64) {
    let mut last = (count(), Instant::now());
    while last.0 < want && last.1.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_micros(200)).await;
        let now = count();
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
}

async fn broker_level(b: &Arc<dyn Broker>, topic: &str, per: u64) -> anyhow::Result<(u64, f64)> {
    let got: Arc<Vec<AtomicU64>> = Arc::new((0..SERVERS).map(|_| AtomicU64::new(0)).collect());
    let mut readers = Vec::new();
    for s in 0..SERVERS {
        let mut sub = b.subscribe(topic).await?;
        let got = got.clone();
        readers.push(tokio::spawn(async move {
            while sub.recv().await.is_some() {
                got[s].fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let least = || {
        got.iter()
            .map(|g| g.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    };
    let start = Instant::now();
    let mut sent = 0;
    let step = BATCH / SERVERS as u64;
    while sent < per {
        let n = step.min(per - sent);
        let publishers = (0..SERVERS).map(|s| {
            let b = b.clone();
            let topic = topic.to_string();
            tokio::spawn(async move {
                futures_util::stream::iter(sent..sent + n)
                    .map(|i| {
                        let (b, topic) = (b.clone(), topic.clone());
                        async move { b.publish(&topic, Bytes::from(format!("{s}:{i}"))).await }
                    })
                    .buffer_unordered(64)
                    .filter(|r| std::future::ready(r.is_err()))
                    .count()
                    .await
            })
        });
        let failed: usize = futures_util::future::join_all(publishers)
            .await
            .into_iter()
            .map(|r| r.unwrap_or(0))
            .sum();
        if failed > 0 {
            eprintln!("{failed} publishes failed");
        }
        sent += n;
        settle(least, sent * SERVERS as u64).await;
    }
    let secs = start.elapsed().as_secs_f64();
    for r in readers {
        r.abort();
    }
    Ok((got.iter().map(|g| g.load(Ordering::Relaxed)).sum(), secs))
}

async fn chat_level(b: &Arc<dyn Broker>, topic: &str, per: u64) -> anyhow::Result<(u64, f64)> {
    let mut nodes = Vec::new();
    let mut clients = Vec::new();
    let mut inboxes = Vec::new();
    for i in 1..=SERVERS {
        let n = ChatNode::start(
            &format!("server{i}"),
            "127.0.0.1:0",
            b.clone(),
            Relay::PubSub,
            topic,
        )
        .await?;
        let inbox = SharedInbox::default();
        clients.push(ChatClient::connect(n.addr, &format!("user{i}"), inbox.clone()).await?);
        inboxes.push(inbox);
        nodes.push(n);
    }
    let least = || {
        inboxes
            .iter()
            .map(|i| i.lock().unwrap().got.len() as u64)
            .min()
            .unwrap_or(0)
    };
    let start = Instant::now();
    let mut sent = 0;
    let step = BATCH / SERVERS as u64;
    while sent < per {
        let n = step.min(per - sent);
        let sends = clients.iter_mut().map(|c| async move {
            for seq in sent..sent + n {
                let _ = c.send(seq, "x").await;
            }
        });
        futures_util::future::join_all(sends).await;
        sent += n;
        settle(least, sent * SERVERS as u64).await;
    }
    let secs = start.elapsed().as_secs_f64();
    let delivered = inboxes
        .iter()
        .map(|i| i.lock().unwrap().got.len() as u64)
        .sum();
    Ok((delivered, secs))
}
