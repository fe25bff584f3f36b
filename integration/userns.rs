//! Guests in a user namespace of their own (-U, --private-users=): booted to
//! `running` on this host, their ranges and nspawn's lock files, ID-mapped
//! roots and binds seen from both sides, nixrunctl exec inside the namespace,
//! and the bad input that must leave nothing behind (no lock file, no mount,
//! no cgroup).

mod common;

use common::*;
use nix::fcntl::{fcntl, FcntlArg};
use nixrun::supervisor::locks::{try_lock, LockFile};
use std::collections::BTreeSet;
use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::{RwLock, RwLockReadGuard};

const NIXRUNCTL: &str = env!("CARGO_BIN_EXE_nixrunctl");

/// The bad-input test mounts ramfs and overlayfs on the host, which every
/// other test's HostSnapshot would see: it runs alone, the others beside each
/// other.
static HOST_MOUNTS: RwLock<()> = RwLock::new(());

fn beside_others() -> RwLockReadGuard<'static, ()> {
    HOST_MOUNTS.read().unwrap_or_else(|e| e.into_inner())
}
/// nspawn's lock directory, shared with nixrun so that neither hands out a
/// range the other uses.
const LOCK_DIR: &str = "/run/systemd/nspawn-uid";

/// `nixrunctl ARGS...`: (exit code, stdout, stderr).
fn ctl(args: &[&str]) -> (i32, String, String) {
    let (st, out, err) = run_cmd({
        let mut c = Command::new(NIXRUNCTL);
        c.args(args);
        c
    });
    (exit_code(st), out, err)
}

fn ctl_exec(machine: &str, script: &str) -> String {
    let (code, out, err) = ctl(&["exec", machine, "--", "/bin/sh", "-c", script]);
    assert_eq!(code, 0, "nixrunctl exec {machine} `{script}`: {err}");
    out
}

