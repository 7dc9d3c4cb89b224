//! Capture files read through a memory map: frames borrow the file's pages directly.
//!
//! Reading a large file with `read` copies every byte from the page cache into a buffer; a map
//! hands the frames over where they lie, which on the replay benchmark is most of the cost of
//! reading (see `bench/replay.sh`). Legacy pcap records are parsed here by pcap-parser's
//! `parse_pcap_frame*`, the file header and every record length checked first exactly as
//! [`super::pcap_file`] checks them. pcapng goes through [`super::pcap_file`]'s own block
//! handling with [`MappedNg`] in place of pcap-parser's buffered reader. Either way the same
//! errors come out at the same offsets as from the streaming readers.
//!
//! Memory stays flat: pages already read are released every [`RELEASE_STEP`] bytes with
//! `MADV_DONTNEED` (they stay in the page cache; only this process's mapping of them goes), so
//! the resident size follows the read position, not the file size.
//!
//! Once reading has had to wait for the disk, pages ahead of the read position are asked for
//! before they are needed ([`ReadAhead`]), so that reading waits for the disk as little as
//! `read` with the kernel's read-ahead would.
//!
//! A map shows a file as it was at open; a file another process truncates while it is being read
//! would fault, so only regular files at least [`MIN_MAPPED`] long are mapped (the work a map
//! saves only matters there), and anything that cannot be mapped is read the usual way.

use super::pcap_file::{absurd_record, damaged, legacy_header, truncated_record, u32_at};
use super::pcap_file::{is_legacy_magic, LegacyHeader, EPB_TYPE, SHB_TYPE};
use super::{CaptureError, Frame, FrameSource};
use memmap2::{Advice, Mmap, UncheckedAdvice};
use pcap_parser::pcap::{parse_pcap_frame, parse_pcap_frame_be, parse_pcap_frame_modified};
use pcap_parser::pcapng::{parse_block_be, parse_block_le};
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{Block, PcapBlockOwned, PcapError};
use std::fs::File;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Files shorter than this are read with `read`: the saving is negligible there.
pub const MIN_MAPPED: u64 = 16 << 20;
/// Bytes read between releases of the pages behind the read position. Each release is a
/// `madvise` whose TLB shootdown interrupts the run's other threads: released batch by batch
/// (1 MiB), `madvise` was 7% of a JSON-lines run's samples on the bench capture's first 1 M
/// frames (perf), mostly TLB flushes; in 4 MiB steps CPU went 1.05 -> 1.00 s (medians of 7)
/// for ~2 MiB more peak RSS (8 MiB: no faster, +5 MiB).
pub const RELEASE_STEP: usize = 4 << 20;

/// Map `file` (named `name` in errors) and read it from the map if it is a pcap or pcapng
/// file: `Ok(None)` when it is neither or cannot be mapped, so the caller reads it the usual way
/// (and reports what is wrong with it).
pub fn open(name: &str, file: &File) -> Result<Option<Box<dyn FrameSource + Send>>, CaptureError> {
    // SAFETY: the map is read-only and private; the file is a regular file. Its contents
    // changing under the map would change what is parsed (never memory safety of the parse,
    // which only reads bytes); only a truncation by another process could fault.
    let Ok(map) = (unsafe { Mmap::map(file) }) else {
        return Ok(None);
    };
    if map.len() < 4 {
        return Ok(None);
    }
    let magic = [map[0], map[1], map[2], map[3]];
    if is_legacy_magic(magic) {
        return Ok(Some(Box::new(MappedPcap::open(name, map)?)));
    }
    if u32::from_le_bytes(magic) == SHB_TYPE {
        let _ = map.advise(Advice::Sequential);
        return super::pcap_file::open_ng_mapped(name, map).map(Some);
    }
    Ok(None)
}

/// Drop this process's mapping of the pages of `map` wholly before `pos`, once there are
/// [`RELEASE_STEP`] bytes of them beyond `released`.
///
/// # Safety
/// Nothing may borrow the pages before `pos` any more.
unsafe fn release_behind(map: &Mmap, released: &mut usize, pos: usize) {
    const PAGE: usize = 4096;
    let upto = pos / PAGE * PAGE;
    if upto >= *released + RELEASE_STEP {
        // SAFETY: per this function's contract; a private read-only file mapping refills from
        // the file if touched again.
        let _ = unsafe {
            map.unchecked_advise_range(UncheckedAdvice::DontNeed, *released, upto - *released)
        };
        *released = upto;
    }
}

