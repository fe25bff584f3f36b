//! Commands that put one of the runtime's resources under load so that a
//! host-side test can check it holds up: `notify-fds` (fds passed to the
//! supervisor's notify socket), `flood-mount` (mounts the supervisor must answer
//! while the guest's stdout is stuck), `spawn-max` (the pids limit), plus
//! `statfs` for the sizes of the guest's mounts.

use std::ffi::OsStr;
use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};

use crate::notify::Target;
use crate::{errno, notify, say, signals, EXIT_FAILED};

/// The kernel's SCM_MAX_FD: the most fds one SCM_RIGHTS message may carry.
pub const SCM_MAX_FD: usize = 253;

const NOTIFY_PAYLOAD: &[u8] = b"X_FLOOD=1";
/// A supervisor that reads slowly is not a failure of the probe, so a datagram
/// waits this long for room; one that never reads must not hang it forever.
const GIVE_UP_AFTER: Duration = Duration::from_secs(2);
const RETRY_PAUSE: Duration = Duration::from_millis(1);

/// 4 KiB per write, newline included.
const FLOOD_LINE: usize = 4096;
/// Long enough for a pipe nobody reads to fill up before the mounts start.
const FLOOD_HEAD_START: Duration = Duration::from_secs(1);
const FLOOD_DIR_PREFIX: &str = "/tmp/flood-mount-";

/// COUNT, MOUNTS and N: any non-negative decimal number.
pub fn parse_count(s: &str) -> Option<usize> {
    s.parse().ok()
}

/// PER: 0..=SCM_MAX_FD; more would be refused by the kernel (EINVAL), which
/// would test the argument, not the runtime.
pub fn parse_per(s: &str) -> Option<usize> {
    parse_count(s).filter(|&n| n <= SCM_MAX_FD)
}

// ---- notify-fds -------------------------------------------------------------

/// `notify-fds COUNT PER`: prints `sent N`, then waits for a signal.  Setup
/// errors (no $NOTIFY_SOCKET, no socket, no fds) print `unset` or the errno
/// name instead and exit 1 without waiting.
pub fn notify_fds(count: usize, per: usize) -> u8 {
    let (addr, sock, fds) = match prepare_notify(per) {
        Ok(p) => p,
        Err(word) => {
            say(&word);
            return EXIT_FAILED;
        }
    };
    let flood = send_flood(&sock, &addr, &fds, count, GIVE_UP_AFTER);
    say(&format!("sent {}", flood.sent));
    if flood.given_up > 0 {
        eprintln!(
            "nixrun-probe: notify-fds: gave up on {} datagrams after {} s each",
            flood.given_up,
            GIVE_UP_AFTER.as_secs()
        );
    }
    if let Some(e) = flood.error {
        eprintln!(
            "nixrun-probe: notify-fds: stopped by {}",
            errno::name(e as i32)
        );
    }
    // The host counts the supervisor's fds while we wait: with ours closed,
    // every copy still open is one the supervisor kept.
    drop(fds);
    drop(sock);
    let sig = signals::wait_any();
    say(&format!("signal {sig}"));
    0
}

fn prepare_notify(per: usize) -> Result<(UnixAddr, UnixDatagram, Vec<OwnedFd>), String> {
    let var = std::env::var("NOTIFY_SOCKET").unwrap_or_default();
    let addr = match notify::target(&var) {
        None => return Err("unset".to_string()),
        Some(Target::Path(p)) => UnixAddr::new(p),
        Some(Target::Abstract(name)) => UnixAddr::new_abstract(name),
    }
    .map_err(|e| errno::name(e as i32))?;
    let sock = UnixDatagram::unbound().map_err(|e| errno::io_name(&e))?;
    let fds = fds_to_pass(per).map_err(|e| errno::name(e as i32))?;
    Ok((addr, sock, fds))
}

