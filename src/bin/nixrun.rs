//! nixrun: the nspawn-compatible front end. Parses systemd-nspawn's command
//! line into a plan and hands it to the supervisor; every error ends as one line
//! on stderr and a non-zero exit.

#![no_main]

use nixrun::nspawn::{self, cli};
use std::io::IsTerminal;

nixrun::entry_point!(run);

fn run() -> u8 {
    nixrun::phase::init();
    nixrun::phase::mark("main");
    if let Err(e) = nixrun::supervisor::block_signals() {
        return fail(&e.to_string());
    }
    let cli = match cli::parse(std::env::args_os()) {
        Ok(c) => c,
        Err(cli::CliError::Display(text)) => {
            print!("{text}");
            return 0;
        }
        Err(cli::CliError::Usage(msg)) => return fail(&msg),
    };
    // Checked before anything else so that a non-root user gets this one reason,
    // not an EPERM from the first mount.
    if !nix::unistd::geteuid().is_root() {
        return fail("must be run as root (it creates namespaces, mounts and cgroups)");
    }
    let plan = match nspawn::plan(
        cli,
        std::io::stdin().is_terminal(),
        std::io::stdout().is_terminal(),
    ) {
        Ok(p) => p,
        Err(e) => return fail(&e.to_string()),
    };
    nixrun::phase::mark("plan");
    match nixrun::supervisor::run(&plan) {
        Ok(code) => code.clamp(0, 255) as u8,
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(msg: &str) -> u8 {
    eprintln!("nixrun: {msg}");
    1
}
