//! The probe attacks the container from inside (`nixrun-probe escape`: one line
//! per attack, `blocked NAME` or `ESCAPED NAME: ...`), in every test guest, under
//! nixrun's full policy. Every line must say blocked; a probe that prints fewer
//! attacks than it knows also fails, so an attack cannot drop out silently.
//!
//! In booted guests the probe runs as a service of the guest's systemd
//! (systemd-run), so it carries what every guest process carries: PID 1's
//! seccomp filters, capability bounding set, cgroup and mount namespace.
//!
//! Nested guests attack too: nixrun inside the Debian guest boots the minimal
//! guest (the probe as its PID 1) and the Debian guest (the probe as a service),
//! and every attack must still be blocked there.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};

/// The attack names the probe knows.
fn attack_names() -> Vec<String> {
    let out = std::process::Command::new(probe_binary())
        .args(["escape", "--list"])
        .output()
        .expect("run the probe on the host");
    assert!(out.status.success(), "nixrun-probe escape --list failed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

fn assert_all_blocked(report: &str, guest: &str) {
    let names = attack_names();
    assert!(
        names.len() >= 20,
        "the probe knows only {} attacks",
        names.len()
    );
    let lines: Vec<&str> = report.lines().filter(|l| !l.trim().is_empty()).collect();
    let bad: Vec<&&str> = lines
        .iter()
        .filter(|l| !l.starts_with("blocked "))
        .collect();
    assert!(
        bad.is_empty(),
        "{guest}: not blocked:\n{}\n\nfull report:\n{report}",
        bad.iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    for n in &names {
        assert!(
            lines.iter().any(
                |l| l.split_whitespace().nth(1).map(|w| w.trim_end_matches(':'))
                    == Some(n.as_str())
            ),
            "{guest}: attack {n} did not report; report:\n{report}"
        );
    }
}

/// A directory to bind read-only at /nix/store in guests that have no store.
fn store_dir(t: &TempRoot) -> String {
    let store = t.path("store");
    fs::create_dir_all(store.join("abc-pkg")).unwrap();
    fs::write(store.join("abc-pkg/file"), "store content").unwrap();
    format!("--bind-ro={}:/nix/store", store.display())
}

#[test]
fn minimal_guest_probe_as_pid_1() {
    let (t, root) = TempRoot::copy_of("esc-min", &fixture("minimal"), "esc-min");
    let snap = HostSnapshot::take("esc-min");
    let store = store_dir(&t);
    let host_pid = format!("--setenv=NIXRUN_PROBE_HOST_PID={}", std::process::id());
    let (code, out, err) = run_probe(&root, &[&store, &host_pid], &["escape"]);
    assert_all_blocked(&out, "minimal");
    assert_eq!(code, 0, "{err}");
    snap.assert_unchanged();
}

/// The same wall where the guest is born in its cgroup2 payload (a host
/// without v1 hierarchies: the device program, not the v1 controller,
/// keeps the devices).
#[test]
fn minimal_guest_probe_on_a_cgroup2_only_host() {
    let (t, root) = TempRoot::copy_of("esc-cg2", &fixture("minimal"), "esc-cg2");
    let snap = HostSnapshot::take("esc-cg2");
    let store = store_dir(&t);
    let host_pid = format!("--setenv=NIXRUN_PROBE_HOST_PID={}", std::process::id());
    let args = [
        "-D",
        root.to_str().unwrap(),
        "-q",
        &store,
        &host_pid,
        "/nixrun-probe",
        "escape",
    ];
    let (st, out, err) = run_cmd(nixrun_on_cgroup2_only(&args, &[]));
    assert_all_blocked(&out, "minimal, cgroup2 only");
    assert_eq!(exit_code(st), 0, "{err}");
    snap.assert_unchanged();
}

fn probe_in_booted_guest(c: &mut Spawned, probe_path: &str) -> String {
    let env = format!("--setenv=NIXRUN_PROBE_HOST_PID={}", std::process::id());
    let out = c.exec(&[
        "systemd-run",
        "--wait",
        "--pipe",
        "--quiet",
        &env,
        probe_path,
        "escape",
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn debian_guest_probe_as_a_service() {
    debian_guest_attacked("esc-deb", &[]);
}

/// On an ephemeral root (an overlay over the tree, with a tmpfs upper layer)
/// the wall is the same, and what the attacks write stays off the tree.
#[test]
fn ephemeral_debian_guest_probe_as_a_service() {
    debian_guest_attacked("esc-deb-eph", &["-x", "-M", "esc-deb-eph"]);
}

fn debian_guest_attacked(tag: &str, extra: &[&str]) {
    let (t, root) = TempRoot::copy_of(tag, &fixture("debian"), tag);
    install_probe(&root);
    let store = store_dir(&t);
    let snap = HostSnapshot::take(tag);
    let mut args = vec![
        "-D",
        root.to_str().unwrap(),
        "-b",
        "--notify-ready=yes",
        &store,
    ];
    args.extend_from_slice(extra);
    let mut c = Spawned::start(&args);
    c.wait_ready(BOOT_TIMEOUT);
    let report = probe_in_booted_guest(&mut c, "/usr/local/bin/nixrun-probe");
    assert_all_blocked(&report, tag);
    // The guest survived the attacks and still runs cleanly.
    let state = c.exec(&["systemctl", "is-system-running"]);
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "running");
    c.signal(libc::SIGTERM);
    assert_eq!(exit_code(c.wait_exit(STOP_TIMEOUT)), 0);
    snap.assert_unchanged();
}

#[test]
fn nixos_shaped_guest_probe_as_a_service() {
    let snap = HostSnapshot::take("esc-nixos");
    let g = NixosGuest::start("esc-nixos", &[]);
    let mut c = g.spawned;
    c.wait_ready(BOOT_TIMEOUT);
    let report = probe_in_booted_guest(&mut c, "/nixrun-probe");
    assert_all_blocked(&report, "nixos");
    c.signal(libc::SIGTERM);
    assert_eq!(exit_code(c.wait_exit(STOP_TIMEOUT)), 0);
    snap.assert_unchanged();
}

/// The probe is not blind: with the keyring calls allowed back it reports the
/// escape, and --system-call-filter/--drop-capability reach the guest.
#[test]
fn policy_options_change_what_the_guest_can_do() {
    let (t, root) = TempRoot::copy_of("esc-opts", &fixture("minimal"), "esc-opts");
    let store = store_dir(&t);
    let probe = |extra: &[&str], cmd: &[&str]| -> String {
        let mut args = vec![store.as_str()];
        args.extend_from_slice(extra);
        run_probe(&root, &args, cmd).1
    };
    assert!(probe(&[], &["escape", "keyring"]).starts_with("blocked keyring"));
    let loosened = probe(&["--system-call-filter=@keyring"], &["escape", "keyring"]);
    assert!(loosened.starts_with("ESCAPED keyring"), "{loosened}");
    // ~ adds a call to the deny list: here one the probe's facts need (uname is
    // not among them, getcwd is).
    let f = facts(&probe(&["--system-call-filter=~getcwd"], &["facts"]));
    assert!(f["cwd"].contains("EPERM"), "cwd: {}", f["cwd"]);

    let caps = |extra: &[&str]| -> u64 {
        u64::from_str_radix(&facts(&probe(extra, &["facts"]))["capbnd"], 16).unwrap()
    };
    const SYS_ADMIN: u64 = 1 << 21;
    const NET_ADMIN: u64 = 1 << 12;
    const SYS_MODULE: u64 = 1 << 16;
    let default = caps(&[]);
    assert!(default & SYS_ADMIN != 0 && default & NET_ADMIN == 0 && default & SYS_MODULE == 0);
    assert_eq!(caps(&["--drop-capability=CAP_SYS_ADMIN"]) & SYS_ADMIN, 0);
    assert_ne!(caps(&["--capability=CAP_NET_ADMIN"]) & NET_ADMIN, 0);
}

/// nixrun's own binaries in a guest, bound read-only.
fn nixrun_binds() -> Vec<String> {
    let nixrun = Path::new(NIXRUN.as_str());
    let ctl = nixrun.with_file_name("nixrunctl");
    assert!(ctl.is_file(), "nixrunctl next to {}", nixrun.display());
    vec![
        format!("--bind-ro={}:/usr/local/bin/nixrun", nixrun.display()),
        format!("--bind-ro={}:/usr/local/bin/nixrunctl", ctl.display()),
    ]
}

/// The Debian guest with nixrun in it and `binds` (more directories for it),
/// booted as `machine`.
fn outer_guest(machine: &str, binds: &[String]) -> (TempRoot, Spawned) {
    let (t, root) = TempRoot::copy_of(machine, &fixture("debian"), machine);
    install_probe(&root);
    let mut args: Vec<String> = vec![
        "-D".into(),
        root.to_str().unwrap().into(),
        "-M".into(),
        machine.into(),
        "-b".into(),
        "--notify-ready=yes".into(),
        "--register=no".into(),
    ];
    args.extend(nixrun_binds());
    args.extend(binds.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut c = Spawned::start(&args);
    c.wait_ready(BOOT_TIMEOUT);
    (t, c)
}

#[test]
fn nested_minimal_guest_probe_as_pid_1() {
    let snap = HostSnapshot::take("nest-esc-outer");
    let (t, min) = TempRoot::copy_of("nest-esc-min", &fixture("minimal"), "min");
    let store = t.path("store");
    fs::create_dir_all(store.join("abc-pkg")).unwrap();
    fs::write(store.join("abc-pkg/file"), "store content").unwrap();
    let binds = [
        format!("--bind={}:/var/lib/machines/min", min.display()),
        format!("--bind-ro={}:/var/lib/store", store.display()),
    ];
    let (_o, mut c) = outer_guest("nest-esc-outer", &binds);
    let out = c.exec(&[
        "systemd-run",
        "--wait",
        "--pipe",
        "--quiet",
        "/usr/local/bin/nixrun",
        "-D",
        "/var/lib/machines/min",
        "-q",
        "--register=no",
        "--bind-ro=/var/lib/store:/nix/store",
        "/nixrun-probe",
        "escape",
    ]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_all_blocked(&report, "minimal, nested in debian");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.signal(libc::SIGTERM);
    assert_eq!(exit_code(c.wait_exit(STOP_TIMEOUT)), 0);
    snap.assert_unchanged();
}

#[test]
fn nested_debian_guest_boots_and_its_probe_finds_no_way_out() {
    let snap = HostSnapshot::take("nest-esc-deb");
    let (t, inner) = TempRoot::copy_of("nest-esc-inner", &fixture("debian"), "inner");
    install_probe(&inner);
    let store = t.path("store");
    fs::create_dir_all(store.join("abc-pkg")).unwrap();
    let binds = [
        format!("--bind={}:/var/lib/machines/inner", inner.display()),
        format!("--bind-ro={}:/var/lib/store", store.display()),
    ];
    let (_o, mut c) = outer_guest("nest-esc-deb", &binds);
    // As NixOS runs a container: a notify service with a delegated cgroup and
    // --keep-unit; systemd-run returns once the inner guest is ready.
    let started = c.exec(&[
        "systemd-run",
        "--quiet",
        "--unit=nest-inner",
        "-p",
        "Type=notify",
        "-p",
        "Delegate=yes",
        "-p",
        "KillMode=mixed",
        "/usr/local/bin/nixrun",
        "--keep-unit",
        "--register=no",
        "-D",
        "/var/lib/machines/inner",
        "-M",
        "inner",
        "-b",
        "--notify-ready=yes",
        "--console=pipe",
        "--bind-ro=/var/lib/store:/nix/store",
    ]);
    assert!(
        started.status.success(),
        "starting the inner guest: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    // Into the outer guest with the host's nixrunctl (its cgroups and device
    // policy included), then into the inner one with the guest's.
    let ctl: PathBuf = Path::new(NIXRUN.as_str()).with_file_name("nixrunctl");
    let inner_exec = |argv: &[&str]| -> String {
        let out = std::process::Command::new(&ctl)
            .args(["exec", "nest-esc-deb", "--"])
            .args(["/usr/local/bin/nixrunctl", "exec", "inner", "--"])
            .args(argv)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{argv:?} in the inner guest: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let state = inner_exec(&["systemctl", "is-system-running", "--wait"]);
    let failed = inner_exec(&["systemctl", "--failed", "--no-legend", "--plain"]);
    assert_eq!(
        state.trim(),
        "running",
        "inner guest; failed units: {failed}"
    );
    assert_eq!(failed.trim(), "", "failed units in the inner guest");
    assert_eq!(inner_exec(&["hostname"]).trim(), "inner");
    let f = facts(&inner_exec(&["/usr/local/bin/nixrun-probe", "facts"]));
    assert_eq!(
        f["capbnd"], "00000000fcecafff",
        "the inner guest's bounding set"
    );
    let report = inner_exec(&[
        "systemd-run",
        "--wait",
        "--pipe",
        "--quiet",
        "/usr/local/bin/nixrun-probe",
        "escape",
    ]);
    assert_all_blocked(&report, "debian, nested in debian");
    // Stopping the outer guest stops the inner one on the way.
    c.signal(libc::SIGTERM);
    assert_eq!(exit_code(c.wait_exit(STOP_TIMEOUT)), 0);
    snap.assert_unchanged();
}

// ------------------------------------------------------------ user namespaces

/// A host directory owned by the host's root (0755, a 0644 file in it), to be
/// bound into a -U guest without an ID mapping: the probe's
/// userns-host-root-files attack tries to write it.
fn host_root_files(t: &TempRoot) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = t.path("host-root-files");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("file"), "the host's root's").unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(dir.join("file"), fs::Permissions::from_mode(0o644)).unwrap();
    dir
}

const HOST_FILES_AT: &str = "/run/nixrun-host-files";

/// The userns attacks ran inside a namespace of the guest's own (not the
/// host's, where they only say so) and found the bound host files.
fn assert_userns_attacks_ran(report: &str, guest: &str) {
    for l in report.lines().filter(|l| l.contains(" userns-")) {
        assert!(
            !l.contains("not in a user namespace of its own"),
            "{guest}: the guest is not in a user namespace: {l}"
        );
    }
    let files = report
        .lines()
        .find(|l| l.contains(" userns-host-root-files"))
        .expect("userns-host-root-files reported");
    assert!(
        files.contains(&format!("{HOST_FILES_AT}/file")),
        "{guest}: the bound host file was not attacked: {files}"
    );
}

#[test]
fn minimal_guest_with_u_probe_as_pid_1() {
    minimal_guest_with_u_attacked("esc-uns-min", &[]);
}

/// -U with -x: the overlay over the ID-mapped tree (supervisor/ephemeral.rs).
#[test]
fn minimal_guest_with_u_and_x_probe_as_pid_1() {
    minimal_guest_with_u_attacked("esc-uns-x-min", &["-x", "-M", "esc-uns-x-min"]);
}

fn minimal_guest_with_u_attacked(tag: &str, extra: &[&str]) {
    let (t, root) = TempRoot::copy_of(tag, &fixture("minimal"), tag);
    let snap = HostSnapshot::take(tag);
    let store = store_dir(&t);
    let files = format!("--bind={}:{HOST_FILES_AT}", host_root_files(&t).display());
    let env = format!("--setenv=NIXRUN_PROBE_HOST_FILES={HOST_FILES_AT}");
    let host_pid = format!("--setenv=NIXRUN_PROBE_HOST_PID={}", std::process::id());
    let mut args = vec!["-U", store.as_str(), &files, &env, &host_pid];
    args.extend_from_slice(extra);
    let (code, out, err) = run_probe(&root, &args, &["escape"]);
    assert_all_blocked(&out, tag);
    assert_userns_attacks_ran(&out, tag);
    assert_eq!(code, 0, "{err}");
    snap.assert_unchanged();
}

#[test]
fn debian_guest_with_u_probe_as_a_service() {
    debian_guest_with_u_attacked("esc-uns-deb", &[]);
}

/// -U with -x, booted.
#[test]
fn debian_guest_with_u_and_x_probe_as_a_service() {
    debian_guest_with_u_attacked("esc-uns-x-deb", &["-x"]);
}

fn debian_guest_with_u_attacked(tag: &str, extra: &[&str]) {
    let (t, root) = TempRoot::copy_of(tag, &fixture("debian"), tag);
    install_probe(&root);
    let store = store_dir(&t);
    let files = format!("--bind={}:{HOST_FILES_AT}", host_root_files(&t).display());
    let snap = HostSnapshot::take(tag);
    let mut args = vec![
        "-U",
        "-D",
        root.to_str().unwrap(),
        "-M",
        tag,
        "-b",
        "--notify-ready=yes",
        &store,
        &files,
    ];
    args.extend_from_slice(extra);
    let mut c = Spawned::start(&args);
    c.wait_ready(BOOT_TIMEOUT);
    let host_pid = format!("--setenv=NIXRUN_PROBE_HOST_PID={}", std::process::id());
    let files_env = format!("--setenv=NIXRUN_PROBE_HOST_FILES={HOST_FILES_AT}");
    // Through nixrunctl exec, which enters the guest's user namespace: the
    // guest's systemd takes orders from its own root only (the host's root is
    // nobody to it, and nsenter without -U is the host's root).
    let ctl = Path::new(NIXRUN.as_str()).with_file_name("nixrunctl");
    let in_guest = |argv: &[&str]| -> String {
        let out = std::process::Command::new(&ctl)
            .args(["exec", tag, "--"])
            .args(argv)
            .output()
            .expect("nixrunctl exec");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let report = in_guest(&[
        "systemd-run",
        "--wait",
        "--pipe",
        "--quiet",
        &host_pid,
        &files_env,
        "/usr/local/bin/nixrun-probe",
        "escape",
    ]);
    assert_all_blocked(&report, tag);
    assert_userns_attacks_ran(&report, tag);
    let state = in_guest(&["systemctl", "is-system-running"]);
    assert_eq!(state.trim(), "running");
    c.signal(libc::SIGTERM);
    assert_eq!(exit_code(c.wait_exit(STOP_TIMEOUT)), 0);
    snap.assert_unchanged();
}

/// The userns attacks are not blind: where the wall is missing they say
/// ESCAPED — the host files bound `:idmap` (host root is the guest's root
/// there, nspawn's documented meaning), a namespace that maps the host's root
/// (`unshare -U -r`), and one whose process is still the host's root
/// (`unshare -U`, no map).
#[test]
fn userns_attacks_report_what_gets_through() {
    let (t, root) = TempRoot::copy_of("esc-uns-ctl", &fixture("minimal"), "esc-uns-ctl");
    let files = format!(
        "--bind={}:{HOST_FILES_AT}:idmap",
        host_root_files(&t).display()
    );
    let env = format!("--setenv=NIXRUN_PROBE_HOST_FILES={HOST_FILES_AT}");
    let (_, out, err) = run_probe(
        &root,
        &["-U", &files, &env],
        &["escape", "userns-host-root-files"],
    );
    assert!(
        out.starts_with("ESCAPED userns-host-root-files")
            && out.contains(&format!("{HOST_FILES_AT}/file")),
        "{out}{err}"
    );

    require_tool("unshare", "util-linux");
    let probe = probe_binary();
    let on_host = |unshare: &[&str], attack: &str| -> String {
        let out = std::process::Command::new("unshare")
            .args(unshare)
            .arg(&probe)
            .args(["escape", attack])
            .output()
            .expect("unshare");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mapped = on_host(&["--user", "--map-root-user"], "userns-map-host-root");
    assert!(
        mapped.starts_with("ESCAPED userns-map-host-root") && mapped.contains("host's uid 0"),
        "{mapped}"
    );
    let unmapped = on_host(&["--user"], "userns-host-root-files");
    assert!(
        unmapped.starts_with("ESCAPED userns-host-root-files"),
        "{unmapped}"
    );
}
