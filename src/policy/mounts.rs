//! The container's file system, as one declarative table.
//!
//! `table()` is a pure function of the plan and the start-up facts; the child
//! applies it (container/mounts.rs), and tests check the table itself: what is
//! mounted where, read-only or not, in which order, in which mode.
//!
//! Each entry carries a *phase* and a *condition*:
//!
//! - `Phase::Outer` entries are applied first, in the mount namespace the child
//!   was cloned into, where host paths are still reachable: /dev, /run, /tmp and
//!   the user's binds (nspawn's outer child does these).
//! - `Phase::Inner` entries are applied once the supervisor has put the child
//!   into its cgroups (sync point 1): the cgroup2 mount, whose root is the
//!   cgroup namespace's, then the user's mounts below /proc or /sys. The other
//!   API file systems, whose instance belongs to the container's PID, network
//!   and IPC namespaces (/proc and its masks, /sys, /dev/mqueue), end the outer
//!   phase, or join the inner one where a user namespace needs the id maps
//!   first.
//! - `When` says in which mode an entry applies: device nodes are created with
//!   mknod by the host's root, but bound from the host where a user namespace
//!   forbids mknod; /proc/sys/net is writable only with a network of the guest's
//!   own. The mode comes from the plan and the start-up facts (`Mode::of`).
//!
//! With a user namespace (`Mode::uid_shift`) the outer phase runs in the host's
//! user namespace (the container's outer process, container/userns.rs) and the
//! inner one in the guest's: the tmpfs mounts get the guest's root as owner,
//! binds may be ID-mapped (`Op::IdmapBind`), and sysfs is mounted in the outer
//! phase unless the network namespace is the guest's own (the kernel lets a
//! user namespace mount sysfs only for a network namespace it owns).
//!
//! Order within a phase is the table's order: /dev and /run exist before user
//! binds land on them; the /proc masks need /run/host/inaccessible.

use super::Facts;
use crate::plan::{Bind, BindSource, Console, Idmap, Plan};
use nix::mount::MsFlags;
use nix::sys::stat::SFlag;
use std::path::{Path, PathBuf};

/// Files under /proc that leak host information or control the host kernel; hidden
/// under an empty read-only file (nspawn's list).
pub const PROC_MASKED: &[&str] = &[
    "/proc/kallsyms",
    "/proc/kcore",
    "/proc/keys",
    "/proc/sysrq-trigger",
    "/proc/timer_list",
];

/// Host-wide knobs under /proc, made read-only where present (nspawn's list).
pub const PROC_READ_ONLY: &[&str] = &[
    "/proc/acpi",
    "/proc/apm",
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/scsi",
];

/// Device nodes the guest gets: (name, major, minor). The container interface
/// asks for these; /dev/net/tun serves VPNs inside.
pub const DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
    ("/dev/net/tun", 10, 200),
];

/// An empty file the guest cannot write, bound over masked files. It lives on our
/// own /run tmpfs, so a guest's /dev/null symlink cannot redirect a mask
/// (CVE-2025-31133).
pub const INACCESSIBLE_REG: &str = "/run/host/inaccessible/reg";

/// The tty group's gid in Debian and NixOS guests (devpts gives new ptys to it).
pub const TTY_GID: u32 = 5;

/// Size and inode limits of the runtime's tmpfs mounts, nspawn's (systemd's
/// TMPFS_LIMITS_*): without them each allows half the host's RAM, and a guest
/// could fill the host's memory through them. Percentages are of the host's
/// RAM; the pages are also charged to the container's memory cgroup.
pub const LIMITS_DEV: &str = "size=4m,nr_inodes=64k";
pub const LIMITS_RUN: &str = "size=20%,nr_inodes=800k";
/// /tmp and /dev/shm (systemd's NESTED_TMPFS_LIMITS).
pub const LIMITS_NESTED: &str = "size=10%,nr_inodes=400k";
pub const LIMITS_EMPTY: &str = "size=4m,nr_inodes=1k";

/// Where the runtime mounts the container's own file systems: a user mount on
/// one of these would hide what the container interface promises the guest.
pub const RUNTIME_MOUNT_POINTS: &[&str] = &[
    "/proc",
    "/sys",
    "/sys/fs/cgroup",
    "/dev",
    "/dev/pts",
    "/dev/mqueue",
    "/run",
    "/run/host",
];

/// What is done to one path of a fresh procfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protect {
    /// Bound onto itself (recursively), read-only.
    ReadOnly,
    /// Bound onto itself, writable again under a read-only parent.
    ReadWrite,
    /// An empty read-only file bound over it.
    Mask,
}

/// One protection of a procfs instance, relative to its root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcProtection {
    pub path: &'static str,
    pub what: Protect,
    /// Skipped where the path does not exist (it differs by kernel).
    pub optional: bool,
    /// Only when the guest has a network namespace of its own.
    pub private_network_only: bool,
}

