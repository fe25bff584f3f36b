//! Throw-away and protected roots, on real containers: -x/--ephemeral (the tree
//! is byte-for-byte what it was after a boot that wrote to it, also after a
//! SIGKILL of the supervisor, and nothing of the snapshot survives anywhere),
//! --volatile=yes|state|overlay, --read-only, --overlay=/--overlay-ro= and
//! --inaccessible=. The refusals (bad input) are in bad_input.rs, with the
//! other refusals; the escape attempts under --ephemeral in escape.rs.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Every entry of the tree (type, mode, owners, size, mtime, ctime, link
/// target) and every regular file's SHA-256, one line each, sorted.
fn tree_digest(root: &Path) -> BTreeSet<String> {
    require_tool("sha256sum", "coreutils");
    let script = r#"cd "$1" && find . -xdev -printf '%p %y %m %U:%G %s %T@ %C@ %l\n' &&
        find . -xdev -type f -print0 | xargs -0 -r sha256sum"#;
    let out = Command::new("sh")
        .args(["-c", script, "sh"])
        .arg(root)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "hashing {}: {}",
        root.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let set: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        set.len() > 10,
        "{} holds only {} lines",
        root.display(),
        set.len()
    );
    set
}

fn assert_same_tree(before: &BTreeSet<String>, root: &Path) {
    let after = tree_digest(root);
    let added: Vec<_> = after.difference(before).take(20).collect();
    let removed: Vec<_> = before.difference(&after).take(20).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "{} changed: now {added:#?}\nbefore {removed:#?}",
        root.display()
    );
}

/// The names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Mount-table lines, in any process's mount namespace, that name `path`:
/// what would hold an overlay or tmpfs of a run alive.
fn mounts_naming(path: &Path) -> Vec<String> {
    let needle = path.to_str().unwrap();
    let mut hits = Vec::new();
    for e in fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let pid = e.file_name();
        if !pid.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(mi) = fs::read_to_string(e.path().join("mountinfo")) {
            for l in mi.lines().filter(|l| l.contains(needle)) {
                hits.push(format!("pid {}: {l}", pid.to_string_lossy()));
            }
        }
    }
    hits
}

/// Waits until `pid` is dead (gone or a zombie: this host's PID 1 reaps
/// slowly); fails after 30 s.
fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pid {pid} outlived its supervisor"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn debian_copy(tag: &str) -> (TempRoot, PathBuf) {
    TempRoot::copy_of(tag, &fixture("debian"), tag)
}

fn stop(mut c: Spawned) {
    c.signal(libc::SIGTERM);
    assert_eq!(exit_code(c.wait_exit(STOP_TIMEOUT)), 0, "{}", c.log_text());
}

/// What the guest writes in every test that checks the tree stays as it was:
/// a new file, a changed one, a removed one, a renamed directory, changed
/// owners and modes, a hard link, a device node.
const WRITES: &str = "set -e
    echo written > /etc/nixrun-ephemeral
    echo more >> /etc/os-release.local
    echo changed >> /etc/hostname
    rm /etc/debian_version
    mv /usr/share/doc /usr/share/doc-renamed
    chown 1:1 /etc/passwd
    chmod 600 /etc/group
    ln /usr/bin/true /usr/bin/true-link
    mknod /root/null c 1 3
    dd if=/dev/zero of=/var/tmp/blob bs=1M count=8 status=none
    rm -rf /usr/share/locale
    sync";

