//! `lab scale-stateful`: three stateful `serve` processes made into one chat through pub-sub.
//!
//! What you will see: three `statescope serve --broker redis://…` *processes*, user 1
//! connected by WebSocket (`/ws`) to server 1, user 2 to server 2, user 3 to server 3. Each
//! server holds only its own user's connection (that is its state), so on its own server 1
//! could never reach user 2. Each server publishes what its user sends to a Redis channel and
//! subscribes to it; so user 1's message goes to server 1 (which answers user 1 with its
//! per-connection state), server 1 publishes it, and servers 2 and 3 deliver it to their users
//! as a `relay`. The lab counts, per user, the distinct messages of the other users received.
//!
//! The control run is the same three processes started *without* `--broker`: user 2 then
//! receives only what server 2 got — its own messages' answers, nothing from users 1 and 3.
//! Both runs are measured; the comparison is the lesson.
//!
//! Redis is `--redis URL`, or a `redis-server` the lab starts on a free port (processes cannot
//! share an in-process broker). The negative control `--variant wrong-dropping-broker` starts
//! the servers with a hidden flag that drops every fifth message they publish: the lab must say
//! `broker_every_user_received_every_message` failed.
//!
//! This module also holds the small helpers the other scaling labs share.

use super::procs::{self, svg, LabRedis, Proc};
use super::{LabCtx, LabDef, LabOut};
use crate::broker::chat::SharedInbox;
use crate::broker::{self, Broker};
use crate::record::LabRec;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

pub const LAB: LabDef = LabDef {
    name: "scale-stateful",
    question:
        "How do stateful servers scale out, when each one holds only its own users' connections?",
    summary:
        "3 serve processes, 1 WebSocket user each, sharing messages through Redis pub-sub; and without",
    run,
};

/// Users (and servers: one user per server).
const USERS: usize = 3;
/// Messages each user sends.
const MESSAGES: u64 = 20;
/// Longest wait for deliveries: anything not there by then is counted as lost.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// After the last expected message, how long the lab still listens for unexpected ones.
const QUIET: Duration = Duration::from_millis(300);
/// The wrong variant: a broker that drops every fifth message.
pub const WRONG_DROPPING_BROKER: &str = "wrong-dropping-broker";

fn run(ctx: &LabCtx, out: &mut LabOut) -> anyhow::Result<LabRec> {
    let variant = ctx.variant_of(LAB.name, &[WRONG_DROPPING_BROKER])?;
    runtime()?.block_on(run_with(ctx, out, variant))
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

/// What one user saw on its WebSocket, in ms since the run began.
#[derive(Debug, Default)]
struct UserLog {
    /// Its own messages answered by its server: text → when.
    echoes: HashMap<String, f64>,
    /// Other users' messages relayed by its server: text → when (first arrival).
    relays: HashMap<String, f64>,
    duplicates: u64,
    /// `{"kind":"relay","lost":n}` notices: messages its server's subscription skipped.
    lost_notices: u64,
}

/// One measured run of three servers and three users.
#[derive(Debug, Default)]
struct RunResult {
    pids: Vec<u32>,
    sent: u64,
    /// When each message was sent: text → ms.
    sent_at: HashMap<String, f64>,
    echoes_per_user: Vec<u64>,
    relays_per_user: Vec<u64>,
    logs: Vec<UserLog>,
    duplicates: u64,
    lost_notices: u64,
    elapsed_ms: f64,
}

type SharedLog = Arc<Mutex<UserLog>>;

fn lock(l: &SharedLog) -> std::sync::MutexGuard<'_, UserLog> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}

/// Read `user`'s WebSocket into its log until it closes.
async fn read_ws<S>(mut source: S, log: SharedLog, started: Instant)
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(Ok(msg)) = source.next().await {
        let Message::Text(t) = msg else { continue };
        let at = started.elapsed().as_secs_f64() * 1e3;
        let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
        let mut log = lock(&log);
        match v["kind"].as_str() {
            Some("stateful") => {
                if let Some(text) = v["echo"].as_str() {
                    log.echoes.entry(text.to_string()).or_insert(at);
                }
            }
            Some("relay") => {
                if let Some(n) = v["lost"].as_u64() {
                    log.lost_notices += n;
                } else if let Some(text) = v["text"].as_str() {
                    if log.relays.insert(text.to_string(), at).is_some() {
                        log.duplicates += 1;
                    }
                }
            }
            _ => {}
        }
    }
}

