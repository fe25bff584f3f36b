//! The container's init-to-be under the OCI front end: cloned by `create`
//! (create.rs), it builds the container from config.json, reports back, and
//! parks until `start`, after which it execs `process.args`. The runtime
//! process that cloned it exits after create; the init is then the child of
//! the caller's subreaper (containerd's shim, conmon), which reaps it.
//!
//! Sync points over the core's channel framing (protocol.rs, `pair_of`):
//!
//! | # | sender | message | then |
//! |---|---|---|---|
//! | 1 | runtime | `Go` | the init is in its cgroups (and its id maps are written) |
//! | 2 | init | `Hooks` | mounts are done; the runtime runs prestart and createRuntime hooks |
//! | 3 | runtime | `HooksDone` | the init runs createContainer hooks, pivots, becomes the process |
//! | 4 | init | `Ready(pty)` | parked: the runtime saves the state and exits |
//! | – | init | `Failed(line)` | the runtime reports it, undoes everything |
//!
//! The park is an accept() on `start.sock` in the state directory, bound by
//! the runtime before the clone: `start` connects, the init runs
//! startContainer hooks and execs; the connection is close-on-exec, so
//! `start` reads end of file on success, or the failure line.
//!
//! What is the core's: path resolution inside the root (container/root.rs),
//! the console pty (container/dev.rs), the mount tree lock
//! (container/lock.rs), the clone and fd helpers (sys/), the framing.

use super::process::{self, Prepared};
use crate::container::root::{Kind, Root};
use crate::protocol::{End, Message};
use crate::sys::fd_path;
use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::SFlag;
use oci_spec::runtime::{LinuxDeviceType, Mount as OciMount, Spec};
use rustix::fs::OFlags;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What the runtime tells the init.
#[derive(Debug, PartialEq, Eq)]
pub enum ToInit {
    Go,
    HooksDone,
}

/// What the init tells the runtime.
#[derive(Debug)]
pub enum FromInit {
    Hooks,
    Ready(Option<OwnedFd>),
    Failed(String),
}

impl Message for ToInit {
    const WHAT: &'static str = "the runtime's go-ahead";
    fn encode(&self) -> (Vec<u8>, Vec<BorrowedFd<'_>>) {
        (vec![if *self == ToInit::Go { 1 } else { 2 }], vec![])
    }
    fn decode(data: &[u8], _fds: Vec<OwnedFd>) -> std::result::Result<Self, String> {
        match data.first() {
            Some(1) => Ok(ToInit::Go),
            Some(2) => Ok(ToInit::HooksDone),
            b => Err(format!("unexpected message {b:?}")),
        }
    }
}

impl Message for FromInit {
    const WHAT: &'static str = "the container's init";
    fn encode(&self) -> (Vec<u8>, Vec<BorrowedFd<'_>>) {
        match self {
            FromInit::Hooks => (vec![3], vec![]),
            FromInit::Ready(fd) => (vec![4], fd.iter().map(|f| f.as_fd()).collect()),
            FromInit::Failed(line) => {
                let mut d = vec![5];
                let mut end = line.len().min(4000);
                while !line.is_char_boundary(end) {
                    end -= 1;
                }
                d.extend_from_slice(&line.as_bytes()[..end]);
                (d, vec![])
            }
        }
    }
    fn decode(data: &[u8], mut fds: Vec<OwnedFd>) -> std::result::Result<Self, String> {
        match data.first() {
            Some(3) => Ok(FromInit::Hooks),
            Some(4) => Ok(FromInit::Ready(fds.pop())),
            Some(5) => Ok(FromInit::Failed(
                String::from_utf8_lossy(&data[1..]).into_owned(),
            )),
            b => Err(format!("unexpected message {b:?}")),
        }
    }
}

pub type RuntimeEnd = End<ToInit, FromInit>;
pub type InitEnd = End<FromInit, ToInit>;

