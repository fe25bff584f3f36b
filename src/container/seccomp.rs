//! The guest's system call policy.
//!
//! A deny list, as a readable table of groups: the guest is a whole OS whose
//! systemd sandboxes its services with mount, unshare, setns, seccomp…, so it keeps
//! everything except what reaches past the container into the host kernel (nspawn's
//! exclusions). Three filters are installed, last thing before exec:
//!
//! 1. `DENIED` → EPERM (built with seccompiler; a foreign ABI kills the process,
//!    since its system call numbers would dodge the table);
//! 2. socket(AF_NETLINK, *, NETLINK_AUDIT) → EAFNOSUPPORT, as nspawn does: audit is
//!    not namespaced, and the guest's systemd then knows to do without it;
//! 3. mounts of *new* file systems (mount(2) without MS_BIND, MS_REMOUNT, MS_MOVE or
//!    a propagation flag) go to the supervisor (SECCOMP_RET_USER_NOTIF), which
//!    refuses procfs, sysfs, cgroup v1 and the like — a fresh, unmasked procfs is a
//!    way out for a real-root guest — and performs the harmless ones itself (see
//!    mountguard.rs). The new mount API's fsopen/fspick/fsconfig/fsmount return
//!    ENOSYS, so callers fall back to mount(2); x32 calls (a second numbering of the
//!    x86_64 ABI) return ENOSYS. seccompiler has no USER_NOTIF action, hence this
//!    filter is a few hand-written BPF instructions.
//!
//! `--system-call-filter=LIST` takes calls off the deny list; `~LIST` adds to it.

use super::syscall_names::SYSCALLS;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::{FromRawFd, OwnedFd};

/// A named set of calls the guest may not make (the name is what
/// --system-call-filter= accepts).
pub struct Group {
    pub name: &'static str,
    pub calls: &'static [&'static str],
}

pub const DENIED: &[Group] = &[
    // kernel modules run in the host kernel.
    Group {
        name: "@module",
        calls: &[
            "init_module",
            "finit_module",
            "delete_module",
            "create_module",
            "query_module",
            "get_kernel_syms",
        ],
    },
    // replaces the host's kernel.
    Group {
        name: "@kexec",
        calls: &["kexec_load", "kexec_file_load"],
    },
    // the kernel keyring is not namespaced: uid 0's keys are the host root's.
    Group {
        name: "@keyring",
        calls: &["add_key", "request_key", "keyctl"],
    },
    // the clock is the host's.
    Group {
        name: "@clock",
        calls: &[
            "clock_settime",
            "clock_adjtime",
            "settimeofday",
            "adjtimex",
            "stime",
        ],
    },
    // swap is host-wide.
    Group {
        name: "@swap",
        calls: &["swapon", "swapoff"],
    },
    // direct hardware access.
    Group {
        name: "@raw-io",
        calls: &[
            "iopl",
            "ioperm",
            "pciconfig_iobase",
            "pciconfig_read",
            "pciconfig_write",
        ],
    },
    // legacy CPU modes with a history of kernel bugs.
    Group {
        name: "@cpu-emulation",
        calls: &[
            "modify_ldt",
            "subpage_prot",
            "switch_endian",
            "vm86",
            "vm86old",
        ],
    },
    // unused interfaces, attack surface only.
    Group {
        name: "@obsolete",
        calls: &[
            "_sysctl",
            "uselib",
            "ustat",
            "sysfs",
            "afs_syscall",
            "getpmsg",
            "putpmsg",
            "tuxcall",
            "security",
            "vserver",
        ],
    },
    // opens host files by inode handle, bypassing the mount tree (the 'shocker' escape).
    Group {
        name: "@handles",
        calls: &["open_by_handle_at"],
    },
    // loads programs into the host kernel and could detach the device policy.
    Group {
        name: "@bpf",
        calls: &["bpf"],
    },
    // observes the host and has a history of privilege escalations.
    Group {
        name: "@perf",
        calls: &["perf_event_open"],
    },
    // quotas of host file systems.
    Group {
        name: "@quota",
        calls: &["quotactl", "quotactl_fd"],
    },
    // process accounting is host-wide.
    Group {
        name: "@accounting",
        calls: &["acct"],
    },
    // watches the whole host file system.
    Group {
        name: "@fanotify",
        calls: &["fanotify_init", "fanotify_mark"],
    },
    // kernel profiling and nfsd control.
    Group {
        name: "@misc-host",
        calls: &["lookup_dcookie", "nfsservctl"],
    },
    // only as far as DENIED_WHEN says (see there).
    Group {
        name: "@userfaultfd",
        calls: &["userfaultfd"],
    },
];

/// Calls of `DENIED` refused only with some arguments: (call, argument, mask,
/// value) — refused when `arg & mask == value`.
pub const DENIED_WHEN: &[(&str, u8, u64, u64)] = &[
    // A userfaultfd that also handles faults in kernel mode lets its owner stall
    // the kernel mid-copy, the classic way to widen a kernel race into an exploit;
    // one limited to user-mode faults (UFFD_USER_MODE_ONLY) is harmless.
    ("userfaultfd", 0, 1, 0),
];

