//! Policy: what the container gets, as plain data computed from the plan and
//! the facts found at start-up. Nothing here touches the host; the child
//! (container/) and the supervisor (cgroup.rs, supervisor/) only enforce it.
//!
//! - `caps`: the capability bounding set;
//! - `seccomp`: the system call deny table and the three compiled filters;
//! - `devices`: the device rules and their cgroup2 BPF program;
//! - `env`: PID 1's environment;
//! - `mounts`: the mount table, with phases and conditions.

pub mod caps;
pub mod devices;
pub mod env;
pub mod mounts;
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
    /// Whether a missing mount guard of our own is expected: in a nixrun
    /// guest, the kernel refuses a second seccomp listener (EBUSY), and the
    /// outer supervisor's guard serves our guest's calls (it gets them: the
    /// innermost filter with a listener wins, and ours would have none).
    pub outer_guard: bool,
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
            outer_guard: facts.inside_nixrun,
        })
    }
}