/// Everything the init needs, prepared by the runtime before the clone.
pub struct Setup<'a> {
    pub id: &'a str,
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    /// Canonical host path of the container's root.
    pub rootfs: &'a Path,
    pub prepared: &'a Prepared,
    /// Namespaces to join, by type flag (the pid one is joined by the
    /// runtime itself before the clone).
    pub join: Vec<(CloneFlags, PathBuf)>,
    pub new_user: bool,
    /// Lock the mount tree (container/lock.rs): for a mount namespace of
    /// the container's own without a user namespace, where the guest's root
    /// is the host's.
    pub lock_mounts: bool,
    pub new_cgroup: bool,
    pub new_uts: bool,
    pub no_pivot: bool,
    pub new_keyring: bool,
    pub preserve_fds: u32,
    /// The listening start socket (close-on-exec).
    pub start: BorrowedFd<'a>,
    /// The container's own cgroup2 directory on the host, bound at
    /// /sys/fs/cgroup when there is no cgroup namespace to mount it in.
    pub cgroup2: Option<&'a Path>,
    /// nixrun's container interface, if the annotation asks for it.
    pub interface: Option<&'a super::interface::Interface>,
}

type Result<T> = std::result::Result<T, String>;

fn sys(what: impl std::fmt::Display) -> impl FnOnce(Errno) -> String {
    move |e| format!("{what}: {e}")
}

/// The child's entry point; returns only on failure (the exit status).
pub fn run(s: &Setup<'_>, ch: &InitEnd) -> isize {
    match prepare_and_park(s, ch) {
        Ok(never) => match never {},
        Err(line) => {
            let _ = ch.send(&FromInit::Failed(line));
            1
        }
    }
}

enum Never {}

