//! nspawn's flags for what the guest's root and its file systems are made of:
//! -x/--ephemeral, --volatile=, --read-only, --overlay=/--overlay-ro=,
//! --inaccessible=; validated against the tree before anything is touched.

use super::cli::Cli;
use super::split_colons;
use crate::plan::{
    container_path, user_mount_target, BindSource, LinkJournal, Overlay, PlanError, RootMode,
    Volatile,
};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// --ephemeral, --volatile=[MODE] (a bare --volatile is yes) and --read-only.
pub(super) fn root_mode(cli: &Cli) -> Result<RootMode, PlanError> {
    let volatile = match cli.volatile.as_deref() {
        None => Volatile::No,
        Some(v) => match v {
            "state" => Volatile::State,
            "overlay" => Volatile::Overlay,
            // nspawn takes any of its booleans here.
            "yes" | "y" | "true" | "t" | "on" | "1" => Volatile::Yes,
            "no" | "n" | "false" | "f" | "off" | "0" => Volatile::No,
            _ => {
                return Err(PlanError::BadMount {
                    flag: "volatile",
                    spec: v.to_string(),
                    why: "expected yes, no, state or overlay".into(),
                })
            }
        },
    };
    Ok(RootMode {
        ephemeral: cli.ephemeral,
        volatile,
        read_only: cli.read_only,
    })
}

/// nspawn runs the host's / itself as a guest when given --ephemeral or
/// --volatile; nixrun does not, whatever the flags.
pub(super) fn host_root(e: PlanError, mode: &RootMode) -> PlanError {
    match e {
        PlanError::RootIsHostRoot(dir) if mode.ephemeral || mode.volatile != Volatile::No => {
            PlanError::RootMode(
                dir,
                "refusing to use the host's / as a container root, also with --ephemeral or \
                 --volatile (nspawn would run the host's own tree as a guest; nixrun does not)"
                    .into(),
            )
        }
        e => e,
    }
}

/// What the volatile modes need of the tree, checked before anything is made.
pub(super) fn check_root(root: &Path, mode: &RootMode) -> Result<(), PlanError> {
    let refuse = |why: String| Err(PlanError::RootMode(root.to_path_buf(), why));
    let lstat = |name: &str| match fs::symlink_metadata(root.join(name)) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PlanError::RootUnreadable(root.join(name), e)),
    };
    match mode.volatile {
        Volatile::Yes => {
            match lstat("usr")? {
                Some(m) if m.is_dir() => {}
                Some(m) if m.file_type().is_symlink() => {
                    return refuse(
                        "--volatile=yes binds the tree's /usr into an empty root, and its /usr \
                         is a symlink"
                            .into(),
                    )
                }
                _ => {
                    return refuse(
                        "--volatile=yes needs /usr in the tree (the guest's root is a tmpfs \
                         holding only the tree's /usr, read-only), and it has none"
                            .into(),
                    )
                }
            }
            // As nspawn: only /usr survives, so /bin, /sbin, /lib must live there.
            match lstat("bin")? {
                None => {}
                Some(m) if m.file_type().is_symlink() => {}
                Some(_) => {
                    return refuse(
                        "--volatile=yes needs a merged /usr (/bin a symlink to usr/bin, or \
                         absent), and its /bin is not a symlink"
                            .into(),
                    )
                }
            }
        }
        Volatile::State => {
            match lstat("var")? {
                Some(m) if m.is_dir() => {}
                _ => return refuse(
                    "--volatile=state mounts a tmpfs on /var of the read-only tree, and it has \
                     no /var directory"
                        .into(),
                ),
            }
        }
        Volatile::No | Volatile::Overlay => {}
    }
    Ok(())
}

/// A machine name derived from the directory gets a random suffix with
/// --ephemeral, as nspawn's does, so that one tree can run several times at
/// once without -M; nspawn's form is NAME-<16 hex digits>.
pub(super) fn ephemeral_name(base: &str) -> Result<String, PlanError> {
    let mut bytes = [0u8; 8];
    let mut filled = 0;
    while filled < bytes.len() {
        match rustix::rand::getrandom(&mut bytes[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                return Err(PlanError::Conflict(format!(
                    "a random suffix for the ephemeral machine's name: {e}"
                )))
            }
        }
    }
    Ok(with_suffix(base, u64::from_ne_bytes(bytes)))
}

