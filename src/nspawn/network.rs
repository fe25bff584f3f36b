//! nspawn's networking flags, validated as nspawn validates them (same
//! refusals, same combinations), into the plan's `Network`.

use super::cli::Cli;
use crate::net::names::ifname_valid;
use crate::net::udev::{self, LinkState};
use crate::plan::{IfPair, IpNet, Network, PlanError, Port, Proto, VethAttach};
use std::net::IpAddr;
use std::path::Path;

fn bad(flag: &'static str, spec: &str, why: impl Into<String>) -> PlanError {
    PlanError::BadNetwork {
        flag,
        spec: spec.to_string(),
        why: why.into(),
    }
}

/// `HOST[:CONT]`, CONT defaulting to `prefix` + HOST (nspawn's
/// network_iface_pair_parse); several whitespace-separated pairs per argument
/// for --network-interface, as nspawn takes them.
fn pairs(flag: &'static str, spec: &str, prefix: &str) -> Result<Vec<IfPair>, PlanError> {
    let mut out = Vec::new();
    for word in spec.split_whitespace() {
        let (host, cont) = match word.split_once(':') {
            Some((h, c)) => (h, Some(c)),
            None => (word, None),
        };
        if !ifname_valid(host) {
            return Err(bad(flag, spec, format!("interface name not valid: {host}")));
        }
        let container = match cont {
            Some(c) if ifname_valid(c) => c.to_string(),
            Some(c) => return Err(bad(flag, spec, format!("interface name not valid: {c}"))),
            None => format!("{prefix}{host}"),
        };
        out.push(IfPair {
            host: host.to_string(),
            container,
        });
    }
    if out.is_empty() {
        return Err(bad(flag, spec, "no interface given"));
    }
    Ok(out)
}

/// `[tcp:|udp:]HOST[:CONT]`.
fn port(spec: &str) -> Result<Port, PlanError> {
    let (proto, rest) = match spec.split_once(':') {
        Some(("tcp", r)) => (Proto::Tcp, r),
        Some(("udp", r)) => (Proto::Udp, r),
        _ => (Proto::Tcp, spec),
    };
    let num = |s: &str| -> Result<u16, PlanError> {
        s.parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| bad("port", spec, format!("not a port number: {s:?}")))
    };
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (num(h)?, num(c)?),
        None => (num(rest)?, num(rest)?),
    };
    Ok(Port {
        proto,
        host,
        container,
    })
}

/// `ADDR[/PREFIX]`; without a prefix, the address alone (/32, /128), as
/// NixOS's `ip addr add $LOCAL_ADDRESS` does.
pub fn ipnet(flag: &'static str, spec: &str) -> Result<IpNet, PlanError> {
    let (a, p) = match spec.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (spec, None),
    };
    let addr: IpAddr = a
        .parse()
        .map_err(|_| bad(flag, spec, "not an IP address (ADDR[/PREFIX])"))?;
    let max = IpNet::host_prefix(addr);
    let prefix = match p {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|&n| n <= max)
            .ok_or_else(|| bad(flag, spec, format!("not a prefix length (0-{max}): {p:?}")))?,
    };
    Ok(IpNet { addr, prefix })
}

/// Whether a network interface of that name exists here (checked at start so
/// that a typo fails before anything is set up).
fn interface_exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok()
}

