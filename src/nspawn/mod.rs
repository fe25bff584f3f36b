//! The nspawn-compatible front end: systemd-nspawn's command line (cli.rs),
//! turned into a plan with nspawn's defaults and spelling of values.
//!
//! NixOS's container@.service passes nspawn flags; this is the only module that
//! knows how nspawn spells them (`--bind=SRC:DST:OPTS`, `-j`, `yes`/`no`).

pub mod cli;
mod network;
mod rootfs;

use crate::plan::{
    container_path, is_hostname, is_machine_name, machine_from_dir, parse_uuid, user_mount_target,
    validate_root, Bind, BindSource, CapsChange, Console, Exec, Idmap, LinkJournal, Ownership,
    Plan, PlanError, PrivateUsers, Register, SourceKind, SyscallChange, Tmpfs,
};
use crate::signal::parse_signal;
use cli::Cli;
use std::fs;
use std::path::PathBuf;

/// The plan for an nspawn command line; `stdin_is_tty`/`stdout_is_tty` decide the
/// default console mode, as in nspawn.
pub fn plan(cli: Cli, stdin_is_tty: bool, stdout_is_tty: bool) -> Result<Plan, PlanError> {
    let root_mode = rootfs::root_mode(&cli)?;
    let root = validate_root(cli.directory.as_deref().ok_or(PlanError::NoRoot)?)
        .map_err(|e| rootfs::host_root(e, &root_mode))?;
    rootfs::check_root(&root, &root_mode)?;
    let network = network::network(&cli)?;
    let overlays = rootfs::overlays(&cli)?;
    let inaccessible = rootfs::inaccessible(&cli)?;

    let machine = match cli.machine {
        Some(m) => {
            if !is_machine_name(&m) {
                return Err(PlanError::BadMachine(m));
            }
            m
        }
        None => {
            let m =
                machine_from_dir(&root).ok_or_else(|| PlanError::NoMachineName(root.clone()))?;
            if root_mode.ephemeral {
                rootfs::ephemeral_name(&m)?
            } else {
                m
            }
        }
    };
    let hostname = match cli.hostname {
        Some(h) if is_hostname(&h) => h,
        Some(h) => return Err(PlanError::BadHostname(h)),
        None => machine.clone(),
    };
    let uuid = cli
        .uuid
        .map(|u| parse_uuid(&u).ok_or(PlanError::BadUuid(u)))
        .transpose()?;

    let exec = if cli.boot {
        if let Some(first) = cli.command.first() {
            // nspawn -b passes positional args to init; catching an absolute path here
            // catches the common mistake of combining -b with an init path.
            if first.starts_with('/') {
                return Err(PlanError::BootArgs(first.clone()));
            }
        }
        Exec::Boot(cli.command)
    } else if cli.command.is_empty() {
        return Err(PlanError::NoCommand);
    } else {
        Exec::Command(cli.command)
    };

    let mut binds = Vec::new();
    for spec in &cli.bind {
        binds.push(parse_bind("bind", spec, false)?);
    }
    for spec in &cli.bind_ro {
        binds.push(parse_bind("bind-ro", spec, true)?);
    }
    let tmpfs = cli
        .tmpfs
        .iter()
        .map(|s| parse_tmpfs(s))
        .collect::<Result<Vec<_>, _>>()?;

    let setenv = cli
        .setenv
        .iter()
        .map(|s| parse_setenv(s))
        .collect::<Result<Vec<_>, _>>()?;

    let register = match cli.register.as_deref() {
        None | Some("auto") => Register::Auto,
        Some(r) => match parse_bool("register", r) {
            Ok(true) => Register::Yes,
            Ok(false) => Register::No,
            Err(_) => return Err(PlanError::BadRegister(r.to_string())),
        },
    };
    let notify_ready = match &cli.notify_ready {
        Some(v) => parse_bool("notify-ready", v)?,
        None => false,
    };
    let kill_signal = match &cli.kill_signal {
        Some(s) => Some(parse_signal(s).ok_or_else(|| PlanError::BadSignal(s.clone()))?),
        // nspawn's default: an init understands SIGRTMIN+3 as "halt"; an arbitrary
        // command would die of it without cleaning up, so it is killed instead.
        None if matches!(exec, Exec::Boot(_)) => Some(crate::signal::sigrtmin_plus(3)),
        None => None,
    };
    let link_journal = if cli.link_journal_try_guest {
        LinkJournal::TryGuest
    } else {
        match cli.link_journal.as_deref() {
            None | Some("auto") => LinkJournal::Auto,
            Some("no") => LinkJournal::No,
            Some("guest") => LinkJournal::Guest,
            Some("try-guest") => LinkJournal::TryGuest,
            Some(other) => return Err(PlanError::BadLinkJournal(other.to_string())),
        }
    };
    let link_journal = rootfs::link_journal(link_journal, &root_mode)?;
    let console = if cli.pipe {
        Console::Pipe
    } else {
        match cli.console.as_deref() {
            None | Some("autopipe") if !(stdin_is_tty && stdout_is_tty) => {
                if cli.console.is_some() {
                    Console::Pipe
                } else {
                    Console::ReadOnly
                }
            }
            None | Some("autopipe") | Some("interactive") => Console::Interactive,
            Some("read-only") => Console::ReadOnly,
            Some("passive") => Console::Passive,
            Some("pipe") => Console::Pipe,
            Some(other) => return Err(PlanError::BadConsole(other.to_string())),
        }
    };
    let caps = CapsChange {
        add: crate::policy::caps::parse_lists(&cli.capability)?,
        drop: crate::policy::caps::parse_lists(&cli.drop_capability)?,
    };
    let mut syscalls = SyscallChange::default();
    for list in &cli.system_call_filter {
        let (target, list) = match list.strip_prefix('~') {
            Some(rest) => (&mut syscalls.deny, rest),
            None => (&mut syscalls.allow, list.as_str()),
        };
        for name in list.split_whitespace() {
            target.extend(crate::policy::seccomp::expand(name)?);
        }
    }
    let mut tasks_max = Some(crate::cgroup::DEFAULT_TASKS_MAX);
    for p in &cli.property {
        tasks_max = parse_property(p)?;
    }
    let private_users = match cli.private_users.last() {
        Some(v) => parse_private_users(v)?,
        None => PrivateUsers::No,
    };
    let ownership = if cli.private_users_chown {
        Ownership::Chown
    } else {
        match cli.private_users_ownership.as_deref() {
            Some(v) => parse_ownership(v)?,
            // nspawn's default: only a picked range maps (or chowns) the tree.
            None if private_users == PrivateUsers::Pick => Ownership::Auto,
            None => Ownership::Off,
        }
    };
    check_userns(private_users, ownership, &binds)?;
    let term = match console {
        Console::Interactive => std::env::var("TERM").unwrap_or_else(|_| "vt220".into()),
        // systemd's default for a console it cannot ask about.
        _ => "vt220".into(),
    };

    Ok(Plan {
        root,
        root_mode,
        machine,
        hostname,
        uuid,
        exec,
        binds,
        tmpfs,
        overlays,
        inaccessible,
        setenv,
        keep_unit: cli.keep_unit,
        register,
        notify_ready,
        kill_signal,
        link_journal,
        console,
        quiet: cli.quiet,
        term,
        caps,
        syscalls,
        tasks_max,
        network,
        private_users,
        ownership,
    })
}