fn prepare_and_park(s: &Setup<'_>, ch: &InitEnd) -> Result<Never> {
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))?;
    // The user namespace first: the others are joined with its privileges.
    let mut join = s.join.clone();
    join.sort_by_key(|(f, _)| *f != CloneFlags::CLONE_NEWUSER);
    for (flag, path) in &join {
        let f =
            std::fs::File::open(path).map_err(|e| format!("namespace {}: {e}", path.display()))?;
        nix::sched::setns(f, *flag)
            .map_err(sys(format!("joining namespace {}", path.display())))?;
    }
    match ch.expect().map_err(|e| e.to_string())? {
        ToInit::Go => {}
        ToInit::HooksDone => return Err("protocol: hooks before go".into()),
    }
    if s.new_user {
        // Root of the new namespace, now that the maps exist.
        let root_g = nix::unistd::Gid::from_raw(0);
        let root_u = nix::unistd::Uid::from_raw(0);
        nix::unistd::setresgid(root_g, root_g, root_g)
            .map_err(sys("setgid 0 in the user namespace"))?;
        nix::unistd::setresuid(root_u, root_u, root_u)
            .map_err(sys("setuid 0 in the user namespace"))?;
    }
    if s.new_cgroup {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(sys("unshare the cgroup namespace"))?;
    }
    if s.new_uts {
        if let Some(h) = s.spec.hostname() {
            nix::unistd::sethostname(h).map_err(sys("sethostname"))?;
        }
        if let Some(d) = s.spec.domainname() {
            rustix::system::setdomainname(d.as_bytes())
                .map_err(|e| format!("setdomainname: {e}"))?;
        }
    }
    let linux = s.spec.linux().clone().unwrap_or_default();

    crate::sys::make_mounts_slaves().map_err(sys("make / a slave mount"))?;
    mount(
        Some(s.rootfs),
        s.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys("bind the root onto itself"))?;
    let root =
        Root::open_dir(s.rootfs).map_err(sys(format!("open root {}", s.rootfs.display())))?;

    use crate::container::mounts as core_mounts;
    let mut made = core_mounts::Outputs::default();
    if let Some(i) = s.interface {
        core_mounts::apply(&root, &i.before(s.spec), &mut made).map_err(|e| e.to_string())?;
    }
    let mut dev_mounted = false;
    for m in s.spec.mounts().iter().flatten() {
        if m.destination() == Path::new("/dev") && m.typ().as_deref() != Some("bind") {
            dev_mounted = true;
        }
        mount_one(s, &root, m)?;
    }
    devices(s, &root, &linux, dev_mounted)?;
    if let Some(i) = s.interface {
        core_mounts::apply(&root, &i.after(s.spec, s.new_user), &mut made)
            .map_err(|e| e.to_string())?;
    }
    // The receiving end of /run/host/notify: handed to `start` (the relay).
    let notify = made.notify.take();
    let pty = if s
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false)
    {
        // The pty is the console too (runc binds it onto /dev/console): a
        // booted init writes its status there, not to its stdio.
        let mut out = crate::container::mounts::Outputs::default();
        crate::container::mounts::apply(&root, [&crate::policy::mounts::Op::Console], &mut out)
            .map_err(|e| e.to_string())?;
        Some((
            out.pty_master.ok_or("console: no pty")?,
            out.console.ok_or("console: no pty")?,
        ))
    } else {
        None
    };
    for (k, v) in linux.sysctl().iter().flatten() {
        let path = PathBuf::from("/proc/sys").join(k.replace('.', "/"));
        let fd = root
            .open(&path, OFlags::WRONLY | OFlags::CLOEXEC)
            .map_err(|e| format!("sysctl {k}: {e}"))?;
        nix::unistd::write(&fd, v.as_bytes()).map_err(sys(format!("sysctl {k}={v}")))?;
    }
    for p in linux.masked_paths().iter().flatten() {
        mask(&root, Path::new(p))?;
    }
    for p in linux.readonly_paths().iter().flatten() {
        read_only(&root, Path::new(p))?;
    }

    // Sync points 2 and 3: prestart and createRuntime hooks run in the
    // runtime's namespaces, with the container's namespaces in place.
    ch.send(&FromInit::Hooks).map_err(|e| e.to_string())?;
    match ch.expect().map_err(|e| e.to_string())? {
        ToInit::HooksDone => {}
        ToInit::Go => return Err("protocol: go twice".into()),
    }
    if let Some(h) = s.spec.hooks() {
        let st = super::hooks::state_json(
            s.id,
            "created",
            1,
            s.bundle,
            s.spec.annotations().as_ref().unwrap_or(&Default::default()),
        );
        super::hooks::run_all("createContainer", h.create_container().as_ref(), &st)?;
    }

    nix::unistd::fchdir(root.fd().as_raw_fd()).map_err(sys("chdir into the root"))?;
    if s.no_pivot {
        // For roots that cannot be pivoted from (ramfs): move the root over
        // "/" and chroot, as runc --no-pivot does.
        mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .map_err(sys("move the root to /"))?;
        nix::unistd::chroot(".").map_err(sys("chroot"))?;
    } else {
        nix::unistd::pivot_root(".", ".").map_err(sys("pivot_root"))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach the old root"))?;
    }
    nix::unistd::chdir("/").map_err(sys("chdir /"))?;
    drop(root);
    if s.spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        let keep = locked_flags(Path::new("/"));
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep,
            None::<&str>,
        )
        .map_err(sys("make the root read-only"))?;
    }
    if s.lock_mounts {
        // nixrun's wall (container/lock.rs): a real-root guest cannot unmount
        // the masks or make read-only mounts writable again.
        crate::container::lock::lock_mount_tree().map_err(|e| e.to_string())?;
    }
    let prop = match linux.rootfs_propagation().as_deref() {
        None | Some("") => None,
        Some("shared") | Some("rshared") => Some(MsFlags::MS_SHARED),
        Some("slave") | Some("rslave") => Some(MsFlags::MS_SLAVE),
        Some("private") | Some("rprivate") => Some(MsFlags::MS_PRIVATE),
        Some("unbindable") | Some("runbindable") => Some(MsFlags::MS_UNBINDABLE),
        Some(o) => return Err(format!("rootfsPropagation {o:?}: unknown")),
    };
    if let Some(p) = prop {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            p | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys("rootfsPropagation"))?;
    }

    if s.new_keyring {
        crate::sys::join_new_session_keyring().map_err(sys("join a new session keyring"))?;
    }
    let proc_ = s
        .spec
        .process()
        .as_ref()
        .ok_or("config.json has no process")?;
    let program = process::find_program(proc_, s.prepared)?;
    let master = match pty {
        Some((master, slave)) => {
            nix::unistd::setsid().map_err(sys("setsid"))?;
            rustix::process::ioctl_tiocsctty(&slave)
                .map_err(|e| format!("controlling tty: {e}"))?;
            for t in 0..=2 {
                nix::unistd::dup2(slave.as_raw_fd(), t).map_err(sys("dup the pty onto stdio"))?;
            }
            Some(master)
        }
        None => None,
    };
    process::apply_limits(proc_)?;
    process::install_early(s.prepared, s.preserve_fds)?;
    process::apply_identity(proc_)?;

    // From here on the init outlives the runtime.
    rustix::process::set_parent_process_death_signal(None)
        .map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))?;
    ch.send(&FromInit::Ready(master))
        .map_err(|e| e.to_string())?;

    let conn = loop {
        match rustix::net::accept_with(s.start, rustix::net::SocketFlags::CLOEXEC) {
            Ok(fd) => break fd,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("waiting for start: {e}")),
        }
    };
    let mut buf = [0u8; 16];
    let n = nix::unistd::read(conn.as_raw_fd(), &mut buf).unwrap_or(0);
    let fail = |line: String| {
        let _ = nix::unistd::write(&conn, line.as_bytes());
        line
    };
    if &buf[..n] != b"start" {
        return Err(fail("start: unexpected message".into()));
    }
    if let Some(sock) = &notify {
        // A NUL byte, which no failure line starts with, carries it.
        let fds = [sock.as_raw_fd()];
        nix::sys::socket::sendmsg::<()>(
            conn.as_raw_fd(),
            &[std::io::IoSlice::new(b"\0")],
            &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
            nix::sys::socket::MsgFlags::empty(),
            None,
        )
        .map_err(|e| fail(format!("handing over the notify socket: {e}")))?;
    }
    if let Some(h) = s.spec.hooks() {
        let st = super::hooks::state_json(
            s.id,
            "running",
            1,
            s.bundle,
            s.spec.annotations().as_ref().unwrap_or(&Default::default()),
        );
        super::hooks::run_all("startContainer", h.start_container().as_ref(), &st).map_err(fail)?;
    }
    let err = process::exec(
        &program,
        s.prepared,
        s.preserve_fds,
        s.prepared.no_new_privs,
    );
    Err(fail(err))
}

