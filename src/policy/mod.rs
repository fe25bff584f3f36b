//! Policy: what the container gets, as plain data computed from the plan and
//! the facts found at start-up. Nothing here touches the host; the child
//! (container/) and the supervisor (cgroup.rs, supervisor/) only enforce it.
//!
//! - `caps`: the capability bounding set;
//! - `seccomp`: the system call deny table and the three compiled filters;
//! - `devices`: the device rules and their cgroup2 BPF program;
//! - `env`: PID 1's environment;
//! - `mounts`: the mount table, with phases and conditions;
//! - `rootfs`: what the root itself is made of (ephemeral, volatile, read-only).

pub mod caps;
pub mod devices;
pub mod env;
pub mod mounts;
pub mod rootfs;
pub mod seccomp;

use crate::plan::{Bind, Plan};
use std::path::PathBuf;

/// What the supervisor finds out at start-up, before the clone, that the policy
/// depends on.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The container's UUID: the guest's machine id, --uuid, or random.
    pub uuid: uuid::Uuid,
    /// The host's os-release, shown to the guest at /run/host/os-release.
    pub host_os_release: Option<PathBuf>,
    /// Its fields the container interface passes on as $container_host_*.
    pub host_os_pairs: Vec<(String, String)>,
    /// Binds the runtime adds to the user's (--link-journal=auto).
    pub extra_binds: Vec<Bind>,
    /// nixrun itself runs in a nixrun guest (its /run/host/container-manager
    /// says so): that guest's supervisor already serves the mounts and bpf(2)
    /// calls of everything below it, this container's guest included.
    pub inside_nixrun: bool,
    /// The container's user namespace, its range decided (and locked) at
    /// start-up; None without --private-users.
    pub userns: Option<Userns>,
}

/// A user namespace's range and how the root's files are owned in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Userns {
    /// The host uid (and gid) of the guest's root.
    pub shift: u32,
    pub range: u32,
    /// The root directory is bound ID-mapped: on-disk ids 0..range are the
    /// guest's 0..range, so the guest's root writes files as on-disk 0.
    pub map_root: bool,
}

impl Userns {
    /// The host's id of the guest's id `id` (as the kernel sees it, a kuid).
    pub fn host_id(&self, id: u32) -> u32 {
        self.shift + id
    }

    /// The id a file owned by the guest's `id` has on the root's disk.
    pub fn disk_id(&self, id: u32) -> u32 {
        if self.map_root {
            id
        } else {
            self.shift + id
        }
    }
}

impl Facts {
    #[cfg(test)]
    pub fn for_tests() -> Facts {
        Facts {
            uuid: uuid::Uuid::from_u128(1),
            host_os_release: Some("/etc/os-release".into()),
            host_os_pairs: vec![],
            extra_binds: vec![],
            inside_nixrun: false,
            userns: None,
        }
    }
}

/// Everything the container is given and denied.
#[derive(Debug, Clone)]
pub struct Policy {
    pub capabilities: ::caps::CapsHashSet,
    pub seccomp: seccomp::Filters,
    pub devices: Vec<devices::Rule>,
    pub env: Vec<(String, String)>,
    pub mounts: mounts::Table,
    pub rootfs: rootfs::RootFs,
    /// Whether a missing mount guard of our own is expected: in a nixrun
    /// guest, the kernel refuses a second seccomp listener (EBUSY), and the
    /// outer supervisor's guard serves our guest's calls (it gets them: the
    /// innermost filter with a listener wins, and ours would have none).
    pub outer_guard: bool,
    /// The container's user namespace (the outer phase runs outside it).
    pub userns: Option<Userns>,
}

impl Policy {
    pub fn compute(plan: &Plan, facts: &Facts) -> Result<Policy, seccomp::SeccompError> {
        let mut binds = plan.binds.clone();
        binds.extend(facts.extra_binds.iter().cloned());
        Ok(Policy {
            capabilities: caps::retained(&plan.caps, plan.network.private),
            seccomp: seccomp::filters(&seccomp::denied(&plan.syscalls))?,
            devices: devices::rules(&binds),
            env: env::guest_env(plan, facts),
            mounts: mounts::table(plan, facts),
            rootfs: rootfs::of(plan, facts.userns),
            outer_guard: facts.inside_nixrun,
            userns: facts.userns,
        })
    }
}
