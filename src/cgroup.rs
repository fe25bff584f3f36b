//! The container's cgroups on the host: unified hosts (cgroup2 only), hybrid ones
//! (v1 controllers, cgroup2 at /sys/fs/cgroup/unified, systemd's named v1
//! hierarchy) and legacy ones with cgroup2 mounted somewhere.
//!
//! Layout, in every mounted hierarchy:
//!
//!   <container>/payload      the guest; its cgroup namespace starts here
//!   <container>/supervisor   nixrun itself (--keep-unit only)
//!
//! except in the v1 hierarchies of a container nixrun makes itself (no
//! --keep-unit), where the guest is in <container>: it cannot see v1.
//!
//! where <container> is the caller's cgroup with --keep-unit (the unit's, which
//! systemd delegates with Delegate=yes; as in nspawn, nixrun moves out of it
//! because cgroup2 forbids processes in a cgroup whose controllers are delegated
//! further down), and `<own cgroup>/nixrun-<machine>` otherwise (a sibling of
//! other machines started from there, not below a shared parent: that parent
//! would be made and removed with every start, two more cgroup operations per
//! hierarchy, and a start racing the removal by a stop of another machine
//! could lose its mkdir). Whatever limits
//! the host sets on <container> sit above the guest's namespace root: invisible to
//! the guest and beyond its reach.
//!
//! The guest sees only cgroup2, rooted at its payload. Of the v1 hierarchies of
//! a hybrid or legacy host three are managed (MANAGED_V1): systemd's named
//! one, where such a host's systemd tracks the unit's processes, the devices
//! controller, which enforces the device policy there, and pids, which carries
//! the container's task limit there. The other controllers stay
//! as the supervisor's: the guest cannot mount a v1 hierarchy to look at them (the
//! mount guard refuses it, see CVE-2022-0492), and each managed hierarchy costs a
//! start some 0.15 ms of cgroup creation and removal. Where the v1 devices
//! controller exists it carries the device policy; elsewhere a BPF program on
//! the cgroup2 payload does (devices.rs).
//!
//! cgroups-rs is not used here: it assumes cgroup2 is mounted at /sys/fs/cgroup and
//! does not know the hybrid `unified` mount nor named v1 hierarchies. cgroupfs is a
//! handful of plain files; this module is the little that is needed. Its file
//! operations go through `CgroupFs`, so that create and remove can be tested
//! against a temporary directory standing in for the hierarchies.

use crate::policy::devices::{self, Rule};
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
    #[error("another container runs in this unit: its cgroup {0} is locked by another nixrun (--keep-unit)")]
    UnitBusy(PathBuf),
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
    #[error("device policy on {0}: {1}")]
    Devices(PathBuf, String),
    #[error("giving {0} to the guest's root: {1}")]
    Chown(PathBuf, #[source] io::Error),
}

/// What of its cgroup a guest in a user namespace needs to own to manage its
/// subtree (systemd's cg_set_access list, as nspawn chowns them): make
/// sub-cgroups, move processes, delegate controllers.
pub const GUEST_OWNED: &[&str] = &[
    "",
    "cgroup.procs",
    "cgroup.threads",
    "cgroup.subtree_control",
    "memory.oom.group",
    "memory.reclaim",
];

/// The container's limit on tasks (processes and threads), nspawn's unit's
/// TasksMax=16384: a guest must not exhaust the host's pid space.
pub const DEFAULT_TASKS_MAX: u64 = 16384;

/// The v1 hierarchies nixrun places the payload in (by a mount option).
const MANAGED_V1: &[&str] = &["name=systemd", "devices", "pids"];

/// What a hierarchy carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    V2,
    /// A v1 hierarchy: its controllers, or "name=systemd" for a named one.
    V1(Vec<String>),
}

/// One mounted hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted on the host.
    pub mount: PathBuf,
    pub kind: Kind,
    /// The supervisor's own cgroup in it, as a directory on the host.
    pub own: PathBuf,
}

impl Hierarchy {
    fn has(&self, controller: &str) -> bool {
        matches!(&self.kind, Kind::V1(c) if c.iter().any(|x| x == controller))
    }
}

/// One cgroup file system mount in /proc/self/mountinfo, with the line of
/// /proc/self/cgroup that names our cgroup in its hierarchy, if one does.
pub struct CgroupMount {
    pub v2: bool,
    /// The mount's super options (a v1 one's controllers, "name=X", "rw", ...).
    pub superopts: Vec<String>,
    /// The subtree mounted (its root) and where.
    pub root: String,
    pub point: String,
    /// Our cgroup there: the line's controllers (none for cgroup2) and path.
    pub own: Option<(Vec<String>, String)>,
}

impl CgroupMount {
    /// Our cgroup in it as a host directory; None where the mount shows only
    /// a subtree we are not in.
    pub fn own_dir(&self) -> Option<PathBuf> {
        let (_, path) = self.own.as_ref()?;
        let rel = Path::new(path).strip_prefix(&self.root).ok()?;
        Some(Path::new(&self.point).join(rel))
    }
}

/// Every cgroup and cgroup2 mount, in mountinfo's order. Paths in
/// /proc/self/cgroup are relative to our cgroup namespace, as is a mount's root.
pub fn cgroup_mounts(mountinfo: &str, proc_cgroup: &str) -> Vec<CgroupMount> {
    // (controllers, path) per line of /proc/self/cgroup; none for cgroup2.
    let own: Vec<(Vec<String>, String)> = proc_cgroup
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            let ctrls = ctrls
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            Some((ctrls, path.to_string()))
        })
        .collect();
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        // id parent maj:min root mountpoint opts [optional...] - fstype source superopts
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let l: Vec<&str> = left.split(' ').collect();
        let r: Vec<&str> = right.split(' ').collect();
        if l.len() < 5 || r.len() < 3 || !matches!(r[0], "cgroup" | "cgroup2") {
            continue;
        }
        let v2 = r[0] == "cgroup2";
        let superopts: Vec<String> = r[2].split(',').map(str::to_string).collect();
        let own = own
            .iter()
            .find(|(c, _)| {
                if v2 {
                    c.is_empty()
                } else {
                    !c.is_empty() && c.iter().all(|x| superopts.contains(x))
                }
            })
            .cloned();
        out.push(CgroupMount {
            v2,
            superopts,
            root: unescape_mountinfo(l[3]),
            point: unescape_mountinfo(l[4]),
            own,
        });
    }
    out
}

