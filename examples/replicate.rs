//! Scale a real capture up for benchmarks: write COPIES back-to-back copies of a pcap whose
//! IPv4 addresses are remapped per copy (copy k uses 10.(k%AREAS).x.y) and whose timestamps are
//! shifted so copies follow one another. Copies AREAS apart reuse the same 4-tuples, so the
//! result has heavy port reuse, like a long-running busy server.
//!
//! Usage: cargo run --release --example replicate -- IN.pcap OUT.pcap COPIES [AREAS]
//! Only Ethernet/IPv4 pcap (what tcpdump -i lo writes) is remapped; other frames are copied.

use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapError};
use std::fs::File;
use std::io::{BufWriter, Write};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: replicate IN.pcap OUT.pcap COPIES [AREAS]");
        std::process::exit(2);
    }
    let copies: u32 = args[3].parse()?;
    let areas: u32 = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(16);
    // Read the whole input once (it is the small base capture).
    let mut frames: Vec<(u32, u32, u32, Vec<u8>)> = Vec::new();
    let mut linktype = 1u32;
    let mut snaplen = 65535u32;
    let mut reader = LegacyPcapReader::new(1 << 20, File::open(&args[1])?)?;
    loop {
        match reader.next() {
            Ok((off, block)) => {
                match block {
                    PcapBlockOwned::LegacyHeader(h) => {
                        linktype = h.network.0 as u32;
                        snaplen = h.snaplen;
                    }
                    PcapBlockOwned::Legacy(b) => {
                        frames.push((b.ts_sec, b.ts_usec, b.origlen, b.data.to_vec()))
                    }
                    _ => {}
                }
                reader.consume(off);
            }
            Err(PcapError::Eof) => break,
            Err(PcapError::Incomplete(_)) => reader.refill().map_err(|e| format!("{e:?}"))?,
            Err(e) => return Err(format!("{e:?}").into()),
        }
    }
    let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
        return Err("empty input".into());
    };
    let span = (last.0 - first.0) + 1;
    let mut out = BufWriter::with_capacity(1 << 20, File::create(&args[2])?);
    out.write_all(&0xa1b2c3d4u32.to_le_bytes())?;
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&0i32.to_le_bytes())?;
    out.write_all(&0u32.to_le_bytes())?;
    out.write_all(&snaplen.to_le_bytes())?;
    out.write_all(&linktype.to_le_bytes())?;
    let mut buf = Vec::new();
    for k in 0..copies {
        let area = k % areas;
        for (sec, usec, orig, data) in &frames {
            buf.clear();
            buf.extend_from_slice(data);
            // Ethernet + IPv4: rewrite both addresses' first two octets.
            if linktype == 1 && buf.len() >= 34 && buf[12] == 0x08 && buf[13] == 0x00 {
                for off in [26usize, 30] {
                    buf[off] = 10;
                    buf[off + 1] = area as u8;
                }
            }
            let sec = sec + k * span;
            out.write_all(&sec.to_le_bytes())?;
            out.write_all(&usec.to_le_bytes())?;
            out.write_all(&(buf.len() as u32).to_le_bytes())?;
            out.write_all(&orig.to_le_bytes())?;
            out.write_all(&buf)?;
        }
    }
    out.flush()?;
    eprintln!(
        "{} frames x {copies} copies = {} frames",
        frames.len(),
        frames.len() as u64 * copies as u64
    );
    Ok(())
}
