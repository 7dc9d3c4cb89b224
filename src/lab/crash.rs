//! `lab crash`: a stateful server process dies under load; what happens to the data its clients
//! gave it.
//!
//! What you will see: a `statescope serve` *process* stores the records its clients `POST` to
//! `/records` and acknowledges each with `201 Created`. Four clients send records as fast as it
//! takes them; once some have been acknowledged the lab sends the process `SIGKILL` by its PID,
//! as a crash or the OOM killer would, while the clients keep sending. Requests sent after the
//! kill are refused (nothing listens any more): the clients see those failures. Then a *new*
//! process starts with the same settings, and the lab asks it for every record and counts the
//! acknowledged ones that are gone.
//!
//! * **State in memory** (`serve --records-store memory`): the records lived in the dead
//!   process's memory. The new process starts empty: every acknowledged record is lost, though
//!   each client was told it was stored.
//! * **State outside the process** (`serve --records-store redis://…`, a Redis stream written
//!   before the `201`): the new process finds every acknowledged record: nothing lost.
//!
//! Requests in flight at the moment of the kill fail, and their clients see the failure: those
//! are counted as `failed`, not as lost; a loss is an acknowledged record that is gone. Both
//! runs are checked for the kill having landed mid-load: records acknowledged before it,
//! requests still being sent after it, and none of those acknowledged.
//!
//! Redis is `--redis URL`, or a `redis-server` the lab starts on a free port. The negative
//! control `--variant wrong-persisting-store` runs the memory store that secretly persists to a
//! file (a hidden `serve` flag): its records survive the kill, and the lab must say
//! `memory_lost_every_acked_record` failed.

use super::procs::{self, svg, LabRedis, Proc};
use super::scale_stateful::{facts, runtime, unique};
use super::scale_stateless::http_request;
use super::{LabCtx, LabDef, LabOut};
use crate::record::LabRec;
use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde_json::json;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

pub const LAB: LabDef = LabDef {
    name: "crash",
    question: "What happens to clients' data when a stateful server crashes under load, and when the state is kept outside the process?",
    summary: "SIGKILL a serve process mid-load: records kept in memory are lost, records kept in Redis survive",
    run,
};

/// Most records the clients try to store in each run (a bound: the kill comes long before).
const RECORDS: u64 = 400;
/// The process is killed once this many records have been acknowledged.
const KILL_AFTER: u64 = 60;
const CLIENTS: u64 = 4;
/// A client stops after this many failures in a row (the server is gone).
const GIVE_UP_AFTER: u32 = 3;
/// The wrong variant: a memory store that secretly persists.
pub const WRONG_PERSISTING_STORE: &str = "wrong-persisting-store";

fn run(ctx: &LabCtx, out: &mut LabOut) -> anyhow::Result<LabRec> {
    let variant = ctx.variant_of(LAB.name, &[WRONG_PERSISTING_STORE])?;
    runtime()?.block_on(run_with(ctx, out, variant))
}

/// One request as its client saw it, in ms since the run's load began.
#[derive(Debug, Clone)]
struct Event {
    sent_ms: f64,
    done_ms: f64,
    acked: bool,
}

/// What one run measured.
#[derive(Debug, Default)]
struct Trial {
    pid_killed: u32,
    pid_restarted: u32,
    sent: u64,
    acked: u64,
    failed: u64,
    acked_at_kill: u64,
    /// Requests whose sending began after SIGKILL was sent.
    sent_after_kill: u64,
    failed_after_kill: u64,
    /// Requests sent after the killed process was reaped and yet acknowledged: impossible.
    acked_sent_after_kill: u64,
    survived: u64,
    lost: u64,
    stored_unacked: u64,
    kill_ms: f64,
    events: Vec<Event>,
}

