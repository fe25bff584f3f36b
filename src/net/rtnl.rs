//! A small synchronous rtnetlink client: the link, address and route messages
//! nspawn sends (veth with its peer in the container, bridge, move, macvlan,
//! ipvlan, altname, loopback set-up) plus what NixOS's scripts do with ip(8),
//! each a request answered by an ack or a reply on a blocking socket.
//!
//! Blocking and single-threaded on purpose: the supervisor forks and clones,
//! so it may not run an async runtime's threads (the rtnetlink crate is async
//! only). A netlink socket stays in the network namespace it was created in;
//! `Rtnl::open_in` and `AddrWatch::open_in` use that to act inside a
//! container's namespace without moving the caller.
//!
//! The messages are written and read by hand, on the framing `nft` uses too
//! (`super::netlink`): exactly the requests above, and of the kernel's answers
//! only the attributes nixrun looks at. The supervisor stays resident for its
//! guest's whole life, and a generic codec of every rtnetlink object made up
//! a quarter of its memory once the guest had a network.

use super::netlink::{
    attr, attrs, messages, str_of, u32_of, Enc, Socket, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use super::Mac;
use libc::{
    IFA_ADDRESS, IFA_FLAGS, IFA_F_NODAD, IFA_F_PERMANENT, IFA_LOCAL, IFLA_ADDRESS, IFLA_ALT_IFNAME,
    IFLA_IFNAME, IFLA_INFO_DATA, IFLA_INFO_KIND, IFLA_LINK, IFLA_LINKINFO, IFLA_MASTER,
    IFLA_NET_NS_FD, IFLA_PROP_LIST, RTA_DST, RTA_GATEWAY, RTA_OIF, RTM_DELADDR, RTM_DELLINK,
    RTM_GETADDR, RTM_GETLINK, RTM_NEWADDR, RTM_NEWLINK, RTM_NEWROUTE, RTM_SETLINK, RTN_UNICAST,
    RTPROT_BOOT, RT_SCOPE_HOST, RT_SCOPE_LINK, RT_SCOPE_UNIVERSE, RT_TABLE_MAIN,
};
use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// The loopback device has this index in every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;
/// sizeof(struct ifinfomsg), which starts an RTM_*LINK message.
const IFINFOMSG_LEN: usize = 16;
/// sizeof(struct ifaddrmsg), which starts an RTM_*ADDR message.
const IFADDRMSG_LEN: usize = 8;
/// As ifinfomsg's 32-bit flags hold it (libc's is a c_int).
const IFF_UP: u32 = libc::IFF_UP as u32;
// What libc lacks. <linux/rtnetlink.h>:
const RTM_NEWLINKPROP: u16 = 108;
// <linux/veth.h>:
const VETH_INFO_PEER: u16 = 1;
// <linux/if_link.h>:
const IFLA_MACVLAN_MODE: u16 = 1;
const MACVLAN_MODE_BRIDGE: u32 = 4;
const IFLA_IPVLAN_MODE: u16 = 1;
const IPVLAN_MODE_L2: u16 = 0;

/// A request the kernel (or the socket) refused: the errno, what was being
/// done, and the kernel's own explanation when it gave one (extended ack).
/// Travels inside an `io::Error` of the errno's kind; `errno()` gets it back.
#[derive(Debug)]
pub struct NetlinkError {
    pub errno: i32,
    pub what: String,
    pub kernel_says: Option<String>,
}

impl fmt::Display for NetlinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // libc's wording (nix's desc() calls EOPNOTSUPP "not supported on
        // transport endpoint"), std's " (os error N)" replaced by the name.
        let text = io::Error::from_raw_os_error(self.errno).to_string();
        let text = text.split(" (os error").next().unwrap_or_default();
        write!(
            f,
            "{}: {text} ({:?})",
            self.what,
            Errno::from_raw(self.errno)
        )?;
        if let Some(k) = &self.kernel_says {
            write!(f, ": kernel says \"{k}\"")?;
        }
        Ok(())
    }
}

impl std::error::Error for NetlinkError {}

impl From<NetlinkError> for io::Error {
    fn from(e: NetlinkError) -> io::Error {
        io::Error::new(io::Error::from_raw_os_error(e.errno).kind(), e)
    }
}

/// The errno behind an error of this module (or any OS error).
pub fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error()
        .or_else(|| Some(e.get_ref()?.downcast_ref::<NetlinkError>()?.errno))
}

fn context(e: io::Error, what: &str) -> io::Error {
    match e.raw_os_error() {
        Some(errno) => NetlinkError {
            errno,
            what: what.to_string(),
            kernel_says: None,
        }
        .into(),
        None => io::Error::new(e.kind(), format!("{what}: {e}")),
    }
}

