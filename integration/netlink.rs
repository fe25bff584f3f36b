//! The rtnetlink client (`nixrun::net::rtnl`) against real links, and nspawn's
//! interface names and MACs against ours (`nixrun::net::names`).
//!
//! Every test works in network namespaces of its own (`ip netns add`, removed
//! on drop, also after a failure) and never changes the host's network. The
//! kernel here has veth, bridge and macvlan but no dummy or ipvlan driver: one
//! end of a veth pair stands in for a physical NIC.

mod common;

use common::*;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nixrun::net::names::{self, MacUse};
use nixrun::net::rtnl::{self, AddrWatch, Address, LinkWatch, Rtnl};
use nixrun::net::Mac;
use serde_json::Value;
use std::fs::{self, File};
use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

const MAC_A: Mac = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: Mac = [0x02, 0, 0, 0, 0, 0x0b];

/// A named network namespace (/run/netns/NAME), deleted on drop with every
/// virtual link in it.
struct Netns {
    name: String,
    file: File,
}

impl Netns {
    fn new() -> Netns {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        require_root();
        require_tool("ip", "iproute2");
        let name = format!(
            "nixrun-t-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip netns add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let file = File::open(format!("/run/netns/{name}")).expect("open the netns");
        Netns { name, file }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    fn rtnl(&self) -> Rtnl {
        Rtnl::open_in(self.fd()).expect("rtnetlink socket in the test netns")
    }

    /// `ip -n NAME -j ARGS` as JSON (ip's own view, independent of ours).
    fn ip_json(&self, args: &[&str]) -> Option<Value> {
        let out = Command::new("ip")
            .args(["-n", &self.name, "-j"])
            .args(args)
            .output()
            .expect("run ip");
        if !out.status.success() {
            return None;
        }
        Some(serde_json::from_slice(&out.stdout).expect("ip -j prints JSON"))
    }

    /// `ip -d link show NAME` in this namespace, if the link exists.
    fn link(&self, name: &str) -> Option<Value> {
        let v = self.ip_json(&["-d", "link", "show", "dev", name])?;
        v.as_array()?.first().cloned()
    }

    fn has_link(&self, name: &str) -> bool {
        self.link(name).is_some()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn flags(link: &Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn is_up(link: &Value) -> bool {
    flags(link).iter().any(|f| f == "UP")
}

fn altnames(link: &Value) -> Vec<String> {
    link["altnames"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn veth_pair_spans_two_namespaces_with_its_macs_and_an_altname() {
    let host = Netns::new();
    let cont = Netns::new();
    let mut rt = host.rtnl();
    let idx = rt
        .add_veth("ve-t", MAC_A, "host0", MAC_B, cont.fd())
        .unwrap();

    assert_eq!(rt.link_index("ve-t").unwrap(), Some(idx));
    assert_eq!(rt.link_name(idx).unwrap(), "ve-t");
    assert_eq!(rt.link_kind(idx).unwrap().as_deref(), Some("veth"));
    assert_eq!(rt.link_mac(idx).unwrap(), Some(MAC_A));
    assert_eq!(rt.link_master(idx).unwrap(), None);
    assert_eq!(
        rt.link_index("host0").unwrap(),
        None,
        "the peer is not here"
    );
    let h = host.link("ve-t").unwrap();
    assert_eq!(h["address"], "02:00:00:00:00:0a");
    assert!(!is_up(&h), "nspawn leaves both ends down: {h}");
    let c = cont.link("host0").expect("the peer in the other namespace");
    assert_eq!(c["address"], "02:00:00:00:00:0b");
    assert!(!is_up(&c), "{c}");

    rt.add_altname(idx, "ve-a-long-machine-name").unwrap();
    let h = host.link("ve-t").unwrap();
    assert_eq!(altnames(&h), ["ve-a-long-machine-name"], "{h}");
    assert!(
        host.has_link("ve-a-long-machine-name"),
        "ip resolves the altname"
    );

    let e = rt
        .add_veth("ve-t", MAC_A, "host1", MAC_B, cont.fd())
        .unwrap_err();
    assert_eq!(rtnl::errno(&e), Some(libc::EEXIST), "{e}");
    assert!(e.to_string().contains("creating veth ve-t"), "{e}");

    rt.del_link(idx).unwrap();
    assert!(!host.has_link("ve-t"));
    assert!(!cont.has_link("host0"), "deleting one end deletes its peer");
    rt.del_link(idx).expect("a link already gone is no error");
    assert!(!rt.del_link_by_name("ve-t").unwrap());
    let e = rt.link_name(idx).unwrap_err();
    assert_eq!(rtnl::errno(&e), Some(libc::ENODEV), "{e}");
}

#[test]
fn del_link_by_name_finds_the_link() {
    let host = Netns::new();
    let mut rt = host.rtnl();
    rt.add_veth("ve-del", MAC_A, "ve-del-p", MAC_B, host.fd())
        .unwrap();
    assert!(rt.del_link_by_name("ve-del").unwrap());
    assert!(!host.has_link("ve-del"));
    assert!(!host.has_link("ve-del-p"));
}

#[test]
fn bridge_takes_a_veth_end_and_sets_it_up() {
    let host = Netns::new();
    let cont = Netns::new();
    let mut rt = host.rtnl();
    let br = rt.add_bridge("vz-t").unwrap();
    assert_eq!(rt.link_kind(br).unwrap().as_deref(), Some("bridge"));
    assert_eq!(rt.bridge_members(br).unwrap(), Vec::<u32>::new());
    assert!(!is_up(&host.link("vz-t").unwrap()), "a new bridge is down");

    let vb = rt
        .add_veth("vb-t", MAC_A, "host0", MAC_B, cont.fd())
        .unwrap();
    rt.set_master_and_up(vb, br).unwrap();
    assert_eq!(rt.link_master(vb).unwrap(), Some(br));
    assert_eq!(rt.bridge_members(br).unwrap(), [vb]);
    let l = host.link("vb-t").unwrap();
    assert_eq!(l["master"], "vz-t", "{l}");
    assert!(is_up(&l), "{l}");

    rt.set_up(br).unwrap();
    assert!(is_up(&host.link("vz-t").unwrap()));
    rt.set_down(vb).unwrap();
    assert!(!is_up(&host.link("vb-t").unwrap()));

    rt.del_link(br).unwrap();
    assert_eq!(rt.link_master(vb).unwrap(), None);
}

#[test]
fn a_link_moves_renamed_and_comes_back() {
    let a = Netns::new();
    let b = Netns::new();
    let mut ra = a.rtnl();
    // Both ends in `a`: `nic0` plays the physical NIC of --network-interface=.
    let idx = ra
        .add_veth("nic0", MAC_A, "nic0-peer", MAC_B, a.fd())
        .unwrap();

    ra.move_to_netns(idx, b.fd(), Some("eth1")).unwrap();
    assert_eq!(ra.link_index("nic0").unwrap(), None);
    let l = b.link("eth1").expect("moved and renamed in one step");
    assert_eq!(l["address"], "02:00:00:00:00:0a");

    let mut rb = b.rtnl();
    let in_b = rb.link_index("eth1").unwrap().unwrap();
    rb.move_to_netns(in_b, a.fd(), Some("nic0")).unwrap();
    assert!(!b.has_link("eth1"));
    let back = ra.link_index("nic0").unwrap().expect("back under its name");
    assert_eq!(ra.link_mac(back).unwrap(), Some(MAC_A));

    ra.move_to_netns(back, b.fd(), None).unwrap();
    assert!(b.has_link("nic0"), "a move without a name keeps it");
}

#[test]
fn macvlan_over_a_veth_end_is_created_in_the_container() {
    let host = Netns::new();
    let cont = Netns::new();
    let mut rt = host.rtnl();
    let lower = rt
        .add_veth("phys0", MAC_A, "phys0-p", MAC_B, host.fd())
        .unwrap();
    let mac = names::mac(&[7; 16], "t", MacUse::Macvlan, 0);
    rt.add_macvlan("mv-phys0", lower, mac, cont.fd()).unwrap();

    assert_eq!(rt.link_index("mv-phys0").unwrap(), None);
    let l = cont.link("mv-phys0").expect("the macvlan in the container");
    assert_eq!(l["address"], names::format_mac(&mac));
    assert_eq!(l["linkinfo"]["info_kind"], "macvlan", "{l}");
    assert_eq!(l["linkinfo"]["info_data"]["mode"], "bridge", "{l}");
    let mut rc = cont.rtnl();
    let idx = rc.link_index("mv-phys0").unwrap().unwrap();
    assert_eq!(rc.link_kind(idx).unwrap().as_deref(), Some("macvlan"));
    rc.del_link(idx).unwrap();
    assert!(!cont.has_link("mv-phys0"));
}

#[test]
fn ipvlan_reports_what_the_kernel_says() {
    let host = Netns::new();
    let cont = Netns::new();
    let mut rt = host.rtnl();
    let lower = rt
        .add_veth("phys0", MAC_A, "phys0-p", MAC_B, host.fd())
        .unwrap();
    match rt.add_ipvlan("iv-phys0", lower, cont.fd()) {
        // A kernel with the driver: the link is in the container, in L2 mode.
        Ok(()) => {
            let l = cont.link("iv-phys0").expect("the ipvlan in the container");
            assert_eq!(l["linkinfo"]["info_kind"], "ipvlan", "{l}");
            assert_eq!(l["linkinfo"]["info_data"]["mode"], "l2", "{l}");
        }
        // This one's: the driver's absence, said plainly.
        Err(e) => {
            eprintln!("add_ipvlan: {e}");
            assert_eq!(rtnl::errno(&e), Some(libc::EOPNOTSUPP), "{e}");
            let text = e.to_string();
            assert!(text.contains("creating ipvlan iv-phys0"), "{text}");
            assert!(text.contains("EOPNOTSUPP"), "{text}");
            assert!(!cont.has_link("iv-phys0"));
        }
    }
}

#[test]
fn addresses_and_routes_can_be_set_twice() {
    let host = Netns::new();
    let cont = Netns::new();
    let mut rt = host.rtnl();
    let idx = rt
        .add_veth("ve-addr", MAC_A, "host0", MAC_B, cont.fd())
        .unwrap();
    rt.set_up(idx).unwrap();
    for _ in 0..2 {
        rt.replace_address(idx, ip("10.233.1.1"), 32).unwrap();
        rt.replace_address(idx, ip("fd00:1::1"), 128).unwrap();
        rt.replace_route(ip("10.233.1.2"), 32, idx, None).unwrap();
        rt.replace_route(ip("0.0.0.0"), 0, idx, Some(ip("10.233.1.2")))
            .unwrap();
        rt.replace_route(ip("fd00:1::2"), 128, idx, None).unwrap();
        rt.replace_route(ip("::"), 0, idx, Some(ip("fd00:1::2")))
            .unwrap();
    }

    let mine: Vec<Address> = rt
        .addresses()
        .unwrap()
        .into_iter()
        .filter(|a| a.index == idx)
        .collect();
    let v4: Vec<&Address> = mine.iter().filter(|a| a.addr.is_ipv4()).collect();
    assert_eq!(v4.len(), 1, "{mine:?}");
    assert_eq!(
        (v4[0].addr, v4[0].prefix, v4[0].scope),
        (ip("10.233.1.1"), 32, 0)
    );
    assert!(
        mine.iter()
            .any(|a| a.addr == ip("fd00:1::1") && a.prefix == 128),
        "{mine:?}"
    );

    let routes = host.ip_json(&["route", "show"]).unwrap();
    let routes = routes.as_array().unwrap();
    let direct: Vec<&Value> = routes.iter().filter(|r| r["dst"] == "10.233.1.2").collect();
    assert_eq!(direct.len(), 1, "{routes:?}");
    assert_eq!(direct[0]["dev"], "ve-addr");
    assert_eq!(direct[0]["scope"], "link");
    assert!(
        routes
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "10.233.1.2"),
        "{routes:?}"
    );
    let routes6 = host.ip_json(&["-6", "route", "show"]).unwrap();
    let routes6 = routes6.as_array().unwrap();
    assert_eq!(
        routes6.iter().filter(|r| r["dst"] == "fd00:1::2").count(),
        1,
        "{routes6:?}"
    );
    assert!(
        routes6
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "fd00:1::2"),
        "{routes6:?}"
    );
}

#[test]
fn loopback_comes_up_with_both_addresses() {
    let ns = Netns::new();
    let mut rt = ns.rtnl();
    assert!(
        !is_up(&ns.link("lo").unwrap()),
        "a new namespace's lo is down"
    );
    rt.loopback_up().unwrap();
    rt.loopback_up().expect("a second time changes nothing");
    assert!(is_up(&ns.link("lo").unwrap()));
    let addrs = rt.addresses().unwrap();
    for (addr, prefix) in [(ip("127.0.0.1"), 8), (ip("::1"), 128)] {
        assert!(
            addrs
                .iter()
                .any(|a| a.index == 1 && a.addr == addr && a.prefix == prefix && a.scope == 254),
            "{addr}/{prefix} scope host missing: {addrs:?}"
        );
    }
}

fn readable(fd: BorrowedFd<'_>, ms: u16) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::from(ms)).unwrap() > 0
}

#[test]
fn the_address_watch_hears_its_namespace_only() {
    let ns = Netns::new();
    let other = Netns::new();
    let mut w = AddrWatch::open_in(ns.fd()).unwrap();
    assert!(!w.drain(), "nothing happened yet");

    let mut rt = ns.rtnl();
    let idx = rt
        .add_veth("ve-w", MAC_A, "ve-w-p", MAC_B, ns.fd())
        .unwrap();
    rt.replace_address(idx, ip("10.233.2.1"), 32).unwrap();
    assert!(readable(w.as_fd(), 5000), "no notification within 5 s");
    assert!(w.drain());
    assert!(!w.drain(), "drained");

    let mut ro = other.rtnl();
    let oidx = ro
        .add_veth("ve-o", MAC_A, "ve-o-p", MAC_B, other.fd())
        .unwrap();
    ro.replace_address(oidx, ip("10.233.3.1"), 32).unwrap();
    assert!(!readable(w.as_fd(), 300), "heard another namespace");

    rt.del_link(idx).unwrap();
    assert!(readable(w.as_fd(), 5000), "no notification of the removal");
    assert!(w.drain());
}

#[test]
fn the_link_watch_sees_a_veth_go_with_its_peers_namespace() {
    let ns = Netns::new();
    let peer = Netns::new();
    let mut rt = ns.rtnl();
    let idx = rt
        .add_veth("ve-g", MAC_A, "host0", MAC_B, peer.fd())
        .unwrap();
    let br = rt.add_bridge("nxt-brg").unwrap();
    rt.set_master_and_up(idx, br).unwrap();
    let mut w = LinkWatch::open_in(ns.fd()).unwrap();
    // Looked up in the watched namespace, not the caller's.
    assert_eq!(w.index("ve-g").unwrap(), Some(idx));
    assert_eq!(w.index("nxt-nonesuch").unwrap(), None);

    // Leaving its bridge (an RTM_DELLINK of the bridge's) is not leaving
    // the namespace: still there when the wait runs out.
    let out = Command::new("ip")
        .args(["-n", &ns.name, "link", "set", "ve-g", "nomaster"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let soon = Instant::now() + Duration::from_millis(300);
    assert_eq!(w.wait_gone(vec![idx], soon).unwrap(), [idx]);
    assert!(ns.has_link("ve-g"));

    // Its peer's namespace released: the kernel removes the pair, and the
    // wait ends with nothing left.
    drop(peer);
    let later = Instant::now() + Duration::from_secs(10);
    assert_eq!(w.wait_gone(vec![idx], later).unwrap(), Vec::<u32>::new());
    assert!(!ns.has_link("ve-g"));
    assert_eq!(w.index("ve-g").unwrap(), None);
    // A link not there to begin with is not waited for.
    assert!(w.wait_gone(vec![], soon).unwrap().is_empty());
}

#[test]
fn a_socket_in_another_namespace_leaves_the_caller_at_home() {
    let inode = || fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
    let before = inode();
    let ns = Netns::new();
    let mut there = ns.rtnl();
    assert_eq!(inode(), before);
    let mut here = Rtnl::open().unwrap();

    there.add_bridge("nxt-br0").unwrap();
    assert!(ns.has_link("nxt-br0"));
    assert_eq!(here.link_index("nxt-br0").unwrap(), None);
    // Read-only look at the host: lo is #1 everywhere.
    assert_eq!(here.link_index("lo").unwrap(), Some(1));
    assert_eq!(here.link_name(1).unwrap(), "lo");
    assert_eq!(here.link_kind(1).unwrap(), None);
    assert_eq!(here.link_master(1).unwrap(), None);
    assert_eq!(here.link_index("no-such-link").unwrap(), None);
}

/// What nspawn made for one machine, as ip(8) shows it.
#[derive(Debug)]
struct NspawnLinks {
    host_name: String,
    host_altnames: Vec<String>,
    host_mac: String,
    host_up: bool,
    container_mac: String,
    container_up: bool,
    /// Links in the container's namespace besides lo.
    container_links: Vec<String>,
}

/// nspawn running in a test namespace, stopped (SIGTERM, then reaped) on drop.
struct Nspawn(Child);

impl Drop for Nspawn {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nixrun::sys::process::kill(pid, libc::SIGTERM);
        let _ = self.0.wait();
    }
}

fn links_of_pid(pid: &str) -> Option<Vec<Value>> {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .args(["ip", "-j", "-d", "link", "show"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()?
        .as_array()
        .cloned()
}

fn run_nspawn(machine: &str) -> NspawnLinks {
    let ns = Netns::new();
    let tag = format!("net-nspawn-{}", machine.len());
    let (dir, root) = TempRoot::copy_of(&tag, &fixture("minimal"), "root");
    // nspawn wants a tree that looks like an OS.
    fs::create_dir_all(root.join("usr")).unwrap();
    let log = dir.path("nspawn.log");
    let unit = UnitCgroup::new(&tag);
    let mut cmd = Command::new("nsenter");
    // Not `ip netns exec`: its private mount namespace hides /sys/fs/cgroup.
    cmd.arg(format!("--net=/run/netns/{}", ns.name))
        .args(["systemd-nspawn", "--keep-unit", "--register=no", "-q", "-D"])
        .arg(&root)
        .args(["-n", "-M", machine, "/nixrun-probe", "sleep", "30"])
        .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
        .stdin(Stdio::null())
        .stdout(File::create(&log).unwrap())
        .stderr(File::create(&log).unwrap());
    unit.enter(&mut cmd);
    let mut nspawn = Nspawn(cmd.spawn().expect("spawn nsenter systemd-nspawn"));

    // The guest's netns holds host0 once nspawn has set the veth up and the
    // payload runs.
    let deadline = Instant::now() + Duration::from_secs(30);
    let container = 'found: loop {
        if let Some(st) = nspawn.0.try_wait().unwrap() {
            panic!(
                "nspawn exited ({st}) before its guest ran: {}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no host0 in nspawn's guest within 30 s: {}",
            fs::read_to_string(&log).unwrap_or_default()
        );
        for pid in processes_in(&unit.v2().join("payload")) {
            if let Some(links) = links_of_pid(&pid) {
                if links.iter().any(|l| l["ifname"] == "host0") {
                    break 'found links;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let host0 = container.iter().find(|l| l["ifname"] == "host0").unwrap();
    let host_links = ns.ip_json(&["-d", "link", "show"]).unwrap();
    let veths: Vec<&Value> = host_links
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["linkinfo"]["info_kind"] == "veth")
        .collect();
    assert_eq!(veths.len(), 1, "nspawn's links: {host_links}");
    let seen = NspawnLinks {
        host_name: veths[0]["ifname"].as_str().unwrap().into(),
        host_altnames: altnames(veths[0]),
        host_mac: veths[0]["address"].as_str().unwrap().into(),
        host_up: is_up(veths[0]),
        container_mac: host0["address"].as_str().unwrap().into(),
        container_up: is_up(host0),
        container_links: container
            .iter()
            .filter_map(|l| l["ifname"].as_str())
            .filter(|n| *n != "lo")
            .map(String::from)
            .collect(),
    };

    drop(nspawn);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !processes_in(unit.v2()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "nspawn's guest survived its stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for d in &unit.dirs {
        for sub in ["payload", "supervisor"] {
            let _ = fs::remove_dir(d.join(sub));
        }
    }
    assert!(
        !ns.has_link(&seen.host_name),
        "nspawn removed its veth at exit"
    );
    seen
}

#[test]
fn nspawn_names_and_macs_are_ours() {
    require_tool("systemd-nspawn", "systemd-container");
    require_tool("nsenter", "util-linux");
    let host_id = names::host_machine_id().expect("this host's /etc/machine-id");
    let pid = std::process::id();
    // Short: the name as is; long (16+ with "ve-"): shortened, full name as altname.
    for machine in [
        format!("nt{}", pid % 100_000),
        format!("nixrun-t-{pid}-longname"),
    ] {
        let seen = run_nspawn(&machine);
        eprintln!("nspawn -n -M {machine}: {seen:#?}");
        let (kernel, full) = names::main_veth_names(&machine, false);
        let want_host = names::format_mac(&names::mac(&host_id, &machine, MacUse::VethHost, 0));
        let want_cont =
            names::format_mac(&names::mac(&host_id, &machine, MacUse::VethContainer, 0));
        assert_eq!(seen.host_name, kernel, "{machine}: host-side name");
        let want_alt: Vec<String> = if kernel == full { vec![] } else { vec![full] };
        assert_eq!(seen.host_altnames, want_alt, "{machine}: altnames");
        assert_eq!(seen.host_mac, want_host, "{machine}: host-side MAC");
        assert_eq!(seen.container_mac, want_cont, "{machine}: host0's MAC");
        assert!(!seen.host_up && !seen.container_up, "{machine}: {seen:?}");
        assert_eq!(seen.container_links, ["host0"], "{machine}");
    }
}