/// PER fds for one file: a pipe's read end and its duplicates.  A pipe, not
/// /dev/null, because a minimal root may have no /dev.
fn fds_to_pass(per: usize) -> Result<Vec<OwnedFd>, Errno> {
    if per == 0 {
        return Ok(Vec::new());
    }
    let (rd, _wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let mut fds = Vec::with_capacity(per);
    while fds.len() + 1 < per {
        fds.push(rd.try_clone().map_err(|e| io_errno(&e))?);
    }
    fds.push(rd);
    Ok(fds)
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Flood {
    sent: usize,
    /// Datagrams dropped after waiting `give_up` for room.
    given_up: usize,
    /// The error that ended the loop early.
    error: Option<Errno>,
}

fn send_flood(
    sock: &UnixDatagram,
    addr: &UnixAddr,
    fds: &[OwnedFd],
    count: usize,
    give_up: Duration,
) -> Flood {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &rights };
    let iov = [IoSlice::new(NOTIFY_PAYLOAD)];
    let mut flood = Flood::default();
    for _ in 0..count {
        let deadline = Instant::now() + give_up;
        loop {
            // MSG_DONTWAIT: a blocking send to a full receiver would sleep in
            // the kernel past any deadline; EAGAIN lets us keep the clock.
            let res = sendmsg(
                sock.as_raw_fd(),
                &iov,
                cmsgs,
                MsgFlags::MSG_DONTWAIT,
                Some(addr),
            );
            match res {
                Ok(_) => {
                    flood.sent += 1;
                    break;
                }
                Err(Errno::EINTR) => {}
                // The receiver's queue or our send buffer is full (EAGAIN,
                // ENOBUFS), or too many of our fds are in flight
                // (ETOOMANYREFS, bounded by RLIMIT_NOFILE): all clear up as
                // the supervisor reads.
                Err(Errno::EAGAIN | Errno::ENOBUFS | Errno::ETOOMANYREFS) => {
                    if Instant::now() >= deadline {
                        flood.given_up += 1;
                        break;
                    }
                    std::thread::sleep(RETRY_PAUSE);
                }
                Err(e) => {
                    flood.error = Some(e);
                    return flood;
                }
            }
        }
    }
    flood
}

// ---- notify-status ------------------------------------------------------------

/// `notify-status COUNT`: COUNT STATUS= datagrams (the runtime relays each to
/// its own service manager), then one tmpfs mount, which only completes if the
/// runtime's supervisor is still serving its event loop. Prints `sent N` and
/// `mount ok|ERRNO`, then waits for a signal.
pub fn notify_status(count: usize) -> u8 {
    let (addr, sock, _) = match prepare_notify(0) {
        Ok(p) => p,
        Err(word) => {
            say(&word);
            return EXIT_FAILED;
        }
    };
    let mut sent = 0;
    for i in 0..count {
        let msg = format!("STATUS=probe status {i}");
        match sendmsg(
            sock.as_raw_fd(),
            &[IoSlice::new(msg.as_bytes())],
            &[],
            MsgFlags::empty(),
            Some(&addr),
        ) {
            Ok(_) => sent += 1,
            Err(e) => {
                say(&format!("sent {sent} then {}", errno::name(e as i32)));
                return EXIT_FAILED;
            }
        }
    }
    say(&format!("sent {sent}"));
    let dir = Path::new("/tmp/notify-status-mount");
    let _ = std::fs::create_dir(dir);
    let res = nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=1m"),
    );
    // Handlers first: as PID 1 we lose signals we have no handler for, and
    // the host may signal as soon as it has read the line.
    signals::catch_all();
    match res {
        Ok(()) => {
            let _ = nix::mount::umount2(dir, MntFlags::empty());
            say("mount ok");
        }
        Err(e) => say(&format!("mount {}", errno::name(e as i32))),
    }
    signals::wait_caught();
    0
}

// ---- flood-mount ------------------------------------------------------------

/// `flood-mount OUTFILE MOUNTS`: prints nothing (stdout is the flooded pipe);
/// the result is OUTFILE's one line, written once the signal handlers are in
/// place, so a test may signal as soon as it has read the line.
pub fn flood_mount(outfile: &Path, mounts: usize) -> u8 {
    let flooder = match spawn_flooder(libc::STDOUT_FILENO) {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("nixrun-probe: flood-mount: fork: {}", errno::name(e as i32));
            return EXIT_FAILED;
        }
    };
    std::thread::sleep(FLOOD_HEAD_START);
    let mut tally = MountTally::default();
    for i in 0..mounts {
        mount_once(&mut tally, &flood_dir(i));
    }
    // Before the line exists: we may be PID 1, which loses signals it has no
    // handler for, and the line is all the test waits for.
    signals::catch_all();
    let written = write_line(outfile, &tally.line());
    if written.is_ok() {
        signals::wait_caught();
    }
    kill_and_reap(&[flooder]);
    match written {
        Ok(()) => 0,
        Err(e) => {
            warn_unless_blocked(&format!(
                "nixrun-probe: flood-mount: {}: {}",
                outfile.display(),
                errno::io_name(&e)
            ));
            EXIT_FAILED
        }
    }
}

fn flood_dir(i: usize) -> PathBuf {
    PathBuf::from(format!("{FLOOD_DIR_PREFIX}{i}"))
}

