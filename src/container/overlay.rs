//! Mounts an overlay over a directory whose layers may include that directory
//! itself: --ephemeral's and --volatile=overlay's root (the tree under a tmpfs
//! upper layer), --overlay='s mounts (e.g. `+/var::/var`).
//!
//! The layers are opened first; a tmpfs then goes over the target, and each
//! lower layer is bound, from its fd, onto a directory of that tmpfs
//! (`l0`, `l1`, …); an empty upper layer and its work directory are made there
//! too; the overlay is mounted on top, naming only paths in that tmpfs and the
//! host directories it was given. Naming the layers by path, not by
//! /proc/self/fd, keeps this working where our mount(2) calls are served by
//! another nixrun's mount guard (nixrun nested in a guest), which resolves
//! paths as we see them but has its own /proc/self. Nothing outside the
//! caller's mount namespace is touched: the tmpfs and the binds under the
//! overlay are gone with it.
//!
//! redirect_dir=on (for our own tmpfs upper layers) lets directories of the
//! tree be renamed, as on the snapshot nspawn would make, instead of EXDEV.

use crate::sys::fd_path;
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use rustix::fs::{Mode, OFlags};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The upper layer.
pub enum Upper {
    /// An empty directory of the tmpfs, with the attributes of the top lower
    /// layer's root (the merged root shows the upper one's).
    Tmpfs,
    /// A host directory and its work directory (same mount; none when
    /// read-only).
    Dir {
        upper: OwnedFd,
        work: Option<OwnedFd>,
    },
}

pub struct Spec<'a> {
    /// The lower layers, bottom first.
    pub lowers: Vec<OwnedFd>,
    pub upper: Upper,
    /// Read-only: the upper layer becomes the top lower one.
    pub readonly: bool,
    /// The options of the tmpfs that holds the layers (and the upper layer).
    pub tmpfs_options: &'a str,
    pub redirect_dir: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{what}: {errno}{hint}")]
pub struct OverlayError {
    what: String,
    #[source]
    errno: Errno,
    hint: &'static str,
}

fn err(what: impl Into<String>) -> impl FnOnce(Errno) -> OverlayError {
    let what = what.into();
    move |errno| OverlayError {
        what,
        errno,
        hint: "",
    }
}

