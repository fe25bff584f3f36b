//! Attacks through other processes: the runtime's binary (CVE-2019-5736), fds
//! and working directories the runtime leaks in (CVE-2024-21626), and host
//! processes that should be neither visible, traceable nor signallable.
//!
//! Harmless when they succeed: exes are opened for writing and closed without
//! a byte written (and without O_TRUNC); fds and cwds are only inspected;
//! signals are signal 0 (an existence check); PTRACE_SEIZE does not stop the
//! tracee and is given up when the short-lived tracer child exits.

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::AsRawFd;

use nix::errno::Errno;

use super::kernel::INIT_PID_NS;
use super::sys::{self, FileId};
use super::{Findings, Outcome};

/// The probe's own processes: this attack's child and the probe that forked it.
fn own_pids() -> Vec<i32> {
    // SAFETY: no arguments.
    let (me, parent) = unsafe { (libc::getpid(), libc::getppid()) };
    let probe_is_parent = sys::read_link(format!("/proc/{parent}/exe"))
        .map(|e| e == sys::read_link("/proc/self/exe").unwrap_or_default())
        .unwrap_or(false);
    if probe_is_parent {
        vec![me, parent]
    } else {
        vec![me]
    }
}

/// "ETXTBSY×3, EROFS×1" from a tally of errnos.
fn tally(counts: &BTreeMap<String, usize>) -> String {
    counts
        .iter()
        .map(|(k, n)| format!("{k}×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether an exe path looks like a container runtime.
pub fn looks_like_runtime(exe: &str) -> bool {
    let base = exe.rsplit('/').next().unwrap_or(exe);
    let base = base.trim_end_matches(" (deleted)");
    (base.contains("nixrun") && !base.starts_with("nixrun-probe")) || base.contains("nspawn")
}

/// `CVE-2019-5736`: open every visible process's /proc/PID/exe for writing.
pub fn cve_2019_5736() -> Outcome {
    let pids = match sys::pids() {
        Ok(p) => p,
        Err(e) => return Outcome::Error(format!("cannot list /proc: {e:?}")),
    };
    let own = own_pids();
    let mut f = Findings::default();
    let mut counts = BTreeMap::new();
    let mut runtimes = Vec::new();
    let mut tried = 0;
    for pid in pids.into_iter().filter(|p| !own.contains(p)) {
        let exe_link = format!("/proc/{pid}/exe");
        let target = match sys::read_link(&exe_link) {
            Ok(t) => t,
            // Kernel threads and zombies have no exe; a process that exited
            // meanwhile has no /proc entry.
            Err(Errno::ENOENT) | Err(Errno::ESRCH) => continue,
            Err(e) => {
                *counts.entry(format!("readlink {e:?}")).or_insert(0) += 1;
                continue;
            }
        };
        if looks_like_runtime(&target) {
            runtimes.push(format!("{pid}:{target}"));
        }
        tried += 1;
        // No O_TRUNC, and closed at once: nothing is written.
        match sys::open(&exe_link, libc::O_WRONLY) {
            Ok(fd) => {
                drop(fd);
                f.escaped(format!(
                    "/proc/{pid}/exe ({target}) opens for writing (not written)"
                ));
            }
            Err(e) => *counts.entry(format!("{e:?}")).or_insert(0) += 1,
        }
    }
    let runtime_note = if runtimes.is_empty() {
        "no runtime process visible".to_string()
    } else {
        format!("runtime process visible: {}", runtimes.join(", "))
    };
    if tried == 0 {
        f.blocked(format!("no other process's exe visible; {runtime_note}"));
    } else {
        f.blocked(format!(
            "{tried} exe(s) refused writing ({}); {runtime_note}",
            tally(&counts)
        ));
    }
    let o = f.outcome();
    match o {
        Outcome::Escaped(d) if !runtimes.is_empty() => {
            Outcome::Escaped(format!("{d}; {runtime_note}"))
        }
        o => o,
    }
}

/// How an fd or cwd target looks from inside.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// pipe:[N], socket:[N], anon_inode:… — no path to walk.
    Anonymous,
    /// A namespace fd (mnt:[N] …): a way into that namespace.
    Namespace(String, u64),
    /// A path; `deleted` when the kernel appended " (deleted)".
    Path { path: String, deleted: bool },
}

pub fn classify_target(t: &str) -> Target {
    const NS: &[&str] = &[
        "mnt",
        "pid",
        "net",
        "ipc",
        "uts",
        "user",
        "cgroup",
        "time",
        "pid_for_children",
        "time_for_children",
    ];
    if let Some((kind, rest)) = t.split_once(":[") {
        if let Some(num) = rest.strip_suffix(']').and_then(|n| n.parse::<u64>().ok()) {
            if NS.contains(&kind) {
                return Target::Namespace(kind.to_string(), num);
            }
        }
    }
    if !t.starts_with('/') {
        return Target::Anonymous;
    }
    match t.strip_suffix(" (deleted)") {
        Some(p) => Target::Path {
            path: p.to_string(),
            deleted: true,
        },
        None => Target::Path {
            path: t.to_string(),
            deleted: false,
        },
    }
}

/// Whether the object behind `magic` (a /proc/PID/fd/N or /proc/PID/cwd link)
/// is the same file that `path` names from our root: Ok(None) when it is,
/// Ok(Some(why)) when not — the object lies outside what our root reaches —
/// and Err when we cannot tell (EACCES on the way, or the link is gone).
fn reachable(magic: &str, path: &str) -> sys::SysResult<Option<String>> {
    let actual = sys::stat_id(magic)?;
    match sys::stat_id(path) {
        Ok(seen) if seen.same_file(&actual) => Ok(None),
        Ok(seen) => Ok(Some(format!(
            "{path} here is {}:{} but the object is {}:{}",
            seen.dev, seen.ino, actual.dev, actual.ino
        ))),
        Err(e @ (Errno::ENOENT | Errno::ENOTDIR)) => {
            Ok(Some(format!("{path} does not resolve here ({e:?})")))
        }
        Err(e) => Err(e),
    }
}

fn kind_name(id: &FileId) -> &'static str {
    match id.mode & libc::S_IFMT {
        libc::S_IFDIR => "directory",
        libc::S_IFREG => "file",
        libc::S_IFCHR => "char device",
        libc::S_IFBLK => "block device",
        _ => "object",
    }
}

struct FdScan {
    listed: Vec<String>,
    count: usize,
}

/// What the fd checks need to know about the probe itself.
struct Own {
    /// Our result pipe to the probe's main process, not the runtime's fd.
    skip_fd: i32,
    /// The files on our stdin/stdout/stderr.  Whoever started us handed them
    /// over, and `systemd-run --pipe` passes them on to the guest's PID 1,
    /// which keeps them for the transient service: host files in PID 1 that
    /// are these are the test's own, not something the runtime leaked.
    stdio: Vec<FileId>,
}

impl Own {
    fn new() -> Own {
        Own {
            skip_fd: super::result_pipe_fd(),
            stdio: (0..=2)
                .filter_map(|fd| sys::stat_id(format!("/proc/self/fd/{fd}")).ok())
                .collect(),
        }
    }
}

/// Inspects /proc/PID/fd and /proc/PID/cwd of one process.  `strict` is for our
/// own process, whose fds came only from the runtime: there even a namespace fd
/// is a leak.
fn scan_process(f: &mut Findings, pid: i32, strict: bool, own: &Own) -> Result<FdScan, Errno> {
    let dir = format!("/proc/{pid}/fd");
    let mut fds: Vec<i32> = fs::read_dir(&dir)
        .map_err(|e| sys::io_errno(&e))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    let mut listed = Vec::new();
    let our_ns = |kind: &str| {
        sys::stat_id(format!("/proc/self/ns/{kind}"))
            .map(|id| id.ino)
            .ok()
    };
    for fd in fds {
        if strict && fd == own.skip_fd {
            continue;
        }
        let magic = format!("{dir}/{fd}");
        let Ok(target) = sys::read_link(&magic) else {
            continue; // closed meanwhile
        };
        listed.push(format!("{fd}:{target}"));
        match classify_target(&target) {
            Target::Anonymous => {
                if target == "anon_inode:[pidfd]" {
                    check_pidfd(f, pid, fd);
                }
            }
            Target::Namespace(kind, ino) => {
                if strict && our_ns(&kind) != Some(ino) {
                    f.escaped(format!(
                        "pid {pid} fd {fd} is a {kind} namespace fd ({target}) that is not ours"
                    ));
                }
            }
            Target::Path { deleted: true, .. } => {}
            Target::Path { path, .. } => {
                let Ok(actual) = sys::stat_id(&magic) else {
                    continue;
                };
                if let Ok(Some(why)) = reachable(&magic, &path) {
                    // Stdio the runtime hands through by design (nspawn
                    // --console=pipe does: /dev/null, a terminal, a log file)
                    // gives nothing to walk; a directory does, on any fd, and
                    // so does any host file beyond stdio.
                    let is_dir = actual.mode & libc::S_IFMT == libc::S_IFDIR;
                    let our_stdio = own.stdio.iter().any(|s| s.same_file(&actual));
                    if is_dir || (fd > 2 && !our_stdio) {
                        f.escaped(format!(
                            "pid {pid} fd {fd} → {target}: a {} outside our root ({why})",
                            kind_name(&actual)
                        ));
                    }
                }
            }
        }
    }
    // The cwd: a host directory here is the CVE itself.
    let cwd_link = format!("/proc/{pid}/cwd");
    if let Ok(cwd) = sys::read_link(&cwd_link) {
        if let Target::Path {
            path,
            deleted: false,
        } = classify_target(&cwd)
        {
            if let Ok(Some(why)) = reachable(&cwd_link, &path) {
                f.escaped(format!("pid {pid} cwd {cwd} is outside our root ({why})"));
            }
        }
    }
    let count = listed.len();
    Ok(FdScan { listed, count })
}

/// A pidfd whose fdinfo shows `Pid: 0` (or -1) refers to a process outside our
/// PID namespace (or one that is gone).
fn check_pidfd(f: &mut Findings, pid: i32, fd: i32) {
    if let Ok(info) = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")) {
        if sys::status_field(&info, "Pid") == Some("0") {
            f.escaped(format!(
                "pid {pid} fd {fd} is a pidfd for a process outside our PID namespace"
            ));
        }
    }
}

