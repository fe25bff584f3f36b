//! The minimal guest (an empty root plus the static probe): everything the probe
//! sees was made by nixrun, so these tests check the runtime's own work — the
//! container's environment, readiness, signals, exit statuses and mounts.

mod common;

use common::*;
use std::fs;
use std::time::Duration;

fn minimal_copy(tag: &str) -> (TempRoot, std::path::PathBuf) {
    TempRoot::copy_of(tag, &fixture("minimal"), tag)
}

#[test]
fn the_guest_sees_its_own_world() {
    let (_t, root) = minimal_copy("min-facts");
    let snap = HostSnapshot::take("min-facts");
    let (st, out, err) = run_probe(
        &root,
        &[
            "--uuid=0123456789abcdef0123456789abcdef",
            "--setenv=PATH=/custom:/bin",
        ],
        &["facts"],
    );
    assert_eq!(st, 0, "{err}");
    let f = facts(&out);
    assert_eq!(
        f["pid"], "1",
        "the command must be PID 1 of a new pid namespace"
    );
    assert_eq!(
        f["proc_pids"], "1",
        "processes other than the guest's are visible"
    );
    assert_eq!(f["hostname"], "min-facts");
    assert_eq!(f["uid"], "0");
    assert_eq!(f["cwd"], "/");
    assert_eq!(f["env.container"], "nixrun");
    assert_eq!(
        f["env.container_uuid"],
        "01234567-89ab-cdef-0123-456789abcdef"
    );
    assert_eq!(f["env.NOTIFY_SOCKET"], "/run/host/notify");
    assert_eq!(f["env.PATH"], "/custom:/bin", "--setenv must win");
    assert_eq!(f["ro./sys"], "1");
    assert_eq!(f["ro./proc/sys"], "1");
    assert_eq!(f["ro./run/host"], "1");
    assert_eq!(f["ro./"], "0");
    for (path, fstype) in [
        ("/proc", "proc"),
        ("/sys", "sysfs"),
        ("/sys/fs/cgroup", "cgroup2"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/run", "tmpfs"),
        ("/tmp", "tmpfs"),
    ] {
        assert_eq!(f[&format!("fstype.{path}")], fstype, "{path}");
    }
    // At the root of its own cgroup namespace, in every hierarchy (hybrid hosts
    // list their v1 controllers too).
    let cg: Vec<&str> = f["cgroup"].split(';').collect();
    assert!(cg.contains(&"0::/"), "cgroup: {cg:?}");
    assert!(
        cg.iter().all(|l| l.ends_with(":/")),
        "the guest sees cgroups above its own: {cg:?}"
    );
    let dev: Vec<&str> = f["dev"].split(',').collect();
    for node in [
        "null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "mqueue",
        "console", "net",
    ] {
        assert!(dev.contains(&node), "/dev/{node} missing: {dev:?}");
    }
    // Only stdio reaches the guest.
    let fds: Vec<&str> = f["fds"]
        .split(',')
        .map(|s| s.split(':').next().unwrap())
        .collect();
    assert_eq!(fds, vec!["0", "1", "2"], "fds: {}", f["fds"]);
    snap.assert_unchanged();
}

/// The probe's facts from `nixrun FLAGS -D ROOT -q /nixrun-probe facts`,
/// started through `wrapper` (a command that execs its arguments), which must
/// succeed.
fn facts_under(
    wrapper: &[&str],
    flags: &[&str],
    root: &std::path::Path,
) -> std::collections::HashMap<String, String> {
    let mut cmd = std::process::Command::new(wrapper[0]);
    cmd.args(&wrapper[1..]).arg(&*NIXRUN).args(flags).args([
        "-D",
        root.to_str().unwrap(),
        "-q",
        "/nixrun-probe",
        "facts",
    ]);
    let (st, out, err) = run_cmd(cmd);
    assert_eq!(exit_code(st), 0, "{wrapper:?} {flags:?}: {err}");
    facts(&out)
}

/// Where nixrun manages cgroup2 only, the guest is born in its payload
/// (clone3's CLONE_INTO_CGROUP): no process is moved into a cgroup by a
/// write to cgroup.procs, the first of which after a quiet spell waits a
/// whole RCU grace period in the kernel. Where a v1 hierarchy is managed
/// (this host as it is, if hybrid), the same trace shows the moves.
#[test]
fn on_a_cgroup2_only_host_the_guest_is_born_in_its_cgroup() {
    let (t, root) = minimal_copy("min-born");
    let snap = HostSnapshot::take("min-born");
    let log = t.path("strace.log");
    let args = ["-D", root.to_str().unwrap(), "-q", "/nixrun-probe", "facts"];
    let trace = |log: &std::path::Path, more: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = ["-f", "-qq", "-e", "trace=openat,open,clone3"]
            .iter()
            .chain(more)
            .map(|s| s.to_string())
            .collect();
        a.extend(["-o".to_string(), log.to_str().unwrap().to_string()]);
        a
    };
    let strace = trace(&log, &[]);
    let strace: Vec<&str> = strace.iter().map(String::as_str).collect();
    let (st, out, err) = run_cmd(nixrun_on_cgroup2_only(&args, &strace));
    assert_eq!(exit_code(st), 0, "{err}");
    let f = facts(&out);
    assert_eq!(f["pid"], "1");
    // At the root of its own cgroup namespace: its payload (a hybrid
    // kernel lists its v1 hierarchies too, each at the namespace's root).
    let cg: Vec<&str> = f["cgroup"].split(';').collect();
    assert!(cg.contains(&"0::/"), "cgroup: {cg:?}");
    assert!(cg.iter().all(|l| l.ends_with(":/")), "cgroup: {cg:?}");
    let moves = |log: &std::path::Path| -> Vec<String> {
        fs::read_to_string(log)
            .unwrap()
            .lines()
            .filter(|l| l.contains("/cgroup.procs\"") && l.contains("O_WRONLY"))
            .map(str::to_string)
            .collect()
    };
    let moved = moves(&log);
    assert!(moved.is_empty(), "processes moved into cgroups: {moved:#?}");
    snap.assert_unchanged();

    // Where clone3 is refused (container engines' seccomp profiles return
    // ENOSYS for it), PID 1 is cloned as before and moved.
    let log = t.path("strace-enosys.log");
    let strace = trace(&log, &["-e", "inject=clone3:error=ENOSYS"]);
    let strace: Vec<&str> = strace.iter().map(String::as_str).collect();
    let cmd = nixrun_on_cgroup2_only(&args, &strace);
    let (st, out, err) = run_cmd(cmd);
    assert_eq!(exit_code(st), 0, "{err}");
    assert!(facts(&out)["cgroup"].split(';').any(|l| l == "0::/"));
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("ENOSYS") && text.contains("INJECTED"),
        "{text}"
    );
    assert!(
        !moves(&log).is_empty(),
        "PID 1 not moved after clone3 failed"
    );
    snap.assert_unchanged();

    // The check sees moves where there are some: with v1 hierarchies to
    // manage, and with --keep-unit (nixrun moves itself into supervisor/).
    let hybrid = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.contains(" - cgroup cgroup ") && l.contains("devices"));
    if hybrid {
        let log = t.path("strace-hybrid.log");
        let mut cmd = std::process::Command::new("strace");
        cmd.args(["-f", "-qq", "-e", "trace=openat,open", "-o"])
            .arg(&log)
            .arg(&*NIXRUN)
            .args(args);
        let (st, _, err) = run_cmd(cmd);
        assert_eq!(exit_code(st), 0, "{err}");
        assert!(!moves(&log).is_empty(), "no move seen on a hybrid host");
    }
    snap.assert_unchanged();
}