/// How far ahead of the read position the file is asked for, and in steps of how much.
const AHEAD_LEAD: usize = 32 << 20;
const AHEAD_STEP: usize = 8 << 20;

/// Steps asked for after the reading thread's last major fault: 128 MiB.
const AHEAD_AFTER_FAULT: u32 = 16;

/// Asks the kernel (`MADV_WILLNEED`) to start reading the pages ahead of the read position
/// that are not in the page cache, [`AHEAD_STEP`] bytes at a time, to stay [`AHEAD_LEAD`]
/// ahead, while the reading thread has waited for the disk lately (a major fault in the last
/// [`AHEAD_AFTER_FAULT`] steps). A map's own read-ahead reads only at a fault, and only where
/// the last read-ahead expected one: pages missing here and there (a page cache being trimmed,
/// or a file read for the first time) each stalled the reading thread. Measured on a capture
/// of 1 M frames (1.2 GB) dropped from the page cache: JSON lines 1.05-2.14 s -> 0.89-0.97 s.
///
/// Asking walks the step's page cache entries even when all are there (~0.13 ms a step here,
/// 2% of a JSON-lines run's CPU), so a file that has needed no disk lately is not asked for:
/// one `getrusage` a step looks. On the 12.7 GB bench capture, whose page cache here loses
/// scattered pages in half of its 8 MiB steps (`cachestat`), asking always after the first
/// fault kept major faults to 0-12 a run; asking only after recent ones leaves ~100 (each
/// waited for while tracking works through the batches queued), for 0.2 s less CPU.
/// Looking a few pages up first (`mincore`, one per MiB) found too few of those holes to
/// matter.
#[derive(Default)]
struct ReadAhead {
    /// Considered up to here.
    asked: usize,
    /// Steps since the last major fault seen, up to [`AHEAD_AFTER_FAULT`]; 0 (on) from a
    /// fault on. `None` before any.
    quiet: Option<u32>,
    /// The reading thread's major faults when last looked at (0 before: a thread starts
    /// with none, so a fault before the first look counts).
    faults: u64,
}

impl ReadAhead {
    #[inline(always)]
    fn at(&mut self, map: &Mmap, pos: usize) {
        if pos + AHEAD_LEAD > self.asked && self.asked < map.len() {
            self.step(map, major_faults);
        }
    }

    /// Whether a major fault was seen in the last [`AHEAD_AFTER_FAULT`] steps.
    fn after_fault(&self) -> bool {
        self.quiet.is_some_and(|q| q < AHEAD_AFTER_FAULT)
    }

    /// The next step: asked for if the disk has been needed lately (`faults` counts the
    /// thread's major faults so far), passed over otherwise. Whether it was asked for.
    #[cold]
    fn step(&mut self, map: &Mmap, faults: impl Fn() -> u64) -> bool {
        let len = AHEAD_STEP.min(map.len() - self.asked);
        let now = faults();
        self.quiet = if now > self.faults {
            Some(0)
        } else {
            self.quiet.map(|q| (q + 1).min(AHEAD_AFTER_FAULT))
        };
        self.faults = now;
        let ask = self.after_fault();
        if ask {
            // Advice only: a failure leaves reading as it was.
            let _ = map.advise_range(Advice::WillNeed, self.asked, len);
        }
        self.asked += len;
        ask
    }
}

/// Major faults of the calling thread so far.
#[cfg(target_os = "linux")]
fn major_faults() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) } != 0 {
        return 0;
    }
    u.ru_majflt as u64
}

/// Elsewhere: no per-thread count; read ahead always.
#[cfg(not(target_os = "linux"))]
fn major_faults() -> u64 {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    CALLS.fetch_add(1, Ordering::Relaxed)
}

/// A capture's map lent to the threads that read frames' payloads where they lie
/// ([`super::FrameSource::lend_map`]), instead of copying them out: on the replay benchmark's
/// full-payload capture the copy was the reading thread's largest cost, and most payload bytes
/// (response bodies only counted) are then never touched at all. Whoever is done with a
/// stretch of the file releases its pages ([`Lent::release`]), as the source itself does
/// otherwise, so the resident size still follows the frames in flight.
#[derive(Clone)]
pub struct Lent(Arc<Mmap>);

