//! Follow TCP Stream: a connection's reassembled bytes as text, gaps marked as Wireshark does.

use crate::record::Dir;
use crate::tcp::reassembly::Chunk;

/// Render one chunk of direction `dir`.
pub fn format_chunk(dir: Dir, chunk: &Chunk<'_>) -> String {
    let _ = dir;
    match chunk {
        Chunk::Data(d) => String::from_utf8_lossy(d).into_owned(),
        Chunk::Gap(n) => format!("[{n} bytes missing in capture file]"),
    }
}