/// The guest boots on the snapshot (running, no failed unit), writes to it,
/// sees its writes; the host sees none of them, during the run or after; the
/// tree is byte-for-byte as it was, nothing was made next to it, nothing stays
/// mounted anywhere.
#[test]
fn ephemeral_boot_leaves_the_tree_byte_for_byte_unchanged() {
    let (t, root) = debian_copy("eph-tree");
    let before = tree_digest(&root);
    let beside = names(&t.base);
    let snap = HostSnapshot::take("eph-tree");
    let mut c = Spawned::boot(&root, "eph-tree", &["-x"]);
    c.wait_ready(BOOT_TIMEOUT);
    let state = c.exec(&["systemctl", "is-system-running", "--wait"]);
    let failed = c.sh("systemctl --failed --no-legend --plain");
    assert_eq!(
        String::from_utf8_lossy(&state.stdout).trim(),
        "running",
        "failed units: {failed}"
    );
    c.sh(WRITES);
    assert_eq!(c.sh("cat /etc/nixrun-ephemeral"), "written\n");
    assert_ne!(
        c.sh("test ! -e /etc/debian_version && ls /usr/share/doc-renamed | wc -l")
            .trim(),
        "0"
    );
    // The guest's writes live in RAM: the root is an overlay with a tmpfs upper layer.
    assert_eq!(c.sh("stat -f -c %T /").trim(), "overlayfs");
    assert!(!root.join("etc/nixrun-ephemeral").exists());
    assert!(root.join("etc/debian_version").exists());
    assert!(
        !mount_points().iter().any(|m| m.starts_with(&root)),
        "the snapshot is mounted in the host's mount namespace"
    );
    stop(c);
    assert_same_tree(&before, &root);
    assert_eq!(names(&t.base), beside, "entries next to the tree changed");
    let left = mounts_naming(&root);
    assert!(
        left.is_empty(),
        "still mounted after the run:\n{}",
        left.join("\n")
    );
    snap.assert_unchanged();
}

/// A guest reboot keeps the snapshot (it is per run, as nspawn's): what the
/// guest wrote before `reboot` is there after it; the tree is untouched.
#[test]
fn ephemeral_snapshot_lives_for_the_run_across_reboots() {
    let (_t, root) = debian_copy("eph-reboot");
    let before = tree_digest(&root);
    let snap = HostSnapshot::take("eph-reboot");
    let mut c = Spawned::boot(&root, "eph-reboot", &["-x"]);
    c.wait_ready(BOOT_TIMEOUT);
    c.sh("echo kept > /etc/nixrun-reboot");
    let old = c.leader();
    let _ = c.exec(&["systemctl", "reboot"]);
    c.wait_new_leader(old, BOOT_TIMEOUT);
    c.wait_readies(2, BOOT_TIMEOUT);
    assert_eq!(c.sh("cat /etc/nixrun-reboot"), "kept\n");
    stop(c);
    assert_same_tree(&before, &root);
    snap.assert_unchanged();
}

/// SIGKILL of the supervisor in the middle of an ephemeral boot: the guest
/// goes with it, no mount namespace anywhere keeps the snapshot, the tree is
/// as it was, and the next start of the machine boots (on a fresh snapshot:
/// the killed run's writes are gone) and removes what the killed run left (its
/// cgroups), so that afterwards the host is as before.
#[test]
fn sigkill_of_the_supervisor_during_an_ephemeral_boot_leaves_nothing() {
    let (t, root) = debian_copy("eph-kill");
    let before = tree_digest(&root);
    let beside = names(&t.base);
    let snap = HostSnapshot::take("eph-kill");
    let mut c = Spawned::boot(&root, "eph-kill", &["-x"]);
    c.wait_ready(BOOT_TIMEOUT);
    c.sh(WRITES);
    let leader = c.leader();
    c.signal(libc::SIGKILL);
    let st = c.wait_exit(STOP_TIMEOUT);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGKILL)
    );
    wait_gone(leader);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut left = mounts_naming(&root);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        left = mounts_naming(&root);
    }
    assert!(
        left.is_empty(),
        "the killed run's mounts live on:\n{}",
        left.join("\n")
    );
    assert_same_tree(&before, &root);
    // Only the tree's lock file (nspawn's `.#NAME.lck`, which a SIGKILLed
    // nspawn leaves too); nothing holds it, the next start takes and removes it.
    let lock = format!(".#{}.lck", root.file_name().unwrap().to_string_lossy());
    let mut expected = beside.clone();
    expected.push(lock);
    expected.sort();
    assert_eq!(names(&t.base), expected, "entries next to the tree");

    let mut c = Spawned::boot(&root, "eph-kill", &["-x"]);
    c.wait_ready(BOOT_TIMEOUT);
    assert_eq!(
        c.sh("test -e /etc/nixrun-ephemeral && echo yes || echo no"),
        "no\n"
    );
    assert!(!c.sh("cat /etc/debian_version").is_empty());
    stop(c);
    assert_same_tree(&before, &root);
    assert_eq!(names(&t.base), beside, "entries next to the tree");
    assert!(mounts_naming(&root).is_empty());
    snap.assert_unchanged();
}

