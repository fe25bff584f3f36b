//! The OCI runtime command line, in runc's spelling: the global flags engines
//! pass (containerd's shim, conmon, podman, runtime-tools) and the commands
//! of the runtime-spec's lifecycle plus the ones engines call besides.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Where state lives unless --root says otherwise; engines always say.
pub const DEFAULT_ROOT: &str = "/run/nixrun-oci";

#[derive(Debug, Parser)]
#[command(
    name = "nixrun-oci",
    about = "nixrun's OCI runtime: runc's command line over nixrun's core",
    disable_version_flag = true,
    disable_help_subcommand = true
)]
pub struct Cli {
    /// Directory for the state of containers.
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
    /// Also write errors (and with --debug, progress) to this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// text or json (JSON lines as runc writes them; containerd reads those).
    #[arg(long = "log-format", global = true, default_value = "text")]
    pub log_format: String,
    #[arg(long, global = true)]
    pub debug: bool,
    /// cgroupsPath is systemd's "slice:prefix:name"; see docs/oci.md.
    #[arg(long = "systemd-cgroup", global = true)]
    pub systemd_cgroup: bool,
    /// Accepted for the shim's sake; only root is supported.
    #[arg(long, global = true, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub rootless: Option<String>,
    /// runc's version lines (go-runc parses the first).
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a container from a bundle; its process waits for `start`.
    Create(Create),
    /// Run the process of a created container.
    Start(Id),
    /// The state of a container, as JSON.
    State(Id),
    /// Send a signal to a container's init (or with --all, to every process).
    Kill(Kill),
    /// Remove a stopped container (with --force, any).
    Delete(Delete),
    /// Create, start, wait and delete a container.
    Run(Run),
    /// Run a process in a running container.
    Exec(Exec),
    /// The containers under --root.
    List(List),
    /// The processes of a container.
    Ps(Ps),
    /// What this runtime supports, as JSON (runtime-spec features.md).
    Features,
    #[command(external_subcommand)]
    Other(Vec<String>),
}

#[derive(Debug, Args)]
pub struct Id {
    pub id: String,
}

#[derive(Debug, Args, Clone)]
pub struct Create {
    /// The bundle directory (config.json and, usually, the root).
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Where to send the pty master when process.terminal is set.
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    #[arg(long = "pid-file", value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    /// chroot instead of pivot_root (for roots on ramfs).
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Keep the caller's session keyring (the default gives a new one).
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass this many fds after stdio to the container's process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Accepted (containerd passes it); a pidfd is not sent.
    #[arg(long = "pidfd-socket", value_name = "PATH", hide = true)]
    pub pidfd_socket: Option<PathBuf>,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct Run {
    #[command(flatten)]
    pub create: Create,
    /// Return after start instead of waiting for the container.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep the container's state after it exits.
    #[arg(long)]
    pub keep: bool,
}

#[derive(Debug, Args)]
pub struct Kill {
    #[arg(short = 'a', long)]
    pub all: bool,
    pub id: String,
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(Debug, Args)]
pub struct Delete {
    #[arg(short = 'f', long)]
    pub force: bool,
    pub id: String,
}

#[derive(Debug, Args)]
pub struct Exec {
    /// The process as runtime-spec JSON (config.json's "process").
    #[arg(short = 'p', long, value_name = "FILE")]
    pub process: Option<PathBuf>,
    #[arg(short = 'd', long)]
    pub detach: bool,
    #[arg(long = "pid-file", value_name = "PATH")]
    pub pid_file: Option<PathBuf>,
    #[arg(long = "console-socket", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    #[arg(short = 't', long)]
    pub tty: bool,
    #[arg(long)]
    pub cwd: Option<String>,
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    #[arg(short = 'u', long, value_name = "UID[:GID]")]
    pub user: Option<String>,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    #[arg(long = "pidfd-socket", value_name = "PATH", hide = true)]
    pub pidfd_socket: Option<PathBuf>,
    pub id: String,
    /// The command, when there is no --process.
    #[arg(trailing_var_arg = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct List {
    #[arg(short = 'f', long, default_value = "table")]
    pub format: String,
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct Ps {
    #[arg(short = 'f', long, default_value = "table")]
    pub format: String,
    pub id: String,
}
