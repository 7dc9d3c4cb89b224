//! Arbitrary bytes as a capture file: the reader must end in frames, a clean end, or an error,
//! never a panic or a runaway allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use statescope::capture::pcap_file::open_reader;
use statescope::decode::Decoder;

fuzz_target!(|data: &[u8]| {
    let input = Box::new(std::io::Cursor::new(data.to_vec()));
    let Ok(mut source) = open_reader("fuzz".into(), input, None) else {
        return;
    };
    let mut decoder = Decoder::new();
    while let Ok(Some(frame)) = source.next_frame() {
        let _ = decoder.decode(&frame);
    }
});
