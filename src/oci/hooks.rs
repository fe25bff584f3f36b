//! Lifecycle hooks (config.json `hooks`): each is a program run with its
//! args and env, the container's state as JSON on its stdin, and an optional
//! timeout in seconds. Where each runs (the runtime's namespaces or the
//! container's) is the caller's choice: create.rs, init.rs and ops.rs call
//! `run` at the spec's points.

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use oci_spec::runtime::Hook;
use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

/// The state a hook reads on stdin.
pub fn state_json(
    id: &str,
    status: &str,
    pid: i32,
    bundle: &std::path::Path,
    annotations: &std::collections::HashMap<String, String>,
) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "ociVersion": super::state::OCI_VERSION,
        "id": id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
        "annotations": annotations,
    }))
    .unwrap_or_default()
}

fn cstr(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("hook argument {s:?} contains a NUL byte"))
}

/// Runs one hook to its end; an error says which hook and why.
pub fn run(kind: &str, hook: &Hook, state: &[u8]) -> Result<(), String> {
    let path = hook.path();
    let what = || format!("{kind} hook {}", path.display());
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{}: NUL in path", what()))?;
    let args: Vec<CString> = match hook.args() {
        Some(a) if !a.is_empty() => a.iter().map(|s| cstr(s)).collect::<Result<_, _>>()?,
        _ => vec![cpath.clone()],
    };
    let env: Vec<CString> = hook
        .env()
        .iter()
        .flatten()
        .map(|s| cstr(s))
        .collect::<Result<_, _>>()?;
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("{}: pipe: {e}", what()))?;
    let rfd = r.as_raw_fd();
    let child = crate::sys::process::fork_run(|| {
        if nix::unistd::dup2(rfd, 0).is_err() {
            return 127;
        }
        crate::sys::process::default_all_signals();
        let _ = nix::sys::signal::sigprocmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&nix::sys::signal::SigSet::empty()),
            None,
        );
        let _ = nix::unistd::execve(&cpath, &args, &env);
        127
    })
    .map_err(|e| format!("{}: fork: {e}", what()))?;
    drop(r);
    // A hook that does not read its stdin must not block us: the state fits
    // in a pipe's buffer, and EPIPE is ignored.
    let _ = nix::unistd::write(&w, state);
    drop(w);
    let deadline = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut delay = Duration::from_micros(200);
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(WaitStatus::Exited(_, 0)) => return Ok(()),
            Ok(WaitStatus::Exited(_, 127)) => {
                return Err(format!("{}: could not be executed", what()))
            }
            Ok(WaitStatus::Exited(_, c)) => return Err(format!("{}: exit status {c}", what())),
            Ok(WaitStatus::Signaled(_, s, _)) => return Err(format!("{}: killed by {s}", what())),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("{}: wait: {e}", what())),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(child, None);
            return Err(format!(
                "{}: timed out after {}s",
                what(),
                hook.timeout().unwrap_or(0)
            ));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}

/// Runs a list of hooks in order, stopping at the first failure.
pub fn run_all(kind: &str, hooks: Option<&Vec<Hook>>, state: &[u8]) -> Result<(), String> {
    for h in hooks.into_iter().flatten() {
        run(kind, h, state)?;
    }
    Ok(())
}
