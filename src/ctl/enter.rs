//! Entering a running machine: `exec`, `reload`, and the first half of `shell`.
//!
//! A process that enters must end up exactly where the guest's own processes
//! are, and never with more than they have:
//!
//!  1. The leader is pinned: /proc/LEADER is opened as a directory and its start
//!     time checked through that fd, and everything else of the leader is
//!     opened through it (its namespaces, its root, its cgroup file), so a pid
//!     reused meanwhile fails instead of leading elsewhere.
//!  2. Our process moves into the leader's cgroups, in every hierarchy (see
//!     cgroups.rs): the device policy and the task limit apply per cgroup.
//!  3. setns into the leader's user namespace (only if it is not ours), then
//!     cgroup, ipc, uts, net, pid and mnt; then its root: fchdir to it,
//!     chroot("."), chdir("/").
//!  4. Still in this process, before the fork: a new session keyring, the
//!     guest's seccomp filters (with mounts of new file systems refused, since
//!     no supervisor answers for us), the guest's capability set. The fork that
//!     follows is the first process in the guest's pid namespace, and the
//!     guest's root (CAP_SYS_PTRACE) can ptrace anything there: it must never
//!     see a process with more than the guest's privileges, not even between
//!     fork and exec. This process itself stays out of the guest's sight (in
//!     its cgroups, but not in its pid namespace).
//!  5. The child gets a clean environment, default signals, close-on-exec fds,
//!     and execs; this process waits and passes its status back. It reaps the
//!     child promptly whatever happens: when the guest's PID 1 dies, its exit
//!     waits for every process of its pid namespace to be reaped, ours too,
//!     and the supervisor can remove the cgroups only once we are gone.

use super::{cgroups, exit_status, Failure, Result};
use crate::container::root::Root;
use crate::plan::SyscallChange;
use crate::policy::seccomp;
use crate::state::MachineState;
use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use rustix::fs::{AtFlags, Mode, OFlags};
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The guest system's activation entry point on NixOS (what container@.service's
/// ExecReload runs through `nixos-container run`).
pub const SWITCH_TO_CONFIGURATION: &str =
    "/nix/var/nix/profiles/system/bin/switch-to-configuration";

/// The PATH of an entered process: the FHS directories, after NixOS's where the
/// guest has them (its setuid wrappers must come first).
const FHS_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const NIXOS_PATH: &[&str] = &["/run/wrappers/bin", "/run/current-system/sw/bin"];

/// Guest files nixrunctl reads (os-release, passwd, group) are small; a guest
/// that makes one huge only gets it cut.
const MAX_GUEST_FILE: u64 = 4 << 20;