/// `CVE-2024-21626`: leaked fds and cwds, in this process, PID 1 and PID 1's
/// children (those in our mount namespace: a sandboxed service's own mounts
/// would make its paths look foreign).
pub fn cve_2024_21626() -> Outcome {
    let mut f = Findings::default();
    // Our own cwd as getcwd sees it: ENOENT or "(unreachable)" means it lies
    // outside the root.
    match std::env::current_dir() {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            f.escaped("getcwd: ENOENT (the cwd is outside the root)".to_string())
        }
        Ok(p) if p.to_string_lossy().starts_with("(unreachable)") => {
            f.escaped(format!("getcwd: {}", p.display()))
        }
        _ => {}
    }
    let ours = Own::new();
    // SAFETY: no arguments.
    let me = unsafe { libc::getpid() };
    let own = match scan_process(&mut f, me, true, &ours) {
        Ok(s) => s,
        Err(e) => return Outcome::Error(format!("cannot read /proc/self/fd: {e:?}")),
    };
    let own_pids = own_pids();
    let our_mnt = sys::read_link("/proc/self/ns/mnt").ok();
    let mut notes = vec![format!("self: {}", own.listed.join(","))];
    if !own_pids.contains(&1) {
        match scan_process(&mut f, 1, false, &ours) {
            Ok(s) => notes.push(format!("pid 1: {} fds", s.count)),
            Err(e) => notes.push(format!("pid 1: fds unreadable ({e:?})")),
        }
    }
    let mut kids = 0;
    let mut kid_fds = 0;
    let mut other_ns = 0;
    for pid in sys::pids().unwrap_or_default() {
        if pid == 1 || own_pids.contains(&pid) {
            continue;
        }
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        if sys::status_field(&stat, "PPid") != Some("1") {
            continue;
        }
        if sys::read_link(format!("/proc/{pid}/ns/mnt")).ok() != our_mnt {
            other_ns += 1;
            continue;
        }
        if let Ok(s) = scan_process(&mut f, pid, false, &ours) {
            kids += 1;
            kid_fds += s.count;
        }
    }
    if kids + other_ns > 0 {
        notes.push(format!(
            "{kids} children of pid 1: {kid_fds} fds ({other_ns} in other mount namespaces skipped)"
        ));
    }
    f.blocked(format!(
        "no fd or cwd outside the root; {}",
        notes.join("; ")
    ));
    f.outcome()
}

