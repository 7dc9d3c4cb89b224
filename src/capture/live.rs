//! Live capture from an interface (pnet datalink). Filled in by the live-capture work.

use crate::cli::LiveArgs;
use std::process::ExitCode;

/// `statescope live`.
pub fn live_command(args: &LiveArgs) -> anyhow::Result<ExitCode> {
    let _ = args;
    anyhow::bail!("live capture is not built yet")
}
