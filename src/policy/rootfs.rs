//! What the guest's root is made of, as plain data: the layer the child puts
//! over the tree each boot (--volatile=yes|overlay), whether the tree is then
//! made read-only (--read-only, --volatile=state) and what is mounted on it
//! (/var with --volatile=state); and the per-run layer of --ephemeral, which
//! the supervisor makes once, before the first boot (supervisor/ephemeral.rs).
//!
//! The sizes are nspawn's (systemd's TMPFS_LIMITS_ROOTFS and _VOLATILE_STATE):
//! a guest writing to its throw-away root fills RAM, not a disk, and may take a
//! quarter of it; the pages are charged to the memory cgroup of the writer.
//! With a user namespace the tmpfs mounts the guest writes to belong to its
//! root (uid=/gid= of the shift, as nspawn mounts them).

use super::Userns;
use crate::plan::{Plan, Volatile};

/// A root tmpfs: a quarter of the host's RAM and a million inodes.
pub const LIMITS_ROOTFS: &str = "size=25%,nr_inodes=1m";

/// The layer the child puts over the tree, before binding the root onto itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    /// The tree itself (or --ephemeral's overlay, already there).
    Tree,
    /// An empty tmpfs (these options) with the tree's /usr bound in read-only,
    /// and the symlinks and directories a merged-/usr system expects at the top.
    TmpfsWithUsr { options: String },
    /// An overlay of the tree under a tmpfs upper layer (these options).
    Overlay { options: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootFs {
    /// Per run: an overlay with a tmpfs upper layer (these options), made by
    /// the supervisor before the first boot and kept across reboots.
    pub ephemeral: Option<String>,
    /// Per boot.
    pub layer: Layer,
    /// The root, with every mount below it, made read-only once bound.
    pub read_only: bool,
    /// A tmpfs (these options) on /var of the read-only root.
    pub var_tmpfs: Option<String>,
    /// With a user namespace: the host uid (and gid) of the guest's root, who
    /// owns the tmpfs roots and what the runtime makes in an empty root.
    pub owner: Option<u32>,
}

/// Where the runtime mounts the API file systems at the top of the root: made
/// before a read-only root can no longer take them (nspawn's
/// base_filesystem_create does the same).
pub const MOUNT_POINTS: &[&str] = &["/dev", "/proc", "/sys", "/run", "/tmp"];

/// Links to /usr a merged-/usr root has at its top, made in an empty root
/// where their target exists in its /usr: (name, target).
pub const USR_LINKS: &[(&str, &str)] = &[
    ("bin", "usr/bin"),
    ("sbin", "usr/sbin"),
    ("lib", "usr/lib"),
    ("lib64", "usr/lib64"),
];

/// Directories an empty root gets besides the mount points: (path, mode).
pub const EMPTY_ROOT_DIRS: &[(&str, u32)] = &[("/etc", 0o755), ("/var", 0o755), ("/root", 0o700)];

pub fn of(plan: &Plan, userns: Option<Userns>) -> RootFs {
    let m = &plan.root_mode;
    let owner = userns.map(|u| u.host_id(0));
    // A tmpfs the guest's root writes to is its own, as nspawn mounts it
    // (uid=, gid= of the shift); a layer-holding one is never seen.
    let tmpfs = match owner {
        Some(id) => format!("mode=0755,uid={id},gid={id},{LIMITS_ROOTFS}"),
        None => format!("mode=0755,{LIMITS_ROOTFS}"),
    };
    let layer = match m.volatile {
        Volatile::Yes => Layer::TmpfsWithUsr {
            options: tmpfs.clone(),
        },
        Volatile::Overlay => Layer::Overlay {
            options: format!("mode=0755,{LIMITS_ROOTFS}"),
        },
        Volatile::No | Volatile::State => Layer::Tree,
    };
    RootFs {
        ephemeral: m.ephemeral.then(|| format!("mode=0755,{LIMITS_ROOTFS}")),
        layer,
        // A tmpfs root is the guest's to write (nspawn leaves it writable too);
        // an overlay writes nothing to the tree.
        read_only: m.volatile == Volatile::State || (m.read_only && m.volatile == Volatile::No),
        var_tmpfs: (m.volatile == Volatile::State).then_some(tmpfs),
        owner,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::RootMode;

    fn with(mode: RootMode) -> RootFs {
        let mut plan = Plan::new("/var/lib/containers/foo".into(), "foo");
        plan.root_mode = mode;
        of(&plan, None)
    }

    #[test]
    fn each_mode_says_what_it_makes() {
        let plain = with(RootMode::default());
        assert_eq!(plain.layer, Layer::Tree);
        assert!(!plain.read_only && plain.ephemeral.is_none() && plain.var_tmpfs.is_none());

        let eph = with(RootMode {
            ephemeral: true,
            ..Default::default()
        });
        assert!(eph.ephemeral.as_deref().unwrap().contains("size=25%"));
        assert_eq!(eph.layer, Layer::Tree);
        assert!(!eph.read_only);

        let ro = with(RootMode {
            read_only: true,
            ..Default::default()
        });
        assert!(ro.read_only && ro.layer == Layer::Tree);

        let state = with(RootMode {
            volatile: Volatile::State,
            ..Default::default()
        });
        assert!(state.read_only);
        assert!(state.var_tmpfs.as_deref().unwrap().contains("nr_inodes=1m"));

        // --read-only does not make volatile roots read-only: they are the
        // guest's to write, and the tree is not written either way.
        for v in [Volatile::Yes, Volatile::Overlay] {
            let r = with(RootMode {
                volatile: v,
                read_only: true,
                ephemeral: false,
            });
            assert!(!r.read_only, "{v:?}");
            assert!(r.var_tmpfs.is_none());
            assert!(matches!(
                r.layer,
                Layer::TmpfsWithUsr { .. } | Layer::Overlay { .. }
            ));
        }
    }

    #[test]
    fn with_a_user_namespace_the_guests_tmpfs_belong_to_its_root() {
        let mut plan = Plan::new("/var/lib/containers/foo".into(), "foo");
        let u = Userns {
            shift: 0x80000,
            range: 0x10000,
            map_root: true,
        };
        for v in [Volatile::Yes, Volatile::State] {
            plan.root_mode.volatile = v;
            let r = of(&plan, Some(u));
            assert_eq!(r.owner, Some(0x80000));
            let opts = match (&r.layer, &r.var_tmpfs) {
                (Layer::TmpfsWithUsr { options }, _) | (_, Some(options)) => options.clone(),
                _ => panic!("{v:?}: no tmpfs"),
            };
            assert!(opts.contains("uid=524288,gid=524288"), "{v:?}: {opts}");
        }
        assert_eq!(of(&plan, None).owner, None);
    }
}
