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

use caps::{CapSet, Capability, CapsHashSet};

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
    #[error("{0}: {1}")]
    Apply(&'static str, String),
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

/// The retained set for the given --capability= and --drop-capability= values
/// (each a comma-separated list; dropping wins, as in nspawn).
pub fn retained(add: &[String], drop: &[String]) -> Result<CapsHashSet, CapsError> {
    let mut set: CapsHashSet = DEFAULT_RETAINED.iter().copied().collect();
    for a in add {
        set.extend(parse_list(a)?);
    }
    for d in drop {
        for c in parse_list(d)? {
            set.remove(&c);
        }
    }
    Ok(set)
}

/// The highest capability number this kernel knows; caps newer than the caps crate
/// must go from the bounding set too.
fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Applies the set to the calling thread: bounding set first (needs CAP_SETPCAP,
/// which is still effective then), then inheritable and ambient cleared (the
/// CVE-2022-29162 lesson: a non-empty inheritable set lets file capabilities
/// escalate), then permitted and effective.
pub fn apply(retain: &CapsHashSet) -> Result<(), CapsError> {
    // nixrun can only pass on what it has: a host may run it without some of the
    // default set (this project's CI VM lacks CAP_SYS_RESOURCE).
    let have = caps::read(None, CapSet::Permitted)
        .map_err(|e| CapsError::Apply("read permitted", e.to_string()))?;
    let retain: CapsHashSet = retain.intersection(&have).copied().collect();
    let retain = &retain;
    let keep: Vec<u8> = retain.iter().map(|c| c.index()).collect();
    for n in 0..=last_cap() {
        if keep.contains(&n) {
            continue;
        }
        // SAFETY: plain prctl; EINVAL means the kernel lacks that capability.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, n as libc::c_ulong, 0, 0, 0) };
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            return Err(CapsError::Apply(
                "drop from the bounding set",
                std::io::Error::last_os_error().to_string(),
            ));
        }
    }
    caps::clear(None, CapSet::Ambient)
        .map_err(|e| CapsError::Apply("clear ambient", e.to_string()))?;
    caps::clear(None, CapSet::Inheritable)
        .map_err(|e| CapsError::Apply("clear inheritable", e.to_string()))?;
    caps::set(None, CapSet::Effective, retain)
        .map_err(|e| CapsError::Apply("set effective", e.to_string()))?;
    caps::set(None, CapSet::Permitted, retain)
        .map_err(|e| CapsError::Apply("set permitted", e.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nspawn_defaults() {
        let r = retained(&[], &[]).unwrap();
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

    #[test]
    fn adding_and_dropping() {
        let r = retained(
            &["CAP_NET_ADMIN,cap_sys_time".into()],
            &["CAP_SYS_PTRACE".into()],
        )
        .unwrap();
        assert!(r.contains(&Capability::CAP_NET_ADMIN));
        assert!(r.contains(&Capability::CAP_SYS_TIME));
        assert!(!r.contains(&Capability::CAP_SYS_PTRACE));
        assert_eq!(
            retained(&["all".into()], &[]).unwrap().len(),
            caps::all().len()
        );
        assert_eq!(retained(&[], &["all".into()]).unwrap().len(), 0);
        assert!(matches!(
            retained(&["CAP_FLY".into()], &[]),
            Err(CapsError::Unknown(_))
        ));
    }
}
