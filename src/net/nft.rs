//! Port forwarding (`-p/--port`) without the `nft` binary: a small nfnetlink
//! (NETLINK_NETFILTER) batch encoder for exactly the objects systemd-nspawn and
//! networkd keep in the table `io.systemd.nat` (systemd's
//! src/shared/firewall-util-nft.c), one table per family (`ip`, `ip6`), in the
//! network namespace of the thread that opens the socket.
//!
//! The messages match what systemd-nspawn 252 sends byte for byte (the unit
//! tests compare them with a capture of its batches), so the table nixrun makes
//! is the one nspawn or networkd would find and reuse, and the reverse: whoever
//! comes first creates it, the others only add and remove map elements.
//!
//! What a batch looks like on the wire: `BATCH_BEGIN`, the nf_tables messages,
//! `BATCH_END`, in one datagram. The kernel applies it whole or not at all and
//! answers each message asking for an ACK before `sendto` returns, so the
//! replies are read right after it. Dumps (`ports`) are plain request/reply.
//!
//! Written by hand because no crate fits: `nftnl` links the C libnftnl,
//! `nftables` drives the nft binary's JSON, and `rustables` is GPL-3.0.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use super::netlink::{
    attr, attrs, error_code, messages, Enc, Socket, NLMSG_ERROR, NLM_F_ACK, NLM_F_CREATE,
    NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};

const TABLE: &str = "io.systemd.nat";
const DNAT_MAP: &str = "map_port_ipport";
const MASQ_SET: &str = "masq_saddr";

// <linux/netfilter/nfnetlink.h>
const NFGENMSG_LEN: usize = 4;
const NFNETLINK_V0: u8 = 0;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;

// <linux/netfilter/nf_tables.h>: messages
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFT_MSG_NEWSET: u16 = 9;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_GETSETELEM: u16 = 13;
const NFT_MSG_DELSETELEM: u16 = 14;

// ... and their attributes
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_SET_TABLE: u16 = 1;
const NFTA_SET_NAME: u16 = 2;
const NFTA_SET_FLAGS: u16 = 3;
const NFTA_SET_KEY_TYPE: u16 = 4;
const NFTA_SET_KEY_LEN: u16 = 5;
const NFTA_SET_DATA_TYPE: u16 = 6;
const NFTA_SET_DATA_LEN: u16 = 7;
const NFTA_SET_ID: u16 = 10;
const NFT_SET_INTERVAL: u32 = 0x4;
const NFT_SET_MAP: u32 = 0x8;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;

// ... and the expressions'
const NFTA_FIB_DREG: u16 = 1;
const NFTA_FIB_RESULT: u16 = 2;
const NFTA_FIB_FLAGS: u16 = 3;
const NFTA_FIB_F_DADDR: u32 = 2;
const NFT_FIB_RESULT_ADDRTYPE: u32 = 3;
const NFTA_META_DREG: u16 = 1;
const NFTA_META_KEY: u16 = 2;
const NFT_META_OIF: u32 = 5;
const NFT_META_L4PROTO: u32 = 16;
const NFTA_PAYLOAD_DREG: u16 = 1;
const NFTA_PAYLOAD_BASE: u16 = 2;
const NFTA_PAYLOAD_OFFSET: u16 = 3;
const NFTA_PAYLOAD_LEN: u16 = 4;
const NFT_PAYLOAD_NETWORK_HEADER: u32 = 1;
const NFT_PAYLOAD_TRANSPORT_HEADER: u32 = 2;
const NFTA_LOOKUP_SET: u16 = 1;
const NFTA_LOOKUP_SREG: u16 = 2;
const NFTA_LOOKUP_DREG: u16 = 3;
const NFTA_CMP_SREG: u16 = 1;
const NFTA_CMP_OP: u16 = 2;
const NFTA_CMP_DATA: u16 = 3;
const NFT_CMP_EQ: u32 = 0;
const NFT_CMP_NEQ: u32 = 1;
const NFTA_BITWISE_SREG: u16 = 1;
const NFTA_BITWISE_DREG: u16 = 2;
const NFTA_BITWISE_LEN: u16 = 3;
const NFTA_BITWISE_MASK: u16 = 4;
const NFTA_BITWISE_XOR: u16 = 5;
const NFTA_NAT_TYPE: u16 = 1;
const NFTA_NAT_FAMILY: u16 = 2;
const NFTA_NAT_REG_ADDR_MIN: u16 = 3;
const NFTA_NAT_REG_PROTO_MIN: u16 = 5;
const NFT_NAT_DNAT: u32 = 1;