/// What makes a procfs instance safe to give the guest, in the order it is
/// applied: the container's own /proc (the mount table below) and every
/// procfs the guest mounts later (the mount guard builds those, see
/// supervisor/freshfs.rs) get the same. With `private_network` false the
/// network-only entries are left out.
pub fn proc_protections(private_network: bool) -> Vec<ProcProtection> {
    let entry = |path, what, optional| ProcProtection {
        path,
        what,
        optional,
        private_network_only: false,
    };
    // The kernel's sysctls are mostly not namespaced; the guest must not set them.
    let mut out = vec![entry("sys", Protect::ReadOnly, false)];
    // Those of a network namespace of its own are the guest's (nspawn keeps
    // /proc/sys/net writable then).
    if private_network {
        out.push(ProcProtection {
            path: "sys/net",
            what: Protect::ReadWrite,
            optional: false,
            private_network_only: true,
        });
    }
    for masked in PROC_MASKED {
        out.push(entry(
            masked.strip_prefix("/proc/").expect("below /proc"),
            Protect::Mask,
            true,
        ));
    }
    for ro in PROC_READ_ONLY {
        out.push(entry(
            ro.strip_prefix("/proc/").expect("below /proc"),
            Protect::ReadOnly,
            true,
        ));
    }
    out
}

/// What a mount point or created node should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// What a bind does to the read-only flag of the new mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Whatever the source mount has.
    Inherit,
    ReadOnly,
    /// Writable even where the source is read-only (/proc/sys/net under a
    /// read-only /proc/sys).
    ReadWrite,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A fresh file system instance. `optional` ones are skipped when the target
    /// does not exist (and it is not created).
    Mount {
        fstype: &'static str,
        target: PathBuf,
        flags: MsFlags,
        data: Option<String>,
        optional: bool,
    },
    /// A bind mount. `optional` ones are skipped when the source or the target does
    /// not exist (and their target is never created): /proc differs by kernel.
    Bind {
        source: BindSource,
        target: PathBuf,
        kind: Kind,
        recursive: bool,
        access: Access,
        optional: bool,
    },
    Mkdir {
        path: PathBuf,
        mode: u32,
    },
    /// A device node, FIFO, or other special file.
    Node {
        path: PathBuf,
        kind: SFlag,
        mode: u32,
        major: u64,
        minor: u64,
    },
    Symlink {
        path: PathBuf,
        target: String,
    },
    File {
        path: PathBuf,
        contents: Vec<u8>,
        mode: u32,
    },
    /// A pty from the container's own devpts, bound onto /dev/console; the master
    /// goes to the supervisor.
    Console,
    /// The sd_notify socket at /run/host/notify; it goes to the supervisor.
    NotifySocket,
    /// An overlay of `lowers` (bottom first) under `upper` (--overlay=,
    /// --overlay-ro=; container/overlay.rs).
    Overlay {
        target: PathBuf,
        lowers: Vec<BindSource>,
        upper: OverlayUpper,
        readonly: bool,
    },
    /// The empty node of /run/host/inaccessible/ of the target's type, bound
    /// over it read-only (--inaccessible=); the target must exist.
    Inaccessible {
        target: PathBuf,
    },
    /// A device node of the guest's root (in a user namespace): made by the
    /// outer phase, as the host's root, with mode 0666 and given to the
    /// guest's root; where mknod is refused (a device cgroup without `m`, a
    /// runtime that is itself in a user namespace) the host's node of that
    /// path is bound instead, as nspawn falls back.
    GuestDevice {
        path: PathBuf,
        major: u64,
        minor: u64,
    },
    /// A bind whose owners are mapped for the guest's user namespace (the
    /// user's `:idmap`, `:rootidmap`, `:owneridmap`), made by the host's root
    /// in the outer phase; see container/idmap.rs for the maps.
    IdmapBind {
        source: BindSource,
        target: PathBuf,
        kind: Kind,
        recursive: bool,
        access: Access,
        idmap: Idmap,
        /// The guest's range (the user namespace's).
        shift: u32,
        range: u32,
    },
}

/// An overlay's upper layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverlayUpper {
    /// An empty tmpfs with these options, gone with the boot.
    Tmpfs { options: String },
    /// A host directory, with its work directory (made and removed by the
    /// supervisor, supervisor/overlays.rs).
    Dir { upper: PathBuf, work: PathBuf },
}

/// The work directory of an overlay whose upper layer is the host directory
/// `upper`, as machine `machine` uses it: next to it (overlayfs wants both on
/// one mount), named after the machine, so that only one run at a time uses
/// it and the next run of the machine reuses one a killed run left.
pub fn overlay_workdir(upper: &Path, machine: &str) -> PathBuf {
    let name = upper
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    upper
        .parent()
        .unwrap_or(Path::new("/"))
        .join(format!(".#{name}.nixrun-work-{machine}"))
}

