//! Applying the guest's capability set (computed in policy/caps.rs) to the
//! container's init-to-be.

use caps::{CapSet, CapsHashSet};

#[derive(Debug, thiserror::Error)]
#[error("{0}: {1}")]
pub struct ApplyError(&'static str, String);

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
pub fn apply(retain: &CapsHashSet) -> Result<(), ApplyError> {
    // nixrun can only pass on what it has: a host may run it without some of the
    // default set (this project's CI VM lacks CAP_SYS_RESOURCE).
    let have = caps::read(None, CapSet::Permitted)
        .map_err(|e| ApplyError("read permitted", e.to_string()))?;
    let retain: CapsHashSet = retain.intersection(&have).copied().collect();
    let retain = &retain;
    let keep: Vec<u8> = retain.iter().map(|c| c.index()).collect();
    for n in 0..=last_cap() {
        if keep.contains(&n) {
            continue;
        }
        match crate::sys::capbset_drop(n) {
            // EINVAL: the kernel lacks that capability.
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => return Err(ApplyError("drop from the bounding set", e.to_string())),
        }
    }
    caps::clear(None, CapSet::Ambient).map_err(|e| ApplyError("clear ambient", e.to_string()))?;
    caps::clear(None, CapSet::Inheritable)
        .map_err(|e| ApplyError("clear inheritable", e.to_string()))?;
    caps::set(None, CapSet::Effective, retain)
        .map_err(|e| ApplyError("set effective", e.to_string()))?;
    caps::set(None, CapSet::Permitted, retain)
        .map_err(|e| ApplyError("set permitted", e.to_string()))?;
    Ok(())
}
