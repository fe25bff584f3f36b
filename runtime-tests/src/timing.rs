//! `time-mount` and `time-exec`: raw latencies for benches/nesting.py, taken
//! inside a guest (one number of microseconds per line, the benchmark computes
//! the statistics).
//!
//! time-mount FSTYPE COUNT: in a private mount namespace and, for procfs, a new
//! PID namespace (the forked child is its PID 1, as under unshare -p -f), mounts
//! a new FSTYPE on /tmp COUNT times, each detached again at once; what is timed
//! is the mount(2) call alone — under nixrun the mount guard's whole round
//! trip. time-exec COUNT CMD...: fork, exec and wait for CMD COUNT times.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

fn fail(what: &str) -> u8 {
    eprintln!("nixrun-probe: {what}: {}", std::io::Error::last_os_error());
    1
}

pub fn time_mount(fstype: &str, count: u32) -> u8 {
    // SAFETY: plain flag arguments and valid C strings below.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return fail("unshare(CLONE_NEWNS)");
        }
        if libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return fail("making mounts private");
        }
        if fstype == "proc" && libc::unshare(libc::CLONE_NEWPID) != 0 {
            return fail("unshare(CLONE_NEWPID)");
        }
    }
    let Ok(fs) = CString::new(fstype) else {
        return 64;
    };
    // SAFETY: single-threaded; the child only runs the loop below and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return fail("fork");
    }
    if pid > 0 {
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status) as u8
        } else {
            1
        };
    }
    let mut out = String::new();
    for _ in 0..count {
        let t = Instant::now();
        // SAFETY: valid C strings, no data.
        let rc = unsafe {
            libc::mount(
                fs.as_ptr(),
                c"/tmp".as_ptr(),
                fs.as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            )
        };
        let us = t.elapsed().as_micros();
        if rc != 0 {
            // SAFETY: leaving the child.
            unsafe { libc::_exit(fail("mount") as i32) };
        }
        out.push_str(&format!("{us}\n"));
        // SAFETY: valid C string.
        unsafe { libc::umount2(c"/tmp".as_ptr(), libc::MNT_DETACH) };
    }
    print!("{out}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: leaving the child without the parent's exit handlers.
    unsafe { libc::_exit(0) }
}

pub fn time_exec(count: u32, argv: &[OsString]) -> u8 {
    let Ok(args) = argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
    else {
        return 64;
    };
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let mut out = String::new();
    for _ in 0..count {
        let t = Instant::now();
        // SAFETY: single-threaded; the child only execs (or exits).
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return fail("fork");
        }
        if pid == 0 {
            // SAFETY: ptrs is a NULL-terminated array of valid C strings.
            unsafe {
                libc::execvp(ptrs[0], ptrs.as_ptr());
                libc::_exit(127);
            }
        }
        let mut status = 0;
        // SAFETY: reaping our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let us = t.elapsed().as_micros();
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            eprintln!("nixrun-probe: {:?} failed (status {status:#x})", argv);
            return 1;
        }
        out.push_str(&format!("{us}\n"));
    }
    print!("{out}");
    0
}
