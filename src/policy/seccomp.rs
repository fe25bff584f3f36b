//! The guest's system call policy.
//!
//! A deny list, as a readable table of groups: the guest is a whole OS whose
//! systemd sandboxes its services with mount, unshare, setns, seccomp…, so it keeps
//! everything except what reaches past the container into the host kernel (nspawn's
//! exclusions). Three filters, chained into one program (`Filters::chained`)
//! that is installed last thing before exec:
//!
//! 1. `DENIED` → EPERM (a binary search over the numbers; a foreign ABI kills
//!    the process, since its system call numbers would dodge the table);
//! 2. socket(AF_NETLINK, *, NETLINK_AUDIT) → EAFNOSUPPORT, as nspawn does: audit is
//!    not namespaced, and the guest's systemd then knows to do without it;
//! 3. mounts of *new* file systems (mount(2) without MS_BIND, MS_REMOUNT, MS_MOVE or
//!    a propagation flag) go to the supervisor (SECCOMP_RET_USER_NOTIF), which
//!    refuses cgroup v1 and the like, builds procfs and sysfs instances with the
//!    container's masks itself — a fresh, unmasked procfs is a way out for a
//!    real-root guest — and performs the harmless ones itself (see
//!    mountguard.rs); so does bpf(2) (`BROKERED`), of which the supervisor
//!    serves only device programs (bpfbroker.rs). The new mount API's fsopen/fspick/fsconfig/fsmount return
//!    ENOSYS, so callers fall back to mount(2); x32 calls (a second numbering of the
//!    x86_64 ABI) return ENOSYS.
//!
//! `--system-call-filter=LIST` takes calls off the deny list; `~LIST` adds to it.
//!
//! This module compiles the three programs (`filters()`, a few µs, by hand:
//! a general filter compiler emits the deny table as a list, which the kernel
//! takes 2-3 times as long to install); the child installs
//! them (container/mod.rs) and the tests run them through a classic-BPF
//! interpreter, so what each call meets is checked without a kernel.

use crate::plan::SyscallChange;
use crate::sys::seccomp::Insn;
use std::collections::{BTreeMap, BTreeSet};

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
    // loads programs into the host kernel and could detach the device policy;
    // brokered (see BROKERED): the supervisor loads device programs for the guest.
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

/// Calls of `DENIED` that are not refused outright but go to the supervisor
/// (filter 3), which makes them for the guest where that is safe: bpf(2) for
/// cgroup device programs, which a nested container, systemd's DevicePolicy=
/// and crun need, and which can only narrow the container's device policy.
/// `--system-call-filter=bpf` lets them through unbrokered; `~bpf` refuses them.
pub const BROKERED: &[&str] = &["bpf"];

/// The policy after --system-call-filter: calls refused always, calls refused
/// only with some arguments (call number → (argument, mask, value)), and calls
/// the supervisor answers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Denied {
    pub always: BTreeSet<i64>,
    pub when: BTreeMap<i64, (u8, u64, u64)>,
    pub brokered: BTreeSet<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("unknown system call or group {0:?}")]
    Unknown(String),
    #[error("building the filter: {0}")]
    Build(String),
}

/// The number of a system call on this architecture (names as in the kernel's
/// tables, from the syscalls crate): a binary search of `BY_NAME`.
fn number(name: &str) -> Option<i64> {
    BY_NAME
        .binary_search_by(|&id| call_name(id).as_bytes().cmp(name.as_bytes()))
        .ok()
        .map(|i| i64::from(BY_NAME[i]))
}

const fn call_name(id: u16) -> &'static str {
    match syscalls::Sysno::new(id as usize) {
        Some(call) => call.name(),
        None => "",
    }
}

/// The numbers of every system call of this architecture, sorted by the
/// call's name when nixrun is compiled. The syscalls crate's `FromStr`
/// compares a name with each of its ~380 names in turn: the ~60 names of the
/// tables here took ~20 µs of every start that way (the `policy` phase,
/// 56 → 37 µs). Numbers, not names: a table of pointers would be relocated at
/// every start.
static BY_NAME: [u16; syscalls::Sysno::count()] = by_name();

