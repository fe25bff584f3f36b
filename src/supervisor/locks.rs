//! One container per root directory and per machine name, with lock files that
//! systemd-nspawn takes too, so that nixrun and nspawn also exclude each other.
//!
//! As nspawn (systemd's image_path_lock/image_name_lock) does:
//! - the root directory: `/run/systemd/nspawn/locks/inode-<st_dev>:<st_ino>`
//!   (found whatever path names the tree, even if it is a mount point) and
//!   `<parent>/.#<name>.lck` next to it (seen by other hosts sharing it);
//! - the machine name: `/run/systemd/nspawn/locks/name-<machine>`.
//!
//! Each is an open-file-description lock (F_OFD_SETLK, whole file, write lock
//! for exclusive), which goes away with the process however it dies. The owner
//! unlinks the file before closing it; a waiter that locked a file which was
//! unlinked meanwhile finds its link count 0 and tries again.
//!
//! A run that leaves the tree as it was (--read-only, --volatile, and
//! --ephemeral, whose overlay needs its lower layer to stay as it is) takes the
//! tree's locks shared (a read lock, as nspawn's --read-only does): such runs
//! may share a tree, a run that writes to it may not. A shared owner unlinks
//! the file only if it can become the exclusive one, i.e. it is the last.
//! `SYSTEMD_NSPAWN_LOCK=0` turns locking off, as it does for nspawn.

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};
use rustix::fs::{Mode, OFlags};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

const LOCK_DIR: &str = "/run/systemd/nspawn/locks";

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("directory tree {0} is currently busy: another container runs on it")]
    TreeBusy(PathBuf),
    #[error("machine name {0} is in use by another container")]
    NameBusy(String),
    #[error("lock file {0}: {1}")]
    File(PathBuf, #[source] Errno),
}

/// A held lock; `release` (or dropping it) gives it up.
#[derive(Debug)]
pub struct LockFile {
    path: PathBuf,
    fd: Option<OwnedFd>,
    shared: bool,
}

impl LockFile {
    /// Unlinks the file and then closes it: nobody else can hold it now.
    pub fn release(mut self) {
        self.release_now();
    }

    fn release_now(&mut self) {
        if let Some(fd) = self.fd.take() {
            let last = !self.shared || set_lock(&fd, libc::F_WRLCK).is_ok();
            if last {
                let _ = std::fs::remove_file(&self.path);
            }
            drop(fd);
        }
    }
}

impl Drop for LockFile {
    fn drop(&mut self) {
        self.release_now();
    }
}

