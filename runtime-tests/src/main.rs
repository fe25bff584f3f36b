//! nixrun-probe: run INSIDE a container by nixrun's integration tests.
//!
//! It reports what the guest sees (`facts`) and performs single actions whose
//! outcome the host-side test checks.  Everything it prints is line-oriented
//! (`key=value` or one word) so shell and Rust tests parse it the same way.  It is
//! linked statically because the guests it runs in may have no dynamic loader.
//!
//! Exit codes: 0 on success (also when `write`/`mkdir` report an errno, that is
//! their result, not a probe failure), 1 when an action could not be carried out
//! (or, for `escape`, when any attack was not blocked), 64 for a usage error, N
//! for `exit N`.

mod errno;
mod escape;
mod facts;
mod fstype;
mod net;
mod notify;
mod signals;
mod stress;
mod timing;

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "\
usage: nixrun-probe COMMAND [ARGS]
  facts             print key=value lines describing the environment
  write PATH        create/truncate PATH, write one byte; print ok or the errno name
  mkdir PATH        mkdir PATH; print ok or the errno name
  mount FSTYPE PATH [DATA]
                    mount(2) a new FSTYPE (source FSTYPE) on PATH, nosuid,nodev,noexec;
                    print ok or the errno name (the mount stays)
  exit N            exit with status N
  sleep SECS        sleep (fractions allowed)
  notify MSG...     send MSGs joined by newlines to $NOTIFY_SOCKET; print sent or the error
  wait-signal       wait for any catchable signal; print 'signal N'
  reboot            reboot(2) RESTART (inside a PID namespace: SIGHUP to its init)
  poweroff          reboot(2) POWER_OFF (inside a PID namespace: SIGINT to its init)
  escape [NAME...]  attack the container's walls; one 'blocked|ESCAPED|error NAME[: detail]'
                    line per attack; exit 0 only if all were blocked
  escape --list     the attack names
  notify-fds COUNT PER
                    send COUNT datagrams to $NOTIFY_SOCKET, each passing PER (0..=253) fds;
                    print 'sent N', then wait for a signal and print 'signal N'
  notify-status COUNT
                    send COUNT STATUS= datagrams to $NOTIFY_SOCKET, print 'sent N', mount and
                    unmount a tmpfs, print 'mount ok' or 'mount ERRNO', wait for a signal
  flood-mount OUTFILE MOUNTS
                    flood stdout from a child, then mount and unmount MOUNTS tmpfs; write
                    'mounts=K failed=F max_ms=M first_error=NAME|none' to OUTFILE, wait for
                    a signal; prints nothing
  spawn-max N       fork N idle children; print 'spawned K' or 'spawned K errno=NAME'
  connect ADDR PORT TCP: send a line, print 'connected REPLY' or the errno name
  listen PORT COUNT print 'listening', answer COUNT connections with 'pong PEER'
  statfs PATH...    per PATH: 'PATH size=BYTES inodes=N' or 'PATH error=NAME'
  time-mount FSTYPE COUNT
                    mount(2) FSTYPE on /tmp COUNT times in a private mount (and, for
                    proc, PID) namespace; print each call's microseconds
  time-exec COUNT CMD...
                    fork+exec+wait CMD COUNT times; print each run's microseconds";