// 32-bit registers; systemd leaves NFT_REG32_00 (8) unused.
const REG1: u32 = 9;
const REG2: u32 = 10;
const REG5: u32 = 13;

// Hooks and priorities: NF_INET_*, NF_IP_PRI_NAT_DST + 1, NF_IP_PRI_NAT_SRC + 1.
const HOOK_PREROUTING: u32 = 0;
const HOOK_OUTPUT: u32 = 3;
const HOOK_POSTROUTING: u32 = 4;
const PRIO_DSTNAT_1: i32 = -99;
const PRIO_SRCNAT_1: i32 = 101;

// nft's own data type numbers, so `nft list` can print the keys: part of its
// ABI. A concatenation is the types shifted by 6 bits each.
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_INET_PROTOCOL: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_BITS: u32 = 6;

const RTN_LOCAL: u32 = 2;
const LOOPBACK_IFINDEX: u32 = 1;

/// How long to wait for a reply the kernel should already have queued.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// A transport protocol a port can be forwarded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// "tcp" or "udp", as in nspawn's `-p PROTO:HOST:CONTAINER` (also `FromStr`).
    pub fn parse(s: &str) -> Option<Proto> {
        match s {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            _ => None,
        }
    }

    /// The IP protocol number (what `meta l4proto` loads).
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    fn from_number(n: u8) -> Option<Proto> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }

    /// The name nspawn's `-p` uses.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl FromStr for Proto {
    type Err = String;
    /// Parses "tcp" or "udp", as in nspawn's `-p PROTO:HOST:CONTAINER`.
    fn from_str(s: &str) -> Result<Proto, String> {
        Proto::parse(s).ok_or_else(|| format!("unknown protocol {s:?} (tcp or udp)"))
    }
}

/// The two tables: `ip io.systemd.nat` and `ip6 io.systemd.nat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    Ip,
    Ip6,
}

impl Family {
    /// The table an address's forwardings go to.
    pub fn of(addr: &IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ip,
            IpAddr::V6(_) => Family::Ip6,
        }
    }

    /// NFPROTO_IPV4 / NFPROTO_IPV6, which are AF_INET / AF_INET6.
    fn nfproto(self) -> u8 {
        match self {
            Family::Ip => 2,
            Family::Ip6 => 10,
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn addr_len(self) -> usize {
        match self {
            Family::Ip => 4,
            Family::Ip6 => 16,
        }
    }
}

/// One map element: `proto . host_port : addr . port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Forward {
    pub proto: Proto,
    pub host_port: u16,
    pub addr: IpAddr,
    pub port: u16,
}

/// A NETLINK_NETFILTER socket, and which families' tables it has made sure of.
pub struct Nat {
    sock: Socket,
    seq: u32,
    table_ready: [bool; 2],
}

impl Nat {
    /// Opens the socket in the calling thread's network namespace (the one its
    /// rules will act in); nothing is sent yet.
    pub fn open() -> io::Result<Nat> {
        let sock = Socket::open(Some(rustix::net::netlink::NETFILTER), 0)?;
        rustix::net::sockopt::set_socket_timeout(
            &sock,
            rustix::net::sockopt::Timeout::Recv,
            Some(REPLY_TIMEOUT),
        )?;
        // Replies come to this socket only, so any start would do; the time
        // (as libmnl users take) keeps runs apart in a trace.
        let seq = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        Ok(Nat {
            sock,
            seq,
            table_ready: [false; 2],
        })
    }

