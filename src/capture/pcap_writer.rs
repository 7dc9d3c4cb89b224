//! `live -w FILE`: writes captured frames to a nanosecond pcap file, and [`PcapTee`], a
//! [`FrameSource`] that writes every frame it passes on.
//!
//! Format: the classic pcap header with magic `0xa1b23c4d` (nanosecond timestamps) in the
//! machine's byte order, version 2.4, then one record header (`ts_sec`, `ts_nsec`, captured
//! length, original length) and the bytes per frame — what tcpdump, tshark and `statescope
//! replay` read.
//!
//! Guarantees: the file is flushed when the source ends (Ctrl-C, `--count`, `--duration`) and
//! on drop, so nothing captured is lost in a clean stop. Writes are buffered; a write error
//! (disk full) stops the run with one line naming the file and saying which frames it holds:
//! frames are buffered before they are analysed, so the last ones analysed may never have
//! reached the file, and the line (and [`PcapWriter::frames_written`]) says how many did. Every
//! record written before the error stays readable: a record is either whole or, if the disk
//! filled mid-record, the file ends with a partial record that readers report as a cut-short
//! last frame.

use super::{CaptureError, Frame, FrameSource, LinkType, Polled};
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

/// pcap with nanosecond timestamps (the microsecond magic is 0xa1b2c3d4).
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;

/// Bytes buffered before they are written out.
const BUFFER: usize = 1 << 18;

/// Writes pcap records to `W`.
pub struct PcapWriter<W: Write> {
    out: W,
    /// Bytes not written yet, and where each frame among them ends.
    buf: Vec<u8>,
    ends: Vec<usize>,
    /// Frames handed to [`Self::write_frame`], and frames wholly in the file.
    taken: u64,
    written: u64,
    /// For error messages.
    path: String,
    /// Set after the first write error: later calls report it again rather than write more.
    failed: bool,
}

impl PcapWriter<File> {
    /// Create (or truncate) `path` and write the file header.
    pub fn create(path: &Path, linktype: LinkType, snaplen: u32) -> Result<Self, CaptureError> {
        let name = path.display().to_string();
        let file = File::create(path).map_err(|e| CaptureError::Open {
            path: name.clone(),
            what: format!("cannot create the capture file: {e}"),
        })?;
        PcapWriter::new(file, name, linktype, snaplen)
    }
}

impl<W: Write> PcapWriter<W> {
    /// Write the file header to `out`; `path` names the output in error messages.
    pub fn new(
        out: W,
        path: String,
        linktype: LinkType,
        snaplen: u32,
    ) -> Result<Self, CaptureError> {
        let mut w = PcapWriter {
            out,
            buf: Vec::with_capacity(BUFFER),
            ends: Vec::new(),
            taken: 0,
            written: 0,
            path,
            failed: false,
        };
        let mut header = Vec::with_capacity(24);
        header.extend(MAGIC_NANOS.to_ne_bytes());
        header.extend(2u16.to_ne_bytes());
        header.extend(4u16.to_ne_bytes());
        header.extend(0i32.to_ne_bytes()); // thiszone: timestamps are UTC
        header.extend(0u32.to_ne_bytes()); // sigfigs
        header.extend(snaplen.to_ne_bytes());
        header.extend(linktype.0.to_ne_bytes());
        w.buf.extend_from_slice(&header);
        // The header reaches the disk at once, so even an empty capture is a valid file.
        w.flush()?;
        Ok(w)
    }