/// The single line of /proc/PID/{uid,gid}_map as (inside, outside, count).
fn id_map(pid: i32, which: &str) -> Vec<(u32, u32, u32)> {
    fs::read_to_string(format!("/proc/{pid}/{which}"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/{which}: {e}"))
        .lines()
        .map(|l| {
            let v: Vec<u32> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
            (v[0], v[1], v[2])
        })
        .collect()
}

/// PID 1's shift, after checking that its maps are the one line machined's
/// GetMachineUIDShift accepts, the same for uids and gids, in nspawn's pick range.
fn shift_of(pid: i32) -> u32 {
    let uid = id_map(pid, "uid_map");
    assert_eq!(uid.len(), 1, "uid_map of {pid}: {uid:?}");
    assert_eq!(id_map(pid, "gid_map"), uid, "gid_map differs from uid_map");
    let (inside, shift, count) = uid[0];
    assert_eq!((inside, count), (0, 65536), "uid_map of {pid}: {uid:?}");
    shift
}

fn assert_picked(shift: u32) {
    assert_eq!(shift % 0x10000, 0, "{shift} is not 64K-aligned");
    assert!(
        (0x80000..=0x6FFF0000).contains(&shift),
        "{shift} is outside nspawn's pick range"
    );
}

fn hashed(machine: &str) -> u32 {
    nixrun::supervisor::userns::hashed_candidate(machine)
}

fn lock_files() -> BTreeSet<String> {
    fs::read_dir(LOCK_DIR)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether someone holds nspawn's lock on the file for `base` (an open file
/// description lock, F_OFD_SETLK, as systemd-nspawn 252 and nixrun take it).
fn locked(base: u32) -> bool {
    let Ok(f) = fs::File::open(format!("{LOCK_DIR}/{base}")) else {
        return false;
    };
    let mut probe = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    fcntl(f.as_raw_fd(), FcntlArg::F_OFD_GETLK(&mut probe)).expect("F_OFD_GETLK");
    probe.l_type != libc::F_UNLCK as libc::c_short
}

/// Holds nspawn's lock for `base` the way systemd-nspawn does while a guest
/// runs (nixrun's own lock code is nspawn's protocol; it is unit-tested
/// against a second open file description in src/supervisor/locks.rs).
fn nspawn_holds(base: u32) -> LockFile {
    fs::create_dir_all(LOCK_DIR).unwrap();
    try_lock(Path::new(&format!("{LOCK_DIR}/{base}")))
        .unwrap()
        .unwrap_or_else(|| panic!("{LOCK_DIR}/{base} is locked already"))
}

fn stop(c: &mut Spawned) {
    c.signal(libc::SIGTERM);
    let st = c.wait_exit(STOP_TIMEOUT);
    assert_eq!(exit_code(st), 0, "stop; log:\n{}", c.log_text());
}

#[test]
fn debian_guest_boots_with_u_pick_to_running() {
    let _shared = beside_others();
    let (_t, root) = TempRoot::copy_of("uns-deb", &fixture("debian"), "uns-deb");
    let snap = HostSnapshot::take("uns-deb");
    let locks_before = lock_files();
    let mut c = Spawned::start(&[
        "-U",
        "-D",
        root.to_str().unwrap(),
        "-b",
        "--notify-ready=yes",
    ]);
    c.wait_ready(BOOT_TIMEOUT);
    let leader = c.leader();
    let shift = shift_of(leader);
    assert_picked(shift);
    // nspawn's pick: the name's hash first, when nobody holds it.
    let hashed = hashed("uns-deb");
    if !locks_before.contains(&hashed.to_string()) {
        assert_eq!(shift, hashed, "the first free candidate is the name's hash");
    }
    assert!(
        locked(shift),
        "{LOCK_DIR}/{shift} is not locked while the guest runs"
    );
    // The guest's PID 1 is the host's uid SHIFT, not the host's root.
    let status = fs::read_to_string(format!("/proc/{leader}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == shift.to_string()),
        "PID 1 on the host: {uid_line}"
    );

    let state = ctl_exec("uns-deb", "systemctl is-system-running --wait || true");
    let failed = ctl_exec("uns-deb", "systemctl --failed --no-legend --plain");
    assert_eq!(
        state.trim(),
        "running",
        "failed units: {failed}\nlog:\n{}",
        c.log_text()
    );
    assert_eq!(failed.trim(), "", "failed units in the -U guest");
    // The guest's systemd manages its own cgroup subtree (chowned to the shift).
    let cg = ctl_exec("uns-deb", "cat /proc/1/cgroup");
    assert!(cg.lines().any(|l| l == "0::/init.scope"), "{cg}");

    // The root is ID-mapped, not chowned: the guest's root creates a file that
    // is root's on disk, and the tree keeps its owners.
    ctl_exec("uns-deb", "echo x > /root/made-by-guest-root");
    let made = fs::metadata(root.join("root/made-by-guest-root")).unwrap();
    assert_eq!((made.uid(), made.gid()), (0, 0));
    assert_eq!(fs::metadata(root.join("etc/passwd")).unwrap().uid(), 0);

    stop(&mut c);
    assert!(!locked(shift), "the range is still locked after exit");
    assert!(
        !lock_files().contains(&shift.to_string()),
        "{LOCK_DIR}/{shift} left behind"
    );
    snap.assert_unchanged();
}

#[test]
fn nixrunctl_exec_enters_the_user_namespace() {
    let _shared = beside_others();
    let (_t, root) = TempRoot::copy_of("uns-exec", &fixture("debian"), "uns-exec");
    let snap = HostSnapshot::take("uns-exec");
    let mut c = Spawned::start(&[
        "-U",
        "-D",
        root.to_str().unwrap(),
        "-b",
        "--notify-ready=yes",
    ]);
    c.wait_ready(BOOT_TIMEOUT);
    let shift = shift_of(c.leader());
    let out = ctl_exec(
        "uns-exec",
        "id -u; id -g; cat /proc/self/uid_map; \
         stat -c '%u:%g %U' /etc/shadow /root /dev/null /dev/pts /dev/pts/ptmx /dev/console",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0", "id -u in the guest: {out}");
    assert_eq!(lines[1], "0", "id -g in the guest: {out}");
    let map: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(map, ["0", &shift.to_string(), "65536"], "{out}");
    // The guest's own owners, not the host's view (overflow 65534) of them.
    // devpts: the guest's root's, new ptys in its tty group (5).
    assert_eq!(
        &lines[3..9],
        [
            "0:42 root",
            "0:0 root",
            "0:0 root",
            "0:0 root",
            "0:0 root",
            "0:5 root"
        ],
        "{out}"
    );
    // The exec'd process is the host's uid SHIFT, like the guest's PID 1.
    let mut child = Command::new(NIXRUNCTL)
        .args([
            "exec",
            "uns-exec",
            "--",
            "/bin/sh",
            "-c",
            "echo $$; exec sleep 30",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    let host_pid = host_pid_of(c.leader(), first.trim());
    let status = fs::read_to_string(format!("/proc/{host_pid}/status")).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|u| u == shift.to_string()),
        "nixrunctl exec's process on the host: {uid_line}"
    );
    stop(&mut c);
    snap.assert_unchanged();
}

/// The host pid of the guest process `guest_pid` (a descendant of the leader
/// whose NSpid ends in it).
fn host_pid_of(leader: i32, guest_pid: &str) -> i32 {
    let leader_ns = fs::read_link(format!("/proc/{leader}/ns/pid")).unwrap();
    for e in fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if fs::read_link(format!("/proc/{pid}/ns/pid")).ok() != Some(leader_ns.clone()) {
            continue;
        }
        let st = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let nspid = st.lines().find(|l| l.starts_with("NSpid:"));
        if nspid.and_then(|l| l.split_whitespace().last()) == Some(guest_pid) {
            return pid;
        }
    }
    panic!("no host process for guest pid {guest_pid}");
}

/// A minimal guest whose PID 1 (the probe) sleeps, with -U.
fn sleeping_guest(tag: &str, extra: &[&str]) -> (TempRoot, Spawned) {
    let (t, root) = TempRoot::copy_of(tag, &fixture("minimal"), tag);
    let mut args = vec!["-U", "-D", root.to_str().unwrap(), "-q"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["/nixrun-probe", "sleep", "120"]);
    (t, Spawned::start(&args))
}

#[test]
fn two_guests_get_different_ranges_and_never_nspawns() {
    let _shared = beside_others();
    // A range nspawn holds (its lock file, its format) is never handed out:
    // the first guest's name hash is taken by a "running nspawn".
    let hashed = hashed("uns-two-a");
    let nspawn_lock = nspawn_holds(hashed);
    let snap_a = HostSnapshot::take("uns-two-a");
    let snap_b = HostSnapshot::take("uns-two-b");
    let (_ta, mut a) = sleeping_guest("uns-two-a", &[]);
    let (_tb, mut b) = sleeping_guest("uns-two-b", &[]);
    let (sa, sb) = (shift_of(a.leader()), shift_of(b.leader()));
    assert_picked(sa);
    assert_picked(sb);
    assert_ne!(sa, sb, "two guests share a range");
    assert_ne!(sa, hashed, "nixrun took the range nspawn's lock holds");
    assert!(locked(sa) && locked(sb));

    // A fixed range overlapping a running guest's is refused, in one line,
    // and leaves no lock file of its own.
    let (_tc, root_c) = TempRoot::copy_of("uns-two-c", &fixture("minimal"), "uns-two-c");
    let overlap = format!("--private-users={}:65536", sa + 0x1000);
    assert_refused(
        "uns-two-c",
        &[
            "-D",
            root_c.to_str().unwrap(),
            "-q",
            &overlap,
            "/nixrun-probe",
            "facts",
        ],
        &[&overlap["--private-users=".len()..], &sa.to_string()],
        &[sa + 0x10000],
    );

    // A SIGKILLed supervisor takes its guest along (the death signal survives
    // PID 1's change of credentials into the user namespace).
    let leader_a = a.leader();
    a.signal(libc::SIGKILL);
    a.wait_exit(STOP_TIMEOUT);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !gone_or_zombie(leader_a) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        gone_or_zombie(leader_a),
        "guest PID 1 outlived its SIGKILLed supervisor"
    );
    for cg in machine_cgroups("uns-two-a") {
        assert!(
            processes_in(&cg).is_empty(),
            "{} still has processes",
            cg.display()
        );
        remove_cgroup_tree(&cg);
    }
    b.signal(libc::SIGTERM);
    b.wait_exit(STOP_TIMEOUT);
    // Released at exit, even the killed guest's: the lock went with its
    // supervisor's open file. Only a clean exit can unlink the file too (a
    // killed nspawn leaves its file as well); an unlocked file is free to take.
    assert!(!locked(sa) && !locked(sb), "a range stayed locked");
    let left = lock_files();
    assert!(
        !left.contains(&sb.to_string()),
        "lock file {sb} left: {left:?}"
    );
    let _ = fs::remove_file(format!("{LOCK_DIR}/{sa}"));
    // Its state file too (the next start of the machine would replace it).
    let _ = fs::remove_file("/run/nixrun/machines/uns-two-a");
    assert!(locked(hashed), "nspawn's lock was taken from it");
    drop(nspawn_lock);
    snap_a.assert_unchanged();
    snap_b.assert_unchanged();
}

/// Dead, or dead and waiting for the host's slow PID 1 to reap it.
fn gone_or_zombie(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                == Some("Z")
        }
    }
}

/// Removes what a SIGKILLed supervisor could not: its (empty) cgroups.
fn remove_cgroup_tree(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.filter_map(Result::ok) {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

/// Runs nixrun expecting a refusal: one line naming `mentions`, non-zero, and
/// no mount, cgroup or lock file left — of the ranges `blocks` it could have
/// locked (the directory as a whole changes with the tests running beside).
fn assert_refused(tag: &str, args: &[&str], mentions: &[&str], blocks: &[u32]) {
    let snap = HostSnapshot::take(tag);
    let fresh: Vec<u32> = blocks
        .iter()
        .copied()
        .filter(|b| !lock_files().contains(&b.to_string()))
        .collect();
    let (st, out, err) = run(args);
    assert!(!st.success(), "nixrun accepted {args:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err:?}");
    assert!(lines[0].starts_with("nixrun: "), "{err}");
    for m in mentions {
        assert!(
            lines[0].contains(m),
            "{:?} does not mention {m:?}",
            lines[0]
        );
    }
    assert!(out.is_empty(), "stdout: {out}");
    let left: Vec<&u32> = fresh
        .iter()
        .filter(|b| lock_files().contains(&b.to_string()))
        .collect();
    assert!(left.is_empty(), "lock files left in {LOCK_DIR}: {left:?}");
    snap.assert_unchanged();
}

#[test]
fn bad_userns_input_is_refused_and_leaves_nothing() {
    let _alone = HOST_MOUNTS.write().unwrap_or_else(|e| e.into_inner());
    let (t, root) = TempRoot::copy_of("uns-bad", &fixture("minimal"), "uns-bad");
    let r = root.to_str().unwrap();
    let before = fs::read_dir(&root).unwrap().count();
    // nspawn's chown keeps the low 16 bits of each id: it needs 64K blocks.
    assert_refused(
        "uns-bad",
        &[
            "-D",
            r,
            "--private-users=524289",
            "--private-users-ownership=chown",
            "/nixrun-probe",
        ],
        &["--private-users-ownership=chown", "64K-aligned"],
        &[0x80000],
    );
    assert_refused(
        "uns-bad",
        &[
            "-D",
            r,
            "--private-users=524288:65537",
            "--private-users-ownership=chown",
            "/nixrun-probe",
        ],
        &["64K-aligned"],
        &[0x80000, 0x90000],
    );
    // ramfs cannot be ID-mapped (tmpfs can since Linux 6.3, overlayfs cannot
    // either, see below): named in the line, nothing locked.
    let ramfs = t.path("ramfs");
    fs::create_dir(&ramfs).unwrap();
    let st = Command::new("mount")
        .args(["-t", "ramfs", "ramfs"])
        .arg(&ramfs)
        .status()
        .unwrap();
    assert!(st.success(), "mount -t ramfs");
    let bind = format!("--bind={}:/data:idmap", ramfs.display());
    let outcome = std::panic::catch_unwind(|| {
        assert_refused(
            "uns-bad",
            &["-D", r, "-U", &bind, "/nixrun-probe"],
            &[&ramfs.display().to_string(), "ramfs", "cannot be ID-mapped"],
            &[hashed("uns-bad")],
        );
    });
    let _ = Command::new("umount").arg(&ramfs).status();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
    // An overlay as the container root, with ownership forced to map.
    let ov = t.path("ov");
    for d in ["lower", "upper", "work", "merged"] {
        fs::create_dir_all(ov.join(d)).unwrap();
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        root.display(),
        ov.join("upper").display(),
        ov.join("work").display()
    );
    let merged = ov.join("merged");
    let st = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&merged)
        .status()
        .unwrap();
    assert!(st.success(), "mount -t overlay");
    let outcome = std::panic::catch_unwind(|| {
        assert_refused(
            "uns-bad",
            &[
                "-D",
                merged.to_str().unwrap(),
                "-U",
                "--private-users-ownership=map",
                "/nixrun-probe",
            ],
            &["overlay", "cannot be ID-mapped"],
            &[hashed("merged")],
        );
    });
    let _ = Command::new("umount").arg(&merged).status();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
    // ID-mapped binds need a user namespace.
    assert_refused(
        "uns-bad",
        &["-D", r, "--bind=/tmp:/data:idmap", "/nixrun-probe"],
        &["ID-mapped bind of /tmp", "user namespace"],
        &[],
    );
    assert_eq!(
        fs::read_dir(&root).unwrap().count(),
        before,
        "the root gained entries"
    );
    // A failure after the range was locked (no init in the root, found only
    // once the tree is built): the lock goes with the run.
    let (_t2, late) = TempRoot::copy_of("uns-bad-late", &fixture("minimal"), "uns-bad-late");
    assert_refused(
        "uns-bad-late",
        &["-D", late.to_str().unwrap(), "-U", "-b"],
        &["no init found"],
        &[hashed("uns-bad-late")],
    );
}

/// The NixOS-shaped guest as container@.service starts it with privateUsers =
/// "pick": the store bound `:idmap`, plus writable binds with each idmap option.
#[test]
fn nixos_shaped_guest_with_idmapped_store_and_binds() {
    let _shared = beside_others();
    let fx = fixture("nixos");
    let (t, root) = TempRoot::copy_of("uns-nixos", &fx.join("root"), "uns-nixos");
    // Sources as the host has them: root's (like /nix/var/nix/profiles/
    // per-container/X) and a user's (like a bindMounts entry, nixpkgs#419007).
    let (by_root, by_user, plain) = (t.path("by-root"), t.path("by-user"), t.path("plain"));
    let for_owner = t.path("for-owner");
    for (d, owner) in [
        (&by_root, 0),
        (&by_user, 1234),
        (&plain, 1234),
        (&for_owner, 1234),
    ] {
        fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(owner), Some(owner)).unwrap();
    }
    let unit = UnitCgroup::new("uns-nixos");
    let snap = HostSnapshot::take("uns-nixos");
    let store = format!("--bind-ro={}:/nix/store:idmap", fx.join("store").display());
    let probe = format!("--bind-ro={}:/nixrun-probe", probe_binary().display());
    let b1 = format!("--bind={}:/srv/by-root:idmap", by_root.display());
    let b2 = format!("--bind={}:/srv/by-user:rootidmap", by_user.display());
    let b3 = format!("--bind={}:/srv/plain", plain.display());
    // :owneridmap: the source's owner becomes the mount point's owner in the
    // guest (here its uid 1000, on the ID-mapped root's disk as 1000).
    fs::create_dir_all(root.join("srv/for-owner")).unwrap();
    std::os::unix::fs::chown(root.join("srv/for-owner"), Some(1000), Some(1000)).unwrap();
    let b4 = format!("--bind={}:/srv/for-owner:owneridmap", for_owner.display());
    let mut cmd = nixrun_cmd(&[
        "--keep-unit",
        "-M",
        "uns-nixos",
        "-D",
        root.to_str().unwrap(),
        "--private-users=pick",
        "--notify-ready=yes",
        "--kill-signal=SIGRTMIN+3",
        "--link-journal=try-guest",
        &store,
        &probe,
        &b1,
        &b2,
        &b3,
        &b4,
        "/nix/var/nix/profiles/system/init",
    ]);
    unit.enter(&mut cmd);
    let mut c = Spawned::start_cmd(cmd);
    c.wait_ready(BOOT_TIMEOUT);
    shift_of(c.leader());
    let state = ctl_exec("uns-nixos", "systemctl is-system-running --wait || true");
    let failed = ctl_exec("uns-nixos", "systemctl --failed --no-legend --plain");
    assert_eq!(state.trim(), "running", "failed: {failed}");
    assert_eq!(failed.trim(), "");
    // The store is the guest's root's, read-only.
    let s = ctl_exec(
        "uns-nixos",
        "stat -c %u:%g /nix/store; /nixrun-probe write /nix/store/x",
    );
    assert_eq!(s.lines().collect::<Vec<_>>(), ["0:0", "EROFS"], "{s}");
    let out = ctl_exec(
        "uns-nixos",
        "stat -c %u /srv/by-root /srv/by-user /srv/plain; \
         echo a > /srv/by-root/f; echo b > /srv/by-user/f; \
         /nixrun-probe write /srv/plain/f",
    );
    // by-root: host 0 is the guest's 0; by-user: its owner 1234 is the guest's
    // root; plain: the user is unmapped, nobody's, and not writable.
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["0", "0", "65534", "EACCES"],
        "{out}"
    );
    let owner = |p: &Path| {
        let m = fs::metadata(p).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(owner(&by_root.join("f")), (0, 0), "file in the :idmap bind");
    assert_eq!(
        owner(&by_user.join("f")),
        (1234, 1234),
        "file in the :rootidmap bind is the source owner's"
    );
    assert!(!plain.join("f").exists());
    let o = ctl_exec(
        "uns-nixos",
        "stat -c %u:%g /srv/for-owner; setpriv --reuid=1000 --regid=1000 --clear-groups \
         sh -c 'echo c > /srv/for-owner/f' && echo written",
    );
    assert_eq!(
        o.lines().collect::<Vec<_>>(),
        ["1000:1000", "written"],
        "{o}"
    );
    assert_eq!(
        owner(&for_owner.join("f")),
        (1234, 1234),
        "file in the :owneridmap bind is the source owner's"
    );
    // The guest's journald writes its journal as the guest's root (on the
    // ID-mapped root, uid 0 on disk); try-guest links it on the host.
    let id = ctl_exec("uns-nixos", "cat /etc/machine-id")
        .trim()
        .to_string();
    let j = ctl_exec(
        "uns-nixos",
        &format!("journalctl --flush; stat -c %u /var/log/journal/{id}/system.journal"),
    );
    assert_eq!(j.trim(), "0", "the guest's journal: {j}");
    let link = Path::new("/var/log/journal").join(&id);
    stop(&mut c);
    if Path::new("/var/log/journal").is_dir() {
        assert_eq!(
            fs::read_link(&link).unwrap(),
            root.join("var/log/journal").join(&id)
        );
        fs::remove_file(&link).unwrap();
    }
    snap.assert_unchanged();
}

/// A root below a directory only the host's root may enter (nspawn's
/// /var/lib/machines is 0700): PID 1, already the guest's root, never walks
/// that path.
#[test]
fn root_below_a_private_directory() {
    let _shared = beside_others();
    use std::os::unix::fs::PermissionsExt;
    let (t, root) = TempRoot::copy_of("uns-priv", &fixture("minimal"), "uns-priv");
    fs::set_permissions(&t.base, fs::Permissions::from_mode(0o700)).unwrap();
    let snap = HostSnapshot::take("uns-priv");
    let (code, out, err) = run_probe(&root, &["-U"], &["facts"]);
    assert_eq!(code, 0, "{err}");
    let f = facts(&out);
    assert_eq!(f["uid"], "0");
    assert_eq!(f["pid1_cmdline"], "/nixrun-probe facts");
    snap.assert_unchanged();
}

/// --private-users-ownership=chown shifts the tree into the range once (as
/// nspawn's does); a later -U (ownership auto) finds it shifted, takes the
/// range it is owned in and changes nothing.
#[test]
fn chown_ownership_shifts_the_tree_into_its_range() {
    let _shared = beside_others();
    let (_t, root) = TempRoot::copy_of("uns-chown", &fixture("minimal"), "uns-chown");
    let snap = HostSnapshot::take("uns-chown");
    let owner = |p: &Path| {
        let m = fs::symlink_metadata(p).unwrap();
        (m.uid(), m.gid())
    };
    assert_eq!(owner(&root.join("nixrun-probe")), (0, 0));
    let (code, out, err) = run_probe(
        &root,
        &["--private-users=pick", "--private-users-ownership=chown"],
        &["facts"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(facts(&out)["uid"], "0");
    let (base, gid) = owner(&root);
    assert_picked(base);
    assert_eq!(gid, base, "the root's group is not shifted with its owner");
    assert_eq!(owner(&root.join("nixrun-probe")), (base, base));
    assert!(!locked(base), "the range stayed locked after the run");

    let (code, out, err) = run_probe(&root, &["-U"], &["facts"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(facts(&out)["uid"], "0");
    assert_eq!(owner(&root), (base, base), "a second start moved the tree");
    assert_eq!(owner(&root.join("nixrun-probe")), (base, base));
    // yes: the range the root is owned in (the probe's line shows its map).
    let (code, out, err) = run_probe(
        &root,
        &["--private-users=yes"],
        &["escape", "userns-map-host-root"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("[(0, {base}, 65536)]")), "{out}");
    snap.assert_unchanged();
}

/// identity: a user namespace whose ids are the host's (capabilities relative
/// to the guest only): the probe rightly says the host's root is mapped.
#[test]
fn identity_maps_the_hosts_ids() {
    let _shared = beside_others();
    let (_t, root) = TempRoot::copy_of("uns-ident", &fixture("minimal"), "uns-ident");
    let snap = HostSnapshot::take("uns-ident");
    let (code, out, err) = run_probe(
        &root,
        &["--private-users=identity"],
        &["escape", "userns-map-host-root"],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.starts_with("ESCAPED userns-map-host-root") && out.contains("[(0, 0, 65536)]"),
        "{out}"
    );
    snap.assert_unchanged();
}

/// A real systemd-nspawn -U holding its range in the lock directory: nixrun
/// refuses to use it (both take OFD locks on the same files).
#[test]
fn a_range_nspawn_holds_is_refused() {
    let _shared = beside_others();
    require_tool("systemd-nspawn", "systemd-container");
    let (_tn, nsp_root) = TempRoot::copy_of("uns-nsp", &fixture("debian"), "uns-nsp");
    let unit = UnitCgroup::new("uns-nsp");
    let mut cmd = Command::new("systemd-nspawn");
    cmd.args([
        "-U",
        "-q",
        "--keep-unit",
        "--register=no",
        "-M",
        "uns-nsp",
        "-D",
    ])
    .arg(&nsp_root)
    .args(["/bin/sleep", "60"])
    .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1")
    .stdin(std::process::Stdio::null())
    .stdout(std::process::Stdio::null());
    unit.enter(&mut cmd);
    let mut nspawn = cmd.spawn().expect("spawn systemd-nspawn");
    // nspawn's payload: the process in another PID namespace below it.
    let ours = fs::read_link("/proc/self/ns/pid").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let payload = loop {
        let found = processes_in(unit.v2())
            .into_iter()
            .find(|p| fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|ns| ns != ours));
        if let Some(p) = found {
            break p.parse::<i32>().unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline && nspawn.try_wait().unwrap().is_none(),
            "systemd-nspawn -U started no payload"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let shift = shift_of(payload);
    assert!(locked(shift), "nspawn holds no lock on {LOCK_DIR}/{shift}");

    let (_t, root) = TempRoot::copy_of("uns-nsp-b", &fixture("minimal"), "uns-nsp-b");
    let fixed = format!("--private-users={shift}:65536");
    let outcome = std::panic::catch_unwind(|| {
        assert_refused(
            "uns-nsp-b",
            &[
                "-D",
                root.to_str().unwrap(),
                "-q",
                &fixed,
                "/nixrun-probe",
                "facts",
            ],
            &[&shift.to_string(), "another container"],
            &[],
        )
    });
    // SIGTERM: nspawn kills its payload and reaps it (a SIGKILLed nspawn
    // would leave it running, and the host's PID 1 reaps slowly).
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(nspawn.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while nspawn.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    if nspawn.try_wait().unwrap().is_none() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(payload),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = nspawn.kill();
        let _ = nspawn.wait();
    }
    while !processes_in(unit.v2()).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    for d in &unit.dirs {
        for sub in ["payload", "supervisor"] {
            remove_cgroup_tree(&d.join(sub));
        }
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
}

/// -U with a private network (NixOS's privateUsers with privateNetwork): the
/// guest's network namespace belongs to its user namespace, the supervisor
/// still puts the veth's end into it and addresses both ends before PID 1
/// runs, and the links go at exit.
#[test]
fn private_network_in_a_user_namespace() {
    let _shared = beside_others();
    let ns = common::netns::Netns::new("uns-net");
    let (_t, root) = TempRoot::copy_of("uns-net", &fixture("minimal"), "uns-net");
    let mut listener = ns.probe(&["listen", "7072", "1"]);
    let (st, out, err) = run_cmd(ns.nixrun(&[
        "-D",
        root.to_str().unwrap(),
        "-q",
        "-U",
        "-n",
        "--host-address=10.233.7.1/24",
        "--local-address=10.233.7.2/24",
        "/nixrun-probe",
        "connect",
        "10.233.7.1",
        "7072",
    ]));
    let _ = listener.0.kill();
    let _ = listener.0.wait();
    assert_eq!(exit_code(st), 0, "{out}{err}");
    assert_eq!(out.trim(), "connected pong 10.233.7.2");
    assert_eq!(ns.links(), ["lo"], "links left in the test's namespace");
}
