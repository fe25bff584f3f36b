//! nixrunctl: find, enter and manage running machines (machinectl's job,
//! without needing systemd-machined), from the runtime state the supervisors
//! publish (state.rs).
//!
//! - `cli`: the command line;
//! - `output`: `list` and `status`, as tables, text or JSON;
//! - `control`: the verbs that signal a machine (`stop`, `poweroff`, `reboot`,
//!   `kill`);
//! - `enter`: joining a machine (its cgroups, namespaces, root, seccomp filters
//!   and capabilities), `exec` and `reload`;
//! - `cgroups`: which host directories hold the leader's cgroups;
//! - `shell`: a login shell on a pty of the guest's own, and the relay;
//! - `users`: the guest's /etc/passwd and /etc/group.
//!
//! Every failure is one line on stderr and a non-zero exit status; nothing on
//! the host changes before the machine has been found alive.

pub mod cgroups;
pub mod cli;
pub mod control;
pub mod enter;
pub mod output;
pub mod shell;
pub mod users;

use crate::state::{self, MachineState};
use clap::Parser;
use cli::{Cli, Verb};
use std::path::Path;

/// A failure: the line to print (after "nixrunctl: ") and the exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub line: String,
    pub code: u8,
}

impl Failure {
    pub fn new(line: impl Into<String>) -> Failure {
        Failure {
            line: line.into(),
            code: 1,
        }
    }

    pub fn sys(what: impl std::fmt::Display, e: nix::errno::Errno) -> Failure {
        Failure::new(format!("{what}: {}", e.desc()))
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

/// The exit status a shell would report for a wait status.
pub fn exit_status(ws: nix::sys::wait::WaitStatus) -> Option<u8> {
    use nix::sys::wait::WaitStatus;
    match ws {
        WaitStatus::Exited(_, code) => Some(code as u8),
        WaitStatus::Signaled(_, sig, _) => Some(128u8.wrapping_add(sig as u8)),
        _ => None,
    }
}

/// The program: parse, check, dispatch, report.
pub fn main() -> u8 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match run(cli.verb) {
        Ok(code) => code,
        Err(f) => {
            eprintln!("nixrunctl: {}", f.line);
            f.code
        }
    }
}

/// clap's errors span several lines (the message, the arguments, the usage);
/// nixrunctl's are one, like every other of its failures.
fn usage_error(e: clap::Error) -> u8 {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.exit_code() == 0 { 0 } else { 2 };
    }
    eprintln!(
        "nixrunctl: {} (see nixrunctl --help)",
        one_line(&e.render().to_string())
    );
    2
}

/// The message of a rendered clap error, up to its first blank line, as one line.
pub fn one_line(rendered: &str) -> String {
    let text: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let joined = text.join(" ");
    joined
        .strip_prefix("error: ")
        .unwrap_or(&joined)
        .to_string()
}

pub fn run(verb: Verb) -> Result<u8> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Failure::new(
            "must be run as root (it reads and enters machines of the host's root)",
        ));
    }
    match verb {
        Verb::List { json } => {
            output::list(&state::list(Path::new(state::STATE_DIR)), json);
            Ok(0)
        }
        Verb::Status { name, json } => {
            let st = lookup(&name)?;
            output::status(&st, json)?;
            Ok(0)
        }
        Verb::Exec { name, command } => {
            let st = lookup(&name)?;
            enter::exec(st, &command)
        }
        Verb::Shell { name, user } => {
            let st = lookup(&name)?;
            shell::shell(st, user.as_deref().unwrap_or("root"))
        }
        Verb::Reload { name } => {
            let st = lookup(&name)?;
            enter::reload(st)
        }
        Verb::Stop { name, timeout } => {
            let st = lookup(&name)?;
            control::stop(&st, std::time::Duration::from_secs(timeout))
        }
        Verb::Poweroff { name } => {
            let st = lookup(&name)?;
            control::signal_leader(&st, crate::signal::sigrtmin_plus(4))
        }
        Verb::Reboot { name } => {
            let st = lookup(&name)?;
            control::signal_leader(&st, libc::SIGINT)
        }
        Verb::Kill { name, signal } => {
            // The signal first: a typo must not be found out after the lookup.
            let sig = kill_signal(signal.as_deref())?;
            let st = lookup(&name)?;
            control::signal_leader(&st, sig)
        }
    }
}

