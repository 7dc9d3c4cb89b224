//! `lab crash`: a stateful server dies under load; what happens to the data its clients gave it.
//!
//! What you will see: a small HTTP server stores records its clients `POST` and acknowledges
//! each with `201 Created`. Four clients send records as fast as it takes them; midway the
//! server is killed, as a crash or the OOM killer would, and started again. The lab then asks
//! the new server for every record and counts the acknowledged ones that are gone.
//!
//! * **State in memory**: the records lived in the dead process's memory. The new process
//!   starts empty: every acknowledged record is lost, though each client was told it was stored.
//! * **State outside the process** (Redis with `--redis URL`, as a stream; by default the
//!   embedded store, which lives in the lab process, outside the server): the server wrote each
//!   record there before acknowledging it, so the new server finds them all: nothing lost.
//!
//! Requests in flight at the moment of the kill fail, and their clients see the failure: those
//! are counted as `failed`, not as lost: a loss is an acknowledged record that is gone.
//!
//! The server runs as a task in this process: killing it aborts the task, which closes its
//! listener and connections and frees its memory, as `kill -9` does to a process.

use super::scale_stateful::{facts, open_broker, runtime, unique};
use super::scale_stateless::{http_request, spawn_http, text};
use super::{LabCtx, LabDef, LabOut};
use crate::broker::Broker;
use crate::record::LabRec;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::json;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub const LAB: LabDef = LabDef {
    name: "crash",
    question: "What happens to clients' data when a stateful server crashes under load, and when the state is kept outside the process?",
    summary: "kill a server mid-load: records kept in memory are lost, records kept in Redis survive",
    run,
};

/// Records the clients try to store in each trial.
const RECORDS: u64 = 120;
/// The server is killed once this many records have been acknowledged.
const KILL_AFTER: u64 = 50;
const CLIENTS: u64 = 4;

fn run(ctx: &LabCtx, out: &mut LabOut) -> anyhow::Result<LabRec> {
    runtime()?.block_on(run_with(ctx, out, RECORDS, KILL_AFTER))
}

/// Where a server keeps its records.
enum Store {
    /// In the server's own memory: dies with it.
    Memory(Mutex<Vec<String>>),
    /// In a broker stream, outside the server.
    External {
        broker: Arc<dyn Broker>,
        stream: String,
    },
}

impl Store {
    /// Keep a record; the error says why the store could not.
    async fn put(&self, id: String) -> Result<(), String> {
        match self {
            Store::Memory(v) => {
                v.lock().unwrap_or_else(|e| e.into_inner()).push(id);
                Ok(())
            }
            Store::External { broker, stream } => broker
                .append(stream, Bytes::from(id))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
        }
    }

    async fn all(&self) -> Result<Vec<String>, String> {
        match self {
            Store::Memory(v) => Ok(v.lock().unwrap_or_else(|e| e.into_inner()).clone()),
            Store::External { broker, stream } => Ok(broker
                .entries(stream)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|e| String::from_utf8_lossy(&e.payload).into_owned())
                .collect()),
        }
    }
}

/// `POST /records` (body: the record) and `GET /records` (one per line).
async fn handle(
    store: Arc<Store>,
    req: Request<Incoming>,
) -> hyper::Response<http_body_util::Full<Bytes>> {
    match (req.method().clone(), req.uri().path()) {
        (Method::POST, "/records") => {
            let Ok(body) = Limited::new(req.into_body(), 4096).collect().await else {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "record too large or cut short\n",
                );
            };
            let Ok(id) = String::from_utf8(body.to_bytes().to_vec()) else {
                return text(StatusCode::BAD_REQUEST, "record is not UTF-8\n");
            };
            if id.is_empty() || id.contains('\n') {
                return text(
                    StatusCode::BAD_REQUEST,
                    "record must be one non-empty line\n",
                );
            }
            match store.put(id).await {
                Ok(()) => text(StatusCode::CREATED, "stored\n"),
                Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, e + "\n"),
            }
        }
        (Method::GET, "/records") => match store.all().await {
            Ok(ids) => text(StatusCode::OK, ids.join("\n")),
            Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, e + "\n"),
        },
        _ => text(StatusCode::NOT_FOUND, "POST or GET /records\n"),
    }
}

async fn start_server(store: Store) -> anyhow::Result<(tokio::task::JoinHandle<()>, SocketAddr)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let store = Arc::new(store);
    // The store is moved into the server: when the server task dies, so does its memory.
    let task = spawn_http(listener, move |req| handle(store.clone(), req));
    Ok((task, addr))
}

/// What one trial measured.
#[derive(Debug, Default)]
struct Trial {
    sent: u64,
    acked: u64,
    failed: u64,
    survived: u64,
    lost: u64,
    stored_unacked: u64,
}

