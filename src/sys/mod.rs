//! The system-call layer: the only place in nixrun allowed to use `unsafe`.
//!
//! Everything here is a thin, safe wrapper around one kernel interface that
//! neither nix nor rustix offers safely (or at all): clone/fork of a
//! single-threaded process, fds received by SCM_RIGHTS, mount_setattr,
//! close_range, seccomp filters and user notifications, the bpf() calls of the
//! device policy, the session keyring, netlink socket options, and raw signal
//! numbers (real-time ones, which nix's `Signal` cannot name). The rest of the
//! crate is built with `unsafe_code = "deny"`; each block here says why it is
//! sound.

#![allow(unsafe_code)]

pub mod bpf;
pub mod entry;
pub mod fd;
pub mod process;
pub mod seccomp;

use nix::errno::Errno;
use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd};

// From <linux/mount.h>; libc has the syscall number but not the flags.
pub const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const AT_RECURSIVE: libc::c_uint = 0x8000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Makes every mount of our (new) mount namespace a slave of its peers:
/// what we mount or unmount from here on no longer propagates to the
/// namespace we were copied from (the host's), while its changes still
/// reach us.
pub fn make_mounts_slaves() -> nix::Result<()> {
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_SLAVE,
        None::<&str>,
    )
}

/// A detached copy of the mount `source` refers to (with the mounts below it
/// if `recursive`): open_tree(2) with OPEN_TREE_CLONE, to be given its
/// attributes (mount_setattr) before `attach_tree` puts it anywhere.
pub fn clone_tree(source: BorrowedFd<'_>, recursive: bool) -> nix::Result<std::os::fd::OwnedFd> {
    use rustix::mount::OpenTreeFlags;
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE
        | OpenTreeFlags::OPEN_TREE_CLOEXEC
        | OpenTreeFlags::AT_EMPTY_PATH;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    rustix::mount::open_tree(source, "", flags).map_err(errno)
}

/// Attaches the detached tree `tree` onto the mount point `target` (both fds).
pub fn attach_tree(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> nix::Result<()> {
    use rustix::mount::MoveMountFlags;
    rustix::mount::move_mount(
        tree,
        "",
        target,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(errno)
}

/// mount_setattr(2) on the mount `fd` refers to: set `set` and clear `clear`,
/// optionally on the whole subtree. Unlike a MS_REMOUNT, it changes only the
/// named attributes, so nosuid/nodev/noexec of a bind survive making it read-only.
pub fn mount_setattr(fd: BorrowedFd<'_>, recursive: bool, set: u64, clear: u64) -> nix::Result<()> {
    setattr(
        fd,
        recursive,
        MountAttr {
            attr_set: set,
            attr_clr: clear,
            propagation: 0,
            userns_fd: 0,
        },
    )
}

/// mount_setattr(2) MOUNT_ATTR_IDMAP on the (detached) mount `fd` refers to,
/// with the uid and gid maps of the user namespace `userns`; only that
/// mount, not those below it.
pub fn mount_setattr_idmap(fd: BorrowedFd<'_>, userns: BorrowedFd<'_>) -> nix::Result<()> {
    setattr(
        fd,
        false,
        MountAttr {
            attr_set: MOUNT_ATTR_IDMAP,
            attr_clr: 0,
            propagation: 0,
            userns_fd: userns.as_raw_fd() as u64,
        },
    )
}

fn setattr(fd: BorrowedFd<'_>, recursive: bool, attr: MountAttr) -> nix::Result<()> {
    let empty = CString::default();
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= AT_RECURSIVE;
    }
    // SAFETY: the pointers are valid for the duration of the call and the size is
    // that of the struct the kernel expects (MOUNT_ATTR_SIZE_VER0).
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    Errno::result(r).map(drop)
}

/// The path through which a syscall that only takes paths (mount(2)) reaches what
/// an fd refers to. Only valid while the host's /proc is mounted at /proc, i.e.
/// before pivot_root.
pub fn fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// Kernel keyrings are not namespaced: a process that should not reach the
/// keyring it inherited joins a new anonymous session keyring.
pub fn join_new_session_keyring() -> nix::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    // SAFETY: a null name asks for a new anonymous session keyring; no memory
    // is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_JOIN_SESSION_KEYRING,
            std::ptr::null::<libc::c_char>(),
        )
    };
    Errno::result(r).map(drop)
}