/// Runs `f` with the calling thread in the network namespace `netns`, then
/// returns the thread to its own. Sockets `f` opens stay in `netns`.
pub fn in_netns<T>(netns: BorrowedFd<'_>, f: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let home = std::fs::File::open("/proc/thread-self/ns/net")
        .map_err(|e| context(e, "opening /proc/thread-self/ns/net"))?;
    setns(netns, CloneFlags::CLONE_NEWNET)
        .map_err(|e| context(e.into(), "entering a network namespace"))?;
    let result = f();
    if let Err(e) = setns(&home, CloneFlags::CLONE_NEWNET) {
        // Going on would create every later link, address and socket of this
        // thread in the container's namespace.
        panic!("cannot return to the original network namespace: {e}");
    }
    result
}

/// One address of a link, as RTM_GETADDR reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix: u8,
    /// RT_SCOPE_*: 0 universe, 200 site, 253 link, 254 host.
    pub scope: u8,
    /// IFA_F_* (the 32-bit IFA_FLAGS where the kernel sends it).
    pub flags: u32,
}

/// What nixrun reads of a link (RTM_NEWLINK).
struct Link {
    index: u32,
    name: String,
    kind: Option<String>,
    master: Option<u32>,
    mac: Option<Mac>,
}

/// An rtnetlink socket and its request sequence.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
}

impl Rtnl {
    /// A socket in the caller's network namespace.
    pub fn open() -> io::Result<Rtnl> {
        let sock = Socket::open(None, 0).map_err(|e| context(e, "opening an rtnetlink socket"))?;
        // The kernel's reason for a refusal, without the echo of our request.
        crate::sys::set_netlink_option(sock.as_fd(), libc::NETLINK_EXT_ACK)
            .map_err(|e| context(e.into(), "asking for extended acks"))?;
        crate::sys::set_netlink_option(sock.as_fd(), libc::NETLINK_CAP_ACK)
            .map_err(|e| context(e.into(), "asking for capped acks"))?;
        Ok(Rtnl { sock, seq: 0 })
    }

    /// A socket in the network namespace `netns` (e.g. a container's), opened
    /// there and kept there; the caller stays in its own.
    pub fn open_in(netns: BorrowedFd<'_>) -> io::Result<Rtnl> {
        in_netns(netns, Rtnl::open)
    }

