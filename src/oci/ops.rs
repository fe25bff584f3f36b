//! The lifecycle commands after create: start, state, kill, delete, and
//! run (all of them in one), list, ps, features.

use super::cgroups;
use super::cli;
use super::create;
use super::state::{self, Saved, Status};
use super::Global;
use crate::supervisor::lifecycle::{HostMessage, Outcome};
use crate::supervisor::notify::HostNotifier;
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
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
    let (s, notify) = start_process(g, id)?;
    // runc's rule: a caller with $NOTIFY_SOCKET hears READY=1 from the
    // guest before start returns. Only until then: nobody stays to relay
    // more (`run` does, for the container's life).
    let mut host = HostNotifier::from_env();
    if let (Some(sock), true) = (notify, host.wanted()) {
        relay(&s, &sock, &mut host, None, true)?;
    }
    Ok(())
}

/// Starts a created container: its init runs the startContainer hooks and
/// execs; then the poststart hooks. Returns the receiving end of the guest's
/// notify socket, which the init hands over with the container interface.
fn start_process(g: &Global, id: &str) -> Result<(Saved, Option<OwnedFd>), String> {
    let s = load(g, id)?;
    match s.status(&g.root) {
        Status::Created => {}
        st => return Err(format!("cannot start a container that is {}", st.as_str())),
    }
    let sock = s.dir(&g.root).join(state::START_SOCKET);
    let (_dirfd, short) = state::short_path(&s.dir(&g.root), state::START_SOCKET)
        .map_err(|e| format!("container {id}: {e}"))?;
    let mut conn = UnixStream::connect(&short)
        .map_err(|e| format!("container {id}: its init does not answer: {e}"))?;
    // The socket's name is what "created" means: gone, the container is running.
    let _ = fs::remove_file(&sock);
    conn.write_all(b"start")
        .map_err(|e| format!("starting {id}: {e}"))?;
    let (reply, notify) = read_reply(&conn);
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
    Ok((s, notify))
}

/// What the init says on the start connection until it execs (its end is
/// close-on-exec): a failure line, or nothing; before either, a NUL byte
/// carrying the notify socket.
fn read_reply(conn: &UnixStream) -> (String, Option<OwnedFd>) {
    let mut text = Vec::new();
    let mut fd = None;
    let mut buf = [0u8; 4096];
    loop {
        match crate::sys::fd::recv(conn.as_fd(), &mut buf, rustix::net::RecvFlags::empty()) {
            Ok(r) if r.len == 0 && r.fds.is_empty() => break,
            Ok(mut r) => {
                let mut data = &buf[..r.len.min(buf.len())];
                if let Some(f) = r.fds.pop() {
                    fd = Some(f);
                    data = data.strip_prefix(b"\0").unwrap_or(data);
                }
                text.extend_from_slice(data);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                text.extend_from_slice(format!("reading the init's reply: {e}").as_bytes());
                break;
            }
        }
    }
    (String::from_utf8_lossy(&text).into_owned(), fd)
}

