//! nixrun's container interface for booted guests under nixrun-oci, asked for
//! by the annotation `org.nixrun.container-interface: "true"`: what systemd
//! expects of its container manager (systemd.io/CONTAINER_INTERFACE) on top
//! of what config.json says, with the core's pieces (policy/mounts.rs,
//! policy/env.rs, supervisor/identity.rs) so that both front ends give the
//! same interface:
//!
//! - PID 1's environment: `container=nixrun`, `container_uuid`,
//!   `NOTIFY_SOCKET=/run/host/notify`, `container_host_*` (config.json's own
//!   variables win);
//! - a /run of its own unless config.json mounts one, with /run/host
//!   (container-manager, container-uuid, the inaccessible nodes, the notify
//!   socket, the host's os-release), read-only;
//! - /sys read-only and the cgroup2 tree writable (a delegated subtree in a
//!   cgroup namespace of its own), /proc/sys read-only, /sys/fs/fuse hidden;
//! - and outside this module: the cgroup namespace (create.rs), the notify
//!   socket handed to `start`/`run` for the relay (ops.rs), `kill TERM` as
//!   SIGRTMIN+3 (ops.rs), a terminal's pty as /dev/console (init.rs).

use crate::policy::mounts::{self, Mode, Op};
use nix::mount::MsFlags;
use oci_spec::runtime::Spec;
use std::path::{Path, PathBuf};

/// The annotation that asks for the interface.
pub const ANNOTATION: &str = "org.nixrun.container-interface";

