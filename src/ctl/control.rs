//! The verbs that signal a machine: `stop` (its supervisor), `poweroff`,
//! `reboot` and `kill` (its leader, as machinectl does).
//!
//! Signals go through pidfds opened while the process is known to be the one
//! the state file names (start time checked after opening), so a pid reused in
//! between can never receive them.

use super::{Failure, Result};
use crate::state::{self, MachineState};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// A pidfd of `pid`, if it is still the process that started at `start`.
fn pin(st: &MachineState, pid: i32, start: u64) -> Result<OwnedFd> {
    let gone = || Failure::new(format!("no running machine {}", st.name.escape_debug()));
    let raw = rustix::process::Pid::from_raw(pid).ok_or_else(gone)?;
    let fd = rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::empty())
        .map_err(|_| gone())?;
    if state::start_time(pid) != Some(start) {
        return Err(gone());
    }
    Ok(fd)
}

fn send(pidfd: &OwnedFd, sig: i32, whom: &str) -> Result<()> {
    crate::sys::process::pidfd_send_signal(pidfd.as_fd(), sig)
        .map_err(|e| Failure::sys(format!("sending {} to {whom}", crate::signal::name(sig)), e))
}

/// Sends `sig` to the machine's PID 1.
pub fn signal_leader(st: &MachineState, sig: i32) -> Result<u8> {
    let fd = pin(st, st.leader, st.leader_start)?;
    send(
        &fd,
        sig,
        &format!("the leader of {}", st.name.escape_debug()),
    )?;
    Ok(0)
}

/// Whether the process behind `pidfd` exited within `timeout`.
fn exited_within(pidfd: &OwnedFd, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(n) if n > 0 => return true,
            Ok(_) if left.is_zero() => return false,
            _ => {}
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

/// SIGTERM to the supervisor (which shuts the guest down cleanly), then waits
/// for it; after `timeout` the supervisor is killed, taking the guest along.
pub fn stop(st: &MachineState, timeout: Duration) -> Result<u8> {
    let fd = pin(st, st.supervisor, st.supervisor_start)?;
    let name = st.name.escape_debug().to_string();
    send(&fd, libc::SIGTERM, &format!("the supervisor of {name}"))?;
    if exited_within(&fd, timeout) {
        // Removed by the supervisor; read() drops what a failed removal left.
        let _ = state::read(Path::new(state::STATE_DIR), &st.name);
        return Ok(0);
    }
    send(&fd, libc::SIGKILL, &format!("the supervisor of {name}"))?;
    let died = exited_within(&fd, Duration::from_secs(10));
    // A killed supervisor cannot remove its state; the entry is stale now.
    let _ = state::read(Path::new(state::STATE_DIR), &st.name);
    Err(Failure::new(if died {
        format!(
            "{name}: the supervisor did not exit within {}s after SIGTERM; killed it (and the guest with it)",
            timeout.as_secs()
        )
    } else {
        format!("{name}: the supervisor survives SIGKILL (stuck in the kernel?)")
    }))
}
