//! Interface names and MAC addresses exactly as systemd-nspawn makes them, so a
//! host's tooling that keys on them (networkd's `ve-*` network, NixOS's
//! `ve-$INSTANCE` scripts, dhcpcd's deny list) sees the same links under
//! nixrun. Pure functions, except for reading /etc/machine-id.

use super::Mac;
use siphasher::sip::SipHasher24;

/// IFNAMSIZ without the NUL.
const IFNAME_MAX: usize = 15;

/// nspawn's main veth prefixes: `ve-` alone, `vb-` when the host side joins a
/// bridge or a zone.
const VETH_PREFIX: &str = "ve-";
const BRIDGED_VETH_PREFIX: &str = "vb-";

/// The key of `net_shorten_ifname` (systemd's netif-util.c).
const SHORTEN_KEY: [u8; 16] = [
    0xe1, 0x90, 0xa4, 0x04, 0xa8, 0xef, 0x4b, 0x51, 0x8c, 0xcc, 0xc3, 0x3a, 0x9f, 0x11, 0xfc, 0xa2,
];

/// Whether systemd's `ifname_valid()` accepts `name` (nspawn checks bridge,
/// zone and interface names with it). Stricter than the kernel: printable
/// ASCII only, no `%`, and nothing an ifindex parser or /proc/sys/net/*/conf
/// could mistake (all digits, `all`, `default`).
pub fn ifname_valid(name: &str) -> bool {
    if name.is_empty() || name.len() > IFNAME_MAX {
        return false;
    }
    if matches!(name, "." | ".." | "all" | "default") {
        return false;
    }
    let chars_ok = name
        .bytes()
        .all(|b| b > 32 && b < 127 && !matches!(b, b':' | b'/' | b'%'));
    if !chars_ok || name.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    // systemd asks parse_ifindex() first, i.e. strtol(..., 0): "0x1f" or "+7"
    // name an index and are refused as names.
    parses_as_ifindex(name).is_none()
}

/// strtol(s, &end, 0) over the whole string, as systemd's parse_ifindex uses
/// it: an index is a positive int.
fn parses_as_ifindex(s: &str) -> Option<i32> {
    let (neg, rest) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) =
        if let Some(hex) = rest.strip_prefix("0x").or_else(|| rest.strip_prefix("0X")) {
            (16, hex)
        } else if rest.len() > 1 && rest.starts_with('0') {
            (8, &rest[1..])
        } else {
            (10, rest)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = i64::from_str_radix(digits, radix).ok()?;
    let v = if neg { -v } else { v };
    i32::try_from(v).ok().filter(|&v| v > 0)
}

/// A name of 16 bytes or more made to fit IFNAMSIZ the way nspawn does since
/// systemd v245 (naming scheme flag NAMING_NSPAWN_LONG_HASH): the first 11
/// bytes, then 4 URL-safe base64 characters of the SipHash-2-4 of the whole
/// name. Shorter names come back unchanged. Names are ASCII here (machine
/// names are hostnames); the cut is by bytes as in C.
pub fn shorten_ifname(name: &str) -> String {
    if name.len() <= IFNAME_MAX {
        return name.to_string();
    }
    const URLSAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let h = SipHasher24::new_with_key(&SHORTEN_KEY).hash(name.as_bytes());
    let mut out = name.as_bytes()[..IFNAME_MAX - 4].to_vec();
    for shift in [18, 12, 6, 0] {
        out.push(URLSAFE[((h >> shift) & 63) as usize]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The host's machine id (nspawn's MACs derive from it): /etc/machine-id's 32
/// hex digits as 16 bytes.
pub fn host_machine_id() -> std::io::Result<[u8; 16]> {
    let text = std::fs::read_to_string("/etc/machine-id")?;
    parse_machine_id(text.trim()).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("/etc/machine-id holds no machine id: {:?}", text.trim()),
        )
    })
}

fn parse_machine_id(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(id)
}

/// What a generated MAC address is for; each use has its own key in nspawn,
/// so the two ends of a veth differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacUse {
    /// The host side of the main veth (`ve-`/`vb-`).
    VethHost,
    /// The container side of the main veth (`host0`).
    VethContainer,
    /// The host side of a `--network-veth-extra=` pair.
    ExtraHost,
    /// The container side of a `--network-veth-extra=` pair.
    ExtraContainer,
    /// A `--network-macvlan=` link (container side; the host has none).
    Macvlan,
}

impl MacUse {
    fn key(self) -> [u8; 16] {
        let hex = match self {
            MacUse::VethHost => 0x1a376fc746ec450bada3d53106605db1_u128,
            MacUse::VethContainer => 0xc3c4f919b557b21ce6cf1427039ceea2,
            MacUse::ExtraHost => 0x48c7f6b7ea9d4c9eb728d4de91d5bf66,
            MacUse::ExtraContainer => 0xaf501761cef94d35840d2b2054bece59,
            MacUse::Macvlan => 0x00136dbc66834481bb0cf9511f24a66f,
        };
        hex.to_be_bytes()
    }
}