/// Our PID namespace, and whether /proc is a procfs of it (/proc/self is then
/// our own pid).
fn pid_ns_checks(f: &mut Findings) -> Option<(String, u64)> {
    let ns = match sys::read_link("/proc/self/ns/pid") {
        Ok(ns) => ns,
        Err(e) => {
            f.error(format!("/proc/self/ns/pid unreadable: {e:?}"));
            return None;
        }
    };
    let ino = sys::stat_id("/proc/self/ns/pid")
        .map(|i| i.ino)
        .unwrap_or(0);
    if ns == INIT_PID_NS {
        f.escaped("we are in the initial PID namespace (the host's)".to_string());
    }
    // SAFETY: no arguments.
    let me = unsafe { libc::getpid() };
    match sys::read_link("/proc/self") {
        Ok(s) if s == me.to_string() => {}
        Ok(s) => f.escaped(format!(
            "/proc belongs to another PID namespace (it shows us as {s}, we are {me})"
        )),
        Err(e) => f.error(format!("/proc/self unreadable: {e:?}")),
    }
    Some((ns, ino))
}

/// Whether the PID namespace of `pid` is ours or one nested in ours (walking
/// NS_GET_PARENT up from it; the kernel answers EPERM when the walk would leave
/// the part of the tree we can see — i.e. the namespace is not below ours).
fn ns_is_ours_or_nested(pid: i32, ours: u64) -> Result<bool, Errno> {
    let mut fd = sys::open(format!("/proc/{pid}/ns/pid"), libc::O_RDONLY)?;
    for _ in 0..40 {
        if sys::fstat_id(&fd)?.ino == ours {
            return Ok(true);
        }
        // SAFETY: valid nsfs fd; returns a new fd or -1.
        let parent = unsafe { libc::ioctl(fd.as_raw_fd(), libc::NS_GET_PARENT) };
        match sys::ret_int(parent) {
            Ok(p) => fd = sys::own(p as libc::c_long),
            Err(Errno::EPERM) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}

/// Visible processes whose PID namespace is neither ours nor nested in ours.
fn outside_pids(ours: u64) -> (Vec<i32>, usize, usize) {
    let own = own_pids();
    let mut outside = Vec::new();
    let mut nested = 0;
    let mut unreadable = 0;
    for pid in sys::pids().unwrap_or_default() {
        if own.contains(&pid) {
            continue;
        }
        match ns_is_ours_or_nested(pid, ours) {
            Ok(true) => {
                if sys::stat_id(format!("/proc/{pid}/ns/pid")).map(|i| i.ino) != Ok(ours) {
                    nested += 1;
                }
            }
            Ok(false) => outside.push(pid),
            Err(Errno::ENOENT) | Err(Errno::ESRCH) => {}
            Err(_) => unreadable += 1,
        }
    }
    (outside, nested, unreadable)
}

/// PTRACE_SEIZE `pid` from a throwaway child: SEIZE does not stop the tracee,
/// and the kernel detaches it when the tracer exits, which the child does at
/// once.  Returns the errno, or Ok when the seize worked.
fn try_seize(pid: i32) -> Result<(), Errno> {
    // SAFETY: single-threaded; the child only makes two syscalls and _exits.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(Errno::last());
    }
    if child == 0 {
        // SAFETY: PTRACE_SEIZE with no options; _exit ends the trace.
        let rc = unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0) };
        let code = if rc == 0 { 0 } else { Errno::last() as i32 };
        // SAFETY: leave without running exit handlers.
        unsafe { libc::_exit(code.clamp(0, 255)) };
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    match libc::WEXITSTATUS(status) {
        0 => Ok(()),
        e => Err(Errno::from_raw(e)),
    }
}

