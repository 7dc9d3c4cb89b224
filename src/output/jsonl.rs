//! `--format jsonl`: one JSON object per line, exactly the records of `docs/records.md`.
//!
//! Each line is a flat object tagged with `"type"` (`packet`, `conn`, `http`, `ws`, `lab`).
//! Optional fields are omitted when absent. Nothing else is written to standard output.
//!
//! serde's derive on [`Record`] defines the text. The lines made per segment, per HTTP message
//! and per connection are written by hand here for speed, and must be byte for byte what
//! serde_json writes: `tests/jsonl.rs` checks that on every line of `tests/golden/`, and the
//! tests below on every optional field and on text that needs escaping.

use super::Sink;
use crate::record::{Addr, ConnRec, Dir, HttpRec, Name, PacketRec, Record};
use std::borrow::Cow;
use std::io::{self, Write};

/// Lines are built straight into one block buffer that is written out when full: no copy of
/// each line from a line buffer into a writer's buffer.
pub struct JsonlSink {
    out: Box<dyn Write + Send>,
    block: Vec<u8>,
    flush_each: bool,
    lines: Lines,
}

/// Bytes gathered before a write.
const BLOCK: usize = 1 << 16;

impl JsonlSink {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        JsonlSink {
            out,
            block: Vec::with_capacity(BLOCK + 1024),
            flush_each: false,
            lines: Lines::default(),
        }
    }

    /// Flush after every record (live capture), instead of in 64 KiB blocks.
    pub fn line_buffered(mut self, on: bool) -> Self {
        self.flush_each = on;
        self
    }

    fn write_block(&mut self) -> io::Result<()> {
        self.out.write_all(&self.block)?;
        self.block.clear();
        Ok(())
    }

    /// Write the block when it is full, or at once when line-buffered.
    fn written(&mut self) -> io::Result<()> {
        if self.flush_each {
            self.write_block()?;
            self.out.flush()?;
        } else if self.block.len() >= BLOCK {
            self.write_block()?;
        }
        Ok(())
    }
}

/// The text of records, a line each: what [`JsonlSink`] prints, and what another thread can
/// make for it ([`JsonlSink::write_formatted`]). Each line depends only on its record.
#[derive(Default)]
pub struct Lines {
    endpoints: Endpoints,
    statics: Statics,
}

impl Lines {
    /// Append the line for `rec`.
    pub fn format(&mut self, rec: &Record, b: &mut Vec<u8>) -> io::Result<()> {
        let start = b.len();
        // The hot paths, a line per segment and per HTTP message, have their own writers.
        let written = match rec {
            Record::Packet(p) => write_packet(b, p, &mut self.endpoints, &mut self.statics),
            Record::Http(h) => write_http(b, h, &mut self.statics),
            Record::Conn(c) => write_conn(b, c, &mut self.statics),
            _ => serde_json::to_writer(&mut *b, rec)
                .map(|()| b.push(b'\n'))
                .map_err(io::Error::other),
        };
        if written.is_err() {
            // Nothing of a record that could not be written.
            b.truncate(start);
        }
        written
    }
}

impl Sink for JsonlSink {
    fn record(&mut self, rec: &Record) -> io::Result<()> {
        self.lines.format(rec, &mut self.block)?;
        self.written()
    }
    fn finish(&mut self) -> io::Result<()> {
        self.write_block()?;
        self.out.flush()
    }
}

impl JsonlSink {
    /// Print lines that a [`Lines`] made elsewhere, in their place among the records.
    pub fn write_formatted(&mut self, text: &[u8]) -> io::Result<()> {
        if text.len() >= BLOCK {
            // A whole batch's lines: straight out, without a copy into the block, after what
            // the block holds (copying the batch behind it was 1% of a JSON-lines run's
            // instructions on the full-payload capture's `Connection: close` phase).
            if !self.block.is_empty() {
                self.write_block()?;
            }
            self.out.write_all(text)?;
            if self.flush_each {
                self.out.flush()?;
            }
            return Ok(());
        }
        self.block.extend_from_slice(text);
        self.written()
    }
}

impl Drop for JsonlSink {
    /// Dropped without `finish` (a run that stopped on an error): what was printed so far
    /// still reaches the output.
    fn drop(&mut self) {
        let _ = self.write_block().and_then(|()| self.out.flush());
    }
}

/// Room a short write may use past the end of the text.
const ROOM: usize = 64;

/// Append a short run of bytes with fixed-size moves: two overlapping copies of the largest
/// power of two not above its length cover it. `extend_from_slice` of a length known only at
/// run time is a call into libc's memcpy: a dozen calls per line, for numbers and names.
#[inline(always)]
fn put_bytes(b: &mut Vec<u8>, s: &[u8]) {
    let n = s.len();
    if n > ROOM {
        b.extend_from_slice(s);
        return;
    }
    b.reserve(ROOM);
    let at = b.len();
    let src = s.as_ptr();
    // SAFETY: `reserve` left at least ROOM >= n bytes of capacity after `at`, so every write
    // below lands inside the allocation; every read is inside `s` (each pair of copies starts
    // at 0 and ends at n, and is taken only when n is at least the copy's size). The first n
    // bytes after `at` are all written before `set_len` makes them part of the vector.
    unsafe {
        let dst = b.as_mut_ptr().add(at);
        if n >= 32 {
            copy::<32>(src, dst);
            copy::<32>(src.add(n - 32), dst.add(n - 32));
        } else if n >= 16 {
            copy::<16>(src, dst);
            copy::<16>(src.add(n - 16), dst.add(n - 16));
        } else if n >= 8 {
            copy::<8>(src, dst);
            copy::<8>(src.add(n - 8), dst.add(n - 8));
        } else if n >= 4 {
            copy::<4>(src, dst);
            copy::<4>(src.add(n - 4), dst.add(n - 4));
        } else {
            for i in 0..n {
                *dst.add(i) = *src.add(i);
            }
        }
        b.set_len(at + n);
    }
}