const EXIT_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(cmd) = args.next() else {
        return usage("missing command");
    };
    let rest: Vec<OsString> = args.collect();
    let code = match (cmd.to_str(), rest.as_slice()) {
        (Some("facts"), []) => {
            let mut out = std::io::stdout().lock();
            for (key, value) in facts::collect() {
                let _ = writeln!(out, "{}", facts::line(&key, &value));
            }
            0
        }
        (Some("write"), [path]) => {
            say(&result_word(write_file(Path::new(path))));
            0
        }
        (Some("mkdir"), [path]) => {
            let res = std::fs::DirBuilder::new().mode(0o755).create(path);
            say(&result_word(res));
            0
        }
        (Some("mount"), [fstype, path, data @ ..]) if data.len() <= 1 => {
            say(&result_word(mount_new(fstype, path, data.first())));
            0
        }
        (Some("time-mount"), [fstype, count]) => {
            match (fstype.to_str(), count.to_str().and_then(|c| c.parse().ok())) {
                (Some(f), Some(n)) => timing::time_mount(f, n),
                _ => return usage("time-mount FSTYPE COUNT"),
            }
        }
        (Some("time-exec"), [count, cmd @ ..]) if !cmd.is_empty() => {
            match count.to_str().and_then(|c| c.parse().ok()) {
                Some(n) => timing::time_exec(n, cmd),
                None => return usage("time-exec COUNT CMD..."),
            }
        }
        (Some("exit"), [n]) => match n.to_str().and_then(parse_exit_code) {
            Some(n) => n,
            None => return usage("exit: N must be 0..=255"),
        },
        (Some("sleep"), [secs]) => match secs.to_str().and_then(parse_secs) {
            Some(d) => {
                std::thread::sleep(d);
                0
            }
            None => return usage("sleep: SECS must be a non-negative number"),
        },
        (Some("notify"), msgs) if !msgs.is_empty() => {
            let msgs: Vec<String> = msgs
                .iter()
                .map(|m| m.to_string_lossy().into_owned())
                .collect();
            match notify::send(&msgs) {
                Ok(()) => {
                    say("sent");
                    0
                }
                Err(e) => {
                    say(&e);
                    EXIT_FAILED
                }
            }
        }
        (Some("wait-signal"), []) => {
            let sig = signals::wait_any();
            say(&format!("signal {sig}"));
            0
        }
        (Some("reboot"), []) => reboot(libc::LINUX_REBOOT_CMD_RESTART),
        (Some("poweroff"), []) => reboot(libc::LINUX_REBOOT_CMD_POWER_OFF),
        (Some("escape"), [flag]) if flag == "--list" => {
            for a in escape::ATTACKS {
                say(a.name);
            }
            0
        }
        (Some("escape"), names) => {
            let names: Vec<String> = names
                .iter()
                .map(|n| n.to_string_lossy().into_owned())
                .collect();
            match escape::select(&names) {
                Ok(attacks) => {
                    if escape::run(&attacks) {
                        0
                    } else {
                        EXIT_FAILED
                    }
                }
                Err(e) => return usage(&e),
            }
        }
        (Some("notify-fds"), [count, per]) => {
            let count = count.to_str().and_then(stress::parse_count);
            let per = per.to_str().and_then(stress::parse_per);
            match (count, per) {
                (Some(count), Some(per)) => stress::notify_fds(count, per),
                _ => return usage("notify-fds: COUNT must be a number, PER 0..=253"),
            }
        }
        (Some("notify-status"), [count]) => match count.to_str().and_then(stress::parse_count) {
            Some(count) => stress::notify_status(count),
            None => return usage("notify-status: COUNT must be a number"),
        },
        (Some("flood-mount"), [outfile, mounts]) => {
            match mounts.to_str().and_then(stress::parse_count) {
                Some(mounts) => stress::flood_mount(Path::new(outfile), mounts),
                None => return usage("flood-mount: MOUNTS must be a number"),
            }
        }
        (Some("spawn-max"), [n]) => match n.to_str().and_then(stress::parse_count) {
            Some(n) => stress::spawn_max(n),
            None => return usage("spawn-max: N must be a number"),
        },
        (Some("connect"), [addr, port]) => {
            let (code, line) = net::connect(&addr.to_string_lossy(), &port.to_string_lossy());
            say(&line);
            code
        }
        (Some("listen"), [port, count]) => {
            let (code, line) = net::listen(&port.to_string_lossy(), &count.to_string_lossy());
            say(&line);
            code
        }
        (Some("statfs"), paths) if !paths.is_empty() => {
            for p in paths {
                say(&stress::statfs_line(p));
            }
            0
        }
        _ => return usage("unknown command or wrong arguments"),
    };
    let _ = std::io::stdout().flush();
    ExitCode::from(code)
}

fn usage(why: &str) -> ExitCode {
    eprintln!("nixrun-probe: {why}\n{USAGE}");
    ExitCode::from(EXIT_USAGE)
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn write_file(path: &Path) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)?;
    f.write_all(b"x")
}

/// `ok`, or the errno name the test compares against (`EROFS`, `EACCES`, …).
/// mount(2) of a new file system, straight from the caller (no mount(8),
/// whose own checks would refuse an unprivileged user before the kernel or a
/// runtime's mount guard is asked).
fn mount_new(fstype: &OsString, path: &OsString, data: Option<&OsString>) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let cs = |s: &OsString| {
        std::ffi::CString::new(s.as_bytes()).map_err(|_| std::io::ErrorKind::InvalidInput)
    };
    let (fstype, path) = (cs(fstype)?, cs(path)?);
    let data = data.map(cs).transpose()?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // SAFETY: valid NUL-terminated strings (or NULL for no data), alive for the call.
    let rc = unsafe {
        libc::mount(
            fstype.as_ptr(),
            path.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn result_word(res: std::io::Result<()>) -> String {
    match res {
        Ok(()) => "ok".to_string(),
        Err(e) => errno::io_name(&e),
    }
}

fn reboot(cmd: libc::c_int) -> u8 {
    // Outside a PID namespace this would really reboot the machine running the
    // tests; only go ahead when we can see that we are inside one.
    if let Err(why) = signals::check_in_child_pid_namespace() {
        eprintln!("nixrun-probe: refusing to reboot: {why}");
        say("refused");
        return EXIT_FAILED;
    }
    // SAFETY: reboot(2) takes no pointers.  Inside a PID namespace it does not
    // return on success: the kernel kills the namespace's init.
    let rc = unsafe { libc::reboot(cmd) };
    if rc == 0 {
        say("returned");
    } else {
        say(&errno::io_name(&std::io::Error::last_os_error()));
    }
    EXIT_FAILED
}

fn parse_exit_code(s: &str) -> Option<u8> {
    s.parse().ok()
}

fn parse_secs(s: &str) -> Option<Duration> {
    let secs: f64 = s.parse().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_must_fit_a_wait_status() {
        assert_eq!(parse_exit_code("0"), Some(0));
        assert_eq!(parse_exit_code("133"), Some(133));
        assert_eq!(parse_exit_code("255"), Some(255));
        assert_eq!(parse_exit_code("256"), None);
        assert_eq!(parse_exit_code("-1"), None);
        assert_eq!(parse_exit_code("x"), None);
    }

    #[test]
    fn sleep_accepts_fractions_only_non_negative() {
        assert_eq!(parse_secs("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(parse_secs("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_secs("-1"), None);
        assert_eq!(parse_secs("inf"), None);
        assert_eq!(parse_secs("NaN"), None);
    }

    #[test]
    fn write_reports_ok_and_errno_names() {
        let dir = std::env::temp_dir().join(format!("nixrun-probe-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("f");
        assert_eq!(result_word(write_file(&file)), "ok");
        assert_eq!(std::fs::read(&file).unwrap(), b"x");
        assert_eq!(result_word(write_file(&dir.join("no/such"))), "ENOENT");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
