//! The whole engine — connection tracking, reassembly, HTTP, WebSocket and the JSON-lines
//! printer — over a capture made from the input: no panic, no hang, no runaway allocation.
//!
//! The first byte chooses the mode:
//! * bit 0 clear: the rest is a capture file (pcap or pcapng), read as `replay` reads one;
//! * bit 0 set: the rest is a script of TCP segments on four IPv4 connections between two hosts
//!   (raw-IP frames), so that the fuzzer reaches tracking and HTTP without first finding valid
//!   IP and TCP headers. Each segment is 8 bytes, then its payload:
//!   - byte 0: bits 0-1 the connection, bit 2 the direction (server to client when set),
//!     bits 3-5 a canned payload put first (HTTP request, WebSocket upgrade, `101`, `200` with
//!     a length, chunked `200`, masked and unmasked WebSocket frames), bits 6-7 unused;
//!   - byte 1: the TCP flags;
//!   - bytes 2-3: the sequence number relative to what that direction sent so far (i16, so
//!     retransmissions, overlaps and gaps);
//!   - byte 4: the acknowledgment relative to what the other side sent (i8); byte 5: the window
//!     in units of 256 bytes;
//!   - byte 6: milliseconds since the previous segment (capture time: idle timeouts happen);
//!   - byte 7: how many of the following input bytes are the rest of the payload.
//!
//! The other bits of the first byte pick the options: bit 1 a tiny reassembly cap, bit 2 a
//! one-second idle timeout, bit 3 the table (summary) printer instead of JSON lines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statescope::capture::memory::MemorySource;
use statescope::capture::pcap_file::open_reader;
use statescope::capture::{FrameSource, LinkType, Timestamp};
use statescope::config::{Format, OutputConfig};
use statescope::engine::{run_source, Engine, EngineOptions};
use statescope::output::make_sink;

const CANNED: [&[u8]; 8] = [
    b"",
    b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbKBOo0=\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n",
    // Masked text "hello" (zero mask), as a client sends.
    &[0x81, 0x85, 0, 0, 0, 0, b'h', b'e', b'l', b'l', b'o'],
    // Unmasked text "hello", then a close, as a server sends.
    &[0x81, 0x05, b'h', b'e', b'l', b'l', b'o', 0x88, 0x00],
];

/// Raw-IP frames (link type 101) from the segment script.
fn script_frames(mut rest: &[u8]) -> Vec<(Timestamp, LinkType, Vec<u8>)> {
    // Next sequence number per connection and direction, from fixed initial numbers.
    let mut next = [[1000u32, 0xffff_ff00]; 4];
    let mut ts: i64 = 1_700_000_000_000_000_000;
    let mut frames = Vec::new();
    while rest.len() >= 8 {
        let (op, tail) = rest.split_at(8);
        let extra = (op[7] as usize).min(tail.len());
        let (more, tail) = tail.split_at(extra);
        rest = tail;

        let conn = (op[0] & 3) as usize;
        let dir = ((op[0] >> 2) & 1) as usize;
        let flags = op[1];
        let seq = next[conn][dir].wrapping_add(i16::from_le_bytes([op[2], op[3]]) as i32 as u32);
        let ack = next[conn][1 - dir].wrapping_add(op[4] as i8 as i32 as u32);
        let window = (op[5] as u16) << 8 | 0xff;
        ts += op[6] as i64 * 1_000_000;
        let mut payload = CANNED[((op[0] >> 3) & 7) as usize].to_vec();
        payload.extend_from_slice(more);
        let syn_fin = u32::from(flags & 0x02 != 0) + u32::from(flags & 0x01 != 0);
        next[conn][dir] = seq.wrapping_add(payload.len() as u32 + syn_fin);

        let (client, server) = ([10, 0, 0, 1], [10, 0, 0, 2]);
        let (src, dst) = if dir == 0 { (client, server) } else { (server, client) };
        let cport = 40000 + conn as u16;
        let (sport, dport) = if dir == 0 { (cport, 80) } else { (80, cport) };
        let total = 40 + payload.len();
        let mut f = Vec::with_capacity(total);
        f.extend_from_slice(&[0x45, 0]);
        f.extend_from_slice(&(total as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&ack.to_be_bytes());
        f.extend_from_slice(&[5 << 4, flags]);
        f.extend_from_slice(&window.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0]);
        f.extend_from_slice(&payload);
        frames.push((Timestamp(ts), LinkType(101), f));
    }
    frames
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut out = OutputConfig {
        format: if mode & 8 == 0 {
            Format::Jsonl
        } else {
            Format::Table
        },
        ..OutputConfig::default()
    };
    if mode & 2 != 0 {
        out.reassembly_cap = 64;
    }
    if mode & 4 != 0 {
        out.idle_timeout_ns = 1_000_000_000;
    }
    let mut sink = make_sink(&out, Box::new(std::io::sink()));
    let mut engine = Engine::new(EngineOptions::from_config(&out, sink.wants_packets()));
    let mut source: Box<dyn FrameSource> = if mode & 1 == 0 {
        let input = Box::new(std::io::Cursor::new(rest.to_vec()));
        match open_reader("fuzz".into(), input, None) {
            Ok(s) => s,
            Err(_) => return,
        }
    } else {
        Box::new(MemorySource::new(script_frames(rest)))
    };
    let _ = run_source(source.as_mut(), &mut engine, sink.as_mut());
});