/// The nodes nixrun makes get the table's modes whatever the caller's umask
/// (the tree is built with the umask at 0), and the guest gets the caller's
/// umask back.
#[test]
fn modes_are_the_tables_and_the_guest_keeps_the_callers_umask() {
    let (_t, root) = minimal_copy("min-modes");
    // With -U the tree is built by the outer child, PID 1's parent.
    for (umask, userns) in [
        (0o022, &[][..]),
        (0o077, &[][..]),
        (0o000, &[][..]),
        (0o077, &["-U"][..]),
    ] {
        let umask_is = format!("umask {umask:03o} && exec \"$0\" \"$@\"");
        let f = facts_under(&["sh", "-c", &umask_is], userns, &root);
        assert_eq!(f["umask"], format!("{umask:04o}"), "the guest's umask");
        for (path, mode) in [
            ("/dev/null", "666"),
            ("/dev/zero", "666"),
            ("/dev/full", "666"),
            ("/dev/random", "666"),
            ("/dev/urandom", "666"),
            ("/dev/tty", "666"),
            ("/dev/net/tun", "666"),
            ("/run/host", "755"),
            ("/run/host/notify", "755"),
            ("/run/host/container-uuid", "444"),
            ("/run/host/inaccessible", "555"),
            ("/run/host/inaccessible/reg", "0"),
            ("/run/host/inaccessible/dir", "0"),
            ("/run/host/inaccessible/fifo", "0"),
        ] {
            assert_eq!(
                f[&format!("mode.{path}")],
                mode,
                "{path} with umask {umask:o}"
            );
        }
    }
}

