//! The passive observer: every TCP connection followed through both endpoints' state machines.
//!
//! | file | what |
//! |------|------|
//! | [`seq`] | wrapping sequence-number arithmetic |
//! | [`state`] | the RFC 9293 `State` enum and the one `match` of transitions |
//! | [`conn`] | one connection: both endpoints, relative numbers, window scaling |
//! | [`table`] | 5-tuple → connection index, port reuse, idle eviction, the memory budget |
//! | [`analysis`] | Wireshark's `tcp.analysis.*` rules, in Wireshark's check order |
//! | [`history`] | Zeek's `conn_state` and `history` letters |
//! | [`reassembly`] | in-order bytes per direction for the HTTP layer |

pub mod analysis;
pub mod conn;
pub mod history;
pub mod reassembly;
pub mod seq;
pub mod state;
pub mod table;

pub use crate::types::PacketSel;
pub use conn::{OpenConn, TrackerConfig};
pub use table::{Closing, FlowKey, MemoryRelief, Tracker};

use crate::record::{ConnRec, Dir, Record};
use crate::types::Timestamp;
use reassembly::Chunk;

/// What the tracker hands upward as it works: records, and reassembled stream data.
///
/// Events about a connection come with `U`, the layer above's own state for that connection
/// (the engine's HTTP parser), kept in the connection itself: the tracker only makes it
/// (`U::default()`) and hands it over, and the layer above saves a table of its own (a
/// lookup, and a cache miss, per segment). `()` when nothing above keeps any.
pub trait Events<U = ()> {
    /// A record (packet) in packet order.
    fn record(&mut self, rec: Record);
    /// Connection `conn` was picked up without its SYN: its streams start mid-message.
    fn midstream(&mut self, conn: u64, upper: &mut U);
    /// In-order stream bytes (or a gap) of connection `conn`, direction `dir`.
    fn chunk(
        &mut self,
        conn: u64,
        upper: &mut U,
        dir: Dir,
        chunk: Chunk<'_>,
        frame: u64,
        ts: Timestamp,
    );
    /// Direction `dir` of `conn` ended (FIN, RST, eviction or end of input).
    fn end(&mut self, conn: u64, upper: &mut U, dir: Dir, frame: u64, ts: Timestamp);
    /// The connection is finished: its summary, which the receiver completes and emits.
    fn conn_finished(&mut self, rec: ConnRec, upper: U);
}

/// Heap bytes the layer above keeps for one connection (its `U`), counted against the
/// tracker's memory budget ([`TrackerConfig::memory_budget`]). Approximate: capacities of
/// what it holds, not the allocator's bookkeeping.
pub trait Footprint {
    fn footprint(&self) -> usize;
}

impl Footprint for () {
    fn footprint(&self) -> usize {
        0
    }
}
