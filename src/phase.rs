//! Phase timestamps, for the benchmark's breakdown of where a start's time
//! goes. With `NIXRUN_PHASE_TIMES=1` in its environment nixrun writes one
//! line per phase boundary to stderr, `nixrun-phase NAME NANOSECONDS`
//! (CLOCK_MONOTONIC, the clock the benchmark reads before it spawns nixrun),
//! from the supervisor and from the container's child before its exec.
//! Without it, a mark is one relaxed atomic load.

use std::sync::atomic::{AtomicBool, Ordering};

static ON: AtomicBool = AtomicBool::new(false);

/// Reads the switch; called once, first thing in main.
pub fn init() {
    ON.store(
        std::env::var_os("NIXRUN_PHASE_TIMES").is_some_and(|v| v == "1"),
        Ordering::Relaxed,
    );
}

pub fn mark(name: &str) {
    if ON.load(Ordering::Relaxed) {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let ns = t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128;
        // One write: the child's marks and the supervisor's share stderr,
        // and eprintln! may split a line into several writes.
        let line = format!("nixrun-phase {name} {ns}\n");
        let _ = rustix::io::write(rustix::stdio::stderr(), line.as_bytes());
    }
}
