//! Attacks through the kernel's own filesystems (/proc, /sys) and the root.
//!
//! /proc/sys, /proc/sysrq-trigger and /sys hold host-wide knobs: core_pattern
//! and modprobe name programs the kernel runs as host root, sysrq-trigger can
//! crash or reboot the machine.  A runtime masks or mounts them read-only — and
//! a root guest that may mount can try a fresh, unmasked instance instead.
//!
//! Harmless when they succeed: knobs are opened for writing but never written,
//! except in proc-sys-kernel, which writes back exactly the value it just read;
//! kernel memory and symbols are read a few bytes at a time; fresh mounts are
//! unmounted (and live in a private mount namespace, or are detached mounts
//! that vanish with their fd).

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;

use super::sys::{self, Scratch};
use super::{Findings, Outcome};

/// Host-wide knobs in a procfs, relative to its root: writing either is a known
/// escape (core_pattern runs a program as host root; sysrq-trigger crashes or
/// reboots the host).
const PROC_KNOBS: &[&str] = &["sys/kernel/core_pattern", "sysrq-trigger"];

/// Host-wide knobs in a sysfs, relative to its root, for the detail line.
const SYS_KNOBS: &[&str] = &[
    "kernel/uevent_helper",
    "power/state",
    "kernel/mm/transparent_hugepage/enabled",
];

fn require_procfs() -> Result<(), String> {
    match sys::fs_magic(Path::new("/proc")) {
        Ok(sys::PROC_SUPER_MAGIC) => Ok(()),
        Ok(m) => Err(format!("/proc is not procfs (f_type {m:#x})")),
        Err(e) => Err(format!("/proc is not mounted ({e:?})")),
    }
}

/// Tries O_WRONLY (never writing) on each knob under a fresh mount, through
/// `open(relative path)`; returns the knobs that opened.
fn open_knobs(
    f: &mut Findings,
    how: &str,
    knobs: &[&str],
    open: impl Fn(&str) -> sys::SysResult<OwnedFd>,
) -> Vec<String> {
    let mut opened = Vec::new();
    let mut refused = Vec::new();
    for knob in knobs {
        match open(knob) {
            Ok(fd) => {
                drop(fd);
                opened.push(knob.to_string());
            }
            Err(Errno::ENOENT) => {}
            Err(e) => refused.push(format!("{knob}: {e:?}")),
        }
    }
    if opened.is_empty() && refused.is_empty() {
        f.error(format!("{how}: none of {} exists", knobs.join(", ")));
    } else if opened.is_empty() {
        f.blocked(format!("{how}: mounted, but {}", refused.join(", ")));
    }
    opened
}

/// `proc-mount`: mount a fresh procfs (which has none of the runtime's masks)
/// with mount(2) and with fsopen/fsmount, and see whether its host-wide knobs
/// open for writing.
pub fn proc_mount() -> Outcome {
    let mut f = Findings::default();
    fresh_mount(&mut f, "proc", |f, how, open| {
        let opened = open_knobs(f, how, PROC_KNOBS, open);
        if !opened.is_empty() {
            f.escaped(format!(
                "{how}: fresh procfs mounted; {} open(s) for writing (not written)",
                opened.join(", ")
            ));
        }
    });
    f.outcome()
}

/// `sysfs-mount`: a fresh sysfs; read-write (by statvfs) or a host knob that
/// opens for writing is an escape.
pub fn sysfs_mount() -> Outcome {
    let mut f = Findings::default();
    fresh_mount(&mut f, "sysfs", |f, how, open| {
        let rw = match open(".") {
            Ok(fd) => sys::fstatvfs_rdonly(&fd).map(|ro| !ro).unwrap_or(false),
            Err(_) => false,
        };
        let opened = open_knobs(f, how, SYS_KNOBS, open);
        if rw || !opened.is_empty() {
            let knobs = if opened.is_empty() {
                String::new()
            } else {
                format!("; {} open(s) for writing (not written)", opened.join(", "))
            };
            let state = if rw { "read-write" } else { "read-only" };
            f.escaped(format!("{how}: fresh sysfs mounted {state}{knobs}"));
        }
    });
    f.outcome()
}