async fn trial(
    label: &str,
    make_store: &dyn Fn() -> Store,
    records: u64,
    kill_after: u64,
    out: &mut LabOut,
) -> anyhow::Result<Trial> {
    let (server, addr) = start_server(make_store()).await?;
    let next = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let failed = Arc::new(AtomicU64::new(0));
    let mut clients = JoinSet::new();
    for _ in 0..CLIENTS {
        let (next, acked, failed) = (next.clone(), acked.clone(), failed.clone());
        clients.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= records {
                    return;
                }
                let id = format!("record-{n}");
                let res = http_request(
                    addr,
                    Method::POST,
                    "/records",
                    &hyper::HeaderMap::new(),
                    Bytes::from(id.clone()),
                )
                .await;
                if matches!(res, Ok((StatusCode::CREATED, _, _))) {
                    acked.lock().unwrap_or_else(|e| e.into_inner()).push(id);
                } else {
                    // The client is told: a failure, not a loss. It stops, as the server is gone.
                    failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while (acked.lock().unwrap_or_else(|e| e.into_inner()).len() as u64) < kill_after
        && Instant::now() < deadline
    {
        // Every client has stopped (the store failed them): nothing more will be acknowledged.
        while clients.try_join_next().is_some() {}
        if clients.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    server.abort();
    let at_kill = acked.lock().unwrap_or_else(|e| e.into_inner()).len();
    out.say(&format!(
        "[{label}] server killed mid-load ({at_kill} records acknowledged so far)"
    ))?;
    let _ = tokio::time::timeout(Duration::from_secs(15), async {
        while clients.join_next().await.is_some() {}
    })
    .await;
    clients.abort_all();

    // A new server process starts with the same configuration.
    let (server, addr) = start_server(make_store()).await?;
    let listed = http_request(
        addr,
        Method::GET,
        "/records",
        &hyper::HeaderMap::new(),
        Bytes::new(),
    )
    .await;
    server.abort();
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
    let acked = acked.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let acked_set: HashSet<&String> = acked.iter().collect();
    let t = Trial {
        sent: next.load(Ordering::Relaxed).min(records),
        acked: acked.len() as u64,
        failed: failed.load(Ordering::Relaxed),
        survived: survived.len() as u64,
        lost: acked.iter().filter(|id| !survived.contains(*id)).count() as u64,
        stored_unacked: survived.iter().filter(|id| !acked_set.contains(id)).count() as u64,
    };
    out.say(&format!(
        "[{label}] after restart: {} of {} acknowledged records survived, {} lost; {} requests failed at the crash (their clients knew)",
        t.acked - t.lost,
        t.acked,
        t.lost,
        t.failed
    ))?;
    Ok(t)
}

/// The lab with `records` per trial, the server killed after `kill_after` acknowledgements.
pub async fn run_with(
    ctx: &LabCtx,
    out: &mut LabOut,
    records: u64,
    kill_after: u64,
) -> anyhow::Result<LabRec> {
    let kill_after = kill_after.min(records);
    let broker = open_broker(ctx, out).await?;
    let stream = unique("records");
    let external_where = if ctx.redis.is_some() {
        format!("Redis stream {stream}")
    } else {
        "the embedded store (in the lab process, outside the server)".to_string()
    };

    out.say(&format!("{CLIENTS} clients store {records} records; the server is killed after {kill_after} acknowledgements."))?;
    let mem = trial(
        "state in memory",
        &|| Store::Memory(Mutex::new(Vec::new())),
        records,
        kill_after,
        out,
    )
    .await?;
    let ext_store = || Store::External {
        broker: broker.clone(),
        stream: stream.clone(),
    };
    out.say(&format!(
        "Now the same server keeping each record in {external_where} before acknowledging it."
    ))?;
    let ext = trial("state outside", &ext_store, records, kill_after, out).await?;
    let _ = broker.delete(&stream).await;

    let ok = mem.acked >= kill_after
        && mem.lost == mem.acked
        && ext.acked >= kill_after
        && ext.lost == 0;
    let answer = format!(
        "Kept in the server's memory, the data dies with the server: {} of {} acknowledged records were lost when it was killed. \
         Kept outside the process ({}), the restarted server found them all: {} of {} lost.",
        mem.lost,
        mem.acked,
        if ctx.redis.is_some() { "Redis" } else { "embedded store" },
        ext.lost,
        ext.acked
    );
    Ok(LabRec {
        name: LAB.name.into(),
        question: LAB.question.into(),
        answer,
        facts: facts(&[
            ("external_store", json!(broker.describe())),
            ("records", json!(records)),
            ("kill_after", json!(kill_after)),
            ("memory_sent", json!(mem.sent)),
            ("memory_acked", json!(mem.acked)),
            ("memory_failed", json!(mem.failed)),
            ("memory_survived", json!(mem.survived)),
            ("memory_lost", json!(mem.lost)),
            ("external_sent", json!(ext.sent)),
            ("external_acked", json!(ext.acked)),
            ("external_failed", json!(ext.failed)),
            ("external_survived", json!(ext.survived)),
            ("external_lost", json!(ext.lost)),
            ("external_stored_unacked", json!(ext.stored_unacked)),
        ]),
        ok,
        ..Default::default()
    })
}
