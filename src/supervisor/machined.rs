//! Registration with systemd-machined and, without --keep-unit, a scope unit of
//! the container's own — what nspawn does, so that `machinectl`, `systemctl -M`,
//! `journalctl -M` and NixOS's `nixos-container` find the machine.
//!
//! The call is RegisterMachineWithNetwork (`sayssusai`): it exists from
//! systemd 252 to today's, and machined derives the unit (and, with
//! --keep-unit, the `payload` subgroup) from the leader's cgroup, so the
//! leader is registered after it was placed in its cgroup and before it runs.

use super::SupervisorError;
use crate::dbus::{Bus, DbusError, Value};
use crate::plan::Register;
use std::path::Path;
use std::time::{Duration, Instant};

const MACHINED: &str = "org.freedesktop.machine1";
const MACHINED_PATH: &str = "/org/freedesktop/machine1";
const MACHINED_IFACE: &str = "org.freedesktop.machine1.Manager";
const SYSTEMD: &str = "org.freedesktop.systemd1";
const SYSTEMD_PATH: &str = "/org/freedesktop/systemd1";
const SYSTEMD_IFACE: &str = "org.freedesktop.systemd1.Manager";

/// A call of machined's Manager interface.
fn manager(bus: &mut Bus, member: &str, args: &[Value]) -> Result<Option<String>, DbusError> {
    bus.call(MACHINED, MACHINED_PATH, MACHINED_IFACE, member, args)
}

/// Whether the host runs systemd (sd_booted(3)'s test).
pub fn systemd_booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Registers a container whose PID 1 is `leader` (a host pid). A registration
/// of the same name whose leader is dead (its supervisor was SIGKILLed, and
/// machined keeps a machine as long as its unit is active — the unit we now
/// run in) is dropped first; a live one is left alone and refuses us.
pub fn register(
    name: &str,
    uuid: &uuid::Uuid,
    leader: i32,
    root: &Path,
    ifindices: &[i32],
) -> Result<(), DbusError> {
    let mut bus = Bus::system()?;
    match register_on(&mut bus, name, uuid, leader, root, ifindices) {
        Err(e) if e.remote_name() == Some("org.freedesktop.machine1.MachineExists") => {
            let path = manager(&mut bus, "GetMachine", &[Value::Str(name.into())])?
                .ok_or(DbusError::Protocol("GetMachine returned no object"))?;
            let old = bus.get_u32(
                MACHINED,
                &path,
                "org.freedesktop.machine1.Machine",
                "Leader",
            )?;
            if old != 0 && Path::new(&format!("/proc/{old}")).exists() {
                return Err(e);
            }
            manager(&mut bus, "UnregisterMachine", &[Value::Str(name.into())])?;
            register_on(&mut bus, name, uuid, leader, root, ifindices)
        }
        r => r,
    }
}

fn register_on(
    bus: &mut Bus,
    name: &str,
    uuid: &uuid::Uuid,
    leader: i32,
    root: &Path,
    ifindices: &[i32],
) -> Result<(), DbusError> {
    manager(
        bus,
        "RegisterMachineWithNetwork",
        &[
            Value::Str(name.into()),
            Value::Bytes(uuid.as_bytes().to_vec()),
            Value::Str("nixrun".into()),
            Value::Str("container".into()),
            Value::U32(leader as u32),
            Value::Str(root.to_string_lossy().into_owned()),
            Value::Array(
                "i".into(),
                ifindices.iter().map(|&i| Value::I32(i)).collect(),
            ),
        ],
    )?;
    Ok(())
}

/// Drops the registration (machined also drops it by itself once the leader
/// is gone; this makes it immediate).
pub fn unregister(name: &str) -> Result<(), DbusError> {
    let mut bus = Bus::system()?;
    match manager(&mut bus, "UnregisterMachine", &[Value::Str(name.into())]) {
        Ok(_) => Ok(()),
        Err(e) if e.remote_name() == Some("org.freedesktop.machine1.NoSuchMachine") => Ok(()),
        Err(e) => Err(e),
    }
}

