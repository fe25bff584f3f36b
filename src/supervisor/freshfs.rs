//! Fresh procfs and sysfs instances for the guest, built by the supervisor with
//! the container's protections and handed over whole (the mount guard's answer
//! to a guest's `mount -t proc` or `mount -t sysfs`).
//!
//! A real-root guest must not get a bare procfs or sysfs: /proc/sys and /sys
//! are host-wide knobs (core_pattern runs a program as host root), and a mount
//! namespace the guest makes with unshare(CLONE_NEWNS) is owned by the initial
//! user namespace, where the kernel's own "too revealing" check does not apply.
//! But sandboxes inside the guest need one (unshare --mount-proc, bwrap --proc,
//! systemd's PrivatePIDs=, nested containers, podman), in their own PID or
//! network namespace. So the guard builds the instance itself:
//!
//! 1. In a helper process: a procfs for the caller's PID namespace (the
//!    `pidns=` fsconfig option names it by fd, so the helper never enters it,
//!    where guest processes could ptrace it), or a read-only sysfs from inside
//!    the caller's network namespace, with the caller's options (hidepid=,
//!    subset=, gid=) and mount flags.
//! 2. In a private mount namespace of the helper, the instance gets exactly the
//!    protections of the container's own /proc (policy::mounts::proc_protections):
//!    /proc/sys read-only (net writable with a private network), the masked
//!    files, the read-only directories.
//! 3. A second helper copies that namespace into a new user namespace, which
//!    makes every mount in the copy MNT_LOCKED (no unmounting a mask, no
//!    non-recursive bind that would show what a mask hides) and locks their
//!    read-only flags, as container/lock.rs does for the container's own tree;
//!    it clones the instance with its masks as a detached tree
//!    (open_tree(OPEN_TREE_CLONE|AT_RECURSIVE)) and sends it back.
//! 4. The first helper enters the caller's mount namespace and moves the tree
//!    onto the caller's target (move_mount), in one step: the caller never sees
//!    the instance without its masks.
//!
//! The arguments are the guard's own copies, read once from the guest's memory.

use super::mountguard::{Report, Target};
use crate::policy::mounts::{ProcProtection, Protect};
use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sched::{setns, unshare, CloneFlags};
use rustix::mount::{
    fsconfig_create, fsconfig_set_fd, fsconfig_set_string, fsmount, fsopen, move_mount, open_tree,
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags,
};
use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// A directory every host has, covered in the helper's private mount namespace
/// by the scratch tmpfs the instance is built in (the host never sees it).
const SCRATCH_AT: &str = "/run";
const TREE: &str = "/run/tree";
const MASK_FILE: &str = "/run/reg";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Proc,
    Sysfs,
}

impl Kind {
    fn fstype(self) -> &'static str {
        match self {
            Kind::Proc => "proc",
            Kind::Sysfs => "sysfs",
        }
    }
}

/// What to build, from the caller's arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub kind: Kind,
    pub source: String,
    pub attrs: MountAttrFlags,
    /// fsconfig key/value pairs (procfs's own options).
    pub options: Vec<(String, String)>,
    pub protections: Vec<ProcProtection>,
}

/// procfs options a caller may pass; anything else (pidns= above all, a path
/// we would resolve in the host's view) is refused.
const PROC_OPTIONS: &[&str] = &["hidepid", "subset", "gid"];