/// nspawn's --private-users= values: a boolean (`yes`: the range from the
/// root directory's owner), `pick`, `identity`, or `BASE[:RANGE]`. Numbers
/// are ranges, never booleans (`0` is `0:65536`, what NixOS's
/// `privateUsers = 0` passes).
fn parse_private_users(v: &str) -> Result<PrivateUsers, PlanError> {
    const RANGE: u32 = 0x10000;
    let bad = |why: &str| PlanError::BadPrivateUsers(v.to_string(), why.to_string());
    if !v.is_empty() && !v.bytes().all(|b| b.is_ascii_digit()) {
        match v {
            "yes" | "y" | "true" | "t" | "on" => {
                return Ok(PrivateUsers::Fixed {
                    shift: None,
                    range: RANGE,
                })
            }
            "no" | "n" | "false" | "f" | "off" => return Ok(PrivateUsers::No),
            "pick" => return Ok(PrivateUsers::Pick),
            "identity" => {
                return Ok(PrivateUsers::Fixed {
                    shift: Some(0),
                    range: RANGE,
                })
            }
            "managed" => {
                return Err(bad(
                    "managed ranges come from systemd-nsresourced, which nixrun does not use",
                ))
            }
            _ => {}
        }
    }
    let (base, range) = match v.split_once(':') {
        Some((b, r)) => (b, Some(r)),
        None => (v, None),
    };
    let number = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let expected = "expected no, yes, pick, identity or BASE[:RANGE]";
    let shift = number(base).ok_or_else(|| bad(expected))?;
    let range = match range {
        Some(r) => number(r).ok_or_else(|| bad(expected))?,
        None => RANGE,
    };
    // The kernel's maps cannot reach (uid_t)-1, the invalid uid.
    if range == 0 || u64::from(shift) + u64::from(range) > u64::from(u32::MAX) {
        return Err(bad("the range must be non-empty and end below 4294967295"));
    }
    Ok(PrivateUsers::Fixed {
        shift: Some(shift),
        range,
    })
}

