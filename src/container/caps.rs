//! Applying the guest's capability set (computed in policy/caps.rs) to the
//! container's init-to-be.

use caps::{CapSet, CapsHashSet};

#[derive(Debug, thiserror::Error)]
#[error("{0}: {1}")]
pub struct ApplyError(&'static str, String);

/// Every capability number there can be (the sets are 64 bits wide): caps newer
/// than the caps crate must go from the bounding set too. Not read from
/// /proc/sys/kernel/cap_last_cap: nixrunctl applies this set inside a running
/// guest, whose root could bind a file saying "3" over it.
const CAP_NUMBERS: std::ops::RangeInclusive<u8> = 0..=63;

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
    for n in CAP_NUMBERS {
        if keep.contains(&n) {
            continue;
        }
        match crate::sys::capbset_drop(n) {
            Ok(()) => {}
            // EINVAL: past the kernel's last capability (its check is a range
            // check, cap_valid), and so is every higher number.
            Err(nix::errno::Errno::EINVAL) => break,
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
