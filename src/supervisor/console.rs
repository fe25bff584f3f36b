//! The supervisor's end of the guest's console pty.
//!
//! Output goes to our stdout (under container@.service that is the journal, so
//! the unit's log shows the boot) without ever blocking (output.rs): the pty is
//! always drained, so the guest never waits on its console either. In
//! interactive mode our terminal is switched to raw mode and keystrokes go to
//! the guest; ^] pressed three times within a second kills the container, as in
//! nspawn. The master stays open for the guest's whole life: PID 1 must not
//! lose its controlling terminal.

use super::output::Output;
use nix::errno::Errno;
use nix::sys::termios::{self, SetArg, Termios};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::plan::Console as Mode;

const ESCAPE: u8 = 0x1d; // ^]

pub struct Console {
    master: OwnedFd,
    /// Our own handle on the guest's side: while it is open the master never reads
    /// as hung up, even when the guest closes all its console fds for a moment
    /// (systemd does), which would otherwise make poll() report POLLHUP forever.
    _peer: Option<OwnedFd>,
    mode: Mode,
    out: Output,
    /// The terminal settings to restore on exit (interactive only).
    saved: Option<Termios>,
    escapes: Vec<Instant>,
    /// Set once the guest's side is gone (read gave EIO).
    pub closed: bool,
}

/// What the user asked for by typing.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    None,
    Kill,
}

impl Console {
    pub fn new(master: OwnedFd, mode: Mode) -> Console {
        set_nonblocking(master.as_fd());
        let peer = crate::container::dev::pty_peer(&master).ok();
        let mut c = Console {
            master,
            _peer: peer,
            mode,
            out: Output::stdout(),
            saved: None,
            escapes: Vec::new(),
            closed: false,
        };
        if mode == Mode::Interactive {
            let stdin = std::io::stdin();
            if let Ok(t) = termios::tcgetattr(stdin.as_fd()) {
                let mut raw = t.clone();
                termios::cfmakeraw(&mut raw);
                if termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).is_ok() {
                    c.saved = Some(t);
                }
            }
            c.resize();
        }
        c
    }

    pub fn master(&self) -> BorrowedFd<'_> {
        self.master.as_fd()
    }

    pub fn reads_stdin(&self) -> bool {
        self.mode == Mode::Interactive
    }

    /// Copies our terminal's size to the guest's (on start and SIGWINCH).
    pub fn resize(&self) {
        if self.mode != Mode::Interactive {
            return;
        }
        if let Ok(ws) = rustix::termios::tcgetwinsize(std::io::stdin()) {
            let _ = rustix::termios::tcsetwinsize(&self.master, ws);
        }
    }

    /// Moves the guest's pending output to stdout. Reads again only after a
    /// full buffer: a read that finds nothing (EAGAIN) first waits for the
    /// kernel's tty worker to hand on what the guest wrote meanwhile
    /// (n_tty_read flushes the port's work), 10-20 µs and at times
    /// milliseconds on a busy host, during which the supervisor would answer
    /// no mount request and relay no READY=1. Whatever is left, the next poll
    /// reports.
    pub fn pump_output(&mut self) {
        self.read_output(false);
    }

    /// Moves everything the guest wrote to stdout, once it is gone: a last
    /// line still in the tty worker's hands is waited for, not lost.
    pub fn drain_output(&mut self) {
        self.read_output(true);
    }

    fn read_output(&mut self, drain: bool) {
        let mut buf = [0u8; 16384];
        loop {
            match nix::unistd::read(self.master.as_raw_fd(), &mut buf) {
                Ok(0) | Err(Errno::EIO) => {
                    // EIO: no process has the slave open any more.
                    self.closed = true;
                    return;
                }
                Ok(n) => {
                    if self.mode != Mode::Passive {
                        self.out.push(&buf[..n]);
                    }
                    if n < buf.len() && !drain {
                        return;
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => return, // EAGAIN
            }
        }
    }

    /// Moves typed input to the guest, watching for the escape sequence.
    pub fn pump_input(&mut self) -> Request {
        let mut buf = [0u8; 4096];
        let n = match nix::unistd::read(0, &mut buf) {
            Ok(0) | Err(_) => return Request::None,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == ESCAPE {
                let now = Instant::now();
                self.escapes
                    .retain(|t| now.duration_since(*t) < Duration::from_secs(1));
                self.escapes.push(now);
                if self.escapes.len() >= 3 {
                    return Request::Kill;
                }
            }
        }
        let mut off = 0;
        while off < n {
            match nix::unistd::write(&self.master, &buf[off..n]) {
                Ok(w) => off += w,
                Err(Errno::EINTR) => {}
                // A guest that does not read its console: keystrokes beyond what
                // the pty holds are lost rather than stalling the supervisor.
                Err(_) => break,
            }
        }
        Request::None
    }

    /// While output waits for a slow stdout: the fd to poll for writability.
    pub fn pending_output(&self) -> Option<BorrowedFd<'_>> {
        self.out.pending()
    }

    pub fn flush_output(&mut self) {
        self.out.flush();
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        if let Some(t) = &self.saved {
            let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(flags) = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL) {
        let _ = fcntl(
            fd.as_raw_fd(),
            FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
        );
    }
}
