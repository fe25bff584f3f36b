//! Packaging checks (packaging/, Makefile, default.nix, flake.nix, nix/):
//!
//! - the start script, under dash and bash, with a fake nixrun that hands its
//!   argv back: the command line per conf file, what it does to the root, and
//!   that nixrun's own parser takes that command line (or refuses it by name);
//! - the unit: `systemd-analyze verify` of an installed copy (works without
//!   systemd as PID 1) and its key settings;
//! - `make install` / `make uninstall` with this build's binaries;
//! - the completions and man pages nixrun-gendoc writes;
//! - every .nix file through `nix-instantiate --parse`, and the module and
//!   package evaluated against small stand-ins for nixpkgs (no Nix store here,
//!   so nothing is built);
//! - as root, the start script booting the Debian and NixOS-shaped fixtures
//!   with the real nixrun in a unit's cgroup, as the unit would.
//!
//! Only the last need root. Missing tools fail the test naming their Debian
//! package.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

use nixrun::nspawn::cli::{self, CliError};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn start_script() -> PathBuf {
    repo().join("packaging/nixrun-container-start")
}

/// The tool's path, or a failure naming the package that has it.
fn require_tool(name: &str, package: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .find(|f| f.is_file())
        })
        .unwrap_or_else(|| panic!("missing prerequisite: {name} (apt-get install {package})"))
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "nixrun-packaging-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }

    fn s(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn output_text(o: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

// ---------------------------------------------------------------------------
// The start script

/// One run of the start script the way nixrun@.service runs it: the conf
/// loaded as an environment file, INSTANCE set, `exec nixrun ...` at the end.
struct StartRun {
    argv: Vec<String>,
    ok: bool,
    stderr: String,
    dump: String,
}

struct Start<'a> {
    tmp: &'a TempDir,
    instance: &'a str,
    conf: &'a str,
    env: Vec<(&'a str, String)>,
    args: Vec<&'a str>,
}

impl<'a> Start<'a> {
    fn new(tmp: &'a TempDir, instance: &'a str, conf: &'a str) -> Self {
        Start {
            tmp,
            instance,
            conf,
            env: vec![],
            args: vec![],
        }
    }

    fn env(mut self, k: &'a str, v: impl Into<String>) -> Self {
        self.env.push((k, v.into()));
        self
    }

    fn args(mut self, a: &[&'a str]) -> Self {
        self.args.extend_from_slice(a);
        self
    }

    /// The script run by `shell` (not its #! line, to try more than one).
    fn command(&self, shell: &str) -> Command {
        let shell_path = require_tool(shell, if shell == "bash" { "bash" } else { "dash" });
        let conf = self.tmp.path(&format!("{}.conf", self.instance));
        fs::write(&conf, self.conf).unwrap();
        // Prints each argument NUL-terminated, so that spaces and newlines in
        // arguments are seen as they are.
        let fake = self.tmp.path("fake-nixrun");
        if !fake.exists() {
            fs::write(&fake, "#!/bin/sh\nfor a; do printf '%s\\0' \"$a\"; done\n").unwrap();
            fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
        }
        // systemd's EnvironmentFile= and sh's `set -a; .` agree on what these
        // confs say (KEY=value, "double quotes", # comments).
        let mut cmd = Command::new(&shell_path);
        cmd.args([
            "-c",
            r#"set -a; . "$1"; set +a; shift; exec "$@""#,
            "load-conf",
        ])
        .arg(&conf)
        .arg(&shell_path)
        .arg(start_script())
        .args(&self.args)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("INSTANCE", self.instance)
        .env("NIXRUN", &fake)
        .env("NIX_STATE_DIR", self.tmp.path("state"))
        // Where a test can put files that a stray glob would match.
        .current_dir(&self.tmp.0)
        .stdin(Stdio::null());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn run(&self, shell: &str) -> StartRun {
        let out = self.command(shell).output().unwrap();
        let argv = out
            .stdout
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        StartRun {
            argv,
            ok: out.status.success(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            dump: format!("{shell}: {}", output_text(&out)),
        }
    }
}

const SHELLS: [&str; 2] = ["sh", "bash"];

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// What nixrun's parser makes of a command line.
fn nixrun_parse(argv: &[String]) -> Result<cli::Cli, String> {
    let mut full = vec!["nixrun".to_string()];
    full.extend_from_slice(argv);
    cli::parse(full).map_err(|e| match e {
        CliError::Usage(s) | CliError::Display(s) => s,
    })
}

/// NixOS's --setenv list (for its container-init) with these values.
fn nixos_setenv(vals: &[(&str, &str)]) -> Vec<String> {
    let mut v = vec![];
    for k in [
        "PRIVATE_NETWORK",
        "PRIVATE_USERS",
        "HOST_BRIDGE",
        "HOST_ADDRESS",
        "LOCAL_ADDRESS",
        "HOST_ADDRESS6",
        "LOCAL_ADDRESS6",
        "LOCAL_MAC_ADDRESS",
        "HOST_PORT",
    ] {
        let val = vals.iter().find(|(n, _)| *n == k).map_or("", |(_, x)| x);
        v.push("--setenv".to_string());
        v.push(format!("{k}={val}"));
    }
    v.push("--setenv".to_string());
    v.push("PATH=/usr/sbin:/usr/bin:/sbin:/bin".to_string());
    v
}

fn nix_binds(tmp: &TempDir, instance: &str, opt: &str) -> Vec<String> {
    let state = tmp.s("state");
    vec![
        format!("--bind-ro=/nix/store:/nix/store{opt}"),
        format!("--bind-ro={state}/db:/nix/var/nix/db{opt}"),
        format!("--bind-ro={state}/daemon-socket:/nix/var/nix/daemon-socket{opt}"),
        format!("--bind={state}/profiles/per-container/{instance}:/nix/var/nix/profiles{opt}"),
        format!("--bind={state}/gcroots/per-container/{instance}:/nix/var/nix/gcroots{opt}"),
    ]
}

/// The conf NixOS writes for a declarative container with bindMounts and
/// extraFlags (see nixos-containers.nix, environment.etc).
const NIXOS_DECLARATIVE: &str = r#"SYSTEM_PATH=/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-web-24.11

COPY_RESOLV_CONF=1

PRIVATE_USERS=no
INTERFACES=""
MACVLANS=""

EXTRA_NSPAWN_FLAGS=" --bind-ro=/srv/data:/data --bind=/srv/*:/glob --drop-capability=CAP_SYS_CHROOT"
"#;

#[test]
fn nixos_declarative_conf() {
    let resolv = fs::read("/etc/resolv.conf")
        .unwrap_or_else(|e| panic!("missing prerequisite: the host's /etc/resolv.conf ({e})"));
    for shell in SHELLS {
        let tmp = TempDir::new("decl");
        let root = tmp.s("root");
        let r = Start::new(&tmp, "web", NIXOS_DECLARATIVE)
            .env("root", &root)
            // What the module passes for additionalCapabilities and tmpfs.
            .args(&["--capability=CAP_NET_ADMIN", "--tmpfs=/var"])
            .run(shell);
        assert!(r.ok, "{}", r.dump);

        let mut want = strs(&[
            "--keep-unit",
            "-M",
            "web",
            "-D",
            &root,
            "--notify-ready=yes",
            "--kill-signal=SIGRTMIN+3",
        ]);
        want.extend(nix_binds(&tmp, "web", ""));
        want.push("--link-journal=try-guest".into());
        want.extend(nixos_setenv(&[("PRIVATE_USERS", "no")]));
        want.extend(strs(&[
            "--capability=CAP_NET_ADMIN",
            "--tmpfs=/var",
            "--bind-ro=/srv/data:/data",
            // Not glob-expanded.
            "--bind=/srv/*:/glob",
            "--drop-capability=CAP_SYS_CHROOT",
            "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-nixos-system-web-24.11/init",
        ]));
        assert_eq!(r.argv, want, "{}", r.dump);

        // The root, prepared as NixOS's script prepares it.
        for (dir, m) in [
            ("root/etc", 0o755),
            ("root/var/lib", 0o755),
            ("root/var/lib/private", 0o700),
            ("root/root", 0o700),
            ("state/profiles/per-container/web", 0o755),
            ("state/gcroots/per-container/web", 0o755),
        ] {
            assert!(tmp.path(dir).is_dir(), "{shell}: {dir} missing");
            assert_eq!(mode(&tmp.path(dir)), m, "{shell}: mode of {dir}");
        }
        assert!(tmp.path("root/usr/bin").is_dir());
        assert_eq!(fs::read(tmp.path("root/etc/machine-id")).unwrap(), b"");
        assert_eq!(fs::read(tmp.path("root/etc/os-release")).unwrap(), b"");
        assert_eq!(fs::read(tmp.path("root/etc/resolv.conf")).unwrap(), resolv);

        // nixrun takes this command line as NixOS's nspawn would.
        let c = nixrun_parse(&r.argv).unwrap_or_else(|e| panic!("nixrun refuses it: {e}"));
        assert!(c.keep_unit && !c.boot);
        assert_eq!(c.machine.as_deref(), Some("web"));
        assert_eq!(c.bind_ro.len(), 4);
        assert_eq!(c.command.len(), 1);
        assert_eq!(c.capability, ["CAP_NET_ADMIN"]);
    }
}

#[test]
fn second_start_keeps_what_the_guest_wrote() {
    let tmp = TempDir::new("again");
    let root = tmp.s("root");
    let conf = "SYSTEM_PATH=/nix/store/x-nixos-system\nCOPY_RESOLV_CONF=0\n";
    assert!(
        Start::new(&tmp, "web", conf)
            .env("root", &root)
            .run("sh")
            .ok
    );
    fs::write(
        tmp.path("root/etc/machine-id"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    fs::write(tmp.path("root/etc/os-release"), "ID=nixos\n").unwrap();
    let r = Start::new(&tmp, "web", conf).env("root", &root).run("sh");
    assert!(r.ok, "{}", r.dump);
    assert_eq!(
        fs::read_to_string(tmp.path("root/etc/machine-id")).unwrap(),
        "0123456789abcdef0123456789abcdef\n"
    );
    assert_eq!(
        fs::read_to_string(tmp.path("root/etc/os-release")).unwrap(),
        "ID=nixos\n"
    );
    assert!(
        !tmp.path("root/etc/resolv.conf").exists(),
        "COPY_RESOLV_CONF=0 copied it"
    );
}

/// `nixos-container create`'s conf: no SYSTEM_PATH (the per-container profile
/// is the system), networking, and a user namespace.
#[test]
fn nixos_imperative_conf_with_network() {
    let conf = r#"PRIVATE_NETWORK=1
HOST_ADDRESS=10.233.1.1
LOCAL_ADDRESS=10.233.1.2
HOST_BRIDGE=
HOST_PORT=tcp:8080:80,udp:5353:53
INTERFACES="eth1 eth2"
MACVLANS="mv0"
PRIVATE_USERS=pick
AUTO_START=1
"#;
    for shell in SHELLS {
        let tmp = TempDir::new("imp");
        fs::create_dir_all(tmp.path("state/profiles/per-container/imp/system")).unwrap();
        let root = tmp.s("root");
        let r = Start::new(&tmp, "imp", conf)
            .env("root", &root)
            .env(
                "NIXRUN_CONTAINER_INIT",
                "/nix/store/x-nixrun-container-imp-init",
            )
            .run(shell);
        assert!(r.ok, "{}", r.dump);
        let mut want = strs(&[
            "--keep-unit",
            "-M",
            "imp",
            "-D",
            &root,
            "--private-network",
            "--private-users=pick",
            "--network-veth",
            "--host-address=10.233.1.1",
            "--local-address=10.233.1.2",
            "--port=tcp:8080:80",
            "--port=udp:5353:53",
            "--network-interface=eth1",
            "--network-interface=eth2",
            "--network-macvlan=mv0",
            "--notify-ready=yes",
            "--kill-signal=SIGRTMIN+3",
        ]);
        want.extend(nix_binds(&tmp, "imp", ":idmap"));
        want.push("--link-journal=try-guest".into());
        want.extend(nixos_setenv(&[
            ("PRIVATE_NETWORK", "1"),
            ("PRIVATE_USERS", "pick"),
            ("HOST_ADDRESS", "10.233.1.1"),
            ("LOCAL_ADDRESS", "10.233.1.2"),
            ("HOST_PORT", "tcp:8080:80,udp:5353:53"),
        ]));
        // The module's container-init runs first, with the system's init as
        // its argument.
        want.push("/nix/store/x-nixrun-container-imp-init".into());
        want.push("/nix/var/nix/profiles/system/init".into());
        assert_eq!(r.argv, want, "{}", r.dump);

        nixrun_parse(&r.argv).unwrap_or_else(|e| panic!("nixrun refused {:?}: {e}", r.argv));
    }
}

#[test]
fn network_fields_become_nspawns_flags_and_nixruns_addresses() {
    for (conf, flags) in [
        ("PRIVATE_NETWORK=1\n", &["--private-network"][..]),
        ("HOST_BRIDGE=br0\n", &["--network-bridge=br0"]),
        ("LOCAL_MAC_ADDRESS=de:b7:73:01:10:90\n", &["--network-veth"]),
        (
            "HOST_ADDRESS6=fc00::1\nLOCAL_ADDRESS6=fc00::2/64\n",
            &[
                "--network-veth",
                "--host-address=fc00::1",
                "--local-address=fc00::2/64",
            ],
        ),
        (
            "HOST_BRIDGE=br0\nLOCAL_ADDRESS=192.168.1.20/24\n",
            &[
                "--network-veth",
                "--local-address=192.168.1.20/24",
                "--network-bridge=br0",
            ],
        ),
        (
            "NETWORK_NAMESPACE_PATH=/run/netns/x\n",
            &["--network-namespace-path=/run/netns/x"],
        ),
    ] {
        let tmp = TempDir::new("netflag");
        fs::create_dir(tmp.path("deb")).unwrap();
        let r = Start::new(&tmp, "deb", conf)
            .env("root", tmp.s("deb"))
            .run("sh");
        assert!(r.ok, "{}", r.dump);
        let net: Vec<&String> = r
            .argv
            .iter()
            .filter(|a| {
                [
                    "--network",
                    "--private-network",
                    "--host-address",
                    "--local-address",
                ]
                .iter()
                .any(|p| a.starts_with(p))
            })
            .collect();
        assert_eq!(net, flags, "{conf}");
        nixrun_parse(&r.argv).unwrap_or_else(|e| panic!("{conf}: {e}"));
    }
    // A user namespace other than "no" is passed on, and nixrun takes it.
    let tmp = TempDir::new("userns");
    fs::create_dir(tmp.path("deb")).unwrap();
    let r = Start::new(&tmp, "deb", "PRIVATE_USERS=identity\n")
        .env("root", tmp.s("deb"))
        .run("sh");
    assert!(r.argv.iter().any(|a| a == "--private-users=identity"));
    let cli = nixrun_parse(&r.argv).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cli.private_users, ["identity"]);
}

#[test]
fn private_users_numbers() {
    for (value, idmap) in [
        ("0", false),
        ("65536", true),
        ("pick", true),
        ("identity", false),
    ] {
        let tmp = TempDir::new("userns");
        let conf = format!("SYSTEM_PATH=/nix/store/x-nixos-system\nPRIVATE_USERS={value}\n");
        let r = Start::new(&tmp, "u", &conf)
            .env("root", tmp.s("root"))
            .run("sh");
        assert!(r.ok, "{}", r.dump);
        assert!(r.argv.contains(&format!("--private-users={value}")));
        let has = r.argv.iter().any(|a| a.ends_with(":idmap"));
        assert_eq!(has, idmap, "PRIVATE_USERS={value}: {:?}", r.argv);
    }
}

/// A Debian tree: booted with -b, nothing of NixOS's, the root left alone.
#[test]
fn debian_conf() {
    let conf = "ROOT=@ROOT@\nEXTRA_NSPAWN_FLAGS=\"--bind=/srv/www:/var/www -E GLOB=*\"\n";
    for shell in SHELLS {
        let tmp = TempDir::new("deb");
        fs::create_dir_all(tmp.path("deb/etc")).unwrap();
        fs::write(tmp.path("deb/etc/os-release"), "ID=debian\n").unwrap();
        // What GLOB=* would become if the script globbed.
        fs::write(tmp.path("GLOB=expanded"), "").unwrap();
        let deb = tmp.s("deb");
        let conf = conf.replace("@ROOT@", &deb);
        // ROOT in the conf wins over the unit's root=.
        let r = Start::new(&tmp, "deb", &conf)
            .env("root", tmp.s("elsewhere"))
            .run(shell);
        assert!(r.ok, "{}", r.dump);
        let want = strs(&[
            "--keep-unit",
            "-M",
            "deb",
            "-D",
            &deb,
            "--notify-ready=yes",
            "--kill-signal=SIGRTMIN+3",
            "--link-journal=try-guest",
            "--bind=/srv/www:/var/www",
            "-E",
            "GLOB=*",
            "-b",
        ]);
        assert_eq!(r.argv, want, "{}", r.dump);
        let mut entries: Vec<_> = fs::read_dir(tmp.path("deb/etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        entries.sort();
        assert_eq!(
            entries,
            ["os-release"],
            "the start script wrote into a Debian root"
        );
        assert!(
            !tmp.path("state").exists(),
            "per-container Nix dirs for a Debian root"
        );
        assert!(!tmp.path("elsewhere").exists());

        let c = nixrun_parse(&r.argv).unwrap_or_else(|e| panic!("nixrun refuses it: {e}"));
        assert!(c.boot && c.keep_unit && c.command.is_empty());
        assert_eq!(c.setenv, ["GLOB=*"]);
    }
}

/// The shipped example, as it stands, boots a Debian root.
#[test]
fn example_conf_boots_a_debian_root() {
    let example = fs::read_to_string(repo().join("packaging/example.conf")).unwrap();
    for shell in SHELLS {
        let tmp = TempDir::new("example");
        fs::create_dir(tmp.path("deb")).unwrap();
        let r = Start::new(&tmp, "deb", &example)
            .env("root", tmp.s("deb"))
            .run(shell);
        assert!(r.ok, "{}", r.dump);
        assert_eq!(r.argv.last().map(String::as_str), Some("-b"), "{}", r.dump);
        nixrun_parse(&r.argv).unwrap_or_else(|e| panic!("nixrun refuses it: {e}"));
    }
}

/// The flags the NixOS module passes go where NixOS puts them, and an
/// ephemeral guest's journal is not linked.
#[test]
fn caller_flags_and_ephemeral() {
    let tmp = TempDir::new("eph");
    let conf = "SYSTEM_PATH=/nix/store/x-nixos-system\nEXTRA_NSPAWN_FLAGS=\"--bind=/a:/b\"\n";
    let r = Start::new(&tmp, "e", conf)
        .env("root", tmp.s("root"))
        .args(&["--ephemeral", "--tmpfs=/var"])
        .run("sh");
    assert!(r.ok, "{}", r.dump);
    assert!(
        !r.argv.iter().any(|a| a.starts_with("--link-journal")),
        "{:?}",
        r.argv
    );
    let tail = &r.argv[r.argv.len() - 4..];
    assert_eq!(
        tail,
        [
            "--ephemeral",
            "--tmpfs=/var",
            "--bind=/a:/b",
            "/nix/store/x-nixos-system/init"
        ]
    );
    let cli = nixrun_parse(&r.argv).unwrap_or_else(|e| panic!("nixrun refuses it: {e}"));
    assert!(cli.ephemeral);
}

#[test]
fn i686_system_gets_the_personality_flag() {
    let tmp = TempDir::new("i686");
    fs::create_dir(tmp.path("sys")).unwrap();
    fs::write(tmp.path("sys/system"), "i686-linux").unwrap();
    let conf = format!("SYSTEM_PATH={}\n", tmp.s("sys"));
    let r = Start::new(&tmp, "old", &conf)
        .env("root", tmp.s("root"))
        .run("sh");
    assert!(r.ok, "{}", r.dump);
    let has = r.argv.iter().any(|a| a == "--personality=x86");
    // As NixOS: only an x86_64 host runs i686 guests under a personality.
    assert_eq!(has, std::env::consts::ARCH == "x86_64", "{:?}", r.argv);
}

#[test]
fn flake_conf_builds_the_system_first() {
    let tmp = TempDir::new("flake");
    // Stands in for `nixos-container update NAME`, which builds the profile.
    let fake = tmp.path("nixos-container");
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$@\" >{log}\nmkdir -p {state}/profiles/per-container/$2/system\n",
            log = tmp.s("update.log"),
            state = tmp.s("state")
        ),
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let r = Start::new(&tmp, "fl", "FLAKE=github:me/conf#fl\n")
        .env("root", tmp.s("root"))
        .env("NIXOS_CONTAINER", fake.display().to_string())
        .run("sh");
    assert!(r.ok, "{}", r.dump);
    assert_eq!(
        fs::read_to_string(tmp.path("update.log")).unwrap(),
        "update fl\n"
    );
    assert_eq!(r.argv.last().unwrap(), "/nix/var/nix/profiles/system/init");
}

#[test]
fn refuses_without_instance_or_root() {
    let tmp = TempDir::new("refuse");
    let r = Start::new(&tmp, "", "").env("root", tmp.s("x")).run("sh");
    assert!(!r.ok && r.argv.is_empty(), "{}", r.dump);
    assert!(r.stderr.contains("INSTANCE is not set"), "{}", r.dump);

    let missing = tmp.s("missing");
    let r = Start::new(&tmp, "deb", "").env("root", &missing).run("sh");
    assert!(!r.ok && r.argv.is_empty(), "{}", r.dump);
    assert!(
        r.stderr
            .contains(&format!("no container root at {missing}")),
        "{}",
        r.dump
    );
    assert!(r.stderr.contains("/etc/nixrun/deb.conf"), "{}", r.dump);
}

/// The guest owns its root; the host-side script must not write through a
/// symlink it planted.
#[test]
fn never_writes_through_symlinks_in_the_root() {
    let conf = "SYSTEM_PATH=/nix/store/x-nixos-system\nCOPY_RESOLV_CONF=1\n";

    let tmp = TempDir::new("symlink-etc");
    fs::create_dir_all(tmp.path("root")).unwrap();
    fs::create_dir(tmp.path("outside")).unwrap();
    fs::set_permissions(tmp.path("outside"), fs::Permissions::from_mode(0o700)).unwrap();
    symlink(tmp.path("outside"), tmp.path("root/etc")).unwrap();
    let r = Start::new(&tmp, "s", conf)
        .env("root", tmp.s("root"))
        .run("sh");
    assert!(!r.ok && r.argv.is_empty(), "{}", r.dump);
    assert!(r.stderr.contains("root/etc is a symlink"), "{}", r.dump);
    assert_eq!(fs::read_dir(tmp.path("outside")).unwrap().count(), 0);
    assert_eq!(
        mode(&tmp.path("outside")),
        0o700,
        "chmod through the symlink"
    );

    let tmp = TempDir::new("symlink-files");
    fs::create_dir_all(tmp.path("root/etc")).unwrap();
    fs::create_dir(tmp.path("outside")).unwrap();
    symlink(
        tmp.path("outside/machine-id"),
        tmp.path("root/etc/machine-id"),
    )
    .unwrap();
    symlink(
        tmp.path("outside/os-release"),
        tmp.path("root/etc/os-release"),
    )
    .unwrap();
    symlink(
        tmp.path("outside/resolv.conf"),
        tmp.path("root/etc/resolv.conf"),
    )
    .unwrap();
    let r = Start::new(&tmp, "s", conf)
        .env("root", tmp.s("root"))
        .run("sh");
    assert!(r.ok, "{}", r.dump);
    assert_eq!(
        fs::read_dir(tmp.path("outside")).unwrap().count(),
        0,
        "wrote outside the root"
    );
    // resolv.conf is replaced by a file; the dangling links stay as they are.
    assert!(tmp
        .path("root/etc/resolv.conf")
        .symlink_metadata()
        .unwrap()
        .is_file());
    assert!(tmp
        .path("root/etc/machine-id")
        .symlink_metadata()
        .unwrap()
        .is_symlink());
}

// ---------------------------------------------------------------------------
// The start script with the real nixrun

/// One container at a time: on a hybrid host, simulated units without a v1
/// devices cgroup of their own would have two --keep-unit containers of this
/// process share one devices payload (a real unit has its own there).
fn one_container_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the start script in a unit's cgroup, with a $NOTIFY_SOCKET, and the
/// real nixrun at the end of it.
fn start_for_real(start: &Start, unit: &common::UnitCgroup) -> common::Spawned {
    let mut cmd = start.command("sh");
    cmd.env("NIXRUN", &*common::NIXRUN);
    unit.enter(&mut cmd);
    common::Spawned::start_cmd(cmd)
}

/// SIGTERM, as KillMode=mixed sends it: the guest halts and nixrun exits 0.
/// Then the journal link --link-journal=try-guest made (where the host keeps
/// a journal) is checked and removed: this guest is temporary.
fn stop_and_unlink_journal(c: &mut common::Spawned, root: &Path) {
    let id = c.sh("cat /run/host/container-uuid").trim().replace('-', "");
    c.signal(libc::SIGTERM);
    let st = c.wait_exit(common::STOP_TIMEOUT);
    assert_eq!(common::exit_code(st), 0, "log:\n{}", c.log_text());
    let link = Path::new("/var/log/journal").join(&id);
    if Path::new("/var/log/journal").is_dir() {
        assert_eq!(
            fs::read_link(&link).unwrap(),
            root.join("var/log/journal").join(&id)
        );
        fs::remove_file(&link).unwrap();
    } else {
        assert!(!link.exists());
    }
}

#[test]
fn start_script_boots_a_debian_root_with_nixrun() {
    let _serial = one_container_at_a_time();
    let machine = "pkg-deb";
    let (dir, root) = common::TempRoot::copy_of(machine, &common::fixture("debian"), machine);
    let snap = common::HostSnapshot::take(machine);
    let unit = common::UnitCgroup::new(machine);
    let tmp = TempDir::new("real-deb");
    let start = Start::new(
        &tmp,
        machine,
        "EXTRA_NSPAWN_FLAGS=\"--setenv=PKG_TEST=yes\"\n",
    )
    .env("root", root.display().to_string());
    let mut c = start_for_real(&start, &unit);
    c.wait_ready(common::BOOT_TIMEOUT);
    assert_eq!(
        unit.subgroups(),
        ["payload", "supervisor"],
        "not --keep-unit"
    );
    assert_eq!(c.sh("hostname").trim(), machine);
    assert!(
        c.sh("tr '\\0' '\\n' </proc/1/environ")
            .lines()
            .any(|l| l == "PKG_TEST=yes"),
        "EXTRA_NSPAWN_FLAGS did not reach nixrun"
    );
    stop_and_unlink_journal(&mut c, &root);
    assert_eq!(unit.subgroups(), Vec::<String>::new());
    drop(dir);
    snap.assert_unchanged();
}

#[test]
fn start_script_boots_a_nixos_root_with_nixrun() {
    let _serial = one_container_at_a_time();
    let machine = "pkg-nixos";
    let fx = common::fixture("nixos");
    let info = fs::read_to_string(fx.join("info")).unwrap();
    let system = info
        .lines()
        .find_map(|l| l.strip_prefix("system="))
        .expect("no system= in the nixos fixture's info");
    let (dir, root) = common::TempRoot::copy_of(machine, &fx.join("root"), machine);
    // The host's Nix state, as the NixOS host would have it.
    let state = dir.path("state");
    for d in ["db", "daemon-socket"] {
        fs::create_dir_all(state.join(d)).unwrap();
    }
    let snap = common::HostSnapshot::take(machine);
    let unit = common::UnitCgroup::new(machine);
    let tmp = TempDir::new("real-nixos");
    // The conf NixOS writes for a declarative container.
    let conf = format!(
        "SYSTEM_PATH={system}\nCOPY_RESOLV_CONF=1\nPRIVATE_USERS=no\nINTERFACES=\"\"\nMACVLANS=\"\"\nEXTRA_NSPAWN_FLAGS=\"\"\n"
    );
    let start = Start::new(&tmp, machine, &conf)
        .env("root", root.display().to_string())
        .env("NIX_STATE_DIR", state.display().to_string())
        .env("NIX_STORE_DIR", fx.join("store").display().to_string());
    let mut c = start_for_real(&start, &unit);
    c.wait_ready(common::BOOT_TIMEOUT);
    assert_eq!(
        unit.subgroups(),
        ["payload", "supervisor"],
        "not --keep-unit"
    );
    // PID 1 came from the system named by SYSTEM_PATH, through the store bind.
    assert!(c.sh("readlink /proc/1/exe").starts_with("/nix/store/"));
    // The per-container profile is the guest's /nix/var/nix/profiles.
    let profile = state.join(format!("profiles/per-container/{machine}"));
    fs::write(profile.join("marker"), "host").unwrap();
    assert_eq!(c.sh("cat /nix/var/nix/profiles/marker"), "host");
    assert_eq!(
        fs::read(root.join("etc/resolv.conf")).unwrap(),
        fs::read("/etc/resolv.conf").unwrap()
    );
    stop_and_unlink_journal(&mut c, &root);
    assert_eq!(unit.subgroups(), Vec::<String>::new());
    drop(dir);
    snap.assert_unchanged();
}

/// NixOS's privateNetwork container, started by the start script in a test
/// network namespace: nixrun configures both ends of the veth before the
/// guest's init, so a unit at the very start of the guest's boot reaches the
/// host (under NixOS's own scripts, the host side is configured only once
/// the guest has finished booting); then the module's container init renames
/// host0 to eth0 and configures it again, as NixOS's does, without failing on
/// what is already there.
#[test]
fn start_script_boots_a_nixos_root_with_a_private_network() {
    let _serial = one_container_at_a_time();
    let machine = "pkg-nixnet";
    let ns = common::netns::Netns::new("pkgnet");
    let fx = common::fixture("nixos");
    let info = fs::read_to_string(fx.join("info")).unwrap();
    let field = |k: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")).map(str::to_string))
            .unwrap_or_else(|| panic!("no {k}= in the nixos fixture's info"))
    };
    let (system, busybox, userland) = (field("system"), field("busybox"), field("userland"));
    let (dir, root) = common::TempRoot::copy_of(machine, &fx.join("root"), machine);
    let state = dir.path("state");
    for d in ["db", "daemon-socket"] {
        fs::create_dir_all(state.join(d)).unwrap();
    }
    // A unit at the start of the guest's boot, before sysinit.target: under
    // /usr/local, the one unit directory the activation leaves to the root.
    let units = root.join("usr/local/lib/systemd/system");
    fs::create_dir_all(units.join("sysinit.target.wants")).unwrap();
    fs::write(
        units.join("early-net.service"),
        "[Unit]\nDefaultDependencies=no\nBefore=sysinit.target\n\
         [Service]\nType=oneshot\nExecStart=/nixrun-probe connect 10.233.9.1 7090\n\
         StandardOutput=file:/run/early-net.result\n",
    )
    .unwrap();
    symlink(
        "../early-net.service",
        units.join("sysinit.target.wants/early-net.service"),
    )
    .unwrap();
    // What the module's wrapper is, with the fixture's dash and ip(8). The
    // fixture's userland is Debian's, linked against /lib64's loader, which
    // the root has only after the system's activation: the wrapper names the
    // store's loader itself, as a Nix store program's ELF header would.
    let tmp = TempDir::new("real-nixnet");
    let bin = tmp.path("bin");
    fs::create_dir(&bin).unwrap();
    let libs = format!("{userland}/usr/lib/x86_64-linux-gnu");
    let run = format!("{libs}/ld-linux-x86-64.so.2 --library-path {libs}");
    for (name, text) in [
        (
            "container-init",
            format!(
                "#!{busybox}/bin/sh\nPATH=/nixrun-test-bin:{busybox}/bin\nexport PATH\n\
                 exec {run} {userland}/usr/bin/dash /nixrun-container-init \"$@\"\n"
            ),
        ),
        (
            "ip",
            format!("#!{busybox}/bin/sh\nexec {run} {userland}/usr/bin/ip \"$@\"\n"),
        ),
    ] {
        fs::write(bin.join(name), text).unwrap();
        fs::set_permissions(bin.join(name), fs::Permissions::from_mode(0o755)).unwrap();
    }
    // nixrun in the test's namespace, as the unit would run it on the host.
    let in_ns = tmp.path("nixrun-in-netns");
    fs::write(
        &in_ns,
        format!(
            "#!/bin/sh\nexec nsenter --net={} {} \"$@\"\n",
            ns.path().display(),
            &*common::NIXRUN
        ),
    )
    .unwrap();
    fs::set_permissions(&in_ns, fs::Permissions::from_mode(0o755)).unwrap();

    let conf = format!(
        "SYSTEM_PATH={system}\nCOPY_RESOLV_CONF=0\nPRIVATE_USERS=no\nPRIVATE_NETWORK=1\n\
         HOST_ADDRESS=10.233.9.1\nLOCAL_ADDRESS=10.233.9.2\n\
         HOST_ADDRESS6=fd00:233:9::1\nLOCAL_ADDRESS6=fd00:233:9::2\n\
         EXTRA_NSPAWN_FLAGS=\"--bind-ro={}:/nixrun-test-bin --bind-ro={}:/nixrun-container-init \
         --bind-ro={}:/nixrun-probe\"\n",
        bin.display(),
        repo().join("packaging/nixrun-container-init").display(),
        common::probe_binary().display(),
    );
    let snap = common::HostSnapshot::take(machine);
    let unit = common::UnitCgroup::new(machine);
    let mut listener = ns.probe(&["listen", "7090", "1"]);
    let start = Start::new(&tmp, machine, &conf)
        .env("root", root.display().to_string())
        .env("NIX_STATE_DIR", state.display().to_string())
        .env("NIX_STORE_DIR", fx.join("store").display().to_string())
        .env("NIXRUN_CONTAINER_INIT", "/nixrun-test-bin/container-init");
    let mut cmd = start.command("sh");
    cmd.env("NIXRUN", &in_ns);
    unit.enter(&mut cmd);
    let mut c = common::Spawned::start_cmd(cmd);
    c.wait_ready(common::BOOT_TIMEOUT);
    let _ = listener.kill();
    let _ = listener.wait();

    assert_eq!(
        c.sh("cat /run/early-net.result").trim(),
        "connected pong 10.233.9.2",
        "a unit early in the guest's boot could not reach the host"
    );
    // The container init's work, on top of nixrun's: eth0, no host0, the
    // addresses and routes once each.
    let links = c.sh("ip -o link show | cut -d: -f2 | tr -d ' ' | sort | tr '\\n' ,");
    assert_eq!(links, "eth0@if2,lo,", "{links}");
    let addrs =
        c.sh("ip -o addr show dev eth0 scope global | awk '{print $4}' | sort | tr '\\n' ,");
    assert_eq!(addrs, "10.233.9.2/32,fd00:233:9::2/128,");
    assert_eq!(
        c.sh("ip route show default").trim(),
        "default via 10.233.9.1 dev eth0"
    );
    let host = ns.ip(&["-o", "addr", "show", "dev", "ve-pkg-nixnet"]);
    assert!(
        host.contains("10.233.9.1/32") && host.contains("fd00:233:9::1/128"),
        "{host}"
    );
    stop_and_unlink_journal(&mut c, &root);
    assert!(
        !ns.links().iter().any(|l| l.starts_with("ve-")),
        "the veth outlived the container"
    );
    drop(dir);
    snap.assert_unchanged();
}

// ---------------------------------------------------------------------------
// Builds and installs

/// The directory with this build's nixrun and nixrunctl, and nixrun-gendoc
/// built into it (it belongs to another workspace member, so cargo does not
/// hand it to this test).
fn build_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let nixrun = PathBuf::from(env!("CARGO_BIN_EXE_nixrun"));
        let dir = nixrun.parent().unwrap().to_path_buf();
        let nixrunctl = PathBuf::from(env!("CARGO_BIN_EXE_nixrunctl"));
        assert_eq!(nixrunctl.parent(), Some(dir.as_path()));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(repo())
            .args(["build", "--quiet", "--package", "nixrun-gendoc"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("missing prerequisite: {cargo} ({e})"));
        assert!(
            out.status.success(),
            "building nixrun-gendoc: {}",
            output_text(&out)
        );
        assert!(
            dir.join("nixrun-gendoc").is_file(),
            "nixrun-gendoc was not built into {}",
            dir.display()
        );
        dir
    })
}

fn make(args: &[&str]) -> Output {
    let make = require_tool("make", "make");
    let dir = build_dir();
    Command::new(make)
        .current_dir(repo())
        .arg("--no-print-directory")
        .arg(format!("RELEASE_DIR={}", dir.display()))
        .arg(format!("GENDOC={}", dir.join("nixrun-gendoc").display()))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn files_below(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut v = vec![];
    walk(root, root, &mut v);
    v.sort();
    v
}

#[test]
fn make_install_and_uninstall() {
    let tmp = TempDir::new("make");
    let dest = tmp.path("dest");
    let out = make(&["install", &format!("DESTDIR={}", dest.display())]);
    assert!(out.status.success(), "make install: {}", output_text(&out));

    let mut want: Vec<String> = strs(&[
        "etc/systemd/system/nixrun@.service",
        "usr/local/bin/nixrun",
        "usr/local/bin/nixrunctl",
        "usr/local/lib/nixrun/nixrun-container-init",
        "usr/local/lib/nixrun/nixrun-container-start",
        "usr/local/share/bash-completion/completions/nixrun",
        "usr/local/share/bash-completion/completions/nixrunctl",
        "usr/local/share/doc/nixrun/README.md",
        "usr/local/share/doc/nixrun/example.conf",
        "usr/local/share/fish/vendor_completions.d/nixrun.fish",
        "usr/local/share/fish/vendor_completions.d/nixrunctl.fish",
        "usr/local/share/man/man1/nixrun.1",
        "usr/local/share/man/man1/nixrunctl.1",
        "usr/local/share/zsh/site-functions/_nixrun",
        "usr/local/share/zsh/site-functions/_nixrunctl",
    ]);
    for verb in nixrun::ctl::cli::command().get_subcommands() {
        want.push(format!(
            "usr/local/share/man/man1/nixrunctl-{}.1",
            verb.get_name()
        ));
    }
    want.sort();
    assert_eq!(files_below(&dest), want);
    assert!(dest.join("etc/nixrun").is_dir(), "no /etc/nixrun");

    let built = fs::read(env!("CARGO_BIN_EXE_nixrun")).unwrap();
    assert!(fs::read(dest.join("usr/local/bin/nixrun")).unwrap() == built);
    for (f, m) in [
        ("usr/local/bin/nixrun", 0o755),
        ("usr/local/bin/nixrunctl", 0o755),
        ("usr/local/lib/nixrun/nixrun-container-start", 0o755),
        ("usr/local/lib/nixrun/nixrun-container-init", 0o755),
        ("etc/systemd/system/nixrun@.service", 0o644),
        ("usr/local/share/man/man1/nixrun.1", 0o644),
    ] {
        assert_eq!(mode(&dest.join(f)), m, "mode of {f}");
    }
    let unit = fs::read_to_string(dest.join("etc/systemd/system/nixrun@.service")).unwrap();
    for line in [
        "ExecStart=/usr/local/lib/nixrun/nixrun-container-start",
        "ExecReload=/usr/local/bin/nixrunctl reload %i",
        "Environment=NIXRUN=/usr/local/bin/nixrun",
    ] {
        assert!(
            unit.lines().any(|l| l == line),
            "installed unit lacks {line}:\n{unit}"
        );
    }

    let out = make(&["uninstall", &format!("DESTDIR={}", dest.display())]);
    assert!(
        out.status.success(),
        "make uninstall: {}",
        output_text(&out)
    );
    assert_eq!(
        files_below(&dest),
        Vec::<String>::new(),
        "left after uninstall"
    );
    assert!(
        dest.join("etc/nixrun").is_dir(),
        "uninstall removed the admin's /etc/nixrun"
    );
}

#[test]
fn make_install_with_prefix_usr_keeps_the_units_paths() {
    let tmp = TempDir::new("make-usr");
    let dest = tmp.path("dest");
    let out = make(&[
        "install",
        "PREFIX=/usr",
        &format!("DESTDIR={}", dest.display()),
    ]);
    assert!(out.status.success(), "make install: {}", output_text(&out));
    let installed = fs::read(dest.join("etc/systemd/system/nixrun@.service")).unwrap();
    assert_eq!(
        installed,
        fs::read(repo().join("packaging/nixrun@.service")).unwrap()
    );
    assert!(dest.join("usr/lib/nixrun/nixrun-container-start").is_file());
}

#[test]
fn make_install_without_a_build_says_so() {
    let tmp = TempDir::new("make-none");
    fs::create_dir(tmp.path("empty")).unwrap();
    let make_bin = require_tool("make", "make");
    let out = Command::new(make_bin)
        .current_dir(repo())
        .args(["--no-print-directory", "install"])
        .arg(format!("RELEASE_DIR={}", tmp.s("empty")))
        .arg(format!("DESTDIR={}", tmp.s("dest")))
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run make first"),
        "{}",
        output_text(&out)
    );
    assert!(!tmp.path("dest").exists(), "installed something anyway");
}

// ---------------------------------------------------------------------------
// The unit

/// [Section] -> (key, value) in file order; repeated keys stay repeated.
fn parse_unit(text: &str) -> BTreeMap<String, Vec<(String, String)>> {
    let mut units: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not KEY=VALUE: {line}"));
        units
            .entry(section.clone())
            .or_default()
            .push((k.trim().to_string(), v.trim().to_string()));
    }
    units
}

#[test]
fn unit_has_container_services_settings() {
    let text = fs::read_to_string(repo().join("packaging/nixrun@.service")).unwrap();
    let unit = parse_unit(&text);
    let get = |section: &str, key: &str| -> Vec<String> {
        unit.get(section)
            .map(|kv| {
                kv.iter()
                    .filter(|(k, _)| k == key)
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    // As NixOS's container@.service (serviceDirectives in nixos-containers.nix).
    for (key, value) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("Delegate", "yes"),
        ("Slice", "machine.slice"),
        ("KillMode", "mixed"),
        ("KillSignal", "TERM"),
        ("RestartForceExitStatus", "133"),
        ("SuccessExitStatus", "133"),
        ("Restart", "on-failure"),
        ("DevicePolicy", "closed"),
        ("EnvironmentFile", "-/etc/nixrun/%i.conf"),
        ("ExecStart", "/usr/lib/nixrun/nixrun-container-start"),
        ("ExecReload", "/usr/bin/nixrunctl reload %i"),
        ("SyslogIdentifier", "container %i"),
    ] {
        assert_eq!(get("Service", key), [value], "[Service] {key}=");
    }
    assert_eq!(get("Service", "DeviceAllow"), ["/dev/net/tun rwm"]);
    let env = get("Service", "Environment");
    assert!(env.iter().any(|e| e == "INSTANCE=%i"), "{env:?}");
    for key in ["TimeoutStartSec", "TimeoutStopSec"] {
        assert_eq!(
            get("Service", key).len(),
            1,
            "[Service] {key}= not set once"
        );
    }
    assert_eq!(get("Unit", "RequiresMountsFor"), ["/var/lib/containers/%i"]);
    assert_eq!(get("Install", "WantedBy"), ["machines.target"]);
}

/// A copy installed under a scratch PREFIX, so that its ExecStart= and
/// ExecReload= exist for verify to check.
#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let analyze = require_tool("systemd-analyze", "systemd");
    let tmp = TempDir::new("verify");
    let prefix = tmp.s("prefix");
    let units = tmp.path("units");
    let out = make(&[
        "install",
        &format!("PREFIX={prefix}"),
        &format!("UNITDIR={}", units.display()),
    ]);
    assert!(out.status.success(), "make install: {}", output_text(&out));
    // verify wants an instance, not a template.
    let instance = units.join("nixrun@check.service");
    fs::copy(units.join("nixrun@.service"), &instance).unwrap();

    let verify = |unit: &Path| {
        Command::new(&analyze)
            // Documentation='s man pages are checked below: verify's check
            // needs man-db.
            .args(["verify", "--man=no"])
            .arg(unit)
            .env("SYSTEMD_LOG_COLOR", "0")
            .output()
            .unwrap()
    };
    let out = verify(&instance);
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        output_text(&out)
    );
    let text = fs::read_to_string(&instance).unwrap();
    for page in ["nixrun", "nixrunctl"] {
        assert!(text.contains(&format!("man:{page}(1)")));
        let f = tmp.path(&format!("prefix/share/man/man1/{page}.1"));
        assert!(f.is_file(), "Documentation= names {page}(1), not installed");
    }

    // The check has teeth: a misspelt key is reported.
    let bad = units.join("nixrun@bad.service");
    fs::write(&bad, text.replace("KillMode=mixed", "KilMode=mixed")).unwrap();
    let out = verify(&bad);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("KilMode"),
        "verify missed a bad key: {}",
        output_text(&out)
    );
}

// ---------------------------------------------------------------------------
// Completions and man pages

#[test]
fn gendoc_writes_completions_and_man_pages() {
    let bash = require_tool("bash", "bash");
    let tmp = TempDir::new("gendoc");
    let out = Command::new(build_dir().join("nixrun-gendoc"))
        .arg(tmp.path("out"))
        .output()
        .unwrap();
    assert!(out.status.success(), "nixrun-gendoc: {}", output_text(&out));
    let read = |f: &str| {
        fs::read_to_string(tmp.path(&format!("out/{f}")))
            .unwrap_or_else(|e| panic!("{f}: {e}"))
            .replace("\\-", "-")
    };
    for f in ["bash/nixrun", "zsh/_nixrun", "man1/nixrun.1"] {
        let text = read(f);
        for flag in [
            "--directory",
            "--bind-ro",
            "--keep-unit",
            "--private-network",
            "--host-address",
        ] {
            assert!(text.contains(flag), "{f} lacks {flag}");
        }
        assert!(!text.contains("--personality"), "{f} offers a refused flag");
    }
    for f in [
        "bash/nixrunctl",
        "zsh/_nixrunctl",
        "fish/nixrunctl.fish",
        "man1/nixrunctl.1",
    ] {
        let text = read(f);
        for verb in ["list", "exec", "shell", "stop"] {
            assert!(text.contains(verb), "{f} lacks {verb}");
        }
    }
    assert!(read("fish/nixrun.fish").contains("-l bind-ro"));

    // The bash completions load and register themselves.
    for cmd in ["nixrun", "nixrunctl"] {
        let out = Command::new(&bash)
            .args(["-c", r#". "$1" && complete -p "$2""#, "bash"])
            .arg(tmp.path(&format!("out/bash/{cmd}")))
            .arg(cmd)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "bash completion of {cmd}: {}",
            output_text(&out)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(cmd));
    }
    // Without an argument it says how to call it.
    let out = Command::new(build_dir().join("nixrun-gendoc"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage: nixrun-gendoc OUTDIR"));
}

// ---------------------------------------------------------------------------
// Nix

fn nix_instantiate() -> Command {
    let bin = require_tool("nix-instantiate", "nix-bin");
    let mut cmd = Command::new(bin);
    // No store: nothing is built, and /nix is not created on the host.
    // No build users either, which nix.conf's default would warn about.
    cmd.args(["--store", "dummy://", "--option", "build-users-group", ""]);
    cmd
}

fn nix_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    walk(&p, out);
                }
            } else if name.ends_with(".nix") {
                out.push(p);
            }
        }
    }
    let mut v = vec![];
    walk(&repo(), &mut v);
    v.sort();
    v
}