impl Op {
    /// The container path the entry mounts on or creates.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Op::Mount { target, .. } | Op::Bind { target, .. } | Op::IdmapBind { target, .. } => {
                Some(target)
            }
            Op::Mkdir { path, .. }
            | Op::Node { path, .. }
            | Op::GuestDevice { path, .. }
            | Op::Symlink { path, .. }
            | Op::File { path, .. } => Some(path),
            Op::Console => Some(Path::new("/dev/console")),
            Op::NotifySocket => Some(Path::new("/run/host/notify")),
            Op::Overlay { target, .. } | Op::Inaccessible { target } => Some(target),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Outer,
    Inner,
}

/// The mode an entry applies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// The guest's root is the host's root: it may mknod (the device policy
    /// decides what it can open).
    HostUsers,
    /// The guest runs in a user namespace of its own: no mknod.
    PrivateUsers,
    /// The guest has a network namespace of its own.
    PrivateNetwork,
}

/// The facts about a container that decide which entries apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mode {
    pub private_network: bool,
    /// The host uid/gid the guest's root maps to, with a user namespace.
    pub uid_shift: Option<u32>,
}

impl Mode {
    pub fn of(plan: &Plan, facts: &Facts) -> Mode {
        Mode {
            private_network: plan.network.private,
            uid_shift: facts.userns.map(|u| u.shift),
        }
    }

