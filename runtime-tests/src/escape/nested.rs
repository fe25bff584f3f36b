//! Attacks from sandboxes inside the guest: a fresh procfs or sysfs in a PID,
//! user or network namespace of the guest's own (what `unshare --mount-proc`,
//! bwrap, systemd's PrivatePIDs= and nested containers do, and what a runtime
//! has to let them do), and the bpf(2) calls a runtime may make for the guest
//! so that device programs work inside it.
//!
//! A runtime that lets the guest mount a procfs must hand it over with the
//! container's masks and read-only /proc/sys, and locked to them; one that
//! brokers bpf(2) must load nothing that reads kernel memory and let the guest
//! widen nothing.  Each attack checks one of those from inside.
//!
//! Harmless when they succeed: core_pattern gets back the value just read;
//! sysrq-trigger, kcore and the sysfs knobs are opened, never written (kcore
//! and kallsyms are read a few bytes); masks are only unmounted in the attack's
//! private mount namespace; BPF programs are never attached to anything but a
//! cgroup the attack made for itself and removes, or not attached at all;
//! program fds of others are closed without being used.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::sys::{self, Scratch, SysResult};
use super::{vfs, Findings, Outcome, STOPS};

/// Runs `f` in a child process in new namespaces `flags`: unshared here (with
/// CLONE_NEWUSER first, uid and gid 0 mapped to ours, so that it owns the
/// others, as `unshare -U -r` makes them), then forked, so that with
/// CLONE_NEWPID the child is the new namespace's PID 1. (This process is the
/// attack's own child.) The outcome comes back through a pipe.
fn in_namespaces(flags: libc::c_int, what: &str, f: fn() -> Outcome) -> Outcome {
    if flags & libc::CLONE_NEWUSER != 0 {
        if let Err(e) = enter_user_namespace() {
            return Outcome::Blocked(format!("unshare({what}): {e}"));
        }
    }
    // SAFETY: plain flag argument.
    if let Err(e) = sys::ret_int(unsafe { libc::unshare(flags & !libc::CLONE_NEWUSER) }) {
        return Outcome::Blocked(format!("unshare({what}): {e:?}"));
    }
    let mut fds = [0; 2];
    // SAFETY: fds is a valid two-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Outcome::Error(format!("pipe2: {:?}", Errno::last()));
    }
    // SAFETY: pipe2 just returned these fds.
    let (rd, wr) = (
        sys::own(fds[0] as libc::c_long),
        sys::own(fds[1] as libc::c_long),
    );
    // SAFETY: the probe is single-threaded; the child runs ordinary code and
    // leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Outcome::Error(format!("fork: {:?}", Errno::last()));
    }
    if pid == 0 {
        drop(rd);
        let outcome = f();
        let mut w = fs::File::from(wr);
        let _ = w.write_all(format!("{}\n{}", word(&outcome), detail(&outcome)).as_bytes());
        drop(w);
        // SAFETY: leave without the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    drop(wr);
    let mut report = String::new();
    let _ = fs::File::from(rd).read_to_string(&mut report);
    let mut status = 0;
    // SAFETY: reaping our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && Errno::last() == Errno::EINTR {}
    match report.split_once('\n') {
        Some(("blocked", d)) => Outcome::Blocked(d.to_string()),
        Some(("ESCAPED", d)) => Outcome::Escaped(d.to_string()),
        Some(("error", d)) => Outcome::Error(d.to_string()),
        _ => Outcome::Error(format!(
            "the attack's child reported nothing (status {status:#x})"
        )),
    }
}

fn word(o: &Outcome) -> &'static str {
    match o {
        Outcome::Blocked(_) => "blocked",
        Outcome::Escaped(_) => "ESCAPED",
        Outcome::Error(_) => "error",
    }
}

fn detail(o: &Outcome) -> &str {
    match o {
        Outcome::Blocked(d) | Outcome::Escaped(d) | Outcome::Error(d) => d,
    }
}

