//! nixrun: boot a whole OS (or run one command) in a container, the job
//! systemd-nspawn does behind NixOS's container@.service.
//!
//! Thin on purpose: parse the command line, validate it into a plan, run the
//! supervisor, map the outcome to an exit status. Every error ends as one line
//! on stderr and a non-zero exit.

mod cgroup;
mod channel;
mod cli;
mod console;
mod container;
mod devices;
mod mountguard;
mod notify;
mod plan;
mod signal;
mod supervisor;
mod sys;

use std::io::IsTerminal;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args_os()) {
        Ok(c) => c,
        Err(cli::CliError::Display(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(cli::CliError::Usage(msg)) => return fail(&msg),
    };
    // Checked before anything else so that a non-root user gets this one reason,
    // not an EPERM from the first mount.
    if !nix::unistd::geteuid().is_root() {
        return fail("must be run as root (it creates namespaces, mounts and cgroups)");
    }
    let plan = match plan::Plan::from_cli(
        cli,
        std::io::stdin().is_terminal(),
        std::io::stdout().is_terminal(),
    ) {
        Ok(p) => p,
        Err(e) => return fail(&e.to_string()),
    };
    match supervisor::run(&plan) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("nixrun: {msg}");
    ExitCode::FAILURE
}
