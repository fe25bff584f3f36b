//! Attacks through system calls that act on the host kernel as a whole: module
//! loading, kexec, reboot, the clock, keyrings, BPF, perf, and the calls a
//! container's seccomp filter should not let through at all.
//!
//! Most are "gate" probes: each passes an argument that the kernel rejects only
//! AFTER its permission check (an undefined flag, an out-of-range value, a path
//! that does not exist).  EPERM (or ENOSYS) then means the call was stopped at
//! the door — by seccomp, a missing capability or lockdown; EINVAL, ENOENT and
//! the like mean the kernel looked at the argument, so a valid one would have
//! worked.  That makes them harmless when they get through: nothing is ever
//! loaded, set or enabled.  The calls that do succeed (bpf, perf_event_open,
//! userfaultfd, ioperm, the audit socket) create only an fd or a permission
//! that is dropped again at once.  Which check comes first was read in the
//! kernel source for each call and is noted next to it.

use std::fs;
use std::path::Path;

use nix::errno::Errno;

use super::sys::{self, SysResult};
use super::{Findings, Outcome, STOPS};

/// A path that cannot exist, for calls whose path lookup follows the
/// capability check.
const NO_SUCH_PATH: &CStrLit = c"/nonexistent-nixrun-probe/x";
type CStrLit = std::ffi::CStr;

fn syscall_result(rc: libc::c_long) -> SysResult<libc::c_long> {
    sys::ret(rc)
}

/// Closes a returned fd if the call succeeded, keeping the result for the gate.
fn close_on_success(res: SysResult<libc::c_long>) -> SysResult<libc::c_long> {
    if let Ok(fd) = res {
        drop(sys::own(fd));
    }
    res
}

/// `module-load`: init_module, finit_module, delete_module.
pub fn module_load() -> Outcome {
    let mut f = Findings::default();
    // init_module: may_init_module() (CAP_SYS_MODULE, modules_disabled) comes
    // first; 64 zero bytes then fail the ELF check (ENOEXEC).  Nothing loads.
    let garbage = [0u8; 64];
    // SAFETY: buffer valid for its length; empty argument string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_init_module,
            garbage.as_ptr(),
            garbage.len(),
            c"".as_ptr(),
        )
    };
    f.gate("init_module(garbage)", syscall_result(r), STOPS);
    // finit_module: the same capability check, then an undefined flag bit is
    // refused (EINVAL) before the fd (-1) is even looked at.
    // SAFETY: no pointers but an empty string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            -1,
            c"".as_ptr(),
            0x4000_0000 as libc::c_int,
        )
    };
    f.gate("finit_module(bad flags)", syscall_result(r), STOPS);
    // delete_module: CAP_SYS_MODULE first, then the name lookup (ENOENT).
    // SAFETY: valid C string.
    let r = unsafe {
        libc::syscall(
            libc::SYS_delete_module,
            c"nixrun_probe_nonexistent".as_ptr(),
            libc::O_NONBLOCK,
        )
    };
    f.gate("delete_module(nonexistent)", syscall_result(r), STOPS);
    note_if_absent(f.outcome(), "/proc/modules", "kernel built without modules")
}

/// Adds "(kernel built without X)" to a blocked line when the feature's /proc
/// file is missing, so a blocked verdict that the kernel gives by itself is not
/// mistaken for the runtime's doing.
fn note_if_absent(o: Outcome, path: &str, what: &str) -> Outcome {
    match o {
        Outcome::Blocked(d) if d.contains("ENOSYS") && !Path::new(path).exists() => {
            Outcome::Blocked(format!("{d} ({what}: {path} absent)"))
        }
        o => o,
    }
}

/// `kexec`: kexec_load and kexec_file_load with undefined flags, refused
/// (EINVAL) only after kexec_load_permitted() (CAP_SYS_BOOT, kexec_load_disabled)
/// and lockdown; nothing is ever loaded.
pub fn kexec() -> Outcome {
    let mut f = Findings::default();
    // 0x8000 is neither a KEXEC_* flag nor in the arch mask (0xffff0000).
    // SAFETY: no segments, null segment pointer.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kexec_load,
            0usize,
            0usize,
            std::ptr::null::<libc::c_void>(),
            0x8000usize,
        )
    };
    f.gate("kexec_load(bad flags)", syscall_result(r), STOPS);
    // SAFETY: fds -1 and a null command line with length 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            -1,
            -1,
            0usize,
            std::ptr::null::<libc::c_char>(),
            0x8000_0000usize,
        )
    };
    f.gate("kexec_file_load(bad flags)", syscall_result(r), STOPS);
    note_if_absent(
        f.outcome(),
        "/proc/sys/kernel/kexec_load_disabled",
        "kernel built without kexec",
    )
}

