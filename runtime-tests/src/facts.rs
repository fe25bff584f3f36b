//! `facts`: what the environment looks like from inside the container, one
//! `key=value` per line in a fixed order.
//!
//! Values that could not be read follow one rule so tests can tell "absent" from
//! "broken": `missing` when the path does not exist (ENOENT), `error:<ERRNO>` for
//! any other failure.  Newlines inside a value are escaped as `\n` so that every
//! fact stays on one line.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::dir::Dir;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::sys::statvfs::FsFlags;

use crate::errno;
use crate::fstype;

const ENV_KEYS: &[&str] = &[
    "container",
    "container_uuid",
    "NOTIFY_SOCKET",
    "PATH",
    "TERM",
    "container_host_id",
];
const RO_PATHS: &[&str] = &[
    "/",
    "/sys",
    "/proc/sys",
    "/proc/sys/net",
    "/nix/store",
    "/run/host",
];
const FSTYPE_PATHS: &[&str] = &[
    "/sys/fs/cgroup",
    "/proc",
    "/sys",
    "/dev",
    "/dev/pts",
    "/run",
    "/tmp",
];
/// /proc/self/status field → fact key.
const STATUS_FIELDS: &[(&str, &str)] = &[
    ("CapBnd", "capbnd"),
    ("CapEff", "capeff"),
    ("CapInh", "capinh"),
    ("CapAmb", "capamb"),
    ("NoNewPrivs", "nonewprivs"),
    ("Seccomp", "seccomp"),
    ("Umask", "umask"),
    ("Cpus_allowed_list", "cpus"),
];
/// Nodes the runtime makes: their permission bits (octal), which must be the
/// runtime's table's whatever the caller's umask.
const MODE_PATHS: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/net/tun",
    "/run/host",
    "/run/host/notify",
    "/run/host/container-uuid",
    "/run/host/inaccessible",
    "/run/host/inaccessible/reg",
    "/run/host/inaccessible/dir",
    "/run/host/inaccessible/fifo",
];

pub fn collect() -> Vec<(String, String)> {
    let mut facts: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| facts.push((k.to_string(), v));

    put("pid", std::process::id().to_string());
    put("ppid", nix::unistd::getppid().to_string());
    put(
        "hostname",
        match nix::unistd::gethostname() {
            Ok(h) => h.to_string_lossy().into_owned(),
            Err(e) => format!("error:{e:?}"),
        },
    );
    put("uid", nix::unistd::getuid().to_string());
    // getcwd fails with ENOENT when the cwd lies outside the root; "missing" would
    // hide that, so name the errno.
    put(
        "cwd",
        match std::env::current_dir() {
            Ok(p) => p.to_string_lossy().into_owned(),
            Err(e) => format!("error:{}", errno::io_name(&e)),
        },
    );
    for key in ENV_KEYS {
        let v = std::env::var_os(key).unwrap_or_default();
        put(&format!("env.{key}"), v.to_string_lossy().into_owned());
    }
    put(
        "proc_pids",
        value(fs::read_dir("/proc").map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| is_pid(&e.file_name().to_string_lossy()))
                .count()
                .to_string()
        })),
    );
    put(
        "pid1_cmdline",
        value(fs::read("/proc/1/cmdline").map(|b| cmdline(&b))),
    );
    for path in RO_PATHS {
        put(&format!("ro.{path}"), read_only(path));
    }
    for path in FSTYPE_PATHS {
        put(
            &format!("fstype.{path}"),
            value(
                nix::sys::statfs::statfs(*path)
                    .map(|s| fstype::name(s.filesystem_type().0 as u64))
                    .map_err(io::Error::from),
            ),
        );
    }
    put(
        "cgroup",
        value(fs::read_to_string("/proc/self/cgroup").map(|s| join_lines(&s, ";"))),
    );
    put(
        "cgroup_root_entries",
        value(sorted_names("/sys/fs/cgroup").map(|n| n.join(","))),
    );
    put("fds", value(own_fds().map(|fds| format_fds(&fds))));
    put(
        "console",
        [0, 1]
            .iter()
            .map(|fd| value(fs::read_link(format!("/proc/self/fd/{fd}")).map(lossy)))
            .collect::<Vec<_>>()
            .join(","),
    );
    put("dev", value(sorted_names("/dev").map(|n| n.join(","))));
    // The network: the links of our namespace (from the kernel's own list),
    // those our /sys shows, and whether lo is up (IFF_UP in its flags).
    put(
        "net.links",
        value(fs::read_to_string("/proc/self/net/dev").map(|t| {
            let mut v: Vec<&str> = t
                .lines()
                .skip(2)
                .filter_map(|l| l.split(':').next())
                .map(str::trim)
                .collect();
            v.sort();
            v.join(",")
        })),
    );
    put(
        "net.sys_class_net",
        value(sorted_names("/sys/class/net").map(|n| n.join(","))),
    );
    put(
        "net.lo_up",
        value(fs::read_to_string("/sys/class/net/lo/flags").map(|f| {
            let flags = u32::from_str_radix(f.trim().trim_start_matches("0x"), 16).unwrap_or(0);
            (flags & 1).to_string()
        })),
    );
    for path in MODE_PATHS {
        put(
            &format!("mode.{path}"),
            value(
                nix::sys::stat::lstat(*path)
                    .map(|st| format!("{:o}", st.st_mode & 0o7777))
                    .map_err(io::Error::from),
            ),
        );
    }
    let status = fs::read_to_string("/proc/self/status");
    for (field, key) in STATUS_FIELDS {
        let v = match &status {
            Ok(text) => status_field(text, field)
                .map(str::to_string)
                .unwrap_or_else(|| "missing".to_string()),
            Err(e) => error_value(e),
        };
        put(key, v);
    }
    facts
}

