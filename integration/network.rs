//! Private networking end to end: nixrun runs inside a network namespace each
//! test makes (its "host"), never in the machine's own; traffic only flows
//! between the test's own namespaces. The guest's view, the network being up
//! before the guest's init, --port in both directions, bridges, zones, extra
//! veths, moved interfaces, macvlans, bad input, and nothing left afterwards.

mod common;

use common::netns::{Netns, ProbeChild};
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn minimal_copy(tag: &str) -> (TempRoot, PathBuf) {
    TempRoot::copy_of(tag, &fixture("minimal"), tag)
}

/// Runs nixrun to completion in `ns`: (exit code, stdout, stderr).
fn run_in(ns: &Netns, args: &[&str]) -> (i32, String, String) {
    let (st, out, err) = run_cmd(ns.nixrun(args));
    (exit_code(st), out, err)
}

fn journal(machine: &str) -> PathBuf {
    Path::new("/run/nixrun/network").join(machine)
}

/// Nothing of the container's network left: no link but lo and `keep` in the
/// test's namespace, no journal.
fn assert_clean(ns: &Netns, machine: &str, keep: &[&str]) {
    let links: Vec<String> = ns
        .links()
        .into_iter()
        .filter(|l| l != "lo" && !keep.contains(&l.as_str()))
        .collect();
    assert!(
        links.is_empty(),
        "links left in the test's namespace: {links:?}"
    );
    assert!(!journal(machine).exists(), "network journal left behind");
}

