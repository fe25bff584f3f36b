//! The validated, immutable description of one container.
//!
//! Everything that can be checked without touching the host is checked here, before
//! the supervisor creates a cgroup or clones: a bad command line must leave nothing
//! behind. What can only be checked inside the container (the init path, which may
//! live on a bind mount such as /nix/store) is checked by the child, which reports
//! back before exec.

use crate::cli::Cli;
use crate::signal::parse_signal;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("no container root given: use -D/--directory PATH")]
    NoRoot,
    #[error("container root {0}: does not exist")]
    RootMissing(PathBuf),
    #[error("container root {0}: {1}")]
    RootUnreadable(PathBuf, #[source] io::Error),
    #[error("container root {0}: not a directory")]
    RootNotDir(PathBuf),
    #[error("container root {0}: refusing to use the host's / as a container root")]
    RootIsHostRoot(PathBuf),
    #[error(
        "container root {0}: {1} is a symlink; refusing, it could point outside the container"
    )]
    ApiDirIsSymlink(PathBuf, &'static str),
    #[error("container root {0}: {1} exists but is not a directory")]
    ApiDirNotDir(PathBuf, &'static str),
    #[error("invalid machine name {0:?}: must be 1-63 letters, digits or '-', not starting or ending with '-'")]
    BadMachine(String),
    #[error("cannot derive a machine name from {0}; pass -M/--machine")]
    NoMachineName(PathBuf),
    #[error("invalid hostname {0:?}")]
    BadHostname(String),
    #[error("invalid --uuid {0:?}: expected 32 hex digits, optionally with dashes")]
    BadUuid(String),
    #[error("invalid --{flag}={spec:?}: {why}")]
    BadMount {
        flag: &'static str,
        spec: String,
        why: String,
    },
    #[error("--{flag}={spec:?}: source {path}: {err}")]
    BindSource {
        flag: &'static str,
        spec: String,
        path: PathBuf,
        #[source]
        err: io::Error,
    },
    #[error("invalid --setenv={0:?}: expected NAME=VALUE with a valid variable name")]
    BadEnv(String),
    #[error("invalid --kill-signal={0:?}: unknown signal")]
    BadSignal(String),
    #[error("invalid --{0}={1:?}: expected yes or no")]
    BadBool(&'static str, String),
    #[error(
        "--register=yes is not supported yet by nixrun (it never registers with systemd-machined)"
    )]
    RegisterYes,
    #[error("invalid --link-journal={0:?}: expected no, auto, guest or try-guest (host modes are not supported yet)")]
    BadLinkJournal(String),
    #[error("invalid --console={0:?}: expected interactive, read-only, passive or pipe")]
    BadConsole(String),
    #[error(
        "no command given: pass a command to run as PID 1, or -b/--boot to boot the guest's init"
    )]
    NoCommand,
    #[error("invalid --capability/--drop-capability: {0}")]
    BadCaps(crate::container::caps::CapsError),
    #[error("invalid --system-call-filter: {0}")]
    BadSyscall(#[from] crate::container::seccomp::SeccompError),
    #[error("command {0:?} must be an absolute path when booting (-b takes arguments for init)")]
    BootArgs(String),
}