/// The supervisor moves the child off its own CPU while both set up (they
/// run in parallel); the guest still gets the caller's CPU affinity, be it
/// every CPU or one.
#[test]
fn the_guest_keeps_the_callers_cpu_affinity() {
    let (_t, root) = minimal_copy("min-cpus");
    let own = fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Cpus_allowed_list:")
                .map(|v| v.trim().to_string())
        })
        .unwrap();
    let last = own.rsplit([',', '-']).next().unwrap().to_string();
    // With -U, PID 1 is cloned by the outer child, which the move reached.
    for userns in [&[][..], &["-U"]] {
        for (mask, want) in [(own.as_str(), &own), (last.as_str(), &last)] {
            let f = facts_under(&["taskset", "-c", mask], userns, &root);
            assert_eq!(
                &f["cpus"], want,
                "the guest's CPUs under taskset -c {mask} {userns:?}"
            );
        }
    }
}

#[test]
fn the_console_is_a_pty_that_reaches_stdout() {
    let (_t, root) = minimal_copy("min-console");
    let (st, out, err) = run_probe(&root, &["--console=read-only"], &["facts"]);
    assert_eq!(st, 0, "{err}");
    let f = facts(&out);
    // PID 1's stdio is the pty bound at /dev/console (the echo test below shows
    // it is a terminal that reaches our stdout).
    assert_eq!(f["console"], "/dev/console,/dev/console");
    // With a pipe console the guest gets our stdio as they are.
    let (st, out, _) = run_probe(&root, &["--console=pipe"], &["facts"]);
    assert_eq!(st, 0);
    assert!(!facts(&out)["console"].contains("/dev/pts/"));
}

/// nixrun's entry (sys/entry.rs) puts /dev/null on a standard fd its caller
/// left closed, as std's start-up did: otherwise the first file nixrun opens
/// (the root's lock file) becomes its fd 0, and the first error message
/// written to a closed fd 2 would land in whatever file took that number.
#[test]
fn a_closed_stdin_becomes_dev_null_not_nixruns_first_file() {
    let (_t, root) = minimal_copy("min-closed-stdin");
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "exec \"$0\" \"$@\" <&-", NIXRUN.as_str()])
        .args(["-D", root.to_str().unwrap(), "-q", "--console=pipe"])
        .args(["/nixrun-probe", "wait-signal"]);
    let mut c = Spawned::start_cmd(cmd);
    // Running the guest: every file of the start is open by now.
    c.leader();
    let fd0 = fs::read_link(format!("/proc/{}/fd/0", c.pid()));
    c.signal(libc::SIGTERM);
    c.wait_exit(STOP_TIMEOUT);
    assert_eq!(
        fd0.expect("nixrun's fd 0").to_string_lossy(),
        "/dev/null",
        "nixrun's stdin, closed by its caller"
    );
}

