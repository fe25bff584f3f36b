//! The container's user namespace, on the host's side: its range, the lock
//! that keeps the range the container's while it runs, who owns the root's
//! files in it, and the uid and gid maps written at the sync point.
//!
//! As nspawn does (and in nspawn's own lock directory, so that nixrun and
//! nspawn never hand out the same range):
//!
//! - `pick`: a 64K-aligned range between 0x80000 and 0x6FFF0000; first the one
//!   the root directory is owned in, then the one SipHash-2-4 of the machine
//!   name gives, then random ones; a candidate is taken when its lock file
//!   `/run/systemd/nspawn-uid/<base>` can be locked and neither its first nor
//!   its last id is a user or group of the host (its /etc/passwd and
//!   /etc/group: nixrun is static and asks no other NSS source);
//! - `yes`: the range the root directory's owner lies in (uid and gid must
//!   agree); `identity` and `BASE[:RANGE]`: as given. nspawn locks no fixed
//!   range; nixrun locks every 64K block a fixed range touches (what nspawn's
//!   pick tries), so a range overlapping one in use is refused, and nspawn's
//!   pick never lands on it. Ranges starting at 0 map the host's own ids and
//!   are not locked.
//!
//! Ownership (--private-users-ownership=): `map` binds the root ID-mapped
//! (container/idmap.rs), `chown` shifts the tree's owners into the range once
//! (nspawn's path_patch_uid: the low 16 bits of each id kept, the top
//! directory marked busy while it runs, ACLs shifted too), `auto` maps where
//! the file system can be and the tree is not shifted already, else chowns.
//!
//! The maps are one line, `0 SHIFT RANGE`, for uids and gids alike: what
//! systemd-machined's GetMachineUIDShift accepts. setgroups stays allowed (the
//! guest's root needs it; the maps are written by the privileged supervisor).

use super::locks::{try_lock, LockFile};
use crate::container::idmap;
use crate::plan::{BindSource, Idmap, Ownership, Plan, PrivateUsers};
use crate::policy::Userns;
use nix::errno::Errno;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub const LOCK_DIR: &str = "/run/systemd/nspawn-uid";
/// nspawn's CONTAINER_UID_BASE_MIN and _MAX (meson's defaults).
pub const PICK_MIN: u32 = 0x0008_0000;
pub const PICK_MAX: u32 = 0x6FFF_0000;
const BLOCK: u32 = 0x10000;
/// nspawn's key for the machine-name candidate (uid_shift_pick).
const HASH_KEY: [u8; 16] = [
    0xe1, 0x56, 0xe0, 0xf0, 0x4a, 0xf0, 0x41, 0xaf, 0x96, 0x41, 0xcf, 0x41, 0x33, 0x94, 0xff, 0x72,
];
const PICK_TRIES: u32 = 100;

/// A decided user namespace, its range locked.
#[derive(Debug)]
pub struct Resolved {
    pub userns: Userns,
    /// The range's lock files, held for the run.
    pub locks: Vec<LockFile>,
    /// The tree is to be chowned into the range before the start.
    pub chown: bool,
}

