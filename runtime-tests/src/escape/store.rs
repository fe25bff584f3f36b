//! Attacks on the host's /nix/store, which a NixOS container gets as a
//! read-only bind: writing into it changes every system on the host that uses
//! those paths.
//!
//! Harmless when they succeed: the only file ever created is a uniquely named
//! empty one, removed at once; remounts are undone (and those in a private
//! mount namespace vanish with it anyway); a detached open_tree clone vanishes
//! when its fd is closed.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::sys::{self, MountAttr, Scratch};
use super::{Findings, Outcome};

const STORE: &str = "/nix/store";

fn test_name() -> String {
    format!(".nixrun-probe-escape.{}", std::process::id())
}

/// The store must exist and be a mount point of its own; otherwise the
/// container was set up without it and there is nothing to attack.
fn check_store() -> Result<(), String> {
    match sys::is_mount_point(Path::new(STORE)) {
        Ok(true) => Ok(()),
        Ok(false) => Err(format!("{STORE} is not a mount point")),
        Err(Errno::ENOENT) => Err(format!("{STORE} does not exist")),
        Err(e) => Err(format!("cannot stat {STORE}: {e:?}")),
    }
}

/// Creates and removes a test file in `dir` (relative to `dirfd` if given):
/// the proof that a view of the store is really writable.
fn try_create(dirfd: Option<&std::os::fd::OwnedFd>, dir: &Path) -> Result<String, Errno> {
    let name = test_name();
    let (fd, path): (i32, PathBuf) = match dirfd {
        Some(fd) => (fd.as_raw_fd(), PathBuf::from(&name)),
        None => (libc::AT_FDCWD, dir.join(&name)),
    };
    let file = sys::openat(
        fd,
        &path,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        0o644,
    )?;
    drop(file);
    let p = sys::c(&path);
    // SAFETY: valid C string relative to a valid dirfd (or AT_FDCWD).
    let removed = unsafe { libc::unlinkat(fd, p.as_ptr(), 0) } == 0;
    Ok(if removed {
        format!("created {} and removed it", dir.join(&name).display())
    } else {
        format!(
            "created {} but could not remove it: {:?}",
            dir.join(&name).display(),
            Errno::last()
        )
    })
}

/// `store-write`: create a file under /nix/store.
pub fn store_write() -> Outcome {
    if let Err(e) = check_store() {
        return Outcome::Error(e);
    }
    match try_create(None, Path::new(STORE)) {
        Ok(what) => Outcome::Escaped(what),
        Err(Errno::EROFS) => Outcome::Blocked("EROFS".to_string()),
        // Not a read-only mount, but something (a missing capability, an LSM)
        // still refuses: blocked, and the errno shows it is not the usual wall.
        Err(e @ (Errno::EACCES | Errno::EPERM)) => Outcome::Blocked(format!("{e:?}")),
        Err(e) => Outcome::Error(format!("create in {STORE} failed unexpectedly: {e:?}")),
    }
}

/// Whether a view of the store at `path` (or the detached mount `fd`) is
/// writable: statvfs without ST_RDONLY, or a test file that can be created.
fn writable_view(path: &Path, fd: Option<&std::os::fd::OwnedFd>) -> Option<String> {
    let ro = match fd {
        Some(fd) => sys::fstatvfs_rdonly(fd),
        None => sys::is_read_only(path),
    };
    let created = try_create(fd, path);
    match (ro, created) {
        (_, Ok(what)) => Some(what),
        (Ok(false), Err(e)) => Some(format!("statvfs shows it read-write (test create: {e:?})")),
        _ => None,
    }
}