/// nspawn's predictable MAC (`net_generate_mac`): SipHash-2-4 of host machine
/// id ‖ machine name ‖ `idx` (8 bytes little-endian, appended only when
/// non-zero, so the first extra veth or macvlan hashes like the main veth
/// input); the hash's first 6 little-endian bytes, made unicast and locally
/// administered. `idx` counts extra veths or macvlans in argument order.
pub fn mac(host_id: &[u8; 16], machine: &str, use_: MacUse, idx: u64) -> Mac {
    let mut input = Vec::with_capacity(16 + machine.len() + 8);
    input.extend_from_slice(host_id);
    input.extend_from_slice(machine.as_bytes());
    if idx > 0 {
        input.extend_from_slice(&idx.to_le_bytes());
    }
    // On raw bytes: std::hash::Hash on a slice would prepend its length.
    let h = SipHasher24::new_with_key(&use_.key()).hash(&input);
    let mut m: Mac = [0; 6];
    m.copy_from_slice(&h.to_le_bytes()[..6]);
    m[0] = (m[0] & 0xfe) | 0x02;
    m
}

/// The main veth's host-side names for `machine`: the kernel name (shortened
/// if needed) and the full `ve-`/`vb-` name. nspawn adds the full name as an
/// altname only when the two differ.
pub fn main_veth_names(machine: &str, bridged: bool) -> (String, String) {
    let prefix = if bridged {
        BRIDGED_VETH_PREFIX
    } else {
        VETH_PREFIX
    };
    let full = format!("{prefix}{machine}");
    (shorten_ifname(&full), full)
}

/// `aa:bb:cc:dd:ee:ff`, lower case, as ip(8) prints it.
pub fn format_mac(m: &Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff` (either case), e.g. $SYSTEMD_NSPAWN_NETWORK_MAC.
pub fn parse_mac(s: &str) -> Option<Mac> {
    let mut m: Mac = [0; 6];
    let mut parts = s.split(':');
    for b in m.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(hex: &str) -> [u8; 16] {
        parse_machine_id(hex).unwrap()
    }

    #[test]
    fn ifname_rules_follow_systemd() {
        for ok in [
            "eth0",
            "ve-web",
            "a",
            "br-0.1",
            "abcdefghijklmno",
            "-5",
            "0x",
            "x1",
        ] {
            assert!(ifname_valid(ok), "{ok:?} should be valid");
        }
        for bad in [
            "",
            ".",
            "..",
            "abcdefghijklmnop", // 16 bytes
            "a/b",
            "a:b",
            "a b",
            "a\tb",
            "a\u{7f}",
            "é",
            "eth%d",
            "all",
            "default",
            "12",
            "0",
            "0x1f",
            "+7",
        ] {
            assert!(!ifname_valid(bad), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn short_names_stay() {
        assert_eq!(shorten_ifname("ve-abcdefghijkl"), "ve-abcdefghijkl");
        assert_eq!(shorten_ifname("ve-web"), "ve-web");
    }

    #[test]
    fn long_names_are_hashed_as_in_the_reference() {
        assert_eq!(shorten_ifname("ve-webserver-prod"), "ve-webservexnFG");
        assert_eq!(shorten_ifname("vb-webserver-prod"), "vb-webserveRRxm");
        assert_eq!(shorten_ifname("ve-abcdefghijklm"), "ve-abcdefghyhe5");
        let s = shorten_ifname("ve-a-really-long-machine-name-indeed");
        assert_eq!(s.len(), 15);
        assert!(ifname_valid(&s));
    }

    #[test]
    fn main_veth_names_prefix_and_shorten() {
        assert_eq!(
            main_veth_names("web", false),
            ("ve-web".into(), "ve-web".into())
        );
        assert_eq!(
            main_veth_names("webserver-prod", true),
            ("vb-webserveRRxm".into(), "vb-webserver-prod".into())
        );
    }

    #[test]
    fn macs_match_the_reference_example() {
        let host = id("0123456789abcdef0123456789abcdef");
        let m = |u, i| format_mac(&mac(&host, "foo", u, i));
        assert_eq!(m(MacUse::VethHost, 0), "8a:68:08:2a:1a:13");
        assert_eq!(m(MacUse::VethContainer, 0), "b2:6d:7c:0e:dc:94");
        assert_eq!(m(MacUse::ExtraHost, 0), "5e:61:46:eb:04:c1");
        assert_eq!(m(MacUse::ExtraHost, 1), "7e:93:1c:b3:2b:25");
        assert_eq!(m(MacUse::Macvlan, 0), "ce:4f:81:5c:e1:91");
        assert_eq!(m(MacUse::Macvlan, 1), "0a:f9:19:82:7f:f0");
    }

    #[test]
    fn macs_are_unicast_and_local() {
        let host = id("3d1219c7c4c5404aaa1f6d2a48adfda4");
        for name in ["a", "web", "webserver-prod"] {
            for u in [MacUse::VethHost, MacUse::VethContainer, MacUse::Macvlan] {
                let m = mac(&host, name, u, 0);
                assert_eq!(m[0] & 0x03, 0x02, "{name} {u:?}: {}", format_mac(&m));
            }
        }
        assert_ne!(
            mac(&host, "web", MacUse::VethHost, 0),
            mac(&host, "web", MacUse::VethContainer, 0)
        );
    }

    #[test]
    fn machine_ids_and_macs_parse() {
        assert_eq!(id("000102030405060708090a0b0c0d0e0f")[15], 0x0f);
        assert!(parse_machine_id("0123").is_none());
        assert!(parse_machine_id("0123456789abcdef0123456789abcdeg").is_none());
        let m = parse_mac("8A:68:08:2a:1a:13").unwrap();
        assert_eq!(format_mac(&m), "8a:68:08:2a:1a:13");
        for bad in [
            "8a:68:08:2a:1a",
            "8a:68:08:2a:1a:13:00",
            "8a:68:8:2a:1a:13",
            "zz:68:08:2a:1a:13",
        ] {
            assert!(parse_mac(bad).is_none(), "{bad}");
        }
    }
}