fn mount_once(tally: &mut MountTally, dir: &Path) {
    let created = match std::fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => {
            tally.fail(io_errno(&e));
            return;
        }
    };
    let start = Instant::now();
    let res = nix::mount::mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("size=1m"),
    );
    tally.record(start.elapsed(), res);
    if res.is_ok() {
        let _ = nix::mount::umount2(dir, MntFlags::empty());
    }
    if created {
        // Still a mount point if umount2 failed: then EBUSY keeps it, as it should.
        let _ = std::fs::remove_dir(dir);
    }
}

#[derive(Debug, Default)]
struct MountTally {
    mounted: usize,
    failed: usize,
    /// The slowest mount(2) call, failed ones included: a call that hangs
    /// until the supervisor gives up is the symptom being looked for.
    slowest: Duration,
    first_error: Option<Errno>,
}

impl MountTally {
    fn record(&mut self, took: Duration, res: nix::Result<()>) {
        self.slowest = self.slowest.max(took);
        match res {
            Ok(()) => self.mounted += 1,
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, e: Errno) {
        self.failed += 1;
        self.first_error.get_or_insert(e);
    }

    fn line(&self) -> String {
        let first = self
            .first_error
            .map_or_else(|| "none".to_string(), |e| errno::name(e as i32));
        format!(
            "mounts={} failed={} max_ms={} first_error={first}",
            self.mounted,
            self.failed,
            self.slowest.as_millis()
        )
    }
}

fn write_line(path: &Path, line: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(path)?;
    f.write_all(format!("{line}\n").as_bytes())
}

/// stderr may be the same stuck pipe as stdout; a diagnostic is not worth
/// hanging for.
fn warn_unless_blocked(msg: &str) {
    let mut pfd = libc::pollfd {
        fd: libc::STDERR_FILENO,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no timeout.
    let ready = unsafe { libc::poll(&mut pfd, 1, 0) } == 1 && pfd.revents & libc::POLLOUT != 0;
    // A writable pipe has room for at least one page, more than this line.
    if ready {
        eprintln!("{msg}");
    }
}

/// Forks the child that writes to `fd` for ever.
fn spawn_flooder(fd: RawFd) -> Result<libc::pid_t, Errno> {
    let parent = nix::unistd::getpid().as_raw();
    // SAFETY: the child runs only async-signal-safe code (`flood`), so this is
    // sound even in a multi-threaded process such as the test harness.
    match unsafe { libc::fork() } {
        -1 => Err(Errno::last()),
        0 => flood(fd, parent),
        pid => Ok(pid),
    }
}

/// Blocking writes of 4 KiB lines of `x`; never exits on its own, so that the
/// pipe stays full for as long as the test runs.
fn flood(fd: RawFd, parent: libc::pid_t) -> ! {
    die_with(parent);
    // Rust's runtime already ignores SIGPIPE, but a reader that goes away must
    // not end the flood whatever the parent's disposition was.
    // SAFETY: setting a disposition to SIG_IGN installs no handler.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let mut line = [b'x'; FLOOD_LINE];
    line[FLOOD_LINE - 1] = b'\n';
    loop {
        let mut rest: &[u8] = &line;
        while !rest.is_empty() {
            // SAFETY: rest is a live buffer of rest.len() bytes.
            let n = unsafe { libc::write(fd, rest.as_ptr().cast(), rest.len()) };
            if n > 0 {
                rest = &rest[n as usize..];
            } else if !(n < 0 && Errno::last() == Errno::EINTR) {
                // EPIPE, EBADF, …: nothing to wait on, so do not spin a CPU the
                // supervisor under test may need.
                // SAFETY: usleep has no preconditions.
                unsafe { libc::usleep(1000) };
            }
        }
    }
}

// ---- spawn-max --------------------------------------------------------------

/// `spawn-max N`: prints `spawned K` or `spawned K errno=NAME`.
pub fn spawn_max(n: usize) -> u8 {
    let (pids, err) = spawn_idle(n);
    say(&spawned_line(pids.len(), err));
    kill_and_reap(&pids);
    0
}

/// Forks idle children until there are `n` or fork fails.
fn spawn_idle(n: usize) -> (Vec<libc::pid_t>, Option<Errno>) {
    let parent = nix::unistd::getpid().as_raw();
    let mut pids = Vec::new();
    while pids.len() < n {
        // SAFETY: the child runs only async-signal-safe code (`idle`).
        match unsafe { libc::fork() } {
            -1 => return (pids, Some(Errno::last())),
            0 => idle(parent),
            pid => pids.push(pid),
        }
    }
    (pids, None)
}

fn idle(parent: libc::pid_t) -> ! {
    die_with(parent);
    loop {
        // SAFETY: pause has no preconditions.
        unsafe { libc::pause() };
    }
}

fn spawned_line(made: usize, err: Option<Errno>) -> String {
    match err {
        None => format!("spawned {made}"),
        Some(e) => format!("spawned {made} errno={}", errno::name(e as i32)),
    }
}

/// Children outlive a probe that is not PID 1 (a unit test, a service in a
/// booted guest) unless told to die with it.
fn die_with(parent: libc::pid_t) {
    // SAFETY: prctl with integer arguments; getppid and _exit have no
    // preconditions.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
        // The parent may have died before prctl took effect.
        if libc::getppid() != parent {
            libc::_exit(0);
        }
    }
}

fn kill_and_reap(pids: &[libc::pid_t]) {
    for &pid in pids {
        // SAFETY: kill takes no pointers; pid is our unreaped child, so the
        // number cannot have been reused.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    for &pid in pids {
        let mut status = 0;
        // SAFETY: reaping our own child into a valid out pointer.
        while unsafe { libc::waitpid(pid, &mut status, 0) } < 0 && Errno::last() == Errno::EINTR {}
    }
}

// ---- statfs -----------------------------------------------------------------

/// `PATH size=BYTES inodes=N` (f_blocks × f_bsize, f_files) or `PATH error=NAME`.
pub fn statfs_line(path: &OsStr) -> String {
    let shown = path.to_string_lossy();
    match nix::sys::statfs::statfs(path) {
        Ok(st) => {
            let bsize = u128::try_from(st.block_size()).unwrap_or(0);
            size_line(&shown, u128::from(st.blocks()) * bsize, st.files())
        }
        Err(e) => format!("{shown} error={}", errno::name(e as i32)),
    }
}

fn size_line(path: &str, bytes: u128, inodes: u64) -> String {
    format!("{path} size={bytes} inodes={inodes}")
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{recvmsg, setsockopt, sockopt, ControlMessageOwned};
    use std::io::{IoSliceMut, Read};
    use std::os::fd::FromRawFd;

    fn temp_path(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("nixrun-probe-{name}-{}", std::process::id()))
    }