/// One tree, two ephemeral guests at once (as nspawn allows: the tree's lock
/// is shared), each on its own snapshot; a run that writes to the tree is
/// refused meanwhile.
#[test]
fn two_ephemeral_guests_share_a_tree_and_a_writer_is_refused() {
    let (_t, root) = debian_copy("eph-two");
    let before = tree_digest(&root);
    let snap_a = HostSnapshot::take("eph-two-a");
    let snap_b = HostSnapshot::take("eph-two-b");
    let mut a = Spawned::boot(&root, "eph-two-a", &["-x"]);
    let mut b = Spawned::boot(&root, "eph-two-b", &["-x"]);
    a.wait_ready(BOOT_TIMEOUT);
    b.wait_ready(BOOT_TIMEOUT);
    a.sh("echo a > /etc/who");
    b.sh("echo b > /etc/who");
    assert_eq!(a.sh("cat /etc/who"), "a\n");
    assert_eq!(b.sh("cat /etc/who"), "b\n");
    let (st, _, err) = run(&[
        "-D",
        root.to_str().unwrap(),
        "-M",
        "eph-two-w",
        "-q",
        "/bin/true",
    ]);
    assert!(
        !st.success(),
        "a writing run got the tree of two ephemeral ones"
    );
    assert!(err.contains("busy"), "{err}");
    stop(a);
    stop(b);
    assert_same_tree(&before, &root);
    snap_a.assert_unchanged();
    snap_b.assert_unchanged();
}

/// Runs `script` with /bin/sh as the container's PID 1 (no boot) and returns
/// (exit code, stdout, stderr).
fn sh_in(root: &Path, machine: &str, extra: &[&str], script: &str) -> (i32, String, String) {
    let mut args = vec![
        "-D",
        root.to_str().unwrap(),
        "-M",
        machine,
        "-q",
        "--register=no",
        "--console=pipe",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["/bin/sh", "-c", script]);
    let (st, out, err) = run(&args);
    (exit_code(st), out, err)
}

/// --volatile=yes: the root is an empty tmpfs with the tree's /usr in it,
/// read-only; /etc starts empty; what is written goes nowhere.
#[test]
fn volatile_yes_is_a_tmpfs_with_the_trees_usr() {
    let (_t, root) = debian_copy("vol-yes");
    let before = tree_digest(&root);
    let snap = HostSnapshot::take("vol-yes");
    let (code, out, err) = sh_in(
        &root,
        "vol-yes",
        &["--volatile=yes"],
        "stat -f -c %T / /usr; ls /etc | wc -l; test -x /usr/bin/dpkg && echo usr-ok;
         touch /usr/x 2>&1 | grep -o 'Read-only file system'; echo w > /etc/new && cat /etc/new;
         test -e /etc/debian_version || echo no-debian_version; readlink /bin",
    );
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "tmpfs", "{out}");
    assert_ne!(lines[1], "tmpfs", "/usr must be the tree's: {out}");
    // Only what the runtime itself puts in /etc (resolv.conf, machine-id, ...).
    assert!(lines[2].parse::<u32>().unwrap() < 6, "{out}");
    assert_eq!(
        &lines[3..],
        [
            "usr-ok",
            "Read-only file system",
            "w",
            "no-debian_version",
            "usr/bin"
        ],
        "{out}"
    );
    assert_same_tree(&before, &root);
    snap.assert_unchanged();
}

