//! Whole-OS guests booted by nixrun: the Debian guest with -b, the NixOS-shaped
//! guest via its profile's init (as container@.service starts it), and the
//! lifecycle around them: stop, reboot, supervisor death.

mod common;

use common::*;
use std::path::Path;
use std::time::{Duration, Instant};

fn debian_copy(tag: &str) -> (TempRoot, std::path::PathBuf) {
    let (t, root) = TempRoot::copy_of(tag, &fixture("debian"), tag);
    install_probe(&root);
    (t, root)
}

/// Boot checks every systemd guest must pass, run from inside the container.
fn assert_booted_guest(c: &mut Spawned, machine: &str) {
    let state = c.exec(&["systemctl", "is-system-running", "--wait"]);
    let failed = c.sh("systemctl --failed --no-legend --plain");
    assert_eq!(
        String::from_utf8_lossy(&state.stdout).trim(),
        "running",
        "is-system-running; failed units: {failed}\nlog:\n{}",
        c.log_text()
    );
    assert_eq!(failed.trim(), "", "failed units in the guest");

    assert_eq!(c.sh("hostname").trim(), machine);
    let init = c.sh("tr '\\0' ' ' < /proc/1/cmdline");
    assert!(
        init.contains("systemd"),
        "PID 1 is {init:?}, not the guest's systemd"
    );
    let virt = c.exec(&["systemd-detect-virt", "--container"]);
    assert!(
        virt.status.success(),
        "systemd-detect-virt does not see a container"
    );

    // The container interface's copy of the host's os-release, mounted once
    // (a second, hidden mount of it was left below a read-only /run/host).
    assert_eq!(
        c.sh("cat /run/host/os-release"),
        std::fs::read_to_string("/etc/os-release").unwrap()
    );
    assert_eq!(
        c.sh("grep -c ' /run/host/os-release ' /proc/self/mountinfo")
            .trim(),
        "1"
    );

    // No host process is visible: the supervisor is a host process.
    let cmdlines = c.sh("cat /proc/[0-9]*/cmdline | tr '\\0' ' '");
    assert!(
        !cmdlines.contains(NIXRUN.as_str()),
        "a host process is visible in the guest: {cmdlines}"
    );
}

fn assert_api_filesystems(c: &mut Spawned) {
    let f = facts(&c.sh("nixrun-probe facts"));
    assert_eq!(f["ro./sys"], "1", "/sys must be read-only");
    assert_eq!(f["ro./proc/sys"], "1", "/proc/sys must be read-only");
    assert_eq!(f["fstype./sys/fs/cgroup"], "cgroup2");
    let mk =
        c.sh("nixrun-probe mkdir /sys/fs/cgroup/nixrun-test && rmdir /sys/fs/cgroup/nixrun-test");
    assert_eq!(
        mk.trim(),
        "ok",
        "the guest's own cgroup subtree must be writable"
    );
    // What systemd and systemd-detect-virt read: PID 1's environment.
    let env = c.sh("tr '\\0' '\\n' < /proc/1/environ");
    assert!(
        env.lines().any(|l| l == "container=nixrun"),
        "PID 1 env: {env}"
    );
    assert!(
        env.lines().any(|l| l == "NOTIFY_SOCKET=/run/host/notify"),
        "PID 1 env: {env}"
    );
    // The guest's cgroup namespace starts at the container's cgroup: its PID 1
    // sits at the top of what it sees, in its own init.scope.
    let cg = c.sh("cat /proc/1/cgroup");
    assert!(
        cg.lines().any(|l| l == "0::/init.scope"),
        "PID 1's cgroups: {cg}"
    );
    // Hybrid hosts list their v1 controllers too; none may show a path above ours.
    assert!(
        cg.lines()
            .filter(|l| !l.starts_with("0::"))
            .all(|l| l.ends_with(":/")),
        "PID 1's cgroups: {cg}"
    );
    let write = c.sh("nixrun-probe write /sys/kernel/nixrun-test");
    assert_eq!(write.trim(), "EROFS");
}