/// `ptrace-outside`: every visible process must be in our PID namespace or one
/// nested in it; PID 1 must be a namespace init (PPid 0); any outside process
/// found is PTRACE_SEIZEd.
pub fn ptrace_outside() -> Outcome {
    let mut f = Findings::default();
    let Some((_, ours)) = pid_ns_checks(&mut f) else {
        return f.outcome();
    };
    match fs::read_to_string("/proc/1/status") {
        Ok(s) => match sys::status_field(&s, "PPid") {
            Some("0") => {}
            Some(p) => f.escaped(format!("PID 1 has a parent we can see (PPid {p})")),
            None => f.error("no PPid in /proc/1/status".to_string()),
        },
        Err(e) => f.error(format!("/proc/1/status: {:?}", sys::io_errno(&e))),
    }
    let (outside, nested, unreadable) = outside_pids(ours);
    let visible = sys::pids().map(|p| p.len()).unwrap_or(0);
    for pid in outside.iter().take(3) {
        match try_seize(*pid) {
            Ok(()) => f.escaped(format!(
                "PTRACE_SEIZE of pid {pid} (outside our PID namespace) worked (released at once)"
            )),
            Err(e) => f.escaped(format!(
                "pid {pid} is outside our PID namespace but visible (PTRACE_SEIZE: {e:?})"
            )),
        }
    }
    f.blocked(format!(
        "{visible} processes visible, all in our PID namespace ({nested} in nested ones, \
         {unreadable} unreadable)"
    ));
    f.outcome()
}