/// --volatile=state: the tree read-only, a tmpfs on /var.
#[test]
fn volatile_state_is_the_tree_read_only_with_a_tmpfs_var() {
    let (_t, root) = debian_copy("vol-state");
    let before = tree_digest(&root);
    let snap = HostSnapshot::take("vol-state");
    let (code, out, err) = sh_in(
        &root,
        "vol-state",
        &["--volatile=state"],
        "stat -f -c %T /var; touch /etc/x 2>&1 | grep -o 'Read-only file system';
         echo v > /var/new && cat /var/new; test -e /etc/debian_version && echo tree-etc",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "tmpfs\nRead-only file system\nv\ntree-etc\n");
    assert_same_tree(&before, &root);
    snap.assert_unchanged();
}

/// --volatile=overlay: the tree under a tmpfs overlay: everything writable,
/// nothing reaches the tree.
#[test]
fn volatile_overlay_writes_nothing_to_the_tree() {
    let (_t, root) = debian_copy("vol-ovl");
    let before = tree_digest(&root);
    let snap = HostSnapshot::take("vol-ovl");
    let (code, out, err) = sh_in(
        &root,
        "vol-ovl",
        &["--volatile=overlay"],
        &format!("{WRITES}\nstat -f -c %T /; cat /etc/nixrun-ephemeral"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "overlayfs\nwritten\n");
    assert_same_tree(&before, &root);
    snap.assert_unchanged();
}

/// The Debian guest boots to `running` with --volatile=state and with
/// --volatile=overlay (systemd copes with a read-only root, /var on tmpfs).
#[test]
fn debian_boots_with_volatile_state_and_overlay() {
    let (_t, root) = debian_copy("vol-boot");
    let before = tree_digest(&root);
    for mode in ["--volatile=state", "--volatile=overlay"] {
        let snap = HostSnapshot::take("vol-boot");
        let mut c = Spawned::boot(&root, "vol-boot", &[mode]);
        c.wait_ready(BOOT_TIMEOUT);
        let state = c.exec(&["systemctl", "is-system-running", "--wait"]);
        let failed = c.sh("systemctl --failed --no-legend --plain");
        assert_eq!(
            String::from_utf8_lossy(&state.stdout).trim(),
            "running",
            "{mode}: failed units: {failed}"
        );
        stop(c);
        snap.assert_unchanged();
    }
    assert_same_tree(&before, &root);
}

/// --read-only: the tree and what is below it in it read-only; the runtime's
/// tmpfs mounts and a writable bind stay writable (as with nspawn).
#[test]
fn read_only_root_refuses_writes_but_binds_and_tmpfs_take_them() {
    let (t, root) = debian_copy("ro");
    let before = tree_digest(&root);
    let data = t.path("data");
    fs::create_dir_all(&data).unwrap();
    let bind = format!("--bind={}:/mnt", data.display());
    let snap = HostSnapshot::take("ro");
    let (code, out, err) = sh_in(
        &root,
        "ro",
        &["--read-only", &bind],
        "for p in /etc/x /usr/x /x /var/x; do touch $p 2>&1 | grep -c 'Read-only file system'; done;
         touch /tmp/x /run/x /mnt/written && echo writable;
         # The guest's root cannot undo it: the flag is locked with the tree.
         mount -o remount,rw / 2>/dev/null || echo remount-refused;
         mount -o remount,bind,rw / 2>/dev/null || echo bind-remount-refused;
         touch /etc/x 2>/dev/null || echo still-read-only",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "1\n1\n1\n1\nwritable\nremount-refused\nbind-remount-refused\nstill-read-only\n"
    );
    assert!(data.join("written").exists());
    assert_same_tree(&before, &root);
    snap.assert_unchanged();
}

/// The Debian guest boots read-only. Its systemd-logind fails to start on a
/// read-only /var/lib (StateDirectory=systemd/linger), and under
/// `systemd-nspawn --read-only` (252) on this same tree it fails the same
/// way; every other unit starts.
#[test]
fn debian_boots_read_only() {
    let (_t, root) = debian_copy("ro-boot");
    let before = tree_digest(&root);
    let snap = HostSnapshot::take("ro-boot");
    let mut c = Spawned::boot(&root, "ro-boot", &["--read-only"]);
    c.wait_ready(BOOT_TIMEOUT);
    let state = c.exec(&["systemctl", "is-system-running", "--wait"]);
    let failed = c.sh("systemctl --failed --no-legend --plain | cut -d' ' -f1");
    assert!(
        ["running", "degraded"].contains(&String::from_utf8_lossy(&state.stdout).trim()),
        "{}",
        String::from_utf8_lossy(&state.stdout)
    );
    assert!(
        failed.trim().is_empty() || failed.trim() == "systemd-logind.service",
        "failed units: {failed}"
    );
    assert!(c.exec(&["touch", "/etc/x"]).status.code() != Some(0));
    stop(c);
    assert_same_tree(&before, &root);
    snap.assert_unchanged();
}

/// --overlay=LOWER:UPPER:DEST: the union in the guest, writes in UPPER, the
/// lower layer untouched, the work directory gone at exit; --overlay-ro: the
/// union read-only; an empty UPPER: a tmpfs (here over the root's own /etc,
/// `+/etc::/etc`), nothing reaches the tree.
#[test]
fn overlays_union_their_layers_and_write_only_to_the_upper_one() {
    let (t, root) = debian_copy("ovl");
    // The mount points, as for binds (nspawn makes them too).
    fs::create_dir_all(root.join("srv/ov")).unwrap();
    fs::create_dir_all(root.join("srv/ro")).unwrap();
    let before = tree_digest(&root);
    let (low, up, low2) = (t.path("low"), t.path("up"), t.path("low2"));
    for d in [&low, &up, &low2] {
        fs::create_dir_all(d).unwrap();
    }
    fs::write(low.join("a"), "lower a\n").unwrap();
    fs::write(low.join("b"), "lower b\n").unwrap();
    fs::write(low2.join("b"), "lower2 b\n").unwrap();
    fs::write(up.join("c"), "upper c\n").unwrap();
    let beside = names(&t.base);
    let rw = format!(
        "--overlay={}:{}:{}:/srv/ov",
        low.display(),
        low2.display(),
        up.display()
    );
    let ro = format!("--overlay-ro={}:{}:/srv/ro", low.display(), low2.display());
    let snap = HostSnapshot::take("ovl");
    let (code, out, err) = sh_in(
        &root,
        "ovl",
        &[&rw, &ro, "--overlay=+/etc::/etc"],
        "cat /srv/ov/a /srv/ov/b /srv/ov/c; echo new > /srv/ov/d; echo changed > /srv/ov/a;
         rm /srv/ov/b; stat -f -c %T /srv/ov /etc; cat /srv/ro/a /srv/ro/b;
         touch /srv/ro/x 2>&1 | grep -o 'Read-only file system';
         echo e > /etc/nixrun-ovl && rm /etc/debian_version && echo etc-written",
    );
    assert_eq!(code, 0, "{err}\n{out}");
    assert_eq!(
        out,
        "lower a\nlower2 b\nupper c\noverlayfs\noverlayfs\nlower a\nlower2 b\nRead-only file system\netc-written\n"
    );
    assert_eq!(fs::read_to_string(up.join("d")).unwrap(), "new\n");
    assert_eq!(fs::read_to_string(up.join("a")).unwrap(), "changed\n");
    assert_eq!(fs::read_to_string(low.join("a")).unwrap(), "lower a\n");
    assert_eq!(fs::read_to_string(low2.join("b")).unwrap(), "lower2 b\n");
    assert_eq!(names(&low), ["a", "b"]);
    // Only the upper layer changed, and nothing (no work directory) is left beside it.
    assert_eq!(names(&t.base), beside);
    assert_same_tree(&before, &root);
    snap.assert_unchanged();
}

/// A SIGKILLed supervisor leaves an --overlay's work directory behind (it is on
/// the host, next to the upper layer); the machine's next start removes it.
#[test]
fn overlay_work_directory_of_a_killed_run_is_removed_at_the_next_start() {
    let (t, root) = debian_copy("ovl-kill");
    let (low, up) = (t.path("low"), t.path("up"));
    fs::create_dir_all(&low).unwrap();
    fs::create_dir_all(&up).unwrap();
    let beside = names(&t.base);
    let spec = format!("--overlay={}:{}:/srv/ov", low.display(), up.display());
    let snap = HostSnapshot::take("ovl-kill");
    let mut c = Spawned::start(&[
        "-D",
        root.to_str().unwrap(),
        "-M",
        "ovl-kill",
        "--register=no",
        &spec,
        "/bin/sh",
        "-c",
        "echo x > /srv/ov/x; sleep 600",
    ]);
    let deadline = Instant::now() + BOOT_TIMEOUT;
    while !up.join("x").exists() {
        assert!(
            Instant::now() < deadline && c.try_status().is_none(),
            "{}",
            c.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let during = names(&t.base);
    assert!(
        during.iter().any(|n| n.starts_with(".#up.")),
        "no work directory next to the upper one: {during:?}"
    );
    c.signal(libc::SIGKILL);
    c.wait_exit(STOP_TIMEOUT);
    assert_eq!(
        names(&t.base),
        during,
        "SIGKILL cannot remove it; the next start must"
    );
    // PID 1 dies with the supervisor (its death signal); wait until it is out
    // of the cgroup the next start takes over.
    let deadline = Instant::now() + Duration::from_secs(30);
    while machine_cgroups("ovl-kill")
        .iter()
        .any(|c| !processes_in(c).is_empty())
    {
        assert!(Instant::now() < deadline, "the killed guest lives on");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, _, err) = sh_in(&root, "ovl-kill", &[&spec], "cat /srv/ov/x");
    assert_eq!(code, 0, "{err}");
    assert_eq!(names(&t.base), beside);
    snap.assert_unchanged();
}

/// --inaccessible=: a file shows as an empty node of mode 000, a directory as
/// an empty read-only one; what is below stays as it is on the tree.
#[test]
fn inaccessible_paths_are_empty_and_read_only() {
    let (_t, root) = debian_copy("inacc");
    let snap = HostSnapshot::take("inacc");
    let (code, out, err) = sh_in(
        &root,
        "inacc",
        &[
            "--inaccessible=/etc/shadow",
            "--inaccessible=/usr/share/doc",
        ],
        "stat -c '%a %s %F' /etc/shadow; wc -c < /etc/shadow; ls -A /usr/share/doc | wc -l;
         stat -c %a /usr/share/doc; (echo x > /etc/shadow) 2>&1 | grep -o 'Read-only file system';
         touch /usr/share/doc/x 2>&1 | grep -o 'Read-only file system'",
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "0 0 regular empty file\n0\n0\n0\nRead-only file system\nRead-only file system\n"
    );
    assert!(fs::metadata(root.join("etc/shadow")).unwrap().len() > 0);
    assert!(!names(&root.join("usr/share/doc")).is_empty());
    snap.assert_unchanged();
}

/// The first field of `/proc/PID/uid_map`'s line: the host uid of the guest's root.
fn shift_of(pid: i32) -> u32 {
    let map = fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    let f: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(f.len(), 3, "one line in {map:?}");
    assert_eq!(f[0], "0");
    f[1].parse().unwrap()
}

/// -U with -x: the tree is mounted ID-mapped under the overlay (overlayfs
/// cannot be ID-mapped itself, EINVAL on 6.18; its layers can). The guest boots to
/// `running`, sees its files as its root's, what its root writes is owned by
/// the shift on the host (seen through /proc/PID/root, the overlay being in
/// the supervisor's mount namespace only), and the tree is unchanged.
#[test]
fn ephemeral_boot_with_a_user_namespace() {
    let (_t, root) = debian_copy("eph-userns");
    let before = tree_digest(&root);
    let snap = HostSnapshot::take("eph-userns");
    let mut c = Spawned::boot(&root, "eph-userns", &["-x", "-U"]);
    c.wait_ready(BOOT_TIMEOUT);
    // Through nixrunctl exec, which enters the guest's user namespace (its
    // systemd takes orders from its own root only).
    let ctl = Path::new(NIXRUN.as_str()).with_file_name("nixrunctl");
    let in_guest = |script: &str| -> String {
        let out = Command::new(&ctl)
            .args(["exec", "eph-userns", "--", "/bin/sh", "-c", script])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("nixrunctl exec");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let state = in_guest("systemctl is-system-running --wait");
    let failed = in_guest("systemctl --failed --no-legend --plain");
    assert_eq!(state.trim(), "running", "failed units: {failed}");
    let leader = c.leader();
    let shift = shift_of(leader);
    assert!(shift >= 0x10000, "no user namespace: shift {shift}");
    assert_eq!(in_guest("stat -c '%u:%g' / /etc/passwd"), "0:0\n0:0\n");
    // Device nodes are not the guest's root's to make in a user namespace.
    let writes = WRITES.replace("mknod /root/null c 1 3", "mkfifo /root/fifo");
    assert_eq!(
        in_guest(&format!("({writes}) 2>&1 && echo written")),
        "written\n"
    );
    let host_view = PathBuf::from(format!("/proc/{leader}/root/etc/nixrun-ephemeral"));
    let meta = fs::metadata(&host_view).unwrap();
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&meta),
            std::os::unix::fs::MetadataExt::gid(&meta)
        ),
        (shift, shift)
    );
    // A SIGKILL of the supervisor takes the guest (and with it the last
    // mount namespace holding the overlay) along, with a user namespace too.
    c.signal(libc::SIGKILL);
    c.wait_exit(STOP_TIMEOUT);
    wait_gone(leader);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut left = mounts_naming(&root);
    while !left.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        left = mounts_naming(&root);
    }
    assert!(
        left.is_empty(),
        "the killed run's mounts live on:\n{}",
        left.join("\n")
    );
    assert_same_tree(&before, &root);
    // The next start cleans what the killed one left (its cgroups).
    let (code, out, err) = sh_in(
        &root,
        "eph-userns",
        &["-x", "-U"],
        "cat /etc/nixrun-ephemeral || echo gone",
    );
    assert_eq!((code, out.as_str()), (0, "gone\n"), "{err}");
    assert_same_tree(&before, &root);
    snap.assert_unchanged();
}

/// Every --volatile mode and --read-only with -U: the guest's root owns its
/// root and its tmpfs mounts, writes where the mode lets it, and the tree
/// (ID-mapped below the layer) is unchanged.
#[test]
fn volatile_and_read_only_with_a_user_namespace() {
    let (_t, root) = debian_copy("vol-userns");
    let before = tree_digest(&root);
    let script = "read a b c < /proc/self/uid_map; [ $b -ne 0 ] && echo 1; stat -c '%u:%g' / /etc /var /usr/bin/ls;
        (echo x > /etc/w) 2>/dev/null && echo etc-writable; (echo x > /var/w) 2>/dev/null && echo var-writable; true";
    let owners = "1\n0:0\n0:0\n0:0\n0:0\n";
    for (flag, writable) in [
        ("--volatile=yes", "etc-writable\nvar-writable\n"),
        ("--volatile=state", "var-writable\n"),
        ("--volatile=overlay", "etc-writable\nvar-writable\n"),
        ("--read-only", ""),
    ] {
        let snap = HostSnapshot::take("vol-userns");
        let (code, out, err) = sh_in(&root, "vol-userns", &["-U", flag], script);
        assert_eq!(code, 0, "{flag}: {err}");
        assert_eq!(out, format!("{owners}{writable}"), "{flag}");
        snap.assert_unchanged();
    }
    assert_same_tree(&before, &root);
}

/// The NixOS-shaped guest booted as container@.service boots it with
/// `ephemeral = true` (NixOS passes --ephemeral and no --link-journal; the
/// start script does the same): it boots to READY on the overlay, and its root
/// directory is as it was afterwards.
#[test]
fn nixos_shaped_guest_boots_ephemeral() {
    let fx = fixture("nixos");
    let (_t, root) = TempRoot::copy_of("eph-nixos", &fx.join("root"), "eph-nixos");
    let before = tree_digest(&root);
    let store = format!("--bind-ro={}:/nix/store", fx.join("store").display());
    let snap = HostSnapshot::take("eph-nixos");
    let mut c = Spawned::start(&[
        "-D",
        root.to_str().unwrap(),
        "-M",
        "eph-nixos",
        "--register=no",
        "--notify-ready=yes",
        "--kill-signal=SIGRTMIN+3",
        &store,
        "-x",
        "/nix/var/nix/profiles/system/init",
    ]);
    c.wait_ready(BOOT_TIMEOUT);
    c.sh("echo x > /etc/nixrun-ephemeral");
    assert!(!root.join("etc/nixrun-ephemeral").exists());
    stop(c);
    assert_same_tree(&before, &root);
    snap.assert_unchanged();
}
