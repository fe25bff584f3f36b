//! Attacks through cgroups: the v1 release_agent escape (CVE-2022-0492) and
//! write access to the host's cgroup hierarchies.
//!
//! A cgroup v1 hierarchy's root holds `release_agent`, a program the kernel
//! runs as host root when a cgroup empties; the kernel fix only helps guests in
//! a user namespace, which NixOS containers are not in.  A cgroup namespace
//! makes a fresh mount show the guest's own cgroup instead of the hierarchy's
//! root — unless the guest's cgroup IS the root, as it is on hosts whose
//! processes all sit in the root of a v1 controller.
//!
//! Harmless when they succeed: release_agent gets back exactly the value just
//! read; cgroup.procs/tasks are opened for writing but never written; mounts
//! are unmounted (in a private mount namespace that dies with the attack).
//! Only controllers the host already has mounted as v1 are mounted (joining an
//! existing hierarchy): mounting one that lives on cgroup2 could move it off
//! the host's cgroup2 tree.  A new named hierarchy has no controllers and is
//! destroyed by the kernel when unmounted.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::sys::{self, Scratch};
use super::{Findings, Outcome};

const NEW_NAMED: &str = "none,name=nixrunprobe";

/// Mount options for v1 hierarchies worth mounting, from /proc/cgroups:
/// controllers grouped by hierarchy id (co-mounted ones must be mounted
/// together, e.g. `cpu,cpuacct`), only hierarchies that exist (id != 0) and
/// are enabled; plus the skipped controller names.
pub fn v1_specs(proc_cgroups: &str) -> (Vec<String>, Vec<String>) {
    let mut by_id: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut skipped = Vec::new();
    for l in proc_cgroups.lines().filter(|l| !l.starts_with('#')) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() != 4 {
            continue;
        }
        match (f[1].parse::<u32>(), f[3]) {
            (Ok(id), "1") if id != 0 => by_id.entry(id).or_default().push(f[0].to_string()),
            _ => skipped.push(f[0].to_string()),
        }
    }
    (by_id.into_values().map(|v| v.join(",")).collect(), skipped)
}

/// Subdirectory names (the cgroups) at a cgroup mount's top, for detail lines.
fn cgroups_at(dir: &Path) -> String {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let more = names.len().saturating_sub(8);
    names.truncate(8);
    let mut s = names.join(",");
    if more > 0 {
        s.push_str(&format!(",… ({more} more)"));
    }
    if s.is_empty() {
        s.push_str("none");
    }
    s
}

/// The top of a v1 mount is the hierarchy's real root iff it has release_agent;
/// of a cgroup2 mount iff it lacks cgroup.type (only non-root cgroups have it).
fn top_is_hierarchy_root(dir: &Path, v2: bool) -> bool {
    if v2 {
        dir.join("cgroup.procs").exists() && !dir.join("cgroup.type").exists()
    } else {
        dir.join("release_agent").exists()
    }
}

/// Opens the file that moves processes between cgroups for writing (never
/// written): proof the hierarchy at `dir` is writable.
fn procs_writable(dir: &Path, v2: bool) -> sys::SysResult<()> {
    let file = if v2 { "cgroup.procs" } else { "tasks" };
    sys::open(dir.join(file), libc::O_WRONLY).map(drop)
}

/// Mounts each v1 spec on the scratch dir in turn and hands the mounted top
/// to `visit`; mount failures go to `refused` by errno.
fn each_v1_mount(
    f: &mut Findings,
    specs: &[String],
    mut visit: impl FnMut(&mut Findings, &str, &Path),
) -> BTreeMap<String, Vec<String>> {
    let mut refused: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut scratch = match Scratch::new() {
        Ok(s) => s,
        Err(e) => {
            f.error(e);
            return refused;
        }
    };
    for (i, spec) in specs.iter().enumerate() {
        let target = match scratch.mount_point(&format!("cg{i}")) {
            Ok(t) => t,
            Err(e) => {
                f.error(e);
                continue;
            }
        };
        let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        match sys::mount(Some("cgroup"), &target, Some("cgroup"), flags, Some(spec)) {
            Err(e) => refused
                .entry(format!("{e:?}"))
                .or_default()
                .push(spec.clone()),
            Ok(()) => {
                visit(f, spec, &target);
                if let Err(e) = sys::umount(&target, 0) {
                    let _ = sys::umount(&target, libc::MNT_DETACH);
                    f.error(format!("unmounting cgroup {spec}: {e:?}"));
                }
            }
        }
    }
    refused
}

fn describe_refused(refused: &BTreeMap<String, Vec<String>>) -> String {
    refused
        .iter()
        .map(|(e, specs)| format!("{e}: {}", specs.join(" ")))
        .collect::<Vec<_>>()
        .join("; ")
}

