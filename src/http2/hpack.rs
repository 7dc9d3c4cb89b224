//! HPACK (RFC 7541) for one direction of a connection, decoded passively.
//!
//! `loona-hpack` decodes; beside it a shadow of the dynamic table's entry sizes is kept, so
//! that the records can say how big the table is and how many entries it holds (the state
//! both ends must keep in step). The shadow walks each block's representations (§6) to learn
//! which fields were added to the table, and takes each added field's size (name + value +
//! 32, §4.1) from the decoded list.
//!
//! Once a block cannot be decoded, or a header block was lost in a gap, the table is unknown
//! for good: every later block of that direction is reported undecodable, never guessed.

use std::collections::VecDeque;

/// The table size both ends start with (RFC 7541 §4.2, SETTINGS_HEADER_TABLE_SIZE default).
pub const DEFAULT_TABLE: usize = 4096;
/// The largest table followed, whatever SETTINGS allow: memory per direction stays bounded
/// (a size update above it makes the block undecodable).
pub const MAX_TABLE: usize = 1 << 20;

/// One representation of a header block, as far as the table is concerned.
#[derive(Debug, PartialEq, Eq)]
enum Rep {
    /// A field; `true` when it is also added to the dynamic table.
    Field(bool),
    SizeUpdate(usize),
}

/// One direction's decoder and what is known of its table.
pub struct Hpack {
    dec: loona_hpack::Decoder<'static>,
    /// Sizes of the entries, newest first.
    entries: VecDeque<usize>,
    size: usize,
    max: usize,
    /// False once the table is unknown (a failed block, a lost block, or a start mid-way).
    known: bool,
    /// Blocks decoded and blocks that could not be.
    pub decoded: u64,
    pub undecodable: u64,
}

impl std::fmt::Debug for Hpack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hpack")
            .field("entries", &self.entries.len())
            .field("size", &self.size)
            .field("max", &self.max)
            .field("known", &self.known)
            .finish()
    }
}

/// Decoded fields, names and values as bytes.
pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

impl Hpack {
    /// A decoder at the start of the connection: empty table of the default size.
    pub fn new() -> Self {
        let mut dec = loona_hpack::Decoder::new();
        // Until the receiver's SETTINGS say otherwise, size updates may not exceed 4096.
        dec.set_max_allowed_table_size(DEFAULT_TABLE);
        Hpack {
            dec,
            entries: VecDeque::new(),
            size: 0,
            max: DEFAULT_TABLE,
            known: true,
            decoded: 0,
            undecodable: 0,
        }
    }

    /// A decoder whose table is unknown from the start (the capture began mid-connection).
    pub fn unknown() -> Self {
        Hpack {
            known: false,
            ..Hpack::new()
        }
    }

    /// The table became unknown (a header block was lost).
    pub fn lose(&mut self) {
        self.known = false;
    }

    pub fn known(&self) -> bool {
        self.known
    }

    /// Bytes in the dynamic table (§4.1 sizes) and its entry count; `None` when unknown.
    pub fn table(&self) -> Option<(usize, usize)> {
        self.known.then_some((self.size, self.entries.len()))
    }

    /// The table's current maximum size (the last size update, or the default).
    pub fn max(&self) -> usize {
        self.max
    }

    /// The receiver's SETTINGS_HEADER_TABLE_SIZE took effect: size updates past it (or past
    /// [`MAX_TABLE`]) are errors.
    pub fn allow(&mut self, max: usize) {
        self.dec.set_max_allowed_table_size(max.min(MAX_TABLE));
    }

    /// Decode one whole header block (HEADERS or PUSH_PROMISE and its CONTINUATIONs).
    /// `None` when it cannot be decoded; from then on every block gives `None`.
    pub fn decode(&mut self, block: &[u8]) -> Option<Fields> {
        if !self.known {
            self.undecodable += 1;
            return None;
        }
        let reps = walk(block);
        let fields = reps.as_ref().and_then(|_| self.dec.decode(block).ok());
        match (reps, fields) {
            (Some(reps), Some(fields))
                if reps.iter().filter(|r| matches!(r, Rep::Field(_))).count() == fields.len() =>
            {
                let mut f = fields.iter();
                for r in reps {
                    match r {
                        Rep::Field(indexed) => {
                            let (n, v) = f.next().expect("counted above");
                            if indexed {
                                self.add(n.len() + v.len() + 32);
                            }
                        }
                        Rep::SizeUpdate(m) => {
                            self.max = m;
                            self.evict(0);
                        }
                    }
                }
                self.decoded += 1;
                Some(fields)
            }
            _ => {
                self.known = false;
                self.undecodable += 1;
                None
            }
        }
    }

