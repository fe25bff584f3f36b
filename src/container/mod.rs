//! The container side: what the cloned child does, in order, from its first
//! instruction to the exec of the guest's init.
//!
//!  1. PR_SET_PDEATHSIG(SIGKILL): if the supervisor dies, so does the container
//!     (as PID 1 of its pid namespace, its death takes every guest process along).
//!  2. Wait for "go": the supervisor has put us into the container's cgroup.
//!  3. unshare(CLONE_NEWCGROUP): only now, so that the namespace's root is that
//!     cgroup and the guest's /sys/fs/cgroup shows nothing above it.
//!  4. Make every mount a slave, so nothing done here propagates to the host.
//!  5. Bind the root onto itself (pivot_root needs a mount point), open it;
//!     a volatile root's layer goes over the tree first, and a read-only one
//!     is made read-only once bound (rootfs.rs).
//!  6. Apply the mount table (policy/mounts.rs, by mounts.rs) inside the root:
//!     its outer phase, then its inner one.
//!  7. pivot_root into the root, drop the old one.
//!  8. Lock the mount tree (lock.rs) so the guest's root cannot unmount the masks or
//!     make read-only mounts writable; make / shared so the guest's own services
//!     can propagate mounts into their namespaces, as systemd expects.
//!  9. Hostname, console as controlling tty and stdio, find and check the init.
//! 10. A fresh session keyring (the host's must not be reachable: keyctl is
//!     filtered next); the seccomp filters (policy/seccomp.rs), then
//!     capabilities (caps.rs), since installing filters without no_new_privs
//!     needs CAP_SYS_ADMIN. Inside a nixrun guest (Policy::outer_guard) the
//!     kernel refuses the mount guard's listener (one per filter chain) and
//!     the outer supervisor serves our guest instead; keyctl is refused there
//!     already.
//! 11. Send the supervisor the console pty, the notify socket and the seccomp
//!     listener; reset the signal mask and dispositions the supervisor set; mark
//!     every inherited fd close-on-exec; exec.
//!
//! Any failure is sent to the supervisor as one line naming the step, and the
//! child exits; the supervisor prints it and cleans up. The child only applies
//! what the policy (policy/) says; it decides nothing itself.

pub mod caps;
pub mod dev;
pub mod idmap;
pub mod lock;
pub mod mounts;
pub mod overlay;
pub mod root;
pub mod rootfs;
mod userns;

use crate::plan::{Exec, Plan};
use crate::policy::mounts::Phase;
use crate::policy::Policy;
use crate::protocol::{ChildEnd, Endpoints, FromChild, ToChild};
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{SigSet, SigmaskHow};
use root::Root;
use rustix::fs::OFlags;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What the child is given: the plan (what to run, as whom) and the policy
/// (everything it sets up), both prepared by the supervisor before the clone.
pub struct Setup<'a> {
    pub plan: &'a Plan,
    pub policy: &'a Policy,
    /// The supervisor's CPU affinity, when it moved the child off its own
    /// CPU right after the clone (sys::process::move_off_this_cpu): PID 1
    /// restores it once past the sync point that follows the move.
    pub affinity: Option<nix::sched::CpuSet>,
}

/// Init candidates for --boot, in nspawn's order: systemd first, because /sbin/init
/// may be another init that does not speak the container interface.
const BOOT_INITS: &[&str] = &[
    "/usr/lib/systemd/systemd",
    "/lib/systemd/systemd",
    "/sbin/init",
];

