//! Path resolution inside the container root: the one place that turns a container
//! path into something the runtime acts on.
//!
//! The root is untrusted: any component may be a symlink planted by the guest (or
//! by whoever built the image), e.g. `run -> /etc`. Every lookup therefore goes
//! through openat2(RESOLVE_IN_ROOT), which resolves ".." and absolute symlinks as if
//! the root were "/", and the caller then acts on the returned fd (mount onto
//! /proc/self/fd/N, mkdirat/mknodat relative to a parent fd). Nothing joins the root
//! path with a container path and hands the result to a path-based syscall.

pub use crate::policy::mounts::Kind;
use nix::errno::Errno;
use nix::sys::stat::{mkdirat, mknodat, Mode, SFlag};
use nix::unistd::symlinkat;
use rustix::fs::{OFlags, ResolveFlags};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::sys::errno;

#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {errno}", path = path.display())]
pub struct RootError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub errno: Errno,
}

pub type Result<T> = std::result::Result<T, RootError>;

fn err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> RootError + 'a {
    move |errno| RootError {
        op,
        path: path.to_path_buf(),
        errno,
    }
}

pub struct Root {
    fd: OwnedFd,
    /// Who what we create belongs to (the guest's root in a user namespace):
    /// None, whoever we are.
    owner: Option<(u32, u32)>,
    /// The root directory's (device, inode), looked up once for `is_root`,
    /// which every mount asks.
    id: std::cell::OnceCell<Option<(u64, u64)>>,
    /// The last few directories resolved as parents or made by `mkdir_mode`,
    /// reused while `keep_parents` is on: a run of nodes, links and
    /// directories in one place (/dev, /run/host, /run/host/inaccessible)
    /// then resolves each directory once. Only between mounts: a mount over
    /// a directory or above it would leave its fd naming what is now hidden.
    parents: std::cell::RefCell<Vec<(PathBuf, Rc<OwnedFd>)>>,
    keep: std::cell::Cell<bool>,
    /// The umask, read once: a node created with no mode bit it masks
    /// needs no chmod after.
    umask: std::cell::OnceCell<u32>,
}

/// "/a/b" → "a/b"; "/" → "."
fn relative(path: &Path) -> &Path {
    let rel = path.strip_prefix("/").unwrap_or(path);
    if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    }
}

impl Root {
    /// Takes an fd of the root directory (O_PATH is enough).
    pub fn new(fd: OwnedFd) -> Root {
        Root {
            fd,
            owner: None,
            id: std::cell::OnceCell::new(),
            parents: Default::default(),
            keep: Default::default(),
            umask: std::cell::OnceCell::new(),
        }
    }

    /// Whether `parent` may reuse the directory it resolved last. The
    /// caller turns it on only for steps that mount nothing.
    pub fn keep_parents(&self, on: bool) {
        self.keep.set(on);
        if !on {
            self.parents.take();
        }
    }

    /// `dir`'s fd, if it is one of the directories kept.
    fn kept(&self, dir: &Path) -> Option<Rc<OwnedFd>> {
        if !self.keep.get() {
            return None;
        }
        self.parents
            .borrow()
            .iter()
            .find(|(p, _)| p == dir)
            .map(|(_, fd)| fd.clone())
    }

    /// Keeps `dir`'s fd while `keep_parents` is on (the last four).
    fn keep_dir(&self, dir: PathBuf, fd: Rc<OwnedFd>) {
        if !self.keep.get() {
            return;
        }
        let mut kept = self.parents.borrow_mut();
        kept.retain(|(p, _)| *p != dir);
        if kept.len() == 4 {
            kept.remove(0);
        }
        kept.push((dir, fd));
    }

    /// Whether a node just created with `mode` lost bits to the umask.
    fn masked(&self, mode: u32) -> bool {
        let umask = *self.umask.get_or_init(|| {
            let m = nix::sys::stat::umask(Mode::empty());
            nix::sys::stat::umask(m);
            m.bits()
        });
        mode & umask != 0
    }

    /// Everything this Root creates from now on is chowned to `owner` (uid,
    /// gid); with a user namespace, the guest's root, so that the guest owns
    /// its mount points, /run/host and the files in it.
    pub fn with_owner(mut self, owner: Option<(u32, u32)>) -> Root {
        self.owner = owner;
        self
    }

    /// Who what this Root creates belongs to, if not whoever we are.
    pub fn owner(&self) -> Option<(u32, u32)> {
        self.owner
    }

