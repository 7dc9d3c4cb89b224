//! pcap (micro/nanosecond, either byte order) and pcapng (several sections and interfaces,
//! `if_tsresol`, `if_tsoffset`), streamed from a file or standard input with pcap-parser.
//!
//! Memory does not grow with file size: pcap-parser's circular buffer is refilled as frames are
//! consumed, and only grows when a single record is larger than it (bounded by the limits below).
//! A large regular file (pcap or pcapng) is read through a memory map instead
//! ([`super::mapped`]), with the same checks and errors.
//!
//! The file header is read and checked here, not by pcap-parser, so that a bad file gets a
//! message naming what is wrong; records are checked before they are parsed, so an absurd length
//! is reported as damage instead of a buffer allocation. Damage is reported as
//! [`CaptureError::Damaged`] with the byte offset of the record or block where it starts, and only
//! after every frame before it has been yielded. A file cut exactly at a record boundary looks
//! like a complete file: there is nothing in the format to tell them apart.
//!
//! Frame numbers count every packet record (pcapng: every enhanced, simple and obsolete packet
//! block), from 1, as Wireshark's `frame.number` does. Simple packet blocks carry no timestamp;
//! they get the previous frame's.

use super::{CaptureError, Frame, FrameSource, LinkType, Timestamp};
use pcap_parser::traits::{PcapNGPacketBlock, PcapReaderIterator};
use pcap_parser::{
    Block, LegacyPcapReader, OptionCode, PcapBlockOwned, PcapError, PcapNGReader,
    SectionHeaderBlock,
};
use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::Path;

/// The circular buffer's starting size: large enough that refills are rare.
const BUF_CAPACITY: usize = 256 << 10;
/// libpcap's and Wireshark's usual maximum packet size; records up to this are always accepted.
const STANDARD_MAX_RECORD: u32 = 262_144;
/// A legacy snaplen above this is not a real capture setting but damage.
const MAX_SNAPLEN: u32 = 16 << 20;
/// A pcapng block longer than this is damage (Wireshark's limit is of the same order).
const MAX_BLOCK: u32 = 16 << 20;

/// The first two bytes of a gzip stream (RFC 1952).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// The first four bytes of a pcapng file (a section header block's type).
pub(super) const SHB_TYPE: u32 = 0x0A0D_0D0A;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
/// An enhanced packet block's type.
pub(super) const EPB_TYPE: u32 = 6;
/// The obsolete Packet Block (pcapng type 2), which pcap-parser hands over as an unknown block.
const OBSOLETE_PB_TYPE: u32 = 2;

/// Open a capture file ("-" for standard input).
pub fn open(path: &Path) -> Result<Box<dyn FrameSource + Send>, CaptureError> {
    if path == Path::new("-") {
        // Ends at a stop signal even while the writer keeps the pipe open and quiet.
        return open_reader(
            "standard input".into(),
            Box::new(super::stop::StdinUntilStop),
            None,
        );
    }
    let name = path.display().to_string();
    let open_err = |what: String| CaptureError::Open {
        path: name.clone(),
        what,
    };
    let file = File::open(path).map_err(|e| open_err(format!("cannot open: {e}")))?;
    let meta = file
        .metadata()
        .map_err(|e| open_err(format!("cannot read file metadata: {e}")))?;
    if meta.is_dir() {
        return Err(open_err(
            "is a directory; give a .pcap or .pcapng file".into(),
        ));
    }
    let size = meta.is_file().then_some(meta.len());
    if size.is_some_and(|n| n >= super::mapped::MIN_MAPPED) {
        if let Some(mapped) = super::mapped::open(&name, &file)? {
            return Ok(mapped);
        }
    }
    open_reader(name, Box::new(file), size)
}