impl Lent {
    /// Where `bytes` lie in the map, if they do.
    pub fn range_of(&self, bytes: &[u8]) -> Option<Range<usize>> {
        let base = self.0.as_ptr() as usize;
        let at = (bytes.as_ptr() as usize).checked_sub(base)?;
        (at + bytes.len() <= self.0.len()).then(|| at..at + bytes.len())
    }

    /// The bytes at `r` (a range [`Lent::range_of`] gave).
    pub fn get(&self, r: Range<usize>) -> &[u8] {
        &self.0[r]
    }

    /// Done with everything before `to`, of which the pages from `from` on are still mapped:
    /// give those back once they are [`RELEASE_STEP`] bytes or more, as the source itself
    /// does when nothing borrows its map ([`release_behind`]), moving `from`.
    pub fn release_upto(&self, from: &mut usize, to: usize) {
        // SAFETY: as for `release`: pages of a private read-only file mapping touched again
        // after this refill from the file, so a late reader would only fault them in.
        unsafe { release_behind(&self.0, from, to) }
    }

    /// Drop this process's mapping of the pages from the one holding `r.start` up to the one
    /// holding `r.end` (that one excluded: what follows may still be read).
    pub fn release(&self, r: Range<usize>) {
        const PAGE: usize = 4096;
        let (from, to) = (r.start / PAGE * PAGE, r.end.min(self.0.len()) / PAGE * PAGE);
        if to > from {
            // SAFETY: a private read-only file mapping: pages touched again after this refill
            // from the file, with the same bytes, so a late reader would only fault them in.
            let _ = unsafe {
                self.0
                    .unchecked_advise_range(UncheckedAdvice::DontNeed, from, to - from)
            };
        }
    }
}

/// A legacy pcap file mapped into memory.
pub struct MappedPcap {
    name: String,
    map: Arc<Mmap>,
    /// The map is lent ([`Lent`]): its borrowers release pages, not this.
    lent: bool,
    head: LegacyHeader,
    /// Offset of the next record.
    pos: usize,
    /// Everything before this offset has been released.
    released: usize,
    ahead: ReadAhead,
    frames: u64,
    done: bool,
}

impl MappedPcap {
    /// Read `map` (of a file named `name` in errors, starting with a legacy pcap magic).
    fn open(name: &str, map: Mmap) -> Result<MappedPcap, CaptureError> {
        let head = legacy_header(name, &map[..map.len().min(24)])?;
        let _ = map.advise(Advice::Sequential);
        Ok(MappedPcap {
            name: name.to_string(),
            map: Arc::new(map),
            lent: false,
            head,
            pos: 24,
            released: 0,
            ahead: ReadAhead::default(),
            frames: 0,
            done: false,
        })
    }

    fn fail(&mut self, what: String) -> CaptureError {
        self.done = true;
        damaged(&self.name, self.pos as u64, what)
    }

    /// Drop this process's mapping of the pages wholly before the read position.
    fn release_behind(&mut self) {
        if self.lent {
            return;
        }
        // SAFETY: nothing borrows these pages any more: the frames handed out before the
        // current position were borrowed from `&mut self` calls that have returned.
        unsafe { release_behind(&self.map, &mut self.released, self.pos) }
    }
}

impl FrameSource for MappedPcap {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        if self.done {
            return Ok(None);
        }
        self.release_behind();
        self.ahead.at(&self.map, self.pos);
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

    fn lend_map(&mut self) -> Option<Lent> {
        self.lent = true;
        Some(Lent(self.map.clone()))
    }
}

/// A pcapng file mapped into memory, read block by block in place: pcap-parser's reader
/// interface over the map, so [`super::pcap_file`]'s handling of sections, interfaces and
/// packet blocks (and of damage) is the same for mapped and streamed files. The whole file is
/// in the map: there is never more to read, and a block cut short is a truncated file.
pub struct MappedNg {
    map: Arc<Mmap>,
    /// Set once the map is lent ([`Lent`]): its borrowers release pages, not this.
    lent: Arc<AtomicBool>,
    /// Offset of the next block.
    pos: usize,
    /// Everything before this offset has been released.
    released: usize,
    ahead: ReadAhead,
    /// Byte order of the current section (each section header says its own).
    big_endian: bool,
}

