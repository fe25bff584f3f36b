//! Command line, in systemd-nspawn's spelling.
//!
//! NixOS's `container@.service` builds an nspawn command line and passes
//! `$EXTRA_NSPAWN_FLAGS` through unparsed, so nixrun accepts nspawn's flag names
//! verbatim. nspawn flags that nixrun does not implement yet are still known
//! here, so that they fail with "not supported yet" instead of being mistaken
//! for a typo or, worse, silently ignored.

use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory, FromArgMatches, Parser};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Parser, Debug, Default)]
#[command(
    name = "nixrun",
    version,
    about = "Boot a whole OS (systemd) or run a command in a container; a drop-in for systemd-nspawn",
    after_help = "SIGTERM/SIGINT ask the guest to shut down (--kill-signal); a second one kills it.\n\
                  Exit status: the guest's exit status; 0 after poweroff/halt; 133 after a guest\n\
                  reboot with --keep-unit (without it, nixrun boots the guest again itself)."
)]
pub struct Cli {
    /// Root directory of the container (nspawn: -D/--directory)
    #[arg(
        short = 'D',
        long = "directory",
        visible_alias = "root",
        value_name = "PATH"
    )]
    pub directory: Option<PathBuf>,

    /// Machine name; also the default hostname [default: base name of the root directory]
    #[arg(short = 'M', long = "machine", value_name = "NAME")]
    pub machine: Option<String>,

    /// Hostname inside the container [default: the machine name]
    #[arg(long = "hostname", value_name = "NAME")]
    pub hostname: Option<String>,

    /// Container UUID, passed as $container_uuid (used when /etc/machine-id is empty)
    #[arg(long = "uuid", value_name = "UUID")]
    pub uuid: Option<String>,

    /// Boot the guest's init (/usr/lib/systemd/systemd, /lib/systemd/systemd or /sbin/init);
    /// positional arguments are passed to it
    #[arg(short = 'b', long = "boot")]
    pub boot: bool,

    /// Bind-mount a host path into the container: SRC[:DST[:rbind|norbind]]
    /// (SRC starting with + is relative to the container root)
    #[arg(long = "bind", value_name = "SRC[:DST[:OPTS]]")]
    pub bind: Vec<String>,

    /// Like --bind, but read-only (recursively)
    #[arg(long = "bind-ro", value_name = "SRC[:DST[:OPTS]]")]
    pub bind_ro: Vec<String>,

    /// Mount a tmpfs at PATH inside the container (default options: mode=0755)
    #[arg(long = "tmpfs", value_name = "PATH[:OPTS]")]
    pub tmpfs: Vec<String>,

    /// Run on a throw-away copy of the root (an overlay with a tmpfs upper layer),
    /// gone when nixrun exits, however it exits
    #[arg(short = 'x', long = "ephemeral")]
    pub ephemeral: bool,

    /// yes: a tmpfs root with the tree's /usr read-only; state: the tree read-only
    /// with a tmpfs on /var; overlay: the tree under a tmpfs overlay; no
    #[arg(
        long = "volatile",
        value_name = "MODE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "yes"
    )]
    pub volatile: Option<String>,

    /// Mount the container's root (and what is mounted below it) read-only
    #[arg(long = "read-only")]
    pub read_only: bool,

    /// Mount an overlay: [LOWER...:]UPPER:DEST, or LOWER:UPPER (also the destination);
    /// paths starting with + are in the container root; an empty UPPER is a tmpfs
    #[arg(long = "overlay", value_name = "LOWER:[UPPER]:DEST")]
    pub overlay: Vec<String>,

    /// Like --overlay, read-only
    #[arg(long = "overlay-ro", value_name = "LOWER:[UPPER]:DEST")]
    pub overlay_ro: Vec<String>,

    /// Hide PATH in the container under an empty, read-only node of its type
    #[arg(long = "inaccessible", value_name = "PATH")]
    pub inaccessible: Vec<String>,

    /// Set an environment variable for the container's PID 1 (NAME alone copies nixrun's value)
    #[arg(short = 'E', long = "setenv", value_name = "NAME=VALUE")]
    pub setenv: Vec<String>,

    /// Run inside the caller's cgroup (the systemd unit's): the guest goes to <cgroup>/payload,
    /// nixrun to <cgroup>/supervisor; a guest reboot makes nixrun exit 133
    #[arg(long = "keep-unit")]
    pub keep_unit: bool,

    /// Register with systemd-machined: yes (a failure is fatal), no, or auto (the
    /// default: register where machined runs, else say so once and go on)
    #[arg(long = "register", value_name = "yes|no|auto")]
    pub register: Option<String>,

    /// yes: report READY=1 to $NOTIFY_SOCKET when the guest does; no: as soon as its init runs
    #[arg(long = "notify-ready", value_name = "BOOL")]
    pub notify_ready: Option<String>,

    /// Signal sent to the guest's PID 1 on SIGTERM/SIGINT [default: SIGRTMIN+3 with --boot,
    /// otherwise the guest is killed]
    #[arg(long = "kill-signal", value_name = "SIGNAL")]
    pub kill_signal: Option<String>,

    /// Link the guest's journal into the host's /var/log/journal: no, auto, guest, try-guest
    #[arg(long = "link-journal", value_name = "MODE")]
    pub link_journal: Option<String>,

    /// Same as --link-journal=try-guest
    #[arg(short = 'j')]
    pub link_journal_try_guest: bool,

    /// Console: interactive (default on a tty), read-only (default otherwise), passive, pipe
    #[arg(long = "console", value_name = "MODE")]
    pub console: Option<String>,

    /// Same as --console=pipe
    #[arg(short = 'P', long = "pipe")]
    pub pipe: bool,

    /// Keep these capabilities too (comma-separated, e.g. CAP_NET_ADMIN; "all")
    #[arg(long = "capability", value_name = "CAPS")]
    pub capability: Vec<String>,

    /// Drop these capabilities from the default set (comma-separated; "all")
    #[arg(long = "drop-capability", value_name = "CAPS")]
    pub drop_capability: Vec<String>,

    /// Allow these system calls or groups (space-separated, e.g. "@keyring bpf");
    /// prefixed with ~, deny them instead
    #[arg(long = "system-call-filter", value_name = "[~]CALLS")]
    pub system_call_filter: Vec<String>,

    /// Give the container a network namespace of its own, with only a loopback device
    #[arg(long = "private-network")]
    pub private_network: bool,

    /// A veth pair: ve-NAME on the host, host0 in the container (implies --private-network)
    #[arg(short = 'n', long = "network-veth")]
    pub network_veth: bool,

    /// Like --network-veth, with the host side (vb-NAME) added to this existing bridge
    #[arg(long = "network-bridge", value_name = "BRIDGE")]
    pub network_bridge: Option<String>,

    /// Like --network-bridge, with the bridge vz-ZONE made on demand and removed with its last member
    #[arg(long = "network-zone", value_name = "ZONE")]
    pub network_zone: Option<String>,

    /// Another veth pair, named HOST on the host and CONT (default HOST) in the container
    #[arg(long = "network-veth-extra", value_name = "HOST[:CONT]")]
    pub network_veth_extra: Vec<String>,

    /// Move host interfaces into the container (renamed to CONT), and back at the end
    #[arg(long = "network-interface", value_name = "HOST[:CONT]")]
    pub network_interface: Vec<String>,

    /// A macvlan link on a host interface, named CONT (default mv-HOST) in the container
    #[arg(long = "network-macvlan", value_name = "HOST[:CONT]")]
    pub network_macvlan: Vec<String>,

    /// An ipvlan link on a host interface, named CONT (default iv-HOST) in the container
    #[arg(long = "network-ipvlan", value_name = "HOST[:CONT]")]
    pub network_ipvlan: Vec<String>,

    /// Run in this existing network namespace (e.g. /run/netns/NAME)
    #[arg(long = "network-namespace-path", value_name = "PATH")]
    pub network_namespace_path: Option<PathBuf>,

    /// Forward a host port to the container: [tcp:|udp:]HOST[:CONT] (needs a private network)
    #[arg(short = 'p', long = "port", value_name = "[PROTO:]HOST[:CONT]")]
    pub port: Vec<String>,

    /// nixrun: an address (ADDR[/PREFIX]) for the host side of the veth, configured with a
    /// route to the --local-address before the guest's init runs (NixOS's hostAddress)
    #[arg(long = "host-address", value_name = "ADDR[/PREFIX]")]
    pub host_address: Vec<String>,

    /// nixrun: an address for host0, with routes to the --host-address and a default route
    /// via it, configured before the guest's init runs (NixOS's localAddress)
    #[arg(long = "local-address", value_name = "ADDR[/PREFIX]")]
    pub local_address: Vec<String>,

    /// Set a property of the container's cgroup: TasksMax=N|infinity (default 16384)
    #[arg(long = "property", value_name = "NAME=VALUE")]
    pub property: Vec<String>,

    /// A user namespace with a free 64K range, locked while the guest runs
    /// (--private-users=pick)
    #[arg(short = 'U')]
    pub pick_users: bool,

    /// User namespace: no, yes (range from the root directory's owner), pick,
    /// identity, or BASE[:RANGE]
    #[arg(
        long = "private-users",
        value_name = "MODE",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "yes",
        action = ArgAction::Append
    )]
    pub private_users: Vec<String>,

    /// Ownership of the root's files in the user namespace: off, chown, map (ID-mapped
    /// mount) or auto [default: auto with pick, else off]
    #[arg(long = "private-users-ownership", value_name = "MODE")]
    pub private_users_ownership: Option<String>,

    /// Same as --private-users-ownership=chown
    #[arg(long = "private-users-chown")]
    pub private_users_chown: bool,

    /// Do not print nixrun's own status messages
    #[arg(short = 'q', long = "quiet")]
    pub quiet: bool,

    /// Command to run as the container's PID 1, with its arguments (with --boot: arguments for init)
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    pub command: Vec<String>,
}

