//! `--follow N`: a connection's reassembled bytes printed as Wireshark's Follow TCP Stream
//! (`tshark -qz follow,tcp,ascii,N`) prints them.
//!
//! Each chunk is a length line (indented by a tab for the server's side) and the bytes, with
//! every byte that is not printable ASCII (space included), CR or LF shown as `.` (so a TAB is a
//! dot too, as in tshark). A gap is shown as
//! Wireshark shows it: `[N bytes missing in capture file].`, its length line counting that text.
//! Pure functions: the engine decides where the text goes.

use crate::record::Dir;
use crate::tcp::reassembly::Chunk;

/// The banner Wireshark prints before the chunks.
///
/// ```
/// let h = statescope::http::follow::format_header(0, "10.0.0.1:5555", "10.0.0.2:80");
/// assert!(h.contains("Filter: tcp.stream eq 0\nNode 0: 10.0.0.1:5555\nNode 1: 10.0.0.2:80\n"));
/// ```
pub fn format_header(conn: u64, client: &str, server: &str) -> String {
    format!(
        "\n{RULE}\nFollow: tcp,ascii\nFilter: tcp.stream eq {conn}\nNode 0: {client}\nNode 1: {server}\n"
    )
}

/// The closing rule.
pub fn format_footer() -> String {
    format!("{RULE}\n")
}

const RULE: &str = "===================================================================";

/// One chunk of direction `dir`.
///
/// ```
/// use statescope::{http::follow::format_chunk, record::Dir, tcp::reassembly::Chunk};
/// assert_eq!(format_chunk(Dir::C2s, &Chunk::Data(b"GET /\r\n\x00\t")), "9\nGET /\r\n..\n");
/// assert_eq!(
///     format_chunk(Dir::S2c, &Chunk::Gap(1130)),
///     "\t37\n[1130 bytes missing in capture file].\n"
/// );
/// ```
pub fn format_chunk(dir: Dir, chunk: &Chunk<'_>) -> String {
    let indent = if dir == Dir::S2c { "\t" } else { "" };
    match chunk {
        Chunk::Data(d) => {
            let mut s = String::with_capacity(d.len() + 16);
            s.push_str(&format!("{indent}{}\n", d.len()));
            s.extend(d.iter().map(|&b| {
                if b.is_ascii_graphic() || matches!(b, b' ' | b'\r' | b'\n') {
                    b as char
                } else {
                    '.'
                }
            }));
            s.push('\n');
            s
        }
        Chunk::Gap(n) => {
            let text = format!("[{n} bytes missing in capture file].");
            format!("{indent}{}\n{text}\n", text.len())
        }
    }
}
