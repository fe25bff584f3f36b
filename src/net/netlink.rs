//! The netlink framing that the rtnetlink client (`rtnl`) and the nf_tables
//! port forwarding (`nft`) share: a socket that hears the kernel only,
//! messages and (nested) attributes appended to one buffer and walked back out
//! of a datagram, and the kernel's answers to a request: its data, the
//! NLMSG_DONE that closes a dump, and the NLMSG_ERROR that acks or refuses it,
//! with the kernel's reason when the socket asked for extended acks.
//!
//! Hand-written, as are the messages of both users: a generic rtnetlink codec
//! carries a parser and emitter for every link kind, tc object and tunnel the
//! kernel knows, half a megabyte of code in a supervisor that stays resident
//! for its guest's whole life.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::net::netlink::SocketAddrNetlink;
use rustix::net::{AddressFamily, Protocol, RecvFlags, SendFlags, SocketFlags, SocketType};

// <linux/netlink.h>
pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
pub const NLM_F_DUMP_INTR: u16 = 0x10;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
// The same bits mean this in an NLMSG_ERROR.
const NLM_F_CAPPED: u16 = 0x100;
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLMSGERR_ATTR_MSG: u16 = 1;

/// A netlink socket bound to a port of its own. Blocking; `recv` can ask not
/// to wait.
pub struct Socket {
    fd: OwnedFd,
}

impl Socket {
    /// A socket of `protocol` (None: NETLINK_ROUTE) in the calling thread's
    /// network namespace, where it stays; `groups` is the mask of multicast
    /// groups to join (group n is bit n - 1).
    pub fn open(protocol: Option<Protocol>, groups: u32) -> io::Result<Socket> {
        let fd = rustix::net::socket_with(
            AddressFamily::NETLINK,
            SocketType::RAW,
            SocketFlags::CLOEXEC,
            protocol,
        )?;
        rustix::net::bind(&fd, &SocketAddrNetlink::new(0, groups))?;
        Ok(Socket { fd })
    }

