//! `notify`: one sd_notify(3) datagram to $NOTIFY_SOCKET, so tests can check
//! what the runtime relays (READY=1, STATUS=…, X_… fields) without a systemd guest.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

use crate::errno;

/// Where $NOTIFY_SOCKET points (also used by `notify-fds`).
#[derive(Debug, PartialEq, Eq)]
pub enum Target<'a> {
    Path(&'a str),
    /// `@name` in $NOTIFY_SOCKET is the abstract socket `\0name`.
    Abstract(&'a [u8]),
}

pub fn target(var: &str) -> Option<Target<'_>> {
    match var.strip_prefix('@') {
        Some(name) => Some(Target::Abstract(name.as_bytes())),
        None if var.is_empty() => None,
        None => Some(Target::Path(var)),
    }
}

/// sd_notify's wire format: assignments separated by newlines.
fn message(parts: &[String]) -> String {
    parts.join("\n")
}

/// Sends the datagram; the error is what the probe prints: `unset` when there is
/// no $NOTIFY_SOCKET, otherwise the errno name.
pub fn send(parts: &[String]) -> Result<(), String> {
    let var = std::env::var("NOTIFY_SOCKET").unwrap_or_default();
    let Some(target) = target(&var) else {
        return Err("unset".to_string());
    };
    let io_err = |e: std::io::Error| errno::io_name(&e);
    let addr = match target {
        Target::Path(p) => SocketAddr::from_pathname(p),
        Target::Abstract(name) => SocketAddr::from_abstract_name(name),
    }
    .map_err(io_err)?;
    let sock = UnixDatagram::unbound().map_err(io_err)?;
    sock.send_to_addr(message(parts).as_bytes(), &addr)
        .map_err(io_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses() {
        assert_eq!(
            target("/run/host/notify"),
            Some(Target::Path("/run/host/notify"))
        );
        assert_eq!(
            target("@nixrun/notify"),
            Some(Target::Abstract(b"nixrun/notify"))
        );
        assert_eq!(target(""), None);
    }

    #[test]
    fn parts_are_newline_separated() {
        let parts = vec!["READY=1".to_string(), "STATUS=up".to_string()];
        assert_eq!(message(&parts), "READY=1\nSTATUS=up");
    }

    #[test]
    fn datagram_arrives_whole() {
        let path = std::env::temp_dir().join(format!("nixrun-probe-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        let addr = SocketAddr::from_pathname(&path).unwrap();
        UnixDatagram::unbound()
            .unwrap()
            .send_to_addr(message(&["READY=1".into(), "X=2".into()]).as_bytes(), &addr)
            .unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nX=2");
        std::fs::remove_file(&path).unwrap();
    }
}
