//! One boot of the guest: clone the child, walk the protocol's sync points
//! (protocol.rs), then run the event loop until the lifecycle says this boot
//! is over.
//!
//! The loop only translates: ready fds become lifecycle events (or are served
//! directly, like console bytes and mount requests), and the lifecycle's
//! actions become system calls. It never decides what an event means.

use super::console::{Console, Request};
use super::lifecycle::{Action, Event, Lifecycle, Outcome};
use super::machined::{self, Registrar};
use super::mountguard::{GuardConfig, MountGuard};
use super::network;
use super::notify::{self, HostNotifier};
use super::poll::{PollSet, Token};
use super::teardown::Teardown;
use super::SupervisorError;
use crate::cgroup::Cgroups;
use crate::container::{self, Setup};
use crate::plan::Plan;
use crate::policy::{Facts, Policy};
use crate::protocol::{self, FromChild, SupervisorEnd, ToChild};
use crate::state::{self, MachineState};
use nix::errno::Errno;
use nix::poll::PollFlags;
use nix::sched::CloneFlags;
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::cell::Cell;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Instant;

/// What comes after a boot.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Restart,
    Exit(i32),
}

/// The state of one boot as the event loop sees it: the child and the
/// endpoints it handed over.
pub struct Boot<'a> {
    plan: &'a Plan,
    /// The machine's runtime state, published once the init runs.
    state: &'a MachineState,
    pid: Pid,
    /// Set once PID 1 is reaped: its pid may be reused after that, so nothing
    /// may signal it any more.
    reaped: Rc<Cell<bool>>,
    channel: Option<SupervisorEnd>,
    /// Sync point 2 passed: end of file on the channel means exec.
    endpoints_received: bool,
    /// The mount namespace PID 1 was born in, held from the clone until its
    /// sync point 2: PID 1 leaves it for the locked copy (container/lock.rs),
    /// and the last reference's going tears the whole tree down; with this
    /// one the supervisor pays that (≈ 70 µs), while PID 1 goes on.
    first_mntns: Option<std::fs::File>,
    setup_failed: bool,
    console: Option<Console>,
    notify: Option<OwnedFd>,
    guard: Option<MountGuard>,
    guard_config: GuardConfig,
    /// The container's own network, if it has one.
    net: Option<network::Net>,
}