    /// Forwards `proto` `host_port` on this namespace's local addresses to
    /// `addr`:`port`, creating the family's table first if there is none. An
    /// element with the same key (e.g. left by a killed run) is replaced.
    pub fn add_port(
        &mut self,
        proto: Proto,
        host_port: u16,
        addr: IpAddr,
        port: u16,
    ) -> io::Result<()> {
        let fwd = check(proto, host_port, addr, port)?;
        let family = Family::of(&addr);
        if !self.table_ready[family.index()] {
            self.ensure_table(family)?;
        }
        match self.put_element(&fwd) {
            // `nft flush ruleset` took the table away: make it again, once.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                self.ensure_table(family)?;
                self.put_element(&fwd)
            }
            r => r,
        }
    }

    /// Removes the forwarding `add_port` made, if the host port still maps to
    /// `addr`:`port` (another run may have taken it over since); one that is
    /// gone already is no error.
    pub fn del_port(
        &mut self,
        proto: Proto,
        host_port: u16,
        addr: IpAddr,
        port: u16,
    ) -> io::Result<()> {
        let fwd = check(proto, host_port, addr, port)?;
        let ours = self.ports(Family::of(&addr))?.into_iter().any(|f| f == fwd);
        if !ours {
            return Ok(());
        }
        match self.transact(|seq| elements_batch(seq, &[(Op::Del, fwd)])) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r,
        }
    }

    /// The family's map elements (TCP and UDP ones; empty without the table).
    pub fn ports(&mut self, family: Family) -> io::Result<Vec<Forward>> {
        // A dump that overlapped a change is flagged; ask again then.
        for _ in 0..3 {
            let seq = self.seq;
            self.seq = seq.wrapping_add(1);
            let request = dump_elements_request(seq, family);
            match self.dump(&request) {
                Ok((elems, false)) => {
                    return Ok(elems
                        .iter()
                        .filter_map(|(k, d)| parse_element(family, k, d))
                        .collect())
                }
                Ok((_, true)) => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::from_raw_os_error(libc::EINTR))
    }

    /// Creates the family's table with its chains, set, map and rules, as
    /// systemd does: all in one batch whose table message fails with EEXIST if
    /// the table is there, in which case the rest is taken to be there too.
    pub fn ensure_table(&mut self, family: Family) -> io::Result<()> {
        match self.transact(|seq| table_batch(seq, family)) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) => return Err(e),
        }
        self.table_ready[family.index()] = true;
        Ok(())
    }

    fn put_element(&mut self, fwd: &Forward) -> io::Result<()> {
        let r = match self.transact(|seq| elements_batch(seq, &[(Op::Add, *fwd)])) {
            // The kernel refuses an element whose key is there with other
            // data; it ignores the data on delete, so one batch swaps them.
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.transact(|seq| elements_batch(seq, &[(Op::Del, *fwd), (Op::Add, *fwd)]))
            }
            r => r,
        };
        match r {
            // Kernels before 5.8 cannot DNAT to an IPv6 address and port from
            // registers (systemd treats this the same way).
            Err(e)
                if e.raw_os_error() == Some(libc::EOVERFLOW)
                    && Family::of(&fwd.addr) == Family::Ip6 =>
            {
                Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP))
            }
            r => r,
        }
    }

    /// Sends the batch `build` makes from the next sequence number and
    /// collects the kernel's verdict: the first error of the batch itself,
    /// else of its messages in order.
    fn transact(&mut self, build: impl FnOnce(u32) -> Vec<u8>) -> io::Result<()> {
        let batch = build(self.seq);
        let seqs: Vec<u32> = messages(&batch).map(|m| m.seq).collect();
        let (Some(&begin), Some(&end)) = (seqs.first(), seqs.last()) else {
            return Ok(());
        };
        self.seq = end.wrapping_add(1);
        let inner = &seqs[1..seqs.len() - 1];
        let mut answers: Vec<Option<i32>> = vec![None; inner.len()];
        let mut batch_error = None;
        self.sock.send(&batch)?;
        let mut buf = Vec::new();
        let mut settled = false;
        loop {
            // Everything is queued by the time sendto returns: once each
            // message has its answer, what is left is read without waiting,
            // which catches a commit failure reported against BATCH_BEGIN.
            settled |= batch_error.is_some() || answers.iter().all(Option::is_some);
            let Some(datagram) = self.sock.recv(&mut buf, !settled)? else {
                break;
            };
            for m in messages(datagram) {
                if m.ty != NLMSG_ERROR {
                    continue;
                }
                let err = error_code(m.payload)?;
                if m.seq == begin || m.seq == end {
                    if err != 0 {
                        batch_error.get_or_insert(err);
                    }
                } else if let Some(i) = inner.iter().position(|&s| s == m.seq) {
                    answers[i] = Some(err);
                }
            }
        }
        let first = batch_error.or_else(|| answers.iter().flatten().copied().find(|&e| e != 0));
        match first {
            Some(e) => Err(io::Error::from_raw_os_error(e)),
            None => Ok(()),
        }
    }

    /// Runs one dump; returns the elements' (key, data) values and whether the
    /// kernel flagged the dump as interrupted by a change.
    #[allow(clippy::type_complexity)]
    fn dump(&mut self, request: &[u8]) -> io::Result<(Vec<(Vec<u8>, Vec<u8>)>, bool)> {
        let mut elems = Vec::new();
        let answer = self.sock.call(request, &mut |m| {
            if m.ty == nft_type(NFT_MSG_NEWSETELEM) {
                collect_elements(m.payload, &mut elems)
            }
        })?;
        match answer {
            Ok(interrupted) => Ok((elems, interrupted)),
            Err(refusal) => Err(io::Error::from_raw_os_error(refusal.errno)),
        }
    }
}

