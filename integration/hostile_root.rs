//! Hostile container roots: symlinks planted where nixrun mounts or writes, aimed
//! at the host. Whether nixrun runs such a root or refuses it, the host's mount
//! table and files must be unchanged afterwards: every path is resolved inside
//! the root (openat2 RESOLVE_IN_ROOT), so a link to "/" means the root's "/".

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn minimal(tag: &str) -> (TempRoot, PathBuf) {
    TempRoot::copy_of(tag, &fixture("minimal"), tag)
}

/// Names of the entries of a host directory, to show nothing appeared in it.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn store_link_to_the_host_root_binds_inside_the_root() {
    let (t, root) = minimal("hostile-nix");
    let store = t.path("store");
    fs::create_dir(&store).unwrap();
    symlink("/", root.join("nix")).unwrap();
    let host_root_before = entries(Path::new("/"));
    let snap = HostSnapshot::take("hostile-nix");
    let bind = format!("--bind-ro={}:/nix/store", store.display());
    let (code, out, err) = run_probe(&root, &[&bind], &["write", "/nix/store/x"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "EROFS",
        "the store bind must be read-only wherever it lands"
    );
    // "/nix" is the root's "/", so the store went to <root>/store.
    assert!(root.join("store").is_dir());
    assert_eq!(
        entries(Path::new("/")),
        host_root_before,
        "something appeared in the host's /"
    );
    snap.assert_unchanged();
}

#[test]
fn run_link_to_the_host_etc_stays_inside_the_root() {
    let (_t, root) = minimal("hostile-run");
    // Inside the root, "/etc" exists: the link resolves to <root>/etc, which is
    // where /run's tmpfs lands.
    fs::create_dir(root.join("etc")).unwrap();
    symlink("/etc", root.join("run")).unwrap();
    let etc_before = entries(Path::new("/etc"));
    let os_release = fs::read("/etc/os-release").unwrap();
    let snap = HostSnapshot::take("hostile-run");
    let (code, _, err) = run_probe(&root, &[], &["exit", "0"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        entries(Path::new("/etc")),
        etc_before,
        "nixrun created files in the host's /etc"
    );
    assert_eq!(fs::read("/etc/os-release").unwrap(), os_release);
    snap.assert_unchanged();
}

#[test]
fn dev_link_to_a_host_directory_is_refused() {
    let (t, root) = minimal("hostile-dev");
    let target = t.path("host-tmp-x");
    fs::create_dir(&target).unwrap();
    symlink(&target, root.join("dev")).unwrap();
    let snap = HostSnapshot::take("hostile-dev");
    let (code, _, err) = run_probe(&root, &[], &["exit", "0"]);
    assert_ne!(code, 0);
    assert!(err.contains("dev is a symlink"), "{err}");
    assert!(
        entries(&target).is_empty(),
        "device nodes were created through the link"
    );
    snap.assert_unchanged();
}

#[test]
fn machine_id_link_to_the_host_shadow_is_neither_read_nor_written() {
    let (_t, root) = minimal("hostile-mid");
    fs::create_dir_all(root.join("etc")).unwrap();
    symlink("/etc/shadow", root.join("etc/machine-id")).unwrap();
    let shadow = fs::read("/etc/shadow").unwrap();
    let mtime = fs::metadata("/etc/shadow").unwrap().modified().unwrap();
    let snap = HostSnapshot::take("hostile-mid");
    let (code, out, err) = run_probe(&root, &[], &["facts"]);
    assert_eq!(code, 0, "{err}");
    // The link is not followed: the guest gets a fresh UUID, not one derived from
    // whatever the link points at.
    let uuid = facts(&out)["env.container_uuid"].clone();
    assert_eq!(uuid.len(), 36, "container_uuid {uuid:?}");
    assert_eq!(fs::read("/etc/shadow").unwrap(), shadow);
    assert_eq!(
        fs::metadata("/etc/shadow").unwrap().modified().unwrap(),
        mtime
    );
    snap.assert_unchanged();
}

#[test]
fn bind_destination_link_to_the_root_is_refused() {
    let (t, root) = minimal("hostile-bindroot");
    let src = t.path("src");
    fs::create_dir(&src).unwrap();
    symlink("/", root.join("mnt")).unwrap();
    let snap = HostSnapshot::take("hostile-bindroot");
    let bind = format!("--bind={}:/mnt", src.display());
    let (code, _, err) = run_probe(&root, &[&bind], &["exit", "0"]);
    assert_ne!(code, 0, "a bind over the container root was accepted");
    assert!(err.contains("resolves to the container's root"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    snap.assert_unchanged();
}

#[test]
fn bind_destination_link_to_a_host_directory_binds_inside_the_root() {
    let (t, root) = minimal("hostile-bindout");
    let src = t.path("src");
    let host_dir = t.path("host-dir");
    fs::create_dir(&src).unwrap();
    fs::create_dir(&host_dir).unwrap();
    symlink(&host_dir, root.join("mnt")).unwrap();
    let snap = HostSnapshot::take("hostile-bindout");
    let bind = format!("--bind={}:/mnt/sub", src.display());
    let (code, _, err) = run_probe(&root, &[&bind], &["exit", "0"]);
    // Refusing (the link dangles inside the root) is as good as binding inside it.
    assert!(code == 0 || err.contains("mnt"), "{err}");
    assert!(
        entries(&host_dir).is_empty(),
        "a mount point was created in the host directory"
    );
    snap.assert_unchanged();
}

#[test]
fn tmpfs_destination_climbing_out_with_dotdot_stays_inside() {
    let (_t, root) = minimal("hostile-dotdot");
    fs::create_dir(root.join("etc")).unwrap();
    symlink("../../../../../../../../etc", root.join("data")).unwrap();
    let etc_before = entries(Path::new("/etc"));
    let snap = HostSnapshot::take("hostile-dotdot");
    let (code, _, err) = run_probe(&root, &["--tmpfs=/data"], &["write", "/data/nixrun-test"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(entries(Path::new("/etc")), etc_before);
    snap.assert_unchanged();
}

/// CVE-2021-30465: the mount target is swapped for a symlink between the
/// runtime's check and its mount. A thread keeps exchanging a directory and a
/// link to "/" at the bind destination while nixrun starts again and again.
#[test]
fn cve_2021_30465_symlink_exchange_race_on_a_bind_destination() {
    let (t, root) = minimal("hostile-race");
    let src = t.path("src");
    fs::create_dir(&src).unwrap();
    fs::create_dir(root.join("mnt")).unwrap();
    symlink("/", root.join("mnt.link")).unwrap();
    let host_root_before = entries(Path::new("/"));
    let snap = HostSnapshot::take("hostile-race");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (a, b) = (root.join("mnt"), root.join("mnt.link"));
    let swapper = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = rustix::fs::renameat_with(
                    rustix::fs::CWD,
                    &a,
                    rustix::fs::CWD,
                    &b,
                    rustix::fs::RenameFlags::EXCHANGE,
                );
                r.unwrap_or_else(|e| panic!("renameat2: {e}"));
                swaps += 1;
            }
            swaps
        })
    };
    let bind = format!("--bind={}:/mnt/sub", src.display());
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut runs = 0;
    while runs < 40 && Instant::now() < deadline {
        let _ = run_probe(&root, &[&bind], &["exit", "0"]);
        runs += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(
        swaps > 100 && runs >= 5,
        "the race did not run ({swaps} swaps, {runs} starts)"
    );
    assert_eq!(
        entries(Path::new("/")),
        host_root_before,
        "a mount point appeared in the host's /"
    );
    snap.assert_unchanged();
}
