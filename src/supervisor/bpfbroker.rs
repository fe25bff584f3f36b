//! The supervisor's answer to the guest's bpf(2) calls (seccomp user
//! notifications from filter 3, like its mounts; see policy/seccomp.rs).
//!
//! bpf(2) reaches deep into the host kernel, and a guest that could call it
//! freely could detach the container's device policy or, with CAP_SYS_ADMIN,
//! load tracing programs that read kernel memory. But cgroup device programs
//! are how cgroup2 does device control: a nixrun inside the guest, the
//! guest's systemd (DevicePolicy=, PrivateDevices=) and crun all load one and
//! attach it to a cgroup of theirs. So the supervisor makes exactly those calls
//! for the guest, and nothing else:
//!
//! - BPF_PROG_LOAD of a BPF_PROG_TYPE_CGROUP_DEVICE program that passes
//!   policy::devices::check_guest_program (its verdict depends on the access,
//!   major and minor only: no helpers, maps, stack or pointer arithmetic),
//!   with no BTF or other objects attached. The supervisor loads our copy of
//!   the instructions and installs the program fd in the caller
//!   (SECCOMP_ADDFD_FLAG_SEND). A refused program gets EPERM and one line on
//!   the supervisor's stderr saying why.
//! - BPF_PROG_ATTACH / BPF_PROG_DETACH of a device program to or from a cgroup
//!   in the container's own subtree (the payload cgroup or below), and
//!   BPF_PROG_QUERY of the programs attached directly to one;
//!   BPF_PROG_GET_FD_BY_ID for a program the guest itself had loaded (crun
//!   replaces its program that way).
//!
//! Everything else is EPERM, as before. A guest program attached below the
//! payload cannot widen the container's policy: the kernel runs the programs
//! of every cgroup from the device's user up to the root and allows only what
//! all of them allow (the container's own program is attached with
//! BPF_F_ALLOW_MULTI, so no descendant overrides it; on hybrid hosts the v1
//! devices controller, which the guest cannot see, holds the policy anyway).
//! Only callers the kernel would let make the call itself are served:
//! CAP_SYS_ADMIN (or CAP_BPF) in the initial user namespace.

use super::caller::Caller;
use crate::policy::devices::{check_guest_program, GUEST_PROGRAM_MAX};
use crate::sys::bpf::{self as sysbpf, Insn, BPF_CGROUP_DEVICE, BPF_PROG_TYPE_CGROUP_DEVICE};
use crate::sys::seccomp::Notification;
use nix::errno::Errno;
use rustix::fs::OFlags;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

const BPF_PROG_LOAD: u64 = 5;
const BPF_PROG_ATTACH: u64 = 8;
const BPF_PROG_DETACH: u64 = 9;
const BPF_PROG_GET_FD_BY_ID: u64 = 13;
const BPF_PROG_QUERY: u64 = 16;

const CAP_BPF: u32 = 39;
/// The kernel refuses attributes larger than a page.
const ATTR_MAX: usize = 4096;
/// Refusal lines printed per container; after that one line says they stop.
const LINES_MAX: u32 = 20;
/// Program ids remembered as the guest's own (for GET_FD_BY_ID).
const IDS_MAX: usize = 65536;
/// Levels walked up when checking that a cgroup is in the container's
/// subtree (cgroup2 nests far less deep).
const DEPTH_MAX: usize = 4096;
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// What the call returns.
pub enum Answer {
    Value(i64),
    /// A new fd, installed in the caller as the call's return value.
    Fd(OwnedFd),
}

pub struct Broker {
    /// The container's payload cgroup on the host's cgroup2 mount.
    cgroup_root: Option<PathBuf>,
    lines: Cell<u32>,
    own_ids: RefCell<VecDeque<u32>>,
}

impl Broker {
    pub fn new(cgroup_root: Option<PathBuf>) -> Broker {
        Broker {
            cgroup_root,
            lines: Cell::new(0),
            own_ids: RefCell::new(VecDeque::new()),
        }
    }