fn parse_ownership(v: &str) -> Result<Ownership, PlanError> {
    match v {
        "off" => Ok(Ownership::Off),
        "chown" => Ok(Ownership::Chown),
        "map" => Ok(Ownership::Map),
        "auto" => Ok(Ownership::Auto),
        other => Err(PlanError::BadOwnership(other.to_string())),
    }
}

/// What nspawn refuses before it starts (or fails on half-way): ID-mapped
/// binds without a user namespace, a chown into a range that is not 64K
/// aligned and 64K long (nspawn's chown keeps the low 16 bits of each id).
fn check_userns(
    users: PrivateUsers,
    ownership: Ownership,
    binds: &[Bind],
) -> Result<(), PlanError> {
    for b in binds.iter().filter(|b| b.idmap != Idmap::No) {
        let spec = match &b.source {
            BindSource::Host(p) | BindSource::InRoot(p) => p.display().to_string(),
        };
        if !users.enabled() {
            return Err(PlanError::Userns(format!(
                "the ID-mapped bind of {spec} needs a user namespace (--private-users= or -U)"
            )));
        }
        // Those are mounted from inside the user namespace, where nothing
        // may be ID-mapped.
        if b.target.starts_with("/proc") || b.target.starts_with("/sys") {
            return Err(PlanError::Userns(format!(
                "the ID-mapped bind of {spec} onto {} is not supported: binds below /proc and /sys \
                 are made inside the user namespace",
                b.target.display()
            )));
        }
    }
    if ownership != Ownership::Off && !users.enabled() {
        return Err(PlanError::Userns(
            "--private-users-ownership= needs a user namespace (--private-users= or -U)".into(),
        ));
    }
    if let PrivateUsers::Fixed {
        shift: Some(shift),
        range,
    } = users
    {
        if ownership == Ownership::Chown && (shift & 0xFFFF != 0 || range != 0x10000) {
            return Err(PlanError::Userns(format!(
                "--private-users-ownership=chown needs a 64K-aligned base and a range of 65536 \
                 (it keeps the low 16 bits of each id), not {shift}:{range}"
            )));
        }
    }
    Ok(())
}

/// nspawn passes --property= to the scope unit it creates; of the unit
/// properties nixrun implements the one that matters without a scope, TasksMax=
/// (a count or "infinity"; systemd's percentages need the host's pid_max and are
/// not taken).
fn parse_property(spec: &str) -> Result<Option<u64>, PlanError> {
    let bad = |why: &str| PlanError::BadProperty(spec.to_string(), why.to_string());
    let Some((name, value)) = spec.split_once('=') else {
        return Err(bad("expected NAME=VALUE"));
    };
    if name != "TasksMax" {
        return Err(bad(&format!(
            "property {name} is not supported yet by nixrun (only TasksMax=)"
        )));
    }
    match value {
        "infinity" => Ok(None),
        v => match v.parse::<u64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(bad(
                "TasksMax= takes a positive number of tasks or \"infinity\"",
            )),
        },
    }
}

fn parse_bool(flag: &'static str, v: &str) -> Result<bool, PlanError> {
    match v {
        "yes" | "y" | "true" | "t" | "on" | "1" => Ok(true),
        "no" | "n" | "false" | "f" | "off" | "0" => Ok(false),
        _ => Err(PlanError::BadBool(flag, v.to_string())),
    }
}

/// Splits at unescaped ':' (nspawn lets paths contain "\:").
fn split_colons(spec: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(n) => parts.last_mut().unwrap().push(n),
                None => parts.last_mut().unwrap().push('\\'),
            },
            ':' => parts.push(String::new()),
            c => parts.last_mut().unwrap().push(c),
        }
    }
    parts
}

