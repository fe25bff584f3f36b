//! Attacks on a guest's user namespace (nixrun -U, nspawn -U): its id maps,
//! its groups, and the host's root-owned files it can reach. They only make
//! sense where the guest has a namespace of its own; in the host's (uid_map
//! `0 0 4294967295`, the guest's root is the host's, and the other attacks are
//! the wall) they say so in their line.
//!
//! Harmless when they succeed: a map written into a namespace only this
//! attack's child lives in dies with it; a map written into our own namespace
//! would be the escape itself, detected and reported, never used; files are
//! opened for writing but not written, and unnamed O_TMPFILE files vanish on
//! close.

use super::{sys, Findings, Outcome};
use nix::errno::Errno;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where the test harness binds a host directory owned by the host's root
/// (mode 0755, with a 0644 file in it), when it has one for us.
pub const HOST_FILES_ENV: &str = "NIXRUN_PROBE_HOST_FILES";

/// One line of an id map: (inside, outside, count).
type Extent = (u64, u64, u64);
/// Our namespace's uid and gid maps.
type Maps = (Vec<Extent>, Vec<Extent>);

fn read_map(path: &str) -> Result<Vec<Extent>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let v: Vec<u64> = l
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            (v.len() == 3).then(|| (v[0], v[1], v[2]))
        })
        .collect())
}

/// The host's own user namespace maps every id onto itself.
fn is_initial(map: &[Extent]) -> bool {
    map == [(0, 0, 4_294_967_295)]
}

/// The first id past everything our namespace maps: a host id that is not ours.
fn past_range(map: &[Extent]) -> u64 {
    map.iter().map(|(i, _, c)| i + c).max().unwrap_or(0)
}

const NO_USERNS: &str = "not in a user namespace of its own (uid_map 0 0 4294967295): the guest's \
                         ids are the host's; nothing to map";

fn own_maps() -> Result<Option<Maps>, Outcome> {
    let uid = read_map("/proc/self/uid_map").map_err(Outcome::Error)?;
    let gid = read_map("/proc/self/gid_map").map_err(Outcome::Error)?;
    if is_initial(&uid) {
        return Ok(None);
    }
    Ok(Some((uid, gid)))
}

/// Writes `line` into an id map file: the errno says whether the kernel took it.
fn write_map(path: &str, line: &str) -> Result<(), Errno> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| sys::io_errno(&e))?;
    f.write_all(line.as_bytes()).map_err(|e| sys::io_errno(&e))
}

/// Maps once written cannot be written again: not ours, not PID 1's.
pub fn map_write() -> Outcome {
    let mut f = Findings::default();
    for path in [
        "/proc/self/uid_map",
        "/proc/self/gid_map",
        "/proc/1/uid_map",
        "/proc/1/gid_map",
    ] {
        let before = fs::read_to_string(path).unwrap_or_default();
        match write_map(path, "0 0 1\n") {
            Ok(()) => f.escaped(format!(
                "{path}: rewritten (was {:?}, now {:?})",
                before.trim(),
                fs::read_to_string(path).unwrap_or_default().trim()
            )),
            Err(e @ (Errno::EPERM | Errno::EACCES | Errno::EROFS)) => {
                f.blocked(format!("{path}: {e:?}"))
            }
            Err(e) => f.error(format!("{path}: {e:?}")),
        }
    }
    f.outcome()
}

/// A child in a user namespace of its own, waiting to be given maps; killed
/// when dropped.
struct Nested {
    pid: libc::pid_t,
}

impl Nested {
    fn spawn() -> Result<Nested, Outcome> {
        let mut fds = [0; 2];
        // SAFETY: a valid two-int array.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(Outcome::Error(format!("pipe2: {:?}", Errno::last())));
        }
        // SAFETY: the probe is single-threaded; the child only makes system calls.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(Outcome::Error(format!("fork: {:?}", Errno::last())));
        }
        if pid == 0 {
            // SAFETY: async-signal-safe calls only, then _exit.
            unsafe {
                libc::close(fds[0]);
                let r: u8 = if libc::unshare(libc::CLONE_NEWUSER) == 0 {
                    0
                } else {
                    Errno::last() as i32 as u8
                };
                libc::write(fds[1], (&r as *const u8).cast(), 1);
                libc::pause();
                libc::_exit(0);
            }
        }
        // SAFETY: closing our copy of the write end.
        unsafe { libc::close(fds[1]) };
        let mut r = [0u8; 1];
        // SAFETY: reading one byte into a one-byte buffer.
        let n = unsafe { libc::read(fds[0], r.as_mut_ptr().cast(), 1) };
        // SAFETY: our read end.
        unsafe { libc::close(fds[0]) };
        let nested = Nested { pid };
        match (n, r[0]) {
            (1, 0) => Ok(nested),
            (1, e) => Err(Outcome::Blocked(format!(
                "unshare(CLONE_NEWUSER): {:?}",
                Errno::from_raw(e as i32)
            ))),
            _ => Err(Outcome::Error("the nested child said nothing".into())),
        }
    }
}

