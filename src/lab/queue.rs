//! `lab queue`: pub-sub versus a message queue when one server is down for a while.
//!
//! What you will see: the three-server chat of `lab scale-stateful`, run twice. Each run has
//! three phases: all users send; then server 3 stops (its user is cut off) and users 1 and 2
//! keep sending; then server 3 restarts, user 3 reconnects, and everyone sends again.
//!
//! * With **pub-sub** a message reaches whoever is subscribed at that moment. Server 3 was not,
//!   so user 3 never sees what was published during the outage: the lost count equals exactly
//!   the number of messages published while server 3 was down.
//! * With a **queue** (Redis Streams with one consumer group per server, or the embedded
//!   equivalent) the messages wait in the stream; server 3's group keeps its place, and after
//!   the restart the server reads on from there: user 3 catches up and nothing is lost.
//!
//! Every loss is counted end to end: each user should receive every message sent (its own
//! included); `lost` is what is missing when deliveries have settled. With `--html FILE` the
//! lab draws every message in the order published, the outage shaded, and whether user 3 got
//! it, for both mechanisms.
//!
//! The negative control `--variant wrong-dropping-broker` wraps the broker in
//! [`crate::broker::Lossy`], which drops every seventh message while reporting success: the
//! queue then loses messages too, and the lab must say `queue_lost_nothing` failed.

use super::procs::{self, svg};
use super::scale_stateful::{facts, inbox_len, open_broker, runtime, unique};
use super::{LabCtx, LabDef, LabOut};
use crate::broker::chat::{wait_for, ChatClient, ChatNode, Relay, SharedInbox};
use crate::broker::Broker;
use crate::record::LabRec;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub const LAB: LabDef = LabDef {
    name: "queue",
    question: "When a server is down for a while, what do its users miss with pub-sub, and with a message queue?",
    summary: "stop 1 of 3 servers mid-chat: pub-sub loses what it missed, a queue (Redis Streams) catches up",
    run,
};

/// Messages each sending user sends per phase.
const PER_PHASE: u64 = 5;
/// Longest wait per phase for deliveries to arrive.
const PHASE_TIMEOUT: Duration = Duration::from_secs(8);
/// Deliveries count as settled when nothing new arrived for this long.
const QUIET: Duration = Duration::from_millis(400);

/// The wrong variant: a broker that drops messages.
pub const WRONG_DROPPING_BROKER: &str = "wrong-dropping-broker";

fn run(ctx: &LabCtx, out: &mut LabOut) -> anyhow::Result<LabRec> {
    let variant = ctx.variant_of(LAB.name, &[WRONG_DROPPING_BROKER])?;
    runtime()?.block_on(run_with(ctx, out, PER_PHASE, variant))
}

/// What one mechanism's run measured.
#[derive(Debug, Default)]
struct Outcome {
    sent: u64,
    /// Messages sent while server 3 was down.
    outage_published: u64,
    /// Deliveries: distinct messages received, summed over users.
    delivered: u64,
    expected: u64,
    lost: u64,
    /// What user 3 missed.
    user3_missed: u64,
    duplicates: u64,
    /// Every message in the order published: (from, seq, phase 0/1/2, user 3 got it).
    fates: Vec<(String, u64, u8, bool)>,
}

/// Wait until each inbox holds its expected count, or until nothing has arrived for [`QUIET`]
/// (what has not come by then is not coming), bounded by `timeout`.
async fn settle(inboxes: &[SharedInbox], expected: usize, timeout: Duration) {
    let want: Vec<_> = inboxes.iter().map(|i| (i.clone(), expected)).collect();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = (0usize, tokio::time::Instant::now());
    while tokio::time::Instant::now() < deadline {
        if wait_for(&want, Duration::from_millis(20)).await {
            return;
        }
        let total: usize = inboxes.iter().map(inbox_len).sum();
        if total != last.0 {
            last = (total, tokio::time::Instant::now());
        } else if last.1.elapsed() >= QUIET {
            return;
        }
    }
}

/// Each of `clients` sends `n` messages numbered from `first`; returns how many went out, and
/// notes each in `order` with `phase`.
async fn send_all(
    clients: &mut [&mut ChatClient],
    first: u64,
    n: u64,
    phase: u8,
    order: &mut Vec<(String, u64, u8)>,
) -> u64 {
    let mut sent = 0;
    for seq in first..first + n {
        for c in clients.iter_mut() {
            let text = format!("message {seq} from {}", c.user);
            if c.send(seq, &text).await.is_ok() {
                sent += 1;
                order.push((c.user.clone(), seq, phase));
            }
        }
    }
    sent
}