/// The initial PID namespace's inode (PROC_PID_INIT_INO).
pub const INIT_PID_NS: &str = "pid:[4026531836]";

/// `reboot`: reboot(2) with a Ctrl-Alt-Del command.  In a child PID namespace
/// the kernel answers everything but restart/halt/power-off with EINVAL (they
/// only end the namespace's init); in the host's namespace it would set the
/// host's Ctrl-Alt-Del behaviour.  To stay harmless even there, the probe
/// passes the setting the host already has (read from
/// /proc/sys/kernel/ctrl-alt-del) — and when it cannot read that while in the
/// initial PID namespace, it does not call reboot at all.
pub fn reboot() -> Outcome {
    let ns = sys::read_link("/proc/self/ns/pid").ok();
    let current = fs::read_to_string("/proc/sys/kernel/ctrl-alt-del")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    let in_init_ns = ns.as_deref() == Some(INIT_PID_NS);
    let cmd = match (current, in_init_ns, ns.is_some()) {
        (Some(0), _, _) => libc::LINUX_REBOOT_CMD_CAD_OFF,
        (Some(_), _, _) => libc::LINUX_REBOOT_CMD_CAD_ON,
        (None, false, true) => libc::LINUX_REBOOT_CMD_CAD_OFF,
        (None, true, _) => {
            return Outcome::Error(
                "in the initial PID namespace and /proc/sys/kernel/ctrl-alt-del unreadable: \
                 not calling reboot(2)"
                    .to_string(),
            )
        }
        (None, _, false) => {
            return Outcome::Error(
                "cannot tell the PID namespace (/proc/self/ns/pid unreadable) nor the \
                 current ctrl-alt-del setting: not calling reboot(2)"
                    .to_string(),
            )
        }
    };
    let name = if cmd == libc::LINUX_REBOOT_CMD_CAD_OFF {
        "CAD_OFF"
    } else {
        "CAD_ON"
    };
    // SAFETY: reboot(2) with the magic numbers and a Ctrl-Alt-Del command only.
    let r = sys::ret_int(unsafe { libc::reboot(cmd) });
    match r {
        Ok(_) => Outcome::Escaped(format!(
            "reboot({name}) succeeded: the host's Ctrl-Alt-Del setting is ours to change \
             (passed its current value, so unchanged)"
        )),
        Err(Errno::EINVAL) => Outcome::Blocked(format!(
            "reboot({name}): EINVAL (a child PID namespace: reboot can only end the container)"
        )),
        Err(e) => Outcome::Blocked(format!("reboot({name}): {e:?}")),
    }
}

const CAP_SYS_TIME: u32 = 25;

