//! The human tables: a connection summary, and per-packet timelines on request.

use super::Sink;
use crate::cli::OutputArgs;
use crate::record::{ConnRec, PacketRec, Record};
use std::io::{self, BufWriter, Write};

pub struct TableSink {
    out: BufWriter<Box<dyn Write>>,
    conns: Vec<ConnRec>,
    packets: Vec<PacketRec>,
    want_packets: bool,
}

impl TableSink {
    pub fn new(out: Box<dyn Write>, args: &OutputArgs) -> Self {
        TableSink {
            out: BufWriter::new(out),
            conns: Vec::new(),
            packets: Vec::new(),
            want_packets: args.packets || !args.conns.is_empty(),
        }
    }
}

impl Sink for TableSink {
    fn record(&mut self, rec: &Record) -> io::Result<()> {
        match rec {
            Record::Conn(c) => self.conns.push(c.clone()),
            Record::Packet(p) if self.want_packets => self.packets.push(p.clone()),
            _ => {}
        }
        Ok(())
    }
    fn finish(&mut self) -> io::Result<()> {
        self.conns.sort_by_key(|c| c.conn);
        for c in &self.conns {
            writeln!(
                self.out,
                "{:>5} {:>22} {:>22} {} {}",
                c.conn, c.client, c.server, c.client_state, c.server_state
            )?;
        }
        self.out.flush()
    }
    fn wants_packets(&self) -> bool {
        self.want_packets
    }
}
