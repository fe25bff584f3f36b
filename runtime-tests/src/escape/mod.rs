//! `escape`: real attacks on the wall between a root guest and the host.
//!
//! NixOS containers run the guest as the host's real root (no user namespace)
//! with CAP_SYS_ADMIN, CAP_MKNOD and more, so what keeps it in is the runtime's
//! capability set, seccomp filter, read-only and masked mounts, device policy and
//! namespaces.  Each attack here goes at one part of that wall from inside and
//! prints exactly one line:
//!
//!   `blocked NAME[: how]`, `ESCAPED NAME: what happened`, or
//!   `error NAME: why the attack could not be carried out`.
//!
//! The same binary also runs under systemd-nspawn on shared test machines, where
//! several attacks do succeed, so every attack must be harmless when it succeeds:
//! it detects the ability without using it (open for writing but never write,
//! write back the value just read, pass an argument the kernel rejects only after
//! its permission check, undo every mount).  Each attack documents why it is
//! harmless next to its code.
//!
//! Each attack runs in a child process: a seccomp filter that kills (SIGSYS)
//! then ends only that attack, a hang is cut off by a timeout, and attacks that
//! mount things first move into a private mount namespace so that nothing they
//! mount can be seen by, or outlive, anything else.

mod cgroup;
mod devices;
mod handle;
mod kernel;
mod nested;
mod procs;
mod store;
mod sys;
mod userns;
mod vfs;

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;

/// The verdict on one attack.  The detail says how it was blocked, what got
/// through, or what was missing to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Blocked(String),
    Escaped(String),
    Error(String),
}

impl Outcome {
    fn word(&self) -> &'static str {
        match self {
            Outcome::Blocked(_) => "blocked",
            Outcome::Escaped(_) => "ESCAPED",
            Outcome::Error(_) => "error",
        }
    }

    fn detail(&self) -> &str {
        match self {
            Outcome::Blocked(d) | Outcome::Escaped(d) | Outcome::Error(d) => d,
        }
    }
}

/// The output line for one attack: `WORD NAME` or `WORD NAME: detail`, always a
/// single line (control characters in the detail are escaped).
pub fn line(name: &str, outcome: &Outcome) -> String {
    let detail = one_line(outcome.detail());
    if detail.is_empty() {
        format!("{} {name}", outcome.word())
    } else {
        format!("{} {name}: {detail}", outcome.word())
    }
}

fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.trim().chars() {
        match ch {
            '\n' => out.push_str("\\n"),
            '\t' => out.push(' '),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// What one attack found, step by step.  An attack usually tries several ways;
/// one way through makes the whole attack ESCAPED, a way that could not be tried
/// makes it an error (unless another way escaped), and only when every way was
/// tried and stopped is it blocked.
#[derive(Debug, Default)]
pub struct Findings {
    blocked: Vec<String>,
    escaped: Vec<String>,
    errors: Vec<String>,
}

impl Findings {
    pub fn blocked(&mut self, s: impl Into<String>) {
        self.blocked.push(s.into());
    }

    pub fn escaped(&mut self, s: impl Into<String>) {
        self.escaped.push(s.into());
    }

    pub fn error(&mut self, s: impl Into<String>) {
        self.errors.push(s.into());
    }

    /// Records a syscall whose errno tells how far it got (see [`gate`]).
    pub fn gate(&mut self, what: &str, res: sys::SysResult<libc::c_long>, stops: &[Errno]) {
        match gate(&res, stops) {
            Gate::Stopped(e) => self.blocked(format!("{what}: {e:?}")),
            Gate::Reached(e) => self.escaped(format!(
                "{what}: passed the permission check ({e:?} from the code after it)"
            )),
            Gate::Passed => self.escaped(format!("{what}: succeeded")),
        }
    }

    /// Records a syscall that has no capability check before the code that
    /// rejects the argument, so that only a filter can stop it: any errno other
    /// than `stops` means no filter did.
    pub fn reach(&mut self, what: &str, res: sys::SysResult<libc::c_long>, stops: &[Errno]) {
        match gate(&res, stops) {
            Gate::Stopped(e) => self.blocked(format!("{what}: {e:?}")),
            Gate::Reached(e) => self.escaped(format!(
                "{what}: not filtered ({e:?} from the kernel's code behind the entry)"
            )),
            Gate::Passed => self.escaped(format!("{what}: succeeded")),
        }
    }

    pub fn outcome(self) -> Outcome {
        if !self.escaped.is_empty() {
            // What was stopped stays in the line too: it shows which parts of
            // the wall held.
            let mut d = self.escaped.join("; ");
            if !self.errors.is_empty() {
                d.push_str(&format!(" (not tried: {})", self.errors.join("; ")));
            }
            if !self.blocked.is_empty() {
                d.push_str(&format!(" (blocked: {})", self.blocked.join("; ")));
            }
            Outcome::Escaped(d)
        } else if !self.errors.is_empty() {
            let mut d = self.errors.join("; ");
            if !self.blocked.is_empty() {
                d.push_str(&format!(" (blocked: {})", self.blocked.join("; ")));
            }
            Outcome::Error(d)
        } else if self.blocked.is_empty() {
            Outcome::Error("the attack recorded no result".to_string())
        } else {
            Outcome::Blocked(self.blocked.join("; "))
        }
    }
}

/// How far a syscall got, read from its result.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// Refused at the door: seccomp, a missing capability, a masked path — one
    /// of the errnos the caller lists as meaning that.
    Stopped(Errno),
    /// Failed later, in code the kernel runs only after the permission check:
    /// the attack's deliberately invalid argument was looked at, so a valid one
    /// would have worked.
    Reached(Errno),
    Passed,
}

/// EPERM is what seccomp filters and capability checks return; ENOSYS is what a
/// filter returns for syscalls it does not know, and what the kernel returns for
/// syscalls it was built without.  Either way the attack cannot proceed.
pub const STOPS: &[Errno] = &[Errno::EPERM, Errno::ENOSYS];

pub fn gate<T>(res: &Result<T, Errno>, stops: &[Errno]) -> Gate {
    match res {
        Ok(_) => Gate::Passed,
        Err(e) if stops.contains(e) => Gate::Stopped(*e),
        Err(e) => Gate::Reached(*e),
    }
}

pub struct Attack {
    pub name: &'static str,
    run: fn() -> Outcome,
    /// Run in a private mount namespace (the attack mounts things).
    private_mounts: bool,
}

const fn attack(name: &'static str, run: fn() -> Outcome, private_mounts: bool) -> Attack {
    Attack {
        name,
        run,
        private_mounts,
    }
}

/// Every attack, in the order they run.
pub const ATTACKS: &[Attack] = &[
    attack("store-write", store::store_write, false),
    attack("store-remount", store::store_remount, true),
    attack("proc-mount", vfs::proc_mount, true),
    attack("sysfs-mount", vfs::sysfs_mount, true),
    attack("proc-sysrq", vfs::proc_sysrq, false),
    attack("proc-sys-kernel", vfs::proc_sys_kernel, false),
    attack("proc-kcore", vfs::proc_kcore, false),
    attack("chroot-breakout", vfs::chroot_breakout, true),
    attack("module-load", kernel::module_load, false),
    attack("kexec", kernel::kexec, false),
    attack("shocker", handle::shocker, false),
    attack("reboot", kernel::reboot, false),
    attack("mknod-disk", devices::mknod_disk, true),
    attack("mknod-char", devices::mknod_char, true),
    attack("keyring", kernel::keyring, false),
    attack("CVE-2019-5736", procs::cve_2019_5736, false),
    attack("CVE-2024-21626", procs::cve_2024_21626, false),
    attack("CVE-2022-0492", cgroup::cve_2022_0492, true),
    attack("cgroup-host-write", cgroup::cgroup_host_write, true),
    attack("ptrace-outside", procs::ptrace_outside, false),
    attack("clock", kernel::clock, false),
    attack("host-process", procs::host_process, false),
    attack("bpf", kernel::bpf, false),
    attack("perf_event_open", kernel::perf_event_open, false),
    attack("userfaultfd", kernel::userfaultfd, false),
    attack("ioperm", kernel::ioperm, false),
    attack("swapon", kernel::swapon, false),
    attack("acct", kernel::acct, false),
    attack("quotactl", kernel::quotactl, false),
    attack("fanotify", kernel::fanotify, false),
    attack("lookup_dcookie", kernel::lookup_dcookie, false),
    attack("nfsservctl", kernel::nfsservctl, false),
    attack("netlink-audit", kernel::netlink_audit, false),
    attack(
        "pidns-proc-core-pattern",
        nested::pidns_proc_core_pattern,
        true,
    ),
    attack("pidns-proc-sysrq", nested::pidns_proc_sysrq, true),
    attack("pidns-proc-kcore", nested::pidns_proc_kcore, true),
    attack("pidns-proc-unmask", nested::pidns_proc_unmask, true),
    attack(
        "userns-proc-core-pattern",
        nested::userns_proc_core_pattern,
        true,
    ),
    attack("netns-sysfs-knob", nested::netns_sysfs_knob, true),
    attack("bpf-device-helper", nested::bpf_device_helper, false),
    attack("bpf-device-widen", nested::bpf_device_widen, true),
    attack("bpf-foreign-program", nested::bpf_foreign_program, false),
    attack("userns-map-write", userns::map_write, false),
    attack("userns-map-host-root", userns::map_host_root, false),
    attack("userns-setgroups", userns::setgroups, false),
    attack("userns-host-root-files", userns::host_root_files, false),
];

/// No single attack should take long; a hang (e.g. a read that blocks) must not
/// stall the whole run.
const ATTACK_TIMEOUT: Duration = Duration::from_secs(30);

/// The fd of the pipe an attack's child reports through, so that the fd-leak
/// check can leave it out (-1 when the attack runs in-process).
static RESULT_PIPE: AtomicI32 = AtomicI32::new(-1);

pub fn result_pipe_fd() -> i32 {
    RESULT_PIPE.load(Ordering::SeqCst)
}

/// Which attacks `escape NAME...` selects; unknown names are an error.
pub fn select(names: &[String]) -> Result<Vec<&'static Attack>, String> {
    if names.is_empty() {
        return Ok(ATTACKS.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            ATTACKS
                .iter()
                .find(|a| a.name == n)
                .ok_or_else(|| format!("escape: unknown attack {n:?} (see escape --list)"))
        })
        .collect()
}

