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
//! - `locks`: one container per root and per machine name (nspawn's lock files);
//! - `ephemeral`, `overlays`: what the run makes for --ephemeral (the root's
//!   overlay, in a mount namespace of the supervisor's own) and for
//!   --overlay= (work directories);
//! - `console`, `notify`, `mountguard`: the event sources' handlers; `freshfs`
//!   builds the procfs and sysfs instances the guard hands the guest, `caller`
//!   tells whether a guest thread may have what it asks the supervisor for.
//!
//! A run is one or more boots: a guest reboot boots it again in-process, or,
//! with --keep-unit, exits 133 so that the unit restarts and the host's cgroup
//! settings are applied afresh.

mod boot;
pub mod bpfbroker;
pub mod caller;
pub mod console;
pub mod ephemeral;
pub mod freshfs;
pub mod identity;
pub mod lifecycle;
pub mod locks;
pub mod machined;
pub mod mountguard;
pub mod network;
pub mod notify;
pub mod output;
pub mod overlays;
pub mod poll;
pub mod teardown;
pub mod userns;

use crate::cgroup::{CgroupError, Cgroups};
use crate::plan::{Console as ConsoleMode, Plan, Register};
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
    #[error(transparent)]
    Lock(#[from] locks::LockError),
    #[error("{0}")]
    Policy(#[from] SeccompError),
    /// The run ended in failure; the line says why.
    #[error("{0}")]
    Failed(String),
    #[error("{0}: {1}")]
    Sys(&'static str, #[source] Errno),
}

/// Signals the supervisor takes from its signalfd: every one whose default
/// action would end or stop it, so that none can take the supervisor down
/// without the guest's shutdown (SIGKILL aside). TERM, INT and QUIT ask for a
/// stop; CHLD and WINCH are work; the rest (HUP, USR1, USR2, ALRM, the
/// real-time signals, ...) are read and ignored. Synchronous fault signals
/// (SEGV, BUS, ILL, FPE, TRAP, SYS) stay as they are: blocking them would only
/// hide a crash.
fn handled_signals() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGCHLD,
        Signal::SIGWINCH,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGALRM,
        Signal::SIGVTALRM,
        Signal::SIGPROF,
        Signal::SIGIO,
        Signal::SIGPWR,
        Signal::SIGXCPU,
        Signal::SIGXFSZ,
        Signal::SIGSTKFLT,
        Signal::SIGTSTP,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
    ] {
        s.add(sig);
    }
    crate::sys::process::with_realtime_signals(s)
}

/// Blocks the signals the supervisor handles. A front end calls this first
/// thing, so that a stop request arriving while it parses its input is kept
/// for the event loop instead of killing it half-way through its set-up (a
/// lock file taken, a cgroup made); `run` calls it again.
pub fn block_signals() -> Result<SigSet, SupervisorError> {
    let sigs = handled_signals();
    sigs.thread_block()
        .map_err(|e| SupervisorError::Sys("block signals", e))?;
    Ok(sigs)
}

