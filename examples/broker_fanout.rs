//! Fan-out throughput through a broker, 3 servers: run by `bench/broker.sh`.
//!
//! `broker_fanout BROKER LEVEL MESSAGES` where BROKER is `embedded` or `redis://HOST:PORT` and
//! LEVEL is
//!
//! * `broker`: 3 subscriptions (one per server) and 3 publishers (one per server), each
//!   publisher keeping up to 64 publishes in flight; timed until every subscription has every
//!   message.
//! * `chat`: the whole path of `lab scale-stateful`: 3 WebSocket chat servers, one user each,
//!   each user sending MESSAGES/3 messages; timed until every user has every message.
//!
//! Prints one JSON line: messages, deliveries, lost, seconds, messages/s, deliveries/s.

use bytes::Bytes;
use futures_util::StreamExt;
use statescope::broker::chat::{wait_for, ChatClient, ChatNode, Relay, SharedInbox};
use statescope::broker::{self, Broker};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SERVERS: usize = 3;
const TIMEOUT: Duration = Duration::from_secs(60);

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

async fn broker_level(b: &Arc<dyn Broker>, topic: &str, per: u64) -> anyhow::Result<(u64, f64)> {
    let mut readers = Vec::new();
    for _ in 0..SERVERS {
        let mut sub = b.subscribe(topic).await?;
        let want = per * SERVERS as u64;
        readers.push(tokio::spawn(async move {
            let mut got = 0u64;
            while got + sub.lost() < want {
                match tokio::time::timeout(TIMEOUT, sub.recv()).await {
                    Ok(Some(_)) => got += 1,
                    _ => break,
                }
            }
            got
        }));
    }
    let start = Instant::now();
    let publishers = (0..SERVERS).map(|s| {
        let b = b.clone();
        let topic = topic.to_string();
        tokio::spawn(async move {
            futures_util::stream::iter(0..per)
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
    let mut delivered = 0;
    for r in readers {
        delivered += r.await?;
    }
    if failed > 0 {
        eprintln!("{failed} publishes failed");
    }
    Ok((delivered, start.elapsed().as_secs_f64()))
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
        inboxes.push((inbox, per as usize * SERVERS));
        nodes.push(n);
    }
    let start = Instant::now();
    let sends = clients.iter_mut().map(|c| async move {
        for seq in 0..per {
            let _ = c.send(seq, "x").await;
        }
    });
    futures_util::future::join_all(sends).await;
    wait_for(&inboxes, TIMEOUT).await;
    let secs = start.elapsed().as_secs_f64();
    let delivered = inboxes
        .iter()
        .map(|(i, _)| i.lock().unwrap().got.len() as u64)
        .sum();
    Ok((delivered, secs))
}
