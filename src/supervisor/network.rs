//! The container's network, host side: what the supervisor does between the
//! clone (the child is born in a network namespace of its own) and sync point
//! 1, in nspawn's order — move the given interfaces in, create the main veth
//! (into a bridge or zone), the extra veths, macvlans and ipvlans — and then,
//! beyond nspawn, configure the addresses and routes of --host-address and
//! --local-address on both sides, so that the guest's first instruction can
//! reach the host. Every step pushes its undo onto the boot's teardown list
//! and is first written to a journal (`/run/nixrun/network/NAME`), so that the
//! next start of the machine removes what a SIGKILLed supervisor left.
//!
//! Port forwarding (--port) follows the container's address as nspawn does:
//! the first address of each family (IPv4 first, then the lowest scope) that
//! is global or site-local, re-evaluated on every address change inside the
//! container, as map elements in systemd's `io.systemd.nat` table.

use super::teardown::Teardown;
use super::SupervisorError;
use crate::net::names::{self, MacUse};
use crate::net::nft::{self, Nat};
use crate::net::rtnl::{AddrWatch, LinkWatch, Rtnl};
use crate::plan::{IpNet, Network, Plan, Port, Proto, VethAttach};
use std::cell::{Cell, RefCell};
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

const JOURNAL_DIR: &str = "/run/nixrun/network";
/// nspawn's lock for creating and removing zone bridges.
const ZONE_LOCK: &str = "/run/systemd/nspawn-network-zone";

fn fail(what: impl std::fmt::Display, e: impl std::fmt::Display) -> SupervisorError {
    SupervisorError::Failed(format!("{what}: {e}"))
}

/// What a boot's network is, once set up: its namespace, the interface
/// indices machined is told about, and what follows the guest's address.
pub struct Net {
    /// The container's network namespace (kept open: it outlives nothing of
    /// ours, but moves back and macvlan removal need it after PID 1 died).
    pub netns: OwnedFd,
    /// Host-side interfaces for machined (the veth, or its bridge).
    pub ifindices: Vec<i32>,
    ports: Option<PortTracker>,
}

impl Net {
    /// The fd to poll for address changes inside the container, if ports are
    /// forwarded.
    pub fn watch_fd(&self) -> Option<BorrowedFd<'_>> {
        self.ports.as_ref().map(|p| p.watch.as_fd())
    }

    /// Addresses inside the container changed: follow them with the ports.
    pub fn on_address_change(&mut self, machine: &str) {
        if let Some(p) = self.ports.as_mut() {
            if p.watch.drain() {
                p.refresh(machine);
            }
        }
    }
}

/// The journal of what this machine's network set up on the host: one line
/// per thing, written before it is made, removed when the run ends cleanly.
struct Journal {
    path: PathBuf,
}

impl Journal {
    fn new(machine: &str) -> Journal {
        Journal {
            path: Path::new(JOURNAL_DIR).join(machine),
        }
    }

    fn note(&self, line: &str) {
        let _ = fs::create_dir_all(JOURNAL_DIR);
        if let Ok(mut f) = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            let _ = writeln!(f, "{line}");
        }
    }

    /// Undoes what a previous run of the machine left (it died without its
    /// teardown); this run holds the machine's lock, so that run is over.
    fn clean_stale(&self, host: &mut Rtnl) {
        let Ok(text) = fs::read_to_string(&self.path) else {
            return;
        };
        let mut nat = None;
        for line in text.lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            match w.as_slice() {
                ["link", name] => {
                    let _ = host.del_link_by_name(name);
                }
                ["zone", name] => remove_zone_if_empty(host, name),
                ["port", proto, hport, addr, cport] => {
                    let (Some(proto), Ok(h), Ok(a), Ok(c)) = (
                        nft::Proto::parse(proto),
                        hport.parse::<u16>(),
                        addr.parse::<IpAddr>(),
                        cport.parse::<u16>(),
                    ) else {
                        continue;
                    };
                    if nat.is_none() {
                        nat = Nat::open().ok();
                    }
                    if let Some(n) = nat.as_mut() {
                        let _ = n.del_port(proto, h, a, c);
                    }
                }
                _ => {}
            }
        }
        let _ = fs::remove_file(&self.path);
    }
}

/// The zone bridge goes with its last member, under nspawn's lock.
fn remove_zone_if_empty(host: &mut Rtnl, bridge: &str) {
    let _lock = lock_zones();
    if let Ok(Some(idx)) = host.link_index(bridge) {
        if host.bridge_members(idx).is_ok_and(|m| m.is_empty()) {
            let _ = host.del_link(idx);
        }
    }
}

