//! The supervisor's answer to the guest's mounts of new file systems (seccomp
//! user notifications from filter 3, see policy/seccomp.rs). The guest's bpf(2)
//! calls arrive on the same listener and go to bpfbroker.rs.
//!
//! A real-root guest that mounts a fresh procfs or sysfs itself gets them
//! without our masks and read-only binds: /proc/sysrq-trigger,
//! /proc/sys/kernel/core_pattern, /sys/kernel/uevent_helper — the host. So the
//! supervisor builds those instances itself, with the container's protections,
//! and moves them onto the caller's target whole (freshfs.rs): the caller gets
//! an ordinary successful mount, in its own PID or network namespace. cgroup v1
//! would show release_agent (CVE-2022-0492); debugfs, tracefs, bpffs,
//! securityfs, configfs, binfmt_misc, efivarfs and disk file systems are
//! host-wide too. Those are refused with EPERM.
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
//!
//! The supervisor mounts with the host root's privileges, so it first checks
//! that the caller could have made this mount itself (caller.rs: CAP_SYS_ADMIN
//! over its mount namespace, and over the PID, network, IPC or cgroup namespace
//! the instance belongs to); an unprivileged guest user gets EPERM, as from the
//! kernel. A caller in a user namespace of its own (unshare -U, rootless
//! podman, bwrap as a user) is served in that user namespace, with its
//! file-system uid and gid: the kernel then applies exactly the rules it would
//! apply to the caller (which file systems may be mounted there, who owns the
//! new superblock, nodev).

use super::bpfbroker::{Answer, Broker};
use super::caller::{Caller, Ns};
use super::freshfs;
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
    /// Mounted as asked, by the supervisor for the caller.
    Allow,
    /// Built by the supervisor with the container's protections (freshfs.rs).
    Fresh(freshfs::Kind),
    Deny,
}

pub fn decide(fstype: &str) -> Decision {
    match fstype {
        "proc" => Decision::Fresh(freshfs::Kind::Proc),
        "sysfs" => Decision::Fresh(freshfs::Kind::Sysfs),
        t if ALLOWED_FS.contains(&t) => Decision::Allow,
        _ => Decision::Deny,
    }
}

/// What the guard needs to know about the container.
#[derive(Debug, Clone, Default)]
pub struct GuardConfig {
    /// The guest has a network namespace of its own: /proc/sys/net stays
    /// writable in its procfs instances, as in its /proc.
    pub private_network: bool,
    /// The container's payload cgroup on the host's cgroup2 mount: the
    /// subtree in which the guest may attach device programs.
    pub cgroup_root: Option<std::path::PathBuf>,
}

pub struct MountGuard {
    listener: OwnedFd,
    config: GuardConfig,
    broker: Broker,
    /// Helpers that answered and may not have exited yet.
    helpers: std::cell::RefCell<Vec<nix::unistd::Pid>>,
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        self.reap(true);
    }
}

/// A helper's result, sent to the supervisor once (as a native-endian errno,
/// 0 for success) as soon as it is known: what the helper does after that
/// (reaping its own helper, tearing down its namespaces) does not delay the
/// answer to the guest.
pub struct Report<'a> {
    pipe: BorrowedFd<'a>,
    sent: std::cell::Cell<bool>,
}

