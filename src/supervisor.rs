//! The host side: one container's lifecycle, from cgroup to exit status.
//!
//! The supervisor stays single-threaded (PDEATHSIG is tied to the thread that
//! cloned) and small: after start-up it only moves bytes between the console pty
//! and stdout, relays sd_notify messages upward, and turns SIGTERM into the
//! guest's shutdown signal. Per boot:
//!
//!   cgroup: clean a crashed run's leftovers, refuse if running, create
//!   clone(NEWNS|NEWPID|NEWUTS|NEWIPC) → child (container/mod.rs) waits for "go"
//!   attach the child to the cgroup (a user namespace's uid/gid maps would be
//!   written here too) → "go"
//!   event loop until the child exits → map its status → remove the cgroup
//!
//! A guest reboot (its PID 1 killed by SIGHUP, see reboot_pid_ns()) boots it again
//! in-process, or, with --keep-unit, exits 133 so that the unit restarts and the
//! host's cgroup settings are applied afresh.

use crate::cgroup::{CgroupError, Cgroups};
use crate::channel::{self, ChannelError, FromChild};
use crate::console::{Console, Request};
use crate::container::{self, root::Root, Setup};
use crate::mountguard::MountGuard;
use crate::notify;
use crate::plan::{Bind, BindSource, Console as ConsoleMode, LinkJournal, Plan};
use crate::signal;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use sd_notify::NotifyState;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// nspawn's EXIT_FORCE_RESTART: container@.service has RestartForceExitStatus=133.
pub const EXIT_REBOOT: i32 = 133;

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The child's own one-line account of what failed.
    #[error("{0}")]
    Container(String),
    #[error("{0}: {1}")]
    Sys(&'static str, #[source] Errno),
    #[error("container root {path}: {err}", path = path.display())]
    Root {
        path: PathBuf,
        #[source]
        err: crate::container::root::RootError,
    },
    #[error("--link-journal=guest: {0}")]
    Journal(String),
    #[error("the container's init exited before it could be started (status {0:?})")]
    EarlyExit(WaitStatus),
}

/// How one boot of the guest ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Exited(i32),
    /// PID 1 killed by SIGINT: the guest called reboot(2) to halt or power off.
    PoweredOff,
    /// PID 1 killed by SIGHUP: the guest called reboot(2) to restart.
    Rebooted,
    Killed(i32),
}

impl Outcome {
    fn from_wait(ws: WaitStatus) -> Option<Outcome> {
        match ws {
            WaitStatus::Exited(_, code) => Some(Outcome::Exited(code)),
            WaitStatus::Signaled(_, Signal::SIGINT, _) => Some(Outcome::PoweredOff),
            WaitStatus::Signaled(_, Signal::SIGHUP, _) => Some(Outcome::Rebooted),
            WaitStatus::Signaled(_, sig, _) => Some(Outcome::Killed(sig as i32)),
            _ => None,
        }
    }
}

/// Signals the supervisor handles in its loop (blocked, read from a signalfd).
fn handled_signals() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGCHLD,
        Signal::SIGHUP,
        Signal::SIGWINCH,
    ] {
        s.add(sig);
    }
    s
}

macro_rules! say {
    ($plan:expr, $($arg:tt)*) => {
        if !$plan.quiet {
            eprintln!($($arg)*);
        }
    };
}