/// unshare(CLONE_NEWUSER | CLONE_NEWNS), uid and gid 0 mapped to ours (as
/// `unshare -U -r` does), mounts private.
fn enter_user_namespace() -> Result<(), String> {
    // Read before the unshare: inside, until mapped, they are the overflow ids.
    // SAFETY: no arguments.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    // SAFETY: plain flag arguments.
    sys::ret_int(unsafe { libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) })
        .map_err(|e| format!("{e:?}"))?;
    // Not fs::write: its O_TRUNC is a setattr on the proc file, which the
    // kernel refuses here (EPERM) before anything is written.
    let write = |file: &str, text: String| {
        fs::OpenOptions::new()
            .write(true)
            .open(file)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("writing {file}: {:?}", sys::io_errno(&e)))
    };
    write("/proc/self/setgroups", "deny".into())?;
    write("/proc/self/uid_map", format!("0 {uid} 1"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1"))?;
    sys::mount(
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )
    .map_err(|e| format!("making mounts private: {e:?}"))
}

/// A fresh procfs on a scratch directory (the attack's private mount
/// namespace has one), or how it was refused.
fn fresh(fstype: &str, scratch: &mut Scratch) -> Result<PathBuf, Outcome> {
    let target = scratch
        .mount_point(fstype)
        .map_err(|e| Outcome::Error(format!("scratch: {e}")))?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    match sys::mount(Some(fstype), &target, Some(fstype), flags, None) {
        Ok(()) => Ok(target),
        Err(e) => Err(Outcome::Blocked(format!("mount({fstype}): {e:?}"))),
    }
}

fn with_fresh_proc(check: fn(&Path) -> Outcome) -> Outcome {
    let mut scratch = match Scratch::new() {
        Ok(s) => s,
        Err(e) => return Outcome::Error(format!("scratch: {e}")),
    };
    match fresh("proc", &mut scratch) {
        Ok(p) => {
            let o = check(&p);
            let _ = sys::umount(&p, libc::MNT_DETACH);
            o
        }
        Err(o) => o,
    }
}

/// Reads core_pattern in the procfs at `proc` and writes the same bytes back.
fn core_pattern_back(proc: &Path) -> Outcome {
    let knob = proc.join("sys/kernel/core_pattern");
    let value = match fs::read(&knob) {
        Ok(v) => v,
        Err(e) => return Outcome::Error(format!("reading core_pattern: {:?}", sys::io_errno(&e))),
    };
    match sys::open(&knob, libc::O_WRONLY).and_then(|fd| sys::write_all(&fd, &value)) {
        Ok(()) => Outcome::Escaped(format!(
            "a fresh procfs took a write to core_pattern (the value just read, {:?})",
            String::from_utf8_lossy(&value).trim()
        )),
        Err(e) => Outcome::Blocked(format!("fresh procfs mounted; core_pattern: {e:?}")),
    }
}

/// `pidns-proc-core-pattern`: a new PID namespace, a fresh procfs for it, and
/// core_pattern written back — nspawn 252's way out.
pub fn pidns_proc_core_pattern() -> Outcome {
    in_namespaces(libc::CLONE_NEWPID, "CLONE_NEWPID", || {
        with_fresh_proc(core_pattern_back)
    })
}

/// `userns-proc-core-pattern`: the same from a user namespace of the guest's
/// own with uid 0 mapped to the guest's root (`unshare -U -r --mount-proc`),
/// where the kernel's own "too revealing" rule also applies.
pub fn userns_proc_core_pattern() -> Outcome {
    in_namespaces(
        libc::CLONE_NEWUSER | libc::CLONE_NEWPID,
        "CLONE_NEWUSER|CLONE_NEWPID",
        || with_fresh_proc(core_pattern_back),
    )
}

/// `pidns-proc-sysrq`: sysrq-trigger of a fresh procfs in a new PID namespace
/// opened for writing (never written).
pub fn pidns_proc_sysrq() -> Outcome {
    in_namespaces(libc::CLONE_NEWPID, "CLONE_NEWPID", || {
        with_fresh_proc(
            |proc| match sys::open(proc.join("sysrq-trigger"), libc::O_WRONLY) {
                Ok(fd) => {
                    if sys::fs_magic_fd(&fd) == Ok(sys::PROC_SUPER_MAGIC) {
                        Outcome::Escaped(
                            "sysrq-trigger of a fresh procfs opens for writing (not written)"
                                .into(),
                        )
                    } else {
                        Outcome::Blocked("sysrq-trigger is a mask in the fresh procfs".into())
                    }
                }
                Err(Errno::ENOENT) if !proc.join("sys/kernel/sysrq").exists() => Outcome::Blocked(
                    "fresh procfs mounted; sysrq-trigger absent: this kernel has no sysrq".into(),
                ),
                Err(e) => Outcome::Blocked(format!("fresh procfs mounted; sysrq-trigger: {e:?}")),
            },
        )
    })
}

/// `pidns-proc-kcore`: kernel memory, symbol addresses and the host's keys
/// through a fresh procfs in a new PID namespace (a few bytes read).
pub fn pidns_proc_kcore() -> Outcome {
    in_namespaces(libc::CLONE_NEWPID, "CLONE_NEWPID", || {
        with_fresh_proc(|proc| {
            let mut f = Findings::default();
            let on_proc = |fd: &OwnedFd| sys::fs_magic_fd(fd) == Ok(sys::PROC_SUPER_MAGIC);
            match sys::open(proc.join("kcore"), libc::O_RDONLY) {
                Err(Errno::ENOENT) => f.blocked("kcore: absent (kernel without /proc/kcore)"),
                Err(e) => f.blocked(format!("kcore: {e:?}")),
                Ok(fd) => match sys::read_some(&fd, 4) {
                    Ok(b) if on_proc(&fd) && b.starts_with(b"\x7fELF") => {
                        f.escaped("kcore of a fresh procfs reads (ELF header)")
                    }
                    Ok(_) if !on_proc(&fd) => f.blocked("kcore: a mask"),
                    Ok(_) => f.blocked("kcore: no ELF header"),
                    Err(e) => f.blocked(format!("kcore: read {e:?}")),
                },
            }
            match sys::open(proc.join("kallsyms"), libc::O_RDONLY) {
                Err(e) => f.blocked(format!("kallsyms: {e:?}")),
                Ok(fd) => {
                    let text =
                        String::from_utf8_lossy(&sys::read_some(&fd, 4096).unwrap_or_default())
                            .into_owned();
                    match vfs::kallsyms_leak(&text) {
                        Some(l) if on_proc(&fd) => f.escaped(format!("kallsyms shows {l}")),
                        _ if !on_proc(&fd) => f.blocked("kallsyms: a mask"),
                        _ => f.blocked("kallsyms: addresses zeroed"),
                    }
                }
            }
            match sys::open(proc.join("keys"), libc::O_RDONLY) {
                Err(e) => f.blocked(format!("keys: {e:?}")),
                Ok(fd) => {
                    let content = sys::read_some(&fd, 256).unwrap_or_default();
                    if on_proc(&fd) && !content.is_empty() {
                        f.escaped("keys of a fresh procfs lists the host's keys");
                    } else if !on_proc(&fd) {
                        f.blocked("keys: a mask");
                    } else {
                        f.blocked("keys: empty");
                    }
                }
            }
            f.outcome()
        })
    })
}

/// Files a runtime masks in procfs.
const MASKABLE: &[&str] = &["keys", "kallsyms", "timer_list", "kcore", "sysrq-trigger"];

/// `pidns-proc-unmask`: the fresh procfs's protections undone: a mask
/// unmounted, /proc/sys remounted read-write (and by mount_setattr on a
/// clone), and the instance bound or cloned without its masks.
pub fn pidns_proc_unmask() -> Outcome {
    in_namespaces(libc::CLONE_NEWPID, "CLONE_NEWPID", || {
        let mut scratch = match Scratch::new() {
            Ok(s) => s,
            Err(e) => return Outcome::Error(format!("scratch: {e}")),
        };
        let proc = match fresh("proc", &mut scratch) {
            Ok(p) => p,
            Err(o) => return o,
        };
        let mut f = Findings::default();
        let masked: Vec<&str> = MASKABLE
            .iter()
            .copied()
            .filter(|m| {
                sys::open(proc.join(m), libc::O_RDONLY | libc::O_PATH)
                    .is_ok_and(|fd| sys::fs_magic_fd(&fd).is_ok_and(|t| t != sys::PROC_SUPER_MAGIC))
            })
            .collect();
        if masked.is_empty() {
            f.escaped("the fresh procfs has no masks at all");
        }
        for m in &masked {
            match sys::umount(&proc.join(m), 0) {
                Ok(()) => f.escaped(format!("unmounted the mask on {m}")),
                Err(e) => f.blocked(format!("umount {m}: {e:?}")),
            }
        }
        let sys_dir = proc.join("sys");
        let keep = sys::keep_flags(&sys_dir).unwrap_or(0);
        match sys::mount(
            None,
            &sys_dir,
            None,
            libc::MS_REMOUNT | libc::MS_BIND | keep,
            None,
        ) {
            Ok(()) if sys::is_read_only(&sys_dir) == Ok(false) => {
                f.escaped("remounted the fresh procfs's sys/ read-write")
            }
            Ok(()) => f.blocked("remount of sys/ left it read-only"),
            Err(e) => f.blocked(format!("remount sys/ rw: {e:?}")),
        }
        match sys::open_tree_clone(&sys_dir) {
            Ok(clone) => {
                let attr = sys::MountAttr {
                    attr_clr: sys::MOUNT_ATTR_RDONLY,
                    ..Default::default()
                };
                match sys::mount_setattr(&clone, &attr) {
                    Ok(()) => f.escaped("cleared read-only on a clone of sys/"),
                    Err(e) => f.blocked(format!(
                        "mount_setattr(clear RDONLY) on a clone of sys/: {e:?}"
                    )),
                }
            }
            Err(e) => f.blocked(format!("open_tree(sys/): {e:?}")),
        }
        // A non-recursive copy of the instance would show what the masks hide.
        match sys::open_tree_clone(&proc) {
            Ok(clone) => {
                let unmasked = masked.iter().any(|m| {
                    sys::openat(clone.as_raw_fd(), m, libc::O_RDONLY | libc::O_PATH, 0)
                        .is_ok_and(|fd| sys::fs_magic_fd(&fd) == Ok(sys::PROC_SUPER_MAGIC))
                });
                if unmasked {
                    f.escaped(
                        "a non-recursive clone of the fresh procfs shows masked files unmasked",
                    );
                } else {
                    f.blocked("a clone keeps the masks");
                }
            }
            Err(e) => f.blocked(format!("open_tree(non-recursive) of the procfs: {e:?}")),
        }
        let _ = sys::umount(&proc, libc::MNT_DETACH);
        f.outcome()
    })
}

const SYS_KNOBS: &[&str] = &[
    "kernel/uevent_helper",
    "power/state",
    "kernel/mm/transparent_hugepage/enabled",
];

/// `netns-sysfs-knob`: a fresh sysfs from a network namespace of the guest's
/// own: read-write by statvfs, made read-write by a bind remount, or a host
/// knob that opens for writing (never written). Only the per-mount flag is
/// ever remounted, never the superblock.
pub fn netns_sysfs_knob() -> Outcome {
    in_namespaces(libc::CLONE_NEWNET, "CLONE_NEWNET", || {
        let mut scratch = match Scratch::new() {
            Ok(s) => s,
            Err(e) => return Outcome::Error(format!("scratch: {e}")),
        };
        let sysfs = match fresh("sysfs", &mut scratch) {
            Ok(p) => p,
            Err(o) => return o,
        };
        let mut f = Findings::default();
        match sys::is_read_only(&sysfs) {
            Ok(false) => f.escaped("the fresh sysfs is read-write"),
            Ok(true) => {
                let keep = sys::keep_flags(&sysfs).unwrap_or(0) & !libc::MS_RDONLY;
                match sys::mount(
                    None,
                    &sysfs,
                    None,
                    libc::MS_REMOUNT | libc::MS_BIND | keep,
                    None,
                ) {
                    Ok(()) if sys::is_read_only(&sysfs) == Ok(false) => {
                        f.escaped("remounted the fresh sysfs read-write")
                    }
                    Ok(()) => f.blocked("the remount left it read-only"),
                    Err(e) => f.blocked(format!("remount rw: {e:?}")),
                }
            }
            Err(e) => f.error(format!("statvfs: {e:?}")),
        }
        let mut refused = Vec::new();
        for knob in SYS_KNOBS {
            match sys::open(sysfs.join(knob), libc::O_WRONLY) {
                Ok(_) => f.escaped(format!("{knob} opens for writing (not written)")),
                Err(Errno::ENOENT) => {}
                Err(e) => refused.push(format!("{knob}: {e:?}")),
            }
        }
        if !refused.is_empty() {
            f.blocked(refused.join(", "));
        }
        let _ = sys::umount(&sysfs, libc::MNT_DETACH);
        f.outcome()
    })
}

// --- bpf(2) -----------------------------------------------------------------

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_GET_NEXT_ID: libc::c_long = 11;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;
const BPF_F_QUERY_EFFECTIVE: u32 = 1;

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> SysResult<libc::c_long> {
    // SAFETY: attr is a zero-padded union bpf_attr of the size we pass; the
    // pointers inside it point at buffers alive for the call.
    sys::ret(unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) })
}