    pub fn holds(&self, when: When) -> bool {
        match when {
            When::Always => true,
            When::HostUsers => self.uid_shift.is_none(),
            When::PrivateUsers => self.uid_shift.is_some(),
            When::PrivateNetwork => self.private_network,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub op: Op,
    pub phase: Phase,
    pub when: When,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub entries: Vec<Entry>,
    pub mode: Mode,
}

impl Table {
    /// The operations of one phase that apply in the table's mode, in order.
    pub fn ops(&self, phase: Phase) -> impl Iterator<Item = &Op> {
        self.entries
            .iter()
            .filter(move |e| e.phase == phase && self.mode.holds(e.when))
            .map(|e| &e.op)
    }

    /// Every operation that applies, outer phase first: the order they run in.
    pub fn all(&self) -> Vec<&Op> {
        self.ops(Phase::Outer)
            .chain(self.ops(Phase::Inner))
            .collect()
    }
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

fn fresh(fstype: &'static str, target: &str, flags: MsFlags, data: Option<&str>) -> Op {
    Op::Mount {
        fstype,
        target: p(target),
        flags,
        data: data.map(str::to_string),
        optional: false,
    }
}

/// Bind a container path onto itself, read-only (or writable again).
fn rebind(target: &str, access: Access, optional: bool) -> Op {
    Op::Bind {
        source: BindSource::InRoot(p(target)),
        target: p(target),
        kind: Kind::Dir,
        recursive: true,
        access,
        optional,
    }
}

pub fn read_only(target: &str, optional: bool) -> Op {
    rebind(target, Access::ReadOnly, optional)
}

/// Collects entries with their phase and condition.
struct Builder {
    entries: Vec<Entry>,
    phase: Phase,
}

impl Builder {
    fn add(&mut self, op: Op) {
        self.when(When::Always, op);
    }

    fn when(&mut self, when: When, op: Op) {
        self.entries.push(Entry {
            op,
            phase: self.phase,
            when,
        });
    }
}

pub fn table(plan: &Plan, facts: &Facts) -> Table {
    build(plan, facts, Mode::of(plan, facts))
}

/// tmpfs options giving the file system's root to the guest's root (nspawn's
/// tmpfs_patch_options; nothing to add for the host's ids).
fn owned(options: &str, mode: Mode) -> String {
    match mode.uid_shift {
        Some(s) if s != 0 => format!("{options},uid={s},gid={s}"),
        _ => options.to_string(),
    }
}

/// A shared tmpfs entry (`run_tmpfs`) with its options `owned`.
fn owned_mount(op: Op, mode: Mode) -> Op {
    match op {
        Op::Mount {
            fstype,
            target,
            flags,
            data,
            optional,
        } => Op::Mount {
            fstype,
            target,
            flags,
            data: data.map(|d| owned(&d, mode)),
            optional,
        },
        other => other,
    }
}

fn build(plan: &Plan, facts: &Facts, mode: Mode) -> Table {
    use MsFlags as F;
    let nosuid_nodev_noexec = F::MS_NOSUID | F::MS_NODEV | F::MS_NOEXEC;
    let mut t = Builder {
        entries: Vec::new(),
        phase: Phase::Outer,
    };

    // --- outer: /dev, /run, /tmp, the user's mounts ---------------------------
    t.add(fresh(
        "tmpfs",
        "/dev",
        F::MS_NOSUID | F::MS_STRICTATIME,
        Some(&owned(&format!("mode=0755,{LIMITS_DEV}"), mode)),
    ));
    for &(dev, major, minor) in DEVICES {
        t.when(
            When::HostUsers,
            Op::Node {
                path: p(dev),
                kind: SFlag::S_IFCHR,
                mode: 0o666,
                major,
                minor,
            },
        );
        t.when(
            When::PrivateUsers,
            Op::GuestDevice {
                path: p(dev),
                major,
                minor,
            },
        );
    }
    let tty_gid = mode.uid_shift.unwrap_or(0) + TTY_GID;
    t.add(Op::Mount {
        fstype: "devpts",
        target: p("/dev/pts"),
        flags: F::MS_NOSUID | F::MS_NOEXEC,
        data: Some(format!("newinstance,ptmxmode=0666,mode=0620,gid={tty_gid}")),
        optional: false,
    });
    t.add(Op::Symlink {
        path: p("/dev/ptmx"),
        target: "pts/ptmx".into(),
    });
    t.add(fresh(
        "tmpfs",
        "/dev/shm",
        F::MS_NOSUID | F::MS_NODEV | F::MS_STRICTATIME,
        Some(&owned(&format!("mode=01777,{LIMITS_NESTED}"), mode)),
    ));
    for (name, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        t.add(Op::Symlink {
            path: p(name),
            target: target.into(),
        });
    }
    if plan.console != Console::Pipe {
        t.add(Op::Console);
    }
    t.add(owned_mount(run_tmpfs(), mode));
    for (when, op) in run_host(&facts.uuid, facts.host_os_release.as_deref()) {
        // With a user namespace nixrun's outer phase still runs as the host's
        // root, which may make the 0:0 device nodes.
        let when = match when {
            When::HostUsers if mode.uid_shift.is_some() => When::Always,
            w => w,
        };
        t.when(when, op);
    }
    t.add(fresh(
        "tmpfs",
        "/tmp",
        F::MS_NOSUID | F::MS_NODEV | F::MS_STRICTATIME,
        Some(&owned(&format!("mode=01777,{LIMITS_NESTED}"), mode)),
    ));

    // The user's mounts, parents before children whatever the command line
    // order, so that --bind=/a/b does not end up hidden under a later --tmpfs=/a.
    // Those below /proc or /sys go after the API file systems they would
    // otherwise be hidden by (as nspawn's inner child does).
    let mut user: Vec<(PathBuf, Op)> = Vec::new();
    for b in plan.binds.iter().chain(&facts.extra_binds) {
        user.push((b.target.clone(), bind_op(b, facts)));
    }
    for tm in &plan.tmpfs {
        user.push((
            tm.target.clone(),
            Op::Mount {
                fstype: "tmpfs",
                target: tm.target.clone(),
                flags: F::MS_NODEV | F::MS_STRICTATIME,
                data: Some(owned(&tm.options, mode)),
                optional: false,
            },
        ));
    }
    for o in &plan.overlays {
        let upper = match &o.upper {
            Some(dir) => OverlayUpper::Dir {
                upper: dir.clone(),
                work: overlay_workdir(dir, &plan.machine),
            },
            None => OverlayUpper::Tmpfs {
                options: format!("mode=0755,{}", super::rootfs::LIMITS_ROOTFS),
            },
        };
        user.push((
            o.target.clone(),
            Op::Overlay {
                target: o.target.clone(),
                lowers: o.lowers.clone(),
                upper,
                readonly: o.readonly,
            },
        ));
    }
    for target in &plan.inaccessible {
        user.push((
            target.clone(),
            Op::Inaccessible {
                target: target.clone(),
            },
        ));
    }
    user.sort_by_key(|(target, _)| target.components().count());
    let in_api_fs = |t: &Path| t.starts_with("/proc") || t.starts_with("/sys");
    let (api_user, plain_user): (Vec<_>, Vec<_>) =
        user.into_iter().partition(|(t, _)| in_api_fs(t));
    for (_, op) in plain_user {
        t.add(op);
    }
    // Last of the outer phase: the guest may read /run/host but not change what
    // the runtime put there.
    for op in seal_run_host(facts.host_os_release.as_deref()) {
        t.add(op);
    }

    // --- the API file systems of the container's namespaces -------------------
    // Without a user namespace, all but the cgroup2 mount depend on nothing
    // sync point 1 brings (the PID, network and IPC namespaces exist from the
    // clone on): they are built in the outer phase, while the supervisor
    // makes the cgroups on the other CPU (~0.2 ms of a start). With one, they
    // wait for the supervisor's id maps.
    t.phase = if mode.uid_shift.is_none() {
        Phase::Outer
    } else {
        Phase::Inner
    };
    t.add(fresh("proc", "/proc", nosuid_nodev_noexec, None));
    for pr in proc_protections(true) {
        let target = Path::new("/proc").join(pr.path);
        let target = target.to_str().expect("a static path");
        let op = match pr.what {
            Protect::ReadOnly => read_only(target, pr.optional),
            Protect::ReadWrite => rebind(target, Access::ReadWrite, pr.optional),
            Protect::Mask => Op::Bind {
                source: BindSource::InRoot(p(INACCESSIBLE_REG)),
                target: p(target),
                kind: Kind::File,
                recursive: false,
                access: Access::ReadOnly,
                optional: pr.optional,
            },
        };
        if pr.private_network_only {
            t.when(When::PrivateNetwork, op);
        } else {
            t.add(op);
        }
    }
    // Mounted from inside the container's namespaces, sysfs shows its network
    // namespace's devices. A user namespace may mount it only for a network
    // namespace it owns; for any other (the host's, --network-namespace-path)
    // the outer phase mounts it, as the host's root, in that namespace.
    let sysfs = fresh("sysfs", "/sys", nosuid_nodev_noexec | F::MS_RDONLY, None);
    let own_netns = plan.network.private && plan.network.netns_path.is_none();
    if mode.uid_shift.is_some() && !own_netns {
        t.entries.push(Entry {
            op: sysfs,
            phase: Phase::Outer,
            when: When::PrivateUsers,
        });
    } else {
        t.add(sysfs);
    }
    t.add(fuse_hidden());
    // Its instance serves the mounter's IPC namespace.
    t.add(fresh("mqueue", "/dev/mqueue", nosuid_nodev_noexec, None));
    // Mounted after the cgroup namespace was entered (sync point 1), so its
    // root is the container's own cgroup: the guest sees and can write only
    // its subtree.
    t.phase = Phase::Inner;
    t.add(cgroup2());
    for (_, op) in api_user {
        t.add(op);
    }

    Table {
        entries: t.entries,
        mode,
    }
}

/// The container's /run: a bounded tmpfs of its own.
pub fn run_tmpfs() -> Op {
    fresh(
        "tmpfs",
        "/run",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME,
        Some(&format!("mode=0755,{LIMITS_RUN}")),
    )
}

/// What the container interface puts in /run/host, in order: the manager's
/// name, the container's UUID, the inaccessible nodes systemd masks with,
/// the notify socket, the mount point of the host's os-release; the caller
/// adds `seal_run_host` once everything it puts there is there. Each with
/// the mode it applies in.
/// Shared by both front ends (the OCI one for booted guests).
pub fn run_host(uuid: &uuid::Uuid, host_os_release: Option<&Path>) -> Vec<(When, Op)> {
    let mut v = vec![
        (
            When::Always,
            Op::Mkdir {
                path: p("/run/host"),
                mode: 0o755,
            },
        ),
        (
            When::Always,
            Op::File {
                path: p("/run/host/container-manager"),
                contents: b"nixrun\n".to_vec(),
                mode: 0o444,
            },
        ),
        (
            When::Always,
            Op::File {
                path: p("/run/host/container-uuid"),
                contents: format!("{}\n", uuid.hyphenated()).into_bytes(),
                mode: 0o444,
            },
        ),
        (
            When::Always,
            Op::Mkdir {
                path: p("/run/host/inaccessible"),
                mode: 0o555,
            },
        ),
    ];
    for (path, kind) in [
        (INACCESSIBLE_REG, SFlag::S_IFREG),
        ("/run/host/inaccessible/fifo", SFlag::S_IFIFO),
        ("/run/host/inaccessible/sock", SFlag::S_IFSOCK),
        ("/run/host/inaccessible/chr", SFlag::S_IFCHR),
        ("/run/host/inaccessible/blk", SFlag::S_IFBLK),
    ] {
        // Device 0:0 has no driver: the chr and blk nodes open with ENXIO. In a
        // user namespace mknod refuses device nodes; the guest then lacks them.
        let when = if kind == SFlag::S_IFCHR || kind == SFlag::S_IFBLK {
            When::HostUsers
        } else {
            When::Always
        };
        v.push((
            when,
            Op::Node {
                path: p(path),
                kind,
                mode: 0,
                major: 0,
                minor: 0,
            },
        ));
        if path == INACCESSIBLE_REG {
            v.push((
                When::Always,
                Op::Mkdir {
                    path: p("/run/host/inaccessible/dir"),
                    mode: 0,
                },
            ));
        }
    }
    v.push((When::Always, Op::NotifySocket));
    if host_os_release.is_some() {
        // Made here, while /run/host is writable; the bind lands on it
        // after the read-only rebind, which would otherwise copy it and leave
        // a second, hidden mount in the guest's table.
        v.push((
            When::Always,
            Op::File {
                path: p(HOST_OS_RELEASE),
                contents: Vec::new(),
                mode: 0o444,
            },
        ));
    }
    v
}

const HOST_OS_RELEASE: &str = "/run/host/os-release";

/// What closes /run/host (see `run_host`), in this order: /run/host made
/// read-only, then the host's os-release bound onto its mount point. The
/// other order would have the recursive rebind copy the bind and leave the
/// first one hidden below it.
pub fn seal_run_host(host_os_release: Option<&Path>) -> Vec<Op> {
    let mut ops = vec![read_only("/run/host", false)];
    // Not optional: an optional bind skips a target that does not exist,
    // and a missing mount point is a bug. The source was found at start-up.
    ops.extend(host_os_release.map(|os| Op::Bind {
        source: BindSource::Host(os.to_path_buf()),
        target: p(HOST_OS_RELEASE),
        kind: Kind::File,
        recursive: false,
        access: Access::ReadOnly,
        optional: false,
    }));
    ops
}

/// The container's cgroup2 tree. Mounted after the cgroup namespace was
/// entered, so its root is the container's own cgroup: the guest sees and can
/// write only its subtree.
pub fn cgroup2() -> Op {
    fresh(
        "cgroup2",
        "/sys/fs/cgroup",
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )
}

/// An empty read-only tmpfs over /sys/fs/fuse. fusectl lets its mounter abort
/// any FUSE connection of the host. The guest may not mount it
/// (mountguard.rs), and with its mount point hidden the guest's
/// sys-fs-fuse-connections.mount skips itself instead of failing.
pub fn fuse_hidden() -> Op {
    Op::Mount {
        fstype: "tmpfs",
        target: p("/sys/fs/fuse"),
        flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
        data: Some(format!("mode=0555,{LIMITS_EMPTY}")),
        optional: true,
    }
}

fn bind_op(b: &Bind, facts: &Facts) -> Op {
    let kind = if b.kind.is_dir() {
        Kind::Dir
    } else {
        Kind::File
    };
    let access = if b.readonly {
        Access::ReadOnly
    } else {
        Access::Inherit
    };
    match facts.userns {
        Some(u) if b.idmap != Idmap::No => Op::IdmapBind {
            source: b.source.clone(),
            target: b.target.clone(),
            kind,
            recursive: b.recursive,
            access,
            idmap: b.idmap,
            shift: u.shift,
            range: u.range,
        },
        _ => Op::Bind {
            source: b.source.clone(),
            target: b.target.clone(),
            kind,
            recursive: b.recursive,
            access,
            optional: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{SourceKind, Tmpfs};

    fn plan() -> Plan {
        let mut plan = Plan::new("/var/lib/containers/foo".into(), "foo");
        plan.binds = vec![
            Bind {
                source: BindSource::Host("/nix/store".into()),
                target: "/nix/store".into(),
                readonly: true,
                recursive: true,
                kind: SourceKind::Dir,
                idmap: Idmap::No,
            },
            Bind {
                source: BindSource::Host("/etc/hosts".into()),
                target: "/var/x/hosts".into(),
                readonly: false,
                recursive: true,
                kind: SourceKind::File,
                idmap: Idmap::No,
            },
        ];
        plan.tmpfs = vec![Tmpfs {
            target: "/var".into(),
            options: "mode=0755".into(),
        }];
        plan
    }

    fn facts() -> Facts {
        Facts::for_tests()
    }

    fn position(t: &[&Op], pred: impl Fn(&Op) -> bool) -> usize {
        t.iter()
            .position(|op| pred(op))
            .expect("entry missing from the table")
    }

    fn mount_at(target: &str) -> impl Fn(&Op) -> bool + '_ {
        move |op| match op {
            Op::Mount { target: t, .. } | Op::Bind { target: t, .. } => t == Path::new(target),
            _ => false,
        }
    }

    fn ops_for(plan: &Plan) -> Vec<Op> {
        table(plan, &facts()).all().into_iter().cloned().collect()
    }

    #[test]
    fn api_file_systems_are_read_only_where_the_container_interface_says() {
        let owned = ops_for(&plan());
        let t: Vec<&Op> = owned.iter().collect();
        assert!(owned.contains(&Op::Mount {
            fstype: "sysfs",
            target: p("/sys"),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
            data: None,
            optional: false,
        }));
        assert!(owned.contains(&read_only("/proc/sys", false)));
        assert!(position(&t, mount_at("/proc")) < position(&t, mount_at("/proc/sys")));
        for m in PROC_MASKED {
            let i = position(&t, mount_at(m));
            match t[i] {
                Op::Bind { source, access, .. } => {
                    assert_eq!(source, &BindSource::InRoot(p(INACCESSIBLE_REG)));
                    assert_eq!(*access, Access::ReadOnly);
                }
                other => panic!("{m}: {other:?}"),
            }
            // The mask's source exists by then.
            assert!(
                position(&t, |op| op
                    == &Op::Node {
                        path: p(INACCESSIBLE_REG),
                        kind: SFlag::S_IFREG,
                        mode: 0,
                        major: 0,
                        minor: 0
                    })
                    < i
            );
        }
        assert!(owned.contains(&Op::NotifySocket));
        assert!(owned.contains(&Op::Console));
    }

    #[test]
    fn the_store_is_bound_read_only_after_dev_and_run_exist() {
        let owned = ops_for(&plan());
        let t: Vec<&Op> = owned.iter().collect();
        let store = position(&t, mount_at("/nix/store"));
        match t[store] {
            Op::Bind {
                source,
                access,
                recursive,
                ..
            } => {
                assert_eq!(source, &BindSource::Host(p("/nix/store")));
                assert!(*access == Access::ReadOnly && *recursive);
            }
            other => panic!("{other:?}"),
        }
        assert!(position(&t, mount_at("/dev")) < store);
        assert!(position(&t, mount_at("/run")) < store);
        // The tmpfs on /var comes before the bind below it, although given after.
        assert!(position(&t, mount_at("/var")) < position(&t, mount_at("/var/x/hosts")));
        // /run/host is made read-only after everything was put there, and
        // before the API file systems (the /proc masks only read from it).
        let table = table(&plan(), &facts());
        let outer: Vec<&Op> = table.ops(Phase::Outer).collect();
        let ro = outer
            .iter()
            .position(|op| *op == &read_only("/run/host", false))
            .expect("/run/host is made read-only");
        let last_made = outer
            .iter()
            .rposition(|op| {
                !matches!(op, Op::Bind { .. }) && op.path().is_some_and(|p| p.starts_with("/run"))
            })
            .unwrap();
        assert!(last_made < ro);
        assert!(ro < position(&outer, mount_at("/proc")));
        // The cgroup2 mount waits for sync point 1 (the cgroup namespace).
        assert!(matches!(
            table.ops(Phase::Inner).next(),
            Some(Op::Mount {
                fstype: "cgroup2",
                ..
            })
        ));
    }

    #[test]
    fn user_mounts_below_proc_and_sys_come_after_those_file_systems() {
        let mut pl = plan();
        pl.tmpfs.push(Tmpfs {
            target: "/sys/kernel/x".into(),
            options: "mode=0755".into(),
        });
        let owned = ops_for(&pl);
        let t: Vec<&Op> = owned.iter().collect();
        assert!(position(&t, mount_at("/sys")) < position(&t, mount_at("/sys/kernel/x")));
        let table = table(&pl, &facts());
        assert!(table
            .ops(Phase::Inner)
            .any(|op| op.path() == Some(Path::new("/sys/kernel/x"))));
    }

    #[test]
    fn the_hosts_os_release_is_bound_where_it_exists() {
        let ops = run_host(
            &uuid::Uuid::from_u128(1),
            Some(Path::new("/etc/os-release")),
        );
        // Its mount point is made with the rest of /run/host: nothing else
        // creates /run/host/os-release.
        assert!(ops.iter().any(|(_, op)| matches!(op,
            Op::File { path, .. } if path == Path::new("/run/host/os-release"))));
        assert!(matches!(
            &seal_run_host(Some(Path::new("/etc/os-release")))[..],
            [ro, Op::Bind { target, optional: false, access: Access::ReadOnly, .. }]
                if *ro == read_only("/run/host", false)
                    && target == Path::new("/run/host/os-release")
        ));
        assert!(!run_host(&uuid::Uuid::from_u128(1), None)
            .iter()
            .any(|(_, op)| op.path() == Some(Path::new("/run/host/os-release"))));
        assert_eq!(seal_run_host(None), vec![read_only("/run/host", false)]);
        // Bound once /run/host is read-only, so that the recursive rebind has
        // no copy of it to make (one mount, not a hidden one under another).
        let table = table(&plan(), &facts());
        let outer: Vec<&Op> = table.ops(Phase::Outer).collect();
        let ro = outer
            .iter()
            .position(|op| *op == &read_only("/run/host", false))
            .unwrap();
        let binds: Vec<usize> = outer
            .iter()
            .enumerate()
            .filter(|(_, op)| {
                matches!(op, Op::Bind { target, .. } if target == Path::new("/run/host/os-release"))
            })
            .map(|(i, _)| i)
            .collect();
        assert_eq!(binds.len(), 1, "{outer:?}");
        assert!(binds[0] > ro);
    }

    #[test]
    fn the_runtimes_tmpfs_mounts_are_bounded() {
        let owned = ops_for(&plan());
        for target in ["/dev", "/dev/shm", "/run", "/tmp", "/sys/fs/fuse"] {
            let data = owned
                .iter()
                .find_map(|op| match op {
                    Op::Mount {
                        fstype: "tmpfs",
                        target: t,
                        data,
                        ..
                    } if t == Path::new(target) => data.clone(),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no tmpfs on {target}"));
            assert!(
                data.contains("size=") && data.contains("nr_inodes="),
                "{target}: {data}"
            );
        }
        // The user's --tmpfs keeps exactly the user's options.
        let var = owned.iter().find(|op| op.path() == Some(Path::new("/var")));
        assert!(matches!(var, Some(Op::Mount { data: Some(d), .. }) if d == "mode=0755"));
    }

    #[test]
    fn pipe_console_has_no_pty() {
        let mut pl = plan();
        pl.console = Console::Pipe;
        assert!(!ops_for(&pl).contains(&Op::Console));
    }

    #[test]
    fn conditions_follow_the_mode() {
        let mut pl = plan();
        let default = table(&pl, &facts());
        assert_eq!(default.mode, Mode::default());
        let all = default.all();
        // The host's root creates device nodes; nothing is bound from the host's /dev.
        assert!(all
            .iter()
            .any(|op| matches!(op, Op::Node { path, .. } if path == Path::new("/dev/null"))));
        assert!(!all.iter().any(
            |op| matches!(op, Op::Bind { source: BindSource::Host(s), .. } if s.starts_with("/dev"))
        ));
        assert!(!all
            .iter()
            .any(|op| op.path() == Some(Path::new("/proc/sys/net"))));
        assert!(all.iter().any(|op| matches!(op, Op::Mount { fstype: "devpts", data: Some(d), .. } if d.ends_with("gid=5"))));

        pl.network.private = true;
        let net = table(&pl, &facts());
        let ops = net.all();
        let sys = position(&ops, mount_at("/proc/sys"));
        let sys_net = position(&ops, mount_at("/proc/sys/net"));
        assert!(
            sys < sys_net,
            "/proc/sys/net must be writable again after /proc/sys went read-only"
        );
        assert!(matches!(
            ops[sys_net],
            Op::Bind {
                access: Access::ReadWrite,
                ..
            }
        ));

        // In a user namespace: the guest's devices (mknod or the host's
        // node), the tty group shifted.
        let userns = build(
            &plan(),
            &facts(),
            Mode {
                private_network: false,
                uid_shift: Some(0x10000),
            },
        );
        let ops = userns.all();
        assert!(ops.iter().any(|op| matches!(op, Op::Mount { fstype: "devpts", data: Some(d), .. } if d.ends_with("gid=65541"))));
        assert!(!ops
            .iter()
            .any(|op| matches!(op, Op::Node { path, .. } if path.starts_with("/dev/"))));
        assert!(ops.iter().any(|op| matches!(op, Op::GuestDevice { path, major: 1, minor: 3 } if path == Path::new("/dev/null"))));
    }

    fn userns_facts(shift: u32) -> Facts {
        Facts {
            userns: Some(super::super::Userns {
                shift,
                range: 0x10000,
                map_root: true,
            }),
            ..facts()
        }
    }

    #[test]
    fn a_user_namespace_owns_the_runtimes_tmpfs_and_maps_binds() {
        let mut pl = plan();
        pl.binds[0].idmap = Idmap::Idmap;
        let t = table(&pl, &userns_facts(0x80000));
        assert_eq!(t.mode.uid_shift, Some(0x80000));
        let ops = t.all();
        for target in ["/dev", "/dev/shm", "/run", "/tmp", "/var"] {
            let data = ops
                .iter()
                .find_map(|op| match op {
                    Op::Mount {
                        fstype: "tmpfs",
                        target: t,
                        data: Some(d),
                        ..
                    } if t == Path::new(target) => Some(d.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("no tmpfs on {target}"));
            assert!(data.ends_with(",uid=524288,gid=524288"), "{target}: {data}");
        }
        // The store is ID-mapped with the range, /var/x/hosts is not.
        assert!(ops.iter().any(|op| matches!(op, Op::IdmapBind { target, idmap: Idmap::Idmap, shift: 0x80000, range: 0x10000, access: Access::ReadOnly, .. } if target == Path::new("/nix/store"))));
        assert!(ops.iter().any(
            |op| matches!(op, Op::Bind { target, .. } if target == Path::new("/var/x/hosts"))
        ));
        // sysfs for the host's network is mounted outside the user namespace.
        assert!(t.ops(Phase::Outer).any(|op| matches!(
            op,
            Op::Mount {
                fstype: "sysfs",
                ..
            }
        )));
        assert!(!t.ops(Phase::Inner).any(|op| matches!(
            op,
            Op::Mount {
                fstype: "sysfs",
                ..
            }
        )));
        // With a network of its own, from inside it.
        pl.network.private = true;
        let t = table(&pl, &userns_facts(0x80000));
        assert!(t.ops(Phase::Inner).any(|op| matches!(
            op,
            Op::Mount {
                fstype: "sysfs",
                ..
            }
        )));
        // identity (shift 0) needs no owner on its tmpfs mounts.
        let t = table(&plan(), &userns_facts(0));
        assert!(t.all().iter().any(|op| matches!(op, Op::Mount { fstype: "tmpfs", target, data: Some(d), .. } if target == Path::new("/run") && !d.contains("uid="))));
    }
}