/// The guest's /sys/fs/cgroup is the container's cgroup on the host, nothing more.
fn assert_cgroup_view(c: &mut Spawned, host_dir: &Path) {
    let inside: std::collections::BTreeSet<String> = c
        .sh("ls /sys/fs/cgroup")
        .lines()
        .map(str::to_string)
        .collect();
    let outside: std::collections::BTreeSet<String> = std::fs::read_dir(host_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(inside.contains("init.scope") && inside.contains("system.slice"));
    assert_eq!(
        inside,
        outside,
        "the guest's /sys/fs/cgroup is not {}",
        host_dir.display()
    );
}

fn stop_cleanly(c: &mut Spawned) {
    let leader = c.leader();
    c.signal(libc::SIGTERM);
    let st = c.wait_exit(STOP_TIMEOUT);
    assert_eq!(
        exit_code(st),
        0,
        "SIGTERM must end in a clean guest shutdown; log:\n{}",
        c.log_text()
    );
    let log = c.log_text();
    assert!(
        log.contains("Halting system") || log.contains("System Halt"),
        "the guest did not halt itself; log:\n{log}"
    );
    assert!(gone(leader), "the guest's PID 1 survived");
}

#[test]
fn debian_guest_boots_to_running_and_halts_on_sigterm() {
    let (_t, root) = debian_copy("deb-boot");
    let snap = HostSnapshot::take("deb-boot");
    let mut c = Spawned::start(&["-D", root.to_str().unwrap(), "-b", "--notify-ready=yes"]);
    c.wait_ready(BOOT_TIMEOUT);
    assert_booted_guest(&mut c, "deb-boot");
    assert_api_filesystems(&mut c);
    // The guest's namespace starts at the payload, below the machine's cgroup
    // (where host-set limits stay out of its reach).
    assert_cgroup_view(&mut c, &machine_cgroups("deb-boot")[0].join("payload"));
    // The console reaches nixrun's stdout.
    assert!(
        c.log_text().contains("Reached target"),
        "no boot messages on stdout"
    );
    stop_cleanly(&mut c);
    snap.assert_unchanged();
}

#[test]
fn nixos_shaped_guest_boots_from_its_profile_in_a_unit() {
    let snap = HostSnapshot::take("nixos-boot");
    let g = NixosGuest::start(
        "nixos-boot",
        &["--link-journal=try-guest", "--setenv", "PRIVATE_NETWORK="],
    );
    let (root, unit, mut c) = (&g.root, &g.unit, g.spawned);
    c.wait_ready(BOOT_TIMEOUT);
    assert_booted_guest(&mut c, "nixos-boot");
    assert_eq!(unit.subgroups(), vec!["payload", "supervisor"]);
    assert_cgroup_view(&mut c, &unit.v2().join("payload"));
    let w = c.sh("/nixrun-probe write /nix/store/nixrun-test");
    assert_eq!(w.trim(), "EROFS", "the store must be read-only");
    let f = facts(&c.sh("/nixrun-probe facts"));
    assert_eq!(f["ro./nix/store"], "1");
    assert_eq!(f["ro./sys"], "1");
    let id: String = c.sh("cat /run/host/container-uuid").trim().replace('-', "");
    stop_cleanly(&mut c);
    // try-guest links the journal only where the host keeps one; it is the
    // feature, not a leftover, but this test's guest is temporary.
    let link = Path::new("/var/log/journal").join(&id);
    if Path::new("/var/log/journal").is_dir() {
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            root.join("var/log/journal").join(&id)
        );
        std::fs::remove_file(&link).unwrap();
    } else {
        assert!(!link.exists());
    }
    assert_eq!(
        unit.subgroups(),
        Vec::<String>::new(),
        "payload/supervisor left in the unit"
    );
    snap.assert_unchanged();
}

#[test]
fn guest_reboot_with_keep_unit_exits_133() {
    let (_t, root) = debian_copy("deb-reboot-ku");
    let snap = HostSnapshot::take("deb-reboot-ku");
    let unit = UnitCgroup::new("deb-reboot-ku");
    let mut cmd = nixrun_cmd(&[
        "--keep-unit",
        "-D",
        root.to_str().unwrap(),
        "-b",
        "--notify-ready=yes",
    ]);
    unit.enter(&mut cmd);
    let mut c = Spawned::start_cmd(cmd);
    c.wait_ready(BOOT_TIMEOUT);
    // The connection may drop as the guest goes down; the exit status tells.
    let _ = c.exec(&["systemctl", "reboot"]);
    let st = c.wait_exit(STOP_TIMEOUT);
    assert_eq!(exit_code(st), 133, "log:\n{}", c.log_text());
    assert_eq!(unit.subgroups(), Vec::<String>::new());
    snap.assert_unchanged();
}

#[test]
fn guest_reboot_without_keep_unit_boots_it_again() {
    let (_t, root) = debian_copy("deb-reboot");
    let snap = HostSnapshot::take("deb-reboot");
    let mut c = Spawned::start(&["-D", root.to_str().unwrap(), "-b", "--notify-ready=yes"]);
    c.wait_ready(BOOT_TIMEOUT);
    let first = c.leader();
    let _ = c.exec(&["systemctl", "reboot"]);
    c.wait_new_leader(first, BOOT_TIMEOUT);
    c.wait_readies(2, BOOT_TIMEOUT);
    assert!(gone(first), "the first boot's PID 1 is still there");
    assert_booted_guest(&mut c, "deb-reboot");
    stop_cleanly(&mut c);
    snap.assert_unchanged();
}

#[test]
fn killing_the_supervisor_takes_the_guest_down_and_the_next_start_cleans_up() {
    let (_t, root) = debian_copy("deb-sigkill");
    let snap_mounts = HostSnapshot::take("deb-sigkill");
    let cgroups = machine_cgroups("deb-sigkill");
    let mut c = Spawned::start(&["-D", root.to_str().unwrap(), "-b", "--notify-ready=yes"]);
    c.wait_ready(BOOT_TIMEOUT);
    let guest: Vec<String> = processes_in(&cgroups[0]);
    assert!(
        guest.len() > 3,
        "expected a booted guest, found processes {guest:?}"
    );
    c.signal(libc::SIGKILL);
    let _ = c.wait_exit(STOP_TIMEOUT);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<&String> = guest.iter().filter(|p| !gone(p.parse().unwrap())).collect();
        if alive.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "guest processes survived the supervisor: {alive:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(processes_in(&cgroups[0]).is_empty());
    // What the dead supervisor could not remove, the next start of the same
    // machine does.
    let (st, _, err) = run(&[
        "-D",
        root.to_str().unwrap(),
        "-q",
        "/usr/local/bin/nixrun-probe",
        "exit",
        "0",
    ]);
    assert_eq!(exit_code(st), 0, "{err}");
    snap_mounts.assert_unchanged();
}
