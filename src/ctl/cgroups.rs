//! Where the leader's cgroups are on this host, so that a process entering a
//! machine can move into them before anything else: the device policy (the
//! cgroup2 BPF program or the v1 devices controller) and the task limit apply
//! per cgroup, and a process outside them could mknod and open a host disk.
//!
//! /proc/LEADER/cgroup names each hierarchy the leader is in (by its v1
//! controllers, or 0:: for cgroup2) and its path there; /proc/self/mountinfo
//! says where on the host each hierarchy is mounted, and from which of its
//! directories (the mount's root). Both are in this process's cgroup
//! namespace, so the paths line up.

use std::path::PathBuf;

/// A hierarchy, as /proc/PID/cgroup names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    V2,
    /// Its controllers, or "name=…" for a named hierarchy.
    V1(Vec<String>),
}

impl Hierarchy {
    /// Whether the runtime enforces policy through this hierarchy: a process
    /// that cannot be placed in it must not enter the machine.
    pub fn carries_policy(&self) -> bool {
        match self {
            Hierarchy::V2 => true,
            Hierarchy::V1(c) => c.iter().any(|c| c == "devices" || c == "pids"),
        }
    }

    fn describe(&self) -> String {
        match self {
            Hierarchy::V2 => "cgroup2".into(),
            Hierarchy::V1(c) => format!("the {} hierarchy", c.join(",")),
        }
    }
}

/// One line of /proc/PID/cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub hierarchy: Hierarchy,
    pub path: String,
}

pub fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let id = f.next()?;
            let controllers = f.next()?;
            let path = f.next()?;
            let hierarchy = if id == "0" && controllers.is_empty() {
                Hierarchy::V2
            } else {
                Hierarchy::V1(
                    controllers
                        .split(',')
                        .filter(|c| !c.is_empty())
                        .map(String::from)
                        .collect(),
                )
            };
            Some(Membership {
                hierarchy,
                path: path.to_string(),
            })
        })
        .collect()
}

/// A cgroup file system mounted on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub v2: bool,
    /// The super options (for v1: its controllers or name=, among others).
    pub options: Vec<String>,
    /// The directory of the hierarchy mounted there.
    pub root: String,
    pub mount_point: PathBuf,
}

pub fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut r = right.split(' ');
            let fstype = r.next()?;
            let _source = r.next()?;
            let options = r.next()?;
            let v2 = match fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            let f: Vec<&str> = left.split(' ').collect();
            Some(CgroupMount {
                v2,
                options: options.split(',').map(String::from).collect(),
                root: crate::cgroup::unescape_mountinfo(f.get(3)?),
                mount_point: PathBuf::from(crate::cgroup::unescape_mountinfo(f.get(4)?)),
            })
        })
        .collect()
}

/// `path` relative to a mount whose root is `root`, if it lies below it.
fn below<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    let root = root.trim_end_matches('/');
    let rest = path.strip_prefix(root)?;
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix('/')
    }
}

/// The host directory of one membership, if this host has it mounted.
pub fn directory(m: &Membership, mounts: &[CgroupMount]) -> Option<PathBuf> {
    mounts
        .iter()
        .filter(|mt| match &m.hierarchy {
            Hierarchy::V2 => mt.v2,
            Hierarchy::V1(c) => !mt.v2 && !c.is_empty() && c.iter().all(|c| mt.options.contains(c)),
        })
        .find_map(|mt| Some(mt.mount_point.join(below(&m.path, &mt.root)?)))
}

/// The cgroup directories (their cgroup.procs is where to write a pid) that
/// hold the leader, from the text of /proc/LEADER/cgroup, of our own
/// /proc/self/cgroup and of our mountinfo. A hierarchy that carries policy
/// must be found, unless we are in the leader's cgroup there already (a
/// machine inside a nixrun guest, whose v1 hierarchies the guest does not
/// mount but all its processes share); others this host does not mount are
/// left out (nothing could move a process there).
pub fn leader_directories(
    proc_cgroup: &str,
    own_cgroup: &str,
    mountinfo: &str,
) -> Result<Vec<PathBuf>, String> {
    let mounts = parse_mountinfo(mountinfo);
    let mut out = Vec::new();
    let members = parse_proc_cgroup(proc_cgroup);
    let own = parse_proc_cgroup(own_cgroup);
    if !members.iter().any(|m| m.hierarchy == Hierarchy::V2) {
        return Err("the leader is in no cgroup2 hierarchy".into());
    }
    for m in members {
        // A path above our cgroup namespace's root ("/../x") is out of reach.
        if m.path.split('/').any(|c| c == "..") || !m.path.starts_with('/') {
            return Err(format!(
                "the leader's cgroup {} in {} is outside this process's cgroup namespace",
                m.path,
                m.hierarchy.describe()
            ));
        }
        match directory(&m, &mounts) {
            Some(d) => out.push(d),
            None if own.contains(&m) => {}
            None if m.hierarchy.carries_policy() => {
                return Err(format!(
                    "the leader's cgroup {} in {} is not mounted on this host",
                    m.path,
                    m.hierarchy.describe()
                ))
            }
            None => {}
        }
    }
    Ok(out)
}