/// Decides the range and ownership, checks what can be ID-mapped, takes the
/// range's locks; changes nothing else on the host (the chown, if any, is
/// `chown_tree`). One line on failure.
pub fn resolve(plan: &Plan) -> Result<Option<Resolved>, String> {
    if plan.private_users == PrivateUsers::No {
        return Ok(None);
    }
    // Explicitly ID-mapped binds must be mappable: checked first, before
    // anything is locked.
    for b in plan.binds.iter().filter(|b| b.idmap != Idmap::No) {
        let BindSource::Host(src) = &b.source else {
            continue; // inside the root: mappable where the root is (checked by the child)
        };
        idmap::probe(src).map_err(|why| {
            format!(
                "--bind{}={}:{}: {why}",
                if b.readonly { "-ro" } else { "" },
                src.display(),
                b.target.display()
            )
        })?;
    }
    let meta = std::fs::metadata(&plan.root)
        .map_err(|e| format!("container root {}: {e}", plan.root.display()))?;
    let owner_base = meta.uid() & !(BLOCK - 1);
    let shifted = owner_base != 0;
    let (shift, range, locks) = match plan.private_users {
        PrivateUsers::No => unreachable!("handled above"),
        PrivateUsers::Fixed { shift, range } => {
            let shift = match shift {
                Some(s) => s,
                None => {
                    if meta.gid() & !(BLOCK - 1) != owner_base {
                        return Err(format!(
                            "--private-users=yes: the owner of {} ({}:{}) has uid and gid in different ranges",
                            plan.root.display(),
                            meta.uid(),
                            meta.gid()
                        ));
                    }
                    owner_base
                }
            };
            let locks = if shift == 0 {
                Vec::new()
            } else {
                lock_fixed(Path::new(LOCK_DIR), shift, range)?
            };
            (shift, range, locks)
        }
        PrivateUsers::Pick => {
            let (shift, lock) = pick(
                Path::new(LOCK_DIR),
                &plan.machine,
                owner_base,
                &HostIds::read(),
            )?;
            (shift, BLOCK, vec![lock])
        }
    };
    let (map_root, chown) = match plan.ownership {
        _ if shift == 0 => (false, false),
        Ownership::Off => (false, false),
        Ownership::Chown => (false, true),
        Ownership::Map => {
            idmap::probe(&plan.root)
                .map_err(|why| format!("--private-users-ownership=map: container root {why}"))?;
            (true, false)
        }
        // A tree that is shifted already is chowned into the range (a no-op
        // when the range is its own); mapping it would show it as nobody's.
        Ownership::Auto if shifted => (false, true),
        Ownership::Auto => match idmap::probe(&plan.root) {
            Ok(()) => (true, false),
            Err(why) => {
                if !plan.quiet {
                    eprintln!("nixrun: {why}; chowning the tree into the range instead");
                }
                (false, true)
            }
        },
    };
    Ok(Some(Resolved {
        userns: Userns {
            shift,
            range,
            map_root,
        },
        locks,
        chown,
    }))
}

/// Writes the single-line uid and gid maps of `pid`'s user namespace.
pub fn write_maps(pid: i32, u: &Userns) -> Result<(), String> {
    let line = format!("0 {} {}\n", u.shift, u.range);
    for file in ["uid_map", "gid_map"] {
        std::fs::write(format!("/proc/{pid}/{file}"), &line)
            .map_err(|e| format!("writing the container's {file}: {e}"))?;
    }
    Ok(())
}

/// The host's users and groups, as far as pick asks about them.
#[derive(Debug, Default)]
pub struct HostIds {
    uids: Vec<u32>,
    gids: Vec<u32>,
}

impl HostIds {
    pub fn read() -> HostIds {
        let ids = |file: &str| -> Vec<u32> {
            std::fs::read_to_string(file)
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.starts_with(['#', '+', '-']))
                .filter_map(|l| l.split(':').nth(2)?.parse().ok())
                .collect()
        };
        HostIds {
            uids: ids("/etc/passwd"),
            gids: ids("/etc/group"),
        }
    }

    fn taken(&self, base: u32) -> bool {
        let last = base + 0xFFFE;
        [base, last]
            .iter()
            .any(|id| self.uids.contains(id) || self.gids.contains(id))
    }
}

/// nspawn's normalisation of a candidate into the pick range.
fn normalize(c: u32) -> u32 {
    ((c % (PICK_MAX - PICK_MIN)) + PICK_MIN) & !(BLOCK - 1)
}

/// The machine-name candidate (the same name gets the same range while it is
/// free, in nspawn and nixrun alike).
pub fn hashed_candidate(machine: &str) -> u32 {
    let h = siphasher::sip::SipHasher24::new_with_key(&HASH_KEY).hash(machine.as_bytes());
    normalize(h as u32)
}

fn random_candidate() -> Result<u32, String> {
    let mut b = [0u8; 4];
    let mut got = 0;
    while got < b.len() {
        match rustix::rand::getrandom(&mut b[got..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(format!("getrandom: {e}")),
        }
    }
    Ok(normalize(u32::from_ne_bytes(b)))
}

fn lock_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .mode(0o755)
        .recursive(true)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) => Err(format!("{}: {e}", dir.display())),
    }
}

