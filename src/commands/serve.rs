//! `statescope serve`: the server of [`crate::server`] on the checked address, until a signal.

use crate::config::ServeConfig;
use std::process::ExitCode;

/// `statescope serve`.
pub fn run(cfg: ServeConfig) -> anyhow::Result<ExitCode> {
    crate::server::run_until_signal(cfg.listen, cfg.server, cfg.broker.as_deref())?;
    Ok(ExitCode::SUCCESS)
}