fn put(a: &mut [u8; 128], off: usize, v: &[u8]) {
    a[off..off + v.len()].copy_from_slice(v);
}

/// One instruction: code, dst, src, off, imm.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[0] = code;
    b[1] = (src << 4) | dst;
    b[2..4].copy_from_slice(&off.to_ne_bytes());
    b[4..8].copy_from_slice(&imm.to_ne_bytes());
    b
}

fn load_device_program(insns: &[[u8; 8]]) -> SysResult<OwnedFd> {
    let prog: Vec<u8> = insns.concat();
    let mut a = [0u8; 128];
    put(&mut a, 0, &BPF_PROG_TYPE_CGROUP_DEVICE.to_ne_bytes());
    put(&mut a, 4, &(insns.len() as u32).to_ne_bytes());
    put(&mut a, 8, &(prog.as_ptr() as u64).to_ne_bytes());
    put(&mut a, 16, &(c"GPL".as_ptr() as u64).to_ne_bytes());
    bpf(BPF_PROG_LOAD, &mut a).map(sys::own)
}

/// `bpf-device-helper`: a cgroup device program that reads kernel memory with
/// bpf_probe_read_kernel into its stack. A runtime that loads device programs
/// for the guest with its own privileges must refuse it. Never attached.
pub fn bpf_device_helper() -> Outcome {
    let prog = [
        insn(0xbf, 1, 10, 0, 0),  // r1 = r10
        insn(0x07, 1, 0, 0, -8),  // r1 += -8
        insn(0xb7, 2, 0, 0, 8),   // r2 = 8
        insn(0xb7, 3, 0, 0, 0),   // r3 = 0 (address)
        insn(0x85, 0, 0, 0, 113), // call bpf_probe_read_kernel
        insn(0xb7, 0, 0, 0, 1),   // r0 = 1
        insn(0x95, 0, 0, 0, 0),   // exit
    ];
    let mut f = Findings::default();
    match load_device_program(&prog) {
        Ok(_fd) => {
            f.escaped("a device program calling bpf_probe_read_kernel was loaded (never attached)")
        }
        Err(e) if STOPS.contains(&e) => f.blocked(format!("BPF_PROG_LOAD(kernel reader): {e:?}")),
        // The verifier looked at it: loading was allowed, this program was not.
        Err(e) => f.blocked(format!(
            "BPF_PROG_LOAD(kernel reader): {e:?} (the verifier refused this program)"
        )),
    }
    f.outcome()
}

