//! An OCI container's cgroups: `linux.cgroupsPath` in every mounted
//! hierarchy (cgroup2 and, on hybrid or legacy hosts, each v1 one), and
//! `linux.resources` written where each controller lives: the v1 hierarchy
//! that carries it if one is mounted, else cgroup2.
//!
//! This differs from the nspawn front end's layout (cgroup.rs: a machine's
//! cgroups under the supervisor's own, in the three hierarchies it manages):
//! an engine names the cgroup and expects every controller's limits there.
//! The device policy's rules and the hierarchy discovery's mountinfo parsing
//! are the core's (policy/devices.rs, cgroup.rs).

use crate::policy::devices::{self, Kind as DevKind, Rule};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, LinuxResources};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// One mounted hierarchy.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    pub mount: PathBuf,
    /// Empty for cgroup2; the controllers (or "name=X") of a v1 one.
    pub controllers: Vec<String>,
    /// This process's cgroup in it, as a host directory.
    pub own: PathBuf,
}

impl Hierarchy {
    pub fn is_v2(&self) -> bool {
        self.controllers.is_empty()
    }

    fn has(&self, c: &str) -> bool {
        self.controllers.iter().any(|x| x == c)
    }
}

/// Every cgroup hierarchy mounted in our mount namespace, cgroup2 first.
pub fn hierarchies() -> Result<Vec<Hierarchy>, String> {
    let mi = fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("mountinfo: {e}"))?;
    let pc =
        fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    Ok(parse(&mi, &pc))
}

fn parse(mountinfo: &str, proc_cgroup: &str) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for m in crate::cgroup::cgroup_mounts(mountinfo, proc_cgroup) {
        let controllers: Vec<String> = if m.v2 {
            vec![]
        } else {
            m.superopts
                .iter()
                .filter(|o| {
                    o.starts_with("name=")
                        || !matches!(
                            o.as_str(),
                            "rw" | "ro" | "xattr" | "noprefix" | "clone_children"
                        ) && !o.contains('=')
                })
                .cloned()
                .collect()
        };
        if m.own.is_none() || out.iter().any(|h| h.controllers == controllers) {
            continue;
        }
        let mount = PathBuf::from(&m.point);
        // A subtree we are not in: the mount's root stands for our cgroup.
        let own = m.own_dir().unwrap_or_else(|| mount.clone());
        out.push(Hierarchy {
            own,
            mount,
            controllers,
        });
    }
    out.sort_by_key(|h| !h.is_v2());
    out
}

/// cgroupsPath as a path below each hierarchy's root (absolute) or below our
/// own cgroup (relative). With --systemd-cgroup, "slice:prefix:name" means
/// the scope systemd would make: `<slice path>/<prefix>-<name>.scope`.
pub fn resolve(
    h: &Hierarchy,
    cgroups_path: Option<&Path>,
    id: &str,
    systemd: bool,
) -> Result<PathBuf, String> {
    let default = PathBuf::from(format!("/nixrun-oci/{id}"));
    let p = cgroups_path.map(Path::to_path_buf).unwrap_or(default);
    let s = p.to_string_lossy().into_owned();
    let p = if systemd && !s.starts_with('/') {
        PathBuf::from(systemd_path(&s)?)
    } else {
        p
    };
    for c in p.components() {
        if matches!(c, std::path::Component::ParentDir) {
            return Err(format!("cgroupsPath {s:?} contains \"..\""));
        }
    }
    Ok(match p.strip_prefix("/") {
        Ok(rel) => h.mount.join(rel),
        Err(_) => h.own.join(&p),
    })
}

fn systemd_path(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split(':').collect();
    let [slice, prefix, name] = parts[..] else {
        return Err(format!(
            "cgroupsPath {s:?}: with --systemd-cgroup, expected slice:prefix:name"
        ));
    };
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    // "a-b-c.slice" lives at a.slice/a-b.slice/a-b-c.slice.
    let stem = slice
        .strip_suffix(".slice")
        .ok_or_else(|| format!("{slice:?} is not a slice"))?;
    let mut path = String::from("/");
    if stem != "-" {
        let mut acc = String::new();
        for part in stem.split('-') {
            if !acc.is_empty() {
                acc.push('-');
            }
            acc.push_str(part);
            path.push_str(&format!("{acc}.slice/"));
        }
    }
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    Ok(path + &unit)
}

