//! --ephemeral: the guest runs on a throw-away copy of its tree, for the whole
//! run (a guest reboot without --keep-unit keeps what it wrote, as on nspawn's
//! snapshot), gone when the run ends however it ends.
//!
//! nspawn makes a btrfs snapshot of the tree, or, on any other file system, a
//! full copy next to it, which it removes at exit (and which a SIGKILL leaves
//! behind). nixrun puts an overlay over the tree instead, with a tmpfs as the
//! upper layer (container/overlay.rs): made in a few hundred microseconds
//! whatever the tree's size and file system, nothing written to the host's
//! disks, the tree never written. It is mounted in a mount namespace of the
//! supervisor's own (a slave of the host's, so that the host's later mounts
//! still reach it), which every boot's child copies; nothing of it is in the
//! host's namespace, and the kernel frees it with the last process in that
//! namespace — at the supervisor's exit, also after a SIGKILL, so the next
//! start has nothing to clean up. The price: what the guest writes is held in
//! RAM (bounded to a quarter of it, policy/rootfs.rs), and it sees overlayfs
//! semantics (st_dev of copied-up files, hard links to lower files broken by a
//! copy-up).
//!
//! With a user namespace whose range maps the root (--private-users with
//! ownership `map`), overlayfs itself cannot be ID-mapped (EINVAL, seen on 6.18), but its
//! layers can: the tree is first mounted ID-mapped onto itself, here, and the
//! overlay goes over that, so the guest sees its own owners in the lower layer
//! and what its root writes lands in the tmpfs owned by the shift; the child
//! then binds the overlay as it is (container/userns.rs). Chowning the tree
//! into the range would write to it; that is refused (supervisor/mod.rs).

use super::teardown::Teardown;
use super::SupervisorError;
use crate::container::idmap::{self, MapStep};
use crate::container::overlay;
use crate::plan::Plan;
use crate::policy::Userns;
use nix::mount::{umount2, MntFlags};
use nix::sched::{unshare, CloneFlags};

fn fail(what: &str, e: impl std::fmt::Display) -> SupervisorError {
    SupervisorError::Failed(format!("--ephemeral: {what}: {e}"))
}

/// Moves the supervisor into a mount namespace of its own and mounts the
/// ephemeral root over `plan.root` there; `tmpfs_options` size its upper
/// layer. The undo unmounts it (it would go with the supervisor anyway).
pub fn make<'a>(
    plan: &'a Plan,
    tmpfs_options: &str,
    userns: Option<Userns>,
    undo: &mut Teardown<'a>,
) -> Result<(), SupervisorError> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| fail("a mount namespace of our own", e))?;
    crate::sys::make_mounts_slaves()
        .map_err(|e| fail("make our mounts slaves of the host's", e))?;
    let mut mounts = 2;
    if let Some(u) = userns.filter(|u| u.map_root) {
        map_tree(plan, u)?;
        mounts += 1;
    }
    overlay::tmpfs_over_itself(&plan.root, tmpfs_options)
        .map_err(|e| fail("the overlay over the root", e))?;
    undo.push("removing the ephemeral root", move || {
        // The overlay, then the tmpfs under it (with the tree's bind in it),
        // then the ID-mapped tree.
        for _ in 0..mounts {
            umount2(&plan.root, MntFlags::MNT_DETACH).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    Ok(())
}

/// Mounts the tree ID-mapped (on-disk 0..range as the guest's range) onto itself.
fn map_tree(plan: &Plan, u: Userns) -> Result<(), SupervisorError> {
    idmap::map_onto_itself(&plan.root, u.shift, u.range).map_err(|(step, e)| match step {
        MapStep::Userns => fail("a user namespace for the tree's ID mapping", e),
        // These two came from rustix, which words an errno as std does.
        MapStep::Open => fail("open the container root", io_error(e)),
        MapStep::Idmap => fail(
            &format!(
                "ID-mapping the tree under the overlay ({})",
                idmap::fs_type(&plan.root)
            ),
            e,
        ),
        MapStep::Mount => fail("mount the ID-mapped tree", io_error(e)),
    })
}

fn io_error(e: nix::errno::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}
