//! tshark `-T fields` oracle files with a header row, one map (column -> value) per row: the
//! reader every oracle test shares (`tests/replay.rs`, `tls.rs`, `tls_decrypt.rs`, `h2.rs`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

/// One row of an oracle file, by column name; missing trailing cells read as "".
pub type Row = BTreeMap<String, String>;

/// The rows of the file at `path`, or `None` when it cannot be read or has no header.
pub fn read(path: &Path) -> Option<Vec<Row>> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let head: Vec<&str> = lines.next()?.split('\t').collect();
    Some(
        lines
            .map(|l| {
                head.iter()
                    .zip(l.split('\t').chain(std::iter::repeat("")))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .collect(),
    )
}
