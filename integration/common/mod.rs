//! Shared harness for the integration tests: they start real containers, as root.
//!
//! - `fixture()` builds (or reuses) a guest with the scripts in
//!   integration/fixtures/ and `TempRoot` gives each test its own copy;
//! - `Spawned` runs nixrun with a private $NOTIFY_SOCKET, so tests see what a
//!   Type=notify unit's manager would (READY=1, STATUS=, the leader pid);
//! - `HostSnapshot` records the host's mount table and the container's cgroups,
//!   so each test can show it left nothing behind.
//!
//! A missing prerequisite (not root, no nsenter, a fixture that cannot be built)
//! fails the test with a message naming it: these tests never skip.

#![allow(dead_code)] // each test binary uses a different subset

pub mod netns;

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{BufRead, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{LazyLock, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The binary under test: this build's, or $NIXRUN_UNDER_TEST (to run the tests
/// against another build, e.g. to see a new test fail on the old code).
pub static NIXRUN: LazyLock<String> = LazyLock::new(|| {
    std::env::var("NIXRUN_UNDER_TEST").unwrap_or_else(|_| env!("CARGO_BIN_EXE_nixrun").to_string())
});
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails the test unless we are root: the tests create namespaces, mounts, cgroups.
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!("integration tests must run as root (they start real containers): run `sudo cargo test`");
    }
}

pub fn require_tool(name: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    if !found {
        panic!("missing prerequisite: {name} (apt-get install {package})");
    }
}

/// Builds a guest fixture (cached outside the checkout) and returns its path.
pub fn fixture(name: &str) -> PathBuf {
    static CACHE: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    require_root();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = cache.get(name) {
        return p.clone();
    }
    let script = repo()
        .join("integration/fixtures")
        .join(format!("{name}.sh"));
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    if !out.status.success() {
        panic!(
            "fixture {name} could not be built ({}): see its message above",
            script.display()
        );
    }
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    let path = PathBuf::from(path);
    assert!(
        path.is_dir(),
        "fixture {name} printed {path:?}, not a directory"
    );
    cache.insert(name.into(), path.clone());
    path
}

/// A per-test directory under /var/tmp/nixrun-it, removed on drop.
pub struct TempRoot {
    pub base: PathBuf,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl TempRoot {
    pub fn new(tag: &str) -> TempRoot {
        let base = PathBuf::from("/var/tmp/nixrun-it").join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(&base).expect("create test dir");
        TempRoot { base }
    }

    /// A copy of `src` at `<base>/<name>`.
    pub fn copy_of(tag: &str, src: &Path, name: &str) -> (TempRoot, PathBuf) {
        let t = TempRoot::new(tag);
        let dst = t.base.join(name);
        let st = Command::new("cp")
            .arg("-a")
            .arg(src)
            .arg(&dst)
            .status()
            .expect("cp");
        assert!(st.success(), "copying {} failed", src.display());
        (t, dst)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.base.join(name)
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        // Nothing may be mounted below a test root on the host; if something is,
        // removing the tree would reach into the mount, so refuse loudly instead.
        let mounted = mount_points()
            .into_iter()
            .any(|m| m.starts_with(&self.base));
        if mounted {
            eprintln!(
                "leaving {} in place: something is mounted below it",
                self.base.display()
            );
            return;
        }
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// The host's mount points (from our own mount namespace, which is the host's).
pub fn mount_points() -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("read mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .collect()
}

fn mount_table() -> BTreeSet<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("read mountinfo")
        .lines()
        .map(|l| {
            // Mount id, parent id and propagation peer numbers change with unrelated
            // activity; what matters is what is mounted where, how.
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-").unwrap_or(f.len());
            format!("{} {} {} {}", f[3], f[4], f[5], f[sep..].join(" "))
        })
        // Network namespaces the tests themselves pin (`ip netns add`), made
        // and removed by tests running alongside.
        .filter(|m| !(m.contains(" /run/netns/") && m.contains(" - nsfs ")))
        // The scratch file system of a benchmark (benches/compare.py) running
        // alongside on this shared machine; no test makes one.
        .filter(|m| !m.contains(" /var/tmp/nixrun-bench."))
        .collect()
}

/// Where nixrun puts a machine's cgroups when started by this process (without
/// --keep-unit): `<our cgroup>/nixrun-<machine>` in cgroup2 and, on hybrid hosts,
/// in each v1 hierarchy it manages.
pub fn machine_cgroups(machine: &str) -> Vec<PathBuf> {
    cgroup_dirs_of_self()
        .into_iter()
        .map(|d| d.join(format!("nixrun-{machine}")))
        .collect()
}

/// Our own cgroup in cgroup2 (first) and in each v1 hierarchy nixrun manages
/// on hybrid hosts (systemd's named one, devices, pids), as dirs.
pub fn cgroup_dirs_of_self() -> Vec<PathBuf> {
    let cg = fs::read_to_string("/proc/self/cgroup").unwrap();
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut out = Vec::new();
    for key in ["", "name=systemd", "devices", "pids"] {
        // Our line in /proc/self/cgroup: "0::PATH" for cgroup2, else
        // "N:CONTROLLERS:PATH" with the key among the controllers.
        let own = cg.lines().find_map(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
            let hit = if key.is_empty() {
                ctrls.is_empty()
            } else {
                ctrls.split(',').any(|c| c == key)
            };
            hit.then(|| path.to_string())
        });
        let mount = mi.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let r: Vec<&str> = right.split(' ').collect();
            let ok = if key.is_empty() {
                r[0] == "cgroup2"
            } else {
                r[0] == "cgroup" && r[2].split(',').any(|o| o == key)
            };
            ok.then(|| left.split(' ').nth(4).unwrap().to_string())
        });
        if let (Some(own), Some(mount)) = (own, mount) {
            out.push(Path::new(&mount).join(own.trim_start_matches('/')));
        }
    }
    assert!(!out.is_empty(), "no cgroup2 hierarchy found on this host");
    out
}

