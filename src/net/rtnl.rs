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

use super::Mac;
use netlink_packet_core::{
    ErrorMessage, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_ACK_TLVS,
    NLM_F_CAPPED, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{
    InfoData, InfoIpVlan, InfoKind, InfoMacVlan, InfoVeth, IpVlanMode, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage, MacVlanMode, Prop,
};
use netlink_packet_route::route::{
    RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

/// The loopback device has this index in every network namespace.
const LOOPBACK_IFINDEX: u32 = 1;
/// Multicast groups of <linux/rtnetlink.h> (enum rtnetlink_groups).
const RTNLGRP_IPV4_IFADDR: u32 = 5;
const RTNLGRP_IPV6_IFADDR: u32 = 9;
const RTM_NEWADDR: u16 = 20;
const RTM_DELADDR: u16 = 21;
/// enum nlmsgerr_attrs: the kernel's explanation of a refusal (extended ack).
const NLMSGERR_ATTR_MSG: u16 = 1;
const NLMSG_HDRLEN: usize = 16;

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

/// An rtnetlink socket and its request sequence.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
}

impl Rtnl {
    /// A socket in the caller's network namespace.
    pub fn open() -> io::Result<Rtnl> {
        let mut sock =
            Socket::new(NETLINK_ROUTE).map_err(|e| context(e, "opening an rtnetlink socket"))?;
        sock.bind_auto()
            .map_err(|e| context(e, "binding an rtnetlink socket"))?;
        // The kernel's reason for a refusal, without the echo of our request.
        sock.set_ext_ack(true)
            .map_err(|e| context(e, "asking for extended acks"))?;
        sock.set_cap_ack(true)
            .map_err(|e| context(e, "asking for capped acks"))?;
        Ok(Rtnl { sock, seq: 0 })
    }

    /// A socket in the network namespace `netns` (e.g. a container's), opened
    /// there and kept there; the caller stays in its own.
    pub fn open_in(netns: BorrowedFd<'_>) -> io::Result<Rtnl> {
        in_netns(netns, Rtnl::open)
    }

    /// Sends one request and collects the replies up to its ack (or, for a
    /// dump, up to NLMSG_DONE). A refusal becomes a `NetlinkError`.
    fn call(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        what: &str,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        header.sequence_number = seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        req.finalize();
        let mut buf = vec![0; req.buffer_len()];
        req.serialize(&mut buf);
        self.sock
            .send_to(&buf, &SocketAddr::new(0, 0), 0)
            .map_err(|e| context(e, what))?;

        let mut replies = Vec::new();
        loop {
            let data = match self.sock.recv_from_full() {
                Ok((data, _)) => data,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(context(e, what)),
            };
            for raw in split_messages(&data) {
                // Replies to an earlier request that failed half-way.
                if u32::from_ne_bytes(raw[8..12].try_into().unwrap()) != seq {
                    continue;
                }
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{what}: undecodable reply: {e}"),
                    )
                })?;
                match m.payload {
                    NetlinkPayload::InnerMessage(r) => replies.push(r),
                    NetlinkPayload::Error(e) => match e.code {
                        None => return Ok(replies),
                        Some(code) => {
                            return Err(NetlinkError {
                                errno: -code.get(),
                                what: what.to_string(),
                                kernel_says: ext_ack_message(m.header.flags, &e),
                            }
                            .into())
                        }
                    },
                    NetlinkPayload::Done(d) if d.code < 0 => {
                        return Err(NetlinkError {
                            errno: -d.code,
                            what: what.to_string(),
                            kernel_says: None,
                        }
                        .into())
                    }
                    NetlinkPayload::Done(_) => return Ok(replies),
                    _ => {}
                }
            }
        }
    }

    /// A request that only wants its ack.
    fn ack(&mut self, msg: RouteNetlinkMessage, flags: u16, what: &str) -> io::Result<()> {
        self.call(msg, flags, what).map(drop)
    }

    fn get_link(&mut self, req: LinkMessage, what: &str) -> io::Result<Option<LinkMessage>> {
        match self.call(RouteNetlinkMessage::GetLink(req), 0, what) {
            Ok(replies) => Ok(replies.into_iter().find_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn link(&mut self, index: u32) -> io::Result<LinkMessage> {
        let what = format!("looking up link #{index}");
        self.get_link(link_message(index, vec![]), &what)?
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
        let req = link_message(0, vec![LinkAttribute::IfName(name.into())]);
        Ok(self
            .get_link(req, &format!("looking up link {name}"))?
            .map(|l| l.header.index))
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
        let l = self.link(index)?;
        Ok(l.attributes
            .into_iter()
            .find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n),
                _ => None,
            })
            .unwrap_or_default())
    }

    /// The driver kind of link `index` ("veth", "bridge", "macvlan"…); None
    /// for links without one (loopback, physical NICs).
    pub fn link_kind(&mut self, index: u32) -> io::Result<Option<String>> {
        Ok(self.link(index)?.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                LinkInfo::Kind(k) => Some(k.to_string()),
                _ => None,
            }),
            _ => None,
        }))
    }

    /// The bridge (or other master) link `index` is enslaved to.
    pub fn link_master(&mut self, index: u32) -> io::Result<Option<u32>> {
        Ok(self.link(index)?.attributes.iter().find_map(|a| match a {
            LinkAttribute::Controller(m) => Some(*m),
            _ => None,
        }))
    }

    /// The MAC address of link `index`.
    pub fn link_mac(&mut self, index: u32) -> io::Result<Option<Mac>> {
        Ok(self.link(index)?.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(a) => a.as_slice().try_into().ok(),
            _ => None,
        }))
    }

    /// The indexes of the links enslaved to `bridge` (nspawn removes a zone's
    /// bridge only when this is empty).
    pub fn bridge_members(&mut self, bridge: u32) -> io::Result<Vec<u32>> {
        let what = format!("listing the members of bridge #{bridge}");
        let links = self.call(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
            &what,
        )?;
        Ok(links
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .filter(|l| l.attributes.contains(&LinkAttribute::Controller(bridge)))
            .map(|l| l.header.index)
            .collect())
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
        let peer = link_message(
            0,
            vec![
                LinkAttribute::IfName(peer_name.into()),
                LinkAttribute::Address(peer_mac.to_vec()),
                LinkAttribute::NetNsFd(peer_netns.as_raw_fd()),
            ],
        );
        let req = link_message(
            0,
            vec![
                LinkAttribute::IfName(host_name.into()),
                LinkAttribute::Address(host_mac.to_vec()),
                link_info(InfoKind::Veth, Some(InfoData::Veth(InfoVeth::Peer(peer)))),
            ],
        );
        self.ack(
            RouteNetlinkMessage::NewLink(req),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("creating veth {host_name} with peer {peer_name}"),
        )?;
        self.required_index(host_name)
    }

    /// Adds `altname` as an alternative name of link `index` (how nspawn keeps
    /// the full `ve-<machine>` name reachable when the kernel name is shortened).
    pub fn add_altname(&mut self, index: u32, altname: &str) -> io::Result<()> {
        let req = link_message(
            index,
            vec![LinkAttribute::PropList(vec![Prop::AltIfName(
                altname.into(),
            )])],
        );
        self.ack(
            RouteNetlinkMessage::NewLinkProp(req),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("adding altname {altname} to link #{index}"),
        )
    }

    /// A new bridge `name`, down, with the kernel's defaults. Returns its index.
    pub fn add_bridge(&mut self, name: &str) -> io::Result<u32> {
        let req = link_message(
            0,
            vec![
                LinkAttribute::IfName(name.into()),
                link_info(InfoKind::Bridge, None),
            ],
        );
        self.ack(
            RouteNetlinkMessage::NewLink(req),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("creating bridge {name}"),
        )?;
        self.required_index(name)
    }

    fn set_link(
        &mut self,
        index: u32,
        up: Option<bool>,
        attributes: Vec<LinkAttribute>,
        what: &str,
    ) -> io::Result<()> {
        let mut req = link_message(index, attributes);
        if let Some(up) = up {
            req.header.change_mask = LinkFlags::Up;
            req.header.flags = if up {
                LinkFlags::Up
            } else {
                LinkFlags::empty()
            };
        }
        self.ack(RouteNetlinkMessage::SetLink(req), 0, what)
    }

    /// Enslaves link `index` to `master` and sets it up, in one message (as
    /// nspawn's join_bridge).
    pub fn set_master_and_up(&mut self, index: u32, master: u32) -> io::Result<()> {
        self.set_link(
            index,
            Some(true),
            vec![LinkAttribute::Controller(master)],
            &format!("adding link #{index} to bridge #{master}"),
        )
    }

    /// Sets link `index` up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        self.set_link(
            index,
            Some(true),
            vec![],
            &format!("setting link #{index} up"),
        )
    }

    /// Sets link `index` down.
    pub fn set_down(&mut self, index: u32) -> io::Result<()> {
        self.set_link(
            index,
            Some(false),
            vec![],
            &format!("setting link #{index} down"),
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
        let mut attributes = vec![LinkAttribute::NetNsFd(netns.as_raw_fd())];
        if let Some(n) = new_name {
            attributes.push(LinkAttribute::IfName(n.into()));
        }
        let what = match new_name {
            Some(n) => format!("moving link #{index} to another network namespace as {n}"),
            None => format!("moving link #{index} to another network namespace"),
        };
        self.set_link(index, None, attributes, &what)
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
        let req = link_message(
            0,
            vec![
                LinkAttribute::Link(lower),
                LinkAttribute::IfName(name.into()),
                LinkAttribute::Address(mac.to_vec()),
                LinkAttribute::NetNsFd(netns.as_raw_fd()),
                link_info(
                    InfoKind::MacVlan,
                    Some(InfoData::MacVlan(vec![InfoMacVlan::Mode(
                        MacVlanMode::Bridge,
                    )])),
                ),
            ],
        );
        self.ack(
            RouteNetlinkMessage::NewLink(req),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("creating macvlan {name} over link #{lower}"),
        )
    }

    /// An ipvlan `name` in L2 mode over the link `lower`, created directly in
    /// `netns` (it shares the lower link's MAC). A kernel without the ipvlan
    /// driver refuses with EOPNOTSUPP.
    pub fn add_ipvlan(&mut self, name: &str, lower: u32, netns: BorrowedFd<'_>) -> io::Result<()> {
        let req = link_message(
            0,
            vec![
                LinkAttribute::Link(lower),
                LinkAttribute::IfName(name.into()),
                LinkAttribute::NetNsFd(netns.as_raw_fd()),
                link_info(
                    InfoKind::IpVlan,
                    Some(InfoData::IpVlan(vec![InfoIpVlan::Mode(IpVlanMode::L2)])),
                ),
            ],
        );
        self.ack(
            RouteNetlinkMessage::NewLink(req),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("creating ipvlan {name} over link #{lower}"),
        )
    }

    /// Deletes link `index` (a veth takes its peer along); a link already
    /// gone is no error.
    pub fn del_link(&mut self, index: u32) -> io::Result<()> {
        match self.ack(
            RouteNetlinkMessage::DelLink(link_message(index, vec![])),
            0,
            &format!("deleting link #{index}"),
        ) {
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(()),
            r => r,
        }
    }

    /// Deletes the link named `name`; false if there was none.
    pub fn del_link_by_name(&mut self, name: &str) -> io::Result<bool> {
        let req = link_message(0, vec![LinkAttribute::IfName(name.into())]);
        match self.ack(
            RouteNetlinkMessage::DelLink(req),
            0,
            &format!("deleting link {name}"),
        ) {
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
        scope: AddressScope,
        flags: u16,
    ) -> io::Result<()> {
        let mut req = AddressMessage::default();
        req.header.family = family(&addr);
        req.header.prefix_len = prefix;
        req.header.scope = scope;
        req.header.index = index;
        // Both ends of a link we configure are ours: duplicate address
        // detection would only keep an IPv6 address unusable (tentative) for
        // the guest's first seconds.
        let (hflags, aflags) = if addr.is_ipv6() && scope == AddressScope::Universe {
            (
                AddressHeaderFlags::Permanent | AddressHeaderFlags::Nodad,
                AddressFlags::Permanent | AddressFlags::Nodad,
            )
        } else {
            (AddressHeaderFlags::Permanent, AddressFlags::Permanent)
        };
        req.header.flags = hflags;
        req.attributes = vec![
            AddressAttribute::Local(addr),
            AddressAttribute::Address(addr),
            AddressAttribute::Flags(aflags),
        ];
        self.ack(
            RouteNetlinkMessage::NewAddress(req),
            flags,
            &format!("adding address {addr}/{prefix} to link #{index}"),
        )
    }

    /// Puts `addr/prefix` on link `index`; already there is no error (unlike
    /// `ip addr add`, which makes NixOS's postStart fail on a second run).
    pub fn replace_address(&mut self, index: u32, addr: IpAddr, prefix: u8) -> io::Result<()> {
        self.new_address(
            index,
            addr,
            prefix,
            AddressScope::Universe,
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
        let mut req = RouteMessage::default();
        req.header.address_family = family(&dest);
        req.header.destination_prefix_length = prefix;
        req.header.table = RouteHeader::RT_TABLE_MAIN;
        req.header.protocol = RouteProtocol::Boot;
        // ip(8)'s choice: a route without a gateway is on-link in IPv4; IPv6
        // routes are always of universe scope.
        req.header.scope = if dest.is_ipv4() && gateway.is_none() {
            RouteScope::Link
        } else {
            RouteScope::Universe
        };
        req.header.kind = RouteType::Unicast;
        if prefix > 0 {
            req.attributes
                .push(RouteAttribute::Destination(dest.into()));
        }
        req.attributes.push(RouteAttribute::Oif(oif));
        if let Some(g) = gateway {
            req.attributes.push(RouteAttribute::Gateway(g.into()));
        }
        let via = gateway.map(|g| format!(" via {g}")).unwrap_or_default();
        self.ack(
            RouteNetlinkMessage::NewRoute(req),
            NLM_F_CREATE | NLM_F_REPLACE,
            &format!("adding route {dest}/{prefix}{via} dev #{oif}"),
        )
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
                AddressScope::Host,
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
        let replies = self.call(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
            "listing addresses",
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|r| match r {
                RouteNetlinkMessage::NewAddress(a) => to_address(a),
                _ => None,
            })
            .collect())
    }
}

/// A non-blocking socket that hears of IPv4 and IPv6 addresses coming and
/// going in one network namespace (nspawn re-exposes `--port`s on that).
/// Poll its fd for reading, then `drain()`.
pub struct AddrWatch {
    sock: Socket,
}

impl AddrWatch {
    /// A watcher of the caller's network namespace.
    pub fn open() -> io::Result<AddrWatch> {
        let what = "opening an address watch";
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| context(e, what))?;
        sock.bind_auto().map_err(|e| context(e, what))?;
        for group in [RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR] {
            sock.add_membership(group).map_err(|e| context(e, what))?;
        }
        sock.set_non_blocking(true).map_err(|e| context(e, what))?;
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
        let mut buf = Vec::with_capacity(64 * 1024);
        loop {
            buf.clear();
            match self.sock.recv(&mut buf, 0) {
                Ok(_) => {
                    changed |= split_messages(&buf).any(|m| {
                        let kind = u16::from_ne_bytes([m[4], m[5]]);
                        kind == RTM_NEWADDR || kind == RTM_DELADDR
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => changed = true,
                Err(_) => return changed,
            }
        }
    }
}

impl AsFd for AddrWatch {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// The netlink messages in one datagram (each with its 16-byte header).
fn split_messages(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return None;
        }
        let (msg, tail) = rest.split_at(len);
        rest = tail.get(align4(len) - len..).unwrap_or_default();
        Some(msg)
    })
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// NLMSGERR_ATTR_MSG of an extended ack: after the echoed request (its header
/// only when capped), attributes in netlink's usual type-length-value form.
fn ext_ack_message(flags: u16, e: &ErrorMessage) -> Option<String> {
    if flags & NLM_F_ACK_TLVS == 0 {
        return None;
    }
    let echoed = if flags & NLM_F_CAPPED != 0 {
        NLMSG_HDRLEN
    } else {
        u32::from_ne_bytes(e.header.get(..4)?.try_into().ok()?) as usize
    };
    let mut tlvs = e.header.get(align4(echoed)..)?;
    while tlvs.len() >= 4 {
        let len = u16::from_ne_bytes([tlvs[0], tlvs[1]]) as usize;
        let kind = u16::from_ne_bytes([tlvs[2], tlvs[3]]) & 0x3fff;
        if len < 4 || len > tlvs.len() {
            return None;
        }
        if kind == NLMSGERR_ATTR_MSG {
            let text = &tlvs[4..len];
            let text = text.split(|&b| b == 0).next().unwrap_or_default();
            return Some(String::from_utf8_lossy(text).into_owned());
        }
        tlvs = tlvs.get(align4(len)..).unwrap_or_default();
    }
    None
}

fn link_message(index: u32, attributes: Vec<LinkAttribute>) -> LinkMessage {
    let mut m = LinkMessage::default();
    m.header.index = index;
    m.attributes = attributes;
    m
}

fn link_info(kind: InfoKind, data: Option<InfoData>) -> LinkAttribute {
    let mut infos = vec![LinkInfo::Kind(kind)];
    infos.extend(data.map(LinkInfo::Data));
    LinkAttribute::LinkInfo(infos)
}

fn family(addr: &IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn to_address(m: AddressMessage) -> Option<Address> {
    let mut local = None;
    let mut address = None;
    let mut flags = u32::from(m.header.flags.bits());
    for a in m.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(ip),
            AddressAttribute::Address(ip) => address = Some(ip),
            AddressAttribute::Flags(f) => flags = f.bits(),
            _ => {}
        }
    }
    // IFA_LOCAL is the link's own address; IFA_ADDRESS is the peer's on
    // point-to-point links, and the only one IPv6 sends.
    Some(Address {
        index: m.header.index,
        addr: local.or(address)?,
        prefix: m.header.prefix_len,
        scope: m.header.scope.into(),
        flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_split_into_aligned_messages() {
        let mut d = Vec::new();
        for (len, seq) in [(17u32, 1u32), (20, 2)] {
            let start = d.len();
            d.extend_from_slice(&len.to_ne_bytes());
            d.extend_from_slice(&[0; 4]);
            d.extend_from_slice(&seq.to_ne_bytes());
            d.resize(start + align4(len as usize), 0);
        }
        let lens: Vec<usize> = split_messages(&d).map(<[u8]>::len).collect();
        assert_eq!(lens, [17, 20]);
        assert_eq!(split_messages(&d[..10]).count(), 0);
    }

    #[test]
    fn the_kernels_reason_is_read_from_a_capped_ack() {
        let mut payload = vec![0u8; NLMSG_HDRLEN];
        payload[..4].copy_from_slice(&64u32.to_ne_bytes());
        let text = b"Unknown device type\0";
        payload.extend_from_slice(&((4 + text.len()) as u16).to_ne_bytes());
        payload.extend_from_slice(&NLMSGERR_ATTR_MSG.to_ne_bytes());
        payload.extend_from_slice(text);
        let mut e = ErrorMessage::default();
        e.code = std::num::NonZeroI32::new(-libc::EOPNOTSUPP);
        e.header = payload;
        assert_eq!(
            ext_ack_message(NLM_F_ACK_TLVS | NLM_F_CAPPED, &e).as_deref(),
            Some("Unknown device type")
        );
        assert_eq!(ext_ack_message(NLM_F_CAPPED, &e), None);
    }

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
}
