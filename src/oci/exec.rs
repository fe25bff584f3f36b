//! `exec`: a new process in a running container. This process joins the
//! init's cgroups and namespaces (user first where it has its own, the
//! mount namespace last, then the container's root), and forks: the child
//! is the first process the container sees, and becomes the requested one
//! (process.rs, as the init did). Without --detach we wait and pass its exit
//! status on; with it, the caller's subreaper inherits it.

use super::cli;
use super::state::{Saved, Status};
use super::Global;
use nix::sched::CloneFlags;
use nix::sys::wait::{waitpid, WaitStatus};
use oci_spec::runtime::Process;
use rustix::fs::{Mode, OFlags};
use std::fs;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// The process to run: --process's, or (runc's way) the container's own
/// process with the command line's arguments, working directory, extra
/// environment, user and terminal: its capabilities, limits, and
/// no_new_privileges stay those the container was created with.
fn process_of(e: &cli::Exec, base: Option<Process>) -> Result<Process, String> {
    if let Some(f) = &e.process {
        let text =
            fs::read_to_string(f).map_err(|err| format!("--process {}: {err}", f.display()))?;
        return serde_json::from_str(&text)
            .map_err(|err| format!("--process {}: {err}", f.display()));
    }
    if e.command.is_empty() {
        return Err("exec: no command given (arguments after the id, or --process FILE)".into());
    }
    let mut p = base.unwrap_or_default();
    p.set_args(Some(e.command.clone()));
    let mut env = p.env().clone().unwrap_or_default();
    env.extend(e.env.iter().cloned());
    p.set_env(Some(env));
    if let Some(cwd) = &e.cwd {
        p.set_cwd(cwd.into());
    }
    p.set_terminal(Some(e.tty));
    if let Some(u) = &e.user {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        let uid: u32 = uid
            .parse()
            .map_err(|_| format!("--user {u:?}: expected UID[:GID]"))?;
        let gid: u32 = gid
            .parse()
            .map_err(|_| format!("--user {u:?}: expected UID[:GID]"))?;
        let mut user = p.user().clone();
        user.set_uid(uid);
        user.set_gid(gid);
        p.set_user(user);
    }
    Ok(p)
}