fn parse_bind(flag: &'static str, spec: &str, readonly: bool) -> Result<Bind, PlanError> {
    let bad = |why: String| PlanError::BadMount {
        flag,
        spec: spec.to_string(),
        why,
    };
    let parts = split_colons(spec);
    if parts.len() > 3 {
        return Err(bad("expected SRC[:DST[:OPTIONS]]".into()));
    }
    let src = &parts[0];
    if src.is_empty() {
        return Err(bad(
            "empty source (temporary directories are not supported yet)".into(),
        ));
    }
    let mut recursive = true;
    let mut idmap = Idmap::No;
    if let Some(opts) = parts.get(2) {
        for o in opts.split(',') {
            match o {
                "rbind" | "" => recursive = true,
                "norbind" => recursive = false,
                "noidmap" => idmap = Idmap::No,
                "idmap" => idmap = Idmap::Idmap,
                "rootidmap" => idmap = Idmap::RootIdmap,
                "owneridmap" => idmap = Idmap::OwnerIdmap,
                other => return Err(bad(format!("unknown option {other:?}"))),
            }
        }
    }
    let (source, kind) = if let Some(inner) = src.strip_prefix('+') {
        let p = container_path(&format!("/{}", inner.trim_start_matches('/'))).map_err(bad)?;
        // Its type is only known inside the container; a directory is the common case
        // and the child refuses a mismatch.
        (BindSource::InRoot(p), SourceKind::Dir)
    } else {
        if !src.starts_with('/') {
            return Err(bad(format!("source {src} is not an absolute path")));
        }
        let meta = fs::metadata(src).map_err(|err| PlanError::BindSource {
            flag,
            spec: spec.to_string(),
            path: src.into(),
            err,
        })?;
        (BindSource::Host(PathBuf::from(src)), SourceKind::of(&meta))
    };
    let target_str = match parts.get(1) {
        Some(t) if !t.is_empty() => t.clone(),
        _ => match &source {
            BindSource::Host(p) => p.to_string_lossy().into_owned(),
            BindSource::InRoot(p) => p.to_string_lossy().into_owned(),
        },
    };
    let target = user_mount_target(&target_str).map_err(bad)?;
    Ok(Bind {
        source,
        target,
        readonly,
        recursive,
        kind,
        idmap,
    })
}

fn parse_tmpfs(spec: &str) -> Result<Tmpfs, PlanError> {
    let (path, options) = match spec.split_once(':') {
        Some((p, o)) => (p, o.to_string()),
        None => (spec, "mode=0755".to_string()),
    };
    let target = user_mount_target(path).map_err(|why| PlanError::BadMount {
        flag: "tmpfs",
        spec: spec.to_string(),
        why,
    })?;
    Ok(Tmpfs { target, options })
}