pub fn network(cli: &Cli) -> Result<Network, PlanError> {
    let mut n = Network {
        private: cli.private_network,
        ..Default::default()
    };
    if let Some(br) = &cli.network_bridge {
        if !ifname_valid(br) {
            return Err(bad("network-bridge", br, "bridge interface name not valid"));
        }
        n.veth = Some(VethAttach::Bridge(br.clone()));
    }
    if let Some(zone) = &cli.network_zone {
        if n.veth.is_some() {
            return Err(PlanError::Network(
                "--network-bridge= and --network-zone= may not be combined".into(),
            ));
        }
        if !ifname_valid(&format!("vz-{zone}")) {
            return Err(bad("network-zone", zone, "network zone name not valid"));
        }
        n.veth = Some(VethAttach::Zone(zone.clone()));
    }
    if cli.network_veth && n.veth.is_none() {
        n.veth = Some(VethAttach::None);
    }
    // Extra veths: the container side defaults to the host side's name.
    for spec in &cli.network_veth_extra {
        n.veth_extra.extend(pairs("network-veth-extra", spec, "")?);
    }
    for spec in &cli.network_interface {
        n.interfaces.extend(pairs("network-interface", spec, "")?);
    }
    for spec in &cli.network_macvlan {
        n.macvlans.extend(pairs("network-macvlan", spec, "mv-")?);
    }
    for spec in &cli.network_ipvlan {
        n.ipvlans.extend(pairs("network-ipvlan", spec, "iv-")?);
    }
    let links = n.veth.is_some()
        || !n.veth_extra.is_empty()
        || !n.interfaces.is_empty()
        || !n.macvlans.is_empty()
        || !n.ipvlans.is_empty();
    n.private |= links;
    if let Some(path) = &cli.network_namespace_path {
        if links {
            return Err(PlanError::Network(
                "--network-namespace-path= cannot be combined with other network options".into(),
            ));
        }
        check_netns(path)?;
        n.netns_path = Some(path.clone());
    }
    for spec in &cli.port {
        let p = port(spec)?;
        if n.ports
            .iter()
            .any(|o| o.proto == p.proto && o.host == p.host)
        {
            return Err(bad("port", spec, "duplicate port specification"));
        }
        n.ports.push(p);
    }
    if !n.ports.is_empty() {
        if !n.private {
            return Err(PlanError::Network(
                "cannot use --port= without private networking".into(),
            ));
        }
        // Ports follow addresses in a namespace nixrun made and watches.
        if n.netns_path.is_some() {
            return Err(PlanError::Network(
                "--port= is not supported with --network-namespace-path=".into(),
            ));
        }
    }
    for spec in &cli.host_address {
        n.host_addresses.push(ipnet("host-address", spec)?);
    }
    for spec in &cli.local_address {
        n.local_addresses.push(ipnet("local-address", spec)?);
    }
    if !n.host_addresses.is_empty() && n.veth != Some(VethAttach::None) {
        return Err(PlanError::Network(
            "--host-address= needs --network-veth without a bridge or zone (a bridge carries the host's address)"
                .into(),
        ));
    }
    if !n.local_addresses.is_empty() && n.veth.is_none() {
        return Err(PlanError::Network(
            "--local-address= needs a veth (--network-veth, --network-bridge or --network-zone)"
                .into(),
        ));
    }
    // Interfaces that must exist on the host now.
    if let Some(VethAttach::Bridge(br)) = &n.veth {
        if !interface_exists(br) {
            return Err(bad("network-bridge", br, "no such bridge"));
        }
    }
    for (flag, list) in [
        ("network-interface", &n.interfaces),
        ("network-macvlan", &n.macvlans),
        ("network-ipvlan", &n.ipvlans),
    ] {
        for p in list {
            let Ok(index) = nix::net::if_::if_nametoindex(p.host.as_str()) else {
                return Err(bad(flag, &p.host, "no such network interface"));
            };
            // nspawn's refusals, where udevd runs and is not done with it.
            match udev::link_state(Path::new(udev::RUN_UDEV), index) {
                LinkState::NoUdev | LinkState::Initialized => {}
                LinkState::NotInitialized => {
                    return Err(bad(
                        flag,
                        &p.host,
                        "network interface is not initialized yet (by udev)",
                    ))
                }
                LinkState::Renaming => {
                    return Err(bad(flag, &p.host, "interface is being renamed (by udev)"))
                }
            }
        }
    }
    Ok(n)
}

/// --network-namespace-path must name a network namespace.
fn check_netns(path: &std::path::Path) -> Result<(), PlanError> {
    let err = |why: String| bad("network-namespace-path", &path.to_string_lossy(), why);
    let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    match crate::sys::ns_type(std::os::fd::AsFd::as_fd(&f)) {
        Ok(libc::CLONE_NEWNET) => Ok(()),
        Ok(_) => Err(err("a namespace, but not a network namespace".into())),
        Err(_) => Err(err("not a network namespace".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(
            port("8080").unwrap(),
            Port {
                proto: Proto::Tcp,
                host: 8080,
                container: 8080
            }
        );
        assert_eq!(
            port("udp:53:5353").unwrap(),
            Port {
                proto: Proto::Udp,
                host: 53,
                container: 5353
            }
        );
        for b in ["0", "x", "tcp:", "70000", "sctp:1", "1:2:3"] {
            assert!(port(b).is_err(), "{b}");
        }
    }

    #[test]
    fn addresses() {
        let a = ipnet("host-address", "10.233.1.1").unwrap();
        assert_eq!((a.addr.to_string(), a.prefix), ("10.233.1.1".into(), 32));
        let a = ipnet("local-address", "fc00::2/64").unwrap();
        assert_eq!(a.prefix, 64);
        for b in [
            "10.0.0.1/33",
            "fc00::1/129",
            "example.org",
            "10.0.0.1/x",
            "",
        ] {
            assert!(ipnet("host-address", b).is_err(), "{b}");
        }
    }

    #[test]
    fn interface_pairs() {
        let p = pairs("network-macvlan", "eth0", "mv-").unwrap();
        assert_eq!(p[0].container, "mv-eth0");
        let p = pairs("network-interface", "eth1:inner eth2", "").unwrap();
        assert_eq!(
            (p[0].container.as_str(), p[1].container.as_str()),
            ("inner", "eth2")
        );
        assert!(pairs("network-interface", "this-name-is-too-long", "").is_err());
        assert!(pairs("network-interface", "a/b", "").is_err());
        assert!(pairs("network-veth-extra", "x:0123456789abcdef", "").is_err());
    }
}