/// The caller's mount(2) flags and data as a Spec. The instance is always
/// nosuid, nodev and noexec (as the container's own /proc and /sys), sysfs
/// always read-only; per-mount flags the caller adds are kept; flags that only
/// concern a superblock's data (sync, dirsync, lazytime, mand) mean nothing to
/// these file systems and are ignored; anything else is EINVAL.
pub fn spec(
    kind: Kind,
    source: Option<&CStr>,
    flags: u64,
    data: Option<&CStr>,
    private_network: bool,
) -> Result<Spec, Errno> {
    use libc::c_ulong;
    let mut f = flags as c_ulong;
    // The magic number old programs put in the high bits (mount(2)).
    const MS_MGC_MSK: c_ulong = 0xffff_0000;
    if f & MS_MGC_MSK == libc::MS_MGC_VAL {
        f &= !MS_MGC_MSK;
    }
    let ignored = libc::MS_SILENT
        | libc::MS_REC
        | libc::MS_SYNCHRONOUS
        | libc::MS_DIRSYNC
        | libc::MS_LAZYTIME
        | libc::MS_MANDLOCK;
    f &= !ignored;
    let mut attrs = MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV
        | MountAttrFlags::MOUNT_ATTR_NOEXEC;
    let map = [
        (libc::MS_RDONLY, MountAttrFlags::MOUNT_ATTR_RDONLY),
        (libc::MS_NOSUID, MountAttrFlags::MOUNT_ATTR_NOSUID),
        (libc::MS_NODEV, MountAttrFlags::MOUNT_ATTR_NODEV),
        (libc::MS_NOEXEC, MountAttrFlags::MOUNT_ATTR_NOEXEC),
        (libc::MS_NOATIME, MountAttrFlags::MOUNT_ATTR_NOATIME),
        (libc::MS_STRICTATIME, MountAttrFlags::MOUNT_ATTR_STRICTATIME),
        (libc::MS_RELATIME, MountAttrFlags::MOUNT_ATTR_RELATIME),
        (libc::MS_NODIRATIME, MountAttrFlags::MOUNT_ATTR_NODIRATIME),
        (
            libc::MS_NOSYMFOLLOW as c_ulong,
            MountAttrFlags::MOUNT_ATTR_NOSYMFOLLOW,
        ),
    ];
    for (ms, attr) in map {
        if f & ms != 0 {
            attrs |= attr;
            f &= !ms;
        }
    }
    if f != 0 {
        return Err(Errno::EINVAL);
    }
    if kind == Kind::Sysfs {
        attrs |= MountAttrFlags::MOUNT_ATTR_RDONLY;
    }
    let mut options = Vec::new();
    let data = data
        .map(|d| d.to_str().map_err(|_| Errno::EINVAL))
        .transpose()?;
    for opt in data.unwrap_or("").split(',').filter(|o| !o.is_empty()) {
        let (key, value) = opt.split_once('=').ok_or(Errno::EINVAL)?;
        if kind != Kind::Proc || !PROC_OPTIONS.contains(&key) || value.is_empty() {
            return Err(Errno::EINVAL);
        }
        options.push((key.to_string(), value.to_string()));
    }
    let source = match source {
        Some(s) => s.to_str().map_err(|_| Errno::EINVAL)?.to_string(),
        None => kind.fstype().to_string(),
    };
    let protections = match kind {
        Kind::Proc => crate::policy::mounts::proc_protections(private_network),
        Kind::Sysfs => Vec::new(),
    };
    Ok(Spec {
        kind,
        source,
        attrs,
        options,
        protections,
    })
}

/// Where the instance goes: the caller's mount namespace, root, working
/// directory and target, opened by the supervisor while the caller waited.
pub struct Destination<'a> {
    pub mnt_ns: &'a File,
    pub root: &'a File,
    pub cwd: &'a File,
    pub target: &'a Target,
    pub target_path: &'a CStr,
}

fn errno(e: rustix::io::Errno) -> Errno {
    crate::sys::errno(e)
}