impl MappedNg {
    pub fn new(map: Mmap) -> MappedNg {
        MappedNg {
            map: Arc::new(map),
            lent: Arc::new(AtomicBool::new(false)),
            pos: 0,
            released: 0,
            ahead: ReadAhead::default(),
            big_endian: false,
        }
    }

    /// What lends the map later, once this reader is boxed away inside a
    /// [`super::pcap_file::PcapFile`].
    pub fn lender(&self) -> Lender {
        Lender {
            map: self.map.clone(),
            lent: self.lent.clone(),
        }
    }
}

/// Lends a [`MappedNg`]'s map ([`super::FrameSource::lend_map`]).
pub struct Lender {
    map: Arc<Mmap>,
    lent: Arc<AtomicBool>,
}

impl Lender {
    pub fn lend(&self) -> Lent {
        self.lent.store(true, Ordering::Relaxed);
        Lent(self.map.clone())
    }
}

/// The common block, an enhanced packet block that is whole and consistent, read without
/// pcap-parser's general block parser (which also collects the block's options, which replay
/// never reads: a third of the reading thread's time on a pcapng file). Anything else, or any
/// doubt, is `None` and goes through pcap-parser, so damage is reported as for a streamed file.
fn quick_epb(data: &[u8], big_endian: bool) -> Option<pcap_parser::EnhancedPacketBlock<'_>> {
    let head = data.get(..28)?;
    let word = |at| u32_at(head, at, big_endian);
    if word(0) != EPB_TYPE {
        return None;
    }
    let (len, caplen) = (word(4), word(20));
    let padded = caplen.checked_add(3)? & !3;
    if len % 4 != 0 || (len as usize) > data.len() || padded.checked_add(32)? > len {
        return None;
    }
    if u32_at(data, len as usize - 4, big_endian) != len {
        return None;
    }
    Some(pcap_parser::EnhancedPacketBlock {
        // As the file has it: pcap-parser reads the type little-endian.
        block_type: u32_at(head, 0, false),
        block_len1: len,
        if_id: word(8),
        ts_high: word(12),
        ts_low: word(16),
        caplen,
        origlen: word(24),
        data: &data[28..28 + padded as usize],
        options: Vec::new(),
        block_len2: len,
    })
}

impl PcapReaderIterator for MappedNg {
    fn next(&mut self) -> Result<(usize, PcapBlockOwned<'_>), PcapError<&[u8]>> {
        let data = &self.map[self.pos..];
        if data.is_empty() {
            return Err(PcapError::Eof);
        }
        if let Some(epb) = quick_epb(data, self.big_endian) {
            let len = epb.block_len1 as usize;
            return Ok((len, PcapBlockOwned::from(Block::EnhancedPacket(epb))));
        }
        let parse = if self.big_endian {
            parse_block_be
        } else {
            parse_block_le
        };
        match parse(data) {
            Ok((rest, block)) => {
                if let Block::SectionHeader(shb) = &block {
                    self.big_endian = shb.big_endian();
                }
                Ok((data.len() - rest.len(), PcapBlockOwned::from(block)))
            }
            Err(pcap_parser::nom::Err::Error(e) | pcap_parser::nom::Err::Failure(e)) => Err(e),
            Err(pcap_parser::nom::Err::Incomplete(_)) => Err(PcapError::UnexpectedEof),
        }
    }

    fn consume(&mut self, offset: usize) {
        self.pos = (self.pos + offset).min(self.map.len());
        self.ahead.at(&self.map, self.pos);
        if self.lent.load(Ordering::Relaxed) {
            return;
        }
        // SAFETY: pcap-parser's contract for `consume`: the blocks read so far (and frames
        // borrowed from them) are gone.
        unsafe { release_behind(&self.map, &mut self.released, self.pos) }
    }

    fn consume_noshift(&mut self, offset: usize) {
        self.pos = (self.pos + offset).min(self.map.len());
        self.ahead.at(&self.map, self.pos);
    }

