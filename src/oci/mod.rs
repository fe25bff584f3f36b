//! The OCI runtime front end (`nixrun-oci`): runc's command line, so that
//! containerd, CRI-O, podman and the runtime-tools suite can drive nixrun.
//! docs/oci.md tells the design: how a runtime that exits after `create`
//! uses the core, and where nixrun's wall differs from the spec's.
//!
//! - `cli`: the command line; `state`: the state directory between calls;
//! - `create` (runtime side) and `init` (the container's init-to-be);
//! - `process`: becoming config.json's process (init and exec);
//! - `seccomp`: the spec's profile compiled; `cgroups`: cgroupsPath and
//!   resources; `hooks`; `ops`: the other lifecycle commands; `exec`;
//! - `interface`: nixrun's container interface for booted guests.

pub mod cgroups;
pub mod cli;
pub mod create;
pub mod exec;
pub mod hooks;
pub mod init;
pub mod interface;
pub mod ops;
pub mod process;
pub mod seccomp;
pub mod state;

use clap::Parser;
use std::io::Write;
use std::path::PathBuf;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The global options every command sees.
pub struct Global {
    pub root: PathBuf,
    pub log: Option<PathBuf>,
    pub json: bool,
    pub debug: bool,
    pub systemd_cgroup: bool,
}

impl Global {
    fn log_line(&self, level: &str, msg: &str) {
        let Some(p) = &self.log else { return };
        let line = if self.json {
            serde_json::json!({"level": level, "msg": msg, "time": state::rfc3339_now()})
                .to_string()
        } else {
            format!(
                "time=\"{}\" level={level} msg={msg:?}",
                state::rfc3339_now()
            )
        };
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            let _ = writeln!(f, "{line}");
        }
    }

    /// One line on stderr (and in the log): the failure the caller reports.
    pub fn error(&self, msg: &str) {
        self.log_line("error", msg);
        eprintln!("nixrun-oci: {msg}");
    }

    /// With --debug, a progress line: in the log if there is one (containerd
    /// and conmon show it from there), else on stderr, as runc does.
    pub fn debug(&self, msg: &str) {
        if !self.debug {
            return;
        }
        if self.log.is_some() {
            self.log_line("debug", msg);
        } else {
            eprintln!("nixrun-oci: debug: {msg}");
        }
    }

    pub fn warn(&self, msg: &str) {
        self.log_line("warning", msg);
        eprintln!("nixrun-oci: warning: {msg}");
    }
}

pub fn main() -> u8 {
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), clap::error::ErrorKind::DisplayHelp) => {
            let _ = e.print();
            return 0;
        }
        Err(e) => {
            // One line: clap's message up to its usage, its lines joined
            // ("the following required arguments were not provided: <ID>").
            let msg = e.to_string();
            let line = msg
                .lines()
                .take_while(|l| !l.starts_with("Usage:"))
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let line = line.trim_start_matches("error: ");
            eprintln!(
                "nixrun-oci: {}",
                if line.is_empty() {
                    "invalid arguments"
                } else {
                    line
                }
            );
            return 1;
        }
    };
    let g = Global {
        root: cli.root.clone(),
        log: cli.log.clone(),
        json: cli.log_format == "json",
        debug: cli.debug,
        systemd_cgroup: cli.systemd_cgroup,
    };
    if cli.version {
        // go-runc reads "runc version X", "commit: ...", "spec: ...".
        println!("runc version {VERSION}");
        println!("commit: nixrun-oci {VERSION}");
        println!("spec: {}", state::OCI_VERSION);
        return 0;
    }
    if cli.log_format != "json" && cli.log_format != "text" {
        g.error(&format!(
            "invalid --log-format {:?}: text or json",
            cli.log_format
        ));
        return 1;
    }
    let Some(cmd) = cli.command else {
        g.error(
            "no command given (create, start, state, kill, delete, run, exec, list, ps, features)",
        );
        return 1;
    };
    if !matches!(cmd, cli::Command::Features) && !nix::unistd::geteuid().is_root() {
        g.error("must be run as root");
        return 1;
    }
    g.debug(&std::env::args().skip(1).collect::<Vec<_>>().join(" "));
    let r: Result<i32, String> = match cmd {
        cli::Command::Create(c) => create::create(&g, &c).map(|_| 0),
        cli::Command::Start(i) => ops::start(&g, &i.id).map(|_| 0),
        cli::Command::State(i) => ops::state(&g, &i.id).map(|_| 0),
        cli::Command::Kill(k) => ops::kill(&g, &k).map(|_| 0),
        cli::Command::Delete(d) => ops::delete(&g, &d).map(|_| 0),
        cli::Command::Run(r) => ops::run(&g, &r),
        cli::Command::Exec(e) => exec::exec(&g, &e),
        cli::Command::List(l) => ops::list(&g, &l).map(|_| 0),
        cli::Command::Ps(p) => ops::ps(&g, &p).map(|_| 0),
        cli::Command::Features => ops::features().map(|_| 0),
        cli::Command::Other(args) => Err(format!(
            "{}: not supported by nixrun-oci (docs/oci.md lists the commands)",
            args.first().map(String::as_str).unwrap_or("")
        )),
    };
    if let Ok(code) = r {
        g.debug(&format!("done, exit status {code}"));
    }
    match r {
        Ok(code) => code.clamp(0, 255) as u8,
        Err(e) => {
            g.error(&e);
            1
        }
    }
}
