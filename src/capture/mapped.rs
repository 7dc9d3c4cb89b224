//! Legacy pcap files read through a memory map: frames borrow the file's pages directly.
//!
//! Reading a large file with `read` copies every byte from the page cache into a buffer; a map
//! hands the frames over where they lie, which on the replay benchmark is most of the cost of
//! reading (see `bench/replay.sh`). Records are parsed by pcap-parser's `parse_pcap_frame*`,
//! the file header and every record length are checked first exactly as [`super::pcap_file`]
//! checks them, and the same errors come out at the same offsets.
//!
//! Memory stays flat: pages already read are released every [`RELEASE_STEP`] bytes with
//! `MADV_DONTNEED` (they stay in the page cache; only this process's mapping of them goes), so
//! the resident size follows the read position, not the file size.
//!
//! A map shows a file as it was at open; a file another process truncates while it is being read
//! would fault, so only regular files at least [`MIN_MAPPED`] long are mapped (the work a map
//! saves only matters there), and anything that cannot be mapped is read the usual way.

use super::pcap_file::{absurd_record, damaged, legacy_header, truncated_record, u32_at};
use super::pcap_file::{is_legacy_magic, LegacyHeader};
use super::{CaptureError, Frame, FrameSource};
use memmap2::{Advice, Mmap, UncheckedAdvice};
use pcap_parser::pcap::{parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified};
use std::fs::File;

/// Files shorter than this are read with `read`: the saving is negligible there.
pub const MIN_MAPPED: u64 = 16 << 20;
/// Bytes read between releases of the pages behind the read position.
const RELEASE_STEP: usize = 2 << 20;

/// A legacy pcap file mapped into memory.
pub struct MappedPcap {
    name: String,
    map: Mmap,
    head: LegacyHeader,
    /// Offset of the next record.
    pos: usize,
    /// Everything before this offset has been released.
    released: usize,
    frames: u64,
    done: bool,
}

impl MappedPcap {
    /// Map `file` (named `name` in errors) if it is a legacy pcap file: `Ok(None)` when it is
    /// not one or cannot be mapped, so the caller reads it the usual way.
    pub fn open(name: &str, file: &File) -> Result<Option<MappedPcap>, CaptureError> {
        // SAFETY: the map is read-only and private; the file is a regular file. Its contents
        // changing under the map would change what is parsed (never memory safety of the
        // parse, which only reads bytes); only a truncation by another process could fault.
        let Ok(map) = (unsafe { Mmap::map(file) }) else {
            return Ok(None);
        };
        if map.len() < 4 || !is_legacy_magic([map[0], map[1], map[2], map[3]]) {
            return Ok(None);
        }
        let head = legacy_header(name, &map[..map.len().min(24)])?;
        let _ = map.advise(Advice::Sequential);
        Ok(Some(MappedPcap {
            name: name.to_string(),
            map,
            head,
            pos: 24,
            released: 0,
            frames: 0,
            done: false,
        }))
    }

    fn fail(&mut self, what: String) -> CaptureError {
        self.done = true;
        damaged(&self.name, self.pos as u64, what)
    }

    /// Drop this process's mapping of the pages wholly before the read position.
    fn release_behind(&mut self) {
        const PAGE: usize = 4096;
        let upto = self.pos / PAGE * PAGE;
        if upto >= self.released + RELEASE_STEP {
            // SAFETY: nothing borrows these pages any more: the frames handed out before the
            // current position were borrowed from `&mut self` calls that have returned, and a
            // private read-only file mapping refills from the file if touched again.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    UncheckedAdvice::DontNeed,
                    self.released,
                    upto - self.released,
                )
            };
            self.released = upto;
        }
    }
}

impl FrameSource for MappedPcap {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        if self.done {
            return Ok(None);
        }
        self.release_behind();
        let h = self.head;
        let start = self.pos;
        let rest = &self.map[start..];
        if rest.is_empty() {
            self.done = true;
            return Ok(None);
        }
        let caplen = (rest.len() >= 16).then(|| u32_at(rest, 8, h.big_endian));
        if let Some(caplen) = caplen.filter(|&c| c > h.max_caplen) {
            return Err(self.fail(absurd_record(caplen, h.max_caplen)));
        }
        let parsed = match (h.record_header, h.big_endian) {
            (24, _) => parse_pcap_frame_modified(rest),
            (_, true) => parse_pcap_frame_be(rest),
            (_, false) => parse_pcap_frame(rest),
        };
        // Positions only, so the borrow of the map ends before an error needs `self`.
        let record = parsed.ok().map(|(after, b)| {
            let ts = h.timestamp(b.ts_sec, b.ts_usec);
            let at = start + h.record_header;
            (
                rest.len() - after.len(),
                at..at + b.data.len(),
                ts,
                b.origlen,
            )
        });
        let Some((len, data, ts, orig_len)) = record else {
            let left = self.map.len() - start;
            return Err(self.fail(truncated_record(left)));
        };
        self.pos = start + len;
        self.frames += 1;
        Ok(Some(Frame {
            number: self.frames,
            ts,
            linktype: h.linktype,
            data: &self.map[data],
            orig_len,
        }))
    }

    fn progress(&self) -> (u64, Option<u64>) {
        (self.pos as u64, Some(self.map.len() as u64))
    }
}
