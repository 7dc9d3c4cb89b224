//! The `statescope` binary: parse the command line, run, map errors to exit codes (2 for bad
//! usage, 1 for anything else; a closed pipe counts as success).
use std::process::ExitCode;

// Connection setup and teardown allocate small objects at a high rate; mimalloc halves that cost.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (position in `mi_option_e`, mimalloc v3 as built by
/// libmimalloc-sys 0.1.49; `tests/replay.rs` checks it through MIMALLOC_VERBOSE).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// How long freed pages stay with the process before going back to the kernel.
const PURGE_DELAY_MS: std::ffi::c_long = 300;

fn main() -> ExitCode {
    // Replay frees whole pages of finished connections while opening new ones. A 10 ms purge
    // (mimalloc v2's default) hands those pages back to the kernel only to fault them in again
    // (half of replay's system time). On the 10 M-frame full-payload capture (JSON lines),
    // the tracking thread still faulted 95 k pages back in with 100 ms, 38 k with 300 ms,
    // 29 k with 500 ms, 20 k with 1 s: its system time 0.71 -> 0.44 -> 0.36 s. Peak RSS
    // over 4 runs each: 44, 48, 57 MiB, and 63 MiB with 1 s, too near the 64 MiB the replay
    // issue allows (earlier, with larger batches, 1 s had also let freed pages pile up).
    // MIMALLOC_PURGE_DELAY in the environment wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets a plain integer option; called before any other thread exists.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
    // Transparent huge pages fault in 2 MiB at a time in each thread's heap: on the bench
    // capture, peak RSS 96 -> 72 MiB without them (JSON lines, three threads) for 5% of the
    // summary's speed. Memory that follows concurrent connections matters more for long and
    // live captures. mimalloc reads its own THP option before `main`, so this is the same
    // switch it would pull: the process's THP flag. MIMALLOC_ALLOW_THP in the environment wins.
    #[cfg(target_os = "linux")]
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: a prctl with integer arguments; it only changes how later page faults are
        // served. A failure (old kernel) leaves THP as it was.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
    let cli = <statescope::cli::Cli as clap::Parser>::parse();
    match statescope::cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            if statescope::output::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("statescope: error: {err:#}");
            // Bad values on the command line are bad usage, as clap's own errors are.
            if err.is::<statescope::config::UsageError>() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}
