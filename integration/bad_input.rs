//! Bad input: one clear line on stderr naming the problem, a non-zero exit, and
//! nothing left on the host — no mount, no cgroup, no directory outside the
//! container root. One test per case.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;

/// Runs nixrun with `args` and checks the failure contract; `mentions` must all
/// appear in the one error line.
fn assert_refused(tag: &str, base: &Path, args: &[&str], mentions: &[&str]) {
    let snap = HostSnapshot::take(tag);
    let before = listing(base);
    let (st, out, err) = run(args);
    assert_refused_output(st, &out, &err, mentions);
    snap.assert_unchanged();
    assert_only_mount_points_added(&before, &listing(base));
}

/// Outside the container root nothing may appear; inside it, only the (empty)
/// mount points of the API file systems, which nspawn creates too.
fn assert_only_mount_points_added(before: &[String], after: &[String]) {
    const MOUNT_POINTS: &[&str] = &["dev", "proc", "sys", "run", "tmp"];
    for p in after.iter().filter(|p| !before.contains(p)) {
        let mut parts = p.splitn(2, '/');
        let (_root, rest) = (parts.next(), parts.next());
        assert!(
            rest.is_some_and(|r| MOUNT_POINTS.contains(&r)),
            "nixrun left {p} behind (all new entries: {:?})",
            after
                .iter()
                .filter(|p| !before.contains(p))
                .collect::<Vec<_>>()
        );
    }
    let removed: Vec<&String> = before.iter().filter(|p| !after.contains(p)).collect();
    assert!(removed.is_empty(), "nixrun removed {removed:?}");
}

fn assert_refused_output(st: std::process::ExitStatus, out: &str, err: &str, mentions: &[&str]) {
    assert!(!st.success(), "nixrun accepted bad input; stderr: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err:?}");
    let line = lines[0];
    assert!(line.starts_with("nixrun: "), "{line}");
    for m in mentions {
        assert!(
            line.contains(m),
            "error line {line:?} does not mention {m:?}"
        );
    }
    assert!(out.is_empty(), "unexpected stdout: {out}");
}

/// Everything below `base`, recursively, as relative paths.
fn listing(base: &Path) -> Vec<String> {
    let mut v = Vec::new();
    fn walk(dir: &Path, base: &Path, v: &mut Vec<String>) {
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.filter_map(Result::ok) {
                let p = e.path();
                v.push(p.strip_prefix(base).unwrap().display().to_string());
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&p, base, v);
                }
            }
        }
    }
    walk(base, base, &mut v);
    v.sort();
    v
}

fn minimal(tag: &str) -> (TempRoot, std::path::PathBuf) {
    TempRoot::copy_of(tag, &fixture("minimal"), tag)
}

#[test]
fn missing_root() {
    let t = TempRoot::new("bad-missing");
    let root = t.path("nope");
    assert_refused(
        "nope",
        &t.base,
        &["-D", root.to_str().unwrap(), "-b"],
        &[root.to_str().unwrap(), "does not exist"],
    );
    assert!(!root.exists());
}

#[test]
fn root_is_a_file() {
    let t = TempRoot::new("bad-file");
    let root = t.path("file");
    fs::write(&root, "x").unwrap();
    assert_refused(
        "file",
        &t.base,
        &["-D", root.to_str().unwrap(), "-b"],
        &[root.to_str().unwrap(), "not a directory"],
    );
}

#[test]
fn root_is_the_host_root() {
    let t = TempRoot::new("bad-slash");
    assert_refused(
        "bad-slash",
        &t.base,
        &["-D", "/", "-M", "bad-slash", "-b"],
        &["host's /"],
    );
    // The same through a path that resolves to /.
    assert_refused(
        "bad-slash",
        &t.base,
        &["-D", "/var/..", "-M", "bad-slash", "-b"],
        &["host's /"],
    );
}

#[test]
fn no_init_in_the_root() {
    let (t, root) = minimal("bad-noinit");
    assert_refused(
        "bad-noinit",
        &t.base,
        &["-D", root.to_str().unwrap(), "-b"],
        &["no init found", "/sbin/init"],
    );
}

#[test]
fn command_not_found() {
    let (t, root) = minimal("bad-nocmd");
    assert_refused(
        "bad-nocmd",
        &t.base,
        &[
            "-D",
            root.to_str().unwrap(),
            "/nix/var/nix/profiles/system/init",
        ],
        &["/nix/var/nix/profiles/system/init", "not found"],
    );
}