/// `clock`: setting the host's clock.
pub fn clock() -> Outcome {
    let mut f = Findings::default();
    // settimeofday(NULL, tz): the capability check (security_settime64) comes
    // before the timezone range check, and nothing is set when that fails.  A
    // bad tv_usec would NOT do: the timespec is validated before the check.
    // struct timezone (libc exposes it only as an opaque type).
    #[repr(C)]
    struct Timezone {
        tz_minuteswest: libc::c_int,
        tz_dsttime: libc::c_int,
    }
    let tz = Timezone {
        tz_minuteswest: 100_000,
        tz_dsttime: 0,
    };
    // SAFETY: null timeval, valid timezone.
    let r = unsafe {
        libc::syscall(
            libc::SYS_settimeofday,
            std::ptr::null::<libc::timeval>(),
            &tz as *const Timezone,
        )
    };
    f.gate("settimeofday(bad timezone)", syscall_result(r), STOPS);
    // adjtimex / clock_adjtime with ADJ_TICK: "modes && !capable(CAP_SYS_TIME)"
    // is checked before the tick range (900000/HZ..1100000/HZ), and 1 is out of it.
    // SAFETY: zeroed plain-data struct.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = libc::ADJ_TICK;
    tx.tick = 1;
    // SAFETY: valid timex.
    let r = unsafe { libc::syscall(libc::SYS_adjtimex, &mut tx as *mut libc::timex) };
    f.gate("adjtimex(bad tick)", syscall_result(r), STOPS);
    // SAFETY: zeroed plain-data struct.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = libc::ADJ_TICK;
    tx.tick = 1;
    // SAFETY: valid timex.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clock_adjtime,
            libc::CLOCK_REALTIME,
            &mut tx as *mut libc::timex,
        )
    };
    f.gate("clock_adjtime(bad tick)", syscall_result(r), STOPS);
    // clock_settime validates the timespec BEFORE the capability check, so an
    // invalid tv_nsec only tells whether seccomp lets the call through; whether
    // it would then work is the capability, read from CapEff.
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 2_000_000_000,
    };
    // SAFETY: valid timespec.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clock_settime,
            libc::CLOCK_REALTIME,
            &ts as *const libc::timespec,
        )
    };
    match (syscall_result(r), sys::has_effective_cap(CAP_SYS_TIME)) {
        (Err(e), _) if STOPS.contains(&e) => f.blocked(format!("clock_settime: {e:?}")),
        (Err(_), Some(false)) => {
            f.blocked("clock_settime: reachable, but CAP_SYS_TIME is not effective".to_string())
        }
        (Err(e), Some(true)) => f.escaped(format!(
            "clock_settime: reachable ({e:?} on an invalid timespec) and CAP_SYS_TIME is effective"
        )),
        (Err(e), None) => f.error(format!(
            "clock_settime: reachable ({e:?}), capabilities unreadable"
        )),
        (Ok(_), _) => f.escaped("clock_settime accepted an invalid timespec?!".to_string()),
    }
    f.outcome()
}

const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
const KEY_SPEC_USER_KEYRING: libc::c_long = -4;
const KEY_SPEC_PROCESS_KEYRING: libc::c_long = -2;

