//! The container's lifecycle as a pure state machine: events in, actions out.
//!
//! The supervisor's event loop (boot.rs) turns what happens — a signal, the
//! child's messages, the guest's sd_notify datagrams, PID 1's exit — into
//! `Event`s, feeds them here with the current time, and carries out the
//! `Action`s that come back. All decisions live here: when to tell the host
//! READY=1, how a stop request becomes the guest's shutdown signal (and when it
//! must be repeated or escalated to SIGKILL), what PID 1's exit means, whether
//! the guest boots again and with which status nixrun exits. Nothing here makes
//! a system call, so every path is unit-tested.

use crate::signal;
use std::time::{Duration, Instant};

/// nspawn's EXIT_FORCE_RESTART: container@.service has RestartForceExitStatus=133.
pub const EXIT_REBOOT: i32 = 133;

/// How often the kill signal is repeated until the guest says it is stopping:
/// often at first (an init drops the signal until it has installed its
/// handler), then rarely (an init that never says STOPPING=1).
const RESEND_EVERY: Duration = Duration::from_millis(250);
const RESEND_FAST_FOR: Duration = Duration::from_secs(10);
const RESEND_SLOW_EVERY: Duration = Duration::from_secs(2);

/// What the machine needs to know about the container.
#[derive(Debug, Clone)]
pub struct Config {
    pub machine: String,
    /// The root directory, for messages.
    pub root: String,
    /// Sent to PID 1 on a stop request; None: kill it.
    pub kill_signal: Option<i32>,
    /// READY=1 when the guest says so, not as soon as its init runs.
    pub notify_ready: bool,
    /// A guest reboot ends the run with EXIT_REBOOT (the unit restarts us).
    pub keep_unit: bool,
    /// The console is the user's terminal (mention the ^] escape).
    pub interactive: bool,
}

/// How one boot of the guest ended: PID 1's wait status, as the container
/// interface defines it.
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
    pub fn from_wait(ws: nix::sys::wait::WaitStatus) -> Option<Outcome> {
        use nix::sys::signal::Signal;
        use nix::sys::wait::WaitStatus;
        match ws {
            WaitStatus::Exited(_, code) => Some(Outcome::Exited(code)),
            WaitStatus::Signaled(_, Signal::SIGINT, _) => Some(Outcome::PoweredOff),
            WaitStatus::Signaled(_, Signal::SIGHUP, _) => Some(Outcome::Rebooted),
            WaitStatus::Signaled(_, sig, _) => Some(Outcome::Killed(sig as i32)),
            _ => None,
        }
    }
}

/// What the guest's PID 1 said on /run/host/notify, as far as the host cares.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GuestMessage {
    pub ready: bool,
    pub stopping: bool,
    pub status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A boot begins: the child was cloned.
    Cloned,
    /// Sync point 3: the guest's init runs, as host pid `leader`.
    Exec {
        leader: i32,
    },
    /// The child reported a failed setup step.
    SetupFailed(String),
    Guest(GuestMessage),
    /// SIGTERM or SIGINT.
    StopRequest,
    /// ^] three times on the interactive console.
    ConsoleKill,
    /// The deadline from `next_deadline` has passed.
    Tick,
    /// PID 1 was reaped.
    Exited(Outcome),
}

