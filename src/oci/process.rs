//! Turning the calling process into config.json's `process` (or an `exec`'s):
//! limits, identity, capabilities, no_new_privs, the system call profile,
//! working directory, then exec. Shared by the container's init (init.rs)
//! and processes entering a running container (exec.rs), in runc's order:
//! privileged steps first, the user switch with capabilities kept across it,
//! then the final capability sets.

use super::seccomp;
use crate::sys::seccomp::Insn;
use caps::{CapSet, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxSeccomp, Process};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// What can be prepared before the clone or fork: parsed, checked, compiled.
pub struct Prepared {
    pub env: Vec<CString>,
    pub args: Vec<CString>,
    pub seccomp: Option<Vec<Insn>>,
    pub no_new_privs: bool,
}

pub fn prepare(p: &Process, sc: Option<&LinuxSeccomp>) -> Result<Prepared, String> {
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() {
        return Err("process.args is empty".into());
    }
    let args = args
        .iter()
        .map(|a| {
            CString::new(a.as_bytes()).map_err(|_| "process.args contains a NUL byte".to_string())
        })
        .collect::<Result<_, _>>()?;
    let env = p
        .env()
        .iter()
        .flatten()
        .map(|a| {
            CString::new(a.as_bytes()).map_err(|_| "process.env contains a NUL byte".to_string())
        })
        .collect::<Result<_, _>>()?;
    let seccomp = sc.map(seccomp::compile).transpose()?;
    Ok(Prepared {
        env,
        args,
        seccomp,
        no_new_privs: p.no_new_privileges().unwrap_or(false),
    })
}

impl Prepared {
    /// Replaces the environment (the container interface adds its variables).
    pub fn set_env(&mut self, env: &[String]) -> Result<(), String> {
        self.env = env
            .iter()
            .map(|a| {
                CString::new(a.as_bytes())
                    .map_err(|_| "process.env contains a NUL byte".to_string())
            })
            .collect::<Result<_, _>>()?;
        Ok(())
    }
}

/// The program to exec: args[0] as a path, or found in the process's PATH
/// (checked inside the container, so that a missing program fails create).
pub fn find_program(p: &Process, prep: &Prepared) -> Result<CString, String> {
    let cmd = prep.args[0].to_string_lossy().into_owned();
    let path = if cmd.contains('/') {
        PathBuf::from(&cmd)
    } else {
        let path_var = p
            .env()
            .iter()
            .flatten()
            .rev()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .to_string();
        path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(&cmd))
            .find(|c| executable(c).is_ok())
            .ok_or_else(|| format!("exec: {cmd:?}: executable file not found in $PATH"))?
    };
    executable(&path).map_err(|why| format!("exec: {}: {why}", path.display()))?;
    Ok(CString::new(path.as_os_str().as_bytes()).expect("no NUL in a path from a CString"))
}

fn executable(path: &Path) -> Result<(), &'static str> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("no such file or directory"),
        Err(_) => Err("cannot be accessed"),
        Ok(m) if m.is_dir() => Err("is a directory"),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => Err("permission denied"),
        Ok(_) => Ok(()),
    }
}

fn to_caps(set: Option<&Capabilities>) -> Result<CapsHashSet, String> {
    let mut out = CapsHashSet::new();
    for c in set.into_iter().flatten() {
        let name = serde_json::to_value(c)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let cap = caps::Capability::from_str(&name)
            .map_err(|_| format!("unknown capability {name:?}"))?;
        out.insert(cap);
    }
    Ok(out)
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

/// Limits and the OOM score: steps that may need privileges the user
/// switch drops.
pub fn apply_limits(p: &Process) -> Result<(), String> {
    for r in p.rlimits().iter().flatten() {
        let name = serde_json::to_value(r.typ())
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        let res = rlimit_resource(&name).ok_or_else(|| format!("unknown rlimit {name:?}"))?;
        nix::sys::resource::setrlimit(
            // nix takes its own enum; the numbers are the kernel's.
            nix_resource(res).ok_or_else(|| format!("rlimit {name} unsupported"))?,
            r.soft(),
            r.hard(),
        )
        .map_err(|e| format!("setrlimit {name} soft {} hard {}: {e}", r.soft(), r.hard()))?;
    }
    if let Some(adj) = p.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| format!("oom_score_adj {adj}: {e}"))?;
    }
    Ok(())
}

fn nix_resource(r: libc::__rlimit_resource_t) -> Option<nix::sys::resource::Resource> {
    use nix::sys::resource::Resource as R;
    [
        R::RLIMIT_CPU,
        R::RLIMIT_FSIZE,
        R::RLIMIT_DATA,
        R::RLIMIT_STACK,
        R::RLIMIT_CORE,
        R::RLIMIT_RSS,
        R::RLIMIT_NPROC,
        R::RLIMIT_NOFILE,
        R::RLIMIT_MEMLOCK,
        R::RLIMIT_AS,
        R::RLIMIT_LOCKS,
        R::RLIMIT_SIGPENDING,
        R::RLIMIT_MSGQUEUE,
        R::RLIMIT_NICE,
        R::RLIMIT_RTPRIO,
        R::RLIMIT_RTTIME,
    ]
    .into_iter()
    .find(|x| *x as libc::__rlimit_resource_t == r)
}

