//! Processes: clone and fork of a single-threaded process, raw signals.
//!
//! The supervisor and the container's init-to-be fork helpers and clone the
//! container. A child of fork/clone gets a copy of the parent's memory with only
//! the calling thread; if another thread held a lock (the allocator's, stdio's)
//! at that moment, the child would deadlock on it. nixrun never starts threads,
//! and every fork and clone asserts that (in debug builds, where the tests run).

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::{ForkResult, Pid};
use std::os::fd::{AsRawFd, BorrowedFd};

/// The number of threads of this process (from /proc/self/status).
pub fn thread_count() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

fn debug_assert_single_threaded(what: &str) {
    debug_assert!(
        thread_count().map_or(true, |n| n == 1),
        "{what} in a multi-threaded process: the child could inherit a held lock"
    );
}

/// clone(2) with `flags` and SIGCHLD as the exit signal; the child runs `child`
/// on `stack` and exits with its return value (without running destructors or
/// atexit handlers: it is a copy of us).
pub fn clone_child(
    child: Box<dyn FnMut() -> isize + '_>,
    stack: &mut [u8],
    flags: CloneFlags,
) -> nix::Result<Pid> {
    debug_assert_single_threaded("clone");
    // SAFETY: the process is single-threaded (asserted above), so the child's copy
    // of memory is consistent; the child only uses its own copy and its stack.
    unsafe { nix::sched::clone(child, stack, flags, Some(libc::SIGCHLD)) }
}

/// fork(2); the child runs `child` and `_exit`s with its return value, never
/// returning into the caller's code.
pub fn fork_run(child: impl FnOnce() -> i32) -> nix::Result<Pid> {
    debug_assert_single_threaded("fork");
    // SAFETY: single-threaded (asserted above); the child only runs `child`, then
    // _exit, which skips the parent's atexit handlers and buffered output.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Child => {
            let code = child();
            // SAFETY: _exit is always safe to call; nothing of ours runs after it.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => Ok(child),
    }
}

/// kill(2) with a signal number (real-time signals included).
pub fn kill(pid: Pid, sig: i32) -> nix::Result<()> {
    // SAFETY: kill takes integers only.
    Errno::result(unsafe { libc::kill(pid.as_raw(), sig) }).map(drop)
}

/// pidfd_send_signal(2) with a signal number (real-time signals included,
/// which rustix's `Signal` only makes with unsafe): the signal reaches the
/// process the pidfd was opened for, never one that took its pid after it died.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> nix::Result<()> {
    // SAFETY: integers and a null siginfo, with which the kernel fills in what
    // kill(2) would send.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    Errno::result(r).map(drop)
}

/// `set` plus every real-time signal, which nix's `Signal` cannot name.
pub fn with_realtime_signals(set: SigSet) -> SigSet {
    let mut raw = *set.as_ref();
    for sig in libc::SIGRTMIN()..=libc::SIGRTMAX() {
        // SAFETY: sigaddset writes into the sigset_t we own; the numbers are
        // valid signals (between SIGRTMIN and SIGRTMAX).
        unsafe { libc::sigaddset(&mut raw, sig) };
    }
    // SAFETY: `raw` came from a valid SigSet and was only changed by sigaddset.
    unsafe { SigSet::from_sigset_t_unchecked(raw) }
}

/// Ignores `sig` in this process (and, through exec, in what it execs).
pub fn ignore_signal(sig: Signal) -> nix::Result<()> {
    let ign = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_IGN installs no handler code that could run at a bad moment.
    unsafe { sigaction(sig, &ign) }.map(drop)
}

/// Every catchable signal back to its default action.
pub fn default_all_signals() {
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if sig == Signal::SIGKILL || sig == Signal::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL installs no handler code.
        let _ = unsafe { sigaction(sig, &dfl) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_counted() {
        assert!(thread_count().is_some_and(|n| n >= 1));
    }

    #[test]
    fn realtime_signals_are_added() {
        let s = with_realtime_signals(SigSet::from(Signal::SIGTERM));
        assert!(s.contains(Signal::SIGTERM));
        for sig in [libc::SIGRTMIN(), libc::SIGRTMIN() + 3, libc::SIGRTMAX()] {
            // SAFETY: sigismember reads the set.
            assert_eq!(unsafe { libc::sigismember(s.as_ref(), sig) }, 1);
        }
    }

    #[test]
    fn raw_signal_numbers_reach_their_target() {
        // Signal 0 checks existence without sending anything.
        kill(nix::unistd::getpid(), 0).unwrap();
        assert_eq!(kill(Pid::from_raw(i32::MAX), 0), Err(Errno::ESRCH));
        let me = rustix::process::pidfd_open(
            rustix::process::getpid(),
            rustix::process::PidfdFlags::empty(),
        )
        .unwrap();
        use std::os::fd::AsFd;
        pidfd_send_signal(me.as_fd(), 0).unwrap();
    }
}