    /// Serves one bpf(2) call. `still_waiting` says whether the caller still
    /// waits (fds taken from it before that is known may be another's).
    pub fn serve(
        &self,
        req: &Notification,
        still_waiting: impl Fn() -> bool,
    ) -> Result<Answer, Errno> {
        let [cmd, attr_addr, size, ..] = req.args;
        let caller = Caller::read(req.tid)?;
        let admin = caller.cap_eff & (1 << super::caller::CAP_SYS_ADMIN | 1 << CAP_BPF) != 0;
        if !caller.in_our_userns()? || !admin {
            return Err(Errno::EPERM);
        }
        let size = usize::try_from(size).map_err(|_| Errno::E2BIG)?;
        if size > ATTR_MAX {
            return Err(Errno::E2BIG);
        }
        let mem = File::options()
            .read(true)
            .write(true)
            .open(format!("/proc/{}/mem", req.tid))
            .map_err(|e| crate::sys::io_errno(&e))?;
        let mut attr = vec![0u8; size.max(128)];
        read_exact_at(&mem, &mut attr[..size], attr_addr)?;
        let a = Attr(&attr);
        let fd = |off: usize| -> Result<OwnedFd, Errno> {
            let n = i32::try_from(a.u32(off)).map_err(|_| Errno::EBADF)?;
            caller.take_fd(n)
        };
        match cmd {
            BPF_PROG_LOAD => self.load(&mem, &a).map(Answer::Fd),
            BPF_PROG_ATTACH | BPF_PROG_DETACH => {
                if a.u32(8) != BPF_CGROUP_DEVICE {
                    return Err(Errno::EPERM);
                }
                let flags = a.u32(12);
                let known = sysbpf::BPF_F_ALLOW_OVERRIDE
                    | sysbpf::BPF_F_ALLOW_MULTI
                    | sysbpf::BPF_F_REPLACE;
                let detach = cmd == BPF_PROG_DETACH;
                if (detach && flags != 0)
                    || flags & !known != 0
                    || !a.zero_from(if detach { 16 } else { 20 })
                {
                    return Err(Errno::EINVAL);
                }
                let cgroup = fd(0)?;
                let prog = fd(4)?;
                let replace = if flags & sysbpf::BPF_F_REPLACE != 0 {
                    Some(fd(16)?)
                } else {
                    None
                };
                if !still_waiting() {
                    return Err(Errno::ENOENT);
                }
                self.check_cgroup(&cgroup)?;
                for p in std::iter::once(&prog).chain(replace.as_ref()) {
                    if sysbpf::program_type_and_id(p.as_fd())?.0 != BPF_PROG_TYPE_CGROUP_DEVICE {
                        return Err(Errno::EINVAL);
                    }
                }
                if detach {
                    sysbpf::detach_device_program(cgroup.as_fd(), prog.as_fd())?;
                } else {
                    sysbpf::attach_device_program_flags(
                        cgroup.as_fd(),
                        prog.as_fd(),
                        flags,
                        replace.as_ref().map(|r| r.as_fd()),
                    )?;
                }
                Ok(Answer::Value(0))
            }
            BPF_PROG_QUERY => {
                if a.u32(4) != BPF_CGROUP_DEVICE {
                    return Err(Errno::EPERM);
                }
                // No effective query (that would show the container's own
                // program), no per-program flags or links.
                if a.u32(8) != 0 || !a.zero_range(28, 56) {
                    return Err(Errno::EINVAL);
                }
                let cgroup = fd(0)?;
                if !still_waiting() {
                    return Err(Errno::ENOENT);
                }
                self.check_cgroup(&cgroup)?;
                let ids_addr = a.u64(16);
                let room = if ids_addr == 0 {
                    0
                } else {
                    a.u32(24).min(GUEST_PROGRAM_MAX as u32)
                };
                let (q, res) = sysbpf::query_device_programs(cgroup.as_fd(), room);
                write_at(&mem, attr_addr + 12, &q.attach_flags.to_ne_bytes())?;
                write_at(&mem, attr_addr + 24, &q.total.to_ne_bytes())?;
                if size >= 64 {
                    write_at(&mem, attr_addr + 56, &q.revision.to_ne_bytes())?;
                }
                let ids: Vec<u8> = q.ids.iter().flat_map(|id| id.to_ne_bytes()).collect();
                if !ids.is_empty() {
                    write_at(&mem, ids_addr, &ids)?;
                }
                res.map(|()| Answer::Value(0))
            }
            BPF_PROG_GET_FD_BY_ID => {
                let id = a.u32(0);
                if !a.zero_from(4) {
                    return Err(Errno::EINVAL);
                }
                // Only the guest's own programs: it had an fd for each.
                if !self.own_ids.borrow().contains(&id) {
                    return Err(Errno::EPERM);
                }
                sysbpf::program_by_id(id).map(Answer::Fd)
            }
            _ => Err(Errno::EPERM),
        }
    }