type Check<'a> = dyn Fn(&str) -> sys::SysResult<OwnedFd> + 'a;

/// Mounts a fresh `fstype` twice — mount(2) on a scratch dir, and a detached
/// fsmount — and runs `check` on each with a function that opens paths in it.
fn fresh_mount(f: &mut Findings, fstype: &str, check: impl Fn(&mut Findings, &str, &Check)) {
    match Scratch::new() {
        Err(e) => f.error(format!("mount(2): {e}")),
        Ok(mut scratch) => match scratch.mount_point(fstype) {
            Err(e) => f.error(format!("mount(2): {e}")),
            Ok(target) => {
                let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
                match sys::mount(Some(fstype), &target, Some(fstype), flags, None) {
                    Err(e) => f.blocked(format!("mount(2) {fstype}: {e:?}")),
                    Ok(()) => {
                        let open = |rel: &str| {
                            sys::open(target.join(rel), libc::O_WRONLY | libc::O_NOCTTY).or_else(
                                |e| {
                                    // "." is a directory: open it for statvfs.
                                    if rel == "." {
                                        sys::open(&target, libc::O_RDONLY | libc::O_DIRECTORY)
                                    } else {
                                        Err(e)
                                    }
                                },
                            )
                        };
                        check(f, "mount(2)", &open);
                        if let Err(e) = sys::umount(&target, libc::MNT_DETACH) {
                            f.error(format!("could not unmount {}: {e:?}", target.display()));
                        }
                    }
                }
            }
        },
    }
    match sys::fsmount_fresh(fstype) {
        Err(e) => f.blocked(format!("{}({fstype}): {:?}", e.step, e.errno)),
        Ok(mfd) => {
            let open = |rel: &str| {
                if rel == "." {
                    sys::openat(mfd.as_raw_fd(), ".", libc::O_RDONLY | libc::O_DIRECTORY, 0)
                } else {
                    sys::openat(mfd.as_raw_fd(), rel, libc::O_WRONLY | libc::O_NOCTTY, 0)
                }
            };
            check(f, "fsmount", &open);
        }
    }
}

/// `proc-sysrq`: /proc/sysrq-trigger opened for writing (never written).
pub fn proc_sysrq() -> Outcome {
    if let Err(e) = require_procfs() {
        return Outcome::Error(e);
    }
    match sys::open("/proc/sysrq-trigger", libc::O_WRONLY) {
        Ok(fd) => match sys::fs_magic_fd(&fd) {
            Ok(sys::PROC_SUPER_MAGIC) => {
                Outcome::Escaped("/proc/sysrq-trigger opens for writing (not written)".to_string())
            }
            Ok(m) => Outcome::Blocked(format!(
                "opens, but it is a mask (f_type {m:#x}), not procfs"
            )),
            Err(e) => Outcome::Error(format!("fstatfs: {e:?}")),
        },
        Err(Errno::ENOENT) if !Path::new("/proc/sys/kernel/sysrq").exists() => Outcome::Blocked(
            "absent: this kernel has no sysrq (no /proc/sys/kernel/sysrq either)".to_string(),
        ),
        Err(e) => Outcome::Blocked(format!("{e:?}")),
    }
}

/// Non-namespaced sysctls whose write-back proves the guest can set host-wide
/// kernel behaviour; the first three name programs run as host root.
const SYSCTLS: &[&str] = &[
    "/proc/sys/kernel/core_pattern",
    "/proc/sys/kernel/modprobe",
    "/proc/sys/kernel/poweroff_cmd",
    "/proc/sys/kernel/panic",
];