pub fn exec(g: &Global, e: &cli::Exec) -> Result<i32, String> {
    let s = Saved::load(&g.root, &e.id)?;
    if s.status(&g.root) == Status::Stopped {
        return Err("cannot exec in a stopped container".into());
    }
    let spec: Option<oci_spec::runtime::Spec> =
        fs::read_to_string(s.dir(&g.root).join(super::state::CONFIG_COPY))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
    let base = spec.as_ref().and_then(|c| c.process().clone());
    let mut p = process_of(e, base)?;
    if e.tty {
        p.set_terminal(Some(true));
    }
    let terminal = p.terminal().unwrap_or(false);
    if terminal && e.console_socket.is_none() {
        return Err("a terminal needs --console-socket (where the pty's master goes)".into());
    }
    let seccomp = spec
        .as_ref()
        .and_then(|c| c.linux().as_ref())
        .and_then(|l| l.seccomp().clone());
    let prepared = super::process::prepare(&p, seccomp.as_ref())?;

    // Pinned: the directory of the init as created, or nothing.
    let proc_dir = rustix::fs::open(
        format!("/proc/{}", s.pid),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|_| "container not running".to_string())?;
    if !s.alive() {
        return Err("container not running".into());
    }
    let open_ns = |name: &str| -> Result<OwnedFd, String> {
        rustix::fs::openat(
            &proc_dir,
            format!("ns/{name}"),
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| format!("namespace {name} of the container: {err}"))
    };
    let user_ns = open_ns("user")?;
    let nss: Vec<(OwnedFd, CloneFlags)> = NAMESPACES
        .iter()
        .map(|(n, f)| open_ns(n).map(|fd| (fd, *f)))
        .collect::<Result<_, _>>()?;
    let root = rustix::fs::openat(
        &proc_dir,
        "root",
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|err| format!("the container's root: {err}"))?;

    for d in &s.cgroups {
        fs::write(d.join("cgroup.procs"), "0")
            .map_err(|err| format!("joining cgroup {}: {err}", d.display()))?;
    }
    let mine = fs::metadata("/proc/self/ns/user")
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .ok();
    let theirs = rustix::fs::fstat(&user_ns).map(|st| st.st_ino).ok();
    if mine != theirs {
        nix::sched::setns(&user_ns, CloneFlags::CLONE_NEWUSER)
            .map_err(|err| format!("joining the user namespace: {err}"))?;
    }
    for (fd, f) in &nss {
        nix::sched::setns(fd, *f).map_err(|err| format!("joining namespace {f:?}: {err}"))?;
    }
    nix::unistd::fchdir(root.as_raw_fd()).map_err(|err| format!("chdir to the root: {err}"))?;
    nix::unistd::chroot(".").map_err(|err| format!("chroot: {err}"))?;
    nix::unistd::chdir("/").map_err(|err| format!("chdir /: {err}"))?;

    let pty = if terminal {
        let master = rustix::pty::openpt(
            rustix::pty::OpenptFlags::RDWR
                | rustix::pty::OpenptFlags::NOCTTY
                | rustix::pty::OpenptFlags::CLOEXEC,
        )
        .map_err(|err| format!("opening a pty in the container: {err}"))?;
        rustix::pty::unlockpt(&master).map_err(|err| format!("unlockpt: {err}"))?;
        let slave =
            crate::container::dev::pty_peer(&master).map_err(|err| format!("pty peer: {err}"))?;
        Some((master, slave))
    } else {
        None
    };
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|err| format!("pipe: {err}"))?;
    let slave = pty.as_ref().map(|(_, s)| s);
    let keep = e.preserve_fds;
    let child = crate::sys::process::fork_run(|| {
        let fail = |line: String| {
            let _ = nix::unistd::write(&err_w, line.as_bytes());
            127
        };
        if let Some(sl) = slave {
            let _ = nix::unistd::setsid();
            if let Err(err) = rustix::process::ioctl_tiocsctty(sl) {
                return fail(format!("controlling tty: {err}"));
            }
            for t in 0..=2 {
                if nix::unistd::dup2(sl.as_raw_fd(), t).is_err() {
                    return fail("dup the pty onto stdio".into());
                }
            }
        }
        let program = match super::process::find_program(&p, &prepared) {
            Ok(x) => x,
            Err(err) => return fail(err),
        };
        if let Err(err) = super::process::apply_limits(&p) {
            return fail(err);
        }
        if let Err(err) = super::process::install_early(&prepared, keep) {
            return fail(err);
        }
        if let Err(err) = super::process::apply_identity(&p) {
            return fail(err);
        }
        fail(super::process::exec(
            &program,
            &prepared,
            keep,
            prepared.no_new_privs,
        ))
    })
    .map_err(|err| format!("fork: {err}"))?;
    drop(err_w);
    let mut line = Vec::new();
    let mut buf = [0u8; 1024];
    while let Ok(n) = nix::unistd::read(err_r.as_raw_fd(), &mut buf) {
        if n == 0 {
            break;
        }
        line.extend_from_slice(&buf[..n]);
    }
    if !line.is_empty() {
        let _ = waitpid(child, None);
        return Err(String::from_utf8_lossy(&line).into_owned());
    }
    if let Some(pf) = &e.pid_file {
        super::create::write_pid_file(pf, child.as_raw())?;
    }
    let master = pty.map(|(m, _)| m);
    if let (Some(m), Some(sock)) = (&master, &e.console_socket) {
        let dup = m
            .as_fd()
            .try_clone_to_owned()
            .map_err(|err| err.to_string())?;
        super::create::send_console(sock, dup)?;
    }
    drop(master);
    if e.detach {
        return Ok(0);
    }
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, c)) => return Ok(c),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(err) => return Err(format!("waiting for the process: {err}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec_args(args: &[&str]) -> cli::Exec {
        use clap::Parser;
        #[derive(Parser)]
        struct W {
            #[command(flatten)]
            e: cli::Exec,
        }
        W::try_parse_from(std::iter::once("exec").chain(args.iter().copied()))
            .unwrap()
            .e
    }

    #[test]
    fn the_container_process_is_the_base_as_in_runc() {
        let base: Process = serde_json::from_value(serde_json::json!({
            "args": ["/sbin/init"], "cwd": "/srv", "terminal": true,
            "env": ["PATH=/bin", "container=nixrun"],
            "user": {"uid": 0, "gid": 0, "additionalGids": [4]},
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
            "noNewPrivileges": true,
        }))
        .unwrap();
        let p = process_of(
            &exec_args(&["-e", "X=1", "-u", "7:8", "c1", "ls", "-l"]),
            Some(base),
        )
        .unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["ls", "-l"]);
        assert_eq!(
            p.env().as_ref().unwrap(),
            &["PATH=/bin", "container=nixrun", "X=1"]
        );
        assert_eq!(p.cwd(), std::path::Path::new("/srv"));
        // No terminal unless asked for, whatever the init has.
        assert_eq!(p.terminal(), Some(false));
        assert_eq!((p.user().uid(), p.user().gid()), (7, 8));
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[4][..]));
        assert!(p.capabilities().is_some());
        assert_eq!(p.no_new_privileges(), Some(true));
    }
}
