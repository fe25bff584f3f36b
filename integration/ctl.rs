//! nixrunctl against real machines: `list` and `status` find them, `exec` and
//! `shell` run exactly where the guest's own processes run (namespaces,
//! capability bounding set, seccomp, cgroups and with them the device policy),
//! the lifecycle verbs stop, halt and reboot them, `reload` runs the NixOS
//! guest's switch-to-configuration, and bad input gets one line.

mod common;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NIXRUNCTL: &str = env!("CARGO_BIN_EXE_nixrunctl");
const STATE_DIR: &str = "/run/nixrun/machines";

fn ctl_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(NIXRUNCTL);
    c.args(args);
    c
}

/// Runs nixrunctl to completion; (exit code, stdout, stderr).
fn ctl(args: &[&str]) -> (i32, String, String) {
    let (st, out, err) = run_cmd(ctl_cmd(args));
    (code_of(st, &err), out, err)
}

fn code_of(st: ExitStatus, err: &str) -> i32 {
    st.code()
        .unwrap_or_else(|| panic!("nixrunctl was killed ({st}); stderr: {err}"))
}

/// Runs nixrunctl with `input` on a pipe as its stdin.
fn ctl_with_input(args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = ctl_cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nixrunctl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (
        code_of(out.status, &err),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        err,
    )
}

/// Expects success; stdout.
fn ctl_ok(args: &[&str]) -> String {
    let (code, out, err) = ctl(args);
    assert_eq!(code, 0, "nixrunctl {args:?} failed: {err}");
    out
}

/// The failure contract: non-zero, one line on stderr naming the problem.
fn assert_one_line_failure(args: &[&str], code: i32, err: &str, mentions: &str) {
    assert_ne!(code, 0, "nixrunctl {args:?} succeeded");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "nixrunctl {args:?}: expected one line, got {err:?}"
    );
    assert!(lines[0].starts_with("nixrunctl: "), "{err:?}");
    assert!(
        lines[0].contains(mentions),
        "{err:?} does not mention {mentions:?}"
    );
}

/// `list` drops every stale entry it meets; the test that looks at one holds
/// this while it does, so that another test's `list` does not drop it first.
static LISTING: Mutex<()> = Mutex::new(());

fn list_json() -> Vec<serde_json::Value> {
    let _g = LISTING.lock().unwrap_or_else(|e| e.into_inner());
    list_json_unlocked()
}

fn list_json_unlocked() -> Vec<serde_json::Value> {
    let out = ctl_ok(&["list", "--json"]);
    match serde_json::from_str(&out).unwrap_or_else(|e| panic!("list --json: {e}: {out}")) {
        serde_json::Value::Array(v) => v,
        other => panic!("list --json is not an array: {other}"),
    }
}

fn listed(name: &str) -> Option<serde_json::Value> {
    list_json().into_iter().find(|m| m["name"] == name)
}

fn debian_copy(tag: &str) -> (TempRoot, PathBuf) {
    TempRoot::copy_of(tag, &fixture("debian"), tag)
}

fn boot_debian(root: &Path) -> Spawned {
    let mut c = Spawned::start(&["-D", root.to_str().unwrap(), "-b", "--notify-ready=yes"]);
    c.wait_ready(BOOT_TIMEOUT);
    c
}

/// The ns links of a host process, as `type → link`.
fn host_namespaces(pid: i32) -> Vec<(String, String)> {
    ["cgroup", "ipc", "mnt", "net", "pid", "uts", "user"]
        .iter()
        .map(|ns| {
            let l = fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
            (ns.to_string(), l.to_string_lossy().into_owned())
        })
        .collect()
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in {status}"))
        .trim()
        .to_string()
}

fn os_release_pretty_name(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .unwrap()
        .trim_matches('"')
        .to_string()
}

