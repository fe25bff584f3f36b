//! The validated, immutable description of one container, whatever front end
//! built it (the nspawn-compatible command line today; an OCI bundle or a
//! control CLI later).
//!
//! Everything that can be checked without touching the host is checked while
//! building a plan, before the supervisor creates a cgroup or clones: bad input
//! must leave nothing behind. What can only be checked inside the container (the
//! init path, which may live on a bind mount such as /nix/store) is checked by
//! the child, which reports back before exec.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
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
    #[error("invalid machine name {0:?}: must be a hostname: at most 64 letters, digits, '-' and '.', dot-separated labels neither empty nor starting or ending with '-'")]
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
    #[error("container root {0}: {1}")]
    RootMode(PathBuf, String),
    #[error("{0}")]
    Conflict(String),
    #[error("--{flag}={spec:?}: source {path}: {err}")]
    BindSource {
        flag: &'static str,
        spec: String,
        path: PathBuf,
        #[source]
        err: io::Error,
    },
    #[error("invalid --{flag}={spec:?}: {why}")]
    BadNetwork {
        flag: &'static str,
        spec: String,
        why: String,
    },
    #[error("{0}")]
    Network(String),
    #[error("invalid --property={0:?}: {1}")]
    BadProperty(String, String),
    #[error("invalid --setenv={0:?}: expected NAME=VALUE with a valid variable name")]
    BadEnv(String),
    #[error("invalid --kill-signal={0:?}: unknown signal")]
    BadSignal(String),
    #[error("invalid --{0}={1:?}: expected yes or no")]
    BadBool(&'static str, String),
    #[error("invalid --register={0:?}: expected yes, no or auto")]
    BadRegister(String),
    #[error("invalid --link-journal={0:?}: expected no, auto, guest or try-guest (host modes are not supported yet)")]
    BadLinkJournal(String),
    #[error("invalid --console={0:?}: expected interactive, read-only, passive or pipe")]
    BadConsole(String),
    #[error(
        "no command given: pass a command to run as PID 1, or -b/--boot to boot the guest's init"
    )]
    NoCommand,
    #[error("invalid --capability/--drop-capability: {0}")]
    BadCaps(#[from] crate::policy::caps::CapsError),
    #[error("invalid --system-call-filter: {0}")]
    BadSyscall(#[from] crate::policy::seccomp::SeccompError),
    #[error("command {0:?} must be an absolute path when booting (-b takes arguments for init)")]
    BootArgs(String),
    #[error("invalid --private-users={0:?}: {1}")]
    BadPrivateUsers(String, String),
    #[error("invalid --private-users-ownership={0:?}: expected off, chown, map or auto")]
    BadOwnership(String),
    #[error("{0}")]
    Userns(String),
}

/// Where a bind mount's source lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindSource {
    /// A host path, opened before pivot_root.
    Host(PathBuf),
    /// A path inside the container root (nspawn's `+SRC`), resolved within the root.
    InRoot(PathBuf),
}

/// What a bind's source is, as far as mounting it and the device policy care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Dir,
    /// A regular file, socket, FIFO or other non-directory.
    File,
    /// A device node: bound in on purpose, so the device policy allows it.
    Device {
        block: bool,
        rdev: u64,
    },
}

impl SourceKind {
    /// What a host path is (following symlinks, as the bind will).
    pub fn of(meta: &fs::Metadata) -> SourceKind {
        let ft = meta.file_type();
        if ft.is_dir() {
            SourceKind::Dir
        } else if ft.is_char_device() || ft.is_block_device() {
            SourceKind::Device {
                block: ft.is_block_device(),
                rdev: meta.rdev(),
            }
        } else {
            SourceKind::File
        }
    }

    pub fn is_dir(self) -> bool {
        self == SourceKind::Dir
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: BindSource,
    /// Absolute path inside the container.
    pub target: PathBuf,
    pub readonly: bool,
    pub recursive: bool,
    /// The mount point must be of the same kind (a directory for a directory).
    pub kind: SourceKind,
    /// How the bind's owners are seen from a user namespace (nspawn's bind
    /// options); only with --private-users.
    pub idmap: Idmap,
}

/// A bind's ID mapping, as nspawn's `--bind=SRC:DST:OPTS` spells it. `s` is
/// the container's shift, `p` the owner of the source on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Idmap {
    /// `noidmap`: the host's ids as they are (the guest's uid u is host s+u;
    /// host-owned files show up as nobody).
    #[default]
    No,
    /// `idmap`: host 0..range appear as the guest's 0..range (NixOS's
    /// `/nix/store:/nix/store:idmap`).
    Idmap,
    /// `rootidmap`: p appears as the guest's root; nothing else is mapped.
    RootIdmap,
    /// `owneridmap`: p appears as the owner of the mount point in the guest;
    /// nothing else is mapped.
    OwnerIdmap,
}

