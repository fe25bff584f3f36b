//! The child's part of what the root is made of (policy/rootfs.rs), each boot:
//! `layer` goes over the tree before the root is bound onto itself
//! (--volatile=yes: an empty tmpfs with the tree's /usr; --volatile=overlay:
//! the tree under a tmpfs overlay), `protect` once it is bound (--read-only and
//! --volatile=state: the tree read-only; the latter's tmpfs on /var). All of it
//! happens in the child's mount namespace and goes with it.

use super::overlay;
use super::root::{Root, RootError};
use crate::policy::rootfs::{Layer, RootFs, EMPTY_ROOT_DIRS, MOUNT_POINTS, USR_LINKS};
use crate::sys::{fd_path, mount_setattr, MOUNT_ATTR_RDONLY};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use rustix::fs::Mode;
use std::os::fd::AsFd;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum RootFsError {
    #[error("--volatile: {0}")]
    Overlay(#[from] overlay::OverlayError),
    #[error("{what}: {errno}")]
    Sys {
        what: &'static str,
        #[source]
        errno: Errno,
    },
    #[error("{0}")]
    Root(#[from] RootError),
}

fn sys(what: &'static str) -> impl FnOnce(Errno) -> RootFsError {
    move |errno| RootFsError::Sys { what, errno }
}

/// Puts the boot's layer over the tree at `dir`.
pub fn layer(dir: &Path, rootfs: &RootFs) -> Result<(), RootFsError> {
    match &rootfs.layer {
        Layer::Tree => Ok(()),
        Layer::Overlay { options } => Ok(overlay::tmpfs_over_itself(dir, options)?),
        Layer::TmpfsWithUsr { options } => {
            tmpfs_with_usr(dir, options, rootfs.owner.map(|id| (id, id)))
        }
    }
}

/// --volatile=yes: an empty tmpfs as the root, the tree's /usr bound into it
/// read-only, and the top-level links into /usr and directories a merged-/usr
/// system expects (nspawn's base_filesystem_create makes them too).
fn tmpfs_with_usr(dir: &Path, options: &str, owner: Option<(u32, u32)>) -> Result<(), RootFsError> {
    let tree = Root::open_dir(dir).map_err(sys("open the container root"))?;
    let usr = tree.path_fd(Path::new("/usr"))?;
    let present: Vec<bool> = USR_LINKS
        .iter()
        .map(|(_, target)| tree.path_fd(&Path::new("/").join(target)).is_ok())
        .collect();
    mount(
        Some("tmpfs"),
        fd_path(tree.fd()).as_str(),
        Some("tmpfs"),
        MsFlags::MS_STRICTATIME,
        Some(options),
    )
    .map_err(sys("mount a tmpfs as the volatile root"))?;
    let top = Root::open_dir(dir)
        .map_err(sys("open the volatile root"))?
        .with_owner(owner);
    let point = top.mount_point(Path::new("/usr"), super::root::Kind::Dir)?;
    mount(
        Some(fd_path(usr.as_fd()).as_str()),
        fd_path(point.as_fd()).as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys("bind the tree's /usr into the volatile root"))?;
    let bound = top.path_fd(Path::new("/usr"))?;
    mount_setattr(bound.as_fd(), true, MOUNT_ATTR_RDONLY, 0)
        .map_err(sys("make the volatile root's /usr read-only"))?;
    for (&(name, target), there) in USR_LINKS.iter().zip(present) {
        if there {
            top.symlink(&Path::new("/").join(name), target)?;
        }
    }
    for &(path, mode) in EMPTY_ROOT_DIRS {
        let fd = top.mkdir_all(Path::new(path), mode)?;
        let _ = rustix::fs::chmod(fd_path(fd.as_fd()), Mode::from_bits_truncate(mode));
    }
    Ok(())
}

/// Once the root is bound onto itself: read-only (with every mount below it)
/// where the policy says so, after making the runtime's mount points that a
/// read-only root could no longer take; then --volatile=state's /var.
pub fn protect(root: &Root, rootfs: &RootFs) -> Result<(), RootFsError> {
    if rootfs.read_only {
        for p in MOUNT_POINTS {
            root.mkdir_all(Path::new(p), 0o755)?;
        }
        mount_setattr(root.fd(), true, MOUNT_ATTR_RDONLY, 0)
            .map_err(sys("make the container root read-only"))?;
    }
    if let Some(options) = &rootfs.var_tmpfs {
        let var = root.path_fd(Path::new("/var"))?;
        mount(
            Some("tmpfs"),
            fd_path(var.as_fd()).as_str(),
            Some("tmpfs"),
            MsFlags::MS_STRICTATIME,
            Some(options.as_str()),
        )
        .map_err(sys("mount a tmpfs on /var (--volatile=state)"))?;
    }
    Ok(())
}