/// Read a capture from any byte stream; `name` is used in error messages, `size` for progress.
pub fn open_reader(
    name: String,
    mut input: Box<dyn Read + Send>,
    size: Option<u64>,
) -> Result<Box<dyn FrameSource + Send>, CaptureError> {
    let mut magic = [0u8; 4];
    let got = read_full(&mut input, &mut magic).map_err(|e| CaptureError::Open {
        path: name.clone(),
        what: format!("read error: {e}"),
    })?;
    if got == 0 {
        return Err(CaptureError::Open {
            path: name,
            what: "empty file: no capture header (was the capture stopped before it started?)"
                .into(),
        });
    }
    // gzip (`tcpdump -w - | gzip`, `.pcap.gz`): recognised by its magic bytes, not the name,
    // and read through a decompressor with the bytes already taken put back in front.
    if got >= 2 && magic[..2] == GZIP_MAGIC {
        let head = Cursor::new(magic[..got].to_vec());
        let inflated = flate2::read::MultiGzDecoder::new(head.chain(input));
        return open_reader(format!("{name} (gzip)"), Box::new(inflated), None);
    }
    if got < 4 {
        return Err(damaged(
            &name,
            0,
            format!("capture header truncated: the file is only {got} bytes long"),
        ));
    }
    let le = u32::from_le_bytes(magic);
    match le {
        _ if is_legacy_magic(magic) => open_legacy(name, magic, input, size),
        SHB_TYPE => open_ng(name, magic, input, size),
        0x34cd_b2a1 => Err(CaptureError::Open {
            path: name,
            what: "big-endian \"modified\" pcap is not supported; convert it with \
                   `editcap -F pcapng IN OUT`"
                .into(),
        }),
        _ => Err(CaptureError::Open {
            path: name,
            what: format!(
                "not a pcap or pcapng file (starts with {:02x} {:02x} {:02x} {:02x}); \
                 give a capture written by tcpdump, dumpcap or Wireshark",
                magic[0], magic[1], magic[2], magic[3]
            ),
        }),
    }
}

pub(super) fn damaged(path: &str, offset: u64, what: String) -> CaptureError {
    CaptureError::Damaged {
        path: path.to_string(),
        offset,
        what,
    }
}

