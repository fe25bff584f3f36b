//! `create`: the runtime's side of setting up a container, in the spec's
//! order: read the bundle, make the state directory, the cgroups with their
//! limits, clone the init into its namespaces, place it, write its id maps,
//! walk the sync points (init.rs) running prestart and createRuntime hooks
//! at theirs, hand the console to the caller, save the state. Every step
//! that changes the host pushes its undo (supervisor/teardown.rs); on any
//! failure they run, and nothing is left behind. On success they are kept:
//! the container now outlives this process.
//!
//! This is the reduced supervisor role: the runtime does what nixrun's
//! supervisor does up to the init's exec (locks aside: the state directory's
//! exclusive creation serves as the lock on the id), then leaves.

use super::cgroups::Placement;
use super::cli;
use super::init::{self, FromInit, ToInit};
use super::state::{self, Saved};
use super::Global;
use crate::supervisor::teardown::Teardown;
use nix::sched::CloneFlags;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// A created container: its state, and the init (our child until we exit).
pub struct Created {
    pub saved: Saved,
    pub pid: Pid,
}

pub fn load_spec(bundle: &Path) -> Result<Spec, String> {
    let p = bundle.join("config.json");
    let text = fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
}

fn ns_flag(t: LinuxNamespaceType) -> CloneFlags {
    CloneFlags::from_bits_truncate(t as i32)
}