/// The namespaces to join, in order (the user namespace is handled apart).
const JOIN_ORDER: &[(&str, CloneFlags)] = &[
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

fn gone(st: &MachineState) -> Failure {
    Failure::new(format!("no running machine {}", st.name.escape_debug()))
}

/// A machine's PID 1, pinned by its /proc directory.
pub struct Leader {
    dir: OwnedFd,
    start: u64,
    name: String,
}

impl Leader {
    pub fn open(st: &MachineState) -> Result<Leader> {
        let dir = rustix::fs::open(
            format!("/proc/{}", st.leader),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|_| gone(st))?;
        let leader = Leader {
            dir,
            start: st.leader_start,
            name: st.name.clone(),
        };
        leader.check()?;
        Ok(leader)
    }

    /// Whether the directory is still the process the state file names (its
    /// entries of a dead process can no longer be opened).
    pub fn check(&self) -> Result<()> {
        let stat = self.read("stat").ok();
        if stat.as_deref().and_then(crate::state::start_time_in) == Some(self.start) {
            Ok(())
        } else {
            Err(Failure::new(format!(
                "no running machine {}",
                self.name.escape_debug()
            )))
        }
    }

    pub fn read(&self, file: &str) -> std::result::Result<String, Errno> {
        let fd = rustix::fs::openat(
            &self.dir,
            file,
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(crate::sys::errno)?;
        read_limited(fd)
    }

    /// The inode number of one of its namespaces (what `ls -l /proc/PID/ns` shows).
    pub fn namespace_id(&self, ns: &str) -> Option<u64> {
        rustix::fs::statat(&self.dir, format!("ns/{ns}"), AtFlags::empty())
            .ok()
            .map(|s| s.st_ino)
    }

    fn open_namespace(&self, ns: &str) -> Result<OwnedFd> {
        rustix::fs::openat(
            &self.dir,
            format!("ns/{ns}"),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            Failure::sys(
                format!("opening the leader's {ns} namespace"),
                crate::sys::errno(e),
            )
        })
    }

    /// Its root directory, for resolving guest paths from outside.
    pub fn root(&self) -> Result<Root> {
        rustix::fs::openat(
            &self.dir,
            "root",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map(Root::new)
        .map_err(|e| Failure::sys("opening the leader's root", crate::sys::errno(e)))
    }

    /// PRETTY_NAME from the guest's os-release, resolved within its root.
    pub fn os_pretty_name(&self) -> Option<String> {
        let root = self.root().ok()?;
        ["/etc/os-release", "/usr/lib/os-release"]
            .iter()
            .find_map(|p| read_guest_file(&root, p).ok())
            .and_then(|text| super::output::os_release_name(&text))
    }
}

/// Reads a regular file, up to MAX_GUEST_FILE.
fn read_limited(fd: OwnedFd) -> std::result::Result<String, Errno> {
    use std::io::Read;
    let mut text = Vec::new();
    std::fs::File::from(fd)
        .take(MAX_GUEST_FILE)
        .read_to_end(&mut text)
        .map_err(|e| crate::sys::io_errno(&e))?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

/// A guest file, resolved within the guest's root; only a regular file is read
/// (a FIFO or a device planted there must not hang or feed nixrunctl).
pub fn read_guest_file(root: &Root, path: &str) -> std::result::Result<String, Errno> {
    let fd = root
        .open(
            Path::new(path),
            OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY,
        )
        .map_err(|e| e.errno)?;
    let st = rustix::fs::fstat(&fd).map_err(crate::sys::errno)?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(Errno::EINVAL);
    }
    read_limited(fd)
}

/// What an entered process may do: the guest's capabilities and filters,
/// computed from the state file with the runtime's own policy code.
#[derive(Debug)]
pub struct Confinement {
    caps: caps::CapsHashSet,
    filters: seccomp::Filters,
}

impl Confinement {
    pub fn of(st: &MachineState) -> Result<Confinement> {
        let caps = st
            .capabilities
            .iter()
            .map(|c| {
                c.parse().map_err(|_| {
                    Failure::new(format!(
                        "machine {}: unknown capability {c:?} in its state (a newer nixrun?)",
                        st.name.escape_debug()
                    ))
                })
            })
            .collect::<Result<_>>()?;
        let change = SyscallChange {
            allow: st.syscalls_allow.iter().copied().collect(),
            deny: st.syscalls_deny.iter().copied().collect(),
        };
        let filters = seccomp::filters_for_joining(&seccomp::denied(&change))
            .map_err(|e| Failure::new(format!("the guest's seccomp filters: {e}")))?;
        Ok(Confinement { caps, filters })
    }

    /// Applies it to this process, as container/mod.rs does to the guest's init:
    /// keyring, then filters (installing them without no_new_privs takes
    /// CAP_SYS_ADMIN, which the set may lack), then capabilities.
    fn apply(&self) -> Result<()> {
        // In a nixrun guest the outer filter refuses the keyring calls to us
        // and to everything we start: there is no keyring to leave behind.
        match crate::sys::join_new_session_keyring() {
            Err(nix::errno::Errno::EPERM) if crate::supervisor::identity::inside_nixrun() => {}
            r => r.map_err(|e| Failure::sys("joining a new session keyring", e))?,
        }
        let f = &self.filters;
        for prog in [&f.deny, &f.audit, &f.mount] {
            crate::sys::seccomp::install(prog, false)
                .map_err(|e| Failure::sys("installing the guest's seccomp filters", e))?;
        }
        crate::container::caps::apply(&self.caps)
            .map_err(|e| Failure::new(format!("applying the guest's capabilities: {e}")))
    }
}

/// Moves this process into the machine (steps 1-4 of the module comment). On
/// success it is in the guest's cgroups, namespaces (the pid namespace for its
/// children) and root, with the guest's privileges.
pub fn enter(st: &MachineState, leader: &Leader) -> Result<()> {
    let confinement = Confinement::of(st)?;
    let own_user = rustix::fs::stat("/proc/self/ns/user")
        .map_err(|e| Failure::sys("reading our user namespace", crate::sys::errno(e)))?;
    let user = leader.open_namespace("user")?;
    let user_st =
        rustix::fs::fstat(&user).map_err(|e| Failure::sys("fstat", crate::sys::errno(e)))?;
    let user =
        (user_st.st_ino != own_user.st_ino || user_st.st_dev != own_user.st_dev).then_some(user);
    let namespaces = JOIN_ORDER
        .iter()
        .map(|&(ns, flag)| Ok((ns, flag, leader.open_namespace(ns)?)))
        .collect::<Result<Vec<_>>>()?;
    // With a user namespace of its own, the guest's root holds nothing over
    // namespaces that belong to the host's (the host's network, or one joined
    // with --network-namespace-path): those are joined first, as the host's
    // root; the ones that are ours already are left alone.
    let (before, after) = match &user {
        None => (namespaces, Vec::new()),
        Some(user) => split_by_owner(namespaces, user)?,
    };
    let root = leader.root()?;
    let proc_cgroup = leader
        .read("cgroup")
        .map_err(|e| Failure::sys("reading the leader's cgroups", e))?;
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Failure::new(format!("reading /proc/self/mountinfo: {e}")))?;
    let own_cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| Failure::new(format!("reading /proc/self/cgroup: {e}")))?;
    let dirs =
        cgroups::leader_directories(&proc_cgroup, &own_cgroup, &mountinfo).map_err(Failure::new)?;
    // Everything is open; the last moment to find the machine gone with
    // nothing done.
    leader.check()?;

    cgroups::join(&dirs, std::process::id()).map_err(Failure::new)?;
    for (ns, flag, fd) in before {
        nix::sched::setns(fd, flag)
            .map_err(|e| Failure::sys(format!("joining the machine's {ns} namespace"), e))?;
    }
    if let Some(user) = user {
        nix::sched::setns(user, CloneFlags::CLONE_NEWUSER)
            .map_err(|e| Failure::sys("joining the machine's user namespace", e))?;
        // The host's root is not mapped there: become the guest's root, or we
        // would act as its overflow ids.
        let (uid, gid) = (nix::unistd::Uid::from_raw(0), nix::unistd::Gid::from_raw(0));
        nix::unistd::setresgid(gid, gid, gid)
            .and_then(|()| nix::unistd::setresuid(uid, uid, uid))
            .map_err(|e| Failure::sys("becoming the machine's root", e))?;
    }
    for (ns, flag, fd) in after {
        nix::sched::setns(fd, flag)
            .map_err(|e| Failure::sys(format!("joining the machine's {ns} namespace"), e))?;
    }
    nix::unistd::fchdir(root.fd().as_raw_fd())
        .map_err(|e| Failure::sys("changing into the machine's root", e))?;
    nix::unistd::chroot(".").map_err(|e| Failure::sys("chroot into the machine's root", e))?;
    nix::unistd::chdir("/").map_err(|e| Failure::sys("chdir /", e))?;
    drop(root);
    confinement.apply()
}