/// The hierarchies, from /proc/self/mountinfo and /proc/self/cgroup; cgroup2 first.
pub fn discover(mountinfo: &str, proc_cgroup: &str) -> Result<Vec<Hierarchy>, CgroupError> {
    hierarchies(cgroup_mounts(mountinfo, proc_cgroup))
}

fn hierarchies(mounts: Vec<CgroupMount>) -> Result<Vec<Hierarchy>, CgroupError> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for m in mounts {
        if !m.v2 && !m.superopts.iter().any(|o| MANAGED_V1.contains(&o.as_str())) {
            continue;
        }
        let Some((ctrls, _)) = &m.own else {
            let fstype = if m.v2 { "cgroup2" } else { "cgroup" };
            return Err(CgroupError::NotInHierarchy(format!(
                "{fstype} at {}",
                m.point
            )));
        };
        let kind = if m.v2 {
            Kind::V2
        } else {
            Kind::V1(ctrls.clone())
        };
        if out.iter().any(|h| h.kind == kind) {
            continue; // the same hierarchy mounted twice; the first mount will do
        }
        // A mount of a subtree only shows what is below its root.
        let own = m.own_dir().ok_or_else(|| {
            CgroupError::NotInHierarchy(format!("{} (mounted subtree {})", m.point, m.root))
        })?;
        out.push(Hierarchy {
            mount: PathBuf::from(&m.point),
            kind,
            own,
        });
    }
    if !out.iter().any(|h| h.kind == Kind::V2) {
        return Err(CgroupError::NoCgroup2);
    }
    out.sort_by_key(|h| h.kind != Kind::V2);
    Ok(out)
}

/// What `standard_mounts` asks of a path: whether it is the root of a
/// cgroup2 or a cgroup v1 hierarchy (the file system's magic, and the
/// root's inode number, 1 in kernfs: a mount of a subtree, or a directory
/// below the root, has another).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Root {
    V2,
    V1,
}

/// The hierarchies where systemd mounts them (and itself looks for them:
/// /sys/fs/cgroup, /sys/fs/cgroup/unified, /sys/fs/cgroup/<controller>),
/// found with two system calls each instead of reading and parsing
/// /proc/self/mountinfo, some 50 µs of every start. None where one is not
/// there, or is not a hierarchy's root: then mountinfo decides.
pub fn standard_mounts(
    proc_cgroup: &str,
    probe: &dyn Fn(&Path) -> Option<Root>,
) -> Option<Vec<CgroupMount>> {
    let mut out = Vec::new();
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let ctrls: Vec<String> = ctrls
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect();
        let (point, v2) = if ctrls.is_empty() {
            let point = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
                .into_iter()
                .find(|p| probe(Path::new(p)) == Some(Root::V2))?;
            (point.to_string(), true)
        } else if ctrls.iter().any(|c| MANAGED_V1.contains(&c.as_str())) {
            let dir = ctrls.join(",");
            let point = format!(
                "/sys/fs/cgroup/{}",
                dir.strip_prefix("name=").unwrap_or(&dir)
            );
            if probe(Path::new(&point)) != Some(Root::V1) {
                return None;
            }
            (point, false)
        } else {
            continue;
        };
        out.push(CgroupMount {
            v2,
            superopts: ctrls.clone(),
            root: "/".into(),
            point,
            own: Some((ctrls, path.to_string())),
        });
    }
    Some(out)
}

/// `standard_mounts`' probe, on this host.
fn probe_root(path: &Path) -> Option<Root> {
    let fs = rustix::fs::statfs(path).ok()?;
    // Both signed on x86_64, of other types elsewhere: compared as u64.
    let kind = match fs.f_type as u64 {
        t if t == libc::CGROUP2_SUPER_MAGIC as u64 => Root::V2,
        t if t == libc::CGROUP_SUPER_MAGIC as u64 => Root::V1,
        _ => return None,
    };
    (rustix::fs::stat(path).ok()?.st_ino == 1).then_some(kind)
}

/// A path field of /proc/PID/mountinfo: space, tab, newline and backslash are
/// escaped as octal there.
pub fn unescape_mountinfo(s: &str) -> String {
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
    /// The container's cgroup (the unit's with --keep-unit).
    pub container: PathBuf,
    /// Where the guest runs: the root of its cgroup namespace.
    pub payload: PathBuf,
    /// With --keep-unit: where the supervisor moves to.
    pub supervisor: Option<PathBuf>,
    /// Whether nixrun created `container` (and removes it).
    pub ours: bool,
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
            payload: unit.join("payload"),
            supervisor: Some(unit.join("supervisor")),
            container: unit,
            ours: false,
        }
    } else {
        let container = h.own.join(format!("nixrun-{machine}"));
        // The guest sees only cgroup2: in a v1 hierarchy nothing tells a
        // payload below the container from the container itself, and one
        // cgroup is one mkdir and one rmdir less per hierarchy and start
        // (some 40 µs each on a hybrid host).
        let payload = if h.kind == Kind::V2 {
            container.join("payload")
        } else {
            container.clone()
        };
        Placement {
            hierarchy: h.clone(),
            payload,
            supervisor: None,
            container,
            ours: true,
        }
    }
}