/// The policy after --system-call-filter: calls refused always, and calls refused
/// only with some arguments (call number → (argument, mask, value)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Denied {
    pub always: BTreeSet<i64>,
    pub when: BTreeMap<i64, (u8, u64, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("unknown system call or group {0:?}")]
    Unknown(String),
    #[error("building the filter: {0}")]
    Build(String),
    #[error("installing the filter: {0}")]
    Install(String),
}

fn number(name: &str) -> Option<i64> {
    SYSCALLS.iter().find(|(n, _)| *n == name).map(|&(_, nr)| nr)
}

/// Expands a name (a call, or a group of `DENIED`) to the calls that exist on this
/// architecture.
fn expand(name: &str) -> Result<Vec<i64>, SeccompError> {
    if name.starts_with('@') {
        let g = DENIED
            .iter()
            .find(|g| g.name == name)
            .ok_or_else(|| SeccompError::Unknown(name.to_string()))?;
        return Ok(g.calls.iter().filter_map(|c| number(c)).collect());
    }
    number(name)
        .map(|n| vec![n])
        .ok_or_else(|| SeccompError::Unknown(name.to_string()))
}

/// The policy, after --system-call-filter: `allow` takes calls off the table,
/// `deny` adds them unconditionally (and wins, as in nspawn).
pub fn denied(allow: &[String], deny: &[String]) -> Result<Denied, SeccompError> {
    let mut d = Denied::default();
    for n in DENIED
        .iter()
        .flat_map(|g| g.calls.iter().filter_map(|c| number(c)))
    {
        match DENIED_WHEN.iter().find(|w| number(w.0) == Some(n)) {
            Some(&(_, arg, mask, value)) => {
                d.when.insert(n, (arg, mask, value));
            }
            None => {
                d.always.insert(n);
            }
        }
    }
    for a in allow {
        for n in expand(a)? {
            d.always.remove(&n);
            d.when.remove(&n);
        }
    }
    for x in deny {
        for n in expand(x)? {
            d.when.remove(&n);
            d.always.insert(n);
        }
    }
    Ok(d)
}

#[cfg(target_arch = "x86_64")]
const ARCH: TargetArch = TargetArch::x86_64;
#[cfg(target_arch = "aarch64")]
const ARCH: TargetArch = TargetArch::aarch64;

/// seccompiler compiles; installing is ours, because its apply_filter() also sets
/// no_new_privs, which would break the guest's setuid programs (su, sudo).
fn compile(filter: SeccompFilter) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let prog: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SeccompError::Build(e.to_string()))?;
    Ok(prog
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect())
}

fn deny_filter(denied: &Denied) -> Result<Vec<libc::sock_filter>, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        denied.always.iter().map(|&n| (n, vec![])).collect();
    for (&n, &(arg, mask, value)) in &denied.when {
        let cond = SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(mask),
            value,
        )
        .map_err(|e| SeccompError::Build(e.to_string()))?;
        let rule = SeccompRule::new(vec![cond]).map_err(|e| SeccompError::Build(e.to_string()))?;
        rules.insert(n, vec![rule]);
    }
    compile(
        SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EPERM as u32),
            ARCH,
        )
        .map_err(|e| SeccompError::Build(e.to_string()))?,
    )
}

fn audit_filter() -> Result<Vec<libc::sock_filter>, SeccompError> {
    let cond = |arg, val| {
        SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, val)
            .map_err(|e| SeccompError::Build(e.to_string()))
    };
    let rule = SeccompRule::new(vec![
        cond(0, libc::AF_NETLINK as u64)?,
        cond(2, libc::NETLINK_AUDIT as u64)?,
    ])
    .map_err(|e| SeccompError::Build(e.to_string()))?;
    let rules = BTreeMap::from([(number("socket").expect("socket exists"), vec![rule])]);
    compile(
        SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(libc::EAFNOSUPPORT as u32),
            ARCH,
        )
        .map_err(|e| SeccompError::Build(e.to_string()))?,
    )
}

// --- the hand-written mount filter -------------------------------------------

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// mount(2) flags that mean "not a new file system": binds, remounts, moves and
/// propagation changes act on mounts that exist (whose read-only and masking state
/// the locked mount tree protects).
pub const EXISTING_MOUNT_FLAGS: u32 = (libc::MS_BIND
    | libc::MS_REMOUNT
    | libc::MS_MOVE
    | libc::MS_SHARED
    | libc::MS_PRIVATE
    | libc::MS_SLAVE
    | libc::MS_UNBINDABLE) as u32;