/// Runs the container until the guest is done; returns nixrun's exit status.
pub fn run(plan: &Plan) -> Result<i32, SupervisorError> {
    // Not dumpable: no process of the same uid (a guest process among them, should
    // one ever see us) may ptrace us or open our /proc files (CVE-2019-5736's door).
    // SAFETY: plain prctl.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // Device nodes bound in on purpose are allowed too, as nspawn's DeviceAllow=.
    let mut device_rules = crate::devices::DEFAULT.to_vec();
    for b in &plan.binds {
        if let BindSource::Host(src) = &b.source {
            if let Some(r) = std::fs::metadata(src)
                .ok()
                .and_then(|m| crate::devices::rule_for(&m))
            {
                device_rules.push(r);
            }
        }
    }
    let cgroups = Cgroups::plan(&plan.machine, plan.keep_unit, device_rules)?;
    let root = Root::open_dir(&plan.root)
        .map_err(|e| SupervisorError::Sys("open the container root", e))?;
    let host_os_release = ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let host_pairs = host_os_release
        .as_deref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|s| os_release_pairs(&s))
        .unwrap_or_default();
    let guest_id = read_machine_id(&root, &plan.root)?;
    let uuid = guest_id.or(plan.uuid).unwrap_or_else(random_uuid);
    let uuid_str = format_uuid(&uuid);
    let extra_binds: Vec<Bind> = link_journal(plan, &root, &uuid)?.into_iter().collect();
    drop(root);

    let setup = Setup {
        plan,
        uuid: uuid_str.clone(),
        host_os_release,
        env: guest_env(plan, &uuid_str, &host_pairs),
        extra_binds,
    };

    // Blocked before the clone, so no signal falls between the cracks; the child
    // unblocks them before exec.
    let sigs = handled_signals();
    sigs.thread_block()
        .map_err(|e| SupervisorError::Sys("block signals", e))?;
    let mut sigfd = SignalFd::with_flags(&sigs, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| SupervisorError::Sys("signalfd", e))?;
    // A vanished stdout reader must not kill the supervisor (and with it the guest).
    // SAFETY: SIG_IGN has no handler code.
    let _ = unsafe {
        sigaction(
            Signal::SIGPIPE,
            &SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty()),
        )
    };

    loop {
        cgroups.create()?;
        let result = boot_once(plan, &setup, &cgroups, &mut sigfd);
        for e in cgroups.remove() {
            eprintln!("nixrun: warning: {e}");
        }
        let (outcome, stop_requested) = result?;
        match outcome {
            // A stop request outlives the boot it arrived in: a guest that was
            // rebooting just then must not come up again.
            Outcome::Rebooted if stop_requested => {
                say!(plan, "Container {} has been shut down.", plan.machine);
                return Ok(0);
            }
            Outcome::Rebooted if !plan.keep_unit => {
                say!(plan, "Container {} is being rebooted.", plan.machine);
                continue;
            }
            Outcome::Rebooted => {
                say!(plan, "Container {} is being rebooted.", plan.machine);
                return Ok(EXIT_REBOOT);
            }
            Outcome::PoweredOff => {
                say!(plan, "Container {} has been shut down.", plan.machine);
                return Ok(0);
            }
            Outcome::Exited(code) => {
                if code != 0 {
                    say!(
                        plan,
                        "Container {} failed with error code {code}.",
                        plan.machine
                    );
                }
                // 133 would make the unit restart; only a reboot may mean that.
                return Ok(if code == EXIT_REBOOT { 1 } else { code });
            }
            Outcome::Killed(sig) => {
                say!(
                    plan,
                    "Container {} terminated by {}.",
                    plan.machine,
                    signal::name(sig)
                );
                return Ok(1);
            }
        }
    }
}

fn read_machine_id(root: &Root, path: &Path) -> Result<Option<[u8; 16]>, SupervisorError> {
    let data = root
        .read_file(Path::new("/etc/machine-id"))
        .map_err(|err| SupervisorError::Root {
            path: path.to_path_buf(),
            err,
        })?;
    Ok(data.and_then(|d| {
        let s = String::from_utf8_lossy(&d);
        let s = s.trim();
        // "uninitialized" (systemd's first-boot marker) and empty both mean unset.
        (s.len() == 32)
            .then(|| crate::plan::parse_uuid(s))
            .flatten()
    }))
}

fn random_uuid() -> [u8; 16] {
    let mut u = [0u8; 16];
    crate::sys::getrandom(&mut u).expect("getrandom");
    // A version 4 UUID, as systemd generates them.
    u[6] = (u[6] & 0x0f) | 0x40;
    u[8] = (u[8] & 0x3f) | 0x80;
    u
}

