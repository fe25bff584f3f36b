//! statfs(2) f_type magic numbers → the short names tests compare against.
//!
//! The values are the kernel's (include/uapi/linux/magic.h); listing them here
//! rather than through libc's constants keeps the table checkable at a glance and
//! independent of which constants a libc version happens to export.

const NAMES: &[(u64, &str)] = &[
    (0x6367_7270, "cgroup2"),
    (0x0027_e0eb, "cgroup"),
    (0x0102_1994, "tmpfs"),
    (0x0000_9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x0000_1cd1, "devpts"),
    (0x1980_0202, "mqueue"),
    // ext2, ext3 and ext4 share this magic.
    (0x0000_ef53, "ext4"),
    (0x794c_7630, "overlay"),
    // Not asked for by the tests so far, but common enough as a host's or a
    // store's filesystem that a readable name beats other:0x….
    (0x8584_58f6, "ramfs"),
    (0x9123_683e, "btrfs"),
    (0x5846_5342, "xfs"),
    (0x0102_1997, "9p"),
    (0x6573_5546, "fuse"),
    (0x7371_7368, "squashfs"),
    (0x6e73_6673, "nsfs"),
    (0x7363_6673, "securityfs"),
    (0xcafe_4a11, "bpf"),
];

/// A name from [`NAMES`], or `other:0x<hex>`.
pub fn name(magic: u64) -> String {
    NAMES
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| format!("other:{magic:#x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_magics_match_the_kernel_and_libc() {
        // Cross-check the table against libc's constants where it has them, so a
        // typo in a hex literal cannot hide.
        let from_libc: &[(libc::c_long, &str)] = &[
            (libc::CGROUP2_SUPER_MAGIC, "cgroup2"),
            (libc::CGROUP_SUPER_MAGIC, "cgroup"),
            (libc::TMPFS_MAGIC, "tmpfs"),
            (libc::PROC_SUPER_MAGIC, "proc"),
            (libc::SYSFS_MAGIC, "sysfs"),
            (libc::DEVPTS_SUPER_MAGIC, "devpts"),
            (libc::EXT4_SUPER_MAGIC, "ext4"),
            (libc::OVERLAYFS_SUPER_MAGIC, "overlay"),
            (libc::BTRFS_SUPER_MAGIC, "btrfs"),
            (libc::XFS_SUPER_MAGIC, "xfs"),
        ];
        for (magic, want) in from_libc {
            assert_eq!(name(*magic as u64), *want, "magic {magic:#x}");
        }
        assert_eq!(name(0x1980_0202), "mqueue");
    }

    #[test]
    fn unknown_magic_is_hex() {
        assert_eq!(name(0x1234), "other:0x1234");
        assert_eq!(name(0), "other:0x0");
    }

    #[test]
    fn names_and_magics_are_unique() {
        for (i, (m, n)) in NAMES.iter().enumerate() {
            for (m2, n2) in &NAMES[i + 1..] {
                assert_ne!(m, m2);
                assert_ne!(n, n2);
            }
        }
    }
}
