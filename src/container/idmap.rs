//! ID-mapped mounts: how a container in a user namespace owns the files of its
//! root and of its binds without a chown of the tree.
//!
//! An ID-mapped mount translates the owners on disk through a user namespace
//! of its own (the "idmap"): a file owned by u on disk is seen as owned by the
//! host uid that u maps to there, and a file the guest creates through the
//! mount gets the on-disk uid its host uid maps back to. The idmaps are
//! nspawn's (systemd's make_userns):
//!
//! - the root and `:idmap` binds, `0 SHIFT RANGE`: on-disk 0..RANGE are the
//!   guest's 0..RANGE. A second line, `2147483646 0 1`, lets the host's root
//!   create inodes through the mount (on disk as 2147483646, which the guest
//!   sees as nobody) before they are chowned to the guest;
//! - `:rootidmap`, `P SHIFT 1`: the source's owner P is the guest's root,
//!   nothing else is mapped;
//! - `:owneridmap`, `P T 1`: P is whoever owns the mount point in the guest
//!   (host uid T), nothing else is mapped.
//!
//! The same lines serve as uid and gid map. The idmap is a user namespace that
//! a namespace holder is born in (sys::process::NsHolder), given its maps and
//! killed once its namespace is open. The mount is a detached clone of the
//! source (open_tree(OPEN_TREE_CLONE)), ID-mapped with mount_setattr(2) before
//! it is attached anywhere: only its top mount is mapped, as nspawn does.

use nix::errno::Errno;
use nix::sched::CloneFlags;
use rustix::fs::CWD;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// Where the host's root lands on disk through a range idmap (systemd's
/// UID_MAPPED_ROOT): a uid nobody uses, shown as nobody in the guest.
pub const MAPPED_HOST_ROOT: u32 = 2_147_483_646;

/// An idmap, as the lines of its uid (and gid) map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// On-disk 0..range are host shift..shift+range (the root, `:idmap`).
    Range { shift: u32, range: u32 },
    /// On-disk `owner` is host `to`, nothing else (`:rootidmap`, `:owneridmap`).
    Owner { owner: u32, to: u32 },
}

impl Mapping {
    pub fn lines(&self) -> String {
        match *self {
            // With shift 0 the host's root is mapped already (and a second
            // line for it would overlap the first).
            Mapping::Range { shift: 0, range } => format!("0 0 {range}\n"),
            Mapping::Range { shift, range } => {
                format!("0 {shift} {range}\n{MAPPED_HOST_ROOT} 0 1\n")
            }
            Mapping::Owner { owner, to } => format!("{owner} {to} 1\n"),
        }
    }
}

/// A user namespace with `mapping` as its uid and gid map.
pub fn userns(mapping: &Mapping) -> Result<OwnedFd, Errno> {
    let holder = crate::sys::process::NsHolder::spawn(CloneFlags::CLONE_NEWUSER)?;
    let lines = mapping.lines();
    let pid = holder.pid();
    let write = |file: &str| {
        std::fs::write(format!("/proc/{pid}/{file}"), &lines).map_err(|e| crate::sys::io_errno(&e))
    };
    let ns = write("uid_map")
        .and_then(|()| write("gid_map"))
        .and_then(|()| {
            std::fs::File::open(format!("/proc/{pid}/ns/user"))
                .map_err(|e| crate::sys::io_errno(&e))
        });
    holder.finish();
    ns.map(OwnedFd::from)
}

/// A detached clone of the mount at `source` (with the mounts below it if
/// `recursive`), its top mount ID-mapped through `idmap`.
pub fn clone_idmapped(
    source: BorrowedFd<'_>,
    recursive: bool,
    idmap: BorrowedFd<'_>,
) -> Result<OwnedFd, Errno> {
    let tree = crate::sys::clone_tree(source, recursive)?;
    crate::sys::mount_setattr_idmap(tree.as_fd(), idmap)?;
    Ok(tree)
}

/// Where `map_onto_itself` failed: each caller words it for its own flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapStep {
    Userns,
    Open,
    Idmap,
    Mount,
}

/// Mounts the directory `dir` (with the mounts below it) ID-mapped onto
/// itself, on-disk 0..`range` as `shift`..: the container root under -U, or
/// the tree under --ephemeral's overlay.
pub fn map_onto_itself(dir: &Path, shift: u32, range: u32) -> Result<(), (MapStep, Errno)> {
    let ns = userns(&Mapping::Range { shift, range }).map_err(|e| (MapStep::Userns, e))?;
    let src = rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH
            | rustix::fs::OFlags::DIRECTORY
            | rustix::fs::OFlags::NOFOLLOW
            | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| (MapStep::Open, crate::sys::errno(e)))?;
    let tree = clone_idmapped(src.as_fd(), true, ns.as_fd()).map_err(|e| (MapStep::Idmap, e))?;
    rustix::mount::move_mount(
        &tree,
        "",
        CWD,
        dir,
        rustix::mount::MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| (MapStep::Mount, crate::sys::errno(e)))
}

/// The file system type of the mount `path` is on (from mountinfo, by mount
/// id), for messages.
pub fn fs_type(path: &Path) -> String {
    let id = rustix::fs::statx(
        CWD,
        path,
        rustix::fs::AtFlags::empty(),
        rustix::fs::StatxFlags::MNT_ID,
    )
    .ok()
    .map(|s| s.stx_mnt_id);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    id.and_then(|id| {
        mountinfo.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (left.split(' ').next()?.parse::<u64>().ok()? == id)
                .then(|| right.split(' ').next().unwrap_or("?").to_string())
        })
    })
    .unwrap_or_else(|| "an unknown file system".into())
}

/// Whether the file system of `path` can be ID-mapped: a detached clone of its
/// mount is mapped and dropped (nothing on the host changes). The error is one
/// phrase naming the file system.
pub fn probe(path: &Path) -> Result<(), String> {
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| format!("{}: {}", path.display(), crate::sys::errno(e).desc()))?;
    // Any mapping will do: support is the file system's.
    let ns = userns(&Mapping::Owner {
        owner: 0,
        to: 65534,
    })
    .map_err(|e| format!("creating a user namespace to test ID mapping: {}", e.desc()))?;
    match clone_idmapped(fd.as_fd(), false, ns.as_fd()) {
        Ok(_) => Ok(()),
        Err(e @ (Errno::EINVAL | Errno::EOPNOTSUPP | Errno::ENOSYS | Errno::EPERM)) => {
            Err(format!(
                "{} is on {}, which cannot be ID-mapped (mount_setattr MOUNT_ATTR_IDMAP: {})",
                path.display(),
                fs_type(path),
                e
            ))
        }
        Err(e) => Err(format!(
            "ID-mapping a clone of {}: {}",
            path.display(),
            e.desc()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_lines_are_nspawns() {
        assert_eq!(
            Mapping::Range {
                shift: 0x5fa80000,
                range: 65536
            }
            .lines(),
            "0 1604845568 65536\n2147483646 0 1\n"
        );
        assert_eq!(
            Mapping::Range {
                shift: 0,
                range: 65536
            }
            .lines(),
            "0 0 65536\n"
        );
        assert_eq!(
            Mapping::Owner {
                owner: 1000,
                to: 0x80000
            }
            .lines(),
            "1000 524288 1\n"
        );
    }
}