async fn outage_run(
    broker: &Arc<dyn Broker>,
    relay: Relay,
    k: u64,
    out: &mut LabOut,
) -> anyhow::Result<Outcome> {
    let label = match relay {
        Relay::PubSub => "pub-sub",
        Relay::Queue => "queue",
    };
    let topic = unique(match relay {
        Relay::PubSub => "outage-pubsub",
        Relay::Queue => "outage-queue",
    });
    let start =
        |name: &'static str| ChatNode::start(name, "127.0.0.1:0", broker.clone(), relay, &topic);
    let inboxes: Vec<SharedInbox> = (0..3).map(|_| SharedInbox::default()).collect();
    let n1 = start("server1").await?;
    let n2 = start("server2").await?;
    let n3 = start("server3").await?;
    let mut c1 = ChatClient::connect(n1.addr, "user1", inboxes[0].clone()).await?;
    let mut c2 = ChatClient::connect(n2.addr, "user2", inboxes[1].clone()).await?;
    let mut c3 = ChatClient::connect(n3.addr, "user3", inboxes[2].clone()).await?;

    let mut o = Outcome::default();
    let mut order = Vec::new();
    o.sent += send_all(&mut [&mut c1, &mut c2, &mut c3], 1, k, 0, &mut order).await;
    settle(&inboxes, o.sent as usize, PHASE_TIMEOUT).await;
    out.say(&format!(
        "[{label}] all 3 servers up: {} sent, user3 has {}",
        o.sent,
        inbox_len(&inboxes[2])
    ))?;

    // Server 3 goes away, and its user with it.
    drop(c3);
    n3.stop().await;
    let during = send_all(&mut [&mut c1, &mut c2], k + 1, k, 1, &mut order).await;
    o.sent += during;
    o.outage_published = during;
    settle(&inboxes[..2], o.sent as usize, PHASE_TIMEOUT).await;
    out.say(&format!(
        "[{label}] server3 down: users 1 and 2 sent {during} more"
    ))?;

    let n3 = start("server3").await?;
    let before = inbox_len(&inboxes[2]);
    let mut c3 = ChatClient::connect(n3.addr, "user3", inboxes[2].clone()).await?;
    o.sent += send_all(
        &mut [&mut c1, &mut c2, &mut c3],
        2 * k + 1,
        k,
        2,
        &mut order,
    )
    .await;
    settle(&inboxes, o.sent as usize, PHASE_TIMEOUT).await;
    let caught = inbox_len(&inboxes[2]) - before;
    out.say(&format!(
        "[{label}] server3 restarted, user3 back: user3 received {caught} more, {} of {} in all",
        inbox_len(&inboxes[2]),
        o.sent
    ))?;

    let per_user: Vec<u64> = inboxes.iter().map(|i| inbox_len(i) as u64).collect();
    o.delivered = per_user.iter().sum();
    o.expected = o.sent * 3;
    o.lost = o.expected.saturating_sub(o.delivered);
    o.user3_missed = o.sent.saturating_sub(per_user[2]);
    o.duplicates = inboxes
        .iter()
        .map(|i| i.lock().unwrap_or_else(|e| e.into_inner()).duplicates)
        .sum();
    {
        let got3 = inboxes[2].lock().unwrap_or_else(|e| e.into_inner());
        o.fates = order
            .into_iter()
            .map(|(from, seq, phase)| {
                let got = got3.got.contains(&(from.clone(), seq));
                (from, seq, phase, got)
            })
            .collect();
    }
    out.say(&format!(
        "[{label}] sent {}, delivered {} of {}, lost {} (user3 missed {}; {} were published during the outage)",
        o.sent, o.delivered, o.expected, o.lost, o.user3_missed, o.outage_published
    ))?;
    drop((c1, c2, c3, n1, n2, n3));
    if relay == Relay::Queue {
        // Best effort: a Redis that went away leaves a stream behind, which is harmless.
        let _ = broker.delete(&topic).await;
    }
    Ok(o)
}

