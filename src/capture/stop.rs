//! SIGINT and SIGTERM as a request to stop reading: `live` and `replay` end their source,
//! finish every connection and print everything before exiting.
//!
//! The handler only stores to atomics (nothing else is async-signal-safe); the readers look at
//! [`stop_requested`] now and then — a live capture at every poll, a replay once per batch of
//! frames, standard input before each `read` ([`StdinUntilStop`]) — never per packet.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Set by SIGINT/SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);
/// The signal that set [`STOP`] (0 before any).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only atomic stores: anything else is not async-signal-safe.
    SIGNAL.store(sig, Ordering::SeqCst);
    STOP.store(true, Ordering::SeqCst);
}

fn install(flags: libc::c_int) {
    STOP.store(false, Ordering::SeqCst);
    SIGNAL.store(0, Ordering::SeqCst);
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is valid; the handler only stores to atomics.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESETHAND | flags;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Make SIGINT and SIGTERM end the capture cleanly instead of killing the process. A second
/// signal kills as usual (`SA_RESETHAND`), for when something hangs. Blocking calls return
/// `EINTR` (a live capture's `poll` ends at once).
pub fn install_stop_signals() {
    install(0);
}

/// [`install_stop_signals`] with `SA_RESTART`: the writes of a replay are not interrupted;
/// its reads of standard input wait in `poll` with a timeout ([`StdinUntilStop`]).
pub fn install_stop_signals_restarting() {
    install(libc::SA_RESTART);
}

/// Was a stop signal received?
#[inline]
pub fn stop_requested() -> bool {
    STOP.load(Ordering::Relaxed)
}

/// The stop signal received, if any (`libc::SIGINT` or `libc::SIGTERM`).
pub fn stop_signal() -> Option<i32> {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// How long a read of standard input waits before looking at [`stop_requested`] again.
const POLL_MS: libc::c_int = 100;

/// Standard input (file descriptor 0, unbuffered) that ends — reads return 0 bytes — once a
/// stop signal arrived, even while the writer keeps the pipe open and sends nothing
/// (`tcpdump -w - | statescope replay -`). Each read first waits in `poll`: one more system call
/// per read of up to a buffer's worth, not per packet.
pub struct StdinUntilStop;

impl Read for StdinUntilStop {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if stop_requested() {
                return Ok(0);
            }
            let mut pfd = libc::pollfd {
                fd: 0,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let ready = unsafe { libc::poll(&mut pfd, 1, POLL_MS) };
            if ready < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if ready == 0 {
                continue;
            }
            // SAFETY: `buf` is valid for `buf.len()` bytes.
            let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}
