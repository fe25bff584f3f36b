//! The supervisor ↔ container handshake: a SOCK_SEQPACKET socketpair carrying a
//! few typed messages (and fds, by SCM_RIGHTS).
//!
//! The sequence, one message per step:
//!   supervisor → child  `Go`     the child is in its cgroup (and, once user
//!                                namespaces come, its uid/gid maps are written)
//!   child → supervisor  `Fds`    the console pty master and the notify socket
//!   child → supervisor  `Failed` the step that failed, as one line; or nothing:
//! the child's end is close-on-exec, so end-of-file means init was exec'd.

use nix::errno::Errno;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

const GO: u8 = 1;
const FDS: u8 = 2;
const FAILED: u8 = 3;

/// Which fds a `Fds` message carries, in this order.
const HAS_PTY: u8 = 1;
const HAS_NOTIFY: u8 = 2;
const HAS_LISTENER: u8 = 4;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("creating the supervisor/container socket pair: {0}")]
    Create(#[source] Errno),
    #[error("sending {0} to the other side: {1}")]
    Send(&'static str, #[source] Errno),
    #[error("receiving from the other side: {0}")]
    Recv(#[source] Errno),
    #[error("the other side hung up while waiting for {0}")]
    HungUp(&'static str),
    #[error("unexpected message (tag {received}) while waiting for {expected}")]
    Unexpected {
        expected: &'static str,
        received: u8,
    },
}

/// What the container sends its supervisor.
#[derive(Debug)]
pub enum FromChild {
    Fds {
        pty_master: Option<OwnedFd>,
        notify: Option<OwnedFd>,
        /// The seccomp listener for the guest's mounts of new file systems.
        listener: Option<OwnedFd>,
    },
    Failed(String),
}

pub struct SupervisorEnd(OwnedFd);
pub struct ChildEnd(OwnedFd);

pub fn pair() -> Result<(SupervisorEnd, ChildEnd), ChannelError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(ChannelError::Create)?;
    Ok((SupervisorEnd(a), ChildEnd(b)))
}

fn send(fd: &OwnedFd, what: &'static str, data: &[u8], fds: &[RawFd]) -> Result<(), ChannelError> {
    let iov = [IoSlice::new(data)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
    loop {
        match sendmsg::<()>(fd.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None) {
            Ok(_) => return Ok(()),
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(ChannelError::Send(what, e)),
        }
    }
}

/// One message: (bytes, fds); None at end-of-file.
/// A message's bytes and the fds that came with it.
type Received = (Vec<u8>, Vec<OwnedFd>);

fn recv(fd: &OwnedFd) -> Result<Option<Received>, ChannelError> {
    let mut buf = vec![0u8; 4096];
    let mut cmsg_space = nix::cmsg_space!([RawFd; 4]);
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = match recvmsg::<()>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg_space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(ChannelError::Recv(e)),
        };
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(ChannelError::Recv)? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel just installed these fds for us.
                fds.extend(raw.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
            }
        }
        let n = msg.bytes;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        return Ok(Some((buf, fds)));
    }
}

impl AsFd for SupervisorEnd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl SupervisorEnd {
    pub fn send_go(&self) -> Result<(), ChannelError> {
        send(&self.0, "go", &[GO], &[])
    }

    /// The next message; None once the child exec'd (or died).
    pub fn recv(&self) -> Result<Option<FromChild>, ChannelError> {
        let Some((data, mut fds)) = recv(&self.0)? else {
            return Ok(None);
        };
        match data[0] {
            FDS => {
                let flags = data.get(1).copied().unwrap_or(0);
                let mut it = fds.drain(..);
                let pty_master = if flags & HAS_PTY != 0 {
                    it.next()
                } else {
                    None
                };
                let notify = if flags & HAS_NOTIFY != 0 {
                    it.next()
                } else {
                    None
                };
                let listener = if flags & HAS_LISTENER != 0 {
                    it.next()
                } else {
                    None
                };
                Ok(Some(FromChild::Fds {
                    pty_master,
                    notify,
                    listener,
                }))
            }
            FAILED => Ok(Some(FromChild::Failed(
                String::from_utf8_lossy(&data[1..]).into_owned(),
            ))),
            other => Err(ChannelError::Unexpected {
                expected: "fds or a failure",
                received: other,
            }),
        }
    }
}

impl ChildEnd {
    /// Blocks until the supervisor says go. Also the child's guard against an early
    /// supervisor death: the socket then reads end-of-file.
    pub fn wait_go(&self) -> Result<(), ChannelError> {
        match recv(&self.0)? {
            Some((d, _)) if d[0] == GO => Ok(()),
            Some((d, _)) => Err(ChannelError::Unexpected {
                expected: "go",
                received: d[0],
            }),
            None => Err(ChannelError::HungUp("go")),
        }
    }

    pub fn send_fds(
        &self,
        pty_master: Option<&OwnedFd>,
        notify: Option<&OwnedFd>,
        listener: Option<&OwnedFd>,
    ) -> Result<(), ChannelError> {
        let mut flags = 0;
        let mut fds = Vec::new();
        for (bit, fd) in [
            (HAS_PTY, pty_master),
            (HAS_NOTIFY, notify),
            (HAS_LISTENER, listener),
        ] {
            if let Some(f) = fd {
                flags |= bit;
                fds.push(f.as_raw_fd());
            }
        }
        send(&self.0, "fds", &[FDS, flags], &fds)
    }

    pub fn send_failed(&self, msg: &str) {
        let mut data = Vec::with_capacity(msg.len() + 1);
        data.push(FAILED);
        // A seqpacket message is atomic; keep it well within one page.
        data.extend_from_slice(&msg.as_bytes()[..msg.len().min(4000)]);
        // Nothing more can be done if the supervisor is gone.
        let _ = send(&self.0, "failure", &data, &[]);
    }

    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_fds_round_trip() {
        let (sup, child) = pair().unwrap();
        sup.send_go().unwrap();
        child.wait_go().unwrap();

        let (r, _w) = nix::unistd::pipe().unwrap();
        child.send_fds(None, Some(&r), None).unwrap();
        match sup.recv().unwrap() {
            Some(FromChild::Fds {
                pty_master,
                notify,
                listener,
            }) => {
                assert!(pty_master.is_none() && listener.is_none());
                assert!(notify.is_some());
            }
            other => panic!("{other:?}"),
        }
        child.send_failed("mount /proc: EPERM");
        match sup.recv().unwrap() {
            Some(FromChild::Failed(m)) => assert_eq!(m, "mount /proc: EPERM"),
            other => panic!("{other:?}"),
        }
        drop(child);
        assert!(sup.recv().unwrap().is_none());
    }

    #[test]
    fn a_dead_supervisor_is_noticed() {
        let (sup, child) = pair().unwrap();
        drop(sup);
        assert!(matches!(child.wait_go(), Err(ChannelError::HungUp("go"))));
    }
}