/// `keyring`: kernel keyrings are not namespaced, so without a user namespace
/// uid 0's user keyring is the host root's.
pub fn keyring() -> Outcome {
    let mut f = Findings::default();
    // Looking up the ID reads, and at most creates the (standard, per-uid)
    // user keyring, which any root login on the host does too.
    // SAFETY: integer arguments only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_GET_KEYRING_ID,
            KEY_SPEC_USER_KEYRING,
            0,
        )
    };
    match syscall_result(r) {
        Ok(id) => f.escaped(format!(
            "keyctl: uid 0's user keyring (id {id}) is reachable — shared with the host's root"
        )),
        r => f.gate("keyctl(GET_KEYRING_ID, user)", r, STOPS),
    }
    // add_key/request_key with a key type that does not exist: the type lookup
    // fails (ENODEV/ENOKEY) and nothing is added.  request_key gets no callout
    // info, so it could never start /sbin/request-key on the host either.  The
    // destination is our own process keyring, which dies with this process.
    // SAFETY: valid C strings, null payload with length 0.
    let r = unsafe {
        libc::syscall(
            libc::SYS_add_key,
            c"nixrun_probe_no_such_type".as_ptr(),
            c"nixrun-probe".as_ptr(),
            std::ptr::null::<libc::c_void>(),
            0usize,
            KEY_SPEC_PROCESS_KEYRING,
        )
    };
    f.reach("add_key(unknown type)", syscall_result(r), STOPS);
    // SAFETY: valid C strings, null callout info.
    let r = unsafe {
        libc::syscall(
            libc::SYS_request_key,
            c"nixrun_probe_no_such_type".as_ptr(),
            c"nixrun-probe".as_ptr(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    };
    f.reach("request_key(unknown type)", syscall_result(r), STOPS);
    match fs::read_to_string("/proc/keys") {
        Ok(s) if s.trim().is_empty() => f.blocked("/proc/keys: empty"),
        Ok(s) => f.escaped(format!(
            "/proc/keys lists {} key(s), e.g. {}",
            s.lines().count(),
            s.lines()
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => f.blocked("/proc/keys: absent"),
        Err(e) => f.blocked(format!("/proc/keys: {:?}", sys::io_errno(&e))),
    }
    f.outcome()
}

/// `bpf`: load a trivial socket filter ("r0 = 0; exit"); it is never attached
/// and its fd is closed at once.
pub fn bpf() -> Outcome {
    #[repr(C)]
    struct ProgLoad {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
    }
    // BPF_ALU64|BPF_MOV|BPF_K r0 = 0, then BPF_JMP|BPF_EXIT: {code, regs, off, imm}.
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let attr = ProgLoad {
        prog_type: 1, // BPF_PROG_TYPE_SOCKET_FILTER
        insn_cnt: 2,
        insns: insns.as_ptr() as u64,
        license: c"GPL".as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
    };
    const BPF_PROG_LOAD: libc::c_long = 5;
    // SAFETY: attr and the instructions outlive the call; size is attr's.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoad,
            std::mem::size_of::<ProgLoad>(),
        )
    };
    let mut f = Findings::default();
    f.gate(
        "BPF_PROG_LOAD(socket filter)",
        close_on_success(syscall_result(r)),
        STOPS,
    );
    f.outcome()
}

/// `perf_event_open`: a software CPU-clock counter on ourselves, counting
/// kernel time too (which perf_event_paranoid >= 2 reserves for CAP_PERFMON or
/// CAP_SYS_ADMIN); closed at once.
pub fn perf_event_open() -> Outcome {
    // PERF_ATTR_SIZE_VER0: type, size, config, sample_period, sample_type,
    // read_format, the flag bits, wakeup_events, bp_type, config1.
    #[repr(C)]
    struct Attr {
        type_: u32,
        size: u32,
        config: u64,
        sample_period: u64,
        sample_type: u64,
        read_format: u64,
        flags: u64,
        wakeup_events: u32,
        bp_type: u32,
        config1: u64,
    }
    let attr = Attr {
        type_: 1, // PERF_TYPE_SOFTWARE
        size: std::mem::size_of::<Attr>() as u32,
        config: 0, // PERF_COUNT_SW_CPU_CLOCK
        flags: 1,  // disabled; exclude_kernel (bit 5) left clear
        sample_period: 0,
        sample_type: 0,
        read_format: 0,
        wakeup_events: 0,
        bp_type: 0,
        config1: 0,
    };
    const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;
    // SAFETY: valid attr; pid 0 = us, cpu -1 = any, no group.
    let r = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const Attr,
            0,
            -1,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    let mut f = Findings::default();
    // EACCES is perf_event_paranoid refusing for want of the capability.
    let stops = [Errno::EPERM, Errno::EACCES, Errno::ENOSYS];
    f.gate(
        "perf_event_open(sw cpu-clock, self)",
        close_on_success(syscall_result(r)),
        &stops,
    );
    f.outcome()
}

/// `userfaultfd`: the kernel-fault mode (no UFFD_USER_MODE_ONLY), a classic aid
/// for widening kernel race windows; needs CAP_SYS_PTRACE unless
/// vm.unprivileged_userfaultfd=1.  The fd is closed at once.
pub fn userfaultfd() -> Outcome {
    // SAFETY: flag argument only.
    let r = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
    let mut f = Findings::default();
    f.gate(
        "userfaultfd (kernel faults)",
        close_on_success(syscall_result(r)),
        STOPS,
    );
    f.outcome()
}

/// `ioperm`: x86 I/O port access (CAP_SYS_RAWIO).  Validity checks come first
/// here, so the probe asks for one real port, the POST diagnostic port 0x80, and
/// gives it back at once without ever touching it.
pub fn ioperm() -> Outcome {
    let mut f = Findings::default();
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: changes only this process's I/O bitmap; no port I/O is done.
        let r = unsafe { libc::syscall(libc::SYS_ioperm, 0x80usize, 1usize, 1) };
        let r = syscall_result(r);
        if r.is_ok() {
            // SAFETY: as above, turning the permission off again.
            unsafe { libc::syscall(libc::SYS_ioperm, 0x80usize, 1usize, 0) };
        }
        f.gate("ioperm(0x80)", r, STOPS);
        // SAFETY: as above; level 3 then back to 0.
        let r = syscall_result(unsafe { libc::syscall(libc::SYS_iopl, 3) });
        if r.is_ok() {
            // SAFETY: dropping the level again.
            unsafe { libc::syscall(libc::SYS_iopl, 0) };
        }
        f.gate("iopl(3)", r, STOPS);
    }
    #[cfg(not(target_arch = "x86_64"))]
    f.blocked("no I/O port syscalls on this architecture");
    f.outcome()
}