fn with_suffix(base: &str, n: u64) -> String {
    // A machine name is at most 64 characters; the suffix takes 17.
    let mut base = base.to_string();
    base.truncate(64 - 17);
    let base = base.trim_end_matches(['-', '.']);
    format!("{base}-{n:016x}")
}

/// --link-journal with a root that does not keep what the guest writes: the
/// journal would go with it (and a link on the host would dangle), so nothing
/// is linked; `guest`, which insists, is refused as nspawn refuses it with
/// --ephemeral.
pub(super) fn link_journal(lj: LinkJournal, mode: &RootMode) -> Result<LinkJournal, PlanError> {
    if !mode.keeps_tree() {
        return Ok(lj);
    }
    match lj {
        LinkJournal::Guest => Err(PlanError::Conflict(
            "--link-journal=guest may not be combined with --ephemeral, --volatile or \
             --read-only: the guest's journal does not stay in the tree (try-guest links \
             nothing then)"
                .into(),
        )),
        _ => Ok(LinkJournal::No),
    }
}

pub(super) fn overlays(cli: &Cli) -> Result<Vec<Overlay>, PlanError> {
    let rw = cli
        .overlay
        .iter()
        .map(|s| parse_overlay("overlay", s, false));
    let ro = cli
        .overlay_ro
        .iter()
        .map(|s| parse_overlay("overlay-ro", s, true));
    rw.chain(ro).collect()
}

/// nspawn's syntax: LOWER:UPPER (UPPER is also the destination), or
/// LOWER...:UPPER:DEST with UPPER possibly empty; `\:` escapes a colon, `+`
/// makes a lower layer a path in the container root.
fn parse_overlay(flag: &'static str, spec: &str, readonly: bool) -> Result<Overlay, PlanError> {
    let bad = |why: String| PlanError::BadMount {
        flag,
        spec: spec.to_string(),
        why,
    };
    let parts = split_colons(spec);
    if parts.len() < 2 {
        return Err(bad(
            "expected LOWER:UPPER or LOWER...:UPPER:DEST (colon-separated; UPPER may be empty \
             with a DEST)"
                .into(),
        ));
    }
    let (lowers, upper, dest) = if parts.len() == 2 {
        if parts[1].is_empty() {
            return Err(bad(
                "with two paths the second is both the upper layer and the destination, so it \
                 may not be empty"
                    .into(),
            ));
        }
        (
            &parts[..1],
            parts[1].as_str(),
            parts[1].trim_start_matches('+'),
        )
    } else {
        let n = parts.len();
        (
            &parts[..n - 2],
            parts[n - 2].as_str(),
            parts[n - 1].as_str(),
        )
    };
    let mut sources = Vec::new();
    for l in lowers {
        if l.is_empty() {
            return Err(bad("a lower layer may not be empty".into()));
        }
        sources.push(match l.strip_prefix('+') {
            Some(inner) => BindSource::InRoot(
                container_path(&format!("/{}", inner.trim_start_matches('/'))).map_err(bad)?,
            ),
            None => BindSource::Host(host_dir(flag, spec, l)?),
        });
    }
    let upper = if upper.is_empty() {
        None
    } else if upper.starts_with('+') {
        return Err(bad(
            "an upper layer in the container root (+) is not supported yet by nixrun (its work \
             directory would have to be made in the root); use a host directory, or an empty \
             UPPER for a tmpfs"
                .into(),
        ));
    } else {
        Some(host_dir(flag, spec, upper)?)
    };
    Ok(Overlay {
        lowers: sources,
        upper,
        target: user_mount_target(dest).map_err(bad)?,
        readonly,
    })
}

/// A host directory named in a mount flag: absolute, existing, a directory.
fn host_dir(flag: &'static str, spec: &str, p: &str) -> Result<PathBuf, PlanError> {
    if !p.starts_with('/') {
        return Err(PlanError::BadMount {
            flag,
            spec: spec.to_string(),
            why: format!("{p} is not an absolute path"),
        });
    }
    let meta = fs::metadata(p).map_err(|err| PlanError::BindSource {
        flag,
        spec: spec.to_string(),
        path: p.into(),
        err,
    })?;
    if !meta.is_dir() {
        return Err(PlanError::BadMount {
            flag,
            spec: spec.to_string(),
            why: format!("{p} is not a directory"),
        });
    }
    Ok(PathBuf::from(p))
}