    /// Sends `msg` (one message or a batch) to the kernel.
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        let n = rustix::net::sendto(
            &self.fd,
            msg,
            SendFlags::empty(),
            &SocketAddrNetlink::new(0, 0),
        )?;
        if n != msg.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "short netlink send",
            ));
        }
        Ok(())
    }

    /// The next datagram from the kernel, read into `buf` whatever its size;
    /// `None` if `wait` is false and there is none. Others' datagrams are
    /// dropped; lost multicast notifications come as an ENOBUFS error.
    pub fn recv<'a>(&self, buf: &'a mut Vec<u8>, wait: bool) -> io::Result<Option<&'a [u8]>> {
        let flags = if wait {
            RecvFlags::empty()
        } else {
            RecvFlags::DONTWAIT
        };
        loop {
            // Its size first: a datagram read into too small a buffer is cut
            // short for good.
            let peek = flags | RecvFlags::PEEK | RecvFlags::TRUNC;
            let r = rustix::net::recv(&self.fd, &mut [0u8; 0], peek).and_then(|(_, len)| {
                buf.clear();
                buf.reserve(len);
                rustix::net::recvfrom(&self.fd, rustix::buffer::spare_capacity(buf), flags)
            });
            let from = match r {
                Ok((_, _, from)) => from,
                Err(rustix::io::Errno::INTR) => continue,
                Err(rustix::io::Errno::AGAIN) if !wait => return Ok(None),
                Err(rustix::io::Errno::AGAIN) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no answer from the kernel",
                    ))
                }
                Err(e) => return Err(e.into()),
            };
            let from_kernel = from
                .and_then(|a| SocketAddrNetlink::try_from(a).ok())
                .is_some_and(|a| a.pid() == 0);
            if from_kernel {
                return Ok(Some(buf));
            }
        }
    }

    /// Sends the request `req` and hands each message of its answer to `each`,
    /// up to the ack or, for a dump, up to NLMSG_DONE. Answers to earlier
    /// requests are skipped. Returns whether the kernel flagged the dump as
    /// interrupted by a change (NLM_F_DUMP_INTR), or its refusal.
    pub fn call(
        &self,
        req: &[u8],
        each: &mut dyn FnMut(&Msg<'_>),
    ) -> io::Result<Result<bool, Refusal>> {
        let seq = messages(req).next().map(|m| m.seq).unwrap_or_default();
        self.send(req)?;
        let mut buf = Vec::new();
        let mut interrupted = false;
        loop {
            let datagram = self.recv(&mut buf, true)?.unwrap_or_default();
            for m in messages(datagram).filter(|m| m.seq == seq) {
                interrupted |= m.flags & NLM_F_DUMP_INTR != 0;
                let errno = match m.ty {
                    NLMSG_ERROR => error_code(m.payload)?,
                    // A dump's DONE carries its status, negated like an error's.
                    NLMSG_DONE => error_code(m.payload).unwrap_or(0),
                    _ => {
                        each(&m);
                        continue;
                    }
                };
                if errno != 0 {
                    let reason = (m.ty == NLMSG_ERROR).then(|| ext_ack_reason(&m)).flatten();
                    return Ok(Err(Refusal { errno, reason }));
                }
                return Ok(Ok(interrupted));
            }
        }
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A request the kernel refused: its errno, and its explanation when the
/// socket asked for one (NETLINK_EXT_ACK) and the kernel gave one.
#[derive(Debug)]
pub struct Refusal {
    pub errno: i32,
    pub reason: Option<String>,
}

// ---- Encoding ----------------------------------------------------------

/// Netlink messages and attributes appended to one buffer (host byte order
/// for headers and lengths, as netlink wants; values as each attribute wants).
pub struct Enc {
    buf: Vec<u8>,
    msg_start: usize,
    nests: Vec<usize>,
}

impl Enc {
    pub fn new() -> Enc {
        Enc {
            buf: Vec::with_capacity(2048),
            msg_start: 0,
            nests: Vec::new(),
        }
    }

    /// Starts a message with its nlmsghdr; the length is filled in by `end`,
    /// the port is left to the kernel. The family's own header follows with
    /// `put`.
    pub fn begin(&mut self, ty: u16, flags: u16, seq: u32) {
        self.msg_start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes());
    }

    pub fn end(&mut self) {
        debug_assert!(self.nests.is_empty());
        let len = (self.buf.len() - self.msg_start) as u32;
        self.buf[self.msg_start..self.msg_start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// Bytes as they are: a fixed header, whose size netlink keeps a multiple
    /// of 4, so nothing is padded.
    pub fn put(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub fn attr(&mut self, ty: u16, data: &[u8]) {
        self.buf
            .extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    /// A NUL-terminated string.
    pub fn str(&mut self, ty: u16, s: &str) {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.attr(ty, &v);
    }

    pub fn u32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_ne_bytes());
    }

    pub fn be32(&mut self, ty: u16, v: u32) {
        self.attr(ty, &v.to_be_bytes());
    }

    /// Opens a nested attribute: what follows up to `end_nest` is inside it.
    /// Flagged NLA_F_NESTED, which the kernel's strict validation wants and
    /// systemd-nspawn sets in its link messages and nf_tables batches alike.
    pub fn nest(&mut self, ty: u16) {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf
            .extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
    }

    pub fn end_nest(&mut self) {
        let start = self.nests.pop().expect("unbalanced nest");
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    }

    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

// ---- Decoding ----------------------------------------------------------

/// One message of a datagram; `payload` is what follows its nlmsghdr.
pub struct Msg<'a> {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub payload: &'a [u8],
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A u32 value in host byte order (an attribute's or a header field's).
pub fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?))
}

/// A string value, up to its NUL.
pub fn str_of(v: &[u8]) -> String {
    let s = v.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(s).into_owned()
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The netlink messages in a buffer; a truncated tail ends the walk.
pub fn messages(buf: &[u8]) -> impl Iterator<Item = Msg<'_>> {
    let mut off = 0;
    std::iter::from_fn(move || {
        if buf.len() < off + NLMSG_HDRLEN {
            return None;
        }
        let len = u32_at(buf, off) as usize;
        if len < NLMSG_HDRLEN || buf.len() < off + len {
            return None;
        }
        let m = Msg {
            ty: u16_at(buf, off + 4),
            flags: u16_at(buf, off + 6),
            seq: u32_at(buf, off + 8),
            payload: &buf[off + NLMSG_HDRLEN..off + len],
        };
        off += align4(len);
        Some(m)
    })
}

/// The attributes in a buffer, as (type without flags, value); a truncated
/// tail ends the walk.
pub fn attrs(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        if buf.len() < off + 4 {
            return None;
        }
        let len = u16_at(buf, off) as usize;
        if len < 4 || buf.len() < off + len {
            return None;
        }
        let a = (
            u16_at(buf, off + 2) & NLA_TYPE_MASK,
            &buf[off + 4..off + len],
        );
        off += align4(len);
        Some(a)
    })
}

/// The first attribute of type `ty`.
pub fn attr(buf: &[u8], ty: u16) -> Option<&[u8]> {
    attrs(buf).find(|&(t, _)| t == ty).map(|(_, v)| v)
}

/// The errno of an NLMSG_ERROR (0 for an ack) from its payload.
pub fn error_code(payload: &[u8]) -> io::Result<i32> {
    let b = payload
        .get(..4)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADMSG))?;
    Ok(-i32::from_ne_bytes(b.try_into().unwrap()))
}