/// How an nspawn flag that nixrun does not implement takes its value, so that clap
/// can consume it and we can name it in the error.
#[derive(Clone, Copy)]
enum Takes {
    Nothing,
    Value,
}

/// nspawn (v252–v257) options nixrun does not implement yet: (long name, short, value).
const UNSUPPORTED: &[(&str, Option<char>, Takes)] = &[
    ("template", None, Takes::Value),
    ("image", Some('i'), Takes::Value),
    ("image-policy", None, Takes::Value),
    ("oci-bundle", None, Takes::Value),
    ("as-pid2", Some('a'), Takes::Nothing),
    ("chdir", None, Takes::Value),
    ("pivot-root", None, Takes::Value),
    ("user", Some('u'), Takes::Value),
    ("slice", Some('S'), Takes::Value),
    ("ambient-capability", None, Takes::Value),
    ("no-new-privileges", None, Takes::Value),
    ("rlimit", None, Takes::Value),
    ("oom-score-adjust", None, Takes::Value),
    ("cpu-affinity", None, Takes::Value),
    ("personality", None, Takes::Value),
    ("resolv-conf", None, Takes::Value),
    ("timezone", None, Takes::Value),
    ("bind-user", None, Takes::Value),
    ("load-credential", None, Takes::Value),
    ("set-credential", None, Takes::Value),
    ("settings", None, Takes::Value),
    ("selinux-context", Some('Z'), Takes::Value),
    ("selinux-apifs-context", Some('L'), Takes::Value),
    ("suppress-sync", None, Takes::Value),
    ("root-hash", None, Takes::Value),
    ("root-hash-sig", None, Takes::Value),
    ("verity-data", None, Takes::Value),
    ("no-pager", None, Takes::Nothing),
    ("no-ask-password", None, Takes::Nothing),
];

