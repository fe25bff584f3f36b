//! sd_notify in both directions: the guest's messages on /run/host/notify, and
//! what nixrun tells its own service manager ($NOTIFY_SOCKET, via sd-notify).
//!
//! Only the container's PID 1 is listened to (nspawn does the same): any guest
//! process can reach /run/host/notify, and a stray READY=1 from one of them must
//! not tell the host the container has booted.

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use sd_notify::NotifyState;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, OwnedFd};

/// What the guest's PID 1 said, as far as the host cares.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GuestMessage {
    pub ready: bool,
    pub stopping: bool,
    pub status: Option<String>,
}

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
pub fn receive(sock: &OwnedFd, leader: i32) -> Vec<GuestMessage> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut cmsg = nix::cmsg_space!(libc::ucred, [std::os::fd::RawFd; 8]);
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let (n, pid) = match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_TRUNC,
        ) {
            Ok(msg) => {
                let mut pid = None;
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        // Any fds sent along (FDSTORE=1) are closed when dropped here.
                        if let ControlMessageOwned::ScmCredentials(cred) = c {
                            pid = Some(cred.pid());
                        }
                    }
                }
                (msg.bytes, pid)
            }
            Err(Errno::EINTR) => continue,
            Err(_) => return out, // EAGAIN: drained
        };
        if pid == Some(leader) {
            out.push(parse(&buf[..n.min(buf.len())]));
        }
    }
}

/// Tells our own service manager, if we have one. Failures are not fatal: a
/// person running nixrun by hand has no $NOTIFY_SOCKET, and a broken one must not
/// take the guest down.
pub fn to_host(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_some() {
        let _ = sd_notify::notify(false, states);
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
        send(a.as_raw_fd(), b"READY=1", MsgFlags::empty()).unwrap();
        let me = std::process::id() as i32;
        assert_eq!(receive(&b, me + 1), vec![]);
        send(a.as_raw_fd(), b"READY=1", MsgFlags::empty()).unwrap();
        assert_eq!(receive(&b, me).len(), 1);
    }
}