impl Report<'_> {
    pub fn send(&self, res: Result<(), Errno>) {
        if self.sent.replace(true) {
            return;
        }
        let code = match res {
            Ok(()) => 0i32,
            Err(e) => e as i32,
        };
        let _ = nix::unistd::write(self.pipe, &code.to_ne_bytes());
    }
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
    pub fn new(listener: OwnedFd, config: GuardConfig) -> MountGuard {
        let broker = Broker::new(config.cgroup_root.clone());
        MountGuard {
            listener,
            config,
            broker,
            helpers: std::cell::RefCell::new(Vec::new()),
        }
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Answers one pending notification: a mount, or a bpf(2) call for the
    /// broker (bpfbroker.rs).
    pub fn handle(&self) {
        let Ok(req) = seccomp::recv(self.listener.as_fd()) else {
            return; // ENOENT: the caller died or was interrupted meanwhile
        };
        let listener = self.listener.as_fd();
        let result = if i64::from(req.nr) == libc::SYS_bpf {
            self.broker
                .serve(&req, || seccomp::id_valid(listener, req.id))
        } else {
            self.serve(&req).map(|()| Answer::Value(0))
        };
        // A failure means the caller is gone.
        let _ = match result {
            Ok(Answer::Fd(fd)) => seccomp::respond_with_fd(listener, req.id, fd.as_fd()).map(drop),
            Ok(Answer::Value(v)) => seccomp::respond(listener, req.id, Ok(v)),
            Err(e) => seccomp::respond(listener, req.id, Err(e)),
        };
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
        let decision = decide(&fstype);
        if decision == Decision::Deny {
            return Err(Errno::EPERM);
        }
        let caller = Caller::read(req.tid)?;
        let mnt_ns = caller.ns("mnt")?;
        if !caller.admin_of(&mnt_ns)? {
            return Err(Errno::EPERM);
        }
        match decision {
            Decision::Fresh(kind) => self.perform_fresh(&request, &caller, &mnt_ns, kind),
            _ => self.perform(&request, &caller, &mnt_ns, &fstype),
        }
    }

    /// The caller's root, working directory and target, opened while it waits.
    fn destination(&self, r: &Request, caller: &Caller) -> Result<(File, File, Target), Errno> {
        let open = |what: &str| File::open(format!("/proc/{}/{what}", r.tid)).map_err(io_errno);
        let root = open("root")?;
        let cwd = open("cwd")?;
        let target = match caller_fd_number(&r.target) {
            Some(n) => Target::CallerFd(caller.take_fd(n)?),
            None => Target::Path,
        };
        Ok((root, cwd, target))
    }

    /// Runs `f` in a helper process, which reports its result on a pipe (see
    /// `Report`); the caller is answered as soon as it has, and the helper is
    /// reaped later: a helper that made mount namespaces of its own spends
    /// milliseconds tearing them down as it exits.
    fn in_helper(
        &self,
        r: &Request,
        f: impl FnOnce(&Report) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        // The fds the caller's /proc entry gave us are the caller's only if it
        // still waits for us (its tid could otherwise have been reused).
        if !seccomp::id_valid(self.listener.as_fd(), r.id) {
            return Err(Errno::ENOENT);
        }
        self.reap(false);
        let (rd, wr) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|_| Errno::EAGAIN)?;
        let child = crate::sys::process::fork_run(|| {
            let report = Report {
                pipe: wr.as_fd(),
                sent: std::cell::Cell::new(false),
            };
            let res = f(&report);
            report.send(res);
            0
        })
        .map_err(|_| Errno::EAGAIN)?;
        drop(wr);
        self.helpers.borrow_mut().push(child);
        let mut code = [0u8; 4];
        let mut got = 0;
        while got < code.len() {
            match nix::unistd::read(rd.as_raw_fd(), &mut code[got..]) {
                Ok(0) => return Err(Errno::EIO), // it died before saying
                Ok(n) => got += n,
                Err(Errno::EINTR) => continue,
                Err(_) => return Err(Errno::EIO),
            }
        }
        match i32::from_ne_bytes(code) {
            0 => Ok(()),
            e => Err(Errno::from_raw(e)),
        }
    }

    /// Reaps helpers that have exited (all of them, waiting, with `wait`).
    fn reap(&self, wait: bool) {
        let flags = (!wait).then_some(nix::sys::wait::WaitPidFlag::WNOHANG);
        self.helpers.borrow_mut().retain(|&pid| loop {
            match waitpid(pid, flags) {
                Ok(WaitStatus::StillAlive) => return true,
                Err(Errno::EINTR) => continue,
                _ => return false,
            }
        });
    }

    fn perform_fresh(
        &self,
        r: &Request,
        caller: &Caller,
        mnt_ns: &Ns,
        kind: freshfs::Kind,
    ) -> Result<(), Errno> {
        let spec = freshfs::spec(
            kind,
            r.source.as_deref(),
            r.flags,
            r.data.as_deref(),
            self.config.private_network,
        )?;
        // A procfs serves the PID namespace its mounter lives in, a sysfs the
        // mounter's network namespace; mounting either takes CAP_SYS_ADMIN over it.
        let instance_ns = caller.ns(match kind {
            freshfs::Kind::Proc => "pid",
            freshfs::Kind::Sysfs => "net",
        })?;
        if !caller.admin_of(&instance_ns)? {
            return Err(Errno::EPERM);
        }
        let (root, cwd, target) = self.destination(r, caller)?;
        let dest = freshfs::Destination {
            mnt_ns: &mnt_ns.file,
            root: &root,
            cwd: &cwd,
            target: &target,
            target_path: &r.target,
        };
        self.in_helper(r, |report| {
            freshfs::build_and_place(&spec, &instance_ns.file, &dest, report)
        })
    }

    fn perform(
        &self,
        r: &Request,
        caller: &Caller,
        mnt_ns: &Ns,
        fstype: &str,
    ) -> Result<(), Errno> {
        // Which IPC namespace an mqueue instance serves, and where a cgroup2
        // mount is rooted, is decided by the mounter's namespaces; the mounter
        // needs CAP_SYS_ADMIN over them. Other instances belong to the
        // mounter's user namespace.
        let extra_ns = match fstype {
            "mqueue" => Some((caller.ns("ipc")?, CloneFlags::CLONE_NEWIPC)),
            "cgroup2" => Some((caller.ns("cgroup")?, CloneFlags::CLONE_NEWCGROUP)),
            _ => None,
        };
        let allowed = match &extra_ns {
            Some((ns, _)) => caller.admin_of(ns)?,
            None => caller.cap_eff & (1 << super::caller::CAP_SYS_ADMIN) != 0,
        };
        if !allowed {
            return Err(Errno::EPERM);
        }
        let userns = (!caller.in_our_userns()?).then_some(&caller.userns.file);
        let ids = (caller.fsuid, caller.fsgid);
        let (root, cwd, target) = self.destination(r, caller)?;
        self.in_helper(r, |_| {
            let extra = extra_ns.as_ref().map(|(ns, kind)| (&ns.file, *kind));
            mount_as_caller(r, &mnt_ns.file, extra, userns, ids, &root, &cwd, &target)
        })
    }
}

