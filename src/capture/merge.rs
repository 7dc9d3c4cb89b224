//! Several sources read as one, and a source cut after a number of frames.
//!
//! [`Merged`] interleaves its inputs by capture time, as `mergecap` does: each step hands out
//! the earliest of the inputs' next frames (on equal times, the one from the input named
//! first), renumbered from 1 in the merged order. Each input's next frame is copied once into a
//! buffer of its own: a single file never goes through here, so that copy costs nothing when
//! one capture is read. An input that fails (damage, a read error) is set aside while the others
//! are read to their end, and its error is returned last: every frame before the damage, in
//! every file, is still reported.
//!
//! [`Counted`] ends its source after `n` frames (`replay -c N`, like `tcpdump -c`).

use super::{CaptureError, Frame, FrameSource, LinkType, Timestamp};

/// One input's next frame, owned.
struct Head {
    ts: Timestamp,
    linktype: LinkType,
    orig_len: u32,
    data: Vec<u8>,
}

struct Input {
    src: Box<dyn FrameSource + Send>,
    /// The next frame, when it has been read.
    head: Option<Head>,
    /// A spare buffer, reused for the next frame read.
    spare: Vec<u8>,
    done: bool,
}

impl Input {
    /// Read the next frame into `head` if there is none; an error ends this input.
    fn fill(&mut self) -> Result<(), CaptureError> {
        if self.head.is_some() || self.done {
            return Ok(());
        }
        match self.src.next_frame() {
            Ok(Some(f)) => {
                let mut data = std::mem::take(&mut self.spare);
                data.clear();
                data.extend_from_slice(f.data);
                self.head = Some(Head {
                    ts: f.ts,
                    linktype: f.linktype,
                    orig_len: f.orig_len,
                    data,
                });
                Ok(())
            }
            Ok(None) => {
                self.done = true;
                Ok(())
            }
            Err(e) => {
                self.done = true;
                Err(e)
            }
        }
    }
}

/// Several captures merged by capture time (see the module doc).
pub struct Merged {
    inputs: Vec<Input>,
    /// The input whose frame was handed out last: its head is consumed at the next call.
    last: Option<usize>,
    number: u64,
    /// The first input error, returned once every other input is read.
    failed: Option<CaptureError>,
    finished: bool,
}

impl Merged {
    pub fn new(sources: Vec<Box<dyn FrameSource + Send>>) -> Merged {
        Merged {
            inputs: sources
                .into_iter()
                .map(|src| Input {
                    src,
                    head: None,
                    spare: Vec::new(),
                    done: false,
                })
                .collect(),
            last: None,
            number: 0,
            failed: None,
            finished: false,
        }
    }
}

impl FrameSource for Merged {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        if self.finished {
            return Ok(None);
        }
        if let Some(i) = self.last.take() {
            if let Some(h) = self.inputs[i].head.take() {
                self.inputs[i].spare = h.data;
            }
        }
        for input in &mut self.inputs {
            if let Err(e) = input.fill() {
                self.failed.get_or_insert(e);
            }
        }
        let next = self
            .inputs
            .iter()
            .enumerate()
            .filter_map(|(i, inp)| inp.head.as_ref().map(|h| (h.ts, i)))
            .min();
        let Some((_, i)) = next else {
            self.finished = true;
            return match self.failed.take() {
                Some(e) => Err(e),
                None => Ok(None),
            };
        };
        self.last = Some(i);
        self.number += 1;
        let h = self.inputs[i]
            .head
            .as_ref()
            .expect("chosen input has a frame");
        Ok(Some(Frame {
            number: self.number,
            ts: h.ts,
            linktype: h.linktype,
            data: &h.data,
            orig_len: h.orig_len,
        }))
    }

    fn progress(&self) -> (u64, Option<u64>) {
        let mut done = 0;
        let mut total = Some(0u64);
        for inp in &self.inputs {
            let (d, t) = inp.src.progress();
            done += d;
            total = total.zip(t).map(|(a, b)| a + b);
        }
        (done, total)
    }
}

/// A source that ends after `left` more frames.
pub struct Counted {
    src: Box<dyn FrameSource + Send>,
    left: u64,
}

impl Counted {
    pub fn new(src: Box<dyn FrameSource + Send>, n: u64) -> Counted {
        Counted { src, left: n }
    }
}

impl FrameSource for Counted {
    fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        self.src.next_frame()
    }

    fn progress(&self) -> (u64, Option<u64>) {
        self.src.progress()
    }

    fn lend_map(&mut self) -> Option<super::mapped::Lent> {
        self.src.lend_map()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::memory::MemorySource;

    fn source(times: &[i64], tag: u8) -> Box<dyn FrameSource + Send> {
        Box::new(MemorySource::new(
            times
                .iter()
                .map(|&t| (Timestamp(t), LinkType(1), vec![tag; 3]))
                .collect(),
        ))
    }

    fn drain(src: &mut dyn FrameSource) -> (Vec<(u64, i64, u8)>, Option<CaptureError>) {
        let mut out = Vec::new();
        loop {
            match src.next_frame() {
                Ok(Some(f)) => out.push((f.number, f.ts.0, f.data[0])),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e)),
            }
        }
    }

    #[test]
    fn merges_by_time_and_renumbers() {
        let mut m = Merged::new(vec![source(&[1, 5, 5, 9], b'a'), source(&[2, 5, 10], b'b')]);
        let (got, err) = drain(&mut m);
        assert!(err.is_none());
        let want = [
            (1, 1, b'a'),
            (2, 2, b'b'),
            (3, 5, b'a'),
            (4, 5, b'a'),
            (5, 5, b'b'),
            (6, 9, b'a'),
            (7, 10, b'b'),
        ];
        assert_eq!(got, want);
        assert!(matches!(m.next_frame(), Ok(None)));
    }

    /// A source that yields its frames, then fails.
    struct Failing(MemorySource, bool);
    impl FrameSource for Failing {
        fn next_frame(&mut self) -> Result<Option<Frame<'_>>, CaptureError> {
            if self.1 {
                return Ok(None);
            }
            match self.0.next_frame() {
                Ok(None) => {
                    self.1 = true;
                    Err(CaptureError::Other("damaged".into()))
                }
                other => other,
            }
        }
    }

    #[test]
    fn an_error_comes_after_every_other_frame() {
        let bad = Failing(
            MemorySource::new(vec![(Timestamp(3), LinkType(1), vec![b'x'])]),
            false,
        );
        let mut m = Merged::new(vec![Box::new(bad), source(&[1, 2, 4, 8], b'b')]);
        let (got, err) = drain(&mut m);
        let tags: Vec<u8> = got.iter().map(|g| g.2).collect();
        assert_eq!(tags, b"bbxbb");
        assert_eq!(err.unwrap().to_string(), "damaged");
    }

    #[test]
    fn counted_stops_after_n() {
        let mut c = Counted::new(source(&[1, 2, 3], b'a'), 2);
        assert_eq!(drain(&mut c).0.len(), 2);
        let mut c = Counted::new(source(&[1], b'a'), 5);
        assert_eq!(drain(&mut c).0.len(), 1);
    }
}
