//! `shell`: a login shell in a machine, on a pty of the guest's own devpts
//! instance, relayed to nixrunctl's terminal (or pipes).
//!
//! The user is looked up in the guest's /etc/passwd and /etc/group (resolved in
//! its root) before anything is entered. nixrunctl then enters the machine
//! (enter.rs) and forks the shell's process, which opens /dev/pts/ptmx in the
//! guest's mount namespace, unlocks it, sends the master back over a socketpair
//! (SCM_RIGHTS), takes the peer as its controlling terminal in a new session,
//! becomes the user and execs the shell. nixrunctl relays both ways until the
//! shell ends, then exits with its status; `^]` three times within a second
//! detaches (as in machinectl).

use super::enter::{self, Leader};
use super::{users, Failure, Result};
use crate::state::MachineState;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use nix::unistd::{Gid, Pid, Uid};
use rustix::fs::{Mode, OFlags};
use rustix::net::{
    AddressFamily, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketFlags,
    SocketType,
};
use std::ffi::CString;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

/// `^]`, machinectl's escape character.
const ESCAPE: u8 = 0x1d;
const ESCAPE_WINDOW: Duration = Duration::from_secs(1);
/// VEOF in the pty's default termios: what ends a piped session's input.
const EOF_CHAR: u8 = 0x04;

pub fn shell(st: MachineState, who: &str) -> Result<u8> {
    let leader = Leader::open(&st)?;
    let root = leader.root()?;
    let passwd = enter::read_guest_file(&root, "/etc/passwd")
        .map_err(|e| Failure::sys("reading the guest's /etc/passwd", e))?;
    let account = users::find_account(&passwd, who).ok_or_else(|| {
        Failure::new(format!(
            "{}: no user {} in the guest's /etc/passwd",
            st.name.escape_debug(),
            who.escape_debug()
        ))
    })?;
    // A guest without /etc/group still has the primary group.
    let group = enter::read_guest_file(&root, "/etc/group").unwrap_or_default();
    let groups: Vec<Gid> = users::groups_of(&group, &account)
        .into_iter()
        .map(Gid::from_raw)
        .collect();
    drop(root);

    let sigfd = enter::signal_fd(&[Signal::SIGWINCH])?;
    // A reader of our stdout that goes away must not end the session unseen.
    crate::sys::process::ignore_signal(Signal::SIGPIPE)
        .map_err(|e| Failure::sys("ignoring SIGPIPE", e))?;
    enter::enter(&st, &leader)?;
    drop(leader);

    let shell = users::login_shell(&account).to_string();
    let term = std::env::var("TERM").unwrap_or_else(|_| "vt220".into());
    let env = enter::guest_env(&[
        ("HOME", &account.home),
        ("USER", &account.name),
        ("LOGNAME", &account.name),
        ("SHELL", &shell),
        ("TERM", &term),
    ]);
    let (ours, theirs) = pty_channel()?;
    let login = Login {
        uid: Uid::from_raw(account.uid),
        gid: Gid::from_raw(account.gid),
        groups: &groups,
        home: &account.home,
        shell: &shell,
        env: &env,
    };
    let child = crate::sys::process::fork_run(move || {
        let (code, line) = login.run(theirs);
        eprintln!("nixrunctl: {line}");
        i32::from(code)
    })
    .map_err(|e| Failure::sys("fork", e))?;
    attach(ours, child, &sigfd, &st.name, true)
}

/// `exec` with a terminal among our stdio: the command gets a pty of the
/// guest's instead. A guest process must never hold the user's terminal: with
/// TIOCSTI (allowed to its root, and to anyone where the sysctl
/// dev.tty.legacy_tiocsti is on) it could type commands into the user's shell
/// on the host, and any guest process with CAP_SYS_PTRACE can take the fd from
/// the command.
pub fn exec_on_pty(st: MachineState, argv: &[String]) -> Result<u8> {
    let leader = Leader::open(&st)?;
    let sigfd = enter::signal_fd(&[Signal::SIGWINCH])?;
    crate::sys::process::ignore_signal(Signal::SIGPIPE)
        .map_err(|e| Failure::sys("ignoring SIGPIPE", e))?;
    enter::enter(&st, &leader)?;
    drop(leader);
    let term = std::env::var("TERM").unwrap_or_else(|_| "vt220".into());
    let env = enter::guest_env(&[("TERM", &term)]);
    let (ours, theirs) = pty_channel()?;
    let child = crate::sys::process::fork_run(move || {
        let run = || -> Result<(u8, String)> {
            enter::prepare_exec()?;
            let slave = open_pty(theirs)?;
            take_terminal(slave)?;
            Ok(enter::exec_program(argv, None, &env))
        };
        let (code, line) = run().unwrap_or_else(|f| (1, f.line));
        eprintln!("nixrunctl: {line}");
        i32::from(code)
    })
    .map_err(|e| Failure::sys("fork", e))?;
    attach(ours, child, &sigfd, &st.name, false)
}

