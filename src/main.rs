//! The `statescope` binary: parse the command line, run, map errors to exit codes.
use std::process::ExitCode;

// Connection setup and teardown allocate small objects at a high rate; mimalloc halves that cost.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = <statescope::cli::Cli as clap::Parser>::parse();
    match statescope::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            if statescope::output::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("statescope: error: {err:#}");
            ExitCode::from(1)
        }
    }
}