/// Whether config.json asks for the interface.
pub fn wanted(spec: &Spec) -> bool {
    spec.annotations()
        .as_ref()
        .and_then(|a| a.get(ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// The interface of one container, decided at create.
pub struct Interface {
    pub uuid: uuid::Uuid,
    host_os_release: Option<PathBuf>,
    host_os_pairs: Vec<(String, String)>,
}

fn mounts_at<'a>(
    spec: &'a Spec,
    dest: &'a str,
) -> impl Iterator<Item = &'a oci_spec::runtime::Mount> {
    spec.mounts()
        .iter()
        .flatten()
        .filter(move |m| m.destination() == Path::new(dest))
}

fn has_mount(spec: &Spec, dest: &str, typ: &str) -> bool {
    mounts_at(spec, dest).any(|m| m.typ().as_deref() == Some(typ))
}

impl Interface {
    /// Checks that config.json gives what the interface builds on (its own
    /// /proc and /sys: the interface makes them what systemd expects, it
    /// does not invent them), and takes the container's identity: the
    /// guest's machine id, or a new UUID.
    pub fn prepare(spec: &Spec, rootfs: &Path) -> Result<Interface, String> {
        for (dest, typ) in [("/proc", "proc"), ("/sys", "sysfs")] {
            if !has_mount(spec, dest, typ) {
                return Err(format!(
                    "{ANNOTATION}: config.json must mount {typ} on {dest} (the container interface makes it read-only where systemd expects that)"
                ));
            }
        }
        let uuid = crate::supervisor::identity::guest_or_random_uuid(rootfs)
            .map_err(|e| format!("{ANNOTATION}: {e}"))?;
        let (host_os_release, host_os_pairs) = crate::supervisor::identity::host_os_release();
        Ok(Interface {
            uuid,
            host_os_release,
            host_os_pairs,
        })
    }

    /// PID 1's environment: the interface's variables, then config.json's,
    /// which replace a variable of the same name.
    pub fn env(&self, config: &[String]) -> Vec<String> {
        let mut env: Vec<String> =
            crate::policy::env::interface_vars(&self.uuid, &self.host_os_pairs)
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
        for e in config {
            let name = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
            match env
                .iter_mut()
                .find(|x| x.split_once('=').map_or(x.as_str(), |(k, _)| k) == name)
            {
                Some(slot) => slot.clone_from(e),
                None => env.push(e.clone()),
            }
        }
        env
    }

    /// Before config.json's mounts: a /run of the container's own, unless the
    /// config mounts one (its mounts below /run then land on ours).
    pub fn before(&self, spec: &Spec) -> Vec<Op> {
        if mounts_at(spec, "/run").next().is_some() {
            vec![]
        } else {
            vec![mounts::run_tmpfs()]
        }
    }

    /// After config.json's mounts (and before its masked and read-only
    /// paths): /run/host, the cgroup2 tree where the config has none, the
    /// hidden fusectl, a read-only /proc/sys.
    pub fn after(&self, spec: &Spec, user_namespace: bool) -> Vec<Op> {
        let mode = Mode {
            private_network: false,
            uid_shift: user_namespace.then_some(0),
        };
        let mut ops: Vec<Op> = mounts::run_host(&self.uuid, self.host_os_release.as_deref())
            .into_iter()
            .filter(|(when, _)| mode.holds(*when))
            .map(|(_, op)| op)
            .collect();
        ops.extend(mounts::seal_run_host(self.host_os_release.as_deref()));
        if mounts_at(spec, "/sys/fs/cgroup").next().is_none() {
            ops.push(mounts::cgroup2());
        }
        ops.push(mounts::fuse_hidden());
        let ro = spec
            .linux()
            .as_ref()
            .and_then(|l| l.readonly_paths().clone())
            .unwrap_or_default();
        if !ro.iter().any(|p| p == "/proc/sys") {
            ops.push(mounts::read_only("/proc/sys", false));
        }
        ops
    }
}

/// How the interface changes a config mount's flags: sysfs read-only (the
/// kernel's devices and knobs are the host's), the cgroup tree writable (the
/// guest's systemd manages its delegated subtree).
pub fn adjust(typ: &str, flags: MsFlags) -> MsFlags {
    match typ {
        "sysfs" => flags | MsFlags::MS_RDONLY,
        "cgroup" | "cgroup2" => flags & !MsFlags::MS_RDONLY,
        _ => flags,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: serde_json::Value) -> Spec {
        let mut v = serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "process": {"args": ["/sbin/init"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["ro"]},
            ],
            "annotations": {ANNOTATION: "true"},
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                o.insert(k.clone(), x.clone());
            }
        }
        serde_json::from_value(v).unwrap()
    }

    fn iface() -> Interface {
        Interface {
            uuid: uuid::Uuid::from_u128(7),
            host_os_release: None,
            host_os_pairs: vec![("container_host_id".into(), "debian".into())],
        }
    }

    #[test]
    fn the_config_env_wins_over_the_interface() {
        let env = iface().env(&["container=podman".into(), "FOO=1".into()]);
        assert!(env.contains(&"container=podman".to_string()));
        assert!(!env.contains(&"container=nixrun".to_string()));
        assert!(env.contains(&"container_uuid=00000000-0000-0000-0000-000000000007".to_string()));
        assert!(env.contains(&"NOTIFY_SOCKET=/run/host/notify".to_string()));
        assert!(env.contains(&"container_host_id=debian".to_string()));
        assert_eq!(env.last(), Some(&"FOO=1".to_string()));
    }

    #[test]
    fn run_and_cgroup_are_added_only_where_the_config_has_none() {
        let s = spec(serde_json::json!({}));
        assert!(wanted(&s));
        assert_eq!(iface().before(&s), vec![mounts::run_tmpfs()]);
        let after = iface().after(&s, false);
        assert!(after.contains(&mounts::cgroup2()));
        assert!(after.contains(&Op::NotifySocket));
        assert!(after.contains(&mounts::read_only("/proc/sys", false)));
        // /run/host is read-only once everything is in it.
        let ro = after
            .iter()
            .position(|o| o == &mounts::read_only("/run/host", false))
            .unwrap();
        assert!(after[..ro]
            .iter()
            .all(|o| o.path().is_some_and(|p| p.starts_with("/run/host"))));

        let s = spec(serde_json::json!({
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/sys", "type": "sysfs", "source": "sysfs"},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]},
                {"destination": "/run", "type": "tmpfs", "source": "tmpfs"},
            ],
            "linux": {"readonlyPaths": ["/proc/sys"]},
        }));
        assert!(iface().before(&s).is_empty());
        let after = iface().after(&s, false);
        assert!(!after.contains(&mounts::cgroup2()));
        assert!(!after.contains(&mounts::read_only("/proc/sys", false)));
    }

    #[test]
    fn device_nodes_only_without_a_user_namespace() {
        let s = spec(serde_json::json!({}));
        let nodes = |userns| {
            iface()
                .after(&s, userns)
                .iter()
                .filter(|o| {
                    matches!(o, Op::Node { kind, .. }
                        if *kind == nix::sys::stat::SFlag::S_IFCHR)
                })
                .count()
        };
        assert_eq!(nodes(false), 1);
        assert_eq!(nodes(true), 0);
    }

    #[test]
    fn sysfs_read_only_cgroup_writable() {
        assert!(adjust("sysfs", MsFlags::empty()).contains(MsFlags::MS_RDONLY));
        assert!(!adjust("cgroup", MsFlags::MS_RDONLY).contains(MsFlags::MS_RDONLY));
        assert_eq!(adjust("tmpfs", MsFlags::MS_NOSUID), MsFlags::MS_NOSUID);
    }

    #[test]
    fn proc_and_sys_must_come_from_the_config() {
        let s = spec(serde_json::json!({"mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"}
        ]}));
        let e = Interface::prepare(&s, Path::new("/nonexistent"))
            .err()
            .unwrap();
        assert!(e.contains("sysfs on /sys"), "{e}");
    }
}
