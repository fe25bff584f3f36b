//! The guest's capabilities: nspawn's bounding set, adjusted by --capability= and
//! --drop-capability=.
//!
//! The guest's root is the host's root (no user namespace by default), so what it
//! keeps here is what it can do to the host kernel. CAP_SYS_ADMIN and CAP_MKNOD
//! stay, as the container interface asks (systemd's service sandboxing needs them);
//! the mount tree is locked and the device policy closed instead. Gone are, among
//! others, CAP_SYS_MODULE, CAP_SYS_RAWIO, CAP_SYS_TIME, CAP_SYSLOG, CAP_BPF,
//! CAP_PERFMON, CAP_MAC_*, CAP_NET_ADMIN (the network is the host's) and
//! CAP_AUDIT_READ.

use crate::plan::CapsChange;
use caps::{Capability, CapsHashSet};

/// nspawn's default retained set (arg_caps_retain), 26 capabilities.
pub const DEFAULT_RETAINED: &[Capability] = &[
    Capability::CAP_AUDIT_CONTROL,
    Capability::CAP_AUDIT_WRITE,
    Capability::CAP_CHOWN,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_FOWNER,
    Capability::CAP_FSETID,
    Capability::CAP_IPC_OWNER,
    Capability::CAP_KILL,
    Capability::CAP_LEASE,
    Capability::CAP_LINUX_IMMUTABLE,
    Capability::CAP_MKNOD,
    Capability::CAP_NET_BIND_SERVICE,
    Capability::CAP_NET_BROADCAST,
    Capability::CAP_NET_RAW,
    Capability::CAP_SETFCAP,
    Capability::CAP_SETGID,
    Capability::CAP_SETPCAP,
    Capability::CAP_SETUID,
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_SYS_BOOT,
    Capability::CAP_SYS_CHROOT,
    Capability::CAP_SYS_NICE,
    Capability::CAP_SYS_PTRACE,
    Capability::CAP_SYS_RESOURCE,
    Capability::CAP_SYS_TTY_CONFIG,
];

#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("unknown capability {0:?} (expected a name like CAP_NET_ADMIN, or \"all\")")]
    Unknown(String),
}

fn parse_list(list: &str) -> Result<Vec<Capability>, CapsError> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if name.eq_ignore_ascii_case("all") {
            out.extend(caps::all());
            continue;
        }
        let canonical = caps::to_canonical(name);
        let cap: Capability = canonical
            .parse()
            .map_err(|_| CapsError::Unknown(name.to_string()))?;
        out.push(cap);
    }
    Ok(out)
}

/// The capabilities named in comma-separated lists (`all` for every one).
pub fn parse_lists(lists: &[String]) -> Result<CapsHashSet, CapsError> {
    let mut set = CapsHashSet::new();
    for l in lists {
        set.extend(parse_list(l)?);
    }
    Ok(set)
}

/// The retained set: nspawn's defaults, CAP_NET_ADMIN with a private network
/// (it then only reaches the guest's own network namespace), the user's
/// additions, minus the user's drops (dropping wins, as in nspawn).
pub fn retained(change: &CapsChange, private_network: bool) -> CapsHashSet {
    let mut set: CapsHashSet = DEFAULT_RETAINED.iter().copied().collect();
    if private_network {
        set.insert(Capability::CAP_NET_ADMIN);
    }
    set.extend(change.add.iter().copied());
    set.retain(|c| !change.drop.contains(c));
    set
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nspawn_defaults() {
        let r = retained(&CapsChange::default(), false);
        assert_eq!(r.len(), 26);
        for gone in [
            Capability::CAP_SYS_MODULE,
            Capability::CAP_SYS_RAWIO,
            Capability::CAP_SYS_TIME,
            Capability::CAP_NET_ADMIN,
            Capability::CAP_BPF,
            Capability::CAP_SYSLOG,
            Capability::CAP_AUDIT_READ,
        ] {
            assert!(!r.contains(&gone), "{gone} retained");
        }
    }

    fn change(add: &str, drop: &str) -> CapsChange {
        CapsChange {
            add: parse_lists(&[add.into()]).unwrap(),
            drop: parse_lists(&[drop.into()]).unwrap(),
        }
    }

    #[test]
    fn adding_and_dropping() {
        let r = retained(
            &change("CAP_NET_ADMIN,cap_sys_time", "CAP_SYS_PTRACE"),
            false,
        );
        assert!(r.contains(&Capability::CAP_NET_ADMIN));
        assert!(r.contains(&Capability::CAP_SYS_TIME));
        assert!(!r.contains(&Capability::CAP_SYS_PTRACE));
        assert_eq!(retained(&change("all", ""), false).len(), caps::all().len());
        assert_eq!(retained(&change("", "all"), false).len(), 0);
        // Dropping wins over adding, whatever the order given.
        assert!(!retained(&change("CAP_SYS_TIME", "CAP_SYS_TIME"), false)
            .contains(&Capability::CAP_SYS_TIME));
        assert!(matches!(
            parse_lists(&["CAP_FLY".into()]),
            Err(CapsError::Unknown(_))
        ));
    }

    #[test]
    fn a_private_network_brings_net_admin_unless_dropped() {
        let none = CapsChange::default();
        assert!(retained(&none, true).contains(&Capability::CAP_NET_ADMIN));
        assert_eq!(retained(&none, true).len(), 27);
        assert!(!retained(&change("", "CAP_NET_ADMIN"), true).contains(&Capability::CAP_NET_ADMIN));
    }
}