/// NLMSGERR_ATTR_MSG of an extended ack: the attributes follow the error code
/// and the echoed request (its header only, when capped).
fn ext_ack_reason(m: &Msg<'_>) -> Option<String> {
    if m.flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed = if m.flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        u32_of(m.payload.get(4..)?)? as usize
    };
    let tlvs = m.payload.get(4 + align4(echoed)..)?;
    attr(tlvs, NLMSGERR_ATTR_MSG).map(str_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_attributes_round_trip_with_padding_and_nests() {
        let mut e = Enc::new();
        e.begin(100, NLM_F_REQUEST, 7);
        e.put(&[1, 2, 3, 4]);
        e.str(1, "abcde");
        e.nest(2);
        e.u32(3, 0xdead_beef);
        e.end_nest();
        e.end();
        e.begin(101, 0, 8);
        e.end();
        let b = e.into_bytes();
        assert_eq!(b.len() % 4, 0);

        let ms: Vec<Msg> = messages(&b).collect();
        assert_eq!(ms.len(), 2);
        assert_eq!((ms[0].ty, ms[0].flags, ms[0].seq), (100, NLM_F_REQUEST, 7));
        assert_eq!((ms[1].ty, ms[1].seq, ms[1].payload.len()), (101, 8, 0));
        assert_eq!(&ms[0].payload[..4], [1, 2, 3, 4]);
        let a: Vec<(u16, &[u8])> = attrs(&ms[0].payload[4..]).collect();
        assert_eq!(a.len(), 2);
        assert_eq!(str_of(a[0].1), "abcde");
        assert_eq!(a[0].1.len(), 6, "the NUL, not the padding");
        assert_eq!(a[1].0, 2, "the nest flag is masked");
        assert_eq!(u32_of(attr(a[1].1, 3).unwrap()), Some(0xdead_beef));
        // The nest's own header says it is one.
        let nest_hdr = 4 + align4(4 + 6);
        assert_ne!(u16_at(ms[0].payload, nest_hdr + 2) & NLA_F_NESTED, 0);
    }

    #[test]
    fn truncated_tails_end_the_walks() {
        let mut e = Enc::new();
        e.begin(100, 0, 1);
        e.u32(1, 5);
        e.end();
        let b = e.into_bytes();
        assert_eq!(messages(&b[..b.len() - 1]).count(), 0);
        assert_eq!(messages(&b[..10]).count(), 0);
        let payload = &b[NLMSG_HDRLEN..];
        assert_eq!(attrs(&payload[..7]).count(), 0);
        assert_eq!(attrs(&[0, 0, 1, 0]).count(), 0, "a length below 4");
    }

    /// An NLMSG_ERROR as the kernel sends it: code, echoed request (header
    /// only when capped), then NLMSGERR_ATTR_MSG.
    fn error_msg(flags: u16, capped: bool, text: &str) -> Vec<u8> {
        let mut req = Enc::new();
        req.begin(16, NLM_F_REQUEST | NLM_F_ACK, 9);
        req.str(3, "iv-x");
        req.end();
        let req = req.into_bytes();
        let mut e = Enc::new();
        e.begin(NLMSG_ERROR, flags, 9);
        e.put(&(-libc::EOPNOTSUPP).to_ne_bytes());
        e.put(if capped { &req[..NLMSG_HDRLEN] } else { &req });
        e.str(NLMSGERR_ATTR_MSG, text);
        e.end();
        e.into_bytes()
    }

    #[test]
    fn the_kernels_reason_is_read_from_capped_and_full_acks() {
        for capped in [true, false] {
            let flags = NLM_F_ACK_TLVS | if capped { NLM_F_CAPPED } else { 0 };
            let b = error_msg(flags, capped, "Unknown device type");
            let m = messages(&b).next().unwrap();
            assert_eq!(error_code(m.payload).unwrap(), libc::EOPNOTSUPP);
            assert_eq!(
                ext_ack_reason(&m).as_deref(),
                Some("Unknown device type"),
                "capped: {capped}"
            );
        }
        let b = error_msg(NLM_F_CAPPED, true, "not flagged as there");
        assert_eq!(ext_ack_reason(&messages(&b).next().unwrap()), None);
    }

    #[test]
    fn errors_are_negated_errnos() {
        assert_eq!(
            error_code(&(-libc::EEXIST).to_ne_bytes()).unwrap(),
            libc::EEXIST
        );
        assert_eq!(error_code(&0i32.to_ne_bytes()).unwrap(), 0);
        assert!(error_code(&[0, 0]).is_err());
    }
}