    /// Chowns `name` in `dir` (not following a final symlink) to the owner.
    fn own(&self, dir: &OwnedFd, name: &Path, path: &Path) -> Result<()> {
        let Some((uid, gid)) = self.owner else {
            return Ok(());
        };
        rustix::fs::chownat(
            dir,
            name,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| err("chown", path)(errno(e)))
    }

    /// Chowns an existing container path (resolved within the root, a final
    /// symlink followed there) to `uid`:`gid`.
    pub fn chown(&self, path: &Path, uid: u32, gid: u32) -> Result<()> {
        let fd = self.path_fd(path)?;
        rustix::fs::chownat(
            &fd,
            "",
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            rustix::fs::AtFlags::EMPTY_PATH,
        )
        .map_err(|e| err("chown", path)(errno(e)))
    }

    /// Opens a host directory (the container root, given canonical) as a Root.
    pub fn open_dir(dir: &Path) -> nix::Result<Root> {
        let fd = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
            rustix::fs::Mode::empty(),
        )
        .map_err(errno)?;
        Ok(Root::new(fd))
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens a container path, resolved within the root.
    pub fn open(&self, path: &Path, flags: OFlags) -> Result<OwnedFd> {
        self.open_in_root(path, flags).map_err(err("open", path))
    }

    fn open_in_root(&self, path: &Path, flags: OFlags) -> nix::Result<OwnedFd> {
        loop {
            match rustix::fs::openat2(
                &self.fd,
                relative(path),
                flags | OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
                ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            ) {
                Ok(fd) => return Ok(fd),
                // openat2 asks callers to retry when a rename raced the lookup.
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(errno(e)),
            }
        }
    }

    /// An O_PATH fd of an existing container path (following in-root symlinks).
    pub fn path_fd(&self, path: &Path) -> Result<OwnedFd> {
        self.open(path, OFlags::PATH)
    }

    /// Creates `path` and its missing parents as directories (like mkdir -p), each
    /// component created relative to its already-resolved parent.
    pub fn mkdir_all(&self, path: &Path, mode: u32) -> Result<OwnedFd> {
        self.make_dirs(path, mode).map(|(fd, _)| fd)
    }