/// What the service manager above us is told ($NOTIFY_SOCKET).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMessage {
    Ready,
    Stopping,
    Status(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The guest's init runs as host pid `leader`: publish the machine.
    Started {
        leader: i32,
    },
    /// A status line for the user (suppressed by --quiet).
    Say(String),
    Host(HostMessage),
    /// Send this signal to PID 1.
    Signal(i32),
    /// SIGKILL PID 1 (the whole container goes with it).
    Kill,
    /// This boot is over; boot the guest again.
    Restart,
    /// The run is over: exit with this status.
    Exit(i32),
    /// The run failed: this line on stderr, exit 1.
    Fail(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Cloned, setting up; no init yet.
    Starting,
    /// The guest's init runs.
    Running,
    /// PID 1 is gone; the run or this boot is decided.
    Over,
}

/// Repeating the kill signal to an init that may drop it.
#[derive(Debug, Clone, Copy)]
struct Resend {
    signal: i32,
    since: Instant,
    last: Instant,
}

impl Resend {
    fn next(&self) -> Instant {
        let every = if self.last.duration_since(self.since) < RESEND_FAST_FOR {
            RESEND_EVERY
        } else {
            RESEND_SLOW_EVERY
        };
        self.last + every
    }
}

#[derive(Debug)]
pub struct Lifecycle {
    cfg: Config,
    phase: Phase,
    ready_sent: bool,
    guest_ready: bool,
    /// Stop requests over the whole run: one that arrived while the guest was
    /// rebooting must keep it from coming up again.
    stop_requests: u32,
    resend: Option<Resend>,
    failure: Option<String>,
    /// This boot's PID 1 was sent SIGKILL: an exec reported after that is
    /// moot (the kill and the exec raced).
    killed: bool,
}

impl Lifecycle {
    pub fn new(cfg: Config) -> Lifecycle {
        Lifecycle {
            cfg,
            phase: Phase::Over,
            ready_sent: false,
            guest_ready: false,
            stop_requests: 0,
            resend: None,
            failure: None,
            killed: false,
        }
    }

    /// When the machine wants a `Tick`, if at all.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.resend.map(|r| r.next())
    }

    pub fn handle(&mut self, ev: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match ev {
            Event::Cloned => {
                // Every boot reports its readiness: the tests and a watching
                // service manager see each boot come up.
                self.phase = Phase::Starting;
                self.ready_sent = false;
                self.guest_ready = false;
                self.failure = None;
                self.resend = None;
                self.killed = false;
            }
            Event::Exec { leader } => self.on_exec(leader, &mut out),
            Event::SetupFailed(line) => self.failure = Some(line),
            Event::Guest(m) => self.on_guest(m, &mut out),
            Event::StopRequest => self.on_stop_request(now, &mut out),
            Event::ConsoleKill => {
                self.stop_requests = u32::MAX;
                self.resend = None;
                self.killed = true;
                out.push(Action::Kill);
            }
            Event::Tick => self.on_tick(now, &mut out),
            Event::Exited(outcome) => self.on_exit(outcome, &mut out),
        }
        out
    }

    fn on_exec(&mut self, leader: i32, out: &mut Vec<Action>) {
        if self.killed || self.phase != Phase::Starting {
            return;
        }
        self.phase = Phase::Running;
        out.push(Action::Started { leader });
        // Said only now, so that a container that fails to start gets one line.
        out.push(Action::Say(format!(
            "Spawned container {} on {}.",
            self.cfg.machine, self.cfg.root
        )));
        if self.cfg.interactive {
            out.push(Action::Say(
                "Press ^] three times within 1s to kill container.".into(),
            ));
        }
        out.push(Action::Host(HostMessage::Status(format!(
            "Container running.\nX_NIXRUN_LEADER_PID={leader}"
        ))));
        if !self.cfg.notify_ready && !self.ready_sent {
            self.ready_sent = true;
            out.push(Action::Host(HostMessage::Ready));
        }
    }

    fn on_guest(&mut self, m: GuestMessage, out: &mut Vec<Action>) {
        if m.ready {
            self.guest_ready = true;
            if !self.ready_sent {
                self.ready_sent = true;
                out.push(Action::Host(HostMessage::Ready));
            }
        }
        if let Some(s) = &m.status {
            out.push(Action::Host(HostMessage::Status(format!(
                "Container running: {s}"
            ))));
        }
        if m.stopping {
            out.push(Action::Host(HostMessage::Stopping));
            // It heard us (or is stopping on its own): no need to repeat.
            self.resend = None;
        }
    }

    fn on_stop_request(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.stop_requests = self.stop_requests.saturating_add(1);
        let first = self.stop_requests == 1;
        match self.cfg.kill_signal {
            // Before exec there is nothing to shut down cleanly; the init could not
            // even receive the signal without a handler.
            Some(sig) if first && self.phase == Phase::Running => {
                out.push(Action::Say(format!(
                    "Container {}: asking the guest to shut down ({}); send SIGTERM again to kill it.",
                    self.cfg.machine,
                    signal::name(sig)
                )));
                out.push(Action::Host(HostMessage::Stopping));
                out.push(Action::Signal(sig));
                // An init drops a signal it has no handler for yet, and a booting
                // systemd installs its handlers at some point during start-up,
                // maybe after telling us READY=1 of an earlier boot phase: repeat
                // until it says it is stopping (or is gone), however it is doing.
                self.resend = Some(Resend {
                    signal: sig,
                    since: now,
                    last: now,
                });
            }
            _ if self.phase == Phase::Over => {}
            _ => {
                self.resend = None;
                self.killed = true;
                out.push(Action::Kill);
            }
        }
    }

    fn on_tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(r) = self.resend else { return };
        if self.phase != Phase::Running {
            self.resend = None;
        } else if now >= r.next() {
            out.push(Action::Signal(r.signal));
            self.resend = Some(Resend { last: now, ..r });
        }
    }

    fn on_exit(&mut self, outcome: Outcome, out: &mut Vec<Action>) {
        let was = self.phase;
        self.phase = Phase::Over;
        self.resend = None;
        if let Some(line) = self.failure.take() {
            out.push(Action::Fail(line));
            return;
        }
        let m = &self.cfg.machine;
        if was == Phase::Starting {
            if self.stop_requests > 0 {
                // Asked to stop before its init ran: killed as asked, nothing of
                // the guest ever ran, and that is a clean stop.
                out.push(Action::Say(format!(
                    "Container {m} stopped before its init was started."
                )));
                out.push(Action::Exit(0));
            } else {
                out.push(Action::Fail(format!(
                    "the container died while it was being set up ({})",
                    describe(outcome)
                )));
            }
            return;
        }
        match outcome {
            // A stop request outlives the boot it arrived in: a guest that was
            // rebooting just then must not come up again.
            Outcome::Rebooted if self.stop_requests > 0 => {
                out.push(Action::Say(format!("Container {m} has been shut down.")));
                out.push(Action::Exit(0));
            }
            Outcome::Rebooted => {
                out.push(Action::Say(format!("Container {m} is being rebooted.")));
                out.push(if self.cfg.keep_unit {
                    Action::Exit(EXIT_REBOOT)
                } else {
                    Action::Restart
                });
            }
            Outcome::PoweredOff => {
                out.push(Action::Say(format!("Container {m} has been shut down.")));
                out.push(Action::Exit(0));
            }
            Outcome::Exited(code) => {
                if code != 0 {
                    out.push(Action::Say(format!(
                        "Container {m} failed with error code {code}."
                    )));
                }
                // 133 would make the unit restart; only a reboot may mean that.
                out.push(Action::Exit(if code == EXIT_REBOOT { 1 } else { code }));
            }
            Outcome::Killed(sig) => {
                out.push(Action::Say(format!(
                    "Container {m} terminated by {}.",
                    signal::name(sig)
                )));
                out.push(Action::Exit(1));
            }
        }
    }
}