/// A command line error worth one line, or a request for help/version text.
#[derive(Debug)]
pub enum CliError {
    /// --help / --version: print this to stdout and exit 0.
    Display(String),
    /// One line describing what is wrong.
    Usage(String),
}

/// The clap command with the unsupported nspawn flags (hidden) added: what
/// parsing uses, and what completions and man pages are generated from.
pub fn command() -> Command {
    let mut cmd = Cli::command();
    for &(long, short, takes) in UNSUPPORTED {
        let mut arg = Arg::new(long).long(long).hide(true);
        if let Some(s) = short {
            arg = arg.short(s);
        }
        arg = match takes {
            Takes::Nothing => arg.action(ArgAction::SetTrue),
            Takes::Value => arg.action(ArgAction::Append).num_args(1),
        };
        cmd = cmd.arg(arg);
    }
    cmd
}

fn unsupported_given(m: &ArgMatches) -> Option<&'static str> {
    UNSUPPORTED.iter().find_map(|&(long, _, takes)| {
        let given = match takes {
            Takes::Nothing => m.get_flag(long),
            _ => m.contains_id(long) && m.value_source(long).is_some(),
        };
        given.then_some(long)
    })
}

/// `-U` and `--private-users=` set the same thing; as in nspawn, whichever
/// comes last on the command line counts. The result is in `private_users`
/// (its last value), `-U` standing for "pick".
fn last_private_users(m: &ArgMatches, cli: &mut Cli) {
    let pick_at = m
        .indices_of("pick_users")
        .and_then(|mut i| i.next_back())
        .filter(|_| cli.pick_users);
    let value_at = m
        .indices_of("private_users")
        .and_then(|mut i| i.next_back());
    if let Some(p) = pick_at {
        if value_at.map_or(true, |v| v < p) {
            cli.private_users.push("pick".into());
        }
    }
}

