//! The guest thread behind a seccomp notification, as much of it as the
//! supervisor must know to act for it without lending it more than it has.
//!
//! The mount guard and the BPF broker make system calls on a guest thread's
//! behalf with the supervisor's own privileges (the host's root). Without a
//! check, any guest process could have them do what only a privileged one may:
//! an unprivileged guest user mounting a tmpfs over /etc, say. So before acting,
//! the supervisor redoes the kernel's own capability rule (`cap_capable()` in
//! security/commoncap.c) for the caller: a capability in a user namespace is
//! held by a thread in that namespace with it in its effective set, or by the
//! namespace's creator (same euid) in its parent, or by anyone holding it in an
//! ancestor. The thread's credentials are read from /proc; they cannot change
//! while it waits in the notification (credentials are per thread, and a
//! signal that would let it run again also cancels the notification, which the
//! guard checks with `id_valid` after reading).

use nix::errno::Errno;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;

/// CAP_SYS_ADMIN: what mounting needs in the namespace that owns the mount
/// namespace (and in the owner of the PID/network/IPC/cgroup namespace a file
/// system instance belongs to).
pub const CAP_SYS_ADMIN: u32 = 21;

/// A namespace file, with its identity (nsfs device and inode).
#[derive(Debug)]
pub struct Ns {
    pub file: File,
    pub id: (u64, u64),
}

impl Ns {
    pub fn from_file(file: File) -> Result<Ns, Errno> {
        let m = file.metadata().map_err(|e| crate::sys::io_errno(&e))?;
        Ok(Ns {
            id: (m.dev(), m.ino()),
            file,
        })
    }

    /// The user namespace that owns this (non-user) namespace.
    pub fn owner(&self) -> Result<Ns, Errno> {
        Ns::from_file(File::from(crate::sys::ns_owner(self.file.as_fd())?))
    }
}

/// A user namespace, as the capability rule needs it.
pub trait UserNs: Sized {
    fn id(&self) -> (u64, u64);
    /// None for the initial namespace (or one above ours).
    fn parent(&self) -> Result<Option<Self>, Errno>;
    /// The euid (in the initial namespace) of its creator.
    fn owner_uid(&self) -> Result<u32, Errno>;
}

impl UserNs for Ns {
    fn id(&self) -> (u64, u64) {
        self.id
    }