#[derive(Debug, thiserror::Error)]
enum StepError {
    #[error("{0}: {1}")]
    Sys(&'static str, #[source] Errno),
    #[error(transparent)]
    Mount(#[from] mounts::MountError),
    #[error(transparent)]
    Root(#[from] root::RootError),
    #[error(transparent)]
    RootFs(#[from] rootfs::RootFsError),
    #[error(transparent)]
    Channel(#[from] crate::protocol::ChannelError),
    #[error("{0}")]
    Init(String),
    #[error("locking the mount tree: {0}")]
    Lock(#[from] lock::LockError),
    #[error("capabilities: {0}")]
    Caps(#[from] caps::ApplyError),
    #[error("installing the seccomp filters: {0}")]
    Seccomp(#[source] Errno),
}

fn sys(what: &'static str) -> impl FnOnce(Errno) -> StepError {
    move |e| StepError::Sys(what, e)
}

/// The child's entry point; returns only on failure (the exit status). With a
/// user namespace the child is the outer process (userns.rs), which returns 0
/// once PID 1 is cloned.
pub fn run(setup: &Setup<'_>, channel: &ChildEnd) -> isize {
    let result = if setup.policy.userns.is_some() {
        userns::outer(setup, channel).map(|()| 0)
    } else {
        prepare_and_exec(setup, channel).map(|never| match never {})
    };
    match result {
        Ok(code) => code,
        Err(StepError::Channel(_)) => 1,
        Err(e) => {
            // Nothing more can be done if the supervisor is gone.
            let _ = channel.send(&FromChild::Failed(e.to_string()));
            1
        }
    }
}

enum Never {}

/// The umask the child started with, set aside while the tree is built.
static CALLER_UMASK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0o022);

fn prepare_and_exec(setup: &Setup<'_>, channel: &ChildEnd) -> Result<Never, StepError> {
    let (plan, policy) = (setup.plan, setup.policy);
    let root = outer_setup(plan, policy)?;
    let mut out = mounts::Outputs::default();
    mounts::apply(&root, policy.mounts.ops(Phase::Outer), &mut out)?;

    // Sync point 1: in our cgroups now (the cgroup namespace is rooted where
    // we are when it is made), the network set up. Also the guard against an
    // early supervisor death: the channel then reads end-of-file.
    let ToChild::Go = channel.expect()?;
    crate::phase::mark("child-go");
    unshare(CloneFlags::CLONE_NEWCGROUP).map_err(sys("unshare cgroup namespace"))?;
    mounts::apply(&root, policy.mounts.ops(Phase::Inner), &mut out)?;
    pivot_and_exec(setup, channel, root, out)
}

/// The first steps of a start, in the host's user namespace: death signal,
/// the network namespace to join, our mounts made slaves, and the root
/// mounted on itself (ID-mapped with a user namespace that maps the root), so
/// that it can become / and the first half of the tree can be built on it.
/// That half (/dev, /run, /tmp, the user's binds) needs neither our cgroups
/// nor the network: it is built while the supervisor makes them.
fn outer_setup(plan: &Plan, policy: &Policy) -> Result<Root, StepError> {
    // While the tree is built, every mode is the one the table names: no
    // chmod after each node made. The caller's umask is back before the
    // pivot (the guest inherits it, and guest_files creates with it).
    let caller = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    CALLER_UMASK.store(caller.bits(), std::sync::atomic::Ordering::Relaxed);
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| StepError::Sys("PR_SET_PDEATHSIG", crate::sys::errno(e)))?;
    if let Some(path) = &plan.network.netns_path {
        // Still in the host's mount namespace: the path means what it meant
        // to the caller.
        let ns = std::fs::File::open(path).map_err(|e| {
            StepError::Init(format!("--network-namespace-path={}: {e}", path.display()))
        })?;
        nix::sched::setns(ns, CloneFlags::CLONE_NEWNET)
            .map_err(sys("joining --network-namespace-path"))?;
    }
    crate::sys::make_mounts_slaves().map_err(sys("make / a slave mount"))?;
    if !userns::mount_root(plan, policy)? {
        rootfs::layer(&plan.root, &policy.rootfs)?;
        mount(
            Some(&plan.root),
            &plan.root,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys("bind the container root onto itself"))?;
    } else {
        // The layer goes over the ID-mapped tree, so that its lower layer
        // shows the guest's owners.
        rootfs::layer(&plan.root, &policy.rootfs)?;
    }
    let root = Root::open_dir(&plan.root).map_err(sys("open the container root"))?;
    rootfs::protect(&root, &policy.rootfs)?;
    Ok(root)
}

/// The second half of a start, once the whole mount tree is built: pivot into
/// the root, lock the tree, and become the guest's init.
fn pivot_and_exec(
    setup: &Setup<'_>,
    channel: &ChildEnd,
    root: Root,
    out: mounts::Outputs,
) -> Result<Never, StepError> {
    let (plan, policy) = (setup.plan, setup.policy);
    crate::phase::mark("child-mounts");
    // Past sync point 1, so after the supervisor's move: the guest gets
    // the caller's CPUs back.
    if let Some(mask) = &setup.affinity {
        crate::sys::process::restore_affinity(mask).map_err(sys("restore the CPU affinity"))?;
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        CALLER_UMASK.load(std::sync::atomic::Ordering::Relaxed),
    ));
    nix::unistd::fchdir(root.fd().as_raw_fd()).map_err(sys("chdir into the root"))?;
    // pivot_root(".", ".") stacks the old root under the new one; detaching it
    // leaves only the container's tree, with no path back to the host.
    nix::unistd::pivot_root(".", ".").map_err(sys("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach the old root"))?;
    nix::unistd::chdir("/").map_err(sys("chdir /"))?;
    drop(root);
    lock::lock_mount_tree()?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SHARED,
        None::<&str>,
    )
    .map_err(sys("make / shared"))?;

    crate::phase::mark("child-pivot");
    nix::unistd::sethostname(&plan.hostname).map_err(sys("sethostname"))?;

    if let Some(early) = out.console {
        // Reopened by path: the fd from before the lock belongs to the old mount
        // namespace, and the guest should see its console as /dev/console.
        drop(early);
        let console = rustix::fs::open(
            "/dev/console",
            OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| StepError::Sys("open /dev/console", crate::sys::errno(e)))?;
        take_console(console)?;
    } else {
        // Still a session of its own, like any init.
        let _ = nix::unistd::setsid();
    }

    crate::phase::mark("child-setup");
    let argv = resolve_exec(plan, &policy.env)?;
    guest_files(plan);
    let env: Vec<CString> = policy
        .env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")))
        .collect::<Result<_, _>>()
        .map_err(|_| StepError::Init("environment contains a NUL byte".into()))?;

    // Kernel keyrings are not namespaced; without this the guest would share the
    // session keyring nixrun was started with (the host's). keyctl is filtered next.
    // In a nixrun guest the outer filter refuses keyctl already (EPERM), to us
    // and to everything below us, so there is no keyring to leave behind.
    match crate::sys::join_new_session_keyring() {
        Err(Errno::EPERM) if policy.outer_guard => {}
        r => r.map_err(sys("join a new session keyring"))?,
    }
    // Filters before capabilities: installing them without no_new_privs takes
    // CAP_SYS_ADMIN, which --drop-capability may remove; they do not filter the
    // prctl/capset calls that follow.
    let f = &policy.seccomp;
    let chained = |with_mount| {
        f.chained(with_mount)
            .map_err(|e| StepError::Init(format!("seccomp: {e}")))
    };
    let listener = match crate::sys::seccomp::install(&chained(true)?, true) {
        Ok(l) => l,
        // Inside a nixrun guest: its supervisor serves our guest (see
        // Policy::outer_guard); our mount part would only shadow its
        // listener.
        Err(Errno::EBUSY) if policy.outer_guard => {
            crate::sys::seccomp::install(&chained(false)?, false).map_err(StepError::Seccomp)?;
            None
        }
        Err(Errno::EBUSY) => return Err(StepError::Init(
            "installing the mount guard: another seccomp listener is already above this process (EBUSY) \
             and /run/host/container-manager does not say nixrun, whose supervisor would serve the guest instead; \
             refusing to run the guest without a mount guard"
                .into(),
        )),
        Err(e) => return Err(StepError::Seccomp(e)),
    };
    caps::apply(&policy.capabilities)?;
    crate::phase::mark("child-seccomp-caps");
    // Sync point 2: our ends of the console, notify socket and mount guard.
    channel.send(&FromChild::Ready(Endpoints {
        pty_master: out.pty_master,
        notify: out.notify,
        mount_listener: listener,
    }))?;

    reset_signals()?;
    close_inherited_fds(channel)?;
    crate::phase::mark("child-exec");
    let e = nix::unistd::execve(&argv[0], &argv, &env).unwrap_err();
    Err(StepError::Init(format!(
        "exec {}: {}",
        argv[0].to_string_lossy(),
        e.desc()
    )))
}

/// Files systemd guests expect, made in the guest's own tree (after pivot_root,
/// and only once the init was found, so that a failed start leaves the root as
/// it was). Failures only cost the guest a feature, so they are not fatal.
///
/// - An empty /etc/machine-id (booting only, where /etc exists): systemd then
///   writes the id from $container_uuid straight into it. A missing one sends it
///   down the first-boot path: a transient bind over /etc/machine-id that
///   systemd-machine-id-commit later unmounts in a private mount namespace, which
///   the locked tree refuses. NixOS's start script creates the empty file too.
/// - /var/log/journal (as nspawn does unless --link-journal=no): journald's
///   Storage=auto then keeps the journal on disk rather than in /run, where it
///   costs memory (8 MiB per NixOS-shaped guest in the scale benchmark) and is
///   lost at every stop.
fn guest_files(plan: &Plan) {
    use std::os::unix::fs::OpenOptionsExt;
    if matches!(plan.exec, Exec::Boot(_)) && Path::new("/etc").is_dir() {
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .custom_flags(libc::O_NOFOLLOW)
            .open("/etc/machine-id");
    }
    if plan.link_journal != crate::plan::LinkJournal::No {
        let _ = std::fs::create_dir_all("/var/log/journal");
    }
}

/// The pty becomes the controlling terminal of a new session and PID 1's stdio.
fn take_console(console: OwnedFd) -> Result<(), StepError> {
    nix::unistd::setsid().map_err(sys("setsid"))?;
    rustix::process::ioctl_tiocsctty(&console).map_err(|e| {
        StepError::Sys("make the console the controlling tty", crate::sys::errno(e))
    })?;
    for target in 0..=2 {
        nix::unistd::dup2(console.as_raw_fd(), target)
            .map_err(sys("dup the console onto stdio"))?;
    }
    Ok(())
}

/// Finds the program to exec inside the (already pivoted) container and checks it
/// is an executable file, so that a missing init is reported by name.
fn resolve_exec(plan: &Plan, env: &[(String, String)]) -> Result<Vec<CString>, StepError> {
    let (path, args): (PathBuf, &[String]) = match &plan.exec {
        Exec::Boot(args) => {
            let found = BOOT_INITS
                .iter()
                .map(Path::new)
                .find(|p| is_executable(p).is_ok());
            match found {
                Some(p) => (p.to_path_buf(), args),
                None => {
                    return Err(StepError::Init(format!(
                        "no init found in the container (tried {})",
                        BOOT_INITS.join(", ")
                    )))
                }
            }
        }
        Exec::Command(argv) => {
            let cmd = &argv[0];
            let path = if cmd.contains('/') {
                PathBuf::from(cmd)
            } else {
                let search = env
                    .iter()
                    .rev()
                    .find(|(k, _)| k == "PATH")
                    .map(|(_, v)| v.as_str())
                    .unwrap_or("");
                search
                    .split(':')
                    .filter(|d| d.starts_with('/'))
                    .map(|d| Path::new(d).join(cmd))
                    .find(|p| is_executable(p).is_ok())
                    .ok_or_else(|| {
                        StepError::Init(format!("command {cmd}: not found in the container's PATH"))
                    })?
            };
            if let Err(why) = is_executable(&path) {
                return Err(StepError::Init(format!(
                    "command {}: {why}",
                    path.display()
                )));
            }
            (path, &argv[1..])
        }
    };
    let mut argv = vec![CString::new(path.as_os_str().as_bytes()).expect("paths have no NUL")];
    for a in args {
        argv.push(
            CString::new(a.as_bytes())
                .map_err(|_| StepError::Init("argument contains a NUL byte".into()))?,
        );
    }
    Ok(argv)
}

fn is_executable(path: &Path) -> Result<(), &'static str> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("not found in the container"),
        Err(_) => Err("cannot be accessed in the container"),
        Ok(m) if m.is_dir() => Err("is a directory"),
        Ok(m) if !m.is_file() => Err("is not a regular file"),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err("is not executable"),
        Ok(_) => Ok(()),
    }
}

/// The supervisor blocks and ignores signals for its own loop; exec keeps both the
/// mask and ignored dispositions, and an init that starts with SIGTERM blocked
/// cannot be stopped.
fn reset_signals() -> Result<(), StepError> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(sys("reset the signal mask"))?;
    crate::sys::process::default_all_signals();
    Ok(())
}

/// Only stdio reaches the guest; fds the supervisor inherited from its caller are
/// marked close-on-exec (CVE-2024-21626 came from exactly such a leak).
fn close_inherited_fds(channel: &ChildEnd) -> Result<(), StepError> {
    crate::sys::fd::cloexec_from(3).map_err(sys("close_range"))?;
    // The channel is close-on-exec already; its closing tells the supervisor exec worked.
    debug_assert!(std::os::fd::AsFd::as_fd(channel).as_raw_fd() > 2);
    Ok(())
}