fn check(proto: Proto, host_port: u16, addr: IpAddr, port: u16) -> io::Result<Forward> {
    if host_port == 0 || port == 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(Forward {
        proto,
        host_port,
        addr,
        port,
    })
}

// ---- Encoding ----------------------------------------------------------

// nf_tables' pieces, on the netlink encoder both netlink users share.
impl Enc {
    /// nlmsghdr + nfgenmsg.
    fn nfmsg(&mut self, ty: u16, flags: u16, seq: u32, nfproto: u8, res_id: u16) {
        self.begin(ty, flags, seq);
        self.put(&[nfproto, NFNETLINK_V0]);
        self.put(&res_id.to_be_bytes());
    }

    /// `{ NFTA_DATA_VALUE: value }` under `ty`.
    fn data(&mut self, ty: u16, value: &[u8]) {
        self.nest(ty);
        self.attr(NFTA_DATA_VALUE, value);
        self.end_nest();
    }

    /// One expression of a rule: `{ NAME, DATA { body } }`.
    fn expr(&mut self, name: &str, body: impl FnOnce(&mut Enc)) {
        self.nest(NFTA_LIST_ELEM);
        self.str(NFTA_EXPR_NAME, name);
        self.nest(NFTA_EXPR_DATA);
        body(self);
        self.end_nest();
        self.end_nest();
    }

    // The expressions, attributes in systemd's order.

    fn fib_daddr_type(&mut self, dreg: u32) {
        self.expr("fib", |e| {
            e.be32(NFTA_FIB_FLAGS, NFTA_FIB_F_DADDR);
            e.be32(NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
            e.be32(NFTA_FIB_DREG, dreg);
        });
    }

    fn cmp(&mut self, op: u32, sreg: u32, value: &[u8]) {
        self.expr("cmp", |e| {
            e.be32(NFTA_CMP_OP, op);
            e.be32(NFTA_CMP_SREG, sreg);
            e.data(NFTA_CMP_DATA, value);
        });
    }

    fn meta(&mut self, key: u32, dreg: u32) {
        self.expr("meta", |e| {
            e.be32(NFTA_META_KEY, key);
            e.be32(NFTA_META_DREG, dreg);
        });
    }

    fn payload(&mut self, base: u32, offset: u32, len: u32, dreg: u32) {
        self.expr("payload", |e| {
            e.be32(NFTA_PAYLOAD_DREG, dreg);
            e.be32(NFTA_PAYLOAD_BASE, base);
            e.be32(NFTA_PAYLOAD_OFFSET, offset);
            e.be32(NFTA_PAYLOAD_LEN, len);
        });
    }

    fn lookup(&mut self, set: &str, sreg: u32, dreg: Option<u32>) {
        self.expr("lookup", |e| {
            e.str(NFTA_LOOKUP_SET, set);
            e.be32(NFTA_LOOKUP_SREG, sreg);
            if let Some(d) = dreg {
                e.be32(NFTA_LOOKUP_DREG, d);
            }
        });
    }

    fn bitwise(&mut self, sreg: u32, dreg: u32, mask: &[u8], xor: &[u8]) {
        self.expr("bitwise", |e| {
            e.be32(NFTA_BITWISE_SREG, sreg);
            e.be32(NFTA_BITWISE_DREG, dreg);
            e.be32(NFTA_BITWISE_LEN, mask.len() as u32);
            e.data(NFTA_BITWISE_MASK, mask);
            e.data(NFTA_BITWISE_XOR, xor);
        });
    }

    fn dnat(&mut self, family: Family, areg: u32, preg: u32) {
        self.expr("nat", |e| {
            e.be32(NFTA_NAT_TYPE, NFT_NAT_DNAT);
            e.be32(NFTA_NAT_FAMILY, family.nfproto() as u32);
            e.be32(NFTA_NAT_REG_ADDR_MIN, areg);
            e.be32(NFTA_NAT_REG_PROTO_MIN, preg);
        });
    }

    /// `masq` takes no attributes, and systemd sends it without a DATA nest.
    fn masq(&mut self) {
        self.nest(NFTA_LIST_ELEM);
        self.str(NFTA_EXPR_NAME, "masq");
        self.end_nest();
    }

    /// `meta l4proto . th dport` looked up in the map, the result DNATed to:
    /// the tail of both DNAT rules. The looked-up data lands in REG1 on: the
    /// address, then the port (REG2 after an IPv4 address, REG5 after IPv6).
    fn dnat_via_map(&mut self, family: Family) {
        self.meta(NFT_META_L4PROTO, REG1);
        self.payload(NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2, REG2);
        self.lookup(DNAT_MAP, REG1, Some(REG1));
        let port_reg = match family {
            Family::Ip => REG2,
            Family::Ip6 => REG5,
        };
        self.dnat(family, REG1, port_reg);
    }
}

fn nft_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_NFTABLES << 8) | msg
}