async fn trial(
    ctx: &LabCtx,
    label: &str,
    args: &[String],
    out: &mut LabOut,
) -> anyhow::Result<Trial> {
    let mut first: Proc = procs::start_serve(ctx, &format!("crash-{label}-1"), args)?;
    let addr = first.addr;
    out.say(&format!(
        "[{label}] serve pid {} on {addr} ({})",
        first.pid,
        args.join(" ")
    ))?;
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let acked_ids = Arc::new(Mutex::new(Vec::<String>::new()));
    let events = Arc::new(Mutex::new(Vec::<Event>::new()));
    let mut clients = JoinSet::new();
    for _ in 0..CLIENTS {
        let (next, acked_ids, events) = (next.clone(), acked_ids.clone(), events.clone());
        clients.spawn(async move {
            let mut in_a_row = 0;
            while in_a_row < GIVE_UP_AFTER {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= RECORDS {
                    return;
                }
                let id = format!("record-{n}");
                let sent_ms = started.elapsed().as_secs_f64() * 1e3;
                let res = http_request(
                    addr,
                    Method::POST,
                    "/records",
                    &hyper::HeaderMap::new(),
                    Bytes::from(id.clone()),
                )
                .await;
                let acked = matches!(res, Ok((StatusCode::CREATED, _, _)));
                let done_ms = started.elapsed().as_secs_f64() * 1e3;
                if acked {
                    in_a_row = 0;
                    acked_ids.lock().unwrap_or_else(|e| e.into_inner()).push(id);
                } else {
                    // The client is told: a failure, not a loss.
                    in_a_row += 1;
                }
                events
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Event {
                        sent_ms,
                        done_ms,
                        acked,
                    });
            }
        });
    }
    let acked_now = || acked_ids.lock().unwrap_or_else(|e| e.into_inner()).len() as u64;
    let deadline = Instant::now() + Duration::from_secs(15);
    while acked_now() < KILL_AFTER && Instant::now() < deadline {
        while clients.try_join_next().is_some() {}
        if clients.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let pid_killed = first.pid;
    // SIGKILL by PID, and wait until the kernel has reaped it: from then on nothing of it runs.
    // Requests sent after the signal went out count as sent after the kill (the dying process
    // resets them within microseconds); an acknowledgement of one sent after the reaping would
    // be impossible.
    let kill_ms = started.elapsed().as_secs_f64() * 1e3;
    first.kill();
    let reaped_ms = started.elapsed().as_secs_f64() * 1e3;
    let acked_at_kill = acked_now();
    out.say(&format!(
        "[{label}] SIGKILL to pid {pid_killed} at {kill_ms:.0} ms, {acked_at_kill} records acknowledged so far; clients keep sending"
    ))?;
    let _ = tokio::time::timeout(Duration::from_secs(20), async {
        while clients.join_next().await.is_some() {}
    })
    .await;
    clients.abort_all();

    // A new process with the same settings.
    let second = procs::start_serve(ctx, &format!("crash-{label}-2"), args)?;
    let listed = http_request(
        second.addr,
        Method::GET,
        "/records",
        &hyper::HeaderMap::new(),
        Bytes::new(),
    )
    .await;
    let pid_restarted = second.pid;
    drop(second);
    let body = match listed {
        Ok((StatusCode::OK, _, body)) => body,
        Ok((status, _, body)) => anyhow::bail!(
            "[{label}] the restarted server could not list its records: {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ),
        Err(e) => anyhow::bail!("[{label}] the restarted server did not answer: {e}"),
    };
    let survived: HashSet<String> = String::from_utf8_lossy(&body)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let acked = acked_ids.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let acked_set: HashSet<&String> = acked.iter().collect();
    let mut events = events.lock().unwrap_or_else(|e| e.into_inner()).clone();
    events.sort_by(|a, b| a.sent_ms.total_cmp(&b.sent_ms));
    let after: Vec<&Event> = events.iter().filter(|e| e.sent_ms > kill_ms).collect();
    let after_reaped = events.iter().filter(|e| e.sent_ms > reaped_ms);
    let t = Trial {
        pid_killed,
        pid_restarted,
        sent: events.len() as u64,
        acked: acked.len() as u64,
        failed: events.iter().filter(|e| !e.acked).count() as u64,
        acked_at_kill,
        sent_after_kill: after.len() as u64,
        failed_after_kill: after.iter().filter(|e| !e.acked).count() as u64,
        acked_sent_after_kill: after_reaped.filter(|e| e.acked).count() as u64,
        survived: survived.len() as u64,
        lost: acked.iter().filter(|id| !survived.contains(*id)).count() as u64,
        stored_unacked: survived.iter().filter(|id| !acked_set.contains(id)).count() as u64,
        kill_ms,
        events,
    };
    out.say(&format!(
        "[{label}] new process pid {pid_restarted}: {} of {} acknowledged records survived, {} lost; {} requests failed; of the {} sent after SIGKILL, {} failed",
        t.acked - t.lost,
        t.acked,
        t.lost,
        t.failed,
        t.sent_after_kill,
        t.failed_after_kill,
    ))?;
    Ok(t)
}

/// The checks of one run, named `PREFIX_…`.
fn check_run(c: &mut super::common::Checks, p: &str, t: &Trial) {
    c.check(
        &format!("{p}_kill_landed_mid_load"),
        t.acked_at_kill >= KILL_AFTER && t.acked_at_kill < RECORDS && t.sent_after_kill > 0,
    );
    c.check(
        &format!("{p}_no_ack_after_kill"),
        t.acked_sent_after_kill == 0,
    );
    c.check(
        &format!("{p}_restart_is_a_new_process"),
        t.pid_restarted != t.pid_killed,
    );
}

/// The lab; `variant` is [`WRONG_PERSISTING_STORE`] for the negative control.
async fn run_with(ctx: &LabCtx, out: &mut LabOut, variant: Option<&str>) -> anyhow::Result<LabRec> {
    let redis = LabRedis::open(ctx, out)?;
    let stream = unique("records");
    let secret = ctx
        .out_dir
        .join(format!("crash-secret-{}.txt", std::process::id()));
    let _ = std::fs::remove_file(&secret);
    let mut mem_args = vec!["--records-store".to_string(), "memory".to_string()];
    if variant == Some(WRONG_PERSISTING_STORE) {
        out.say("VARIANT wrong-persisting-store: the memory store secretly persists to a file; the lab must notice")?;
        mem_args.push("--records-file".into());
        mem_args.push(secret.display().to_string());
    }
    let ext_args = vec![
        "--records-store".to_string(),
        redis.url.clone(),
        "--records-stream".to_string(),
        stream.clone(),
    ];
    out.say(&format!(
        "{CLIENTS} clients store up to {RECORDS} records; the serve process is killed after {KILL_AFTER} acknowledgements."
    ))?;
    let mem = trial(ctx, "memory", &mem_args, out).await;
    let _ = std::fs::remove_file(&secret);
    let mem = mem?;
    out.say("Now the same server keeping each record in a Redis stream before acknowledging it.")?;
    let ext = trial(ctx, "external", &ext_args, out).await;
    if let Ok(b) = crate::broker::connect(Some(&redis.url)).await {
        let _ = b.delete(&stream).await;
    }
    let ext = ext?;
    drop(redis);

    out.say("")?;
    out.say("store     sent  acked  acked@kill  failed  sent-after-kill  survived  lost")?;
    for (name, t) in [("memory", &mem), ("redis", &ext)] {
        out.say(&format!(
            "{name:<8} {:>5}  {:>5}  {:>10}  {:>6}  {:>15}  {:>8}  {:>4}",
            t.sent, t.acked, t.acked_at_kill, t.failed, t.sent_after_kill, t.survived, t.lost
        ))?;
    }

    let mut c = super::common::Checks::default();
    check_run(&mut c, "memory", &mem);
    check_run(&mut c, "external", &ext);
    c.check(
        "memory_lost_every_acked_record",
        mem.acked > 0 && mem.lost == mem.acked && mem.survived == 0,
    );
    c.check(
        "external_lost_no_acked_record",
        ext.acked > 0 && ext.lost == 0,
    );
    let ok = c.ok(out)?;
    let answer = format!(
        "Kept in the server's memory, the data dies with the process: after SIGKILL the new process held {} records, \
         so {} of {} acknowledged records were lost. Kept outside the process (Redis), the new process found them all: \
         {} of {} lost. Requests sent after SIGKILL failed ({} of {} and {} of {}): clients knew about those.",
        mem.survived, mem.lost, mem.acked, ext.lost, ext.acked,
        mem.failed_after_kill, mem.sent_after_kill, ext.failed_after_kill, ext.sent_after_kill
    );
    let mut f = facts(&[]);
    for (p, t) in [("memory", &mem), ("external", &ext)] {
        for (k, v) in [
            ("pid_killed", json!(t.pid_killed)),
            ("pid_restarted", json!(t.pid_restarted)),
            ("sent", json!(t.sent)),
            ("acked", json!(t.acked)),
            ("acked_at_kill", json!(t.acked_at_kill)),
            ("failed", json!(t.failed)),
            ("sent_after_kill", json!(t.sent_after_kill)),
            ("failed_after_kill", json!(t.failed_after_kill)),
            ("acked_sent_after_kill", json!(t.acked_sent_after_kill)),
            ("survived", json!(t.survived)),
            ("lost", json!(t.lost)),
            ("stored_unacked", json!(t.stored_unacked)),
            ("kill_ms", json!((t.kill_ms * 10.0).round() / 10.0)),
        ] {
            f.insert(format!("{p}_{k}"), v);
        }
    }
    let mut settings = facts(&[
        ("records", json!(RECORDS)),
        ("kill_after", json!(KILL_AFTER)),
        ("clients", json!(CLIENTS)),
        ("external_store", json!(redis_url_setting(ctx))),
    ]);
    if let Some(v) = variant {
        settings.insert("variant".into(), json!(v));
    }
    let rec = LabRec {
        name: LAB.name.into(),
        question: LAB.question.into(),
        answer,
        facts: f,
        ok,
        settings,
        failed: c.failed_so_far().to_vec(),
    };
    procs::write_page(
        ctx,
        &rec,
        &timeline(&[("memory", &mem), ("Redis", &ext)]),
        out,
    )?;
    Ok(rec)
}

/// `--redis` as given, or what the lab started.
fn redis_url_setting(ctx: &LabCtx) -> String {
    ctx.redis
        .clone()
        .unwrap_or_else(|| "redis-server started by the lab".into())
}

/// Acknowledged records versus survivors: per run, each request on a time line (acknowledged
/// above, failed below) with the kill marked, then two bars: acknowledged and survived.
fn timeline(runs: &[(&str, &Trial)]) -> String {
    let (left, width) = (90.0, 760.0);
    let end = runs
        .iter()
        .flat_map(|(_, t)| t.events.iter().map(|e| e.done_ms))
        .fold(1.0f64, f64::max);
    let x = |ms: f64| left + ms / end * width;
    let lane = 120.0;
    let mut b = String::new();
    for (i, (name, t)) in runs.iter().enumerate() {
        let top = 20.0 + i as f64 * lane;
        svg::text(&mut b, 4.0, top + 14.0, "start", name);
        svg::text(&mut b, 4.0, top + 28.0, "start", "acked");
        svg::text(&mut b, 4.0, top + 48.0, "start", "failed");
        svg::line(
            &mut b,
            left,
            top + 36.0,
            left + width,
            top + 36.0,
            "stroke:#999",
        );
        for e in &t.events {
            let (y, class, fill) = if e.acked {
                (top + 24.0, "ack", "#2e7d32")
            } else {
                (top + 46.0, "fail", "#c62828")
            };
            svg::circle(
                &mut b,
                x(e.done_ms),
                y,
                2.5,
                class,
                fill,
                &format!(
                    "sent {:.1} ms, answered {:.1} ms: {}",
                    e.sent_ms,
                    e.done_ms,
                    if e.acked { "201 stored" } else { "failed" }
                ),
            );
        }
        svg::marker(&mut b, x(t.kill_ms), top, top + 56.0, "SIGKILL");
        // The bars: what clients were told, and what the new process had.
        let scale = width / (t.acked.max(t.survived).max(1) as f64);
        svg::rect(
            &mut b,
            left,
            top + 64.0,
            t.acked as f64 * scale,
            14.0,
            "acked",
            "#1565c0",
        );
        svg::text(
            &mut b,
            left - 4.0,
            top + 75.0,
            "end",
            &format!("{} acked", t.acked),
        );
        svg::rect(
            &mut b,
            left,
            top + 84.0,
            t.survived as f64 * scale,
            14.0,
            "survived",
            "#43a047",
        );
        svg::text(
            &mut b,
            left - 4.0,
            top + 95.0,
            "end",
            &format!("{} survived", t.survived),
        );
        svg::text(
            &mut b,
            left + width,
            top + 95.0,
            "end",
            &format!("{} lost", t.lost),
        );
    }
    let h = 30.0 + runs.len() as f64 * lane;
    svg::text(
        &mut b,
        left + width,
        h - 4.0,
        "end",
        &format!("time, 0 to {end:.0} ms"),
    );
    let mut page = svg::chart(
        "crash-timeline",
        "Acknowledged records versus survivors after SIGKILL and restart",
        left + width + 20.0,
        h,
        &b,
    );
    let _ = write!(
        page,
        "<p>Each dot is one <code>POST /records</code>, placed when its answer (or failure) came. The dashed line is the moment the killed process was reaped; the bars compare what clients were told was stored with what a new process found.</p>"
    );
    page
}