/// Runs the attacks, printing one line each as it finishes; returns whether all
/// were blocked.
pub fn run(attacks: &[&Attack]) -> bool {
    let mut all_blocked = true;
    for a in attacks {
        let outcome = run_one(a);
        all_blocked &= matches!(outcome, Outcome::Blocked(_));
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", line(a.name, &outcome));
        let _ = out.flush();
    }
    all_blocked
}

fn run_one(a: &Attack) -> Outcome {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid two-int array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return run_in_process(a, "pipe2 failed");
    }
    // SAFETY: pipe2 just returned these two fds.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let _ = std::io::stdout().flush();
    // SAFETY: the probe is single-threaded, so the child may run ordinary Rust
    // code (no lock can be held by a thread that does not exist in the child).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return run_in_process(a, "fork failed");
    }
    if pid == 0 {
        drop(rd);
        RESULT_PIPE.store(wr.as_raw_fd(), Ordering::SeqCst);
        let outcome = in_child(a);
        let mut f = std::fs::File::from(wr);
        let _ = f.write_all(encode(&outcome).as_bytes());
        drop(f);
        // SAFETY: leave without running the parent's exit handlers or flushing
        // its (already flushed) stdio buffers a second time.
        unsafe { libc::_exit(0) };
    }
    drop(wr);
    collect_child(a, pid, rd)
}

fn in_child(a: &Attack) -> Outcome {
    if a.private_mounts {
        // If this fails the attack still runs, in the container's namespace,
        // and undoes its own mounts (Scratch and each attack know how).
        let _ = sys::enter_private_mount_ns();
    }
    match std::panic::catch_unwind(a.run) {
        Ok(o) => o,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Outcome::Error(format!("the probe panicked: {msg}"))
        }
    }
}

fn run_in_process(a: &Attack, why: &str) -> Outcome {
    eprintln!("nixrun-probe: {why}; running {} in-process", a.name);
    match std::panic::catch_unwind(a.run) {
        Ok(o) => o,
        Err(_) => Outcome::Error("the probe panicked".to_string()),
    }
}

fn collect_child(a: &Attack, pid: libc::pid_t, rd: OwnedFd) -> Outcome {
    let mut report = Vec::new();
    let deadline = Instant::now() + ATTACK_TIMEOUT;
    let mut timed_out = false;
    let mut f = std::fs::File::from(rd);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: f.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis() as libc::c_int) };
        if n == 0 {
            timed_out = true;
            break;
        }
        if n < 0 {
            if Errno::last() == Errno::EINTR {
                continue;
            }
            break;
        }
        let mut buf = [0u8; 4096];
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => report.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if timed_out {
        // SAFETY: our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let mut status = 0;
    // SAFETY: reaping our own child; valid out pointer.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && Errno::last() == Errno::EINTR {}
    if timed_out {
        return Outcome::Error(format!(
            "{} did not finish within {} s",
            a.name,
            ATTACK_TIMEOUT.as_secs()
        ));
    }
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        return if sig == libc::SIGSYS {
            Outcome::Blocked("killed by SIGSYS (a seccomp filter killed the attempt)".to_string())
        } else {
            Outcome::Error(format!("the attack's process died of signal {sig}"))
        };
    }
    decode(&String::from_utf8_lossy(&report))
        .unwrap_or_else(|| Outcome::Error("the attack's process reported nothing".to_string()))
}

/// The child's report: the word, a newline, the detail.
fn encode(o: &Outcome) -> String {
    format!("{}\n{}", o.word(), o.detail())
}