/// `swapon`: swapon/swapoff check CAP_SYS_ADMIN before opening the path, which
/// does not exist (ENOENT); nothing is swapped on or off.
pub fn swapon() -> Outcome {
    let mut f = Findings::default();
    // SAFETY: valid C string.
    let r = unsafe { libc::syscall(libc::SYS_swapon, NO_SUCH_PATH.as_ptr(), 0) };
    f.gate("swapon(nonexistent)", syscall_result(r), STOPS);
    // SAFETY: valid C string.
    let r = unsafe { libc::syscall(libc::SYS_swapoff, NO_SUCH_PATH.as_ptr()) };
    f.gate("swapoff(nonexistent)", syscall_result(r), STOPS);
    f.outcome()
}

/// `acct`: process accounting is host-wide; CAP_SYS_PACCT is checked before the
/// file is opened, and the path does not exist.  (Never acct(NULL): that would
/// switch the host's accounting off.)
pub fn acct() -> Outcome {
    let mut f = Findings::default();
    // SAFETY: valid C string.
    let r = unsafe { libc::syscall(libc::SYS_acct, NO_SUCH_PATH.as_ptr()) };
    f.gate("acct(nonexistent)", syscall_result(r), STOPS);
    f.outcome()
}

/// `quotactl`: Q_GETINFO on a device path that does not exist.  The lookup
/// comes before quotactl's own permission check, so this shows only whether
/// seccomp lets the call through (nspawn's filter does not).
pub fn quotactl() -> Outcome {
    const Q_GETINFO: u32 = 0x80_0005;
    // QCMD(Q_GETINFO, USRQUOTA): the command shifted left 8, the quota type
    // (USRQUOTA = 0) in the low byte.
    let cmd = (Q_GETINFO << 8) as libc::c_int;
    let mut buf = [0u8; 64];
    // SAFETY: valid C string and a buffer larger than struct if_dqinfo.
    let r = unsafe {
        libc::syscall(
            libc::SYS_quotactl,
            cmd,
            NO_SUCH_PATH.as_ptr(),
            0,
            buf.as_mut_ptr(),
        )
    };
    let mut f = Findings::default();
    f.reach("quotactl(Q_GETINFO, nonexistent)", syscall_result(r), STOPS);
    f.outcome()
}

/// `fanotify`: fanotify_init refuses callers without CAP_SYS_ADMIN that ask for
/// no file-handle reporting (EPERM) before it rejects an undefined flag bit
/// (EINVAL).  No group is created.
pub fn fanotify() -> Outcome {
    // SAFETY: integer arguments only.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fanotify_init,
            0x8000_0000u32 as libc::c_uint,
            libc::O_RDONLY,
        )
    };
    let mut f = Findings::default();
    f.gate(
        "fanotify_init(bad flag)",
        close_on_success(syscall_result(r)),
        STOPS,
    );
    f.outcome()
}

/// `lookup_dcookie`: removed from Linux 6.8 (ENOSYS there); older kernels check
/// CAP_SYS_ADMIN before the cookie (0, invalid).
pub fn lookup_dcookie() -> Outcome {
    let mut buf = [0u8; 16];
    // SAFETY: valid buffer.
    let r = unsafe { libc::syscall(libc::SYS_lookup_dcookie, 0u64, buf.as_mut_ptr(), buf.len()) };
    let mut f = Findings::default();
    f.gate("lookup_dcookie(0)", syscall_result(r), STOPS);
    f.outcome()
}

/// `nfsservctl`: gone since Linux 3.1; anything but ENOSYS/EPERM would be news.
pub fn nfsservctl() -> Outcome {
    // SAFETY: null pointers, which the (removed) call never reads.
    let r = unsafe {
        libc::syscall(
            libc::SYS_nfsservctl,
            0,
            std::ptr::null::<libc::c_void>(),
            std::ptr::null::<libc::c_void>(),
        )
    };
    let mut f = Findings::default();
    f.reach("nfsservctl", syscall_result(r), STOPS);
    f.outcome()
}

