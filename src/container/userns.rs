//! A start with a user namespace, in two processes, as nspawn's outer and
//! inner child:
//!
//!  1. The outer process, cloned by the supervisor into a new mount namespace
//!     only, is still the host's root: it mounts the root (ID-mapped where the
//!     range maps it, see idmap.rs) and builds the outer half of the tree as
//!     the host's root would — tmpfs mounts given to the guest's root, device
//!     nodes, ID-mapped binds, sysfs for a network namespace that is not the
//!     guest's — giving what it creates to the guest's root.
//!  2. It clones PID 1 with CLONE_PARENT, so that the supervisor is its
//!     parent, into new user, mount, PID, UTS and IPC namespaces (and network,
//!     for a private one): every namespace PID 1 lives in belongs to the
//!     guest's user namespace, so the guest's root may reboot (CAP_SYS_BOOT
//!     over its PID namespace), set its hostname, mount its /proc. Its mount
//!     namespace is a copy made for a less privileged owner: every mount of
//!     the outer half is locked there (no unmounting, no making a read-only
//!     bind writable). It tells the supervisor PID 1's pid and exits.
//!  3. The supervisor writes PID 1's uid and gid maps, makes its cgroups, and
//!     says Go (sync point 1).
//!  4. PID 1 becomes root in its namespace, unshares its cgroup namespace,
//!     binds the root onto itself once more (pivot_root refuses a locked
//!     mount; the new one is not, the mounts below it stay locked) and builds
//!     the inner half there — procfs while the host's /proc is still visible
//!     (the kernel's "fully visible" rule for a user namespace's procfs) — and
//!     goes on as without a user namespace: pivot, lock, exec.

use super::idmap::{self, MapStep};
use super::root::Root;
use super::{mounts, sys, Never, Setup, StepError};
use crate::plan::Plan;
use crate::policy::mounts::Phase;
use crate::policy::Policy;
use crate::protocol::{ChildEnd, FromChild, ToChild};
use nix::sched::{unshare, CloneFlags};
use nix::unistd::{Gid, Uid};
use std::os::fd::{AsFd, AsRawFd};

/// Mounts the root ID-mapped onto itself when the range maps it; false
/// otherwise (the caller binds it plainly).
pub(super) fn mount_root(plan: &Plan, policy: &Policy) -> Result<bool, StepError> {
    let Some(u) = policy.userns.filter(|u| u.map_root) else {
        return Ok(false);
    };
    if policy.rootfs.ephemeral.is_some() {
        // The supervisor mapped the tree under --ephemeral's overlay
        // (supervisor/ephemeral.rs); an overlay cannot be mapped again.
        return Ok(false);
    }
    idmap::map_onto_itself(&plan.root, u.shift, u.range).map_err(|(step, e)| match step {
        MapStep::Userns => StepError::Sys("a user namespace for the root's ID mapping", e),
        MapStep::Open => StepError::Sys("open the container root", e),
        MapStep::Idmap => StepError::Init(format!(
            "ID-mapping the container root {} ({}): {}",
            plan.root.display(),
            idmap::fs_type(&plan.root),
            e.desc()
        )),
        MapStep::Mount => StepError::Sys("mount the ID-mapped root", e),
    })?;
    Ok(true)
}

/// The outer process (1 and 2 above); returns once PID 1 is cloned.
pub(super) fn outer(setup: &Setup<'_>, channel: &ChildEnd) -> Result<(), StepError> {
    let (plan, policy) = (setup.plan, setup.policy);
    let u = policy.userns.expect("a user namespace");
    let guest_root = u.host_id(0);
    let root = super::outer_setup(plan, policy)?.with_owner(Some((guest_root, guest_root)));
    let mut out = mounts::Outputs::default();
    mounts::apply(&root, policy.mounts.ops(Phase::Outer), &mut out)?;
    // PID 1 reaches its root through its working directory, which the clone
    // carries into its copy of our mount namespace: by path, the guest's root
    // could not pass a host directory above the root that only the host's
    // root may enter (nspawn's /var/lib/machines is 0700).
    nix::unistd::fchdir(root.fd().as_raw_fd()).map_err(sys("chdir into the container root"))?;
    drop(root);

    let mut flags = CloneFlags::CLONE_PARENT
        | CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    // A network namespace of the guest's own belongs to its user namespace
    // (the supervisor puts links into it, as into any other). A joined one
    // (--network-namespace-path) was joined by us, and is inherited.
    if plan.network.private && plan.network.netns_path.is_none() {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    let mut out = Some(out);
    // Written only by PID 1, in its copy of our memory.
    let mut stack = vec![0u8; 1 << 20];
    let pid1 = Box::new(|| {
        let out = out.take().expect("PID 1 runs once");
        match inner(setup, channel, out) {
            Ok(never) => match never {},
            Err(StepError::Channel(_)) => 1,
            Err(e) => {
                let _ = channel.send(&FromChild::Failed(e.to_string()));
                1
            }
        }
    });
    let pid = crate::sys::process::clone_child(pid1, &mut stack, flags)
        .map_err(sys("clone the container into its user namespace"))?;
    channel.send(&FromChild::Inner(pid.as_raw()))?;
    Ok(())
}

/// PID 1 in its namespaces (4 above), until it execs the guest's init.
fn inner(
    setup: &Setup<'_>,
    channel: &ChildEnd,
    mut out: mounts::Outputs,
) -> Result<Never, StepError> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| StepError::Sys("PR_SET_PDEATHSIG", crate::sys::errno(e)))?;
    // Sync point 1: the maps are written, we are in our cgroups.
    let ToChild::Go = channel.expect()?;
    crate::phase::mark("child-go");
    let root_id = (Uid::from_raw(0), Gid::from_raw(0));
    nix::unistd::setresgid(root_id.1, root_id.1, root_id.1)
        .and_then(|()| nix::unistd::setgroups(&[]))
        .and_then(|()| nix::unistd::setresuid(root_id.0, root_id.0, root_id.0))
        .map_err(sys("become root in the user namespace"))?;
    // The kernel clears the death signal when a process changes its
    // credentials: without it again, a SIGKILLed supervisor would leave the
    // whole guest running, orphaned (seen: the guest's systemd reparented to
    // the host's PID 1). A supervisor that died before this line is seen at
    // sync point 2, whose send then fails.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| StepError::Sys("PR_SET_PDEATHSIG", crate::sys::errno(e)))?;
    // Changing ids made us non-dumpable, and with a memory the host's root
    // owns (we have not exec'd) that would close our own /proc files to us,
    // and those of the namespace holder that locks the tree. No guest process
    // exists yet; exec decides dumpability afresh.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::Dumpable)
        .map_err(|e| StepError::Sys("PR_SET_DUMPABLE", crate::sys::errno(e)))?;
    unshare(CloneFlags::CLONE_NEWCGROUP).map_err(sys("unshare cgroup namespace"))?;
    // The root (our working directory) cloned with everything below it and
    // attached onto itself: the clone's top mount is not locked.
    let here = rustix::fs::CWD;
    let tree = crate::sys::clone_tree(here, true).map_err(sys("clone the container root"))?;
    crate::sys::attach_tree(tree.as_fd(), here).map_err(sys(
        "bind the container root onto itself in the user namespace",
    ))?;
    let root = Root::new(tree);
    mounts::apply(&root, setup.policy.mounts.ops(Phase::Inner), &mut out)?;
    super::pivot_and_exec(setup, channel, root, out)
}