/// The container's user namespace (-U, --private-users=).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PrivateUsers {
    /// None: the guest's root is the host's root.
    #[default]
    No,
    /// A fixed range: `BASE[:RANGE]`, `identity` (0:65536), or `yes` (shift
    /// None: the root directory's owner, rounded down to 64K, 65536 ids).
    Fixed { shift: Option<u32>, range: u32 },
    /// `pick` (-U): a free 64K-aligned range, locked for the guest's life.
    Pick,
}

impl PrivateUsers {
    pub fn enabled(self) -> bool {
        self != PrivateUsers::No
    }
}

/// Who owns the root's files as the guest sees them (--private-users-ownership=).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ownership {
    /// The tree is used as it is.
    #[default]
    Off,
    /// The tree is chowned into the range (once; permanently).
    Chown,
    /// The root is bound ID-mapped: on-disk 0..range are the guest's 0..range.
    Map,
    /// Map where the file system can be ID-mapped and the tree is not shifted
    /// already, otherwise chown (the default with `pick`).
    Auto,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tmpfs {
    pub target: PathBuf,
    pub options: String,
}

/// nspawn's --volatile=: what of the tree the guest boots on, per boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Volatile {
    /// The tree itself.
    #[default]
    No,
    /// An empty tmpfs as the root, with the tree's /usr in it, read-only.
    Yes,
    /// The tree read-only, with a tmpfs on /var.
    State,
    /// The tree under an overlay whose upper layer is a tmpfs.
    Overlay,
}

/// What the guest's root is made of: the tree as it is, or a layer that
/// keeps the tree as it was (--ephemeral, --volatile=, --read-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RootMode {
    /// The whole run on a throw-away copy of the tree (an overlay with a
    /// tmpfs upper layer, made once per run, gone with the supervisor).
    pub ephemeral: bool,
    pub volatile: Volatile,
    /// The tree (and what is mounted below it) read-only.
    pub read_only: bool,
}

impl RootMode {
    /// Whether the run leaves the tree as it found it: it may be shared with
    /// other such runs (a shared lock), but not with one that writes to it.
    pub fn keeps_tree(&self) -> bool {
        self.ephemeral || self.volatile != Volatile::No || self.read_only
    }
}

/// An overlay file system mounted into the container (--overlay=, --overlay-ro=).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// The lower layers, bottom first.
    pub lowers: Vec<BindSource>,
    /// The upper layer, a host directory; None: an empty tmpfs, gone with the
    /// boot (nspawn's empty UPPER, which it makes in /var/tmp).
    pub upper: Option<PathBuf>,
    /// Absolute path inside the container.
    pub target: PathBuf,
    /// --overlay-ro: the upper layer is one more lower layer, nothing is written.
    pub readonly: bool,
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

/// A link the container gets: its name on the host and in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IfPair {
    pub host: String,
    pub container: String,
}

/// What the host side of the main veth is attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VethAttach {
    /// Nothing: `ve-NAME`, configured (or not) on its own.
    None,
    /// `vb-NAME` enslaved to an existing bridge (--network-bridge=).
    Bridge(String),
    /// `vb-NAME` enslaved to the zone's bridge `vz-ZONE`, made on demand and
    /// removed with its last member (--network-zone=).
    Zone(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Proto {
    Tcp,
    Udp,
}

/// A port of the host forwarded to the container (-p/--port=).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    pub proto: Proto,
    pub host: u16,
    pub container: u16,
}

/// An address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// The prefix of a single address: 32 or 128.
    pub fn host_prefix(addr: std::net::IpAddr) -> u8 {
        if addr.is_ipv4() {
            32
        } else {
            128
        }
    }
}

