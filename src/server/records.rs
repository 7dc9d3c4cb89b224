//! `/records`: a tiny record store, for the `crash` lab's lesson on where state lives.
//!
//! `POST /records` with a one-line body stores it and answers `201 Created` only once it is
//! stored; `GET /records` lists every stored record, one per line.
//!
//! Where they are stored is `serve --records-store`:
//!
//! * `memory` (the default): a list in this process's memory. A killed process takes it along;
//!   the next process starts empty.
//! * `redis://HOST:PORT`: a Redis stream (`--records-stream`, `XADD` before the `201`), outside
//!   the process: a new process finds every acknowledged record.
//!
//! A hidden `--records-file PATH` turns the memory store into a deliberately wrong one that
//! secretly writes every record to `PATH` and reads them back on start: the `crash` lab's
//! negative control, which must then fail its "memory loses everything" check.

use super::routes::{error, read_body, Body};
use super::App;
use crate::broker::Broker;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Most records the memory store keeps; past it, `507` (memory is bounded, like everything:
/// at most 40 MiB of records with [`MAX_RECORD_BYTES`]).
pub const MAX_MEMORY_RECORDS: usize = 10_000;
/// Longest record accepted, in bytes.
pub const MAX_RECORD_BYTES: usize = 4096;

/// `serve`'s `/records` settings, as given on the command line.
#[derive(Clone, Debug, Default)]
pub struct RecordsOptions {
    /// `memory` (or `None`) or `redis://HOST:PORT`.
    pub store: Option<String>,
    /// The Redis stream's key.
    pub stream: String,
    /// The deliberately wrong memory store's secret file (hidden `--records-file`).
    pub secret_file: Option<PathBuf>,
}

impl RecordsOptions {
    /// The store these options name; `None` for the plain memory store.
    pub async fn open(&self) -> anyhow::Result<Option<Arc<RecordStore>>> {
        let store = match (&self.store, &self.secret_file) {
            (Some(_), Some(_)) if self.store.as_deref() != Some("memory") => anyhow::bail!(
                "--records-file makes the memory store persist; it cannot go with --records-store {}",
                self.store.as_deref().unwrap_or_default()
            ),
            (_, Some(path)) => RecordStore::persisting_memory(path)?,
            (None, None) => return Ok(None),
            (Some(s), None) if s == "memory" => return Ok(None),
            (Some(url), None) if url.starts_with("redis://") => {
                RecordStore::external(url, &self.stream).await?
            }
            (Some(other), None) => anyhow::bail!(
                "--records-store {other}: give memory or redis://HOST:PORT"
            ),
        };
        Ok(Some(Arc::new(store)))
    }
}

/// Where `/records` keeps what it acknowledges.
pub enum RecordStore {
    /// In this process; with `secret_file`, also (wrongly) in a file read back on start.
    Memory {
        items: Mutex<Vec<String>>,
        secret_file: Option<PathBuf>,
    },
    /// A stream in a broker outside the process.
    External {
        broker: Arc<dyn Broker>,
        stream: String,
    },
}

impl RecordStore {
    /// An empty store in this process's memory.
    pub fn memory() -> Self {
        RecordStore::Memory {
            items: Mutex::new(Vec::new()),
            secret_file: None,
        }
    }

    /// The deliberately wrong memory store: everything also goes to `path`, read back here.
    pub fn persisting_memory(path: &Path) -> anyhow::Result<Self> {
        let items = match std::fs::read_to_string(path) {
            Ok(s) => s.lines().map(str::to_string).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => anyhow::bail!("--records-file {}: {e}", path.display()),
        };
        Ok(RecordStore::Memory {
            items: Mutex::new(items),
            secret_file: Some(path.to_path_buf()),
        })
    }

    /// A Redis stream at `url` (`redis://HOST:PORT`), checked now.
    pub async fn external(url: &str, stream: &str) -> anyhow::Result<Self> {
        let broker = crate::broker::connect(Some(url))
            .await
            .map_err(|e| anyhow::anyhow!("--records-store {url}: {e}"))?;
        Ok(RecordStore::External {
            broker,
            stream: stream.to_string(),
        })
    }

    /// `memory`, or the broker and stream.
    pub fn describe(&self) -> String {
        match self {
            RecordStore::Memory { .. } => "memory".into(),
            RecordStore::External { broker, stream } => {
                format!("{} stream {stream}", broker.describe())
            }
        }
    }

    async fn put(&self, rec: String) -> Result<(), (StatusCode, String)> {
        match self {
            RecordStore::Memory { items, secret_file } => {
                let mut items = items.lock().unwrap_or_else(|e| e.into_inner());
                if items.len() >= MAX_MEMORY_RECORDS {
                    return Err((
                        StatusCode::INSUFFICIENT_STORAGE,
                        format!("the memory store holds its limit of {MAX_MEMORY_RECORDS} records"),
                    ));
                }
                if let Some(path) = secret_file {
                    let written = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .and_then(|mut f| writeln!(f, "{rec}"));
                    if let Err(e) = written {
                        return Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string()));
                    }
                }
                items.push(rec);
                Ok(())
            }
            RecordStore::External { broker, stream } => broker
                .append(stream, Bytes::from(rec))
                .await
                .map(|_| ())
                .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
        }
    }

    async fn all(&self) -> Result<Vec<String>, (StatusCode, String)> {
        match self {
            RecordStore::Memory { items, .. } => {
                Ok(items.lock().unwrap_or_else(|e| e.into_inner()).clone())
            }
            RecordStore::External { broker, stream } => Ok(broker
                .entries(stream)
                .await
                .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?
                .into_iter()
                .map(|e| String::from_utf8_lossy(&e.payload).into_owned())
                .collect()),
        }
    }
}

/// `/records`: `POST` one line to store it, `GET` them all.
pub async fn records(req: Request<Incoming>, app: &App) -> Response<Body> {
    match *req.method() {
        Method::POST => {
            let body = match read_body(req.into_body(), app).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            if body.len() > MAX_RECORD_BYTES {
                return error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("a record is at most {MAX_RECORD_BYTES} bytes"),
                );
            }
            let rec = match String::from_utf8(body.to_vec()) {
                Ok(s) if !s.is_empty() && !s.contains('\n') => s,
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "a record is one non-empty line of UTF-8",
                    )
                }
            };
            match app.records.put(rec).await {
                Ok(()) => plain(StatusCode::CREATED, "stored\n".into()),
                Err((status, why)) => error(status, &why),
            }
        }
        Method::GET | Method::HEAD => match app.records.all().await {
            Ok(all) => {
                let mut text = all.join("\n");
                if !text.is_empty() {
                    text.push('\n');
                }
                plain(StatusCode::OK, text)
            }
            Err((status, why)) => error(status, &why),
        },
        _ => {
            let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "GET or POST /records");
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
            resp
        }
    }
}

fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut resp = Response::new(Body::new(Bytes::from(text)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_wrong_memory_store_remembers_across_instances() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let a = RecordStore::persisting_memory(&path).unwrap();
        a.put("r1".into()).await.unwrap();
        let b = RecordStore::persisting_memory(&path).unwrap();
        assert_eq!(b.all().await.unwrap(), ["r1"]);
        // The honest one does not.
        let m = RecordStore::memory();
        m.put("r1".into()).await.unwrap();
        assert!(RecordStore::memory().all().await.unwrap().is_empty());
    }
}