    fn load(&self, mem: &File, a: &Attr<'_>) -> Result<OwnedFd, Errno> {
        if a.u32(0) != BPF_PROG_TYPE_CGROUP_DEVICE {
            return Err(Errno::EPERM);
        }
        let count = a.u32(4) as usize;
        // prog_flags, ifindex, and everything after the expected attach type
        // (BTF, func/line info, attach targets, fd arrays, tokens) must be
        // unset, except log_true_size, which the kernel only writes.
        let attach_type = a.u32(68);
        let extras = a.u32(44) != 0
            || a.u32(64) != 0
            || (attach_type != 0 && attach_type != BPF_CGROUP_DEVICE)
            || !a.zero_range(72, 140)
            || !a.zero_from(144);
        if extras {
            self.refused("it asks for flags, BTF or other objects the supervisor does not pass on");
            return Err(Errno::EPERM);
        }
        if count == 0 || count > GUEST_PROGRAM_MAX {
            self.refused(&format!(
                "{count} instructions (1 to {GUEST_PROGRAM_MAX} are loaded)"
            ));
            return Err(Errno::EPERM);
        }
        let mut raw = vec![0u8; count * 8];
        read_exact_at(mem, &mut raw, a.u64(8))?;
        let insns: Vec<Insn> = raw
            .chunks_exact(8)
            .map(|c| Insn {
                code: c[0],
                regs: c[1],
                off: i16::from_ne_bytes([c[2], c[3]]),
                imm: i32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        if let Err(why) = check_guest_program(&insns) {
            self.refused(&why);
            return Err(Errno::EPERM);
        }
        let name_bytes = &a.0[48..64];
        let end = name_bytes.iter().position(|&b| b == 0).unwrap_or(16);
        let name = std::str::from_utf8(&name_bytes[..end]).unwrap_or("");
        let prog = sysbpf::load_device_program_named(&insns, name)?;
        if let Ok((_, id)) = sysbpf::program_type_and_id(prog.as_fd()) {
            let mut ids = self.own_ids.borrow_mut();
            if ids.len() == IDS_MAX {
                ids.pop_front();
            }
            ids.push_back(id);
        }
        Ok(prog)
    }

    /// One line on the host for a refused program, up to LINES_MAX.
    fn refused(&self, why: &str) {
        let n = self.lines.get();
        if n < LINES_MAX {
            eprintln!("nixrun: refused a BPF device program the guest asked to load: {why}");
        } else if n == LINES_MAX {
            eprintln!("nixrun: further refused BPF programs are not reported");
        }
        self.lines.set(n.saturating_add(1));
    }

    /// The cgroup must be a cgroup2 directory in the container's subtree.
    fn check_cgroup(&self, cgroup: &OwnedFd) -> Result<(), Errno> {
        let root = self.cgroup_root.as_deref().ok_or(Errno::EPERM)?;
        let fs = rustix::fs::fstatfs(cgroup).map_err(crate::sys::errno)?;
        if fs.f_type as i64 != CGROUP2_SUPER_MAGIC {
            return Err(Errno::EBADF);
        }
        if in_subtree(root, cgroup.as_fd())? {
            Ok(())
        } else {
            Err(Errno::EPERM)
        }
    }
}

/// Whether the directory `dir` is `root` or below it: walked up from `dir`
/// through "..", a few steps (the depth below the host's cgroup2 root), not
/// down `root`'s subtree, whose size the guest decides. The walk leaves the
/// file system, or stops where ".." is the directory itself, if `root` is not
/// on the way.
fn in_subtree(root: &Path, dir: BorrowedFd<'_>) -> Result<bool, Errno> {
    let id = |fd: BorrowedFd<'_>| {
        rustix::fs::fstat(fd)
            .map(|st| (st.st_dev, st.st_ino))
            .map_err(crate::sys::errno)
    };
    let m = std::fs::metadata(root).map_err(|e| crate::sys::io_errno(&e))?;
    let root = (m.dev(), m.ino());
    let st = rustix::fs::fstat(dir).map_err(crate::sys::errno)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
        return Ok(false); // a cgroup's file, not a cgroup
    }
    let mut here = (st.st_dev, st.st_ino);
    let mut up: Option<OwnedFd> = None;
    for _ in 0..DEPTH_MAX {
        if here == root {
            return Ok(true);
        }
        if here.0 != root.0 {
            return Ok(false);
        }
        let from = up.as_ref().map_or(dir, |fd| fd.as_fd());
        let parent = rustix::fs::openat(
            from,
            "..",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(crate::sys::errno)?;
        let above = id(parent.as_fd())?;
        if above == here {
            return Ok(false);
        }
        here = above;
        up = Some(parent);
    }
    Err(Errno::E2BIG)
}

/// A bpf_attr copied from the guest.
struct Attr<'a>(&'a [u8]);

