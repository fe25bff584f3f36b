//! The supervisor ↔ container protocol: typed messages over a SOCK_SEQPACKET
//! socketpair (one message per packet, fds by SCM_RIGHTS), and the numbered sync
//! points of one start, in the manner of nspawn's barriers.
//!
//! | # | sender     | message                 | the other side then                          |
//! |---|------------|-------------------------|----------------------------------------------|
//! | 0 | outer child | `FromChild::Inner(pid)` | with a user namespace only: the outer child (host's user namespace) built the outer mounts and cloned the container's PID 1 into the new namespaces, then exits; the supervisor writes PID 1's uid and gid maps |
//! | 1 | supervisor | `ToChild::Go`           | child: it is in its cgroup (and its maps are written); unshares the cgroup namespace, builds its file system, drops privileges |
//! | 2 | child      | `FromChild::Ready`      | supervisor: takes the console, notify socket and mount listener; the child resets its signals and execs |
//! | 3 | child      | end of file             | supervisor: init runs (the child's end is close-on-exec) |
//! | – | child      | `FromChild::Failed`     | supervisor: reports the line and cleans up; the child exits |
//!
//! A new step is one variant here, one `send` on one side and one `expect` on the
//! other. Steps that are coming: for the OCI front end, "created" and "start"
//! before the exec.

use crate::sys::fd::{recv, Received};
use nix::errno::Errno;
use nix::sys::socket::{
    sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};
use std::io::IoSlice;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

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
    #[error("malformed message while waiting for {expected}: {why}")]
    Malformed { expected: &'static str, why: String },
}

/// Message tags on the wire, one namespace for both directions.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Go = 1,
    Ready = 2,
    Failed = 3,
    Inner = 4,
}

impl Tag {
    fn of(b: u8) -> Option<Tag> {
        [Tag::Go, Tag::Ready, Tag::Failed, Tag::Inner]
            .into_iter()
            .find(|t| *t as u8 == b)
    }
}

/// Which endpoint an fd of a `Ready` message is (one role byte per fd).
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    PtyMaster = 1,
    Notify = 2,
    MountListener = 3,
}

/// What the supervisor tells the child.
#[derive(Debug, PartialEq, Eq)]
pub enum ToChild {
    /// Sync point 1.
    Go,
}

/// The fds the child hands over before exec.
#[derive(Debug, Default)]
pub struct Endpoints {
    /// The console pty's master (none with --console=pipe).
    pub pty_master: Option<OwnedFd>,
    /// The guest's sd_notify socket, /run/host/notify.
    pub notify: Option<OwnedFd>,
    /// The seccomp listener for the guest's mounts of new file systems.
    pub mount_listener: Option<OwnedFd>,
}

/// What the child tells the supervisor.
#[derive(Debug)]
pub enum FromChild {
    /// Sync point 2.
    Ready(Endpoints),
    /// A step failed; one line naming it.
    Failed(String),
    /// Sync point 0 (user namespace): the container's PID 1, a host pid.
    Inner(i32),
}

/// A message type: how it is written and read.
pub trait Message: Sized {
    /// For error messages: what the receiver was waiting for.
    const WHAT: &'static str;
    fn encode(&self) -> (Vec<u8>, Vec<BorrowedFd<'_>>);
    fn decode(data: &[u8], fds: Vec<OwnedFd>) -> Result<Self, String>;
}

impl Message for ToChild {
    const WHAT: &'static str = "go";

    fn encode(&self) -> (Vec<u8>, Vec<BorrowedFd<'_>>) {
        match self {
            ToChild::Go => (vec![Tag::Go as u8], vec![]),
        }
    }

    fn decode(data: &[u8], _fds: Vec<OwnedFd>) -> Result<Self, String> {
        match Tag::of(data[0]) {
            Some(Tag::Go) => Ok(ToChild::Go),
            _ => Err(format!("tag {} is not a message to the child", data[0])),
        }
    }
}

/// A seqpacket message is atomic; failure lines stay well within one page.
const MAX_LINE: usize = 4000;

impl Message for FromChild {
    const WHAT: &'static str = "the container's endpoints or a failure";