/// Copy N bytes between unaligned places.
///
/// # Safety
/// `src` must be readable and `dst` writable for N bytes.
#[inline(always)]
unsafe fn copy<const N: usize>(src: *const u8, dst: *mut u8) {
    // SAFETY: the caller's promise; unaligned reads and writes of a byte array need no more.
    unsafe {
        std::ptr::write_unaligned(
            dst.cast::<[u8; N]>(),
            std::ptr::read_unaligned(src.cast::<[u8; N]>()),
        )
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Whether none of eight bytes needs escaping in JSON or is outside printable ASCII (serde_json
/// escapes control characters, `"` and `\\`; DEL and non-ASCII go the careful way too). Each
/// test is exact: a byte below the bound, or equal to the character, is the only way its lane's
/// high bit can survive.
#[inline(always)]
fn word_plain(x: u64) -> bool {
    let zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let control = x.wrapping_sub(0x20 * ONES) & !x & HIGHS;
    let quote = zero(x ^ (b'"' as u64 * ONES));
    let backslash = zero(x ^ (b'\\' as u64 * ONES));
    // 0x7f and up: the byte's own high bit, or the one adding 1 sets (a carry into a lane comes
    // only from a 0xff lane, which is caught itself).
    let high = (x | x.wrapping_add(ONES)) & HIGHS;
    control | quote | backslash | high == 0
}

/// Whether `s` can be written between quotes as it is: eight bytes at a time, the last word
/// overlapping the one before (testing a byte twice changes nothing). Most strings here are
/// names of under 16 bytes, where a byte loop or the vectorised one the compiler makes cost more
/// than the writing.
#[inline(always)]
fn plain(s: &[u8]) -> bool {
    let n = s.len();
    let word = |i: usize| u64::from_le_bytes(s[i..i + 8].try_into().unwrap_or([0; 8]));
    if n >= 8 {
        let mut ok = true;
        let mut i = 0;
        while i + 8 < n {
            ok &= word_plain(word(i));
            i += 8;
        }
        ok & word_plain(word(n - 8))
    } else if n >= 4 {
        let half = |i: usize| u32::from_le_bytes(s[i..i + 4].try_into().unwrap_or([0; 4])) as u64;
        word_plain(half(0) | half(n - 4) << 32)
    } else if n > 0 {
        // Bytes 0, n/2 and n-1 cover every byte of one to three, padded with a plain 'a'.
        let (a, b, c) = (s[0] as u64, s[n / 2] as u64, s[n - 1] as u64);
        word_plain(a | b << 8 | c << 16 | 0x6161_6161_6100_0000)
    } else {
        true
    }
}

/// A string value: names and addresses need no escaping, but check rather than assume.
#[inline(always)]
fn put_str(b: &mut Vec<u8>, s: &str) -> io::Result<()> {
    if plain(s.as_bytes()) {
        b.push(b'"');
        put_bytes(b, s.as_bytes());
        b.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(&mut *b, s).map_err(io::Error::other)
    }
}

/// A key and a string value.
#[inline(always)]
fn put_key_str(b: &mut Vec<u8>, key: &[u8], s: &str) -> io::Result<()> {
    b.extend_from_slice(key);
    put_str(b, s)
}

/// Inlined, so each constant key is copied with fixed-size moves rather than a call.
#[inline(always)]
fn put_uint(b: &mut Vec<u8>, key: &[u8], v: u64) {
    b.extend_from_slice(key);
    put_digits(b, v);
}

/// How many decimal digits `v` has (1 for 0).
#[inline(always)]
fn digit_count(v: u64) -> usize {
    // Digits of the largest power of two not above v, then one more if v reaches the next
    // power of ten: log10(2) ~ 1233/4096 is exact enough for every bit length up to 64.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    let guess = (bits * 1233) >> 12; // at most 19, for 64 bits
    const TENS: [u64; 20] = {
        let mut t = [1u64; 20];
        let mut i = 1;
        while i < 20 {
            t[i] = t[i - 1] * 10;
            i += 1;
        }
        t
    };
    // `v | 1`: zero has one digit, like one (no even number is one below a power of ten).
    guess + ((v | 1) >= TENS[guess]) as usize
}

/// `x` (below 10^8) as eight ASCII digits, the first in the lowest byte, leading zeros kept:
/// SWAR, both halves of each split at once in the lanes of one word (four-digit halves in
/// 32-bit lanes, then two-digit quarters in 16-bit lanes, then digits in bytes), a dozen
/// multiplies and masks for what a loop of divisions by 100 did in ~60 instructions.
/// Quotients by multiply and shift: `q * 5243 >> 19` is `q / 100` below 43 699 and
/// `q * 103 >> 10` is `q / 10` below 179 (both checked for every value a lane holds, in
/// the tests); no lane's product reaches the next lane.
#[inline(always)]
fn eight_digits(x: u32) -> u64 {
    let v = (x / 10_000) as u64 | ((x % 10_000) as u64) << 32;
    let hundreds = ((v * 5243) >> 19) & 0x0000_007f_0000_007f;
    pair_digits(hundreds | (v - hundreds * 100) << 16)
}

/// Two-digit numbers in the 16-bit lanes of `v` as their digits, tens in the lower byte of
/// each lane: the last step of [`eight_digits`], and all of it a four-digit number needs.
#[inline(always)]
fn pair_digits(v: u64) -> u64 {
    let tens = ((v * 103) >> 10) & 0x000f_000f_000f_000f;
    tens | (v - tens * 10) << 8
}

const ZEROS: u64 = 0x3030_3030_3030_3030;

/// Store the last `n` (1 to 8) of the eight digits in `d` ([`eight_digits`]) at `at`, as
/// ASCII: one 8-byte store, whose bytes past the `n` are left for what follows to overwrite.
///
/// # Safety
/// `at` must be writable for 8 bytes.
#[inline(always)]
unsafe fn store_last(at: *mut u8, d: u64, n: usize) {
    // SAFETY: the caller's promise.
    unsafe { std::ptr::write_unaligned(at.cast::<u64>(), ((d | ZEROS) >> (64 - 8 * n)).to_le()) }
}

/// `v` in decimal, as itoa writes it, written straight into `b` eight digits at a time
/// ([`eight_digits`]). Two digits at a time, from a table of pairs, took ~60 instructions for
/// the ten-digit raw sequence numbers and times that every packet line has several of.
#[inline(always)]
fn put_digits(b: &mut Vec<u8>, v: u64) {
    if v < 10 {
        b.push(b'0' + v as u8);
        return;
    }
    let n = digit_count(v);
    b.reserve(24);
    let at = b.len();
    // SAFETY: `reserve` left room for 24 bytes after `at`. The stores end at most 8 bytes past
    // `at` (the first) or at `at + n` (the others, n <= 20), and together they write each of
    // the n bytes after `at` before `set_len` makes them part of the vector.
    unsafe {
        let p = b.as_mut_ptr().add(at);
        if n <= 4 {
            // Lengths, windows, connection numbers: the last step of [`eight_digits`] only,
            // in the upper half, where `store_last` takes the last digits from.
            let x = v as u32;
            let pairs = (x / 100) as u64 | ((x % 100) as u64) << 16;
            store_last(p, pair_digits(pairs) << 32, n);
        } else if n <= 8 {
            store_last(p, eight_digits(v as u32), n);
        } else if n <= 16 {
            let (hi, lo) = (v / 100_000_000, v % 100_000_000);
            store_last(p, eight_digits(hi as u32), n - 8);
            store_last(p.add(n - 8), eight_digits(lo as u32), 8);
        } else {
            let (hi, rest) = (v / 10_000_000_000_000_000, v % 10_000_000_000_000_000);
            let (mid, lo) = (rest / 100_000_000, rest % 100_000_000);
            store_last(p, eight_digits(hi as u32), n - 16);
            store_last(p.add(n - 16), eight_digits(mid as u32), 8);
            store_last(p.add(n - 8), eight_digits(lo as u32), 8);
        }
        b.set_len(at + n);
    }
}

/// A number as serde_json writes it: the shortest form that reads back the same (zmij, as
/// serde_json uses), `null` when not finite. Times are whole microseconds in most captures
/// ([`crate::types::Timestamp::as_secs_f64`]); those take a shorter way to the same text.
#[inline(always)]
fn put_f64(b: &mut Vec<u8>, v: f64) {
    if let Some(us) = whole_micros(v) {
        put_micros(b, us);
    } else if let Some(d) = few_micros(v) {
        b.push(b'0' + d);
        b.extend_from_slice(b"e-6");
    } else if v.is_finite() {
        put_bytes(b, zmij::Buffer::new().format_finite(v).as_bytes());
    } else {
        b.extend_from_slice(b"null");
    }
}

/// `v` as a count of microseconds `n`, when `n / 1e6` is `v` and `n` written with six
/// decimals, trailing zeros dropped, is the shortest text that reads back as `v` (what zmij
/// writes). Both hold from 10 µs to 2^32 s: there `n < 2^53`, so `n as f64 / 1e6` is one
/// correctly rounded division, the very rounding that reading the text back does; and floats
/// lie less than 1 µs apart, so no other text with at most six decimals (any shorter one has
/// at most six) reads back as `v`. Below 10 µs zmij writes `1e-6` ([`few_micros`]). Round-trip times are
/// whole microseconds too: a difference of whole microseconds in nanoseconds, over 1e9, is
/// the same real number as the microseconds over 1e6, so the same float.
#[inline(always)]
fn whole_micros(v: f64) -> Option<u64> {
    whole_micros_below(v, 4_294_967_296.0)
}

/// [`whole_micros`] up to `top`; its tests try a `top` too high, where it must go wrong.
#[inline(always)]
fn whole_micros_below(v: f64, top: f64) -> Option<u64> {
    if !(1e-5..top).contains(&v) {
        return None;
    }
    // Rounds to the nearest count; a count that does not give `v` back falls to zmij.
    let n = (v * 1e6 + 0.5) as u64;
    (n as f64 / 1e6 == v).then_some(n)
}

/// `v` as a count of microseconds from 1 to 9, when that count over 1e6 is `v`: zmij writes
/// those `1e-6` to `9e-6` (one digit is the shortest text, and no other one-digit text reads
/// back as `v`). Round-trip times on loopback are mostly that short: 41% of the packet lines of
/// the full-payload bench capture's head carried one, each a zmij call of ~300 instructions.
#[inline(always)]
fn few_micros(v: f64) -> Option<u8> {
    if !(0.5e-6..1e-5).contains(&v) {
        return None;
    }
    // 10 µs rounds to 10 and is left to zmij (1e-5 is not in the range anyway).
    let n = (v * 1e6 + 0.5) as u64;
    (n < 10 && n as f64 / 1e6 == v).then_some(n as u8)
}

/// A count of microseconds as seconds: `1795826522.970841`, `1795826522.5`, `1795826522.0`.
#[inline(always)]
fn put_micros(b: &mut Vec<u8>, us: u64) {
    let (secs, frac) = (us / 1_000_000, (us % 1_000_000) as u32);
    put_digits(b, secs);
    if frac == 0 {
        b.extend_from_slice(b".0");
        return;
    }
    // Six decimals less the trailing zeros: the eight digits of `frac` ([`eight_digits`]) less
    // its two leading zeros, whose top zero bytes are the trailing zero digits.
    let six = eight_digits(frac) >> 16;
    let len = 8 - six.leading_zeros() as usize / 8;
    b.reserve(9);
    let at = b.len();
    // SAFETY: room for 9 bytes after `at` was reserved: the point and one 8-byte store, of
    // which the `len` <= 6 digits are kept by `set_len`.
    unsafe {
        let dot = b.as_mut_ptr().add(at);
        *dot = b'.';
        std::ptr::write_unaligned(dot.add(1).cast::<u64>(), (six | ZEROS).to_le());
        b.set_len(at + 1 + len);
    }
}

fn put_names<S: AsRef<str>>(b: &mut Vec<u8>, key: &[u8], names: &[S]) -> io::Result<()> {
    b.extend_from_slice(key);
    b.push(b'[');
    for (i, n) in names.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        put_str(b, n.as_ref())?;
    }
    b.push(b']');
    Ok(())
}

/// A `packet` record, byte for byte what serde_json writes for `Record::Packet` (see the
/// module doc for the tests that hold it to that), without serde's per-key escaping and small
/// writes.
fn write_packet(
    b: &mut Vec<u8>,
    p: &PacketRec,
    endpoints: &mut Endpoints,
    statics: &mut Statics,
) -> io::Result<()> {
    let json = |b: &mut Vec<u8>, v: &dyn erased::Ser| v.ser(b);
    // A typical line is under 400 bytes: grow once here, not in each small write.
    b.reserve(512);
    put_uint(b, b"{\"type\":\"packet\",\"frame\":", p.frame);
    b.extend_from_slice(b",\"ts\":");
    statics.ts(b, p.ts);
    endpoints.put(b, p)?;
    statics.names(b, b",\"flags\":", &p.flags)?;
    put_uint(b, b",\"seq\":", p.seq as u64);
    if let Some(a) = p.ack {
        put_uint(b, b",\"ack\":", a as u64);
    }
    put_uint(b, b",\"seq_raw\":", p.seq_raw as u64);
    if let Some(a) = p.ack_raw {
        put_uint(b, b",\"ack_raw\":", a as u64);
    }
    put_uint(b, b",\"len\":", p.len as u64);
    put_uint(b, b",\"win\":", p.win);
    if p.analysis.is_empty() {
        b.extend_from_slice(b",\"analysis\":[]");
    } else {
        put_names(b, b",\"analysis\":", &p.analysis)?;
    }
    if !p.why.is_empty() {
        b.extend_from_slice(b",\"why\":");
        json(b, &p.why)?;
    }
    if let Some(l) = &p.likely {
        b.extend_from_slice(b",\"likely\":");
        json(b, l)?;
    }
    if let Some(v) = p.dup_ack_num {
        put_uint(b, b",\"dup_ack_num\":", v as u64);
    }
    if let Some(v) = p.dup_ack_frame {
        put_uint(b, b",\"dup_ack_frame\":", v);
    }
    if let Some(v) = p.bytes_in_flight {
        put_uint(b, b",\"bytes_in_flight\":", v as u64);
    }
    if let Some(v) = p.ack_rtt {
        b.extend_from_slice(b",\"ack_rtt\":");
        put_f64(b, v);
    }
    if let Some(v) = p.acks_frame {
        put_uint(b, b",\"acks_frame\":", v);
    }
    statics.name(b, b",\"client_state\":", &p.client_state)?;
    statics.name(b, b",\"server_state\":", &p.server_state)?;
    b.extend_from_slice(b"}\n");
    Ok(())
}

/// `,"conn":…,"dir":…,"src":…,"dst":…` of a packet line.
fn write_endpoints(b: &mut Vec<u8>, p: &PacketRec) -> io::Result<()> {
    put_uint(b, b",\"conn\":", p.conn);
    put_key_str(b, b",\"dir\":", p.dir.as_str())?;
    b.extend_from_slice(b",\"src\":");
    put_addr(b, p.src)?;
    b.extend_from_slice(b",\"dst\":");
    put_addr(b, p.dst)
}

/// An endpoint as a string, as [`Addr::text`] writes it, without making a `String` for IPv4.
fn put_addr(b: &mut Vec<u8>, a: Addr) -> io::Result<()> {
    match a.v4_text() {
        Some(t) => {
            b.push(b'"');
            put_bytes(b, t.as_bytes());
            b.push(b'"');
            Ok(())
        }
        None => put_str(b, &a.text()),
    }
}

/// The text of names and lists of names that live for the whole run (flags, states: borrowed
/// from tables the engine makes once), rendered once with their key: the same place holds the
/// same text for good, so its address names it. Direct-mapped; a collision renders again.
/// It also keeps the last time written ([`Statics::ts`]).
struct Statics {
    slots: Vec<Memo>,
    /// The last time written and its text: a message's `http` line has the time of the
    /// `packet` line before it (and segments of one batch of packets often share one).
    ts: (u64, Vec<u8>),
}

#[derive(Default)]
struct Memo {
    /// Address and length of what was rendered, and the key it went with; 0 for empty.
    at: usize,
    len: usize,
    key: usize,
    json: Vec<u8>,
}

const STATIC_SLOTS: usize = 256;

impl Default for Statics {
    fn default() -> Self {
        Statics {
            slots: (0..STATIC_SLOTS).map(|_| Memo::default()).collect(),
            // NaN's bits with a payload no arithmetic makes: never a time seen.
            ts: (f64::NAN.to_bits() | 0x5a5a, b"null".to_vec()),
        }
    }
}

impl Statics {
    /// Print `key` and what lives at `at` (`len` long) from the memo, rendering it with
    /// `render` first when the memo does not hold it.
    #[inline(always)]
    fn memo(
        &mut self,
        b: &mut Vec<u8>,
        (at, len): (usize, usize),
        key: &'static [u8],
        render: impl FnOnce(&mut Vec<u8>) -> io::Result<()>,
    ) -> io::Result<()> {
        let k = key.as_ptr() as usize;
        let m = &mut self.slots[(at >> 3 ^ at >> 9 ^ k >> 4) & (STATIC_SLOTS - 1)];
        if !(m.at == at && m.len == len && m.key == k) {
            // Empty until rendered whole: a failed render leaves nothing to find.
            m.at = 0;
            m.json.clear();
            m.json.extend_from_slice(key);
            render(&mut m.json)?;
            (m.at, m.len, m.key) = (at, len, k);
        }
        put_bytes(b, &m.json);
        Ok(())
    }

    /// A time ([`put_f64`]), from the text of the last one when it is the same.
    #[inline(always)]
    fn ts(&mut self, b: &mut Vec<u8>, v: f64) {
        let (bits, text) = &mut self.ts;
        if v.to_bits() != *bits {
            text.clear();
            put_f64(text, v);
            *bits = v.to_bits();
        }
        put_bytes(b, text);
    }

    /// `key` and a list of names: from the memo when borrowed for the whole run (a table
    /// made once), written out when owned.
    #[inline(always)]
    // The `Cow` itself, not its slice: whether it is borrowed for the whole run decides.
    #[allow(clippy::ptr_arg)]
    fn names(
        &mut self,
        b: &mut Vec<u8>,
        key: &'static [u8],
        names: &Cow<'static, [Name]>,
    ) -> io::Result<()> {
        match names {
            Cow::Borrowed(names) => self.list(b, key, names),
            Cow::Owned(names) => put_names(b, key, names),
        }
    }

    /// `key` and a list of names that is never freed nor changed.
    fn list(
        &mut self,
        b: &mut Vec<u8>,
        key: &'static [u8],
        names: &'static [Name],
    ) -> io::Result<()> {
        let place = (names.as_ptr() as usize, names.len());
        self.memo(b, place, key, |m| put_names(m, b"", names))
    }

    /// `key` and a name: remembered when it is borrowed for the whole run.
    #[inline(always)]
    fn name(&mut self, b: &mut Vec<u8>, key: &'static [u8], name: &Name) -> io::Result<()> {
        let Cow::Borrowed(s) = name else {
            return put_key_str(b, key, name);
        };
        self.memo(b, (s.as_ptr() as usize, s.len()), key, |m| put_str(m, s))
    }
}

/// The endpoint part of recent connections' packet lines, per direction, rendered once: the
/// same connection and direction with the same addresses give the same text.
///
/// Direct-mapped by connection and direction: no hashing, and a collision only means
/// rendering again.
struct Endpoints {
    slots: Vec<Rendered>,
}

#[derive(Default)]
struct Rendered {
    /// `conn * 2 + dir + 1`; 0 for an empty slot.
    key: u64,
    addrs: (Addr, Addr),
    json: Vec<u8>,
}

/// Slots (a power of two), two per connection: when more connections are active at once, some
/// lines are only rendered again.
const ENDPOINT_SLOTS: usize = 1 << 13;

impl Default for Endpoints {
    fn default() -> Self {
        Endpoints {
            slots: (0..ENDPOINT_SLOTS).map(|_| Rendered::default()).collect(),
        }
    }
}

impl Endpoints {
    fn key(conn: u64, dir: Dir) -> u64 {
        conn.wrapping_mul(2)
            .wrapping_add(dir.idx() as u64)
            .wrapping_add(1)
    }

    fn slot(&mut self, key: u64) -> &mut Rendered {
        &mut self.slots[key as usize & (ENDPOINT_SLOTS - 1)]
    }

    fn put(&mut self, b: &mut Vec<u8>, p: &PacketRec) -> io::Result<()> {
        let key = Self::key(p.conn, p.dir);
        let r = self.slot(key);
        if r.key == key && r.addrs == (p.src, p.dst) {
            put_bytes(b, &r.json);
            return Ok(());
        }
        let start = b.len();
        write_endpoints(b, p)?;
        r.key = key;
        r.addrs = (p.src, p.dst);
        r.json.clear();
        r.json.extend_from_slice(&b[start..]);
        Ok(())
    }
}

/// An `http` record, byte for byte what serde_json writes for `Record::Http`.
fn write_http(b: &mut Vec<u8>, h: &HttpRec, statics: &mut Statics) -> io::Result<()> {
    put_uint(b, b"{\"type\":\"http\",\"conn\":", h.conn);
    b.extend_from_slice(b",\"dir\":");
    put_str(b, h.dir.as_str())?;
    put_uint(b, b",\"frame\":", h.frame);
    if let Some(ts) = h.ts {
        b.extend_from_slice(b",\"ts\":");
        statics.ts(b, ts);
    }
    if let Some(m) = &h.method {
        b.extend_from_slice(b",\"method\":");
        put_str(b, m)?;
    }
    if let Some(u) = &h.uri {
        b.extend_from_slice(b",\"uri\":");
        put_str(b, u)?;
    }
    b.extend_from_slice(b",\"version\":");
    put_str(b, &h.version)?;
    if let Some(v) = h.status {
        put_uint(b, b",\"status\":", v as u64);
    }
    if let Some(r) = &h.reason {
        b.extend_from_slice(b",\"reason\":");
        put_str(b, r)?;
    }
    if let Some(v) = h.content_length {
        put_uint(b, b",\"content_length\":", v);
    }
    put_uint(b, b",\"body_len\":", h.body_len);
    if let Some(u) = &h.upgrade {
        b.extend_from_slice(b",\"upgrade\":");
        put_str(b, u)?;
    }
    if h.chunked {
        b.extend_from_slice(b",\"chunked\":true");
    }
    if let Some(v) = h.request_frame {
        put_uint(b, b",\"request_frame\":", v);
    }
    if !h.carries.is_empty() {
        statics.names(b, b",\"carries\":", &h.carries)?;
    }
    if let Some(v) = h.end_frame {
        put_uint(b, b",\"end_frame\":", v);
    }
    if h.unpaired {
        b.extend_from_slice(b",\"unpaired\":true");
    }
    if let Some(v) = h.stream {
        put_uint(b, b",\"stream\":", v as u64);
    }
    if let Some(a) = &h.authority {
        put_key_str(b, b",\"authority\":", a)?;
    }
    if h.undecodable {
        b.extend_from_slice(b",\"undecodable\":true");
    }
    if h.reset {
        b.extend_from_slice(b",\"reset\":true");
    }
    if h.tls {
        b.extend_from_slice(b",\"tls\":true");
    }
    b.extend_from_slice(b"}\n");
    Ok(())
}

/// A `conn` record, byte for byte what serde_json writes for `Record::Conn`.
fn write_conn(b: &mut Vec<u8>, c: &ConnRec, statics: &mut Statics) -> io::Result<()> {
    b.reserve(512);
    put_uint(b, b"{\"type\":\"conn\",\"conn\":", c.conn);
    put_key_str(b, b",\"client\":", &c.client)?;
    put_key_str(b, b",\"server\":", &c.server)?;
    b.extend_from_slice(b",\"first_ts\":");
    put_f64(b, c.first_ts);
    b.extend_from_slice(b",\"last_ts\":");
    put_f64(b, c.last_ts);
    put_uint(b, b",\"packets_c2s\":", c.packets_c2s);
    put_uint(b, b",\"packets_s2c\":", c.packets_s2c);
    put_uint(b, b",\"bytes_c2s\":", c.bytes_c2s);
    put_uint(b, b",\"bytes_s2c\":", c.bytes_s2c);
    statics.name(b, b",\"client_state\":", &c.client_state)?;
    statics.name(b, b",\"server_state\":", &c.server_state)?;
    statics.name(b, b",\"conn_state\":", &c.conn_state)?;
    put_key_str(b, b",\"history\":", &c.history)?;
    put_uint(b, b",\"http_requests\":", c.http_requests);
    put_uint(b, b",\"http_responses\":", c.http_responses);
    if let Some(v) = c.initial_rtt {
        b.extend_from_slice(b",\"initial_rtt\":");
        put_f64(b, v);
    }
    if !c.analysis_counts.is_empty() {
        b.extend_from_slice(b",\"analysis_counts\":{");
        for (i, (name, n)) in c.analysis_counts.iter().enumerate() {
            if i > 0 {
                b.push(b',');
            }
            put_str(b, name)?;
            put_uint(b, b":", *n);
        }
        b.push(b'}');
    }
    if !c.transitions.is_empty() {
        b.extend_from_slice(b",\"transitions\":[");
        for (i, t) in c.transitions.iter().enumerate() {
            if i > 0 {
                b.push(b',');
            }
            put_uint(b, b"{\"frame\":", t.frame);
            statics.name(b, b",\"endpoint\":", &t.endpoint)?;
            statics.name(b, b",\"state\":", &t.state)?;
            if let Some(why) = &t.inferred {
                statics.name(b, b",\"inferred\":", why)?;
            }
            b.push(b'}');
        }
        b.push(b']');
    }
    if c.gap_bytes != 0 {
        put_uint(b, b",\"gap_bytes\":", c.gap_bytes);
    }
    if let Some(why) = &c.evicted {
        put_key_str(b, b",\"evicted\":", why)?;
    }
    if c.ws_frames != 0 {
        put_uint(b, b",\"ws_frames\":", c.ws_frames);
    }
    if !c.diagnostics.is_empty() {
        put_names(b, b",\"diagnostics\":", &c.diagnostics)?;
    }
    if !c.encap.is_empty() {
        put_names(b, b",\"encap\":", &c.encap)?;
    }
    if c.resumed {
        b.extend_from_slice(b",\"resumed\":true");
    }
    if let Some(h2) = &c.h2 {
        b.extend_from_slice(b",\"h2\":");
        serde_json::to_writer(&mut *b, h2).map_err(io::Error::other)?;
    }
    b.extend_from_slice(b"}\n");
    Ok(())
}

/// Values written through serde_json (floats and free text), behind one object-safe call.
mod erased {
    use std::io;
    pub trait Ser {
        fn ser(&self, b: &mut Vec<u8>) -> io::Result<()>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn ser(&self, b: &mut Vec<u8>) -> io::Result<()> {
            serde_json::to_writer(b, self).map_err(io::Error::other)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Dir;
    use std::collections::BTreeMap;

    /// The fast writer and serde agree on every optional field, present or absent.
    #[test]
    fn packet_fast_path_equals_serde() {
        let mut why = BTreeMap::new();
        why.insert(
            "dup_ack".to_string(),
            "a \"quoted\" reason\nwith a newline".to_string(),
        );
        let full = PacketRec {
            frame: 7,
            ts: 1795826522.9708412,
            conn: 3,
            dir: Dir::S2c,
            src: "[2001:db8::1]:443".parse().unwrap(),
            dst: "192.0.2.1:5".parse().unwrap(),
            flags: vec!["SYN".into(), "ACK".into()].into(),
            seq: 0,
            ack: Some(1),
            seq_raw: u32::MAX,
            ack_raw: Some(2),
            len: 0,
            win: 65160 << 7,
            analysis: vec!["dup_ack".into(), "window_update".into()],
            why,
            likely: Some("x".into()),
            dup_ack_num: Some(2),
            dup_ack_frame: Some(5),
            bytes_in_flight: Some(1448),
            ack_rtt: Some(0.000031),
            acks_frame: Some(3),
            client_state: "ESTABLISHED".into(),
            server_state: "SYN_RECEIVED".into(),
        };
        for p in [
            full.clone(),
            PacketRec {
                why: BTreeMap::new(),
                likely: None,
                ack: None,
                ack_raw: None,
                dup_ack_num: None,
                dup_ack_frame: None,
                bytes_in_flight: None,
                ack_rtt: None,
                acks_frame: None,
                analysis: vec![],
                ..full.clone()
            },
        ] {
            assert_fast_equals_serde(Record::Packet(p));
        }
        // Numbers written without serde: every kind of float, and strings that need escapes.
        for (ts, rtt) in [
            (f64::NAN, f64::INFINITY),
            (0.0, -0.0),
            (1e21, 1.5e-7),
            (f64::MAX, f64::MIN_POSITIVE),
        ] {
            let p = PacketRec {
                ts,
                ack_rtt: Some(rtt),
                src: "[fe80::1]:0".parse().unwrap(),
                dst: "255.255.255.255:65535".parse().unwrap(),
                ..full.clone()
            };
            assert_fast_equals_serde(Record::Packet(p));
        }
    }

    /// The fast writer and serde agree on every optional field of a `conn` record.
    #[test]
    fn conn_fast_path_equals_serde() {
        use crate::record::{ConnRec, Transition};
        let full = ConnRec {
            conn: 9,
            client: "10.0.0.2:40000".into(),
            server: "[2001:db8::1]:80".into(),
            first_ts: 1795826522.9708412,
            last_ts: 1795826523.5,
            packets_c2s: 5,
            packets_s2c: 4,
            bytes_c2s: 70,
            bytes_s2c: 3002,
            client_state: "TIME_WAIT".into(),
            server_state: "CLOSED".into(),
            conn_state: "SF".into(),
            history: "ShADadFf".into(),
            http_requests: 1,
            http_responses: 1,
            initial_rtt: Some(0.000031),
            analysis_counts: [("dup_ack".into(), 2), ("window_update".into(), 1)].into(),
            transitions: vec![
                Transition {
                    frame: 1,
                    endpoint: "client".into(),
                    state: "SYN_SENT".into(),
                    inferred: None,
                },
                Transition {
                    frame: 2,
                    endpoint: "server".into(),
                    state: "SYN_RECEIVED".into(),
                    inferred: Some("shown by the \"SYN-ACK\"".into()),
                },
            ],
            gap_bytes: 10,
            evicted: Some("memory".into()),
            ws_frames: 3,
            diagnostics: vec!["a \"quoted\"\nproblem".into(), "second".into()],
            encap: vec!["vxlan vni=42".into(), "ipv4 10.0.0.1>10.0.0.2".into()],
            resumed: true,
            h2: Some(Box::new(crate::record::H2Summary {
                start: "upgrade".into(),
                frames: [5, 7],
                streams: 3,
                streams_reset: 1,
                hpack_size: [Some(120), None],
                hpack_entries: [Some(3), None],
                hpack_max: [4096, 4096],
                header_blocks: [3, 2],
                undecodable_blocks: [0, 2],
                conn_window: Some([65535, -3]),
            })),
        };
        for c in [
            full.clone(),
            ConnRec {
                initial_rtt: None,
                analysis_counts: Default::default(),
                transitions: vec![],
                gap_bytes: 0,
                evicted: None,
                ws_frames: 0,
                diagnostics: vec![],
                encap: vec![],
                resumed: false,
                h2: None,
                history: "odd \u{1}".into(),
                first_ts: f64::NAN,
                ..full
            },
        ] {
            assert_fast_equals_serde(Record::Conn(c));
        }
    }

    /// Every length's edges: powers of ten and one below, zero, the largest u64.
    #[test]
    fn digits_at_every_edge_write_as_itoa_does() {
        let mut edges = vec![0, 1, 9, u64::MAX, u64::MAX - 1];
        let mut p = 10u64;
        loop {
            edges.extend([p - 1, p, p + 1]);
            match p.checked_mul(10) {
                Some(q) => p = q,
                None => break,
            }
        }
        edges.extend((0..64).map(|i| 1u64 << i).flat_map(|x| [x - 1, x, x + 1]));
        for v in edges {
            let mut b = Vec::new();
            put_digits(&mut b, v);
            assert_eq!(b, itoa::Buffer::new().format(v).as_bytes(), "{v}");
            assert_eq!(digit_count(v), b.len(), "{v}");
        }
    }

    /// The quotients by multiply and shift hold for every value a lane of [`eight_digits`]
    /// holds, and the lanes do not mix: each half and each quarter swept with the others fixed
    /// gives every digit where it belongs.
    #[test]
    fn eight_digits_split_exactly() {
        assert!(divides_exactly(5243, 19, 100, 10_000));
        assert!(divides_exactly(103, 10, 10, 100));
        let text = |x: u32| (eight_digits(x) | ZEROS).to_le_bytes();
        for i in 0..10_000u32 {
            for x in [
                i,
                i * 10_000,
                i * 10_000 + (i * 7919) % 10_000,
                99_999_999 - i,
            ] {
                assert_eq!(&text(x), format!("{x:08}").as_bytes(), "{x}");
            }
        }
    }

    /// Whether `q * mul >> shift` is `q / div` for every `q` below `below`.
    fn divides_exactly(mul: u64, shift: u32, div: u64, below: u64) -> bool {
        (0..below).all(|q| (q * mul) >> shift == q / div)
    }

    /// Control: the check above fails for a constant one off, for /100 and for /10.
    #[test]
    fn control_a_wrong_divisor_constant_is_caught() {
        assert!(!divides_exactly(5242, 19, 100, 10_000));
        assert!(!divides_exactly(102, 10, 10, 100));
    }

    /// Every whole number of microseconds under a second (round-trip times), as zmij writes it.
    #[test]
    fn sub_second_micros_write_as_zmij_does() {
        let mut want = zmij::Buffer::new();
        let mut fast = Vec::new();
        for us in 0..1_000_000u64 {
            let v = us as f64 / 1e6;
            fast.clear();
            put_f64(&mut fast, v);
            assert_eq!(
                std::str::from_utf8(&fast).unwrap(),
                want.format_finite(v),
                "{us} us"
            );
        }
    }

    /// Names and lists rendered once per place and key print what serde prints for every
    /// record: the same name under two keys, lists of one length from different tables,
    /// lists that are not borrowed, names that need escaping, slots shared by many names.
    #[test]
    fn statics_rendered_once_follow_the_records() {
        let table: &'static [Vec<Name>] = Box::leak(
            crate::record::name_subsets(&["SYN", "ACK", "FIN", "RST"]).into_boxed_slice(),
        );
        let other: &'static [Vec<Name>] =
            Box::leak(crate::record::name_subsets(&["PSH", "URG", "A\"B"]).into_boxed_slice());
        let states: Vec<&'static str> = (0..600)
            .map(|i| &*Box::leak(format!("S{i}\\").into_boxed_str()))
            .chain(["ESTABLISHED", "TIME_WAIT", "q\"uote"])
            .collect();
        let mut sink = JsonlSink::new(Box::new(io::sink()));
        for i in 0..3000usize {
            let flags: Cow<'static, [Name]> = match i % 5 {
                0 => Cow::Owned(vec!["ACK".into(), format!("X{i}").into()]),
                1 | 2 => Cow::Borrowed(&table[i % table.len()][..]),
                _ => Cow::Borrowed(&other[i % other.len()][..]),
            };
            let client = states[i * 7 % states.len()];
            let server = if i % 3 == 0 {
                client
            } else {
                states[i * 13 % states.len()]
            };
            let p = PacketRec {
                frame: i as u64,
                ts: 1795826522.0 + i as f64 / 7.0,
                conn: (i % 11) as u64,
                flags,
                client_state: Cow::Borrowed(client),
                server_state: if i % 4 == 0 {
                    Cow::Owned(server.to_string())
                } else {
                    Cow::Borrowed(server)
                },
                ..PacketRec::default()
            };
            sink.record(&Record::Packet(p.clone())).unwrap();
            let line = std::mem::take(&mut sink.block);
            let mut slow = serde_json::to_vec(&Record::Packet(p)).unwrap();
            slow.push(b'\n');
            assert_eq!(
                String::from_utf8(line).unwrap(),
                String::from_utf8(slow).unwrap(),
                "record {i}"
            );
        }
    }

    /// Lines made elsewhere come out in their place among the records printed here, whether
    /// the block holds lines before them or not, and whether they are a whole batch (written
    /// straight out) or a few (gathered in the block).
    #[test]
    fn formatted_lines_keep_their_place() {
        let packet = |frame: u64| {
            Record::Packet(PacketRec {
                frame,
                ..PacketRec::default()
            })
        };
        let out = super::super::SharedOut::default();
        let mut sink = JsonlSink::new(Box::new(out.clone()));
        let mut lines = Lines::default();
        let mut want = Vec::new();
        let mut frame = 0;
        // Here, a whole batch elsewhere, here, a few elsewhere, a whole batch on an empty block.
        for (elsewhere, n) in [(false, 3), (true, 600), (false, 2), (true, 2), (true, 600)] {
            let mut text = Vec::new();
            for _ in 0..n {
                frame += 1;
                let rec = packet(frame);
                lines.format(&rec, &mut want).unwrap();
                if elsewhere {
                    lines.format(&rec, &mut text).unwrap();
                } else {
                    sink.record(&rec).unwrap();
                }
            }
            if elsewhere {
                assert_eq!(text.len() >= BLOCK, n == 600, "batch sizes as meant");
                sink.write_formatted(&text).unwrap();
            }
        }
        sink.finish().unwrap();
        let got = out.0.lock().unwrap().clone();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            String::from_utf8(want).unwrap()
        );
    }

    /// The last time's text, and carried lists rendered once, follow the records: packet and
    /// http lines through one sink with times repeated, changed, negative zero, not finite
    /// and not whole microseconds, and carried lists borrowed, owned and empty.
    #[test]
    fn repeated_times_and_carried_lists_follow_the_records() {
        let times = [
            1795826522.970841,
            1795826522.970841,
            1795826522.5,
            0.0,
            -0.0,
            -0.0,
            f64::NAN,
            1795826522.0000001,
            1795826522.970841,
            f64::INFINITY,
            3e-6,
        ];
        let mut sink = JsonlSink::new(Box::new(io::sink()));
        for (i, &ts) in times.iter().cycle().take(60).enumerate() {
            let carries = match i % 4 {
                0 => crate::record::carried_names(
                    &crate::http::parser::CARRIED,
                    [true, i % 3 == 0, false],
                )
                .into(),
                1 => Cow::Owned(vec!["Host".into(), format!("X{i}").into()]),
                2 => Cow::Borrowed(&[][..]),
                _ => Cow::Owned(vec![]),
            };
            let recs = [
                Record::Packet(PacketRec {
                    frame: i as u64,
                    ts,
                    ..PacketRec::default()
                }),
                Record::Http(Box::new(HttpRec {
                    frame: i as u64,
                    ts: (i % 5 != 0).then_some(if i % 7 == 0 { ts + 1.0 } else { ts }),
                    carries,
                    ..HttpRec::default()
                })),
            ];
            for rec in recs {
                sink.record(&rec).unwrap();
                let line = std::mem::take(&mut sink.block);
                let mut slow = serde_json::to_vec(&rec).unwrap();
                slow.push(b'\n');
                assert_eq!(
                    String::from_utf8(line).unwrap(),
                    String::from_utf8(slow).unwrap(),
                    "record {i}"
                );
            }
        }
    }

    /// A memo is found only by the same place, length and key: a name and its own prefix
    /// (same place), one name under two keys that share a slot.
    #[test]
    fn statics_tell_prefixes_and_keys_apart() {
        let name: &'static str = "ESTABLISHED";
        // Two keys 16 x STATIC_SLOTS bytes apart in one buffer share a slot.
        let mut buf = vec![b' '; 16 * STATIC_SLOTS + 8];
        buf[..6].copy_from_slice(b",\"kA\":");
        buf[16 * STATIC_SLOTS..16 * STATIC_SLOTS + 6].copy_from_slice(b",\"kB\":");
        let buf: &'static [u8] = Box::leak(buf.into_boxed_slice());
        let (k0, k1) = (&buf[..6], &buf[16 * STATIC_SLOTS..16 * STATIC_SLOTS + 6]);
        let mut statics = Statics::default();
        let mut text = |key: &'static [u8], s: &'static str| {
            let mut b = Vec::new();
            statics.name(&mut b, key, &Cow::Borrowed(s)).unwrap();
            String::from_utf8(b).unwrap()
        };
        let k0s = std::str::from_utf8(k0).unwrap();
        let k1s = std::str::from_utf8(k1).unwrap();
        assert_eq!(text(k0, name), format!("{k0s}\"ESTABLISHED\""));
        assert_eq!(text(k0, &name[..3]), format!("{k0s}\"EST\""));
        assert_eq!(text(k1, &name[..3]), format!("{k1s}\"EST\""));
        assert_eq!(text(k0, &name[..3]), format!("{k0s}\"EST\""));
    }

    /// Control: the same shortcut taken up to 1e16 s writes text zmij does not for some whole
    /// microseconds past 2^33 s, where floats lie 1.9 µs apart. The bound of 2^32 s is what keeps it right.
    #[test]
    fn control_whole_micros_too_high_goes_wrong() {
        let wrong = (0..100_000u64)
            .map(|k| (8_600_000_000_000_000 + k) as f64 / 1e6)
            .filter(|&v| {
                whole_micros_below(v, 1e16).is_some_and(|us| {
                    let mut fast = Vec::new();
                    put_micros(&mut fast, us);
                    fast != zmij::Buffer::new().format_finite(v).as_bytes()
                })
            })
            .count();
        assert!(wrong > 0, "the control found no wrong time");
        // And the real bound takes none of them.
        assert!((0..100_000u64)
            .all(|k| whole_micros((8_600_000_000_000_000 + k) as f64 / 1e6).is_none()));
    }

    /// The edges of the whole-microsecond way, and times just off whole microseconds.
    #[test]
    fn float_edges_write_as_zmij_does() {
        for v in [
            0.00001,
            0.0000099,
            0.000009,
            0.000001,
            0.0000005,
            0.00000095,
            0.0000015,
            0.000002000000000001,
            0.000013,
            1.0,
            0.999999,
            1.000001,
            1795826522.0,
            1795826522.5,
            1795826522.970841,
            1795826522.9708412,
            1795826522.000001,
            4294967295.999999,
            4294967296.0,
            4294967296.000001,
            1e15 + 0.25,
        ] {
            let mut fast = Vec::new();
            put_f64(&mut fast, v);
            assert_eq!(
                std::str::from_utf8(&fast).unwrap(),
                zmij::Buffer::new().format_finite(v),
                "{v:e}"
            );
        }
    }

    /// A connection's packets print the endpoints rendered for its first one, until a record
    /// has other addresses (then those print), also when another connection takes the slot.
    #[test]
    fn endpoints_rendered_once_follow_the_records() {
        let first = PacketRec {
            conn: 4,
            dir: Dir::C2s,
            src: "10.0.0.2:40000".parse().unwrap(),
            dst: "10.0.0.1:80".parse().unwrap(),
            ..PacketRec::default()
        };
        let same = PacketRec {
            frame: 2,
            ..first.clone()
        };
        let moved = PacketRec {
            frame: 3,
            src: "10.9.9.9:1".parse().unwrap(),
            ..first.clone()
        };
        let reverse = PacketRec {
            frame: 4,
            dir: Dir::S2c,
            src: first.dst,
            dst: first.src,
            ..first.clone()
        };
        // Another connection in the same slot.
        let other = PacketRec {
            frame: 5,
            conn: first.conn + ENDPOINT_SLOTS as u64 / 2,
            src: "10.0.0.3:1".parse().unwrap(),
            ..first.clone()
        };
        let mut sink = JsonlSink::new(Box::new(io::sink()));
        let mut lines = Vec::new();
        for p in [&first, &same, &moved, &same, &reverse, &other, &same] {
            sink.record(&Record::Packet(p.clone())).unwrap();
            lines.push(std::mem::take(&mut sink.block));
            let mut slow = serde_json::to_vec(&Record::Packet(p.clone())).unwrap();
            slow.push(b'\n');
            assert_eq!(lines.last().unwrap(), &slow, "frame {}", p.frame);
        }
    }

    /// The record through its fast writer and through serde, as lines.
    /// What `plain` must answer: no byte serde_json would escape, nothing outside printable
    /// ASCII.
    fn plain_by_bytes(s: &[u8]) -> bool {
        s.iter()
            .all(|&c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\')
    }

    proptest::proptest! {
        #[test]
        fn plain_agrees_with_a_byte_loop(s in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            proptest::prop_assert_eq!(plain(&s), plain_by_bytes(&s));
        }

        /// Mostly plain text with one byte from the edges of each test, at any place.
        #[test]
        fn plain_finds_one_bad_byte_anywhere(
            len in 1usize..40,
            at in 0usize..40,
            bad in proptest::sample::select(vec![0u8, 0x1f, 0x20, b'"', b'\\', 0x7e, 0x7f, 0x80, 0xfe, 0xff, b'!', b'#', b'[', b']']),
        ) {
            let mut s = vec![b'a'; len];
            s[at % len] = bad;
            proptest::prop_assert_eq!(plain(&s), plain_by_bytes(&s));
        }

        /// Any whole number, and any of each length, written as itoa writes it, after text
        /// already in the buffer (which stays).
        #[test]
        fn digits_write_as_itoa_does(v in proptest::num::u64::ANY, len in 1u32..=20) {
            let short = v % 10u64.saturating_pow(len).max(1);
            for n in [v, short, v >> (v % 64)] {
                let mut b = b"x:".to_vec();
                put_digits(&mut b, n);
                let mut want = itoa::Buffer::new();
                proptest::prop_assert_eq!(&b[2..], want.format(n).as_bytes());
                proptest::prop_assert_eq!(&b[..2], b"x:");
            }
        }

        /// Whole microseconds from 1 s to 2^32 s, the fast way, as zmij writes them.
        #[test]
        fn micros_write_as_zmij_does(us in 1_000_000u64..4_294_967_296_000_000) {
            let v = us as f64 / 1e6;
            let mut fast = Vec::new();
            put_f64(&mut fast, v);
            let mut want = zmij::Buffer::new();
            proptest::prop_assert_eq!(std::str::from_utf8(&fast).unwrap(), want.format_finite(v));
        }

        /// Any float: the fast way is taken only where it writes what zmij writes.
        #[test]
        fn any_float_writes_as_zmij_does(bits in proptest::num::u64::ANY, near in 0f64..2e10) {
            for v in [f64::from_bits(bits), near, near.floor(), (near * 1e3).round() / 1e3] {
                let mut fast = Vec::new();
                put_f64(&mut fast, v);
                let want = if v.is_finite() { zmij::Buffer::new().format_finite(v).to_string() } else { "null".to_string() };
                proptest::prop_assert_eq!(std::str::from_utf8(&fast).unwrap(), want);
            }
        }

        #[test]
        fn put_bytes_appends_exactly(
            before in proptest::collection::vec(proptest::num::u8::ANY, 0..100),
            s in proptest::collection::vec(proptest::num::u8::ANY, 0..100),
        ) {
            let mut b = before.clone();
            put_bytes(&mut b, &s);
            let mut want = before;
            want.extend_from_slice(&s);
            proptest::prop_assert_eq!(b, want);
        }
    }

    fn assert_fast_equals_serde(rec: Record) {
        let mut fast = Vec::new();
        match &rec {
            Record::Packet(p) => write_packet(
                &mut fast,
                p,
                &mut Endpoints::default(),
                &mut Statics::default(),
            ),
            Record::Http(h) => write_http(&mut fast, h, &mut Statics::default()),
            Record::Conn(c) => write_conn(&mut fast, c, &mut Statics::default()),
            other => panic!("no fast writer for {other:?}"),
        }
        .unwrap();
        let mut slow = serde_json::to_vec(&rec).unwrap();
        slow.push(b'\n');
        assert_eq!(
            String::from_utf8(fast).unwrap(),
            String::from_utf8(slow).unwrap()
        );
    }

    /// The fast writer and serde agree on every optional field of an `http` record, present
    /// or absent, and on text that needs escaping or is not ASCII.
    #[test]
    fn http_fast_path_equals_serde() {
        let full = HttpRec {
            conn: 4,
            dir: Dir::C2s,
            frame: 9,
            ts: Some(1795826522.9708412),
            method: Some("GET".into()),
            uri: Some("/a \"b\"\\c\u{1}d/é".into()),
            version: "HTTP/1.1".into(),
            status: Some(101),
            reason: Some("Switching Protocols".into()),
            content_length: Some(12),
            body_len: 7,
            upgrade: Some("websocket".into()),
            chunked: true,
            request_frame: Some(3),
            carries: vec!["Host".into(), "Cookie".into()].into(),
            end_frame: Some(11),
            unpaired: true,
            stream: Some(3),
            authority: Some("a\"b:8080".into()),
            undecodable: true,
            reset: true,
            tls: true,
        };
        for h in [
            full.clone(),
            HttpRec {
                ts: None,
                method: None,
                uri: None,
                status: None,
                reason: None,
                content_length: None,
                upgrade: None,
                chunked: false,
                request_frame: None,
                carries: Default::default(),
                end_frame: None,
                unpaired: false,
                stream: None,
                authority: None,
                undecodable: false,
                reset: false,
                tls: false,
                ..full
            },
        ] {
            assert_fast_equals_serde(Record::Http(Box::new(h)));
        }
    }
}