/// Removes capability number `n` from the calling thread's bounding set; by
/// number, because the kernel may know capabilities the caps crate does not.
pub fn capbset_drop(n: u8) -> nix::Result<()> {
    // SAFETY: PR_CAPBSET_DROP takes integers only.
    let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, n as libc::c_ulong, 0, 0, 0) };
    Errno::result(r).map(drop)
}

/// Turns on the boolean option `option` (NETLINK_EXT_ACK, NETLINK_CAP_ACK…)
/// of the netlink socket `sock`; nix and rustix know none of these.
pub fn set_netlink_option(sock: BorrowedFd<'_>, option: libc::c_int) -> nix::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: the value points to a c_int that outlives the call, and the
    // length passed is its size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_NETLINK,
            option,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    Errno::result(r).map(drop)
}

/// The kind of namespace `fd` refers to (a `CLONE_NEW*` flag), by the nsfs
/// ioctl NS_GET_NSTYPE: a bind-mounted namespace file's /proc link shows its
/// path, not its type. Fails with ENOTTY for anything that is not a namespace.
pub fn ns_type(fd: BorrowedFd<'_>) -> nix::Result<libc::c_int> {
    // SAFETY: NS_GET_NSTYPE takes no argument and returns the type; fd is open.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_NSTYPE as _) };
    Errno::result(r)
}

// From <linux/nsfs.h>: _IO(0xb7, 1) to _IO(0xb7, 4).
const NS_GET_USERNS: libc::c_ulong = 0xb701;
const NS_GET_PARENT: libc::c_ulong = 0xb702;
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

fn ns_ioctl_fd(fd: BorrowedFd<'_>, request: libc::c_ulong) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: NS_GET_USERNS and NS_GET_PARENT take no argument and return a new
    // fd (opened close-on-exec by the kernel) that nothing else owns.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _) };
    // SAFETY: on success r is that new fd.
    Errno::result(r).map(|fd| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// The user namespace that owns the namespace `fd` refers to (NS_GET_USERNS).
pub fn ns_owner(fd: BorrowedFd<'_>) -> nix::Result<std::os::fd::OwnedFd> {
    ns_ioctl_fd(fd, NS_GET_USERNS)
}

/// The parent of the user (or PID) namespace `fd` refers to; EPERM when the
/// parent lies outside our own, i.e. for the initial one.
pub fn ns_parent(fd: BorrowedFd<'_>) -> nix::Result<std::os::fd::OwnedFd> {
    ns_ioctl_fd(fd, NS_GET_PARENT)
}

/// The uid (in our user namespace) of whoever created the user namespace `fd`
/// refers to.
pub fn ns_owner_uid(fd: BorrowedFd<'_>) -> nix::Result<u32> {
    let mut uid: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t to the pointer we pass.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), NS_GET_OWNER_UID as _, &mut uid) };
    Errno::result(r).map(|_| uid)
}

/// poll(2)'s timeout for waiting `d`, rounded up to the next millisecond:
/// waking a moment early would only loop back to wait again.
pub fn poll_timeout(d: std::time::Duration) -> nix::poll::PollTimeout {
    let ms = d.as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
    nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX)
}

/// nix's `Errno` for one of rustix's: the crate reports system errors as nix's.
pub fn errno(e: rustix::io::Errno) -> Errno {
    Errno::from_raw(e.raw_os_error())
}

/// nix's `Errno` for an `io::Error` (EIO for one that carries no errno).
pub fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// A /proc file's text, read with one buffer of a page: std's
/// `fs::read_to_string` asks for the size first (0 for /proc files) and then
/// reads in doubling steps from 32 bytes, ten system calls for a
/// /proc/PID/status where this takes four (open, read, the read that sees
/// the end, close). Longer files are read to the end all the same.
pub fn read_proc(path: impl AsRef<std::path::Path>) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::with_capacity(4096);
    std::fs::File::open(path)?.read_to_string(&mut text)?;
    Ok(text)
}