    /// Append one frame. On an error the frame is not taken: frames taken and not written
    /// are those before it.
    pub fn write_frame(&mut self, frame: &Frame<'_>) -> Result<(), CaptureError> {
        if self.failed {
            return Err(self.error("an earlier write failed".into()));
        }
        if self.buf.len() + 16 + frame.data.len() > BUFFER && !self.buf.is_empty() {
            self.flush()?;
        }
        let ts = frame.ts.0;
        let (secs, nanos) = (ts.div_euclid(1_000_000_000), ts.rem_euclid(1_000_000_000));
        let mut rec = [0u8; 16];
        rec[0..4].copy_from_slice(&(secs as u32).to_ne_bytes());
        rec[4..8].copy_from_slice(&(nanos as u32).to_ne_bytes());
        rec[8..12].copy_from_slice(&(frame.data.len() as u32).to_ne_bytes());
        rec[12..16].copy_from_slice(&frame.orig_len.max(frame.data.len() as u32).to_ne_bytes());
        self.buf.extend_from_slice(&rec);
        self.buf.extend_from_slice(frame.data);
        self.ends.push(self.buf.len());
        self.taken += 1;
        Ok(())
    }

    /// Frames handed to [`Self::write_frame`] so far.
    pub fn frames_taken(&self) -> u64 {
        self.taken
    }

    /// Frames wholly in the file so far: the first this many frames taken.
    pub fn frames_written(&self) -> u64 {
        self.written
    }

    /// Push everything buffered to the file.
    pub fn flush(&mut self) -> Result<(), CaptureError> {
        if self.failed {
            return Err(self.error("an earlier write failed".into()));
        }
        // By hand rather than `write_all`, to know how many bytes, so frames, got there.
        let mut done = 0;
        let mut result = Ok(());
        while done < self.buf.len() {
            match self.out.write(&self.buf[done..]) {
                Ok(0) => {
                    result = Err(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if result.is_ok() {
            result = self.out.flush();
        }
        self.written += self.ends.iter().take_while(|&&end| end <= done).count() as u64;
        self.buf.clear();
        self.ends.clear();
        result.map_err(|e| {
            self.failed = true;
            self.error(e.to_string())
        })
    }

    fn error(&self, what: String) -> CaptureError {
        let lost = self.taken - self.written;
        let held = match (self.written, lost) {
            (0, _) => "it holds no frames".to_string(),
            (n, 0) => format!("it holds frames 1-{n}"),
            (n, _) => format!("it holds frames 1-{n} only"),
        };
        let analysed = if lost > 0 {
            format!(
                "; frames {}-{} ({lost}) were analysed but are not in it",
                self.written + 1,
                self.taken
            )
        } else {
            String::new()
        };
        CaptureError::Other(format!("writing {}: {what}; {held}{analysed}", self.path))
    }
}

impl<W: Write> Drop for PcapWriter<W> {
    fn drop(&mut self) {
        // Best effort: a clean stop has flushed already and reported any error.
        if !self.failed {
            let _ = self.flush();
        }
    }
}

/// A source that writes every frame of `inner` to a pcap file as it passes it on, and flushes
/// the file when `inner` ends or fails.
pub struct PcapTee<'a, W: Write> {
    inner: &'a mut dyn FrameSource,
    writer: PcapWriter<W>,
}

impl<'a, W: Write> PcapTee<'a, W> {
    pub fn new(inner: &'a mut dyn FrameSource, writer: PcapWriter<W>) -> Self {
        PcapTee { inner, writer }
    }

    /// The writer (for its counts once the run is over).
    pub fn writer(&self) -> &PcapWriter<W> {
        &self.writer
    }
}

impl<W: Write> PcapTee<'_, W> {
    /// Write what passes, flush at the end or on an error.
    fn pass<'f>(
        writer: &mut PcapWriter<W>,
        got: Result<Polled<'f>, CaptureError>,
    ) -> Result<Polled<'f>, CaptureError> {
        match got {
            Ok(Polled::Frame(frame)) => {
                writer.write_frame(&frame)?;
                Ok(Polled::Frame(frame))
            }
            Ok(Polled::Idle) => Ok(Polled::Idle),
            Ok(Polled::End) => {
                writer.flush()?;
                Ok(Polled::End)
            }
            Err(e) => {
                // The capture error is the one to report; the flush keeps what was captured.
                let _ = writer.flush();
                Err(e)
            }
        }
    }
}