/// 32 hex digits: the machine-id form, also the guest's journal directory name.
fn hex_id(u: &[u8; 16]) -> String {
    u.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn format_uuid(u: &[u8; 16]) -> String {
    let h = hex_id(u);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// The host's os-release fields the container interface passes on as
/// $container_host_*.
pub fn os_release_pairs(text: &str) -> Vec<(String, String)> {
    const KEYS: &[&str] = &[
        "ID",
        "VERSION_ID",
        "BUILD_ID",
        "VARIANT_ID",
        "IMAGE_ID",
        "IMAGE_VERSION",
    ];
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once('=') else {
            continue;
        };
        if KEYS.contains(&k) {
            let v = v.trim().trim_matches('"').trim_matches('\'');
            out.push((
                format!("container_host_{}", k.to_lowercase()),
                v.to_string(),
            ));
        }
    }
    out
}

/// PID 1's environment: the container interface's variables, then --setenv (which
/// wins, replacing a variable of the same name in place).
pub fn guest_env(
    plan: &Plan,
    uuid: &str,
    host_pairs: &[(String, String)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("container".into(), "nixrun".into()),
        ("TERM".into(), plan.term.clone()),
        ("HOME".into(), "/root".into()),
        ("USER".into(), "root".into()),
        ("LOGNAME".into(), "root".into()),
        ("container_uuid".into(), uuid.into()),
        ("NOTIFY_SOCKET".into(), "/run/host/notify".into()),
    ];
    env.extend(host_pairs.iter().cloned());
    for (k, v) in &plan.setenv {
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    env
}

/// --link-journal, for `journalctl -m` on the host. The guest's journal lives in
/// /var/log/journal/<machine-id>, and its machine id is the UUID we pass when its
/// /etc/machine-id is empty. `guest`: the host gets a symlink to the guest's
/// directory. `auto`: if the host already has a directory for this machine (made
/// for `host` mode), the guest gets it bound in — returned as an extra bind.
fn link_journal(
    plan: &Plan,
    root: &Root,
    uuid: &[u8; 16],
) -> Result<Option<Bind>, SupervisorError> {
    let id = hex_id(uuid);
    let host_dir = Path::new("/var/log/journal");
    let host_path = host_dir.join(&id);
    let in_guest = Path::new("/var/log/journal").join(&id);
    if plan.link_journal == LinkJournal::No {
        return Ok(None);
    }
    let must = match plan.link_journal {
        LinkJournal::No => return Ok(None),
        LinkJournal::Auto => {
            let is_dir = host_path.symlink_metadata().is_ok_and(|m| m.is_dir());
            return Ok(is_dir.then_some(Bind {
                source: BindSource::Host(host_path),
                target: in_guest,
                readonly: false,
                recursive: false,
                is_dir: true,
            }));
        }
        LinkJournal::Guest => true,
        LinkJournal::TryGuest => false,
    };
    let fail = |why: String| {
        if must {
            Err(SupervisorError::Journal(why))
        } else {
            Ok(None)
        }
    };
    if !host_dir.is_dir() {
        return fail(format!("the host has no {}", host_dir.display()));
    }
    let guest_dir = plan
        .root
        .join(in_guest.strip_prefix("/").unwrap_or(&in_guest));
    match std::fs::read_link(&host_path) {
        Ok(t) if t == guest_dir => {}
        _ if host_path.symlink_metadata().is_ok() => {
            return fail(format!(
                "{} exists and is not a link to this guest",
                host_path.display()
            ))
        }
        _ => {
            if let Err(e) = root.mkdir_all(&in_guest, 0o2755) {
                return fail(e.to_string());
            }
            if let Err(e) = std::os::unix::fs::symlink(&guest_dir, &host_path) {
                return fail(format!("{}: {e}", host_path.display()));
            }
        }
    }
    Ok(None)
}

/// The state of one boot as the event loop sees it.
struct Boot<'a> {
    plan: &'a Plan,
    pid: Pid,
    console: Option<Console>,
    notify: Option<OwnedFd>,
    guard: Option<MountGuard>,
    channel_open: bool,
    failure: Option<String>,
    ready_sent: bool,
    guest_ready: bool,
    stop_requests: u32,
    /// Resend the kill signal while the guest may not have its handlers yet.
    resend_until: Option<Instant>,
    last_send: Instant,
    status: Option<WaitStatus>,
}

fn boot_once(
    plan: &Plan,
    setup: &Setup<'_>,
    cgroups: &Cgroups,
    sigfd: &mut SignalFd,
) -> Result<(Outcome, bool), SupervisorError> {
    let (sup, child_end) = channel::pair()?;
    let sup_raw = std::os::fd::AsRawFd::as_raw_fd(&sup.as_fd());
    // Written to only by the child, in its copy of our memory; not resident here.
    let mut stack = vec![0u8; 1 << 20];
    let flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    let child = Box::new(|| {
        // Our copy of the supervisor's end would hide the supervisor's death.
        let _ = nix::unistd::close(sup_raw);
        container::run(setup, &child_end)
    });
    // SAFETY: the process is single-threaded, so the child's copy of memory is
    // consistent (no lock is held by another thread); the child only uses its copy.
    let pid = unsafe { nix::sched::clone(child, &mut stack, flags, Some(libc::SIGCHLD)) }
        .map_err(|e| SupervisorError::Sys("clone the container", e))?;
    drop(child_end);
    drop(stack);

    let mut boot = Boot {
        plan,
        pid,
        console: None,
        notify: None,
        guard: None,
        channel_open: true,
        failure: None,
        ready_sent: false,
        guest_ready: false,
        stop_requests: 0,
        resend_until: None,
        last_send: Instant::now(),
        status: None,
    };
    let started = cgroups
        .attach(pid.as_raw() as u32)
        .map_err(SupervisorError::from)
        .and_then(|_| sup.send_go().map_err(SupervisorError::from));
    if let Err(e) = started {
        boot.kill_and_reap();
        return Err(e);
    }
    if let Err(e) = boot.event_loop(&sup, sigfd) {
        boot.kill_and_reap();
        return Err(e);
    }
    if let Some(msg) = boot.failure.take() {
        return Err(SupervisorError::Container(msg));
    }
    let ws = boot
        .status
        .expect("the loop ends when the child was reaped");
    let outcome = Outcome::from_wait(ws).ok_or(SupervisorError::EarlyExit(ws))?;
    Ok((outcome, boot.stop_requests > 0))
}

impl Boot<'_> {
    fn kill_and_reap(&mut self) {
        let _ = kill(self.pid, Signal::SIGKILL);
        while self.status.is_none() {
            match waitpid(self.pid, None) {
                Ok(ws @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    self.status = Some(ws)
                }
                Err(Errno::EINTR) | Ok(_) => {}
                Err(_) => break,
            }
        }
    }

    fn event_loop(
        &mut self,
        sup: &channel::SupervisorEnd,
        sigfd: &mut SignalFd,
    ) -> Result<(), SupervisorError> {
        while self.status.is_none() {
            let timeout = match self.resend_until {
                Some(_) => PollTimeout::from(250u16),
                None => PollTimeout::NONE,
            };
            let (sig_ev, chan_ev, notify_ev, pty_ev, stdin_ev, guard_ev) = {
                let stdin = std::io::stdin();
                let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
                let chan_i = self.channel_open.then(|| {
                    fds.push(PollFd::new(sup.as_fd(), PollFlags::POLLIN));
                    fds.len() - 1
                });
                let notify_i = self.notify.as_ref().map(|n| {
                    fds.push(PollFd::new(n.as_fd(), PollFlags::POLLIN));
                    fds.len() - 1
                });
                let pty_i = self.console.as_ref().map(|c| {
                    fds.push(PollFd::new(c.master(), PollFlags::POLLIN));
                    fds.len() - 1
                });
                let stdin_i = self.console.as_ref().filter(|c| c.reads_stdin()).map(|_| {
                    fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
                    fds.len() - 1
                });
                let guard_i = self.guard.as_ref().map(|g| {
                    fds.push(PollFd::new(g.fd(), PollFlags::POLLIN));
                    fds.len() - 1
                });
                match poll(&mut fds, timeout) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => return Err(SupervisorError::Sys("poll", e)),
                }
                let ev = |i: Option<usize>| {
                    i.and_then(|i| fds[i].revents())
                        .is_some_and(|r| !r.is_empty())
                };
                (
                    ev(Some(0)),
                    ev(chan_i),
                    ev(notify_i),
                    ev(pty_i),
                    ev(stdin_i),
                    guard_i
                        .and_then(|i| fds[i].revents())
                        .unwrap_or(PollFlags::empty()),
                )
            };
            // First: a guest task is blocked in mount(2) until we answer.
            if guard_ev.contains(PollFlags::POLLIN) {
                if let Some(g) = &self.guard {
                    g.handle();
                }
            } else if guard_ev
                .intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)
            {
                // The guest's last task has exited: no one can ask any more, and the
                // listener would report this on every poll until PID 1 is reaped.
                self.guard = None;
            }
            if pty_ev {
                if let Some(c) = self.console.as_mut() {
                    c.pump_output();
                }
            }
            if chan_ev {
                self.on_channel(sup)?;
            }
            if notify_ev {
                self.on_notify();
            }
            if stdin_ev {
                if let Some(Request::Kill) = self.console.as_mut().map(|c| c.pump_input()) {
                    self.stop_requests = u32::MAX;
                    let _ = kill(self.pid, Signal::SIGKILL);
                }
            }
            if sig_ev {
                self.on_signals(sigfd);
            }
            self.maybe_resend();
        }
        // The guest is gone; whatever it wrote or sent last is still queued (its
        // SIGCHLD may have been read before a READY=1 sent just before it exited).
        if let Some(c) = self.console.as_mut() {
            c.pump_output();
        }
        self.on_notify();
        Ok(())
    }

    fn on_channel(&mut self, sup: &channel::SupervisorEnd) -> Result<(), SupervisorError> {
        match sup.recv()? {
            Some(FromChild::Fds {
                pty_master,
                notify,
                listener,
            }) => {
                self.console = pty_master.map(|m| Console::new(m, self.plan.console));
                self.notify = notify;
                self.guard = listener.map(MountGuard::new);
            }
            Some(FromChild::Failed(msg)) => self.failure = Some(msg),
            None => {
                self.channel_open = false;
                if self.failure.is_none() {
                    self.on_exec();
                }
            }
        }
        Ok(())
    }

    /// The child's end closed on exec: the guest's init runs.
    fn on_exec(&mut self) {
        // Said only now, so that a container that fails to start gets one line.
        say!(
            self.plan,
            "Spawned container {} on {}.",
            self.plan.machine,
            self.plan.root.display()
        );
        if self.plan.console == ConsoleMode::Interactive {
            say!(
                self.plan,
                "Press ^] three times within 1s to kill container."
            );
        }
        let status = format!("Container running.\nX_NIXRUN_LEADER_PID={}", self.pid);
        notify::to_host(&[NotifyState::Status(&status)]);
        if !self.plan.notify_ready {
            self.ready_sent = true;
            notify::to_host(&[NotifyState::Ready]);
        }
    }

    fn on_notify(&mut self) {
        let Some(sock) = &self.notify else { return };
        for m in notify::receive(sock, self.pid.as_raw()) {
            if m.ready {
                self.guest_ready = true;
                if !self.ready_sent {
                    self.ready_sent = true;
                    notify::to_host(&[NotifyState::Ready]);
                }
            }
            if let Some(s) = &m.status {
                notify::to_host(&[NotifyState::Status(&format!("Container running: {s}"))]);
            }
            if m.stopping {
                notify::to_host(&[NotifyState::Stopping]);
                // It heard us (or is stopping on its own): no need to repeat.
                self.resend_until = None;
            }
        }
    }

    fn on_signals(&mut self, sigfd: &mut SignalFd) {
        while let Ok(Some(info)) = sigfd.read_signal() {
            match info.ssi_signo as i32 {
                libc::SIGCHLD => self.reap(),
                libc::SIGTERM | libc::SIGINT => self.on_stop_request(),
                libc::SIGWINCH => {
                    if let Some(c) = &self.console {
                        c.resize();
                    }
                }
                _ => {} // SIGHUP: a terminal went away; the guest keeps running.
            }
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(ws) if ws.pid() == Some(self.pid) => {
                    if matches!(ws, WaitStatus::Exited(..) | WaitStatus::Signaled(..)) {
                        self.status = Some(ws);
                    }
                }
                Ok(_) => {}
                Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }

    fn on_stop_request(&mut self) {
        self.stop_requests = self.stop_requests.saturating_add(1);
        let first = self.stop_requests == 1;
        match self.plan.kill_signal {
            // Before exec there is nothing to shut down cleanly; the init could not
            // even receive the signal without a handler.
            Some(sig) if first && !self.channel_open => {
                say!(
                    self.plan,
                    "Container {}: asking the guest to shut down ({}); send SIGTERM again to kill it.",
                    self.plan.machine,
                    signal::name(sig)
                );
                notify::to_host(&[NotifyState::Stopping]);
                self.send(sig);
                // An init that was exec'd moments ago may not handle signals yet; a
                // booting one drops a signal it has no handler for, so repeat until
                // it is ready or says it is stopping.
                if !self.guest_ready {
                    self.resend_until = Some(Instant::now() + Duration::from_secs(10));
                }
            }
            _ => {
                self.resend_until = None;
                let _ = kill(self.pid, Signal::SIGKILL);
            }
        }
    }

    fn send(&mut self, sig: i32) {
        // SAFETY: plain kill(2); nix's Signal has no real-time signals.
        unsafe { libc::kill(self.pid.as_raw(), sig) };
        self.last_send = Instant::now();
    }

    fn maybe_resend(&mut self) {
        let Some(until) = self.resend_until else {
            return;
        };
        let now = Instant::now();
        if now > until || self.guest_ready {
            self.resend_until = None;
        } else if now.duration_since(self.last_send) >= Duration::from_millis(250) {
            if let Some(sig) = self.plan.kill_signal {
                self.send(sig);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Exec, LinkJournal};

    #[test]
    fn uuid_format() {
        let u = crate::plan::parse_uuid("0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!(format_uuid(&u), "01234567-89ab-cdef-0123-456789abcdef");
        let r = random_uuid();
        assert_eq!(r[6] >> 4, 4);
        assert_ne!(random_uuid(), r);
    }

    #[test]
    fn host_fields_and_setenv_order() {
        let pairs = os_release_pairs("PRETTY_NAME=\"Debian\"\nID=debian\nVERSION_ID=\"12\"\n");
        assert_eq!(
            pairs,
            vec![
                ("container_host_id".to_string(), "debian".to_string()),
                ("container_host_version_id".to_string(), "12".to_string())
            ]
        );
        let plan = Plan {
            root: "/r".into(),
            machine: "m".into(),
            hostname: "m".into(),
            uuid: None,
            exec: Exec::Boot(vec![]),
            binds: vec![],
            tmpfs: vec![],
            setenv: vec![("PATH".into(), "/x".into()), ("FOO".into(), "1".into())],
            keep_unit: false,
            notify_ready: false,
            kill_signal: None,
            link_journal: LinkJournal::No,
            console: ConsoleMode::Pipe,
            quiet: true,
            term: "vt220".into(),
            capabilities: Default::default(),
            denied_syscalls: Default::default(),
        };
        let env = guest_env(&plan, "u", &pairs);
        assert_eq!(env[0], ("PATH".into(), "/x".into()));
        assert!(env.contains(&("container".into(), "nixrun".into())));
        assert!(env.contains(&("container_uuid".into(), "u".into())));
        assert!(env.contains(&("NOTIFY_SOCKET".into(), "/run/host/notify".into())));
        assert_eq!(env.last(), Some(&("FOO".into(), "1".into())));
    }

    #[test]
    fn wait_statuses() {
        let p = Pid::from_raw(1);
        assert_eq!(
            Outcome::from_wait(WaitStatus::Exited(p, 7)),
            Some(Outcome::Exited(7))
        );
        assert_eq!(
            Outcome::from_wait(WaitStatus::Signaled(p, Signal::SIGINT, false)),
            Some(Outcome::PoweredOff)
        );
        assert_eq!(
            Outcome::from_wait(WaitStatus::Signaled(p, Signal::SIGHUP, false)),
            Some(Outcome::Rebooted)
        );
        assert_eq!(
            Outcome::from_wait(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            Some(Outcome::Killed(9))
        );
    }
}