/// A batch: BATCH_BEGIN (seq `seq0`), what `body` adds (its messages take
/// `seq0 + 1` on, each tagged with the begin's low sequence bits as systemd
/// does), BATCH_END.
fn batch(seq0: u32, body: impl FnOnce(&mut BatchEnc)) -> Vec<u8> {
    let mut b = BatchEnc {
        enc: Enc::new(),
        seq: seq0,
        res_id: seq0 as u16,
    };
    b.enc.nfmsg(
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST | NLM_F_ACK,
        seq0,
        0,
        NFNL_SUBSYS_NFTABLES,
    );
    b.enc.end();
    body(&mut b);
    b.seq = b.seq.wrapping_add(1);
    b.enc.nfmsg(
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST | NLM_F_ACK,
        b.seq,
        0,
        NFNL_SUBSYS_NFTABLES,
    );
    b.enc.end();
    b.enc.into_bytes()
}

struct BatchEnc {
    enc: Enc,
    seq: u32,
    res_id: u16,
}

impl BatchEnc {
    fn msg(&mut self, msg: u16, flags: u16, family: Family, body: impl FnOnce(&mut Enc)) {
        self.seq = self.seq.wrapping_add(1);
        self.enc.nfmsg(
            nft_type(msg),
            NLM_F_REQUEST | NLM_F_ACK | flags,
            self.seq,
            family.nfproto(),
            self.res_id,
        );
        body(&mut self.enc);
        self.enc.end();
    }

    fn chain(&mut self, family: Family, name: &str, hook: u32, prio: i32) {
        self.msg(NFT_MSG_NEWCHAIN, NLM_F_CREATE, family, |e| {
            e.str(NFTA_CHAIN_TABLE, TABLE);
            e.str(NFTA_CHAIN_NAME, name);
            e.str(NFTA_CHAIN_TYPE, "nat");
            e.nest(NFTA_CHAIN_HOOK);
            e.be32(NFTA_HOOK_HOOKNUM, hook);
            e.be32(NFTA_HOOK_PRIORITY, prio as u32);
            e.end_nest();
        });
    }

    /// A set (or, with `data`, a map). `id` only names it within the batch;
    /// systemd's are 2 and 3, in host order.
    fn set(
        &mut self,
        family: Family,
        name: &str,
        id: u32,
        flags: u32,
        key: (u32, u32),
        data: Option<(u32, u32)>,
    ) {
        self.msg(NFT_MSG_NEWSET, NLM_F_CREATE, family, |e| {
            e.str(NFTA_SET_TABLE, TABLE);
            e.str(NFTA_SET_NAME, name);
            e.attr(NFTA_SET_ID, &id.to_ne_bytes());
            e.be32(NFTA_SET_KEY_LEN, key.1);
            e.be32(NFTA_SET_FLAGS, flags);
            e.be32(NFTA_SET_KEY_TYPE, key.0);
            if let Some((ty, len)) = data {
                e.be32(NFTA_SET_DATA_TYPE, ty);
                e.be32(NFTA_SET_DATA_LEN, len);
            }
        });
    }

