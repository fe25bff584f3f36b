//! Sandboxes inside the guest, as a guest's user runs them: `unshare
//! --mount-proc`, bwrap (as root and as an unprivileged user in a user
//! namespace of its own), podman, systemd's PrivatePIDs= and RootDirectory=
//! in a systemd 257 guest, and systemd's device policy. Each gets what it asks
//! for — a procfs for its own PID namespace, a device program — with the
//! container's protections intact (integration/escape.rs attacks those, and
//! boots nixrun inside the guest to attack the host from a nested guest).
//!
//! Every command runs as a service of the guest's systemd (systemd-run), so it
//! carries what every guest process carries: PID 1's seccomp filters (and with
//! them the supervisor's mount guard), bounding set and cgroup.

mod common;

use common::*;
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Output;

/// Boots a copy of `fixture` as machine `machine` with the probe installed.
fn boot(fixture_name: &str, machine: &str, extra: &[&str]) -> (TempRoot, PathBuf, Spawned) {
    let (t, root) = TempRoot::copy_of(machine, &fixture(fixture_name), machine);
    install_probe(&root);
    let mut c = Spawned::boot(&root, machine, extra);
    c.wait_ready(BOOT_TIMEOUT);
    (t, root, c)
}

/// Runs `argv` as a transient service of the guest's systemd (as `user` if
/// given), waiting for it; stdout and stderr come back.
fn service(c: &mut Spawned, props: &[&str], argv: &[&str]) -> Output {
    let mut cmd = vec!["systemd-run", "--wait", "--pipe", "--quiet"];
    for p in props {
        cmd.push("-p");
        cmd.push(p);
    }
    cmd.push("--");
    cmd.extend_from_slice(argv);
    c.exec(&cmd)
}

