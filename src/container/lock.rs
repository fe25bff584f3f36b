//! Locks the container's mount tree, so that the guest's root cannot undo it.
//!
//! Without a user namespace the guest is the host's root, with CAP_SYS_ADMIN: it
//! could unmount the masks over /proc/kcore or /proc/sysrq-trigger, or remount
//! /nix/store, /proc/sys and /sys read-write. The kernel forbids exactly that in a
//! mount namespace that was copied into a less privileged owner: the copied mounts
//! are MNT_LOCKED (no umount, no non-recursive bind exposing what they cover) and
//! read-only ones MNT_LOCK_READONLY (no remount or mount_setattr to read-write, on
//! any bind or clone of them either), whatever the caller's capabilities. Such a
//! namespace also gets the "too revealing" check for fresh procfs/sysfs mounts.
//!
//! So a throw-away helper process unshares a user namespace (it needs no uid map:
//! it only serves as the new owner) and then a mount namespace, a copy of ours;
//! the container's PID 1 — still the host's root in the initial user namespace, so
//! its services can bind port 80 and create device nodes — moves into that copy.
//! Mount namespaces the guest creates later (systemd does, per service) are copied
//! from the locked one and stay locked.

use nix::errno::Errno;
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::wait::waitpid;
use std::os::fd::AsRawFd;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("creating the locking helper: {0}")]
    Fork(#[source] Errno),
    #[error("the locking helper could not create its namespaces: {0} (are user namespaces disabled? see user.max_user_namespaces)")]
    Unshare(#[source] Errno),
    #[error("entering the locked mount namespace: {0}")]
    Enter(#[source] Errno),
}

pub fn lock_mount_tree() -> Result<(), LockError> {
    let (ready_r, ready_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(LockError::Fork)?;
    let (done_r, done_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(LockError::Fork)?;
    // The helper only makes system calls and exits. It borrows the pipes: the
    // parent keeps its ends, and the helper closes its copy of the write end it
    // waits on (it exits without running destructors).
    let child = crate::sys::process::fork_run(|| {
        let _ = nix::unistd::close(done_w.as_raw_fd());
        let r = unshare(CloneFlags::CLONE_NEWUSER).and_then(|_| unshare(CloneFlags::CLONE_NEWNS));
        let code = match r {
            Ok(()) => 0u8,
            Err(e) => e as i32 as u8,
        };
        let _ = nix::unistd::write(&ready_w, &[code]);
        // Keep the namespace alive until PID 1 has entered it.
        let mut b = [0u8; 1];
        let _ = nix::unistd::read(done_r.as_raw_fd(), &mut b);
        0
    })
    .map_err(LockError::Fork)?;
    drop(ready_w);
    drop(done_r);
    let mut b = [0u8; 1];
    let n = nix::unistd::read(ready_r.as_raw_fd(), &mut b).unwrap_or(0);
    let result = if n != 1 {
        Err(LockError::Unshare(Errno::EIO))
    } else if b[0] != 0 {
        Err(LockError::Unshare(Errno::from_raw(b[0] as i32)))
    } else {
        std::fs::File::open(format!("/proc/{child}/ns/mnt"))
            .map_err(|e| LockError::Enter(crate::sys::io_errno(&e)))
            .and_then(|ns| setns(ns, CloneFlags::CLONE_NEWNS).map_err(LockError::Enter))
    };
    drop(done_w);
    let _ = waitpid(child, None);
    result
}
