//! Port forwarding through `nixrun::net::nft` against the kernel, as root, in
//! network namespaces each test makes and removes (never the host's network):
//! the table's objects as `nft` lists them, the same table side by side with
//! the one systemd-nspawn makes, packets really forwarded (IPv4 and IPv6, from
//! the host itself and through it), and the table coming back after
//! `nft flush ruleset`.
//!
//! Needs the `nft` binary (Debian package nftables) to look at the tables, `ip`
//! and `nsenter`; systemd-nspawn (systemd-container) for the comparison.

mod common;

use common::*;
use nixrun::net::nft::{Family, Forward, Nat, Proto};
use serde_json::{json, Value};
use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const TABLE: &str = "io.systemd.nat";

fn require_tools() {
    require_root();
    require_tool("nft", "nftables");
    require_tool("ip", "iproute2");
    require_tool("nsenter", "util-linux");
}

/// A named network namespace (`ip netns`), deleted on drop.
struct NetNs {
    name: String,
}

static NS_SEQ: AtomicU32 = AtomicU32::new(0);

impl NetNs {
    fn new(tag: &str) -> NetNs {
        require_tools();
        let name = format!(
            "nxnft-{tag}-{}-{}",
            std::process::id(),
            NS_SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        run_ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = NetNs { name };
        ns.ip("link set lo up");
        ns
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// `ip -n NAME ARGS` (split on spaces), which must succeed.
    fn ip(&self, args: &str) {
        run_ok(
            Command::new("ip")
                .args(["-n", &self.name])
                .args(args.split(' ')),
        );
    }

    /// A command run in this namespace (its network only).
    fn cmd(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path())).arg("--").args(argv);
        c
    }

    fn nft(&self, args: &[&str]) -> String {
        let mut argv = vec!["nft"];
        argv.extend_from_slice(args);
        run_ok(&mut self.cmd(&argv))
    }

    fn sysctl(&self, path: &str, value: &str) {
        run_ok(&mut self.cmd(&["sh", "-c", &format!("echo {value} > /proc/sys/{path}")]));
    }

