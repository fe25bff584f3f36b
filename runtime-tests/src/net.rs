//! `connect` and `listen`: TCP as the guest's PID 1 does it, for the
//! networking tests — a PID 1 that reaches the host address at its first
//! instruction, and a service that --port forwards to.

use crate::errno;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// Connects to ADDR:PORT, sends a line and reads the answer. The result line:
/// `connected REPLY` or the errno name.
pub fn connect(addr: &str, port: &str) -> (u8, String) {
    let Ok(sa) = format!("{addr}:{port}")
        .parse::<SocketAddr>()
        .or_else(|_| format!("[{addr}]:{port}").parse::<SocketAddr>())
    else {
        return (64, format!("bad address {addr}:{port}"));
    };
    let mut s = match TcpStream::connect_timeout(&sa, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => return (1, errno::io_name(&e)),
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if let Err(e) = s.write_all(b"ping\n") {
        return (1, errno::io_name(&e));
    }
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(n) => (
            0,
            format!("connected {}", String::from_utf8_lossy(&buf[..n]).trim()),
        ),
        Err(e) => (1, errno::io_name(&e)),
    }
}

/// Listens on PORT (IPv4 and IPv6, all addresses), prints `listening`, and
/// answers COUNT connections with `pong FROM` (the peer's address), then
/// exits.
pub fn listen(port: &str, count: &str) -> (u8, String) {
    let (Ok(port), Ok(count)) = (port.parse::<u16>(), count.parse::<u32>()) else {
        return (64, "listen PORT COUNT".into());
    };
    // [::] takes IPv4 too unless the guest set bindv6only.
    let l = match TcpListener::bind(("::", port)).or_else(|_| TcpListener::bind(("0.0.0.0", port)))
    {
        Ok(l) => l,
        Err(e) => return (1, errno::io_name(&e)),
    };
    crate::say("listening");
    for _ in 0..count {
        let (mut s, peer) = match l.accept() {
            Ok(x) => x,
            Err(e) => return (1, errno::io_name(&e)),
        };
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf);
        // An IPv4 peer on the dual-stack socket is shown as IPv4.
        let _ = s.write_all(format!("pong {}\n", peer.ip().to_canonical()).as_bytes());
    }
    (0, "done".into())
}