    /// Sends one request, message `ty` with `flags` and what `body` writes
    /// after its header, and hands each reply (type, payload) to `each` up to
    /// the ack, or for a dump up to NLMSG_DONE. A refusal becomes a
    /// `NetlinkError` saying `what`.
    fn call(
        &mut self,
        ty: u16,
        flags: u16,
        what: &str,
        body: impl FnOnce(&mut Enc),
        mut each: impl FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut req = Enc::new();
        req.begin(
            ty,
            NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK },
            self.seq,
        );
        body(&mut req);
        req.end();
        self.exchange(req.bytes(), what, &mut each)
    }

    /// The rest of `call`, not generic: one copy in the binary, not one per
    /// kind of request.
    fn exchange(
        &mut self,
        req: &[u8],
        what: &str,
        each: &mut dyn FnMut(u16, &[u8]),
    ) -> io::Result<()> {
        let answer = self
            .sock
            .call(req, &mut |m| each(m.ty, m.payload))
            .map_err(|e| context(e, what))?;
        answer.map(drop).map_err(|r| {
            NetlinkError {
                errno: r.errno,
                what: what.to_string(),
                kernel_says: r.reason,
            }
            .into()
        })
    }

    /// A request that only wants its ack.
    fn ack(
        &mut self,
        ty: u16,
        flags: u16,
        what: &str,
        body: impl FnOnce(&mut Enc),
    ) -> io::Result<()> {
        self.call(ty, flags, what, body, |_, _| {})
    }

    /// The link RTM_GETLINK finds by the index or name in `body`, if any.
    fn get_link(&mut self, what: &str, body: impl FnOnce(&mut Enc)) -> io::Result<Option<Link>> {
        let mut link = None;
        let r = self.call(RTM_GETLINK, 0, what, body, |ty, payload| {
            if ty == RTM_NEWLINK && link.is_none() {
                link = parse_link(payload);
            }
        });
        match r {
            Ok(()) => Ok(link),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn link(&mut self, index: u32) -> io::Result<Link> {
        let what = format!("looking up link #{index}");
        self.get_link(&what, |e| ifinfomsg(e, index, None))?
            .ok_or_else(|| {
                NetlinkError {
                    errno: libc::ENODEV,
                    what,
                    kernel_says: None,
                }
                .into()
            })
    }

    /// The index of the link named `name` (a kernel name, not an altname), if any.
    pub fn link_index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let what = format!("looking up link {name}");
        Ok(self
            .get_link(&what, |e| {
                ifinfomsg(e, 0, None);
                e.str(IFLA_IFNAME, name);
            })?
            .map(|l| l.index))
    }

    fn required_index(&mut self, name: &str) -> io::Result<u32> {
        self.link_index(name)?.ok_or_else(|| {
            NetlinkError {
                errno: libc::ENODEV,
                what: format!("link {name} is gone right after its creation"),
                kernel_says: None,
            }
            .into()
        })
    }

    /// The kernel name of link `index`.
    pub fn link_name(&mut self, index: u32) -> io::Result<String> {
        Ok(self.link(index)?.name)
    }

    /// The driver kind of link `index` ("veth", "bridge", "macvlan"…); None
    /// for links without one (loopback, physical NICs).
    pub fn link_kind(&mut self, index: u32) -> io::Result<Option<String>> {
        Ok(self.link(index)?.kind)
    }

    /// The bridge (or other master) link `index` is enslaved to.
    pub fn link_master(&mut self, index: u32) -> io::Result<Option<u32>> {
        Ok(self.link(index)?.master)
    }

    /// The MAC address of link `index`.
    pub fn link_mac(&mut self, index: u32) -> io::Result<Option<Mac>> {
        Ok(self.link(index)?.mac)
    }

    /// The indexes of the links enslaved to `bridge` (nspawn removes a zone's
    /// bridge only when this is empty).
    pub fn bridge_members(&mut self, bridge: u32) -> io::Result<Vec<u32>> {
        let what = format!("listing the members of bridge #{bridge}");
        let mut members = Vec::new();
        self.call(
            RTM_GETLINK,
            NLM_F_DUMP,
            &what,
            |e| ifinfomsg(e, 0, None),
            |ty, payload| match parse_link(payload) {
                Some(l) if ty == RTM_NEWLINK && l.master == Some(bridge) => members.push(l.index),
                _ => {}
            },
        )?;
        Ok(members)
    }

    /// A veth pair in one message, as nspawn makes it: `host_name` here, the
    /// peer `peer_name` created directly in `peer_netns`, each with its MAC,
    /// both down. Fails with EEXIST if either name is taken. Returns the host
    /// side's index.
    pub fn add_veth(
        &mut self,
        host_name: &str,
        host_mac: Mac,
        peer_name: &str,
        peer_mac: Mac,
        peer_netns: BorrowedFd<'_>,
    ) -> io::Result<u32> {
        self.ack(
            RTM_NEWLINK,
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("creating veth {host_name} with peer {peer_name}"),
            |e| {
                ifinfomsg(e, 0, None);
                e.str(IFLA_IFNAME, host_name);
                e.attr(IFLA_ADDRESS, &host_mac);
                link_info(e, "veth", |e| {
                    // The peer is a link message of its own.
                    e.nest(VETH_INFO_PEER);
                    ifinfomsg(e, 0, None);
                    e.str(IFLA_IFNAME, peer_name);
                    e.attr(IFLA_ADDRESS, &peer_mac);
                    e.u32(IFLA_NET_NS_FD, peer_netns.as_raw_fd() as u32);
                    e.end_nest();
                });
            },
        )?;
        self.required_index(host_name)
    }

    /// Adds `altname` as an alternative name of link `index` (how nspawn keeps
    /// the full `ve-<machine>` name reachable when the kernel name is shortened).
    pub fn add_altname(&mut self, index: u32, altname: &str) -> io::Result<()> {
        self.ack(
            RTM_NEWLINKPROP,
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("adding altname {altname} to link #{index}"),
            |e| {
                ifinfomsg(e, index, None);
                e.nest(IFLA_PROP_LIST);
                e.str(IFLA_ALT_IFNAME, altname);
                e.end_nest();
            },
        )
    }

    /// A new bridge `name`, down, with the kernel's defaults. Returns its index.
    pub fn add_bridge(&mut self, name: &str) -> io::Result<u32> {
        self.ack(
            RTM_NEWLINK,
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("creating bridge {name}"),
            |e| {
                ifinfomsg(e, 0, None);
                e.str(IFLA_IFNAME, name);
                e.nest(IFLA_LINKINFO);
                e.str(IFLA_INFO_KIND, "bridge");
                e.end_nest();
            },
        )?;
        self.required_index(name)
    }

    /// RTM_SETLINK of link `index`: up or down if `up` says so, with the
    /// attributes `attributes` writes.
    fn set_link(
        &mut self,
        index: u32,
        up: Option<bool>,
        what: &str,
        attributes: impl FnOnce(&mut Enc),
    ) -> io::Result<()> {
        self.ack(RTM_SETLINK, 0, what, |e| {
            ifinfomsg(e, index, up);
            attributes(e);
        })
    }

    /// Enslaves link `index` to `master` and sets it up, in one message (as
    /// nspawn's join_bridge).
    pub fn set_master_and_up(&mut self, index: u32, master: u32) -> io::Result<()> {
        self.set_link(
            index,
            Some(true),
            &format!("adding link #{index} to bridge #{master}"),
            |e| e.u32(IFLA_MASTER, master),
        )
    }

    /// Sets link `index` up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        self.set_link(
            index,
            Some(true),
            &format!("setting link #{index} up"),
            |_| {},
        )
    }

    /// Sets link `index` down.
    pub fn set_down(&mut self, index: u32) -> io::Result<()> {
        self.set_link(
            index,
            Some(false),
            &format!("setting link #{index} down"),
            |_| {},
        )
    }

    /// Moves link `index` into `netns`, renaming it there to `new_name` in the
    /// same message (so it never appears under a clashing name).
    pub fn move_to_netns(
        &mut self,
        index: u32,
        netns: BorrowedFd<'_>,
        new_name: Option<&str>,
    ) -> io::Result<()> {
        let what = match new_name {
            Some(n) => format!("moving link #{index} to another network namespace as {n}"),
            None => format!("moving link #{index} to another network namespace"),
        };
        self.set_link(index, None, &what, |e| {
            e.u32(IFLA_NET_NS_FD, netns.as_raw_fd() as u32);
            if let Some(n) = new_name {
                e.str(IFLA_IFNAME, n);
            }
        })
    }

    /// A macvlan `name` in bridge mode over the link `lower` of this socket's
    /// namespace, created directly in `netns` with `mac`.
    pub fn add_macvlan(
        &mut self,
        name: &str,
        lower: u32,
        mac: Mac,
        netns: BorrowedFd<'_>,
    ) -> io::Result<()> {
        self.ack(
            RTM_NEWLINK,
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("creating macvlan {name} over link #{lower}"),
            |e| {
                ifinfomsg(e, 0, None);
                e.u32(IFLA_LINK, lower);
                e.str(IFLA_IFNAME, name);
                e.attr(IFLA_ADDRESS, &mac);
                e.u32(IFLA_NET_NS_FD, netns.as_raw_fd() as u32);
                link_info(e, "macvlan", |e| {
                    e.u32(IFLA_MACVLAN_MODE, MACVLAN_MODE_BRIDGE)
                });
            },
        )
    }

    /// An ipvlan `name` in L2 mode over the link `lower`, created directly in
    /// `netns` (it shares the lower link's MAC). A kernel without the ipvlan
    /// driver refuses with EOPNOTSUPP.
    pub fn add_ipvlan(&mut self, name: &str, lower: u32, netns: BorrowedFd<'_>) -> io::Result<()> {
        self.ack(
            RTM_NEWLINK,
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("creating ipvlan {name} over link #{lower}"),
            |e| {
                ifinfomsg(e, 0, None);
                e.u32(IFLA_LINK, lower);
                e.str(IFLA_IFNAME, name);
                e.u32(IFLA_NET_NS_FD, netns.as_raw_fd() as u32);
                link_info(e, "ipvlan", |e| {
                    e.attr(IFLA_IPVLAN_MODE, &IPVLAN_MODE_L2.to_ne_bytes())
                });
            },
        )
    }

    /// Deletes link `index` (a veth takes its peer along); a link already
    /// gone is no error.
    pub fn del_link(&mut self, index: u32) -> io::Result<()> {
        match self.ack(RTM_DELLINK, 0, &format!("deleting link #{index}"), |e| {
            ifinfomsg(e, index, None)
        }) {
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
            r => r,
        }
    }

    /// Deletes the link named `name`; false if there was none.
    pub fn del_link_by_name(&mut self, name: &str) -> io::Result<bool> {
        match self.ack(RTM_DELLINK, 0, &format!("deleting link {name}"), |e| {
            ifinfomsg(e, 0, None);
            e.str(IFLA_IFNAME, name);
        }) {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn new_address(
        &mut self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
        scope: u8,
        flags: u16,
    ) -> io::Result<()> {
        let what = format!("adding address {addr}/{prefix} to link #{index}");
        self.ack(RTM_NEWADDR, flags, &what, |e| {
            address(e, index, addr, prefix, scope)
        })
    }

    /// Puts `addr/prefix` on link `index`; already there is no error (unlike
    /// `ip addr add`, which makes NixOS's postStart fail on a second run).
    pub fn replace_address(&mut self, index: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
        self.new_address(
            index,
            addr,
            prefix,
            RT_SCOPE_UNIVERSE,
            NLM_F_CREATE | NLM_F_REPLACE,
        )
    }

    /// Adds or replaces the main-table route to `dest/prefix` out of link
    /// `oif`, through `gateway` or (without one) directly on the link, as
    /// `ip route replace` does.
    pub fn replace_route(
        &mut self,
        dest: IpAddr,
        prefix: u8,
        oif: u32,
        gateway: Option<IpAddr>,
    ) -> io::Result<()> {
        // ip(8)'s choice: a route without a gateway is on-link in IPv4; IPv6
        // routes are always of universe scope.
        let scope = if dest.is_ipv4() && gateway.is_none() {
            RT_SCOPE_LINK
        } else {
            RT_SCOPE_UNIVERSE
        };
        let via = gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        let what = format!("adding route {dest}/{prefix}{via} dev #{oif}");
        self.ack(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, &what, |e| {
            // struct rtmsg: family, destination and source prefix lengths,
            // TOS, table, protocol, scope, type, then 32 bits of flags.
            e.put(&[
                family(&dest),
                prefix,
                0,
                0,
                RT_TABLE_MAIN,
                RTPROT_BOOT,
                scope,
                RTN_UNICAST,
            ]);
            e.put(&0u32.to_ne_bytes());
            if prefix > 0 {
                e.attr(RTA_DST, &octets(&dest));
            }
            e.u32(RTA_OIF, oif);
            if let Some(g) = gateway {
                e.attr(RTA_GATEWAY, &octets(&g));
            }
        })
    }

    /// What systemd's loopback_setup does in a fresh namespace: 127.0.0.1/8
    /// and ::1/128 of host scope on `lo`, then `lo` up. Addresses already
    /// there are fine, and so is a namespace without IPv6.
    pub fn loopback_up(&mut self) -> io::Result<()> {
        let v4 = (IpAddr::V4(Ipv4Addr::LOCALHOST), 8);
        let v6 = (IpAddr::V6(Ipv6Addr::LOCALHOST), 128);
        for (addr, prefix) in [v4, v6] {
            let r = self.new_address(
                LOOPBACK_IFINDEX,
                addr,
                prefix,
                RT_SCOPE_HOST,
                NLM_F_CREATE | NLM_F_EXCL,
            );
            match r.as_ref().map_err(errno) {
                Ok(()) | Err(Some(libc::EEXIST)) => {}
                Err(Some(libc::EAFNOSUPPORT | libc::EACCES)) if addr.is_ipv6() => {}
                Err(_) => return r,
            }
        }
        self.set_up(LOOPBACK_IFINDEX)
    }

    /// Every address of every link, IPv4 and IPv6.
    pub fn addresses(&mut self) -> io::Result<Vec<Address>> {
        let mut addresses = Vec::new();
        self.call(
            RTM_GETADDR,
            NLM_F_DUMP,
            "listing addresses",
            |e| e.put(&[0; IFADDRMSG_LEN]),
            |ty, payload| {
                if ty == RTM_NEWADDR {
                    addresses.extend(parse_address(payload));
                }
            },
        )?;
        Ok(addresses)
    }
}

/// A socket that hears of IPv4 and IPv6 addresses coming and going in one
/// network namespace (nspawn re-exposes `--port`s on that). Poll its fd for
/// reading, then `drain()`, which never waits.
pub struct AddrWatch {
    sock: Socket,
}

impl AddrWatch {
    /// A watcher of the caller's network namespace.
    pub fn open() -> io::Result<AddrWatch> {
        let groups = (libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR) as u32;
        let sock =
            Socket::open(None, groups).map_err(|e| context(e, "opening an address watch"))?;
        Ok(AddrWatch { sock })
    }

    /// A watcher of the network namespace `netns`.
    pub fn open_in(netns: BorrowedFd<'_>) -> io::Result<AddrWatch> {
        in_netns(netns, AddrWatch::open)
    }

    /// Reads every pending notification; true if an address was added or
    /// removed, or if notifications were lost (ENOBUFS), when the caller must
    /// look again anyway.
    pub fn drain(&mut self) -> bool {
        let mut changed = false;
        let mut buf = Vec::new();
        loop {
            match self.sock.recv(&mut buf, false) {
                Ok(Some(datagram)) => {
                    changed |=
                        messages(datagram).any(|m| m.ty == RTM_NEWADDR || m.ty == RTM_DELADDR);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => changed = true,
                Ok(None) | Err(_) => return changed,
            }
        }
    }
}

impl AsFd for AddrWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// A socket that hears of links leaving the caller's network namespace
/// (deleted, or moved to another), for waiting until some are gone. Open
/// it before looking the links up: what goes after that is then heard.
pub struct LinkWatch {
    sock: Socket,
}

impl LinkWatch {
    pub fn open() -> io::Result<LinkWatch> {
        let sock = Socket::open(None, libc::RTMGRP_LINK as u32)
            .map_err(|e| context(e, "opening a link watch"))?;
        Ok(LinkWatch { sock })
    }

    /// A watcher of the network namespace `netns`.
    pub fn open_in(netns: BorrowedFd<'_>) -> io::Result<LinkWatch> {
        in_netns(netns, LinkWatch::open)
    }

    /// The index of the link named `name` in the watched namespace, if there
    /// is one (SIOCGIFINDEX on the watch's socket: no RTNL taken).
    pub fn index(&self, name: &str) -> io::Result<Option<u32>> {
        match rustix::net::netdevice::name_to_index(&self.sock, name) {
            Ok(i) => Ok(Some(i)),
            Err(rustix::io::Errno::NODEV) => Ok(None),
            Err(e) => Err(context(e.into(), &format!("looking up link {name}"))),
        }
    }

    /// Waits until none of the links `indexes` is left, or until `deadline`;
    /// returns those still there then. Takes no RTNL (an RTM_GETLINK would):
    /// when links go in numbers, the RTNL is what everyone queues for.
    pub fn wait_gone(
        &mut self,
        mut indexes: Vec<u32>,
        deadline: std::time::Instant,
    ) -> io::Result<Vec<u32>> {
        use nix::poll::{poll, PollFd, PollFlags};
        let mut buf = Vec::new();
        while !indexes.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, crate::sys::poll_timeout(left)) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(context(e.into(), "waiting for links to go")),
            }
            loop {
                match self.sock.recv(&mut buf, false) {
                    Ok(Some(datagram)) => {
                        for gone in removed_links(datagram) {
                            indexes.retain(|&i| i != gone);
                        }
                    }
                    Ok(None) => break,
                    // Notifications were lost: look again.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        indexes.retain(|&i| {
                            rustix::net::netdevice::index_to_name(&self.sock, i)
                                != Err(rustix::io::Errno::NODEV)
                        });
                    }
                    Err(e) => return Err(context(e, "reading link notifications")),
                }
            }
        }
        Ok(indexes)
    }
}