#[test]
fn exit_status_of_the_guest_is_nixrun_s() {
    let (_t, root) = minimal_copy("min-exit");
    for (code, want) in [(0, 0), (7, 7), (133, 1)] {
        let (st, _, err) = run_probe(&root, &[], &["exit", &code.to_string()]);
        // 133 would make container@.service restart the guest; only a reboot may.
        assert_eq!(st, want, "guest exit {code}: {err}");
    }
}

#[test]
fn guest_poweroff_exits_0() {
    let (_t, root) = minimal_copy("min-poweroff");
    let (st, _, err) = run_probe(&root, &[], &["poweroff"]);
    assert_eq!(st, 0, "{err}");
}

#[test]
fn guest_reboot_restarts_it_or_exits_133_with_keep_unit() {
    let (_t, root) = minimal_copy("min-reboot");
    let snap = HostSnapshot::take("min-reboot");
    // Without --keep-unit nixrun boots the guest again itself: the probe reboots
    // on every start, so the leader keeps changing until we stop it.
    let mut c = Spawned::start(&[
        "-D",
        root.to_str().unwrap(),
        "-q",
        "/nixrun-probe",
        "reboot",
    ]);
    let first = c.wait_new_leader(0, Duration::from_secs(10));
    let second = c.wait_new_leader(first, Duration::from_secs(10));
    c.wait_new_leader(second, Duration::from_secs(10));
    c.signal(libc::SIGTERM);
    assert_ne!(exit_code(c.wait_exit(STOP_TIMEOUT)), 133);
    snap.assert_unchanged();

    let unit = UnitCgroup::new("min-reboot");
    let mut cmd = nixrun_cmd(&[
        "--keep-unit",
        "-D",
        root.to_str().unwrap(),
        "-q",
        "/nixrun-probe",
        "reboot",
    ]);
    unit.enter(&mut cmd);
    let (st, _, err) = run_cmd(cmd);
    assert_eq!(exit_code(st), 133, "{err}");
    assert_eq!(unit.subgroups(), Vec::<String>::new());
}

#[test]
fn sigterm_sends_the_kill_signal_and_a_second_one_kills() {
    let (_t, root) = minimal_copy("min-sig");
    let rtmin = libc::SIGRTMIN();
    let mut c = Spawned::start(&[
        "-D",
        root.to_str().unwrap(),
        "--kill-signal=SIGRTMIN+3",
        "/nixrun-probe",
        "wait-signal",
    ]);
    c.leader();
    // The probe says "waiting" once its handlers are installed; a PID 1 without a
    // handler would never see the signal.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !c.log_text().contains("waiting") {
        assert!(
            std::time::Instant::now() < deadline,
            "the probe never got ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    c.signal(libc::SIGTERM);
    assert_eq!(
        exit_code(c.wait_exit(STOP_TIMEOUT)),
        0,
        "log:\n{}",
        c.log_text()
    );
    assert!(
        c.log_text().contains(&format!("signal {}", rtmin + 3)),
        "the guest did not get SIGRTMIN+3; log:\n{}",
        c.log_text()
    );
    assert!(
        c.notified.stopping,
        "STOPPING=1 was not relayed to the host"
    );

    // A guest that ignores the signal: the first SIGTERM is not enough, the second is.
    let mut c = Spawned::start(&[
        "-D",
        root.to_str().unwrap(),
        "--kill-signal=SIGRTMIN+3",
        "/nixrun-probe",
        "sleep",
        "60",
    ]);
    c.leader();
    c.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        c.try_status().is_none(),
        "one SIGTERM killed a guest that ignores the kill signal"
    );
    c.signal(libc::SIGTERM);
    let st = c.wait_exit(Duration::from_secs(10));
    assert_ne!(exit_code(st), 0);
}