impl<W: Write> FrameSource for PcapTee<'_, W> {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        let got = self.inner.next_frame().map(|f| match f {
            Some(f) => Polled::Frame(f),
            None => Polled::End,
        });
        Ok(match Self::pass(&mut self.writer, got)? {
            Polled::Frame(f) => Some(f),
            Polled::Idle | Polled::End => None,
        })
    }

    fn poll_frame(&mut self, wait: Duration) -> Result<Polled<'_>, CaptureError> {
        Self::pass(&mut self.writer, self.inner.poll_frame(wait))
    }

    fn progress(&self) -> (u64, Option<u64>) {
        self.inner.progress()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::memory::MemorySource;
    use crate::capture::Timestamp;

    /// A writer that fails with "No space left on device" after `room` bytes.
    struct Full {
        data: Vec<u8>,
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.data.len() >= self.room {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = buf.len().min(self.room - self.data.len());
            self.data.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn frames() -> Vec<(Timestamp, LinkType, Vec<u8>)> {
        vec![
            (
                Timestamp::from_secs_nanos(1_700_000_000, 123_456_789),
                LinkType::ETHERNET,
                vec![1; 60],
            ),
            (
                Timestamp::from_secs_nanos(1_700_000_001, 5),
                LinkType::ETHERNET,
                vec![2; 65550],
            ),
        ]
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn writes_a_nanosecond_pcap_with_every_frame_whole() {
        let mut src = MemorySource::new(frames());
        let mut buf = Vec::new();
        {
            let w = PcapWriter::new(&mut buf, "mem".into(), LinkType::ETHERNET, 262144).unwrap();
            let mut tee = PcapTee::new(&mut src, w);
            let mut n = 0;
            while let Some(f) = tee.next_frame().unwrap() {
                n += 1;
                assert_eq!(f.number, n);
            }
            assert_eq!(n, 2);
        }
        assert_eq!(u32_at(&buf, 0), 0xa1b2_3c4d);
        assert_eq!(u32_at(&buf, 16), 262144);
        assert_eq!(u32_at(&buf, 20), 1);
        // First record.
        assert_eq!(u32_at(&buf, 24), 1_700_000_000);
        assert_eq!(u32_at(&buf, 28), 123_456_789);
        assert_eq!(u32_at(&buf, 32), 60);
        assert_eq!(u32_at(&buf, 36), 60);
        let second = 24 + 16 + 60;
        assert_eq!(u32_at(&buf, second + 4), 5);
        assert_eq!(u32_at(&buf, second + 8), 65550);
        assert_eq!(buf.len(), second + 16 + 65550);
        assert!(buf[second + 16..].iter().all(|&b| b == 2));
    }

    #[test]
    fn disk_full_is_one_clear_error_and_earlier_frames_stay() {
        let mut src = MemorySource::new(frames());
        let room = 24 + 16 + 60 + 1000;
        let mut full = Full {
            data: Vec::new(),
            room,
        };
        let err = {
            let w =
                PcapWriter::new(&mut full, "out.pcap".into(), LinkType::ETHERNET, 262144).unwrap();
            let mut tee = PcapTee::new(&mut src, w);
            let mut err = None;
            for _ in 0..3 {
                match tee.next_frame() {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
            err.expect("the 64 KiB frame cannot fit")
        };
        let msg = err.to_string();
        assert!(msg.starts_with("writing out.pcap: "), "{msg}");
        assert!(msg.contains("No space left on device"), "{msg}");
        // The second frame was taken (analysed) but never reached the file.
        assert!(
            msg.contains(
                "it holds frames 1-1 only; frames 2-2 (1) were analysed but are not in it"
            ),
            "{msg}"
        );
        assert!(!msg.contains('\n'));
        // The header and the first frame are there, whole.
        assert_eq!(full.data.len(), room);
        assert_eq!(u32_at(&full.data, 32), 60);
        assert!(full.data[40..100].iter().all(|&b| b == 1));
    }
}
