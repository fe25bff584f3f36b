//! Network namespaces of a test's own, to run nixrun in as its "host" (never
//! the machine's own network), with the helpers the network tests share.

use super::{probe_binary, require_tool, NIXRUN};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

/// A network namespace of the test's own, removed (with what is in it) on drop.
pub struct Netns {
    pub name: String,
}

static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        require_tool("ip", "iproute2");
        require_tool("nsenter", "util-linux");
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("nrt-{tag}-{}-{n}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name} failed");
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// `ip ARGS` in this namespace; panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = self.run("ip", args);
        assert!(
            out.status.success(),
            "ip {args:?} in {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn run(&self, prog: &str, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.path().display()))
            .arg(prog)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("nsenter")
    }

    /// nixrun inside this namespace (nsenter --net: `ip netns exec` would
    /// remount /sys and hide /sys/fs/cgroup).
    pub fn nixrun(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg(&*NIXRUN)
            .args(args);
        c
    }

    /// The probe, run in this namespace (it is static, so it runs on the host
    /// as well): with `listen`, a listener standing in for a service on the
    /// host side, returned once it listens.
    pub fn probe(&self, args: &[&str]) -> ProbeChild {
        let mut c = Command::new("nsenter")
            .arg(format!("--net={}", self.path().display()))
            .arg(probe_binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the probe");
        if args.first() == Some(&"listen") {
            use std::io::BufRead;
            let mut line = String::new();
            let mut r = std::io::BufReader::new(c.stdout.as_mut().unwrap());
            r.read_line(&mut line).unwrap();
            assert_eq!(line.trim(), "listening", "the listener did not start");
        }
        ProbeChild(c)
    }

    pub fn links(&self) -> Vec<String> {
        self.ip(&["-o", "link", "show"])
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap().to_string())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A probe process of the test, killed when the test is done with it (or
/// fails): a listener left behind would keep the test's output pipe open.
pub struct ProbeChild(pub Child);

impl std::ops::Deref for ProbeChild {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ProbeChild {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ProbeChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