#[test]
fn every_nix_file_parses() {
    let files = nix_files();
    for want in ["flake.nix", "default.nix", "nix/module.nix"] {
        assert!(
            files.contains(&repo().join(want)),
            "{want} not found: {files:?}"
        );
    }
    let mut failed = vec![];
    for f in &files {
        let out = nix_instantiate().arg("--parse").arg(f).output().unwrap();
        if !out.status.success() || !out.stderr.is_empty() {
            failed.push(format!("{}: {}", f.display(), output_text(&out)));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Stand-ins for the parts of nixpkgs' lib, pkgs and rustPlatform that
/// nix/module.nix and default.nix use. mkForce is lib's own representation,
/// so the test sees the override as NixOS's module system would.
const NIX_STUBS: &str = r#"
{ repo }:
let
  inherit (builtins) attrNames concatStringsSep concatLists listToAttrs replaceStrings foldl';
  concatStrings = concatStringsSep "";
  mapAttrsToList = f: s: map (n: f n s.${n}) (attrNames s);
  escapeShellArg = a: "'" + replaceStrings [ "'" ] [ "'\\''" ] a + "'";
  lib = {
    inherit attrNames concatStrings concatStringsSep concatLists mapAttrsToList;
    mkIf = c: v: if c then v else { };
    mkMerge = foldl' (a: b: a // b) { };
    mkOverride = priority: content: { _type = "override"; inherit priority content; };
    mkForce = lib.mkOverride 50;
    mkOption = o: o;
    mkEnableOption = what: { default = false; description = "Whether to enable ${what}."; };
    types.package = "package";
    literalExpression = text: { _type = "literalExpression"; inherit text; };
    optional = c: x: if c then [ x ] else [ ];
    optionalString = c: s: if c then s else "";
    nameValuePair = name: value: { inherit name value; };
    "mapAttrs'" = f: s: listToAttrs (mapAttrsToList f s);
    inherit escapeShellArg;
    escapeShellArgs = xs: concatStringsSep " " (map escapeShellArg xs);
    importTOML = p: builtins.fromTOML (builtins.readFile p);
    cleanSource = src: { cleaned = src; };
    cleanSourceWith = a: a;
    licenses = { mit = "mit"; asl20 = "asl20"; };
    platforms.linux = [ "x86_64-linux" "aarch64-linux" ];
  };
  stdenv = { buildPlatform.canExecute = _: true; hostPlatform = { }; };
  pkgs = {
    coreutils = "/nix/store/stub-coreutils";
    iproute2 = "/nix/store/stub-iproute2";
    runtimeShell = "/nix/store/stub-bash/bin/bash";
    writeShellScript = name: text: "SCRIPT ${name}: ${text}";
    callPackage = f: args: import f ({
      inherit lib stdenv;
      rustPlatform.buildRustPackage = drv: drv;
      installShellFiles = "installShellFiles";
    } // args);
  };
  container = o: {
    privateNetwork = false; privateUsers = "no"; ephemeral = false; networkNamespace = null;
    interfaces = [ ]; macvlans = [ ]; extraVeths = { }; additionalCapabilities = [ ];
    enableTun = false; tmpfs = [ ];
  } // o;
  eval = enable: enableContainers: import (repo + "/nix/module.nix") {
    inherit lib pkgs;
    config = {
      virtualisation.nixrun = { inherit enable; package = "/nix/store/stub-nixrun"; };
      boot.enableContainers = enableContainers;
      containers = {
        web = container { };
        tun = container {
          enableTun = true;
          additionalCapabilities = [ "CAP_SYS_TIME" ];
          tmpfs = [ "/var" "/tmp:mode=1777" ];
        };
        net = container {
          privateNetwork = true;
          privateUsers = "pick";
          extraVeths.ve2 = {
            hostBridge = null; hostAddress = "10.1.0.1"; hostAddress6 = null;
            localAddress = "10.1.0.2"; localAddress6 = "fd01::2/64";
          };
          extraVeths.ve3 = {
            hostBridge = "br1"; hostAddress = null; hostAddress6 = null;
            localAddress = null; localAddress6 = null;
          };
        };
      };
    };
  };
  on = eval true true;
  pkg = on.options.virtualisation.nixrun.package.default;
in
{
  services = builtins.mapAttrs (n: u: {
    execStart = u.serviceConfig.ExecStart or null;
    execReload = u.serviceConfig.ExecReload or null;
    environment = u.environment or { };
    path = u.path or [ ];
    postStart = u.postStart or null;
  }) on.config.systemd.services;
  warnings = on.config.warnings;
  packages = on.config.systemd.packages;
  systemPackages = on.config.environment.systemPackages;
  enableDefault = on.options.virtualisation.nixrun.enable.default;
  disabled = (eval false true).config;
  withoutContainers = attrNames (eval true false).config.systemd.services;
  package = {
    inherit (pkg) pname version cargoBuildFlags cargoTestFlags postPatch postInstall;
    lockFile = toString pkg.cargoLock.lockFile;
    keepsSrc = pkg.src.filter (repo + "/src") "directory";
    keepsTarget = pkg.src.filter (repo + "/target") "directory";
    mainProgram = pkg.meta.mainProgram;
  };
}
"#;

/// Evaluates the stand-in harness: the module's and package's own logic.
/// What it cannot show (merging with the real nixos-containers.nix, a build)
/// needs a Nix store.
fn nix_eval_stubs() -> serde_json::Value {
    let tmp = TempDir::new("nix-eval");
    let harness = tmp.path("stubs.nix");
    fs::write(&harness, NIX_STUBS).unwrap();
    let expr = format!(
        "import {} {{ repo = \"{}\"; }}",
        harness.display(),
        repo().display()
    );
    let out = nix_instantiate()
        .args(["--eval", "--strict", "--json", "--expr", &expr])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nix-instantiate --eval: {}",
        output_text(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn nixos_module_switches_containers_to_nixrun() {
    let v = nix_eval_stubs();
    let svc = &v["services"];
    let names: Vec<&String> = svc.as_object().unwrap().keys().collect();
    assert_eq!(
        names,
        [
            "container@",
            "container@net",
            "container@tun",
            "container@web",
            "nixrun@"
        ]
    );
    let start = "/nix/store/stub-nixrun/lib/nixrun/nixrun-container-start";
    for name in [
        "container@",
        "container@net",
        "container@tun",
        "container@web",
    ] {
        let s = &svc[name];
        // mkForce: wins over the ExecStart NixOS makes from its script.
        assert_eq!(s["execStart"]["_type"], "override", "{name}");
        assert_eq!(s["execStart"]["priority"], 50, "{name}");
        assert_eq!(s["execReload"]["priority"], 50, "{name}");
        assert_eq!(
            s["execReload"]["content"], "/nix/store/stub-nixrun/bin/nixrunctl reload %i",
            "{name}"
        );
        assert_eq!(
            s["environment"]["NIXRUN"],
            "/nix/store/stub-nixrun/bin/nixrun"
        );
        assert_eq!(
            s["environment"]["NIXOS_CONTAINER"],
            "/run/current-system/sw/bin/nixos-container"
        );
    }
    assert_eq!(svc["container@"]["execStart"]["content"], start);
    assert_eq!(svc["container@web"]["execStart"]["content"], start);
    assert_eq!(
        svc["container@tun"]["execStart"]["content"],
        format!(
            "SCRIPT nixrun-container-tun-start: exec {start} \
             '--capability=CAP_SYS_TIME,CAP_NET_ADMIN' '--tmpfs=/var' '--tmpfs=/tmp:mode=1777'\n"
        )
    );
    assert_eq!(
        svc["container@net"]["execStart"]["content"],
        format!(
            "SCRIPT nixrun-container-net-start: exec {start} \
             '--network-veth-extra=ve2' '--network-veth-extra=ve3'\n"
        )
    );
    // NixOS's container-init and postStart are replaced: nixrun configures
    // the main veth; what remains (extra veths) uses replace, not add.
    let init = "/nix/store/stub-nixrun/lib/nixrun/nixrun-container-init";
    for (name, inside) in [
        ("container@", ""),
        ("container@web", ""),
        (
            "container@net",
            "ip link set dev 've2' up\n\
             ip addr replace '10.1.0.2' dev 've2'\n\
             ip -6 addr replace 'fd01::2/64' dev 've2' nodad\n\
             ip route replace '10.1.0.1' dev 've2'\n\
             ip link set dev 've3' up\n",
        ),
    ] {
        let short = name.strip_prefix("container@").unwrap();
        let short = if short.is_empty() { "template" } else { short };
        assert_eq!(
            svc[name]["environment"]["NIXRUN_CONTAINER_INIT"],
            format!(
                "SCRIPT nixrun-container-{short}-init: set -eu\n\
                 export PATH=/nix/store/stub-iproute2/bin${{PATH:+:$PATH}}\n\
                 {inside}\n\
                 exec /nix/store/stub-bash/bin/bash {init} \"$@\"\n"
            ),
            "{name}"
        );
    }
    assert_eq!(svc["container@web"]["postStart"]["priority"], 50);
    assert_eq!(svc["container@web"]["postStart"]["content"], "");
    assert_eq!(
        svc["container@net"]["postStart"]["content"],
        "ip link set dev 've2' up\n\
         ip addr replace '10.1.0.1' dev 've2'\n\
         ip route replace '10.1.0.2' dev 've2'\n\
         ip -6 route replace 'fd01::2/64' dev 've2'\n\
         ip link set dev 've3' master 'br1' up\n"
    );
    assert_eq!(
        svc["nixrun@"]["path"],
        serde_json::json!(["/nix/store/stub-coreutils"])
    );
    assert!(svc["nixrun@"]["execStart"].is_null());

    // privateUsers = "pick" (container net) is supported: no warning.
    let warnings = v["warnings"].as_array().unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(v["packages"], serde_json::json!(["/nix/store/stub-nixrun"]));
    assert_eq!(
        v["systemPackages"],
        serde_json::json!(["/nix/store/stub-nixrun"])
    );

    // Off by default, and nothing when off.
    assert_eq!(v["enableDefault"], false);
    assert_eq!(v["disabled"], serde_json::json!({}));
    // No container units to override where NixOS defines none.
    assert_eq!(v["withoutContainers"], serde_json::json!(["nixrun@"]));
}

#[test]
fn nix_package_builds_both_crates_dynamically() {
    let v = nix_eval_stubs();
    let p = &v["package"];
    assert_eq!(p["pname"], "nixrun");
    assert_eq!(p["version"], package_version());
    assert_eq!(
        p["lockFile"],
        repo().join("Cargo.lock").display().to_string()
    );
    assert_eq!(p["postPatch"], "rm .cargo/config.toml\n");
    assert_eq!(
        p["cargoBuildFlags"],
        serde_json::json!(["--package", "nixrun", "--package", "nixrun-gendoc"])
    );
    assert_eq!(p["keepsSrc"], true);
    assert_eq!(p["keepsTarget"], false);
    assert_eq!(p["mainProgram"], "nixrun");
    let post = p["postInstall"].as_str().unwrap();
    for part in [
        "$out/lib/nixrun/nixrun-container-start",
        "$out/lib/nixrun/nixrun-container-init",
        "$out/lib/systemd/system/nixrun@.service",
        "--replace-fail /usr/lib/nixrun/ $out/lib/nixrun/",
        "--replace-fail /usr/bin/ $out/bin/",
        "nixrun-gendoc gendoc",
        "installManPage gendoc/man1/*.1",
        "rm $out/bin/nixrun-gendoc",
    ] {
        assert!(post.contains(part), "postInstall lacks {part}:\n{post}");
    }
    // What the package substitutes is in the unit.
    let unit = fs::read_to_string(repo().join("packaging/nixrun@.service")).unwrap();
    assert!(unit.contains("/usr/lib/nixrun/") && unit.contains("/usr/bin/"));
}

/// The version in Cargo.toml's [package], without a TOML parser.
fn package_version() -> String {
    let text = fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let line = text
        .lines()
        .skip_while(|l| l.trim() != "[package]")
        .find(|l| l.starts_with("version"))
        .expect("no version in [package]");
    line.split('"').nth(1).unwrap().to_string()
}