/// systemd's unit name escaping of one string (unit_name_escape): keeps
/// letters, digits, ':', '_' and '.' (not leading), turns '/' into '-' and
/// everything else into \xNN.
pub fn unit_name_escape(s: &str) -> String {
    let mut out = String::new();
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'/' => out.push('-'),
            b'.' if i == 0 => out.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b == b':' || b == b'_' || b == b'.' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// The scope a hand-started container gets: `machine-<name>.scope`.
pub fn scope_name(machine: &str) -> String {
    format!("machine-{}.scope", unit_name_escape(machine))
}

/// Moves this process into a new transient scope unit in machine.slice, with
/// its cgroup delegated to us (as nspawn does without --keep-unit), and waits
/// until systemd has moved us there. Returns the unit's name.
pub fn start_scope(machine: &str) -> Result<String, ScopeError> {
    let unit = scope_name(machine);
    let mut bus = Bus::system()?;
    let props = vec![
        Value::property("Description", Value::Str(format!("Container {machine}"))),
        Value::property("Slice", Value::Str("machine.slice".into())),
        Value::property("Delegate", Value::Bool(true)),
        Value::property(
            "PIDs",
            Value::Array("u".into(), vec![Value::U32(std::process::id())]),
        ),
        Value::property("CollectMode", Value::Str("inactive-or-failed".into())),
        Value::property("AddRef", Value::Bool(true)),
    ];
    bus.call(
        SYSTEMD,
        SYSTEMD_PATH,
        SYSTEMD_IFACE,
        "StartTransientUnit",
        &[
            Value::Str(unit.clone()),
            Value::Str("fail".into()),
            Value::Array("(sv)".into(), props),
            Value::Array("(sa(sv))".into(), vec![]),
        ],
    )?;
    // The job moves us into the scope's cgroup when it runs; a scope's start
    // job is immediate, but it is asynchronous to the call's reply.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let cg = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        if cg.lines().any(|l| l.ends_with(&format!("/{unit}"))) {
            return Ok(unit);
        }
        if Instant::now() > deadline {
            return Err(ScopeError::NotMoved(unit));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Registration as --register= asks: failures fatal (yes), or one notice for
/// the run and on without (auto). The notice waits until the guest's init
/// runs: a start that fails anyway gets its one error line and nothing else.
pub struct Registrar {
    mode: Register,
    quiet: bool,
    noticed: bool,
    pending: Option<String>,
}

impl Registrar {
    pub fn new(mode: Register, quiet: bool) -> Registrar {
        Registrar {
            mode,
            quiet,
            noticed: false,
            pending: None,
        }
    }

    pub fn wanted(&self) -> bool {
        self.mode != Register::No
    }

    /// A registration step failed: an error with --register=yes, else the
    /// run's one notice.
    pub fn failed(&mut self, why: &str) -> Result<(), SupervisorError> {
        if self.mode == Register::Yes {
            return Err(SupervisorError::Failed(format!(
                "registering with systemd-machined (--register=yes): {why}"
            )));
        }
        if !self.noticed && !self.quiet {
            self.pending = Some(format!(
                "nixrun: not registered with systemd-machined: {why}"
            ));
        }
        self.noticed = true;
        Ok(())
    }

    /// The guest runs: say what registration could not do, if anything.
    pub fn flush_notice(&mut self) {
        if let Some(line) = self.pending.take() {
            eprintln!("{line}");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScopeError {
    #[error(transparent)]
    Bus(#[from] DbusError),
    #[error("systemd did not move nixrun into {0} within 10 s")]
    NotMoved(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_names_are_escaped_as_systemd_does() {
        assert_eq!(scope_name("foo"), "machine-foo.scope");
        assert_eq!(scope_name("web-1"), "machine-web\\x2d1.scope");
        assert_eq!(scope_name("a.b"), "machine-a.b.scope");
        assert_eq!(unit_name_escape(".x"), "\\x2ex");
        assert_eq!(unit_name_escape("a/b c"), "a-b\\x20c");
    }
}