impl<'a> Boot<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        plan: &'a Plan,
        state: &'a MachineState,
        facts: &Facts,
        registrar: &mut Registrar,
        policy: &Policy,
        cgroups: &Cgroups,
        sigfd: &mut SignalFd,
        life: &mut Lifecycle,
        undo: &mut Teardown<'_>,
        host: &mut HostNotifier,
    ) -> Result<Next, SupervisorError> {
        let (sup, child_end) = protocol::pair()?;
        let sup_raw = sup.as_fd().as_raw_fd();
        let affinity = crate::sys::process::spreadable_affinity();
        let setup = Setup {
            plan,
            policy,
            affinity,
        };
        // Written to only by the child, in its copy of our memory; not resident here.
        let mut stack = vec![0u8; 1 << 20];
        let mut flags = CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC;
        // Born in a network namespace of its own: the supervisor can put links
        // into it right away, before the child goes on.
        let own_netns = plan.network.private && plan.network.netns_path.is_none();
        if own_netns {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        // With a user namespace the child is the outer process, in a mount
        // namespace of its own only; it clones PID 1 into the rest, owned by
        // the guest's user namespace (container/userns.rs).
        if policy.userns.is_some() {
            flags = CloneFlags::CLONE_NEWNS;
        }
        let child = Box::new(|| {
            // Our copy of the supervisor's end would hide the supervisor's death.
            let _ = nix::unistd::close(sup_raw);
            container::run(&setup, &child_end)
        });
        // Born in its cgroup where it can be (cgroup2 only, no user
        // namespace: there the outer child is not the guest).
        let born_in = match policy.userns {
            None => cgroups.payload_to_be_born_in()?,
            Some(_) => None,
        };
        let (pid, born) = match &born_in {
            Some(cgroup) => {
                crate::sys::process::clone_child_in(child, &mut stack, flags, cgroup.as_fd())
            }
            None => crate::sys::process::clone_child(child, &mut stack, flags).map(|p| (p, false)),
        }
        .map_err(|e| SupervisorError::Sys("clone the container", e))?;
        if let Some(mask) = &setup.affinity {
            // In parallel: its first half of the mount tree here, our
            // cgroups and network there.
            crate::sys::process::move_off_this_cpu(pid, mask);
        }
        drop(child_end);
        drop(stack);
        crate::phase::mark("clone");

        let reaped = Rc::new(Cell::new(false));
        let r = reaped.clone();
        // PID 1, once the outer child of a user-namespace start has named it.
        let leader = Rc::new(Cell::new(pid));
        let l = leader.clone();
        // Whatever happens from here on, the container does not outlive the boot.
        undo.push("stopping the container", move || {
            if !r.get() {
                let _ = kill(l.get(), libc::SIGKILL);
                reap_blocking(l.get());
                r.set(true);
            }
            Ok(())
        });

        let mut boot = Boot {
            plan,
            state,
            pid,
            reaped,
            channel: Some(sup),
            endpoints_received: false,
            first_mntns: (policy.userns.is_none())
                .then(|| std::fs::File::open(format!("/proc/{}/ns/mnt", pid.as_raw())).ok())
                .flatten(),
            setup_failed: false,
            console: None,
            notify: None,
            guard: None,
            guard_config: GuardConfig {
                private_network: plan.network.private,
                cgroup_root: Some(cgroups.v2_payload().to_path_buf()),
            },
            net: None,
        };
        boot.act(life.handle(Event::Cloned, Instant::now()), host);
        if let Some(u) = policy.userns {
            // Sync point 0: the outer child built the first half of the tree
            // and cloned PID 1; it exits now. Anything else is its failure,
            // which the loop reads (its line) and reaps.
            let first = boot.channel.as_ref().map(|c| c.recv());
            match first {
                Some(Ok(Some(FromChild::Inner(p)))) => {
                    reap_blocking(pid);
                    boot.pid = Pid::from_raw(p);
                    leader.set(boot.pid);
                    super::userns::write_maps(p, &u).map_err(SupervisorError::Failed)?;
                }
                Some(Ok(Some(FromChild::Failed(line)))) => {
                    boot.setup_failed = true;
                    if let Some(next) =
                        boot.act(life.handle(Event::SetupFailed(line), Instant::now()), host)
                    {
                        return next;
                    }
                    return boot.event_loop(sigfd, life, registrar, host);
                }
                _ => return boot.event_loop(sigfd, life, registrar, host),
            }
        }
        let pid = boot.pid;
        // While the child builds the first half of its mount tree, its cgroups
        // are made, with it in them. Sync point 1: it goes on (to the cgroup
        // namespace, /proc, /sys and the exec) only once it is in them (and
        // registered: machined finds the unit from that cgroup).
        let attach = (!born).then_some(pid.as_raw() as u32);
        match cgroups.make(attach) {
            Ok(warnings) => {
                if !plan.quiet {
                    for w in warnings {
                        eprintln!("nixrun: warning: {w}");
                    }
                }
            }
            // A child that failed in its first half has said why on the
            // channel: that line, not the missing pid, is the error.
            Err(e) if boot.child_gone() => {
                drop(e);
                return boot.event_loop(sigfd, life, registrar, host);
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(u) = policy.userns {
            // The guest's systemd manages its own subtree.
            cgroups.chown_payload(u.host_id(0))?;
        }
        if own_netns {
            boot.net = Some(network::setup(
                plan,
                pid.as_raw(),
                boot.reaped.clone(),
                undo,
            )?);
        }
        let ifindices = boot.net.as_ref().map_or(vec![], |n| n.ifindices.clone());
        if registrar.wanted() {
            match machined::register(
                &plan.machine,
                &facts.uuid,
                pid.as_raw(),
                &plan.root,
                &ifindices,
            ) {
                Ok(()) => {
                    let name = plan.machine.clone();
                    undo.push("unregistering from systemd-machined", move || {
                        machined::unregister(&name).map_err(|e| e.to_string())
                    })
                }
                Err(e) => registrar.failed(&e.to_string())?,
            }
        }
        crate::phase::mark("attach");
        if let Some(ch) = &boot.channel {
            // Only fails if the child has failed meanwhile (its end is
            // closed): the loop reads its line and reaps it.
            let _ = ch.send(&ToChild::Go);
        }
        boot.event_loop(sigfd, life, registrar, host)
    }

    /// Whether PID 1 has exited (a zombie, not reaped yet, or gone).
    fn child_gone(&self) -> bool {
        kill(self.pid, 0).is_err() || state::start_time(self.pid.as_raw()).is_none()
    }

    fn event_loop(
        &mut self,
        sigfd: &mut SignalFd,
        life: &mut Lifecycle,
        registrar: &mut Registrar,
        host: &mut HostNotifier,
    ) -> Result<Next, SupervisorError> {
        loop {
            let timeout = life
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()));
            let ready = {
                let stdin = std::io::stdin();
                // Served in this order: first the guard, whose caller (often
                // the guest's PID 1) waits for us; then what makes lifecycle
                // events, in their order; the console last, because reading
                // a pty can wait for the kernel's tty worker.
                let mut set = PollSet::new();
                if let Some(g) = &self.guard {
                    set.add(Token::MountGuard, g.fd());
                }
                set.add(Token::Signals, sigfd.as_fd());
                if let Some(ch) = &self.channel {
                    set.add(Token::Channel, ch.as_fd());
                }
                if let Some(n) = &self.notify {
                    set.add(Token::Notify, n.as_fd());
                }
                if let Some(c) = &self.console {
                    if c.reads_stdin() {
                        set.add(Token::Stdin, stdin.as_fd());
                    }
                    set.add(Token::Console, c.master());
                    if let Some(out) = c.pending_output() {
                        set.add_writable(Token::Stdout, out);
                    }
                }
                if let Some(w) = self.net.as_ref().and_then(|n| n.watch_fd()) {
                    set.add(Token::Addresses, w);
                }
                if let Some(h) = host.blocked() {
                    set.add_writable(Token::HostNotify, h);
                }
                set.wait(timeout)
                    .map_err(|e| SupervisorError::Sys("poll", e))?
            };
            let mut events = Vec::new();
            for (token, revents) in ready {
                match token {
                    Token::MountGuard => self.on_guard(revents),
                    Token::Console => {
                        if let Some(c) = self.console.as_mut() {
                            c.pump_output();
                        }
                    }
                    Token::Stdout => {
                        if let Some(c) = self.console.as_mut() {
                            c.flush_output();
                        }
                    }
                    Token::Channel => events.extend(self.on_channel()?),
                    Token::Notify => events.extend(self.on_notify()),
                    Token::Stdin => {
                        if let Some(Request::Kill) = self.console.as_mut().map(|c| c.pump_input()) {
                            events.push(Event::ConsoleKill);
                        }
                    }
                    Token::Signals => events.extend(self.on_signals(sigfd)),
                    Token::Addresses => {
                        if let Some(n) = self.net.as_mut() {
                            n.on_address_change(&self.plan.machine);
                        }
                    }
                    Token::HostNotify => host.flush(),
                }
            }
            if life.next_deadline().is_some_and(|d| Instant::now() >= d) {
                events.push(Event::Tick);
            }
            for ev in events {
                let actions = life.handle(ev, Instant::now());
                if actions.iter().any(|a| matches!(a, Action::Started { .. })) {
                    registrar.flush_notice();
                }
                if let Some(next) = self.act(actions, host) {
                    return next;
                }
            }
        }
    }

    /// Carries out the lifecycle's actions; Some once the boot is over.
    fn act(
        &mut self,
        actions: Vec<Action>,
        host: &mut HostNotifier,
    ) -> Option<Result<Next, SupervisorError>> {
        for a in actions {
            match a {
                Action::Started { leader } => self.publish(leader),
                Action::Say(line) => {
                    if !self.plan.quiet {
                        eprintln!("{line}");
                    }
                }
                Action::Host(m) => host.tell(m),
                Action::Signal(sig) => {
                    let _ = self.signal(sig);
                }
                Action::Kill => {
                    let _ = self.signal(libc::SIGKILL);
                }
                Action::Restart => return Some(Ok(Next::Restart)),
                Action::Exit(code) => return Some(Ok(Next::Exit(code))),
                Action::Fail(line) => return Some(Err(SupervisorError::Failed(line))),
            }
        }
        None
    }

    /// Writes the machine's state file for nixrunctl; a failure costs only that.
    fn publish(&self, leader: i32) {
        let st = MachineState {
            leader,
            leader_start: state::start_time(leader).unwrap_or(0),
            started_usec: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as u64),
            ..self.state.clone()
        };
        if let Err(e) = state::write(std::path::Path::new(state::STATE_DIR), &st) {
            if !self.plan.quiet {
                eprintln!(
                    "nixrun: warning: writing {}/{}: {e}",
                    state::STATE_DIR,
                    st.name
                );
            }
        }
    }

    fn signal(&self, sig: i32) -> nix::Result<()> {
        if self.reaped.get() {
            return Err(Errno::ESRCH);
        }
        kill(self.pid, sig)
    }

    fn on_guard(&mut self, revents: PollFlags) {
        if revents.contains(PollFlags::POLLIN) {
            if let Some(g) = &self.guard {
                g.handle();
            }
        } else if revents.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL)
        {
            // The guest's last task has exited: no one can ask any more, and the
            // listener would report this on every poll until PID 1 is reaped.
            self.guard = None;
        }
    }

    fn on_channel(&mut self) -> Result<Option<Event>, SupervisorError> {
        let Some(ch) = &self.channel else {
            return Ok(None);
        };
        match ch.recv()? {
            Some(FromChild::Ready(e)) => {
                self.endpoints_received = true;
                self.first_mntns = None;
                self.console = e.pty_master.map(|m| Console::new(m, self.plan.console));
                self.notify = e.notify;
                let config = self.guard_config.clone();
                self.guard = e.mount_listener.map(|l| MountGuard::new(l, config));
                Ok(None)
            }
            Some(FromChild::Failed(line)) => {
                self.setup_failed = true;
                Ok(Some(Event::SetupFailed(line)))
            }
            // Only the outer child sends it, and it is read before the loop.
            Some(FromChild::Inner(_)) => Err(SupervisorError::Failed(
                "the container sent its PID 1 out of turn".into(),
            )),
            None => {
                // Sync point 3, if the child got that far: its end is
                // close-on-exec. Otherwise it died; its exit status tells how.
                crate::phase::mark("exec-seen");
                self.channel = None;
                Ok(
                    (self.endpoints_received && !self.setup_failed).then_some(Event::Exec {
                        leader: self.pid.as_raw(),
                    }),
                )
            }
        }
    }

    fn on_notify(&mut self) -> Vec<Event> {
        let Some(sock) = &self.notify else {
            return Vec::new();
        };
        notify::receive(sock, self.pid.as_raw())
            .into_iter()
            .map(Event::Guest)
            .collect()
    }

    fn on_signals(&mut self, sigfd: &mut SignalFd) -> Vec<Event> {
        let mut events = Vec::new();
        // Children are reaped after the signals are read, not as SIGCHLD
        // comes: a PID 1's exit ends the boot, and the events after it are
        // not handled. A SIGTERM read after it in the same batch was lost
        // (seen: a stop during a guest's reboot loop, 2–5 in 150, nixrun
        // rebooting the guest on and on); now it comes first, or stays
        // queued for the next boot.
        let mut chld = false;
        while let Ok(Some(info)) = sigfd.read_signal() {
            match info.ssi_signo as i32 {
                libc::SIGCHLD => chld = true,
                libc::SIGTERM | libc::SIGINT | libc::SIGQUIT => events.push(Event::StopRequest),
                libc::SIGWINCH => {
                    if let Some(c) = &self.console {
                        c.resize();
                    }
                }
                // SIGHUP (a terminal went away), SIGUSR1, SIGUSR2 and the rest:
                // nothing for the guest to know about.
                _ => {}
            }
        }
        if chld {
            events.extend(self.reap());
        }
        events
    }

    /// Reaps exited children; for PID 1, first whatever it wrote or sent last
    /// (its SIGCHLD may be read before a READY=1 sent just before it exited),
    /// then its exit.
    fn reap(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return events,
                Ok(ws) if ws.pid() == Some(self.pid) => {
                    let Some(outcome) = Outcome::from_wait(ws) else {
                        continue; // stopped or continued, not gone
                    };
                    self.reaped.set(true);
                    if let Some(c) = self.console.as_mut() {
                        c.drain_output();
                    }
                    events.extend(self.on_notify());
                    // A failure line sent just before the exit is still queued.
                    while self.channel.is_some() {
                        match self.on_channel() {
                            Ok(Some(ev)) => events.push(ev),
                            Ok(None) => {}
                            Err(_) => self.channel = None,
                        }
                    }
                    crate::phase::mark("reaped");
                    events.push(Event::Exited(outcome));
                }
                Ok(_) => {}
                Err(Errno::EINTR) => {}
                Err(_) => return events,
            }
        }
    }
}

fn kill(pid: Pid, sig: i32) -> nix::Result<()> {
    crate::sys::process::kill(pid, sig)
}

fn reap_blocking(pid: Pid) {
    loop {
        match waitpid(pid, None) {
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return,
            Err(Errno::EINTR) | Ok(_) => {}
            Err(_) => return,
        }
    }
}
