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
        /// The machine's name (see `list`)
        name: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a machine (all its namespaces, its root, its capability
    /// bounding set and system call filter); its exit status is passed back
    Exec {
        /// The machine's name
        name: String,
        /// The command and its arguments (after --)
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Open a login shell in a machine on a new pty
    Shell {
        /// The machine's name
        name: String,
        /// The guest user to log in as (a name or uid of its /etc/passwd) [default: root]
        user: Option<String>,
    },
    /// Shut a machine down cleanly and wait for its supervisor to exit
    Stop {
        /// The machine's name
        name: String,
        /// Seconds to wait before killing it
        #[arg(long, default_value_t = 90)]
        timeout: u64,
    },
    /// Ask the guest's init to power off
    Poweroff {
        /// The machine's name
        name: String,
    },
    /// Ask the guest's init to reboot
    Reboot {
        /// The machine's name
        name: String,
    },
    /// Send a signal to the guest's init [default: SIGTERM]
    Kill {
        /// The machine's name
        name: String,
        /// A signal name or number (SIGTERM, TERM, 15, SIGRTMIN+3)
        signal: Option<String>,
    },
    /// Apply the guest's NixOS configuration again (switch-to-configuration test)
    Reload {
        /// The machine's name
        name: String,
    },
}

/// The clap command, for completions and man pages.
pub fn command() -> clap::Command {
    Cli::command()
}