fn all_specs() -> (Vec<String>, Vec<String>) {
    let text = fs::read_to_string("/proc/cgroups").unwrap_or_default();
    let (mut specs, skipped) = v1_specs(&text);
    // The systemd hierarchy has no controller, so /proc/cgroups does not list
    // it; on hybrid hosts it exists and is worth joining.
    specs.push("none,name=systemd".to_string());
    specs.push(NEW_NAMED.to_string());
    (specs, skipped)
}

/// `CVE-2022-0492`: mount cgroup v1 hierarchies and write back release_agent.
pub fn cve_2022_0492() -> Outcome {
    let mut f = Findings::default();
    let (specs, skipped) = all_specs();
    let mut no_agent = Vec::new();
    let refused = each_v1_mount(&mut f, &specs, |f, spec, top| {
        let agent = top.join("release_agent");
        let value = match fs::read(&agent) {
            Ok(v) => v,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // A cgroup namespace: the top is our own cgroup, not the root.
                no_agent.push(spec.to_string());
                return;
            }
            Err(e) => {
                return f.blocked(format!(
                    "{spec}: release_agent read {:?}",
                    sys::io_errno(&e)
                ))
            }
        };
        let fd = match sys::open(&agent, libc::O_WRONLY) {
            Ok(fd) => fd,
            Err(e) => return f.blocked(format!("{spec}: release_agent open {e:?}")),
        };
        // The same value back: the hierarchy's release agent is unchanged.  The
        // kernel's CVE fix refuses this write (EPERM) outside the initial user
        // namespace or without CAP_SYS_ADMIN; an open alone would not show that.
        match sys::write_all(&fd, &value) {
            Ok(()) => f.escaped(format!(
                "cgroup v1 {spec} mounted, release_agent writable (wrote back {:?})",
                String::from_utf8_lossy(&value).trim_end()
            )),
            Err(e) => f.blocked(format!("{spec}: release_agent write {e:?}")),
        }
    });
    let mut notes = Vec::new();
    if !refused.is_empty() {
        notes.push(format!("mount refused: {}", describe_refused(&refused)));
    }
    if !no_agent.is_empty() {
        notes.push(format!(
            "mounted without release_agent (a cgroup namespace shows our own cgroup): {}",
            no_agent.join(" ")
        ));
    }
    if !skipped.is_empty() {
        notes.push(format!(
            "not mounted as v1 on the host, skipped: {}",
            skipped.join(",")
        ));
    }
    f.blocked(notes.join("; "));
    f.outcome()
}

/// `cgroup-host-write`: the guest must not be able to write any host cgroup.
/// Checks every cgroup mount the guest has (a top that is the hierarchy's
/// root, writable directly or through a read-write bind of it), a fresh cgroup2
/// mount, and fresh mounts of the host's existing v1 hierarchies.
pub fn cgroup_host_write() -> Outcome {
    let mut f = Findings::default();
    let mut notes = Vec::new();
    match sys::fs_magic(Path::new("/sys/fs/cgroup")) {
        Ok(sys::CGROUP2_SUPER_MAGIC) => notes.push("/sys/fs/cgroup is cgroup2".to_string()),
        Ok(m) => notes.push(format!("/sys/fs/cgroup is not cgroup2 (f_type {m:#x})")),
        Err(e) => notes.push(format!("/sys/fs/cgroup: {e:?}")),
    }
    match fs::read_to_string("/proc/self/cgroup") {
        Ok(s) => match s.lines().find(|l| l.starts_with("0::")) {
            Some(l) => notes.push(format!("we are in {l}")),
            None => notes.push("no cgroup2 line in /proc/self/cgroup".to_string()),
        },
        Err(e) => f.error(format!("/proc/self/cgroup: {:?}", sys::io_errno(&e))),
    }
    let mounts = match sys::mountinfo() {
        Ok(m) => m,
        Err(e) => return Outcome::Error(format!("/proc/self/mountinfo: {e:?}")),
    };
    let mut scratch = Scratch::new();
    for m in mounts
        .iter()
        .filter(|m| m.fstype == "cgroup" || m.fstype == "cgroup2")
    {
        let v2 = m.fstype == "cgroup2";
        let dir = Path::new(&m.mount_point);
        if !top_is_hierarchy_root(dir, v2) {
            continue;
        }
        let what = format!(
            "{} at {} shows the hierarchy's root (cgroups: {})",
            m.fstype,
            m.mount_point,
            cgroups_at(dir)
        );
        match procs_writable(dir, v2) {
            Ok(()) => {
                f.escaped(format!("{what}, writable"));
                continue;
            }
            Err(e) => {
                // Read-only: can the guest simply make a read-write bind of it?
                match &mut scratch {
                    Ok(s) => match rw_bind_writable(s, dir, v2) {
                        Ok(()) => f.escaped(format!(
                            "{what}, read-only ({e:?}) but a bind of it remounts read-write"
                        )),
                        Err(how) => f.blocked(format!("{what}, read-only ({e:?}; {how})")),
                    },
                    Err(why) => f.error(format!("{what}; cannot try a rw bind: {why}")),
                }
            }
        }
    }
    drop(scratch);
    fresh_cgroup2(&mut f);
    let (specs, _) = all_specs();
    let existing: Vec<String> = specs.into_iter().filter(|s| s != NEW_NAMED).collect();
    let refused = each_v1_mount(&mut f, &existing, |f, spec, top| {
        if top_is_hierarchy_root(top, false) {
            match procs_writable(top, false) {
                Ok(()) => f.escaped(format!(
                    "a fresh cgroup v1 mount of {spec} shows the host hierarchy's root, \
                     writable (cgroups: {})",
                    cgroups_at(top)
                )),
                Err(e) => f.blocked(format!("fresh v1 {spec}: root visible, tasks {e:?}")),
            }
        }
    });
    if !refused.is_empty() {
        notes.push(format!("v1 mounts refused: {}", describe_refused(&refused)));
    }
    f.blocked(format!("no host cgroup writable; {}", notes.join("; ")));
    f.outcome()
}