    fn rule(&mut self, family: Family, chain: &str, exprs: impl FnOnce(&mut Enc)) {
        self.msg(NFT_MSG_NEWRULE, NLM_F_CREATE, family, |e| {
            e.str(NFTA_RULE_TABLE, TABLE);
            e.str(NFTA_RULE_CHAIN, chain);
            e.nest(NFTA_RULE_EXPRESSIONS);
            exprs(e);
            e.end_nest();
        });
    }
}

/// The batch that creates a family's table and everything in it: 11 messages
/// from `seq0` on (systemd's `fw_nftables_init_family`).
fn table_batch(seq0: u32, family: Family) -> Vec<u8> {
    let (addr_type, addr_len) = match family {
        Family::Ip => (TYPE_IPADDR, 4),
        Family::Ip6 => (TYPE_IP6ADDR, 16),
    };
    batch(seq0, |b| {
        b.msg(NFT_MSG_NEWTABLE, NLM_F_CREATE | NLM_F_EXCL, family, |e| {
            e.str(NFTA_TABLE_NAME, TABLE)
        });
        b.chain(family, "prerouting", HOOK_PREROUTING, PRIO_DSTNAT_1);
        b.chain(family, "output", HOOK_OUTPUT, PRIO_DSTNAT_1);
        b.chain(family, "postrouting", HOOK_POSTROUTING, PRIO_SRCNAT_1);
        b.set(
            family,
            MASQ_SET,
            2,
            NFT_SET_INTERVAL,
            (addr_type, addr_len),
            None,
        );
        // Each part of a concatenation takes whole 4-byte registers.
        b.set(
            family,
            DNAT_MAP,
            3,
            NFT_SET_MAP,
            (TYPE_INET_PROTOCOL << TYPE_BITS | TYPE_INET_SERVICE, 8),
            Some((addr_type << TYPE_BITS | TYPE_INET_SERVICE, addr_len + 4)),
        );
        b.rule(family, "prerouting", |e| {
            e.fib_daddr_type(REG1);
            // fib stores the type as a host-order u32.
            e.cmp(NFT_CMP_EQ, REG1, &RTN_LOCAL.to_ne_bytes());
            e.dnat_via_map(family);
        });
        b.rule(family, "output", |e| {
            // Connections to loopback are not forwarded (nspawn's choice:
            // they would need route_localnet and more).
            match family {
                Family::Ip => {
                    e.payload(NFT_PAYLOAD_NETWORK_HEADER, 16, 4, REG1);
                    e.bitwise(REG1, REG1, &[0xff, 0, 0, 0], &[0; 4]);
                    e.cmp(NFT_CMP_NEQ, REG1, &[127, 0, 0, 0]);
                }
                Family::Ip6 => {
                    e.payload(NFT_PAYLOAD_NETWORK_HEADER, 24, 16, REG1);
                    e.cmp(NFT_CMP_NEQ, REG1, &Ipv6Addr::LOCALHOST.octets());
                }
            }
            // A locally generated packet to a local address goes out on lo.
            e.meta(NFT_META_OIF, REG1);
            e.cmp(NFT_CMP_EQ, REG1, &LOOPBACK_IFINDEX.to_ne_bytes());
            e.dnat_via_map(family);
        });
        b.rule(family, "postrouting", |e| {
            let saddr_offset = match family {
                Family::Ip => 12,
                Family::Ip6 => 8,
            };
            e.payload(NFT_PAYLOAD_NETWORK_HEADER, saddr_offset, addr_len, REG1);
            e.lookup(MASQ_SET, REG1, None);
            e.masq();
        });
    })
}

#[derive(Clone, Copy)]
enum Op {
    Add,
    Del,
}

/// The map key `proto . host_port`: each part in its own 4-byte slot, the
/// port in network order at the start of its slot (as the registers hold
/// `meta l4proto` and `th dport`).
fn element_key(fwd: &Forward) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[0] = fwd.proto.number();
    k[4..6].copy_from_slice(&fwd.host_port.to_be_bytes());
    k
}

