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

use super::teardown::Teardown;
use super::SupervisorError;
use crate::container::overlay::{self, Spec, Upper};
use crate::plan::Plan;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use rustix::fs::{Mode, OFlags};
use std::os::fd::AsFd;

fn fail(what: &str, e: impl std::fmt::Display) -> SupervisorError {
    SupervisorError::Failed(format!("--ephemeral: {what}: {e}"))
}

/// Moves the supervisor into a mount namespace of its own and mounts the
/// ephemeral root over `plan.root` there; `tmpfs_options` size its upper
/// layer. The undo unmounts it (it would go with the supervisor anyway).
pub fn make<'a>(
    plan: &'a Plan,
    tmpfs_options: &str,
    undo: &mut Teardown<'a>,
) -> Result<(), SupervisorError> {
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| fail("a mount namespace of our own", e))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(|e| fail("make our mounts slaves of the host's", e))?;
    let tree = rustix::fs::open(
        &plan.root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| fail("open the container root", e))?;
    let lower = tree
        .try_clone()
        .map_err(|e| fail("dup the container root's fd", e))?;
    overlay::mount_over(
        tree.as_fd(),
        Spec {
            lowers: vec![lower],
            upper: Upper::Tmpfs,
            readonly: false,
            tmpfs_options,
            redirect_dir: true,
        },
    )
    .map_err(|e| fail("the overlay over the root", e))?;
    undo.push("removing the ephemeral root", move || {
        // The overlay, then the tmpfs under it (with the tree's bind in it).
        for _ in 0..2 {
            umount2(&plan.root, MntFlags::MNT_DETACH).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    Ok(())
}