type Namespaces = Vec<(&'static str, CloneFlags, OwnedFd)>;

/// The namespaces to join before the guest's user namespace (owned by
/// another, and not ours already) and after it (its own); ours are dropped.
fn split_by_owner(namespaces: Namespaces, user: &OwnedFd) -> Result<(Namespaces, Namespaces)> {
    let id = |fd: std::os::fd::BorrowedFd<'_>| {
        rustix::fs::fstat(fd)
            .map(|s| (s.st_dev, s.st_ino))
            .map_err(|e| Failure::sys("fstat a namespace", crate::sys::errno(e)))
    };
    let guest_user = id(user.as_fd())?;
    let (mut before, mut after) = (Vec::new(), Vec::new());
    for (ns, flag, fd) in namespaces {
        let own = rustix::fs::stat(format!("/proc/self/ns/{ns}"))
            .map(|s| (s.st_dev, s.st_ino))
            .map_err(|e| {
                Failure::sys(format!("reading our {ns} namespace"), crate::sys::errno(e))
            })?;
        if id(fd.as_fd())? == own {
            continue;
        }
        let owner = crate::sys::ns_owner(fd.as_fd())
            .map_err(|e| Failure::sys(format!("the owner of the machine's {ns} namespace"), e))?;
        if id(owner.as_fd())? == guest_user {
            after.push((ns, flag, fd));
        } else {
            before.push((ns, flag, fd));
        }
    }
    Ok((before, after))
}