/// The map data `addr . port`: 8 bytes for IPv4, 20 for IPv6.
fn element_data(fwd: &Forward) -> Vec<u8> {
    let mut d = match fwd.addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    d.extend_from_slice(&fwd.port.to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d
}

/// A batch adding or deleting map elements, one message each (all of one
/// family, the first's).
fn elements_batch(seq0: u32, ops: &[(Op, Forward)]) -> Vec<u8> {
    batch(seq0, |b| {
        for (op, fwd) in ops {
            let (msg, flags) = match op {
                Op::Add => (NFT_MSG_NEWSETELEM, NLM_F_CREATE),
                Op::Del => (NFT_MSG_DELSETELEM, 0),
            };
            b.msg(msg, flags, Family::of(&fwd.addr), |e| {
                e.str(NFTA_SET_ELEM_LIST_TABLE, TABLE);
                e.str(NFTA_SET_ELEM_LIST_SET, DNAT_MAP);
                e.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
                // systemd numbers the elements of a list from 0; the kernel
                // does not look at the type.
                e.nest(0);
                e.data(NFTA_SET_ELEM_KEY, &element_key(fwd));
                e.data(NFTA_SET_ELEM_DATA, &element_data(fwd));
                e.end_nest();
                e.end_nest();
            });
        }
    })
}

fn dump_elements_request(seq: u32, family: Family) -> Vec<u8> {
    let mut e = Enc::new();
    e.nfmsg(
        nft_type(NFT_MSG_GETSETELEM),
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        family.nfproto(),
        0,
    );
    e.str(NFTA_SET_ELEM_LIST_TABLE, TABLE);
    e.str(NFTA_SET_ELEM_LIST_SET, DNAT_MAP);
    e.end();
    e.into_bytes()
}

// ---- Decoding ----------------------------------------------------------

/// The (key, data) values of a NEWSETELEM message's elements.
fn collect_elements(payload: &[u8], out: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    let Some(list) = payload
        .get(NFGENMSG_LEN..)
        .and_then(|a| attr(a, NFTA_SET_ELEM_LIST_ELEMENTS))
    else {
        return;
    };
    for (_, elem) in attrs(list) {
        let value = |ty| attr(elem, ty).and_then(|n| attr(n, NFTA_DATA_VALUE));
        if let (Some(k), Some(d)) = (value(NFTA_SET_ELEM_KEY), value(NFTA_SET_ELEM_DATA)) {
            out.push((k.to_vec(), d.to_vec()));
        }
    }
}

/// A map element as a forwarding (None for a protocol or shape nixrun does not make).
fn parse_element(family: Family, key: &[u8], data: &[u8]) -> Option<Forward> {
    let alen = family.addr_len();
    if key.len() != 8 || data.len() != alen + 4 {
        return None;
    }
    let addr = match family {
        Family::Ip => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&data[..4]).ok()?)),
        Family::Ip6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&data[..16]).ok()?)),
    };
    Some(Forward {
        proto: Proto::from_number(key[0])?,
        host_port: u16::from_be_bytes([key[4], key[5]]),
        addr,
        port: u16::from_be_bytes([data[alen], data[alen + 1]]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The datagrams systemd-nspawn 252 sent on its NETLINK_NETFILTER socket
    /// for `-n -p tcp:8080:80` once its container had 10.99.0.2 (strace on
    /// x86-64): the ip table, the ip6 table, the element added, and deleted.
    const CAPTURE: &str = include_str!("testdata/nspawn-252-nft.txt");

    fn captured(name: &str) -> Vec<u8> {
        let hex = CAPTURE
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in the capture"));
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The BATCH_BEGIN sequence number of a captured batch.
    fn seq0(b: &[u8]) -> u32 {
        messages(b).next().unwrap().seq
    }

    /// Shows where two batches part, message by message.
    fn assert_same(ours: &[u8], theirs: &[u8]) {
        let a: Vec<_> = messages(ours).map(|m| (m.ty, m.flags, m.payload)).collect();
        let b: Vec<_> = messages(theirs)
            .map(|m| (m.ty, m.flags, m.payload))
            .collect();
        assert_eq!(a.len(), b.len(), "message count");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x, y, "message {i} differs");
        }
        assert_eq!(ours, theirs);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn the_ip_table_is_nspawns_byte_for_byte() {
        let theirs = captured("table-ip");
        assert_same(&table_batch(seq0(&theirs), Family::Ip), &theirs);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn the_ip6_table_is_nspawns_byte_for_byte() {
        let theirs = captured("table-ip6");
        assert_same(&table_batch(seq0(&theirs), Family::Ip6), &theirs);
    }

    fn fwd(proto: Proto, host_port: u16, addr: &str, port: u16) -> Forward {
        Forward {
            proto,
            host_port,
            addr: addr.parse().unwrap(),
            port,
        }
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn elements_are_added_and_deleted_as_nspawn_does() {
        let f = fwd(Proto::Tcp, 8080, "10.99.0.2", 80);
        let add = captured("add-element");
        assert_same(&elements_batch(seq0(&add), &[(Op::Add, f)]), &add);
        let del = captured("del-element");
        assert_same(&elements_batch(seq0(&del), &[(Op::Del, f)]), &del);
    }

    #[test]
    fn element_layouts() {
        let v4 = fwd(Proto::Udp, 53, "192.0.2.7", 5353);
        assert_eq!(element_key(&v4), [17, 0, 0, 0, 0, 53, 0, 0]);
        assert_eq!(element_data(&v4), [192, 0, 2, 7, 0x14, 0xe9, 0, 0]);
        let v6 = fwd(Proto::Tcp, 443, "2001:db8::1", 8443);
        assert_eq!(element_key(&v6), [6, 0, 0, 0, 0x01, 0xbb, 0, 0]);
        let d = element_data(&v6);
        assert_eq!(d.len(), 20);
        assert_eq!(&d[16..], [0x20, 0xfb, 0, 0]);
        for f in [v4, v6] {
            assert_eq!(
                parse_element(Family::of(&f.addr), &element_key(&f), &element_data(&f)),
                Some(f)
            );
        }
        // Someone else's protocol (sctp) is not ours to list.
        let mut k = element_key(&v4);
        k[0] = 132;
        assert_eq!(parse_element(Family::Ip, &k, &element_data(&v4)), None);
    }

    #[test]
    fn a_replacing_batch_deletes_then_adds_in_one_transaction() {
        let f = fwd(Proto::Tcp, 8080, "10.0.0.2", 80);
        let b = elements_batch(100, &[(Op::Del, f), (Op::Add, f)]);
        let msgs: Vec<_> = messages(&b).map(|m| (m.ty, m.flags, m.seq)).collect();
        assert_eq!(
            msgs,
            [
                (NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST | NLM_F_ACK, 100),
                (nft_type(NFT_MSG_DELSETELEM), NLM_F_REQUEST | NLM_F_ACK, 101),
                (
                    nft_type(NFT_MSG_NEWSETELEM),
                    NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE,
                    102
                ),
                (NFNL_MSG_BATCH_END, NLM_F_REQUEST | NLM_F_ACK, 103),
            ]
        );
    }

    #[test]
    fn dump_replies_are_parsed() {
        // A NEWSETELEM as the kernel dumps it: elements under NFTA_LIST_ELEM.
        let f = fwd(Proto::Tcp, 8080, "fd00::2", 80);
        let mut e = Enc::new();
        e.nfmsg(nft_type(NFT_MSG_NEWSETELEM), 2, 7, 10, 0);
        e.str(NFTA_SET_ELEM_LIST_TABLE, TABLE);
        e.str(NFTA_SET_ELEM_LIST_SET, DNAT_MAP);
        e.nest(NFTA_SET_ELEM_LIST_ELEMENTS);
        e.nest(NFTA_LIST_ELEM);
        e.data(NFTA_SET_ELEM_KEY, &element_key(&f));
        e.data(NFTA_SET_ELEM_DATA, &element_data(&f));
        e.end_nest();
        e.end_nest();
        e.end();
        let m = messages(e.bytes()).next().unwrap();
        let mut out = Vec::new();
        collect_elements(m.payload, &mut out);
        let got: Vec<_> = out
            .iter()
            .filter_map(|(k, d)| parse_element(Family::Ip6, k, d))
            .collect();
        assert_eq!(got, [f]);
    }

    #[test]
    fn protocols_parse_as_in_nspawns_port_option() {
        assert_eq!("tcp".parse::<Proto>(), Ok(Proto::Tcp));
        assert_eq!("udp".parse::<Proto>(), Ok(Proto::Udp));
        assert!("TCP".parse::<Proto>().is_err());
        assert!("sctp".parse::<Proto>().is_err());
        assert_eq!(Proto::Udp.name(), "udp");
    }
}