/// `kill`'s signal: a name or number as nspawn spells them, SIGTERM by default
/// (as machinectl's).
pub fn kill_signal(arg: Option<&str>) -> Result<i32> {
    match arg {
        None => Ok(libc::SIGTERM),
        Some(s) => crate::signal::parse_signal(s)
            .ok_or_else(|| Failure::new(format!("unknown signal {}", s.escape_debug()))),
    }
}

/// The running machine `name`; a stale entry is dropped on the way.
pub fn lookup(name: &str) -> Result<MachineState> {
    state::read(Path::new(state::STATE_DIR), name)
        .ok_or_else(|| Failure::new(format!("no running machine {}", name.escape_debug())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> std::result::Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("nixrunctl").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line() {
        match parse(&["exec", "web", "--", "ls", "-l", "--", "x"])
            .unwrap()
            .verb
        {
            Verb::Exec { name, command } => {
                assert_eq!(name, "web");
                assert_eq!(command, ["ls", "-l", "--", "x"]);
            }
            v => panic!("{v:?}"),
        }
        match parse(&["kill", "web", "SIGRTMIN+3"]).unwrap().verb {
            Verb::Kill { signal, .. } => assert_eq!(signal.as_deref(), Some("SIGRTMIN+3")),
            v => panic!("{v:?}"),
        }
        match parse(&["stop", "web"]).unwrap().verb {
            Verb::Stop { timeout, .. } => assert_eq!(timeout, 90),
            v => panic!("{v:?}"),
        }
        match parse(&["shell", "web"]).unwrap().verb {
            Verb::Shell { user, .. } => assert_eq!(user, None),
            v => panic!("{v:?}"),
        }
        // exec needs a command, after "--".
        for bad in [
            &["exec", "web"][..],
            &["exec", "web", "--"],
            &["frobnicate"],
        ] {
            let e = parse(bad).unwrap_err();
            let line = one_line(&e.render().to_string());
            assert!(!line.is_empty() && !line.contains('\n'), "{line:?}");
        }
        let e = parse(&["exec", "web"]).unwrap_err();
        assert!(
            one_line(&e.render().to_string()).contains("COMMAND"),
            "{}",
            e.render()
        );
    }

    #[test]
    fn kill_signals() {
        assert_eq!(kill_signal(None), Ok(libc::SIGTERM));
        assert_eq!(kill_signal(Some("SIGRTMIN+3")), Ok(libc::SIGRTMIN() + 3));
        assert_eq!(kill_signal(Some("KILL")), Ok(libc::SIGKILL));
        assert_eq!(kill_signal(Some("9")), Ok(9));
        assert_eq!(
            kill_signal(Some("SIGFOO")).unwrap_err().line,
            "unknown signal SIGFOO"
        );
        assert!(kill_signal(Some("0")).is_err());
    }

    #[test]
    fn wait_statuses_become_shell_exit_statuses() {
        use nix::sys::signal::Signal;
        use nix::sys::wait::WaitStatus;
        let pid = nix::unistd::Pid::from_raw(1);
        assert_eq!(exit_status(WaitStatus::Exited(pid, 5)), Some(5));
        assert_eq!(
            exit_status(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some(137)
        );
        assert_eq!(exit_status(WaitStatus::StillAlive), None);
    }

    #[test]
    fn names_that_are_not_machines_are_refused_without_touching_anything() {
        for bad in ["../../etc/passwd", "..", "", ".#tmp"] {
            let f = lookup(bad).unwrap_err();
            assert!(f.line.starts_with("no running machine"), "{}", f.line);
        }
        assert_eq!(lookup("a\nb").unwrap_err().line, "no running machine a\\nb");
    }
}