fn write(file: &Path, value: &str) -> Result<(), String> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(file)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    f.write_all(value.as_bytes())
        .map_err(|e| format!("writing {value:?} to {}: {e}", file.display()))
}

/// The container's cgroups, one per hierarchy.
#[derive(Debug, Clone)]
pub struct Placement {
    pub dirs: Vec<(Hierarchy, PathBuf)>,
    /// Directories this runtime made, deepest last, and the default parent
    /// (`/nixrun-oci`, which only this runtime uses): removed at delete
    /// once empty.
    pub made: Vec<PathBuf>,
    /// Whether the cgroups are at the default path, below that parent.
    default_path: bool,
}

impl Placement {
    pub fn plan(cgroups_path: Option<&Path>, id: &str, systemd: bool) -> Result<Placement, String> {
        let hs = hierarchies()?;
        if !hs.iter().any(Hierarchy::is_v2) && hs.is_empty() {
            return Err("no cgroup hierarchy is mounted".into());
        }
        let mut dirs = Vec::new();
        for h in hs {
            let d = resolve(&h, cgroups_path, id, systemd)?;
            dirs.push((h, d));
        }
        Ok(Placement {
            dirs,
            made: vec![],
            default_path: cgroups_path.is_none(),
        })
    }

    pub fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, d)| d.clone()).collect()
    }

    /// Makes the directories; in the v1 cpuset hierarchy a new cgroup starts
    /// with no cpus and mems, and a task cannot join it until they are copied
    /// from the parent.
    pub fn create(&mut self) -> Result<(), String> {
        // A parent may vanish under us: the last container's delete removes
        // the default parent once it is empty. Walk again then.
        for attempt in 0..5 {
            match self.create_once() {
                Err((_, e)) if e.kind() == io::ErrorKind::NotFound && attempt < 4 => continue,
                Err((p, e)) => return Err(format!("creating cgroup {}: {e}", p.display())),
                Ok(()) => break,
            }
        }
        if self.default_path {
            // Another container's create may have made it; ours all the same.
            for (_, d) in &self.dirs {
                if let Some(parent) = d.parent() {
                    if !self.made.iter().any(|m| m == parent) {
                        self.made.insert(0, parent.to_path_buf());
                    }
                }
            }
        }
        Ok(())
    }

    fn create_once(&mut self) -> Result<(), (PathBuf, io::Error)> {
        for (h, dir) in &self.dirs {
            let mut missing = Vec::new();
            let mut d = dir.as_path();
            while !d.exists() {
                missing.push(d.to_path_buf());
                d = match d.parent() {
                    Some(p) if p.starts_with(&h.mount) => p,
                    _ => break,
                };
            }
            for m in missing.into_iter().rev() {
                match fs::create_dir(&m) {
                    Ok(()) => {
                        if !self.made.contains(&m) {
                            self.made.push(m.clone())
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err((m, e)),
                }
            }
            if h.has("cpuset") {
                self.fill_cpuset(h, dir)?;
            }
        }
        Ok(())
    }

    /// Gives every cgroup on the way to `dir` the cpus and mems of its
    /// parent where it has none, top down: a child's must be a subset of
    /// its parent's. A parent another create made a moment ago may not have
    /// them yet (seen: four concurrent first creates, ENOSPC at attach);
    /// the default parent is ours to fill, a cgroup of someone else's only
    /// to wait for.
    fn fill_cpuset(&self, h: &Hierarchy, dir: &Path) -> Result<(), (PathBuf, io::Error)> {
        let rel = dir.strip_prefix(&h.mount).unwrap_or(Path::new(""));
        let mut cur = h.mount.clone();
        for c in rel.components() {
            let parent = cur.clone();
            cur.push(c);
            let ours = self.made.contains(&cur)
                || (self.default_path && dir.parent() == Some(cur.as_path()));
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let read = |d: &Path| fs::read_to_string(d.join(f)).unwrap_or_default();
                let mut delay = Duration::from_millis(1);
                while read(&cur).trim().is_empty() {
                    if ours {
                        write(&cur.join(f), read(&parent).trim())
                            .map_err(|e| (cur.clone(), io::Error::other(e)))?;
                        break;
                    }
                    if delay > Duration::from_secs(1) {
                        return Err((
                            cur.clone(),
                            io::Error::other(format!(
                                "{f} is empty: no task can join it or a cgroup below it"
                            )),
                        ));
                    }
                    std::thread::sleep(delay);
                    delay *= 2;
                }
            }
        }
        Ok(())
    }

    /// The directory of the hierarchy that carries `controller`: its v1
    /// hierarchy if mounted, else cgroup2 (enabling it down the path).
    fn dir_for(&self, controller: &str) -> Result<&Path, String> {
        if let Some((_, d)) = self.dirs.iter().find(|(h, _)| h.has(controller)) {
            return Ok(d);
        }
        let Some((h, d)) = self.dirs.iter().find(|(h, _)| h.is_v2()) else {
            return Err(format!(
                "no cgroup hierarchy carries the {controller} controller"
            ));
        };
        let avail = fs::read_to_string(h.mount.join("cgroup.controllers")).unwrap_or_default();
        if !avail.split_whitespace().any(|c| c == controller) {
            return Err(format!(
                "the {controller} controller is neither a mounted v1 hierarchy nor available in cgroup2 here"
            ));
        }
        // Enabled only in cgroups this runtime made (removed at delete);
        // above them it must be enabled already: turning a controller on
        // in a cgroup of the host's changes every other cgroup there (and
        // forbids processes in it).
        let rel = d.strip_prefix(&h.mount).unwrap_or(Path::new(""));
        let mut cur = h.mount.clone();
        for c in rel.components() {
            let sc = cur.join("cgroup.subtree_control");
            let on = fs::read_to_string(&sc).unwrap_or_default();
            if !on.split_whitespace().any(|x| x == controller) {
                if !self.made.contains(&cur) {
                    return Err(format!(
                        "the {controller} controller is not enabled in {} (cgroup2), and nixrun-oci does not change cgroups it did not make",
                        sc.display()
                    ));
                }
                write(&sc, &format!("+{controller}"))?;
            }
            cur.push(c);
        }
        Ok(d)
    }

    /// Writes `linux.resources`; any value that cannot be applied is an error
    /// (the spec: the container must not be created then).
    pub fn apply(&self, r: &LinuxResources, nodes: &[LinuxDevice]) -> Result<(), String> {
        if let Some(m) = r.memory() {
            let v1 = self.dirs.iter().any(|(h, _)| h.has("memory"));
            let d = self.dir_for("memory")?;
            let num = |v: i64| {
                if v < 0 {
                    "-1".to_string()
                } else {
                    v.to_string()
                }
            };
            if v1 {
                if let Some(l) = m.limit() {
                    write(&d.join("memory.limit_in_bytes"), &num(l))?;
                }
                if let Some(l) = m.reservation() {
                    write(&d.join("memory.soft_limit_in_bytes"), &num(l))?;
                }
                if let Some(l) = m.swap() {
                    write(&d.join("memory.memsw.limit_in_bytes"), &num(l))?;
                }
                if let Some(l) = m.kernel() {
                    write(&d.join("memory.kmem.limit_in_bytes"), &num(l))?;
                }
                if let Some(l) = m.kernel_tcp() {
                    write(&d.join("memory.kmem.tcp.limit_in_bytes"), &num(l))?;
                }
                if let Some(s) = m.swappiness() {
                    if s > 100 {
                        return Err(format!("memory.swappiness {s} is above 100"));
                    }
                    write(&d.join("memory.swappiness"), &s.to_string())?;
                }
                if m.disable_oom_killer() == Some(true) {
                    write(&d.join("memory.oom_control"), "1")?;
                }
            } else {
                let max = |v: i64| {
                    if v < 0 {
                        "max".to_string()
                    } else {
                        v.to_string()
                    }
                };
                if let Some(l) = m.limit() {
                    write(&d.join("memory.max"), &max(l))?;
                }
                if let Some(l) = m.reservation() {
                    write(&d.join("memory.low"), &max(l))?;
                }
                if let (Some(s), l) = (m.swap(), m.limit()) {
                    // runtime-spec's swap is memory+swap; cgroup2's is swap alone.
                    let v = match l {
                        Some(l) if s >= 0 && l >= 0 => (s - l).max(0).to_string(),
                        _ => max(s),
                    };
                    write(&d.join("memory.swap.max"), &v)?;
                }
                if m.kernel().is_some() || m.kernel_tcp().is_some() || m.swappiness().is_some() {
                    return Err(
                        "memory.kernel, kernelTCP and swappiness have no cgroup2 equivalent".into(),
                    );
                }
            }
        }
        if let Some(c) = r.cpu() {
            let v1 = self.dirs.iter().any(|(h, _)| h.has("cpu"));
            let sched = c.shares().is_some()
                || c.quota().is_some()
                || c.period().is_some()
                || c.realtime_runtime().is_some()
                || c.realtime_period().is_some();
            if sched {
                let d = self.dir_for("cpu")?;
                if v1 {
                    if let Some(s) = c.shares() {
                        write(&d.join("cpu.shares"), &s.to_string())?;
                    }
                    if let Some(p) = c.period() {
                        write(&d.join("cpu.cfs_period_us"), &p.to_string())?;
                    }
                    if let Some(q) = c.quota() {
                        write(&d.join("cpu.cfs_quota_us"), &q.to_string())?;
                    }
                    if let Some(p) = c.realtime_period() {
                        write(&d.join("cpu.rt_period_us"), &p.to_string())?;
                    }
                    if let Some(q) = c.realtime_runtime() {
                        write(&d.join("cpu.rt_runtime_us"), &q.to_string())?;
                    }
                } else {
                    if let Some(s) = c.shares() {
                        // runc's conversion of shares [2, 262144] to weight [1, 10000].
                        let w = 1 + ((s.clamp(2, 262_144) - 2) * 9999) / 262_142;
                        write(&d.join("cpu.weight"), &w.to_string())?;
                    }
                    if c.quota().is_some() || c.period().is_some() {
                        let q = match c.quota() {
                            Some(q) if q > 0 => q.to_string(),
                            _ => "max".into(),
                        };
                        write(
                            &d.join("cpu.max"),
                            &format!("{q} {}", c.period().unwrap_or(100_000)),
                        )?;
                    }
                    if c.realtime_runtime().is_some() || c.realtime_period().is_some() {
                        return Err("realtime cpu limits have no cgroup2 equivalent".into());
                    }
                }
            }
            if c.cpus().is_some() || c.mems().is_some() {
                let d = self.dir_for("cpuset")?;
                if let Some(v) = c.cpus() {
                    write(&d.join("cpuset.cpus"), v)?;
                }
                if let Some(v) = c.mems() {
                    write(&d.join("cpuset.mems"), v)?;
                }
            }
        }
        if let Some(p) = r.pids() {
            let d = self.dir_for("pids")?;
            let v = if p.limit() <= 0 {
                "max".to_string()
            } else {
                p.limit().to_string()
            };
            write(&d.join("pids.max"), &v)?;
        }
        if let Some(b) = r.block_io() {
            let d = self.dir_for("blkio")?;
            if let Some(w) = b.weight() {
                write(&d.join("blkio.weight"), &w.to_string())?;
            }
            if let Some(w) = b.leaf_weight() {
                write(&d.join("blkio.leaf_weight"), &w.to_string())?;
            }
            for wd in b.weight_device().iter().flatten() {
                if let Some(w) = wd.weight() {
                    write(
                        &d.join("blkio.weight_device"),
                        &format!("{}:{} {w}", wd.major(), wd.minor()),
                    )?;
                }
                if let Some(w) = wd.leaf_weight() {
                    write(
                        &d.join("blkio.leaf_weight_device"),
                        &format!("{}:{} {w}", wd.major(), wd.minor()),
                    )?;
                }
            }
            for (file, list) in [
                (
                    "blkio.throttle.read_bps_device",
                    b.throttle_read_bps_device(),
                ),
                (
                    "blkio.throttle.write_bps_device",
                    b.throttle_write_bps_device(),
                ),
                (
                    "blkio.throttle.read_iops_device",
                    b.throttle_read_iops_device(),
                ),
                (
                    "blkio.throttle.write_iops_device",
                    b.throttle_write_iops_device(),
                ),
            ] {
                for t in list.iter().flatten() {
                    write(
                        &d.join(file),
                        &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
                    )?;
                }
            }
        }
        for h in r.hugepage_limits().iter().flatten() {
            let d = self.dir_for("hugetlb")?;
            write(
                &d.join(format!("hugetlb.{}.limit_in_bytes", h.page_size())),
                &h.limit().to_string(),
            )?;
        }
        if let Some(n) = r.network() {
            if let Some(id) = n.class_id() {
                write(
                    &self.dir_for("net_cls")?.join("net_cls.classid"),
                    &id.to_string(),
                )?;
            }
            for p in n.priorities().iter().flatten() {
                write(
                    &self.dir_for("net_prio")?.join("net_prio.ifpriomap"),
                    &format!("{} {}", p.name(), p.priority()),
                )?;
            }
        }
        if let Some(u) = r.unified() {
            let Some((_, d)) = self.dirs.iter().find(|(h, _)| h.is_v2()) else {
                return Err("linux.resources.unified needs cgroup2".into());
            };
            for (k, v) in u {
                if k.contains('/') {
                    return Err(format!("linux.resources.unified: bad key {k:?}"));
                }
                write(&d.join(k), v)?;
            }
        }
        self.devices(r, nodes)
    }

    /// The device rules: the config's, in order, then the nodes every OCI
    /// container gets (runc's set, which is the core's default policy) and
    /// the nodes `linux.devices` creates (runc allows those too).
    fn devices(&self, r: &LinuxResources, nodes: &[LinuxDevice]) -> Result<(), String> {
        let mut list = r.devices().clone().unwrap_or_default();
        for n in nodes {
            let rule = serde_json::json!({
                "allow": true,
                "type": if n.typ() == LinuxDeviceType::B { "b" } else { "c" },
                "major": n.major(),
                "minor": n.minor(),
                "access": "rwm",
            });
            list.push(serde_json::from_value(rule).map_err(|e| e.to_string())?);
        }
        if let Some((_, d)) = self.dirs.iter().find(|(h, _)| h.has("devices")) {
            for rule in &list {
                let typ = match rule.typ() {
                    Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => "c",
                    Some(LinuxDeviceType::B) => "b",
                    Some(LinuxDeviceType::P) => continue,
                    Some(LinuxDeviceType::A) | None => "a",
                };
                let n = |v: Option<i64>| v.map_or("*".to_string(), |v| v.to_string());
                let access = rule.access().clone().unwrap_or_else(|| "rwm".into());
                let line = if typ == "a" && rule.major().is_none() && rule.minor().is_none() {
                    "a".to_string()
                } else {
                    format!("{typ} {}:{} {access}", n(rule.major()), n(rule.minor()))
                };
                let file = if rule.allow() {
                    "devices.allow"
                } else {
                    "devices.deny"
                };
                write(&d.join(file), &line)?;
            }
            for rule in devices::DEFAULT {
                write(&d.join("devices.allow"), &devices::v1_line(rule))?;
            }
            return Ok(());
        }
        // cgroup2: the core's BPF program, default deny plus allowed nodes. An
        // allow-list is what it can express; deny rules after the first
        // "deny all" would need another program and are refused.
        let Some((_, d)) = self.dirs.iter().find(|(h, _)| h.is_v2()) else {
            return Ok(());
        };
        let mut rules: Vec<Rule> = devices::DEFAULT.to_vec();
        for (i, rule) in list.iter().enumerate() {
            let any = rule.major().is_none() && rule.minor().is_none();
            if !rule.allow() {
                if i == 0 && any && matches!(rule.typ(), None | Some(LinuxDeviceType::A)) {
                    continue;
                }
                return Err("device cgroup deny rules other than a leading \"deny all\" are not supported on cgroup2".into());
            }
            let kind = match rule.typ() {
                Some(LinuxDeviceType::B) => DevKind::Block,
                Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => DevKind::Char,
                _ => {
                    return Err(
                        "device cgroup rules allowing all types are not supported on cgroup2"
                            .into(),
                    )
                }
            };
            let Some(major) = rule.major() else {
                return Err(
                    "device cgroup rules without a major number are not supported on cgroup2"
                        .into(),
                );
            };
            rules.push(Rule {
                kind,
                major: major as u32,
                minor: rule.minor().map(|m| m as u32),
            });
        }
        use std::os::fd::AsFd;
        let prog = crate::sys::bpf::load_device_program(&devices::program(&rules))
            .map_err(|e| format!("loading the device program: {e}"))?;
        let dir = fs::File::open(d).map_err(|e| format!("{}: {e}", d.display()))?;
        crate::sys::bpf::attach_device_program(dir.as_fd(), prog.as_fd())
            .map_err(|e| format!("attaching the device program to {}: {e}", d.display()))
    }

    pub fn attach(&self, pid: i32) -> Result<(), String> {
        for (_, d) in &self.dirs {
            write(&d.join("cgroup.procs"), &pid.to_string())?;
        }
        Ok(())
    }
}