/// What a test must leave as it found it.
pub struct HostSnapshot {
    mounts: BTreeSet<String>,
    cgroups: Vec<PathBuf>,
}

impl HostSnapshot {
    pub fn take(machine: &str) -> HostSnapshot {
        let cgroups = machine_cgroups(machine);
        for c in &cgroups {
            // An empty one is what a killed earlier run leaves; nixrun's next start
            // of the machine removes it, and assert_unchanged() checks it did.
            assert!(
                processes_in(c).is_empty(),
                "{} has processes before the test started",
                c.display()
            );
        }
        HostSnapshot {
            mounts: mount_table(),
            cgroups,
        }
    }

    pub fn assert_unchanged(&self) {
        let now = mount_table();
        let added: Vec<_> = now.difference(&self.mounts).collect();
        let removed: Vec<_> = self.mounts.difference(&now).collect();
        assert!(
            added.is_empty() && removed.is_empty(),
            "the host's mount table changed: added {added:#?}, removed {removed:#?}"
        );
        for c in &self.cgroups {
            assert!(!c.exists(), "cgroup {} was left behind", c.display());
        }
    }
}

/// A simulated systemd unit: a cgroup of its own (in cgroup2 and, on hybrid
/// hosts, in the named systemd hierarchy) that nixrun is started in, as
/// container@.service's ExecStart= would be.
pub struct UnitCgroup {
    pub dirs: Vec<PathBuf>,
}

impl UnitCgroup {
    pub fn new(name: &str) -> UnitCgroup {
        let dirs: Vec<PathBuf> = cgroup_dirs_of_self()
            .into_iter()
            .map(|d| d.join(format!("nixrun-it-{name}-{}.service", std::process::id())))
            .collect();
        for d in &dirs {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
        }
        UnitCgroup { dirs }
    }

    pub fn v2(&self) -> &Path {
        &self.dirs[0]
    }

    /// Children of the unit's cgroup other than control files.
    pub fn subgroups(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.v2())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().unwrap().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// Makes `cmd` start inside this cgroup.
    // std has no safe way to run code between fork and exec; this harness code
    // is exempt from the crate's unsafe_code rule, which is about the runtime.
    #[allow(unsafe_code)]
    pub fn enter(&self, cmd: &mut Command) {
        let procs: Vec<PathBuf> = self.dirs.iter().map(|d| d.join("cgroup.procs")).collect();
        // SAFETY: only async-signal-safe calls (write via std's raw fs) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for p in &procs {
                    fs::write(p, b"0")?;
                }
                Ok(())
            });
        }
    }
}

