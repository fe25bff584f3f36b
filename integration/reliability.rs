//! Reliability under hostile guests and racing starts: one test per defect found
//! by putting nixrun under load and faults (fds sent to the supervisor, parallel
//! starts, early stops, unbounded tmpfs, a stalled stdout, stray signals, names,
//! the task limit). Each test failed on the code before the fix.

mod common;

use common::*;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn minimal_copy(tag: &str) -> (TempRoot, PathBuf) {
    TempRoot::copy_of(tag, &fixture("minimal"), tag)
}

/// Open fds of a process.
fn fd_count(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits until the log has a line starting with `prefix`; returns it.
fn wait_log_line(sp: &mut Spawned, prefix: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(l) = sp.log_text().lines().find(|l| l.starts_with(prefix)) {
            return l.to_string();
        }
        if let Some(st) = sp.try_status() {
            panic!(
                "nixrun exited ({st}) before {prefix:?}; log:\n{}",
                sp.log_text()
            );
        }
        assert!(
            Instant::now() < deadline,
            "no {prefix:?} line within {timeout:?}; log:\n{}",
            sp.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn fds_sent_on_the_notify_socket_are_closed() {
    let (_t, root) = minimal_copy("rel-fds");
    let snap = HostSnapshot::take("rel-fds");
    let mut sp = Spawned::start(&[
        "-D",
        root.to_str().unwrap(),
        "-q",
        "/nixrun-probe",
        "notify-fds",
        "500",
        "253",
    ]);
    let sent = wait_log_line(&mut sp, "sent ", Duration::from_secs(60));
    let n: u32 = sent["sent ".len()..].trim().parse().unwrap();
    assert!(n >= 100, "the probe could only send {n} datagrams: {sent}");
    let fds = fd_count(sp.pid());
    // Its own: stdio, signalfd, channel, console, notify socket, listener, locks.
    assert!(
        fds <= 32,
        "the supervisor holds {fds} fds after {n} datagrams with 253 fds each"
    );
    sp.signal(libc::SIGTERM);
    sp.wait_exit(STOP_TIMEOUT);
    snap.assert_unchanged();
}

/// Lock files nixrun (and nspawn) takes for a root and a machine name.
fn lock_files(root: &Path, machine: &str) -> Vec<PathBuf> {
    let name = root.file_name().unwrap().to_string_lossy();
    vec![
        root.parent().unwrap().join(format!(".#{name}.lck")),
        PathBuf::from(format!("/run/systemd/nspawn/locks/name-{machine}")),
    ]
}

fn assert_busy(args: &[&str], mentions: &str) {
    let started = Instant::now();
    let (st, out, err) = run(args);
    assert_eq!(exit_code(st), 1, "a second container started: {out}{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got {err:?}");
    assert!(lines[0].contains(mentions), "{}", lines[0]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the refusal waited for the lock"
    );
}

#[test]
fn one_container_per_root_and_per_machine_name() {
    let (t, r1) = minimal_copy("rel-lock");
    let r2 = t.path("rel-lock-2");
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&r1)
        .arg(&r2)
        .status()
        .unwrap()
        .success());
    let snap = HostSnapshot::take("rel-lock");
    let mut first = Spawned::start(&[
        "-D",
        r1.to_str().unwrap(),
        "-q",
        "/nixrun-probe",
        "sleep",
        "60",
    ]);
    let leader = first.leader();
    let before = fs::read_dir(&t.base).unwrap().count();
    // The same name on another root.
    assert_busy(
        &[
            "-D",
            r2.to_str().unwrap(),
            "-M",
            "rel-lock",
            "/nixrun-probe",
            "exit",
            "0",
        ],
        "machine name rel-lock is in use",
    );
    // Another name on the same root.
    assert_busy(
        &[
            "-D",
            r1.to_str().unwrap(),
            "-M",
            "other",
            "/nixrun-probe",
            "exit",
            "0",
        ],
        "is currently busy",
    );
    assert_eq!(
        fs::read_dir(&t.base).unwrap().count(),
        before,
        "a refused start left files"
    );
    assert!(!gone(leader), "the running guest was disturbed");
    assert!(!Path::new("/run/systemd/nspawn/locks/name-other").exists());
    first.signal(libc::SIGTERM);
    first.wait_exit(STOP_TIMEOUT);
    for f in lock_files(&r1, "rel-lock") {
        assert!(!f.exists(), "{} was left behind", f.display());
    }
    snap.assert_unchanged();
}

#[test]
fn parallel_starts_run_exactly_one() {
    let (t, r1) = minimal_copy("rel-race");
    let mut roots = vec![r1.clone()];
    for i in 1..4 {
        let r = t.path(&format!("rel-race-{i}"));
        assert!(Command::new("cp")
            .arg("-a")
            .arg(&r1)
            .arg(&r)
            .status()
            .unwrap()
            .success());
        roots.push(r);
    }
    let snap = HostSnapshot::take("rel-race");
    for round in 0..5 {
        // Four starts of one name on four roots, then four names on one root.
        let cases: Vec<Vec<String>> = if round % 2 == 0 {
            roots
                .iter()
                .map(|r| {
                    vec![
                        "-D".into(),
                        r.display().to_string(),
                        "-M".into(),
                        "rel-race".into(),
                    ]
                })
                .collect()
        } else {
            (0..4)
                .map(|i| {
                    vec![
                        "-D".into(),
                        r1.display().to_string(),
                        "-M".into(),
                        format!("rel-race-n{i}"),
                    ]
                })
                .collect()
        };
        let children: Vec<_> = cases
            .iter()
            .map(|c| {
                Command::new(&*NIXRUN)
                    .args(c)
                    .args(["-q", "/nixrun-probe", "sleep", "1"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let results: Vec<(i32, String)> = children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                (
                    exit_code(out.status),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            })
            .collect();
        let ran = results.iter().filter(|(c, _)| *c == 0).count();
        assert_eq!(ran, 1, "round {round}: {results:?}");
        for (code, err) in results.iter().filter(|(c, _)| *c != 0) {
            assert_eq!(*code, 1);
            assert_eq!(err.lines().count(), 1, "{err:?}");
            assert!(
                err.contains("is in use by another container") || err.contains("is currently busy"),
                "{err}"
            );
        }
    }
    for r in &roots {
        for f in lock_files(r, "rel-race") {
            assert!(!f.exists(), "{} was left behind", f.display());
        }
    }
    snap.assert_unchanged();
    for i in 0..4 {
        HostSnapshot::take(&format!("rel-race-n{i}")).assert_unchanged();
    }
}

#[test]
fn two_containers_in_one_unit_cannot_both_run() {
    // --keep-unit with different names and roots: the lock files do not meet,
    // the unit's cgroup does.
    let (t, r1) = minimal_copy("rel-unit");
    let mut roots = vec![r1.clone()];
    for i in 1..4 {
        let r = t.path(&format!("rel-unit-{i}"));
        assert!(Command::new("cp")
            .arg("-a")
            .arg(&r1)
            .arg(&r)
            .status()
            .unwrap()
            .success());
        roots.push(r);
    }
    let unit = UnitCgroup::new("rel-unit");
    for round in 0..3 {
        let children: Vec<_> = roots
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut c = nixrun_cmd(&[
                    "--keep-unit",
                    "-D",
                    r.to_str().unwrap(),
                    "-M",
                    &format!("rel-unit-m{i}"),
                    "-q",
                    "/nixrun-probe",
                    "sleep",
                    "1",
                ]);
                c.stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped());
                unit.enter(&mut c);
                c.spawn().unwrap()
            })
            .collect();
        let results: Vec<(i32, String)> = children
            .into_iter()
            .map(|c| {
                let out = c.wait_with_output().unwrap();
                (
                    exit_code(out.status),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            })
            .collect();
        assert_eq!(
            results.iter().filter(|(c, _)| *c == 0).count(),
            1,
            "round {round}: {results:?}"
        );
        for (_, err) in results.iter().filter(|(c, _)| *c != 0) {
            assert_eq!(err.lines().count(), 1, "{err:?}");
            assert!(err.contains("another container runs in this unit"), "{err}");
        }
    }
    // The winner's cgroups: payload gone; supervisor as --keep-unit leaves it
    // where the unit's controllers are delegated (systemd removes it with the unit).
    assert!(
        !unit.subgroups().contains(&"payload".to_string()),
        "{:?}",
        unit.subgroups()
    );
    for d in &unit.dirs {
        let _ = fs::remove_dir(d.join("supervisor"));
    }
}

#[test]
fn nixrun_and_nspawn_exclude_each_other() {
    require_tool("systemd-nspawn", "systemd-container");
    let (_t, root) = minimal_copy("rel-nspawn");
    // nspawn wants a tree that looks like an OS.
    fs::create_dir_all(root.join("usr")).unwrap();
    let nspawn = |unit: &UnitCgroup, args: &[&str]| {
        let mut c = Command::new("systemd-nspawn");
        c.args([
            "--keep-unit",
            "--register=no",
            "-q",
            "-D",
            root.to_str().unwrap(),
        ])
        .args(args)
        .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        unit.enter(&mut c);
        c
    };
    // nspawn holds the tree: nixrun is refused.
    let unit = UnitCgroup::new("rel-nspawn-a");
    let mut held = nspawn(&unit, &["/nixrun-probe", "sleep", "60"])
        .spawn()
        .unwrap();
    // Its guest runs in the unit's payload cgroup once nspawn has the lock.
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes_in(&unit.v2().join("payload")).is_empty() {
        assert!(Instant::now() < deadline, "nspawn did not start its guest");
        assert!(held.try_wait().unwrap().is_none(), "nspawn exited early");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_busy(
        &["-D", root.to_str().unwrap(), "/nixrun-probe", "exit", "0"],
        "is currently busy",
    );
    // nspawn kills a command guest on SIGTERM and exits.
    let _ = nixrun::sys::process::kill(nix::unistd::Pid::from_raw(held.id() as i32), libc::SIGTERM);
    held.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !processes_in(unit.v2()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "nspawn's guest survived its stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for d in &unit.dirs {
        for sub in ["payload", "supervisor"] {
            let _ = fs::remove_dir(d.join(sub));
        }
    }
    drop(unit);
    // nixrun holds the tree: nspawn is refused.
    let mut sp = Spawned::start(&[
        "-D",
        root.to_str().unwrap(),
        "-q",
        "/nixrun-probe",
        "sleep",
        "60",
    ]);
    sp.leader();
    let unit = UnitCgroup::new("rel-nspawn-b");
    let out = nspawn(&unit, &["/nixrun-probe", "exit", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nspawn ran on a tree nixrun holds");
    assert!(err.contains("is currently busy"), "nspawn said: {err}");
    for d in &unit.dirs {
        for sub in ["payload", "supervisor"] {
            let _ = fs::remove_dir(d.join(sub));
        }
    }
    sp.signal(libc::SIGTERM);
    sp.wait_exit(STOP_TIMEOUT);
}

#[test]
fn a_sigterm_at_any_moment_of_a_boot_stops_the_guest() {
    let (_t, root) = TempRoot::copy_of("rel-early", &fixture("debian"), "rel-early");
    let snap = HostSnapshot::take("rel-early");
    // A fixed pseudo-random sequence: reproducible, and spread over 0-50 ms.
    let mut x: u32 = 0x2545_f491;
    let mut slow = Duration::ZERO;
    for trial in 0..50 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let delay = Duration::from_micros(u64::from(x % 50_000));
        let mut sp = Spawned::start(&["-D", root.to_str().unwrap(), "--notify-ready=yes", "-b"]);
        std::thread::sleep(delay);
        sp.signal(libc::SIGTERM);
        let t = Instant::now();
        let st = sp.wait_exit(Duration::from_secs(60));
        slow = slow.max(t.elapsed());
        // A SIGTERM that arrives before nixrun's first instruction (it blocks
        // the signal there) ends it before it did anything: a clean stop too.
        assert!(
            st.code() == Some(0)
                || (st.signal() == Some(libc::SIGTERM) && delay < Duration::from_millis(5)),
            "trial {trial} (SIGTERM after {delay:?}) did not end in a clean stop ({st}); log:\n{}",
            sp.log_text()
        );
        snap.assert_unchanged();
        for f in lock_files(&root, "rel-early") {
            assert!(
                !f.exists(),
                "trial {trial}: {} was left behind",
                f.display()
            );
        }
    }
    eprintln!("slowest stop of 50: {slow:?}");
}

#[test]
fn the_runtimes_tmpfs_mounts_are_bounded() {
    let (_t, root) = minimal_copy("rel-tmpfs");
    let (st, out, err) = run_probe(&root, &[], &["statfs", "/tmp", "/dev/shm", "/run", "/dev"]);
    assert_eq!(st, 0, "{err}");
    let mem_kib: u64 = fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    let mem = mem_kib * 1024;
    let field = |line: &str, key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
    };
    for (path, size, inodes) in [
        ("/tmp", mem / 10, 400 * 1024),
        ("/dev/shm", mem / 10, 400 * 1024),
        ("/run", mem / 5, 800 * 1024),
        ("/dev", 4 << 20, 64 * 1024),
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(&format!("{path} ")))
            .unwrap_or_else(|| panic!("no line for {path}: {out}"));
        let got = field(line, "size");
        // tmpfs rounds a percentage to whole pages.
        assert!(
            got.abs_diff(size) <= 4096 * 2,
            "{path}: size {got}, want {size}"
        );
        assert_eq!(field(line, "inodes"), inodes, "{path}");
    }
}

#[test]
fn a_stalled_stdout_does_not_stall_the_supervisor() {
    let (t, root) = minimal_copy("rel-stall");
    let snap = HostSnapshot::take("rel-stall");
    let outdir = t.path("out");
    fs::create_dir_all(&outdir).unwrap();
    let bind = format!("--bind={}:/out", outdir.display());
    let log = t.path("stderr.log");
    // stdout: a pipe whose reader never reads (the test holds its read end).
    let (reader, writer) = nix::unistd::pipe().unwrap();
    let mut child = Command::new(&*NIXRUN)
        .args([
            "-D",
            root.to_str().unwrap(),
            "-q",
            "--console=read-only",
            &bind,
        ])
        .args(["/nixrun-probe", "flood-mount", "/out/result", "20"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let result = outdir.join("result");
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        if let Ok(s) = fs::read_to_string(&result) {
            if s.ends_with('\n') {
                break s;
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the guest's mounts did not complete while stdout was stalled; stderr:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(line.starts_with("mounts=20 failed=0 "), "{line}");
    let stop = Instant::now();
    let _ =
        nixrun::sys::process::kill(nix::unistd::Pid::from_raw(child.id() as i32), libc::SIGTERM);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if stop.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("SIGTERM not acted on within 5 s while stdout was stalled");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "{line}SIGTERM → exit with stdout stalled: {:?}",
        stop.elapsed()
    );
    drop(reader);
    let err = fs::read_to_string(&log).unwrap();
    assert!(
        err.contains("stdout is not being read"),
        "the drop was not reported once on stderr: {err:?}"
    );
    assert_eq!(err.matches("stdout is not being read").count(), 1, "{err}");
    snap.assert_unchanged();
}

#[test]
fn stray_signals_are_ignored_and_sigquit_stops_cleanly() {
    let (_t, root) = minimal_copy("rel-signals");
    let snap = HostSnapshot::take("rel-signals");
    let mut sp = Spawned::start(&[
        "-D",
        root.to_str().unwrap(),
        "--kill-signal=SIGTERM",
        "/nixrun-probe",
        "wait-signal",
    ]);
    let leader = sp.leader();
    for sig in [
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGHUP,
        libc::SIGALRM,
        libc::SIGPROF,
        libc::SIGRTMIN() + 5,
    ] {
        sp.signal(sig);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        sp.try_status().is_none(),
        "a stray signal ended nixrun; log:\n{}",
        sp.log_text()
    );
    assert!(!gone(leader), "a stray signal reached the guest");
    sp.signal(libc::SIGQUIT);
    let st = sp.wait_exit(STOP_TIMEOUT);
    assert!(
        sp.log_text().contains(&format!("signal {}", libc::SIGTERM)),
        "the guest did not get its kill signal; log:\n{}",
        sp.log_text()
    );
    assert_eq!(exit_code(st), 0, "log:\n{}", sp.log_text());
    snap.assert_unchanged();
}

#[test]
fn machine_names_follow_hostname_rules_as_in_nspawn() {
    let (_t, root) = minimal_copy("rel-names");
    let long = "n".repeat(64);
    for name in ["web.example.org", long.as_str()] {
        let snap = HostSnapshot::take(name);
        let (st, out, err) = run_probe(&root, &["-M", name], &["facts"]);
        assert_eq!(st, 0, "-M {name}: {err}");
        assert_eq!(facts(&out)["hostname"], name);
        snap.assert_unchanged();
    }
}

/// The limit on the leader's cgroup or the nearest one above it.
fn pids_max_above(leader: i32) -> Option<u64> {
    let cg = fs::read_to_string(format!("/proc/{leader}/cgroup")).unwrap();
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    // The v1 pids hierarchy where there is one, else cgroup2.
    let (mount, path) = cg
        .lines()
        .find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
            ctrls.split(',').any(|c| c == "pids").then(|| {
                let m = mi.lines().find_map(|m| {
                    let (left, right) = m.split_once(" - ")?;
                    (right.starts_with("cgroup ")
                        && right.split(' ').nth(2)?.split(',').any(|o| o == "pids"))
                    .then(|| left.split(' ').nth(4).unwrap().to_string())
                })?;
                Some((m, path.to_string()))
            })?
        })
        .or_else(|| {
            let path = cg.lines().find_map(|l| l.strip_prefix("0::"))?.to_string();
            let m = mi.lines().find_map(|m| {
                let (left, right) = m.split_once(" - ")?;
                right
                    .starts_with("cgroup2 ")
                    .then(|| left.split(' ').nth(4).unwrap().to_string())
            })?;
            Some((m, path))
        })?;
    let mut dir = Path::new(&mount).join(path.trim_start_matches('/'));
    loop {
        if let Ok(v) = fs::read_to_string(dir.join("pids.max")) {
            if let Ok(n) = v.trim().parse() {
                return Some(n);
            }
        }
        if dir == Path::new(&mount) || !dir.pop() {
            return None;
        }
    }
}

#[test]
fn the_container_has_a_task_limit() {
    let (_t, root) = minimal_copy("rel-pids");
    let snap = HostSnapshot::take("rel-pids");
    // The default, as the host sees it.
    let mut sp = Spawned::start(&[
        "-D",
        root.to_str().unwrap(),
        "-q",
        "/nixrun-probe",
        "sleep",
        "60",
    ]);
    let leader = sp.leader();
    assert_eq!(pids_max_above(leader), Some(16384));
    sp.signal(libc::SIGTERM);
    sp.wait_exit(STOP_TIMEOUT);
    // A small one, as the guest meets it.
    let (st, out, err) = run_probe(&root, &["--property=TasksMax=40"], &["spawn-max", "200"]);
    assert_eq!(st, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("spawned "))
        .unwrap_or_else(|| panic!("{out}"));
    let n: u32 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(n < 40 && line.contains("errno=EAGAIN"), "{line}");
    snap.assert_unchanged();
}

/// A service manager that stops reading $NOTIFY_SOCKET (busy with a hundred
/// units, or a harness that stopped listening): the guest's STATUS= messages,
/// relayed upward, fill its queue. The supervisor must not block on that
/// socket — the same loop serves the guest's mounts, and a blocked one left
/// guests hanging in mount(2) during shutdown (found with 100 guests at
/// once: most never finished stopping) — and it must still stop.
#[test]
fn a_manager_that_stops_reading_notify_stalls_nothing() {
    let (_t, root) = minimal_copy("rel-notify-full");
    let snap = HostSnapshot::take("rel-notify-full");
    // More than the manager's socket queues (net.unix.max_dgram_qlen).
    let qlen: usize = fs::read_to_string("/proc/sys/net/unix/max_dgram_qlen")
        .expect("read net.unix.max_dgram_qlen")
        .trim()
        .parse()
        .unwrap();
    let count = (qlen * 3 + 10).to_string();
    // The test never reads the notify socket until nixrun has exited.
    let mut sp = Spawned::start(&[
        "-D",
        root.to_str().unwrap(),
        "-q",
        "/nixrun-probe",
        "notify-status",
        &count,
    ]);
    assert_eq!(
        wait_log_line(&mut sp, "sent", STOP_TIMEOUT),
        format!("sent {count}")
    );
    assert_eq!(
        wait_log_line(&mut sp, "mount", Duration::from_secs(30)),
        "mount ok",
        "the guest's mount was not served while the manager's queue was full"
    );
    sp.signal(libc::SIGTERM);
    sp.wait_exit(STOP_TIMEOUT);
    // The queue was full indeed (what got through, read only now).
    assert!(
        sp.notified.statuses.len() >= qlen,
        "only {} statuses reached the socket: the queue never filled",
        sp.notified.statuses.len()
    );
    snap.assert_unchanged();
}