impl Attr<'_> {
    fn u32(&self, off: usize) -> u32 {
        self.0
            .get(off..off + 4)
            .map_or(0, |b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&self, off: usize) -> u64 {
        self.0
            .get(off..off + 8)
            .map_or(0, |b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
    }
    fn zero_range(&self, from: usize, to: usize) -> bool {
        self.0
            .get(from.min(self.0.len())..to.min(self.0.len()))
            .map_or(true, |b| b.iter().all(|&x| x == 0))
    }
    fn zero_from(&self, from: usize) -> bool {
        self.zero_range(from, self.0.len())
    }
}

fn read_exact_at(mem: &File, buf: &mut [u8], addr: u64) -> Result<(), Errno> {
    mem.read_exact_at(buf, addr).map_err(|_| Errno::EFAULT)
}

fn write_at(mem: &File, addr: u64, data: &[u8]) -> Result<(), Errno> {
    mem.write_all_at(data, addr).map_err(|_| Errno::EFAULT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_read_as_the_kernel_lays_them_out() {
        let mut raw = vec![0u8; 72];
        raw[4..8].copy_from_slice(&7u32.to_ne_bytes());
        raw[16..24].copy_from_slice(&0x1122_3344_5566_7788u64.to_ne_bytes());
        let a = Attr(&raw);
        assert_eq!(a.u32(4), 7);
        assert_eq!(a.u64(16), 0x1122_3344_5566_7788);
        assert_eq!(a.u32(200), 0, "beyond what the guest passed reads as zero");
        assert!(a.zero_from(24) && a.zero_range(0, 4) && !a.zero_from(0));
        assert!(a.zero_range(100, 140), "an empty range past the end");
    }

    #[test]
    fn the_subtree_check_finds_descendants_only() {
        let base = std::env::temp_dir().join(format!("nixrun-subtree-{}", std::process::id()));
        let inside = base.join("payload/a/b");
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::create_dir_all(base.join("other")).unwrap();
        let fd = |p: &Path| std::fs::File::open(p).unwrap();
        let root = base.join("payload");
        assert!(in_subtree(&root, fd(&inside).as_fd()).unwrap());
        assert!(in_subtree(&root, fd(&root).as_fd()).unwrap());
        assert!(!in_subtree(&root, fd(&base.join("other")).as_fd()).unwrap());
        assert!(!in_subtree(&root, fd(&base).as_fd()).unwrap());
        std::fs::write(inside.join("f"), "").unwrap();
        assert!(!in_subtree(&root, fd(&inside.join("f")).as_fd()).unwrap());
        // Up to the file system's root and beyond it: not below.
        assert!(!in_subtree(&root, fd(Path::new("/")).as_fd()).unwrap());
        assert!(!in_subtree(&root, fd(Path::new("/proc")).as_fd()).unwrap());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