#[test]
fn readiness_is_relayed_from_the_guest_with_notify_ready() {
    let (_t, root) = minimal_copy("min-ready");
    // The guest says READY=1 and a status, then keeps running.
    let mut c = Spawned::start(&[
        "-D",
        root.to_str().unwrap(),
        "--notify-ready=yes",
        "-q",
        "/nixrun-probe",
        "notify",
        "READY=1",
        "STATUS=all good",
    ]);
    c.wait_ready(Duration::from_secs(30));
    let st = c.wait_exit(STOP_TIMEOUT);
    assert_eq!(exit_code(st), 0);
    assert!(
        c.notified
            .statuses
            .iter()
            .any(|s| s == "Container running: all good"),
        "statuses: {:?}",
        c.notified.statuses
    );

    // A guest that never says READY=1 is never reported ready...
    let mut c = Spawned::start(&[
        "-D",
        root.to_str().unwrap(),
        "--notify-ready=yes",
        "-q",
        "/nixrun-probe",
        "sleep",
        "1",
    ]);
    let st = c.wait_exit(STOP_TIMEOUT);
    assert_eq!(exit_code(st), 0);
    assert_eq!(
        c.notified.ready_after, None,
        "READY=1 relayed although the guest never sent it"
    );
    // ...unless readiness is nixrun's own (the default): ready once init runs.
    let mut c = Spawned::start(&[
        "-D",
        root.to_str().unwrap(),
        "-q",
        "/nixrun-probe",
        "sleep",
        "1",
    ]);
    c.wait_ready(Duration::from_secs(30));
    assert_eq!(exit_code(c.wait_exit(STOP_TIMEOUT)), 0);
}

#[test]
fn binds_and_tmpfs_behave_as_in_nspawn() {
    let (t, root) = minimal_copy("min-binds");
    let ro = t.path("ro");
    let rw = t.path("rw");
    fs::create_dir_all(&ro).unwrap();
    fs::create_dir_all(&rw).unwrap();
    fs::write(ro.join("hello"), "hi").unwrap();
    let snap = HostSnapshot::take("min-binds");
    let args = |probe: &[&str]| -> (i32, String) {
        let mut a: Vec<String> = vec![
            "-D".into(),
            root.to_str().unwrap().into(),
            "-q".into(),
            format!("--bind-ro={}:/mnt/ro", ro.display()),
            format!("--bind={}:/mnt/rw", rw.display()),
            "--tmpfs=/mnt/tmp".into(),
            "/nixrun-probe".into(),
        ];
        a.extend(probe.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        let (st, out, err) = run(&refs);
        assert!(st.success(), "{err}");
        (0, out)
    };
    assert_eq!(args(&["write", "/mnt/ro/x"]).1.trim(), "EROFS");
    assert_eq!(args(&["write", "/mnt/rw/x"]).1.trim(), "ok");
    assert!(
        rw.join("x").exists(),
        "a write to --bind did not reach the host"
    );
    assert_eq!(args(&["write", "/mnt/tmp/x"]).1.trim(), "ok");
    assert!(
        !root.join("mnt/tmp/x").exists(),
        "--tmpfs wrote through to the root"
    );
    let f = facts(&args(&["facts"]).1);
    assert_eq!(f["fstype./tmp"], "tmpfs");
    snap.assert_unchanged();
}

/// On a terminal the console is interactive: keystrokes reach the guest's pty (its
/// line discipline echoes them back through nixrun), ^] three times kills the
/// container, and the terminal's settings are restored afterwards.
#[test]
fn interactive_console_relays_keys_and_escapes_with_ctrl_bracket() {
    use nix::pty::openpty;
    use nix::sys::termios::tcgetattr;
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    let (_t, root) = minimal_copy("min-tty");
    let snap = HostSnapshot::take("min-tty");
    let pty = openpty(None, None).expect("openpty");
    let before = tcgetattr(pty.slave.as_fd()).unwrap();
    let mut cmd = nixrun_cmd(&["-D", root.to_str().unwrap(), "/nixrun-probe", "sleep", "60"]);
    let slave = std::fs::File::from(pty.slave.try_clone().unwrap());
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave);
    let mut child = cmd.spawn().expect("spawn nixrun");
    let mut master = std::fs::File::from(pty.master);

    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let mut reader = master.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut seen = String::new();
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = tx.send(seen.clone());
        }
    });
    let wait_for = |needle: &str| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(seen) if seen.contains(needle) => return,
                Ok(_) => {}
                Err(_) => panic!("{needle:?} never appeared on the terminal"),
            }
        }
    };
    wait_for("Press ^] three times");
    // Raw mode: our terminal no longer echoes, so an echo can only come from the
    // guest's pty, through nixrun.
    let raw = tcgetattr(master.as_fd()).unwrap();
    assert!(
        !raw.local_flags
            .contains(nix::sys::termios::LocalFlags::ECHO),
        "terminal not in raw mode"
    );
    master.write_all(b"typed-into-the-guest\r").unwrap();
    wait_for("typed-into-the-guest");
    master.write_all(b"\x1d\x1d\x1d").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "^]^]^] did not kill the container"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!st.success(), "a killed container must not report success");
    let after = tcgetattr(master.as_fd()).unwrap();
    assert_eq!(
        before.local_flags, after.local_flags,
        "terminal left in raw mode"
    );
    assert_eq!(
        before.input_flags, after.input_flags,
        "terminal left in raw mode"
    );
    snap.assert_unchanged();
}