    fn consumed(&self) -> usize {
        self.pos
    }

    fn refill(&mut self) -> Result<(), PcapError<&[u8]>> {
        Ok(())
    }

    fn position(&self) -> usize {
        0
    }

    fn grow(&mut self, _new_size: usize) -> bool {
        true
    }

    fn data(&self) -> &[u8] {
        &self.map[self.pos..]
    }

    fn reader_exhausted(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An enhanced packet block: interface 2, time (1, 2), `data`, then `options` bytes.
    fn epb(be: bool, data: &[u8], options: &[u8]) -> Vec<u8> {
        let w = |v: u32| if be { v.to_be_bytes() } else { v.to_le_bytes() };
        let padded = data.len().div_ceil(4) * 4;
        let len = (32 + padded + options.len()) as u32;
        let mut b = Vec::new();
        for v in [6, len, 2, 1, 2, data.len() as u32, 1500] {
            b.extend_from_slice(&w(v));
        }
        b.extend_from_slice(data);
        b.resize(28 + padded, 0);
        b.extend_from_slice(options);
        b.extend_from_slice(&w(len));
        b
    }

    #[test]
    fn quick_packet_blocks_read_as_pcap_parser_reads_them() {
        for be in [false, true] {
            let comment: &[u8] = if be {
                &[0, 1, 0, 2, b'h', b'i', 0, 0, 0, 0, 0, 0]
            } else {
                &[1, 0, 2, 0, b'h', b'i', 0, 0, 0, 0, 0, 0]
            };
            for (data, options) in [(&b"abcde"[..], &[][..]), (b"abcd", comment), (b"", &[])] {
                let block = epb(be, data, options);
                let quick = quick_epb(&block, be).expect("a whole packet block");
                let parsed = if be {
                    parse_block_be(&block)
                } else {
                    parse_block_le(&block)
                };
                let Ok((rest, Block::EnhancedPacket(full))) = parsed else {
                    panic!("pcap-parser rejected the block")
                };
                assert!(rest.is_empty());
                assert_eq!(
                    (quick.block_type, quick.block_len1, quick.block_len2),
                    (full.block_type, full.block_len1, full.block_len2)
                );
                assert_eq!(
                    (quick.if_id, quick.ts_high, quick.ts_low),
                    (full.if_id, full.ts_high, full.ts_low)
                );
                assert_eq!((quick.caplen, quick.origlen), (full.caplen, full.origlen));
                assert_eq!(quick.data, full.data);
                assert_eq!(quick.block_len1 as usize, block.len());
            }
            // Anything doubtful goes to pcap-parser: cut short, trailer differing, caplen past
            // the block, another block type.
            let block = epb(be, b"abcdefgh", &[]);
            assert!(quick_epb(&block[..block.len() - 1], be).is_none());
            let mut bad = block.clone();
            let n = bad.len();
            bad[n - 4..].copy_from_slice(&[0, 0, 0, 0]);
            assert!(quick_epb(&bad, be).is_none());
            let mut bad = block.clone();
            bad[20..24].copy_from_slice(&if be {
                9u32.to_be_bytes()
            } else {
                9u32.to_le_bytes()
            });
            assert!(quick_epb(&bad, be).is_none());
            let mut bad = block;
            bad[..4].copy_from_slice(&if be {
                3u32.to_be_bytes()
            } else {
                3u32.to_le_bytes()
            });
            assert!(quick_epb(&bad, be).is_none());
        }
    }

    /// Read-ahead keeps its lead over the read position, one step per frame read at most,
    /// and never asks past the end of the file (a file that is not a whole number of steps).
    #[test]
    fn read_ahead_keeps_its_lead_and_stops_at_the_end() {
        let file = tempfile::tempfile().unwrap();
        let len = 3 * AHEAD_LEAD + AHEAD_STEP / 3;
        file.set_len(len as u64).unwrap();
        // SAFETY: a private temporary file nothing else writes.
        let map = unsafe { Mmap::map(&file) }.unwrap();
        let mut ahead = ReadAhead::default();
        let mut pos = 0;
        while pos < len {
            // The frames read at each position, as many as it takes to catch up.
            for _ in 0..AHEAD_LEAD / AHEAD_STEP + 1 {
                let before = ahead.asked;
                ahead.at(&map, pos);
                assert!(ahead.asked - before <= AHEAD_STEP, "one step per frame");
            }
            assert!(
                ahead.asked <= len,
                "asked {} past the end {len}",
                ahead.asked
            );
            assert!(
                ahead.asked >= (pos + AHEAD_LEAD).min(len),
                "at {pos} asked only up to {}",
                ahead.asked
            );
            pos += AHEAD_STEP / 2 + 4096;
        }
        assert_eq!(ahead.asked, len);
    }

    /// Whether each page of `bytes` is mapped in this process (`/proc/self/pagemap`'s
    /// present bit).
    #[cfg(target_os = "linux")]
    fn mapped_pages(bytes: &[u8]) -> Vec<bool> {
        use std::io::{Read, Seek, SeekFrom};
        let first = bytes.as_ptr() as u64 / 4096;
        let mut f = File::open("/proc/self/pagemap").unwrap();
        f.seek(SeekFrom::Start(first * 8)).unwrap();
        let mut raw = vec![0u8; bytes.len().div_ceil(4096) * 8];
        f.read_exact(&mut raw).unwrap();
        raw.chunks(8)
            .map(|e| u64::from_le_bytes(e.try_into().unwrap()) >> 63 == 1)
            .collect()
    }

    /// Pages are given back in steps of [`RELEASE_STEP`], never one that is still to be read:
    /// after each call everything before `from` is unmapped and everything after stays.
    #[cfg(target_os = "linux")]
    #[test]
    fn lent_pages_go_back_in_steps() {
        let file = tempfile::tempfile().unwrap();
        let len = 3 * RELEASE_STEP + RELEASE_STEP / 2;
        file.set_len(len as u64).unwrap();
        // SAFETY: a private temporary file nothing else writes.
        let map = unsafe { Mmap::map(&file) }.unwrap();
        let touched: u64 = map.iter().step_by(4096).map(|&b| b as u64).sum();
        assert_eq!(touched, 0);
        let lent = Lent(Arc::new(map));
        let (mut from, mut calls) = (0, 0);
        let mut to = 0;
        while to < len {
            to = (to + (1 << 20) + 12_345).min(len);
            let before = from;
            lent.release_upto(&mut from, to);
            calls += usize::from(from != before);
            let pages = mapped_pages(&lent.0);
            let (gone, kept) = pages.split_at(from / 4096);
            assert!(gone.iter().all(|m| !m), "a page before {from} still mapped");
            assert!(
                kept.iter().all(|&m| m),
                "a page after {from} unmapped (read up to {to})"
            );
            assert!(
                from == before || from - before >= RELEASE_STEP,
                "a step under RELEASE_STEP"
            );
        }
        assert_eq!(calls, 3, "one release per RELEASE_STEP read");
    }

    /// Nothing is asked for while the reading thread has not waited for the disk; from a
    /// major fault on, the next [`AHEAD_AFTER_FAULT`] steps are, and again after the next fault.
    #[test]
    fn read_ahead_follows_major_faults() {
        let file = tempfile::tempfile().unwrap();
        let steps = 3 * AHEAD_AFTER_FAULT as usize;
        file.set_len((steps * AHEAD_STEP) as u64).unwrap();
        // SAFETY: a private temporary file nothing else writes.
        let map = unsafe { Mmap::map(&file) }.unwrap();
        let mut ahead = ReadAhead::default();
        // The reading thread's count: none yet.
        let faults = std::cell::Cell::new(0u64);
        let count = || faults.get();
        let mut asked = Vec::new();
        for _ in 0..3 {
            asked.push(ahead.step(&map, count));
        }
        faults.set(1);
        for _ in 0..AHEAD_AFTER_FAULT + 2 {
            asked.push(ahead.step(&map, count));
        }
        faults.set(3);
        asked.push(ahead.step(&map, count));
        let n = AHEAD_AFTER_FAULT as usize;
        let mut want = vec![false; 3];
        want.extend(std::iter::repeat_n(true, n));
        want.extend([false, false, true]);
        assert_eq!(
            asked, want,
            "off until a fault, on for the steps after it, on at the next"
        );
        assert_eq!(ahead.asked, (6 + n) * AHEAD_STEP);
    }
}