pub fn create(g: &Global, c: &cli::Create) -> Result<Created, String> {
    if !state::valid_id(&c.id) {
        return Err(format!(
            "invalid container id {:?}: letters, digits and _+-. only",
            c.id
        ));
    }
    let bundle =
        fs::canonicalize(&c.bundle).map_err(|e| format!("bundle {}: {e}", c.bundle.display()))?;
    let spec = load_spec(&bundle)?;
    let process = spec
        .process()
        .as_ref()
        .ok_or("config.json has no process")?;
    let root = spec.root().as_ref().ok_or("config.json has no root")?;
    let rootfs = bundle.join(root.path());
    let rootfs =
        fs::canonicalize(&rootfs).map_err(|e| format!("root {}: {e}", rootfs.display()))?;
    if !rootfs.is_dir() {
        return Err(format!("root {}: not a directory", rootfs.display()));
    }
    if rootfs == Path::new("/") {
        return Err("root is the host's /: refusing".into());
    }
    let linux = spec.linux().clone().unwrap_or_default();
    let terminal = process.terminal().unwrap_or(false);
    if terminal && c.console_socket.is_none() {
        return Err("process.terminal is set but no --console-socket was given".into());
    }
    let interface = if super::interface::wanted(&spec) {
        Some(super::interface::Interface::prepare(&spec, &rootfs)?)
    } else {
        None
    };
    let boot = interface.is_some();

    let mut clone_flags = CloneFlags::empty();
    let mut join = Vec::new();
    let mut pid_path = None;
    let (mut new_user, mut new_cgroup, mut new_uts, mut has_mnt) = (false, false, false, false);
    for ns in linux.namespaces().iter().flatten() {
        let f = ns_flag(ns.typ());
        if ns.typ() == LinuxNamespaceType::Time {
            return Err("time namespaces are not supported".into());
        }
        has_mnt |= ns.typ() == LinuxNamespaceType::Mount;
        match ns.path() {
            Some(p) if ns.typ() == LinuxNamespaceType::Pid => pid_path = Some(p.clone()),
            Some(p) => {
                new_uts |= ns.typ() == LinuxNamespaceType::Uts;
                join.push((f, p.clone()));
            }
            None => match ns.typ() {
                LinuxNamespaceType::Cgroup => new_cgroup = true,
                t => {
                    new_user |= t == LinuxNamespaceType::User;
                    new_uts |= t == LinuxNamespaceType::Uts;
                    clone_flags |= f;
                }
            },
        }
    }
    if !has_mnt {
        return Err("config.json asks for no mount namespace: nixrun-oci needs one".into());
    }
    if boot {
        // The container interface's delegated cgroup tree.
        new_cgroup = true;
    }
    if spec.hostname().is_some() && !new_uts {
        return Err("hostname is set but the container has no UTS namespace of its own".into());
    }
    // Not enforced here, so refused rather than ignored.
    if process
        .apparmor_profile()
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        return Err(
            "process.apparmorProfile is set: nixrun-oci does not apply AppArmor profiles".into(),
        );
    }
    if process
        .selinux_label()
        .as_deref()
        .is_some_and(|l| !l.is_empty())
        || linux
            .mount_label()
            .as_deref()
            .is_some_and(|l| !l.is_empty())
    {
        return Err("an SELinux label is set: nixrun-oci does not apply SELinux labels".into());
    }
    let mut prepared = super::process::prepare(process, linux.seccomp().as_ref())?;
    if let Some(i) = &interface {
        prepared.set_env(&i.env(process.env().as_deref().unwrap_or(&[])))?;
    }

    let mut undo = Teardown::new();
    fs::create_dir_all(&g.root).map_err(|e| format!("state root {}: {e}", g.root.display()))?;
    let dir = state::dir(&g.root, &c.id);
    match fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(format!("container with id {} already exists", c.id))
        }
        Err(e) => return Err(format!("state directory {}: {e}", dir.display())),
    }
    let d2 = dir.clone();
    undo.push("removing the state directory", move || {
        fs::remove_dir_all(&d2).map_err(|e| e.to_string())
    });
    fs::copy(bundle.join("config.json"), dir.join(state::CONFIG_COPY))
        .map_err(|e| format!("saving config.json: {e}"))?;
    let (_dirfd, sock_path) = state::short_path(&dir, state::START_SOCKET)
        .map_err(|e| format!("state directory {}: {e}", dir.display()))?;
    let listener = UnixListener::bind(&sock_path).map_err(|e| format!("start socket: {e}"))?;

    let mut placement = Placement::plan(linux.cgroups_path().as_deref(), &c.id, g.systemd_cgroup)?;
    let created = placement.create();
    let (paths, made) = (placement.paths(), placement.made.clone());
    undo.push("removing the container's cgroups", move || {
        let e = super::cgroups::remove(&paths, &made);
        if e.is_empty() {
            Ok(())
        } else {
            Err(e.join("; "))
        }
    });
    created?;
    if let Some(r) = linux.resources() {
        placement.apply(r, linux.devices().as_deref().unwrap_or(&[]))?;
    }
    let cgroup2 = placement
        .dirs
        .iter()
        .find(|(h, _)| h.is_v2())
        .map(|(_, d)| d.clone());

    let (rt, child_end) =
        crate::protocol::pair_of::<ToInit, FromInit>().map_err(|e| e.to_string())?;
    if let Some(p) = &pid_path {
        // setns(CLONE_NEWPID) changes the namespace of our next child only.
        let f = fs::File::open(p).map_err(|e| format!("pid namespace {}: {e}", p.display()))?;
        nix::sched::setns(f, CloneFlags::CLONE_NEWPID)
            .map_err(|e| format!("joining pid namespace {}: {e}", p.display()))?;
    }
    let setup = init::Setup {
        id: &c.id,
        spec: &spec,
        bundle: &bundle,
        rootfs: &rootfs,
        prepared: &prepared,
        join,
        new_user,
        lock_mounts: !new_user && clone_flags.contains(CloneFlags::CLONE_NEWNS),
        new_cgroup,
        new_uts,
        no_pivot: c.no_pivot,
        new_keyring: !c.no_new_keyring,
        preserve_fds: c.preserve_fds,
        start: listener.as_fd(),
        cgroup2: cgroup2.as_deref(),
        interface: interface.as_ref(),
    };
    let rt_raw = rt.as_fd().as_raw_fd();
    let mut stack = vec![0u8; 1 << 20];
    let child = Box::new(|| {
        let _ = nix::unistd::close(rt_raw);
        init::run(&setup, &child_end)
    });
    let pid = crate::sys::process::clone_child(child, &mut stack, clone_flags)
        .map_err(|e| format!("clone the container's init: {e}"))?;
    drop(child_end);
    drop(stack);
    undo.push("stopping the container's init", move || {
        let _ = crate::sys::process::kill(pid, libc::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
        Ok(())
    });

    placement.attach(pid.as_raw())?;
    if new_user {
        write_maps(pid, &linux)?;
    }
    rt.send(&ToInit::Go).map_err(|e| e.to_string())?;
    let annotations = spec.annotations().clone().unwrap_or_default();
    let master = loop {
        match rt.recv() {
            Ok(Some(FromInit::Hooks)) => {
                if let Some(h) = spec.hooks() {
                    let st = super::hooks::state_json(
                        &c.id,
                        "created",
                        pid.as_raw(),
                        &bundle,
                        &annotations,
                    );
                    super::hooks::run_all("prestart", h.prestart().as_ref(), &st)?;
                    super::hooks::run_all("createRuntime", h.create_runtime().as_ref(), &st)?;
                }
                rt.send(&ToInit::HooksDone).map_err(|e| e.to_string())?;
            }
            Ok(Some(FromInit::Ready(m))) => break m,
            Ok(Some(FromInit::Failed(line))) => return Err(line),
            Ok(None) => return Err("the container's init died during set-up".into()),
            Err(e) => return Err(e.to_string()),
        }
    };
    if let (Some(m), Some(sock)) = (master, &c.console_socket) {
        send_console(sock, m)?;
    }
    drop(listener);

    let saved = Saved {
        id: c.id.clone(),
        pid: pid.as_raw(),
        pid_start: crate::state::start_time(pid.as_raw())
            .ok_or("the container's init died after set-up")?,
        bundle: bundle.clone(),
        rootfs,
        created: state::rfc3339_now(),
        annotations,
        cgroups: placement.paths(),
        cgroups_made: placement.made.clone(),
        boot,
    };
    saved
        .save(&g.root)
        .map_err(|e| format!("saving the state: {e}"))?;
    if let Some(p) = &c.pid_file {
        write_pid_file(p, pid.as_raw())?;
    }
    undo.keep();
    g.debug(&format!(
        "{}: init {pid} parked, cgroups {:?}",
        c.id, saved.cgroups
    ));
    Ok(Created { saved, pid })
}

