//! The container's file system, as one ordered table applied by one loop.
//!
//! `table()` is a pure function of the plan, so tests can check the table itself
//! (what is mounted where, read-only or not, in which order); `apply()` executes it
//! inside the container root before pivot_root, resolving every target within the
//! root (see root.rs). Order matters and is the table's order: /dev and /run exist
//! before user binds land on them; the /proc masks need /run/host/inaccessible.

use super::root::{Kind, Root, RootError};
use crate::plan::{Bind, BindSource, Console, Plan};
use crate::sys::{fd_path, mount_setattr, MOUNT_ATTR_RDONLY};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{makedev, Mode, SFlag};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Files under /proc that leak host information or control the host kernel; hidden
/// under an empty read-only file (nspawn's list).
pub const PROC_MASKED: &[&str] = &[
    "/proc/kallsyms",
    "/proc/kcore",
    "/proc/keys",
    "/proc/sysrq-trigger",
    "/proc/timer_list",
];

/// Host-wide knobs under /proc, made read-only where present (nspawn's list).
pub const PROC_READ_ONLY: &[&str] = &[
    "/proc/acpi",
    "/proc/apm",
    "/proc/asound",
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/scsi",
];

/// Device nodes the guest gets: (name, major, minor). The container interface
/// asks for these; /dev/net/tun serves VPNs inside.
pub const DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
    ("/dev/net/tun", 10, 200),
];

/// An empty file the guest cannot write, bound over masked files. It lives on our
/// own /run tmpfs, so a guest's /dev/null symlink cannot redirect a mask
/// (CVE-2025-31133).
pub const INACCESSIBLE_REG: &str = "/run/host/inaccessible/reg";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Host(PathBuf),
    InRoot(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A fresh file system instance. `optional` ones are skipped when the target
    /// does not exist (and it is not created).
    Mount {
        fstype: &'static str,
        target: PathBuf,
        flags: MsFlags,
        data: Option<String>,
        optional: bool,
    },
    /// A bind mount. `optional` ones are skipped when the source or the target does
    /// not exist (and their target is never created): /proc differs by kernel.
    Bind {
        source: Source,
        target: PathBuf,
        kind: Kind,
        recursive: bool,
        readonly: bool,
        optional: bool,
    },
    Mkdir {
        path: PathBuf,
        mode: u32,
    },
    /// A device node, FIFO, or other special file.
    Node {
        path: PathBuf,
        kind: SFlag,
        mode: u32,
        major: u64,
        minor: u64,
    },
    Symlink {
        path: PathBuf,
        target: String,
    },
    File {
        path: PathBuf,
        contents: Vec<u8>,
        mode: u32,
    },
    /// A pty from the container's own devpts, bound onto /dev/console; the master
    /// goes to the supervisor.
    Console,
    /// The sd_notify socket at /run/host/notify; it goes to the supervisor.
    NotifySocket,
}

