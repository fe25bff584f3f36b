//! The guest's console output on its way to our stdout, without ever blocking
//! the supervisor.
//!
//! A blocking write to a stdout nobody reads (`nixrun … | sleep 120`, a stalled
//! journal) would stall the event loop: no SIGTERM handled, no guest mount
//! answered. So stdout is written without blocking — sockets with
//! MSG_DONTWAIT; pipes, FIFOs and terminals through a second, non-blocking open
//! file description of the same object (setting O_NONBLOCK on fd 1 itself would
//! change it for everyone sharing it, the user's shell included); regular files
//! do not block. What cannot be written yet waits in a bounded queue, flushed
//! when poll says stdout is writable; beyond the bound output is dropped and
//! counted, and the first drop is reported once on stderr.

use nix::errno::Errno;
use rustix::fs::{FileType, Mode, OFlags};
use rustix::net::SendFlags;
use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// The most console output held for a slow stdout: enough for bursts (a boot
/// writes some tens of KiB), small next to the supervisor's 2 MiB.
pub const QUEUE_MAX: usize = 256 * 1024;

enum Sink {
    /// A socket: sent with MSG_DONTWAIT.
    Socket,
    /// Our own non-blocking open of what fd 1 is.
    Reopened(OwnedFd),
    /// A regular file (or something we could not make non-blocking): written
    /// as is.
    Plain,
}

pub struct Output {
    sink: Sink,
    queue: VecDeque<u8>,
    dropped: u64,
    /// Whether the first drop may be reported on stderr (not when stderr is
    /// the very same stalled object as stdout).
    report: bool,
    reported: bool,
}

fn stdout() -> BorrowedFd<'static> {
    rustix::stdio::stdout()
}

impl Output {
    pub fn stdout() -> Output {
        let fd = stdout();
        let same_as_stderr = match (
            rustix::fs::fstat(fd),
            rustix::fs::fstat(rustix::stdio::stderr()),
        ) {
            (Ok(a), Ok(b)) => a.st_dev == b.st_dev && a.st_ino == b.st_ino,
            _ => false,
        };
        let sink = match rustix::fs::fstat(fd).map(|st| FileType::from_raw_mode(st.st_mode)) {
            Ok(FileType::Socket) => Sink::Socket,
            Ok(FileType::RegularFile) | Err(_) => Sink::Plain,
            Ok(_) => rustix::fs::open(
                "/proc/self/fd/1",
                OFlags::WRONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_or(Sink::Plain, Sink::Reopened),
        };
        Output {
            sink,
            queue: VecDeque::new(),
            dropped: 0,
            report: !same_as_stderr,
            reported: false,
        }
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match &self.sink {
            Sink::Reopened(fd) => fd.as_fd(),
            _ => stdout(),
        }
    }

    /// One write attempt; Ok(n) bytes taken, Err(EAGAIN) when stdout is full.
    fn write_some(&self, data: &[u8]) -> Result<usize, Errno> {
        let r = match self.sink {
            Sink::Socket => {
                rustix::net::send(self.fd(), data, SendFlags::DONTWAIT | SendFlags::NOSIGNAL)
            }
            _ => rustix::io::write(self.fd(), data),
        };
        r.map_err(crate::sys::errno)
    }

    /// Writes what it can of the queue, then of `data`; queues the rest up to
    /// QUEUE_MAX and drops what does not fit.
    pub fn push(&mut self, data: &[u8]) {
        self.flush();
        let mut data = data;
        if self.queue.is_empty() {
            while !data.is_empty() {
                match self.write_some(data) {
                    Ok(0) => break,
                    Ok(n) => data = &data[n..],
                    Err(Errno::EINTR) => {}
                    Err(Errno::EAGAIN) => break,
                    // A closed or broken stdout must not stop the guest: output
                    // has nowhere to go, and is dropped.
                    Err(_) => return,
                }
            }
        }
        let room = QUEUE_MAX - self.queue.len();
        let (keep, lose) = data.split_at(data.len().min(room));
        self.queue.extend(keep);
        if !lose.is_empty() {
            self.dropped += lose.len() as u64;
            if self.report && !self.reported {
                self.reported = true;
                eprintln!(
                    "nixrun: stdout is not being read; dropping the guest's console output \
                     beyond {} KiB until it is",
                    QUEUE_MAX / 1024
                );
            }
        }
    }

    /// Writes queued output while stdout takes it.
    pub fn flush(&mut self) {
        while !self.queue.is_empty() {
            let (front, _) = self.queue.as_slices();
            match self.write_some(front) {
                Ok(0) => return,
                Ok(n) => {
                    self.queue.drain(..n);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                Err(_) => {
                    self.queue.clear();
                    return;
                }
            }
        }
    }

    /// The fd to wait on for POLLOUT while output is queued.
    pub fn pending(&self) -> Option<BorrowedFd<'_>> {
        (!self.queue.is_empty()).then(|| self.fd())
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Output writing into a pipe we hold the read end of.
    fn piped() -> (Output, OwnedFd) {
        let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        rustix::fs::fcntl_setfl(&w, OFlags::NONBLOCK).unwrap();
        (
            Output {
                sink: Sink::Reopened(w),
                queue: VecDeque::new(),
                dropped: 0,
                report: false,
                reported: false,
            },
            r,
        )
    }

    #[test]
    fn a_full_stdout_queues_then_drops_and_never_blocks() {
        let (mut out, r) = piped();
        let chunk = vec![b'x'; 16 * 1024];
        // Far more than a pipe (64 KiB) and the queue hold; must return.
        for _ in 0..64 {
            out.push(&chunk);
        }
        assert_eq!(out.queue.len(), QUEUE_MAX);
        assert!(out.pending().is_some());
        assert!(out.dropped() > 0);
        let written = 64 * chunk.len() as u64 - out.dropped() - QUEUE_MAX as u64;
        assert!(written >= 4096, "the pipe took {written} bytes");
        // The reader catches up: the queue drains.
        rustix::fs::fcntl_setfl(&r, OFlags::NONBLOCK).unwrap();
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..1000 {
            while let Ok(n) = rustix::io::read(&r, &mut buf) {
                if n == 0 {
                    break;
                }
            }
            out.flush();
            if out.pending().is_none() {
                break;
            }
        }
        assert!(out.pending().is_none());
    }

    #[test]
    fn nothing_is_lost_while_the_reader_keeps_up() {
        let (mut out, r) = piped();
        rustix::fs::fcntl_setfl(&r, OFlags::NONBLOCK).unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 8192];
        for i in 0..100u8 {
            out.push(&[i; 1000]);
            while let Ok(n) = rustix::io::read(&r, &mut buf) {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
        }
        out.flush();
        while let Ok(n) = rustix::io::read(&r, &mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out.dropped(), 0);
        assert_eq!(got.len(), 100_000);
        assert!(got
            .chunks(1000)
            .enumerate()
            .all(|(i, c)| c.iter().all(|&b| b == i as u8)));
    }
}
