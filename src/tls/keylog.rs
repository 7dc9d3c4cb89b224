//! NSS key log files (`SSLKEYLOGFILE`), the secrets [`super::decrypt`] decrypts with.
//!
//! One secret a line, `LABEL <client random, 64 hex digits> <secret, hex>`: `CLIENT_RANDOM`
//! (a TLS 1.2 and older master secret, 48 bytes), and for TLS 1.3 the traffic secrets
//! `CLIENT_HANDSHAKE_TRAFFIC_SECRET`, `SERVER_HANDSHAKE_TRAFFIC_SECRET`,
//! `CLIENT_TRAFFIC_SECRET_0`, `SERVER_TRAFFIC_SECRET_0` and `CLIENT_EARLY_TRAFFIC_SECRET` (32 or
//! 48 bytes, the suite's hash length). Lines starting with `#` and blank lines are skipped; the
//! exporter secrets are read and ignored (nothing here needs them); any other line is counted
//! as not understood, never fatal.
//!
//! Secrets are kept by client random, the one value both the key log and the ClientHello carry.
//! A client appends to its key log while it runs (`live`): [`KeyStore::lookup`] reads what was
//! added since the last read when a client random is not found yet.

use rustc_hash::FxHashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A 32-byte ClientHello random.
pub type Random = [u8; 32];

/// Everything the key log says about one connection (by its client random).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Secrets {
    /// TLS 1.2 and older: the master secret.
    pub master: Option<Vec<u8>>,
    pub client_handshake: Option<Vec<u8>>,
    pub server_handshake: Option<Vec<u8>>,
    pub client_app: Option<Vec<u8>>,
    pub server_app: Option<Vec<u8>>,
    pub client_early: Option<Vec<u8>>,
}

/// A key log's secrets, and what could not be read in it.
#[derive(Debug, Default)]
pub struct KeyLog {
    pub keys: FxHashMap<Random, Secrets>,
    /// Lines read (blank and comment lines included).
    pub lines: u64,
    /// Lines not understood (an unknown label, bad hex, a length that is not a secret's).
    pub bad_lines: u64,
    /// The first of them: "line N: why".
    pub first_bad: Option<String>,
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.is_empty() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

impl KeyLog {
    /// Add the lines of `text` (whole lines; numbering goes on from earlier calls).
    pub fn add_text(&mut self, text: &str) {
        for line in text.lines() {
            self.lines += 1;
            if let Err(why) = self.add_line(line.trim()) {
                self.bad_lines += 1;
                if self.first_bad.is_none() {
                    self.first_bad = Some(format!("line {}: {why}", self.lines));
                }
            }
        }
    }

    fn add_line(&mut self, line: &str) -> Result<(), &'static str> {
        if line.is_empty() || line.starts_with('#') {
            return Ok(());
        }
        let mut parts = line.split_ascii_whitespace();
        let (Some(label), Some(random), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not LABEL CLIENT_RANDOM SECRET");
        };
        // Exporter secrets, and the RSA pre-master secrets NSS logs beside CLIENT_RANDOM.
        if matches!(label, "EXPORTER_SECRET" | "EARLY_EXPORTER_SECRET" | "RSA") {
            return Ok(());
        }
        // The secrets after a KeyUpdate, which OpenSSL logs as `CLIENT_TRAFFIC_SECRET_N`: they
        // follow from `_0` (RFC 8446 §7.2), and are worked out as the updates come.
        if label != "CLIENT_TRAFFIC_SECRET_0"
            && label != "SERVER_TRAFFIC_SECRET_0"
            && (label.starts_with("CLIENT_TRAFFIC_SECRET_")
                || label.starts_with("SERVER_TRAFFIC_SECRET_"))
        {
            return Ok(());
        }
        let random: Random = unhex(random)
            .and_then(|r| r.try_into().ok())
            .ok_or("the client random is not 64 hex digits")?;
        let secret = unhex(secret).ok_or("the secret is not hex")?;
        let want_master = label == "CLIENT_RANDOM";
        let len_ok = if want_master {
            secret.len() == 48
        } else {
            secret.len() == 32 || secret.len() == 48
        };
        let e = self.keys.entry(random).or_default();
        let slot = match label {
            "CLIENT_RANDOM" => &mut e.master,
            "CLIENT_HANDSHAKE_TRAFFIC_SECRET" => &mut e.client_handshake,
            "SERVER_HANDSHAKE_TRAFFIC_SECRET" => &mut e.server_handshake,
            "CLIENT_TRAFFIC_SECRET_0" => &mut e.client_app,
            "SERVER_TRAFFIC_SECRET_0" => &mut e.server_app,
            "CLIENT_EARLY_TRAFFIC_SECRET" => &mut e.client_early,
            _ => return Err("an unknown label"),
        };
        if !len_ok {
            return Err("the secret's length is not a TLS secret's (48 bytes, or 32/48 for 1.3)");
        }
        *slot = Some(secret);
        Ok(())
    }
}

/// A key log file, read once and again as it grows.
#[derive(Debug)]
pub struct KeyStore {
    path: PathBuf,
    /// Read again when a random is not found (a client still writing it: `live`).
    growing: bool,
    inner: Mutex<Read_>,
}

#[derive(Debug, Default)]
struct Read_ {
    log: KeyLog,
    /// Bytes of the file read so far (whole lines only).
    offset: u64,
}

