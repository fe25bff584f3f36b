//! A container's state between the runtime's invocations: `<root>/<id>/`
//! holds `state.json` (what `state` prints plus what later commands need),
//! the copy of config.json taken at create (later edits of the bundle must
//! not change the container), and `start.sock`, the socket the parked init
//! listens on until `start` (its presence is what "created" means).
//!
//! Status is derived, never stored: the init is identified by pid and start
//! time (a pid reused by another process is not the container), a dead or
//! zombie init means "stopped".

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub const STATE_FILE: &str = "state.json";
pub const CONFIG_COPY: &str = "config.json";
pub const START_SOCKET: &str = "start.sock";

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Saved {
    pub id: String,
    pub pid: i32,
    /// The init's start time (clock ticks after boot, /proc/PID/stat).
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339, UTC.
    pub created: String,
    pub annotations: HashMap<String, String>,
    /// The container's cgroup in each hierarchy it was placed in.
    pub cgroups: Vec<PathBuf>,
    /// The cgroups this runtime made (and removes at delete).
    pub cgroups_made: Vec<PathBuf>,
    /// The guest gets the container interface (docs/oci.md): `kill TERM`
    /// becomes SIGRTMIN+3.
    pub boot: bool,
}

/// What `state` prints: the runtime-spec's state plus go-runc's fields.
#[derive(Debug, Serialize)]
pub struct Public<'a> {
    #[serde(rename = "ociVersion")]
    pub oci_version: &'static str,
    pub id: &'a str,
    pub pid: i32,
    pub status: &'static str,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    pub owner: &'static str,
    pub annotations: &'a HashMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

pub const OCI_VERSION: &str = "1.0.2";

/// A container id: one path component of letters, digits and `_+-.` (runc's
/// rule), so that it can name a directory under --root.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+-.".contains(&b))
}

pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

/// A short name for `<dir>/<name>` (through an fd of the directory, which
/// the caller keeps open while it is used): a socket address holds 107
/// bytes, less than a long --root and a 64-character id need.
pub fn short_path(dir: &Path, name: &str) -> std::io::Result<(std::os::fd::OwnedFd, PathBuf)> {
    let fd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let p = PathBuf::from(crate::sys::fd_path(std::os::fd::AsFd::as_fd(&fd))).join(name);
    Ok((fd, p))
}

impl Saved {
    pub fn load(root: &Path, id: &str) -> Result<Saved, String> {
        if !valid_id(id) {
            return Err(format!("invalid container id {id:?}"));
        }
        let p = dir(root, id).join(STATE_FILE);
        let text = fs::read_to_string(&p).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => format!("container {id} does not exist"),
            _ => format!("reading {}: {e}", p.display()),
        })?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
    }

    /// Written to a temporary name and renamed: readers never see half.
    pub fn save(&self, root: &Path) -> io::Result<()> {
        let d = dir(root, &self.id);
        let tmp = d.join(".state.json.tmp");
        fs::write(&tmp, serde_json::to_vec(self).map_err(io::Error::other)?)?;
        fs::rename(&tmp, d.join(STATE_FILE))
    }

    pub fn dir(&self, root: &Path) -> PathBuf {
        dir(root, &self.id)
    }

    /// Whether the init is still the process that was created.
    pub fn alive(&self) -> bool {
        self.pid > 0 && crate::state::start_time(self.pid) == Some(self.pid_start)
    }

    pub fn status(&self, root: &Path) -> Status {
        if !self.alive() {
            Status::Stopped
        } else if self.dir(root).join(START_SOCKET).exists() {
            Status::Created
        } else {
            Status::Running
        }
    }

    pub fn public(&self, status: Status) -> Public<'_> {
        Public {
            oci_version: OCI_VERSION,
            id: &self.id,
            // The spec's "pid" is for created and running containers; go-runc
            // and runc print 0 for stopped ones.
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            status: status.as_str(),
            bundle: &self.bundle,
            rootfs: &self.rootfs,
            created: &self.created,
            owner: "",
            annotations: &self.annotations,
        }
    }
}

/// The ids of containers under `root` (directories with a state file).
pub fn ids(root: &Path) -> Vec<String> {
    let Ok(rd) = fs::read_dir(root) else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| valid_id(n) && root.join(n).join(STATE_FILE).is_file())
        .collect();
    out.sort();
    out
}

/// Now as RFC 3339 with nanoseconds, UTC, without a date crate.
pub fn rfc3339_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_safe_component() {
        for ok in ["oci-1", "a.b_c+d", "0123456789abcdef"] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "a\0b", "é"] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_700_000_000, 0), "2023-11-14T22:13:20.000000000Z");
    }
}