/// Like `service`, expecting success; its stdout.
fn service_ok(c: &mut Spawned, props: &[&str], argv: &[&str]) -> String {
    let out = service(c, props, argv);
    assert!(
        out.status.success(),
        "{argv:?} ({props:?}) failed in the guest ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn probe_facts(c: &mut Spawned, props: &[&str], wrapper: &[&str]) -> HashMap<String, String> {
    let mut argv = wrapper.to_vec();
    argv.extend(["/usr/local/bin/nixrun-probe", "facts"]);
    facts(&service_ok(c, props, &argv))
}

/// What a sandbox's process must see: PID 1 (or 2 under bwrap's own init) of
/// a PID namespace with only itself in it, and /proc/sys read-only.
fn assert_own_procfs(f: &HashMap<String, String>, pid: &str, what: &str) {
    assert_eq!(
        f["pid"], pid,
        "{what}: pid in its own namespace; facts: {f:?}"
    );
    let pids: usize = f["proc_pids"].parse().unwrap();
    assert!(
        pids <= 3,
        "{what}: its procfs shows {pids} processes, not its namespace's"
    );
    assert_eq!(f["fstype./proc"], "proc", "{what}");
    assert_eq!(
        f["ro./proc/sys"], "1",
        "{what}: /proc/sys must stay read-only"
    );
}

#[test]
fn unshare_and_bwrap_get_a_procfs_of_their_own_as_root_and_as_a_user() {
    let snap = HostSnapshot::take("nest-sbx");
    let (_t, _root, mut c) = boot("sandboxes", "nest-sbx", &[]);
    let unshare = ["unshare", "-m", "-p", "-f", "--mount-proc"];
    assert_own_procfs(
        &probe_facts(&mut c, &[], &unshare),
        "1",
        "unshare --mount-proc",
    );
    let bwrap = [
        "bwrap",
        "--bind",
        "/",
        "/",
        "--unshare-pid",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
    ];
    assert_own_procfs(&probe_facts(&mut c, &[], &bwrap), "2", "bwrap --proc");

    // An unprivileged user, in a user namespace of its own: bwrap without
    // setuid, unshare -U -r.
    let user = ["User=nobody"];
    let f = probe_facts(
        &mut c,
        &user,
        &["unshare", "-U", "-r", "-m", "-p", "-f", "--mount-proc"],
    );
    assert_own_procfs(&f, "1", "unshare -U -r --mount-proc as nobody");
    assert_eq!(f["uid"], "0");
    let ubwrap = [
        "bwrap",
        "--unshare-user",
        "--uid",
        "0",
        "--ro-bind",
        "/",
        "/",
        "--unshare-pid",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
    ];
    assert_own_procfs(
        &probe_facts(&mut c, &user, &ubwrap),
        "2",
        "bwrap --unshare-user as nobody",
    );

    // The supervisor mounts only what the caller may mount: not for an
    // unprivileged user outside a user namespace of its own.
    service_ok(&mut c, &[], &["mkdir", "-m", "1777", "/tmp/nest-mnt"]);
    let probe_mount = [
        "/usr/local/bin/nixrun-probe",
        "mount",
        "tmpfs",
        "/tmp/nest-mnt",
    ];
    let as_nobody = service_ok(&mut c, &["User=nobody", "PrivateTmp=no"], &probe_mount);
    assert_eq!(
        as_nobody.trim(),
        "EPERM",
        "an unprivileged guest user mounted a tmpfs"
    );
    let as_root = service_ok(&mut c, &["PrivateTmp=no"], &probe_mount);
    assert_eq!(as_root.trim(), "ok");

    c.signal(libc::SIGTERM);
    assert_eq!(exit_code(c.wait_exit(STOP_TIMEOUT)), 0);
    snap.assert_unchanged();
}

#[test]
fn the_guests_systemd_applies_device_policies() {
    // Its device programs reach the kernel through the supervisor: before,
    // bpf(2) was refused and DevicePolicy= silently did nothing.
    let snap = HostSnapshot::take("nest-devpol");
    let (_t, _root, mut c) = boot("debian", "nest-devpol", &[]);
    let strict = ["DevicePolicy=strict", "DeviceAllow=/dev/null rw"];
    let out = service_ok(
        &mut c,
        &strict,
        &[
            "sh",
            "-c",
            "head -c1 /dev/urandom >/dev/null 2>&1 && echo urandom-open || echo urandom-refused; \
             echo x >/dev/null && echo null-open",
        ],
    );
    assert_eq!(
        out.split_whitespace().collect::<Vec<_>>(),
        ["urandom-refused", "null-open"]
    );
    let out = service_ok(
        &mut c,
        &[],
        &[
            "sh",
            "-c",
            "head -c1 /dev/urandom >/dev/null && echo urandom-open",
        ],
    );
    assert_eq!(
        out.trim(),
        "urandom-open",
        "without a policy the service reads it"
    );
    c.signal(libc::SIGTERM);
    assert_eq!(exit_code(c.wait_exit(STOP_TIMEOUT)), 0);
    snap.assert_unchanged();
}

#[test]
fn private_pids_and_root_directory_services_in_a_systemd_257_guest() {
    let snap = HostSnapshot::take("nest-trixie");
    let (_t, _root, mut c) = boot("trixie", "nest-trixie", &[]);
    let version = c.sh("systemctl --version | head -n1");
    let v: u32 = version
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("systemctl --version: {version}"));
    assert!(
        v >= 257,
        "the trixie guest runs systemd {v}, PrivatePIDs= needs 257"
    );
    // The service is PID 1 of its namespace ($$$$: systemd-run hands "$$" on
    // to sh), and /proc shows that namespace: without a procfs of its own,
    // systemd 257 quietly keeps the container's, where PID 1 is systemd.
    let script = "echo $$$$; cat /proc/1/comm; ls /proc | grep -c '^[0-9]'";
    let out = service_ok(&mut c, &["PrivatePIDs=yes"], &["sh", "-c", script]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["1", "sh"], "PrivatePIDs=yes: {out}");
    let seen: usize = lines[2].parse().unwrap();
    assert!(seen <= 3, "PrivatePIDs=yes: /proc shows {seen} processes");
    let out = service_ok(&mut c, &[], &["sh", "-c", script]);
    assert_eq!(out.lines().nth(1), Some("systemd"), "{out}");

    // RootDirectory= with the API file systems (MountAPIVFS=yes mounts a
    // procfs for the service's own PID namespace).
    c.sh(
        "mkdir -p /var/lib/nest-rd/usr /var/lib/nest-rd/proc /var/lib/nest-rd/dev \
         /var/lib/nest-rd/sys /var/lib/nest-rd/run /var/lib/nest-rd/tmp && \
         cd /var/lib/nest-rd && ln -sfn usr/bin bin && ln -sfn usr/lib lib && \
         ln -sfn usr/lib64 lib64 && ln -sfn usr/sbin sbin",
    );
    let out = service_ok(
        &mut c,
        &[
            "RootDirectory=/var/lib/nest-rd",
            "BindReadOnlyPaths=/usr",
            "MountAPIVFS=yes",
            "PrivatePIDs=yes",
        ],
        &["sh", "-c", "echo $$$$; ls /proc | grep -c '^[0-9]'"],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("1"),
        "RootDirectory= service: {out}"
    );
    c.signal(libc::SIGTERM);
    assert_eq!(exit_code(c.wait_exit(STOP_TIMEOUT)), 0);
    snap.assert_unchanged();
}