/// The links a datagram of link notifications says have left the
/// namespace. A bridge port's own RTM_DELLINK (family AF_BRIDGE) only says
/// it left its bridge: the link is still there.
fn removed_links(datagram: &[u8]) -> impl Iterator<Item = u32> + '_ {
    messages(datagram)
        .filter(|m| m.ty == RTM_DELLINK && m.payload.first() == Some(&(libc::AF_UNSPEC as u8)))
        .filter_map(|m| u32_of(m.payload.get(4..)?))
}

/// struct ifinfomsg: family (any), type, index, flags and the mask of the
/// flags to change: here only IFF_UP, set or cleared as `up` says.
fn ifinfomsg(e: &mut Enc, index: u32, up: Option<bool>) {
    let (flags, change) = match up {
        None => (0, 0),
        Some(true) => (IFF_UP, IFF_UP),
        Some(false) => (0, IFF_UP),
    };
    e.put(&[libc::AF_UNSPEC as u8, 0]);
    e.put(&0u16.to_ne_bytes());
    e.put(&index.to_ne_bytes());
    e.put(&flags.to_ne_bytes());
    e.put(&change.to_ne_bytes());
}

/// An RTM_NEWADDR's body: struct ifaddrmsg (family, prefix length, the low
/// 8 bits of the flags, scope, index), then the address as IFA_LOCAL and
/// IFA_ADDRESS, and all 32 bits of the flags.
fn address(e: &mut Enc, index: u32, addr: IpAddr, prefix: u8, scope: u8) {
    // Both ends of a link we configure are ours: duplicate address
    // detection would only keep an IPv6 address unusable (tentative) for
    // the guest's first seconds.
    let flags = if addr.is_ipv6() && scope == RT_SCOPE_UNIVERSE {
        IFA_F_PERMANENT | IFA_F_NODAD
    } else {
        IFA_F_PERMANENT
    };
    e.put(&[family(&addr), prefix, flags as u8, scope]);
    e.put(&index.to_ne_bytes());
    e.attr(IFA_LOCAL, &octets(&addr));
    e.attr(IFA_ADDRESS, &octets(&addr));
    e.u32(IFA_FLAGS, flags);
}

