//! `lab scale-stateful`: three stateful WebSocket servers made into one chat through pub-sub.
//!
//! What you will see: user 1 is connected to server 1, user 2 to server 2, user 3 to server 3.
//! Each server only holds its own user's connection, so on its own server 1 could never reach
//! user 2. Every server publishes what its user sends to a broker channel and subscribes to that
//! channel; so user 1's message goes to server 1, which publishes it, and servers 2 and 3,
//! subscribed, deliver it to users 2 and 3 (server 1 delivers it back to user 1 too, which
//! proves the round trip). The lab counts, per user, the distinct messages received and checks
//! that every user received every message.
//!
//! The broker is a real Redis (`--redis redis://HOST:PORT`, `PUBLISH`/`SUBSCRIBE`), or by
//! default an embedded in-process broker so the lab runs on a fresh machine. Everything runs on
//! loopback, bounded in count (3 users × 20 messages) and time.
//!
//! This module also holds the small helpers the other scaling labs share.

use super::{LabCtx, LabDef, LabOut};
use crate::broker::chat::{wait_for, ChatClient, ChatNode, Relay, SharedInbox};
use crate::broker::{self, Broker};
use crate::record::LabRec;
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const LAB: LabDef = LabDef {
    name: "scale-stateful",
    question:
        "How do stateful servers scale out, when each one holds only its own users' connections?",
    summary:
        "3 WebSocket servers, 1 user each, sharing messages through pub-sub (Redis or embedded)",
    run,
};

/// Users (and servers: one user per server).
const USERS: usize = 3;
/// Messages each user sends.
const MESSAGES: u64 = 20;
/// Longest wait for deliveries: anything not there by then is counted as lost.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

fn run(ctx: &LabCtx, out: &mut LabOut) -> anyhow::Result<LabRec> {
    runtime()?.block_on(run_with(ctx, out, MESSAGES))
}

/// A small runtime for one lab: the lab drives it with `block_on` from the calling thread.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// The broker `--redis` names, or the embedded one; says which.
pub(crate) async fn open_broker(ctx: &LabCtx, out: &mut LabOut) -> anyhow::Result<Arc<dyn Broker>> {
    let b = broker::connect(ctx.redis.as_deref()).await?;
    match &ctx.redis {
        Some(url) => out.say(&format!("Broker: Redis at {url}"))?,
        None => out.say(
            "Broker: embedded, in this process (give --redis redis://HOST:PORT for a real Redis)",
        )?,
    }
    Ok(b)
}

/// A name for this run's channel or stream, so runs sharing a Redis never see each other.
pub(crate) fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("statescope:{prefix}:{}:{nanos}", std::process::id())
}

pub(crate) fn facts(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

pub(crate) fn inbox_len(i: &SharedInbox) -> usize {
    i.lock().unwrap_or_else(|e| e.into_inner()).got.len()
}

/// The lab with `messages` per user.
pub async fn run_with(ctx: &LabCtx, out: &mut LabOut, messages: u64) -> anyhow::Result<LabRec> {
    let broker = open_broker(ctx, out).await?;
    let topic = unique("chat");
    let mut nodes = Vec::new();
    let mut clients = Vec::new();
    let mut inboxes = Vec::new();
    for i in 1..=USERS {
        let node = ChatNode::start(
            &format!("server{i}"),
            "127.0.0.1:0",
            broker.clone(),
            Relay::PubSub,
            &topic,
        )
        .await?;
        let inbox = SharedInbox::default();
        clients.push(ChatClient::connect(node.addr, &format!("user{i}"), inbox.clone()).await?);
        out.say(&format!(
            "user{i} ── WebSocket ── server{i} ({}) ── subscribed to {topic}",
            node.addr
        ))?;
        inboxes.push(inbox);
        nodes.push(node);
    }

    out.say(&format!(
        "Each user sends {messages} messages to its own server, all at once..."
    ))?;
    let started = Instant::now();
    let sends = clients.into_iter().map(|mut c| async move {
        let mut sent = 0u64;
        for seq in 1..=messages {
            if c.send(seq, &format!("message {seq} from {}", c.user))
                .await
                .is_ok()
            {
                sent += 1;
            }
        }
        (c, sent)
    });
    let results = futures_util::future::join_all(sends).await;
    let sent: u64 = results.iter().map(|(_, s)| s).sum();
    let expected_each = sent as usize;
    let want: Vec<_> = inboxes.iter().map(|i| (i.clone(), expected_each)).collect();
    let all_in = wait_for(&want, DELIVERY_TIMEOUT).await;
    let elapsed = started.elapsed();

    let per_user: Vec<u64> = inboxes.iter().map(|i| inbox_len(i) as u64).collect();
    let delivered: u64 = per_user.iter().sum();
    let expected = sent * USERS as u64;
    let lost = expected.saturating_sub(delivered);
    let duplicates: u64 = inboxes
        .iter()
        .map(|i| i.lock().unwrap_or_else(|e| e.into_inner()).duplicates)
        .sum();
    let publish_failed: u64 = nodes
        .iter()
        .map(|n| n.stats.publish_failed.load(Ordering::Relaxed))
        .sum();
    let slow_drops: u64 = nodes
        .iter()
        .map(|n| {
            n.stats.client_dropped.load(Ordering::Relaxed)
                + n.stats.subscription_lost.load(Ordering::Relaxed)
        })
        .sum();
    // The seed's picture, checked on one message: user1's first.
    let first = ("user1".to_string(), 1u64);
    let reached: Vec<String> = inboxes
        .iter()
        .enumerate()
        .map(|(i, inbox)| {
            let has = inbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .got
                .contains(&first);
            format!(
                "server{n} → user{n} {}",
                if has { "✓" } else { "✗" },
                n = i + 1
            )
        })
        .collect();
    out.say(&format!(
        "user1's message 1: user1 → server1 → publish on {} → {}",
        broker.describe(),
        reached.join(", ")
    ))?;
    for (i, got) in per_user.iter().enumerate() {
        out.say(&format!(
            "user{} received {got} of {sent} messages (via server{})",
            i + 1,
            i + 1
        ))?;
    }
    out.say(&format!(
        "{sent} sent, {delivered} of {expected} deliveries made, {lost} lost, in {} ms{}",
        elapsed.as_millis(),
        if all_in {
            ""
        } else {
            " (stopped waiting after 10 s)"
        }
    ))?;
    let stats = broker.stats();
    drop(nodes);

    let ok = lost == 0 && sent == messages * USERS as u64 && publish_failed == 0;
    let answer = format!(
        "By sharing events through a broker: {USERS} servers each held only its own user's connection, yet \
         {delivered} of {expected} deliveries arrived ({sent} messages × {USERS} users, {lost} lost) \
         because every server published what its user sent and delivered what it received by subscription ({}).",
        broker.describe()
    );
    Ok(LabRec {
        name: LAB.name.into(),
        question: LAB.question.into(),
        answer,
        facts: facts(&[
            ("broker", json!(broker.describe())),
            ("servers", json!(USERS)),
            ("users", json!(USERS)),
            ("messages_per_user", json!(messages)),
            ("sent", json!(sent)),
            ("expected", json!(expected)),
            ("delivered", json!(delivered)),
            ("lost", json!(lost)),
            ("delivered_per_user", json!(per_user)),
            ("duplicates", json!(duplicates)),
            ("publish_failed", json!(publish_failed)),
            ("slow_subscriber_dropped", json!(slow_drops)),
            ("broker_reconnects", json!(stats.reconnects)),
            ("elapsed_ms", json!(elapsed.as_millis() as u64)),
        ]),
        ok,
        ..Default::default()
    })
}
