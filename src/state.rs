//! The runtime state of running machines, for `nixrunctl` (and anyone else):
//! one file per machine, `/run/nixrun/machines/NAME`, written by its supervisor
//! once the guest's init runs (again after a reboot), removed when the run ends.
//!
//! The format is `KEY=VALUE` lines (machined's own state files look the same),
//! values escaped so that a newline in a path cannot forge a key. A file is
//! written to a temporary name and renamed, so readers never see half of one.
//! A supervisor that was SIGKILLed cannot remove its file; readers notice that
//! its process is gone (or another process got its pid: the start time differs)
//! and drop the entry.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub const STATE_DIR: &str = "/run/nixrun/machines";

/// What a running machine's supervisor publishes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MachineState {
    pub name: String,
    /// The guest's PID 1, as a host pid.
    pub leader: i32,
    /// Its start time (clock ticks after boot, /proc/PID/stat field 22): a pid
    /// reused by another process has another one.
    pub leader_start: u64,
    pub supervisor: i32,
    pub supervisor_start: u64,
    pub uuid: String,
    pub root: PathBuf,
    /// The systemd unit the container runs in (--keep-unit), if any.
    pub unit: Option<String>,
    /// When the guest's init started (microseconds since the epoch).
    pub started_usec: u64,
    /// The guest's capability bounding set, as names (CAP_…).
    pub capabilities: Vec<String>,
    /// The user's --system-call-filter changes, as call numbers; with the
    /// default table they give the guest's filter (policy/seccomp.rs).
    pub syscalls_allow: Vec<i64>,
    pub syscalls_deny: Vec<i64>,
    pub private_network: bool,
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn join<T: ToString>(v: &[T]) -> String {
    v.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn split<T: std::str::FromStr>(v: &str) -> Option<Vec<T>> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect()
}

impl MachineState {
    pub fn to_text(&self) -> String {
        let mut lines = vec![
            ("NAME", escape(&self.name)),
            ("LEADER", self.leader.to_string()),
            ("LEADER_START", self.leader_start.to_string()),
            ("SUPERVISOR", self.supervisor.to_string()),
            ("SUPERVISOR_START", self.supervisor_start.to_string()),
            ("UUID", escape(&self.uuid)),
            ("ROOT", escape(&self.root.to_string_lossy())),
            ("STARTED_USEC", self.started_usec.to_string()),
            ("CAPABILITIES", join(&self.capabilities)),
            ("SYSCALLS_ALLOW", join(&self.syscalls_allow)),
            ("SYSCALLS_DENY", join(&self.syscalls_deny)),
            (
                "PRIVATE_NETWORK",
                u8::from(self.private_network).to_string(),
            ),
        ];
        if let Some(u) = &self.unit {
            lines.push(("UNIT", escape(u)));
        }
        lines
            .into_iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect()
    }

    pub fn from_text(text: &str) -> Option<MachineState> {
        let kv: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
        fn num<T: std::str::FromStr>(kv: &BTreeMap<&str, &str>, k: &str) -> Option<T> {
            kv.get(k)?.parse().ok()
        }
        Some(MachineState {
            name: unescape(kv.get("NAME")?),
            leader: num(&kv, "LEADER")?,
            leader_start: num(&kv, "LEADER_START")?,
            supervisor: num(&kv, "SUPERVISOR")?,
            supervisor_start: num(&kv, "SUPERVISOR_START")?,
            uuid: unescape(kv.get("UUID")?),
            root: PathBuf::from(unescape(kv.get("ROOT")?)),
            unit: kv.get("UNIT").map(|u| unescape(u)),
            started_usec: num(&kv, "STARTED_USEC")?,
            capabilities: split(kv.get("CAPABILITIES")?)?,
            syscalls_allow: split(kv.get("SYSCALLS_ALLOW")?)?,
            syscalls_deny: split(kv.get("SYSCALLS_DENY")?)?,
            private_network: *kv.get("PRIVATE_NETWORK")? == "1",
        })
    }

    /// Whether the supervisor and the guest's PID 1 are the processes that
    /// wrote this (not dead, not a reused pid).
    pub fn alive(&self) -> bool {
        self.supervisor_alive() && start_time(self.leader) == Some(self.leader_start)
    }

    /// Whether the supervisor that wrote this still runs: then the entry is
    /// its, even while the guest reboots (the leader is gone for a moment,
    /// and the supervisor writes the new one once it runs).
    pub fn supervisor_alive(&self) -> bool {
        start_time(self.supervisor) == Some(self.supervisor_start)
    }
}

/// A process's start time (clock ticks after boot), if it exists and is not a
/// zombie.
pub fn start_time(pid: i32) -> Option<u64> {
    start_time_in(&crate::sys::read_proc(format!("/proc/{pid}/stat")).ok()?)
}