/// In a helper process (it changes its namespaces): builds the instance for
/// the caller's PID namespace (`instance_ns` for procfs) or network namespace
/// (for sysfs), protects it, locks it and moves it onto the caller's target;
/// `report` gets the result before the locking helper is reaped.
pub fn build_and_place(
    spec: &Spec,
    instance_ns: &File,
    dest: &Destination<'_>,
    report: &Report<'_>,
) -> Result<(), Errno> {
    if spec.kind == Kind::Sysfs {
        // sysfs shows the network devices of the mounter's network namespace.
        setns(instance_ns, CloneFlags::CLONE_NEWNET)?;
    }
    let fs = fsopen(spec.kind.fstype(), FsOpenFlags::FSOPEN_CLOEXEC).map_err(errno)?;
    fsconfig_set_string(&fs, "source", spec.source.as_str()).map_err(errno)?;
    if spec.kind == Kind::Proc {
        // A procfs for another PID namespace without entering it needs the
        // pidns= option, which older kernels lack (Debian 12's 6.1: EINVAL).
        // Refused there as before this existed (EPERM): systemd then binds
        // the /proc it has for ProtectProc= and the like, where an EINVAL
        // would fail the service (226/NAMESPACE).
        fsconfig_set_fd(&fs, "pidns", instance_ns.as_fd()).map_err(|e| match errno(e) {
            Errno::EINVAL => Errno::EPERM,
            other => other,
        })?;
    }
    for (k, v) in &spec.options {
        fsconfig_set_string(&fs, k.as_str(), v.as_str()).map_err(errno)?;
    }
    fsconfig_create(&fs).map_err(errno)?;
    let instance = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, spec.attrs).map_err(errno)?;
    drop(fs);

    // A mount namespace of our own for building; nothing propagates out of it.
    unshare(CloneFlags::CLONE_NEWNS)?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    let scratch = scratch_tmpfs()?;
    let here = rustix::fs::CWD;
    move_mount(
        &scratch,
        "",
        here,
        SCRATCH_AT,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(errno)?;
    move_mount(
        &instance,
        "",
        here,
        TREE,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(errno)?;
    for p in &spec.protections {
        protect(p)?;
    }
    let (tree, locker) = lock_and_clone()?;
    report.send(place(&tree, dest));
    drop(tree);
    reap(locker)
}

/// A tiny read-only tmpfs with the directory the instance is built on and the
/// empty file bound over masked paths (mode 0, on a mount no one can write).
fn scratch_tmpfs() -> Result<OwnedFd, Errno> {
    let fs = fsopen("tmpfs", FsOpenFlags::FSOPEN_CLOEXEC).map_err(errno)?;
    for (k, v) in [
        ("source", "tmpfs"),
        ("size", "16k"),
        ("nr_inodes", "8"),
        ("mode", "0755"),
    ] {
        fsconfig_set_string(&fs, k, v).map_err(errno)?;
    }
    fsconfig_create(&fs).map_err(errno)?;
    let m = fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
    )
    .map_err(errno)?;
    use rustix::fs::{Mode, OFlags};
    rustix::fs::mkdirat(&m, "tree", Mode::from_raw_mode(0o755)).map_err(errno)?;
    drop(
        rustix::fs::openat(
            &m,
            "reg",
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno)?,
    );
    crate::sys::mount_setattr(m.as_fd(), false, crate::sys::MOUNT_ATTR_RDONLY, 0)?;
    Ok(m)
}

/// One protection, on the instance built at TREE. A path the instance lacks
/// (procfs with subset=pid has no sys/) has nothing to protect.
fn protect(p: &ProcProtection) -> Result<(), Errno> {
    let path = format!("{TREE}/{}", p.path);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(crate::sys::io_errno(&e)),
        Ok(_) => {}
    }
    let bind = |src: &str, recursive: bool| {
        let mut flags = MsFlags::MS_BIND;
        if recursive {
            flags |= MsFlags::MS_REC;
        }
        nix::mount::mount(Some(src), path.as_str(), None::<&str>, flags, None::<&str>)
    };
    let (recursive, set, clear) = match p.what {
        Protect::ReadOnly => {
            bind(&path, true)?;
            (true, crate::sys::MOUNT_ATTR_RDONLY, 0)
        }
        Protect::ReadWrite => {
            bind(&path, true)?;
            (true, 0, crate::sys::MOUNT_ATTR_RDONLY)
        }
        Protect::Mask => {
            bind(MASK_FILE, false)?;
            (false, crate::sys::MOUNT_ATTR_RDONLY, 0)
        }
    };
    // The new mount, not the one it covers: reopened after the bind.
    let fd = rustix::fs::open(
        path.as_str(),
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(errno)?;
    crate::sys::mount_setattr(fd.as_fd(), recursive, set, clear)
}

/// Copies our mount namespace into a new user namespace (which locks every
/// mount in the copy) and returns a detached clone of the tree at TREE, its
/// masks locked to it, and the helper that made it, still to be reaped (its
/// exit tears its mount namespace down, which takes a while).
fn lock_and_clone() -> Result<(OwnedFd, nix::unistd::Pid), Errno> {
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let child = crate::sys::process::fork_run(|| {
        let r = (|| -> Result<(), Errno> {
            unshare(CloneFlags::CLONE_NEWUSER)?;
            unshare(CloneFlags::CLONE_NEWNS)?;
            let tree = open_tree(
                rustix::fs::CWD,
                TREE,
                OpenTreeFlags::OPEN_TREE_CLONE
                    | OpenTreeFlags::AT_RECURSIVE
                    | OpenTreeFlags::OPEN_TREE_CLOEXEC,
            )
            .map_err(errno)?;
            crate::sys::fd::send_fd(theirs.as_fd(), tree.as_fd())
        })();
        match r {
            Ok(()) => 0,
            Err(e) => e as i32,
        }
    })?;
    drop(theirs);
    let mut buf = [0u8; 1];
    let got = crate::sys::fd::recv(ours.as_fd(), &mut buf, rustix::net::RecvFlags::empty());
    match got.map(|g| g.fds.into_iter().next()) {
        Ok(Some(tree)) => Ok((tree, child)),
        // It failed before sending: its exit status says why.
        _ => reap(child).and(Err(Errno::EIO)),
    }
}

