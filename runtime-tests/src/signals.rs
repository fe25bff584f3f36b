//! `wait-signal` (also the wait of `notify-fds` and `flood-mount`) and the guard
//! for `reboot`/`poweroff`.
//!
//! The probe is often PID 1 of a PID namespace, and the kernel drops signals to
//! such an init unless it has a handler installed (SIGNAL_UNKILLABLE) — so to see
//! what the runtime sends, the probe must catch, not just wait.

use std::sync::atomic::{AtomicI32, Ordering};

/// The first signal caught; a handler may only touch async-signal-safe state.
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn record(sig: libc::c_int) {
    let _ = CAUGHT.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
}

/// Signals we install the handler for: every catchable one except the
/// synchronous fault signals, where a handler that returns would re-run the
/// faulting instruction forever instead of letting a real crash show.
fn catchable(sig: libc::c_int) -> bool {
    !matches!(
        sig,
        libc::SIGKILL | libc::SIGSTOP | libc::SIGSEGV | libc::SIGBUS | libc::SIGFPE | libc::SIGILL
    )
}

/// Installs handlers, says `waiting` on stderr (tests that must not signal too
/// early wait for it; before that an init would drop the signal), and returns the
/// number of the first signal that arrives.
pub fn wait_any() -> libc::c_int {
    catch_all();
    eprintln!("waiting");
    wait_caught()
}

/// The first half of [`wait_any`], for a command that must be ready for signals
/// before it announces itself some other way than on stderr (`flood-mount`,
/// whose stderr may be a pipe nobody reads).  From here on every signal stays
/// pending until [`wait_caught`].
pub fn catch_all() {
    // SAFETY: plain libc signal calls on zero-initialised, locally owned sigsets
    // and sigaction structs; the handler only stores into an atomic.
    unsafe {
        // Block everything first so that no signal is handled between installing
        // the handlers and sigsuspend(), which atomically unblocks and waits.
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());

        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = record as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // With every signal masked during the handler, a second signal stays
        // pending instead of racing the first one.
        sa.sa_mask = all;
        for sig in 1..=libc::SIGRTMAX() {
            // glibc reserves two real-time signals for itself and refuses them
            // (EINVAL); nobody outside can usefully send those anyway.
            if catchable(sig) {
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
    }
}

/// The second half of [`wait_any`]: the number of the first signal caught since
/// [`catch_all`].
pub fn wait_caught() -> libc::c_int {
    // SAFETY: sigsuspend on a zero-initialised, locally owned sigset.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        while CAUGHT.load(Ordering::SeqCst) == 0 {
            libc::sigsuspend(&none);
        }
    }
    CAUGHT.load(Ordering::SeqCst)
}

/// The inode of the initial PID namespace is a fixed kernel constant
/// (PROC_PID_INIT_INO).
const INIT_PID_NS: &str = "pid:[4026531836]";

/// Ok when /proc/self/ns/pid shows a PID namespace other than the initial one.
pub fn check_in_child_pid_namespace() -> Result<(), String> {
    let link = std::fs::read_link("/proc/self/ns/pid")
        .map_err(|e| format!("cannot read /proc/self/ns/pid ({e}), so cannot tell"))?;
    is_child_pid_ns(&link.to_string_lossy())
}

fn is_child_pid_ns(link: &str) -> Result<(), String> {
    if link == INIT_PID_NS {
        Err("this is the initial PID namespace (the real machine)".to_string())
    } else if link.starts_with("pid:[") {
        Ok(())
    } else {
        Err(format!("unexpected /proc/self/ns/pid target {link:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncatchable_and_fault_signals_are_skipped() {
        assert!(!catchable(libc::SIGKILL));
        assert!(!catchable(libc::SIGSTOP));
        assert!(!catchable(libc::SIGSEGV));
        assert!(catchable(libc::SIGTERM));
        assert!(catchable(libc::SIGINT));
        assert!(catchable(libc::SIGHUP));
        assert!(catchable(libc::SIGUSR1));
        assert!(catchable(libc::SIGRTMIN() + 3));
    }

    #[test]
    fn reboot_only_in_a_child_pid_namespace() {
        assert!(is_child_pid_ns("pid:[4026531836]").is_err());
        assert!(is_child_pid_ns("pid:[4026532301]").is_ok());
        assert!(is_child_pid_ns("garbage").is_err());
    }
}