/// Where a bind mount's source lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindSource {
    /// A host path, opened before pivot_root.
    Host(PathBuf),
    /// A path inside the container root (nspawn's `+SRC`), resolved within the root.
    InRoot(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: BindSource,
    /// Absolute path inside the container.
    pub target: PathBuf,
    pub readonly: bool,
    pub recursive: bool,
    /// Whether the source is a directory (the mount point must be one too).
    pub is_dir: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    pub target: PathBuf,
    pub options: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// The guest's console is a pty; the user's terminal is connected to it.
    Interactive,
    /// The guest's console is a pty; its output goes to our stdout, input is ignored.
    ReadOnly,
    /// The guest's console is a pty nobody looks at (its output is drained and dropped).
    Passive,
    /// No pty: the guest inherits our stdin, stdout and stderr.
    Pipe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkJournal {
    No,
    /// Link only if the host already has /var/log/journal/<machine-id>.
    Auto,
    Guest,
    TryGuest,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exec {
    /// Find the guest's init (`-b`) and pass it these arguments.
    Boot(Vec<String>),
    /// Run this command (argv) as PID 1.
    Command(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// Canonical, absolute host path of the container root.
    pub root: PathBuf,
    pub machine: String,
    pub hostname: String,
    /// From --uuid; otherwise decided at start from the guest's /etc/machine-id.
    pub uuid: Option<[u8; 16]>,
    pub exec: Exec,
    pub binds: Vec<Bind>,
    pub tmpfs: Vec<Tmpfs>,
    /// --setenv, in order; applied last, so they win.
    pub setenv: Vec<(String, String)>,
    pub keep_unit: bool,
    pub notify_ready: bool,
    /// None: SIGTERM/SIGINT kill the container right away.
    pub kill_signal: Option<i32>,
    pub link_journal: LinkJournal,
    pub console: Console,
    pub quiet: bool,
    /// TERM for the guest: ours when the console is interactive.
    pub term: String,
    /// The guest's capability bounding (and effective) set.
    pub capabilities: caps::CapsHashSet,
    /// System calls the guest gets EPERM for.
    pub denied_syscalls: crate::container::seccomp::Denied,
}

impl Plan {
    pub fn from_cli(cli: Cli, stdin_is_tty: bool, stdout_is_tty: bool) -> Result<Plan, PlanError> {
        let root = validate_root(cli.directory.as_deref().ok_or(PlanError::NoRoot)?)?;

        let machine = match cli.machine {
            Some(m) => {
                if !is_label(&m) {
                    return Err(PlanError::BadMachine(m));
                }
                m
            }
            None => {
                machine_from_dir(&root).ok_or_else(|| PlanError::NoMachineName(root.clone()))?
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

        if let Some(r) = &cli.register {
            if parse_bool("register", r)? {
                return Err(PlanError::RegisterYes);
            }
        }
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
        let capabilities = crate::container::caps::retained(&cli.capability, &cli.drop_capability)
            .map_err(PlanError::BadCaps)?;
        let (mut allow, mut deny) = (Vec::new(), Vec::new());
        for list in &cli.system_call_filter {
            let (target, list) = match list.strip_prefix('~') {
                Some(rest) => (&mut deny, rest),
                None => (&mut allow, list.as_str()),
            };
            target.extend(list.split_whitespace().map(str::to_string));
        }
        let denied_syscalls = crate::container::seccomp::denied(&allow, &deny)?;
        let term = match console {
            Console::Interactive => std::env::var("TERM").unwrap_or_else(|_| "vt220".into()),
            // systemd's default for a console it cannot ask about.
            _ => "vt220".into(),
        };

        Ok(Plan {
            root,
            machine,
            hostname,
            uuid,
            exec,
            binds,
            tmpfs,
            setenv,
            keep_unit: cli.keep_unit,
            notify_ready,
            kill_signal,
            link_journal,
            console,
            quiet: cli.quiet,
            term,
            capabilities,
            denied_syscalls,
        })
    }
}

fn validate_root(dir: &Path) -> Result<PathBuf, PlanError> {
    let meta = fs::metadata(dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => PlanError::RootMissing(dir.to_path_buf()),
        _ => PlanError::RootUnreadable(dir.to_path_buf(), e),
    })?;
    if !meta.is_dir() {
        return Err(PlanError::RootNotDir(dir.to_path_buf()));
    }
    let root =
        fs::canonicalize(dir).map_err(|e| PlanError::RootUnreadable(dir.to_path_buf(), e))?;
    let host_root = fs::metadata("/").map_err(|e| PlanError::RootUnreadable("/".into(), e))?;
    if root == Path::new("/") || (meta.dev() == host_root.dev() && meta.ino() == host_root.ino()) {
        return Err(PlanError::RootIsHostRoot(dir.to_path_buf()));
    }
    // The API filesystems are mounted onto these; a symlink could aim them at the host
    // (CVE-2023-27561 and friends). The child also resolves them inside the root, but
    // refusing here gives the user a clear reason.
    for name in ["proc", "sys", "dev"] {
        match fs::symlink_metadata(root.join(name)) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(PlanError::ApiDirIsSymlink(dir.to_path_buf(), name))
            }
            Ok(m) if !m.is_dir() => return Err(PlanError::ApiDirNotDir(dir.to_path_buf(), name)),
            _ => {}
        }
    }
    Ok(root)
}

/// A single DNS label: what a machine name must be so that it can serve as the
/// hostname and in unit and interface names.
pub fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_hostname(s: &str) -> bool {
    s.len() <= 64 && s.split('.').all(is_label)
}

/// nspawn derives the machine name from the directory and cleans it up rather than
/// failing: a debugging user should not have to rename their directory.
fn machine_from_dir(root: &Path) -> Option<String> {
    let base = root.file_name()?.to_string_lossy();
    let mut name: String = base
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    name.truncate(63);
    let name = name.trim_matches('-').to_string();
    is_label(&name).then_some(name)
}

pub fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: String = s.chars().filter(|&c| c != '-').collect();
    let dashed_ok = !s.contains('-')
        || (s.len() == 36 && [8, 13, 18, 23].iter().all(|&i| s.as_bytes()[i] == b'-'));
    if hex.len() != 32 || !dashed_ok {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
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

/// A container path: absolute, normalised, without "..", never "/" itself.
fn container_path(p: &str) -> Result<PathBuf, String> {
    let path = Path::new(p);
    if !path.is_absolute() {
        return Err(format!("{p} is not an absolute path"));
    }
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => return Err(format!("{p} contains \"..\"")),
            Component::Prefix(_) => unreachable!("no prefixes on Linux"),
        }
    }
    if out == Path::new("/") {
        return Err("mounting over the container's / is not supported".into());
    }
    Ok(out)
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
    if let Some(opts) = parts.get(2) {
        for o in opts.split(',') {
            match o {
                "rbind" | "" => recursive = true,
                "norbind" => recursive = false,
                "idmap" | "noidmap" | "rootidmap" | "owneridmap" => {
                    return Err(bad(format!(
                        "option {o} is not supported yet (it needs user namespaces)"
                    )))
                }
                other => return Err(bad(format!("unknown option {other:?}"))),
            }
        }
    }
    let (source, is_dir) = if let Some(inner) = src.strip_prefix('+') {
        let p = container_path(&format!("/{}", inner.trim_start_matches('/'))).map_err(bad)?;
        // Its type is only known inside the container; a directory is the common case
        // and the child refuses a mismatch.
        (BindSource::InRoot(p), true)
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
        (BindSource::Host(PathBuf::from(src)), meta.is_dir())
    };
    let target_str = match parts.get(1) {
        Some(t) if !t.is_empty() => t.clone(),
        _ => match &source {
            BindSource::Host(p) => p.to_string_lossy().into_owned(),
            BindSource::InRoot(p) => p.to_string_lossy().into_owned(),
        },
    };
    let target = container_path(&target_str).map_err(bad)?;
    Ok(Bind {
        source,
        target,
        readonly,
        recursive,
        is_dir,
    })
}

fn parse_tmpfs(spec: &str) -> Result<Tmpfs, PlanError> {
    let (path, options) = match spec.split_once(':') {
        Some((p, o)) => (p, o.to_string()),
        None => (spec, "mode=0755".to_string()),
    };
    let target = container_path(path).map_err(|why| PlanError::BadMount {
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
    fn labels() {
        for ok in ["foo", "a", "web-1", "A0"] {
            assert!(is_label(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "a_b", "a.b", "a b", &"x".repeat(64)] {
            assert!(!is_label(bad), "{bad}");
        }
    }

    #[test]
    fn machine_names_from_directories_are_cleaned() {
        assert_eq!(
            machine_from_dir(Path::new("/var/lib/containers/foo")).as_deref(),
            Some("foo")
        );
        assert_eq!(
            machine_from_dir(Path::new("/x/debian_root")).as_deref(),
            Some("debian-root")
        );
        assert_eq!(machine_from_dir(Path::new("/x/..__")), None);
    }

    #[test]
    fn uuids() {
        let u = parse_uuid("0123456789abcdef0123456789ABCDEF").unwrap();
        assert_eq!(u[0], 0x01);
        assert_eq!(u[15], 0xef);
        assert_eq!(
            parse_uuid("01234567-89ab-cdef-0123-456789abcdef"),
            parse_uuid("0123456789abcdef0123456789abcdef")
        );
        assert!(parse_uuid("0123456789abcdef").is_none());
        assert!(parse_uuid("0123456789abcdef0123456789abcdeg").is_none());
        assert!(parse_uuid("0123-456789abcdef0123456789abcdef").is_none());
    }

    #[test]
    fn binds() {
        let b = parse_bind("bind-ro", "/tmp", true).unwrap();
        assert_eq!(b.source, BindSource::Host("/tmp".into()));
        assert_eq!(b.target, PathBuf::from("/tmp"));
        assert!(b.readonly && b.recursive && b.is_dir);

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
            "/tmp:/x:idmap",
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