/// Read until `buf` is full or the input ends; returns the number of bytes read.
fn read_full(input: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

pub(super) fn u32_at(b: &[u8], at: usize, big_endian: bool) -> u32 {
    let a = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if big_endian {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

fn u16_at(b: &[u8], at: usize, big_endian: bool) -> u16 {
    let a = [b[at], b[at + 1]];
    if big_endian {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

/// What a legacy pcap file header says, once checked.
#[derive(Debug, Clone, Copy)]
pub(super) struct LegacyHeader {
    pub linktype: LinkType,
    pub nanos: bool,
    pub big_endian: bool,
    /// 16 bytes, or 24 in the "modified" (Kuznetzov) format.
    pub record_header: usize,
    /// Longest record accepted before the file counts as damaged.
    pub max_caplen: u32,
}

impl LegacyHeader {
    /// A record's time: seconds and a fraction in micro- or nanoseconds, as the magic says.
    pub fn timestamp(&self, secs: u32, frac: u32) -> Timestamp {
        let nanos = if self.nanos {
            frac as i64
        } else {
            frac as i64 * 1000
        };
        Timestamp::from_secs_nanos(secs as i64, nanos)
    }
}

/// Is this the magic number of a legacy pcap file this reader handles?
pub(super) fn is_legacy_magic(magic: [u8; 4]) -> bool {
    matches!(
        u32::from_le_bytes(magic),
        0xa1b2_c3d4 | 0xa1b2_3c4d | 0xa1b2_cd34 | 0xd4c3_b2a1 | 0x4d3c_b2a1
    )
}

/// Check a legacy pcap file header (24 bytes, starting with a magic [`is_legacy_magic`] took).
pub(super) fn legacy_header(name: &str, head: &[u8]) -> Result<LegacyHeader, CaptureError> {
    if head.len() < 24 {
        return Err(damaged(
            name,
            0,
            format!("pcap file header truncated: {} of 24 bytes", head.len()),
        ));
    }
    let le = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let big_endian = matches!(le, 0xd4c3_b2a1 | 0x4d3c_b2a1);
    let nanos = matches!(le, 0xa1b2_3c4d | 0x4d3c_b2a1);
    let modified = le == 0xa1b2_cd34;
    let major = u16_at(head, 4, big_endian);
    if major != 2 {
        return Err(damaged(
            name,
            4,
            format!("unsupported pcap version {major} (expected 2)"),
        ));
    }
    let snaplen = u32_at(head, 16, big_endian);
    // 0 means "no limit" to libpcap, tcpdump and tshark (some writers leave it unset), so
    // records get the standard maximum, as under any smaller snaplen.
    if snaplen > MAX_SNAPLEN {
        return Err(damaged(
            name,
            16,
            format!("absurd snaplen {snaplen} (more than {MAX_SNAPLEN})"),
        ));
    }
    Ok(LegacyHeader {
        // The upper bits of the link-type field carry FCS information, not the type.
        linktype: LinkType(u32_at(head, 20, big_endian) & 0xffff),
        nanos,
        big_endian,
        record_header: if modified { 24 } else { 16 },
        max_caplen: snaplen.max(STANDARD_MAX_RECORD),
    })
}

/// A block pcap-parser rejected, in words: its own message shows a parser error kind.
fn malformed(kind: pcap_parser::nom::error::ErrorKind) -> String {
    use pcap_parser::nom::error::ErrorKind;
    let what = match kind {
        // pcap-parser's checks of a block against itself: lengths that disagree (the trailing
        // copy, or one too short for the block's type), or a field out of range.
        ErrorKind::Verify => "a block whose lengths or fields disagree",
        _ => "a malformed block or record",
    };
    format!("{what} ({kind:?} check): the file is damaged from here on")
}

/// A record longer than the header allows: the message both readers give.
pub(super) fn absurd_record(caplen: u32, max_caplen: u32) -> String {
    format!(
        "absurd record length {caplen} (the limit is {max_caplen}): the file is damaged from \
         here on"
    )
}

/// A file that ends inside a record: the message both readers give.
pub(super) fn truncated_record(left: usize) -> String {
    format!(
        "truncated: the file ends {left} bytes into the last record; every frame before it was \
         read (was the capture cut short?)"
    )
}

fn open_legacy(
    name: String,
    magic: [u8; 4],
    mut input: Box<dyn Read + Send>,
    size: Option<u64>,
) -> Result<Box<dyn FrameSource + Send>, CaptureError> {
    let mut head = [0u8; 24];
    head[..4].copy_from_slice(&magic);
    let got = 4 + read_full(&mut input, &mut head[4..]).map_err(|e| CaptureError::Open {
        path: name.clone(),
        what: format!("read error: {e}"),
    })?;
    let h = legacy_header(&name, &head[..got])?;
    let chained: Box<dyn Read + Send> = Box::new(Cursor::new(head.to_vec()).chain(input));
    let reader = LegacyPcapReader::new(BUF_CAPACITY, chained)
        .map_err(|e| damaged(&name, 0, format!("pcap file header rejected: {e}")))?;
    Ok(Box::new(PcapFile {
        name,
        reader: Box::new(reader),
        capacity: BUF_CAPACITY,
        format: Format::Legacy(h),
        pending_consume: 0,
        frames: 0,
        size,
        done: false,
        last_ts: Timestamp::default(),
        lender: None,
    }))
}

fn open_ng(
    name: String,
    magic: [u8; 4],
    mut input: Box<dyn Read + Send>,
    size: Option<u64>,
) -> Result<Box<dyn FrameSource + Send>, CaptureError> {
    let read_err = |e: io::Error| CaptureError::Open {
        path: name.clone(),
        what: format!("read error: {e}"),
    };
    let mut head = vec![0u8; 12];
    head[..4].copy_from_slice(&magic);
    let got = 4 + read_full(&mut input, &mut head[4..]).map_err(read_err)?;
    let (big_endian, len) = section_header(&name, &head[..got])?;
    head.resize(len, 0);
    let got = 12 + read_full(&mut input, &mut head[12..]).map_err(read_err)?;
    section_header_whole(&name, got, len)?;
    let capacity = BUF_CAPACITY.max(2 * len);
    let chained: Box<dyn Read + Send> = Box::new(Cursor::new(head).chain(input));
    let reader = PcapNGReader::new(capacity, chained)
        .map_err(|e| damaged(&name, 0, format!("pcapng section header rejected: {e}")))?;
    Ok(Box::new(PcapFile::ng(
        name,
        Box::new(reader),
        capacity,
        big_endian,
        size,
    )))
}

/// A pcapng file already in memory (a map of the whole file, see [`super::mapped`]): the same
/// checks and errors as [`open_ng`], with the blocks parsed where they lie.
pub(super) fn open_ng_mapped(
    name: &str,
    map: memmap2::Mmap,
) -> Result<Box<dyn FrameSource + Send>, CaptureError> {
    let (big_endian, len) = section_header(name, &map[..map.len().min(12)])?;
    section_header_whole(name, map.len(), len)?;
    let size = Some(map.len() as u64);
    let reader = super::mapped::MappedNg::new(map);
    let lender = Some(reader.lender());
    Ok(Box::new(PcapFile {
        lender,
        ..PcapFile::ng(
            name.to_string(),
            Box::new(reader),
            BUF_CAPACITY,
            big_endian,
            size,
        )
    }))
}

/// Check the first 12 bytes of a pcapng section header block (given as `head`, shorter when
/// the file is): its byte order and total length.
fn section_header(name: &str, head: &[u8]) -> Result<(bool, usize), CaptureError> {
    let got = head.len();
    if got < 12 {
        return Err(damaged(
            name,
            0,
            format!("pcapng section header truncated: the file is only {got} bytes long"),
        ));
    }
    let big_endian = match u32::from_le_bytes([head[8], head[9], head[10], head[11]]) {
        BYTE_ORDER_MAGIC => false,
        m if m.swap_bytes() == BYTE_ORDER_MAGIC => true,
        _ => {
            return Err(damaged(
                name,
                8,
                "pcapng byte-order magic is wrong: not a pcapng file, or a damaged one".into(),
            ))
        }
    };
    let len = u32_at(head, 4, big_endian);
    if len < 28 || !len.is_multiple_of(4) || len > MAX_BLOCK {
        return Err(damaged(
            name,
            4,
            format!("pcapng section header block length {len} is invalid"),
        ));
    }
    Ok((big_endian, len as usize))
}

/// The whole section header block must be there: `got` bytes of its `len`.
fn section_header_whole(name: &str, got: usize, len: usize) -> Result<(), CaptureError> {
    if got < len {
        return Err(damaged(
            name,
            0,
            format!("pcapng section header truncated: {got} of {len} bytes"),
        ));
    }
    Ok(())
}

/// Timestamp units of a pcapng interface (`if_tsresol`).
#[derive(Debug, Clone, Copy)]
enum Resolution {
    /// 10^-n seconds.
    Pow10(u32),
    /// 2^-n seconds.
    Pow2(u32),
}

impl Resolution {
    fn from_tsresol(v: u8) -> Resolution {
        if v & 0x80 == 0 {
            // Beyond 10^-19 does not fit a u64 count; such a file is nonsense, fall back to µs.
            Resolution::Pow10(if v <= 19 { v as u32 } else { 6 })
        } else {
            Resolution::Pow2(((v & 0x7f) as u32).min(63))
        }
    }

    fn to_nanos(self, ticks: u64) -> i128 {
        let t = ticks as i128;
        match self {
            Resolution::Pow10(n) if n <= 9 => t * 10i128.pow(9 - n),
            Resolution::Pow10(n) => t / 10i128.pow(n - 9),
            Resolution::Pow2(n) => (t * 1_000_000_000) >> n,
        }
    }
}

/// What a pcapng interface description tells us.
#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: LinkType,
    resolution: Resolution,
    /// `if_tsoffset`: seconds added to every timestamp.
    offset_secs: i64,
}

impl Interface {
    fn timestamp(&self, high: u32, low: u32) -> Timestamp {
        let ticks = ((high as u64) << 32) | low as u64;
        let ns = self.resolution.to_nanos(ticks) + self.offset_secs as i128 * 1_000_000_000;
        Timestamp(ns.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
    }
}

enum Format {
    Legacy(LegacyHeader),
    Ng {
        /// Byte order of the current section.
        big_endian: bool,
        /// Interfaces of the current section, by interface id.
        interfaces: Vec<Interface>,
    },
}

/// A pcap or pcapng file being read.
struct PcapFile {
    name: String,
    reader: Box<dyn PcapReaderIterator + Send>,
    /// Current size of the reader's buffer.
    capacity: usize,
    format: Format,
    /// Bytes of the frame handed out last, consumed on the next call (the frame borrows them).
    pending_consume: usize,
    frames: u64,
    size: Option<u64>,
    /// Set at the end of input or after an error: the source is finished.
    done: bool,
    last_ts: Timestamp,
    /// A mapped pcapng file's map, to lend ([`FrameSource::lend_map`]).
    lender: Option<super::mapped::Lender>,
}

/// What one step of the reader found, with no borrow of the buffer left in it.
enum Step {
    /// A block that is not a frame (headers, statistics, ...): skip `n` bytes.
    Skip(usize),
    Frame {
        size: usize,
        start: usize,
        len: usize,
        ts: Timestamp,
        linktype: LinkType,
        orig_len: u32,
    },
    Refill,
    TooSmall,
    End,
    Truncated,
    Fail(String),
}

impl PcapFile {
    fn ng(
        name: String,
        reader: Box<dyn PcapReaderIterator + Send>,
        capacity: usize,
        big_endian: bool,
        size: Option<u64>,
    ) -> PcapFile {
        PcapFile {
            name,
            reader,
            capacity,
            format: Format::Ng {
                big_endian,
                interfaces: Vec::new(),
            },
            pending_consume: 0,
            frames: 0,
            size,
            done: false,
            last_ts: Timestamp::default(),
            lender: None,
        }
    }

    fn offset(&self) -> u64 {
        self.reader.consumed() as u64
    }

    fn fail(&mut self, what: String) -> CaptureError {
        self.done = true;
        damaged(&self.name, self.offset(), what)
    }

    /// Look at the next record's header before pcap-parser does: reject absurd lengths and make
    /// sure the buffer can hold the record.
    fn check_next(&mut self) -> Result<(), CaptureError> {
        if self.reader.consumed() == 0 && matches!(self.format, Format::Legacy(_)) {
            return Ok(()); // the file header comes first; it was checked when opening
        }
        let data = self.reader.data();
        let need = match &self.format {
            Format::Legacy(h) => {
                if data.len() < 16 {
                    return Ok(());
                }
                let caplen = u32_at(data, 8, h.big_endian);
                if caplen > h.max_caplen {
                    let what = absurd_record(caplen, h.max_caplen);
                    return Err(self.fail(what));
                }
                h.record_header + caplen as usize
            }
            Format::Ng { big_endian, .. } => {
                if data.len() < 8 {
                    return Ok(());
                }
                let mut be = *big_endian;
                if u32_at(data, 0, false) == SHB_TYPE {
                    // A new section may switch byte order: its own magic says which.
                    if data.len() < 12 {
                        return Ok(());
                    }
                    be = u32_at(data, 8, false) != BYTE_ORDER_MAGIC;
                }
                let len = u32_at(data, 4, be);
                if len < 12 || !len.is_multiple_of(4) || len > MAX_BLOCK {
                    let what = format!(
                        "invalid pcapng block length {len}: the file is damaged from here on"
                    );
                    return Err(self.fail(what));
                }
                // An enhanced packet block whose captured length overruns the block would
                // otherwise look to pcap-parser like a block still arriving.
                if u32_at(data, 0, be) == EPB_TYPE && data.len() >= 24 {
                    let caplen = u32_at(data, 20, be);
                    if caplen as u64 + 32 > len as u64 {
                        let what = format!(
                            "packet block claims {caplen} captured bytes but is only {len} bytes \
                             long: the file is damaged from here on"
                        );
                        return Err(self.fail(what));
                    }
                }
                len as usize
            }
        };
        if need * 2 > self.capacity {
            self.capacity = need * 2;
            self.reader.grow(self.capacity);
        }
        Ok(())
    }

    fn step(&mut self) -> Step {
        let base = self.reader.data().as_ptr() as usize;
        let (size, block) = match self.reader.next() {
            Ok(x) => x,
            Err(PcapError::Eof) => return Step::End,
            Err(PcapError::Incomplete(_)) => return Step::Refill,
            Err(PcapError::UnexpectedEof) => return Step::Truncated,
            Err(PcapError::BufferTooSmall) => return Step::TooSmall,
            Err(PcapError::ReadError) => return Step::Fail("read error".into()),
            Err(PcapError::NomError(_, kind)) => return Step::Fail(malformed(kind)),
            Err(e) => return Step::Fail(format!("malformed record or block ({e})")),
        };
        let frame = |data: &[u8], ts, linktype, orig_len| Step::Frame {
            size,
            start: data.as_ptr() as usize - base,
            len: data.len(),
            ts,
            linktype,
            orig_len,
        };
        match (&mut self.format, block) {
            (Format::Legacy(h), PcapBlockOwned::Legacy(b)) => frame(
                b.data,
                h.timestamp(b.ts_sec, b.ts_usec),
                h.linktype,
                b.origlen,
            ),
            (_, PcapBlockOwned::LegacyHeader(_)) => Step::Skip(size),
            (
                Format::Ng {
                    big_endian,
                    interfaces,
                },
                PcapBlockOwned::NG(block),
            ) => match block {
                Block::SectionHeader(shb) => {
                    *big_endian = SectionHeaderBlock::big_endian(&shb);
                    interfaces.clear();
                    Step::Skip(size)
                }
                Block::InterfaceDescription(idb) => {
                    let mut offset_secs = 0;
                    for opt in &idb.options {
                        if opt.code == OptionCode::IfTsoffset && opt.value.len() >= 8 {
                            let b: [u8; 8] = opt.value[..8].try_into().unwrap_or_default();
                            offset_secs = if *big_endian {
                                i64::from_be_bytes(b)
                            } else {
                                i64::from_le_bytes(b)
                            };
                        }
                    }
                    interfaces.push(Interface {
                        linktype: LinkType(idb.linktype.0 as u32 & 0xffff),
                        resolution: Resolution::from_tsresol(idb.if_tsresol),
                        offset_secs,
                    });
                    Step::Skip(size)
                }
                Block::EnhancedPacket(epb) => match interfaces.get(epb.if_id as usize) {
                    Some(ifc) => {
                        let ts = ifc.timestamp(epb.ts_high, epb.ts_low);
                        frame(epb.packet_data(), ts, ifc.linktype, epb.origlen)
                    }
                    None => Step::Fail(format!(
                        "packet block names interface {} but the section describes {}",
                        epb.if_id,
                        interfaces.len()
                    )),
                },
                Block::SimplePacket(spb) => match interfaces.first() {
                    Some(ifc) => frame(spb.packet_data(), self.last_ts, ifc.linktype, spb.origlen),
                    None => {
                        Step::Fail("simple packet block before any interface description".into())
                    }
                },
                Block::Unknown(ub)
                    if ub.block_type == OBSOLETE_PB_TYPE
                        || ub.block_type == OBSOLETE_PB_TYPE.swap_bytes() =>
                {
                    // Obsolete Packet Block: if_id u16, drops u16, ts high, ts low, caplen,
                    // origlen, then the data.
                    let d = ub.data;
                    if d.len() < 20 {
                        return Step::Fail("obsolete packet block too short".into());
                    }
                    let be = *big_endian;
                    let if_id = u16_at(d, 0, be) as usize;
                    let caplen = u32_at(d, 12, be) as usize;
                    let Some(ifc) = interfaces.get(if_id) else {
                        return Step::Fail(format!(
                            "packet block names interface {if_id} but the section describes {}",
                            interfaces.len()
                        ));
                    };
                    if caplen > d.len() - 20 {
                        return Step::Fail(format!(
                            "packet block claims {caplen} captured bytes but holds {}",
                            d.len() - 20
                        ));
                    }
                    let ts = ifc.timestamp(u32_at(d, 4, be), u32_at(d, 8, be));
                    frame(&d[20..20 + caplen], ts, ifc.linktype, u32_at(d, 16, be))
                }
                _ => Step::Skip(size),
            },
            _ => Step::Fail("record does not match the file format".into()),
        }
    }
}

impl FrameSource for PcapFile {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        if self.done {
            return Ok(None);
        }
        if self.pending_consume > 0 {
            self.reader.consume(self.pending_consume);
            self.pending_consume = 0;
        }
        loop {
            self.check_next()?;
            match self.step() {
                Step::Skip(n) => self.reader.consume(n),
                Step::Frame {
                    size,
                    start,
                    len,
                    ts,
                    linktype,
                    orig_len,
                } => {
                    self.pending_consume = size;
                    self.frames += 1;
                    self.last_ts = ts;
                    return Ok(Some(Frame {
                        number: self.frames,
                        ts,
                        linktype,
                        data: &self.reader.data()[start..start + len],
                        orig_len,
                    }));
                }
                Step::Refill => {
                    if self.reader.refill().is_err() {
                        return Err(self.fail("read error".into()));
                    }
                }
                Step::TooSmall => {
                    // check_next sized the buffer for any record it accepted; only an
                    // unrecognised layout ends up here.
                    if self.capacity >= 4 * MAX_BLOCK as usize {
                        return Err(self.fail("record larger than any valid one".into()));
                    }
                    self.capacity *= 2;
                    self.reader.grow(self.capacity);
                }
                Step::End => {
                    self.done = true;
                    return Ok(None);
                }
                Step::Truncated => {
                    let left = self.reader.data().len();
                    // A stop signal ends standard input wherever it was, maybe within a
                    // record: the frames before it are all there.
                    if left == 0 || super::stop::stop_requested() {
                        self.done = true;
                        return Ok(None);
                    }
                    return Err(self.fail(truncated_record(left)));
                }
                Step::Fail(what) => return Err(self.fail(what)),
            }
        }
    }

    fn lend_map(&mut self) -> Option<super::mapped::Lent> {
        self.lender.as_ref().map(|l| l.lend())
    }

    fn progress(&self) -> (u64, Option<u64>) {
        (self.offset() + self.pending_consume as u64, self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_resolutions() {
        assert_eq!(
            Resolution::from_tsresol(6).to_nanos(1_500_000),
            1_500_000_000
        );
        assert_eq!(Resolution::from_tsresol(9).to_nanos(7), 7);
        assert_eq!(Resolution::from_tsresol(12).to_nanos(7_000), 7);
        assert_eq!(
            Resolution::from_tsresol(0x80 | 10).to_nanos(1024),
            1_000_000_000
        );
        // nonsense resolutions fall back to microseconds instead of overflowing
        assert_eq!(Resolution::from_tsresol(40).to_nanos(1), 1_000);
        let ifc = Interface {
            linktype: LinkType::ETHERNET,
            resolution: Resolution::Pow10(9),
            offset_secs: -10,
        };
        assert_eq!(ifc.timestamp(0, 2_500_000_000), Timestamp(-7_500_000_000));
        assert_eq!(
            ifc.timestamp(1, 0),
            Timestamp((1i64 << 32) - 10_000_000_000)
        );
        assert_eq!(ifc.timestamp(u32::MAX, u32::MAX).0, i64::MAX);
    }
}