    fn encode(&self) -> (Vec<u8>, Vec<BorrowedFd<'_>>) {
        match self {
            FromChild::Ready(e) => {
                let mut data = vec![Tag::Ready as u8];
                let mut fds = Vec::new();
                for (role, fd) in [
                    (Role::PtyMaster, &e.pty_master),
                    (Role::Notify, &e.notify),
                    (Role::MountListener, &e.mount_listener),
                ] {
                    if let Some(fd) = fd {
                        data.push(role as u8);
                        fds.push(fd.as_fd());
                    }
                }
                (data, fds)
            }
            FromChild::Inner(pid) => {
                let mut data = vec![Tag::Inner as u8];
                data.extend_from_slice(&pid.to_le_bytes());
                (data, vec![])
            }
            FromChild::Failed(line) => {
                let mut data = vec![Tag::Failed as u8];
                let mut end = line.len().min(MAX_LINE);
                while !line.is_char_boundary(end) {
                    end -= 1;
                }
                data.extend_from_slice(&line.as_bytes()[..end]);
                (data, vec![])
            }
        }
    }

    fn decode(data: &[u8], fds: Vec<OwnedFd>) -> Result<Self, String> {
        match Tag::of(data[0]) {
            Some(Tag::Ready) => {
                let roles = &data[1..];
                if roles.len() != fds.len() {
                    return Err(format!("{} roles for {} fds", roles.len(), fds.len()));
                }
                let mut e = Endpoints::default();
                for (&role, fd) in roles.iter().zip(fds) {
                    let slot = match role {
                        r if r == Role::PtyMaster as u8 => &mut e.pty_master,
                        r if r == Role::Notify as u8 => &mut e.notify,
                        r if r == Role::MountListener as u8 => &mut e.mount_listener,
                        r => return Err(format!("unknown fd role {r}")),
                    };
                    if slot.replace(fd).is_some() {
                        return Err(format!("fd role {role} twice"));
                    }
                }
                Ok(FromChild::Ready(e))
            }
            Some(Tag::Failed) => Ok(FromChild::Failed(
                String::from_utf8_lossy(&data[1..]).into_owned(),
            )),
            Some(Tag::Inner) => match data[1..].try_into() {
                Ok(b) if i32::from_le_bytes(b) > 0 => Ok(FromChild::Inner(i32::from_le_bytes(b))),
                _ => Err("a malformed pid".into()),
            },
            _ => Err(format!("tag {} is not a message from the child", data[0])),
        }
    }
}

/// One end of the channel: sends `S`, receives `R`.
pub struct End<S, R> {
    fd: OwnedFd,
    _types: PhantomData<fn(S) -> R>,
}

/// The supervisor's end.
pub type SupervisorEnd = End<ToChild, FromChild>;
/// The child's end; close-on-exec, so its closing tells the supervisor init runs.
pub type ChildEnd = End<FromChild, ToChild>;

pub fn pair() -> Result<(SupervisorEnd, ChildEnd), ChannelError> {
    pair_of()
}

/// Both ends of a channel: the first sends `A`, the second `B`.
pub type Pair<A, B> = (End<A, B>, End<B, A>);

/// A channel for another set of messages: the OCI front end's init speaks
/// its own sync points (oci/init.rs) over the same framing.
pub fn pair_of<A: Message, B: Message>() -> Result<Pair<A, B>, ChannelError> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(ChannelError::Create)?;
    Ok((
        End {
            fd: a,
            _types: PhantomData,
        },
        End {
            fd: b,
            _types: PhantomData,
        },
    ))
}

