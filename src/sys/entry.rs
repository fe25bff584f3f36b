//! The binaries' process entry: a C `main` (`#![no_main]` in each binary, see
//! `entry_point!`) instead of std's runtime start-up.
//!
//! Before calling a Rust `main`, std's start-up asks glibc for the main
//! thread's stack bounds (glibc reads and parses /proc/self/maps for that),
//! maps an alternate signal stack and installs SIGSEGV/SIGBUS handlers, only
//! to print "has overflowed its stack" should that happen; at exit it takes
//! the alternate stack down again. Some 15 system calls and ~50 µs of every
//! nixrun, nixrunctl and nixrun-oci start (a static binary that does nothing:
//! 442 µs from spawn to exit with std's start-up, 388 µs without, 351 µs for
//! the same in C; benches/notes.md). What of that start-up matters here is
//! done by `run`: the standard descriptors made valid and SIGPIPE ignored,
//! exactly as std does. A stack overflow now ends in a plain SIGSEGV.

use std::io::Write;

/// Runs a binary's body the way std's start-up would, and returns its exit
/// status for the C `main` to return.
pub fn run(body: fn() -> u8) -> libc::c_int {
    standard_fds_valid();
    // As std does before main: a write to a closed pipe is an EPIPE error the
    // caller handles, not a silent death. (The guest gets its signals back to
    // their defaults before its exec, container/mod.rs.)
    let _ = super::process::ignore_signal(nix::sys::signal::Signal::SIGPIPE);
    let code = body();
    // std flushes stdout after main returns; the C exit that follows our
    // return knows nothing of Rust's buffer.
    let _ = std::io::stdout().flush();
    libc::c_int::from(code)
}

/// Opens /dev/null onto any of fds 0, 1, 2 the caller left closed (as std's
/// start-up does), so that no file nixrun opens later becomes a standard
/// descriptor, to be written to by an error message or handed to the guest as
/// its stdin.
fn standard_fds_valid() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: fds is a valid array of three pollfd for the call's length;
    // a zero timeout only asks the kernel which descriptors are open.
    let r = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
    if r < 0 {
        // Cannot tell (EINTR, ENOMEM): check each one.
        for p in &mut fds {
            // SAFETY: F_GETFD reads the descriptor's flags; an unopened fd is
            // EBADF, nothing else happens.
            if unsafe { libc::fcntl(p.fd, libc::F_GETFD) } < 0 {
                p.revents = libc::POLLNVAL;
            }
        }
    }
    for p in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
        let Ok(null) = rustix::fs::open(
            "/dev/null",
            rustix::fs::OFlags::RDWR,
            rustix::fs::Mode::empty(),
        ) else {
            // Nothing to put there: no later file may land on this fd either.
            std::process::abort();
        };
        // open takes the lowest free descriptor: the ones below p.fd are
        // open (or were just filled), so this is p.fd, kept open for good.
        if std::os::fd::IntoRawFd::into_raw_fd(null) != p.fd {
            std::process::abort();
        }
    }
}

/// Defines the C `main` of a `#![no_main]` binary that runs BODY (a
/// `fn() -> u8` returning the exit status) through `sys::entry::run`.
#[macro_export]
macro_rules! entry_point {
    ($body:path) => {
        // The binary's process entry, called by glibc's start-up.
        #[allow(unsafe_code)]
        #[no_mangle]
        pub extern "C" fn main(
            _argc: ::std::ffi::c_int,
            _argv: *const *const ::std::ffi::c_char,
        ) -> ::std::ffi::c_int {
            $crate::sys::entry::run($body)
        }
    };
}
