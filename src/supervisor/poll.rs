//! The event loop's poll set: sources registered under a token, ready ones
//! returned by token, so a new source (a netlink socket, a control socket) is
//! one token and one `add`, not a new slot in a tuple of indices.

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::BorrowedFd;
use std::time::Duration;

/// The supervisor's event sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Token {
    /// The guest's mounts of new file systems: first, a guest task is blocked
    /// in mount(2) until it is answered.
    MountGuard,
    Console,
    Channel,
    Notify,
    Stdin,
    /// Our stdout, while console output waits for it (POLLOUT).
    Stdout,
    /// Address changes inside the container (for forwarded ports).
    Addresses,
    /// Our service manager's notify socket, while messages wait for it
    /// (POLLOUT).
    HostNotify,
    Signals,
}

/// One round of poll(2) over the sources present right now.
#[derive(Default)]
pub struct PollSet<'a> {
    fds: Vec<PollFd<'a>>,
    tokens: Vec<Token>,
}

impl<'a> PollSet<'a> {
    pub fn new() -> PollSet<'a> {
        PollSet::default()
    }

    /// Watches `fd` for input (hang-ups and errors are always reported).
    pub fn add(&mut self, token: Token, fd: BorrowedFd<'a>) {
        debug_assert!(!self.tokens.contains(&token), "{token:?} added twice");
        self.fds.push(PollFd::new(fd, PollFlags::POLLIN));
        self.tokens.push(token);
    }

    /// Watches `fd` for room to write.
    pub fn add_writable(&mut self, token: Token, fd: BorrowedFd<'a>) {
        debug_assert!(!self.tokens.contains(&token), "{token:?} added twice");
        self.fds.push(PollFd::new(fd, PollFlags::POLLOUT));
        self.tokens.push(token);
    }

    /// Waits until a source is ready or `timeout` passes (None: no timeout);
    /// returns the ready ones in token order, the order they are served in.
    pub fn wait(&mut self, timeout: Option<Duration>) -> nix::Result<Vec<(Token, PollFlags)>> {
        let timeout = match timeout {
            None => PollTimeout::NONE,
            Some(d) => crate::sys::poll_timeout(d),
        };
        match poll(&mut self.fds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
        let mut ready: Vec<(Token, PollFlags)> = self
            .fds
            .iter()
            .zip(&self.tokens)
            .filter_map(|(fd, &t)| fd.revents().filter(|r| !r.is_empty()).map(|r| (t, r)))
            .collect();
        ready.sort_by_key(|(t, _)| *t);
        Ok(ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn ready_sources_come_back_by_token() {
        let (r1, w1) = nix::unistd::pipe().unwrap();
        let (r2, _w2) = nix::unistd::pipe().unwrap();
        let (r3, w3) = nix::unistd::pipe().unwrap();
        nix::unistd::write(&w1, b"x").unwrap();
        nix::unistd::write(&w3, b"x").unwrap();
        let mut set = PollSet::new();
        set.add(Token::Signals, r1.as_fd());
        set.add(Token::Notify, r2.as_fd());
        set.add(Token::MountGuard, r3.as_fd());
        let ready = set.wait(None).unwrap();
        let tokens: Vec<Token> = ready.iter().map(|(t, _)| *t).collect();
        // The mount guard is served first, whatever the order of registration.
        assert_eq!(tokens, vec![Token::MountGuard, Token::Signals]);
        assert!(ready[0].1.contains(PollFlags::POLLIN));
    }

    #[test]
    fn hang_ups_are_reported_and_timeouts_return_nothing() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let mut set = PollSet::new();
        set.add(Token::Channel, r.as_fd());
        assert!(set.wait(Some(Duration::from_millis(5))).unwrap().is_empty());
        drop(w);
        let mut set = PollSet::new();
        set.add(Token::Channel, r.as_fd());
        let ready = set.wait(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(ready.len(), 1);
        assert!(ready[0].1.contains(PollFlags::POLLHUP));
    }
}
