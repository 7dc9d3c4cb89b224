//! A sink that keeps every record, for tests that run the engine themselves.
#![allow(dead_code)]

use statescope::output::Sink;
use statescope::record::Record;
use std::io;

pub struct Collect(pub Vec<Record>);

impl Sink for Collect {
    fn record(&mut self, rec: &Record) -> io::Result<()> {
        self.0.push(rec.clone());
        Ok(())
    }
    fn finish(&mut self) -> io::Result<()> {
        Ok(())
    }
}