/// One output line; keys never contain `=` or newlines, values get `\n` escaped.
pub fn line(key: &str, value: &str) -> String {
    format!("{key}={}", value.replace('\\', "\\\\").replace('\n', "\\n"))
}

fn value(res: io::Result<String>) -> String {
    res.unwrap_or_else(|e| error_value(&e))
}

fn error_value(e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::NotFound {
        "missing".to_string()
    } else {
        format!("error:{}", errno::io_name(e))
    }
}

fn lossy(p: std::path::PathBuf) -> String {
    p.to_string_lossy().into_owned()
}

fn read_only(path: &str) -> String {
    match nix::sys::statvfs::statvfs(path) {
        Ok(s) => if s.flags().contains(FsFlags::ST_RDONLY) {
            "1"
        } else {
            "0"
        }
        .to_string(),
        Err(e) => error_value(&io::Error::from(e)),
    }
}

fn is_pid(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}

/// /proc/PID/cmdline is NUL-separated with a trailing NUL.
fn cmdline(raw: &[u8]) -> String {
    let trimmed = raw.strip_suffix(b"\0").unwrap_or(raw);
    String::from_utf8_lossy(trimmed).replace('\0', " ")
}

fn join_lines(text: &str, sep: &str) -> String {
    text.lines()
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(sep)
}

fn sorted_names(dir: impl AsRef<Path>) -> io::Result<Vec<String>> {
    let mut names = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<io::Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

/// Our open fds and their targets, leaving out the one used to list them (which
/// exists only because we are looking).
fn own_fds() -> io::Result<Vec<(i32, String)>> {
    let mut dir = Dir::open(
        "/proc/self/fd",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let listing_fd = dir.as_raw_fd();
    let mut fds = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let Ok(fd) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue; // "." and ".."
        };
        if fd == listing_fd {
            continue;
        }
        // An fd can be closed between listing and readlink; report it anyway.
        let target = value(fs::read_link(format!("/proc/self/fd/{fd}")).map(lossy));
        fds.push((fd, target));
    }
    Ok(fds)
}