    fn add(&mut self, n: usize) {
        if n > self.max {
            // §4.4: an entry larger than the table empties it and is not added.
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict(n);
        self.entries.push_front(n);
        self.size += n;
    }

    /// Evict oldest entries until `room` more bytes fit.
    fn evict(&mut self, room: usize) {
        while self.size + room > self.max {
            match self.entries.pop_back() {
                Some(old) => self.size -= old,
                None => break,
            }
        }
    }
}

impl Default for Hpack {
    fn default() -> Self {
        Hpack::new()
    }
}

/// An HPACK integer with an `n`-bit prefix at `b[*at]` (§5.1); `None` if cut or too large.
fn integer(b: &[u8], at: &mut usize, n: u8) -> Option<usize> {
    let mask = (1u16 << n) as usize - 1;
    let mut v = (*b.get(*at)? as usize) & mask;
    *at += 1;
    if v < mask {
        return Some(v);
    }
    let mut shift = 0;
    loop {
        let byte = *b.get(*at)?;
        *at += 1;
        v = v.checked_add(((byte & 0x7f) as usize).checked_shl(shift)?)?;
        if byte & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// Skip a string literal (§5.2): its length prefix and its bytes.
fn skip_string(b: &[u8], at: &mut usize) -> Option<()> {
    let len = integer(b, at, 7)?;
    *at = at.checked_add(len).filter(|&e| e <= b.len())?;
    Some(())
}

/// The representations of a block (§6), without decoding any string.
fn walk(b: &[u8]) -> Option<Vec<Rep>> {
    let mut at = 0;
    let mut reps = Vec::new();
    while at < b.len() {
        let first = b[at];
        if first & 0x80 != 0 {
            integer(b, &mut at, 7)?;
            reps.push(Rep::Field(false));
        } else if first & 0xc0 == 0x40 {
            if integer(b, &mut at, 6)? == 0 {
                skip_string(b, &mut at)?;
            }
            skip_string(b, &mut at)?;
            reps.push(Rep::Field(true));
        } else if first & 0xe0 == 0x20 {
            reps.push(Rep::SizeUpdate(integer(b, &mut at, 5)?));
        } else {
            // Without indexing (0000) or never indexed (0001): 4-bit prefix.
            if integer(b, &mut at, 4)? == 0 {
                skip_string(b, &mut at)?;
            }
            skip_string(b, &mut at)?;
            reps.push(Rep::Field(false));
        }
    }
    Some(reps)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::types::hex;

    /// RFC 7541 Appendix C.3: three requests without Huffman coding, the table after each.
    #[test]
    fn rfc7541_c3_requests_and_table_sizes() {
        let mut h = Hpack::new();
        let b1 = hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d");
        let f = h.decode(&b1).unwrap();
        assert_eq!(f[3], (b":authority".to_vec(), b"www.example.com".to_vec()));
        assert_eq!(h.table(), Some((57, 1)));
        let b2 = hex("8286 84be 5808 6e6f 2d63 6163 6865");
        let f = h.decode(&b2).unwrap();
        assert_eq!(f[4], (b"cache-control".to_vec(), b"no-cache".to_vec()));
        assert_eq!(h.table(), Some((110, 2)));
        let b3 = hex("8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65");
        let f = h.decode(&b3).unwrap();
        assert_eq!(f[1], (b":scheme".to_vec(), b"https".to_vec()));
        assert_eq!(h.table(), Some((164, 3)));
    }

    /// RFC 7541 Appendix C.5: responses with a 256-byte table, so entries are evicted.
    #[test]
    fn rfc7541_c5_eviction() {
        let mut h = Hpack::new();
        // A size update to 256 first, as an encoder told of a smaller table sends.
        let mut b1 = hex("3fe1 01");
        b1.extend(hex(
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 \
             2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 \
             6c65 2e63 6f6d",
        ));
        h.decode(&b1).unwrap();
        assert_eq!(h.max(), 256);
        assert_eq!(h.table(), Some((222, 4)));
        let b2 = hex("4803 3330 37c1 c0bf");
        let f = h.decode(&b2).unwrap();
        assert_eq!(f[0], (b":status".to_vec(), b"307".to_vec()));
        assert_eq!(h.table(), Some((222, 4)));
    }

    /// A block that refers to an entry this side never saw (its first block was lost) makes
    /// the table unknown: that block and every later one are undecodable, never guessed.
    #[test]
    fn a_lost_block_makes_later_ones_undecodable() {
        let mut h = Hpack::new();
        let b2 = hex("8286 84be 5808 6e6f 2d63 6163 6865");
        assert!(h.decode(&b2).is_none());
        assert_eq!(h.table(), None);
        let static_only = hex("8286 84");
        assert!(h.decode(&static_only).is_none());
        assert_eq!((h.decoded, h.undecodable), (0, 2));
        let mut u = Hpack::unknown();
        assert!(u.decode(&static_only).is_none());
        // A cut block is refused by the walk, not read past its end.
        let mut h = Hpack::new();
        assert!(h.decode(&hex("410f 7777")).is_none());
    }
}
