//! The container's cgroup on the host, on unified (cgroup2 only), hybrid (v1
//! controllers plus cgroup2 at /sys/fs/cgroup/unified) and systemd's named v1
//! hierarchy.
//!
//! The guest always gets cgroup2: the container's cgroup in the v2 hierarchy
//! becomes the root of its cgroup namespace, mounted at its /sys/fs/cgroup. The v1
//! controllers are left as inherited (the guest stays in the supervisor's v1
//! cgroups and cannot see them); on hybrid hosts the named `systemd` hierarchy gets
//! the same layout as v2, because that is where a hybrid host's systemd tracks the
//! unit's processes.
//!
//! Layout (as nspawn's): with --keep-unit, inside the caller's cgroup (the unit's,
//! delegated by Delegate=yes): `<unit>/payload` for the guest and
//! `<unit>/supervisor` for nixrun, because cgroup2 forbids processes in a cgroup
//! whose controllers are delegated further down. Without it: `<own>/nixrun/<machine>`.
//!
//! cgroups-rs is not used here: it assumes cgroup2 is mounted at /sys/fs/cgroup and
//! does not know the hybrid `unified` mount nor named v1 hierarchies. cgroupfs is a
//! handful of plain files; this module is the little that is needed.

use std::fs;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("no cgroup2 hierarchy is mounted on the host (nixrun needs a unified or hybrid cgroup layout)")]
    NoCgroup2,
    #[error("reading {0}: {1}")]
    Read(PathBuf, #[source] io::Error),
    #[error("this process is in no cgroup of the {0} hierarchy (see /proc/self/cgroup)")]
    NotInHierarchy(String),
    #[error("cgroup {path} already has processes: machine {machine} is running, or (with --keep-unit) another container runs in this unit")]
    AlreadyRunning { machine: String, path: PathBuf },
    #[error("creating cgroup {0}: {1}")]
    Create(PathBuf, #[source] io::Error),
    #[error("moving process {pid} into cgroup {path}: {err}")]
    Attach {
        pid: u32,
        path: PathBuf,
        #[source]
        err: io::Error,
    },
    #[error("removing stale cgroup {0}: {1}")]
    Remove(PathBuf, #[source] io::Error),
}

/// One mounted hierarchy we manage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted on the host.
    pub mount: PathBuf,
    /// cgroup2, or the named v1 `systemd` hierarchy.
    pub v2: bool,
    /// The supervisor's own cgroup in it, as a directory on the host.
    pub own: PathBuf,
}

/// The hierarchies to manage, from /proc/self/mountinfo and /proc/self/cgroup.
pub fn discover(mountinfo: &str, proc_cgroup: &str) -> Result<Vec<Hierarchy>, CgroupError> {
    let mut v2_own = None;
    let mut systemd_own = None;
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrl), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && ctrl.is_empty() {
            v2_own = Some(path.to_string());
        } else if ctrl == "name=systemd" {
            systemd_own = Some(path.to_string());
        }
    }
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        // id parent maj:min root mountpoint opts [optional...] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 {
            continue;
        }
        let (mount_root, mount_point) = (unescape(l[3]), unescape(l[4]));
        let (fstype, superopts) = (r[0], r[2]);
        let (v2, own) = match fstype {
            "cgroup2" => (true, &v2_own),
            "cgroup" if superopts.split(',').any(|o| o == "name=systemd") => (false, &systemd_own),
            _ => continue,
        };
        if out.iter().any(|h: &Hierarchy| h.v2 == v2) {
            continue; // the same hierarchy mounted twice; the first mount will do
        }
        let own = own.as_ref().ok_or_else(|| {
            CgroupError::NotInHierarchy(if v2 { "cgroup2" } else { "name=systemd" }.into())
        })?;
        // Paths in /proc/self/cgroup are relative to our cgroup namespace, as is the
        // mount's root; a mount of a subtree only shows what is below its root.
        let rel = Path::new(own).strip_prefix(&mount_root).map_err(|_| {
            CgroupError::NotInHierarchy(format!("{fstype} (mounted subtree {mount_root})"))
        })?;
        out.push(Hierarchy {
            mount: PathBuf::from(&mount_point),
            v2,
            own: Path::new(&mount_point).join(rel),
        });
    }
    if !out.iter().any(|h| h.v2) {
        return Err(CgroupError::NoCgroup2);
    }
    // v2 first: it is the one the guest sees and the one whose emptiness we trust.
    out.sort_by_key(|h| !h.v2);
    Ok(out)
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push(((b[i + 1] - b'0') << 6) | ((b[i + 2] - b'0') << 3) | (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where things go in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub hierarchy: Hierarchy,
    /// The container's cgroup.
    pub container: PathBuf,
    /// With --keep-unit: where the supervisor moves, and the unit cgroup it leaves.
    pub supervisor: Option<(PathBuf, PathBuf)>,
}

pub fn placement(h: &Hierarchy, machine: &str, keep_unit: bool) -> Placement {
    if keep_unit {
        // After a restart within the same unit we may already sit in "supervisor".
        let unit = if h.own.file_name().is_some_and(|n| n == "supervisor") {
            h.own.parent().unwrap_or(&h.own).to_path_buf()
        } else {
            h.own.clone()
        };
        Placement {
            hierarchy: h.clone(),
            container: unit.join("payload"),
            supervisor: Some((unit.join("supervisor"), unit)),
        }
    } else {
        Placement {
            hierarchy: h.clone(),
            container: h.own.join("nixrun").join(machine),
            supervisor: None,
        }
    }
}

/// The container's cgroups, created; removed by `remove()`.
#[derive(Debug)]
pub struct Cgroups {
    placements: Vec<Placement>,
    machine: String,
}

impl Cgroups {
    /// Discovers the host's layout and computes the paths; touches nothing.
    pub fn plan(machine: &str, keep_unit: bool) -> Result<Cgroups, CgroupError> {
        let mi = read("/proc/self/mountinfo")?;
        let pc = read("/proc/self/cgroup")?;
        let placements = discover(&mi, &pc)?
            .iter()
            .map(|h| placement(h, machine, keep_unit))
            .collect();
        Ok(Cgroups {
            placements,
            machine: machine.to_string(),
        })
    }

    /// Removes what a crashed run left behind, refuses if the machine is running,
    /// moves the supervisor aside (--keep-unit) and creates the container's cgroups.
    pub fn create(&self) -> Result<(), CgroupError> {
        for p in &self.placements {
            if p.container.exists() {
                if has_processes(&p.container) {
                    return Err(CgroupError::AlreadyRunning {
                        machine: self.machine.clone(),
                        path: p.container.clone(),
                    });
                }
                // The previous supervisor died without cleaning up (its guest died
                // with it: PDEATHSIG). Start from an empty cgroup, not its leftovers.
                remove_tree(&p.container)
                    .map_err(|e| CgroupError::Remove(p.container.clone(), e))?;
            }
        }
        for p in &self.placements {
            if let Some((sup, _)) = &p.supervisor {
                mkdir(sup)?;
                attach_pid(sup, 0)?;
            }
            mkdir_all(&p.container)?;
            if p.hierarchy.v2 {
                if let Some((_, unit)) = &p.supervisor {
                    delegate_controllers(unit);
                }
            }
        }
        Ok(())
    }

    pub fn attach(&self, pid: u32) -> Result<(), CgroupError> {
        for p in &self.placements {
            attach_pid(&p.container, pid)?;
        }
        Ok(())
    }

    /// Removes the container's cgroups (the guest's own sub-cgroups included). Once
    /// the container's PID 1 is reaped, the kernel has killed and reaped every
    /// other process of its pid namespace, so the tree is empty.
    pub fn remove(&self) -> Vec<CgroupError> {
        let mut errors = Vec::new();
        for p in &self.placements {
            if let Err(e) = remove_tree(&p.container) {
                if e.kind() != ErrorKind::NotFound {
                    errors.push(CgroupError::Remove(p.container.clone(), e));
                }
            }
            if let Some((sup, unit)) = &p.supervisor {
                // Back into the unit's cgroup, so that "supervisor" can go too. This
                // fails if the unit's controllers are delegated (no processes in inner
                // cgroups then); systemd removes the unit's cgroup when it ends anyway.
                if attach_pid(unit, 0).is_ok() {
                    let _ = fs::remove_dir(sup);
                }
            } else if let Some(parent) = p.container.parent() {
                // The shared "nixrun" parent goes when its last machine goes.
                let _ = fs::remove_dir(parent);
            }
        }
        errors
    }
}

fn read(path: &str) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(|e| CgroupError::Read(path.into(), e))
}

