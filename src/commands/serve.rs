//! `statescope serve`: the server of [`crate::server`] on the checked address, until a signal.

use crate::server::ServerConfig;
use std::net::SocketAddr;
use std::process::ExitCode;

/// `statescope serve`'s settings, checked (built in [`crate::cli`]).
#[derive(Clone)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// Share WebSocket events through this broker URL.
    pub broker: Option<String>,
    pub server: ServerConfig,
    /// `/records` and the hidden control switches.
    pub extra: crate::server::ServeExtra,
}

/// `statescope serve`.
pub fn run(cfg: ServeConfig) -> anyhow::Result<ExitCode> {
    crate::server::run_until_signal(cfg.listen, cfg.server, cfg.broker.as_deref(), &cfg.extra)?;
    Ok(ExitCode::SUCCESS)
}