/// `netlink-audit`: an audit netlink socket (with CAP_AUDIT_CONTROL it could
/// reconfigure the host's audit).  nspawn's filter answers EAFNOSUPPORT ("audit
/// is broken in containers"), so systemd in the guest skips audit quietly.
/// Created and closed, nothing sent.
pub fn netlink_audit() -> Outcome {
    // SAFETY: integer arguments only.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_AUDIT,
        )
    };
    let r = close_on_success(sys::ret_int(fd).map(|v| v as libc::c_long));
    let stops = [
        Errno::EAFNOSUPPORT,
        Errno::EPERM,
        Errno::EPROTONOSUPPORT,
        Errno::EACCES,
        Errno::ENOSYS,
    ];
    let mut f = Findings::default();
    f.gate("socket(AF_NETLINK, NETLINK_AUDIT)", r, &stops);
    f.outcome()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_feature_notes_only_on_enosys() {
        let o = note_if_absent(
            Outcome::Blocked("x: ENOSYS".into()),
            "/no/such",
            "kernel built without x",
        );
        assert_eq!(
            o,
            Outcome::Blocked("x: ENOSYS (kernel built without x: /no/such absent)".into())
        );
        let o = note_if_absent(Outcome::Blocked("x: EPERM".into()), "/no/such", "w");
        assert_eq!(o, Outcome::Blocked("x: EPERM".into()));
        let o = note_if_absent(Outcome::Escaped("x: ENOSYS".into()), "/no/such", "w");
        assert_eq!(o, Outcome::Escaped("x: ENOSYS".into()));
    }

    #[test]
    fn bpf_instructions_encode_mov_and_exit() {
        // struct bpf_insn is {u8 code; u8 dst:4, src:4; s16 off; s32 imm},
        // little-endian: code is the lowest byte.
        let mov: u64 = 0xb7;
        let exit: u64 = 0x95;
        assert_eq!(mov & 0xff, 0x07 | 0xb0); // BPF_ALU64 | BPF_MOV | BPF_K
        assert_eq!(exit & 0xff, 0x05 | 0x90); // BPF_JMP | BPF_EXIT
    }

    /// The kernel-order claims above, checked on the running kernel: without
    /// capabilities every gate must say blocked (as root the test drops to
    /// nobody in a child first; a pass as root is environment-dependent and
    /// not asserted).
    #[test]
    fn gates_stop_callers_without_capabilities() {
        let check = || {
            [
                ("clock", clock as fn() -> Outcome),
                ("kexec", kexec),
                ("module-load", module_load),
                ("swapon", swapon),
                ("acct", acct),
                ("fanotify", fanotify),
            ]
            .into_iter()
            .filter(|(_, run)| !matches!(run(), Outcome::Blocked(_)))
            .map(|(name, _)| name)
            .collect::<Vec<_>>()
        };
        if !nix::unistd::geteuid().is_root() {
            assert_eq!(check(), Vec::<&str>::new());
            return;
        }
        // SAFETY: the child only makes raw syscalls and runs the gates (glibc's
        // malloc is fork-safe), then _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: raw credential syscalls; changing all uids away from 0
            // clears the capability sets.
            let ok = unsafe {
                libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) == 0
                    && libc::syscall(libc::SYS_setresgid, 65534, 65534, 65534) == 0
                    && libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) == 0
            };
            let code = if !ok {
                2
            } else if check().is_empty() {
                0
            } else {
                1
            };
            // SAFETY: leave the forked test process without unwinding.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: our child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status));
        assert_eq!(
            libc::WEXITSTATUS(status),
            0,
            "a gate let an unprivileged caller through"
        );
    }

    #[test]
    fn perf_attr_is_the_version_0_size() {
        // PERF_ATTR_SIZE_VER0 is 64; the struct above must match it.
        #[repr(C)]
        struct Attr {
            a: u32,
            b: u32,
            c: [u64; 5],
            d: u32,
            e: u32,
            f: u64,
        }
        assert_eq!(std::mem::size_of::<Attr>(), 64);
    }
}