    fn parent(&self) -> Result<Option<Ns>, Errno> {
        match crate::sys::ns_parent(self.file.as_fd()) {
            Ok(fd) => Ns::from_file(File::from(fd)).map(Some),
            // The initial user namespace has no parent we may see.
            Err(Errno::EPERM) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn owner_uid(&self) -> Result<u32, Errno> {
        crate::sys::ns_owner_uid(self.file.as_fd())
    }
}

fn level<N: UserNs>(ns: &N) -> Result<usize, Errno> {
    let mut n = 0;
    let mut cur = ns.parent()?;
    while let Some(p) = cur {
        n += 1;
        // User namespaces nest at most 32 deep; a longer chain is not one.
        if n > 64 {
            return Err(Errno::ELOOP);
        }
        cur = p.parent()?;
    }
    Ok(n)
}

/// The kernel's cap_capable(): whether a thread in user namespace `cred_ns`
/// with effective uid `euid` and effective capabilities `cap_eff` holds
/// capability `cap` in `target`.
pub fn capable<N: UserNs>(
    cred_ns: &N,
    euid: u32,
    cap_eff: u64,
    cap: u32,
    target: N,
) -> Result<bool, Errno> {
    let cred_level = level(cred_ns)?;
    let mut ns = target;
    loop {
        if ns.id() == cred_ns.id() {
            return Ok(cap_eff & (1u64 << cap) != 0);
        }
        // Deeper than or beside the caller: it has no say there.
        if level(&ns)? <= cred_level {
            return Ok(false);
        }
        let Some(parent) = ns.parent()? else {
            return Ok(false);
        };
        // The creator of a namespace holds every capability in it.
        if parent.id() == cred_ns.id() && ns.owner_uid()? == euid {
            return Ok(true);
        }
        ns = parent;
    }
}

/// A thread waiting for the supervisor.
#[derive(Debug)]
pub struct Caller {
    pub tid: u32,
    /// Its process (thread group), for a pidfd.
    pub tgid: i32,
    /// Effective and file-system uid and gid, as the initial namespace sees them.
    pub euid: u32,
    pub fsuid: u32,
    pub fsgid: u32,
    pub cap_eff: u64,
    pub userns: Ns,
}

impl Caller {
    pub fn read(tid: u32) -> Result<Caller, Errno> {
        let status = crate::sys::read_proc(format!("/proc/{tid}/status"))
            .map_err(|e| crate::sys::io_errno(&e))?;
        let (uids, gids, cap_eff) = parse_status(&status).ok_or(Errno::ESRCH)?;
        Ok(Caller {
            tid,
            tgid: tgid_in(&status).ok_or(Errno::ESRCH)?,
            euid: uids[1],
            fsuid: uids[3],
            fsgid: gids[3],
            cap_eff,
            userns: Caller::open_ns(tid, "user")?,
        })
    }

    fn open_ns(tid: u32, kind: &str) -> Result<Ns, Errno> {
        let f =
            File::open(format!("/proc/{tid}/ns/{kind}")).map_err(|e| crate::sys::io_errno(&e))?;
        Ns::from_file(f)
    }

    /// One of the caller's namespaces: "mnt", "pid" (the one it lives in, not
    /// the one for its children), "net", "ipc", "cgroup".
    pub fn ns(&self, kind: &str) -> Result<Ns, Errno> {
        Caller::open_ns(self.tid, kind)
    }

    /// Whether the caller holds CAP_SYS_ADMIN over namespace `ns` (through the
    /// user namespace that owns it).
    pub fn admin_of(&self, ns: &Ns) -> Result<bool, Errno> {
        capable(
            &self.userns,
            self.euid,
            self.cap_eff,
            CAP_SYS_ADMIN,
            ns.owner()?,
        )
    }

    /// Whether the caller lives in our own (the initial) user namespace.
    pub fn in_our_userns(&self) -> Result<bool, Errno> {
        // Ours never changes: looked up once per supervisor.
        static OURS: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
        let ours = match OURS.get() {
            Some(id) => *id,
            None => {
                let f = File::open("/proc/self/ns/user").map_err(|e| crate::sys::io_errno(&e))?;
                let id = Ns::from_file(f)?.id;
                *OURS.get_or_init(|| id)
            }
        };
        Ok(ours == self.userns.id)
    }

    /// A duplicate of the caller's fd `n`, via a pidfd of its process.
    pub fn take_fd(&self, n: i32) -> Result<OwnedFd, Errno> {
        let pid = rustix::process::Pid::from_raw(self.tgid).ok_or(Errno::ESRCH)?;
        let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
            .map_err(crate::sys::errno)?;
        rustix::process::pidfd_getfd(&pidfd, n, rustix::process::PidfdGetfdFlags::empty())
            .map_err(crate::sys::errno)
    }
}

/// Tgid from /proc/PID/status.
fn tgid_in(status: &str) -> Option<i32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// (uids, gids, CapEff) from /proc/PID/status: real, effective, saved, fs.
fn parse_status(status: &str) -> Option<([u32; 4], [u32; 4], u64)> {
    let ids = |key: &str| -> Option<[u32; 4]> {
        let line = status.lines().find_map(|l| l.strip_prefix(key))?;
        let v: Vec<u32> = line
            .split_whitespace()
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        v.try_into().ok()
    };
    let cap = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())?;
    Some((ids("Uid:")?, ids("Gid:")?, cap))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    /// A user namespace tree on paper: (id, parent, owner uid).
    #[derive(Clone)]
    struct Fake {
        id: u64,
        tree: Rc<Vec<(u64, Option<u64>, u32)>>,
    }

    impl UserNs for Fake {
        fn id(&self) -> (u64, u64) {
            (0, self.id)
        }
        fn parent(&self) -> Result<Option<Fake>, Errno> {
            let (_, p, _) = self.tree.iter().find(|t| t.0 == self.id).unwrap();
            Ok(p.map(|id| Fake {
                id,
                tree: self.tree.clone(),
            }))
        }
        fn owner_uid(&self) -> Result<u32, Errno> {
            Ok(self.tree.iter().find(|t| t.0 == self.id).unwrap().2)
        }
    }

    const ADMIN: u64 = 1 << CAP_SYS_ADMIN;

    #[test]
    fn the_kernels_capability_rule() {
        // 1 = initial; 2 created by uid 1000 in 1; 3 created by uid 0 in 1;
        // 4 created inside 2 (by 1000, which is its root there).
        let tree = Rc::new(vec![
            (1, None, 0),
            (2, Some(1), 1000),
            (3, Some(1), 0),
            (4, Some(2), 1000),
        ]);
        let ns = |id| Fake {
            id,
            tree: tree.clone(),
        };
        // In the initial namespace: the effective set decides, everywhere below.
        assert!(capable(&ns(1), 0, ADMIN, CAP_SYS_ADMIN, ns(1)).unwrap());
        assert!(!capable(&ns(1), 0, 0, CAP_SYS_ADMIN, ns(1)).unwrap());
        assert!(capable(&ns(1), 0, ADMIN, CAP_SYS_ADMIN, ns(4)).unwrap());
        // Without CAP_SYS_ADMIN, only the creator of a child holds it there.
        assert!(capable(&ns(1), 1000, 0, CAP_SYS_ADMIN, ns(2)).unwrap());
        assert!(capable(&ns(1), 1000, 0, CAP_SYS_ADMIN, ns(4)).unwrap());
        assert!(!capable(&ns(1), 1001, 0, CAP_SYS_ADMIN, ns(2)).unwrap());
        assert!(!capable(&ns(1), 1000, 0, CAP_SYS_ADMIN, ns(3)).unwrap());
        // Inside a child: nothing above it or beside it.
        assert!(capable(&ns(2), 0, ADMIN, CAP_SYS_ADMIN, ns(2)).unwrap());
        assert!(capable(&ns(2), 0, ADMIN, CAP_SYS_ADMIN, ns(4)).unwrap());
        assert!(!capable(&ns(2), 0, ADMIN, CAP_SYS_ADMIN, ns(1)).unwrap());
        assert!(!capable(&ns(2), 0, ADMIN, CAP_SYS_ADMIN, ns(3)).unwrap());
        assert!(!capable(&ns(4), 0, ADMIN, CAP_SYS_ADMIN, ns(2)).unwrap());
    }

    #[test]
    fn status_fields() {
        let s = "Name:\tx\nUid:\t0\t1000\t0\t1001\nGid:\t5\t6\t7\t8\nCapEff:\t0000000000200000\n";
        let (u, g, c) = parse_status(s).unwrap();
        assert_eq!(u, [0, 1000, 0, 1001]);
        assert_eq!(g, [5, 6, 7, 8]);
        assert_eq!(c, ADMIN);
        assert!(parse_status("Uid:\t0\n").is_none());
    }

    #[test]
    fn our_own_thread_is_read_and_judged_like_the_kernel() {
        let me = Caller::read(std::process::id()).unwrap();
        assert_eq!(me.tgid, std::process::id() as i32);
        assert!(me.in_our_userns().unwrap());
        let mnt = me.ns("mnt").unwrap();
        let root = nix::unistd::geteuid().is_root();
        // Tests may run unprivileged: then we must not be admin of the host's
        // mount namespace, and as root we must be.
        assert_eq!(me.admin_of(&mnt).unwrap(), root && me.cap_eff & ADMIN != 0);
    }
}
