//! seccomp(2): installing classic-BPF filters and answering user notifications.
//!
//! What the filters say is decided in policy/seccomp.rs; this is only the kernel
//! interface, which libc describes but nothing wraps safely.

use nix::errno::Errno;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub use libc::sock_filter as Insn;

/// Installs `prog` on the calling thread. With `listener`, the filter's
/// SECCOMP_RET_USER_NOTIF calls are reported on the returned fd.
pub fn install(prog: &[Insn], listener: bool) -> Result<Option<OwnedFd>, Errno> {
    let fprog = libc::sock_fprog {
        len: u16::try_from(prog.len()).map_err(|_| Errno::E2BIG)?,
        filter: prog.as_ptr() as *mut Insn,
    };
    let flags = if listener {
        libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
    } else {
        0
    };
    // SAFETY: fprog points at `prog`, alive for the call; the kernel copies it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    let r = Errno::result(r)?;
    // SAFETY: with NEW_LISTENER the kernel returned a new fd that only we know.
    Ok(listener.then(|| unsafe { OwnedFd::from_raw_fd(r as i32) }))
}

/// One pending notification: the calling thread, and its system call.
#[derive(Debug, Clone, Copy)]
pub struct Notification {
    pub id: u64,
    /// The caller's thread id (in our pid namespace).
    pub tid: u32,
    pub nr: i32,
    pub args: [u64; 6],
}

/// Receives the next notification (ENOENT: its caller went away meanwhile).
pub fn recv(listener: BorrowedFd<'_>) -> Result<Notification, Errno> {
    // SAFETY: seccomp_notif is plain integers; all-zero is a valid value and the
    // kernel requires the struct zeroed.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: NOTIF_RECV writes one seccomp_notif into the struct we pass.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut req,
        )
    };
    Errno::result(r)?;
    Ok(Notification {
        id: req.id,
        tid: req.pid,
        nr: req.data.nr,
        args: req.data.args,
    })
}

/// Whether the notification `id` still waits for an answer: fds taken from its
/// caller's /proc entry before this check belong to that caller (its tid could
/// otherwise have been reused).
pub fn id_valid(listener: BorrowedFd<'_>, id: u64) -> bool {
    // SAFETY: NOTIF_ID_VALID reads the u64 we pass.
    unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &id,
        ) == 0
    }
}

/// Answers notification `id`: the call returns `Ok(val)` or fails with `Err(errno)`.
pub fn respond(listener: BorrowedFd<'_>, id: u64, result: Result<i64, Errno>) -> nix::Result<()> {
    let (val, error) = match result {
        Ok(v) => (v, 0),
        Err(e) => (-1, -(e as i32)),
    };
    let resp = libc::seccomp_notif_resp {
        id,
        val,
        error,
        flags: 0,
    };
    // SAFETY: NOTIF_SEND reads the response we pass.
    let r = unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) };
    Errno::result(r).map(drop)
}

/// Answers notification `id` by installing our fd `fd` in the caller (close-on-
/// exec) and making its system call return the new fd's number, in one step
/// (SECCOMP_ADDFD_FLAG_SEND): the caller gets the fd exactly as if the call
/// had made it.
pub fn respond_with_fd(listener: BorrowedFd<'_>, id: u64, fd: BorrowedFd<'_>) -> nix::Result<i32> {
    let addfd = libc::seccomp_notif_addfd {
        id,
        flags: libc::SECCOMP_ADDFD_FLAG_SEND as u32,
        srcfd: fd.as_raw_fd() as u32,
        newfd: 0,
        newfd_flags: libc::O_CLOEXEC as u32,
    };
    // SAFETY: NOTIF_ADDFD reads the struct we pass; the kernel duplicates srcfd
    // into the caller, our fd stays ours.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ADDFD,
            &addfd,
        )
    };
    Errno::result(r)
}
