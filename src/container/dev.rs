//! The two endpoints the container hands to its supervisor: the console pty and the
//! sd_notify socket. Both are created inside the container (the pty from its own
//! devpts instance, the socket on its own /run), so they exist in the guest's
//! namespaces, and their fds travel to the supervisor over the channel.

use super::mounts::MountError;
use super::root::Root;
use crate::sys::fd_path;
use nix::sys::socket::{
    bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, UnixAddr,
};
use rustix::fs::OFlags;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

/// Opens a new pty pair on the container's devpts: (master, slave).
pub fn open_pty(root: &Root) -> Result<(OwnedFd, OwnedFd), MountError> {
    let master = root
        .open(Path::new("/dev/pts/ptmx"), OFlags::RDWR | OFlags::NOCTTY)
        .map_err(|e| MountError::Console("open /dev/pts/ptmx", e.errno))?;
    let rerr = |what| move |e: rustix::io::Errno| MountError::Console(what, crate::sys::errno(e));
    rustix::pty::unlockpt(&master).map_err(rerr("unlock pty"))?;
    let slave = pty_peer(&master).map_err(rerr("open pty peer"))?;
    Ok((master, slave))
}

/// The slave side of a pty, opened through its master (TIOCGPTPEER), without a
/// path lookup that a guest could race.
pub fn pty_peer(master: &OwnedFd) -> rustix::io::Result<OwnedFd> {
    use rustix::pty::OpenptFlags;
    rustix::pty::ioctl_tiocgptpeer(
        master,
        OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC,
    )
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
    // Made while the umask is 0 (mod.rs): only its owner may send.
    rustix::fs::chmodat(
        &dir,
        "notify",
        rustix::fs::Mode::from_bits_truncate(0o755),
        rustix::fs::AtFlags::empty(),
    )
    .map_err(|e| MountError::Notify("chmod", crate::sys::errno(e)))?;
    // The sender's pid tells the guest's PID 1 from other processes.
    setsockopt(&sock, sockopt::PassCred, &true)
        .map_err(|e| MountError::Notify("SO_PASSCRED", e))?;
    Ok(sock)
}