const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Offsets in struct seccomp_data.
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
const OFF_ARG3_LO: u32 = 16 + 3 * 8; // little endian: the low word first

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The instructions of filter 3 (see the module comment).
pub fn mount_filter() -> Vec<libc::sock_filter> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_JSET, BPF_K, BPF_LD, BPF_RET, BPF_W};
    let ld = (BPF_LD | BPF_W | BPF_ABS) as u16;
    let jeq = (BPF_JMP | BPF_JEQ | BPF_K) as u16;
    let jset = (BPF_JMP | BPF_JSET | BPF_K) as u16;
    let ret = (BPF_RET | BPF_K) as u16;
    let nr = |n: &str| number(n).expect("mount API call exists") as u32;
    let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    vec![
        // 0: another ABI is filter 1's business (it kills).
        stmt(ld, OFF_ARCH),
        jump(jeq, AUDIT_ARCH, 1, 0),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        // 3
        stmt(ld, OFF_NR),
        jump(jset, X32_SYSCALL_BIT, 0, 1),
        stmt(ret, enosys),
        // 6: the new mount API: fall back to mount(2), which we can see into.
        jump(jeq, nr("fsopen"), 3, 0),
        jump(jeq, nr("fspick"), 2, 0),
        jump(jeq, nr("fsconfig"), 1, 0),
        jump(jeq, nr("fsmount"), 0, 1),
        stmt(ret, enosys),
        // 11
        jump(jeq, nr("mount"), 1, 0),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        // 13: mount(2): existing mounts pass, new file systems ask the supervisor.
        stmt(ld, OFF_ARG3_LO),
        jump(jset, EXISTING_MOUNT_FLAGS, 0, 1),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        stmt(ret, libc::SECCOMP_RET_USER_NOTIF),
    ]
}

fn install_raw(prog: &[libc::sock_filter], flags: libc::c_ulong) -> Result<i64, SeccompError> {
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: fprog points at `prog`, alive for the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    if r < 0 {
        return Err(SeccompError::Install(
            std::io::Error::last_os_error().to_string(),
        ));
    }
    Ok(r)
}

/// Installs the three filters on the calling thread; returns filter 3's listener,
/// for the supervisor. The caller keeps CAP_SYS_ADMIN, so no_new_privs is not
/// needed (the guest's setuid programs keep working).
pub fn install(denied: &Denied) -> Result<OwnedFd, SeccompError> {
    for prog in [deny_filter(denied)?, audit_filter()?] {
        install_raw(&prog, 0)?;
    }
    let fd = install_raw(&mount_filter(), libc::SECCOMP_FILTER_FLAG_NEW_LISTENER)?;
    // SAFETY: the kernel returned a new listener fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_names_real_calls() {
        let d = denied(&[], &[]).unwrap();
        let all = &d.always;
        for must in [
            "kexec_load",
            "open_by_handle_at",
            "init_module",
            "bpf",
            "keyctl",
            "perf_event_open",
            "acct",
            "swapon",
        ] {
            assert!(all.contains(&number(must).unwrap()), "{must} is not denied");
        }
        // Every group has at least one call on every architecture we build for.
        for g in DENIED {
            assert!(
                g.calls.iter().any(|c| number(c).is_some()),
                "{} is empty here",
                g.name
            );
        }
        // Calls systemd needs are not in the table.
        for keep in [
            "mount",
            "umount2",
            "unshare",
            "setns",
            "pivot_root",
            "reboot",
            "seccomp",
            "ptrace",
        ] {
            assert!(
                !all.contains(&number(keep).unwrap()),
                "{keep} must stay allowed"
            );
        }
    }

    #[test]
    fn system_call_filter_adjusts_the_table() {
        let keyctl = number("keyctl").unwrap();
        let ptrace = number("ptrace").unwrap();
        let s = denied(&["@keyring".into()], &["ptrace".into()]).unwrap();
        assert!(!s.always.contains(&keyctl));
        assert!(s.always.contains(&ptrace));
        // Deny wins over allow, as in nspawn.
        let s = denied(&["keyctl".into()], &["keyctl".into()]).unwrap();
        assert!(s.always.contains(&keyctl));
        assert!(matches!(
            denied(&["nope".into()], &[]),
            Err(SeccompError::Unknown(_))
        ));
        assert!(matches!(
            denied(&[], &["@nope".into()]),
            Err(SeccompError::Unknown(_))
        ));
        // userfaultfd: refused for kernel faults only; the user can allow it fully
        // or deny it fully.
        let uffd = number("userfaultfd").unwrap();
        let d = denied(&[], &[]).unwrap();
        assert_eq!(d.when.get(&uffd), Some(&(0, 1, 0)));
        assert!(!d.always.contains(&uffd));
        assert!(!denied(&["userfaultfd".into()], &[])
            .unwrap()
            .when
            .contains_key(&uffd));
        let d = denied(&[], &["userfaultfd".into()]).unwrap();
        assert!(d.always.contains(&uffd) && !d.when.contains_key(&uffd));
    }

    #[test]
    fn jumps_stay_inside_the_mount_filter() {
        let f = mount_filter();
        assert!(f.len() < 64);
        for (i, ins) in f.iter().enumerate() {
            if ins.code & 0x07 == libc::BPF_JMP as u16 && ins.code & 0xf0 != 0 {
                assert!(
                    i + 1 + (ins.jt.max(ins.jf) as usize) < f.len(),
                    "jump at {i} leaves the program"
                );
            }
        }
    }

    #[test]
    fn filters_compile() {
        deny_filter(&denied(&[], &[]).unwrap()).unwrap();
        audit_filter().unwrap();
    }
}