impl<S: Message, R: Message> End<S, R> {
    pub fn send(&self, msg: &S) -> Result<(), ChannelError> {
        let (data, fds) = msg.encode();
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let iov = [IoSlice::new(&data)];
        let cmsg = [ControlMessage::ScmRights(&raw)];
        let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsg };
        loop {
            match sendmsg::<()>(
                self.fd.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_NOSIGNAL,
                None,
            ) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(ChannelError::Send(S::WHAT, e)),
            }
        }
    }

    /// The next message; None once the other side closed its end (exec'd or
    /// died).
    pub fn recv(&self) -> Result<Option<R>, ChannelError> {
        let mut buf = vec![0u8; MAX_LINE + 64];
        let mut reset = false;
        let Received { len, fds, .. } = loop {
            match recv(self.fd.as_fd(), &mut buf, rustix::net::RecvFlags::empty()) {
                Ok(r) => break r,
                Err(Errno::EINTR) => continue,
                // The other side closed with a message of ours unread (a
                // child that failed before it read Go). The kernel says so
                // once, before what it sent last (its failure line): read on.
                Err(Errno::ECONNRESET) if !reset => reset = true,
                Err(Errno::ECONNRESET) => return Ok(None),
                Err(e) => return Err(ChannelError::Recv(e)),
            }
        };
        if len == 0 {
            return Ok(None);
        }
        R::decode(&buf[..len.min(buf.len())], fds)
            .map(Some)
            .map_err(|why| ChannelError::Malformed {
                expected: R::WHAT,
                why,
            })
    }

    /// The next message, which must be there: end of file is an error.
    pub fn expect(&self) -> Result<R, ChannelError> {
        self.recv()?.ok_or(ChannelError::HungUp(R::WHAT))
    }
}

impl<S, R> AsFd for End<S, R> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_fds_round_trip() {
        let (sup, child) = pair().unwrap();
        sup.send(&ToChild::Go).unwrap();
        assert_eq!(child.expect().unwrap(), ToChild::Go);

        let (r, _w) = nix::unistd::pipe().unwrap();
        let (l, _w2) = nix::unistd::pipe().unwrap();
        child
            .send(&FromChild::Ready(Endpoints {
                pty_master: None,
                notify: Some(r),
                mount_listener: Some(l),
            }))
            .unwrap();
        match sup.recv().unwrap() {
            Some(FromChild::Ready(e)) => {
                assert!(e.pty_master.is_none());
                assert!(e.notify.is_some() && e.mount_listener.is_some());
            }
            other => panic!("{other:?}"),
        }
        child.send(&FromChild::Inner(4242)).unwrap();
        assert!(matches!(sup.recv().unwrap(), Some(FromChild::Inner(4242))));
        child
            .send(&FromChild::Failed("mount /proc: EPERM".into()))
            .unwrap();
        match sup.recv().unwrap() {
            Some(FromChild::Failed(m)) => assert_eq!(m, "mount /proc: EPERM"),
            other => panic!("{other:?}"),
        }
        drop(child);
        assert!(sup.recv().unwrap().is_none());
    }

    /// A child that fails before it reads Go closes its end with Go unread:
    /// the kernel then reports ECONNRESET to the supervisor before the
    /// failure line still queued for it (seen: 62 of 100 starts with a bad
    /// --inaccessible= said only "died while it was being set up").
    #[test]
    fn the_last_line_of_a_child_that_hung_up_with_go_unread_is_read() {
        let (sup, child) = pair().unwrap();
        sup.send(&ToChild::Go).unwrap();
        child
            .send(&FromChild::Failed("--inaccessible=/x: ENOENT".into()))
            .unwrap();
        drop(child);
        match sup.recv().unwrap() {
            Some(FromChild::Failed(m)) => assert_eq!(m, "--inaccessible=/x: ENOENT"),
            other => panic!("{other:?}"),
        }
        assert!(sup.recv().unwrap().is_none());
    }

    #[test]
    fn a_dead_supervisor_is_noticed() {
        let (sup, child) = pair().unwrap();
        drop(sup);
        assert!(matches!(child.expect(), Err(ChannelError::HungUp("go"))));
    }

    #[test]
    fn long_failure_lines_are_cut_at_a_character() {
        let line = "é".repeat(3000);
        let (data, _) = FromChild::Failed(line).encode();
        assert!(data.len() <= MAX_LINE + 1);
        assert!(std::str::from_utf8(&data[1..]).is_ok());
    }

    #[test]
    fn malformed_messages_are_refused() {
        assert!(FromChild::decode(&[Tag::Go as u8], vec![]).is_err());
        assert!(ToChild::decode(&[Tag::Ready as u8], vec![]).is_err());
        // A role without its fd.
        assert!(FromChild::decode(&[Tag::Ready as u8, Role::Notify as u8], vec![]).is_err());
        assert!(FromChild::decode(&[Tag::Inner as u8, 1, 2], vec![]).is_err());
        assert!(FromChild::decode(&[Tag::Inner as u8, 0, 0, 0, 0], vec![]).is_err());
    }
}