/// The lab with `k` messages per sending user per phase; `variant` is
/// [`WRONG_DROPPING_BROKER`] for the negative control.
pub async fn run_with(
    ctx: &LabCtx,
    out: &mut LabOut,
    k: u64,
    variant: Option<&str>,
) -> anyhow::Result<LabRec> {
    let mut broker = open_broker(ctx, out).await?;
    if variant == Some(WRONG_DROPPING_BROKER) {
        out.say("VARIANT wrong-dropping-broker: the broker drops every 7th message; the lab must notice")?;
        broker = Arc::new(crate::broker::Lossy::new(broker, 7));
    }
    let p = outage_run(&broker, Relay::PubSub, k, out).await?;
    let q = outage_run(&broker, Relay::Queue, k, out).await?;
    let stats = broker.stats();

    let mut c = super::common::Checks::default();
    c.check(
        "outage_published_some",
        p.outage_published > 0 && q.outage_published > 0,
    );
    c.check(
        "pubsub_lost_exactly_the_outage",
        p.lost == p.outage_published && p.user3_missed == p.lost,
    );
    c.check("queue_lost_nothing", q.lost == 0 && q.user3_missed == 0);
    let ok = c.ok(out)?;
    let answer = format!(
        "With pub-sub, server 3's user missed everything published while it was down: {} lost of {} deliveries, \
         against {} messages published during the outage. With a queue ({}), server 3's consumer group \
         kept its place and caught up after the restart: {} lost of {}.",
        p.lost,
        p.expected,
        p.outage_published,
        if ctx.redis.is_some() { "Redis Streams, XREADGROUP/XACK" } else { "embedded log with consumer groups" },
        q.lost,
        q.expected
    );
    let mut settings = facts(&[
        ("broker", json!(broker.describe())),
        ("servers", json!(3)),
        ("messages_per_user_per_phase", json!(k)),
    ]);
    if let Some(v) = variant {
        settings.insert("variant".into(), json!(v));
    }
    let rec = LabRec {
        name: LAB.name.into(),
        question: LAB.question.into(),
        answer,
        facts: facts(&[
            ("pubsub_sent", json!(p.sent)),
            ("pubsub_delivered", json!(p.delivered)),
            ("pubsub_expected", json!(p.expected)),
            ("pubsub_lost", json!(p.lost)),
            ("pubsub_outage_published", json!(p.outage_published)),
            ("pubsub_user3_missed", json!(p.user3_missed)),
            ("queue_sent", json!(q.sent)),
            ("queue_delivered", json!(q.delivered)),
            ("queue_expected", json!(q.expected)),
            ("queue_lost", json!(q.lost)),
            ("queue_outage_published", json!(q.outage_published)),
            ("queue_user3_missed", json!(q.user3_missed)),
            ("duplicates", json!(p.duplicates + q.duplicates)),
            ("broker_reconnects", json!(stats.reconnects)),
            ("broker_failed_ops", json!(stats.failed_ops)),
        ]),
        ok,
        settings,
        failed: c.failed_so_far().to_vec(),
    };
    procs::write_page(ctx, &rec, &fates(&[("pub-sub", &p), ("queue", &q)]), out)?;
    Ok(rec)
}

/// Every message in the order published, the outage shaded: did user 3 get it?
fn fates(runs: &[(&str, &Outcome)]) -> String {
    let (left, width, row) = (80.0, 720.0, 60.0);
    let n = runs
        .iter()
        .map(|(_, o)| o.fates.len())
        .max()
        .unwrap_or(0)
        .max(1);
    let step = width / n as f64;
    let mut b = String::new();
    for (r, (name, o)) in runs.iter().enumerate() {
        let top = 30.0 + r as f64 * row;
        svg::text(&mut b, left - 6.0, top + 14.0, "end", name);
        // The outage: the span of messages published while server 3 was down.
        let during: Vec<usize> = o
            .fates
            .iter()
            .enumerate()
            .filter(|(_, f)| f.2 == 1)
            .map(|(i, _)| i)
            .collect();
        if let (Some(a), Some(z)) = (during.first(), during.last()) {
            svg::rect(
                &mut b,
                left + *a as f64 * step,
                top - 4.0,
                (z - a + 1) as f64 * step,
                28.0,
                "outage",
                "#ffebee",
            );
            if r == 0 {
                svg::text(
                    &mut b,
                    left + *a as f64 * step,
                    top - 8.0,
                    "start",
                    "server 3 down",
                );
            }
        }
        for (i, (from, seq, phase, got)) in o.fates.iter().enumerate() {
            let (class, fill) = if *got {
                ("got", "#2e7d32")
            } else {
                ("missed", "#c62828")
            };
            let when = ["before", "during", "after"][*phase as usize % 3];
            svg::circle(
                &mut b,
                left + (i as f64 + 0.5) * step,
                top + 10.0,
                (step / 2.5).clamp(2.0, 6.0),
                class,
                fill,
                &format!(
                    "message {seq} from {from}, published {when} the outage: user 3 {}",
                    if *got { "got it" } else { "never got it" }
                ),
            );
        }
        svg::text(
            &mut b,
            left + width,
            top + 34.0,
            "end",
            &format!(
                "user 3 missed {} of {} ({} published during the outage)",
                o.user3_missed, o.sent, o.outage_published
            ),
        );
    }
    svg::text(
        &mut b,
        left,
        30.0 + runs.len() as f64 * row,
        "start",
        "messages in the order published →",
    );
    let mut page = svg::chart(
        "queue-fates",
        "Messages published during server 3's outage, and their fate for user 3",
        left + width + 20.0,
        40.0 + runs.len() as f64 * row,
        &b,
    );
    page.push_str("<p>Green: user 3 received the message (late, for those of the outage, when its server caught up); red: it never did. The shaded span is what was published while server 3 was down.</p>");
    page
}