/// nspawn's exclusive lock around zone bridges (so that a bridge being made by
/// one container is not removed as empty by another).
fn lock_zones() -> Option<OwnedFd> {
    use rustix::fs::{flock, FlockOperation, Mode, OFlags};
    let _ = fs::create_dir_all("/run/systemd");
    let fd = rustix::fs::open(
        ZONE_LOCK,
        OFlags::CREATE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .ok()?;
    flock(&fd, FlockOperation::LockExclusive).ok()?;
    Some(fd)
}

fn proto_of(p: Proto) -> nft::Proto {
    match p {
        Proto::Tcp => nft::Proto::Tcp,
        Proto::Udp => nft::Proto::Udp,
    }
}

/// Sets up the network of a container whose PID 1 is `leader` (cloned into a
/// new network namespace). Undo steps go onto `undo`; `reaped` says, when
/// they run, whether PID 1 is over.
pub fn setup(
    plan: &Plan,
    leader: i32,
    reaped: Rc<Cell<bool>>,
    undo: &mut Teardown<'_>,
) -> Result<Net, SupervisorError> {
    let n: &Network = &plan.network;
    let machine = &plan.machine;
    let netns: OwnedFd = fs::File::open(format!("/proc/{leader}/ns/net"))
        .map_err(|e| fail("opening the container's network namespace", e))?
        .into();
    let own: OwnedFd = fs::File::open("/proc/thread-self/ns/net")
        .map_err(|e| fail("opening our network namespace", e))?
        .into();
    let mut host = Rtnl::open().map_err(|e| fail("rtnetlink", e))?;
    let mut guest = Rtnl::open_in(netns.as_fd())
        .map_err(|e| fail("rtnetlink in the container's network namespace", e))?;
    let journal = Journal::new(machine);
    journal.clean_stale(&mut host);
    undo.push("removing the network journal", {
        let path = journal.path.clone();
        move || {
            let _ = fs::remove_file(path);
            Ok(())
        }
    });
    // Runs after every step that holds the namespace (moves back, links
    // removed inside) has let go of it.
    let veths = Rc::new(RefCell::new(Veths::default()));
    undo.push("removing the container's veths", {
        let veths = veths.clone();
        move || veths.take().remove(reaped.get())
    });

    guest
        .loopback_up()
        .map_err(|e| fail("setting up the container's loopback device", e))?;

    // 1. Host interfaces move in, renamed; back under their old names at the end.
    for p in &n.interfaces {
        let idx = host
            .link_index(&p.host)
            .map_err(|e| fail(&p.host, e))?
            .ok_or_else(|| fail("network interface", format!("{} does not exist", p.host)))?;
        host.move_to_netns(idx, netns.as_fd(), Some(&p.container))
            .map_err(|e| fail(format!("moving {} into the container", p.host), e))?;
        let (ns, own_ns) = (dup(&netns)?, dup(&own)?);
        let (cont, orig) = (p.container.clone(), p.host.clone());
        undo.push("moving an interface back to the host", move || {
            let mut g = Rtnl::open_in(ns.as_fd()).map_err(|e| e.to_string())?;
            let idx = g
                .link_index(&cont)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{cont} is gone from the container"))?;
            g.move_to_netns(idx, own_ns.as_fd(), Some(&orig))
                .map_err(|e| format!("{cont} → {orig}: {e}"))
        });
    }

    let host_id = if n.veth.is_some() || !n.veth_extra.is_empty() || !n.macvlans.is_empty() {
        Some(names::host_machine_id().map_err(|e| {
            fail(
                "the host's machine id (/etc/machine-id), for the interfaces' MAC addresses",
                e,
            )
        })?)
    } else {
        None
    };
    let mut ifindices = Vec::new();

    // 2. The main veth: ve-NAME (or vb-NAME, into a bridge or zone) and host0.
    let mut veth_index = None;
    if let (Some(attach), Some(id)) = (&n.veth, &host_id) {
        let bridged = *attach != VethAttach::None;
        let (short, full) = names::main_veth_names(machine, bridged);
        // What a crashed run of this machine may have left (NixOS's preStart
        // deletes these by hand).
        let _ = host.del_link_by_name(&short);
        journal.note(&format!("link {short}"));
        let idx = host
            .add_veth(
                &short,
                names::mac(id, machine, MacUse::VethHost, 0),
                "host0",
                names::mac(id, machine, MacUse::VethContainer, 0),
                netns.as_fd(),
            )
            .map_err(|e| fail(format!("creating the veth pair {short}:host0"), e))?;
        veths.borrow_mut().links.push(short.clone());
        if full != short {
            if let Err(e) = host.add_altname(idx, &full) {
                eprintln!("nixrun: warning: alternative name {full} for {short}: {e}");
            }
        }
        veth_index = Some(idx);
        ifindices.push(idx as i32);
        match attach {
            VethAttach::None => {}
            VethAttach::Bridge(br) => {
                let bi = host
                    .link_index(br)
                    .map_err(|e| fail(br, e))?
                    .ok_or_else(|| {
                        fail("--network-bridge", format!("bridge {br} does not exist"))
                    })?;
                host.set_master_and_up(idx, bi)
                    .map_err(|e| fail(format!("adding {short} to bridge {br}"), e))?;
                ifindices = vec![bi as i32];
            }
            VethAttach::Zone(zone) => {
                let br = format!("vz-{zone}");
                let bi = {
                    let _lock = lock_zones();
                    journal.note(&format!("zone {br}"));
                    let bi = match host.link_index(&br).map_err(|e| fail(&br, e))? {
                        Some(bi) => bi,
                        None => host
                            .add_bridge(&br)
                            .map_err(|e| fail(format!("creating the zone bridge {br}"), e))?,
                    };
                    host.set_master_and_up(idx, bi)
                        .map_err(|e| fail(format!("adding {short} to zone {br}"), e))?;
                    bi
                };
                // Once the veth is gone.
                veths.borrow_mut().zones.push(br);
                ifindices = vec![bi as i32];
            }
        }
    }

    // 3. Extra veths, names as given.
    for (i, p) in n.veth_extra.iter().enumerate() {
        let id = host_id.as_ref().expect("read when there are veths");
        let _ = host.del_link_by_name(&p.host);
        journal.note(&format!("link {}", p.host));
        host.add_veth(
            &p.host,
            names::mac(id, machine, MacUse::ExtraHost, i as u64),
            &p.container,
            names::mac(id, machine, MacUse::ExtraContainer, i as u64),
            netns.as_fd(),
        )
        .map_err(|e| {
            fail(
                format!("creating the veth pair {}:{}", p.host, p.container),
                e,
            )
        })?;
        veths.borrow_mut().links.push(p.host.clone());
    }

    // 4. Macvlans and ipvlans: made here on their lower link, born in the
    // container's namespace; removed there first, as the kernel might pin them.
    for (i, p) in n.macvlans.iter().enumerate() {
        let id = host_id.as_ref().expect("read when there are macvlans");
        let lower = lower_index(&mut host, &p.host)?;
        let name = names::shorten_ifname(&p.container);
        host.add_macvlan(
            &name,
            lower,
            names::mac(id, machine, MacUse::Macvlan, i as u64),
            netns.as_fd(),
        )
        .map_err(|e| fail(format!("creating the macvlan {name} on {}", p.host), e))?;
        push_delete_inside(undo, &netns, name)?;
    }
    for p in &n.ipvlans {
        let lower = lower_index(&mut host, &p.host)?;
        let name = names::shorten_ifname(&p.container);
        host.add_ipvlan(&name, lower, netns.as_fd())
            .map_err(|e| fail(format!("creating the ipvlan {name} on {}", p.host), e))?;
        push_delete_inside(undo, &netns, name)?;
    }

    // 5. Addresses and routes, before the guest's init runs (nixrun's own).
    // A bridged veth's host side is a bridge port: the host's addresses are
    // the bridge's business (NixOS's hostBridge puts none on it either).
    if let Some(idx) = veth_index {
        let bridged = n.veth.as_ref().is_some_and(|a| *a != VethAttach::None);
        configure_addresses(
            &mut host,
            &mut guest,
            (!bridged).then_some(idx),
            &n.host_addresses,
            &n.local_addresses,
        )?;
    }

    // 6. Ports, following the container's address.
    let ports = if n.ports.is_empty() {
        None
    } else {
        let watch = AddrWatch::open_in(netns.as_fd())
            .map_err(|e| fail("watching the container's addresses", e))?;
        let mut tracker = PortTracker {
            ports: n.ports.clone(),
            watch,
            guest,
            exposed: [None, None],
            journal: Journal::new(machine),
        };
        tracker.refresh(machine);
        Some(tracker)
    };
    drop(own);
    Ok(Net {
        netns,
        ifindices,
        ports,
    })
}

fn dup(fd: &OwnedFd) -> Result<OwnedFd, SupervisorError> {
    fd.try_clone().map_err(|e| fail("dup", e))
}

fn lower_index(host: &mut Rtnl, name: &str) -> Result<u32, SupervisorError> {
    host.link_index(name)
        .map_err(|e| fail(name, e))?
        .ok_or_else(|| fail("network interface", format!("{name} does not exist")))
}

/// How long a stop waits for the kernel to remove the veths with the
/// container's network namespace before deleting them itself: what an idle
/// kernel takes (0.1 ms measured), with room to spare. The namespaces'
/// cleanup worker is one for the whole host: when many containers stop at
/// once it lags (60 NixOS-shaped guests stopped together: 110–335 ms median),
/// and waiting for it longer (10 or 500 ms) made such a stop 9–16 % slower
/// than deleting right away (the worker's batches then unregister the
/// devices too). A
/// namespace that something else still holds (a bind mount of it, a host
/// process that entered it) does not release the veth at all.
const VETHS_GO_WITHIN: Duration = Duration::from_millis(2);

/// The host ends of the container's veth pairs, and the zone bridges they
/// joined. A veth goes with the network namespace its other end is in:
/// once the container's is released, the kernel's cleanup worker
/// unregisters both ends, on an idle host within a fraction of a
/// millisecond (measured here: 0.1 ms after its last process was reaped).
/// An RTM_DELLINK of our own does the same in our thread and then waits
/// there for RCU (its stack: rcu_barrier in netdev_run_todo; 10–38 ms here,
/// on every stop), as the worker does for the namespace's cleanup. So a stop
/// waits briefly for the kernel, and deletes what is still there after
/// `VETHS_GO_WITHIN`, or at once if the container is not over (a boot that
/// failed half-way). nspawn deletes its veth at exit too, and usually finds
/// it gone already.
#[derive(Default)]
struct Veths {
    links: Vec<String>,
    zones: Vec<String>,
}

impl Veths {
    fn remove(self, container_over: bool) -> Result<(), String> {
        let mut left: Vec<String> = self.links;
        if container_over && !left.is_empty() {
            left = wait_gone(left);
        }
        // The usual stop ends here: the kernel took the veths, no zone.
        if left.is_empty() && self.zones.is_empty() {
            return Ok(());
        }
        let mut host = Rtnl::open().map_err(|e| e.to_string())?;
        let mut errors = Vec::new();
        for name in &left {
            if let Err(e) = host.del_link_by_name(name) {
                errors.push(format!("{name}: {e}"));
            }
        }
        for zone in &self.zones {
            remove_zone_if_empty(&mut host, zone);
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

/// The links of `names` still there after waiting for them to go (all of
/// them if the wait itself fails). Looked up by the watch, which takes no
/// RTNL: an RTM_GETLINK queued behind everyone else's link changes when
/// many containers stop at once (measured: 0.14 s median, up to 1.6 s, with
/// 60 stopping).
fn wait_gone(names: Vec<String>) -> Vec<String> {
    let deadline = Instant::now() + VETHS_GO_WITHIN;
    let Ok(mut watch) = LinkWatch::open() else {
        return names;
    };
    let mut there = Vec::new();
    for name in &names {
        match watch.index(name) {
            Ok(Some(i)) => there.push((i, name.clone())),
            Ok(None) => {}
            Err(_) => return names,
        }
    }
    let indexes = there.iter().map(|(i, _)| *i).collect();
    match watch.wait_gone(indexes, deadline) {
        Ok(left) => there
            .into_iter()
            .filter(|(i, _)| left.contains(i))
            .map(|(_, name)| name)
            .collect(),
        Err(_) => names,
    }
}

fn push_delete_inside(
    undo: &mut Teardown<'_>,
    netns: &OwnedFd,
    name: String,
) -> Result<(), SupervisorError> {
    let ns = dup(netns)?;
    undo.push("deleting a link in the container", move || {
        let mut g = Rtnl::open_in(ns.as_fd()).map_err(|e| e.to_string())?;
        g.del_link_by_name(&name)
            .map(drop)
            .map_err(|e| format!("{name}: {e}"))
    });
    Ok(())
}

/// The host side (unless bridged) gets the host addresses and routes to the
/// local ones; host0 gets the local addresses, routes to the host addresses
/// and, per family, a default route via the first host address. Idempotent
/// (replace): a guest init that adds the same again (NixOS's containerInit,
/// made idempotent) is not disturbed.
fn configure_addresses(
    host: &mut Rtnl,
    guest: &mut Rtnl,
    host_side: Option<u32>,
    host_addrs: &[IpNet],
    local_addrs: &[IpNet],
) -> Result<(), SupervisorError> {
    if let (Some(veth), false) = (host_side, host_addrs.is_empty()) {
        host.set_up(veth)
            .map_err(|e| fail("setting the veth up", e))?;
        for a in host_addrs {
            host.replace_address(veth, a.addr, a.prefix)
                .map_err(|e| fail(format!("adding {} to the host side", a.addr), e))?;
        }
        for l in local_addrs {
            host.replace_route(l.addr, IpNet::host_prefix(l.addr), veth, None)
                .map_err(|e| fail(format!("routing {} to the container", l.addr), e))?;
        }
    }
    if !local_addrs.is_empty() {
        let h0 = guest
            .link_index("host0")
            .map_err(|e| fail("host0", e))?
            .ok_or_else(|| fail("host0", "missing in the container"))?;
        guest.set_up(h0).map_err(|e| fail("setting host0 up", e))?;
        for l in local_addrs {
            guest
                .replace_address(h0, l.addr, l.prefix)
                .map_err(|e| fail(format!("adding {} to host0", l.addr), e))?;
        }
        for h in host_addrs {
            guest
                .replace_route(h.addr, IpNet::host_prefix(h.addr), h0, None)
                .map_err(|e| fail(format!("routing {} in the container", h.addr), e))?;
        }
        for v4 in [true, false] {
            if let Some(gw) = host_addrs.iter().find(|h| h.addr.is_ipv4() == v4) {
                let any: IpAddr = if v4 {
                    std::net::Ipv4Addr::UNSPECIFIED.into()
                } else {
                    std::net::Ipv6Addr::UNSPECIFIED.into()
                };
                guest
                    .replace_route(any, 0, h0, Some(gw.addr))
                    .map_err(|e| fail(format!("default route via {}", gw.addr), e))?;
            }
        }
    }
    Ok(())
}

/// Forwarded ports, kept pointing at the container's current address.
struct PortTracker {
    ports: Vec<Port>,
    watch: AddrWatch,
    /// rtnetlink in the container's namespace, to list its addresses.
    guest: Rtnl,
    /// The address exposed per family (IPv4, IPv6).
    exposed: [Option<IpAddr>; 2],
    journal: Journal,
}

impl PortTracker {
    /// nspawn's rule: of the container's addresses sorted IPv4 first, then by
    /// scope, interface and address, the first of each family — exposed if it
    /// is global or site-local.
    fn choose(&mut self) -> [Option<IpAddr>; 2] {
        let mut addrs = self.guest.addresses().unwrap_or_default();
        addrs.sort_by_key(|a| (!a.addr.is_ipv4(), a.scope, a.index, a.addr));
        let mut out = [None, None];
        for (slot, v4) in [(0, true), (1, false)] {
            out[slot] = addrs
                .iter()
                .find(|a| a.addr.is_ipv4() == v4)
                .filter(|a| a.scope < 253) // universe (0) or site (200), not link or host
                .map(|a| a.addr);
        }
        out
    }

    fn refresh(&mut self, machine: &str) {
        let now = self.choose();
        let Ok(mut nat) = Nat::open() else {
            eprintln!("nixrun: warning: {machine}: cannot open nftables for --port");
            return;
        };
        for (slot, now) in now.into_iter().enumerate() {
            if now == self.exposed[slot] {
                continue;
            }
            for p in &self.ports {
                if let Some(old) = self.exposed[slot] {
                    let _ = nat.del_port(proto_of(p.proto), p.host, old, p.container);
                }
                if let Some(new) = now {
                    self.journal.note(&format!(
                        "port {} {} {} {}",
                        match p.proto {
                            Proto::Tcp => "tcp",
                            Proto::Udp => "udp",
                        },
                        p.host,
                        new,
                        p.container
                    ));
                    if let Err(e) = nat.add_port(proto_of(p.proto), p.host, new, p.container) {
                        eprintln!(
                            "nixrun: warning: {machine}: forwarding port {} to {new}: {e}",
                            p.host
                        );
                    }
                }
            }
            self.exposed[slot] = now;
        }
    }
}

impl Drop for PortTracker {
    fn drop(&mut self) {
        if let Ok(mut nat) = Nat::open() {
            for addr in self.exposed.iter().flatten() {
                for p in &self.ports {
                    let _ = nat.del_port(proto_of(p.proto), p.host, *addr, p.container);
                }
            }
        }
        // The journal goes with the boot's teardown, after the links.
    }
}