/// `probe connect ADDR PORT` from a namespace: its output line.
fn connect_from(ns: &Netns, addr: &str, port: &str) -> String {
    let out = ns.run(probe_binary().to_str().unwrap(), &["connect", addr, port]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn nat_elements(ns: &Netns) -> String {
    require_tool("nft", "nftables");
    let out = ns.run(
        "nft",
        &["list", "map", "ip", "io.systemd.nat", "map_port_ipport"],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits until the guest's console (nixrun's stdout, in the log) has `line`.
fn wait_line(sp: &mut Spawned, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sp.log_text().lines().any(|l| l.trim() == line) {
        if let Some(st) = sp.try_status() {
            panic!(
                "nixrun exited ({st}) before {line:?}; log:\n{}",
                sp.log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no {line:?}; log:\n{}",
            sp.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_guest_sees_its_own_network() {
    let ns = Netns::new("view");
    let (_t, root) = minimal_copy("net-view");
    // nspawn's --resolv-conf=auto is "off" with a private network: the
    // guest's file stays as it is.
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/resolv.conf"), "nameserver 192.0.2.53\n").unwrap();
    let snap = HostSnapshot::take("net-view");
    let (code, out, err) = run_in(
        &ns,
        &[
            "-D",
            root.to_str().unwrap(),
            "-q",
            "-n",
            "/nixrun-probe",
            "facts",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let f = facts(&out);
    // Only its own links, also in its own sysfs; lo up.
    assert_eq!(f["net.links"], "host0,lo", "{out}");
    assert_eq!(f["net.sys_class_net"], "host0,lo", "{out}");
    assert_eq!(f["net.lo_up"], "1");
    // Its own sysfs, read-only as the container interface asks.
    assert_eq!(f["ro./sys"], "1");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/resolv.conf")).unwrap(),
        "nameserver 192.0.2.53\n"
    );
    // /proc/sys/net is the guest's to write; the rest of /proc/sys is not.
    assert_eq!(f["ro./proc/sys"], "1");
    assert_eq!(f["ro./proc/sys/net"], "0");
    // CAP_NET_ADMIN (bit 12), for its own namespace.
    let bnd = u64::from_str_radix(&f["capbnd"], 16).unwrap();
    assert!(bnd & (1 << 12) != 0, "no CAP_NET_ADMIN: {:x}", bnd);
    // Without a private network, none of that.
    let (_, out, _) = run_in(
        &ns,
        &["-D", root.to_str().unwrap(), "-q", "/nixrun-probe", "facts"],
    );
    let f = facts(&out);
    assert_eq!(f["ro./proc/sys/net"], "1");
    assert_eq!(
        u64::from_str_radix(&f["capbnd"], 16).unwrap() & (1 << 12),
        0
    );
    snap.assert_unchanged();
    assert_clean(&ns, "net-view", &[]);
}

#[test]
fn the_network_is_up_before_the_guests_init() {
    let ns = Netns::new("early");
    let (_t, root) = minimal_copy("net-early");
    // Configured by hand in the test's namespace would be NixOS's postStart;
    // here nixrun does it, before the guest's PID 1 runs. The listener must
    // bind the host address, which exists only once nixrun made it: listen on
    // all addresses.
    let mut listener = ns.probe(&["listen", "7070", "1"]);
    let (code, out, err) = run_in(
        &ns,
        &[
            "-D",
            root.to_str().unwrap(),
            "-q",
            "-n",
            "--host-address=10.233.1.1/24",
            "--local-address=10.233.1.2/24",
            "--host-address=fd00:233:1::1/64",
            "--local-address=fd00:233:1::2/64",
            "/nixrun-probe",
            "connect",
            "10.233.1.1",
            "7070",
        ],
    );
    let _ = listener.kill();
    let _ = listener.wait();
    assert_eq!(
        code, 0,
        "PID 1 could not reach the host at its first instruction: {out}{err}"
    );
    assert_eq!(out.trim(), "connected pong 10.233.1.2");
    // The same over IPv6.
    let mut listener = ns.probe(&["listen", "7071", "1"]);
    let (code, out, err) = run_in(
        &ns,
        &[
            "-D",
            root.to_str().unwrap(),
            "-q",
            "-n",
            "--host-address=fd00:233:1::1/64",
            "--local-address=fd00:233:1::2/64",
            "/nixrun-probe",
            "connect",
            "fd00:233:1::1",
            "7071",
        ],
    );
    let _ = listener.kill();
    let _ = listener.wait();
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "connected pong fd00:233:1::2");
    assert_clean(&ns, "net-early", &[]);
}

#[test]
fn ports_are_forwarded_locally_and_from_another_namespace() {
    let a = Netns::new("port");
    let c = Netns::new("client");
    // The client reaches the test's "host" over a veth of their own.
    a.ip(&[
        "link",
        "add",
        "to-client",
        "type",
        "veth",
        "peer",
        "name",
        "to-host",
        "netns",
        &c.name,
    ]);
    a.ip(&["addr", "add", "192.0.2.1/24", "dev", "to-client"]);
    a.ip(&["link", "set", "to-client", "up"]);
    c.ip(&["addr", "add", "192.0.2.2/24", "dev", "to-host"]);
    c.ip(&["link", "set", "to-host", "up"]);
    // Forwarding in the test's host namespace only.
    let fwd = a.run("sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
    assert!(fwd.status.success(), "sysctl in the test namespace");
    let (_t, root) = minimal_copy("net-port");
    let mut sp = Spawned::start_cmd(a.nixrun(&[
        "-D",
        root.to_str().unwrap(),
        "-n",
        "--host-address=10.233.2.1/24",
        "--local-address=10.233.2.2/24",
        "--host-address=fd00:233:2::1/64",
        "--local-address=fd00:233:2::2/64",
        "-p",
        "tcp:8080:80",
        "/nixrun-probe",
        "listen",
        "80",
        "4",
    ]));
    wait_line(&mut sp, "listening");
    let el = nat_elements(&a);
    assert!(el.contains("tcp . 8080 : 10.233.2.2 . 80"), "map: {el}");
    // Local: to the host's own (non-loopback) address.
    assert_eq!(
        connect_from(&a, "10.233.2.1", "8080"),
        "connected pong 10.233.2.1"
    );
    // IPv6 too, in the ip6 table.
    assert_eq!(
        connect_from(&a, "fd00:233:2::1", "8080"),
        "connected pong fd00:233:2::1"
    );
    // Loopback is not forwarded (nspawn's rule).
    assert_ne!(
        connect_from(&a, "127.0.0.1", "8080").split(' ').next(),
        Some("connected")
    );
    // Forwarded: from the client namespace, through the host namespace.
    assert_eq!(
        connect_from(&c, "192.0.2.1", "8080"),
        "connected pong 192.0.2.2"
    );
    // The guest gets an address that sorts first (nspawn's choice): the port
    // follows it.
    let leader = sp.leader().to_string();
    let add = Command::new("nsenter")
        .args([
            "-t",
            &leader,
            "-n",
            "ip",
            "addr",
            "add",
            "10.0.0.5/8",
            "dev",
            "host0",
        ])
        .status()
        .unwrap();
    assert!(add.success(), "ip addr add in the guest");
    a.ip(&["route", "add", "10.0.0.5", "dev", "ve-net-port"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut el = nat_elements(&a);
    while !el.contains("tcp . 8080 : 10.0.0.5 . 80") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        el = nat_elements(&a);
    }
    assert!(
        el.contains("tcp . 8080 : 10.0.0.5 . 80") && !el.contains("10.233.2.2"),
        "the port did not follow the guest's new address: {el}"
    );
    assert_eq!(
        connect_from(&c, "192.0.2.1", "8080"),
        "connected pong 192.0.2.2"
    );
    let st = sp.wait_exit(STOP_TIMEOUT);
    assert_eq!(exit_code(st), 0, "{}", sp.log_text());
    let el = nat_elements(&a);
    assert!(
        !el.contains("8080"),
        "the element outlived the container: {el}"
    );
    assert_clean(&a, "net-port", &["to-client"]);
}

#[test]
fn a_bridge_a_zone_and_an_extra_veth() {
    let ns = Netns::new("br");
    ns.ip(&["link", "add", "br0", "type", "bridge"]);
    ns.ip(&["link", "set", "br0", "up"]);
    let (_t, root) = minimal_copy("net-br");
    let mut sp = Spawned::start_cmd(ns.nixrun(&[
        "-D",
        root.to_str().unwrap(),
        "-q",
        "--network-bridge=br0",
        "--network-veth-extra=xv-host:xv-cont",
        "/nixrun-probe",
        "sleep",
        "30",
    ]));
    sp.leader();
    let link = ns.ip(&["-d", "link", "show", "vb-net-br"]);
    assert!(
        link.contains("master br0") && link.contains("state UP") || link.contains(",UP"),
        "{link}"
    );
    assert!(ns.links().contains(&"xv-host".to_string()));
    let inside = sp.exec(&["/nixrun-probe", "facts"]);
    let f = facts(&String::from_utf8_lossy(&inside.stdout));
    assert_eq!(f["net.links"], "host0,lo,xv-cont");
    sp.signal(libc::SIGTERM);
    sp.wait_exit(STOP_TIMEOUT);
    assert_clean(&ns, "net-br", &["br0"]);

    // A zone: its bridge is made for the first member and goes with the last.
    let (_t2, root2) = minimal_copy("net-zone");
    let mut sp = Spawned::start_cmd(ns.nixrun(&[
        "-D",
        root2.to_str().unwrap(),
        "-q",
        "--network-zone=z1",
        "/nixrun-probe",
        "sleep",
        "30",
    ]));
    sp.leader();
    let link = ns.ip(&["-d", "link", "show", "vb-net-zone"]);
    assert!(link.contains("master vz-z1"), "{link}");
    sp.signal(libc::SIGTERM);
    sp.wait_exit(STOP_TIMEOUT);
    assert!(
        !ns.links().contains(&"vz-z1".to_string()),
        "the zone bridge outlived its last member"
    );
    assert_clean(&ns, "net-zone", &["br0"]);
}

#[test]
fn interfaces_move_in_and_back_and_macvlans() {
    let ns = Netns::new("mv");
    // Stand-ins for physical NICs: ends of veth pairs (no dummy driver here).
    ns.ip(&[
        "link", "add", "phys0", "type", "veth", "peer", "name", "phys0p",
    ]);
    ns.ip(&[
        "link", "add", "lower0", "type", "veth", "peer", "name", "lower0p",
    ]);
    ns.ip(&["link", "set", "lower0", "up"]);
    let (_t, root) = minimal_copy("net-mv");
    let mut sp = Spawned::start_cmd(ns.nixrun(&[
        "-D",
        root.to_str().unwrap(),
        "-q",
        "--network-interface=phys0:eth9",
        "--network-macvlan=lower0",
        "/nixrun-probe",
        "sleep",
        "30",
    ]));
    sp.leader();
    assert!(
        !ns.links().contains(&"phys0".to_string()),
        "phys0 was not moved"
    );
    let inside = sp.exec(&["/nixrun-probe", "facts"]);
    let f = facts(&String::from_utf8_lossy(&inside.stdout));
    assert_eq!(f["net.links"], "eth9,lo,mv-lower0");
    sp.signal(libc::SIGTERM);
    sp.wait_exit(STOP_TIMEOUT);
    let links = ns.links();
    assert!(
        links.contains(&"phys0".to_string()),
        "phys0 did not come back: {links:?}"
    );
    assert_clean(&ns, "net-mv", &["phys0", "phys0p", "lower0", "lower0p"]);
}

#[test]
fn a_killed_supervisors_ports_are_removed_by_the_next_start() {
    let ns = Netns::new("stale");
    let (_t, root) = minimal_copy("net-stale");
    let args = [
        "-D",
        root.to_str().unwrap(),
        "-n",
        "--host-address=10.233.3.1/24",
        "--local-address=10.233.3.2/24",
        "-p",
        "tcp:8081:80",
        "/nixrun-probe",
        "listen",
        "80",
        "1",
    ];
    let mut sp = Spawned::start_cmd(ns.nixrun(&args));
    wait_line(&mut sp, "listening");
    assert!(nat_elements(&ns).contains("8081"));
    sp.signal(libc::SIGKILL);
    let _ = sp.wait_exit(STOP_TIMEOUT);
    assert!(
        journal("net-stale").exists(),
        "no journal of the killed run"
    );
    // The next start of the machine undoes what the killed one left.
    let (code, _, err) = run_in(
        &ns,
        &[
            "-D",
            root.to_str().unwrap(),
            "-q",
            "-n",
            "/nixrun-probe",
            "exit",
            "0",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(!nat_elements(&ns).contains("8081"), "{}", nat_elements(&ns));
    assert_clean(&ns, "net-stale", &[]);
}

#[test]
fn an_existing_network_namespace_is_joined() {
    let ns = Netns::new("host");
    let target = Netns::new("join");
    target.ip(&[
        "link", "add", "inner0", "type", "veth", "peer", "name", "inner1",
    ]);
    let (_t, root) = minimal_copy("net-join");
    let path = target.path();
    for extra in [&[][..], &["--private-network"][..]] {
        let mut args = vec!["-D", root.to_str().unwrap(), "-q"];
        let flag = format!("--network-namespace-path={}", path.display());
        args.push(&flag);
        args.extend_from_slice(extra);
        args.extend_from_slice(&["/nixrun-probe", "facts"]);
        let (code, out, err) = run_in(&ns, &args);
        assert_eq!(code, 0, "{err}");
        assert_eq!(facts(&out)["net.links"], "inner0,inner1,lo");
    }
    assert_eq!(target.links().len(), 3, "joining changed the namespace");
}

#[test]
fn bad_network_input_is_one_line_and_leaves_nothing() {
    let ns = Netns::new("bad");
    let (_t, root) = minimal_copy("net-bad");
    let r = root.to_str().unwrap();
    let not_netns = "--network-namespace-path=/etc/hostname".to_string();
    let with_veth = format!("--network-namespace-path={}", ns.path().display());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["-p", "80"], "without private networking"),
        (vec!["-n", "-p", "80", "-p", "tcp:80:81"], "duplicate port"),
        (vec!["--network-bridge=nope0"], "no such bridge"),
        (
            vec!["--network-interface=nope0"],
            "no such network interface",
        ),
        (vec!["--network-interface=a/b"], "interface name not valid"),
        (
            vec!["--network-veth-extra=0123456789abcdef"],
            "interface name not valid",
        ),
        (vec![&with_veth, "-n"], "cannot be combined"),
        (vec![&not_netns], "not a network namespace"),
        (
            vec!["--network-namespace-path=/proc/self/ns/uts"],
            "not a network namespace",
        ),
        (
            vec![&with_veth, "--private-network", "-p", "80"],
            "not supported with --network-namespace-path",
        ),
        (
            vec!["--private-network", "--host-address=10.0.0.1"],
            "--host-address",
        ),
        (vec!["-n", "--host-address=bogus"], "not an IP address"),
        (
            vec!["-n", "--network-zone=z", "--network-bridge=br0"],
            "may not be combined",
        ),
    ];
    for (extra, why) in cases {
        let mut args = vec!["-D", r];
        args.extend(extra.iter().copied());
        args.extend_from_slice(&["/nixrun-probe", "exit", "0"]);
        let (code, out, err) = run_in(&ns, &args);
        assert_ne!(code, 0, "{extra:?} was accepted");
        assert_eq!(err.lines().count(), 1, "{extra:?}: {err:?}");
        assert!(err.contains(why), "{extra:?}: {err}");
        assert!(out.is_empty());
        assert_clean(&ns, "net-bad", &[]);
    }
    // A driver the kernel lacks: refused by the kernel, said in one line.
    ns.ip(&[
        "link", "add", "lowerx", "type", "veth", "peer", "name", "lowerxp",
    ]);
    let (code, _, err) = run_in(
        &ns,
        &[
            "-D",
            r,
            "--network-ipvlan=lowerx",
            "/nixrun-probe",
            "exit",
            "0",
        ],
    );
    assert_ne!(code, 0);
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.contains("ipvlan"), "{err}");
    assert_clean(&ns, "net-bad", &["lowerx", "lowerxp"]);
}

/// A stop waits for the kernel to remove the veth with the container's
/// network namespace; a namespace that outlives the container (here a host
/// process entered it) does not keep the veth: nixrun deletes it itself.
#[test]
fn a_veth_goes_even_when_its_namespace_outlives_the_container() {
    let ns = Netns::new("held");
    let (_t, root) = minimal_copy("net-held");
    let mut sp = Spawned::start_cmd(ns.nixrun(&[
        "-D",
        root.to_str().unwrap(),
        "-q",
        "-n",
        "-M",
        "net-held",
        "/nixrun-probe",
        "sleep",
        "2",
    ]));
    let leader = sp.leader();
    let netns = format!("/proc/{leader}/ns/net");
    let theirs = std::fs::read_link(&netns).unwrap();
    let mut holder = ProbeChild(
        Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .args(["sleep", "60"])
            .spawn()
            .expect("spawn nsenter"),
    );
    let held = format!("/proc/{}/ns/net", holder.0.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(&held).ok() != Some(theirs.clone()) {
        assert!(Instant::now() < deadline, "the holder did not enter");
        assert!(sp.try_status().is_none(), "the container ended too soon");
        std::thread::sleep(Duration::from_millis(10));
    }
    let st = sp.wait_exit(Duration::from_secs(30));
    assert!(st.success(), "{st}; log:\n{}", sp.log_text());
    assert_clean(&ns, "net-held", &[]);
    // The held namespace lost host0 with the pair.
    let out = Command::new("nsenter")
        .arg(format!("--net={held}"))
        .args(["ip", "-o", "link", "show"])
        .output()
        .unwrap();
    let links = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !links.contains("host0"), "{links}");
    let _ = holder.0.kill();
}