/// The container's network. The default is the host's (nothing of its own).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Network {
    /// A network namespace of its own (--private-network and every link option).
    pub private: bool,
    /// Join this network namespace instead (--network-namespace-path=).
    pub netns_path: Option<PathBuf>,
    /// The main veth pair: host side `ve-NAME`/`vb-NAME`, container side `host0`.
    pub veth: Option<VethAttach>,
    pub veth_extra: Vec<IfPair>,
    /// Host interfaces moved into the container (and back at the end).
    pub interfaces: Vec<IfPair>,
    pub macvlans: Vec<IfPair>,
    pub ipvlans: Vec<IfPair>,
    pub ports: Vec<Port>,
    /// nixrun's own: addresses of the host side of the main veth, and of host0,
    /// configured before the guest's init runs (NixOS's hostAddress and
    /// localAddress).
    pub host_addresses: Vec<IpNet>,
    pub local_addresses: Vec<IpNet>,
}

/// Registration with systemd-machined (--register=).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Register {
    No,
    /// Failing to register is fatal.
    Yes,
    /// Register where machined is reachable; otherwise say so once and go on.
    Auto,
}

/// The user's changes to the default capability set (policy/caps.rs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapsChange {
    pub add: caps::CapsHashSet,
    pub drop: caps::CapsHashSet,
}

/// The user's changes to the default system call deny table (policy/seccomp.rs),
/// as call numbers of this architecture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyscallChange {
    pub allow: BTreeSet<i64>,
    pub deny: BTreeSet<i64>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// Canonical, absolute host path of the container root.
    pub root: PathBuf,
    pub root_mode: RootMode,
    pub machine: String,
    pub hostname: String,
    /// From --uuid; otherwise decided at start from the guest's /etc/machine-id.
    pub uuid: Option<uuid::Uuid>,
    pub exec: Exec,
    pub binds: Vec<Bind>,
    pub tmpfs: Vec<Tmpfs>,
    pub overlays: Vec<Overlay>,
    /// Paths hidden under an empty node of their type (--inaccessible=).
    pub inaccessible: Vec<PathBuf>,
    /// --setenv, in order; applied last, so they win.
    pub setenv: Vec<(String, String)>,
    pub keep_unit: bool,
    pub register: Register,
    pub notify_ready: bool,
    /// None: SIGTERM/SIGINT kill the container right away.
    pub kill_signal: Option<i32>,
    pub link_journal: LinkJournal,
    pub console: Console,
    pub quiet: bool,
    /// TERM for the guest: ours when the console is interactive.
    pub term: String,
    pub caps: CapsChange,
    pub syscalls: SyscallChange,
    /// The container's limit on tasks (pids.max); None: none.
    pub tasks_max: Option<u64>,
    pub network: Network,
    pub private_users: PrivateUsers,
    pub ownership: Ownership,
}

impl Plan {
    /// A plan with nixrun's defaults for booting `root` as `machine`, for front
    /// ends to adjust and for tests.
    pub fn new(root: PathBuf, machine: &str) -> Plan {
        Plan {
            root,
            root_mode: RootMode::default(),
            machine: machine.to_string(),
            hostname: machine.to_string(),
            uuid: None,
            exec: Exec::Boot(vec![]),
            binds: vec![],
            tmpfs: vec![],
            overlays: vec![],
            inaccessible: vec![],
            setenv: vec![],
            keep_unit: false,
            register: Register::Auto,
            notify_ready: false,
            kill_signal: Some(crate::signal::sigrtmin_plus(3)),
            link_journal: LinkJournal::Auto,
            console: Console::ReadOnly,
            quiet: false,
            term: "vt220".into(),
            caps: CapsChange::default(),
            syscalls: SyscallChange::default(),
            tasks_max: Some(crate::cgroup::DEFAULT_TASKS_MAX),
            network: Network::default(),
            private_users: PrivateUsers::No,
            ownership: Ownership::Off,
        }
    }

    pub fn boots(&self) -> bool {
        matches!(self.exec, Exec::Boot(_))
    }
}

