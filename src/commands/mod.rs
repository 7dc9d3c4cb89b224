//! One file per subcommand: the wiring of frame sources, the [`crate::engine`], printers
//! ([`crate::output`]) and pictures ([`crate::report`]) that each command needs.
//!
//! Commands receive settings already checked ([`crate::config`], built by [`crate::cli`]) and
//! decide only what depends on the run itself: whether standard output is a terminal, how many
//! cores there are. The layers they wire know nothing of commands.
//!
//! | file | command |
//! |------|---------|
//! | [`replay`] | `statescope replay`: a capture file on up to three threads |
//! | [`live`] | `statescope live`: a live interface, with a live view redrawn on a timer |
//! | [`serve`] | `statescope serve` |
//! | [`lab`] | `statescope lab`: the listing, or one exercise |

pub mod lab;
pub mod live;
pub mod replay;
pub mod serve;

use crate::config::OutputConfig;
use crate::engine::Engine;
use anyhow::Context;
use std::io::{self, Write};

/// Send `--follow`'s text where the settings say: the `--follow-out` file, else standard output.
fn follow(engine: &mut Engine, out: &OutputConfig) -> anyhow::Result<()> {
    if out.follow.is_none() {
        return Ok(());
    }
    let w: Box<dyn Write> = match &out.follow_out {
        Some(path) => Box::new(io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create --follow-out {}", path.display()))?,
        )),
        None => Box::new(io::stdout()),
    };
    engine.follow_to(w);
    Ok(())
}

/// `--tls-keylog`'s secrets, read now (an unreadable file is an error naming it); lines it
/// could not read are counted in one line on standard error.
/// `growing`: the client may still be writing it (`live`).
fn tls_keys(
    out: &OutputConfig,
    growing: bool,
) -> anyhow::Result<Option<std::sync::Arc<crate::tls::keylog::KeyStore>>> {
    let Some(path) = &out.tls_keylog else {
        return Ok(None);
    };
    let mut store = crate::tls::keylog::KeyStore::open(path)?;
    if growing {
        store = store.growing();
    }
    let (_, bad, first, _) = store.counts();
    if bad > 0 && !out.quiet {
        eprintln!(
            "statescope: --tls-keylog {}: {bad} line{} not understood and skipped (first: {})",
            path.display(),
            if bad == 1 { "" } else { "s" },
            first.unwrap_or_default()
        );
    }
    Ok(Some(std::sync::Arc::new(store)))
}

/// The run's outcome with `--follow`'s own write error first: it names the follow output, where
/// a later error writing the records would only say that standard output failed.
fn follow_checked(engine: &mut Engine, out: &OutputConfig) -> anyhow::Result<()> {
    match engine.follow_error() {
        Some(e) => Err(anyhow::Error::new(e).context(match &out.follow_out {
            Some(path) => format!("writing --follow's text to {} failed", path.display()),
            None => "writing --follow's text to standard output failed".to_string(),
        })),
        None => Ok(()),
    }
}