/// What the table produces besides mounts.
#[derive(Default)]
pub struct Outputs {
    pub pty_master: Option<OwnedFd>,
    /// The pty's slave end, the guest's console; opened before pivot_root.
    pub console: Option<OwnedFd>,
    pub notify: Option<OwnedFd>,
}

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    #[error("{0}")]
    Root(#[from] RootError),
    #[error("mount {what} on {target}: {errno}", target = target.display())]
    Mount {
        what: String,
        target: PathBuf,
        #[source]
        errno: Errno,
    },
    #[error("mount target {0} resolves to the container's root directory (a symlink to /?)")]
    OverRoot(PathBuf),
    #[error("bind source {0}: {1}")]
    Source(PathBuf, #[source] Errno),
    #[error("console: {0}: {1}")]
    Console(&'static str, #[source] Errno),
    #[error("notify socket: {0}: {1}")]
    Notify(&'static str, #[source] Errno),
}

/// Facts decided at start-up that the table needs.
pub struct TableInput<'a> {
    pub plan: &'a Plan,
    /// $container_uuid, formatted with dashes.
    pub uuid: &'a str,
    /// The host's os-release, shown to the guest at /run/host/os-release.
    pub host_os_release: Option<&'a Path>,
    /// Binds decided at start-up, applied with the user's.
    pub extra_binds: &'a [Bind],
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

fn fresh(fstype: &'static str, target: &str, flags: MsFlags, data: Option<&str>) -> Op {
    Op::Mount {
        fstype,
        target: p(target),
        flags,
        data: data.map(str::to_string),
        optional: false,
    }
}

/// Bind a container path onto itself, read-only.
fn read_only(target: &str, optional: bool) -> Op {
    Op::Bind {
        source: Source::InRoot(p(target)),
        target: p(target),
        kind: Kind::Dir,
        recursive: true,
        readonly: true,
        optional,
    }
}

pub fn table(input: &TableInput<'_>) -> Vec<Op> {
    use MsFlags as F;
    let plan = input.plan;
    let nosuid_nodev_noexec = F::MS_NOSUID | F::MS_NODEV | F::MS_NOEXEC;
    let mut t = vec![
        fresh("proc", "/proc", nosuid_nodev_noexec, None),
        // The kernel's sysctls are mostly not namespaced; the guest must not set them.
        read_only("/proc/sys", false),
        fresh("sysfs", "/sys", nosuid_nodev_noexec | F::MS_RDONLY, None),
        // Mounted after the cgroup namespace was entered, so its root is the
        // container's own cgroup: the guest sees and can write only its subtree.
        fresh("cgroup2", "/sys/fs/cgroup", nosuid_nodev_noexec, None),
        // fusectl lets its mounter abort any FUSE connection of the host. The guest
        // may not mount it (mountguard.rs), and with its mount point hidden the
        // guest's sys-fs-fuse-connections.mount skips itself instead of failing.
        Op::Mount {
            fstype: "tmpfs",
            target: p("/sys/fs/fuse"),
            flags: nosuid_nodev_noexec | F::MS_RDONLY,
            data: Some("mode=0555".into()),
            optional: true,
        },
        fresh(
            "tmpfs",
            "/dev",
            F::MS_NOSUID | F::MS_STRICTATIME,
            Some("mode=0755"),
        ),
    ];
    for &(dev, major, minor) in DEVICES {
        t.push(Op::Node {
            path: p(dev),
            kind: SFlag::S_IFCHR,
            mode: 0o666,
            major,
            minor,
        });
    }
    t.extend([
        fresh(
            "devpts",
            "/dev/pts",
            F::MS_NOSUID | F::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
        ),
        Op::Symlink {
            path: p("/dev/ptmx"),
            target: "pts/ptmx".into(),
        },
        fresh(
            "tmpfs",
            "/dev/shm",
            F::MS_NOSUID | F::MS_NODEV | F::MS_STRICTATIME,
            Some("mode=01777"),
        ),
        fresh("mqueue", "/dev/mqueue", nosuid_nodev_noexec, None),
    ]);
    for (name, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        t.push(Op::Symlink {
            path: p(name),
            target: target.into(),
        });
    }
    if plan.console != Console::Pipe {
        t.push(Op::Console);
    }
    t.extend([
        fresh(
            "tmpfs",
            "/run",
            F::MS_NOSUID | F::MS_NODEV | F::MS_STRICTATIME,
            Some("mode=0755"),
        ),
        Op::Mkdir {
            path: p("/run/host"),
            mode: 0o755,
        },
        Op::File {
            path: p("/run/host/container-manager"),
            contents: b"nixrun\n".to_vec(),
            mode: 0o444,
        },
        Op::File {
            path: p("/run/host/container-uuid"),
            contents: format!("{}\n", input.uuid).into_bytes(),
            mode: 0o444,
        },
        Op::Mkdir {
            path: p("/run/host/inaccessible"),
            mode: 0o555,
        },
        Op::Node {
            path: p(INACCESSIBLE_REG),
            kind: SFlag::S_IFREG,
            mode: 0,
            major: 0,
            minor: 0,
        },
        Op::Mkdir {
            path: p("/run/host/inaccessible/dir"),
            mode: 0,
        },
        Op::Node {
            path: p("/run/host/inaccessible/fifo"),
            kind: SFlag::S_IFIFO,
            mode: 0,
            major: 0,
            minor: 0,
        },
        Op::Node {
            path: p("/run/host/inaccessible/chr"),
            kind: SFlag::S_IFCHR,
            mode: 0,
            major: 0,
            minor: 0,
        },
        Op::Node {
            path: p("/run/host/inaccessible/blk"),
            kind: SFlag::S_IFBLK,
            mode: 0,
            major: 0,
            minor: 0,
        },
        Op::NotifySocket,
    ]);
    if let Some(os) = input.host_os_release {
        t.push(Op::Bind {
            source: Source::Host(os.to_path_buf()),
            target: p("/run/host/os-release"),
            kind: Kind::File,
            recursive: false,
            readonly: true,
            optional: true,
        });
    }
    for masked in PROC_MASKED {
        t.push(Op::Bind {
            source: Source::InRoot(p(INACCESSIBLE_REG)),
            target: p(masked),
            kind: Kind::File,
            recursive: false,
            readonly: true,
            optional: true,
        });
    }
    for ro in PROC_READ_ONLY {
        t.push(read_only(ro, true));
    }
    t.push(fresh(
        "tmpfs",
        "/tmp",
        F::MS_NOSUID | F::MS_NODEV | F::MS_STRICTATIME,
        Some("mode=01777"),
    ));

    // User mounts, parents before children whatever the command line order, so
    // that --bind=/a/b does not end up hidden under a later --tmpfs=/a.
    let mut user: Vec<(PathBuf, Op)> = Vec::new();
    for b in plan.binds.iter().chain(input.extra_binds) {
        user.push((b.target.clone(), bind_op(b)));
    }
    for tm in &plan.tmpfs {
        user.push((
            tm.target.clone(),
            Op::Mount {
                fstype: "tmpfs",
                target: tm.target.clone(),
                flags: F::MS_NODEV | F::MS_STRICTATIME,
                data: Some(tm.options.clone()),
                optional: false,
            },
        ));
    }
    user.sort_by_key(|(target, _)| target.components().count());
    t.extend(user.into_iter().map(|(_, op)| op));

    // Last: the guest may read /run/host but not change what the runtime put there.
    t.push(read_only("/run/host", false));
    t
}

fn bind_op(b: &Bind) -> Op {
    Op::Bind {
        source: match &b.source {
            BindSource::Host(p) => Source::Host(p.clone()),
            BindSource::InRoot(p) => Source::InRoot(p.clone()),
        },
        target: b.target.clone(),
        kind: if b.is_dir { Kind::Dir } else { Kind::File },
        recursive: b.recursive,
        readonly: b.readonly,
        optional: false,
    }
}

pub fn apply(root: &Root, ops: &[Op]) -> Result<Outputs, MountError> {
    let mut out = Outputs::default();
    for op in ops {
        apply_one(root, op, &mut out)?;
    }
    Ok(out)
}

/// The O_PATH fd to mount onto: created if needed, or None for an optional
/// target that does not exist. Never the root directory itself.
fn mount_target(
    root: &Root,
    target: &Path,
    kind: Kind,
    optional: bool,
) -> Result<Option<OwnedFd>, MountError> {
    let fd = if optional {
        match root.path_fd(target) {
            Ok(fd) => fd,
            Err(e) if e.errno == Errno::ENOENT => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    } else {
        root.mount_point(target, kind)?
    };
    if root.is_root(&fd) {
        return Err(MountError::OverRoot(target.to_path_buf()));
    }
    Ok(Some(fd))
}

fn apply_one(root: &Root, op: &Op, out: &mut Outputs) -> Result<(), MountError> {
    match op {
        Op::Mount {
            fstype,
            target,
            flags,
            data,
            optional,
        } => {
            let Some(fd) = mount_target(root, target, Kind::Dir, *optional)? else {
                return Ok(());
            };
            mount(
                Some(*fstype),
                fd_path(fd.as_fd()).as_str(),
                Some(*fstype),
                *flags,
                data.as_deref(),
            )
            .map_err(|errno| MountError::Mount {
                what: fstype.to_string(),
                target: target.clone(),
                errno,
            })
        }
        Op::Bind {
            source,
            target,
            kind,
            recursive,
            readonly,
            optional,
        } => {
            let src = match source {
                Source::Host(path) => {
                    nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
                        // SAFETY: a new fd nothing else owns.
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
                        .map_err(|e| (path, e))
                }
                Source::InRoot(path) => root.path_fd(path).map_err(|e| (path, e.errno)),
            };
            let src = match src {
                Ok(fd) => fd,
                Err((_, Errno::ENOENT)) if *optional => return Ok(()),
                Err((path, errno)) => return Err(MountError::Source(path.clone(), errno)),
            };
            let Some(target_fd) = mount_target(root, target, *kind, *optional)? else {
                return Ok(());
            };
            let mut flags = MsFlags::MS_BIND;
            if *recursive {
                flags |= MsFlags::MS_REC;
            }
            let what = match source {
                Source::Host(p) | Source::InRoot(p) => format!("bind of {}", p.display()),
            };
            let merr = |errno| MountError::Mount {
                what: what.clone(),
                target: target.clone(),
                errno,
            };
            mount(
                Some(fd_path(src.as_fd()).as_str()),
                fd_path(target_fd.as_fd()).as_str(),
                None::<&str>,
                flags,
                None::<&str>,
            )
            .map_err(merr)?;
            if *readonly {
                // Reopen: the old fd still names the directory under the new mount.
                let mounted = root.path_fd(target)?;
                mount_setattr(mounted.as_fd(), *recursive, MOUNT_ATTR_RDONLY, 0).map_err(merr)?;
            }
            Ok(())
        }
        Op::Mkdir { path, mode } => {
            let fd = root.mkdir_all(path, *mode)?;
            // mkdir's mode passed through the umask; set what the table says.
            nix::sys::stat::fchmod(
                root.open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?
                    .as_raw_fd(),
                Mode::from_bits_truncate(*mode),
            )
            .map_err(|errno| MountError::Mount {
                what: "chmod".into(),
                target: path.clone(),
                errno,
            })?;
            drop(fd);
            Ok(())
        }
        Op::Node {
            path,
            kind,
            mode,
            major,
            minor,
        } => Ok(root.mknod(path, *kind, *mode, makedev(*major, *minor))?),
        Op::Symlink { path, target } => Ok(root.symlink(path, target)?),
        Op::File {
            path,
            contents,
            mode,
        } => Ok(root.write_file(path, contents, *mode)?),
        Op::Console => {
            let (master, slave) = super::dev::open_pty(root)?;
            let target = root.mount_point(Path::new("/dev/console"), Kind::File)?;
            mount(
                Some(fd_path(slave.as_fd()).as_str()),
                fd_path(target.as_fd()).as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|errno| MountError::Mount {
                what: "console pty".into(),
                target: "/dev/console".into(),
                errno,
            })?;
            out.pty_master = Some(master);
            out.console = Some(slave);
            Ok(())
        }
        Op::NotifySocket => {
            out.notify = Some(super::dev::notify_socket(root)?);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Exec, LinkJournal, Tmpfs};

    fn plan() -> Plan {
        Plan {
            root: "/var/lib/containers/foo".into(),
            machine: "foo".into(),
            hostname: "foo".into(),
            uuid: None,
            exec: Exec::Boot(vec![]),
            binds: vec![
                Bind {
                    source: BindSource::Host("/nix/store".into()),
                    target: "/nix/store".into(),
                    readonly: true,
                    recursive: true,
                    is_dir: true,
                },
                Bind {
                    source: BindSource::Host("/etc/hosts".into()),
                    target: "/var/x/hosts".into(),
                    readonly: false,
                    recursive: true,
                    is_dir: false,
                },
            ],
            tmpfs: vec![Tmpfs {
                target: "/var".into(),
                options: "mode=0755".into(),
            }],
            setenv: vec![],
            keep_unit: false,
            notify_ready: true,
            kill_signal: None,
            link_journal: LinkJournal::No,
            console: Console::ReadOnly,
            quiet: true,
            term: "vt220".into(),
            capabilities: Default::default(),
            denied_syscalls: Default::default(),
        }
    }

    fn position(t: &[Op], pred: impl Fn(&Op) -> bool) -> usize {
        t.iter()
            .position(pred)
            .expect("entry missing from the table")
    }

    fn mount_at(target: &str) -> impl Fn(&Op) -> bool + '_ {
        move |op| match op {
            Op::Mount { target: t, .. } | Op::Bind { target: t, .. } => t == Path::new(target),
            _ => false,
        }
    }

    fn table_for(plan: &Plan) -> Vec<Op> {
        table(&TableInput {
            plan,
            uuid: "00000000-0000-0000-0000-000000000001",
            host_os_release: Some(Path::new("/etc/os-release")),
            extra_binds: &[],
        })
    }

    #[test]
    fn api_file_systems_are_read_only_where_the_container_interface_says() {
        let t = table_for(&plan());
        assert!(t.contains(&Op::Mount {
            fstype: "sysfs",
            target: p("/sys"),
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
            data: None,
            optional: false,
        }));
        assert!(t.contains(&read_only("/proc/sys", false)));
        assert!(position(&t, mount_at("/proc")) < position(&t, mount_at("/proc/sys")));
        for m in PROC_MASKED {
            let i = position(&t, mount_at(m));
            match &t[i] {
                Op::Bind {
                    source, readonly, ..
                } => {
                    assert_eq!(source, &Source::InRoot(p(INACCESSIBLE_REG)));
                    assert!(readonly);
                }
                other => panic!("{m}: {other:?}"),
            }
        }
        assert!(t.contains(&Op::NotifySocket));
        assert!(t.contains(&Op::Console));
    }

    #[test]
    fn the_store_is_bound_read_only_after_dev_and_run_exist() {
        let t = table_for(&plan());
        let store = position(&t, mount_at("/nix/store"));
        match &t[store] {
            Op::Bind {
                source,
                readonly,
                recursive,
                ..
            } => {
                assert_eq!(source, &Source::Host(p("/nix/store")));
                assert!(*readonly && *recursive);
            }
            other => panic!("{other:?}"),
        }
        assert!(position(&t, mount_at("/dev")) < store);
        assert!(position(&t, mount_at("/run")) < store);
        // The tmpfs on /var comes before the bind below it, although given after.
        assert!(position(&t, mount_at("/var")) < position(&t, mount_at("/var/x/hosts")));
        // /run/host is made read-only last, after everything was put there.
        assert_eq!(t.last(), Some(&read_only("/run/host", false)));
    }

    #[test]
    fn pipe_console_has_no_pty() {
        let mut pl = plan();
        pl.console = Console::Pipe;
        assert!(!table_for(&pl).contains(&Op::Console));
    }
}