/// `proc-sys-kernel`: read each knob and write the same value back.
pub fn proc_sys_kernel() -> Outcome {
    if let Err(e) = require_procfs() {
        return Outcome::Error(e);
    }
    let mut f = Findings::default();
    let mut present = 0;
    for knob in SYSCTLS {
        let short = knob.trim_start_matches("/proc/sys/");
        let value = match fs::read(knob) {
            Ok(v) => v,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                present += 1;
                f.blocked(format!("{short}: read {:?}", sys::io_errno(&e)));
                continue;
            }
        };
        present += 1;
        let fd = match sys::open(knob, libc::O_WRONLY) {
            Ok(fd) => fd,
            Err(e) => {
                f.blocked(format!("{short}: {e:?}"));
                continue;
            }
        };
        if sys::fs_magic_fd(&fd) != Ok(sys::PROC_SUPER_MAGIC) {
            f.blocked(format!("{short}: opens, but it is a mask, not procfs"));
            continue;
        }
        // Writing back what was just read leaves the knob as it was.
        match sys::write_all(&fd, &value) {
            Ok(()) => f.escaped(format!(
                "{short}: wrote back its own value {:?}",
                String::from_utf8_lossy(&value).trim_end()
            )),
            Err(e @ (Errno::EPERM | Errno::EACCES | Errno::EROFS)) => {
                f.blocked(format!("{short}: opens, write {e:?}"))
            }
            Err(e) => f.error(format!("{short}: write-back failed oddly: {e:?}")),
        }
    }
    if present == 0 {
        return Outcome::Error("none of the knobs exists under /proc/sys/kernel".to_string());
    }
    f.outcome()
}

/// `proc-kcore`: host kernel memory (/proc/kcore, needs CAP_SYS_RAWIO) and
/// kernel addresses (/proc/kallsyms, real values only with CAP_SYSLOG or a lax
/// kptr_restrict): either defeats the kernel's own protections.
pub fn proc_kcore() -> Outcome {
    if let Err(e) = require_procfs() {
        return Outcome::Error(e);
    }
    let mut f = Findings::default();
    match sys::open("/proc/kcore", libc::O_RDONLY) {
        Err(Errno::ENOENT) => f.blocked("kcore: absent (kernel without /proc/kcore)"),
        Err(e) => f.blocked(format!("kcore: {e:?}")),
        Ok(fd) => {
            let on_proc = sys::fs_magic_fd(&fd) == Ok(sys::PROC_SUPER_MAGIC);
            match sys::read_some(&fd, 4) {
                Ok(b) if on_proc && b.starts_with(b"\x7fELF") => {
                    f.escaped("kcore: reads kernel memory (ELF header)")
                }
                Ok(b) if b.is_empty() => f.blocked("kcore: empty (masked)"),
                Ok(_) if !on_proc => f.blocked("kcore: a mask, not procfs"),
                Ok(_) => f.blocked("kcore: no ELF header"),
                Err(e) => f.blocked(format!("kcore: read {e:?}")),
            }
        }
    }
    match sys::open("/proc/kallsyms", libc::O_RDONLY) {
        Err(Errno::ENOENT) => f.blocked("kallsyms: absent"),
        Err(e) => f.blocked(format!("kallsyms: {e:?}")),
        Ok(fd) => {
            let on_proc = sys::fs_magic_fd(&fd) == Ok(sys::PROC_SUPER_MAGIC);
            match sys::read_some(&fd, 4096) {
                Err(e) => f.blocked(format!("kallsyms: read {e:?}")),
                Ok(b) if b.is_empty() => f.blocked("kallsyms: empty (masked)"),
                Ok(_) if !on_proc => f.blocked("kallsyms: a mask, not procfs"),
                Ok(b) => match kallsyms_leak(&String::from_utf8_lossy(&b)) {
                    Some(l) => f.escaped(format!("kallsyms shows kernel addresses ({l})")),
                    None => f.blocked("kallsyms: addresses zeroed"),
                },
            }
        }
    }
    f.outcome()
}