/// `host-process`: see or signal a host process.  kill() looks pids up in our
/// own PID namespace, so NIXRUN_PROBE_HOST_PID (a host pid the test passes) is
/// reached only if we share the host's namespace — or names a guest process
/// with the same number, told apart by /proc/PID/ns/pid.
pub fn host_process() -> Outcome {
    let mut f = Findings::default();
    let Some((_, ours)) = pid_ns_checks(&mut f) else {
        return f.outcome();
    };
    let (outside, _, _) = outside_pids(ours);
    if !outside.is_empty() {
        f.escaped(format!(
            "{} process(es) of other PID namespaces visible: {}",
            outside.len(),
            outside
                .iter()
                .take(8)
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    let visible = sys::pids().map(|p| p.len()).unwrap_or(0);
    // SAFETY: signal 0 only checks.
    let all = sys::ret_int(unsafe { libc::kill(-1, 0) });
    let all = match all {
        Ok(_) => "kill(-1, 0) reaches other processes (in our namespace)".to_string(),
        Err(e) => format!("kill(-1, 0): {e:?}"),
    };
    match std::env::var("NIXRUN_PROBE_HOST_PID") {
        Err(_) => f.blocked(format!(
            "{visible} processes visible; {all}; NIXRUN_PROBE_HOST_PID not set"
        )),
        Ok(s) => match s.trim().parse::<i32>() {
            Err(_) => f.error(format!("NIXRUN_PROBE_HOST_PID={s:?} is not a pid")),
            Ok(pid) => {
                // SAFETY: signal 0 only checks.
                match sys::ret_int(unsafe { libc::kill(pid, 0) }) {
                    Err(Errno::ESRCH) => f.blocked(format!(
                        "{visible} processes visible; {all}; host pid {pid}: ESRCH"
                    )),
                    res => match ns_is_ours_or_nested(pid, ours) {
                        Ok(true) => f.blocked(format!(
                            "{visible} processes visible; {all}; pid {pid} exists here but is a \
                             guest process ({})",
                            match res {
                                Ok(_) => "signallable".to_string(),
                                Err(e) => format!("{e:?}"),
                            }
                        )),
                        _ if res.is_ok() => {
                            f.escaped(format!("kill({pid}, 0) reaches the host process {pid}"))
                        }
                        _ => f.escaped(format!(
                            "host pid {pid} exists in our view ({:?})",
                            res.err()
                        )),
                    },
                }
            }
        },
    }
    f.outcome()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_targets_classify() {
        assert_eq!(classify_target("pipe:[1234]"), Target::Anonymous);
        assert_eq!(classify_target("socket:[99]"), Target::Anonymous);
        assert_eq!(classify_target("anon_inode:[pidfd]"), Target::Anonymous);
        assert_eq!(classify_target("anon_inode:inotify"), Target::Anonymous);
        assert_eq!(
            classify_target("mnt:[4026531841]"),
            Target::Namespace("mnt".into(), 4026531841)
        );
        assert_eq!(
            classify_target("/dev/pts/0"),
            Target::Path {
                path: "/dev/pts/0".into(),
                deleted: false
            }
        );
        assert_eq!(
            classify_target("/memfd:x (deleted)"),
            Target::Path {
                path: "/memfd:x".into(),
                deleted: true
            }
        );
    }

    #[test]
    fn runtimes_are_recognised_but_not_the_probe() {
        assert!(looks_like_runtime("/usr/bin/systemd-nspawn"));
        assert!(looks_like_runtime("/nix/store/abc-nixrun-1.0/bin/nixrun"));
        assert!(looks_like_runtime("/x/nixrun (deleted)"));
        assert!(!looks_like_runtime("/nixrun-probe"));
        assert!(!looks_like_runtime("/usr/lib/systemd/systemd"));
    }

    #[test]
    fn our_own_fds_and_cwd_are_reachable() {
        let mut f = Findings::default();
        // SAFETY: no arguments.
        let me = unsafe { libc::getpid() };
        let scan = scan_process(&mut f, me, true, &Own::new()).unwrap();
        assert!(scan.count >= 3);
        assert!(f.escaped.is_empty(), "{:?}", f.escaped);
    }

    #[test]
    fn our_pid_namespace_contains_ourselves() {
        let ours = sys::stat_id("/proc/self/ns/pid").unwrap().ino;
        // SAFETY: no arguments.
        let me = unsafe { libc::getpid() };
        assert_eq!(ns_is_ours_or_nested(me, ours), Ok(true));
    }

    #[test]
    fn tallies_read_naturally() {
        let mut m = BTreeMap::new();
        m.insert("ETXTBSY".to_string(), 3);
        m.insert("EROFS".to_string(), 1);
        assert_eq!(tally(&m), "EROFS×1, ETXTBSY×3");
    }
}