/// Start three serve processes with `args`, connect one user to each, let each send
/// [`MESSAGES`], and wait for `expect_relays` relays per user (or the timeout).
async fn one_run(
    ctx: &LabCtx,
    label: &str,
    args: &[String],
    expect_relays: usize,
    out: &mut LabOut,
) -> anyhow::Result<RunResult> {
    let mut servers: Vec<Proc> = Vec::new();
    for i in 1..=USERS {
        servers.push(procs::start_serve(
            ctx,
            &format!("scale-stateful-{label}-{i}"),
            args,
        )?);
    }
    let started = Instant::now();
    let mut sinks = Vec::new();
    let mut logs: Vec<SharedLog> = Vec::new();
    let mut readers = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let url = format!("ws://{}/ws", s.addr);
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(5),
            tokio_tungstenite::connect_async(&url),
        )
        .await
        .map_err(|_| anyhow::anyhow!("{url}: no WebSocket handshake within 5 s"))??;
        let (sink, source) = ws.split();
        let log = SharedLog::default();
        readers.push(tokio::spawn(read_ws(source, log.clone(), started)));
        sinks.push(sink);
        logs.push(log);
        out.say(&format!(
            "[{label}] user{n} ── WebSocket ── server{n} (pid {}, {})",
            s.pid,
            s.addr,
            n = i + 1
        ))?;
    }
    let mut sent_at = HashMap::new();
    let mut sent = 0;
    for seq in 1..=MESSAGES {
        for (i, sink) in sinks.iter_mut().enumerate() {
            let text = format!("user{} message {seq}", i + 1);
            sent_at.insert(text.clone(), started.elapsed().as_secs_f64() * 1e3);
            if sink.send(Message::text(text)).await.is_ok() {
                sent += 1;
            }
        }
    }
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let all_in = || {
        logs.iter().all(|l| {
            let l = lock(l);
            l.echoes.len() as u64 >= MESSAGES && l.relays.len() >= expect_relays
        })
    };
    while !all_in() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Anything arriving beyond what was expected arrives now, or is not coming.
    tokio::time::sleep(QUIET).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    for mut s in sinks {
        let _ = s.close().await;
    }
    for r in readers {
        r.abort();
    }
    let pids = servers.iter().map(|s| s.pid).collect();
    drop(servers);
    let logs: Vec<UserLog> = logs
        .into_iter()
        .map(|l| std::mem::take(&mut *lock(&l)))
        .collect();
    Ok(RunResult {
        pids,
        sent,
        sent_at,
        echoes_per_user: logs.iter().map(|l| l.echoes.len() as u64).collect(),
        relays_per_user: logs.iter().map(|l| l.relays.len() as u64).collect(),
        duplicates: logs.iter().map(|l| l.duplicates).sum(),
        lost_notices: logs.iter().map(|l| l.lost_notices).sum(),
        logs,
        elapsed_ms,
    })
}