/// The file operations cgroup management needs. On cgroupfs, control files
/// exist with their directory and go with it; `Kernel` is the real thing.
pub trait CgroupFs: std::fmt::Debug {
    fn mkdir_all(&self, dir: &Path) -> io::Result<()>;
    fn rmdir(&self, dir: &Path) -> io::Result<()>;
    /// One write(2) per item, through one open file (cgroupfs takes one rule or
    /// pid per write).
    fn write(&self, file: &Path, items: &[&str]) -> io::Result<()>;
    fn read(&self, file: &Path) -> io::Result<String>;
    /// Loads the device program for `rules` and attaches it to `dir` (cgroup2).
    fn attach_device_program(&self, dir: &Path, rules: &[Rule]) -> io::Result<()>;
    fn chown(&self, path: &Path, uid: u32) -> io::Result<()>;
}

/// The host's cgroup file systems.
#[derive(Debug)]
pub struct Kernel;

impl CgroupFs for Kernel {
    fn mkdir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn rmdir(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir(dir)
    }

    fn write(&self, file: &Path, items: &[&str]) -> io::Result<()> {
        use std::io::Write;
        let mut f = fs::OpenOptions::new().write(true).open(file)?;
        for item in items {
            f.write_all(item.as_bytes())?;
        }
        Ok(())
    }

    fn read(&self, file: &Path) -> io::Result<String> {
        fs::read_to_string(file)
    }

    fn attach_device_program(&self, dir: &Path, rules: &[Rule]) -> io::Result<()> {
        use std::os::fd::AsFd;
        let prog = crate::sys::bpf::load_device_program(&devices::program(rules))?;
        let dir = fs::File::open(dir)?;
        crate::sys::bpf::attach_device_program(dir.as_fd(), prog.as_fd())?;
        Ok(())
    }

    fn chown(&self, path: &Path, uid: u32) -> io::Result<()> {
        std::os::unix::fs::chown(path, Some(uid), Some(uid))
    }
}

/// The container's cgroups: planned by `plan()`, made by `create()`, removed by
/// `remove()`.
#[derive(Debug)]
pub struct Cgroups {
    placements: Vec<Placement>,
    machine: String,
    devices: Vec<Rule>,
    /// None: no limit.
    tasks_max: Option<u64>,
    fs: Box<dyn CgroupFs>,
    /// With --keep-unit: our flock on the unit's cgroup directory, held for the
    /// run, so that two nixruns in one unit cannot both make its payload.
    _unit_lock: Option<std::os::fd::OwnedFd>,
}

impl Cgroups {
    /// Discovers the host's layout and computes the paths; touches nothing.
    pub fn plan(
        machine: &str,
        keep_unit: bool,
        devices: Vec<Rule>,
        tasks_max: Option<u64>,
    ) -> Result<Cgroups, CgroupError> {
        let pc = read("/proc/self/cgroup")?;
        let hierarchies = match standard_mounts(&pc, &probe_root) {
            Some(mounts) => hierarchies(mounts)?,
            None => discover(&read("/proc/self/mountinfo")?, &pc)?,
        };
        let mut cg = Cgroups::new(&hierarchies, machine, keep_unit, devices, Box::new(Kernel));
        cg.tasks_max = tasks_max;
        if keep_unit {
            // Another machine name, another root: the lock files do not see
            // it, the unit's cgroup does.
            let unit = &cg.placements[0].container;
            cg._unit_lock = Some(lock_dir(unit)?);
        }
        Ok(cg)
    }

    /// The container's cgroups in the given hierarchies, handled through `fs`.
    pub fn new(
        hierarchies: &[Hierarchy],
        machine: &str,
        keep_unit: bool,
        devices: Vec<Rule>,
        fs: Box<dyn CgroupFs>,
    ) -> Cgroups {
        Cgroups {
            placements: hierarchies
                .iter()
                .map(|h| placement(h, machine, keep_unit))
                .collect(),
            machine: machine.to_string(),
            devices,
            tasks_max: Some(DEFAULT_TASKS_MAX),
            fs,
            _unit_lock: None,
        }
    }

    /// Removes what a crashed run left behind, refuses if the machine is running,
    /// moves the supervisor aside (--keep-unit), creates the payload cgroups,
    /// closes their device policy and limits their tasks. Returns warnings: a
    /// host without a pids controller gets its container without a task limit.
    pub fn create(&self) -> Result<Vec<String>, CgroupError> {
        self.prepare()?;
        self.make(None)
    }

    /// The first half of `create`: refuses if the machine is running, removes
    /// what a crashed run left behind. Nothing is made yet.
    pub fn prepare(&self) -> Result<(), CgroupError> {
        for p in &self.placements {
            let top = if p.ours { &p.container } else { &p.payload };
            if top.exists() {
                if self.has_processes(top) {
                    return Err(CgroupError::AlreadyRunning {
                        machine: self.machine.clone(),
                        path: top.clone(),
                    });
                }
                // The previous supervisor died without cleaning up (its guest died
                // with it: PDEATHSIG). Start from empty cgroups, not its leftovers.
                self.remove_tree(top)
                    .map_err(|e| CgroupError::Remove(top.clone(), e))?;
            }
        }
        Ok(())
    }

    /// The cgroup2 payload, made now and opened, where the container's PID 1
    /// can be born in it (clone3's CLONE_INTO_CGROUP) instead of moved
    /// there: cgroup2 is the only hierarchy managed (a v1 one takes a move
    /// anyway) and nixrun stays where it is (with --keep-unit it moves
    /// itself into supervisor/ first, under the same kernel lock). None
    /// elsewhere. `make(None)` then does the rest after the clone; its
    /// device program is attached in one step, before the child goes past
    /// its first half, which makes only the nodes of the table.
    pub fn payload_to_be_born_in(&self) -> Result<Option<std::os::fd::OwnedFd>, CgroupError> {
        let [p] = &self.placements[..] else {
            return Ok(None);
        };
        if p.hierarchy.kind != Kind::V2 || p.supervisor.is_some() {
            return Ok(None);
        }
        self.make_dirs(&p.payload)?;
        let fd = rustix::fs::open(
            &p.payload,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| CgroupError::Create(p.payload.clone(), e.into()))?;
        Ok(Some(fd))
    }