impl KeyStore {
    /// Read the key log at `path`. An unreadable file is an error naming it.
    pub fn open(path: &Path) -> anyhow::Result<KeyStore> {
        let mut r = Read_::default();
        read_more(path, &mut r, true).map_err(|e| {
            anyhow::anyhow!(
                "--tls-keylog {}: {e} (give the NSS key log the client wrote, e.g. its \
                 SSLKEYLOGFILE)",
                path.display()
            )
        })?;
        Ok(KeyStore {
            path: path.to_owned(),
            growing: false,
            inner: Mutex::new(r),
        })
    }

    /// A store over secrets already read (tests, labs).
    pub fn from_log(log: KeyLog) -> KeyStore {
        KeyStore {
            path: PathBuf::new(),
            growing: false,
            inner: Mutex::new(Read_ { log, offset: 0 }),
        }
    }

    /// A key log a client may still be writing: a client random not found is looked for again
    /// in what the file gained (`live`).
    pub fn growing(mut self) -> Self {
        self.growing = !self.path.as_os_str().is_empty();
        self
    }

    pub fn is_growing(&self) -> bool {
        self.growing
    }

    /// Lines read, lines not understood and the first of them, connections with secrets.
    pub fn counts(&self) -> (u64, u64, Option<String>, usize) {
        let r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        (
            r.log.lines,
            r.log.bad_lines,
            r.log.first_bad.clone(),
            r.log.keys.len(),
        )
    }

    /// The secrets of the connection whose ClientHello carried `random`; when none yet and the
    /// file is [`KeyStore::growing`], what it gained since it was last read is read first.
    pub fn lookup(&self, random: &Random) -> Option<Secrets> {
        let mut r = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = r.log.keys.get(random) {
            return Some(s.clone());
        }
        if !self.growing {
            return None;
        }
        // A file that cannot be read now keeps what was read before.
        let _ = read_more(&self.path, &mut r, false);
        r.log.keys.get(random).cloned()
    }
}

/// Read the whole lines `path` gained past `r.offset`.
fn read_more(path: &Path, r: &mut Read_, first: bool) -> std::io::Result<()> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len <= r.offset {
        return Ok(());
    }
    f.seek(SeekFrom::Start(r.offset))?;
    let mut buf = Vec::new();
    f.take(len - r.offset).read_to_end(&mut buf)?;
    // A line still being written waits for the next read.
    // (The first read takes a last line without its newline too: a file written by hand.)
    let whole = if first {
        buf.len()
    } else {
        buf.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
    };
    r.log.add_text(&String::from_utf8_lossy(&buf[..whole]));
    r.offset += whole as u64;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "5f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";

    #[test]
    fn reads_every_label_and_counts_what_it_cannot() {
        let mut log = KeyLog::default();
        let master = "ab".repeat(48);
        let s13 = "cd".repeat(32);
        log.add_text(&format!(
            "# a comment\n\nCLIENT_RANDOM {R} {master}\n\
             CLIENT_HANDSHAKE_TRAFFIC_SECRET {R} {s13}\nSERVER_HANDSHAKE_TRAFFIC_SECRET {R} {s13}\n\
             CLIENT_TRAFFIC_SECRET_0 {R} {s13}\nSERVER_TRAFFIC_SECRET_0 {R} {s13}\n\
             CLIENT_EARLY_TRAFFIC_SECRET {R} {s13}\nEXPORTER_SECRET {R} {s13}\n\
             CLIENT_TRAFFIC_SECRET_N {R} {s13}\n\
             CLIENT_RANDOM {R} abc\nNO_SUCH_LABEL {R} {s13}\nCLIENT_RANDOM 1234 {master}\n\
             CLIENT_RANDOM {R} {s13}\njunk\n"
        ));
        assert_eq!(log.lines, 15);
        assert_eq!(log.bad_lines, 5, "{:?}", log.first_bad);
        assert_eq!(
            log.first_bad.as_deref(),
            Some("line 11: the secret is not hex")
        );
        let random: Random = unhex(R).unwrap().try_into().unwrap();
        let s = &log.keys[&random];
        assert_eq!(s.master.as_deref(), Some(&[0xab; 48][..]));
        for k in [
            &s.client_handshake,
            &s.server_handshake,
            &s.client_app,
            &s.server_app,
            &s.client_early,
        ] {
            assert_eq!(k.as_deref(), Some(&[0xcd; 32][..]));
        }
        assert_eq!(log.keys.len(), 1);
    }

    #[test]
    fn a_growing_file_is_read_again_for_a_random_not_yet_seen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.log");
        std::fs::write(&path, "# empty so far\n").unwrap();
        let store = KeyStore::open(&path).unwrap().growing();
        let random: Random = unhex(R).unwrap().try_into().unwrap();
        assert!(store.lookup(&random).is_none());
        // Half a line: not read until its newline comes.
        let line = format!("CLIENT_RANDOM {R} {}", "11".repeat(48));
        std::fs::write(&path, format!("# empty so far\n{}", &line[..40])).unwrap();
        assert!(store.lookup(&random).is_none());
        std::fs::write(&path, format!("# empty so far\n{line}\n")).unwrap();
        assert_eq!(
            store.lookup(&random).unwrap().master.as_deref(),
            Some(&[0x11; 48][..])
        );
        assert_eq!(store.counts().1, 0);
    }

    #[test]
    fn a_missing_file_is_one_line_naming_it() {
        let e = KeyStore::open(Path::new("/nonexistent/keys.log")).unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains("/nonexistent/keys.log"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }
}
