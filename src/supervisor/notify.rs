//! sd_notify in both directions: the guest's messages on /run/host/notify, and
//! what nixrun tells its own service manager ($NOTIFY_SOCKET).
//!
//! Telling the manager never blocks: a manager that does not read (busy with a
//! hundred units starting, or a test harness that stopped listening) fills its
//! socket's queue, and a blocking send would stall the whole event loop — the
//! mount guard included, so the guest would hang in its next mount(2) and
//! never finish shutting down. Messages wait in a short queue instead (only
//! the newest STATUS= is worth keeping) and go out when the socket is writable.
//!
//! Only the container's PID 1 is listened to (nspawn does the same): any guest
//! process can reach /run/host/notify, and a stray READY=1 from one of them must
//! not tell the host the container has booted.

use super::lifecycle::{GuestMessage, HostMessage};
use nix::errno::Errno;
use rustix::net::RecvFlags;
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

pub fn parse(datagram: &[u8]) -> GuestMessage {
    let mut m = GuestMessage::default();
    for line in String::from_utf8_lossy(datagram).lines() {
        match line.split_once('=') {
            Some(("READY", "1")) => m.ready = true,
            Some(("STOPPING", "1")) => m.stopping = true,
            Some(("STATUS", s)) => m.status = Some(s.to_string()),
            _ => {}
        }
    }
    m
}

/// Reads every pending datagram; returns the messages sent by `leader` (a host pid).
/// Fds sent along (FDSTORE=1, or a hostile guest filling our fd table) are
/// closed as each datagram is dropped.
pub fn receive(sock: &OwnedFd, leader: i32) -> Vec<GuestMessage> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let got = match crate::sys::fd::recv(
            sock.as_fd(),
            &mut buf,
            RecvFlags::DONTWAIT | RecvFlags::TRUNC,
        ) {
            Ok(r) => r,
            Err(Errno::EINTR) => continue,
            Err(_) => return out, // EAGAIN: drained
        };
        if got.pid == Some(leader) {
            out.push(parse(&buf[..got.len.min(buf.len())]));
        }
    }
}

/// What nixrun tells its own service manager, if it has one ($NOTIFY_SOCKET);
/// a person running nixrun by hand has none. Failures are not fatal: a broken
/// socket must not take the guest down.
pub struct HostNotifier {
    addr: Option<SocketAddr>,
    sock: Option<UnixDatagram>,
    pending: VecDeque<HostMessage>,
}

/// More than this many unsent messages: the oldest are dropped (the manager
/// has not read for a long time; the newest state is what it needs).
const MAX_PENDING: usize = 16;

impl HostNotifier {
    pub fn from_env() -> HostNotifier {
        let addr = std::env::var("NOTIFY_SOCKET")
            .ok()
            .and_then(|p| match p.strip_prefix('@') {
                Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name).ok(),
                None if p.starts_with('/') => SocketAddr::from_pathname(&p).ok(),
                None => None,
            });
        HostNotifier {
            addr,
            sock: None,
            pending: VecDeque::new(),
        }
    }

    /// Whether there is a manager to tell.
    pub fn wanted(&self) -> bool {
        self.addr.is_some()
    }

    /// Waits up to `limit` for the queue to go out (before exiting).
    pub fn drain(&mut self, limit: std::time::Duration) {
        let deadline = std::time::Instant::now() + limit;
        self.flush();
        while let Some(fd) = self.blocked() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            let mut set = super::poll::PollSet::new();
            set.add_writable(super::poll::Token::HostNotify, fd);
            let _ = set.wait(Some(left));
            self.flush();
        }
    }

    /// Queues `m` and sends what the socket takes now.
    pub fn tell(&mut self, m: HostMessage) {
        if self.addr.is_none() {
            return;
        }
        let last_is_status = matches!(self.pending.back(), Some(HostMessage::Status(_)));
        if matches!(m, HostMessage::Status(_)) && last_is_status {
            // An unsent status is stale once there is a newer one.
            self.pending.pop_back();
            self.pending.push_back(m);
        } else if !self.pending.contains(&m) {
            self.pending.push_back(m);
        }
        while self.pending.len() > MAX_PENDING {
            self.pending.pop_front();
        }
        self.flush();
    }

    /// Sends queued messages until the socket would block.
    pub fn flush(&mut self) {
        while let Some(m) = self.pending.front() {
            let text = match m {
                HostMessage::Ready => "READY=1\n".to_string(),
                HostMessage::Stopping => "STOPPING=1\n".to_string(),
                HostMessage::Status(s) => format!("STATUS={s}\n"),
            };
            match self.send(text.as_bytes()) {
                Ok(()) => {
                    self.pending.pop_front();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                // Gone or refused: nothing to keep it for.
                Err(_) => {
                    self.pending.pop_front();
                }
            }
        }
    }

    fn send(&mut self, msg: &[u8]) -> std::io::Result<()> {
        for attempt in 0..2 {
            if self.sock.is_none() {
                let s = UnixDatagram::unbound()?;
                s.set_nonblocking(true)?;
                s.connect_addr(self.addr.as_ref().expect("checked by tell"))?;
                self.sock = Some(s);
            }
            match self.sock.as_ref().expect("just made").send(msg) {
                Ok(_) => return Ok(()),
                // The manager's socket was made anew (daemon-reexec without
                // passing it on): connect again, once.
                Err(e) if attempt == 0 && e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                    self.sock = None;
                }
                Err(e) => return Err(e),
            }
        }
        Err(ErrorKind::ConnectionRefused.into())
    }

    /// The socket to wait on for writability while messages wait.
    pub fn blocked(&self) -> Option<BorrowedFd<'_>> {
        if self.pending.is_empty() {
            return None;
        }
        self.sock.as_ref().map(|s| s.as_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_matters() {
        assert_eq!(
            parse(b"READY=1\nSTATUS=Startup finished in 1.2s.\nX_SYSTEMD_UNIT_ACTIVE=basic.target"),
            GuestMessage {
                ready: true,
                stopping: false,
                status: Some("Startup finished in 1.2s.".into())
            }
        );
        assert_eq!(
            parse(b"READY=0\nSTOPPING=1"),
            GuestMessage {
                ready: false,
                stopping: true,
                status: None
            }
        );
    }

    #[test]
    fn only_the_leader_is_heard() {
        use nix::sys::socket::*;
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Datagram,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        setsockopt(&b, sockopt::PassCred, &true).unwrap();
        use std::os::fd::AsRawFd;
        send(a.as_raw_fd(), b"READY=1", MsgFlags::empty()).unwrap();
        let me = std::process::id() as i32;
        assert_eq!(receive(&b, me + 1), vec![]);
        send(a.as_raw_fd(), b"READY=1", MsgFlags::empty()).unwrap();
        assert_eq!(receive(&b, me).len(), 1);
    }
}