/// mount(2) flags and data from a config mount's options.
pub fn parse_options(opts: &[String]) -> (MsFlags, MsFlags, Vec<String>, bool) {
    use MsFlags as F;
    let (mut set, mut prop, mut data, mut bind_rec) = (F::empty(), F::empty(), vec![], false);
    for o in opts {
        match o.as_str() {
            "ro" => set |= F::MS_RDONLY,
            "rw" => set &= !F::MS_RDONLY,
            "nosuid" => set |= F::MS_NOSUID,
            "suid" => set &= !F::MS_NOSUID,
            "nodev" => set |= F::MS_NODEV,
            "dev" => set &= !F::MS_NODEV,
            "noexec" => set |= F::MS_NOEXEC,
            "exec" => set &= !F::MS_NOEXEC,
            "sync" => set |= F::MS_SYNCHRONOUS,
            "async" => set &= !F::MS_SYNCHRONOUS,
            "dirsync" => set |= F::MS_DIRSYNC,
            "remount" => set |= F::MS_REMOUNT,
            "mand" => set |= F::MS_MANDLOCK,
            "nomand" => set &= !F::MS_MANDLOCK,
            "atime" => set &= !F::MS_NOATIME,
            "noatime" => set |= F::MS_NOATIME,
            "diratime" => set &= !F::MS_NODIRATIME,
            "nodiratime" => set |= F::MS_NODIRATIME,
            "relatime" => set |= F::MS_RELATIME,
            "norelatime" => set &= !F::MS_RELATIME,
            "strictatime" => set |= F::MS_STRICTATIME,
            "nostrictatime" => set &= !F::MS_STRICTATIME,
            "bind" => set |= F::MS_BIND,
            "rbind" => {
                set |= F::MS_BIND;
                bind_rec = true;
            }
            "private" => prop |= F::MS_PRIVATE,
            "rprivate" => prop |= F::MS_PRIVATE | F::MS_REC,
            "shared" => prop |= F::MS_SHARED,
            "rshared" => prop |= F::MS_SHARED | F::MS_REC,
            "slave" => prop |= F::MS_SLAVE,
            "rslave" => prop |= F::MS_SLAVE | F::MS_REC,
            "unbindable" => prop |= F::MS_UNBINDABLE,
            "runbindable" => prop |= F::MS_UNBINDABLE | F::MS_REC,
            // Engines' extensions with no kernel meaning here.
            "tmpcopyup" | "z" | "Z" | "U" | "notmpcopyup" | "copy-symlink" => {}
            other => data.push(other.to_string()),
        }
    }
    (set, prop, data, bind_rec)
}