/// Binds `dir` on the scratch dir, remounts the bind read-write and tries
/// opening the procs file for writing.  Ok when that works; the bind is
/// unmounted either way.
fn rw_bind_writable(scratch: &mut Scratch, dir: &Path, v2: bool) -> Result<(), String> {
    let target = scratch.mount_point("cgbind")?;
    sys::mount(
        Some(&dir.to_string_lossy()),
        &target,
        None,
        libc::MS_BIND,
        None,
    )
    .map_err(|e| format!("bind: {e:?}"))?;
    let keep = sys::keep_flags(&target).unwrap_or(0);
    let res = sys::mount(
        None,
        &target,
        None,
        libc::MS_REMOUNT | libc::MS_BIND | keep,
        None,
    )
    .map_err(|e| format!("remount,rw: {e:?}"))
    .and_then(|()| procs_writable(&target, v2).map_err(|e| format!("rw bind, open: {e:?}")));
    let _ = sys::umount(&target, libc::MNT_DETACH);
    res
}

/// A fresh cgroup2 mount: with a cgroup namespace it shows the guest's own
/// cgroup; without one, the host's whole tree.
fn fresh_cgroup2(f: &mut Findings) {
    let mut scratch = match Scratch::new() {
        Ok(s) => s,
        Err(e) => return f.error(format!("fresh cgroup2: {e}")),
    };
    let target = match scratch.mount_point("cg2") {
        Ok(t) => t,
        Err(e) => return f.error(format!("fresh cgroup2: {e}")),
    };
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    match sys::mount(Some("cgroup2"), &target, Some("cgroup2"), flags, None) {
        Err(e) => f.blocked(format!("fresh cgroup2 mount: {e:?}")),
        Ok(()) => {
            if top_is_hierarchy_root(&target, true) {
                match procs_writable(&target, true) {
                    Ok(()) => f.escaped(format!(
                        "a fresh cgroup2 mount shows the host's root cgroup, writable \
                         (no cgroup namespace; cgroups: {})",
                        cgroups_at(&target)
                    )),
                    Err(e) => f.blocked(format!("fresh cgroup2 mount shows the root, {e:?}")),
                }
            } else {
                f.blocked(format!(
                    "fresh cgroup2 mount shows our own subtree (cgroups: {})",
                    cgroups_at(&target)
                ));
            }
            let _ = sys::umount(&target, libc::MNT_DETACH);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_specs_group_comounted_controllers_and_skip_unmounted_ones() {
        let text = "#subsys_name\thierarchy\tnum_cgroups\tenabled\n\
                    cpuset\t3\t1\t1\ncpu\t1\t1\t1\ncpuacct\t1\t1\t1\n\
                    memory\t4\t26\t1\nnet_cls\t0\t440\t1\npids\t8\t1\t0\n";
        let (specs, skipped) = v1_specs(text);
        assert_eq!(specs, vec!["cpu,cpuacct", "cpuset", "memory"]);
        assert_eq!(skipped, vec!["net_cls", "pids"]);
        let (specs, skipped) = v1_specs("");
        assert!(specs.is_empty() && skipped.is_empty());
    }

    #[test]
    fn cgroup_roots_are_told_apart() {
        let dir = std::env::temp_dir().join(format!("nixrun-probe-cg-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("cgroup.procs"), "").unwrap();
        assert!(top_is_hierarchy_root(&dir, true));
        assert!(!top_is_hierarchy_root(&dir, false));
        fs::write(dir.join("cgroup.type"), "domain\n").unwrap();
        assert!(!top_is_hierarchy_root(&dir, true));
        fs::write(dir.join("release_agent"), "\n").unwrap();
        assert!(top_is_hierarchy_root(&dir, false));
        fs::create_dir(dir.join("machine.slice")).unwrap();
        assert_eq!(cgroups_at(&dir), "machine.slice");
        fs::remove_dir_all(&dir).unwrap();
    }
}