/// Parses nixrun's arguments (without argv[0] handling: pass the full argv).
pub fn parse<I, T>(args: I) -> Result<Cli, CliError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command().try_get_matches_from(args).map_err(|e| {
        use clap::error::ErrorKind;
        match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => CliError::Display(e.to_string()),
            _ => CliError::Usage(one_line(&e.to_string())),
        }
    })?;
    if let Some(flag) = unsupported_given(&matches) {
        return Err(CliError::Usage(format!(
            "--{flag} is not supported yet by nixrun"
        )));
    }
    let mut cli =
        Cli::from_arg_matches(&matches).map_err(|e| CliError::Usage(one_line(&e.to_string())))?;
    last_private_users(&matches, &mut cli);
    Ok(cli)
}

/// clap renders multi-line errors with usage hints; keep only the statement itself.
fn one_line(rendered: &str) -> String {
    let first = rendered.lines().next().unwrap_or("invalid arguments");
    first.trim_start_matches("error: ").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(args: &[&str]) -> Cli {
        let mut v = vec!["nixrun"];
        v.extend_from_slice(args);
        match parse(v) {
            Ok(c) => c,
            Err(e) => panic!("{args:?}: {e:?}"),
        }
    }

    fn usage(args: &[&str]) -> String {
        let mut v = vec!["nixrun"];
        v.extend_from_slice(args);
        match parse(v) {
            Err(CliError::Usage(s)) => s,
            other => panic!("{args:?}: expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn nixos_container_command_line_parses() {
        // The shape of the ExecStart of NixOS's container@.service.
        let c = ok(&[
            "--keep-unit",
            "-M",
            "foo",
            "-D",
            "/var/lib/nixos-containers/foo",
            "--notify-ready=yes",
            "--kill-signal=SIGRTMIN+3",
            "--bind-ro=/nix/store:/nix/store",
            "--bind-ro=/nix/var/nix/db:/nix/var/nix/db",
            "--bind=/nix/var/nix/profiles/per-container/foo:/nix/var/nix/profiles",
            "--link-journal=try-guest",
            "--setenv",
            "PRIVATE_NETWORK=",
            "--setenv",
            "PATH=/bin",
            "/nix/store/abc-container-init",
            "/nix/var/nix/profiles/system/init",
        ]);
        assert!(c.keep_unit);
        assert_eq!(c.machine.as_deref(), Some("foo"));
        assert_eq!(c.bind_ro.len(), 2);
        assert_eq!(c.bind.len(), 1);
        assert_eq!(c.setenv, vec!["PRIVATE_NETWORK=", "PATH=/bin"]);
        assert_eq!(
            c.command,
            vec![
                "/nix/store/abc-container-init",
                "/nix/var/nix/profiles/system/init"
            ]
        );
    }

    #[test]
    fn root_is_an_alias_of_directory() {
        let c = ok(&["--root", "/var/lib/containers/foo"]);
        assert_eq!(c.directory, Some(PathBuf::from("/var/lib/containers/foo")));
    }

    #[test]
    fn command_arguments_are_not_taken_as_options() {
        let c = ok(&["-D", "/r", "/bin/sh", "-c", "exit 7", "--boot"]);
        assert!(!c.boot);
        assert_eq!(c.command, vec!["/bin/sh", "-c", "exit 7", "--boot"]);
    }

    #[test]
    fn unsupported_nspawn_flags_are_named() {
        assert_eq!(
            usage(&["-D", "/r", "--template=/t", "-b"]),
            "--template is not supported yet by nixrun"
        );
        assert_eq!(
            usage(&["-D", "/r", "--image", "/a.raw", "-b"]),
            "--image is not supported yet by nixrun"
        );
    }

    #[test]
    fn the_last_user_namespace_flag_counts() {
        let last = |args: &[&str]| ok(args).private_users.last().cloned();
        assert_eq!(last(&["-D", "/r", "-b"]), None);
        assert_eq!(last(&["-D", "/r", "-U", "-b"]).as_deref(), Some("pick"));
        assert_eq!(
            last(&["-D", "/r", "--private-users", "-b"]).as_deref(),
            Some("yes")
        );
        assert_eq!(
            last(&["-D", "/r", "--private-users=no", "--private-users=pick"]).as_deref(),
            Some("pick")
        );
        assert_eq!(
            last(&["-D", "/r", "-U", "--private-users=no"]).as_deref(),
            Some("no")
        );
        assert_eq!(
            last(&["-D", "/r", "--private-users=no", "-U"]).as_deref(),
            Some("pick")
        );
        let c = ok(&[
            "-D",
            "/r",
            "--private-users-ownership=chown",
            "--private-users-chown",
        ]);
        assert_eq!(c.private_users_ownership.as_deref(), Some("chown"));
        assert!(c.private_users_chown);
    }

    #[test]
    fn throw_away_root_flags_parse_as_nspawn_spells_them() {
        let c = ok(&["-D", "/r", "-x", "--read-only", "-b"]);
        assert!(c.ephemeral && c.read_only);
        // A bare --volatile is yes; its value must be attached with =.
        assert_eq!(
            ok(&["-D", "/r", "--volatile", "-b"]).volatile.as_deref(),
            Some("yes")
        );
        assert_eq!(
            ok(&["-D", "/r", "--volatile=state", "-b"])
                .volatile
                .as_deref(),
            Some("state")
        );
        let c = ok(&["-D", "/r", "--volatile", "/bin/sh"]);
        assert_eq!(c.volatile.as_deref(), Some("yes"));
        assert_eq!(c.command, vec!["/bin/sh"]);
        let c = ok(&[
            "-D",
            "/r",
            "--overlay=/a:/b:/c",
            "--overlay-ro",
            "+/x::/y",
            "--inaccessible=/etc/z",
            "-b",
        ]);
        assert_eq!(c.overlay, vec!["/a:/b:/c"]);
        assert_eq!(c.overlay_ro, vec!["+/x::/y"]);
        assert_eq!(c.inaccessible, vec!["/etc/z"]);
    }

    #[test]
    fn unknown_flags_get_one_line() {
        let msg = usage(&["-D", "/r", "--frobnicate"]);
        assert!(!msg.contains('\n'));
        assert!(msg.contains("--frobnicate"), "{msg}");
    }

    #[test]
    fn help_mentions_every_supported_flag() {
        let help = match parse(["nixrun", "--help"]) {
            Err(CliError::Display(h)) => h,
            other => panic!("{other:?}"),
        };
        for flag in [
            "--directory",
            "--machine",
            "--boot",
            "--bind",
            "--bind-ro",
            "--tmpfs",
            "--setenv",
            "--hostname",
            "--uuid",
            "--keep-unit",
            "--register",
            "--notify-ready",
            "--kill-signal",
            "--link-journal",
            "--console",
            "--quiet",
        ] {
            assert!(help.contains(flag), "help lacks {flag}");
        }
        assert!(help.contains("--system-call-filter") && help.contains("--drop-capability"));
        assert!(help.contains("--private-network") && help.contains("--network-zone"));
        assert!(help.contains("--ephemeral") && help.contains("--volatile"));
        assert!(help.contains("--overlay-ro") && help.contains("--inaccessible"));
        assert!(!help.contains("--template"));
    }
}
