//! The lifecycle commands after create: start, state, kill, delete, and
//! run (all of them in one), list, ps, features.

use super::cgroups;
use super::cli;
use super::create;
use super::state::{self, Saved, Status};
use super::Global;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn load(g: &Global, id: &str) -> Result<Saved, String> {
    Saved::load(&g.root, id)
}

fn config(g: &Global, s: &Saved) -> Option<oci_spec::runtime::Spec> {
    let p = s.dir(&g.root).join(state::CONFIG_COPY);
    serde_json::from_str(&fs::read_to_string(p).ok()?).ok()
}

pub fn start(g: &Global, id: &str) -> Result<(), String> {
    let s = load(g, id)?;
    match s.status(&g.root) {
        Status::Created => {}
        st => return Err(format!("cannot start a container that is {}", st.as_str())),
    }
    let sock = s.dir(&g.root).join(state::START_SOCKET);
    let mut conn = UnixStream::connect(&sock)
        .map_err(|e| format!("container {id}: its init does not answer: {e}"))?;
    // The socket's name is what "created" means: gone, the container is running.
    let _ = fs::remove_file(&sock);
    conn.write_all(b"start")
        .map_err(|e| format!("starting {id}: {e}"))?;
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    if !reply.is_empty() {
        return Err(reply);
    }
    if let Some(h) = config(g, &s).and_then(|c| c.hooks().clone()) {
        let st = super::hooks::state_json(id, "running", s.pid, &s.bundle, &s.annotations);
        for hook in h.poststart().iter().flatten() {
            // The spec: a failed poststart hook is a warning; the container runs on.
            if let Err(e) = super::hooks::run("poststart", hook, &st) {
                g.warn(&e);
            }
        }
    }
    Ok(())
}

pub fn state(g: &Global, id: &str) -> Result<(), String> {
    let s = load(g, id)?;
    let st = s.status(&g.root);
    let text = serde_json::to_string_pretty(&s.public(st)).map_err(|e| e.to_string())?;
    println!("{text}");
    Ok(())
}

/// The signal to send: with the container interface, TERM asks the guest's
/// systemd for a clean shutdown (its SIGRTMIN+3), as nspawn's --kill-signal.
fn signal_for(s: &Saved, sig: i32) -> i32 {
    if s.boot && sig == libc::SIGTERM {
        crate::signal::sigrtmin_plus(3)
    } else {
        sig
    }
}

pub fn kill(g: &Global, k: &cli::Kill) -> Result<(), String> {
    let s = load(g, &k.id)?;
    let sig = crate::signal::parse_signal(&k.signal)
        .ok_or_else(|| format!("invalid signal {:?}", k.signal))?;
    if s.status(&g.root) == Status::Stopped {
        return Err("container not running".into());
    }
    let sig = signal_for(&s, sig);
    if k.all {
        for p in cgroup_pids(&s) {
            let _ = crate::sys::process::kill(nix::unistd::Pid::from_raw(p), sig);
        }
        return Ok(());
    }
    signal_init(&s, sig)
}

/// Signals the init through a pidfd checked against its start time, so that
/// a reused pid is never signalled.
fn signal_init(s: &Saved, sig: i32) -> Result<(), String> {
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(s.pid).ok_or("no pid")?,
        rustix::process::PidfdFlags::empty(),
    )
    .map_err(|_| "container not running".to_string())?;
    if !s.alive() {
        return Err("container not running".into());
    }
    use std::os::fd::AsFd;
    crate::sys::process::pidfd_send_signal(pidfd.as_fd(), sig).map_err(|e| match e {
        nix::errno::Errno::ESRCH => "container not running".to_string(),
        e => format!("kill: {e}"),
    })
}