/// The lab; `variant` is [`WRONG_DROPPING_BROKER`] for the negative control.
async fn run_with(ctx: &LabCtx, out: &mut LabOut, variant: Option<&str>) -> anyhow::Result<LabRec> {
    let redis = LabRedis::open(ctx, out)?;
    let mut args = vec!["--broker".to_string(), redis.url.clone()];
    if variant == Some(WRONG_DROPPING_BROKER) {
        out.say("VARIANT wrong-dropping-broker: every server drops every 5th message it publishes; the lab must notice")?;
        args.extend(["--broker-drop-every".to_string(), "5".to_string()]);
    }
    let others = (USERS - 1) * MESSAGES as usize;
    out.say(&format!(
        "With a broker: each user sends {MESSAGES} messages to its own server..."
    ))?;
    let shared = one_run(ctx, "broker", &args, others, out).await?;
    out.say("Control: the same three servers without --broker.")?;
    let alone = one_run(ctx, "no-broker", &[], 0, out).await?;
    drop(redis);

    for (label, r) in [("with broker", &shared), ("no broker", &alone)] {
        for i in 0..USERS {
            out.say(&format!(
                "[{label}] user{n}: {} answers from server{n} to its own messages, {} of the other users' {others} messages",
                r.echoes_per_user[i],
                r.relays_per_user[i],
                n = i + 1
            ))?;
        }
    }
    let mut c = super::common::Checks::default();
    c.check(
        "three_server_processes",
        shared.pids.iter().collect::<HashSet<_>>().len() == USERS,
    );
    c.check(
        "broker_each_server_answered_its_own_user",
        shared.echoes_per_user.iter().all(|&e| e == MESSAGES),
    );
    c.check(
        "broker_every_user_received_every_message",
        shared.relays_per_user.iter().all(|&r| r == others as u64) && shared.duplicates == 0,
    );
    c.check(
        "no_broker_user2_received_only_what_server2_got",
        alone.echoes_per_user[1] == MESSAGES && alone.relays_per_user[1] == 0,
    );
    c.check(
        "no_broker_no_user_reached_another",
        alone.relays_per_user.iter().all(|&r| r == 0),
    );
    let ok = c.ok(out)?;
    let answer = format!(
        "By sharing events through a broker: three serve processes each held only its own user's connection, yet with \
         Redis pub-sub each user received {} of the other users' {others} messages. Without the broker, user 2 received \
         only what server 2 got ({} answers to its own messages, {} messages of users 1 and 3): a server can only \
         deliver what reaches it.",
        shared
            .relays_per_user
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(" / "),
        alone.echoes_per_user[1],
        alone.relays_per_user[1],
    );
    let mut settings = facts(&[
        ("servers", json!(USERS)),
        ("users", json!(USERS)),
        ("messages_per_user", json!(MESSAGES)),
        (
            "broker",
            json!(ctx
                .redis
                .clone()
                .unwrap_or_else(|| "redis-server started by the lab".into())),
        ),
    ]);
    if let Some(v) = variant {
        settings.insert("variant".into(), json!(v));
    }
    let rec = LabRec {
        name: LAB.name.into(),
        question: LAB.question.into(),
        answer,
        facts: facts(&[
            ("server_pids", json!(shared.pids)),
            ("sent", json!(shared.sent)),
            // Deliveries of each message to the users who did not send it.
            ("expected", json!(shared.sent * (USERS as u64 - 1))),
            (
                "delivered",
                json!(shared.relays_per_user.iter().sum::<u64>()),
            ),
            (
                "lost",
                json!((shared.sent * (USERS as u64 - 1))
                    .saturating_sub(shared.relays_per_user.iter().sum::<u64>())),
            ),
            ("answered_per_user", json!(shared.echoes_per_user)),
            ("relayed_per_user", json!(shared.relays_per_user)),
            ("duplicates", json!(shared.duplicates)),
            ("lost_notices", json!(shared.lost_notices)),
            ("elapsed_ms", json!(shared.elapsed_ms.round())),
            ("no_broker_server_pids", json!(alone.pids)),
            ("no_broker_sent", json!(alone.sent)),
            ("no_broker_answered_per_user", json!(alone.echoes_per_user)),
            ("no_broker_relayed_per_user", json!(alone.relays_per_user)),
        ]),
        ok,
        settings,
        failed: c.failed_so_far().to_vec(),
    };
    procs::write_page(ctx, &rec, &swimlane(&shared, &alone), out)?;
    Ok(rec)
}

