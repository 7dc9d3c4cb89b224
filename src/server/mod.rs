//! `statescope serve`: the minimal hyper server that keeps no per-request state.

use crate::cli::ServeArgs;
use std::process::ExitCode;

/// `statescope serve`.
pub fn serve_command(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("serve is not built yet")
}
