//! The two endpoints the container hands to its supervisor: the console pty and the
//! sd_notify socket. Both are created inside the container (the pty from its own
//! devpts instance, the socket on its own /run), so they exist in the guest's
//! namespaces, and their fds travel to the supervisor over the channel.

use super::mounts::MountError;
use super::root::Root;
use crate::sys::fd_path;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::socket::{
    bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, UnixAddr,
};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

nix::ioctl_write_ptr_bad!(tiocsptlck, libc::TIOCSPTLCK, libc::c_int);

/// Opens a new pty pair on the container's devpts: (master, slave).
pub fn open_pty(root: &Root) -> Result<(OwnedFd, OwnedFd), MountError> {
    let master = root
        .open(Path::new("/dev/pts/ptmx"), OFlag::O_RDWR | OFlag::O_NOCTTY)
        .map_err(|e| MountError::Console("open /dev/pts/ptmx", e.errno))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer.
    unsafe { tiocsptlck(master.as_raw_fd(), &unlock) }
        .map_err(|e| MountError::Console("unlock pty", e))?;
    // TIOCGPTPEER opens the slave through the master, without a path lookup that
    // a guest could race.
    // SAFETY: plain ioctl returning a new fd.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    let slave = Errno::result(slave).map_err(|e| MountError::Console("open pty peer", e))?;
    // SAFETY: a new fd nothing else owns.
    Ok((master, unsafe { OwnedFd::from_raw_fd(slave) }))
}

/// Binds the guest's sd_notify socket at /run/host/notify.
pub fn notify_socket(root: &Root) -> Result<OwnedFd, MountError> {
    let dir = root.path_fd(Path::new("/run/host"))?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| MountError::Notify("socket", e))?;
    // Binding through the directory's fd keeps the lookup inside the root.
    let addr = UnixAddr::new(format!("{}/notify", fd_path(dir.as_fd())).as_str())
        .map_err(|e| MountError::Notify("address", e))?;
    bind(sock.as_raw_fd(), &addr).map_err(|e| MountError::Notify("bind", e))?;
    // The sender's pid tells the guest's PID 1 from other processes.
    setsockopt(&sock, sockopt::PassCred, &true)
        .map_err(|e| MountError::Notify("SO_PASSCRED", e))?;
    Ok(sock)
}
