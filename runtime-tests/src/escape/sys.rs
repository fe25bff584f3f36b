//! Thin wrappers over the system calls the attacks make, plus the scratch
//! directory they mount things on.
//!
//! Everything returns `Result<_, Errno>` so that the attacks can classify the
//! exact errno: the errno is the evidence (EPERM from seccomp or a missing
//! capability, EROFS from a read-only mount, EINVAL from code that runs only after
//! the permission check).  libc lacks several of the newer mount-API constants and
//! structs for linux-gnu, so their kernel UAPI values are spelled out here.

use std::ffi::{CStr, CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;

pub type SysResult<T> = Result<T, Errno>;

// include/uapi/linux/mount.h
pub const OPEN_TREE_CLONE: libc::c_uint = 1;
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;

/// `struct mount_attr` (MOUNT_ATTR_SIZE_VER0 = 32 bytes).
#[repr(C)]
#[derive(Default)]
pub struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

// statfs f_type magics the attacks compare against (include/uapi/linux/magic.h).
pub const PROC_SUPER_MAGIC: i64 = 0x9fa0;
pub const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// A path as a C string.  Paths here are ours or come from the kernel, so an
/// interior NUL is a bug, not an input error.
pub fn c(path: impl AsRef<OsStr>) -> CString {
    CString::new(path.as_ref().as_bytes()).expect("path with a NUL byte")
}

/// -1 → the errno; anything else → the value.
pub fn ret(rc: libc::c_long) -> SysResult<libc::c_long> {
    if rc == -1 {
        Err(Errno::last())
    } else {
        Ok(rc)
    }
}

pub fn ret_int(rc: libc::c_int) -> SysResult<libc::c_int> {
    ret(rc as libc::c_long).map(|v| v as libc::c_int)
}

/// Wraps a raw fd the kernel just returned so that it is closed on every path.
pub fn own(fd: libc::c_long) -> OwnedFd {
    // SAFETY: called only with a fresh fd returned by a successful syscall,
    // which nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

pub fn io_errno(e: &io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

pub fn mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> SysResult<()> {
    let source = source.map(c);
    let fstype = fstype.map(c);
    let data = data.map(c);
    let target = c(target);
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is a valid NUL-terminated string or NULL, alive for
    // the duration of the call.
    let rc = unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    ret_int(rc).map(drop)
}

pub fn umount(target: &Path, flags: libc::c_int) -> SysResult<()> {
    let target = c(target);
    // SAFETY: valid C string.
    ret_int(unsafe { libc::umount2(target.as_ptr(), flags) }).map(drop)
}

pub fn open(path: impl AsRef<Path>, flags: libc::c_int) -> SysResult<OwnedFd> {
    openat(libc::AT_FDCWD, path, flags, 0)
}

pub fn openat(
    dirfd: RawFd,
    path: impl AsRef<Path>,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> SysResult<OwnedFd> {
    let path = c(path.as_ref());
    // SAFETY: valid C string; the mode is read only with O_CREAT.
    let fd = unsafe { libc::openat(dirfd, path.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    ret_int(fd).map(|fd| own(fd as libc::c_long))
}

/// Up to `max` bytes from the start of the file.
pub fn read_some(fd: &OwnedFd, max: usize) -> SysResult<Vec<u8>> {
    let mut buf = vec![0u8; max];
    // SAFETY: the buffer is valid for `max` bytes.
    let n = unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), max, 0) };
    let n = ret(n as libc::c_long)? as usize;
    buf.truncate(n);
    Ok(buf)
}

pub fn write_all(fd: &OwnedFd, data: &[u8]) -> SysResult<()> {
    // SAFETY: the buffer is valid for its length.
    let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    let n = ret(n as libc::c_long)? as usize;
    if n == data.len() {
        Ok(())
    } else {
        Err(Errno::EIO)
    }
}

pub fn unlink(path: &Path) -> SysResult<()> {
    let p = c(path);
    // SAFETY: valid C string.
    ret_int(unsafe { libc::unlink(p.as_ptr()) }).map(drop)
}

fn statvfs_raw(path: &Path) -> SysResult<libc::statvfs> {
    let p = c(path);
    // SAFETY: zeroed plain-data struct filled in by the kernel.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    ret_int(unsafe { libc::statvfs(p.as_ptr(), &mut st) })?;
    Ok(st)
}

pub fn fstatvfs_rdonly(fd: &OwnedFd) -> SysResult<bool> {
    // SAFETY: zeroed plain-data struct filled in by the kernel.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out pointer.
    ret_int(unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st.f_flag & libc::ST_RDONLY != 0)
}

pub fn is_read_only(path: &Path) -> SysResult<bool> {
    Ok(statvfs_raw(path)?.f_flag & libc::ST_RDONLY != 0)
}

/// The per-mount flags of the mount holding `path`, as MS_* flags, minus
/// MS_RDONLY: what a bind remount must pass again to change only read-only-ness
/// (a bind remount replaces all of nosuid/nodev/noexec at once, and the atime
/// flags are passed along so nothing else changes either).
pub fn keep_flags(path: &Path) -> SysResult<libc::c_ulong> {
    let f = statvfs_raw(path)?.f_flag;
    let pairs: [(libc::c_ulong, libc::c_ulong); 6] = [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ];
    Ok(pairs
        .iter()
        .filter(|(st, _)| f & st != 0)
        .fold(0, |acc, (_, ms)| acc | ms))
}

pub fn fs_magic_fd(fd: &OwnedFd) -> SysResult<i64> {
    // SAFETY: zeroed plain-data struct filled in by the kernel.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out pointer.
    ret_int(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st.f_type as i64)
}

pub fn fs_magic(path: &Path) -> SysResult<i64> {
    let p = c(path);
    // SAFETY: zeroed plain-data struct filled in by the kernel.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    ret_int(unsafe { libc::statfs(p.as_ptr(), &mut st) })?;
    Ok(st.f_type as i64)
}

/// Device and inode: what identifies a file independent of the path used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
}

impl FileId {
    pub fn same_file(&self, other: &FileId) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

pub fn stat_id(path: impl AsRef<Path>) -> SysResult<FileId> {
    let p = c(path.as_ref());
    // SAFETY: zeroed plain-data struct filled in by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    ret_int(unsafe { libc::stat(p.as_ptr(), &mut st) })?;
    Ok(FileId {
        dev: st.st_dev,
        ino: st.st_ino,
        mode: st.st_mode,
    })
}

pub fn fstat_id(fd: &OwnedFd) -> SysResult<FileId> {
    // SAFETY: zeroed plain-data struct filled in by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out pointer.
    ret_int(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(FileId {
        dev: st.st_dev,
        ino: st.st_ino,
        mode: st.st_mode,
    })
}

/// Whether `path` is the root of a mount (statx STATX_ATTR_MOUNT_ROOT, Linux
/// 5.8+; older kernels fall back to /proc/self/mountinfo).
pub fn is_mount_point(path: &Path) -> SysResult<bool> {
    let p = c(path);
    // SAFETY: zeroed plain-data struct filled in by the kernel.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out pointer.
    ret_int(unsafe {
        libc::statx(
            libc::AT_FDCWD,
            p.as_ptr(),
            0,
            libc::STATX_BASIC_STATS,
            &mut stx,
        )
    })?;
    let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if stx.stx_attributes_mask & bit != 0 {
        return Ok(stx.stx_attributes & bit != 0);
    }
    let text = fs::read_to_string("/proc/self/mountinfo").map_err(|e| io_errno(&e))?;
    let want = path.to_string_lossy();
    Ok(parse_mountinfo(&text).iter().any(|m| m.mount_point == want))
}

/// One line of /proc/self/mountinfo, the fields the attacks use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The path inside the filesystem that is mounted (field 4).
    pub root: String,
    pub mount_point: String,
    pub options: String,
    /// Optional fields such as `shared:5` or `master:1`.
    pub tags: Vec<String>,
    pub fstype: String,
    pub super_options: String,
}

/// Parses mountinfo text; lines that do not fit the format are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            if l.len() < 6 || r.len() < 3 {
                return None;
            }
            Some(MountInfo {
                root: unescape_octal(l[3]),
                mount_point: unescape_octal(l[4]),
                options: l[5].to_string(),
                tags: l[6..].iter().map(|s| s.to_string()).collect(),
                fstype: r[0].to_string(),
                super_options: r[2].to_string(),
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\NNN` (octal).
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).ok();
            if let Some(v) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn mountinfo() -> SysResult<Vec<MountInfo>> {
    let text = fs::read_to_string("/proc/self/mountinfo").map_err(|e| io_errno(&e))?;
    Ok(parse_mountinfo(&text))
}

/// open_tree(OPEN_TREE_CLONE): a detached copy of the mount at `path`, which
/// disappears when the fd is closed.
pub fn open_tree_clone(path: &Path) -> SysResult<OwnedFd> {
    let p = c(path);
    // SAFETY: valid C string; returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            p.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    ret(fd).map(own)
}

pub fn mount_setattr(fd: &OwnedFd, attr: &MountAttr) -> SysResult<()> {
    let empty: &CStr = c"";
    // SAFETY: valid fd, empty path with AT_EMPTY_PATH, attr valid for its size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    ret(rc).map(drop)
}

/// Which step of the new mount API failed, and how.
#[derive(Debug, PartialEq, Eq)]
pub struct FsMountError {
    pub step: &'static str,
    pub errno: Errno,
}

/// A fresh, detached instance of `fstype` through fsopen/fsconfig/fsmount (the
/// new mount API, which a seccomp filter written only for mount(2) misses).  It
/// is never attached anywhere and vanishes when the fd is closed.
pub fn fsmount_fresh(fstype: &str) -> Result<OwnedFd, FsMountError> {
    let name = c(fstype);
    let err = |step| move |errno| FsMountError { step, errno };
    // SAFETY: valid C string; returns a new fd or -1.
    let fs = ret(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) })
        .map(own)
        .map_err(err("fsopen"))?;
    // SAFETY: FSCONFIG_CMD_CREATE takes no key, value or aux.
    ret(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })
    .map_err(err("fsconfig"))?;
    let attrs = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    // SAFETY: valid fs context fd; returns a new fd or -1.
    ret(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })
        .map(own)
        .map_err(err("fsmount"))
}

/// All-digit names in /proc: the processes we can see.
pub fn pids() -> SysResult<Vec<i32>> {
    let mut pids: Vec<i32> = fs::read_dir("/proc")
        .map_err(|e| io_errno(&e))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

pub fn read_link(path: impl AsRef<Path>) -> SysResult<String> {
    fs::read_link(path)
        .map(|p| p.to_string_lossy().into_owned())
        .map_err(|e| io_errno(&e))
}

/// The value of `Field:` in a /proc/PID/status-like text.
pub fn status_field<'a>(text: &'a str, field: &str) -> Option<&'a str> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == field).then(|| v.trim())
    })
}

/// Whether capability `cap` is in our effective set (CapEff in /proc/self/status).
pub fn has_effective_cap(cap: u32) -> Option<bool> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let hex = status_field(&status, "CapEff")?;
    let bits = u64::from_str_radix(hex, 16).ok()?;
    Some(bits & (1u64 << cap) != 0)
}

/// Set in the attack's child process once it runs in a mount namespace of its
/// own whose mounts propagate nowhere: mounting over an existing directory is
/// then invisible to the rest of the container, and everything mounted vanishes
/// with the process even if an unmount were missed.
static PRIVATE_MOUNTS: AtomicBool = AtomicBool::new(false);

/// unshare(CLONE_NEWNS) and make every mount in the copy private.  Returns
/// whether that worked; if not, attacks mount in the container's namespace and
/// undo their mounts themselves.
pub fn enter_private_mount_ns() -> SysResult<()> {
    // SAFETY: plain flag argument.
    ret_int(unsafe { libc::unshare(libc::CLONE_NEWNS) })?;
    // Without this the copy's mounts stay in the same peer groups as the
    // originals and our mounts would propagate back out.
    mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    PRIVATE_MOUNTS.store(true, Ordering::SeqCst);
    Ok(())
}

pub fn private_mounts() -> bool {
    PRIVATE_MOUNTS.load(Ordering::SeqCst)
}

/// Where an attack mounts and creates things, cleaned up on drop.
///
/// In a private mount namespace it is a tmpfs over an existing directory (the
/// guest never sees it); otherwise a new directory under the first writable
/// place, with a tmpfs on it if mounting is allowed.  The tmpfs is mounted
/// without `nodev` so that device nodes in it are judged by the device policy,
/// not by a mount flag.  Cleanup never recurses: only the entries this struct
/// created are removed, so a mount left behind by a failed unmount can never
/// lead to deleting what is under it.
pub struct Scratch {
    dir: PathBuf,
    kind: ScratchKind,
    created_dir: bool,
    entries: Vec<PathBuf>,
}

#[derive(Debug, PartialEq, Eq)]
enum ScratchKind {
    /// Our own tmpfs: anything can be created in it.
    Tmpfs,
    /// A directory we created but could not mount on.
    Plain,
    /// An existing directory in a private mount namespace, tmpfs refused:
    /// mounts go directly onto it, nothing can be created.
    Bare,
}

const BARE_CANDIDATES: &[&str] = &[
    "/tmp", "/mnt", "/run", "/var/tmp", "/media", "/srv", "/opt", "/home", "/root", "/dev",
];
const WRITABLE_CANDIDATES: &[&str] = &["/tmp", "/run", "/var/tmp", "/dev/shm", "/dev", "/"];

impl Scratch {
    pub fn new() -> Result<Scratch, String> {
        let tmpfs = |dir: &Path| {
            mount(
                Some("nixrun-probe"),
                dir,
                Some("tmpfs"),
                libc::MS_NOSUID,
                Some("mode=0700,size=4m"),
            )
        };
        if private_mounts() {
            let base = BARE_CANDIDATES
                .iter()
                .map(Path::new)
                .find(|p| p.is_dir())
                .ok_or("no directory to mount a scratch tmpfs on")?;
            let kind = match tmpfs(base) {
                Ok(()) => ScratchKind::Tmpfs,
                Err(_) => ScratchKind::Bare,
            };
            return Ok(Scratch {
                dir: base.to_path_buf(),
                kind,
                created_dir: false,
                entries: Vec::new(),
            });
        }
        let name = format!(".nixrun-probe-escape.{}", std::process::id());
        for base in WRITABLE_CANDIDATES {
            let dir = Path::new(base).join(&name);
            let p = c(&dir);
            // SAFETY: valid C string.
            if unsafe { libc::mkdir(p.as_ptr(), 0o700) } != 0 {
                continue;
            }
            let kind = match tmpfs(&dir) {
                Ok(()) => ScratchKind::Tmpfs,
                Err(_) => ScratchKind::Plain,
            };
            return Ok(Scratch {
                dir,
                kind,
                created_dir: true,
                entries: Vec::new(),
            });
        }
        Err(format!(
            "no writable directory for a scratch dir (tried {})",
            WRITABLE_CANDIDATES.join(" ")
        ))
    }

    /// A directory to mount on.  For a bare scratch this is the scratch itself
    /// (each attack unmounts before mounting the next thing).
    pub fn mount_point(&mut self, name: &str) -> Result<PathBuf, String> {
        if self.kind == ScratchKind::Bare {
            return Ok(self.dir.clone());
        }
        let path = self.dir.join(name);
        let p = c(&path);
        // SAFETY: valid C string.
        if unsafe { libc::mkdir(p.as_ptr(), 0o700) } != 0 {
            let e = Errno::last();
            if e != Errno::EEXIST {
                return Err(format!("mkdir {}: {e:?}", path.display()));
            }
        } else {
            self.entries.push(path.clone());
        }
        Ok(path)
    }

    /// A path for a file the caller creates (and should remove itself; it is
    /// removed again on drop in case it did not).  None for a bare scratch.
    pub fn file(&mut self, name: &str) -> Option<PathBuf> {
        if self.kind == ScratchKind::Bare {
            return None;
        }
        let path = self.dir.join(name);
        self.entries.push(path.clone());
        Some(path)
    }

    /// Whether device nodes created here are judged by the device policy alone
    /// (our own tmpfs has no `nodev`).
    pub fn allows_devices(&self) -> bool {
        self.kind == ScratchKind::Tmpfs
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Children first: they are empty directories or files we made.
        for path in self.entries.iter().rev() {
            let p = c(path);
            // SAFETY: valid C strings; failures are expected (already removed).
            unsafe {
                if libc::rmdir(p.as_ptr()) != 0 {
                    libc::unlink(p.as_ptr());
                }
            }
        }
        if self.kind == ScratchKind::Tmpfs {
            let _ = umount(&self.dir, libc::MNT_DETACH);
        }
        if self.created_dir {
            let p = c(&self.dir);
            // SAFETY: valid C string; rmdir only removes an empty directory.
            unsafe { libc::rmdir(p.as_ptr()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse() {
        let text = "\
36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
25 1 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:4 - cgroup2 cgroup2 rw,nsdelegate
30 25 0:26 /machine.slice/x /sys/fs/cgroup/my\\040dir rw - cgroup cgroup rw,memory
garbage line
";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].root, "/mnt1");
        assert_eq!(m[0].mount_point, "/mnt2");
        assert_eq!(m[0].tags, vec!["master:1".to_string()]);
        assert_eq!(m[0].fstype, "ext3");
        assert_eq!(m[1].fstype, "cgroup2");
        assert_eq!(m[1].options, "ro,nosuid,nodev,noexec");
        assert_eq!(m[2].mount_point, "/sys/fs/cgroup/my dir");
        assert_eq!(m[2].super_options, "rw,memory");
        assert!(m[2].tags.is_empty());
    }

    #[test]
    fn octal_escapes() {
        assert_eq!(unescape_octal("a\\040b"), "a b");
        assert_eq!(unescape_octal("a\\134b"), "a\\b");
        assert_eq!(unescape_octal("trailing\\04"), "trailing\\04");
        assert_eq!(unescape_octal("plain"), "plain");
    }

    #[test]
    fn status_fields() {
        let s = "Name:\tx\nPPid:\t0\nCapEff:\t000001ffffffffff\n";
        assert_eq!(status_field(s, "PPid"), Some("0"));
        assert_eq!(status_field(s, "CapEff"), Some("000001ffffffffff"));
        assert_eq!(status_field(s, "Pid"), None);
    }

    #[test]
    fn file_ids_compare_dev_and_ino() {
        let a = stat_id("/").unwrap();
        let b = stat_id("/.").unwrap();
        assert!(a.same_file(&b));
        assert_eq!(a.mode & libc::S_IFMT, libc::S_IFDIR);
        let proc_ = stat_id("/proc").unwrap();
        assert!(!a.same_file(&proc_));
    }

    #[test]
    fn mount_points_are_recognised() {
        assert!(is_mount_point(Path::new("/")).unwrap());
        assert!(is_mount_point(Path::new("/proc")).unwrap());
        assert!(!is_mount_point(Path::new("/proc/self")).unwrap_or(false));
    }
}
