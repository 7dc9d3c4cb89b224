//! Arbitrary bytes as a sequence of frames of every link type, through one decoder (so fragment
//! reassembly sees frames that build on each other).
//!
//! Input layout, repeated: one byte choosing the link type, one byte giving the frame length in
//! units of 4 bytes, then the frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statescope::capture::{Frame, LinkType, Timestamp};
use statescope::decode::Decoder;

/// Every link type the decoder knows, plus one it does not.
const LINKTYPES: [u32; 11] = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276, 147];

fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new();
    let mut rest = data;
    let mut number = 0;
    while rest.len() >= 2 {
        let linktype = LinkType(LINKTYPES[rest[0] as usize % LINKTYPES.len()]);
        let len = (rest[1] as usize * 4).min(rest.len() - 2);
        let bytes = &rest[2..2 + len];
        rest = &rest[2 + len..];
        number += 1;
        let frame = Frame {
            number,
            ts: Timestamp(number as i64 * 1_000_000_000),
            linktype,
            data: bytes,
            orig_len: bytes.len() as u32,
        };
        if let Ok(Some(seg)) = decoder.decode(&frame) {
            assert!(seg.payload.len() <= seg.len as usize);
        }
    }
});