/// The environment of an entered process (call it inside the machine: the
/// NixOS directories are looked for in the guest). `extra` replaces or adds.
pub fn guest_env(extra: &[(&str, &str)]) -> Vec<CString> {
    let mut path: Vec<&str> = NIXOS_PATH
        .iter()
        .copied()
        .filter(|d| Path::new(d).is_dir())
        .collect();
    path.push(FHS_PATH);
    let path = path.join(":");
    let mut vars: Vec<(String, Vec<u8>)> = vec![
        ("PATH".into(), path.into_bytes()),
        ("HOME".into(), b"/root".to_vec()),
        ("USER".into(), b"root".to_vec()),
        ("LOGNAME".into(), b"root".to_vec()),
        ("container".into(), b"nixrun".to_vec()),
    ];
    if let Some(term) = std::env::var_os("TERM") {
        vars.push(("TERM".into(), term.as_bytes().to_vec()));
    }
    for (k, v) in extra {
        match vars.iter_mut().find(|(name, _)| name == k) {
            Some(var) => var.1 = v.as_bytes().to_vec(),
            None => vars.push((k.to_string(), v.as_bytes().to_vec())),
        }
    }
    vars.into_iter()
        .filter_map(|(k, v)| {
            let mut kv = k.into_bytes();
            kv.push(b'=');
            kv.extend(v);
            CString::new(kv).ok()
        })
        .collect()
}

/// The value of PATH in an environment built by guest_env.
fn env_path(env: &[CString]) -> &str {
    env.iter()
        .rev()
        .find_map(|kv| kv.to_str().ok()?.strip_prefix("PATH="))
        .unwrap_or(FHS_PATH)
}

/// Where a command is, as a shell finds it: a name with a slash as given,
/// otherwise the first executable file of that name on `path`. A failure comes
/// with a shell's exit status (127 not found, 126 found but not executable).
pub fn find_program(cmd: &str, path: &str) -> std::result::Result<PathBuf, (u8, String)> {
    let executable = |p: &Path| -> std::result::Result<(), (u8, String)> {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(p) {
            Err(_) => Err((127, format!("{}: not found", p.display()))),
            Ok(m) if m.is_dir() => Err((126, format!("{}: is a directory", p.display()))),
            Ok(m) if m.permissions().mode() & 0o111 == 0 || !m.is_file() => {
                Err((126, format!("{}: not executable", p.display())))
            }
            Ok(_) => Ok(()),
        }
    };
    if cmd.is_empty() {
        return Err((127, "the command is empty".into()));
    }
    if cmd.contains('/') {
        return executable(Path::new(cmd)).map(|()| PathBuf::from(cmd));
    }
    let mut found_but_not_executable = None;
    for dir in path.split(':').filter(|d| d.starts_with('/')) {
        let p = Path::new(dir).join(cmd);
        match executable(&p) {
            Ok(()) => return Ok(p),
            // A directory of that name is skipped, as shells do.
            Err((126, why)) if p.is_file() => {
                found_but_not_executable.get_or_insert(why);
            }
            Err(_) => {}
        }
    }
    Err(match found_but_not_executable {
        Some(why) => (126, why),
        None => (127, format!("{cmd}: command not found")),
    })
}

/// Execs `argv` (argv[0] found on the environment's PATH, `arg0` shown as its
/// name if given); returns only on failure, with a shell's exit status.
pub fn exec_program(argv: &[String], arg0: Option<&str>, env: &[CString]) -> (u8, String) {
    let program = match find_program(&argv[0], env_path(env)) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let mut args: Vec<CString> = Vec::with_capacity(argv.len());
    for (i, a) in argv.iter().enumerate() {
        let a = if i == 0 { arg0.unwrap_or(a) } else { a };
        match CString::new(a.as_bytes()) {
            Ok(c) => args.push(c),
            Err(_) => return (126, "an argument contains a NUL byte".into()),
        }
    }
    let Ok(path) = CString::new(program.as_os_str().as_bytes()) else {
        return (126, "the command contains a NUL byte".into());
    };
    let e = nix::unistd::execve(&path, &args, env).unwrap_err();
    // ENOENT after the checks: a missing interpreter (#!) or loader.
    let code = if e == Errno::ENOENT { 127 } else { 126 };
    (code, format!("{}: {}", program.display(), e.desc()))
}

