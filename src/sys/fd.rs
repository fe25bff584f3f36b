//! File descriptors that arrive by SCM_RIGHTS, and close_range.
//!
//! nix hands received fds over as raw numbers, and when the control buffer was
//! too small (MSG_CTRUNC) it refuses to parse it at all, so the fds that did
//! arrive stay open with nobody knowing their numbers. rustix's receive buffer
//! yields `OwnedFd`s and closes whatever is not taken: a message whose fds the
//! receiver does not want closes them when dropped, and a guest sending fds on
//! the notify socket cannot fill the supervisor's fd table.

use nix::errno::Errno;
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, OwnedFd};

/// One received message.
#[derive(Debug)]
pub struct Received {
    /// Bytes of the message (with MSG_TRUNC: its full length, even if longer
    /// than the buffer).
    pub len: usize,
    /// The fds that came with it, now ours.
    pub fds: Vec<OwnedFd>,
    /// The sender's pid, where SO_PASSCRED is on.
    pub pid: Option<i32>,
}

/// Room for this many fds per message (a little more fits, as credentials may
/// be absent); the kernel closes any beyond what the control buffer holds (and
/// sets MSG_CTRUNC).
pub const MAX_FDS: usize = 8;

/// recvmsg(2) into `buf`, taking ownership of every fd received. The fds are
/// marked close-on-exec as they arrive.
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8], flags: RecvFlags) -> nix::Result<Received> {
    let mut space =
        [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS), ScmCredentials(1))];
    let mut cmsg = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = rustix::net::recvmsg(sock, &mut iov, &mut cmsg, flags | RecvFlags::CMSG_CLOEXEC)
        .map_err(|e| Errno::from_raw(e.raw_os_error()))?;
    let mut out = Received {
        len: msg.bytes,
        fds: Vec::new(),
        pid: None,
    };
    for c in cmsg.drain() {
        match c {
            RecvAncillaryMessage::ScmRights(fds) => out.fds.extend(fds),
            RecvAncillaryMessage::ScmCredentials(cred) => {
                out.pid = Some(cred.pid.as_raw_nonzero().get())
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Sends one byte with `fd` attached (SCM_RIGHTS) on a connected socket.
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> nix::Result<()> {
    use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut space = [MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut cmsg = SendAncillaryBuffer::new(&mut space);
    let fds = [fd];
    if !cmsg.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(Errno::ENOBUFS);
    }
    rustix::net::sendmsg(
        sock,
        &[std::io::IoSlice::new(b"f")],
        &mut cmsg,
        SendFlags::empty(),
    )
    .map(drop)
    .map_err(|e| Errno::from_raw(e.raw_os_error()))
}

/// Marks every fd from `first` up close-on-exec.
pub fn cloexec_from(first: u32) -> nix::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: with CLOSE_RANGE_CLOEXEC, close_range only changes fd flags; no fd
    // is closed under an owner's feet.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    Errno::result(r).map(drop)
}

/// Closes every fd from `first` up. Only for the start of a program that
/// enters a machine, before it opens anything itself: the fds closed are the
/// ones its caller leaked to it, owned by nothing in this process.
pub fn close_from(first: u32) -> nix::Result<()> {
    // SAFETY: closing touches no memory; the documented contract (nothing in
    // the process owns these fds yet) keeps owned fds from being closed under
    // their owners.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) };
    Errno::result(r).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{
        sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
    };
    use std::io::IoSlice;
    use std::os::fd::{AsFd, AsRawFd, RawFd};

    /// Our fds open on what `fd` is open on. Only those: the other tests run
    /// in threads of this process and open and close fds meanwhile.
    fn open_fds_like(fd: RawFd) -> usize {
        let what = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == what))
            .count()
    }

    #[test]
    fn received_fds_are_owned_and_closed_with_the_message() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::Datagram,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let (r, w) = nix::unistd::pipe().unwrap();
        let open_fds = || open_fds_like(r.as_raw_fd());
        let before = open_fds();
        // More fds than MAX_FDS: the rest must not end up in our table either.
        let many: Vec<RawFd> = std::iter::repeat(r.as_raw_fd()).take(20).collect();
        sendmsg::<()>(
            a.as_raw_fd(),
            &[IoSlice::new(b"x")],
            &[ControlMessage::ScmRights(&many)],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        let mut buf = [0u8; 16];
        let got = recv(b.as_fd(), &mut buf, RecvFlags::empty()).unwrap();
        assert_eq!(got.len, 1);
        // Some arrived (and are ours), the rest were closed by the kernel.
        assert!(!got.fds.is_empty() && got.fds.len() < many.len());
        assert_eq!(open_fds(), before + got.fds.len());
        drop(got);
        assert_eq!(open_fds(), before);
        drop((r, w));
    }
}