/// user 1 → server 1 → broker → server 2 → user 2, for user 1's messages: sent (user 1),
/// answered by server 1 (the echo user 1 received), delivered to user 2 (the relay). The
/// broker and server 2 hops are not timed separately: the path crosses them between the two
/// measured ends. Without the broker the path stops at server 1.
fn swimlane(shared: &RunResult, alone: &RunResult) -> String {
    let lanes = ["user 1", "server 1", "broker (Redis)", "server 2", "user 2"];
    let (left, width, lane_h) = (110.0, 720.0, 44.0);
    let mut b = String::new();
    let draw = |b: &mut String, r: &RunResult, top: f64, title: &str| {
        svg::text(b, 4.0, top - 6.0, "start", title);
        for (i, name) in lanes.iter().enumerate() {
            let y = top + i as f64 * lane_h + lane_h / 2.0;
            svg::text(b, left - 6.0, y + 4.0, "end", name);
            svg::line(b, left, y, left + width, y, "stroke:#ccd");
        }
        let y = |lane: usize| top + lane as f64 * lane_h + lane_h / 2.0;
        let mut msgs: Vec<(&String, f64)> = r
            .sent_at
            .iter()
            .filter(|(t, _)| t.starts_with("user1 "))
            .map(|(t, at)| (t, *at))
            .collect();
        msgs.sort_by(|a, b| a.1.total_cmp(&b.1));
        let end = r.elapsed_ms.max(1.0);
        let x = |ms: f64| left + ms / end * width;
        for (text, at) in msgs {
            let echo = r.logs[0].echoes.get(text).copied();
            let relay = r.logs[1].relays.get(text).copied();
            let mut pts = vec![(x(at), y(0))];
            if let Some(e) = echo {
                pts.push((x(e), y(1)));
            }
            match (echo, relay) {
                (Some(e), Some(d)) => {
                    let mid = (e + d) / 2.0;
                    pts.push((x(mid), y(2)));
                    pts.push((x(d), y(3)));
                    pts.push((x(d), y(4)));
                    svg::polyline(b, &pts, "delivered", "#1565c0");
                    svg::circle(
                        b,
                        x(d),
                        y(4),
                        3.0,
                        "arrived",
                        "#2e7d32",
                        &format!("{text}: sent {at:.1} ms, at user 2 {d:.1} ms"),
                    );
                }
                _ => {
                    svg::polyline(b, &pts, "stopped", "#9e9e9e");
                    if let Some(&(px, py)) = pts.last() {
                        svg::circle(
                            b,
                            px,
                            py,
                            3.0,
                            "not-arrived",
                            "#c62828",
                            &format!("{text}: never reached user 2"),
                        );
                    }
                }
            }
        }
        svg::text(
            b,
            left + width,
            top + 5.0 * lane_h + 12.0,
            "end",
            &format!("time, 0 to {end:.0} ms"),
        );
    };
    draw(
        &mut b,
        shared,
        20.0,
        "with --broker: every message of user 1 crosses to user 2",
    );
    let second = 20.0 + 5.0 * lane_h + 50.0;
    draw(
        &mut b,
        alone,
        second,
        "without a broker: user 1's messages stop at server 1",
    );
    let h = second + 5.0 * lane_h + 20.0;
    let mut page = svg::chart(
        "pubsub-swimlane",
        "user 1 → server 1 → broker → server 2 → user 2",
        left + width + 20.0,
        h,
        &b,
    );
    page.push_str("<p>Each line is one message of user 1: sent, answered by server 1 (user 1's echo, measured), then relayed to user 2 (measured at user 2). The broker and server 2 hops lie between those two measured moments; they are not timed apart.</p>");
    page
}