fn rerr(what: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> OverlayError {
    let what = what.into();
    move |e| err(what)(crate::sys::errno(e))
}

/// The path the kernel has for an fd, as our namespace and root see it.
fn path_of(fd: BorrowedFd<'_>) -> Result<PathBuf, OverlayError> {
    std::fs::read_link(fd_path(fd))
        .map_err(|e| err("finding an overlay layer's path")(crate::sys::io_errno(&e)))
}

/// A path as overlayfs options take it: `,` ends an option, `:` a lower
/// layer, `\` escapes either.
fn escape(path: &Path) -> String {
    let mut out = String::new();
    for c in path.to_string_lossy().chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A throw-away layer over the directory `dir` itself: the tree as the one
/// lower layer under an empty tmpfs upper layer (`tmpfs_options`), what
/// --ephemeral and --volatile=overlay put over the container root.
pub fn tmpfs_over_itself(dir: &Path, tmpfs_options: &str) -> Result<(), OverlayError> {
    let tree = rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(rerr("open the container root"))?;
    let lower = tree
        .try_clone()
        .map_err(|e| err("dup the container root's fd")(crate::sys::io_errno(&e)))?;
    mount_over(
        tree.as_fd(),
        Spec {
            lowers: vec![lower],
            upper: Upper::Tmpfs,
            readonly: false,
            tmpfs_options,
            redirect_dir: true,
        },
    )
}

/// Mounts the overlay `spec` over the directory `target` (an O_PATH fd).
pub fn mount_over(target: BorrowedFd<'_>, spec: Spec<'_>) -> Result<(), OverlayError> {
    let at = path_of(target)?;
    let shown = at.display().to_string();
    mount(
        Some("tmpfs"),
        fd_path(target).as_str(),
        Some("tmpfs"),
        MsFlags::MS_STRICTATIME,
        Some(spec.tmpfs_options),
    )
    .map_err(err(format!(
        "mount a tmpfs for the overlay's layers on {shown}"
    )))?;
    // The fd still names the directory under the tmpfs; the path reaches its root.
    let base = rustix::fs::open(
        &at,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(rerr(format!("open the overlay's tmpfs at {shown}")))?;
    let fs = rustix::fs::fstatfs(&base).map_err(rerr("statfs the overlay's tmpfs"))?;
    if fs.f_type as i64 != libc::TMPFS_MAGIC {
        return Err(err(format!("{shown} is not the tmpfs just mounted there"))(
            Errno::EXDEV,
        ));
    }
    let mkdir = |name: &str| -> Result<PathBuf, OverlayError> {
        rustix::fs::mkdirat(&base, name, Mode::from_bits_truncate(0o755))
            .map_err(rerr(format!("mkdir {name} in the overlay's tmpfs")))?;
        Ok(at.join(name))
    };

    let mut lowers = Vec::new();
    for (i, layer) in spec.lowers.iter().enumerate() {
        let dir = mkdir(&format!("l{i}"))?;
        let point = rustix::fs::openat(
            &base,
            format!("l{i}"),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(rerr("open a lower layer's mount point"))?;
        // Non-recursive: an overlay layer is one file system; what is mounted
        // below it in the tree is not part of it (nor of nspawn's snapshot).
        mount(
            Some(fd_path(layer.as_fd()).as_str()),
            fd_path(point.as_fd()).as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(err(format!(
            "bind lower layer {i} for the overlay on {shown}"
        )))?;
        lowers.push(dir);
    }
    let (upper, work) = match &spec.upper {
        Upper::Tmpfs => {
            let upper = mkdir("upper")?;
            // The merged root shows the upper directory's owner and mode.
            if let Some(top) = spec.lowers.last() {
                let st = rustix::fs::fstat(top).map_err(rerr("stat the top lower layer"))?;
                let fd = rustix::fs::openat(
                    &base,
                    "upper",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(rerr("open the upper layer"))?;
                rustix::fs::fchown(
                    &fd,
                    Some(rustix::fs::Uid::from_raw(st.st_uid)),
                    Some(rustix::fs::Gid::from_raw(st.st_gid)),
                )
                .map_err(rerr("chown the upper layer"))?;
                rustix::fs::fchmod(&fd, Mode::from_bits_truncate(st.st_mode & 0o7777))
                    .map_err(rerr("chmod the upper layer"))?;
            }
            let work = if spec.readonly {
                None
            } else {
                Some(mkdir("work")?)
            };
            (upper, work)
        }
        Upper::Dir { upper, work } => (
            path_of(upper.as_fd())?,
            match work {
                Some(w) if !spec.readonly => Some(path_of(w.as_fd())?),
                _ => None,
            },
        ),
    };

    let mut layers: Vec<String> = lowers.iter().rev().map(|p| escape(p)).collect();
    let mut data = String::from("lowerdir=");
    match work {
        Some(work) => {
            data.push_str(&layers.join(":"));
            data.push_str(&format!(
                ",upperdir={},workdir={}",
                escape(&upper),
                escape(&work)
            ));
            if spec.redirect_dir {
                data.push_str(",redirect_dir=on");
            }
        }
        None => {
            layers.insert(0, escape(&upper));
            data.push_str(&layers.join(":"));
        }
    }
    let flags = if spec.readonly {
        MsFlags::MS_RDONLY
    } else {
        MsFlags::empty()
    };
    mount(
        Some("overlay"),
        fd_path(base.as_fd()).as_str(),
        Some("overlay"),
        flags,
        Some(data.as_str()),
    )
    .map_err(|errno| OverlayError {
        what: format!("mount an overlay on {shown}"),
        errno,
        hint: if errno == Errno::EINVAL {
            " (the kernel log says why: overlayfs refuses e.g. a layer on a file system without \
             d_type, an upper layer on an overlay, more than two overlays stacked)"
        } else {
            ""
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_escaped_for_overlayfs_options() {
        assert_eq!(escape(Path::new("/var/lib/a")), "/var/lib/a");
        assert_eq!(escape(Path::new("/a,b:c\\d")), "/a\\,b\\:c\\\\d");
    }
}