impl Drop for UnitCgroup {
    fn drop(&mut self) {
        for d in self.dirs.iter().rev() {
            if let Err(e) = fs::remove_dir(d) {
                // A test that already panicked should show its own failure.
                if !std::thread::panicking() {
                    panic!(
                        "unit cgroup {} could not be removed: {e} (left behind: {:?})",
                        d.display(),
                        self.subgroups()
                    );
                }
            }
        }
    }
}

/// What nixrun reported on $NOTIFY_SOCKET.
#[derive(Debug, Default, Clone)]
pub struct Notified {
    pub ready_after: Option<Duration>,
    /// READY=1 messages seen (one per boot).
    pub readies: u32,
    pub leader: Option<i32>,
    pub statuses: Vec<String>,
    pub stopping: bool,
}

/// nixrun running in the background with its own $NOTIFY_SOCKET and log file.
pub struct Spawned {
    pub child: Child,
    started: Instant,
    sock: UnixDatagram,
    _sockdir: TempRoot,
    pub log: PathBuf,
    pub notified: Notified,
    status: Option<ExitStatus>,
}

/// `nixrun ARGS` in a mount namespace of its own whose /sys/fs/cgroup is
/// the cgroup2 root, as on a host without v1 hierarchies (most hosts; this
/// one may be hybrid), under `strace STRACE` unless STRACE is empty: what
/// the supervisor does to cgroups there is what it does on such a host.
pub fn nixrun_on_cgroup2_only(args: &[&str], strace: &[&str]) -> Command {
    require_tool("unshare", "util-linux");
    let mut c = Command::new("unshare");
    c.args([
        "-m",
        "sh",
        "-c",
        "mount --make-rprivate / && umount -l /sys/fs/cgroup && \
         mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup && exec \"$@\"",
        "sh",
    ]);
    if !strace.is_empty() {
        require_tool("strace", "strace");
        c.arg("strace").args(strace);
    }
    c.arg(&*NIXRUN).args(args);
    c
}

pub fn nixrun_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(&*NIXRUN);
    c.args(args);
    c
}

impl Spawned {
    pub fn start(args: &[&str]) -> Spawned {
        Spawned::start_cmd(nixrun_cmd(args))
    }

    /// Boots the guest at `root` as machine `machine` (not registered with
    /// machined), READY=1 passed on; `extra` flags after these.
    pub fn boot(root: &Path, machine: &str, extra: &[&str]) -> Spawned {
        let mut args = vec![
            "-D",
            root.to_str().unwrap(),
            "-M",
            machine,
            "-b",
            "--notify-ready=yes",
            "--register=no",
        ];
        args.extend_from_slice(extra);
        Spawned::start(&args)
    }

    pub fn start_cmd(mut cmd: Command) -> Spawned {
        require_root();
        let dir = TempRoot::new("notify");
        let sock_path = dir.path("notify");
        let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
        let log = dir.path("console.log");
        let logf = fs::File::create(&log).unwrap();
        cmd.env("NOTIFY_SOCKET", &sock_path)
            .stdin(Stdio::null())
            .stdout(logf.try_clone().unwrap())
            .stderr(logf);
        let started = Instant::now();
        let child = cmd.spawn().expect("spawn nixrun");
        Spawned {
            child,
            started,
            sock,
            _sockdir: dir,
            log,
            notified: Notified::default(),
            status: None,
        }
    }