/// The processes in a cgroup and below it.
pub fn pids(dir: &Path) -> Vec<i32> {
    let mut out: Vec<i32> = fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.filter_map(Result::ok) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(pids(&e.path()));
            }
        }
    }
    out
}

/// Removes a cgroup and the ones below it, deepest first; an rmdir right
/// after the last process left may see it busy for a moment.
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.filter_map(Result::ok) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path())?;
            }
        }
    }
    let mut delay = Duration::from_millis(1);
    loop {
        match fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && delay < Duration::from_secs(2) => {
                std::thread::sleep(delay);
                delay *= 2;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            other => return other,
        }
    }
}

/// Removes the container's cgroups and the parents this runtime made.
pub fn remove(cgroups: &[PathBuf], made: &[PathBuf]) -> Vec<String> {
    let mut errors = Vec::new();
    for d in cgroups {
        if let Err(e) = remove_tree(d) {
            errors.push(format!("removing cgroup {}: {e}", d.display()));
        }
    }
    for d in made.iter().rev() {
        // Parents shared with other containers stay (ENOTEMPTY/EBUSY).
        let _ = fs::remove_dir(d);
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: &str = "\
30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
";
    const PC: &str = "9:name=systemd:/\n4:memory:/user/x\n2:cpu,cpuacct:/\n0::/\n";

    #[test]
    fn hybrid_hierarchies_and_paths() {
        let h = parse(MI, PC);
        assert_eq!(h.len(), 4);
        assert!(h[0].is_v2());
        let mem = h.iter().find(|h| h.has("memory")).unwrap();
        assert_eq!(mem.own, PathBuf::from("/sys/fs/cgroup/memory/user/x"));
        assert!(h.iter().any(|h| h.has("cpu") && h.has("cpuacct")));
        assert!(h.iter().any(|h| h.has("name=systemd")));
        assert_eq!(
            resolve(mem, Some(Path::new("/a/b")), "c", false).unwrap(),
            PathBuf::from("/sys/fs/cgroup/memory/a/b")
        );
        assert_eq!(
            resolve(mem, Some(Path::new("rel")), "c", false).unwrap(),
            PathBuf::from("/sys/fs/cgroup/memory/user/x/rel")
        );
        assert_eq!(
            resolve(mem, None, "c", false).unwrap(),
            PathBuf::from("/sys/fs/cgroup/memory/nixrun-oci/c")
        );
        assert!(resolve(mem, Some(Path::new("/a/../b")), "c", false).is_err());
    }

    #[test]
    fn systemd_paths() {
        assert_eq!(
            systemd_path("machine.slice:libpod:abc").unwrap(),
            "/machine.slice/libpod-abc.scope"
        );
        assert_eq!(
            systemd_path("a-b.slice:cri:x").unwrap(),
            "/a.slice/a-b.slice/cri-x.scope"
        );
        assert_eq!(systemd_path(":p:n").unwrap(), "/system.slice/p-n.scope");
        assert!(systemd_path("/x").is_err());
    }
}