fn parse_setenv(spec: &str) -> Result<(String, String), PlanError> {
    let (name, value) = match spec.split_once('=') {
        Some((n, v)) => (n.to_string(), v.to_string()),
        None => (
            spec.to_string(),
            std::env::var(spec).map_err(|_| PlanError::BadEnv(spec.to_string()))?,
        ),
    };
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(PlanError::BadEnv(spec.to_string()));
    }
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds() {
        let b = parse_bind("bind-ro", "/tmp", true).unwrap();
        assert_eq!(b.source, BindSource::Host("/tmp".into()));
        assert_eq!(b.target, PathBuf::from("/tmp"));
        assert!(b.readonly && b.recursive && b.kind.is_dir());

        let b = parse_bind("bind", "/tmp:/nix/store/:norbind", false).unwrap();
        assert_eq!(b.target, PathBuf::from("/nix/store"));
        assert!(!b.recursive);

        let b = parse_bind("bind", "+/var/x:/y", false).unwrap();
        assert_eq!(b.source, BindSource::InRoot("/var/x".into()));

        let b = parse_bind("bind", "/tmp:/a\\:b", false).unwrap();
        assert_eq!(b.target, PathBuf::from("/a:b"));

        for bad in [
            "relative:/x",
            "/tmp:relative",
            "/tmp:/x:bogus",
            "/tmp:/x:idmap,map",
            "/tmp:/../etc",
            "/tmp:/",
            "/tmp:/a:b:c",
            ":/x",
        ] {
            assert!(
                matches!(
                    parse_bind("bind", bad, false),
                    Err(PlanError::BadMount { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            parse_bind("bind", "/nonexistent/nixrun-test", false),
            Err(PlanError::BindSource { .. })
        ));
    }

    #[test]
    fn idmap_options() {
        let b = |spec: &str| parse_bind("bind", spec, false).unwrap().idmap;
        assert_eq!(b("/tmp"), Idmap::No);
        assert_eq!(b("/tmp:/x:idmap"), Idmap::Idmap);
        assert_eq!(b("/tmp:/x:norbind,rootidmap"), Idmap::RootIdmap);
        assert_eq!(b("/tmp:/x:owneridmap"), Idmap::OwnerIdmap);
        assert_eq!(b("/tmp:/x:idmap,noidmap"), Idmap::No);
    }

    #[test]
    fn private_users_values() {
        let fixed = |shift, range| PrivateUsers::Fixed { shift, range };
        for (v, want) in [
            ("no", PrivateUsers::No),
            ("false", PrivateUsers::No),
            ("yes", fixed(None, 65536)),
            ("pick", PrivateUsers::Pick),
            ("identity", fixed(Some(0), 65536)),
            ("0", fixed(Some(0), 65536)),
            ("1", fixed(Some(1), 65536)),
            ("1879048192", fixed(Some(1879048192), 65536)),
            ("65536:1000", fixed(Some(65536), 1000)),
        ] {
            assert_eq!(parse_private_users(v).unwrap(), want, "{v}");
        }
        for bad in [
            "",
            "maybe",
            "managed",
            "1:0",
            "-1",
            "65536:",
            ":5",
            "4294901760:65536",
            "1:2:3",
        ] {
            assert!(
                matches!(
                    parse_private_users(bad),
                    Err(PlanError::BadPrivateUsers(..))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn user_namespace_combinations_nspawn_refuses() {
        let idmapped = parse_bind("bind", "/tmp:/x:idmap", false).unwrap();
        let plain = parse_bind("bind", "/tmp:/x", false).unwrap();
        let fixed = |shift, range| PrivateUsers::Fixed {
            shift: Some(shift),
            range,
        };
        assert!(check_userns(
            PrivateUsers::No,
            Ownership::Off,
            std::slice::from_ref(&plain)
        )
        .is_ok());
        assert!(check_userns(
            PrivateUsers::No,
            Ownership::Off,
            std::slice::from_ref(&idmapped)
        )
        .is_err());
        assert!(check_userns(
            PrivateUsers::Pick,
            Ownership::Auto,
            std::slice::from_ref(&idmapped)
        )
        .is_ok());
        assert!(check_userns(PrivateUsers::No, Ownership::Chown, &[]).is_err());
        let below_proc = parse_bind("bind", "/tmp:/proc/x:idmap", false).unwrap();
        assert!(check_userns(PrivateUsers::Pick, Ownership::Auto, &[below_proc]).is_err());
        assert!(check_userns(fixed(0x80000, 65536), Ownership::Chown, &[]).is_ok());
        for (s, r) in [(0x80001, 65536), (0x80000, 1000), (0x80000, 131072)] {
            let e = check_userns(fixed(s, r), Ownership::Chown, &[]).unwrap_err();
            assert!(e.to_string().contains("64K-aligned"), "{e}");
            assert!(check_userns(fixed(s, r), Ownership::Map, &[]).is_ok());
        }
    }

    #[test]
    fn properties() {
        assert_eq!(parse_property("TasksMax=100").unwrap(), Some(100));
        assert_eq!(parse_property("TasksMax=infinity").unwrap(), None);
        for bad in [
            "TasksMax=0",
            "TasksMax=10%",
            "TasksMax",
            "MemoryMax=1G",
            "=1",
        ] {
            assert!(
                matches!(parse_property(bad), Err(PlanError::BadProperty(..))),
                "{bad}"
            );
        }
    }

    #[test]
    fn tmpfs_and_env() {
        assert_eq!(
            parse_tmpfs("/var").unwrap(),
            Tmpfs {
                target: "/var".into(),
                options: "mode=0755".into()
            }
        );
        assert_eq!(parse_tmpfs("/var:size=1M").unwrap().options, "size=1M");
        assert!(parse_tmpfs("var").is_err());
        assert_eq!(
            parse_setenv("A_1=x=y").unwrap(),
            ("A_1".into(), "x=y".into())
        );
        assert!(parse_setenv("1A=x").is_err());
        assert!(parse_setenv("A-B=x").is_err());
        assert!(parse_setenv("=x").is_err());
    }
}
