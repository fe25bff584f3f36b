//! The supervisor's answer to the guest's mounts of new file systems (seccomp
//! user notifications from filter 3, see container/seccomp.rs).
//!
//! A real-root guest that mounts a fresh procfs or sysfs gets them without our
//! masks and read-only binds: /proc/sysrq-trigger, /proc/sys/kernel/core_pattern,
//! /sys/kernel/uevent_helper — the host. cgroup v1 would show release_agent
//! (CVE-2022-0492); debugfs, tracefs, bpffs, securityfs, configfs, binfmt_misc,
//! efivarfs and disk file systems are host-wide too. Those are refused with EPERM
//! (systemd then falls back to binding the existing /proc or /sys for ProtectProc=
//! and PrivateNetwork=).
//!
//! File systems that are private to the mounting namespace (tmpfs, devpts,
//! mqueue, cgroup2, ...) are allowed, and the supervisor mounts them itself rather
//! than letting the call continue: the arguments live in the guest's memory, and a
//! second guest thread could change "tmpfs" into "proc" between our check and the
//! kernel's own read (the kernel documents SECCOMP_USER_NOTIF_FLAG_CONTINUE as
//! unsafe for policy). A helper process enters the caller's mount namespace (and
//! IPC or cgroup namespace where the file system depends on it), takes its root and
//! working directory, and performs the mount with our copy of the arguments.
//! systemd mounts onto "/proc/self/fd/N" (an O_PATH fd it opened without following
//! symlinks); that names the caller's fd, so the helper fetches it (pidfd_getfd)
//! and mounts through its own fd directory instead.

use crate::sys::seccomp::{self, Notification};
use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sched::{setns, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileExt;

/// File systems a guest may mount: each instance belongs to the mounting
/// namespace (or is an overlay of what the guest can already see).
pub const ALLOWED_FS: &[&str] = &[
    "tmpfs",
    "ramfs",
    "devpts",
    "mqueue",
    "hugetlbfs",
    "cgroup2",
    "overlay",
];

#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

pub fn decide(fstype: &str) -> Decision {
    if ALLOWED_FS.contains(&fstype) {
        Decision::Allow
    } else {
        Decision::Deny
    }
}

pub struct MountGuard {
    listener: OwnedFd,
}

/// The arguments of one intercepted mount(2), copied out of the guest.
struct Request {
    tid: u32,
    id: u64,
    source: Option<CString>,
    target: CString,
    fstype: CString,
    flags: u64,
    data: Option<CString>,
}

impl MountGuard {
    pub fn new(listener: OwnedFd) -> MountGuard {
        MountGuard { listener }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Answers one pending notification.
    pub fn handle(&self) {
        let Ok(req) = seccomp::recv(self.listener.as_fd()) else {
            return; // ENOENT: the caller died or was interrupted meanwhile
        };
        let result = self.serve(&req).map(|()| 0);
        // A failure means the caller is gone.
        let _ = seccomp::respond(self.listener.as_fd(), req.id, result);
    }

    fn serve(&self, req: &Notification) -> Result<(), Errno> {
        let a = req.args;
        let mem = File::open(format!("/proc/{}/mem", req.tid)).map_err(io_errno)?;
        let fstype = read_cstr(&mem, a[2], 64)?.ok_or(Errno::EINVAL)?;
        let request = Request {
            tid: req.tid,
            id: req.id,
            source: read_cstr(&mem, a[0], 4096)?,
            target: read_cstr(&mem, a[1], 4096)?.ok_or(Errno::EFAULT)?,
            fstype,
            flags: a[3],
            data: read_cstr(&mem, a[4], 4096)?,
        };
        let fstype = request.fstype.to_string_lossy().into_owned();
        if decide(&fstype) == Decision::Deny {
            return Err(Errno::EPERM);
        }
        self.perform(&request, &fstype)
    }

    fn perform(&self, r: &Request, fstype: &str) -> Result<(), Errno> {
        let open = |what: &str| File::open(format!("/proc/{}/{what}", r.tid)).map_err(io_errno);
        let mnt_ns = open("ns/mnt")?;
        let extra_ns = match fstype {
            // Which IPC namespace an mqueue instance serves, and where a cgroup2
            // mount is rooted, is decided by the mounter's namespaces.
            "mqueue" => Some((open("ns/ipc")?, CloneFlags::CLONE_NEWIPC)),
            "cgroup2" => Some((open("ns/cgroup")?, CloneFlags::CLONE_NEWCGROUP)),
            _ => None,
        };
        let root = open("root")?;
        let cwd = open("cwd")?;
        let target = match caller_fd_number(&r.target) {
            Some(n) => Target::CallerFd(
                take_caller_fd(r.tid, n)?,
                File::open("/proc/self/fd").map_err(io_errno)?,
            ),
            None => Target::Path,
        };
        // The fds above are the caller's only if it still waits for us (its tid
        // could otherwise have been reused).
        if !seccomp::id_valid(self.listener.as_fd(), r.id) {
            return Err(Errno::ENOENT);
        }
        // The helper only makes system calls and exits with an errno (0: done).
        let child = crate::sys::process::fork_run(|| {
            match mount_as_caller(r, &mnt_ns, extra_ns.as_ref(), &root, &cwd, &target) {
                Ok(()) => 0,
                Err(e) => e as i32,
            }
        })
        .map_err(|_| Errno::EAGAIN)?;
        loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
                Ok(WaitStatus::Exited(_, code)) => return Err(Errno::from_raw(code)),
                Err(Errno::EINTR) => continue,
                _ => return Err(Errno::EIO),
            }
        }
    }
}

