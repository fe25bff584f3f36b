//! `list` and `status`: what the state file says about a machine, plus what only
//! the running guest can tell (its OS, its namespaces), as a table, as text or
//! as JSON with stable keys.

use super::enter::Leader;
use super::{Failure, Result};
use crate::state::MachineState;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// The namespaces a machine's leader has (the `*_for_children` links name the
/// same ones, or ones not in use yet).
pub const NAMESPACES: &[&str] = &["cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"];

/// What `status` adds to the state file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    /// The guest's PRETTY_NAME (or NAME), if its os-release says.
    pub os: Option<String>,
    /// Namespace type → inode number.
    pub namespaces: Vec<(String, u64)>,
}

/// stdout may be a pipe whose reader left (`| head`): not worth a panic.
fn print(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

pub fn list(machines: &[MachineState], json: bool) {
    if json {
        let v: Vec<Value> = machines.iter().map(machine_json).collect();
        print(&format!("{}\n", Value::Array(v)));
    } else {
        print(&table(machines));
    }
}

pub fn status(st: &MachineState, json: bool) -> Result<()> {
    let leader = Leader::open(st)?;
    let live = Live {
        os: leader.os_pretty_name(),
        namespaces: NAMESPACES
            .iter()
            .filter_map(|ns| Some((ns.to_string(), leader.namespace_id(ns)?)))
            .collect(),
    };
    // The leader may have died while we looked: then what we found is not its.
    if !st.alive() {
        return Err(Failure::new(format!(
            "no running machine {}",
            st.name.escape_debug()
        )));
    }
    if json {
        print(&format!("{}\n", status_json(st, &live)));
    } else {
        print(&status_text(st, &live));
    }
    Ok(())
}

fn machine_json(st: &MachineState) -> Value {
    json!({
        "name": st.name,
        "leader": st.leader,
        "supervisor": st.supervisor,
        "uuid": st.uuid,
        "root": st.root.to_string_lossy(),
        "unit": st.unit,
        "since_usec": st.started_usec,
        "capabilities": st.capabilities,
        "syscalls_allow": st.syscalls_allow,
        "syscalls_deny": st.syscalls_deny,
        "private_network": st.private_network,
    })
}

pub fn status_json(st: &MachineState, live: &Live) -> Value {
    let mut v = machine_json(st);
    let ns: serde_json::Map<String, Value> = live
        .namespaces
        .iter()
        .map(|(k, id)| (k.clone(), json!(id)))
        .collect();
    v["os"] = json!(live.os);
    v["namespaces"] = Value::Object(ns);
    v
}

pub fn table(machines: &[MachineState]) -> String {
    let mut rows =
        vec![["NAME", "LEADER", "SUPERVISOR", "UNIT", "ROOT", "SINCE"].map(String::from)];
    for m in machines {
        rows.push([
            printable(&m.name),
            m.leader.to_string(),
            m.supervisor.to_string(),
            m.unit.as_deref().map_or("-".into(), printable),
            printable(&m.root.to_string_lossy()),
            since(m.started_usec),
        ]);
    }
    let mut widths = [0usize; 6];
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, (c, w)) in r.iter().zip(widths).enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                let _ = write!(line, "{c:<w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn status_text(st: &MachineState, live: &Live) -> String {
    let mut out = String::new();
    let mut field = |k: &str, v: String| {
        let _ = writeln!(out, "{k:>16}: {v}");
    };
    field("Name", printable(&st.name));
    field("Leader", st.leader.to_string());
    field("Supervisor", st.supervisor.to_string());
    field("UUID", printable(&st.uuid));
    field("Root", printable(&st.root.to_string_lossy()));
    field("Unit", st.unit.as_deref().map_or("-".into(), printable));
    field("Since", since(st.started_usec));
    field("OS", live.os.as_deref().map_or("unknown".into(), printable));
    field(
        "Namespaces",
        live.namespaces
            .iter()
            .map(|(k, id)| format!("{k}:{id}"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    field("Capabilities", st.capabilities.join(" "));
    let calls = |v: &[i64]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.iter()
                .map(|n| syscall_name(*n))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    field("Calls allowed", calls(&st.syscalls_allow));
    field("Calls denied", calls(&st.syscalls_deny));
    field(
        "Private network",
        if st.private_network { "yes" } else { "no" }.into(),
    );
    out
}

fn syscall_name(n: i64) -> String {
    usize::try_from(n)
        .ok()
        .and_then(syscalls::Sysno::new)
        .map_or_else(|| n.to_string(), |s| s.name().to_string())
}

/// Control characters from a guest or a state file are shown, not obeyed.
fn printable(s: &str) -> String {
    if s.chars().any(char::is_control) {
        s.escape_debug().to_string()
    } else {
        s.to_string()
    }
}

/// Microseconds since the epoch as "YYYY-MM-DD HH:MM:SS UTC" (no time zone
/// database in a static binary; UTC says what it is).
pub fn since(usec: u64) -> String {
    if usec == 0 {
        return "-".into();
    }
    let secs = usec / 1_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard
/// Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// PRETTY_NAME (or NAME) from the text of an os-release file, unquoted.
pub fn os_release_name(text: &str) -> Option<String> {
    let get = |key: &str| {
        text.lines()
            .filter_map(|l| l.trim().split_once('='))
            .filter(|(k, _)| k.trim() == key)
            .map(|(_, v)| unquote(v.trim()))
            .next_back()
            .filter(|v| !v.is_empty())
    };
    get("PRETTY_NAME").or_else(|| get("NAME"))
}

/// os-release values are shell-quoted: "..." with backslash escapes, or '...'.
fn unquote(v: &str) -> String {
    if let Some(inner) = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        return inner.to_string();
    }
    let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return v.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn sample(name: &str) -> MachineState {
        MachineState {
            name: name.into(),
            leader: 4242,
            leader_start: 1,
            supervisor: 4241,
            supervisor_start: 1,
            uuid: "0123".into(),
            root: PathBuf::from("/var/lib/machines/web"),
            unit: Some("container@web.service".into()),
            started_usec: 1_700_000_000_123_456,
            capabilities: vec!["CAP_CHOWN".into(), "CAP_KILL".into()],
            syscalls_allow: vec![250],
            syscalls_deny: vec![101],
            private_network: false,
        }
    }

    #[test]
    fn dates() {
        assert_eq!(since(1_700_000_000_123_456), "2023-11-14 22:13:20 UTC");
        assert_eq!(since(1_000_000), "1970-01-01 00:00:01 UTC");
        assert_eq!(since(951_782_400_000_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(since(0), "-");
    }

    #[test]
    fn the_table_lines_up() {
        let mut b = sample("b");
        b.unit = None;
        b.leader = 7;
        let t = table(&[sample("web"), b]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("NAME  LEADER  SUPERVISOR  UNIT"),
            "{t}"
        );
        assert_eq!(
            lines[1],
            "web   4242    4241        container@web.service  /var/lib/machines/web  2023-11-14 22:13:20 UTC"
        );
        assert!(
            lines[2].starts_with("b     7       4241        -     "),
            "{t}"
        );
        // Columns start where the header's do.
        let col = lines[0].find("ROOT").unwrap();
        assert_eq!(&lines[2][col..col + 4], "/var");
        assert_eq!(table(&[]).lines().count(), 1, "the header alone");
        // A name with a newline cannot add a row.
        assert_eq!(table(&[sample("x\ny")]).lines().count(), 2);
    }

    #[test]
    fn json_has_stable_keys() {
        let v: Value =
            serde_json::from_str(&Value::Array(vec![machine_json(&sample("web"))]).to_string())
                .unwrap();
        let m = &v[0];
        assert_eq!(m["name"], "web");
        assert_eq!(m["leader"], 4242);
        assert_eq!(m["supervisor"], 4241);
        assert_eq!(m["unit"], "container@web.service");
        assert_eq!(m["root"], "/var/lib/machines/web");
        assert_eq!(m["since_usec"], 1_700_000_000_123_456u64);
        assert_eq!(m["capabilities"], json!(["CAP_CHOWN", "CAP_KILL"]));
        assert_eq!(m["syscalls_deny"], json!([101]));
        assert_eq!(m["private_network"], false);
        let mut none = sample("x");
        none.unit = None;
        assert!(machine_json(&none)["unit"].is_null());
        let keys: Vec<&String> = m.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "capabilities",
                "leader",
                "name",
                "private_network",
                "root",
                "since_usec",
                "supervisor",
                "syscalls_allow",
                "syscalls_deny",
                "unit",
                "uuid"
            ]
        );
        let live = Live {
            os: Some("Debian GNU/Linux 12 (bookworm)".into()),
            namespaces: vec![("mnt".into(), 4026532001), ("pid".into(), 4026532002)],
        };
        let s = status_json(&sample("web"), &live);
        assert_eq!(s["os"], "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(s["namespaces"]["pid"], 4026532002u64);
        let t = status_text(&sample("web"), &live);
        assert!(
            t.contains("              OS: Debian GNU/Linux 12 (bookworm)\n"),
            "{t}"
        );
        assert!(
            t.contains("Namespaces: mnt:4026532001 pid:4026532002\n"),
            "{t}"
        );
        assert!(t.contains("Leader: 4242\n"), "{t}");
    }

    #[test]
    fn os_release() {
        let text = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
        assert_eq!(
            os_release_name(text).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(os_release_name("NAME=Alpine\n").as_deref(), Some("Alpine"));
        assert_eq!(
            os_release_name("PRETTY_NAME='a \"b\"'").as_deref(),
            Some("a \"b\"")
        );
        assert_eq!(
            os_release_name("PRETTY_NAME=\"say \\\"hi\\\" \\$x\"").as_deref(),
            Some("say \"hi\" $x")
        );
        assert_eq!(os_release_name("# nothing\n"), None);
        assert_eq!(
            os_release_name("PRETTY_NAME=\"\"\nNAME=X"),
            Some("X".into())
        );
    }
}