pub(super) fn inaccessible(cli: &Cli) -> Result<Vec<PathBuf>, PlanError> {
    cli.inaccessible
        .iter()
        .map(|p| {
            user_mount_target(p).map_err(|why| PlanError::BadMount {
                flag: "inaccessible",
                spec: p.clone(),
                why,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let mut v = vec!["nixrun", "-D", "/r"];
        v.extend_from_slice(args);
        v.push("-b");
        super::super::cli::parse(v).unwrap_or_else(|e| panic!("{args:?}: {e:?}"))
    }

    #[test]
    fn volatile_modes() {
        let m = |a: &[&str]| root_mode(&cli(a)).map(|m| m.volatile);
        assert_eq!(m(&[]).unwrap(), Volatile::No);
        assert_eq!(m(&["--volatile"]).unwrap(), Volatile::Yes);
        assert_eq!(m(&["--volatile=true"]).unwrap(), Volatile::Yes);
        assert_eq!(m(&["--volatile=no"]).unwrap(), Volatile::No);
        assert_eq!(m(&["--volatile=state"]).unwrap(), Volatile::State);
        assert_eq!(m(&["--volatile=overlay"]).unwrap(), Volatile::Overlay);
        assert!(matches!(
            m(&["--volatile=bogus"]),
            Err(PlanError::BadMount {
                flag: "volatile",
                ..
            })
        ));
        let keeps = |a: &[&str]| root_mode(&cli(a)).unwrap().keeps_tree();
        assert!(!keeps(&[]) && !keeps(&["--volatile=no"]));
        assert!(keeps(&["-x"]) && keeps(&["--read-only"]) && keeps(&["--volatile"]));
    }

    #[test]
    fn overlays_in_nspawns_syntax() {
        let tmp = std::env::temp_dir();
        let t = tmp.to_str().unwrap();
        let o = parse_overlay("overlay", &format!("{t}:{t}"), false).unwrap();
        assert_eq!(o.lowers, vec![BindSource::Host(tmp.clone())]);
        assert_eq!(o.upper.as_deref(), Some(tmp.as_path()));
        assert_eq!(o.target, tmp);
        let o = parse_overlay("overlay", &format!("+/usr:{t}::/srv/x"), false).unwrap();
        assert_eq!(
            o.lowers,
            vec![
                BindSource::InRoot("/usr".into()),
                BindSource::Host(tmp.clone())
            ]
        );
        assert_eq!(o.upper, None);
        assert_eq!(o.target, PathBuf::from("/srv/x"));
        let o = parse_overlay("overlay-ro", "+/var::/var", true).unwrap();
        assert!(o.readonly && o.upper.is_none());
        for bad in [
            "/tmp",
            "/tmp:",
            "relative:/tmp:/x",
            "/tmp:relative:/x",
            ":/tmp:/x",
            "/tmp:+/up:/x",
            "/tmp::/",
            "/tmp::/proc",
            "/tmp::/a/../b",
            "/tmp::relative",
        ] {
            assert!(
                matches!(
                    parse_overlay("overlay", bad, false),
                    Err(PlanError::BadMount { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_overlay("overlay", "/nonexistent/nixrun-x::/x", false),
            Err(PlanError::BindSource { .. })
        ));
    }

    #[test]
    fn ephemeral_names_fit_the_machine_name_rules() {
        assert_eq!(with_suffix("deb", 0xab), "deb-00000000000000ab");
        let long = with_suffix(&format!("{}-x", "a".repeat(46)), 1);
        assert!(crate::plan::is_machine_name(&long), "{long}");
        assert_eq!(long.len(), 46 + 17);
        let a = ephemeral_name("deb").unwrap();
        assert!(crate::plan::is_machine_name(&a) && a.starts_with("deb-") && a.len() == 20);
        assert_ne!(a, ephemeral_name("deb").unwrap());
    }

    #[test]
    fn journal_links_do_not_outlive_a_throw_away_root() {
        let eph = RootMode {
            ephemeral: true,
            ..Default::default()
        };
        assert_eq!(
            link_journal(LinkJournal::TryGuest, &eph).unwrap(),
            LinkJournal::No
        );
        assert_eq!(
            link_journal(LinkJournal::Auto, &eph).unwrap(),
            LinkJournal::No
        );
        assert!(link_journal(LinkJournal::Guest, &eph).is_err());
        assert_eq!(
            link_journal(LinkJournal::Guest, &RootMode::default()).unwrap(),
            LinkJournal::Guest
        );
    }
}