const fn by_name() -> [u16; syscalls::Sysno::count()] {
    let mut out = [0; syscalls::Sysno::count()];
    let mut n = 0;
    let mut id = syscalls::Sysno::first().id() as u16;
    while id as i32 <= syscalls::Sysno::last().id() {
        // The table has gaps (numbers no call has on this architecture).
        if syscalls::Sysno::new(id as usize).is_some() {
            // Insertion sort: const fn has no sort, and this runs once, in
            // the compiler.
            let name = call_name(id).as_bytes();
            let mut i = n;
            while i > 0 && bytes_before(name, call_name(out[i - 1]).as_bytes()) {
                out[i] = out[i - 1];
                i -= 1;
            }
            out[i] = id;
            n += 1;
        }
        id += 1;
    }
    out
}

/// `a < b` as `[u8]`'s `Ord` has it (bytewise; a prefix first), for const fn.
const fn bytes_before(a: &[u8], b: &[u8]) -> bool {
    let mut i = 0;
    while i < a.len() && i < b.len() {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
        i += 1;
    }
    a.len() < b.len()
}

/// Expands a name (a call, or a group of `DENIED`) to the calls that exist on this
/// architecture.
pub fn expand(name: &str) -> Result<Vec<i64>, SeccompError> {
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
pub fn denied(change: &SyscallChange) -> Denied {
    let mut d = Denied::default();
    // Names are looked up once each: a lookup compares against the whole
    // table of names (~20 µs of a start when done per denied call).
    let brokered: Vec<i64> = BROKERED.iter().filter_map(|b| number(b)).collect();
    let when: Vec<(i64, (u8, u64, u64))> = DENIED_WHEN
        .iter()
        .filter_map(|&(name, arg, mask, value)| Some((number(name)?, (arg, mask, value))))
        .collect();
    for n in DENIED
        .iter()
        .flat_map(|g| g.calls.iter().filter_map(|c| number(c)))
    {
        if brokered.contains(&n) {
            d.brokered.insert(n);
            continue;
        }
        match when.iter().find(|w| w.0 == n).map(|w| w.1) {
            Some((arg, mask, value)) => {
                d.when.insert(n, (arg, mask, value));
            }
            None => {
                d.always.insert(n);
            }
        }
    }
    for n in &change.allow {
        d.always.remove(n);
        d.when.remove(n);
        d.brokered.remove(n);
    }
    for &n in &change.deny {
        d.when.remove(&n);
        d.brokered.remove(&n);
        d.always.insert(n);
    }
    d
}

/// The three programs, in the order they are installed.
#[derive(Debug, Clone)]
pub struct Filters {
    pub deny: Vec<Insn>,
    pub audit: Vec<Insn>,
    /// Installed with a listener: its USER_NOTIF calls go to the supervisor.
    pub mount: Vec<Insn>,
}

pub fn filters(denied: &Denied) -> Result<Filters, SeccompError> {
    Ok(Filters {
        deny: deny_filter(denied)?,
        audit: audit_filter()?,
        mount: mount_filter(&denied.brokered),
    })
}

impl Filters {
    /// The programs as one, each's "allow" a jump to the next one's start:
    /// what the guest's start installs (container/mod.rs). The kernel runs
    /// every new filter once per call number of each ABI to fill its cache,
    /// so one filter installs in about a third of the time of three, and a
    /// call is one filter run instead of three. The same answers, with one
    /// difference that only `--system-call-filter=~` can make: where two
    /// parts refuse a call with different errnos, the kernel would give the
    /// last-installed part's, the chain gives the first's (the deny list's
    /// EPERM, for a call the user added to it).
    pub fn chained(&self, with_mount: bool) -> Result<Vec<Insn>, SeccompError> {
        let parts: &[&[Insn]] = if with_mount {
            &[&self.deny, &self.audit, &self.mount]
        } else {
            &[&self.deny, &self.audit]
        };
        let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
        for (k, part) in parts.iter().enumerate() {
            let last = k + 1 == parts.len();
            for (i, insn) in part.iter().enumerate() {
                if !last && insn.code == RET && insn.k == libc::SECCOMP_RET_ALLOW {
                    // Forward, to the first instruction after this part.
                    out.push(stmt(JA, (part.len() - i - 1) as u32));
                } else {
                    out.push(*insn);
                }
            }
        }
        within_kernel_limit(out, " chained")
    }
}

/// The deny filter as a binary search over the denied numbers, not a list:
/// the kernel runs a new filter once per system call number when it is
/// installed (to cache the calls whose answer does not depend on the
/// arguments), and the guest runs it on every call that is not cached. A
/// list of ~50 numbers costs every allowed call ~100 instructions, this
/// about a dozen; installing it took ~110 µs of each start as a list.
fn deny_filter(denied: &Denied) -> Result<Vec<Insn>, SeccompError> {
    // Runs of consecutive numbers denied outright are one leaf each; a call
    // denied depending on an argument is a leaf of its own.
    let mut leaves: Vec<Leaf> = Vec::new();
    for &n in &denied.always {
        match leaves.last_mut() {
            Some(Leaf::Range(_, hi)) if *hi + 1 == n => *hi = n,
            _ => leaves.push(Leaf::Range(n, n)),
        }
    }
    for (&n, &(arg, mask, value)) in &denied.when {
        if arg > 5 {
            return Err(SeccompError::Build(format!("no argument {arg}")));
        }
        leaves.push(Leaf::When(n, arg, mask, value));
    }
    leaves.sort_by_key(Leaf::low);
    let mut prog = vec![
        // Another ABI numbers its calls differently and would dodge the table.
        stmt(LD, OFF_ARCH),
        jump(JEQ, AUDIT_ARCH, 1, 0),
        stmt(RET, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(LD, OFF_NR),
    ];
    if leaves.is_empty() {
        prog.push(stmt(RET, libc::SECCOMP_RET_ALLOW));
    } else {
        prog.extend(search(&leaves));
    }
    within_kernel_limit(prog, "")
}

/// PROG, unless it is longer than the kernel takes (BPF_MAXINSNS); WHAT
/// follows "instructions" in the error.
fn within_kernel_limit(prog: Vec<Insn>, what: &str) -> Result<Vec<Insn>, SeccompError> {
    if prog.len() > usize::from(libc::BPF_MAXINSNS as u16) {
        return Err(SeccompError::Build(format!(
            "{} instructions{what}, more than the kernel's {}",
            prog.len(),
            libc::BPF_MAXINSNS
        )));
    }
    Ok(prog)
}

/// One leaf of the deny filter's search tree, by system call number.
#[derive(Debug, Clone, Copy)]
enum Leaf {
    /// These numbers (inclusive) are refused.
    Range(i64, i64),
    /// This number is refused when `args[arg] & mask == value`.
    When(i64, u8, u64, u64),
}

impl Leaf {
    fn low(&self) -> i64 {
        match *self {
            Leaf::Range(lo, _) | Leaf::When(lo, ..) => lo,
        }
    }
}

const LD: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JGT: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const AND: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

/// The code for `leaves` (sorted, disjoint), the call number in the
/// accumulator; every path ends in a return, so subtrees are laid out one
/// after the other and jumps only go forward, as classic BPF requires.
fn search(leaves: &[Leaf]) -> Vec<Insn> {
    if let [leaf] = leaves {
        return match *leaf {
            Leaf::Range(lo, hi) if lo == hi => vec![
                jump(JEQ, lo as u32, 0, 1),
                stmt(RET, EPERM),
                stmt(RET, libc::SECCOMP_RET_ALLOW),
            ],
            Leaf::Range(lo, hi) => vec![
                jump(JGE, lo as u32, 0, 2),
                jump(JGT, hi as u32, 1, 0),
                stmt(RET, EPERM),
                stmt(RET, libc::SECCOMP_RET_ALLOW),
            ],
            Leaf::When(n, arg, mask, value) => {
                // Both 32-bit halves of the argument must match.
                let off = 16 + 8 * u32::from(arg);
                let (lo, hi) = (|v: u64| v as u32, |v: u64| (v >> 32) as u32);
                vec![
                    jump(JEQ, n as u32, 0, 7),
                    stmt(LD, off + 4),
                    stmt(AND, hi(mask)),
                    jump(JEQ, hi(value), 0, 4),
                    stmt(LD, off),
                    stmt(AND, lo(mask)),
                    jump(JEQ, lo(value), 0, 1),
                    stmt(RET, EPERM),
                    stmt(RET, libc::SECCOMP_RET_ALLOW),
                ]
            }
        };
    }
    let (left, right) = leaves.split_at(leaves.len() / 2);
    let split = right[0].low() as u32;
    let (left, right) = (search(left), search(right));
    let mut out = Vec::with_capacity(left.len() + right.len() + 2);
    match u8::try_from(left.len()) {
        // Below the split: fall into the left subtree; else jump over it.
        Ok(skip) => out.push(jump(JGE, split, skip, 0)),
        // Too far for a conditional jump (8 bits): through a JA (32 bits).
        Err(_) => {
            out.push(jump(JGE, split, 0, 1));
            out.push(stmt(JA, left.len() as u32));
        }
    }
    out.extend(left);
    out.extend(right);
    out
}

/// socket(AF_NETLINK, *, NETLINK_AUDIT) → EAFNOSUPPORT (both compared as
/// ints, the low words).
fn audit_filter() -> Result<Vec<Insn>, SeccompError> {
    let socket = number("socket").expect("socket exists") as u32;
    Ok(vec![
        stmt(LD, OFF_ARCH),
        jump(JEQ, AUDIT_ARCH, 1, 0),
        stmt(RET, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(LD, OFF_NR),
        jump(JEQ, socket, 0, 5),
        stmt(LD, 16),
        jump(JEQ, libc::AF_NETLINK as u32, 0, 3),
        stmt(LD, 16 + 2 * 8),
        jump(JEQ, libc::NETLINK_AUDIT as u32, 0, 1),
        stmt(RET, libc::SECCOMP_RET_ERRNO | libc::EAFNOSUPPORT as u32),
        stmt(RET, libc::SECCOMP_RET_ALLOW),
    ])
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

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

/// The instructions of filter 3 (see the module comment), with the brokered
/// calls.
pub fn mount_filter(brokered: &BTreeSet<i64>) -> Vec<Insn> {
    mount_filter_ending(libc::SECCOMP_RET_USER_NOTIF, brokered)
}

/// Filter 3 for a process that joins a running container from outside
/// (`nixrunctl exec`): no supervisor listens for its notifications, so its
/// mounts of new file systems and brokered calls are refused outright (EPERM)
/// — stricter than for the guest's own processes, never looser.
pub fn mount_filter_refusing(brokered: &BTreeSet<i64>) -> Vec<Insn> {
    mount_filter_ending(libc::SECCOMP_RET_ERRNO | libc::EPERM as u32, brokered)
}

/// The three programs for a process joining the container from outside.
pub fn filters_for_joining(denied: &Denied) -> Result<Filters, SeccompError> {
    Ok(Filters {
        deny: deny_filter(denied)?,
        audit: audit_filter()?,
        mount: mount_filter_refusing(&denied.brokered),
    })
}

fn mount_filter_ending(new_file_system: u32, brokered: &BTreeSet<i64>) -> Vec<Insn> {
    let (ld, jeq, jset, ret) = (LD, JEQ, JSET, RET);
    let nr = |n: &str| number(n).expect("mount API call exists") as u32;
    let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    let mut prog = vec![
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
    ];
    // 11: the brokered calls ask the supervisor, whatever their arguments.
    for &b in brokered {
        prog.push(jump(jeq, b as u32, 0, 1));
        prog.push(stmt(ret, new_file_system));
    }
    prog.extend([
        jump(jeq, nr("mount"), 1, 0),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        // mount(2): existing mounts pass, new file systems ask the supervisor.
        stmt(ld, OFF_ARG3_LO),
        jump(jset, EXISTING_MOUNT_FLAGS, 0, 1),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        stmt(ret, new_file_system),
    ]);
    prog
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_to_the_syscalls_crates_numbers() {
        // Sorted as the binary search needs, no name twice.
        assert!(BY_NAME
            .windows(2)
            .all(|w| call_name(w[0]).as_bytes() < call_name(w[1]).as_bytes()));
        let first = syscalls::Sysno::first().id();
        let last = syscalls::Sysno::last().id();
        let calls: Vec<_> = (first..=last)
            .filter_map(|id| syscalls::Sysno::new(id as usize))
            .collect();
        for call in &calls {
            assert_eq!(number(call.name()), Some(i64::from(call.id())), "{call}");
        }
        assert_eq!(calls.len(), BY_NAME.len());
        for unknown in ["", "mount_", "moun", "zzz", "@mount", "MOUNT"] {
            assert_eq!(number(unknown), None, "{unknown:?}");
        }
    }

    /// `allow`/`deny` as --system-call-filter lists would give them.
    fn change(allow: &[&str], deny: &[&str]) -> Result<SyscallChange, SeccompError> {
        let mut c = SyscallChange::default();
        for a in allow {
            c.allow.extend(expand(a)?);
        }
        for d in deny {
            c.deny.extend(expand(d)?);
        }
        Ok(c)
    }

    fn default_denied() -> Denied {
        denied(&SyscallChange::default())
    }

    #[test]
    fn the_table_names_real_calls() {
        let d = default_denied();
        let all = &d.always;
        for must in [
            "kexec_load",
            "open_by_handle_at",
            "init_module",
            "keyctl",
            "perf_event_open",
            "acct",
            "swapon",
        ] {
            assert!(all.contains(&number(must).unwrap()), "{must} is not denied");
        }
        // bpf goes to the supervisor instead (and is in no filter's allow path).
        let bpf = number("bpf").unwrap();
        assert!(d.brokered.contains(&bpf) && !all.contains(&bpf));
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
        let s = denied(&change(&["@keyring"], &["ptrace"]).unwrap());
        assert!(!s.always.contains(&keyctl));
        assert!(s.always.contains(&ptrace));
        // Deny wins over allow, as in nspawn.
        let s = denied(&change(&["keyctl"], &["keyctl"]).unwrap());
        assert!(s.always.contains(&keyctl));
        assert!(matches!(
            change(&["nope"], &[]),
            Err(SeccompError::Unknown(_))
        ));
        assert!(matches!(
            change(&[], &["@nope"]),
            Err(SeccompError::Unknown(_))
        ));
        // userfaultfd: refused for kernel faults only; the user can allow it fully
        // or deny it fully.
        let uffd = number("userfaultfd").unwrap();
        let d = default_denied();
        assert_eq!(d.when.get(&uffd), Some(&(0, 1, 0)));
        assert!(!d.always.contains(&uffd));
        assert!(!denied(&change(&["userfaultfd"], &[]).unwrap())
            .when
            .contains_key(&uffd));
        let d = denied(&change(&[], &["userfaultfd"]).unwrap());
        assert!(d.always.contains(&uffd) && !d.when.contains_key(&uffd));
    }

    // --- a classic-BPF interpreter, as the kernel runs seccomp programs -------

    /// struct seccomp_data for one call of the native ABI (or `arch`).
    struct Call {
        nr: i32,
        arch: u32,
        args: [u64; 6],
    }

    fn call(name: &str, args: &[u64]) -> Call {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        Call {
            nr: number(name).unwrap_or_else(|| panic!("no call {name}")) as i32,
            arch: AUDIT_ARCH,
            args: a,
        }
    }

    impl Call {
        /// The 32-bit word at `off` of seccomp_data, as BPF_LD|BPF_W|BPF_ABS reads it.
        fn word(&self, off: u32) -> u32 {
            let mut data = Vec::with_capacity(64);
            data.extend_from_slice(&self.nr.to_ne_bytes());
            data.extend_from_slice(&self.arch.to_ne_bytes());
            data.extend_from_slice(&0u64.to_ne_bytes()); // instruction_pointer
            for a in self.args {
                data.extend_from_slice(&a.to_ne_bytes());
            }
            let o = off as usize;
            assert!(
                o % 4 == 0 && o + 4 <= data.len(),
                "load outside seccomp_data: {off}"
            );
            u32::from_ne_bytes(data[o..o + 4].try_into().unwrap())
        }
    }

    /// Runs a program to its return value; panics on anything the kernel's
    /// checker would refuse (a jump out of the program, an unknown opcode).
    fn run(prog: &[Insn], c: &Call) -> u32 {
        use libc::*;
        let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
        let mut pc = 0usize;
        loop {
            let i = prog
                .get(pc)
                .unwrap_or_else(|| panic!("ran off the end at {pc}"));
            pc += 1;
            let code = u32::from(i.code);
            let src = if code & 0x08 == BPF_X { x } else { i.k };
            match code & 0x07 {
                BPF_LD => match code & 0xe0 {
                    BPF_ABS => a = c.word(i.k),
                    BPF_IMM => a = i.k,
                    BPF_MEM => a = mem[i.k as usize],
                    m => panic!("ld mode {m:#x}"),
                },
                BPF_LDX => match code & 0xe0 {
                    BPF_IMM => x = i.k,
                    BPF_MEM => x = mem[i.k as usize],
                    m => panic!("ldx mode {m:#x}"),
                },
                BPF_ST => mem[i.k as usize] = a,
                BPF_STX => mem[i.k as usize] = x,
                BPF_ALU => {
                    a = match code & 0xf0 {
                        BPF_ADD => a.wrapping_add(src),
                        BPF_SUB => a.wrapping_sub(src),
                        BPF_AND => a & src,
                        BPF_OR => a | src,
                        BPF_LSH => a << src,
                        BPF_RSH => a >> src,
                        op => panic!("alu op {op:#x}"),
                    }
                }
                BPF_JMP => {
                    let off = if code & 0xf0 == BPF_JA {
                        i.k as usize
                    } else {
                        let taken = match code & 0xf0 {
                            BPF_JEQ => a == src,
                            BPF_JGT => a > src,
                            BPF_JGE => a >= src,
                            BPF_JSET => a & src != 0,
                            op => panic!("jmp op {op:#x}"),
                        };
                        usize::from(if taken { i.jt } else { i.jf })
                    };
                    pc += off;
                    assert!(pc < prog.len(), "jump out of the program");
                }
                BPF_RET => return if code & 0x18 == BPF_A { a } else { i.k },
                BPF_MISC => {
                    if code & 0xf8 == BPF_TAX {
                        x = a
                    } else {
                        a = x
                    }
                }
                cl => panic!("class {cl:#x}"),
            }
        }
    }

    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    const NOTIFY: u32 = libc::SECCOMP_RET_USER_NOTIF;

    fn errno(e: i32) -> u32 {
        libc::SECCOMP_RET_ERRNO | e as u32
    }

    /// What the kernel answers with `progs` installed in this order: every
    /// filter runs, the strongest action wins, and of equal ones the
    /// last-installed filter's (kernel/seccomp.c, seccomp_run_filters).
    fn stacked(progs: &[&[Insn]], c: &Call) -> u32 {
        let strength = |r: u32| (r & libc::SECCOMP_RET_ACTION_FULL) as i32;
        let mut ret = ALLOW;
        for p in progs.iter().rev() {
            let r = run(p, c);
            if strength(r) < strength(ret) {
                ret = r;
            }
        }
        ret
    }

    #[test]
    fn the_chained_filter_answers_as_the_three_installed_one_after_another() {
        let denied = default_denied();
        let f = filters(&denied).unwrap();
        let chain = f.chained(true).unwrap();
        let without = f.chained(false).unwrap();
        let parts: [&[Insn]; 3] = [&f.deny, &f.audit, &f.mount];
        // Every number of the native ABI and of x32, a foreign ABI, and the
        // arguments each part looks at.
        let mut calls = Vec::new();
        for nr in (0..600).chain((0..600).map(|n| n | X32_SYSCALL_BIT as i32)) {
            for args in [
                [0u64; 6],
                [
                    libc::AF_NETLINK as u64,
                    0,
                    libc::NETLINK_AUDIT as u64,
                    0,
                    0,
                    0,
                ],
                [0, 0, 0, libc::MS_BIND, 0, 0],
                [1, 1, 1, 1, 1, 1],
            ] {
                calls.push(Call {
                    nr,
                    arch: AUDIT_ARCH,
                    args,
                });
            }
        }
        calls.push(Call {
            nr: 1,
            arch: 0x4000_0003, // AUDIT_ARCH_I386
            args: [0; 6],
        });
        let mut seen = BTreeSet::new();
        for c in &calls {
            let want = stacked(&parts, c);
            assert_eq!(run(&chain, c), want, "call {:#x} {:?}", c.nr, c.args);
            assert_eq!(
                run(&without, c),
                stacked(&parts[..2], c),
                "call {:#x} {:?} without the mount part",
                c.nr,
                c.args
            );
            seen.insert(want);
        }
        // The comparison covered every kind of answer.
        for answer in [
            ALLOW,
            NOTIFY,
            errno(libc::EPERM),
            errno(libc::ENOSYS),
            errno(libc::EAFNOSUPPORT),
            libc::SECCOMP_RET_KILL_PROCESS,
        ] {
            assert!(seen.contains(&answer), "no call answered {answer:#x}");
        }
        assert!(chain.len() < f.deny.len() + f.audit.len() + f.mount.len() + 1);
    }

    #[test]
    fn the_mount_filter_sends_only_new_file_systems_to_the_supervisor() {
        let f = mount_filter(&default_denied().brokered);
        let ms = |flags: u64| call("mount", &[0, 0, 0, flags, 0]);
        assert_eq!(run(&f, &ms(libc::MS_BIND | libc::MS_REC)), ALLOW, "bind");
        assert_eq!(
            run(&f, &ms(libc::MS_REMOUNT | libc::MS_RDONLY)),
            ALLOW,
            "remount"
        );
        assert_eq!(run(&f, &ms(libc::MS_MOVE)), ALLOW, "move");
        assert_eq!(
            run(&f, &ms(libc::MS_SLAVE | libc::MS_REC)),
            ALLOW,
            "propagation"
        );
        assert_eq!(run(&f, &ms(0)), NOTIFY, "a new file system");
        assert_eq!(
            run(&f, &ms(libc::MS_NOSUID | libc::MS_NODEV | libc::MS_RDONLY)),
            NOTIFY,
            "a new file system with flags"
        );
        // Flags in the high word cannot hide a new mount: mount(2) takes an
        // unsigned long, and only the low word holds MS_* bits.
        assert_eq!(run(&f, &ms(1 << 40)), NOTIFY);
        for new_api in ["fsopen", "fspick", "fsconfig", "fsmount"] {
            assert_eq!(
                run(&f, &call(new_api, &[])),
                errno(libc::ENOSYS),
                "{new_api}"
            );
        }
        for other in ["umount2", "open_tree", "move_mount", "read", "unshare"] {
            assert_eq!(run(&f, &call(other, &[])), ALLOW, "{other}");
        }
        // bpf(2), whatever it asks, goes to the supervisor.
        for cmd in [0u64, 5, 8, 1 << 40] {
            assert_eq!(run(&f, &call("bpf", &[cmd])), NOTIFY, "bpf {cmd}");
        }
        // x32: the same calls under another numbering.
        let mut x32 = ms(0);
        x32.nr |= X32_SYSCALL_BIT as i32;
        assert_eq!(run(&f, &x32), errno(libc::ENOSYS), "x32 mount");
        // Another ABI is the deny filter's business.
        let mut foreign = ms(0);
        foreign.arch = 0x4000_0003; // AUDIT_ARCH_I386
        assert_eq!(run(&f, &foreign), ALLOW);
    }

    #[test]
    fn joining_processes_get_eperm_where_the_guest_asks_the_supervisor() {
        let f = mount_filter_refusing(&default_denied().brokered);
        let ms = |flags: u64| call("mount", &[0, 0, 0, flags, 0]);
        assert_eq!(run(&f, &ms(0)), errno(libc::EPERM));
        assert_eq!(run(&f, &call("bpf", &[5])), errno(libc::EPERM));
        assert_eq!(run(&f, &ms(libc::MS_BIND)), ALLOW);
        assert_eq!(run(&f, &call("fsopen", &[])), errno(libc::ENOSYS));
    }

    #[test]
    fn the_deny_filter_refuses_the_table_and_kills_foreign_abis() {
        let f = deny_filter(&default_denied()).unwrap();
        for denied_call in ["kexec_load", "init_module", "open_by_handle_at", "keyctl"] {
            assert_eq!(
                run(&f, &call(denied_call, &[])),
                errno(libc::EPERM),
                "{denied_call}"
            );
        }
        // bpf passes this one: filter 3 sends it to the supervisor.
        for allowed in [
            "read", "mount", "unshare", "setns", "ptrace", "reboot", "bpf",
        ] {
            assert_eq!(run(&f, &call(allowed, &[])), ALLOW, "{allowed}");
        }
        // userfaultfd for kernel faults is refused, UFFD_USER_MODE_ONLY is not.
        assert_eq!(run(&f, &call("userfaultfd", &[0])), errno(libc::EPERM));
        assert_eq!(run(&f, &call("userfaultfd", &[1])), ALLOW);
        let mut foreign = call("read", &[]);
        foreign.arch = 0x4000_0003; // AUDIT_ARCH_I386
        let action = run(&f, &foreign) & libc::SECCOMP_RET_ACTION_FULL;
        assert!(
            action == libc::SECCOMP_RET_KILL_PROCESS || action == libc::SECCOMP_RET_KILL_THREAD,
            "a foreign ABI must be killed, got {action:#x}"
        );
        // The user's --system-call-filter reaches the program.
        let f = deny_filter(&denied(&change(&["@keyring"], &["ptrace"]).unwrap())).unwrap();
        assert_eq!(run(&f, &call("keyctl", &[])), ALLOW);
        assert_eq!(run(&f, &call("ptrace", &[])), errno(libc::EPERM));
        // bpf: ~bpf refuses it outright, bpf lets it through unbrokered.
        let d = denied(&change(&[], &["bpf"]).unwrap());
        assert_eq!(
            run(&deny_filter(&d).unwrap(), &call("bpf", &[])),
            errno(libc::EPERM)
        );
        assert!(d.brokered.is_empty());
        let d = denied(&change(&["@bpf"], &[]).unwrap());
        assert_eq!(run(&mount_filter(&d.brokered), &call("bpf", &[5])), ALLOW);
        assert_eq!(run(&deny_filter(&d).unwrap(), &call("bpf", &[])), ALLOW);
    }

    #[test]
    fn the_audit_filter_refuses_only_audit_sockets() {
        let f = audit_filter().unwrap();
        let sock = |family: i32, proto: i32| {
            call(
                "socket",
                &[family as u64, libc::SOCK_RAW as u64, proto as u64],
            )
        };
        assert_eq!(
            run(&f, &sock(libc::AF_NETLINK, libc::NETLINK_AUDIT)),
            errno(libc::EAFNOSUPPORT)
        );
        assert_eq!(run(&f, &sock(libc::AF_NETLINK, libc::NETLINK_ROUTE)), ALLOW);
        assert_eq!(run(&f, &sock(libc::AF_INET, libc::NETLINK_AUDIT)), ALLOW);
    }

    /// What the deny filter must answer, from the policy itself.
    fn expected(d: &Denied, nr: i64, args: &[u64; 6]) -> u32 {
        if d.always.contains(&nr) {
            return errno(libc::EPERM);
        }
        match d.when.get(&nr) {
            Some(&(arg, mask, value)) if args[usize::from(arg)] & mask == value => {
                errno(libc::EPERM)
            }
            _ => ALLOW,
        }
    }

    #[test]
    fn the_deny_filter_answers_every_number_as_the_policy_says() {
        let every: Vec<i64> = (0..1024).collect();
        let scattered: Vec<i64> = (0..1024).step_by(3).collect();
        let mut many = default_denied();
        many.always.extend(&scattered);
        let mut when = default_denied();
        // A condition on both halves of an argument, and one on the high half.
        when.when.insert(
            number("ptrace").unwrap(),
            (2, 0x00ff_0000_00ff, 0x0012_0000_0003),
        );
        when.when.insert(number("kill").unwrap(), (5, 1 << 40, 0));
        let cases = [
            default_denied(),
            denied(&change(&["@keyring", "@clock"], &["ptrace", "@obsolete"]).unwrap()),
            // Hundreds of scattered numbers: the left subtrees outgrow an
            // 8-bit jump.
            many,
            when,
            Denied::default(),
        ];
        let argsets = [
            [0u64; 6],
            [1, 0, 0x0012_0000_0003, 0, 0, 0],
            [0, 0, 0x0013_0000_0003, 0, 0, 1 << 40],
            [u64::MAX; 6],
        ];
        for d in &cases {
            let f = deny_filter(d).unwrap();
            for &nr in &every {
                for args in &argsets {
                    let c = Call {
                        nr: nr as i32,
                        arch: AUDIT_ARCH,
                        args: *args,
                    };
                    assert_eq!(run(&f, &c), expected(d, nr, args), "nr {nr}, args {args:?}");
                }
            }
            // x32 numbers are filter 3's business: allowed here.
            let c = Call {
                nr: (X32_SYSCALL_BIT | 101) as i32,
                arch: AUDIT_ARCH,
                args: [0; 6],
            };
            assert_eq!(run(&f, &c), ALLOW);
        }
        // A tree, not a list: no allowed call walks more than a few dozen
        // instructions (the list took ~110 for the default table).
        let f = deny_filter(&default_denied()).unwrap();
        assert!(f.len() < 200, "{} instructions", f.len());
    }

    #[test]
    fn all_three_filters_compile_and_fit() {
        let f = filters(&default_denied()).unwrap();
        for p in [&f.deny, &f.audit, &f.mount] {
            assert!(!p.is_empty() && p.len() < 4096);
        }
    }
}