/// Passes the guest's sd_notify messages (from its PID 1 only, as the core
/// does) to our own $NOTIFY_SOCKET: until READY=1 if `until_ready`, else
/// until the init is gone; with `signals`, also until one arrives (its
/// number is returned). Returns when the init is gone, too.
fn relay(
    s: &Saved,
    sock: &OwnedFd,
    host: &mut HostNotifier,
    signals: Option<&nix::sys::signalfd::SignalFd>,
    until_ready: bool,
) -> Result<Option<i32>, String> {
    use crate::supervisor::poll::{PollSet, Token};
    loop {
        for m in crate::supervisor::notify::receive(sock, s.pid) {
            if let Some(st) = m.status {
                host.tell(HostMessage::Status(st));
            }
            if m.stopping {
                host.tell(HostMessage::Stopping);
            }
            if m.ready {
                host.tell(HostMessage::Ready);
                if until_ready {
                    host.drain(Duration::from_secs(5));
                    return Ok(None);
                }
            }
        }
        if !s.alive() {
            host.drain(Duration::from_secs(5));
            return Ok(None);
        }
        let mut set = PollSet::new();
        set.add(Token::Notify, sock.as_fd());
        if let Some(sfd) = signals {
            set.add(Token::Signals, sfd.as_fd());
        }
        if let Some(b) = host.blocked() {
            set.add_writable(Token::HostNotify, b);
        }
        // A timeout: the init's exit is not an event here unless it is our child.
        set.wait(Some(Duration::from_millis(100)))
            .map_err(|e| format!("waiting for the guest's notify socket: {e}"))?;
        host.flush();
        if let Some(sfd) = signals {
            if let Ok(Some(info)) = sfd.read_signal() {
                return Ok(Some(info.ssi_signo as i32));
            }
        }
    }
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
    g.debug(&format!(
        "{}: signal {sig} to {}",
        k.id,
        if k.all { "every process" } else { "the init" }
    ));
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
    let notify = match start_process(g, &r.create.id) {
        Ok((_, n)) => n,
        Err(e) => {
            let _ = crate::sys::process::kill(c.pid, libc::SIGKILL);
            let _ = waitpid(c.pid, None);
            destroy(g, &c.saved);
            return Err(e);
        }
    };
    let mut host = HostNotifier::from_env();
    let notify = notify.filter(|_| host.wanted());
    if r.detach {
        if let Some(sock) = &notify {
            relay(&c.saved, sock, &mut host, None, true)?;
        }
        return Ok(0);
    }
    let sfd = SignalFd::with_flags(&sigs, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| format!("signalfd: {e}"))?;
    let code = loop {
        match waitpid(c.pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(ws) => match (c.saved.boot, Outcome::from_wait(ws)) {
                // A booted guest's halt or poweroff (reboot(2) in a PID
                // namespace kills its PID 1 with SIGINT) is a clean end, and
                // its reboot is 133, as nixrun's own front end says them.
                (true, Some(Outcome::PoweredOff)) => break 0,
                (true, Some(Outcome::Rebooted)) => break 133,
                (_, Some(Outcome::Exited(code))) => break code,
                (_, Some(Outcome::PoweredOff)) => break 128 + libc::SIGINT,
                (_, Some(Outcome::Rebooted)) => break 128 + libc::SIGHUP,
                (_, Some(Outcome::Killed(sig))) => break 128 + sig,
                (_, None) => {}
            },
            Err(e) => return Err(format!("waiting for the container: {e}")),
        }
        // We stay for the container's whole life: its sd_notify messages
        // all go on (READY, STATUS, STOPPING), not just up to READY=1.
        let sig = match &notify {
            Some(sock) => relay(&c.saved, sock, &mut host, Some(&sfd), false)?,
            None => {
                let mut set = crate::supervisor::poll::PollSet::new();
                set.add(crate::supervisor::poll::Token::Signals, sfd.as_fd());
                let _ = set.wait(None);
                sfd.read_signal().ok().flatten().map(|i| i.ssi_signo as i32)
            }
        };
        if let Some(sig) = sig.filter(|s| *s != libc::SIGCHLD) {
            let _ = signal_init(&c.saved, signal_for(&c.saved, sig));
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
            "org.nixrun.container-interface": "true: the guest gets nixrun's container interface (docs/oci.md): container=nixrun, container_uuid, /run/host, the notify socket relayed by start (until READY=1) and run (for the container's life), read-only /sys and /proc/sys, a writable cgroup2 tree in a cgroup namespace, kill TERM as SIGRTMIN+3",
            "org.nixrun.divergence.linux_ns_itype": "runtime-tools linux_ns_itype (runc passes): a config without a mount namespace is refused; runc runs it in the host's mount namespace, mounting the container's /proc, /dev, /sys onto the bundle on the host's own tree (left there after delete) after making the host's / a recursive slave, with a chroot as the only wall",
            "org.nixrun.wall.no-mount-guard": "nixrun's seccomp guard against a real-root guest's fresh procfs, sysfs and fusectl mounts needs a resident supervisor; under nixrun-oci what the guest may mount is what its capabilities and profile allow",
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