fn whole_file(l_type: libc::c_short) -> libc::flock {
    libc::flock {
        l_type,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

fn set_lock(fd: &OwnedFd, l_type: libc::c_int) -> Result<(), Errno> {
    fcntl(
        fd.as_raw_fd(),
        FcntlArg::F_OFD_SETLK(&whole_file(l_type as libc::c_short)),
    )
    .map(drop)
}

/// Takes an exclusive lock on `path` without waiting: Ok(None) if someone else
/// holds it.
pub fn try_lock(path: &Path) -> Result<Option<LockFile>, Errno> {
    try_lock_as(path, false)
}

/// Takes a lock on `path`, shared or exclusive, without waiting: Ok(None) if
/// someone holds a conflicting one.
pub fn try_lock_as(path: &Path, shared: bool) -> Result<Option<LockFile>, Errno> {
    loop {
        let fd = rustix::fs::open(
            path,
            OFlags::CREATE | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(crate::sys::errno)?;
        let l_type = if shared { libc::F_RDLCK } else { libc::F_WRLCK };
        match set_lock(&fd, l_type) {
            Ok(()) => {}
            Err(Errno::EAGAIN | Errno::EACCES) => return Ok(None),
            Err(e) => return Err(e),
        }
        // The previous owner may have unlinked the file between our open and
        // our lock: then the lock guards nothing, and the file to lock is a new one.
        let st = rustix::fs::fstat(&fd).map_err(crate::sys::errno)?;
        if st.st_nlink > 0 {
            return Ok(Some(LockFile {
                path: path.to_path_buf(),
                fd: Some(fd),
                shared,
            }));
        }
    }
}

fn enabled() -> bool {
    !matches!(
        std::env::var("SYSTEMD_NSPAWN_LOCK").as_deref(),
        Ok("0" | "no" | "false" | "off" | "n" | "f")
    )
}

fn lock_dir() -> Result<PathBuf, LockError> {
    let dir = PathBuf::from(LOCK_DIR);
    let parent = dir.parent().expect("has a parent");
    std::fs::create_dir_all(parent)
        .map_err(|e| LockError::File(parent.to_path_buf(), crate::sys::io_errno(&e)))?;
    match std::fs::create_dir(&dir) {
        Ok(()) => {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(LockError::File(dir, crate::sys::io_errno(&e))),
    }
    Ok(dir)
}

/// The paths of the locks on a root directory: (global, local).
pub fn tree_lock_paths(root: &Path, dev: u64, ino: u64) -> (PathBuf, PathBuf) {
    let global = Path::new(LOCK_DIR).join(format!("inode-{dev}:{ino}"));
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let local = root
        .parent()
        .unwrap_or(Path::new("/"))
        .join(format!(".#{name}.lck"));
    (global, local)
}

/// Locks the root directory tree (shared with `shared_tree`) and the machine
/// name for this run.
pub fn lock_container(
    root: &Path,
    machine: &str,
    shared_tree: bool,
) -> Result<Vec<LockFile>, LockError> {
    if !enabled() {
        return Ok(Vec::new());
    }
    let dir = lock_dir()?;
    let mut held = Vec::new();
    let st =
        rustix::fs::stat(root).map_err(|e| LockError::File(root.into(), crate::sys::errno(e)))?;
    let (global, local) = tree_lock_paths(root, st.st_dev, st.st_ino);
    for path in [local, global] {
        match try_lock_as(&path, shared_tree) {
            Ok(Some(l)) => held.push(l),
            Ok(None) => return Err(LockError::TreeBusy(root.to_path_buf())),
            Err(e) => return Err(LockError::File(path, e)),
        }
    }
    let name = dir.join(format!("name-{machine}"));
    match try_lock(&name) {
        Ok(Some(l)) => held.push(l),
        Ok(None) => return Err(LockError::NameBusy(machine.to_string())),
        Err(e) => return Err(LockError::File(name, e)),
    }
    Ok(held)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_excludes_another_open_file_description_and_goes_with_it() {
        let dir = std::env::temp_dir().join(format!("nixrun-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.lck");
        let first = try_lock(&p).unwrap().expect("free at first");
        // OFD locks conflict between open file descriptions, even in one process.
        assert!(try_lock(&p).unwrap().is_none());
        first.release();
        assert!(!p.exists(), "the owner unlinks the file");
        let again = try_lock(&p).unwrap().expect("free after release");
        drop(again);
        assert!(!p.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn shared_locks_exclude_only_exclusive_ones_and_the_last_removes_the_file() {
        let dir = std::env::temp_dir().join(format!("nixrun-lock-sh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("x.lck");
        let a = try_lock_as(&p, true).unwrap().expect("free at first");
        let b = try_lock_as(&p, true)
            .unwrap()
            .expect("shared with a shared one");
        assert!(try_lock(&p).unwrap().is_none(), "an exclusive lock got in");
        a.release();
        assert!(
            p.exists(),
            "the first of two shared owners removed the file"
        );
        assert!(try_lock(&p).unwrap().is_none());
        b.release();
        assert!(!p.exists(), "the last shared owner leaves the file");
        let x = try_lock(&p).unwrap().expect("free again");
        assert!(try_lock_as(&p, true).unwrap().is_none());
        drop(x);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tree_lock_names_are_nspawns() {
        let (g, l) = tree_lock_paths(Path::new("/var/lib/machines/foo"), 2049, 1234);
        assert_eq!(g, Path::new("/run/systemd/nspawn/locks/inode-2049:1234"));
        assert_eq!(l, Path::new("/var/lib/machines/.#foo.lck"));
    }
}