/// Checks a container root and returns its canonical path.
pub fn validate_root(dir: &Path) -> Result<PathBuf, PlanError> {
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

/// A hostname by the rules systemd (and so nspawn) applies to hostnames and
/// machine names: at most 64 bytes (Linux's HOST_NAME_MAX), dot-separated
/// labels of letters, digits and '-', none empty, none starting or ending with
/// '-'. Unlike DNS, a label may be longer than 63.
pub fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// A machine name is a hostname (nspawn's rule); it also names the container's
/// cgroup, lock files and, later, network interfaces.
pub fn is_machine_name(s: &str) -> bool {
    is_hostname(s)
}

/// nspawn derives the machine name from the directory and cleans it up rather than
/// failing: a debugging user should not have to rename their directory.
pub fn machine_from_dir(root: &Path) -> Option<String> {
    let base = root.file_name()?.to_string_lossy();
    let mut name: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(64);
    let name = name.trim_matches(|c| c == '-' || c == '.').to_string();
    is_machine_name(&name).then_some(name)
}

/// 32 hex digits, or the 36-character form with dashes (nspawn accepts both).
pub fn parse_uuid(s: &str) -> Option<uuid::Uuid> {
    let ok_form = s.len() == 32 || (s.len() == 36 && s.contains('-'));
    ok_form
        .then(|| uuid::Uuid::try_parse(s).ok())
        .flatten()
        .filter(|_| s.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
}

/// A container path: absolute, normalised, without "..", never "/" itself.
pub fn container_path(p: &str) -> Result<PathBuf, String> {
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

/// The target of a user's mount (--bind, --tmpfs): a container path that does
/// not hide one of the file systems the runtime mounts for the guest.
pub fn user_mount_target(p: &str) -> Result<PathBuf, String> {
    let path = container_path(p)?;
    let runtime = crate::policy::mounts::RUNTIME_MOUNT_POINTS;
    if runtime.iter().any(|r| path == Path::new(r)) {
        return Err(format!(
            "{} is where nixrun mounts the guest's own file system (the container \
             interface's /proc, /sys, /dev, /run); mount below it instead",
            path.display()
        ));
    }
    if path.starts_with("/run/host") {
        return Err(format!(
            "{} is below /run/host, which nixrun fills for the guest and makes read-only",
            path.display()
        ));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_names_follow_hostname_rules() {
        for ok in ["foo", "a.b", "web-1.example", &"x".repeat(64), "0"] {
            assert!(is_machine_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "-a",
            "a-.b",
            "a_b",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(!is_machine_name(bad), "{bad}");
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
        assert_eq!(
            machine_from_dir(Path::new("/x/debian.12")).as_deref(),
            Some("debian.12")
        );
    }

    #[test]
    fn uuids() {
        let u = parse_uuid("0123456789abcdef0123456789ABCDEF").unwrap();
        assert_eq!(u.as_bytes()[0], 0x01);
        assert_eq!(u.as_bytes()[15], 0xef);
        assert_eq!(
            parse_uuid("01234567-89ab-cdef-0123-456789abcdef"),
            parse_uuid("0123456789abcdef0123456789abcdef")
        );
        assert!(parse_uuid("0123456789abcdef").is_none());
        assert!(parse_uuid("0123456789abcdef0123456789abcdeg").is_none());
        assert!(parse_uuid("0123-456789abcdef0123456789abcdef").is_none());
        assert!(parse_uuid("{01234567-89ab-cdef-0123-456789abcdef}").is_none());
        assert!(parse_uuid("urn:uuid:01234567-89ab-cdef-0123-456789abcdef").is_none());
    }

    #[test]
    fn user_mounts_may_not_hide_the_runtimes() {
        for bad in [
            "/proc",
            "/sys",
            "/dev",
            "/run",
            "/run/",
            "/run/host",
            "/run/host/notify",
            "/dev/pts",
            "/sys/fs/cgroup",
        ] {
            let why = user_mount_target(bad).unwrap_err();
            assert!(why.contains("nixrun"), "{bad}: {why}");
        }
        for ok in [
            "/proc/driver",
            "/sys/kernel/x",
            "/run/foo",
            "/dev/shm",
            "/srv",
            "/runner",
        ] {
            assert!(user_mount_target(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn container_paths() {
        assert_eq!(
            container_path("/a//b/./c").unwrap(),
            PathBuf::from("/a/b/c")
        );
        assert!(container_path("a").is_err());
        assert!(container_path("/a/../b").is_err());
        assert!(container_path("/").is_err());
    }
}