/// The first kallsyms line with a non-zero address, if any.
pub fn kallsyms_leak(text: &str) -> Option<String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .find(|l| {
            l.split_whitespace()
                .next()
                .and_then(|a| u64::from_str_radix(a, 16).ok())
                .is_some_and(|a| a != 0)
        })
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// `chroot-breakout`: the classic escape from a chroot(2)-only jail: chroot into
/// a subdirectory while the cwd stays outside it, climb `..` from the cwd, and
/// chroot there.  A runtime that pivot_roots into a mount namespace of its own
/// leaves nothing above the container root to climb to.
///
/// Harmless: it only looks (stat and a directory listing), and puts the root and
/// cwd back before returning (the process is the attack's own child anyway).
pub fn chroot_breakout() -> Outcome {
    let root = match sys::stat_id("/") {
        Ok(r) => r,
        Err(e) => return Outcome::Error(format!("stat /: {e:?}")),
    };
    let mut scratch = match Scratch::new() {
        Ok(s) => s,
        Err(e) => return Outcome::Error(e),
    };
    let jail = match scratch.mount_point("jail") {
        Ok(j) => j,
        Err(e) => return Outcome::Error(e),
    };
    let old_root = match sys::open("/", libc::O_RDONLY | libc::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(e) => return Outcome::Error(format!("open /: {e:?}")),
    };
    let old_cwd = std::env::current_dir().ok();
    // Start from the container root so that the climb measures the root, not
    // wherever the probe happened to be started.
    // SAFETY: valid fd.
    unsafe { libc::fchdir(old_root.as_raw_fd()) };
    let jail_c = sys::c(&jail);
    // SAFETY: valid C string.
    if let Err(e) = sys::ret_int(unsafe { libc::chroot(jail_c.as_ptr()) }) {
        restore_cwd(old_cwd.as_deref());
        return Outcome::Blocked(format!("chroot: {e:?}"));
    }
    for _ in 0..64 {
        // SAFETY: constant C string.
        unsafe { libc::chdir(c"..".as_ptr()) };
    }
    // SAFETY: constant C string.
    let escaped_root = sys::ret_int(unsafe { libc::chroot(c".".as_ptr()) });
    let top = sys::stat_id("/");
    let listing = list_dir("/");
    // Back to the container root: fchdir to the saved fd, chroot there.
    // SAFETY: valid fd and constant C string.
    let restored =
        unsafe { libc::fchdir(old_root.as_raw_fd()) == 0 && libc::chroot(c".".as_ptr()) == 0 };
    restore_cwd(old_cwd.as_deref());
    let restored = if restored {
        ""
    } else {
        " (could not restore the root)"
    };
    match (escaped_root, top) {
        (Err(e), _) => Outcome::Blocked(format!("second chroot: {e:?}{restored}")),
        (Ok(_), Err(e)) => Outcome::Error(format!("stat / after the climb: {e:?}{restored}")),
        (Ok(_), Ok(top)) if top.same_file(&root) => Outcome::Blocked(format!(
            "climbing .. from outside a chroot ends at the container root{restored}"
        )),
        (Ok(_), Ok(_)) => Outcome::Escaped(format!(
            "climbed above the container root to a directory holding {listing}{restored}"
        )),
    }
}

fn restore_cwd(cwd: Option<&Path>) {
    if let Some(cwd) = cwd {
        let _ = std::env::set_current_dir(cwd);
    }
}

/// Up to 12 names in `dir`, sorted, for a detail line.
pub fn list_dir(dir: impl AsRef<Path>) -> String {
    match fs::read_dir(dir) {
        Ok(rd) => {
            let mut names: Vec<String> = rd
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            let more = names.len().saturating_sub(12);
            names.truncate(12);
            let mut s = names.join(",");
            if more > 0 {
                s.push_str(&format!(",… ({more} more)"));
            }
            s
        }
        Err(e) => format!("(unlistable: {:?})", sys::io_errno(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kallsyms_zeros_do_not_leak() {
        let zeros = "0000000000000000 A fixed_percpu_data\n0000000000000000 T _text\n";
        assert_eq!(kallsyms_leak(zeros), None);
        let real = "0000000000000000 A fixed_percpu_data\nffffffff81000000 T _text\n";
        assert_eq!(
            kallsyms_leak(real),
            Some("ffffffff81000000 T _text".to_string())
        );
        assert_eq!(kallsyms_leak(""), None);
        assert_eq!(kallsyms_leak("garbage\n"), None);
    }

    #[test]
    fn listings_are_short() {
        let l = list_dir("/proc");
        assert!(l.contains("… ("), "{l}");
        assert!(list_dir("/no/such/dir").starts_with("(unlistable: ENOENT"));
    }
}