/// Where the caller wants its mount.
enum Target {
    /// The path as given, resolved from the caller's root and working directory.
    Path,
    /// The caller's "/proc/self/fd/N": our copy of its fd N, and our fd directory
    /// (opened in the host's /proc, before entering the caller's namespaces).
    CallerFd(OwnedFd, File),
}

/// N, if the path is the caller's own "/proc/self/fd/N" (or thread-self).
fn caller_fd_number(path: &CString) -> Option<i32> {
    let s = path.to_str().ok()?;
    let n = s
        .strip_prefix("/proc/self/fd/")
        .or_else(|| s.strip_prefix("/proc/thread-self/fd/"))?;
    n.parse().ok().filter(|n: &i32| *n >= 0)
}

/// A duplicate of the caller's fd `n`, via a pidfd of its process.
fn take_caller_fd(tid: u32, n: i32) -> Result<OwnedFd, Errno> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).map_err(io_errno)?;
    let tgid: i32 = status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(Errno::ESRCH)?;
    let pid = rustix::process::Pid::from_raw(tgid).ok_or(Errno::ESRCH)?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(crate::sys::errno)?;
    rustix::process::pidfd_getfd(&pidfd, n, rustix::process::PidfdGetfdFlags::empty())
        .map_err(crate::sys::errno)
}

/// In the helper: become the caller, as far as path resolution and the mount's
/// namespaces go, then mount with our copies of its arguments.
fn mount_as_caller(
    r: &Request,
    mnt_ns: &File,
    extra_ns: Option<&(File, CloneFlags)>,
    root: &File,
    cwd: &File,
    target: &Target,
) -> Result<(), Errno> {
    if let Some((ns, kind)) = extra_ns {
        setns(ns, *kind)?;
    }
    setns(mnt_ns, CloneFlags::CLONE_NEWNS)?;
    let target_path = match target {
        Target::Path => {
            nix::unistd::fchdir(root.as_raw_fd())?;
            nix::unistd::chroot(".")?;
            nix::unistd::fchdir(cwd.as_raw_fd())?;
            r.target.clone()
        }
        Target::CallerFd(fd, our_fd_dir) => {
            // Relative to our fd directory, our copy of the fd is a link to the
            // caller's target, in the caller's mount namespace.
            nix::unistd::fchdir(our_fd_dir.as_raw_fd())?;
            CString::new(fd.as_raw_fd().to_string()).expect("digits")
        }
    };
    nix::mount::mount(
        r.source.as_deref(),
        target_path.as_c_str(),
        Some(r.fstype.as_c_str()),
        // Unknown bits pass through as the caller gave them: the kernel decides
        // what they mean, not our idea of which flags exist.
        MsFlags::from_bits_retain(r.flags as libc::c_ulong),
        r.data.as_deref(),
    )
}

fn io_errno(e: std::io::Error) -> Errno {
    crate::sys::io_errno(&e)
}

/// A NUL-terminated string from the guest's memory (None for a null pointer),
/// read page by page so that a string ending just before an unmapped page reads.
fn read_cstr(mem: &File, addr: u64, max: usize) -> Result<Option<CString>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    const PAGE: u64 = 4096;
    let mut out = Vec::new();
    let mut at = addr;
    while out.len() < max {
        let want = ((PAGE - at % PAGE) as usize).min(max - out.len());
        let mut buf = vec![0u8; want];
        let n = mem.read_at(&mut buf, at).map_err(|_| Errno::EFAULT)?;
        if n == 0 {
            return Err(Errno::EFAULT);
        }
        if let Some(end) = buf[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&buf[..end]);
            return Ok(Some(CString::new(out).expect("no NUL inside")));
        }
        out.extend_from_slice(&buf[..n]);
        at += n as u64;
    }
    Err(Errno::ENAMETOOLONG)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_wide_file_systems_are_refused() {
        for fs in [
            "proc",
            "sysfs",
            "cgroup",
            "debugfs",
            "tracefs",
            "securityfs",
            "bpf",
            "binfmt_misc",
            "configfs",
            "efivarfs",
            "pstore",
            "ext4",
            "fusectl",
            "",
            "PROC",
        ] {
            assert_eq!(decide(fs), Decision::Deny, "{fs}");
        }
        for fs in ["tmpfs", "devpts", "mqueue", "cgroup2", "hugetlbfs"] {
            assert_eq!(decide(fs), Decision::Allow, "{fs}");
        }
    }

    #[test]
    fn proc_self_fd_targets_are_recognised() {
        let c = |s: &str| CString::new(s).unwrap();
        assert_eq!(caller_fd_number(&c("/proc/self/fd/12")), Some(12));
        assert_eq!(caller_fd_number(&c("/proc/thread-self/fd/3")), Some(3));
        assert_eq!(caller_fd_number(&c("/proc/self/fd/x")), None);
        assert_eq!(caller_fd_number(&c("/proc/1/fd/3")), None);
        assert_eq!(caller_fd_number(&c("/run/lock")), None);
    }

    #[test]
    fn strings_are_read_across_pages() {
        let mem = File::open("/proc/self/mem").unwrap();
        let s = CString::new("tmpfs").unwrap();
        let got = read_cstr(&mem, s.as_ptr() as u64, 64).unwrap().unwrap();
        assert_eq!(got, s);
        assert_eq!(read_cstr(&mem, 0, 64).unwrap(), None);
        let long = CString::new("x".repeat(100)).unwrap();
        assert_eq!(
            read_cstr(&mem, long.as_ptr() as u64, 10),
            Err(Errno::ENAMETOOLONG)
        );
    }
}