/// Where the caller wants its mount.
pub enum Target {
    /// The path as given, resolved from the caller's root and working directory.
    Path,
    /// The caller's "/proc/self/fd/N": our copy of its fd N.
    CallerFd(OwnedFd),
}

/// N, if the path is the caller's own "/proc/self/fd/N" (or thread-self).
fn caller_fd_number(path: &CString) -> Option<i32> {
    let s = path.to_str().ok()?;
    let n = s
        .strip_prefix("/proc/self/fd/")
        .or_else(|| s.strip_prefix("/proc/thread-self/fd/"))?;
    n.parse().ok().filter(|n: &i32| *n >= 0)
}

/// In the helper: become the caller, as far as path resolution and the mount's
/// namespaces go, then mount with our copies of its arguments. `userns` is the
/// caller's user namespace where it is not ours; it is entered last, since in
/// it we hold nothing over the namespaces of the initial one.
#[allow(clippy::too_many_arguments)]
fn mount_as_caller(
    r: &Request,
    mnt_ns: &File,
    extra_ns: Option<(&File, CloneFlags)>,
    userns: Option<&File>,
    (fsuid, fsgid): (u32, u32),
    root: &File,
    cwd: &File,
    target: &Target,
) -> Result<(), Errno> {
    // This helper's own fd directory, opened in the host's /proc before we
    // leave its namespace: a process may always follow its own fd links, also
    // as the caller's ids in the caller's user namespace (not the
    // supervisor's, which is another process).
    let own_fds = match target {
        Target::CallerFd(..) => Some(File::open("/proc/thread-self/fd").map_err(io_errno)?),
        Target::Path => None,
    };
    if let Some((ns, kind)) = extra_ns {
        setns(ns, kind)?;
    }
    setns(mnt_ns, CloneFlags::CLONE_NEWNS)?;
    let target_path = match (target, &own_fds) {
        (Target::CallerFd(fd), Some(dir)) => {
            // Relative to our fd directory, our copy of the fd is a link to the
            // caller's target, in the caller's mount namespace.
            nix::unistd::fchdir(dir.as_raw_fd())?;
            CString::new(fd.as_raw_fd().to_string()).expect("digits")
        }
        _ => {
            nix::unistd::fchdir(root.as_raw_fd())?;
            nix::unistd::chroot(".")?;
            nix::unistd::fchdir(cwd.as_raw_fd())?;
            r.target.clone()
        }
    };
    // The new superblock's root is owned by its mounter's file-system ids, and
    // the target is looked up as the caller would look it up.
    nix::unistd::setfsgid(nix::unistd::Gid::from_raw(fsgid));
    nix::unistd::setfsuid(nix::unistd::Uid::from_raw(fsuid));
    if let Some(ns) = userns {
        setns(ns, CloneFlags::CLONE_NEWUSER)?;
    }
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
            "procfs",
            "sysfs2",
        ] {
            assert_eq!(decide(fs), Decision::Deny, "{fs}");
        }
        for fs in ["tmpfs", "devpts", "mqueue", "cgroup2", "hugetlbfs"] {
            assert_eq!(decide(fs), Decision::Allow, "{fs}");
        }
        // Built by the supervisor, never passed through as asked.
        assert_eq!(decide("proc"), Decision::Fresh(freshfs::Kind::Proc));
        assert_eq!(decide("sysfs"), Decision::Fresh(freshfs::Kind::Sysfs));
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