/// nspawn's pick: the first free candidate of `first`, the name's hash, then
/// random ones.
pub fn pick(
    dir: &Path,
    machine: &str,
    first: u32,
    host: &HostIds,
) -> Result<(u32, LockFile), String> {
    lock_dir(dir)?;
    let mut candidate = first;
    for attempt in 0..PICK_TRIES {
        let usable = (PICK_MIN..=PICK_MAX).contains(&candidate) && candidate % BLOCK == 0;
        if usable && !host.taken(candidate) {
            let path = dir.join(candidate.to_string());
            match try_lock(&path) {
                Ok(Some(lock)) => return Ok((candidate, lock)),
                Ok(None) => {}
                Err(e) => return Err(format!("lock file {}: {}", path.display(), e.desc())),
            }
        }
        candidate = if attempt == 0 {
            hashed_candidate(machine)
        } else {
            random_candidate()?
        };
    }
    Err(format!(
        "no free user namespace range found in {PICK_TRIES} tries (locks in {})",
        dir.display()
    ))
}

/// Locks every 64K block [shift, shift+range) touches; refuses if one is in use.
pub fn lock_fixed(dir: &Path, shift: u32, range: u32) -> Result<Vec<LockFile>, String> {
    lock_dir(dir)?;
    let end = u64::from(shift) + u64::from(range);
    let mut block = u64::from(shift) & !u64::from(BLOCK - 1);
    let mut held = Vec::new();
    while block < end {
        let path = dir.join(block.to_string());
        match try_lock(&path) {
            Ok(Some(l)) => held.push(l),
            // What was locked so far goes with `held` (unlinked, then closed).
            Ok(None) => {
                return Err(format!(
                    "user namespace range {shift}:{range} overlaps {block}:{BLOCK}, which another \
                     container uses (locked in {})",
                    path.display()
                ))
            }
            Err(e) => return Err(format!("lock file {}: {}", path.display(), e.desc())),
        }
        block += u64::from(BLOCK);
    }
    Ok(held)
}

// ---------------------------------------------------------------- chown

/// systemd's UID_BUSY_BASE: the top directory's owner while a chown runs, so
/// that an interrupted one is redone.
const BUSY_BASE: u32 = 0xFFFE_0000;

/// File systems whose inodes are not the tree's (nspawn stops there).
fn special_fs(magic: i64) -> bool {
    const MAGICS: &[i64] = &[
        0x4249_4e4d,            // binfmt_misc
        0x0027_e0eb,            // cgroup
        0x6367_7270,            // cgroup2
        0x6462_6720,            // debugfs
        0x1cd1,                 // devpts
        0xde5e_81e4_u32 as i64, // efivarfs
        0x9584_58f6_u32 as i64, // hugetlbfs
        0x1980_0202,            // mqueue
        0x9fa0,                 // proc
        0x6165_676c,            // pstore
        0xf97c_ff8c_u32 as i64, // selinuxfs
        0x4341_5d53,            // smackfs
        0x7363_6673,            // securityfs
        0xcafe_4a11_u32 as i64, // bpf
        0x7472_6163,            // tracefs
        0x6265_6572,            // sysfs
    ];
    MAGICS.contains(&magic)
}

fn shifted(id: u32, shift: u32) -> u32 {
    shift | (id & 0xFFFF)
}

/// Shifts the owners of the tree at `root` into the range at `shift` (64K
/// aligned, 65536 ids). Returns whether anything changed; nothing does when
/// the top directory is in the range already.
pub fn chown_tree(root: &Path, shift: u32) -> Result<bool, String> {
    use rustix::fs::{Mode, OFlags};
    let fail = |what: &str, e: Errno| {
        format!(
            "chowning {} into {shift}: {what}: {}",
            root.display(),
            e.desc()
        )
    };
    let fd = rustix::fs::open(
        root,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| fail("open", crate::sys::errno(e)))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| fail("stat", crate::sys::errno(e)))?;
    if st.st_uid >> 16 != st.st_gid >> 16 {
        return Err(format!(
            "chowning {}: its owner {}:{} has uid and gid in different ranges",
            root.display(),
            st.st_uid,
            st.st_gid
        ));
    }
    if (st.st_uid ^ shift) >> 16 == 0 {
        return Ok(false);
    }
    if st.st_uid & !0xFFFF != BUSY_BASE {
        chown_fd(
            &fd,
            None,
            BUSY_BASE | (st.st_uid & 0xFFFF),
            BUSY_BASE | (st.st_gid & 0xFFFF),
        )
        .map_err(|e| fail("marking it busy", e))?;
    }
    let mut walker = Walker {
        shift,
        errors: None,
    };
    walker.dir(fd, st.st_uid & 0xFFFF, st.st_gid & 0xFFFF, st.st_mode, root);
    match walker.errors {
        Some(e) => Err(e),
        None => Ok(true),
    }
}

