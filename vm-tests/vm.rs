//! The VM test as part of `cargo test`: boots a qemu VM whose PID 1 is systemd on a
//! pure cgroup2 host and runs container@.service with the nixrun binary under test
//! (vm-tests/run.sh; its checks are listed in vm-tests/README.md). One VM boot
//! runs every check; each result line is printed, and any failure, timeout or
//! missing prerequisite fails the test with the harness's own message.

use std::process::Command;

#[test]
fn container_service_on_a_cgroup2_systemd_host() {
    if !nix::unistd::geteuid().is_root() {
        panic!("the VM test must run as root (it builds a VM image with debootstrap): run `sudo cargo test`");
    }
    let repo = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{repo}/vm-tests/run.sh"))
        .args(["--bin", env!("CARGO_BIN_EXE_nixrun")])
        .args(["--ctl-bin", env!("CARGO_BIN_EXE_nixrunctl")])
        .env("NIXRUN_VM_RUNTIME", "nixrun")
        .output()
        .expect("running vm-tests/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    let meaning = match out.status.code() {
        Some(0) => return,
        Some(1) => "at least one check failed",
        Some(2) => "the VM run did not complete (no boot, crash or timeout)",
        Some(3) => "setup problem (a missing prerequisite is named above)",
        _ => "the harness was killed",
    };
    panic!("vm-tests/run.sh: {meaning} ({}); output above", out.status);
}
