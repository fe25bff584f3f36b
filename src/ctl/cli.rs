//! nixrunctl's command line.

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "nixrunctl",
    version,
    about = "Find, enter and manage machines running under nixrun"
)]
pub struct Cli {
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// List the running machines
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show one machine
    Status {
        name: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a machine (all its namespaces, its root, its capability
    /// bounding set and system call filter); its exit status is passed back
    Exec {
        name: String,
        /// The command and its arguments (after --)
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Open a login shell in a machine on a new pty
    Shell { name: String, user: Option<String> },
    /// Shut a machine down cleanly and wait for its supervisor to exit
    Stop {
        name: String,
        /// Seconds to wait before killing it
        #[arg(long, default_value_t = 90)]
        timeout: u64,
    },
    /// Ask the guest's init to power off
    Poweroff { name: String },
    /// Ask the guest's init to reboot
    Reboot { name: String },
    /// Send a signal to the guest's init [default: SIGTERM]
    Kill {
        name: String,
        signal: Option<String>,
    },
    /// Apply the guest's NixOS configuration again (switch-to-configuration test)
    Reload { name: String },
}

/// The clap command, for completions and man pages.
pub fn command() -> clap::Command {
    Cli::command()
}