/// The user switch and the capability sets. Capabilities the runtime does not
/// have itself cannot be given (as in the core's caps.rs: a host may run us
/// without some); everything else is exactly what config.json says.
pub fn apply_identity(p: &Process) -> Result<(), String> {
    let c = p.capabilities().clone().unwrap_or_default();
    let have =
        caps::read(None, CapSet::Permitted).map_err(|e| format!("reading capabilities: {e}"))?;
    let bounding = to_caps(c.bounding().as_ref())?;
    let effective: CapsHashSet = to_caps(c.effective().as_ref())?
        .intersection(&have)
        .copied()
        .collect();
    let permitted: CapsHashSet = to_caps(c.permitted().as_ref())?
        .intersection(&have)
        .copied()
        .collect();
    let inheritable: CapsHashSet = to_caps(c.inheritable().as_ref())?
        .intersection(&have)
        .copied()
        .collect();
    let ambient: CapsHashSet = to_caps(c.ambient().as_ref())?
        .intersection(&have)
        .copied()
        .collect();
    let keep: Vec<u8> = bounding.iter().map(|c| c.index()).collect();
    for n in 0..=63u8 {
        if keep.contains(&n) {
            continue;
        }
        match crate::sys::capbset_drop(n) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => {
                return Err(format!(
                    "dropping capability {n} from the bounding set: {e}"
                ))
            }
        }
    }
    let u = p.user();
    rustix::thread::set_keep_capabilities(true).map_err(|e| format!("PR_SET_KEEPCAPS: {e}"))?;
    let gids: Vec<nix::unistd::Gid> = u
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    // setgroups(2) is refused in a user namespace whose setgroups file says
    // "deny"; with no groups asked for, not calling it is what that means.
    if !gids.is_empty()
        || std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() == "allow")
    {
        nix::unistd::setgroups(&gids).map_err(|e| format!("setgroups: {e}"))?;
    }
    let gid = nix::unistd::Gid::from_raw(u.gid());
    let uid = nix::unistd::Uid::from_raw(u.uid());
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| format!("setgid {}: {e}", u.gid()))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| format!("setuid {}: {e}", u.uid()))?;
    rustix::thread::set_keep_capabilities(false).map_err(|e| format!("PR_SET_KEEPCAPS: {e}"))?;
    if let Some(m) = u.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(m));
    }
    let cwd = p.cwd();
    nix::unistd::chdir(cwd.as_path())
        .map_err(|e| format!("chdir to cwd {:?}: {e}", cwd.display()))?;
    // Inheritable while CAP_SETPCAP is still effective, then effective
    // (shrinking it is always allowed), then permitted, which must keep
    // covering the effective set.
    caps::set(None, CapSet::Inheritable, &inheritable)
        .map_err(|e| format!("inheritable capabilities: {e}"))?;
    caps::set(None, CapSet::Effective, &effective)
        .map_err(|e| format!("effective capabilities: {e}"))?;
    caps::set(None, CapSet::Permitted, &permitted)
        .map_err(|e| format!("permitted capabilities: {e}"))?;
    caps::clear(None, CapSet::Ambient).map_err(|e| format!("ambient capabilities: {e}"))?;
    for a in ambient
        .intersection(&inheritable)
        .copied()
        .collect::<Vec<_>>()
    {
        // The kernel raises an ambient capability only if it is permitted
        // and inheritable; engines list ambient ones without inheritable
        // (runc's default config does), and runc skips them too.
        caps::raise(None, CapSet::Ambient, a)
            .map_err(|e| format!("ambient capability {a}: {e}"))?;
    }
    Ok(())
}

/// The last steps: no_new_privs and a profile to install after it, the fds
/// the process may keep, exec. Returns only on failure.
pub fn exec(prog: &CString, prep: &Prepared, keep_fds: u32, seccomp_now: bool) -> String {
    if prep.no_new_privs {
        if let Err(e) = rustix::thread::set_no_new_privs(true) {
            return format!("PR_SET_NO_NEW_PRIVS: {e}");
        }
    }
    // Before the profile, which may well refuse close_range.
    if let Err(e) = crate::sys::fd::cloexec_from(3 + keep_fds) {
        if !seccomp_now && prep.seccomp.is_some() {
            // The profile came earlier (install_early) and took care of it.
        } else {
            return format!("close_range: {e}");
        }
    }
    if seccomp_now {
        if let Some(f) = &prep.seccomp {
            if let Err(e) = crate::sys::seccomp::install(f, false) {
                return format!("installing the seccomp profile: {e}");
            }
        }
    }
    crate::sys::process::default_all_signals();
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
    let e = nix::unistd::execve(prog, &prep.args, &prep.env).unwrap_err();
    format!("exec {}: {}", prog.to_string_lossy(), e.desc())
}

/// Without no_new_privs a profile must be installed while CAP_SYS_ADMIN is
/// still there, before the user switch; the fds beyond what the process
/// keeps are marked close-on-exec first, since profiles often refuse
/// close_range.
pub fn install_early(prep: &Prepared, keep_fds: u32) -> Result<(), String> {
    if let (false, Some(f)) = (prep.no_new_privs, &prep.seccomp) {
        crate::sys::fd::cloexec_from(3 + keep_fds).map_err(|e| format!("close_range: {e}"))?;
        crate::sys::seccomp::install(f, false)
            .map_err(|e| format!("installing the seccomp profile: {e}"))?;
    }
    Ok(())
}