/// Runs the container until the guest is done; returns nixrun's exit status.
pub fn run(plan: &Plan) -> Result<i32, SupervisorError> {
    let sigs = block_signals()?;
    // Not dumpable: no process of the same uid (a guest process among them, should
    // one ever see us) may ptrace us or open our /proc files (CVE-2019-5736's door).
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| SupervisorError::Sys("PR_SET_DUMPABLE", crate::sys::errno(e)))?;

    // Before anything touches the host or the root: one container per tree and
    // per name. Released last, after everything else is undone.
    let mut run_undo = Teardown::new();
    for lock in locks::lock_container(&plan.root, &plan.machine, plan.root_mode.keeps_tree())? {
        run_undo.push("releasing a lock file", move || {
            lock.release();
            Ok(())
        });
    }

    // The user namespace's range, locked for the run (nspawn's lock files too).
    let resolved = userns::resolve(plan).map_err(SupervisorError::Failed)?;
    let userns = resolved.as_ref().map(|r| r.userns);
    if let Some(r) = resolved {
        if r.chown && plan.root_mode.keeps_tree() {
            // As nspawn refuses chown with --read-only; a chowned overlay
            // would copy the whole tree up into RAM.
            return Err(SupervisorError::Failed(format!(
                "--private-users: the tree {} would have to be chowned into the range, \
                 which --ephemeral, --volatile and --read-only leave as it is; use a file \
                 system that can be ID-mapped (--private-users-ownership=map)",
                plan.root.display()
            )));
        }
        if r.chown {
            userns::chown_tree(&plan.root, r.userns.shift).map_err(SupervisorError::Failed)?;
        }
        for lock in r.locks {
            run_undo.push("releasing a user namespace range", move || {
                lock.release();
                Ok(())
            });
        }
    }

    crate::phase::mark("locks");
    let facts = identity::facts(plan, userns)?;
    crate::phase::mark("facts");
    let policy = Policy::compute(plan, &facts)?;
    crate::phase::mark("policy");
    overlays::prepare(plan, &mut run_undo)?;
    if let Some(options) = &policy.rootfs.ephemeral {
        ephemeral::make(plan, options, policy.userns, &mut run_undo)?;
        crate::phase::mark("ephemeral");
    }

    // Started by hand on a systemd host: a scope of its own in machine.slice,
    // as nspawn makes, so that the container is a unit machined can name; in
    // it, the layout is that of --keep-unit (payload/ and supervisor/).
    let mut registrar = machined::Registrar::new(plan.register, plan.quiet);
    let mut scope = None;
    if !plan.keep_unit && plan.register != Register::No && machined::systemd_booted() {
        match machined::start_scope(&plan.machine) {
            Ok(unit) => scope = Some(unit),
            Err(e) => registrar.failed(&format!("creating its scope unit: {e}"))?,
        }
    }
    let cgroups = Cgroups::plan(
        &plan.machine,
        plan.keep_unit || scope.is_some(),
        policy.devices.clone(),
        plan.tasks_max,
    )?;

    // Blocked since the start, so no signal falls between the cracks; the child
    // unblocks them before exec.
    let mut sigfd = SignalFd::with_flags(&sigs, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| SupervisorError::Sys("signalfd", e))?;
    // A vanished stdout reader must not kill the supervisor (and with it the guest).
    crate::sys::process::ignore_signal(Signal::SIGPIPE)
        .map_err(|e| SupervisorError::Sys("ignore SIGPIPE", e))?;

    // Published for nixrunctl once the init runs; removed at the end of the run.
    let me = std::process::id() as i32;
    let mut caps: Vec<String> = policy.capabilities.iter().map(|c| c.to_string()).collect();
    caps.sort();
    let machine_state = crate::state::MachineState {
        name: plan.machine.clone(),
        supervisor: me,
        supervisor_start: crate::state::start_time(me).unwrap_or(0),
        uuid: facts.uuid.hyphenated().to_string(),
        root: plan.root.clone(),
        unit: (plan.keep_unit || scope.is_some())
            .then(|| cgroups.unit_name())
            .flatten(),
        capabilities: caps,
        syscalls_allow: plan.syscalls.allow.iter().copied().collect(),
        syscalls_deny: plan.syscalls.deny.iter().copied().collect(),
        private_network: plan.network.private,
        ..Default::default()
    };
    run_undo.push("removing the machine's runtime state", move || {
        crate::state::remove(
            std::path::Path::new(crate::state::STATE_DIR),
            &plan.machine,
            me,
        );
        Ok(())
    });

    let mut life = Lifecycle::new(Config {
        machine: plan.machine.clone(),
        root: plan.root.display().to_string(),
        kill_signal: plan.kill_signal,
        notify_ready: plan.notify_ready,
        keep_unit: plan.keep_unit,
        interactive: plan.console == ConsoleMode::Interactive,
    });
    let mut host = notify::HostNotifier::from_env();
    loop {
        // Undone at the end of every boot, however it ends.
        let mut undo = Teardown::new();
        // Made after the clone, while the child sets up its mounts (boot.rs);
        // their removal goes first on the list, so that it runs after PID 1
        // is gone.
        cgroups.prepare()?;
        crate::phase::mark("cgroups");
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
        let next = boot::Boot::run(
            plan,
            &machine_state,
            &facts,
            &mut registrar,
            &policy,
            &cgroups,
            &mut sigfd,
            &mut life,
            &mut undo,
            &mut host,
        );
        undo.finish();
        crate::phase::mark("teardown");
        // What the manager has not taken yet, once more (without waiting).
        host.flush();
        match next? {
            boot::Next::Restart => continue,
            boot::Next::Exit(code) => return Ok(code),
        }
    }
}