/// A root tree of busybox, as a tar for `podman import`.
fn busybox_image(t: &TempRoot) -> PathBuf {
    require_tool("busybox", "busybox-static");
    require_tool("tar", "tar");
    let tree = t.path("image");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    let busybox = which("busybox");
    std::fs::copy(&busybox, tree.join("bin/busybox")).unwrap();
    for applet in ["sh", "echo", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(applet)).unwrap();
    }
    let tar = t.path("image.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&tree)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success(), "tar of the image tree failed");
    tar
}

fn which(tool: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("missing prerequisite: {tool}"))
}

#[test]
fn podman_runs_a_container_from_an_imported_image() {
    let snap = HostSnapshot::take("nest-podman");
    let (t, root, mut c) = boot("sandboxes", "nest-podman", &[]);
    let tar = busybox_image(&t);
    std::fs::copy(&tar, root.join("root/tiny.tar")).unwrap();
    // nixrun refuses keyctl as nspawn does (keyrings are not namespaced), so
    // crun must not make a session keyring for the container.
    std::fs::create_dir_all(root.join("etc/containers/containers.conf.d")).unwrap();
    std::fs::write(
        root.join("etc/containers/containers.conf.d/nixrun.conf"),
        "[containers]\nkeyring = false\n",
    )
    .unwrap();
    service_ok(
        &mut c,
        &[],
        &["podman", "import", "/root/tiny.tar", "localhost/tiny:1"],
    );
    // This machine's root lacks CAP_SYS_RESOURCE (host and guest alike): no
    // rlimit may be raised, and crun 1.8.1 raises RLIMIT_MEMLOCK before loading
    // its device program, so the container runs without cgroups of its own and
    // with limits at most the current ones. Its own network namespace would
    // need CAP_NET_ADMIN, which a guest without a private network lacks.
    let limits = c.sh("cat /proc/1/limits");
    let hard = |name: &str| -> String {
        limits
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().rev().nth(1))
            .unwrap_or_else(|| panic!("{name} in /proc/1/limits: {limits}"))
            .to_string()
    };
    let nofile = format!("nofile=1024:{}", hard("Max open files"));
    let nproc = format!("nproc=1024:{}", hard("Max processes"));
    let out = service_ok(
        &mut c,
        &[],
        &[
            "podman",
            "run",
            "--rm",
            "--network=host",
            "--cgroups=disabled",
            "--ulimit",
            &nofile,
            "--ulimit",
            &nproc,
            "localhost/tiny:1",
            "sh",
            "-c",
            // $$$$: systemd-run hands "$$" on to sh as its own pid.
            "echo hello from podman; echo pid $$$$; \
             echo x > /proc/sys/kernel/core_pattern 2>/dev/null || echo proc-sys-read-only",
        ],
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.first().copied(), Some("hello from podman"), "{out}");
    assert_eq!(lines.get(1).copied(), Some("pid 1"), "{out}");
    assert!(lines.contains(&"proc-sys-read-only"), "{out}");
    service_ok(&mut c, &[], &["podman", "rmi", "localhost/tiny:1"]);
    c.signal(libc::SIGTERM);
    assert_eq!(exit_code(c.wait_exit(STOP_TIMEOUT)), 0);
    snap.assert_unchanged();
}