/// The guest's own cgroup2 directory, and the cgroup2 mount it is under.
fn own_cgroup() -> Result<PathBuf, String> {
    let text =
        fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let path = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("no cgroup2 line in /proc/self/cgroup")?;
    if sys::fs_magic(Path::new("/sys/fs/cgroup")) != Ok(sys::CGROUP2_SUPER_MAGIC) {
        return Err("/sys/fs/cgroup is not cgroup2".into());
    }
    Ok(Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/')))
}

/// `bpf-device-widen`: the guest's own allow-everything device program on a
/// cgroup of its own, then /dev/kmsg made and opened for writing (never
/// written) from that cgroup. Only the container's policy stops it.
pub fn bpf_device_widen() -> Outcome {
    let mut f = Findings::default();
    let own = match own_cgroup() {
        Ok(p) => p,
        Err(e) => return Outcome::Error(e),
    };
    let mut scratch = match Scratch::new() {
        Ok(s) => s,
        Err(e) => return Outcome::Error(format!("scratch: {e}")),
    };
    if !scratch.allows_devices() {
        return Outcome::Error("no scratch tmpfs for a device node".into());
    }
    let prog = match load_device_program(&[insn(0xb7, 0, 0, 0, 1), insn(0x95, 0, 0, 0, 0)]) {
        Ok(p) => p,
        Err(e) => return Outcome::Blocked(format!("BPF_PROG_LOAD(allow all): {e:?}")),
    };
    let cg = own.join(format!("nixrun-probe-widen.{}", std::process::id()));
    if let Err(e) = fs::create_dir(&cg) {
        return Outcome::Error(format!("mkdir {}: {e}", cg.display()));
    }
    let r = (|| {
        let dir = sys::open(&cg, libc::O_RDONLY | libc::O_DIRECTORY)
            .map_err(|e| format!("open cgroup: {e:?}"))?;
        let mut a = [0u8; 128];
        put(&mut a, 0, &(dir.as_raw_fd() as u32).to_ne_bytes());
        put(&mut a, 4, &(prog.as_raw_fd() as u32).to_ne_bytes());
        put(&mut a, 8, &BPF_CGROUP_DEVICE.to_ne_bytes());
        put(&mut a, 12, &BPF_F_ALLOW_MULTI.to_ne_bytes());
        if let Err(e) = bpf(BPF_PROG_ATTACH, &mut a) {
            return Ok(Some(format!("BPF_PROG_ATTACH: {e:?}")));
        }
        fs::write(cg.join("cgroup.procs"), "0").map_err(|e| format!("joining the cgroup: {e}"))?;
        Ok::<_, String>(None)
    })();
    match r {
        Err(e) => f.error(e),
        Ok(Some(refused)) => f.blocked(refused),
        Ok(None) => {
            let node = scratch.file("kmsg").expect("a tmpfs scratch has files");
            let p = sys::c(&node);
            let dev = libc::makedev(1, 11);
            // SAFETY: valid C string.
            match sys::ret_int(unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR | 0o600, dev) }) {
                Err(e) => f.blocked(format!(
                    "mknod kmsg (1:11) under our allow-all program: {e:?}"
                )),
                Ok(_) => {
                    match sys::open(&node, libc::O_WRONLY) {
                        Ok(_) => f.escaped(
                            "our own allow-all device program let /dev/kmsg open for writing (not written)",
                        ),
                        Err(e) => f.blocked(format!("open kmsg under our allow-all program: {e:?}")),
                    }
                    let _ = sys::unlink(&node);
                }
            }
            let parent = own.join("cgroup.procs");
            let _ = fs::write(parent, "0");
        }
    }
    let _ = fs::remove_dir(&cg);
    f.outcome()
}