/// Waits for a helper; its exit status is an errno (0: done).
fn reap(child: nix::unistd::Pid) -> Result<(), Errno> {
    use nix::sys::wait::{waitpid, WaitStatus};
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
            Ok(WaitStatus::Exited(_, code)) => return Err(Errno::from_raw(code)),
            Err(Errno::EINTR) => continue,
            _ => return Err(Errno::EIO),
        }
    }
}

/// Enters the caller's mount namespace and moves the tree onto its target,
/// resolved as mount(2) would have resolved it for the caller.
fn place(tree: &OwnedFd, dest: &Destination<'_>) -> Result<(), Errno> {
    setns(dest.mnt_ns, CloneFlags::CLONE_NEWNS)?;
    match dest.target {
        Target::Path => {
            nix::unistd::fchdir(dest.root.as_raw_fd())?;
            nix::unistd::chroot(".")?;
            nix::unistd::fchdir(dest.cwd.as_raw_fd())?;
            move_mount(
                tree,
                "",
                rustix::fs::CWD,
                dest.target_path,
                MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH
                    | MoveMountFlags::MOVE_MOUNT_T_SYMLINKS
                    | MoveMountFlags::MOVE_MOUNT_T_AUTOMOUNTS,
            )
            .map_err(errno)
        }
        Target::CallerFd(fd) => move_mount(
            tree,
            "",
            fd,
            "",
            MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
        )
        .map_err(errno),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    #[test]
    fn flags_and_options_are_honoured_or_refused() {
        let nsn = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        let s = spec(Kind::Proc, Some(&c("proc")), nsn, None, false).unwrap();
        assert_eq!(
            s.attrs,
            MountAttrFlags::MOUNT_ATTR_NOSUID
                | MountAttrFlags::MOUNT_ATTR_NODEV
                | MountAttrFlags::MOUNT_ATTR_NOEXEC
        );
        assert!(s.options.is_empty());
        assert_eq!(s.source, "proc");
        // The protections are the container's own /proc's.
        assert_eq!(
            s.protections,
            crate::policy::mounts::proc_protections(false)
        );

        let s = spec(
            Kind::Proc,
            None,
            libc::MS_RDONLY | 0xC0ED_0000,
            Some(&c("hidepid=invisible,subset=pid,gid=5")),
            true,
        )
        .unwrap();
        assert!(s.attrs.contains(MountAttrFlags::MOUNT_ATTR_RDONLY));
        assert_eq!(
            s.options,
            vec![
                ("hidepid".to_string(), "invisible".to_string()),
                ("subset".into(), "pid".into()),
                ("gid".into(), "5".into())
            ]
        );
        assert!(s
            .protections
            .iter()
            .any(|p| p.path == "sys/net" && p.what == Protect::ReadWrite));

        // A pid namespace named by the caller would be resolved in the host's view.
        for bad in ["pidns=/proc/1/ns/pid", "hidepid", "foo=1", "hidepid="] {
            assert_eq!(
                spec(Kind::Proc, None, 0, Some(&c(bad)), false),
                Err(Errno::EINVAL),
                "{bad}"
            );
        }
        assert_eq!(
            spec(Kind::Proc, None, libc::MS_BIND | 1 << 30, None, false),
            Err(Errno::EINVAL)
        );

        // sysfs: read-only whatever was asked, no options, no masks.
        let s = spec(Kind::Sysfs, Some(&c("sysfs")), 0, None, true).unwrap();
        assert!(s.attrs.contains(MountAttrFlags::MOUNT_ATTR_RDONLY));
        assert!(s.protections.is_empty());
        assert_eq!(
            spec(Kind::Sysfs, None, 0, Some(&c("hidepid=2")), false),
            Err(Errno::EINVAL)
        );
    }
}