    fn reaped(pid: libc::pid_t) -> bool {
        let mut status = 0;
        // SAFETY: valid out pointer; WNOHANG never blocks.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        rc < 0 && Errno::last() == Errno::ECHILD
    }

    #[test]
    fn arguments() {
        assert_eq!(parse_count("0"), Some(0));
        assert_eq!(parse_count("1000"), Some(1000));
        assert_eq!(parse_count("-1"), None);
        assert_eq!(parse_count("x"), None);
        assert_eq!(parse_count(""), None);
        assert_eq!(parse_per("0"), Some(0));
        assert_eq!(parse_per("253"), Some(253));
        assert_eq!(parse_per("254"), None);
        assert_eq!(parse_per("-3"), None);
    }

    #[test]
    fn output_lines() {
        assert_eq!(spawned_line(5, None), "spawned 5");
        assert_eq!(
            spawned_line(3, Some(Errno::EAGAIN)),
            "spawned 3 errno=EAGAIN"
        );
        assert_eq!(
            size_line("/tmp", 4096 * 262_144, 1000),
            "/tmp size=1073741824 inodes=1000"
        );
        assert_eq!(
            MountTally::default().line(),
            "mounts=0 failed=0 max_ms=0 first_error=none"
        );
    }

    #[test]
    fn mount_tally_keeps_the_first_error_and_the_slowest_call() {
        let mut t = MountTally::default();
        t.record(Duration::from_micros(2500), Ok(()));
        t.record(Duration::from_millis(1), Err(Errno::EPERM));
        t.record(Duration::from_micros(1999), Ok(()));
        t.fail(Errno::ENOENT);
        assert_eq!(t.line(), "mounts=2 failed=2 max_ms=2 first_error=EPERM");
    }

    #[test]
    fn flood_dirs_are_numbered() {
        assert_eq!(flood_dir(0), Path::new("/tmp/flood-mount-0"));
        assert_eq!(flood_dir(17), Path::new("/tmp/flood-mount-17"));
    }

    #[test]
    fn statfs_of_root_is_plausible() {
        let line = statfs_line(OsStr::new("/"));
        let rest = line.strip_prefix("/ size=").expect(&line);
        let (size, inodes) = rest.split_once(" inodes=").expect(&line);
        assert!(size.parse::<u128>().unwrap() > 0, "{line}");
        // btrfs reports 0 inodes, so only the number's form is checked.
        inodes.parse::<u64>().expect(&line);
    }