    /// Runs `f` on a thread of its own that has joined this namespace: a
    /// netlink or TCP socket belongs to the namespace of the thread making it.
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(move || {
                let fd = fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET)
                    .unwrap_or_else(|e| panic!("setns {path}: {e}"));
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// A `Nat` call in this namespace.
    fn nat<T: Send>(&self, f: impl FnOnce(&mut Nat) -> std::io::Result<T> + Send) -> T {
        self.run(|| {
            let mut nat = Nat::open().expect("Nat::open");
            f(&mut nat).expect("nft call")
        })
    }

    /// The table of `family` ("ip", "ip6") as `nft -j` lists it, without
    /// handles (they count objects ever made in the namespace) and metainfo.
    fn table(&self, family: &str) -> Vec<Value> {
        let out = self.nft(&["-j", "list", "table", family, TABLE]);
        let v: Value = serde_json::from_str(&out).expect("nft -j output");
        v["nftables"]
            .as_array()
            .expect("nftables array")
            .iter()
            .filter(|o| o.get("metainfo").is_none())
            .map(|o| {
                let mut o = o.clone();
                for inner in o.as_object_mut().unwrap().values_mut() {
                    if let Some(m) = inner.as_object_mut() {
                        m.remove("handle");
                    }
                }
                o
            })
            .collect()
    }

    fn has_table(&self, family: &str) -> bool {
        self.cmd(&["nft", "list", "table", family, TABLE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }

    /// The kernel's view of the table, expression by expression and register
    /// by register (`nft --debug=netlink`), without rule handles.
    fn netlink_view(&self, family: &str) -> String {
        let out = self.nft(&["--debug=netlink", "list", "table", family, TABLE]);
        out.lines()
            .take_while(|l| !l.starts_with("table "))
            .map(|l| {
                // "ip io.systemd.nat prerouting 6": the last word is the handle.
                let w: Vec<&str> = l.split(' ').collect();
                if w.len() == 4 && w[1] == TABLE {
                    w[..3].join(" ")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn fwd(proto: Proto, host_port: u16, a: &str, port: u16) -> Forward {
    Forward {
        proto,
        host_port,
        addr: addr(a),
        port,
    }
}

/// A map element as `nft -j` prints it.
fn elem(proto: &str, host_port: u16, a: &str, port: u16) -> Value {
    json!([{"concat": [proto, host_port]}, {"concat": [a, port]}])
}

/// systemd's table for `family` ("ip" or "ip6") as `nft -j` lists it, without
/// handles, holding `elems` in its map.
fn systemd_table(family: &str, elems: Vec<Value>) -> Vec<Value> {
    let (addr_type, l3) = match family {
        "ip" => ("ipv4_addr", "ip"),
        _ => ("ipv6_addr", "ip6"),
    };
    let not_loopback = match family {
        "ip" => json!({"match": {"op": "!=",
            "left": {"payload": {"protocol": "ip", "field": "daddr"}},
            "right": {"prefix": {"addr": "127.0.0.0", "len": 8}}}}),
        _ => json!({"match": {"op": "!=",
            "left": {"payload": {"protocol": "ip6", "field": "daddr"}},
            "right": "::1"}}),
    };
    let dnat = json!({"dnat": {"family": family, "addr": {"map": {
        "key": {"concat": [{"meta": {"key": "l4proto"}},
                           {"payload": {"protocol": "th", "field": "dport"}}]},
        "data": "@map_port_ipport"}}}});
    let mut map = json!({"family": family, "name": "map_port_ipport", "table": TABLE,
        "type": ["inet_proto", "inet_service"], "map": format!("{addr_type} . inet_service")});
    if !elems.is_empty() {
        map["elem"] = Value::Array(elems);
    }
    let chain = |name: &str, prio: i32| {
        json!({"chain": {"family": family, "table": TABLE, "name": name,
            "type": "nat", "hook": name, "prio": prio, "policy": "accept"}})
    };
    let rule = |chain: &str, expr: Value| json!({"rule": {"family": family, "table": TABLE, "chain": chain, "expr": expr}});
    vec![
        json!({"table": {"family": family, "name": TABLE}}),
        json!({"set": {"family": family, "name": "masq_saddr", "table": TABLE,
            "type": addr_type, "flags": ["interval"]}}),
        json!({ "map": map }),
        chain("prerouting", -99),
        chain("output", -99),
        chain("postrouting", 101),
        rule(
            "prerouting",
            json!([{"match": {"op": "==",
                "left": {"fib": {"result": "type", "flags": ["daddr"]}},
                "right": "local"}}, dnat]),
        ),
        rule(
            "output",
            json!([not_loopback,
                {"match": {"op": "==", "left": {"meta": {"key": "oif"}}, "right": "lo"}},
                dnat]),
        ),
        rule(
            "postrouting",
            json!([{"match": {"op": "==",
                "left": {"payload": {"protocol": l3, "field": "saddr"}},
                "right": "@masq_saddr"}},
                {"masquerade": null}]),
        ),
    ]
}

fn assert_table(ns: &NetNs, family: &str, elems: Vec<Value>) {
    assert_same_json(
        &format!("{family} {TABLE}: as listed (left) and systemd's (right)"),
        &ns.table(family),
        &systemd_table(family, elems),
    );
}

fn assert_same_json(what: &str, left: &[Value], right: &[Value]) {
    assert!(
        left == right,
        "{what} differ:\n left: {}\nright: {}",
        serde_json::to_string_pretty(left).unwrap(),
        serde_json::to_string_pretty(right).unwrap()
    );
}

#[test]
fn the_tables_hold_systemds_objects_and_the_elements() {
    let host_had = (NetNs::host_has_table("ip"), NetNs::host_has_table("ip6"));
    let ns = NetNs::new("objs");
    let v4 = fwd(Proto::Tcp, 8080, "10.99.0.2", 80);
    let v6 = fwd(Proto::Udp, 5353, "fd42:99::2", 53);
    ns.nat(|n| {
        n.add_port(v4.proto, v4.host_port, v4.addr, v4.port)?;
        n.add_port(v6.proto, v6.host_port, v6.addr, v6.port)
    });
    assert_table(&ns, "ip", vec![elem("tcp", 8080, "10.99.0.2", 80)]);
    assert_table(&ns, "ip6", vec![elem("udp", 5353, "fd42:99::2", 53)]);
    let listed = ns.nat(|n| Ok((n.ports(Family::Ip)?, n.ports(Family::Ip6)?)));
    assert_eq!(listed, (vec![v4], vec![v6]));

    // Adding the same again is no change; deleting leaves the rest.
    ns.nat(|n| n.add_port(v4.proto, v4.host_port, v4.addr, v4.port));
    assert_table(&ns, "ip", vec![elem("tcp", 8080, "10.99.0.2", 80)]);
    ns.nat(|n| {
        n.del_port(v4.proto, v4.host_port, v4.addr, v4.port)?;
        n.del_port(v6.proto, v6.host_port, v6.addr, v6.port)
    });
    assert_table(&ns, "ip", vec![]);
    assert_table(&ns, "ip6", vec![]);
    // Gone already: no error.
    ns.nat(|n| n.del_port(v4.proto, v4.host_port, v4.addr, v4.port));
    assert_eq!(
        (NetNs::host_has_table("ip"), NetNs::host_has_table("ip6")),
        host_had,
        "the host's own tables changed"
    );
}

impl NetNs {
    /// Whether the host's (our own) namespace has the table: only looked at.
    fn host_has_table(family: &str) -> bool {
        require_tools();
        Command::new("nft")
            .args(["list", "table", family, TABLE])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }
}

#[test]
fn a_left_over_element_is_replaced_and_only_our_own_is_deleted() {
    let ns = NetNs::new("repl");
    let stale = fwd(Proto::Tcp, 8080, "10.99.0.2", 80);
    let now = fwd(Proto::Tcp, 8080, "10.99.0.3", 81);
    ns.nat(|n| n.add_port(stale.proto, stale.host_port, stale.addr, stale.port));
    // Another socket (a later run) finds the table there and takes the port over.
    ns.nat(|n| n.add_port(now.proto, now.host_port, now.addr, now.port));
    assert_eq!(ns.nat(|n| n.ports(Family::Ip)), vec![now]);
    assert_table(&ns, "ip", vec![elem("tcp", 8080, "10.99.0.3", 81)]);
    // The earlier run's cleanup does not remove what is no longer its own.
    ns.nat(|n| n.del_port(stale.proto, stale.host_port, stale.addr, stale.port));
    assert_eq!(ns.nat(|n| n.ports(Family::Ip)), vec![now]);
    ns.nat(|n| n.del_port(now.proto, now.host_port, now.addr, now.port));
    assert_eq!(ns.nat(|n| n.ports(Family::Ip)), vec![]);
    // Same port, other protocol: another key.
    let udp = fwd(Proto::Udp, 8080, "10.99.0.2", 80);
    ns.nat(|n| {
        n.add_port(now.proto, now.host_port, now.addr, now.port)?;
        n.add_port(udp.proto, udp.host_port, udp.addr, udp.port)
    });
    let mut got = ns.nat(|n| n.ports(Family::Ip));
    got.sort_by_key(|f| f.proto);
    assert_eq!(got, vec![now, udp]);
}

#[test]
fn the_table_comes_back_after_nft_flush_ruleset() {
    let ns = NetNs::new("flush");
    ns.nat(|n| n.add_port(Proto::Tcp, 8080, addr("10.99.0.2"), 80));
    let v6 = addr("fd42:99::2");
    // One socket across the flush, as a running container's supervisor has.
    ns.run(|| {
        let mut nat = Nat::open().unwrap();
        nat.add_port(Proto::Tcp, 8080, v6, 80).unwrap();
        ns.nft(&["flush", "ruleset"]);
        assert!(!ns.has_table("ip") && !ns.has_table("ip6"));
        nat.add_port(Proto::Tcp, 8081, addr("10.99.0.2"), 81)
            .unwrap();
        nat.add_port(Proto::Udp, 8081, v6, 81).unwrap();
        // What the flush took is gone: deleting it is no error.
        nat.del_port(Proto::Tcp, 8080, addr("10.99.0.2"), 80)
            .unwrap();
        nat.del_port(Proto::Tcp, 8080, v6, 80).unwrap();
    });
    assert_table(&ns, "ip", vec![elem("tcp", 8081, "10.99.0.2", 81)]);
    assert_table(&ns, "ip6", vec![elem("udp", 8081, "fd42:99::2", 81)]);
    // A fresh socket after another flush: deleting finds nothing, adding rebuilds.
    ns.nft(&["flush", "ruleset"]);
    ns.nat(|n| n.del_port(Proto::Tcp, 8081, addr("10.99.0.2"), 81));
    ns.nat(|n| n.add_port(Proto::Tcp, 8082, addr("10.99.0.2"), 82));
    assert_table(&ns, "ip", vec![elem("tcp", 8082, "10.99.0.2", 82)]);
}

/// systemd-nspawn with `-n -p tcp:8080:80` in a namespace of its own, in a
/// cgroup of its own; killed and its cgroups removed on drop.
struct Nspawn {
    child: std::process::Child,
    unit: Option<UnitCgroup>,
    dir: TempRoot,
}

impl Nspawn {
    fn start(ns: &NetNs, machine: &str) -> Nspawn {
        require_tool("systemd-nspawn", "systemd-container");
        let (root_dir, root) = TempRoot::copy_of("nft-nspawn", &fixture("minimal"), "root");
        // nspawn wants a tree that looks like an OS.
        fs::create_dir_all(root.join("usr")).unwrap();
        let unit = UnitCgroup::new("nft-nspawn");
        // nsenter rather than `ip netns exec`, which would hide /sys/fs/cgroup.
        let mut c = ns.cmd(&[
            "systemd-nspawn",
            "--keep-unit",
            "--register=no",
            "-q",
            "-D",
            root.to_str().unwrap(),
            "-n",
            "-p",
            "tcp:8080:80",
            "-M",
            machine,
            "/nixrun-probe",
            "sleep",
            "120",
        ]);
        let log = fs::File::create(root_dir.path("nspawn.log")).unwrap();
        c.env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        unit.enter(&mut c);
        let child = c.spawn().expect("spawn systemd-nspawn");
        Nspawn {
            child,
            unit: Some(unit),
            dir: root_dir,
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path("nspawn.log")).unwrap_or_default()
    }

    /// The guest's pid, once nspawn has started it.
    fn leader(&mut self) -> i32 {
        let payload = self.unit.as_ref().unwrap().v2().join("payload");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(p) = processes_in(&payload).first() {
                return p.parse().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "nspawn did not start its guest; its log:\n{}",
                self.log()
            );
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "nspawn exited early; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Nspawn {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nixrun::sys::process::kill(pid, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(20);
            while self.child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if let Some(unit) = self.unit.take() {
            let deadline = Instant::now() + Duration::from_secs(20);
            while !processes_in(unit.v2()).is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            for d in &unit.dirs {
                for sub in ["payload", "supervisor"] {
                    let _ = fs::remove_dir(d.join(sub));
                }
            }
        }
    }
}

#[test]
fn the_table_is_the_one_systemd_nspawn_makes() {
    let theirs = NetNs::new("nspawn");
    let ours = NetNs::new("ours");
    let machine = format!("nxnft{}", std::process::id() % 100_000);
    let mut nspawn = Nspawn::start(&theirs, &machine);
    let leader = nspawn.leader();
    // nspawn exposes the port once the container has an address.
    let guest_net = format!("--net=/proc/{leader}/ns/net");
    for args in ["link set host0 up", "addr add 10.99.0.2/24 dev host0"] {
        run_ok(
            Command::new("nsenter")
                .args([guest_net.as_str(), "ip"])
                .args(args.split(' ')),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while theirs.nat(|n| n.ports(Family::Ip)).is_empty() {
        assert!(
            Instant::now() < deadline,
            "nspawn did not add its element: {}\nits log:\n{}",
            theirs.nft(&["list", "ruleset"]),
            nspawn.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let nspawns = fwd(Proto::Tcp, 8080, "10.99.0.2", 80);
    // We read nspawn's element as the forwarding it is.
    assert_eq!(theirs.nat(|n| n.ports(Family::Ip)), vec![nspawns]);

    // Ours, made from scratch: the same objects, expressions and registers.
    ours.nat(|n| {
        n.add_port(nspawns.proto, nspawns.host_port, nspawns.addr, nspawns.port)?;
        n.ensure_table(Family::Ip6)
    });
    for family in ["ip", "ip6"] {
        assert_same_json(
            &format!("{family} {TABLE}: ours (left) and nspawn's (right)"),
            &ours.table(family),
            &theirs.table(family),
        );
        assert_eq!(
            ours.netlink_view(family),
            theirs.netlink_view(family),
            "{family} {TABLE} in the kernel: ours (left) and nspawn's (right) differ"
        );
    }
    assert_table(&theirs, "ip", vec![elem("tcp", 8080, "10.99.0.2", 80)]);

    // In nspawn's table: we use it as it is, and leave its element alone.
    let extra = fwd(Proto::Udp, 8081, "10.99.0.2", 81);
    theirs.nat(|n| n.add_port(extra.proto, extra.host_port, extra.addr, extra.port));
    let mut both = theirs.nat(|n| n.ports(Family::Ip));
    both.sort_by_key(|f| f.proto);
    assert_eq!(both, vec![nspawns, extra]);
    theirs.nat(|n| n.del_port(extra.proto, extra.host_port, extra.addr, extra.port));
    assert_eq!(theirs.nat(|n| n.ports(Family::Ip)), vec![nspawns]);
    drop(nspawn);
}

// ---- Packets -------------------------------------------------------------

/// Three namespaces: "host" (where the rules go), "guest" behind a veth
/// (the container), and "client" behind another veth (a machine on the
/// host's network).
struct Topology {
    host: NetNs,
    guest: NetNs,
    client: NetNs,
    /// The host's address towards the guest, the guest's, the host's towards
    /// the client.
    host_addr: IpAddr,
    guest_addr: IpAddr,
    host_client_side: IpAddr,
    client_addr: IpAddr,
}

impl Topology {
    fn new(tag: &str, v6: bool) -> Topology {
        let host = NetNs::new(&format!("{tag}h"));
        let guest = NetNs::new(&format!("{tag}g"));
        let client = NetNs::new(&format!("{tag}c"));
        // Documentation / unique-local prefixes, only inside these namespaces.
        let (net1, net2, plen, dad, inet) = if v6 {
            ("fd42:231:1::", "fd42:231:2::", 64, " nodad", "-6")
        } else {
            ("10.231.1.", "10.231.2.", 24, "", "-4")
        };
        host.ip(&format!(
            "link add vguest type veth peer name host0 netns {}",
            guest.name
        ));
        host.ip(&format!(
            "link add vclient type veth peer name eth0 netns {}",
            client.name
        ));
        host.ip(&format!("addr add {net1}1/{plen} dev vguest{dad}"));
        host.ip(&format!("addr add {net2}1/{plen} dev vclient{dad}"));
        guest.ip(&format!("addr add {net1}2/{plen} dev host0{dad}"));
        client.ip(&format!("addr add {net2}2/{plen} dev eth0{dad}"));
        host.ip("link set vguest up");
        host.ip("link set vclient up");
        guest.ip("link set host0 up");
        client.ip("link set eth0 up");
        guest.ip(&format!("{inet} route add default via {net1}1"));
        client.ip(&format!("{inet} route add default via {net2}1"));
        // Forwarding inside the test's host namespace only (a new namespace
        // inherits IPv4's from the real host's, so set it either way).
        if v6 {
            host.sysctl("net/ipv6/conf/all/forwarding", "1");
        } else {
            host.sysctl("net/ipv4/ip_forward", "1");
        }
        Topology {
            host,
            guest,
            client,
            host_addr: addr(&format!("{net1}1")),
            guest_addr: addr(&format!("{net1}2")),
            host_client_side: addr(&format!("{net2}1")),
            client_addr: addr(&format!("{net2}2")),
        }
    }
}

/// A TCP server in a namespace that answers each connection with the peer's
/// address; stopped on drop.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(ns: &NetNs, at: SocketAddr) -> Server {
        let path = ns.path();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let fd = fs::File::open(&path).unwrap();
            nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let l = TcpListener::bind(at).unwrap_or_else(|e| panic!("bind {at}: {e}"));
            l.set_nonblocking(true).unwrap();
            tx.send(()).unwrap();
            // Bounded: the test stops it, or it gives up after a minute.
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                match l.accept() {
                    Ok((mut s, peer)) => {
                        let _ = s.write_all(format!("guest saw {}\n", peer.ip()).as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("server did not start");
        Server {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects from `ns` to `to` and reads the answer.
fn fetch(ns: &NetNs, to: SocketAddr) -> std::io::Result<String> {
    ns.run(|| {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
}

fn round_trip(v6: bool) {
    let t = Topology::new(if v6 { "rt6" } else { "rt4" }, v6);
    let _server = Server::start(&t.guest, SocketAddr::new(t.guest_addr, 80));
    let from_host = SocketAddr::new(t.host_addr, 8080);
    let loopback: IpAddr = if v6 { addr("::1") } else { addr("127.0.0.1") };
    let from_client = SocketAddr::new(t.host_client_side, 8080);
    // Nothing forwarded yet.
    assert!(fetch(&t.host, from_host).is_err());

    t.host
        .nat(|n| n.add_port(Proto::Tcp, 8080, t.guest_addr, 80));
    // From the host to one of its own addresses: the output chain.
    assert_eq!(
        fetch(&t.host, from_host).expect("host → its own address:8080"),
        format!("guest saw {}\n", t.host_addr)
    );
    // Loopback is not forwarded (as with nspawn).
    assert!(
        fetch(&t.host, SocketAddr::new(loopback, 8080)).is_err(),
        "{loopback}:8080 was forwarded"
    );
    // From another machine through the host: the prerouting chain.
    assert_eq!(
        fetch(&t.client, from_client).expect("client → host:8080"),
        format!("guest saw {}\n", t.client_addr)
    );

    t.host
        .nat(|n| n.del_port(Proto::Tcp, 8080, t.guest_addr, 80));
    assert!(fetch(&t.host, from_host).is_err(), "still forwarded");
    assert!(fetch(&t.client, from_client).is_err(), "still forwarded");
    // The guest is still there, directly.
    assert!(fetch(&t.host, SocketAddr::new(t.guest_addr, 80)).is_ok());
}

#[test]
fn ipv4_ports_are_forwarded_from_the_host_and_through_it() {
    round_trip(false);
}

#[test]
fn ipv6_ports_are_forwarded_from_the_host_and_through_it() {
    round_trip(true);
}