/// uid_map and gid_map of the init's new user namespace.
fn write_maps(pid: Pid, linux: &oci_spec::runtime::Linux) -> Result<(), String> {
    for (file, maps) in [
        ("uid_map", linux.uid_mappings()),
        ("gid_map", linux.gid_mappings()),
    ] {
        let Some(maps) = maps else {
            return Err(format!(
                "a user namespace needs linux.{}",
                if file == "uid_map" {
                    "uidMappings"
                } else {
                    "gidMappings"
                }
            ));
        };
        let text: String = maps
            .iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect();
        let p = format!("/proc/{pid}/{file}");
        fs::write(&p, text.as_bytes()).map_err(|e| format!("writing {p}: {e}"))?;
    }
    Ok(())
}

/// The pid file, written whole (a temporary file renamed), as engines read
/// it as soon as create returns.
pub fn write_pid_file(p: &Path, pid: i32) -> Result<(), String> {
    let tmp = PathBuf::from(format!("{}.nixrun-tmp", p.display()));
    fs::write(&tmp, pid.to_string()).map_err(|e| format!("pid file {}: {e}", p.display()))?;
    fs::rename(&tmp, p).map_err(|e| format!("pid file {}: {e}", p.display()))
}

/// The console socket protocol engines implement (containerd's and conmon's
/// recvfd): one message, the pty's name as data, the master by SCM_RIGHTS.
pub fn send_console(sock: &Path, master: OwnedFd) -> Result<(), String> {
    let s =
        UnixStream::connect(sock).map_err(|e| format!("console socket {}: {e}", sock.display()))?;
    let fds = [master.as_raw_fd()];
    let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
    let name = b"/dev/ptmx";
    nix::sys::socket::sendmsg::<()>(
        s.as_raw_fd(),
        &[std::io::IoSlice::new(name)],
        &cmsg,
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map_err(|e| format!("sending the console to {}: {e}", sock.display()))?;
    let _ = (&s).flush();
    Ok(())
}
