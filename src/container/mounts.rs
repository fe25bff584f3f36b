//! Applies the mount table (policy/mounts.rs) inside the container root, before
//! pivot_root. Every target is resolved within the root (root.rs): nothing here
//! joins the root's path with a container path.

use super::idmap::{self, Mapping};
use super::root::{Root, RootError};
use crate::plan::{BindSource, Idmap};
use crate::policy::mounts::{Access, Kind, Op, OverlayUpper, TTY_GID};
use crate::sys::{attach_tree, clone_tree, fd_path, mount_setattr, MOUNT_ATTR_RDONLY};
use nix::errno::Errno;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, SFlag};
use rustix::fs::{Mode, OFlags};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What the table produces besides mounts.
#[derive(Default)]
pub struct Outputs {
    pub pty_master: Option<OwnedFd>,
    /// The pty's slave end, the guest's console; opened before pivot_root.
    pub console: Option<OwnedFd>,
    pub notify: Option<OwnedFd>,
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{0}")]
    Root(#[from] RootError),
    #[error("mount {what} on {target}: {errno}", target = target.display())]
    Mount {
        what: String,
        target: PathBuf,
        #[source]
        errno: Errno,
    },
    #[error("mount target {0} resolves to the container's root directory (a symlink to /?)")]
    OverRoot(PathBuf),
    #[error("bind source {0}: {1}")]
    Source(PathBuf, #[source] Errno),
    #[error("console: {0}: {1}")]
    Console(&'static str, #[source] Errno),
    #[error("notify socket: {0}: {1}")]
    Notify(&'static str, #[source] Errno),
    #[error("--overlay on {0}: {1}")]
    Overlay(PathBuf, #[source] super::overlay::OverlayError),
    #[error("--overlay on {0}: {1} {2}: {3}")]
    OverlayLayer(PathBuf, &'static str, PathBuf, #[source] Errno),
    #[error("--inaccessible={0}: {1}")]
    Inaccessible(PathBuf, String),
    #[error("{0}")]
    Idmap(String),
}

/// Applies `ops` in order, collecting what they produce into `out`.
pub fn apply<'a>(
    root: &Root,
    ops: impl IntoIterator<Item = &'a Op>,
    out: &mut Outputs,
) -> Result<(), MountError> {
    let result = ops.into_iter().try_for_each(|op| {
        // Steps that create nodes, links, files and directories mount
        // nothing: they may share their parent's lookup.
        root.keep_parents(matches!(
            op,
            Op::Node { .. } | Op::Symlink { .. } | Op::File { .. } | Op::Mkdir { .. }
        ));
        apply_one(root, op, out)
    });
    root.keep_parents(false);
    result
}

/// The O_PATH fd to mount onto: created if needed, or None for an optional
/// target that does not exist. Never the root directory itself.
fn mount_target(
    root: &Root,
    target: &Path,
    kind: Kind,
    optional: bool,
) -> Result<Option<OwnedFd>, MountError> {
    let fd = if optional {
        match root.path_fd(target) {
            Ok(fd) => fd,
            Err(e) if e.errno == Errno::ENOENT => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    } else {
        root.mount_point(target, kind)?
    };
    if root.is_root(&fd) {
        return Err(MountError::OverRoot(target.to_path_buf()));
    }
    Ok(Some(fd))
}

fn apply_one(root: &Root, op: &Op, out: &mut Outputs) -> Result<(), MountError> {
    match op {
        Op::Mount {
            fstype,
            target,
            flags,
            data,
            optional,
        } => {
            let Some(fd) = mount_target(root, target, Kind::Dir, *optional)? else {
                return Ok(());
            };
            mount(
                Some(*fstype),
                fd_path(fd.as_fd()).as_str(),
                Some(*fstype),
                *flags,
                data.as_deref(),
            )
            .map_err(|errno| MountError::Mount {
                what: fstype.to_string(),
                target: target.clone(),
                errno,
            })?;
            // A devpts the host's root mounts (the outer phase of a start
            // with a user namespace) has its directory and ptmx owned by the
            // host's root, nobody to the guest: given to the guest's root, as
            // nspawn does.
            if let (&"devpts", Some((uid, gid))) = (fstype, root.owner()) {
                root.chown(target, uid, gid)?;
                root.chown(&target.join("ptmx"), uid, gid)?;
            }
            Ok(())
        }
        Op::Bind {
            source,
            target,
            kind,
            recursive,
            access,
            optional,
        } => {
            let what = || match source {
                BindSource::Host(p) | BindSource::InRoot(p) => format!("bind of {}", p.display()),
            };
            let open_source = || match source {
                BindSource::Host(path) => {
                    rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
                        .map_err(|e| (path, crate::sys::errno(e)))
                }
                BindSource::InRoot(path) => root.path_fd(path).map_err(|e| (path, e.errno)),
            };
            let source_error = |(path, errno): (&PathBuf, Errno)| {
                if errno == Errno::ENOENT && *optional {
                    None
                } else {
                    Some(MountError::Source(path.clone(), errno))
                }
            };
            // An optional step looks for its target first: it never creates
            // one, and most that are skipped (paths of /proc this kernel
            // lacks) are skipped for want of one. A required one checks its
            // source before it makes a mount point for it.
            let (src, target_fd) = if *optional {
                let Some(t) = mount_target(root, target, *kind, true)? else {
                    return Ok(());
                };
                let src = match source {
                    // Bound onto itself (a /proc path made read-only): one lookup.
                    BindSource::InRoot(p) if p == target => None,
                    _ => match open_source() {
                        Ok(fd) => Some(fd),
                        Err(e) => return source_error(e).map_or(Ok(()), Err),
                    },
                };
                (src, t)
            } else if matches!(source, BindSource::InRoot(p) if p == target) && *kind == Kind::Dir {
                // Bound onto itself (/run/host, /proc/sys made read-only): one
                // lookup, which must find the directory (nothing is made).
                let t = match root.open(target, OFlags::PATH | OFlags::DIRECTORY) {
                    Ok(fd) => fd,
                    Err(e) if e.errno == Errno::ENOENT => {
                        return Err(MountError::Source(target.clone(), Errno::ENOENT))
                    }
                    Err(e) => return Err(e.into()),
                };
                if root.is_root(&t) {
                    return Err(MountError::OverRoot(target.clone()));
                }
                (None, t)
            } else {
                let src = match open_source() {
                    Ok(fd) => fd,
                    Err(e) => return source_error(e).map_or(Ok(()), Err),
                };
                let t = mount_target(root, target, *kind, false)?.expect("not optional");
                (Some(src), t)
            };
            let src = src.as_ref().unwrap_or(&target_fd);
            let merr = |errno| MountError::Mount {
                what: what(),
                target: target.clone(),
                errno,
            };
            let Some((set, clear)) = read_only_change(*access) else {
                let mut flags = MsFlags::MS_BIND;
                if *recursive {
                    flags |= MsFlags::MS_REC;
                }
                return mount(
                    Some(fd_path(src.as_fd()).as_str()),
                    fd_path(target_fd.as_fd()).as_str(),
                    None::<&str>,
                    flags,
                    None::<&str>,
                )
                .map_err(merr);
            };
            bind_with_access(src.as_fd(), target_fd.as_fd(), *recursive, set, clear).map_err(merr)
        }
        Op::Mkdir { path, mode } => {
            root.mkdir_mode(path, *mode)?;
            Ok(())
        }
        Op::Node {
            path,
            kind,
            mode,
            major,
            minor,
        } => Ok(root.mknod(path, *kind, *mode, makedev(*major, *minor))?),
        Op::Symlink { path, target } => Ok(root.symlink(path, target)?),
        Op::File {
            path,
            contents,
            mode,
        } => Ok(root.write_file(path, contents, *mode)?),
        Op::GuestDevice { path, major, minor } => {
            match root.mknod(path, SFlag::S_IFCHR, 0o666, makedev(*major, *minor)) {
                Err(e) if e.errno == Errno::EPERM => {}
                r => return Ok(r?),
            }
            apply_one(
                root,
                &Op::Bind {
                    source: BindSource::Host(path.clone()),
                    target: path.clone(),
                    kind: Kind::File,
                    recursive: false,
                    access: Access::Inherit,
                    optional: false,
                },
                out,
            )
        }
        Op::IdmapBind {
            source,
            target,
            kind,
            recursive,
            access,
            idmap,
            shift,
            range,
        } => idmap_bind(
            root,
            source,
            target,
            *kind,
            *recursive,
            *access,
            *idmap,
            (*shift, *range),
        ),
        Op::Console => {
            let (master, slave) = super::dev::open_pty(root)?;
            if let Some((uid, gid)) = root.owner() {
                // The guest's console is its root's, in its tty group.
                rustix::fs::fchown(
                    &slave,
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(gid + TTY_GID)),
                )
                .map_err(|e| MountError::Console("chown the pty", crate::sys::errno(e)))?;
            }
            let target = root.mount_point(Path::new("/dev/console"), Kind::File)?;
            mount(
                Some(fd_path(slave.as_fd()).as_str()),
                fd_path(target.as_fd()).as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|errno| MountError::Mount {
                what: "console pty".into(),
                target: "/dev/console".into(),
                errno,
            })?;
            out.pty_master = Some(master);
            out.console = Some(slave);
            Ok(())
        }
        Op::NotifySocket => {
            out.notify = Some(super::dev::notify_socket(root)?);
            if let Some((uid, gid)) = root.owner() {
                // The guest's root must be able to send to it.
                root.chown(Path::new("/run/host/notify"), uid, gid)?;
            }
            Ok(())
        }
        Op::Overlay {
            target,
            lowers,
            upper,
            readonly,
        } => overlay(root, target, lowers, upper, *readonly),
        Op::Inaccessible { target } => inaccessible(root, target),
    }
}

/// What a bind's `access` does to the read-only flag (mount_setattr's set
/// and clear), None where it keeps the source's.
fn read_only_change(access: Access) -> Option<(u64, u64)> {
    match access {
        Access::Inherit => None,
        Access::ReadOnly => Some((MOUNT_ATTR_RDONLY, 0)),
        Access::ReadWrite => Some((0, MOUNT_ATTR_RDONLY)),
    }
}

/// Binds `src` onto `target` with the read-only flag set or cleared: a
/// detached clone of the source gets the flag before it is attached, so the
/// new mount is never seen without it, and neither path is looked up again
/// through /proc/self/fd.
fn bind_with_access(
    src: std::os::fd::BorrowedFd<'_>,
    target: std::os::fd::BorrowedFd<'_>,
    recursive: bool,
    set: u64,
    clear: u64,
) -> Result<(), Errno> {
    let tree = clone_tree(src, recursive)?;
    mount_setattr(tree.as_fd(), recursive, set, clear)?;
    attach_tree(tree.as_fd(), target)
}

/// A directory named as an overlay's layer: a host path, or one in the root.
fn layer_dir(
    root: &Root,
    target: &Path,
    role: &'static str,
    source: &BindSource,
) -> Result<OwnedFd, MountError> {
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match source {
        BindSource::Host(p) => rustix::fs::open(p, flags, Mode::empty()).map_err(|e| {
            MountError::OverlayLayer(target.into(), role, p.clone(), crate::sys::errno(e))
        }),
        BindSource::InRoot(p) => root
            .open(p, flags)
            .map_err(|e| MountError::OverlayLayer(target.into(), role, p.clone(), e.errno)),
    }
}

fn overlay(
    root: &Root,
    target: &Path,
    lowers: &[BindSource],
    upper: &OverlayUpper,
    readonly: bool,
) -> Result<(), MountError> {
    // Opened before the target is covered: a lower layer may be the target
    // itself (`--overlay=+/var::/var`).
    let lowers = lowers
        .iter()
        .map(|l| layer_dir(root, target, "lower layer", l))
        .collect::<Result<Vec<_>, _>>()?;
    let (upper, tmpfs_options) = match upper {
        OverlayUpper::Tmpfs { options } => (super::overlay::Upper::Tmpfs, options.as_str()),
        OverlayUpper::Dir { upper, work } => {
            let src = |p: &PathBuf| BindSource::Host(p.clone());
            let work = if readonly {
                None
            } else {
                Some(layer_dir(root, target, "work directory", &src(work))?)
            };
            (
                super::overlay::Upper::Dir {
                    upper: layer_dir(root, target, "upper layer", &src(upper))?,
                    work,
                },
                crate::policy::mounts::LIMITS_EMPTY,
            )
        }
    };
    let point = mount_target(root, target, Kind::Dir, false)?.expect("not optional");
    super::overlay::mount_over(
        point.as_fd(),
        super::overlay::Spec {
            lowers,
            upper,
            readonly,
            tmpfs_options,
            redirect_dir: false,
        },
    )
    .map_err(|e| MountError::Overlay(target.into(), e))
}

/// nspawn's mode_to_inaccessible_node: the empty node of the target's type;
/// where the runtime could not make device nodes (a user namespace), a
/// regular file, as systemd falls back to.
fn inaccessible(root: &Root, target: &Path) -> Result<(), MountError> {
    let fd = root.path_fd(target).map_err(|e| {
        let why = if e.errno == Errno::ENOENT {
            "does not exist in the container (only what exists can be hidden)".to_string()
        } else {
            e.to_string()
        };
        MountError::Inaccessible(target.into(), why)
    })?;
    if root.is_root(&fd) {
        return Err(MountError::OverRoot(target.to_path_buf()));
    }
    let st = rustix::fs::fstat(&fd)
        .map_err(|e| MountError::Inaccessible(target.into(), crate::sys::errno(e).to_string()))?;
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => "dir",
        libc::S_IFCHR => "chr",
        libc::S_IFBLK => "blk",
        libc::S_IFIFO => "fifo",
        libc::S_IFSOCK => "sock",
        _ => "reg",
    };
    let node = |k: &str| root.path_fd(&Path::new("/run/host/inaccessible").join(k));
    let src = match node(kind) {
        Err(e) if e.errno == Errno::ENOENT && kind != "dir" => node("reg")?,
        r => r?,
    };
    let merr = |errno| MountError::Mount {
        what: "bind of an inaccessible node".into(),
        target: target.to_path_buf(),
        errno,
    };
    bind_with_access(src.as_fd(), fd.as_fd(), false, MOUNT_ATTR_RDONLY, 0).map_err(merr)
}

/// A bind whose owners are mapped (Op::IdmapBind): a detached clone of the
/// source, ID-mapped with the map its option asks for, moved onto the target.
#[allow(clippy::too_many_arguments)]
fn idmap_bind(
    root: &Root,
    source: &BindSource,
    target: &Path,
    kind: Kind,
    recursive: bool,
    access: Access,
    idmap: Idmap,
    (shift, range): (u32, u32),
) -> Result<(), MountError> {
    let (src, src_path) = match source {
        BindSource::Host(path) => (
            rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| MountError::Source(path.clone(), crate::sys::errno(e)))?,
            path.clone(),
        ),
        BindSource::InRoot(path) => (
            root.path_fd(path)
                .map_err(|e| MountError::Source(path.clone(), e.errno))?,
            path.clone(),
        ),
    };
    let target_fd = mount_target(root, target, kind, false)?.expect("not optional");
    let merr = |errno| MountError::Mount {
        what: format!("ID-mapped bind of {}", src_path.display()),
        target: target.to_path_buf(),
        errno,
    };
    let owner = |fd: &OwnedFd| {
        rustix::fs::fstat(fd)
            .map(|s| s.st_uid)
            .map_err(crate::sys::errno)
    };
    let mapping = match idmap {
        Idmap::No => unreachable!("plain binds are Op::Bind"),
        Idmap::Idmap => Mapping::Range { shift, range },
        Idmap::RootIdmap => Mapping::Owner {
            owner: owner(&src).map_err(merr)?,
            to: shift,
        },
        // Whoever owns the mount point, as the host sees it (through the
        // root's own mapping).
        Idmap::OwnerIdmap => Mapping::Owner {
            owner: owner(&src).map_err(merr)?,
            to: owner(&target_fd).map_err(merr)?,
        },
    };
    let ns = idmap::userns(&mapping).map_err(merr)?;
    let tree = idmap::clone_idmapped(src.as_fd(), recursive, ns.as_fd()).map_err(|e| {
        MountError::Idmap(format!(
            "ID-mapped bind of {} onto {}: {} is on {}, which cannot be ID-mapped ({e})",
            src_path.display(),
            target.display(),
            src_path.display(),
            idmap::fs_type(Path::new(&crate::sys::fd_path(src.as_fd())))
        ))
    })?;
    // Its read-only flag set before it is attached, as bind_with_access does.
    if let Some((set, clear)) = read_only_change(access) {
        mount_setattr(tree.as_fd(), recursive, set, clear).map_err(merr)?;
    }
    attach_tree(tree.as_fd(), target_fd.as_fd()).map_err(merr)
}