    /// The second half: moves the supervisor aside (--keep-unit), creates the
    /// payload cgroups, closes their device policy, puts `pid` (the
    /// container's PID 1, already cloned and busy with its mounts meanwhile)
    /// into them, delegates the unit's controllers and limits the tasks. In
    /// that order: PID 1 creates device nodes as it joins, so the policy must
    /// be whole by then (between "deny all" and the allow list, mknod fails);
    /// a cgroup that passes controllers down may hold no process, while the
    /// unit's cgroup holds PID 1 until it joins the payload.
    pub fn make(&self, pid: Option<u32>) -> Result<Vec<String>, CgroupError> {
        for p in &self.placements {
            if let Some(sup) = &p.supervisor {
                self.make_dirs(sup)?;
                self.attach_pid(sup, 0)?;
            }
            self.make_dirs(&p.payload)?;
        }
        self.close_devices()?;
        for p in &self.placements {
            if let Some(pid) = pid {
                self.attach_pid(&p.payload, pid)?;
            }
            if p.hierarchy.kind == Kind::V2 && !p.ours {
                self.delegate_controllers(&p.container);
            }
        }
        // Last: with --keep-unit on cgroup2, the payload's pids.max exists
        // only once the unit passes the controller down.
        Ok(self.limit_tasks().err().into_iter().collect())
    }

    /// pids.max where the guest cannot change it: on the container's cgroup
    /// when nixrun made it (above the guest's namespace root), else on the
    /// payload (the unit's own TasksMax= applies above it; the payload is the
    /// guest's namespace root, whose limits nsdelegate keeps out of its reach).
    /// In the v1 pids hierarchy where one is mounted (the guest cannot see v1),
    /// else in cgroup2, where the controller must be enabled down to there.
    fn limit_tasks(&self) -> Result<(), String> {
        let Some(max) = self.tasks_max else {
            return Ok(());
        };
        let v1 = self.placements.iter().find(|p| p.hierarchy.has("pids"));
        let p = v1.unwrap_or(&self.placements[0]);
        let target = if p.ours { &p.container } else { &p.payload };
        if v1.is_none() && p.ours {
            // Threaded controllers such as pids may be enabled in a cgroup that
            // has processes (ours has the supervisor).
            let own = p.hierarchy.own.join("cgroup.subtree_control");
            let _ = self.fs.write(&own, &["+pids"]);
        }
        self.fs
            .write(&target.join("pids.max"), &[&max.to_string()])
            .map_err(|e| {
                format!(
                    "no task limit on the container: writing {}: {e}",
                    target.join("pids.max").display()
                )
            })
    }

    /// The device policy on the payload: the v1 devices controller where it is
    /// mounted (hybrid and legacy hosts), else a BPF program on cgroup2 (the way
    /// cgroup2 does device control). Not both: loading the program runs the BPF
    /// verifier, some 0.6 ms of a container's start, for a policy the v1
    /// controller already enforces.
    fn close_devices(&self) -> Result<(), CgroupError> {
        if let Some(p) = self.placements.iter().find(|p| p.hierarchy.has("devices")) {
            let fail = |e: io::Error| CgroupError::Devices(p.payload.clone(), e.to_string());
            self.fs
                .write(&p.payload.join("devices.deny"), &["a"])
                .map_err(fail)?;
            let lines: Vec<String> = self.devices.iter().map(devices::v1_line).collect();
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            return self
                .fs
                .write(&p.payload.join("devices.allow"), &lines)
                .map_err(fail);
        }
        let v2 = &self.placements[0];
        self.fs
            .attach_device_program(&v2.payload, &self.devices)
            .map_err(|e| {
                CgroupError::Devices(
                    v2.payload.clone(),
                    format!("loading the BPF device program: {e}"),
                )
            })
    }

    /// Gives the payload's cgroup2 directory and the files a manager writes to
    /// `uid` (the guest's root in its user namespace). The v1 hierarchies are
    /// the supervisor's: the guest does not see them.
    pub fn chown_payload(&self, uid: u32) -> Result<(), CgroupError> {
        let payload = &self.placements[0].payload;
        for f in GUEST_OWNED {
            let path = if f.is_empty() {
                payload.clone()
            } else {
                payload.join(f)
            };
            match self.fs.chown(&path, uid) {
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                r => r.map_err(|e| CgroupError::Chown(path.clone(), e))?,
            }
        }
        Ok(())
    }

    /// The guest's payload cgroup in cgroup2, on the host: the root of its
    /// cgroup namespace, below which it may attach device programs.
    pub fn v2_payload(&self) -> &Path {
        &self.placements[0].payload
    }

    /// The systemd unit whose cgroup is the container's (--keep-unit): the
    /// last component of its cgroup2 path, if it names a unit.
    pub fn unit_name(&self) -> Option<String> {
        let name = self.placements[0].container.file_name()?.to_string_lossy();
        [".service", ".scope"]
            .iter()
            .any(|s| name.ends_with(s))
            .then(|| name.into_owned())
    }

    pub fn attach(&self, pid: u32) -> Result<(), CgroupError> {
        for p in &self.placements {
            self.attach_pid(&p.payload, pid)?;
        }
        Ok(())
    }