    #[test]
    fn statfs_names_the_errno() {
        let missing = temp_path("statfs-missing");
        let line = statfs_line(missing.as_os_str());
        assert_eq!(line, format!("{} error=ENOENT", missing.display()));
    }

    #[test]
    fn spawn_max_spawns_and_reaps() {
        let (pids, err) = spawn_idle(3);
        assert_eq!(err, None);
        assert_eq!(pids.len(), 3);
        for &pid in &pids {
            // SAFETY: signal 0 only checks that the child exists.
            assert_eq!(unsafe { libc::kill(pid, 0) }, 0, "child {pid} gone early");
            assert!(!reaped(pid));
        }
        kill_and_reap(&pids);
        for &pid in &pids {
            assert!(reaped(pid), "child {pid} not reaped");
        }
    }

    #[test]
    fn fds_to_pass_are_distinct_and_open() {
        assert!(fds_to_pass(0).unwrap().is_empty());
        let fds = fds_to_pass(5).unwrap();
        let mut raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
        raw.sort_unstable();
        raw.dedup();
        assert_eq!(raw.len(), 5);
    }

    #[test]
    fn datagrams_carry_all_fds() {
        let path = temp_path("notify-fds");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        let addr = UnixAddr::new(&path).unwrap();
        let sock = UnixDatagram::unbound().unwrap();
        let fds = fds_to_pass(7).unwrap();
        let flood = send_flood(&sock, &addr, &fds, 3, Duration::from_secs(2));
        assert_eq!(
            flood,
            Flood {
                sent: 3,
                ..Flood::default()
            }
        );
        for _ in 0..3 {
            let mut buf = [0u8; 64];
            let mut iov = [IoSliceMut::new(&mut buf)];
            let mut space = nix::cmsg_space!([RawFd; SCM_MAX_FD]);
            let msg = recvmsg::<()>(
                listener.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::empty(),
            )
            .unwrap();
            let mut got = Vec::new();
            for c in msg.cmsgs().unwrap() {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    // SAFETY: SCM_RIGHTS just installed these fds in this process.
                    got.extend(
                        fds.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            let len = msg.bytes;
            assert_eq!(got.len(), 7);
            assert_eq!(&buf[..len], NOTIFY_PAYLOAD);
        }
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_receiver_that_never_reads_costs_datagrams_not_the_loop() {
        let path = temp_path("notify-stuck");
        let _ = std::fs::remove_file(&path);
        let _listener = UnixDatagram::bind(&path).unwrap();
        let addr = UnixAddr::new(&path).unwrap();
        let sock = UnixDatagram::unbound().unwrap();
        // The kernel's minimum send buffer holds only a few datagrams, so the
        // sender fills up whatever the receiver's queue length is.
        setsockopt(&sock, sockopt::SndBuf, &1).unwrap();
        let fds = fds_to_pass(2).unwrap();
        let flood = send_flood(&sock, &addr, &fds, 30, Duration::from_millis(3));
        assert_eq!(flood.error, None);
        assert!(flood.sent >= 1, "{flood:?}");
        assert!(flood.given_up >= 1, "{flood:?}");
        assert_eq!(flood.sent + flood.given_up, 30);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn other_send_errors_stop_the_loop() {
        let addr = UnixAddr::new(&temp_path("notify-nobody")).unwrap();
        let sock = UnixDatagram::unbound().unwrap();
        let flood = send_flood(&sock, &addr, &[], 5, Duration::from_secs(2));
        assert_eq!(
            flood,
            Flood {
                sent: 0,
                given_up: 0,
                error: Some(Errno::ENOENT)
            }
        );
    }

    #[test]
    fn flooder_writes_4k_lines_until_killed() {
        let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let pid = spawn_flooder(wr.as_raw_fd()).unwrap();
        drop(wr);
        let mut got = vec![0u8; 2 * FLOOD_LINE];
        std::fs::File::from(rd).read_exact(&mut got).unwrap();
        let mut want = vec![b'x'; FLOOD_LINE];
        want[FLOOD_LINE - 1] = b'\n';
        assert!(got.chunks(FLOOD_LINE).all(|c| c == want));
        kill_and_reap(&[pid]);
        assert!(reaped(pid));
    }

    #[test]
    fn flooder_survives_a_reader_going_away() {
        let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        drop(rd);
        let pid = spawn_flooder(wr.as_raw_fd()).unwrap();
        drop(wr);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!reaped(pid), "the flooder exited on EPIPE");
        kill_and_reap(&[pid]);
        assert!(reaped(pid));
    }
}