/// Moves `pid` into each directory, as a guest process would be.
pub fn join(dirs: &[PathBuf], pid: u32) -> Result<(), String> {
    use std::io::Write;
    for d in dirs {
        let procs = d.join("cgroup.procs");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&procs)
            .and_then(|mut f| f.write_all(pid.to_string().as_bytes()))
            .map_err(|e| format!("joining the machine's cgroup {}: {e}", d.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // A hybrid host (this project's CI), the machine started without --keep-unit.
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/nixrun-web
8:pids:/nixrun-web
7:blkio:/
6:freezer:/
5:devices:/nixrun-web
4:memory:/process_api/e27c
3:cpuset:/
2:cpu,cpuacct:/
0::/nixrun-web/payload/init.scope
";
    const HYBRID_MOUNTINFO: &str = "\
23 1 0:21 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:5 - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn a_hybrid_host() {
        let dirs = leader_directories(HYBRID_CGROUP, "0::/\n", HYBRID_MOUNTINFO).unwrap();
        let want: Vec<PathBuf> = [
            "/sys/fs/cgroup/systemd/nixrun-web",
            "/sys/fs/cgroup/pids/nixrun-web",
            "/sys/fs/cgroup/blkio",
            "/sys/fs/cgroup/freezer",
            "/sys/fs/cgroup/devices/nixrun-web",
            "/sys/fs/cgroup/memory/process_api/e27c",
            "/sys/fs/cgroup/cpuset",
            "/sys/fs/cgroup/cpu,cpuacct",
            "/sys/fs/cgroup/unified/nixrun-web/payload/init.scope",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        assert_eq!(dirs, want);
    }

    #[test]
    fn a_unified_host_with_a_unit() {
        let cg = "0::/system.slice/container@web.service/payload/init.scope\n";
        let mi = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
        assert_eq!(
            leader_directories(cg, "0::/\n", mi).unwrap(),
            [PathBuf::from(
                "/sys/fs/cgroup/system.slice/container@web.service/payload/init.scope"
            )]
        );
    }

    #[test]
    fn mounts_of_a_subtree_and_escaped_mount_points() {
        // cgroup2 mounted from a subdirectory (as in a container), at a path with a space.
        let mi = "50 23 0:26 /outer /run/my\\040cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            leader_directories("0::/outer/nixrun-web/payload\n", "0::/\n", mi).unwrap(),
            [PathBuf::from("/run/my cgroup/nixrun-web/payload")]
        );
        assert_eq!(
            leader_directories("0::/outer\n", "0::/\n", mi).unwrap(),
            [PathBuf::from("/run/my cgroup")]
        );
        // "/outerx" is not below "/outer".
        assert!(leader_directories("0::/outerx/a\n", "0::/\n", mi).is_err());
    }

    #[test]
    fn what_cannot_be_joined_is_refused() {
        let v2 = "41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        // Outside our cgroup namespace.
        let e = leader_directories("0::/../../other/payload\n", "0::/\n", v2).unwrap_err();
        assert!(e.contains("outside"), "{e}");
        // A policy hierarchy that is not mounted.
        let e = leader_directories("5:devices:/nixrun-web\n0::/x\n", "0::/\n", v2).unwrap_err();
        assert!(e.contains("devices"), "{e}");
        let e = leader_directories("8:pids:/p\n0::/x\n", "0::/\n", v2).unwrap_err();
        assert!(e.contains("pids"), "{e}");
        // An unmounted controller without policy is skipped.
        assert_eq!(
            leader_directories("4:memory:/m\n0::/x\n", "0::/\n", v2).unwrap(),
            [PathBuf::from("/sys/fs/cgroup/unified/x")]
        );
        // Already where the leader is (a machine in a nixrun guest, whose
        // processes all share the v1 cgroups the guest does not mount).
        let own = "8:pids:/\n5:devices:/\n0::/elsewhere\n";
        assert_eq!(
            leader_directories("8:pids:/\n5:devices:/\n0::/x\n", own, v2).unwrap(),
            [PathBuf::from("/sys/fs/cgroup/unified/x")]
        );
        let e = leader_directories("8:pids:/p\n0::/x\n", own, v2).unwrap_err();
        assert!(e.contains("pids"), "{e}");
        // No cgroup2 at all.
        assert!(leader_directories("4:memory:/m\n", "0::/\n", v2).is_err());
        assert!(leader_directories("0::/x\n", "0::/\n", "").is_err());
    }

    #[test]
    fn v1_lines_match_their_own_hierarchy_only() {
        let m = parse_proc_cgroup("2:cpu,cpuacct:/a\n9:name=systemd:/b:c\n");
        assert_eq!(
            m[0].hierarchy,
            Hierarchy::V1(vec!["cpu".into(), "cpuacct".into()])
        );
        assert_eq!(m[1].path, "/b:c", "a path may hold colons");
        let mounts = parse_mountinfo(HYBRID_MOUNTINFO);
        assert_eq!(
            directory(&m[1], &mounts),
            Some(PathBuf::from("/sys/fs/cgroup/systemd/b:c"))
        );
        let devices = Membership {
            hierarchy: Hierarchy::V1(vec!["devices".into()]),
            path: "/".into(),
        };
        assert_eq!(
            directory(&devices, &mounts),
            Some(PathBuf::from("/sys/fs/cgroup/devices"))
        );
    }
}
