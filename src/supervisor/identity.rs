//! Who the container is, decided at start-up from the plan and its root: its
//! UUID (the guest's machine id, --uuid, or a new one), the host's os-release,
//! and the journal link. The result is the `Facts` the policy is computed from.

use crate::container::root::{Root, RootError};
use crate::plan::{Bind, BindSource, Idmap, LinkJournal, Plan, SourceKind};
use crate::policy::{env::os_release_pairs, Facts, Userns};
use std::path::{Path, PathBuf};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("open the container root: {0}")]
    Open(#[source] nix::errno::Errno),
    #[error("container root {path}: {err}", path = path.display())]
    Root {
        path: PathBuf,
        #[source]
        err: RootError,
    },
    #[error("--link-journal=guest: {0}")]
    Journal(String),
    #[error("a random UUID for the container: {0}")]
    Random(#[source] nix::errno::Errno),
}

/// The facts of a start; `userns` is the container's user namespace, decided
/// before (the journal directory made here belongs to the guest's root).
pub fn facts(plan: &Plan, userns: Option<Userns>) -> Result<Facts, IdentityError> {
    let root = Root::open_dir(&plan.root).map_err(IdentityError::Open)?;
    let (host_os_release, host_os_pairs) = host_os_release();
    let guest_id = read_machine_id(&root, &plan.root)?;
    let uuid = match guest_id.or(plan.uuid) {
        Some(u) => u,
        None => random_uuid().map_err(IdentityError::Random)?,
    };
    let extra_binds = link_journal(plan, &root, &uuid, userns)?
        .into_iter()
        .collect();
    Ok(Facts {
        uuid,
        host_os_release,
        host_os_pairs,
        extra_binds,
        inside_nixrun: inside_nixrun(),
        userns,
    })
}

/// The host's os-release file and the fields the container interface passes on.
pub fn host_os_release() -> (Option<PathBuf>, Vec<(String, String)>) {
    let path = ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let pairs = path
        .as_deref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|s| os_release_pairs(&s))
        .unwrap_or_default();
    (path, pairs)
}

/// The UUID of a container without --uuid: the guest's machine id if it has
/// one (so that the two agree), else a new random one.
pub fn guest_or_random_uuid(root_dir: &Path) -> Result<Uuid, IdentityError> {
    let root = Root::open_dir(root_dir).map_err(IdentityError::Open)?;
    match read_machine_id(&root, root_dir)? {
        Some(u) => Ok(u),
        None => random_uuid().map_err(IdentityError::Random),
    }
}

/// Whether we run in a nixrun guest: its /run/host is the outer nixrun's,
/// read-only and locked, so the guest cannot make this say nixrun where it
/// is not (and a host that claims it only loses its own mount guard's
/// protection for itself).
pub fn inside_nixrun() -> bool {
    std::fs::read_to_string("/run/host/container-manager").is_ok_and(|m| m.trim() == "nixrun")
}

/// A version 4 UUID, as systemd generates them.
fn random_uuid() -> Result<Uuid, nix::errno::Errno> {
    let mut bytes = [0u8; 16];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(crate::sys::errno(e)),
        }
    }
    Ok(uuid::Builder::from_random_bytes(bytes).into_uuid())
}

fn read_machine_id(root: &Root, path: &Path) -> Result<Option<Uuid>, IdentityError> {
    let data = root
        .read_file(Path::new("/etc/machine-id"))
        .map_err(|err| IdentityError::Root {
            path: path.to_path_buf(),
            err,
        })?;
    Ok(data.and_then(|d| {
        let s = String::from_utf8_lossy(&d);
        let s = s.trim();
        // "uninitialized" (systemd's first-boot marker) and empty both mean unset.
        (s.len() == 32)
            .then(|| crate::plan::parse_uuid(s))
            .flatten()
    }))
}

/// --link-journal, for `journalctl -m` on the host. The guest's journal lives in
/// /var/log/journal/<machine-id>, and its machine id is the UUID we pass when its
/// /etc/machine-id is empty. `guest`: the host gets a symlink to the guest's
/// directory. `auto`: if the host already has a directory for this machine (made
/// for `host` mode), the guest gets it bound in — returned as an extra bind.
///
/// In a user namespace the guest's journal directory is made for the guest's
/// root, and a host directory bound in is ID-mapped (its owners are the
/// guest's, as the root's are).
fn link_journal(
    plan: &Plan,
    root: &Root,
    uuid: &Uuid,
    userns: Option<Userns>,
) -> Result<Option<Bind>, IdentityError> {
    let id = uuid.simple().to_string();
    let host_dir = Path::new("/var/log/journal");
    let host_path = host_dir.join(&id);
    let in_guest = Path::new("/var/log/journal").join(&id);
    if plan.link_journal == LinkJournal::No {
        return Ok(None);
    }
    let must = match plan.link_journal {
        LinkJournal::No => return Ok(None),
        LinkJournal::Auto => {
            let is_dir = host_path.symlink_metadata().is_ok_and(|m| m.is_dir());
            return Ok(is_dir.then_some(Bind {
                source: BindSource::Host(host_path),
                target: in_guest,
                readonly: false,
                recursive: false,
                kind: SourceKind::Dir,
                idmap: if userns.is_some() {
                    Idmap::Idmap
                } else {
                    Idmap::No
                },
            }));
        }
        LinkJournal::Guest => true,
        LinkJournal::TryGuest => false,
    };
    let fail = |why: String| {
        if must {
            Err(IdentityError::Journal(why))
        } else {
            Ok(None)
        }
    };
    if !host_dir.is_dir() {
        return fail(format!("the host has no {}", host_dir.display()));
    }
    let guest_dir = plan
        .root
        .join(in_guest.strip_prefix("/").unwrap_or(&in_guest));
    match std::fs::read_link(&host_path) {
        Ok(t) if t == guest_dir => {}
        _ if host_path.symlink_metadata().is_ok() => {
            return fail(format!(
                "{} exists and is not a link to this guest",
                host_path.display()
            ))
        }
        _ => {
            if let Err(e) = root.mkdir_all(&in_guest, 0o2755) {
                return fail(e.to_string());
            }
            if let Some(u) = userns {
                // Only the directories made here; the guest's journald fixes
                // up its own files.
                let mut dir = Path::new("/var/log/journal").to_path_buf();
                for d in [None, Some(&id)] {
                    if let Some(d) = d {
                        dir.push(d);
                    }
                    if let Err(e) = root.chown(&dir, u.disk_id(0), u.disk_id(0)) {
                        return fail(e.to_string());
                    }
                }
            }
            if let Err(e) = std::os::unix::fs::symlink(&guest_dir, &host_path) {
                return fail(format!("{}: {e}", host_path.display()));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_uuids_are_version_4_and_differ() {
        let a = random_uuid().unwrap();
        assert_eq!(a.get_version_num(), 4);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(a, random_uuid().unwrap());
    }
}