fn decode(s: &str) -> Option<Outcome> {
    let (word, detail) = s.split_once('\n')?;
    let detail = detail.to_string();
    match word {
        "blocked" => Some(Outcome::Blocked(detail)),
        "ESCAPED" => Some(Outcome::Escaped(detail)),
        "error" => Some(Outcome::Error(detail)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_the_documented_shape() {
        assert_eq!(
            line("store-write", &Outcome::Blocked("EROFS".into())),
            "blocked store-write: EROFS"
        );
        assert_eq!(line("bpf", &Outcome::Blocked(String::new())), "blocked bpf");
        assert_eq!(
            line("kexec", &Outcome::Escaped("kexec_load: succeeded".into())),
            "ESCAPED kexec: kexec_load: succeeded"
        );
        assert_eq!(
            line("store-write", &Outcome::Error("/nix/store missing".into())),
            "error store-write: /nix/store missing"
        );
    }

    #[test]
    fn details_stay_on_one_line() {
        let l = line("x", &Outcome::Escaped("a\nb\tc\u{1}d".into()));
        assert_eq!(l, "ESCAPED x: a\\nb c\\x01d");
        assert!(!l.contains('\n'));
    }

    #[test]
    fn errnos_classify_by_where_the_kernel_stopped() {
        let r: Result<i64, Errno> = Err(Errno::EPERM);
        assert_eq!(gate(&r, STOPS), Gate::Stopped(Errno::EPERM));
        let r: Result<i64, Errno> = Err(Errno::ENOSYS);
        assert_eq!(gate(&r, STOPS), Gate::Stopped(Errno::ENOSYS));
        let r: Result<i64, Errno> = Err(Errno::EINVAL);
        assert_eq!(gate(&r, STOPS), Gate::Reached(Errno::EINVAL));
        let r: Result<i64, Errno> = Err(Errno::ENOENT);
        assert_eq!(gate(&r, STOPS), Gate::Reached(Errno::ENOENT));
        let r: Result<i64, Errno> = Ok(3);
        assert_eq!(gate(&r, STOPS), Gate::Passed);
        let r: Result<i64, Errno> = Err(Errno::EACCES);
        assert_eq!(
            gate(&r, &[Errno::EPERM, Errno::EACCES]),
            Gate::Stopped(Errno::EACCES)
        );
    }

    #[test]
    fn findings_rank_escape_over_error_over_blocked() {
        let mut f = Findings::default();
        f.blocked("a: EPERM");
        assert_eq!(f.outcome(), Outcome::Blocked("a: EPERM".into()));

        let mut f = Findings::default();
        f.blocked("a: EPERM");
        f.error("b: no /proc");
        assert_eq!(
            f.outcome(),
            Outcome::Error("b: no /proc (blocked: a: EPERM)".into())
        );

        let mut f = Findings::default();
        f.blocked("a: EPERM");
        f.error("b: no /proc");
        f.gate("c", Err(Errno::EINVAL), STOPS);
        assert_eq!(
            f.outcome(),
            Outcome::Escaped(
                "c: passed the permission check (EINVAL from the code after it) \
                 (not tried: b: no /proc) (blocked: a: EPERM)"
                    .into()
            )
        );

        assert!(matches!(Findings::default().outcome(), Outcome::Error(_)));
    }

    #[test]
    fn reports_survive_the_pipe() {
        for o in [
            Outcome::Blocked("x: EPERM; y: EROFS".into()),
            Outcome::Escaped("multi\nline".into()),
            Outcome::Error(String::new()),
        ] {
            assert_eq!(decode(&encode(&o)), Some(o));
        }
        assert_eq!(decode("nonsense"), None);
    }

    #[test]
    fn names_are_unique_and_selectable() {
        for (i, a) in ATTACKS.iter().enumerate() {
            assert!(!ATTACKS[i + 1..].iter().any(|b| b.name == a.name));
        }
        let picked = select(&["kexec".into(), "bpf".into()]).unwrap();
        assert_eq!(picked.len(), 2);
        assert_eq!(picked[0].name, "kexec");
        assert!(select(&["no-such".into()]).is_err());
        assert_eq!(select(&[]).unwrap().len(), ATTACKS.len());
    }

    #[test]
    fn a_killed_child_is_reported() {
        fn dies() -> Outcome {
            // SAFETY: test helper: the attack's child process kills itself,
            // made non-dumpable first so that SIGSYS leaves no core file.
            unsafe {
                libc::prctl(libc::PR_SET_DUMPABLE, 0);
                libc::raise(libc::SIGSYS);
            }
            Outcome::Escaped("unreachable".into())
        }
        fn fine() -> Outcome {
            Outcome::Blocked("ok".into())
        }
        let a = attack("dies", dies, false);
        assert!(matches!(run_one(&a), Outcome::Blocked(d) if d.contains("SIGSYS")));
        let a = attack("fine", fine, false);
        assert_eq!(run_one(&a), Outcome::Blocked("ok".into()));
    }
}
