//! A Debian systemd guest booted through nixrun-oci with nixrun's container
//! interface (the annotation org.nixrun.container-interface), driven the way
//! an engine drives a runtime: create with a console socket, start with a
//! $NOTIFY_SOCKET, exec, kill TERM, delete. This test process is the
//! subreaper that inherits and reaps the container's init, as containerd's
//! shim and conmon are — which is why it has a test binary of its own.

mod common;

use common::{cgroup_root_settings, fixture, mount_points, require_root, TempRoot, STOP_TIMEOUT};
use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const OCI: &str = env!("CARGO_BIN_EXE_nixrun-oci");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A config.json as an engine writes one for a systemd image: the usual
/// mounts (the cgroup tree read-only, as runc's default has it: the
/// interface makes it the guest's), nspawn's capability set plus
/// CAP_NET_ADMIN for the guest's own network namespace, no /run (the
/// interface brings one), the annotation.
fn config(hostname: &str) -> serde_json::Value {
    let mut caps: Vec<String> = nixrun::policy::caps::DEFAULT_RETAINED
        .iter()
        .map(|c| c.to_string())
        .collect();
    caps.push("CAP_NET_ADMIN".into());
    serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["/sbin/init"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": false
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": hostname,
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                           {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                            "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                            "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                              "/proc/sysrq-trigger"]
        },
        "annotations": {"org.nixrun.container-interface": "true"}
    })
}

/// The engine's end of --console-socket: takes the pty master and copies
/// the guest's console into a buffer. It keeps the pty's peer open, as
/// nixrun's own supervisor does: systemd opens /dev/console for each write
/// and closes it again, and with no peer open the master reads EIO.
struct ConsoleReceiver {
    out: Arc<Mutex<Vec<u8>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ConsoleReceiver {
    fn listen(path: &Path) -> ConsoleReceiver {
        let l = UnixListener::bind(path).unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (o, s) = (out.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let (conn, _) = l.accept().unwrap();
            let mut buf = [0u8; 256];
            let got =
                nixrun::sys::fd::recv(conn.as_fd(), &mut buf, rustix::net::RecvFlags::empty())
                    .expect("receiving the console");
            let master: OwnedFd = got.fds.into_iter().next().expect("no pty master sent");
            let _peer = nixrun::container::dev::pty_peer(&master).expect("the pty's peer");
            let mut b = [0u8; 4096];
            while !s.load(Ordering::Relaxed) {
                let mut fds = [nix::poll::PollFd::new(
                    master.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)).unwrap_or(0) == 0
                {
                    continue;
                }
                match nix::unistd::read(master.as_raw_fd(), &mut b) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => o.lock().unwrap().extend_from_slice(&b[..n]),
                }
            }
        });
        ConsoleReceiver {
            out,
            stop,
            thread: Some(thread),
        }
    }

    fn text(&self) -> String {
        text(&self.out.lock().unwrap())
    }
}

impl Drop for ConsoleReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Oci {
    root: PathBuf,
    id: String,
}