/// IFLA_LINKINFO of a link of driver `kind`, with the driver's own
/// attributes (IFLA_INFO_DATA) that `data` writes.
fn link_info(e: &mut Enc, kind: &str, data: impl FnOnce(&mut Enc)) {
    e.nest(IFLA_LINKINFO);
    e.str(IFLA_INFO_KIND, kind);
    e.nest(IFLA_INFO_DATA);
    data(e);
    e.end_nest();
    e.end_nest();
}

fn family(addr: &IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    }
}

fn octets(addr: &IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn ip_of(v: &[u8]) -> Option<IpAddr> {
    match v.len() {
        4 => Some(IpAddr::V4(<[u8; 4]>::try_from(v).ok()?.into())),
        16 => Some(IpAddr::V6(<[u8; 16]>::try_from(v).ok()?.into())),
        _ => None,
    }
}

fn parse_link(payload: &[u8]) -> Option<Link> {
    let index = u32_of(payload.get(4..)?)?;
    let mut link = Link {
        index,
        name: String::new(),
        kind: None,
        master: None,
        mac: None,
    };
    for (ty, v) in attrs(payload.get(IFINFOMSG_LEN..)?) {
        match ty {
            IFLA_IFNAME => link.name = str_of(v),
            IFLA_MASTER => link.master = u32_of(v),
            IFLA_ADDRESS => link.mac = v.try_into().ok(),
            IFLA_LINKINFO => link.kind = attr(v, IFLA_INFO_KIND).map(str_of),
            _ => {}
        }
    }
    Some(link)
}

fn parse_address(payload: &[u8]) -> Option<Address> {
    let header = payload.get(..IFADDRMSG_LEN)?;
    let (mut local, mut address) = (None, None);
    // The 8 bits of the header, unless the kernel sends all 32 (IFA_FLAGS).
    let mut flags = u32::from(header[2]);
    for (ty, v) in attrs(&payload[IFADDRMSG_LEN..]) {
        match ty {
            IFA_LOCAL => local = ip_of(v),
            IFA_ADDRESS => address = ip_of(v),
            IFA_FLAGS => flags = u32_of(v).unwrap_or(flags),
            _ => {}
        }
    }
    // IFA_LOCAL is the link's own address; IFA_ADDRESS is the peer's on
    // point-to-point links, and the only one IPv6 sends.
    Some(Address {
        index: u32_of(&header[4..])?,
        addr: local.or(address)?,
        prefix: header[1],
        scope: header[3],
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_errno_and_context() {
        let e: io::Error = NetlinkError {
            errno: libc::EOPNOTSUPP,
            what: "creating ipvlan iv-x over link #3".into(),
            kernel_says: Some("Unknown device type".into()),
        }
        .into();
        assert_eq!(errno(&e), Some(libc::EOPNOTSUPP));
        assert_eq!(
            e.to_string(),
            "creating ipvlan iv-x over link #3: Operation not supported (EOPNOTSUPP): \
             kernel says \"Unknown device type\""
        );
        assert_eq!(
            errno(&io::Error::from_raw_os_error(libc::ENODEV)),
            Some(libc::ENODEV)
        );
    }

    /// The fixed header and attributes of one encoded body.
    fn body(fixed: usize, write: impl FnOnce(&mut Enc)) -> (Vec<u8>, Vec<(u16, Vec<u8>)>) {
        let mut e = Enc::new();
        write(&mut e);
        let b = e.into_bytes();
        let a = attrs(&b[fixed..]).map(|(t, v)| (t, v.to_vec())).collect();
        (b[..fixed].to_vec(), a)
    }

    #[test]
    fn ipv6_universe_addresses_skip_duplicate_address_detection() {
        let v6: IpAddr = "fd00::1".parse().unwrap();
        let (h, a) = body(IFADDRMSG_LEN, |e| address(e, 7, v6, 64, RT_SCOPE_UNIVERSE));
        let flags = IFA_F_PERMANENT | IFA_F_NODAD;
        assert_eq!(h, [10, 64, flags as u8, 0, 7, 0, 0, 0]);
        assert_eq!(
            a,
            [
                (IFA_LOCAL, octets(&v6)),
                (IFA_ADDRESS, octets(&v6)),
                (IFA_FLAGS, flags.to_ne_bytes().to_vec()),
            ]
        );
        for (addr, scope) in [("::1", RT_SCOPE_HOST), ("10.0.0.1", RT_SCOPE_UNIVERSE)] {
            let (h, a) = body(IFADDRMSG_LEN, |e| {
                address(e, 1, addr.parse().unwrap(), 8, scope)
            });
            assert_eq!(h[2], IFA_F_PERMANENT as u8, "{addr}");
            assert_eq!(a[2].1, IFA_F_PERMANENT.to_ne_bytes(), "{addr}");
        }
    }

    #[test]
    fn links_are_read_from_what_the_kernel_sends() {
        let mut e = Enc::new();
        e.put(&[0, 0, 1, 0]);
        e.put(&42u32.to_ne_bytes());
        e.put(&[0; 8]);
        e.str(IFLA_IFNAME, "vb-t");
        e.u32(libc::IFLA_MTU, 1500);
        e.attr(IFLA_ADDRESS, &[2, 0, 0, 0, 0, 0xa]);
        e.u32(IFLA_MASTER, 5);
        e.nest(IFLA_LINKINFO);
        e.str(IFLA_INFO_KIND, "veth");
        e.nest(IFLA_INFO_DATA);
        e.end_nest();
        e.end_nest();
        let l = parse_link(e.bytes()).unwrap();
        assert_eq!(l.index, 42);
        assert_eq!(l.name, "vb-t");
        assert_eq!(l.kind.as_deref(), Some("veth"));
        assert_eq!(l.master, Some(5));
        assert_eq!(l.mac, Some([2, 0, 0, 0, 0, 0xa]));

        // Loopback: no kind, no master; an address of another length is no MAC.
        let mut e = Enc::new();
        ifinfomsg(&mut e, 1, None);
        e.str(IFLA_IFNAME, "lo");
        e.attr(IFLA_ADDRESS, &[0; 4]);
        let l = parse_link(e.bytes()).unwrap();
        assert_eq!((l.index, l.name.as_str()), (1, "lo"));
        assert_eq!((l.kind, l.master, l.mac), (None, None, None));
        assert!(parse_link(&[0; 6]).is_none());
    }

    #[test]
    fn only_links_that_left_the_namespace_count_as_removed() {
        let mut e = Enc::new();
        for (ty, family, index) in [
            (RTM_DELLINK, libc::AF_BRIDGE, 7), // port 7 left its bridge
            (RTM_NEWLINK, libc::AF_UNSPEC, 8), // link 8 changed
            (RTM_DELLINK, libc::AF_UNSPEC, 7), // link 7 is gone
            (RTM_DELLINK, libc::AF_UNSPEC, 9),
        ] {
            e.begin(ty, 0, 0);
            e.put(&[family as u8, 0, 1, 0]);
            e.put(&(index as u32).to_ne_bytes());
            e.put(&[0; 8]);
            e.str(IFLA_IFNAME, "ve-x");
            e.end();
        }
        assert_eq!(removed_links(e.bytes()).collect::<Vec<_>>(), [7, 9]);
        // A message too short for its index is skipped.
        let mut e = Enc::new();
        e.begin(RTM_DELLINK, 0, 0);
        e.put(&[0, 0]);
        e.end();
        assert_eq!(removed_links(e.bytes()).count(), 0);
    }

    #[test]
    fn the_up_flag_is_changed_only_when_asked() {
        for (up, flags, change) in [
            (None, 0, 0),
            (Some(true), IFF_UP, IFF_UP),
            (Some(false), 0, IFF_UP),
        ] {
            let (h, _) = body(IFINFOMSG_LEN, |e| ifinfomsg(e, 3, up));
            assert_eq!(u32_of(&h[4..]), Some(3));
            assert_eq!(u32_of(&h[8..]), Some(flags), "{up:?}");
            assert_eq!(u32_of(&h[12..]), Some(change), "{up:?}");
        }
    }

    #[test]
    fn addresses_are_read_from_what_the_kernel_sends() {
        // IPv6: IFA_ADDRESS only, and the flags beyond 8 bits in IFA_FLAGS.
        let mut e = Enc::new();
        e.put(&[10, 64, 0x80, 0, 3, 0, 0, 0]);
        e.attr(IFA_ADDRESS, &Ipv6Addr::LOCALHOST.octets());
        e.u32(IFA_FLAGS, 0x280);
        let a = parse_address(e.bytes()).unwrap();
        assert_eq!(
            a,
            Address {
                index: 3,
                addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                prefix: 64,
                scope: 0,
                flags: 0x280,
            }
        );
        // IPv4 point-to-point: the local address, not the peer's.
        let mut e = Enc::new();
        e.put(&[2, 32, 0x80, 254, 1, 0, 0, 0]);
        e.attr(IFA_ADDRESS, &[10, 0, 0, 2]);
        e.attr(IFA_LOCAL, &[10, 0, 0, 1]);
        let a = parse_address(e.bytes()).unwrap();
        assert_eq!(a.addr, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!((a.scope, a.flags), (254, 0x80));
        assert!(parse_address(&[2, 32, 0, 0, 1, 0, 0, 0]).is_none());
    }
}
