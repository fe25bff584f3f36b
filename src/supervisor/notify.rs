//! sd_notify in both directions: the guest's messages on /run/host/notify, and
//! what nixrun tells its own service manager ($NOTIFY_SOCKET, via sd-notify).
//!
//! Only the container's PID 1 is listened to (nspawn does the same): any guest
//! process can reach /run/host/notify, and a stray READY=1 from one of them must
//! not tell the host the container has booted.

use super::lifecycle::{GuestMessage, HostMessage};
use nix::errno::Errno;
use rustix::net::RecvFlags;
use sd_notify::NotifyState;
use std::os::fd::{AsFd, OwnedFd};

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

/// Tells our own service manager, if we have one. Failures are not fatal: a
/// person running nixrun by hand has no $NOTIFY_SOCKET, and a broken one must not
/// take the guest down.
pub fn to_host(m: &HostMessage) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let state = match m {
        HostMessage::Ready => NotifyState::Ready,
        HostMessage::Stopping => NotifyState::Stopping,
        HostMessage::Status(s) => NotifyState::Status(s),
    };
    let _ = sd_notify::notify(false, &[state]);
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
