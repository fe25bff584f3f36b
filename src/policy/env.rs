//! The environment of the guest's PID 1: the container interface's variables
//! ($container, $container_uuid, $container_host_*, $NOTIFY_SOCKET), then the
//! user's --setenv.

use super::Facts;
use crate::plan::Plan;

/// The host's os-release fields the container interface passes on as
/// $container_host_*.
pub fn os_release_pairs(text: &str) -> Vec<(String, String)> {
    const KEYS: &[&str] = &[
        "ID",
        "VERSION_ID",
        "BUILD_ID",
        "VARIANT_ID",
        "IMAGE_ID",
        "IMAGE_VERSION",
    ];
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once('=') else {
            continue;
        };
        if KEYS.contains(&k) {
            let v = v.trim().trim_matches('"').trim_matches('\'');
            out.push((
                format!("container_host_{}", k.to_lowercase()),
                v.to_string(),
            ));
        }
    }
    out
}

/// The container interface's variables: who manages the container, its
/// UUID, where to send sd_notify messages, the host's os-release fields.
/// Shared by both front ends (the OCI one for booted guests).
pub fn interface_vars(
    uuid: &uuid::Uuid,
    host_os_pairs: &[(String, String)],
) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = vec![
        ("container".into(), "nixrun".into()),
        ("container_uuid".into(), uuid.hyphenated().to_string()),
        ("NOTIFY_SOCKET".into(), "/run/host/notify".into()),
    ];
    v.extend(host_os_pairs.iter().cloned());
    v
}

/// PID 1's environment: the container interface's variables, then --setenv (which
/// wins, replacing a variable of the same name in place).
pub fn guest_env(plan: &Plan, facts: &Facts) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
        ("TERM".into(), plan.term.clone()),
        ("HOME".into(), "/root".into()),
        ("USER".into(), "root".into()),
        ("LOGNAME".into(), "root".into()),
    ];
    env.splice(1..1, interface_vars(&facts.uuid, &facts.host_os_pairs));
    for (k, v) in &plan.setenv {
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_fields_and_setenv_order() {
        let pairs = os_release_pairs("PRETTY_NAME=\"Debian\"\nID=debian\nVERSION_ID=\"12\"\n");
        assert_eq!(
            pairs,
            vec![
                ("container_host_id".to_string(), "debian".to_string()),
                ("container_host_version_id".to_string(), "12".to_string())
            ]
        );
        let mut plan = Plan::new("/r".into(), "m");
        plan.setenv = vec![("PATH".into(), "/x".into()), ("FOO".into(), "1".into())];
        let mut facts = Facts::for_tests();
        facts.host_os_pairs = pairs;
        let env = guest_env(&plan, &facts);
        assert_eq!(env[0], ("PATH".into(), "/x".into()));
        assert!(env.contains(&("container".into(), "nixrun".into())));
        assert!(env.contains(&(
            "container_uuid".into(),
            "00000000-0000-0000-0000-000000000001".into()
        )));
        assert!(env.contains(&("NOTIFY_SOCKET".into(), "/run/host/notify".into())));
        assert!(env.contains(&("container_host_id".into(), "debian".into())));
        assert_eq!(env.last(), Some(&("FOO".into(), "1".into())));
    }
}