fn mkdir(path: &Path) -> Result<(), CgroupError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(CgroupError::Create(path.to_path_buf(), e)),
    }
}

fn mkdir_all(path: &Path) -> Result<(), CgroupError> {
    fs::create_dir_all(path).map_err(|e| CgroupError::Create(path.to_path_buf(), e))
}

/// pid 0 means the writing process itself.
fn attach_pid(cgroup: &Path, pid: u32) -> Result<(), CgroupError> {
    fs::write(cgroup.join("cgroup.procs"), pid.to_string()).map_err(|err| CgroupError::Attach {
        pid,
        path: cgroup.to_path_buf(),
        err,
    })
}

/// Enables every controller the unit has for its children, so the guest can use
/// them. Best effort, as in nspawn: a controller that cannot be enabled (e.g. a
/// threaded one) must not prevent the guest from booting.
fn delegate_controllers(unit: &Path) {
    let Ok(avail) = fs::read_to_string(unit.join("cgroup.controllers")) else {
        return;
    };
    for c in avail.split_whitespace() {
        let _ = fs::write(unit.join("cgroup.subtree_control"), format!("+{c}"));
    }
}

/// Whether any cgroup in the tree has a process.
pub fn has_processes(dir: &Path) -> bool {
    let own = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    if !own.trim().is_empty() {
        return true;
    }
    subdirs(dir).iter().any(|d| has_processes(d))
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// rmdir, deepest first. cgroupfs directories hold only control files, which go
/// with their cgroup; an rmdir right after the last process left can still see the
/// cgroup busy for a moment, hence the short retries.
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    for sub in subdirs(dir) {
        remove_tree(&sub)?;
    }
    let mut delay = Duration::from_millis(1);
    loop {
        match fs::remove_dir(dir) {
            Err(e)
                if e.raw_os_error() == Some(libc::EBUSY) && delay < Duration::from_millis(500) =>
            {
                std::thread::sleep(delay);
                delay *= 2;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
25 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:9 - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/memory rw,nosuid shared:12 - cgroup cgroup rw,memory
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/system.slice/container@foo.service
4:memory:/system.slice/container@foo.service
0::/system.slice/container@foo.service
";

    #[test]
    fn hybrid_hosts_manage_cgroup2_and_the_systemd_hierarchy() {
        let h = discover(HYBRID_MOUNTINFO, HYBRID_CGROUP).unwrap();
        assert_eq!(
            h,
            vec![
                Hierarchy {
                    mount: "/sys/fs/cgroup/unified".into(),
                    v2: true,
                    own: "/sys/fs/cgroup/unified/system.slice/container@foo.service".into(),
                },
                Hierarchy {
                    mount: "/sys/fs/cgroup/systemd".into(),
                    v2: false,
                    own: "/sys/fs/cgroup/systemd/system.slice/container@foo.service".into(),
                },
            ]
        );
    }

    #[test]
    fn unified_hosts() {
        let mi = "40 1 0:30 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = discover(mi, "0::/machine.slice/container@web.service/supervisor\n").unwrap();
        assert_eq!(h.len(), 1);
        let p = placement(&h[0], "web", true);
        assert_eq!(
            p.container,
            PathBuf::from("/sys/fs/cgroup/machine.slice/container@web.service/payload")
        );
        assert_eq!(
            p.supervisor,
            Some((
                "/sys/fs/cgroup/machine.slice/container@web.service/supervisor".into(),
                "/sys/fs/cgroup/machine.slice/container@web.service".into()
            ))
        );
        let p = placement(&h[0], "web", false);
        assert_eq!(
            p.container,
            PathBuf::from(
                "/sys/fs/cgroup/machine.slice/container@web.service/supervisor/nixrun/web"
            )
        );
    }

    #[test]
    fn legacy_only_hosts_are_refused() {
        let mi = "33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert!(matches!(
            discover(mi, "4:memory:/\n"),
            Err(CgroupError::NoCgroup2)
        ));
    }

    #[test]
    fn mount_roots_and_escapes() {
        // Inside a cgroup namespace the mount's root and our path are both relative.
        let mi = "40 1 0:30 /payload /sys/fs\\040cgroup rw - cgroup2 cgroup2 rw\n";
        let h = discover(mi, "0::/payload/init.scope\n").unwrap();
        assert_eq!(h[0].own, PathBuf::from("/sys/fs cgroup/init.scope"));
    }

    #[test]
    fn removes_trees_deepest_first() {
        let d = std::env::temp_dir().join(format!("nixrun-cg-test-{}", std::process::id()));
        fs::create_dir_all(d.join("a/b/c")).unwrap();
        fs::create_dir_all(d.join("d")).unwrap();
        assert!(!has_processes(&d));
        remove_tree(&d).unwrap();
        assert!(!d.exists());
    }
}