/// The socketpair the child sends the pty master back over.
fn pty_channel() -> Result<(OwnedFd, OwnedFd)> {
    rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| Failure::sys("socketpair", crate::sys::errno(e)))
}

/// Receives the child's pty master and relays until it ends. The child's
/// end of the socket is closed with it (our copy went into the closure and was
/// dropped with it), so a child that fails before sending ends this wait.
fn attach(ours: OwnedFd, child: Pid, sigfd: &SignalFd, name: &str, banner: bool) -> Result<u8> {
    let mut byte = [0u8; 1];
    let got = crate::sys::fd::recv(ours.as_fd(), &mut byte, RecvFlags::empty())
        .map_err(|e| Failure::sys("receiving the pty", e))?;
    drop(ours);
    let Some(master) = got.fds.into_iter().next() else {
        // It said why on stderr.
        return enter::wait_forwarding(child, sigfd);
    };
    relay(master, child, sigfd, name, banner)
}

/// The pty as controlling terminal of a new session and as stdio.
fn take_terminal(slave: OwnedFd) -> Result<()> {
    nix::unistd::setsid().map_err(|e| Failure::sys("setsid", e))?;
    rustix::process::ioctl_tiocsctty(&slave).map_err(|e| {
        Failure::sys(
            "taking the pty as controlling terminal",
            crate::sys::errno(e),
        )
    })?;
    for fd in 0..=2 {
        nix::unistd::dup2(slave.as_raw_fd(), fd).map_err(|e| Failure::sys("dup2 of the pty", e))?;
    }
    Ok(())
}

/// What the shell's process becomes, prepared before the fork.
struct Login<'a> {
    uid: Uid,
    gid: Gid,
    groups: &'a [Gid],
    home: &'a str,
    shell: &'a str,
    env: &'a [CString],
}

impl Login<'_> {
    /// In the forked child: returns only on failure (exit status and line).
    fn run(&self, sock: OwnedFd) -> (u8, String) {
        if let Err(f) = enter::prepare_exec() {
            return (1, f.line);
        }
        let slave = match open_pty(sock) {
            Ok(s) => s,
            Err(f) => return (1, f.line),
        };
        if let Err(f) = self.become_user(slave) {
            return (1, f.line);
        }
        enter::exec_program(
            &[self.shell.to_string()],
            Some(&users::login_argv0(self.shell)),
            self.env,
        )
    }

    fn become_user(&self, slave: OwnedFd) -> Result<()> {
        take_terminal(slave)?;
        // Always: supplementary groups inherited from the host's root are not
        // the guest user's.
        nix::unistd::setgroups(self.groups).map_err(|e| Failure::sys("setgroups", e))?;
        nix::unistd::setgid(self.gid).map_err(|e| Failure::sys("setgid", e))?;
        nix::unistd::setuid(self.uid).map_err(|e| Failure::sys("setuid", e))?;
        if nix::unistd::chdir(self.home).is_err() {
            // As login(1) does: a missing home is not fatal.
            eprintln!(
                "nixrunctl: no home directory {}, using /",
                self.home.escape_debug()
            );
            nix::unistd::chdir("/").map_err(|e| Failure::sys("chdir /", e))?;
        }
        Ok(())
    }
}