/// --link-journal=guest: the host's /var/log/journal/<machine id> points at the
/// guest's journal directory (what `journalctl -m` follows).
#[test]
fn link_journal_guest_links_the_hosts_journal_to_the_guests() {
    let (_t, root) = minimal_copy("min-journal");
    let host_dir = std::path::Path::new("/var/log/journal");
    let made_host_dir = !host_dir.exists();
    if made_host_dir {
        fs::create_dir_all(host_dir).unwrap();
    }
    let id = "5eed0123456789abcdef0123456789ab";
    let uuid = format!("--uuid={id}");
    let (st, _, err) = run_probe(&root, &[&uuid, "--link-journal=guest"], &["exit", "0"]);
    let link = host_dir.join(id);
    let target = fs::read_link(&link);
    let _ = fs::remove_file(&link);
    if made_host_dir {
        let _ = fs::remove_dir(host_dir);
    }
    assert_eq!(st, 0, "{err}");
    assert_eq!(
        target.expect("no link on the host"),
        root.join("var/log/journal").join(id)
    );
    assert!(root.join("var/log/journal").join(id).is_dir());
}

#[test]
fn register_auto_says_once_that_machined_is_not_there_and_boots() {
    // This host has no system bus (no systemd as PID 1): the default
    // --register=auto must not stop a container, only say so, once.
    assert!(
        !std::path::Path::new("/run/dbus/system_bus_socket").exists(),
        "this test needs a host without a system bus (the VM test covers machined)"
    );
    let (_t, root) = minimal_copy("min-register");
    let snap = HostSnapshot::take("min-register");
    let (st, out, err) = run(&["-D", root.to_str().unwrap(), "/nixrun-probe", "exit", "0"]);
    assert_eq!(exit_code(st), 0, "{out}{err}");
    let notices: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("not registered with systemd-machined"))
        .collect();
    assert_eq!(notices.len(), 1, "{err}");
    // With --register=no nothing is tried, nothing said.
    let (st, _, err) = run(&[
        "-D",
        root.to_str().unwrap(),
        "--register=no",
        "/nixrun-probe",
        "exit",
        "0",
    ]);
    assert_eq!(exit_code(st), 0);
    assert!(!err.contains("machined"), "{err}");
    snap.assert_unchanged();
}