    fn drain_notify(&mut self, timeout: Duration) -> bool {
        self.sock
            .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 4096];
        match self.sock.recv(&mut buf) {
            Ok(n) => {
                for line in String::from_utf8_lossy(&buf[..n]).lines() {
                    if line == "READY=1" {
                        self.notified.readies += 1;
                        self.notified
                            .ready_after
                            .get_or_insert(self.started.elapsed());
                    } else if line == "STOPPING=1" {
                        self.notified.stopping = true;
                    } else if let Some(pid) = line.strip_prefix("X_NIXRUN_LEADER_PID=") {
                        self.notified.leader = pid.parse().ok();
                    } else if let Some(s) = line.strip_prefix("STATUS=") {
                        self.notified.statuses.push(s.to_string());
                    }
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Waits for READY=1 on our $NOTIFY_SOCKET; panics with the log on timeout or exit.
    pub fn wait_ready(&mut self, timeout: Duration) -> Duration {
        self.wait_readies(1, timeout);
        self.notified.ready_after.unwrap()
    }

    /// Waits for the n-th READY=1 (nixrun reports it again after a guest reboot).
    pub fn wait_readies(&mut self, n: u32, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.notified.readies < n {
            if let Some(st) = self.try_status() {
                panic!(
                    "nixrun exited ({st}) before READY=1; log:\n{}",
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                panic!("no READY=1 within {timeout:?}; log:\n{}", self.log_text());
            }
            self.drain_notify(Duration::from_millis(100));
        }
    }

    /// The container's PID 1 (host pid), as nixrun reports it once init runs.
    pub fn leader(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.notified.leader.is_none() {
            if Instant::now() > deadline || self.try_status().is_some() {
                panic!(
                    "nixrun did not report X_NIXRUN_LEADER_PID; log:\n{}",
                    self.log_text()
                );
            }
            self.drain_notify(Duration::from_millis(50));
        }
        self.notified.leader.unwrap()
    }

    /// Waits until nixrun reports a PID 1 other than `old` (a new boot).
    pub fn wait_new_leader(&mut self, old: i32, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.notified.leader.filter(|&l| l != old) {
                return l;
            }
            if let Some(st) = self.try_status() {
                panic!(
                    "nixrun exited ({st}) instead of booting again; log:\n{}",
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no new boot within {timeout:?}; log:\n{}",
                self.log_text()
            );
            self.drain_notify(Duration::from_millis(100));
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        let _ = nixrun::sys::process::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("try_wait");
        }
        self.status
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_status() {
                while self.drain_notify(Duration::from_millis(1)) {}
                return st;
            }
            if Instant::now() > deadline {
                self.signal(libc::SIGKILL);
                let _ = self.child.wait();
                panic!(
                    "nixrun did not exit within {timeout:?}; log:\n{}",
                    self.log_text()
                );
            }
            self.drain_notify(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs a command inside the running container (all its namespaces, via nsenter).
    pub fn exec(&mut self, argv: &[&str]) -> Output {
        require_tool("nsenter", "util-linux");
        let leader = self.leader();
        Command::new("nsenter")
            .args([
                "-t",
                &leader.to_string(),
                "-m",
                "-u",
                "-i",
                "-n",
                "-p",
                "-C",
                "--",
            ])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .expect("nsenter")
    }

    /// Like exec, but expects success and returns stdout as a string.
    pub fn sh(&mut self, script: &str) -> String {
        let out = self.exec(&["/bin/sh", "-c", script]);
        assert!(
            out.status.success(),
            "`{script}` failed in the container ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
        }
    }
}

/// Runs nixrun to completion; returns (status, stdout, stderr).
pub fn run(args: &[&str]) -> (ExitStatus, String, String) {
    run_cmd(nixrun_cmd(args))
}

pub fn run_cmd(mut cmd: Command) -> (ExitStatus, String, String) {
    cmd.stdin(Stdio::null());
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nixrun");
    let mut out = String::new();
    let mut err = String::new();
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = se.read_to_string(&mut s);
        s
    });
    let _ = so.read_to_string(&mut out);
    let st = child.wait().expect("wait");
    err.push_str(&t.join().unwrap());
    (st, out, err)
}

/// Runs the probe as the container's command: `nixrun -D ROOT -q EXTRA...
/// /nixrun-probe PROBE...`; returns (exit code, stdout, stderr).
pub fn run_probe(root: &Path, extra: &[&str], probe: &[&str]) -> (i32, String, String) {
    let mut args = vec!["-D", root.to_str().unwrap(), "-q"];
    args.extend_from_slice(extra);
    args.push("/nixrun-probe");
    args.extend_from_slice(probe);
    let (st, out, err) = run(&args);
    (exit_code(st), out, err)
}

/// key=value lines (the probe's `facts`) as a map.
pub fn facts(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn exit_code(st: ExitStatus) -> i32 {
    st.code()
        .unwrap_or_else(|| panic!("nixrun was killed by signal {:?}", st.signal()))
}

/// Whether a process is gone (reaped or never existed).
pub fn gone(pid: i32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

/// Host processes whose cgroup lies under `dir`.
pub fn processes_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(f) = fs::File::open(dir.join("cgroup.procs")) {
        out.extend(std::io::BufReader::new(f).lines().map_while(Result::ok));
    }
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.filter_map(Result::ok) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(processes_in(&e.path()));
            }
        }
    }
    out
}

/// Installs the probe into a (copied) root at /usr/local/bin/nixrun-probe.
pub fn install_probe(root: &Path) {
    let dst = root.join("usr/local/bin/nixrun-probe");
    fs::create_dir_all(dst.parent().unwrap()).unwrap();
    let probe_bin = probe_binary();
    fs::copy(&probe_bin, &dst).unwrap();
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).unwrap();
}

/// The probe binary path printed by integration/fixtures/probe.sh.
pub fn probe_binary() -> PathBuf {
    static P: OnceLock<PathBuf> = OnceLock::new();
    P.get_or_init(|| {
        require_root();
        let out = Command::new("bash")
            .arg(repo().join("integration/fixtures/probe.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("probe.sh");
        assert!(out.status.success(), "integration/fixtures/probe.sh failed");
        let p = PathBuf::from(
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .last()
                .unwrap_or_default()
                .trim(),
        );
        assert!(p.is_file(), "probe.sh printed {p:?}, not a file");
        p
    })
    .clone()
}

/// The NixOS-shaped guest started as container@.service starts it (the command
/// line of nixos-containers.nix), in a cgroup of its own like a unit's, with the
/// probe bound at /nixrun-probe.
pub struct NixosGuest {
    pub root: PathBuf,
    pub unit: UnitCgroup,
    pub spawned: Spawned,
    _dir: TempRoot,
}

impl NixosGuest {
    pub fn start(machine: &str, extra: &[&str]) -> NixosGuest {
        let fx = fixture("nixos");
        let (dir, root) = TempRoot::copy_of(machine, &fx.join("root"), machine);
        let store = format!("--bind-ro={}:/nix/store", fx.join("store").display());
        let probe = format!("--bind-ro={}:/nixrun-probe", probe_binary().display());
        let unit = UnitCgroup::new(machine);
        let mut args = vec![
            "--keep-unit",
            "-M",
            machine,
            "-D",
            root.to_str().unwrap(),
            "--notify-ready=yes",
            "--kill-signal=SIGRTMIN+3",
            &store,
            &probe,
        ];
        args.extend_from_slice(extra);
        args.push("/nix/var/nix/profiles/system/init");
        let mut cmd = nixrun_cmd(&args);
        unit.enter(&mut cmd);
        let spawned = Spawned::start_cmd(cmd);
        NixosGuest {
            root,
            unit,
            spawned,
            _dir: dir,
        }
    }
}

/// The settings at the root of every cgroup hierarchy that change every
/// cgroup on the host (the controllers cgroup2's root passes down, its
/// limits, the v1 release agents): no test may change them.
pub fn cgroup_root_settings() -> Vec<(PathBuf, String)> {
    let mi = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut out = Vec::new();
    for l in mi.lines() {
        let Some((left, right)) = l.split_once(" - ") else {
            continue;
        };
        let fstype = right.split(' ').next().unwrap_or("");
        if fstype != "cgroup" && fstype != "cgroup2" {
            continue;
        }
        let root = PathBuf::from(left.split(' ').nth(4).unwrap());
        for name in [
            "cgroup.subtree_control",
            "cgroup.max.depth",
            "cgroup.max.descendants",
            "release_agent",
            "notify_on_release",
            "cgroup.clone_children",
        ] {
            if let Ok(v) = fs::read_to_string(root.join(name)) {
                out.push((root.join(name), v));
            }
        }
    }
    out
}
