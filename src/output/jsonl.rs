//! `--format jsonl`: one JSON object per line, exactly the records of `shared/CONTRACT.md`.
//!
//! Each line is a flat object tagged with `"type"` (`packet`, `conn`, `http`, `ws`, `lab`).
//! Optional fields are omitted when absent. Nothing else is written to standard output.

use super::Sink;
use crate::record::Record;
use std::io::{self, BufWriter, Write};

pub struct JsonlSink {
    out: BufWriter<Box<dyn Write>>,
}

impl JsonlSink {
    pub fn new(out: Box<dyn Write>) -> Self {
        JsonlSink {
            out: BufWriter::with_capacity(1 << 16, out),
        }
    }
}

impl Sink for JsonlSink {
    fn record(&mut self, rec: &Record) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, rec).map_err(io::Error::other)?;
        self.out.write_all(b"\n")
    }
    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
