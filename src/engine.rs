//! Frames in, records out: the decoder, the TCP tracker and the HTTP parsers wired together.
//!
//! Replay, live capture and the labs all drive an [`Engine`] one frame at a time and print what
//! it produces through a [`Sink`]. Per-frame decode problems are counted, never fatal.

use crate::capture::{pcap_file, Frame, FrameSource};
use crate::cli::ReplayArgs;
use crate::decode::Decoder;
use crate::output::{make_sink, Sink};
use std::collections::BTreeMap;
use std::process::ExitCode;

/// Counters reported on standard error at the end of a run.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub frames: u64,
    pub segments: u64,
    pub not_tcp: u64,
    /// Decode problems by kind.
    pub decode_errors: BTreeMap<String, u64>,
}

pub struct Engine {
    decoder: Decoder,
    pub stats: Stats,
}

impl Engine {
    pub fn new() -> Self {
        Engine {
            decoder: Decoder::new(),
            stats: Stats::default(),
        }
    }

    pub fn on_frame(&mut self, frame: &Frame<'_>, sink: &mut dyn Sink) -> std::io::Result<()> {
        self.stats.frames += 1;
        let _ = sink;
        match self.decoder.decode(frame) {
            Ok(Some(_seg)) => self.stats.segments += 1,
            Ok(None) => self.stats.not_tcp += 1,
            Err(e) => *self.stats.decode_errors.entry(e.kind()).or_default() += 1,
        }
        Ok(())
    }

    pub fn finish(&mut self, sink: &mut dyn Sink) -> std::io::Result<()> {
        sink.finish()
    }
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

/// Drive `source` through an engine into `sink`. A capture error stops the run after everything
/// before it has been printed.
pub fn run_source(
    source: &mut dyn FrameSource,
    engine: &mut Engine,
    sink: &mut dyn Sink,
) -> anyhow::Result<()> {
    let mut failure = None;
    loop {
        match source.next_frame() {
            Ok(Some(frame)) => engine.on_frame(&frame, sink)?,
            Ok(None) => break,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    engine.finish(sink)?;
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// `statescope replay`.
pub fn replay_command(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    let mut source = pcap_file::open(&args.file)?;
    let mut sink = make_sink(&args.out, Box::new(std::io::stdout()));
    let mut engine = Engine::new();
    run_source(source.as_mut(), &mut engine, sink.as_mut())?;
    Ok(ExitCode::SUCCESS)
}