#[test]
fn init_not_executable() {
    let (t, root) = minimal("bad-noexec");
    fs::write(root.join("init"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("init"), fs::Permissions::from_mode(0o644)).unwrap();
    assert_refused(
        "bad-noexec",
        &t.base,
        &["-D", root.to_str().unwrap(), "/init"],
        &["/init", "not executable"],
    );
}

#[test]
fn bind_source_missing() {
    let (t, root) = minimal("bad-bindsrc");
    let src = t.path("missing-src");
    let flag = format!("--bind-ro={}:/mnt", src.display());
    assert_refused(
        "bad-bindsrc",
        &t.base,
        &[
            "-D",
            root.to_str().unwrap(),
            &flag,
            "/nixrun-probe",
            "exit",
            "0",
        ],
        &["--bind-ro", src.to_str().unwrap()],
    );
}

#[test]
fn malformed_bind() {
    let (t, root) = minimal("bad-bindspec");
    for (spec, why) in [
        ("--bind=relative/src:/mnt", "not an absolute path"),
        ("--bind=/tmp:relative", "not an absolute path"),
        ("--bind=/tmp:/mnt:bogus", "unknown option"),
        ("--bind=/tmp:/a/../b", "\"..\""),
        ("--bind=/tmp:/x:rbind:extra", "SRC[:DST[:OPTIONS]]"),
    ] {
        assert_refused(
            "bad-bindspec",
            &t.base,
            &[
                "-D",
                root.to_str().unwrap(),
                spec,
                "/nixrun-probe",
                "exit",
                "0",
            ],
            &["--bind", why],
        );
    }
}

#[test]
fn invalid_machine_name() {
    let (t, root) = minimal("bad-machine");
    // Hostname rules, as nspawn's: dots and 64 characters are fine (see
    // reliability.rs), these are not.
    for name in [
        "under_score",
        "-dash",
        "has space",
        "a..b",
        ".dot",
        &"x".repeat(65),
    ] {
        let flag = format!("--machine={name}");
        assert_refused(
            name,
            &t.base,
            &[
                "-D",
                root.to_str().unwrap(),
                &flag,
                "/nixrun-probe",
                "exit",
                "0",
            ],
            &["invalid machine name"],
        );
    }
}

#[test]
fn mounts_over_the_runtimes_own_file_systems() {
    let (t, root) = minimal("bad-apimount");
    for (spec, flag, path) in [
        ("--bind=/tmp:/proc", "--bind", "/proc"),
        ("--tmpfs=/proc", "--tmpfs", "/proc"),
        ("--tmpfs=/run", "--tmpfs", "/run"),
        ("--bind-ro=/tmp:/sys", "--bind-ro", "/sys"),
        ("--tmpfs=/dev", "--tmpfs", "/dev"),
        ("--tmpfs=/run/host/x", "--tmpfs", "/run/host"),
    ] {
        assert_refused(
            "bad-apimount",
            &t.base,
            &[
                "-D",
                root.to_str().unwrap(),
                spec,
                "/nixrun-probe",
                "exit",
                "0",
            ],
            &[flag, path, "nixrun"],
        );
    }
}

#[test]
fn register_yes_without_machined() {
    assert!(
        !Path::new("/run/dbus/system_bus_socket").exists(),
        "this test needs a host without a system bus"
    );
    let (t, root) = minimal("bad-register");
    assert_refused(
        "bad-register",
        &t.base,
        &[
            "-D",
            root.to_str().unwrap(),
            "--register=yes",
            "/nixrun-probe",
            "exit",
            "0",
        ],
        &["--register=yes", "system bus"],
    );
}

#[test]
fn bad_property() {
    let (t, root) = minimal("bad-property");
    for (spec, why) in [
        ("--property=TasksMax=0", "TasksMax"),
        ("--property=MemoryMax=1G", "not supported yet"),
        ("--property=TasksMax", "NAME=VALUE"),
    ] {
        assert_refused(
            "bad-property",
            &t.base,
            &[
                "-D",
                root.to_str().unwrap(),
                spec,
                "/nixrun-probe",
                "exit",
                "0",
            ],
            &["--property", why],
        );
    }
}

#[test]
fn unknown_signal_name() {
    let (t, root) = minimal("bad-signal");
    assert_refused(
        "bad-signal",
        &t.base,
        &["-D", root.to_str().unwrap(), "--kill-signal=SIGFOO", "-b"],
        &["--kill-signal", "SIGFOO"],
    );
}

#[test]
fn unsupported_nspawn_flag() {
    let (t, root) = minimal("bad-flag");
    assert_refused(
        "bad-flag",
        &t.base,
        &["-D", root.to_str().unwrap(), "--personality=x86", "-b"],
        &["--personality", "not supported yet"],
    );
}

#[test]
fn not_running_as_root() {
    let (t, root) = minimal("bad-nonroot");
    let snap = HostSnapshot::take("bad-nonroot");
    let before = listing(&t.base);
    let mut cmd = nixrun_cmd(&["-D", root.to_str().unwrap(), "/nixrun-probe", "exit", "0"]);
    cmd.uid(65534).gid(65534);
    let (st, out, err) = run_cmd(cmd);
    assert_refused_output(st, &out, &err, &["must be run as root"]);
    snap.assert_unchanged();
    assert_eq!(
        listing(&t.base),
        before,
        "a refused start must not touch the root"
    );
}

/// CVE-2023-27561 and friends: /proc, /sys or /dev as a symlink could aim the API
/// file systems at the host.
fn api_dir_symlink(name: &str) {
    let (t, root) = minimal(&format!("bad-{name}-link"));
    let target = t.path("elsewhere");
    fs::create_dir_all(&target).unwrap();
    std::os::unix::fs::symlink(&target, root.join(name)).unwrap();
    assert_refused(
        &format!("bad-{name}-link"),
        &t.base,
        &["-D", root.to_str().unwrap(), "/nixrun-probe", "exit", "0"],
        &[name, "symlink"],
    );
    assert_eq!(
        fs::read_dir(&target).unwrap().count(),
        0,
        "something was created through the symlink"
    );
}

#[test]
fn proc_is_a_symlink() {
    api_dir_symlink("proc");
}

#[test]
fn sys_is_a_symlink() {
    api_dir_symlink("sys");
}

#[test]
fn dev_is_a_symlink() {
    api_dir_symlink("dev");
}

/// --volatile needs the tree's /usr (=yes) or /var (=state); the minimal
/// guest has neither.
#[test]
fn volatile_on_a_root_without_usr() {
    let (t, root) = minimal("bad-vol");
    let r = root.to_str().unwrap();
    for (flag, needs) in [
        ("--volatile", "/usr"),
        ("--volatile=yes", "/usr"),
        ("--volatile=state", "/var"),
    ] {
        assert_refused(
            "bad-vol",
            &t.base,
            &["-D", r, "-M", "bad-vol", flag, "/nixrun-probe", "exit", "0"],
            &[flag.split('=').next().unwrap(), needs, r],
        );
    }
    assert_refused(
        "bad-vol",
        &t.base,
        &["-D", r, "-M", "bad-vol", "--volatile=bogus", "-b"],
        &["--volatile", "bogus", "yes, no, state or overlay"],
    );
}

/// nspawn would run the host's own tree with --ephemeral or --volatile;
/// nixrun refuses / whatever the flags.
#[test]
fn ephemeral_or_volatile_on_the_host_root() {
    let t = TempRoot::new("bad-eph-slash");
    for flag in ["-x", "--ephemeral", "--volatile=yes", "--volatile=state"] {
        assert_refused(
            "bad-eph-slash",
            &t.base,
            &["-D", "/", "-M", "bad-eph-slash", flag, "-b"],
            &["host's /", "--ephemeral or --volatile"],
        );
    }
}

/// Overlay specs nspawn refuses too, and paths that are not there: refused
/// before anything is made (no work directory next to the upper one).
#[test]
fn malformed_overlay() {
    let (t, root) = minimal("bad-ovl");
    let (low, up) = (t.path("low"), t.path("up"));
    fs::create_dir_all(&low).unwrap();
    fs::create_dir_all(&up).unwrap();
    fs::write(t.path("file"), "").unwrap();
    let (l, u) = (low.to_str().unwrap(), up.to_str().unwrap());
    let missing = t.path("missing");
    let m = missing.to_str().unwrap();
    let file = t.path("file");
    let f = file.to_str().unwrap();
    for (spec, why) in [
        (format!("--overlay={l}"), "LOWER:UPPER".to_string()),
        (format!("--overlay={l}:"), "may not be empty".into()),
        (
            format!("--overlay=relative:{u}:/x"),
            "not an absolute path".into(),
        ),
        (
            format!("--overlay={l}:relative:/x"),
            "not an absolute path".into(),
        ),
        (format!("--overlay={m}:{u}:/x"), m.to_string()),
        (format!("--overlay={l}:{m}:/x"), m.to_string()),
        (format!("--overlay={l}:{f}:/x"), "not a directory".into()),
        (format!("--overlay={l}:{u}:/"), "/".into()),
        (format!("--overlay={l}:{u}:/proc"), "/proc".into()),
        (format!("--overlay={l}:{u}:relative"), "relative".into()),
        (format!("--overlay-ro={l}::/a/../b"), "\"..\"".into()),
    ] {
        let flag = spec.split('=').next().unwrap().to_string();
        assert_refused(
            "bad-ovl",
            &t.base,
            &[
                "-D",
                root.to_str().unwrap(),
                "-M",
                "bad-ovl",
                &spec,
                "/nixrun-probe",
                "exit",
                "0",
            ],
            &[&flag, &why],
        );
    }
}

/// A start that fails in the container after the supervisor made an
/// overlay's work directory (here: --inaccessible= of a path the guest does
/// not have) removes it, and its note in /run/nixrun/overlay.
#[test]
fn failed_start_removes_overlay_work_directories() {
    let (t, root) = minimal("bad-ovl-late");
    // The overlay's mount point is made in the root before the failure, as a
    // bind's is: there, not outside the root.
    fs::create_dir_all(root.join("srv")).unwrap();
    let (low, up) = (t.path("low"), t.path("up"));
    fs::create_dir_all(&low).unwrap();
    fs::create_dir_all(&up).unwrap();
    let spec = format!("--overlay={}:{}:/srv", low.display(), up.display());
    assert_refused(
        "bad-ovl-late",
        &t.base,
        &[
            "-D",
            root.to_str().unwrap(),
            "-M",
            "bad-ovl-late",
            &spec,
            "--inaccessible=/no/such/path",
            "/nixrun-probe",
            "exit",
            "0",
        ],
        &["--inaccessible=/no/such/path", "does not exist"],
    );
    assert!(!Path::new("/run/nixrun/overlay/bad-ovl-late").exists());
}

#[test]
fn link_journal_guest_with_a_throw_away_root() {
    let (t, root) = minimal("bad-eph-journal");
    assert_refused(
        "bad-eph-journal",
        &t.base,
        &[
            "-D",
            root.to_str().unwrap(),
            "-M",
            "bad-eph-journal",
            "-x",
            "--link-journal=guest",
            "-b",
        ],
        &["--link-journal=guest", "--ephemeral"],
    );
}

/// -U with ownership chown would write the whole tree, which --ephemeral
/// (and --volatile, --read-only) leave as it is: refused, the range released.
#[test]
fn chown_ownership_with_a_throw_away_root() {
    let (t, root) = minimal("bad-eph-chown");
    let locks = || -> Vec<String> {
        fs::read_dir("/run/systemd/nspawn/locks")
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = locks();
    assert_refused(
        "bad-eph-chown",
        &t.base,
        &[
            "-D",
            root.to_str().unwrap(),
            "-M",
            "bad-eph-chown",
            "-U",
            "--private-users-ownership=chown",
            "-x",
            "/nixrun-probe",
            "exit",
            "0",
        ],
        &["chowned", "--ephemeral"],
    );
    // Only what can be this run's: the tree's and the name's lock, and range
    // locks (numbers); other containers on the machine come and go meanwhile.
    let meta = fs::metadata(&root).unwrap();
    let tree = format!(
        "inode-{}:{}",
        std::os::unix::fs::MetadataExt::dev(&meta),
        std::os::unix::fs::MetadataExt::ino(&meta)
    );
    let ours = |l: &String| {
        *l == tree || l == "name-bad-eph-chown" || l.bytes().all(|b| b.is_ascii_digit())
    };
    let after = locks();
    let new: Vec<_> = after
        .iter()
        .filter(|l| !before.contains(l) && ours(l))
        .collect();
    assert!(new.is_empty(), "lock files left: {new:?}");
}