/// The start time in the text of a /proc/PID/stat, unless it is a zombie's.
pub fn start_time_in(stat: &str) -> Option<u64> {
    // comm (field 2) may contain spaces and parentheses: fields after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split(' ').collect();
    // rest starts at field 3 (state); field 22 is starttime.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(22 - 3)?.parse().ok()
}

/// Whether `name` can be a state file's name: one path component, not a
/// temporary file. Anything else would make `read` (which removes what it
/// cannot parse) reach outside the directory.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.starts_with(".#")
        && !name.contains(['/', '\0'])
}

pub fn path_of(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Writes the state atomically (temporary file, then rename).
pub fn write(dir: &Path, st: &MachineState) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".#{}.{}", st.name, std::process::id()));
    fs::write(&tmp, st.to_text())?;
    fs::rename(&tmp, path_of(dir, &st.name)).inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// Removes a machine's state, if it is the one `supervisor` wrote.
pub fn remove(dir: &Path, name: &str, supervisor: i32) {
    let p = path_of(dir, name);
    if let Ok(text) = fs::read_to_string(&p) {
        if MachineState::from_text(&text).is_some_and(|s| s.supervisor == supervisor) {
            let _ = fs::remove_file(&p);
        }
    }
}

/// One machine, if it runs; a stale entry is removed.
pub fn read(dir: &Path, name: &str) -> Option<MachineState> {
    if !valid_name(name) {
        return None;
    }
    let p = path_of(dir, name);
    let text = fs::read_to_string(&p).ok()?;
    match MachineState::from_text(&text) {
        Some(s) if s.supervisor_alive() => Some(s),
        _ => {
            // Only if it is still the stale one: a new run of the same name
            // may have just put its own in place.
            if fs::read_to_string(&p).is_ok_and(|now| now == text) {
                let _ = fs::remove_file(&p);
            }
            None
        }
    }
}

/// Every running machine, by name; stale entries are removed.
pub fn list(dir: &Path) -> Vec<MachineState> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<MachineState> = rd
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (!name.starts_with(".#"))
                .then(|| read(dir, &name))
                .flatten()
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MachineState {
        MachineState {
            name: "web.example".into(),
            leader: 4242,
            leader_start: 99,
            supervisor: 4241,
            supervisor_start: 98,
            uuid: "0123".into(),
            root: PathBuf::from("/var/lib/x\nLEADER=1"),
            unit: Some("container@web.service".into()),
            started_usec: 1_700_000_000_000_000,
            capabilities: vec!["CAP_CHOWN".into(), "CAP_KILL".into()],
            syscalls_allow: vec![250],
            syscalls_deny: vec![101, 102],
            private_network: false,
        }
    }

    #[test]
    fn round_trips_and_newlines_cannot_forge_keys() {
        let s = sample();
        let text = s.to_text();
        assert_eq!(text.lines().filter(|l| l.starts_with("LEADER=")).count(), 1);
        assert_eq!(MachineState::from_text(&text), Some(s));
        assert_eq!(MachineState::from_text("NAME=x\n"), None);
    }

    #[test]
    fn liveness_follows_the_processes() {
        let me = std::process::id() as i32;
        let mut s = sample();
        s.supervisor = me;
        s.supervisor_start = start_time(me).unwrap();
        s.leader = me;
        s.leader_start = s.supervisor_start;
        assert!(s.alive());
        s.leader_start += 1;
        assert!(!s.alive(), "a reused pid is not the leader");
        assert!(
            s.supervisor_alive(),
            "a rebooting guest's machine is still there"
        );
        s.leader = i32::MAX;
        assert!(!s.alive());
    }

    #[test]
    fn files_are_written_read_and_stale_ones_dropped() {
        let dir = std::env::temp_dir().join(format!("nixrun-state-test-{}", std::process::id()));
        let me = std::process::id() as i32;
        let t = start_time(me).unwrap();
        let mut live = sample();
        live.name = "live".into();
        (
            live.supervisor,
            live.supervisor_start,
            live.leader,
            live.leader_start,
        ) = (me, t, me, t);
        let mut dead = live.clone();
        dead.name = "dead".into();
        dead.supervisor = i32::MAX;
        write(&dir, &live).unwrap();
        write(&dir, &dead).unwrap();
        let names: Vec<String> = list(&dir).into_iter().map(|s| s.name).collect();
        assert_eq!(names, vec!["live"]);
        assert!(!dir.join("dead").exists(), "the stale entry stays");
        // A name that is not one component never reaches (and never removes)
        // a file outside the directory.
        let outside = dir.join("outside");
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("victim"), "not a state file").unwrap();
        let inner = dir.join("inner");
        fs::create_dir_all(&inner).unwrap();
        for bad in ["../outside/victim", "..", ".", "", ".#x", "a\0b"] {
            assert_eq!(read(&inner, bad), None);
        }
        assert!(
            outside.join("victim").exists(),
            "read() removed a file outside its directory"
        );
        remove(&dir, "live", me + 1);
        assert!(dir.join("live").exists(), "removed by another supervisor");
        remove(&dir, "live", me);
        assert!(!dir.join("live").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