#[test]
fn list_status_exec_shell_and_stop_a_debian_guest() {
    let name = "ctl-deb";
    let (_t, root) = debian_copy(name);
    let snap = HostSnapshot::take(name);
    let mut c = boot_debian(&root);
    let leader = c.leader();

    // list, as a table and as JSON.
    let table = {
        let _g = LISTING.lock().unwrap_or_else(|e| e.into_inner());
        ctl_ok(&["list"])
    };
    let row = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("{name} not in `list`:\n{table}"));
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], leader.to_string(), "{table}");
    assert_eq!(cols[2], c.pid().to_string(), "{table}");
    assert_eq!(cols[4], root.to_str().unwrap(), "{table}");
    let m = listed(name).expect("in list --json");
    assert_eq!(m["leader"], leader);
    assert_eq!(m["supervisor"], c.pid());
    assert_eq!(m["root"], root.to_str().unwrap());
    assert!(m["unit"].is_null());

    // status: the state plus the guest's OS and namespaces.
    let want_os = os_release_pretty_name(&root.join("usr/lib/os-release"));
    let text = ctl_ok(&["status", name]);
    assert_eq!(status_field(&text, "Leader"), leader.to_string(), "{text}");
    assert_eq!(status_field(&text, "OS"), want_os, "{text}");
    let s: serde_json::Value = serde_json::from_str(&ctl_ok(&["status", name, "--json"])).unwrap();
    assert_eq!(s["leader"], leader);
    assert_eq!(s["name"], name);
    assert_eq!(s["os"], want_os.as_str());
    for (ns, link) in host_namespaces(leader) {
        assert_eq!(
            format!("{ns}:[{}]", s["namespaces"][&ns]),
            link,
            "status --json namespaces: {s}"
        );
    }
    assert_eq!(
        s["capabilities"].as_array().unwrap().len(),
        26,
        "nspawn's default set: {s}"
    );

    // exec runs in exactly the leader's namespaces.
    let out = ctl_ok(&[
        "exec",
        name,
        "--",
        "/bin/sh",
        "-c",
        "for n in cgroup ipc mnt net pid uts user; do echo \"$n $(readlink /proc/self/ns/$n)\"; done",
    ]);
    let inside: Vec<(String, String)> = out
        .lines()
        .map(|l| {
            let (a, b) = l.split_once(' ').unwrap();
            (a.to_string(), b.to_string())
        })
        .collect();
    assert_eq!(inside, host_namespaces(leader), "exec's namespaces");

    // ... with the guest's bounding set, seccomp on, no more than the guest
    // has, in the leader's cgroups in every hierarchy.
    let status = ctl_ok(&["exec", name, "--", "cat", "/proc/self/status"]);
    let leader_status = fs::read_to_string(format!("/proc/{leader}/status")).unwrap();
    assert_eq!(
        status_field(&status, "CapBnd"),
        status_field(&leader_status, "CapBnd")
    );
    assert_eq!(
        status_field(&status, "CapEff"),
        status_field(&leader_status, "CapEff")
    );
    assert_eq!(status_field(&status, "Seccomp"), "2");
    let cg = ctl_ok(&[
        "exec",
        name,
        "--",
        "/bin/sh",
        "-c",
        "cat /proc/self/cgroup; echo ---; cat /proc/1/cgroup",
    ]);
    let (own, pid1) = cg.split_once("---\n").unwrap();
    assert_eq!(own, pid1, "exec is not in the leader's cgroups");
    assert!(own.lines().any(|l| l.starts_with("0::/")), "{own}");
    // The device policy reaches it: a host disk's node cannot be made or opened.
    let (code, out, err) = ctl(&[
        "exec",
        name,
        "--",
        "/bin/sh",
        "-c",
        "mknod /dev/ctl-disk b 8 0 2>&1; head -c1 /dev/ctl-disk >/dev/null 2>&1 && echo opened; rm -f /dev/ctl-disk",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !out.contains("opened"),
        "a host block device was opened: {out}"
    );
    assert!(out.contains("Operation not permitted"), "mknod: {out}");
    // New file systems are refused (no supervisor answers for it).
    let (code, out, _) = ctl(&[
        "exec",
        name,
        "--",
        "/bin/sh",
        "-c",
        "mount -t proc proc /mnt 2>&1; echo rc=$?",
    ]);
    assert_eq!(code, 0);
    assert!(!out.contains("rc=0"), "exec mounted a fresh procfs: {out}");
    // A clean environment.
    let env = ctl_ok(&["exec", name, "--", "env"]);
    for want in [
        "container=nixrun",
        "HOME=/root",
        "USER=root",
        "LOGNAME=root",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in {env}");
    }
    assert!(
        env.lines()
            .any(|l| l == "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        "{env}"
    );
    assert!(!env.contains("NOTIFY_SOCKET"), "{env}");

    // Exit statuses come back, as a shell's.
    let (code, _, err) = ctl(&["exec", name, "--", "/bin/sh", "-c", "exit 5"]);
    assert_eq!(code, 5, "{err}");
    let (code, _, err) = ctl(&["exec", name, "--", "/bin/sh", "-c", "kill -KILL $$"]);
    assert_eq!(code, 128 + 9, "{err}");
    let args = ["exec", name, "--", "no-such-command"];
    let (code, _, err) = ctl(&args);
    assert_eq!(code, 127, "{err}");
    assert_one_line_failure(&args, code, &err, "no-such-command");
    let args = ["exec", name, "--", "/etc/passwd"];
    let (code, _, err) = ctl(&args);
    assert_eq!(code, 126, "{err}");
    assert_one_line_failure(&args, code, &err, "/etc/passwd");

    // shell: a login shell on a pty, fed through a pipe.
    let (code, out, err) = ctl_with_input(&["shell", name], "echo mark$((6*7))er; tty; exit 3\n");
    assert_eq!(code, 3, "shell: {out}\n{err}");
    assert!(out.contains("mark42er"), "shell output: {out}");
    assert!(out.contains("/dev/pts/"), "the shell has no pty: {out}");
    let args = ["shell", name, "no-such-user"];
    let (code, _, err) = ctl(&args);
    assert_one_line_failure(&args, code, &err, "no-such-user");

    // reload on a guest that is not NixOS.
    let args = ["reload", name];
    let (code, _, err) = ctl(&args);
    assert_eq!(code, 1);
    assert_one_line_failure(&args, code, &err, "switch-to-configuration");

    // Nothing nixrunctl ran is left in the guest.
    let procs = ctl_ok(&[
        "exec",
        name,
        "--",
        "/bin/sh",
        "-c",
        "cat /proc/[0-9]*/cmdline | tr '\\0' ' '",
    ]);
    assert!(!procs.contains("mark"), "{procs}");

    // stop: a clean shutdown, the supervisor exits 0, the machine is gone.
    let (code, _, err) = ctl(&["stop", name]);
    assert_eq!(code, 0, "stop: {err}\nlog:\n{}", c.log_text());
    let st = c.wait_exit(STOP_TIMEOUT);
    assert_eq!(exit_code(st), 0, "log:\n{}", c.log_text());
    assert!(
        c.log_text().contains("Halting system") || c.log_text().contains("System Halt"),
        "the guest did not shut down cleanly; log:\n{}",
        c.log_text()
    );
    assert!(listed(name).is_none(), "{name} still listed after stop");
    assert!(!Path::new(STATE_DIR).join(name).exists());
    let args = ["status", name];
    let (code, _, err) = ctl(&args);
    assert_eq!(err.trim(), format!("nixrunctl: no running machine {name}"));
    assert_one_line_failure(&args, code, &err, name);
    snap.assert_unchanged();
}

/// A pty whose slave is nixrunctl's terminal, and the test's end of it.
struct Pty {
    master: OwnedFd,
    slave: OwnedFd,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Pty {
    fn open() -> Pty {
        let p = nix::pty::openpty(None, None).expect("openpty");
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = fs::File::from(p.master.try_clone().unwrap());
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Pty {
            master: p.master,
            slave: p.slave,
            output,
        }
    }

    fn stdio(&self) -> Stdio {
        Stdio::from(self.slave.try_clone().unwrap())
    }

    fn write(&self, bytes: &[u8]) {
        fs::File::from(self.master.try_clone().unwrap())
            .write_all(bytes)
            .unwrap();
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    fn wait_for(&self, what: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.text().contains(what) {
            assert!(
                Instant::now() < deadline,
                "{what:?} did not appear on the terminal: {:?}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn shell_on_a_terminal_relays_and_detaches_and_kill_halts_the_guest() {
    let name = "ctl-deb-tty";
    let (_t, root) = debian_copy(name);
    let snap = HostSnapshot::take(name);
    let mut c = boot_debian(&root);

    let pty = Pty::open();
    let before = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
    let mut sh = ctl_cmd(&["shell", name])
        .stdin(pty.stdio())
        .stdout(pty.stdio())
        .stderr(pty.stdio())
        .spawn()
        .expect("spawn nixrunctl shell");
    pty.wait_for("Press ^] three times", Duration::from_secs(10));
    pty.write(b"echo tty-mark$((6*7))er\r");
    pty.wait_for("tty-mark42er", Duration::from_secs(10));
    // Raw mode: ^C is a byte for the guest's terminal, which interrupts the
    // shell's foreground job there.
    pty.write(b"sleep 100\r");
    std::thread::sleep(Duration::from_millis(300));
    pty.write(b"\x03");
    pty.write(b"echo after-$((1+1))-interrupt\r");
    pty.wait_for("after-2-interrupt", Duration::from_secs(10));
    assert!(sh.try_wait().unwrap().is_none(), "^C ended nixrunctl");
    // ^] three times within a second: detached, the terminal as it was.
    pty.write(b"\x1d\x1d\x1d");
    let deadline = Instant::now() + Duration::from_secs(10);
    let st = loop {
        if let Some(st) = sh.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "^]^]^] did not detach: {:?}",
            pty.text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(st.code(), Some(0), "{:?}", pty.text());
    pty.wait_for("detached", Duration::from_secs(5));
    let after = nix::sys::termios::tcgetattr(&pty.slave).unwrap();
    assert_eq!(before.local_flags, after.local_flags, "terminal left raw");
    assert_eq!(before.input_flags, after.input_flags, "terminal left raw");
    assert_eq!(before.output_flags, after.output_flags, "terminal left raw");

    // kill with a real-time signal: SIGRTMIN+3 is systemd's halt.
    let leader = c.leader();
    ctl_ok(&["kill", name, "SIGRTMIN+3"]);
    let st = c.wait_exit(STOP_TIMEOUT);
    assert_eq!(exit_code(st), 0, "log:\n{}", c.log_text());
    assert!(gone(leader));
    assert!(listed(name).is_none());
    snap.assert_unchanged();
}

#[test]
fn reboot_boots_a_new_leader_and_poweroff_ends_it() {
    let name = "ctl-deb-reboot";
    let (_t, root) = debian_copy(name);
    let snap = HostSnapshot::take(name);
    let mut c = boot_debian(&root);
    let first = c.leader();
    ctl_ok(&["reboot", name]);
    let second = c.wait_new_leader(first, BOOT_TIMEOUT);
    c.wait_readies(2, BOOT_TIMEOUT);
    let m = listed(name).expect("listed after the reboot");
    assert_eq!(m["leader"], second);
    let out = ctl_ok(&["exec", name, "--", "cat", "/proc/1/comm"]);
    assert_eq!(out.trim(), "systemd");
    ctl_ok(&["poweroff", name]);
    let st = c.wait_exit(STOP_TIMEOUT);
    assert_eq!(exit_code(st), 0, "log:\n{}", c.log_text());
    assert!(listed(name).is_none());
    snap.assert_unchanged();
}

#[test]
fn a_killed_supervisors_machine_disappears_from_list() {
    let name = "ctl-deb-sigkill";
    let (_t, root) = debian_copy(name);
    let snap = HostSnapshot::take(name);
    let mut c = boot_debian(&root);
    let leader = c.leader();
    assert!(listed(name).is_some());
    let listing = LISTING.lock().unwrap_or_else(|e| e.into_inner());
    c.signal(libc::SIGKILL);
    let _ = c.wait_exit(STOP_TIMEOUT);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gone(leader) {
        assert!(
            Instant::now() < deadline,
            "the guest survived its supervisor"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let file = Path::new(STATE_DIR).join(name);
    assert!(
        file.exists(),
        "a SIGKILLed supervisor cannot remove its state"
    );
    assert!(
        !list_json_unlocked().iter().any(|m| m["name"] == name),
        "a dead machine is listed"
    );
    assert!(!file.exists(), "the stale state file stays");
    drop(listing);
    let args = ["exec", name, "--", "true"];
    let (code, _, err) = ctl(&args);
    assert_one_line_failure(&args, code, &err, "no running machine");
    // What the dead supervisor left (its cgroups), the next start removes.
    let (st, _, err) = run(&["-D", root.to_str().unwrap(), "-q", "/bin/true"]);
    assert_eq!(exit_code(st), 0, "{err}");
    snap.assert_unchanged();
}

#[test]
fn stop_kills_a_supervisor_that_does_not_finish_in_time() {
    let name = "ctl-deb-stuck";
    let (_t, root) = debian_copy(name);
    let snap = HostSnapshot::take(name);
    // systemd only logs SIGUSR2: this guest never shuts down on a stop.
    let mut c = Spawned::start(&[
        "-D",
        root.to_str().unwrap(),
        "-b",
        "--notify-ready=yes",
        "--kill-signal=SIGUSR2",
    ]);
    c.wait_ready(BOOT_TIMEOUT);
    let leader = c.leader();
    let started = Instant::now();
    let args = ["stop", name, "--timeout", "2"];
    let (code, _, err) = ctl(&args);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "stop did not wait"
    );
    assert_eq!(code, 1, "{err}");
    assert_one_line_failure(&args, code, &err, "killed");
    let st = c.wait_exit(STOP_TIMEOUT);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGKILL),
        "{st}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gone(leader) {
        assert!(
            Instant::now() < deadline,
            "the guest survived its supervisor"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(listed(name).is_none());
    assert!(!Path::new(STATE_DIR).join(name).exists());
    let (st, _, err) = run(&["-D", root.to_str().unwrap(), "-q", "/bin/true"]);
    assert_eq!(exit_code(st), 0, "{err}");
    snap.assert_unchanged();
}

/// Gives the NixOS-shaped guest's profile a switch-to-configuration if it has
/// none: a new generation in the test's copy of the root (the store is the
/// fixture's, shared and read-only) whose script records that it ran.
/// Returns the host path of the record, if the script is ours.
fn install_switch_to_configuration(root: &Path, store: &Path) -> Option<PathBuf> {
    let profiles = root.join("nix/var/nix/profiles");
    let system = fs::read_link(profiles.join("system-1-link")).unwrap();
    let store_system = store.join(system.strip_prefix("/nix/store").unwrap());
    if store_system.join("bin/switch-to-configuration").exists() {
        return None;
    }
    let generation = profiles.join("ctl-generation");
    fs::create_dir_all(generation.join("bin")).unwrap();
    for e in fs::read_dir(&store_system).unwrap() {
        let e = e.unwrap();
        std::os::unix::fs::symlink(system.join(e.file_name()), generation.join(e.file_name()))
            .unwrap();
    }
    let script = generation.join("bin/switch-to-configuration");
    fs::write(
        &script,
        "#!/bin/sh\n\
         { echo \"ran: $*\"; grep -E '^(Seccomp|CapBnd):' /proc/self/status; } > /var/lib/ctl-switch-ran\n",
    )
    .unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink(
        "/nix/var/nix/profiles/ctl-generation",
        profiles.join("system-2-link"),
    )
    .unwrap();
    fs::remove_file(profiles.join("system")).unwrap();
    std::os::unix::fs::symlink("system-2-link", profiles.join("system")).unwrap();
    Some(root.join("var/lib/ctl-switch-ran"))
}

#[test]
fn reload_runs_switch_to_configuration_in_a_nixos_guest() {
    let name = "ctl-nixos";
    let snap = HostSnapshot::take(name);
    let g = NixosGuest::start(name, &[]);
    let (root, unit, mut c) = (&g.root, &g.unit, g.spawned);
    c.wait_ready(BOOT_TIMEOUT);
    let leader = c.leader();

    // Its unit (--keep-unit) and its OS, through the guest's /nix/store mount.
    let s: serde_json::Value = serde_json::from_str(&ctl_ok(&["status", name, "--json"])).unwrap();
    assert_eq!(s["leader"], leader);
    let unit_name = unit.v2().file_name().unwrap().to_str().unwrap();
    assert_eq!(s["unit"], unit_name, "{s}");
    assert!(
        s["os"].as_str().is_some_and(|o| o.starts_with("NixOS")),
        "os-release resolved in the guest: {s}"
    );
    // NixOS's profile is on exec's PATH.
    let path = ctl_ok(&["exec", name, "--", "/bin/sh", "-c", "echo $PATH"]);
    assert!(
        path.starts_with("/run/current-system/sw/bin:"),
        "PATH in a NixOS guest: {path}"
    );

    let record = install_switch_to_configuration(root, &fixture("nixos").join("store"));
    let (code, _, err) = ctl(&["reload", name]);
    assert_eq!(code, 0, "reload: {err}");
    assert!(
        err.contains(&format!(
            "nixrunctl: {name}: switch-to-configuration test (exit 0)"
        )),
        "{err}"
    );
    if let Some(record) = record {
        let ran = fs::read_to_string(&record).expect("switch-to-configuration did not run");
        assert!(ran.starts_with("ran: test\n"), "{ran}");
        assert!(ran.contains("Seccomp:\t2"), "{ran}");
        let leader_status = fs::read_to_string(format!("/proc/{leader}/status")).unwrap();
        assert_eq!(
            status_field(&ran, "CapBnd"),
            status_field(&leader_status, "CapBnd")
        );
    }

    let (code, _, err) = ctl(&["stop", name, "--timeout", "60"]);
    assert_eq!(code, 0, "stop: {err}");
    let st = c.wait_exit(STOP_TIMEOUT);
    assert_eq!(exit_code(st), 0, "log:\n{}", c.log_text());
    assert!(listed(name).is_none());
    assert_eq!(unit.subgroups(), Vec::<String>::new());
    snap.assert_unchanged();
}

#[test]
fn bad_input_gets_one_line() {
    require_root();
    // Unknown machines, for every verb that takes one; nothing is created.
    let name = "ctl-no-such-machine";
    for args in [
        &["status", name][..],
        &["exec", name, "--", "true"],
        &["shell", name],
        &["stop", name],
        &["poweroff", name],
        &["reboot", name],
        &["kill", name],
        &["reload", name],
        &["status", "../../etc/passwd"],
    ] {
        let (code, out, err) = ctl(args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert_one_line_failure(args, code, &err, "no running machine");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(!Path::new(STATE_DIR).join(name).exists());
    }
    assert!(Path::new("/etc/passwd").exists());
    // exec without a command, a verb that does not exist, a bad signal.
    for (args, mentions) in [
        (&["exec", name][..], "COMMAND"),
        (&["exec", name, "--"], "COMMAND"),
        (&["frobnicate"], "frobnicate"),
        (&["kill", name, "SIGFOO"], "SIGFOO"),
    ] {
        let (code, _, err) = ctl(args);
        assert_one_line_failure(args, code, &err, mentions);
    }
    // Not root: refused before anything is looked at.
    let t = TempRoot::new("ctl-nonroot");
    let bin = t.path("nixrunctl");
    fs::copy(NIXRUNCTL, &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    for args in [&["list"][..], &["exec", name, "--", "true"]] {
        let mut cmd = Command::new(&bin);
        cmd.args(args).uid(65534).gid(65534);
        let (st, out, err) = run_cmd(cmd);
        let code = code_of(st, &err);
        assert_one_line_failure(args, code, &err, "root");
        assert!(out.is_empty());
    }
}