impl Drop for Nested {
    fn drop(&mut self) {
        // SAFETY: our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

/// The host's root has no name in the guest's namespace: not ours (our maps do
/// not reach host uid 0), and no nested namespace can be given an id our own
/// maps do not hold.
pub fn map_host_root() -> Outcome {
    let (uid, gid) = match own_maps() {
        Err(o) => return o,
        Ok(None) => return Outcome::Blocked(NO_USERNS.into()),
        Ok(Some(m)) => m,
    };
    let mut f = Findings::default();
    for (name, map) in [("uid", &uid), ("gid", &gid)] {
        match map.iter().find(|(_, out, c)| *out == 0 && *c > 0) {
            Some((inside, _, _)) => f.escaped(format!(
                "our {name} {inside} is the host's {name} 0 ({name}_map {map:?})"
            )),
            None => f.blocked(format!("host {name} 0 not in our {name}_map {map:?}")),
        }
    }
    for (file, map) in [("uid_map", &uid), ("gid_map", &gid)] {
        for lower in [past_range(map), 4_294_967_294] {
            let nested = match Nested::spawn() {
                Ok(n) => n,
                Err(o) => return o,
            };
            let path = format!("/proc/{}/{file}", nested.pid);
            match write_map(&path, &format!("0 {lower} 1\n")) {
                Ok(()) => f.escaped(format!(
                    "a nested {file} got our unmapped id {lower} (the host's, not ours)"
                )),
                Err(e @ (Errno::EPERM | Errno::EINVAL)) => {
                    f.blocked(format!("nested {file} `0 {lower} 1`: {e:?}"))
                }
                Err(e) => f.error(format!("nested {file} `0 {lower} 1`: {e:?}")),
            }
        }
    }
    f.outcome()
}

/// Groups: no gid outside our range can be joined, and an unprivileged user
/// in a nested namespace gets no gid map (so cannot drop groups with
/// setgroups(2)) before it denies setgroups itself (CVE-2014-8989).
pub fn setgroups() -> Outcome {
    let mut f = Findings::default();
    match own_maps() {
        Err(o) => return o,
        Ok(None) => f.blocked(format!("joining a gid past our range: {NO_USERNS}")),
        Ok(Some((_, gid))) => {
            let outside = past_range(&gid) as libc::gid_t;
            // In a child: success would change its groups, not ours.
            match in_child(move || {
                // SAFETY: one gid from a live array.
                let r = unsafe { libc::setgroups(1, &outside) };
                if r == 0 {
                    0
                } else {
                    Errno::last() as i32
                }
            }) {
                Ok(0) => f.escaped(format!(
                    "setgroups([{outside}]): joined a gid past our range"
                )),
                Ok(e) => f.blocked(format!("setgroups([{outside}]): {:?}", Errno::from_raw(e))),
                Err(e) => f.error(e),
            }
        }
    }
    // An unprivileged user (uid and gid 1000 here) in a namespace of its own.
    match in_child(|| {
        let (u, g) = (1000, 1000);
        // SAFETY: plain system calls in a child that exits right after.
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(g, g, g) != 0
                || libc::setresuid(u, u, u) != 0
            {
                return 100;
            }
            // Changing the euid made us non-dumpable, which gives our /proc
            // files to root: uid 1000 could not write its own maps.
            libc::prctl(libc::PR_SET_DUMPABLE, 1);
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return 101;
            }
        }
        if write_map("/proc/self/uid_map", &format!("0 {u} 1\n")).is_err() {
            return 102;
        }
        match write_map("/proc/self/gid_map", &format!("0 {g} 1\n")) {
            Ok(()) => 0,
            Err(e) => e as i32,
        }
    }) {
        Ok(0) => f.escaped("unprivileged: gid_map written with setgroups still allowed"),
        Ok(100) => f.error("could not become uid 1000"),
        Ok(101) => f.blocked("unprivileged unshare(CLONE_NEWUSER) refused"),
        Ok(102) => f.error("unprivileged: own uid_map not writable"),
        Ok(e) => f.blocked(format!(
            "unprivileged gid_map without setgroups deny: {:?}",
            Errno::from_raw(e)
        )),
        Err(e) => f.error(e),
    }
    f.outcome()
}

