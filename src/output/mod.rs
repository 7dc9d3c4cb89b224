//! Printers behind one trait, [`Sink`]. Choosing a format is one `match` in [`make_printer`].
//!
//! Standard output carries records and nothing else; diagnostics go to standard error.
//!
//! Not a printer: [`live_view`], the open connections `live` redraws on standard error while
//! capturing on a terminal, from snapshots of the engine's state.

pub mod jsonl;
pub mod live_view;
pub mod table;

use crate::config::{Format, OutputConfig};
use crate::record::Record;
use crate::select::{Ends, Where};
use crate::types::PacketSel;
use std::io::{self, Write};

/// Something that prints records.
///
/// Only printing: how records reach a printer on another thread, and how that thread gets
/// help, belong to [`crate::pipeline`]'s own types.
pub trait Sink {
    /// One record, in the order the packets produced them.
    fn record(&mut self, rec: &Record) -> io::Result<()>;
    /// Several records, handed over: `recs` is left empty. Printers on another thread take
    /// them without copying.
    fn take(&mut self, recs: &mut Vec<Record>) -> io::Result<()> {
        // Each record read where it lies: draining moved each (368 bytes) out first.
        let printed = recs.iter().try_for_each(|rec| self.record(rec));
        recs.clear();
        printed
    }
    /// End of input: print whatever was held back (tables), flush.
    fn finish(&mut self) -> io::Result<()>;
    /// Which connections' `packet` records this printer looks at; the engine builds no others.
    fn wants_packets(&self) -> PacketSel {
        PacketSel::All
    }
}

/// A printer as [`make_printer`] builds it. The kind matters to a printing thread
/// ([`crate::pipeline::PrintThread`]): JSON lines are each their record's own text, so
/// another thread can make them ahead of the printer; a table cannot be cut up so.
pub enum Printer {
    /// JSON lines ([`jsonl::JsonlSink`]).
    Lines(jsonl::JsonlSink),
    /// Any other printer (tables; tests' own).
    Records(Box<dyn Sink + Send>),
}

impl Printer {
    /// The printer behind the common trait.
    pub fn into_sink(self) -> Box<dyn Sink + Send> {
        match self {
            Printer::Lines(p) => Box::new(p),
            Printer::Records(p) => p,
        }
    }
}

impl Sink for Printer {
    fn record(&mut self, rec: &Record) -> io::Result<()> {
        match self {
            Printer::Lines(p) => p.record(rec),
            Printer::Records(p) => p.record(rec),
        }
    }
    fn take(&mut self, recs: &mut Vec<Record>) -> io::Result<()> {
        match self {
            Printer::Lines(p) => p.take(recs),
            Printer::Records(p) => p.take(recs),
        }
    }
    fn finish(&mut self) -> io::Result<()> {
        match self {
            Printer::Lines(p) => p.finish(),
            Printer::Records(p) => p.finish(),
        }
    }
    fn wants_packets(&self) -> PacketSel {
        match self {
            Printer::Lines(p) => p.wants_packets(),
            Printer::Records(p) => p.wants_packets(),
        }
    }
}

/// Build the printer for `args`, writing to `out`. Choosing a format is this one `match`.
/// With `--where`, the printer sits behind [`Selected`]; without it nothing is in between.
pub fn make_printer(args: &OutputConfig, out: Box<dyn Write + Send>) -> Printer {
    let printer = match args.format {
        Format::Jsonl => {
            Printer::Lines(jsonl::JsonlSink::new(out).line_buffered(args.line_buffered))
        }
        Format::Table => Printer::Records(Box::new(table::TableSink::new(out, args))),
    };
    match &args.select {
        None => printer,
        Some(expr) => Printer::Records(Box::new(Selected {
            ends: Ends::new(expr),
            expr: expr.clone(),
            inner: printer.into_sink(),
        })),
    }
}

/// A printer that gets only the records a `--where` expression matches.
pub struct Selected {
    expr: Where,
    ends: Ends,
    inner: Box<dyn Sink + Send>,
}

impl Sink for Selected {
    fn record(&mut self, rec: &Record) -> io::Result<()> {
        if self.expr.matches(rec, &mut self.ends) {
            self.inner.record(rec)?;
        }
        Ok(())
    }
    fn take(&mut self, recs: &mut Vec<Record>) -> io::Result<()> {
        recs.retain(|r| self.expr.matches(r, &mut self.ends));
        self.inner.take(recs)
    }
    fn finish(&mut self) -> io::Result<()> {
        self.inner.finish()
    }
    /// The printer's own choice: an `http` or `ws` record comes only for connections whose
    /// packet records come too, so `port`/`host` always know their endpoints.
    fn wants_packets(&self) -> PacketSel {
        self.inner.wants_packets()
    }
}

/// [`make_printer`] behind the common trait.
pub fn make_sink(args: &OutputConfig, out: Box<dyn Write + Send>) -> Box<dyn Sink + Send> {
    make_printer(args, out).into_sink()
}

/// Was this error a closed pipe (`statescope ... | head`)? That counts as success.
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// A writer tests read back after the printer is done with it.
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct SharedOut(pub(crate) std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl Write for SharedOut {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
