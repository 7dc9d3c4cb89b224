//! Printers behind one trait, [`Sink`]. Choosing a format is one `match` in [`make_sink`].
//!
//! Standard output carries records and nothing else; diagnostics go to standard error.

pub mod jsonl;
pub mod table;

use crate::config::{Format, OutputConfig};
use crate::record::Record;
use std::io::{self, Write};

/// Something that prints records.
pub trait Sink {
    /// One record, in the order the packets produced them.
    fn record(&mut self, rec: &Record) -> io::Result<()>;
    /// Several records, handed over: `recs` is left empty. Printers on another thread take
    /// them without copying.
    fn take(&mut self, recs: &mut Vec<Record>) -> io::Result<()> {
        for rec in recs.drain(..) {
            self.record(&rec)?;
        }
        Ok(())
    }
    /// How many records the engine may gather before handing them to [`Sink::take`]: 1 for
    /// printers that print as they go; a printer on another thread takes whole batches, so a
    /// record is moved once on its way there rather than twice.
    fn hand_over_at(&self) -> usize {
        1
    }
    /// End of input: print whatever was held back (tables), flush.
    fn finish(&mut self) -> io::Result<()>;
    /// Which connections' `packet` records this printer looks at; the engine builds no others.
    fn wants_packets(&self) -> crate::types::PacketSel {
        crate::types::PacketSel::All
    }
    /// A [`Formatter`] making this printer's text elsewhere, when the text is each record's
    /// own, independent of the others (JSON lines, not tables). A printer on another thread
    /// uses one to let the thread that hands it records format them when it falls behind.
    fn formatter(&self) -> Option<Box<dyn Formatter + Send>> {
        None
    }
    /// Print text that this printer's [`Sink::formatter`] made, in its place among the
    /// records.
    fn formatted(&mut self, _text: &[u8]) -> io::Result<()> {
        Err(io::Error::other("this printer formats its records itself"))
    }
    /// For a printer on its own thread: a way for another thread of the run to print for it
    /// when it falls behind.
    fn helper(&self) -> Option<std::sync::Arc<dyn Helper>> {
        None
    }
}

/// Printing another thread can do for a printer that runs on its own thread.
pub trait Helper: Send + Sync {
    /// Print the oldest waiting batch if at least `min` are waiting and nobody is printing
    /// right now; never waits. Whether one was printed.
    fn help(&self, min: usize) -> bool;
}

/// Makes a printer's text for records, to be printed by [`Sink::formatted`].
pub trait Formatter {
    /// Append the text for `rec`.
    fn format(&mut self, rec: &Record, out: &mut Vec<u8>) -> io::Result<()>;
}

/// Build the printer for `args`, writing to `out`.
pub fn make_sink(args: &OutputConfig, out: Box<dyn Write + Send>) -> Box<dyn Sink + Send> {
    match args.format {
        Format::Jsonl => Box::new(jsonl::JsonlSink::new(out).line_buffered(args.line_buffered)),
        Format::Table => Box::new(table::TableSink::new(out, args)),
    }
}

/// Was this error a closed pipe (`statescope ... | head`)? That counts as success.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}