/// Runs `body` in a forked child; its return value is the exit status.
fn in_child(body: impl FnOnce() -> i32) -> Result<i32, String> {
    // SAFETY: single-threaded probe; the child runs `body` and _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {:?}", Errno::last()));
    }
    if pid == 0 {
        let code = body();
        // SAFETY: leave the child without the parent's exit handlers.
        unsafe { libc::_exit(code & 0xff) };
    }
    let mut status = 0;
    // SAFETY: our own child, a valid out pointer.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && Errno::last() == Errno::EINTR {}
    if libc::WIFEXITED(status) {
        Ok(libc::WEXITSTATUS(status))
    } else {
        Err(format!("child died: status {status:#x}"))
    }
}

/// Files of the host's root outside the (ID-mapped) root: the bound host
/// directory the harness names, and in a namespace of our own every mount
/// point that shows the overflow owner (an owner our maps do not hold). None
/// may be written: our root's capabilities do not cover unmapped owners.
pub fn host_root_files() -> Outcome {
    let userns = match own_maps() {
        Err(o) => return o,
        Ok(m) => m.is_some(),
    };
    let mut targets: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os(HOST_FILES_ENV) {
        let dir = PathBuf::from(dir);
        if let Ok(rd) = fs::read_dir(&dir) {
            targets.extend(rd.filter_map(Result::ok).map(|e| e.path()));
        }
        targets.push(dir);
    }
    if userns {
        let overflow: u32 = fs::read_to_string("/proc/sys/kernel/overflowuid")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(65534);
        if let Ok(mounts) = sys::mountinfo() {
            for m in mounts {
                let p = PathBuf::from(&m.mount_point);
                let foreign = fs::symlink_metadata(&p)
                    .is_ok_and(|md| md.uid() == overflow && md.mode() & 0o002 == 0);
                if foreign && !targets.contains(&p) {
                    targets.push(p);
                }
            }
        }
    } else if targets.is_empty() {
        return Outcome::Blocked(format!("{NO_USERNS}; no host directory bound for us"));
    }
    let mut f = Findings::default();
    for t in &targets {
        try_write(t, &mut f);
    }
    if targets.is_empty() {
        f.blocked("no mount point with an owner outside our maps");
    }
    f.outcome()
}

fn try_write(p: &Path, f: &mut Findings) {
    let Ok(md) = fs::symlink_metadata(p) else {
        return;
    };
    let who = format!(
        "{} ({}:{} {:o})",
        p.display(),
        md.uid(),
        md.gid(),
        md.mode() & 0o7777
    );
    if md.is_dir() {
        // An unnamed file that disappears on close: needs write access to the
        // directory, checked before the file system is asked whether it can.
        match fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_TMPFILE)
            .mode(0o600)
            .open(p)
        {
            Ok(_) => f.escaped(format!("created a file in {who}")),
            Err(e) => match sys::io_errno(&e) {
                e @ (Errno::EACCES | Errno::EPERM | Errno::EROFS) => {
                    f.blocked(format!("{who}: {e:?}"))
                }
                e @ (Errno::EOPNOTSUPP | Errno::EISDIR) => f.escaped(format!(
                    "{who}: past the permission check ({e:?} from the file system)"
                )),
                e => f.error(format!("{who}: {e:?}")),
            },
        }
    } else if md.is_file() {
        match fs::OpenOptions::new().write(true).open(p) {
            Ok(_) => f.escaped(format!("opened {who} for writing")),
            Err(e) => match sys::io_errno(&e) {
                e @ (Errno::EACCES | Errno::EPERM | Errno::EROFS | Errno::ETXTBSY) => {
                    f.blocked(format!("{who}: {e:?}"))
                }
                e => f.error(format!("{who}: {e:?}")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initial_namespace_is_recognised() {
        assert!(is_initial(&[(0, 0, 4_294_967_295)]));
        assert!(!is_initial(&[(0, 524_288, 65_536)]));
        assert!(!is_initial(&[(0, 0, 65_536)]));
        assert_eq!(past_range(&[(0, 524_288, 65_536)]), 65_536);
    }
}