/// `bpf-foreign-program`: an fd for a BPF program the guest did not load (the
/// container's device program, the host's): enough to detach it. Programs are
/// found through our cgroup's effective programs and the system-wide id list;
/// fds obtained are closed unused.
pub fn bpf_foreign_program() -> Outcome {
    let mut f = Findings::default();
    let mut ids = Vec::new();
    if let Ok(own) = own_cgroup() {
        if let Ok(dir) = sys::open(&own, libc::O_RDONLY | libc::O_DIRECTORY) {
            let mut buf = [0u32; 64];
            let mut a = [0u8; 128];
            put(&mut a, 0, &(dir.as_raw_fd() as u32).to_ne_bytes());
            put(&mut a, 4, &BPF_CGROUP_DEVICE.to_ne_bytes());
            put(&mut a, 8, &BPF_F_QUERY_EFFECTIVE.to_ne_bytes());
            put(&mut a, 16, &(buf.as_mut_ptr() as u64).to_ne_bytes());
            put(&mut a, 24, &64u32.to_ne_bytes());
            match bpf(BPF_PROG_QUERY, &mut a) {
                Ok(_) => {
                    let n = u32::from_ne_bytes(a[24..28].try_into().unwrap()).min(64) as usize;
                    ids.extend_from_slice(&buf[..n]);
                    f.blocked(format!("effective query: {n} programs listed"));
                }
                Err(e) => f.blocked(format!("BPF_PROG_QUERY(effective): {e:?}")),
            }
        }
    }
    let mut next = 0u32;
    for _ in 0..4096 {
        let mut a = [0u8; 128];
        put(&mut a, 0, &next.to_ne_bytes());
        match bpf(BPF_PROG_GET_NEXT_ID, &mut a) {
            Ok(_) => {
                next = u32::from_ne_bytes(a[4..8].try_into().unwrap());
                ids.push(next);
            }
            Err(Errno::ENOENT) => break,
            Err(e) => {
                f.blocked(format!("BPF_PROG_GET_NEXT_ID: {e:?}"));
                break;
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    let mut refused = Vec::new();
    // Without ids to ask for (their listing was refused), program 1 stands in:
    // a lookup that gets past the permission check says enough.
    if ids.is_empty() {
        ids.push(1);
    }
    for id in &ids {
        let mut a = [0u8; 128];
        put(&mut a, 0, &id.to_ne_bytes());
        match bpf(BPF_PROG_GET_FD_BY_ID, &mut a) {
            Ok(fd) => {
                drop(sys::own(fd));
                f.escaped(format!("an fd for BPF program {id}, which we did not load"));
            }
            Err(e) if STOPS.contains(&e) => refused.push(format!("{id}: {e:?}")),
            Err(e) => f.escaped(format!(
                "BPF_PROG_GET_FD_BY_ID({id}): passed the permission check ({e:?} from the code after it)"
            )),
        }
    }
    if !refused.is_empty() {
        f.blocked(format!("BPF_PROG_GET_FD_BY_ID {}", refused.join(", ")));
    }
    f.outcome()
}