/// The child's side before exec: what nixrunctl blocked, ignored or opened is
/// not the command's.
pub fn prepare_exec() -> Result<()> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(|e| Failure::sys("resetting the signal mask", e))?;
    crate::sys::process::default_all_signals();
    crate::sys::fd::cloexec_from(3).map_err(|e| Failure::sys("close_range", e))
}

/// The signals nixrunctl waits for while its child runs, blocked (the child
/// unblocks them) and read from a signalfd.
pub fn signal_fd(extra: &[Signal]) -> Result<SignalFd> {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
    ]
    .iter()
    .chain(extra)
    {
        set.add(*s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)
        .map_err(|e| Failure::sys("blocking signals", e))?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| Failure::sys("signalfd", e))
}

/// A signal for the child, if it should have it: SIGTERM and SIGHUP always
/// (nixrunctl's caller wants the command ended), SIGINT and SIGQUIT only when a
/// process sent them — the terminal sends them to the child itself, which
/// shares nixrunctl's process group.
pub fn to_forward(signo: u32, code: i32) -> Option<i32> {
    let sig = signo as i32;
    match sig {
        libc::SIGTERM | libc::SIGHUP => Some(sig),
        libc::SIGINT | libc::SIGQUIT if code <= 0 => Some(sig),
        _ => None,
    }
}

/// The child's status, if it ended (reaped).
pub fn reap(child: Pid) -> Option<u8> {
    match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
        Ok(ws) => exit_status(ws),
        // Not ours any more (cannot happen: only we reap it).
        Err(_) => Some(1),
    }
}

/// Waits for the child, forwarding signals; its exit status.
pub fn wait_forwarding(child: Pid, sigfd: &SignalFd) -> Result<u8> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    loop {
        if let Some(code) = reap(child) {
            return Ok(code);
        }
        let mut fds = [PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Failure::sys("poll", e)),
        }
        while let Ok(Some(si)) = sigfd.read_signal() {
            if let Some(sig) = to_forward(si.ssi_signo, si.ssi_code) {
                let _ = crate::sys::process::kill(child, sig);
            }
        }
    }
}

/// Runs `argv` in the machine; its exit status.
pub fn exec(st: MachineState, argv: &[String]) -> Result<u8> {
    // A terminal is never handed to the guest (see shell::exec_on_pty).
    if [0, 1, 2].into_iter().any(|fd| {
        let fd = match fd {
            0 => rustix::stdio::stdin(),
            1 => rustix::stdio::stdout(),
            _ => rustix::stdio::stderr(),
        };
        rustix::termios::isatty(fd)
    }) {
        return super::shell::exec_on_pty(st, argv);
    }
    let leader = Leader::open(&st)?;
    let sigfd = signal_fd(&[])?;
    enter(&st, &leader)?;
    drop(leader);
    let env = guest_env(&[]);
    let child = crate::sys::process::fork_run(|| {
        if let Err(f) = prepare_exec() {
            eprintln!("nixrunctl: {}", f.line);
            return 1;
        }
        let (code, line) = exec_program(argv, None, &env);
        eprintln!("nixrunctl: {line}");
        i32::from(code)
    })
    .map_err(|e| Failure::sys("fork", e))?;
    wait_forwarding(child, &sigfd)
}

