//! The host side: one container's run, from the plan to nixrun's exit status.
//!
//! The supervisor stays single-threaded (PDEATHSIG is tied to the thread that
//! cloned, and helpers are forked) and small: after start-up it only moves
//! bytes between the console pty and stdout, relays sd_notify messages upward,
//! answers the guest's mounts, and turns SIGTERM into the guest's shutdown.
//!
//! Its parts:
//! - `identity`: the facts found at start-up (UUID, os-release, journal link);
//! - `lifecycle`: the pure state machine deciding what every event means;
//! - `boot`: one boot — clone, the protocol's sync points, the event loop that
//!   feeds the lifecycle and carries out its actions;
//! - `poll`: the event loop's token-keyed poll set;
//! - `teardown`: the last-in-first-out undo list every setup step pushes onto;
//! - `console`, `notify`, `mountguard`: the event sources' handlers.
//!
//! A run is one or more boots: a guest reboot boots it again in-process, or,
//! with --keep-unit, exits 133 so that the unit restarts and the host's cgroup
//! settings are applied afresh.

mod boot;
pub mod console;
pub mod identity;
pub mod lifecycle;
pub mod mountguard;
pub mod notify;
pub mod poll;
pub mod teardown;

use crate::cgroup::{CgroupError, Cgroups};
use crate::plan::{Console as ConsoleMode, Plan};
use crate::policy::{seccomp::SeccompError, Policy};
use crate::protocol::ChannelError;
use lifecycle::{Config, Lifecycle};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use teardown::Teardown;

pub use lifecycle::EXIT_REBOOT;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    #[error("{0}")]
    Policy(#[from] SeccompError),
    /// The run ended in failure; the line says why.
    #[error("{0}")]
    Failed(String),
    #[error("{0}: {1}")]
    Sys(&'static str, #[source] Errno),
}

/// Signals the supervisor handles in its loop (blocked, read from a signalfd).
fn handled_signals() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGCHLD,
        Signal::SIGHUP,
        Signal::SIGWINCH,
    ] {
        s.add(sig);
    }
    s
}

/// Runs the container until the guest is done; returns nixrun's exit status.
pub fn run(plan: &Plan) -> Result<i32, SupervisorError> {
    // Not dumpable: no process of the same uid (a guest process among them, should
    // one ever see us) may ptrace us or open our /proc files (CVE-2019-5736's door).
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| SupervisorError::Sys("PR_SET_DUMPABLE", crate::sys::errno(e)))?;

    let facts = identity::facts(plan)?;
    let policy = Policy::compute(plan, &facts)?;
    let cgroups = Cgroups::plan(&plan.machine, plan.keep_unit, policy.devices.clone())?;

    // Blocked before the clone, so no signal falls between the cracks; the child
    // unblocks them before exec.
    let sigs = handled_signals();
    sigs.thread_block()
        .map_err(|e| SupervisorError::Sys("block signals", e))?;
    let mut sigfd = SignalFd::with_flags(&sigs, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| SupervisorError::Sys("signalfd", e))?;
    // A vanished stdout reader must not kill the supervisor (and with it the guest).
    crate::sys::process::ignore_signal(Signal::SIGPIPE)
        .map_err(|e| SupervisorError::Sys("ignore SIGPIPE", e))?;

    let mut life = Lifecycle::new(Config {
        machine: plan.machine.clone(),
        root: plan.root.display().to_string(),
        kill_signal: plan.kill_signal,
        notify_ready: plan.notify_ready,
        keep_unit: plan.keep_unit,
        interactive: plan.console == ConsoleMode::Interactive,
    });
    loop {
        // Undone at the end of every boot, however it ends.
        let mut undo = Teardown::new();
        cgroups.create()?;
        undo.push("removing the container's cgroups", || {
            let errors = cgroups.remove();
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "))
            }
        });
        let next = boot::Boot::run(plan, &policy, &cgroups, &mut sigfd, &mut life, &mut undo);
        undo.finish();
        match next? {
            boot::Next::Restart => continue,
            boot::Next::Exit(code) => return Ok(code),
        }
    }
}