fn cgroup_pids(s: &Saved) -> Vec<i32> {
    let mut all: Vec<i32> = s
        .cgroups
        .iter()
        .take(1)
        .flat_map(|d| cgroups::pids(d))
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

pub fn delete(g: &Global, d: &cli::Delete) -> Result<(), String> {
    let s = match load(g, &d.id) {
        Ok(s) => s,
        // runc: a forced delete of a container that is not there succeeds.
        Err(e) if d.force && e.ends_with("does not exist") => return Ok(()),
        Err(e) => return Err(e),
    };
    let st = s.status(&g.root);
    if st != Status::Stopped {
        if !d.force {
            return Err(format!(
                "cannot delete container {} that is not stopped: {}",
                d.id,
                st.as_str()
            ));
        }
        let _ = signal_init(&s, libc::SIGKILL);
        for p in cgroup_pids(&s) {
            let _ = crate::sys::process::kill(nix::unistd::Pid::from_raw(p), libc::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.alive() {
            if Instant::now() > deadline {
                return Err(format!(
                    "container {}: its init did not die after SIGKILL",
                    d.id
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    destroy(g, &s);
    Ok(())
}

/// Removes what create made (cgroups, state) and runs poststop hooks; their
/// failures are warnings, as the spec says.
pub fn destroy(g: &Global, s: &Saved) {
    let spec = config(g, s);
    for e in cgroups::remove(&s.cgroups, &s.cgroups_made) {
        g.warn(&e);
    }
    if let Err(e) = fs::remove_dir_all(s.dir(&g.root)) {
        g.warn(&format!("removing {}: {e}", s.dir(&g.root).display()));
    }
    if let Some(h) = spec.and_then(|c| c.hooks().clone()) {
        let st = super::hooks::state_json(&s.id, "stopped", 0, &s.bundle, &s.annotations);
        for hook in h.poststop().iter().flatten() {
            if let Err(e) = super::hooks::run("poststop", hook, &st) {
                g.warn(&e);
            }
        }
    }
}

/// create, start, wait, delete; signals sent to us go to the container.
pub fn run(g: &Global, r: &cli::Run) -> Result<i32, String> {
    use nix::sys::signal::{SigSet, Signal};
    use nix::sys::signalfd::{SfdFlags, SignalFd};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let mut sigs = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGHUP,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGCHLD,
        Signal::SIGWINCH,
    ] {
        sigs.add(s);
    }
    sigs.thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;
    let c = create::create(g, &r.create)?;
    if let Err(e) = start(g, &r.create.id) {
        let _ = crate::sys::process::kill(c.pid, libc::SIGKILL);
        let _ = waitpid(c.pid, None);
        destroy(g, &c.saved);
        return Err(e);
    }
    if r.detach {
        return Ok(0);
    }
    let sfd =
        SignalFd::with_flags(&sigs, SfdFlags::SFD_CLOEXEC).map_err(|e| format!("signalfd: {e}"))?;
    let code = loop {
        match waitpid(c.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => break code,
            Ok(WaitStatus::Signaled(_, sig, _)) => break 128 + sig as i32,
            Ok(_) => {}
            Err(e) => return Err(format!("waiting for the container: {e}")),
        }
        if let Ok(Some(info)) = sfd.read_signal() {
            let sig = info.ssi_signo as i32;
            if sig != libc::SIGCHLD {
                let _ = signal_init(&c.saved, signal_for(&c.saved, sig));
            }
        }
    };
    if !r.keep {
        destroy(g, &c.saved);
    }
    Ok(code)
}

pub fn list(g: &Global, l: &cli::List) -> Result<(), String> {
    let all: Vec<(Saved, Status)> = state::ids(&g.root)
        .into_iter()
        .filter_map(|id| Saved::load(&g.root, &id).ok())
        .map(|s| {
            let st = s.status(&g.root);
            (s, st)
        })
        .collect();
    if l.quiet {
        for (s, _) in &all {
            println!("{}", s.id);
        }
    } else if l.format == "json" {
        let v: Vec<_> = all.iter().map(|(s, st)| s.public(*st)).collect();
        println!("{}", serde_json::to_string(&v).map_err(|e| e.to_string())?);
    } else if l.format == "table" {
        println!(
            "{:<20} {:<8} {:<10} {:<40} {:<30} OWNER",
            "ID", "PID", "STATUS", "BUNDLE", "CREATED"
        );
        for (s, st) in &all {
            let p = s.public(*st);
            println!(
                "{:<20} {:<8} {:<10} {:<40} {:<30} root",
                s.id,
                p.pid,
                st.as_str(),
                s.bundle.display(),
                s.created
            );
        }
    } else {
        return Err(format!("invalid format {:?}: table or json", l.format));
    }
    Ok(())
}

pub fn ps(g: &Global, p: &cli::Ps) -> Result<(), String> {
    let s = load(g, &p.id)?;
    let pids = if s.status(&g.root) == Status::Stopped {
        vec![]
    } else {
        cgroup_pids(&s)
    };
    match p.format.as_str() {
        "json" => println!(
            "{}",
            serde_json::to_string(&pids).map_err(|e| e.to_string())?
        ),
        "table" => {
            println!("PID CMD");
            for pid in pids {
                let cmd = fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .unwrap_or_default()
                    .replace('\0', " ");
                println!("{pid} {}", cmd.trim_end());
            }
        }
        f => return Err(format!("invalid format {f:?}: table or json")),
    }
    Ok(())
}

/// What the runtime supports (runtime-spec features.md), and where nixrun's
/// wall is stricter than the spec: annotations under org.nixrun say so.
pub fn features() -> Result<(), String> {
    let v = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "dev", "diratime", "dirsync", "exec", "mand", "noatime",
            "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime", "nosuid",
            "private", "rbind", "relatime", "remount", "ro", "rprivate", "rshared", "rslave",
            "runbindable", "rw", "shared", "slave", "strictatime", "suid", "sync", "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps::all().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                              "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86_64"],
                "knownFlags": [],
                "supportedFlags": []
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            "org.nixrun.container-interface": "true: the guest gets nixrun's container interface (docs/oci.md)",
            "org.nixrun.wall.mount-tree": "without a user namespace, the container's mount tree is locked: its root cannot unmount or remount what the runtime mounted",
            "org.nixrun.wall.cgroup-v1": "a \"cgroup\" mount is the container's own cgroup2 tree, never the host's v1 hierarchies",
            "org.nixrun.wall.seccomp-archs": "a profile matches x86_64 calls only; other ABIs meet its default action",
            "org.nixrun.wall.keyring": "a new session keyring unless --no-new-keyring"
        }
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
    );
    Ok(())
}