/// Opens a pty on the guest's devpts (we are in its mount namespace), hands the
/// master to nixrunctl and returns the slave.
fn open_pty(sock: OwnedFd) -> Result<OwnedFd> {
    let sys =
        |what: &'static str| move |e: rustix::io::Errno| Failure::sys(what, crate::sys::errno(e));
    let master = rustix::fs::open(
        "/dev/pts/ptmx",
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(sys("opening the guest's /dev/pts/ptmx"))?;
    rustix::pty::unlockpt(&master).map_err(sys("unlockpt"))?;
    // The peer by fd, not by a /dev/pts/N path the guest could swap.
    let slave = rustix::pty::ioctl_tiocgptpeer(
        &master,
        rustix::pty::OpenptFlags::RDWR
            | rustix::pty::OpenptFlags::NOCTTY
            | rustix::pty::OpenptFlags::CLOEXEC,
    )
    .map_err(sys("opening the pty's peer"))?;
    let fds = [master.as_fd()];
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    cmsg.push(SendAncillaryMessage::ScmRights(&fds));
    rustix::net::sendmsg(&sock, &[IoSlice::new(b"p")], &mut cmsg, SendFlags::empty())
        .map_err(sys("sending the pty to nixrunctl"))?;
    Ok(slave)
}

/// `^]` pressed three times within a second, other keys in between starting
/// the count again (machinectl's rule).
#[derive(Debug, Default)]
pub struct EscapeDetector {
    count: u8,
    first: Option<Instant>,
}

impl EscapeDetector {
    pub fn feed(&mut self, bytes: &[u8], now: Instant) -> bool {
        for &b in bytes {
            if b != ESCAPE {
                self.count = 0;
                self.first = None;
                continue;
            }
            match self.first {
                Some(t) if self.count > 0 && now.duration_since(t) <= ESCAPE_WINDOW => {
                    self.count += 1;
                    if self.count >= 3 {
                        return true;
                    }
                }
                _ => {
                    self.first = Some(now);
                    self.count = 1;
                }
            }
        }
        false
    }
}

/// The terminal nixrunctl runs on, raw while the session lasts.
struct RawTerminal<'a> {
    fd: BorrowedFd<'a>,
    saved: rustix::termios::Termios,
}

impl<'a> RawTerminal<'a> {
    fn enter(fd: BorrowedFd<'a>) -> Option<RawTerminal<'a>> {
        let saved = rustix::termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(fd, rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(RawTerminal { fd, saved })
    }
}

impl Drop for RawTerminal<'_> {
    fn drop(&mut self) {
        let _ =
            rustix::termios::tcsetattr(self.fd, rustix::termios::OptionalActions::Now, &self.saved);
    }
}

fn copy_window_size(from: BorrowedFd<'_>, to: BorrowedFd<'_>) {
    if let Ok(ws) = rustix::termios::tcgetwinsize(from) {
        let _ = rustix::termios::tcsetwinsize(to, ws);
    }
}

/// write(2) until done; false once the other side is gone.
fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        match rustix::io::write(fd, buf) {
            Ok(0) => return false,
            Ok(n) => buf = &buf[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(_) => return false,
        }
    }
    true
}

/// How a session ended.
enum End {
    Exited(u8),
    Detached,
    Signalled(i32),
}

fn relay(master: OwnedFd, child: Pid, sigfd: &SignalFd, name: &str, banner: bool) -> Result<u8> {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let (stdin, stdout) = (stdin.as_fd(), stdout.as_fd());
    let flags = rustix::fs::fcntl_getfl(&master)
        .map_err(|e| Failure::sys("fcntl", crate::sys::errno(e)))?;
    rustix::fs::fcntl_setfl(&master, flags | OFlags::NONBLOCK)
        .map_err(|e| Failure::sys("fcntl", crate::sys::errno(e)))?;
    let tty = rustix::termios::isatty(stdin);
    if tty {
        copy_window_size(stdin, master.as_fd());
    }
    if tty && banner {
        eprintln!(
            "Connected to machine {}. Press ^] three times within 1s to exit session.",
            name.escape_debug()
        );
    }
    let raw = if tty { RawTerminal::enter(stdin) } else { None };
    let end = pump(&master, child, sigfd, stdin, stdout, tty);
    drop(raw);
    match end? {
        End::Exited(code) => Ok(code),
        End::Detached => {
            eprintln!("\nnixrunctl: detached from {}", name.escape_debug());
            Ok(0)
        }
        End::Signalled(sig) => Ok(128 + sig as u8),
    }
}