/// Runs the guest system's switch-to-configuration test, as container@.service's
/// ExecReload does; its exit status.
pub fn reload(st: MachineState) -> Result<u8> {
    // Declarative NixOS containers have no profile in the guest: their unit's
    // environment names the system (SYSTEM_PATH, from the container's conf
    // file), as NixOS's own ExecReload uses it.
    let program = match std::env::var("SYSTEM_PATH") {
        Ok(p) if p.starts_with('/') => {
            format!("{}/bin/switch-to-configuration", p.trim_end_matches('/'))
        }
        _ => SWITCH_TO_CONFIGURATION.to_string(),
    };
    let leader = Leader::open(&st)?;
    let root = leader.root()?;
    if let Err(e) = root.open(Path::new(&program), OFlags::PATH) {
        return Err(Failure::new(format!(
            "{}: {program}: {} in the guest (not a NixOS system?)",
            st.name.escape_debug(),
            if e.errno == Errno::ENOENT {
                "does not exist".into()
            } else {
                e.errno.desc().to_string()
            }
        )));
    }
    drop((root, leader));
    let name = st.name.clone();
    let code = exec(st, &[program, "test".into()])?;
    eprintln!(
        "nixrunctl: {}: switch-to-configuration test (exit {code})",
        name.escape_debug()
    );
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_as_a_shell_finds_them() {
        let dir = std::env::temp_dir().join(format!("nixrunctl-find-{}", std::process::id()));
        let bin = dir.join("bin");
        let other = dir.join("other");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let write = |p: &Path, mode| {
            std::fs::write(p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(&bin.join("tool"), 0o755);
        write(&bin.join("plain"), 0o644);
        write(&other.join("plain"), 0o644);
        std::fs::create_dir_all(bin.join("adir")).unwrap();
        let path = format!("relative:{}:{}", bin.display(), other.display());
        assert_eq!(find_program("tool", &path).unwrap(), bin.join("tool"));
        assert_eq!(find_program("plain", &path).unwrap_err().0, 126);
        assert_eq!(find_program("missing", &path).unwrap_err().0, 127);
        assert_eq!(
            find_program("missing", &path).unwrap_err().1,
            "missing: command not found"
        );
        assert_eq!(find_program("adir", &path).unwrap_err().0, 127);
        let abs = bin.join("tool");
        assert_eq!(find_program(abs.to_str().unwrap(), "").unwrap(), abs);
        assert_eq!(
            find_program(bin.join("adir").to_str().unwrap(), "")
                .unwrap_err()
                .0,
            126
        );
        assert_eq!(
            find_program(bin.join("nope").to_str().unwrap(), "")
                .unwrap_err()
                .0,
            127
        );
        assert_eq!(find_program("", &path).unwrap_err().0, 127);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_environment_is_clean() {
        let env: Vec<String> = guest_env(&[("HOME", "/home/a"), ("SHELL", "/bin/sh")])
            .into_iter()
            .map(|c| c.into_string().unwrap())
            .collect();
        assert!(env.contains(&"HOME=/home/a".to_string()), "{env:?}");
        assert!(!env.contains(&"HOME=/root".to_string()), "{env:?}");
        assert!(env.contains(&"SHELL=/bin/sh".to_string()));
        assert!(env.contains(&"container=nixrun".to_string()));
        assert!(env.contains(&"USER=root".to_string()));
        let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap();
        assert!(path.ends_with(FHS_PATH), "{path}");
        for (k, _) in std::env::vars() {
            if !["TERM", "PATH", "HOME", "USER", "LOGNAME", "SHELL"].contains(&k.as_str()) {
                assert!(
                    !env.iter().any(|e| e.starts_with(&format!("{k}="))),
                    "{k} leaked"
                );
            }
        }
    }

    #[test]
    fn which_signals_reach_the_child() {
        const SI_USER: i32 = 0;
        const SI_KERNEL: i32 = 0x80;
        assert_eq!(
            to_forward(libc::SIGTERM as u32, SI_KERNEL),
            Some(libc::SIGTERM)
        );
        assert_eq!(to_forward(libc::SIGHUP as u32, SI_USER), Some(libc::SIGHUP));
        assert_eq!(to_forward(libc::SIGINT as u32, SI_USER), Some(libc::SIGINT));
        // ^C on the terminal: the child got its own.
        assert_eq!(to_forward(libc::SIGINT as u32, SI_KERNEL), None);
        assert_eq!(to_forward(libc::SIGQUIT as u32, SI_KERNEL), None);
        assert_eq!(to_forward(libc::SIGCHLD as u32, SI_USER), None);
    }

    #[test]
    fn the_recorded_policy_is_rebuilt() {
        let mut st = MachineState {
            capabilities: vec!["CAP_CHOWN".into(), "CAP_SYS_ADMIN".into()],
            syscalls_allow: vec![],
            syscalls_deny: vec![],
            ..Default::default()
        };
        let c = Confinement::of(&st).unwrap();
        assert_eq!(c.caps.len(), 2);
        assert!(c.caps.contains(&caps::Capability::CAP_SYS_ADMIN));
        assert!(!c.filters.mount.is_empty());
        assert_eq!(
            c.filters.mount,
            seccomp::mount_filter_refusing(&seccomp::denied(&Default::default()).brokered),
            "no supervisor answers for a joining process"
        );
        st.capabilities.push("CAP_FLY".into());
        assert!(Confinement::of(&st).unwrap_err().line.contains("CAP_FLY"));
    }
}
