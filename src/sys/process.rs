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

/// clone_child, the child born in the cgroup2 directory `cgroup` (clone3,
/// CLONE_INTO_CGROUP; it runs on a copy of our stack then): nobody has to
/// move it there, and moving a process (a write to cgroup.procs) takes the
/// kernel's threadgroup lock for writing, whose first writer after a quiet
/// spell waits a whole RCU grace period (5-30 ms of a cold start on this
/// machine). Where clone3 is refused (ENOSYS or EPERM: the seccomp profiles
/// of container engines return that for it, so that callers fall back),
/// the child is cloned where we are; the bool says whether it was born in
/// `cgroup`.
pub fn clone_child_in(
    mut child: Box<dyn FnMut() -> isize + '_>,
    stack: &mut [u8],
    flags: CloneFlags,
    cgroup: BorrowedFd<'_>,
) -> nix::Result<(Pid, bool)> {
    debug_assert_single_threaded("clone");
    match clone_into(&mut child, flags, cgroup) {
        Ok(pid) => Ok((pid, true)),
        Err(Errno::ENOSYS | Errno::EPERM) => clone_child(child, stack, flags).map(|p| (p, false)),
        Err(e) => Err(e),
    }
}

/// struct clone_args as of Linux 5.7 (CLONE_ARGS_SIZE_VER2), for clone3(2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

fn clone_into(
    child: &mut Box<dyn FnMut() -> isize + '_>,
    flags: CloneFlags,
    cgroup: BorrowedFd<'_>,
) -> nix::Result<Pid> {
    let args = CloneArgs {
        flags: flags.bits() as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..Default::default()
    };
    // SAFETY: no CLONE_VM and no stack: fork semantics, the child gets a copy
    // of our memory (single-threaded, asserted by the caller) and returns
    // here on its own copy of the stack, runs `child` and _exits, never
    // returning into the caller's code.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match Errno::result(r)? {
        0 => {
            let code = child();
            // SAFETY: _exit is always safe to call; nothing of ours runs after it.
            unsafe { libc::_exit(code as i32) }
        }
        pid => Ok(Pid::from_raw(pid as i32)),
    }
}

/// The caller's CPU affinity, if it allows more than one CPU. A child just
/// cloned waits on its parent's CPU for as long as the parent keeps it busy
/// (measured here: the container's first half of the mount tree ran only
/// once the supervisor blocked, 0.3 ms into a start, with the other CPU
/// idle); `move_off_this_cpu` puts it on another CPU of this mask, which the
/// child restores once the parent has done so (`restore_affinity`).
pub fn spreadable_affinity() -> Option<nix::sched::CpuSet> {
    let mask = nix::sched::sched_getaffinity(Pid::from_raw(0)).ok()?;
    let allowed = (0..nix::sched::CpuSet::count())
        .filter(|&c| mask.is_set(c).unwrap_or(false))
        .take(2)
        .count();
    (allowed > 1).then_some(mask)
}

/// Lets `pid` run on any CPU of `mask` but the caller's current one; best
/// effort (the child restores `mask` either way).
pub fn move_off_this_cpu(pid: Pid, mask: &nix::sched::CpuSet) {
    let Ok(here) = nix::sched::sched_getcpu() else {
        return;
    };
    let mut others = *mask;
    if others.unset(here).is_ok() {
        let _ = nix::sched::sched_setaffinity(pid, &others);
    }
}

/// Back to the mask the parent had (and the guest inherits).
pub fn restore_affinity(mask: &nix::sched::CpuSet) -> nix::Result<()> {
    nix::sched::sched_setaffinity(Pid::from_raw(0), mask)
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

/// A process that only holds namespaces: born with `flags` (new namespaces),
/// sharing our address space (CLONE_VM) so that neither its birth nor its exit
/// copies or tears down memory — with fork, those two were half the cost of
/// locking the mount tree. It sleeps until `finish` kills and reaps it.
pub struct NsHolder {
    pid: Pid,
    /// Its pidfd: its namespaces are joined through it (setns), without a
    /// lookup in /proc.
    pidfd: std::os::fd::OwnedFd,
    // The child runs on it: it must outlive the child (see finish and Drop).
    _stack: Box<[u8]>,
}

/// The holder's whole life: sleep until killed. Raw system calls only: the
/// child shares our memory and our thread pointer, so it must not touch the
/// heap, thread-locals or errno (all the parent's).
extern "C" fn hold(_: *mut libc::c_void) -> libc::c_int {
    loop {
        // SAFETY: ppoll on no fds with no timeout sleeps until a signal; the
        // null pointers are valid for nfds = 0 and "no timeout / no mask".
        let _ = unsafe { syscalls::syscall4(syscalls::Sysno::ppoll, 0, 0, 0, 0) };
    }
}

impl NsHolder {
    pub fn spawn(flags: CloneFlags) -> nix::Result<NsHolder> {
        debug_assert_single_threaded("clone");
        let mut stack = vec![0u8; 16 * 1024].into_boxed_slice();
        // The stack grows down from its 16-byte aligned top.
        let top = {
            let end = stack.as_mut_ptr_range().end as usize;
            (end & !15) as *mut libc::c_void
        };
        let mut pidfd: libc::c_int = -1;
        // SAFETY: `hold` uses only its stack (ours to keep until the child is
        // reaped) and raw system calls, so sharing our memory is safe; no
        // CLONE_SETTLS, CLONE_FILES or CLONE_SIGHAND: it has its own copies.
        // With CLONE_PIDFD the kernel writes the pidfd where the parent-tid
        // argument points.
        let pid = unsafe {
            libc::clone(
                hold,
                top,
                flags.bits() | libc::CLONE_VM | libc::CLONE_PIDFD | libc::SIGCHLD,
                std::ptr::null_mut(),
                &mut pidfd as *mut libc::c_int,
            )
        };
        let pid = Errno::result(pid)?;
        Ok(NsHolder {
            pid: Pid::from_raw(pid),
            // SAFETY: a new fd of ours, returned by a successful clone.
            pidfd: unsafe { std::os::fd::FromRawFd::from_raw_fd(pidfd) },
            _stack: stack,
        })
    }

    /// Its pid, for /proc/PID/ns/*.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Joins its `ns` namespaces (setns through its pidfd).
    pub fn enter(&self, ns: CloneFlags) -> nix::Result<()> {
        nix::sched::setns(&self.pidfd, ns)
    }

    /// Kills and reaps it; only then may its stack go.
    pub fn finish(self) {}
}

impl Drop for NsHolder {
    fn drop(&mut self) {
        let _ = kill(self.pid, libc::SIGKILL);
        while let Err(Errno::EINTR) =
            nix::sys::wait::waitpid(self.pid, Some(nix::sys::wait::WaitPidFlag::__WALL))
        {}
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