impl Oci {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(OCI);
        c.arg("--root").arg(&self.root).args(args);
        c.stdin(Stdio::null());
        c
    }

    fn exec(&self, argv: &[&str]) -> Output {
        let mut args = vec!["exec", self.id.as_str()];
        args.extend_from_slice(argv);
        self.cmd(&args).output().unwrap()
    }

    /// Runs a shell command in the container; expects success.
    fn sh(&self, script: &str) -> String {
        let out = self.exec(&["/bin/sh", "-c", script]);
        assert!(
            out.status.success(),
            "`{script}` in the container: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    fn status(&self) -> String {
        let out = self.cmd(&["state", &self.id]).output().unwrap();
        assert!(out.status.success(), "state: {}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["status"].as_str().unwrap().to_string()
    }
}

impl Drop for Oci {
    /// A failed test still leaves nothing behind: what its container is
    /// goes with a forced delete (a no-op once deleted).
    fn drop(&mut self) {
        let _ = self.cmd(&["delete", "--force", &self.id]).output();
    }
}

/// Directories named after the container in any cgroup hierarchy.
fn cgroups_named(id: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for h in fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .filter_map(Result::ok)
    {
        let p = h.path().join("nixrun-oci").join(id);
        if p.exists() {
            out.push(p);
        }
    }
    out
}

#[test]
fn debian_guest_boots_to_running_under_nixrun_oci_and_halts_on_kill_term() {
    require_root();
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let id = format!("oci-deb-{}", std::process::id());
    let (t, rootfs) = TempRoot::copy_of("oci-deb", &fixture("debian"), "rootfs");
    let bundle = t.base.clone();
    assert_eq!(rootfs, bundle.join("rootfs"));
    fs::write(bundle.join("config.json"), config(&id).to_string()).unwrap();
    let oci = Oci {
        root: t.path("state"),
        id: id.clone(),
    };
    let mounts_before = mount_points();
    let settings_before = cgroup_root_settings();
    let console = ConsoleReceiver::listen(&t.path("console.sock"));
    let notify = UnixDatagram::bind(t.path("notify.sock")).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();

    let out = oci
        .cmd(&["create", "--bundle", bundle.to_str().unwrap(), "--pid-file"])
        .arg(t.path("pid"))
        .args([
            "--console-socket",
            t.path("console.sock").to_str().unwrap(),
            &id,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "create: {}", text(&out.stderr));
    let pid: i32 = fs::read_to_string(t.path("pid")).unwrap().parse().unwrap();
    assert_eq!(oci.status(), "created");

    // start returns once the guest's systemd said READY=1 (runc's rule for a
    // caller with $NOTIFY_SOCKET): the relay, through /run/host/notify.
    let t0 = Instant::now();
    let out = oci
        .cmd(&["start", &id])
        .env("NOTIFY_SOCKET", t.path("notify.sock"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "start: {}\nconsole:\n{}",
        text(&out.stderr),
        console.text()
    );
    let booted = t0.elapsed();
    let mut notified = String::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = notify.recv(&mut buf) {
        notified.push_str(&text(&buf[..n]));
    }
    assert!(
        notified.lines().any(|l| l == "READY=1"),
        "no READY=1 relayed: {notified:?}"
    );
    println!("start returned after READY=1: {booted:?}");

    let running = oci.exec(&["systemctl", "is-system-running", "--wait"]);
    let failed = oci.sh("systemctl --failed --no-legend --plain");
    assert_eq!(
        text(&running.stdout).trim(),
        "running",
        "failed units: {failed}\nconsole:\n{}",
        console.text()
    );
    assert_eq!(failed.trim(), "", "failed units in the guest");

    // The container interface, as the guest sees it.
    let env = oci.sh("tr '\\0' '\\n' < /proc/1/environ");
    let uuid = oci.sh("cat /run/host/container-uuid").trim().to_string();
    for want in [
        "container=nixrun".to_string(),
        "NOTIFY_SOCKET=/run/host/notify".to_string(),
        format!("container_uuid={uuid}"),
    ] {
        assert!(
            env.lines().any(|l| l == want),
            "PID 1's env lacks {want}: {env}"
        );
    }
    assert_eq!(oci.sh("cat /run/host/container-manager").trim(), "nixrun");
    assert_eq!(
        oci.sh("cat /etc/machine-id").trim(),
        uuid.replace('-', ""),
        "the empty machine-id is initialised from container_uuid"
    );
    assert_eq!(oci.sh("hostname").trim(), id);
    assert!(oci
        .exec(&["systemd-detect-virt", "--container"])
        .status
        .success());
    let mi = oci.sh("cat /proc/self/mountinfo");
    let opts = |point: &str| -> (String, String) {
        let l = mi
            .lines()
            .rfind(|l| l.split(' ').nth(4) == Some(point))
            .unwrap_or_else(|| panic!("{point} not mounted:\n{mi}"));
        let fstype = l.split(" - ").nth(1).unwrap().split(' ').next().unwrap();
        (l.split(' ').nth(5).unwrap().to_string(), fstype.to_string())
    };
    assert!(opts("/sys").0.starts_with("ro"), "{mi}");
    assert!(opts("/proc/sys").0.starts_with("ro"), "{mi}");
    assert!(opts("/run/host").0.starts_with("ro"), "{mi}");
    let cg = opts("/sys/fs/cgroup");
    assert_eq!(cg.1, "cgroup2");
    assert!(cg.0.starts_with("rw"), "the delegated cgroup tree: {mi}");
    assert_eq!(
        oci.sh("grep '^0::' /proc/1/cgroup").trim(),
        "0::/init.scope"
    );
    // The guest's systemd wrote its tree into the container's cgroup on the host.
    let host_cg = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = host_cg
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap()
        .trim_end_matches("/init.scope")
        .to_string();
    assert!(rel.ends_with(&format!("/nixrun-oci/{id}")), "{host_cg}");
    let on_host = Path::new("/sys/fs/cgroup/unified").join(rel.trim_start_matches('/'));
    assert!(
        on_host.join("system.slice").is_dir(),
        "{}",
        on_host.display()
    );
    assert!(oci.sh("test -c /dev/console && echo pty").contains("pty"));
    assert!(
        console.text().contains("Reached target"),
        "no boot messages on the console:\n{}",
        console.text()
    );

    // kill TERM is the guest's SIGRTMIN+3: systemd halts, and its exit is
    // ours to reap (we are the subreaper).
    let out = oci.cmd(&["kill", &id, "TERM"]).output().unwrap();
    assert!(out.status.success(), "kill: {}", text(&out.stderr));
    let deadline = Instant::now() + STOP_TIMEOUT;
    let status = loop {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)).unwrap() {
            WaitStatus::StillAlive => {}
            s => break s,
        }
        assert!(
            Instant::now() < deadline,
            "the guest did not stop on kill TERM; console:\n{}",
            console.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // A halt from inside a PID namespace: reboot(2) kills its PID 1 with
    // SIGINT (SIGHUP for a reboot); the container interface's "powered off".
    assert_eq!(
        nixrun::supervisor::lifecycle::Outcome::from_wait(status),
        Some(nixrun::supervisor::lifecycle::Outcome::PoweredOff),
        "{status:?}; console:\n{}",
        console.text()
    );
    let log = console.text();
    assert!(
        log.contains("Halting system") || log.contains("System Halt"),
        "the guest did not halt itself:\n{log}"
    );
    assert_eq!(oci.status(), "stopped");
    let out = oci.cmd(&["delete", &id]).output().unwrap();
    assert!(out.status.success(), "delete: {}", text(&out.stderr));
    drop(console);

    assert!(!oci.cmd(&["state", &id]).output().unwrap().status.success());
    assert_eq!(
        cgroups_named(&id),
        Vec::<PathBuf>::new(),
        "cgroups left behind"
    );
    assert_eq!(
        fs::read_dir(&oci.root).unwrap().count(),
        0,
        "state left behind"
    );
    assert_eq!(mount_points(), mounts_before, "mounts left behind");
    // The guest's systemd enables controllers in its own subtree only.
    assert_eq!(cgroup_root_settings(), settings_before);
    let _ = std::io::stdout().flush();
}

/// `run` is create, start and wait in one process that stays: it relays the
/// guest's notify messages for the container's whole life (not only up to
/// READY=1, as start does), passes its own SIGTERM on as the guest's
/// SIGRTMIN+3, and says a halted guest's end as 0.
#[test]
fn run_relays_the_guests_notify_messages_and_a_halt_exits_0() {
    require_root();
    let id = format!("oci-debrun-{}", std::process::id());
    let (t, _rootfs) = TempRoot::copy_of("oci-debrun", &fixture("debian"), "rootfs");
    fs::write(t.base.join("config.json"), config(&id).to_string()).unwrap();
    let oci = Oci {
        root: t.path("state"),
        id: id.clone(),
    };
    let console = ConsoleReceiver::listen(&t.path("console.sock"));
    let notify = UnixDatagram::bind(t.path("notify.sock")).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut run = oci
        .cmd(&["run", "--bundle", t.base.to_str().unwrap()])
        .args([
            "--console-socket",
            t.path("console.sock").to_str().unwrap(),
            &id,
        ])
        .env("NOTIFY_SOCKET", t.path("notify.sock"))
        .stdout(Stdio::null())
        .stderr(fs::File::create(t.path("run.err")).unwrap())
        .spawn()
        .unwrap();
    let mut messages: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + common::BOOT_TIMEOUT;
    while !messages.iter().any(|m| m == "READY=1") {
        assert!(
            Instant::now() < deadline && run.try_wait().unwrap().is_none(),
            "no READY=1 from run: {messages:?}; {}\nconsole:\n{}",
            fs::read_to_string(t.path("run.err")).unwrap_or_default(),
            console.text()
        );
        if let Ok(n) = notify.recv(&mut buf) {
            messages.extend(text(&buf[..n]).lines().map(str::to_string));
        }
    }
    let ready_at = messages.len();
    assert_eq!(oci.status(), "running");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let deadline = Instant::now() + STOP_TIMEOUT;
    let status = loop {
        if let Some(s) = run.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "run did not stop on SIGTERM");
        if let Ok(n) = notify.recv(&mut buf) {
            messages.extend(text(&buf[..n]).lines().map(str::to_string));
        }
    };
    while let Ok(n) = notify.recv(&mut buf) {
        messages.extend(text(&buf[..n]).lines().map(str::to_string));
    }
    assert_eq!(
        status.code(),
        Some(0),
        "{}\nconsole:\n{}",
        fs::read_to_string(t.path("run.err")).unwrap_or_default(),
        console.text()
    );
    assert!(
        messages[ready_at..]
            .iter()
            .any(|m| m.starts_with("STATUS=")),
        "nothing relayed after READY=1: {messages:?}"
    );
    let log = console.text();
    assert!(
        log.contains("Halting system") || log.contains("System Halt"),
        "the guest did not halt itself:\n{log}"
    );
    // run deleted the container.
    assert!(!oci.cmd(&["state", &id]).output().unwrap().status.success());
    assert_eq!(
        cgroups_named(&id),
        Vec::<PathBuf>::new(),
        "cgroups left behind"
    );
}
