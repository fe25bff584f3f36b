//! Attacks through device nodes.  CAP_MKNOD lets a root guest create a node
//! for any device number; what must stop it from opening the host's disk is the
//! runtime's device policy (the cgroup device controller or its BPF program).
//!
//! Harmless when they succeed: the disk is opened read-only and 512 bytes are
//! read; the character devices are opened but never read or written; every node
//! is unlinked again (and lives in the attack's own scratch tmpfs).

use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::sys::{self, Scratch};
use super::{Findings, Outcome};

/// A block device of the host: the one holding the container's root, else the
/// one holding /nix/store, else the first disk in /proc/partitions (which is not
/// namespaced).
fn host_block_device() -> Result<(u32, u32, String), String> {
    for path in ["/", "/nix/store"] {
        if let Ok(id) = sys::stat_id(path) {
            let (maj, min) = (libc::major(id.dev), libc::minor(id.dev));
            if maj != 0 {
                return Ok((maj, min, format!("the device holding {path}")));
            }
        }
    }
    let text = std::fs::read_to_string("/proc/partitions")
        .map_err(|e| format!("no block device: / and /nix/store are on virtual filesystems and /proc/partitions is unreadable ({:?})", sys::io_errno(&e)))?;
    first_disk(&text).ok_or_else(|| "no block device found in /proc/partitions".to_string())
}

/// The first real disk in /proc/partitions text (loop, ram and zram devices
/// are skipped: they may be empty).
pub fn first_disk(text: &str) -> Option<(u32, u32, String)> {
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() != 4
            || ["loop", "ram", "zram", "sr"]
                .iter()
                .any(|p| f[3].starts_with(p))
        {
            return None;
        }
        Some((
            f[0].parse().ok()?,
            f[1].parse().ok()?,
            format!("/proc/partitions' {}", f[3]),
        ))
    })
}

/// Places to create a node in: our own tmpfs (no `nodev`, so only the device
/// policy decides), then /dev and /tmp as the guest has them.
fn node_paths(scratch: &mut Option<Scratch>, name: &str) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(s) = scratch.as_mut() {
        if s.allows_devices() {
            if let Some(p) = s.file(name) {
                v.push(p);
            }
        }
    }
    let unique = format!(".nixrun-probe-{}-{name}", std::process::id());
    v.push(Path::new("/dev").join(&unique));
    v.push(Path::new("/tmp").join(&unique));
    v
}

enum NodeResult {
    /// mknod itself refused (no CAP_MKNOD, or seccomp).
    MknodRefused(Errno),
    /// The node was made at this path; the open's result.
    Opened(PathBuf, sys::SysResult<std::os::fd::OwnedFd>),
    /// No directory could hold the node.
    NowhereToCreate(Vec<String>),
}

fn make_and_open(
    scratch: &mut Option<Scratch>,
    name: &str,
    kind: libc::mode_t,
    dev: libc::dev_t,
    flags: libc::c_int,
) -> NodeResult {
    let mut tried = Vec::new();
    for path in node_paths(scratch, name) {
        let p = sys::c(&path);
        // SAFETY: valid C string.
        match sys::ret_int(unsafe { libc::mknod(p.as_ptr(), kind | 0o600, dev) }) {
            Ok(_) => {
                let fd = sys::open(&path, flags | libc::O_NOCTTY);
                let _ = sys::unlink(&path);
                return NodeResult::Opened(path, fd);
            }
            Err(Errno::EPERM) => return NodeResult::MknodRefused(Errno::EPERM),
            // Not a place we can create in (read-only, missing, not ours).
            Err(e) => tried.push(format!("{}: {e:?}", path.display())),
        }
    }
    NodeResult::NowhereToCreate(tried)
}

/// `mknod-disk`: a node for the host's disk, opened read-only, 512 bytes read.
pub fn mknod_disk() -> Outcome {
    let (maj, min, which) = match host_block_device() {
        Ok(d) => d,
        Err(e) => return Outcome::Error(e),
    };
    let mut scratch = Scratch::new().ok();
    let dev = libc::makedev(maj, min);
    match make_and_open(&mut scratch, "disk", libc::S_IFBLK, dev, libc::O_RDONLY) {
        NodeResult::MknodRefused(e) => Outcome::Blocked(format!("mknod {maj}:{min}: {e:?}")),
        NodeResult::NowhereToCreate(t) => Outcome::Error(format!(
            "nowhere to create a device node ({})",
            t.join(", ")
        )),
        NodeResult::Opened(path, Err(e)) => Outcome::Blocked(format!(
            "mknod {maj}:{min} ({which}) at {} worked, open: {e:?}",
            path.display()
        )),
        NodeResult::Opened(path, Ok(fd)) => match sys::read_some(&fd, 512) {
            Ok(b) => Outcome::Escaped(format!(
                "read {} bytes of block device {maj}:{min} ({which}) through a node at {}",
                b.len(),
                path.display()
            )),
            Err(e) => Outcome::Blocked(format!("block device {maj}:{min} opened, read: {e:?}")),
        },
    }
}

/// `mknod-char`: /dev/mem (1:1, host physical memory; opened read-only, never
/// read) and /dev/kmsg (1:11, the host's kernel log; opened write-only, never
/// written — a write would forge host log lines and needs no capability).
pub fn mknod_char() -> Outcome {
    let mut f = Findings::default();
    let mut scratch = Scratch::new().ok();
    for (name, maj, min, flags, what) in [
        ("mem", 1, 1, libc::O_RDONLY, "read-only"),
        ("kmsg", 1, 11, libc::O_WRONLY, "write-only"),
    ] {
        let dev = libc::makedev(maj, min);
        match make_and_open(&mut scratch, name, libc::S_IFCHR, dev, flags) {
            NodeResult::MknodRefused(e) => f.blocked(format!("mknod {name} ({maj}:{min}): {e:?}")),
            NodeResult::NowhereToCreate(t) => {
                f.error(format!("nowhere to create {name} ({})", t.join(", ")))
            }
            NodeResult::Opened(_, Ok(_)) => f.escaped(format!(
                "/dev/{name} ({maj}:{min}) made with mknod opens {what} (not used)"
            )),
            // ENXIO/ENODEV: this kernel has no such device at all.
            NodeResult::Opened(_, Err(e @ (Errno::ENXIO | Errno::ENODEV))) => {
                f.blocked(format!("{name} ({maj}:{min}): {e:?} (not in this kernel)"))
            }
            NodeResult::Opened(_, Err(e)) => {
                f.blocked(format!("{name} ({maj}:{min}) made, open: {e:?}"))
            }
        }
    }
    f.outcome()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_disk_skips_virtual_devices() {
        let text = "major minor  #blocks  name\n\n   7        0      1024 loop0\n 254        0  268435456 vda\n 254        1  1000 vda1\n";
        assert_eq!(
            first_disk(text),
            Some((254, 0, "/proc/partitions' vda".to_string()))
        );
        assert_eq!(first_disk("major minor  #blocks  name\n\n"), None);
    }
}