    /// Removes the container's cgroups (the guest's own sub-cgroups included). Once
    /// the container's PID 1 is reaped, the kernel has killed and reaped every
    /// other process of its pid namespace, so the tree is empty.
    pub fn remove(&self) -> Vec<CgroupError> {
        let mut errors = Vec::new();
        for p in &self.placements {
            let top = if p.ours { &p.container } else { &p.payload };
            // The payload first: the container's own rmdir would fail while
            // it is there, and the listing that then finds it costs more than
            // the two rmdirs.
            if p.ours && p.payload != p.container {
                let _ = self.remove_tree(&p.payload);
            }
            if let Err(e) = self.remove_tree(top) {
                if e.kind() != ErrorKind::NotFound {
                    errors.push(CgroupError::Remove(top.clone(), e));
                }
            }
            if let Some(sup) = &p.supervisor {
                // Back into the unit's cgroup, so that "supervisor" can go too.
                // A cgroup that passes controllers down may hold no process:
                // first take back the controllers we enabled for the payload.
                self.undelegate_controllers(&p.container);
                if self.attach_pid(&p.container, 0).is_ok() {
                    let _ = self.fs.rmdir(sup);
                }
            }
        }
        errors
    }

    fn make_dirs(&self, path: &Path) -> Result<(), CgroupError> {
        self.fs
            .mkdir_all(path)
            .map_err(|e| CgroupError::Create(path.to_path_buf(), e))
    }

    /// pid 0 means the writing process itself.
    fn attach_pid(&self, cgroup: &Path, pid: u32) -> Result<(), CgroupError> {
        self.fs
            .write(&cgroup.join("cgroup.procs"), &[&pid.to_string()])
            .map_err(|err| CgroupError::Attach {
                pid,
                path: cgroup.to_path_buf(),
                err,
            })
    }

    /// Enables every controller the unit has for its children, so the guest can use
    /// them. Best effort, as in nspawn: a controller that cannot be enabled (e.g. a
    /// threaded one) must not prevent the guest from booting.
    fn delegate_controllers(&self, unit: &Path) {
        let Ok(avail) = self.fs.read(&unit.join("cgroup.controllers")) else {
            return;
        };
        for c in avail.split_whitespace() {
            let _ = self
                .fs
                .write(&unit.join("cgroup.subtree_control"), &[&format!("+{c}")]);
        }
    }

    /// Undoes `delegate_controllers` once the payload is gone. Best effort:
    /// what stays enabled only keeps "supervisor" (systemd removes the unit's
    /// cgroup when the unit ends).
    fn undelegate_controllers(&self, unit: &Path) {
        let Ok(avail) = self.fs.read(&unit.join("cgroup.controllers")) else {
            return;
        };
        for c in avail.split_whitespace() {
            let _ = self
                .fs
                .write(&unit.join("cgroup.subtree_control"), &[&format!("-{c}")]);
        }
    }

    /// Whether any cgroup in the tree has a process.
    fn has_processes(&self, dir: &Path) -> bool {
        let own = self.fs.read(&dir.join("cgroup.procs")).unwrap_or_default();
        if !own.trim().is_empty() {
            return true;
        }
        subdirs(dir).iter().any(|d| self.has_processes(d))
    }

    /// rmdir, deepest first. cgroupfs directories hold only control files, which go
    /// with their cgroup; an rmdir right after the last process left can still see
    /// the cgroup busy for a moment, hence the short retries.
    fn remove_tree(&self, dir: &Path) -> io::Result<()> {
        // rmdir first and list the directory only when that fails: a guest
        // that made no cgroups of its own leaves leaves, and listing a
        // cgroup costs four system calls (kernfs makes up its dirents).
        match self.fs.rmdir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            other => return other,
        }
        for sub in subdirs(dir) {
            self.remove_tree(&sub)?;
        }
        let mut delay = Duration::from_millis(1);
        loop {
            match self.fs.rmdir(dir) {
                Err(e)
                    if e.raw_os_error() == Some(libc::EBUSY)
                        && delay < Duration::from_millis(500) =>
                {
                    std::thread::sleep(delay);
                    delay *= 2;
                }
                other => return other,
            }
        }
    }
}

/// An exclusive flock on a cgroup directory (flock works on any inode, cgroupfs
/// ones included); released when the fd closes, also when the process dies.
fn lock_dir(dir: &Path) -> Result<std::os::fd::OwnedFd, CgroupError> {
    use rustix::fs::{flock, FlockOperation, Mode, OFlags};
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| CgroupError::Read(dir.to_path_buf(), e.into()))?;
    match flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(fd),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(CgroupError::UnitBusy(dir.to_path_buf())),
        Err(e) => Err(CgroupError::Read(dir.to_path_buf(), e.into())),
    }
}