    /// mkdir_all, also saying whether the last component was made here (and
    /// so has the mode asked for, less the umask).
    fn make_dirs(&self, path: &Path, mode: u32) -> Result<(OwnedFd, bool)> {
        // Mostly the directory exists (the mount table's parents are made
        // once, then used by the nodes and links below them): one lookup of
        // the whole path.
        match self.open_in_root(path, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => return Ok((fd, false)),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(err("open", path)(e)),
        }
        let rel = relative(path);
        let parent = match rel.parent() {
            // The root itself ("." has the parent ""): it cannot be made here.
            Some(p) if rel != Path::new(".") => p,
            _ => return Err(err("open", path)(Errno::ENOENT)),
        };
        let (dir, _) = self.make_dirs(&Path::new("/").join(parent), mode)?;
        let name = match rel.components().next_back() {
            Some(std::path::Component::Normal(name)) => name,
            // "..", ".": nothing to make, only to resolve (within the root).
            _ => return Ok((self.open(path, OFlags::PATH | OFlags::DIRECTORY)?, false)),
        };
        match mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(mode)) {
            Ok(()) => {
                self.own(&dir, Path::new(name), path)?;
                // Just made in a directory we hold: one component, no link
                // followed, finds it (or fails if it was swapped meanwhile,
                // and the lookup within the root below decides).
                if let Ok(fd) = rustix::fs::openat(
                    &dir,
                    name,
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                ) {
                    return Ok((fd, true));
                }
            }
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(err("mkdir", path)(e)),
        }
        // There already (a link, say, dangling or not): resolved within the
        // root, as any lookup.
        Ok((self.open(path, OFlags::PATH | OFlags::DIRECTORY)?, false))
    }

    /// A directory with exactly `mode` (Op::Mkdir): made if missing, its mode
    /// set unless it was just made with no bit the umask takes away.
    pub fn mkdir_mode(&self, path: &Path, mode: u32) -> Result<()> {
        let (fd, created) = match self.mkdir_in_kept(path, mode)? {
            Some(fd) => (fd, true),
            None => self.make_dirs(path, mode)?,
        };
        if !created || self.masked(mode) || (self.owner.is_some() && mode & 0o6000 != 0) {
            // An O_PATH fd cannot be chmodded.
            rustix::fs::fchmod(
                self.open(path, OFlags::RDONLY | OFlags::DIRECTORY)?,
                rustix::fs::Mode::from_bits_truncate(mode),
            )
            .map_err(|e| err("chmod", path)(errno(e)))?;
        }
        // The nodes and directories that follow in it find it here.
        self.keep_dir(Path::new("/").join(relative(path)), Rc::new(fd));
        Ok(())
    }

    /// `path` made in its parent, when that is a directory kept: no lookup.
    /// None when the parent is not kept or the name exists already (then
    /// `make_dirs` resolves it within the root, as any lookup).
    fn mkdir_in_kept(&self, path: &Path, mode: u32) -> Result<Option<OwnedFd>> {
        let rel = relative(path);
        let (Some(parent), Some(std::path::Component::Normal(name))) =
            (rel.parent(), rel.components().next_back())
        else {
            return Ok(None);
        };
        let Some(dir) = self.kept(&Path::new("/").join(parent)) else {
            return Ok(None);
        };
        match mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(mode)) {
            Ok(()) => {}
            Err(Errno::EEXIST) => return Ok(None),
            Err(e) => return Err(err("mkdir", path)(e)),
        }
        self.own(&dir, Path::new(name), path)?;
        // As in make_dirs: one component, no link followed, in a directory
        // we hold; should it have been swapped meanwhile, the lookup within
        // the root decides.
        match rustix::fs::openat(
            &*dir,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(fd)),
            Err(_) => self.open(path, OFlags::PATH | OFlags::DIRECTORY).map(Some),
        }
    }

    /// The parent directory (created if missing) and the final name of `path`.
    fn parent(&self, path: &Path) -> Result<(Rc<OwnedFd>, PathBuf)> {
        let rel = relative(path);
        let name = PathBuf::from(
            rel.file_name()
                .ok_or_else(|| err("resolve", path)(Errno::EINVAL))?,
        );
        let parent = Path::new("/").join(rel.parent().unwrap_or(Path::new("")));
        if let Some(fd) = self.kept(&parent) {
            return Ok((fd, name));
        }
        let fd = Rc::new(self.mkdir_all(&parent, 0o755)?);
        self.keep_dir(parent, fd.clone());
        Ok((fd, name))
    }

    /// Whether `fd` is the root directory itself: a container path that resolves to
    /// "/" (a symlink to "/" or ".." chains) must not get a mount over the root.
    pub fn is_root(&self, fd: &OwnedFd) -> bool {
        let id = |fd: &OwnedFd| {
            nix::sys::stat::fstat(fd.as_raw_fd())
                .ok()
                .map(|st| (st.st_dev, st.st_ino))
        };
        let root = *self.id.get_or_init(|| id(&self.fd));
        matches!((id(fd), root), (Some(a), Some(b)) if a == b)
    }

    /// Makes sure a mount point of the right kind exists and returns an O_PATH fd of
    /// it. An existing node of the other kind is an error (mounting a directory over
    /// a file fails in confusing ways later).
    pub fn mount_point(&self, path: &Path, kind: Kind) -> Result<OwnedFd> {
        match kind {
            Kind::Dir => self.mkdir_all(path, 0o755),
            Kind::File => {
                match self.path_fd(path) {
                    Ok(fd) => {
                        let st =
                            nix::sys::stat::fstat(fd.as_raw_fd()).map_err(err("stat", path))?;
                        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
                            return Err(err("mount a file on", path)(Errno::EISDIR));
                        }
                        return Ok(fd);
                    }
                    Err(e) if e.errno == Errno::ENOENT => {}
                    Err(e) => return Err(e),
                }
                let (dir, name) = self.parent(path)?;
                let created = rustix::fs::openat(
                    &dir,
                    &name,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    rustix::fs::Mode::from_bits_truncate(0o644),
                );
                match created.map_err(errno) {
                    Ok(fd) => {
                        drop(fd);
                        self.own(&dir, &name, path)?;
                    }
                    Err(Errno::EEXIST) => {}
                    Err(e) => return Err(err("create", path)(e)),
                }
                self.path_fd(path)
            }
        }
    }

    /// Creates (or truncates) a regular file and writes `contents`. Refuses to
    /// follow a symlink in the last component, so a planted link cannot redirect the
    /// write to another file.
    pub fn write_file(&self, path: &Path, contents: &[u8], mode: u32) -> Result<()> {
        let (dir, name) = self.parent(path)?;
        let create = |how: OFlags| {
            rustix::fs::openat(
                &dir,
                &name,
                OFlags::CREATE | how | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                rustix::fs::Mode::from_bits_truncate(mode),
            )
            .map_err(errno)
        };
        let (fd, made) = match create(OFlags::EXCL) {
            Ok(fd) => (Ok(fd), true),
            Err(Errno::EEXIST) => (create(OFlags::TRUNC), false),
            Err(e) => (Err(e), false),
        };
        let fd = fd.map_err(err("create", path))?;
        let mut off = 0;
        while off < contents.len() {
            match nix::unistd::write(&fd, &contents[off..]) {
                Ok(n) => off += n,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(err("write", path)(e)),
            }
        }
        self.own(&dir, &name, path)?;
        // A file that was there keeps its mode, the umask may have masked
        // bits at creation, and a chown clears set-id bits.
        if made && !self.masked(mode) && (self.owner.is_none() || mode & 0o6000 == 0) {
            return Ok(());
        }
        nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode))
            .map_err(err("chmod", path))
    }

    /// Reads a small file, if it exists.
    pub fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        let fd = match self.open(path, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK) {
            Ok(fd) => fd,
            Err(e) if e.errno == Errno::ENOENT || e.errno == Errno::ELOOP => return Ok(None),
            Err(e) => return Err(e),
        };
        let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(err("stat", path))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Ok(None);
        }
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match nix::unistd::read(fd.as_raw_fd(), &mut buf) {
                Ok(0) => return Ok(Some(out)),
                Ok(n) if out.len() < 1 << 16 => out.extend_from_slice(&buf[..n]),
                Ok(_) => return Ok(Some(out)),
                Err(Errno::EINTR) => {}
                Err(e) => return Err(err("read", path)(e)),
            }
        }
    }

    /// Creates a device node, FIFO or socket placeholder (no-op if it exists).
    pub fn mknod(&self, path: &Path, kind: SFlag, mode: u32, dev: libc::dev_t) -> Result<()> {
        let (dir, name) = self.parent(path)?;
        match mknodat(
            Some(dir.as_raw_fd()),
            &name,
            kind,
            Mode::from_bits_truncate(mode),
            dev,
        ) {
            Ok(()) => {
                self.own(&dir, &name, path)?;
                if !self.masked(mode) {
                    return Ok(());
                }
            }
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(err("mknod", path)(e)),
        }
        // mknod's mode is subject to the umask too, and an existing node
        // keeps its own.
        nix::sys::stat::fchmodat(
            Some(dir.as_raw_fd()),
            &name,
            Mode::from_bits_truncate(mode),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(err("chmod", path))
    }

    pub fn symlink(&self, path: &Path, target: &str) -> Result<()> {
        let (dir, name) = self.parent(path)?;
        match symlinkat(target, Some(dir.as_raw_fd()), &name) {
            Ok(()) => self.own(&dir, &name, path),
            Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(err("symlink", path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root_of(dir: &Path) -> Root {
        Root::open_dir(dir).unwrap()
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nixrun-root-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Directories made while `keep_parents` is on are made in the kept
    /// parent (no lookup) with exactly their mode and owner, an existing one
    /// still gets its mode, and what follows in them finds them kept; a mount
    /// step (keep off) forgets them all.
    #[test]
    fn kept_directories_get_their_modes_and_hold_what_follows() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempdir("kept");
        std::fs::create_dir(dir.join("run")).unwrap();
        let owner = nix::unistd::geteuid()
            .is_root()
            .then_some((100_000, 100_005));
        let root = root_of(&dir).with_owner(owner);
        root.keep_parents(true);
        root.mkdir_mode(Path::new("/run/host"), 0o755).unwrap();
        assert!(root.kept(Path::new("/run/host")).is_some());
        // Made in the kept /run/host; 0o777 loses bits to any umask but 0.
        root.mkdir_mode(Path::new("/run/host/inaccessible"), 0o777)
            .unwrap();
        root.mkdir_mode(Path::new("/run/host/inaccessible/dir"), 0)
            .unwrap();
        root.write_file(Path::new("/run/host/inaccessible/reg"), b"", 0)
            .unwrap();
        // There already: its mode is set all the same.
        root.mkdir_mode(Path::new("/run/host/inaccessible/dir"), 0o700)
            .unwrap();
        let meta = |p: &str| std::fs::symlink_metadata(dir.join(p)).unwrap();
        assert_eq!(
            meta("run/host/inaccessible").permissions().mode() & 0o7777,
            0o777
        );
        assert_eq!(
            meta("run/host/inaccessible/dir").permissions().mode() & 0o7777,
            0o700
        );
        assert!(meta("run/host/inaccessible/reg").is_file());
        if let Some((uid, gid)) = owner {
            for p in [
                "run/host",
                "run/host/inaccessible",
                "run/host/inaccessible/dir",
            ] {
                assert_eq!((meta(p).uid(), meta(p).gid()), (uid, gid), "{p}");
            }
        }
        root.keep_parents(false);
        assert!(root.parents.borrow().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn symlinks_cannot_leave_the_root() {
        let outside = tempdir("outside");
        let dir = tempdir("inside");
        // A link to an absolute host path, and one climbing out with "..".
        symlink(&outside, dir.join("abs")).unwrap();
        symlink("../../../../../../..", dir.join("up")).unwrap();
        let root = root_of(&dir);

        // The absolute link dangles inside the root: refused, not followed out.
        let e = root.mkdir_all(Path::new("/abs/made"), 0o755).unwrap_err();
        assert_eq!(e.errno, Errno::ENOENT);
        assert!(
            !outside.join("made").exists(),
            "mkdir followed a link out of the root"
        );
        // Once its target exists inside the root, it resolves there.
        std::fs::create_dir_all(dir.join(outside.strip_prefix("/").unwrap())).unwrap();
        root.mkdir_all(Path::new("/abs/made"), 0o755).unwrap();
        assert!(
            !outside.join("made").exists(),
            "mkdir followed a link out of the root"
        );
        assert!(dir
            .join(outside.strip_prefix("/").unwrap())
            .join("made")
            .is_dir());
        // ".." stops at the root.
        root.write_file(Path::new("/up/tmp/file"), b"x", 0o644)
            .unwrap();
        assert!(dir.join("tmp/file").is_file());
        std::fs::remove_dir_all(&outside).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_removed_root_is_an_error_not_a_loop() {
        let dir = tempdir("removed");
        let root = root_of(&dir);
        std::fs::remove_dir(&dir).unwrap();
        let e = root.mkdir_all(Path::new("/a/b"), 0o755).unwrap_err();
        assert_eq!(e.errno, Errno::ENOENT, "{e}");
    }

    #[test]
    fn write_file_does_not_follow_a_final_symlink() {
        let dir = tempdir("final");
        std::fs::create_dir(dir.join("etc")).unwrap();
        std::fs::write(dir.join("victim"), b"keep").unwrap();
        symlink("/victim", dir.join("etc/machine-id")).unwrap();
        let root = root_of(&dir);
        let e = root
            .write_file(Path::new("/etc/machine-id"), b"x", 0o444)
            .unwrap_err();
        assert_eq!(e.errno, Errno::ELOOP);
        assert_eq!(std::fs::read(dir.join("victim")).unwrap(), b"keep");
        assert_eq!(root.read_file(Path::new("/etc/machine-id")).unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn what_is_created_belongs_to_the_owner() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            return; // chown to another uid needs root; the integration tests cover it too
        }
        let dir = tempdir("owner");
        std::fs::create_dir(dir.join("existing")).unwrap();
        let root = root_of(&dir).with_owner(Some((100_000, 100_005)));
        root.mkdir_all(Path::new("/existing/a/b"), 0o755).unwrap();
        root.mount_point(Path::new("/f"), Kind::File).unwrap();
        root.write_file(Path::new("/w"), b"x", 0o4755).unwrap();
        root.symlink(Path::new("/l"), "/nowhere").unwrap();
        let owner = |p: &str| {
            let m = std::fs::symlink_metadata(dir.join(p)).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(
            owner("existing"),
            (0, 0),
            "an existing directory stays as it was"
        );
        for p in ["existing/a", "existing/a/b", "f", "w", "l"] {
            assert_eq!(owner(p), (100_000, 100_005), "{p}");
        }
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("w"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o4755, "chown must not cost the set-uid bit");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mount_points_of_the_wrong_kind_are_reported() {
        let dir = tempdir("kind");
        let root = root_of(&dir);
        root.mount_point(Path::new("/a/file"), Kind::File).unwrap();
        assert!(dir.join("a/file").is_file());
        let e = root
            .mount_point(Path::new("/a/file/sub"), Kind::Dir)
            .err()
            .unwrap();
        assert_eq!(e.errno, Errno::ENOTDIR);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