fn pump(
    master: &OwnedFd,
    child: Pid,
    sigfd: &SignalFd,
    stdin: BorrowedFd<'_>,
    stdout: BorrowedFd<'_>,
    tty: bool,
) -> Result<End> {
    let mut to_master: Vec<u8> = Vec::new();
    let mut from_master = vec![0u8; 16 * 1024];
    let mut inbuf = vec![0u8; 16 * 1024];
    let (mut stdin_open, mut master_open, mut stdout_open) = (true, true, true);
    let mut escape = EscapeDetector::default();
    loop {
        let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN)];
        let mut master_events = PollFlags::empty();
        if master_open {
            master_events |= PollFlags::POLLIN;
            if !to_master.is_empty() {
                master_events |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(master.as_fd(), master_events));
        }
        // Input waits while the pty has not taken the last of it.
        let want_stdin = stdin_open && master_open && to_master.is_empty();
        if want_stdin {
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Failure::sys("poll", e)),
        }
        let revents: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(fds);
        let ready = |i: usize, f: PollFlags| revents.get(i).is_some_and(|r| r.intersects(f));
        let any = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;

        // fds: the signalfd, then the master (while open), then stdin.
        if master_open && ready(1, any) {
            match rustix::io::read(master, &mut from_master) {
                Ok(0) | Err(rustix::io::Errno::IO) => master_open = false,
                Ok(n) => {
                    if stdout_open && !write_all(stdout, &from_master[..n]) {
                        stdout_open = false;
                    }
                }
                Err(_) => {}
            }
        }
        if master_open && ready(1, PollFlags::POLLOUT) {
            match rustix::io::write(master, &to_master) {
                Ok(n) => {
                    to_master.drain(..n);
                }
                Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
                Err(_) => to_master.clear(),
            }
        }
        // Polled only with the master, so third.
        if want_stdin && ready(2, any) {
            match rustix::io::read(stdin, &mut inbuf) {
                Ok(0) | Err(_) => {
                    stdin_open = false;
                    // A pipe's end is the shell's end of input; a terminal's
                    // user would press ^D.
                    if !tty {
                        to_master.push(EOF_CHAR);
                    }
                }
                Ok(n) => {
                    if tty && escape.feed(&inbuf[..n], Instant::now()) {
                        return Ok(End::Detached);
                    }
                    to_master.extend_from_slice(&inbuf[..n]);
                }
            }
        }
        if ready(0, PollFlags::POLLIN) {
            while let Ok(Some(si)) = sigfd.read_signal() {
                match si.ssi_signo as i32 {
                    libc::SIGCHLD => {}
                    libc::SIGWINCH if tty => copy_window_size(stdin, master.as_fd()),
                    libc::SIGWINCH => {}
                    // Closing the master hangs the session up.
                    sig => return Ok(End::Signalled(sig)),
                }
            }
            if let Some(code) = enter::reap(child) {
                if master_open && stdout_open {
                    drain(master, stdout);
                }
                return Ok(End::Exited(code));
            }
        }
    }
}

/// What the shell wrote before it ended: read until the pty reports its last
/// holder gone, or falls quiet (a background job may hold it open).
fn drain(master: &OwnedFd, stdout: BorrowedFd<'_>) {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut buf = vec![0u8; 16 * 1024];
    while Instant::now() < deadline {
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u8)) {
            Ok(0) => return,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
        match rustix::io::read(master, &mut buf) {
            Ok(0) | Err(rustix::io::Errno::IO) => return,
            Ok(n) => {
                if !write_all(stdout, &buf[..n]) {
                    return;
                }
            }
            Err(rustix::io::Errno::AGAIN) | Err(rustix::io::Errno::INTR) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_escapes_within_a_second_detach() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut e = EscapeDetector::default();
        assert!(!e.feed(b"\x1d", ms(0)));
        assert!(!e.feed(b"\x1d", ms(300)));
        assert!(e.feed(b"\x1d", ms(900)));

        let mut e = EscapeDetector::default();
        assert!(e.feed(b"\x1d\x1d\x1d", ms(0)), "in one read");

        // Too slow: the count starts again.
        let mut e = EscapeDetector::default();
        assert!(!e.feed(b"\x1d", ms(0)));
        assert!(!e.feed(b"\x1d", ms(600)));
        assert!(!e.feed(b"\x1d", ms(1200)));
        assert!(!e.feed(b"\x1d", ms(1500)));
        assert!(e.feed(b"\x1d", ms(1700)));

        // Another key in between starts it again.
        let mut e = EscapeDetector::default();
        assert!(!e.feed(b"\x1d\x1dx\x1d", ms(0)));
        assert!(!e.feed(b"\x1d", ms(10)));
        assert!(e.feed(b"\x1d", ms(20)));
    }
}