/// `store-remount`: three ways to a writable view of the store.
pub fn store_remount() -> Outcome {
    if let Err(e) = check_store() {
        return Outcome::Error(e);
    }
    let store = Path::new(STORE);
    match sys::is_read_only(store) {
        Ok(true) => {}
        Ok(false) => {
            return Outcome::Escaped(format!("{STORE} is mounted read-write to begin with"))
        }
        Err(e) => return Outcome::Error(format!("statvfs {STORE}: {e:?}")),
    }
    let keep = match sys::keep_flags(store) {
        Ok(k) => k,
        Err(e) => return Outcome::Error(format!("statvfs {STORE}: {e:?}")),
    };
    let mut f = Findings::default();
    remount_in_place(&mut f, store, keep);
    bind_and_remount(&mut f, store, keep);
    clone_and_setattr(&mut f, store);
    f.outcome()
}

/// 1. mount(NULL, "/nix/store", NULL, MS_REMOUNT|MS_BIND) without MS_RDONLY.
///    Undone with the same call plus MS_RDONLY, whatever the check found.
fn remount_in_place(f: &mut Findings, store: &Path, keep: libc::c_ulong) {
    let flags = libc::MS_REMOUNT | libc::MS_BIND | keep;
    match sys::mount(None, store, None, flags, None) {
        Err(e) => f.blocked(format!("remount,bind,rw: {e:?}")),
        Ok(()) => {
            let found = writable_view(store, None);
            let undo = sys::mount(None, store, None, flags | libc::MS_RDONLY, None);
            let undo = match undo {
                Ok(()) => String::new(),
                Err(e) => format!(" (FAILED to remount it read-only again: {e:?})"),
            };
            match found {
                Some(what) => f.escaped(format!("remount,bind,rw of {STORE}: {what}{undo}")),
                None => f.blocked(format!(
                    "remount,bind,rw succeeded but the store stayed read-only (read-only superblock){undo}"
                )),
            }
        }
    }
}

/// 2. Bind the store elsewhere and remount that bind read-write.
fn bind_and_remount(f: &mut Findings, store: &Path, keep: libc::c_ulong) {
    let mut scratch = match Scratch::new() {
        Ok(s) => s,
        Err(e) => return f.error(format!("bind+remount: {e}")),
    };
    let target = match scratch.mount_point("store") {
        Ok(t) => t,
        Err(e) => return f.error(format!("bind+remount: {e}")),
    };
    let source = store.to_string_lossy();
    if let Err(e) = sys::mount(Some(&source), &target, None, libc::MS_BIND, None) {
        return f.blocked(format!("bind: {e:?}"));
    }
    let flags = libc::MS_REMOUNT | libc::MS_BIND | keep;
    match sys::mount(None, &target, None, flags, None) {
        Err(e) => f.blocked(format!("bind then remount,rw: {e:?}")),
        Ok(()) => match writable_view(&target, None) {
            Some(what) => f.escaped(format!("bind then remount,rw: {what}")),
            None => f.blocked("bind then remount,rw: still read-only".to_string()),
        },
    }
    if let Err(e) = sys::umount(&target, libc::MNT_DETACH) {
        f.error(format!(
            "could not unmount the bind at {}: {e:?}",
            target.display()
        ));
    }
}

/// 3. open_tree(OPEN_TREE_CLONE) + mount_setattr clearing MOUNT_ATTR_RDONLY on
///    the detached clone (the new mount API, which a filter for mount(2) alone
///    misses).
fn clone_and_setattr(f: &mut Findings, store: &Path) {
    let fd = match sys::open_tree_clone(store) {
        Ok(fd) => fd,
        Err(e) => return f.blocked(format!("open_tree(CLONE): {e:?}")),
    };
    let attr = MountAttr {
        attr_clr: sys::MOUNT_ATTR_RDONLY,
        ..MountAttr::default()
    };
    match sys::mount_setattr(&fd, &attr) {
        Err(e) => f.blocked(format!("mount_setattr(clear RDONLY) on a clone: {e:?}")),
        Ok(()) => match writable_view(store, Some(&fd)) {
            Some(what) => f.escaped(format!(
                "open_tree clone + mount_setattr rw: {}",
                what.replace(&format!("{STORE}/"), "<clone>/")
            )),
            None => f.blocked("open_tree clone + mount_setattr rw: still read-only".to_string()),
        },
    }
}