struct Walker {
    shift: u32,
    errors: Option<String>,
}

impl Walker {
    fn fail(&mut self, path: &Path, what: &str, e: Errno) {
        self.errors
            .get_or_insert_with(|| format!("chowning {}: {what}: {}", path.display(), e.desc()));
    }

    /// A directory: its entries, then itself (so that the top directory,
    /// changed last, says whether the whole tree is done).
    fn dir(&mut self, fd: rustix::fd::OwnedFd, uid: u32, gid: u32, mode: u32, path: &Path) {
        use rustix::fs::{AtFlags, Mode, OFlags};
        if self.errors.is_some() {
            return;
        }
        match rustix::fs::fstatfs(&fd) {
            Ok(sfs) if special_fs(sfs.f_type) => return,
            Ok(sfs) if sfs.f_flags as u64 & libc::ST_RDONLY != 0 => return,
            Ok(_) => {}
            Err(e) => return self.fail(path, "statfs", crate::sys::errno(e)),
        }
        let dup = match rustix::io::fcntl_dupfd_cloexec(&fd, 3) {
            Ok(d) => d,
            Err(e) => return self.fail(path, "dup", crate::sys::errno(e)),
        };
        let mut dir = match rustix::fs::Dir::new(dup) {
            Ok(d) => d,
            Err(e) => return self.fail(path, "opendir", crate::sys::errno(e)),
        };
        for entry in dir.by_ref() {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => return self.fail(path, "readdir", crate::sys::errno(e)),
            };
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            let child = path.join(
                <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name.to_bytes()),
            );
            let st = match rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(s) => s,
                Err(e) => return self.fail(&child, "stat", crate::sys::errno(e)),
            };
            if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory {
                let sub = rustix::fs::openat(
                    &fd,
                    name,
                    OFlags::RDONLY
                        | OFlags::DIRECTORY
                        | OFlags::NOFOLLOW
                        | OFlags::NONBLOCK
                        | OFlags::CLOEXEC,
                    Mode::empty(),
                );
                match sub {
                    Ok(sub) => self.dir(sub, st.st_uid, st.st_gid, st.st_mode, &child),
                    Err(e) => return self.fail(&child, "open", crate::sys::errno(e)),
                }
            } else if let Err(e) = self.patch(&fd, Some(name), st.st_uid, st.st_gid, st.st_mode) {
                return self.fail(&child, "chown", e);
            }
            if self.errors.is_some() {
                return;
            }
        }
        if let Err(e) = self.patch(&fd, None, uid, gid, mode) {
            self.fail(path, "chown", e);
        }
    }

    fn patch(
        &self,
        dir: &rustix::fd::OwnedFd,
        name: Option<&std::ffi::CStr>,
        uid: u32,
        gid: u32,
        mode: u32,
    ) -> Result<(), Errno> {
        let (nu, ng) = (shifted(uid, self.shift), shifted(gid, self.shift));
        let symlink = rustix::fs::FileType::from_raw_mode(mode) == rustix::fs::FileType::Symlink;
        // Through /proc/self/fd: the xattr calls take paths (and lgetxattr
        // does not follow the entry if it is a link).
        let xpath = name.map(|n| {
            format!(
                "/proc/self/fd/{}/{}",
                std::os::fd::AsRawFd::as_raw_fd(dir),
                String::from_utf8_lossy(n.to_bytes())
            )
        });
        let xpath = xpath
            .unwrap_or_else(|| format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(dir)));
        if uid != nu || gid != ng {
            // A chown drops file capabilities (and set-id bits): both go back.
            let caps = (!symlink)
                .then(|| lgetxattr_vec(&xpath, "security.capability"))
                .and_then(Result::ok);
            chown_fd(dir, name, nu, ng)?;
            if !symlink {
                let m = rustix::fs::Mode::from_raw_mode(mode & 0o7777);
                match name {
                    Some(n) => rustix::fs::chmodat(dir, n, m, rustix::fs::AtFlags::empty()),
                    None => rustix::fs::fchmod(dir, m),
                }
                .map_err(crate::sys::errno)?;
            }
            if let Some(caps) = caps {
                rustix::fs::lsetxattr(
                    &xpath,
                    "security.capability",
                    &caps,
                    rustix::fs::XattrFlags::empty(),
                )
                .map_err(crate::sys::errno)?;
            }
        }
        if !symlink {
            let is_dir =
                rustix::fs::FileType::from_raw_mode(mode) == rustix::fs::FileType::Directory;
            for attr in ["system.posix_acl_access", "system.posix_acl_default"] {
                if attr.ends_with("default") && !is_dir {
                    continue;
                }
                if let Ok(acl) = lgetxattr_vec(&xpath, attr) {
                    if let Some(new) = shift_acl(&acl, self.shift) {
                        rustix::fs::lsetxattr(&xpath, attr, &new, rustix::fs::XattrFlags::empty())
                            .map_err(crate::sys::errno)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// An extended attribute of a path (not following a final link).
fn lgetxattr_vec(path: &str, name: &str) -> Result<Vec<u8>, Errno> {
    // File capabilities and the ACLs of an OS tree are a few dozen bytes; a
    // larger ACL (ERANGE) is left alone.
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::lgetxattr(path, name, &mut buf[..]).map_err(crate::sys::errno)?;
    buf.truncate(n);
    Ok(buf)
}

fn chown_fd(
    dir: &rustix::fd::OwnedFd,
    name: Option<&std::ffi::CStr>,
    uid: u32,
    gid: u32,
) -> Result<(), Errno> {
    let (u, g) = (
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    );
    match name {
        Some(n) => rustix::fs::chownat(dir, n, u, g, rustix::fs::AtFlags::SYMLINK_NOFOLLOW),
        None => rustix::fs::fchown(dir, u, g),
    }
    .map_err(crate::sys::errno)
}

/// A POSIX ACL xattr (version 2: a 4-byte header, 8-byte entries of tag, perm,
/// id) with its named users and groups shifted; None if nothing changes.
pub fn shift_acl(acl: &[u8], shift: u32) -> Option<Vec<u8>> {
    const ACL_USER: u16 = 0x02;
    const ACL_GROUP: u16 = 0x08;
    if acl.len() < 4 || (acl.len() - 4) % 8 != 0 {
        return None;
    }
    let mut out = acl.to_vec();
    let mut changed = false;
    for e in out[4..].chunks_exact_mut(8) {
        let tag = u16::from_le_bytes([e[0], e[1]]);
        if tag == ACL_USER || tag == ACL_GROUP {
            let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
            let new = shifted(id, shift);
            if new != id {
                e[4..8].copy_from_slice(&new.to_le_bytes());
                changed = true;
            }
        }
    }
    changed.then_some(out)
}

/// The lock files of ranges in use, for tests and diagnostics.
pub fn lock_path(base: u32) -> PathBuf {
    Path::new(LOCK_DIR).join(base.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("nixrun-userns-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn the_name_candidate_is_nspawns() {
        // nspawn 252 picked this for `-M uns-exp` on the development machine
        // (/run/systemd/nspawn-uid/1604845568 while it ran).
        assert_eq!(hashed_candidate("uns-exp"), 1_604_845_568);
        for name in ["a", "foo", "uns-x", &"x".repeat(64)] {
            let c = hashed_candidate(name);
            assert!(
                (PICK_MIN..=PICK_MAX).contains(&c) && c % BLOCK == 0,
                "{name}: {c}"
            );
        }
    }

    #[test]
    fn pick_skips_what_is_locked_or_a_users() {
        let dir = tempdir("pick");
        let name = "uns-pick-test";
        let hashed = hashed_candidate(name);
        // The root's own range comes first when it is usable.
        let (first, l1) = pick(&dir, name, 0x0070_0000, &HostIds::default()).unwrap();
        assert_eq!(first, 0x0070_0000);
        assert!(dir.join("7340032").exists());
        // A root owned by host ids (0) gets the name's range...
        let (second, l2) = pick(&dir, name, 0, &HostIds::default()).unwrap();
        assert_eq!(second, hashed);
        // ...and, while that is held, another one.
        let (third, l3) = pick(&dir, name, 0, &HostIds::default()).unwrap();
        assert!(third != hashed && third != first);
        // A host user at the end of the name's range makes it unusable.
        drop(l2);
        assert!(
            !dir.join(hashed.to_string()).exists(),
            "released locks are unlinked"
        );
        let users = HostIds {
            uids: vec![hashed + 0xFFFE],
            gids: vec![],
        };
        let (fourth, _l4) = pick(&dir, name, 0, &users).unwrap();
        assert_ne!(fourth, hashed);
        drop((l1, l3));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn fixed_ranges_lock_every_block_and_refuse_overlaps() {
        let dir = tempdir("fixed");
        let a = lock_fixed(&dir, 0x0100_0000, 0x20000).unwrap();
        assert_eq!(a.len(), 2);
        // Not aligned, but reaching into the first block: refused, and the
        // blocks it locked before are released.
        let e = lock_fixed(&dir, 0x00FF_8000, 0x10000).unwrap_err();
        assert!(e.contains("overlaps 16777216:65536"), "{e}");
        assert!(!dir.join((0x00FF_0000u32).to_string()).exists());
        let b = lock_fixed(&dir, 0x0102_0000, 0x10000).unwrap();
        drop((a, b));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn acls_shift_named_users_and_groups_only() {
        let mut acl = 2u32.to_le_bytes().to_vec();
        for (tag, id) in [
            (0x01u16, u32::MAX),
            (0x02, 1000),
            (0x08, 4),
            (0x20, u32::MAX),
        ] {
            acl.extend_from_slice(&tag.to_le_bytes());
            acl.extend_from_slice(&7u16.to_le_bytes());
            acl.extend_from_slice(&id.to_le_bytes());
        }
        let out = shift_acl(&acl, 0x0008_0000).unwrap();
        let id =
            |i: usize| u32::from_le_bytes(out[4 + i * 8 + 4..4 + i * 8 + 8].try_into().unwrap());
        assert_eq!(
            [id(0), id(1), id(2), id(3)],
            [u32::MAX, 0x80000 + 1000, 0x80004, u32::MAX]
        );
        assert_eq!(shift_acl(&out, 0x0008_0000), None, "already shifted");
        assert_eq!(shift_acl(&[1, 2, 3], 0x80000), None);
    }

    #[test]
    fn trees_are_chowned_into_the_range_once() {
        use std::os::unix::fs::PermissionsExt;
        if !nix::unistd::geteuid().is_root() {
            return; // chown needs root; integration/userns.rs covers it as well
        }
        let dir = tempdir("chown");
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("etc/sub")).unwrap();
        std::fs::write(root.join("etc/file"), "x").unwrap();
        std::fs::write(root.join("suid"), "x").unwrap();
        std::fs::set_permissions(root.join("suid"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        std::os::unix::fs::chown(root.join("etc/file"), Some(1000), Some(100)).unwrap();
        std::os::unix::fs::symlink("/nowhere", root.join("link")).unwrap();
        let shift = 0x0009_0000;
        assert!(chown_tree(&root, shift).unwrap());
        let owner = |p: &str| {
            let m = std::fs::symlink_metadata(root.join(p)).unwrap();
            (m.uid(), m.gid())
        };
        assert_eq!(owner(""), (shift, shift));
        assert_eq!(owner("etc/sub"), (shift, shift));
        assert_eq!(owner("etc/file"), (shift + 1000, shift + 100));
        assert_eq!(owner("link"), (shift, shift));
        let mode = std::fs::metadata(root.join("suid"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o4755);
        // Done already: the top directory says so.
        assert!(!chown_tree(&root, shift).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