fn format_fds(fds: &[(i32, String)]) -> String {
    let mut fds = fds.to_vec();
    fds.sort_by_key(|(fd, _)| *fd);
    fds.iter()
        .map(|(fd, target)| format!("{fd}:{target}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The value of `Field:\tvalue` in /proc/PID/status.
fn status_field<'a>(status: &'a str, field: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == field).then(|| v.trim())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_stay_single_lines() {
        assert_eq!(line("pid", "1"), "pid=1");
        assert_eq!(line("env.TERM", ""), "env.TERM=");
        assert_eq!(line("hostname", "a\nb"), "hostname=a\\nb");
        assert_eq!(line("x", "a\\nb"), "x=a\\\\nb");
    }

    #[test]
    fn cmdline_nuls_become_spaces() {
        assert_eq!(
            cmdline(b"/nix/var/nix/profiles/system/init\0--foo\0"),
            "/nix/var/nix/profiles/system/init --foo"
        );
        assert_eq!(cmdline(b"/sbin/init"), "/sbin/init");
        assert_eq!(cmdline(b""), "");
    }

    #[test]
    fn cgroup_lines_join_with_semicolons() {
        let v1 = "12:pids:/machine.slice/x\n1:name=systemd:/\n0::/\n";
        assert_eq!(
            join_lines(v1, ";"),
            "12:pids:/machine.slice/x;1:name=systemd:/;0::/"
        );
        assert_eq!(join_lines("0::/\n", ";"), "0::/");
    }

    #[test]
    fn pids_are_all_digits() {
        assert!(is_pid("1"));
        assert!(is_pid("4242"));
        assert!(!is_pid("self"));
        assert!(!is_pid("thread-self"));
        assert!(!is_pid(""));
        assert!(!is_pid("1a"));
    }

    #[test]
    fn fds_sort_numerically() {
        let fds = vec![
            (10, "/dev/null".to_string()),
            (2, "/dev/pts/0".to_string()),
            (0, "pipe:[77]".to_string()),
        ];
        assert_eq!(format_fds(&fds), "0:pipe:[77],2:/dev/pts/0,10:/dev/null");
        assert_eq!(format_fds(&[]), "");
    }

    #[test]
    fn status_fields_are_found_exactly() {
        let status = "Name:\tnixrun-probe\nCapInh:\t0000000000000000\n\
                      CapBnd:\t000001ffffffffff\nNoNewPrivs:\t0\nSeccomp:\t2\n\
                      Seccomp_filters:\t1\n";
        assert_eq!(status_field(status, "CapBnd"), Some("000001ffffffffff"));
        assert_eq!(status_field(status, "Seccomp"), Some("2"));
        assert_eq!(status_field(status, "NoNewPrivs"), Some("0"));
        assert_eq!(status_field(status, "CapAmb"), None);
    }

    #[test]
    fn unreadable_values_distinguish_missing_from_errors() {
        assert_eq!(
            error_value(&io::Error::from_raw_os_error(libc::ENOENT)),
            "missing"
        );
        assert_eq!(
            error_value(&io::Error::from_raw_os_error(libc::EACCES)),
            "error:EACCES"
        );
    }

    #[test]
    fn facts_run_unprivileged_and_have_every_key() {
        let facts = collect();
        let keys: Vec<&str> = facts.iter().map(|(k, _)| k.as_str()).collect();
        for want in [
            "pid",
            "ppid",
            "hostname",
            "uid",
            "cwd",
            "env.container",
            "env.container_uuid",
            "env.NOTIFY_SOCKET",
            "env.PATH",
            "env.TERM",
            "env.container_host_id",
            "proc_pids",
            "pid1_cmdline",
            "ro./",
            "ro./sys",
            "ro./proc/sys",
            "ro./nix/store",
            "ro./run/host",
            "fstype./sys/fs/cgroup",
            "fstype./proc",
            "fstype./sys",
            "fstype./dev",
            "fstype./dev/pts",
            "fstype./run",
            "fstype./tmp",
            "cgroup",
            "cgroup_root_entries",
            "fds",
            "console",
            "dev",
            "capbnd",
            "capeff",
            "capinh",
            "capamb",
            "nonewprivs",
            "seccomp",
        ] {
            assert!(keys.contains(&want), "missing fact {want}");
        }
        let get = |k: &str| facts.iter().find(|(key, _)| key == k).unwrap().1.clone();
        assert_eq!(get("pid"), std::process::id().to_string());
        assert_eq!(get("fstype./proc"), "proc");
        // The listing fd must not show up as a /proc/.../fd directory target.
        assert!(!get("fds").contains("/fd"), "{}", get("fds"));
    }
}