fn read(path: &str) -> Result<String, CgroupError> {
    crate::sys::read_proc(path).map_err(|e| CgroupError::Read(path.into(), e))
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

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
25 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:9 - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/memory rw,nosuid shared:12 - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:13 - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/devices rw,nosuid shared:14 - cgroup cgroup rw,devices
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/system.slice/container@foo.service
5:devices:/system.slice/container@foo.service
4:memory:/system.slice/container@foo.service
2:cpu,cpuacct:/
0::/system.slice/container@foo.service
";

    /// A probe that answers as the mounts of a mountinfo text would.
    fn probe_of(mountinfo: &'static str) -> impl Fn(&Path) -> Option<Root> {
        move |p: &Path| {
            mountinfo.lines().find_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let fstype = l.split(" - ").nth(1)?.split(' ').next()?;
                (Path::new(f[4]) == p && f[3] == "/").then_some(())?;
                match fstype {
                    "cgroup2" => Some(Root::V2),
                    "cgroup" => Some(Root::V1),
                    _ => None,
                }
            })
        }
    }

    #[test]
    fn the_standard_paths_give_what_mountinfo_gives() {
        let fast = standard_mounts(HYBRID_CGROUP, &probe_of(HYBRID_MOUNTINFO)).unwrap();
        assert_eq!(
            hierarchies(fast).unwrap(),
            discover(HYBRID_MOUNTINFO, HYBRID_CGROUP).unwrap()
        );
        // Pure cgroup2.
        let mi = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let pc = "0::/system.slice/container@foo.service\n";
        let fast = standard_mounts(pc, &probe_of(mi)).unwrap();
        assert_eq!(hierarchies(fast).unwrap(), discover(mi, pc).unwrap());
        // A subtree mounted (a cgroup namespace's view), or a hierarchy
        // elsewhere: mountinfo decides.
        let sub = "30 25 0:26 /machine /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert!(standard_mounts(pc, &probe_of(sub)).is_none());
        let elsewhere = "30 25 0:26 / /cg rw - cgroup2 cgroup2 rw\n";
        assert!(standard_mounts(pc, &probe_of(elsewhere)).is_none());
        // A managed v1 hierarchy missing from its place.
        let no_devices = HYBRID_MOUNTINFO.replace("/sys/fs/cgroup/devices", "/cg/devices");
        let no_devices: &'static str = Box::leak(no_devices.into_boxed_str());
        assert!(standard_mounts(HYBRID_CGROUP, &probe_of(no_devices)).is_none());
    }

    #[test]
    fn on_this_host_the_standard_paths_agree_with_mountinfo() {
        let pc = fs::read_to_string("/proc/self/cgroup").unwrap();
        let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
        match standard_mounts(&pc, &probe_root) {
            // The same hierarchies; their order (that of /proc/self/cgroup
            // here, of the mounts there) only orders the mkdirs.
            Some(fast) => {
                let sorted = |h: Result<Vec<Hierarchy>, CgroupError>| {
                    let mut h = h.unwrap();
                    h.sort_by(|a, b| a.mount.cmp(&b.mount));
                    h
                };
                assert_eq!(sorted(hierarchies(fast)), sorted(discover(&mi, &pc)));
            }
            // Only where mountinfo shows a layout systemd would not make.
            None => assert!(
                !mi.contains(" / /sys/fs/cgroup rw") || !mi.contains("cgroup2"),
                "the standard paths were not found on a standard host:\n{mi}"
            ),
        }
    }

    #[test]
    fn hybrid_hosts_manage_cgroup2_systemd_and_devices() {
        let h = discover(HYBRID_MOUNTINFO, HYBRID_CGROUP).unwrap();
        let unit = "system.slice/container@foo.service";
        assert_eq!(
            h,
            vec![
                Hierarchy {
                    mount: "/sys/fs/cgroup/unified".into(),
                    kind: Kind::V2,
                    own: Path::new("/sys/fs/cgroup/unified").join(unit),
                },
                Hierarchy {
                    mount: "/sys/fs/cgroup/systemd".into(),
                    kind: Kind::V1(vec!["name=systemd".into()]),
                    own: Path::new("/sys/fs/cgroup/systemd").join(unit),
                },
                Hierarchy {
                    mount: "/sys/fs/cgroup/devices".into(),
                    kind: Kind::V1(vec!["devices".into()]),
                    own: Path::new("/sys/fs/cgroup/devices").join(unit),
                },
            ]
        );
    }

    #[test]
    fn layouts() {
        let mi = "40 1 0:30 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = discover(mi, "0::/machine.slice/container@web.service/supervisor\n").unwrap();
        assert_eq!(h.len(), 1);
        let unit = PathBuf::from("/sys/fs/cgroup/machine.slice/container@web.service");
        let p = placement(&h[0], "web", true);
        assert_eq!(p.container, unit);
        assert_eq!(p.payload, unit.join("payload"));
        assert_eq!(p.supervisor, Some(unit.join("supervisor")));
        assert!(!p.ours, "the unit's cgroup belongs to systemd");
        let p = placement(&h[0], "web", false);
        assert_eq!(p.container, unit.join("supervisor/nixrun-web"));
        assert_eq!(p.payload, unit.join("supervisor/nixrun-web/payload"));
        assert!(p.ours);
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

    /// cgroupfs in a temporary directory: control files are created by writing
    /// and go with their directory (as the kernel's do), and every write is
    /// recorded. Writing a pid to a `cgroup.procs` moves it there from wherever
    /// it was in that hierarchy; "0" (the writer) stands for the supervisor.
    #[derive(Debug)]
    struct TempFs {
        root: PathBuf,
        writes: std::sync::Mutex<Vec<(PathBuf, String)>>,
        programs: std::sync::Mutex<Vec<(PathBuf, Vec<Rule>)>>,
    }

    impl CgroupFs for std::sync::Arc<TempFs> {
        fn mkdir_all(&self, dir: &Path) -> io::Result<()> {
            fs::create_dir_all(dir)
        }

        fn rmdir(&self, dir: &Path) -> io::Result<()> {
            let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            // As the kernel: busy while it has processes or child cgroups.
            let children = fs::read_dir(dir)?
                .filter_map(Result::ok)
                .any(|e| e.file_type().is_ok_and(|t| t.is_dir()));
            if !procs.trim().is_empty() || children {
                return Err(io::Error::from_raw_os_error(libc::EBUSY));
            }
            for e in fs::read_dir(dir)? {
                let e = e?;
                if e.file_type()?.is_file() {
                    fs::remove_file(e.path())?;
                }
            }
            fs::remove_dir(dir)
        }

        fn write(&self, file: &Path, items: &[&str]) -> io::Result<()> {
            use std::io::Write;
            assert!(
                file.parent().unwrap().is_dir(),
                "{} has no cgroup",
                file.display()
            );
            if file.file_name() == Some(std::ffi::OsStr::new("cgroup.procs")) {
                // A process is in one cgroup per hierarchy (a top directory here).
                let rel = file.strip_prefix(&self.root).expect("inside the sandbox");
                let hierarchy = self.root.join(rel.components().next().unwrap());
                for pid in items {
                    self.take_out(&hierarchy, pid);
                }
            }
            let mut f = fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(file)?;
            for item in items {
                f.write_all(item.as_bytes())?;
                f.write_all(b"\n")?;
                self.writes
                    .lock()
                    .unwrap()
                    .push((file.to_path_buf(), item.to_string()));
            }
            Ok(())
        }

        fn read(&self, file: &Path) -> io::Result<String> {
            fs::read_to_string(file)
        }

        fn attach_device_program(&self, dir: &Path, rules: &[Rule]) -> io::Result<()> {
            self.programs
                .lock()
                .unwrap()
                .push((dir.to_path_buf(), rules.to_vec()));
            Ok(())
        }

        fn chown(&self, path: &Path, uid: u32) -> io::Result<()> {
            fs::symlink_metadata(path)?;
            self.writes
                .lock()
                .unwrap()
                .push((path.to_path_buf(), format!("chown {uid}")));
            Ok(())
        }
    }

    impl TempFs {
        fn take_out(&self, dir: &Path, pid: &str) {
            let procs = dir.join("cgroup.procs");
            if let Ok(text) = fs::read_to_string(&procs) {
                let kept: String = text
                    .lines()
                    .filter(|l| *l != pid)
                    .map(|l| format!("{l}\n"))
                    .collect();
                fs::write(&procs, kept).unwrap();
            }
            for sub in subdirs(dir) {
                self.take_out(&sub, pid);
            }
        }
    }

    struct Sandbox {
        dir: PathBuf,
        fs: std::sync::Arc<TempFs>,
    }

    impl Sandbox {
        fn new(tag: &str) -> Sandbox {
            let dir = std::env::temp_dir().join(format!("nixrun-cg-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Sandbox {
                fs: std::sync::Arc::new(TempFs {
                    root: dir.clone(),
                    writes: Default::default(),
                    programs: Default::default(),
                }),
                dir,
            }
        }

        /// A hybrid host: cgroup2, the named systemd hierarchy, v1 devices; we
        /// sit in `unit` in each.
        fn hybrid(&self, unit: &str) -> Vec<Hierarchy> {
            [
                ("unified", Kind::V2),
                ("systemd", Kind::V1(vec!["name=systemd".into()])),
                ("devices", Kind::V1(vec!["devices".into()])),
            ]
            .into_iter()
            .map(|(name, kind)| {
                let mount = self.dir.join(name);
                let own = mount.join(unit);
                fs::create_dir_all(&own).unwrap();
                Hierarchy { mount, kind, own }
            })
            .collect()
        }

        fn unified(&self, unit: &str) -> Vec<Hierarchy> {
            let mount = self.dir.join("cgroup2");
            let own = mount.join(unit);
            fs::create_dir_all(&own).unwrap();
            fs::write(own.join("cgroup.controllers"), "cpu memory pids").unwrap();
            vec![Hierarchy {
                mount,
                kind: Kind::V2,
                own,
            }]
        }

        fn cgroups(&self, h: &[Hierarchy], keep_unit: bool) -> Cgroups {
            Cgroups::new(
                h,
                "web",
                keep_unit,
                devices::DEFAULT.to_vec(),
                Box::new(self.fs.clone()),
            )
        }

        fn writes_to(&self, file: &str) -> Vec<String> {
            self.fs
                .writes
                .lock()
                .unwrap()
                .iter()
                .filter(|(p, _)| p.ends_with(file))
                .map(|(_, v)| v.clone())
                .collect()
        }
    }

    impl Drop for Sandbox {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn create_and_remove_on_a_hybrid_host() {
        let sb = Sandbox::new("hybrid");
        let h = sb.hybrid("user.slice/session");
        let cg = sb.cgroups(&h, false);
        cg.create().unwrap();
        // The guest's cgroup: payload/ in cgroup2, where its namespace
        // starts; the container's own in v1, which it cannot see.
        let guest = |hier: &Hierarchy| match hier.kind {
            Kind::V2 => hier.own.join("nixrun-web/payload"),
            Kind::V1(_) => hier.own.join("nixrun-web"),
        };
        for hier in &h {
            assert!(guest(hier).is_dir(), "{:?}", hier.kind);
            if hier.kind != Kind::V2 {
                assert!(!guest(hier).join("payload").exists(), "{:?}", hier.kind);
            }
        }
        // The v1 devices controller carries the policy: deny all, then each rule.
        let devices = guest(&h[2]);
        assert_eq!(sb.writes_to("devices.deny"), vec!["a"]);
        let allowed = sb.writes_to("devices.allow");
        assert_eq!(allowed.len(), devices::DEFAULT.len());
        assert!(allowed.contains(&"c 1:3 rwm".to_string()));
        assert!(devices.join("devices.allow").is_file());
        assert!(
            sb.fs.programs.lock().unwrap().is_empty(),
            "no BPF program on a v1 devices host"
        );

        cg.attach(4242).unwrap();
        assert_eq!(sb.writes_to("cgroup.procs"), vec!["4242"; 3]);
        for hier in &h {
            assert_eq!(
                fs::read_to_string(guest(hier).join("cgroup.procs")).unwrap(),
                "4242\n",
                "{:?}",
                hier.kind
            );
        }
        // A second start of the same machine is refused while it has processes.
        let again = sb.cgroups(&h, false);
        assert!(matches!(
            again.create(),
            Err(CgroupError::AlreadyRunning { .. })
        ));

        // Gone with its last process: the machine's tree, nothing else there.
        for hier in &h {
            fs::write(guest(hier).join("cgroup.procs"), "").unwrap();
        }
        assert!(cg.remove().is_empty());
        for hier in &h {
            assert!(
                subdirs(&hier.own).is_empty(),
                "{:?}: {:?} left behind",
                hier.kind,
                subdirs(&hier.own)
            );
            assert!(hier.own.is_dir(), "our own cgroup must stay");
        }
    }

    #[test]
    fn a_crashed_runs_leftovers_are_removed_before_a_start() {
        let sb = Sandbox::new("stale");
        let h = sb.unified("svc");
        let stale = h[0].own.join("nixrun-web/payload/init.scope");
        fs::create_dir_all(&stale).unwrap();
        fs::write(stale.join("memory.max"), "max").unwrap();
        let cg = sb.cgroups(&h, false);
        cg.create().unwrap();
        assert!(!stale.exists(), "the crashed guest's sub-cgroup survived");
        assert!(h[0].own.join("nixrun-web/payload").is_dir());
        // On a cgroup2-only host the policy is a BPF program on the payload.
        let progs = sb.fs.programs.lock().unwrap().clone();
        assert_eq!(progs.len(), 1);
        assert_eq!(progs[0].0, h[0].own.join("nixrun-web/payload"));
        assert_eq!(progs[0].1, devices::DEFAULT.to_vec());
        assert!(cg.remove().is_empty());
        assert!(subdirs(&h[0].own).is_empty());
    }

    #[test]
    fn on_a_cgroup2_only_host_the_task_limit_sits_above_the_guests_root() {
        let sb = Sandbox::new("tasks");
        let h = sb.unified("svc");
        let cg = sb.cgroups(&h, false);
        cg.create().unwrap();
        // pids passed down once, from our cgroup to the container's, whose
        // pids.max the guest (rooted at payload/) cannot reach.
        assert_eq!(sb.writes_to("cgroup.subtree_control"), ["+pids"]);
        assert_eq!(sb.writes_to("svc/cgroup.subtree_control"), ["+pids"]);
        assert_eq!(
            fs::read_to_string(h[0].own.join("nixrun-web/pids.max")).unwrap(),
            format!("{DEFAULT_TASKS_MAX}\n")
        );
        assert!(!h[0].own.join("nixrun-web/payload/pids.max").exists());
        assert!(cg.remove().is_empty());
        assert!(subdirs(&h[0].own).is_empty());
    }

    #[test]
    fn only_a_cgroup2_only_container_of_our_own_is_born_in_its_payload() {
        let sb = Sandbox::new("born");
        let h = sb.unified("user.slice/session");
        let cg = sb.cgroups(&h, false);
        let fd = cg.payload_to_be_born_in().unwrap();
        assert!(fd.is_some(), "cgroup2 only, no --keep-unit");
        assert!(
            h[0].own.join("nixrun-web/payload").is_dir(),
            "made before the clone"
        );
        // The rest after it, without moving anyone.
        cg.make(None).unwrap();
        assert!(sb.writes_to("cgroup.procs").is_empty());
        assert!(cg.remove().is_empty());
        assert!(subdirs(&h[0].own).is_empty());
        // A v1 hierarchy takes a move anyway; --keep-unit moves nixrun itself.
        let sb = Sandbox::new("born-hybrid");
        let h = sb.hybrid("user.slice/session");
        assert!(sb
            .cgroups(&h, false)
            .payload_to_be_born_in()
            .unwrap()
            .is_none());
        let sb = Sandbox::new("born-unit");
        let h = sb.unified("machine.slice/container@web.service");
        assert!(sb
            .cgroups(&h, true)
            .payload_to_be_born_in()
            .unwrap()
            .is_none());
    }

    #[test]
    fn keep_unit_moves_the_supervisor_aside_and_delegates() {
        let sb = Sandbox::new("unit");
        let h = sb.unified("machine.slice/container@web.service");
        let unit = h[0].own.clone();
        let cg = sb.cgroups(&h, true);
        cg.create().unwrap();
        assert!(unit.join("payload").is_dir() && unit.join("supervisor").is_dir());
        assert_eq!(sb.writes_to("supervisor/cgroup.procs"), vec!["0"]);
        assert_eq!(
            sb.writes_to("cgroup.subtree_control"),
            vec!["+cpu", "+memory", "+pids"]
        );
        // The unit's cgroup is systemd's: only payload and supervisor go, the
        // delegation undone so that the supervisor may move back.
        assert!(cg.remove().is_empty());
        assert!(unit.is_dir());
        assert!(!unit.join("payload").exists());
        assert_eq!(
            sb.writes_to("cgroup.subtree_control"),
            vec!["+cpu", "+memory", "+pids", "-cpu", "-memory", "-pids"]
        );
        assert_eq!(
            sb.writes_to("container@web.service/cgroup.procs"),
            vec!["0"]
        );
    }

    #[test]
    fn a_user_namespace_guest_owns_its_payload_in_cgroup2_only() {
        let sb = Sandbox::new("chown");
        let h = sb.hybrid("svc");
        let cg = sb.cgroups(&h, false);
        cg.create().unwrap();
        let payload = h[0].own.join("nixrun-web/payload");
        fs::write(payload.join("cgroup.procs"), "").unwrap();
        fs::write(payload.join("cgroup.subtree_control"), "").unwrap();
        cg.chown_payload(0x80000).unwrap();
        let chowned: Vec<PathBuf> = sb
            .fs
            .writes
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, w)| w == "chown 524288")
            .map(|(p, _)| p.clone())
            .collect();
        // Those that exist (memory.* need the controller); nothing of v1.
        assert_eq!(
            chowned,
            vec![
                payload.clone(),
                payload.join("cgroup.procs"),
                payload.join("cgroup.subtree_control")
            ]
        );
    }

    #[test]
    fn removes_trees_deepest_first() {
        let sb = Sandbox::new("tree");
        let h = sb.unified("x");
        let cg = sb.cgroups(&h, false);
        let d = sb.dir.join("t");
        fs::create_dir_all(d.join("a/b/c")).unwrap();
        fs::create_dir_all(d.join("d")).unwrap();
        assert!(!cg.has_processes(&d));
        cg.remove_tree(&d).unwrap();
        assert!(!d.exists());
    }
}