fn describe(o: Outcome) -> String {
    match o {
        Outcome::Exited(c) => format!("exit status {c}"),
        Outcome::Killed(s) => format!("killed by {}", signal::name(s)),
        Outcome::PoweredOff => "killed by SIGINT".into(),
        Outcome::Rebooted => "killed by SIGHUP".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTMIN3: fn() -> i32 = || libc::SIGRTMIN() + 3;

    fn cfg() -> Config {
        Config {
            machine: "m".into(),
            root: "/r".into(),
            kill_signal: Some(RTMIN3()),
            notify_ready: true,
            keep_unit: false,
            interactive: false,
        }
    }

    /// A machine that has cloned and exec'd the guest, and the time it did.
    fn running(cfg: Config) -> (Lifecycle, Instant) {
        let mut l = Lifecycle::new(cfg);
        let t = Instant::now();
        l.handle(Event::Cloned, t);
        l.handle(Event::Exec { leader: 42 }, t);
        (l, t)
    }

    fn ends(actions: &[Action]) -> Vec<&Action> {
        actions
            .iter()
            .filter(|a| matches!(a, Action::Exit(_) | Action::Restart | Action::Fail(_)))
            .collect()
    }

    fn host(actions: &[Action]) -> Vec<&HostMessage> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Host(h) => Some(h),
                _ => None,
            })
            .collect()
    }

    fn ready() -> Event {
        Event::Guest(GuestMessage {
            ready: true,
            ..Default::default()
        })
    }

    #[test]
    fn exec_reports_the_leader_and_readiness_when_not_waiting_for_the_guest() {
        let mut l = Lifecycle::new(Config {
            notify_ready: false,
            ..cfg()
        });
        let t = Instant::now();
        assert!(l.handle(Event::Cloned, t).is_empty());
        let a = l.handle(Event::Exec { leader: 42 }, t);
        assert!(a.contains(&Action::Host(HostMessage::Status(
            "Container running.\nX_NIXRUN_LEADER_PID=42".into()
        ))));
        assert_eq!(host(&a).last(), Some(&&HostMessage::Ready));
        // The guest's own READY=1 is not relayed a second time.
        assert!(host(&l.handle(ready(), t)).is_empty());
    }

    #[test]
    fn with_notify_ready_readiness_waits_for_the_guest() {
        let (mut l, t) = running(cfg());
        assert!(!host(&l.handle(Event::Tick, t)).contains(&&HostMessage::Ready));
        let a = l.handle(
            Event::Guest(GuestMessage {
                ready: true,
                status: Some("Startup finished.".into()),
                stopping: false,
            }),
            t,
        );
        assert_eq!(
            host(&a),
            vec![
                &HostMessage::Ready,
                &HostMessage::Status("Container running: Startup finished.".into())
            ]
        );
        assert!(
            host(&l.handle(ready(), t)).is_empty(),
            "READY=1 is relayed once"
        );
    }

    #[test]
    fn sigterm_asks_for_a_shutdown_and_a_second_one_kills() {
        let (mut l, t) = running(cfg());
        l.handle(ready(), t);
        let a = l.handle(Event::StopRequest, t);
        assert!(a.contains(&Action::Signal(RTMIN3())));
        assert!(a.contains(&Action::Host(HostMessage::Stopping)));
        assert!(!a.contains(&Action::Kill));
        let a = l.handle(Event::StopRequest, t);
        assert_eq!(a, vec![Action::Kill]);
        // The guest then dies of SIGKILL.
        let a = l.handle(Event::Exited(Outcome::Killed(libc::SIGKILL)), t);
        assert_eq!(ends(&a), vec![&Action::Exit(1)]);
    }

    #[test]
    fn sigterm_and_a_poweroff_end_with_status_0() {
        let (mut l, t) = running(cfg());
        l.handle(ready(), t);
        l.handle(Event::StopRequest, t);
        l.handle(
            Event::Guest(GuestMessage {
                stopping: true,
                ..Default::default()
            }),
            t,
        );
        // systemd halts: reboot(2) in a PID namespace kills PID 1 with SIGINT.
        let a = l.handle(Event::Exited(Outcome::PoweredOff), t);
        assert_eq!(ends(&a), vec![&Action::Exit(0)]);
        assert!(a.contains(&Action::Say("Container m has been shut down.".into())));
    }

    #[test]
    fn sigterm_to_a_booting_guest_is_repeated_until_it_listens() {
        let (mut l, t0) = running(cfg());
        let a = l.handle(Event::StopRequest, t0);
        assert_eq!(
            a.iter().filter(|a| **a == Action::Signal(RTMIN3())).count(),
            1
        );
        let due = l.next_deadline().expect("a resend is scheduled");
        assert_eq!(due, t0 + RESEND_EVERY);
        // Too early: nothing.
        assert!(l
            .handle(Event::Tick, t0 + Duration::from_millis(10))
            .is_empty());
        assert_eq!(l.handle(Event::Tick, due), vec![Action::Signal(RTMIN3())]);
        // STOPPING=1: it heard us.
        l.handle(
            Event::Guest(GuestMessage {
                stopping: true,
                ..Default::default()
            }),
            due,
        );
        assert_eq!(l.next_deadline(), None);
        assert!(l.handle(Event::Tick, due + RESEND_EVERY).is_empty());
    }

    #[test]
    fn readiness_does_not_cancel_the_repeats() {
        // The lost-stop bug: the first signal reached systemd before its handler,
        // READY=1 came next, and the repeats stopped; the guest ran on.
        let (mut l, t0) = running(cfg());
        l.handle(Event::StopRequest, t0);
        l.handle(ready(), t0 + Duration::from_millis(100));
        let due = l.next_deadline().expect("still repeating after READY=1");
        assert_eq!(l.handle(Event::Tick, due), vec![Action::Signal(RTMIN3())]);
    }

    #[test]
    fn repeats_slow_down_but_never_stop_until_the_guest_is_stopping_or_gone() {
        let (mut l, t0) = running(cfg());
        l.handle(Event::StopRequest, t0);
        let mut sent = 0;
        let mut last = t0;
        while let Some(t) = l.next_deadline() {
            if t > t0 + Duration::from_secs(60) {
                break;
            }
            sent += l.handle(Event::Tick, t).len();
            last = t;
        }
        // 40 in the first 10 s, then one every 2 s.
        assert!((60..=75).contains(&sent), "{sent} repeats in a minute");
        assert!(l
            .next_deadline()
            .is_some_and(|d| d - last == RESEND_SLOW_EVERY));
        let a = l.handle(Event::Exited(Outcome::PoweredOff), last);
        assert_eq!(ends(&a), vec![&Action::Exit(0)]);
        assert_eq!(l.next_deadline(), None);
    }

    #[test]
    fn sigint_is_a_stop_request_like_sigterm() {
        // The event loop maps both signals to StopRequest; without a kill signal
        // (a command, not -b) the guest is killed right away.
        let (mut l, t) = running(Config {
            kill_signal: None,
            ..cfg()
        });
        assert_eq!(l.handle(Event::StopRequest, t), vec![Action::Kill]);
        let a = l.handle(Event::Exited(Outcome::Killed(libc::SIGKILL)), t);
        assert_eq!(ends(&a), vec![&Action::Exit(1)]);
    }

    #[test]
    fn a_stop_before_exec_kills_and_is_a_clean_stop() {
        let mut l = Lifecycle::new(cfg());
        let t = Instant::now();
        l.handle(Event::Cloned, t);
        assert_eq!(l.handle(Event::StopRequest, t), vec![Action::Kill]);
        let a = l.handle(Event::Exited(Outcome::Killed(libc::SIGKILL)), t);
        assert_eq!(ends(&a), vec![&Action::Exit(0)]);
    }

    #[test]
    fn an_exec_reported_after_a_stop_before_exec_is_moot() {
        // The child exec'd just as the stop request killed it; the channel's end
        // of file (the exec) is read after the signal.
        let mut l = Lifecycle::new(cfg());
        let t = Instant::now();
        l.handle(Event::Cloned, t);
        assert_eq!(l.handle(Event::StopRequest, t), vec![Action::Kill]);
        assert!(l.handle(Event::Exec { leader: 7 }, t).is_empty());
        let a = l.handle(Event::Exited(Outcome::Killed(libc::SIGKILL)), t);
        assert_eq!(ends(&a), vec![&Action::Exit(0)]);
    }

    #[test]
    fn halt_and_poweroff_exit_0() {
        for keep_unit in [false, true] {
            let (mut l, t) = running(Config { keep_unit, ..cfg() });
            let a = l.handle(Event::Exited(Outcome::PoweredOff), t);
            assert_eq!(ends(&a), vec![&Action::Exit(0)]);
        }
    }

    #[test]
    fn reboot_boots_again_without_keep_unit() {
        let (mut l, t) = running(cfg());
        l.handle(ready(), t);
        let a = l.handle(Event::Exited(Outcome::Rebooted), t);
        assert_eq!(ends(&a), vec![&Action::Restart]);
        assert!(a.contains(&Action::Say("Container m is being rebooted.".into())));
        // The next boot is a boot like the first, and reports its readiness.
        l.handle(Event::Cloned, t);
        l.handle(Event::Exec { leader: 43 }, t);
        assert_eq!(host(&l.handle(ready(), t)), vec![&HostMessage::Ready]);
        let a = l.handle(Event::Exited(Outcome::Exited(0)), t);
        assert_eq!(ends(&a), vec![&Action::Exit(0)]);
    }

    #[test]
    fn reboot_exits_133_with_keep_unit() {
        let (mut l, t) = running(Config {
            keep_unit: true,
            ..cfg()
        });
        let a = l.handle(Event::Exited(Outcome::Rebooted), t);
        assert_eq!(ends(&a), vec![&Action::Exit(EXIT_REBOOT)]);
    }

    #[test]
    fn a_stop_request_outlives_a_reboot() {
        for keep_unit in [false, true] {
            let (mut l, t) = running(Config { keep_unit, ..cfg() });
            l.handle(Event::StopRequest, t);
            let a = l.handle(Event::Exited(Outcome::Rebooted), t);
            assert_eq!(ends(&a), vec![&Action::Exit(0)], "keep_unit={keep_unit}");
        }
    }

    #[test]
    fn exit_statuses_pass_through_except_133() {
        for (code, want) in [(0, 0), (5, 5), (255, 255), (EXIT_REBOOT, 1)] {
            let (mut l, t) = running(cfg());
            let a = l.handle(Event::Exited(Outcome::Exited(code)), t);
            assert_eq!(ends(&a), vec![&Action::Exit(want)], "exit {code}");
            assert_eq!(
                a.iter()
                    .any(|a| matches!(a, Action::Say(s) if s.contains("failed"))),
                code != 0
            );
        }
    }

    #[test]
    fn ready_sent_just_before_exit_is_relayed_first() {
        // The event loop drains the notify socket before it reports the exit.
        let (mut l, t) = running(cfg());
        assert_eq!(host(&l.handle(ready(), t)), vec![&HostMessage::Ready]);
        let a = l.handle(Event::Exited(Outcome::Exited(0)), t);
        assert_eq!(ends(&a), vec![&Action::Exit(0)]);
    }

    #[test]
    fn a_failed_setup_step_is_the_error() {
        let mut l = Lifecycle::new(cfg());
        let t = Instant::now();
        l.handle(Event::Cloned, t);
        l.handle(Event::SetupFailed("mount /proc: EPERM".into()), t);
        let a = l.handle(Event::Exited(Outcome::Exited(1)), t);
        assert_eq!(a, vec![Action::Fail("mount /proc: EPERM".into())]);
    }

    #[test]
    fn a_guest_dying_during_setup_is_an_error() {
        let mut l = Lifecycle::new(cfg());
        let t = Instant::now();
        l.handle(Event::Cloned, t);
        let a = l.handle(Event::Exited(Outcome::Killed(libc::SIGKILL)), t);
        match &a[..] {
            [Action::Fail(line)] => assert!(line.contains("SIGKILL"), "{line}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn console_escape_kills_and_is_final() {
        let (mut l, t) = running(cfg());
        assert_eq!(l.handle(Event::ConsoleKill, t), vec![Action::Kill]);
        // Even if the guest happened to be rebooting.
        let a = l.handle(Event::Exited(Outcome::Rebooted), t);
        assert_eq!(ends(&a), vec![&Action::Exit(0)]);
    }

    #[test]
    fn interactive_consoles_mention_the_escape() {
        let mut l = Lifecycle::new(Config {
            interactive: true,
            ..cfg()
        });
        let t = Instant::now();
        l.handle(Event::Cloned, t);
        let a = l.handle(Event::Exec { leader: 1 }, t);
        assert!(a
            .iter()
            .any(|a| matches!(a, Action::Say(s) if s.contains("^]"))));
    }

    #[test]
    fn wait_statuses() {
        use nix::sys::signal::Signal;
        use nix::sys::wait::WaitStatus;
        use nix::unistd::Pid;
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
        assert_eq!(Outcome::from_wait(WaitStatus::StillAlive), None);
    }
}