/// The flags a remount must keep: in a user namespace the kernel locks
/// nosuid, nodev, noexec and the atime flags of mounts it copied.
fn locked_flags(path: &Path) -> MsFlags {
    let Ok(st) = nix::sys::statvfs::statvfs(path) else {
        return MsFlags::empty();
    };
    use nix::sys::statvfs::FsFlags as V;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (v, m) in [
        (V::ST_NOSUID, MsFlags::MS_NOSUID),
        (V::ST_NODEV, MsFlags::MS_NODEV),
        (V::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (V::ST_NOATIME, MsFlags::MS_NOATIME),
        (V::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (V::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(v) {
            out |= m;
        }
    }
    out
}

fn mount_one(s: &Setup<'_>, root: &Root, m: &OciMount) -> Result<()> {
    let dest = m.destination();
    if !dest.is_absolute() {
        return Err(format!(
            "mount destination {} is not absolute",
            dest.display()
        ));
    }
    let (mut flags, prop, data, rec) = parse_options(m.options().as_deref().unwrap_or(&[]));
    let typ = m.typ().clone().unwrap_or_default();
    let what = || {
        format!(
            "mount {} on {}",
            if typ.is_empty() { "bind" } else { &typ },
            dest.display()
        )
    };
    if typ == "bind" {
        flags |= MsFlags::MS_BIND;
    }
    if s.interface.is_some() {
        flags = super::interface::adjust(&typ, flags);
    }
    if flags.contains(MsFlags::MS_BIND) {
        let src = m.source().clone().unwrap_or_default();
        let src = if src.is_absolute() {
            src
        } else {
            s.bundle.join(src)
        };
        let src_fd = rustix::fs::open(
            &src,
            OFlags::PATH | OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| format!("{}: source {}: {e}", what(), src.display()))?;
        let is_dir = nix::sys::stat::fstat(src_fd.as_raw_fd())
            .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
            .map_err(sys(what()))?;
        let target = root
            .mount_point(dest, if is_dir { Kind::Dir } else { Kind::File })
            .map_err(|e| format!("{}: {e}", what()))?;
        let mut bf = MsFlags::MS_BIND;
        if rec {
            bf |= MsFlags::MS_REC;
        }
        mount(
            Some(fd_path(src_fd.as_fd()).as_str()),
            fd_path(target.as_fd()).as_str(),
            None::<&str>,
            bf,
            None::<&str>,
        )
        .map_err(sys(what()))?;
        let extra = flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            let now = root.path_fd(dest).map_err(|e| e.to_string())?;
            let p = fd_path(now.as_fd());
            let keep = locked_flags(Path::new(&p));
            mount(
                None::<&str>,
                p.as_str(),
                None::<&str>,
                extra | keep | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
                None::<&str>,
            )
            .map_err(sys(format!("{} (remount)", what())))?;
        }
    } else {
        let (fstype, source) = match typ.as_str() {
            // A v1 "cgroup" mount would show the host's hierarchies; the
            // container's own cgroup2 tree is what it gets.
            "cgroup" | "cgroup2" => ("cgroup2", "cgroup2".to_string()),
            "" => return Err(format!("mount on {}: no type", dest.display())),
            t => (
                t,
                m.source()
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| t.to_string()),
            ),
        };
        let target = root
            .mount_point(dest, Kind::Dir)
            .map_err(|e| format!("{}: {e}", what()))?;
        let tpath = fd_path(target.as_fd());
        if fstype == "cgroup2" && !s.new_cgroup {
            let Some(own) = s.cgroup2 else {
                return Err(format!("{}: no cgroup2 hierarchy on the host", what()));
            };
            mount(
                Some(own),
                tpath.as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(sys(what()))?;
            let now = root.path_fd(dest).map_err(|e| e.to_string())?;
            let p = fd_path(now.as_fd());
            mount(
                None::<&str>,
                p.as_str(),
                None::<&str>,
                flags | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
                None::<&str>,
            )
            .map_err(sys(format!("{} (remount)", what())))?;
        } else {
            let d = data.join(",");
            mount(
                Some(source.as_str()),
                tpath.as_str(),
                Some(fstype),
                flags,
                (!d.is_empty()).then_some(d.as_str()),
            )
            .map_err(sys(what()))?;
        }
    }
    if !prop.is_empty() {
        let now = root.path_fd(dest).map_err(|e| e.to_string())?;
        mount(
            None::<&str>,
            fd_path(now.as_fd()).as_str(),
            None::<&str>,
            prop,
            None::<&str>,
        )
        .map_err(sys(format!("{} (propagation)", what())))?;
    }
    Ok(())
}

/// The nodes every container gets (runtime-spec "default devices") and the
/// config's `linux.devices`: made with mknod, or bound from the host in a
/// user namespace, where mknod is refused.
fn devices(
    s: &Setup<'_>,
    root: &Root,
    linux: &oci_spec::runtime::Linux,
    dev_mounted: bool,
) -> Result<()> {
    let mut list: Vec<(PathBuf, SFlag, u64, u64, u32, u32, u32)> = Vec::new();
    if dev_mounted {
        for &(p, major, minor) in &[
            ("/dev/null", 1, 3),
            ("/dev/zero", 1, 5),
            ("/dev/full", 1, 7),
            ("/dev/random", 1, 8),
            ("/dev/urandom", 1, 9),
            ("/dev/tty", 5, 0),
        ] {
            list.push((PathBuf::from(p), SFlag::S_IFCHR, major, minor, 0o666, 0, 0));
        }
    }
    for d in linux.devices().iter().flatten() {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(format!(
                    "device {}: type \"a\" is not a node",
                    d.path().display()
                ))
            }
        };
        let entry = (
            d.path().clone(),
            kind,
            d.major() as u64,
            d.minor() as u64,
            d.file_mode().unwrap_or(0o666),
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
        );
        list.retain(|e| e.0 != entry.0);
        list.push(entry);
    }
    for (path, kind, major, minor, mode, uid, gid) in list {
        if s.new_user {
            let host = path.clone();
            let src = rustix::fs::open(
                &host,
                OFlags::PATH | OFlags::CLOEXEC,
                rustix::fs::Mode::empty(),
            )
            .map_err(|e| format!("device {}: the host's node: {e}", path.display()))?;
            let target = root
                .mount_point(&path, Kind::File)
                .map_err(|e| e.to_string())?;
            mount(
                Some(fd_path(src.as_fd()).as_str()),
                fd_path(target.as_fd()).as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys(format!("bind device {}", path.display())))?;
            continue;
        }
        if root.path_fd(&path).is_ok() {
            // A node already there (a bind from the config): leave it be.
            if let Ok(fd) = root.open(&path, OFlags::PATH | OFlags::NOFOLLOW) {
                let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(sys("stat device"))?;
                if st.st_rdev == nix::sys::stat::makedev(major, minor)
                    && SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == kind
                {
                    continue;
                }
            }
            let (dir, name) = parent_of(root, &path)?;
            let _ = nix::unistd::unlinkat(
                Some(dir.as_raw_fd()),
                name.as_path(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
        root.mknod(
            &path,
            kind,
            mode & 0o7777,
            nix::sys::stat::makedev(major, minor),
        )
        .map_err(|e| format!("device {}: {e}", path.display()))?;
        let fd = root
            .open(&path, OFlags::PATH | OFlags::NOFOLLOW)
            .map_err(|e| e.to_string())?;
        let p = fd_path(fd.as_fd());
        std::fs::set_permissions(
            &p,
            std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
        )
        .map_err(|e| format!("chmod device {}: {e}", path.display()))?;
        nix::unistd::chown(
            p.as_str(),
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(sys(format!("chown device {}", path.display())))?;
    }
    if dev_mounted {
        for (name, target) in [
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/stdin", "/proc/self/fd/0"),
            ("/dev/stdout", "/proc/self/fd/1"),
            ("/dev/stderr", "/proc/self/fd/2"),
            ("/dev/ptmx", "pts/ptmx"),
        ] {
            match root.symlink(Path::new(name), target) {
                Ok(()) => {}
                Err(e) if e.errno == Errno::EEXIST => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    }
    Ok(())
}

fn parent_of(root: &Root, path: &Path) -> Result<(OwnedFd, PathBuf)> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path
        .file_name()
        .ok_or_else(|| format!("{}: no file name", path.display()))?;
    let dir = root
        .open(parent, OFlags::PATH | OFlags::DIRECTORY)
        .map_err(|e| e.to_string())?;
    Ok((dir, PathBuf::from(name)))
}

/// maskedPaths: a directory gets an empty read-only tmpfs, anything else the
/// host's /dev/null (runc's way); missing paths are skipped.
fn mask(root: &Root, path: &Path) -> Result<()> {
    let fd = match root.path_fd(path) {
        Ok(fd) => fd,
        Err(e) if e.errno == Errno::ENOENT => return Ok(()),
        Err(e) => return Err(format!("maskedPaths {}: {e}", path.display())),
    };
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(sys("stat"))?;
    let p = fd_path(fd.as_fd());
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
        mount(
            Some("tmpfs"),
            p.as_str(),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            Some("size=0k,nr_inodes=1"),
        )
        .map_err(sys(format!("mask {}", path.display())))
    } else {
        mount(
            Some("/dev/null"),
            p.as_str(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys(format!("mask {}", path.display())))
    }
}

/// readonlyPaths: bound onto themselves, read-only, recursively.
fn read_only(root: &Root, path: &Path) -> Result<()> {
    let fd = match root.path_fd(path) {
        Ok(fd) => fd,
        Err(e) if e.errno == Errno::ENOENT => return Ok(()),
        Err(e) => return Err(format!("readonlyPaths {}: {e}", path.display())),
    };
    let p = fd_path(fd.as_fd());
    mount(
        Some(p.as_str()),
        p.as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys(format!("readonlyPaths {}", path.display())))?;
    let now = root.path_fd(path).map_err(|e| e.to_string())?;
    crate::sys::mount_setattr(now.as_fd(), true, crate::sys::MOUNT_ATTR_RDONLY, 0)
        .map_err(sys(format!("readonlyPaths {}", path.display())))
}
