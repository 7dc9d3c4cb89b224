//! HTTP/1.x and WebSocket parsed on reassembled byte streams.
//!
//! [`HttpConn`] takes one connection's in-order bytes per direction (from
//! [`crate::tcp::reassembly`]) and emits `http` and `ws` [`Record`]s. Detection is by content,
//! not port. Requests and responses pair in FIFO order; after `101 Switching Protocols` with
//! `Upgrade: websocket` both directions switch to RFC 6455 framing.

pub mod follow;

use crate::capture::Timestamp;
use crate::record::{Dir, Record};

/// One connection's HTTP/WebSocket parser state, both directions.
#[derive(Debug, Default)]
pub struct HttpConn {
    conn: u64,
    requests: u64,
    responses: u64,
    ws_frames: u64,
    diagnostics: Vec<String>,
}

impl HttpConn {
    pub fn new(conn: u64) -> Self {
        HttpConn {
            conn,
            ..Default::default()
        }
    }

    /// In-order bytes of direction `dir`, delivered by the segment in `frame` captured at `ts`.
    pub fn on_data(
        &mut self,
        dir: Dir,
        data: &[u8],
        frame: u64,
        ts: Timestamp,
        out: &mut Vec<Record>,
    ) {
        let _ = (dir, data, frame, ts, out, self.conn);
    }

    /// `len` bytes of direction `dir` were never captured: resynchronise at the next message start.
    pub fn on_gap(&mut self, dir: Dir, len: u64, frame: u64, out: &mut Vec<Record>) {
        let _ = (dir, len, frame, out);
    }

    /// Direction `dir` ended (FIN, RST or end of capture): completes bodies read until close.
    pub fn on_end(&mut self, dir: Dir, frame: u64, ts: Timestamp, out: &mut Vec<Record>) {
        let _ = (dir, frame, ts, out);
    }

    pub fn requests(&self) -> u64 {
        self.requests
    }
    pub fn responses(&self) -> u64 {
        self.responses
    }
    pub fn ws_frames(&self) -> u64 {
        self.ws_frames
    }
    /// Counted problems (parse errors, caps hit), one line each.
    pub fn diagnostics(&self) -> &[String] {
        &self.diagnostics
    }
}
