#!/usr/bin/env python3
"""Benchmarks guests in a user namespace (issue "User namespaces and throw-away
roots"): nixrun -U against systemd-nspawn 252 on this host.

  1. exec latency of `/bin/true` in the Debian root: nixrun -U, nixrun,
     systemd-nspawn -U and systemd-nspawn (nspawn with --keep-unit
     --register=no, as it must run here); spawn -> exited and its cgroup
     empty. Each runtime has its own copy of the root, so that no run sees a
     tree another one shifted.
  2. boot (spawn -> READY=1 on $NOTIFY_SOCKET) and stop (SIGTERM -> exited,
     cgroup empty) of the Debian guest, the same four. Both runtimes get
     SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1, as compare.py and NixOS's
     container@.service give it, and each instance a fresh cgroup of its own
     (nspawn -U fails in a cgroup an earlier -U run with another range left
     its payload/init.scope in).

Runs are interleaved (A B C ... A B C ..., order rotated each round): the
machines are shared and noisy, only ratios from one run mean much. Prints a
markdown table (medians with p10-p90) on stdout, progress on stderr.

Usage (root):  python3 benches/userns.py [--nixrun PATH] [--rounds K] [--boots K]
  --nixrun PATH  binary to measure (default: cargo build --release into
                 target/bench, as compare.py does)
  --rounds K     exec rounds (default 100)
  --boots K      boot/stop cycles per runtime (default 10)

Python standard library only; launches as compare.py does (posix_spawn into
a fresh cgroup, its Cgroups class) and shares nesting.py's helpers. What it starts it
stops: guests run in cgroups of their own, copies of the fixture in a
temporary directory.
"""

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import Cgroups  # noqa: E402
from nesting import build_nixrun, fixture, log  # noqa: E402

BOOT_TIMEOUT = 120
NSPAWN = ["systemd-nspawn", "--keep-unit", "--register=no", "-q"]


def reap(cg, slot, pid, t0):
    """Waits for PID; seconds from T0 until it exited and SLOT is empty (as a
    unit is done), its exit code, and whether processes stayed 1 s on."""
    _, status, _ = os.wait4(pid, 0)
    t_exit = time.perf_counter()
    left = cg.pids(slot)
    while left and time.perf_counter() - t_exit < 1:
        left = cg.pids(slot)
    dt = time.perf_counter() - t0
    cg.remove(slot)
    return dt, os.waitstatus_to_exitcode(status), bool(left)


def run_once(cg, argv, env, logf):
    """ARGV to completion in a fresh cgroup, posix_spawned as compare.py does."""
    slot = cg.slot(f"x{time.monotonic_ns()}")
    with open(os.devnull, "r+b") as null:
        pid, t0 = cg.spawn(slot, argv, env, null.fileno(), null.fileno(), logf.fileno())
    return reap(cg, slot, pid, t0)


def boot_once(cg, argv, env, logf):
    """Boots ARGV with a notify socket of its own; (seconds to READY=1 or
    None, seconds from SIGTERM until it exited and its cgroup was empty or
    None, exit code)."""
    sockdir = Path(tempfile.mkdtemp(prefix="uns-bench-notify."))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sockdir / "s"))
    sock.settimeout(0.05)
    slot = cg.slot(f"b{time.monotonic_ns()}")
    with open(os.devnull, "r+b") as null:
        pid, t0 = cg.spawn(slot, argv, dict(env, NOTIFY_SOCKET=str(sockdir / "s")),
                           null.fileno(), logf.fileno(), logf.fileno())
    ready = None
    exited = None
    while ready is None and time.perf_counter() - t0 < BOOT_TIMEOUT:
        try:
            if b"READY=1" in sock.recv(4096).split(b"\n"):
                ready = time.perf_counter() - t0
        except socket.timeout:
            pass
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            exited = os.waitstatus_to_exitcode(status)
            break
    stop = None
    if exited is None:
        t1 = time.perf_counter()
        os.kill(pid, signal.SIGTERM)
        stop, exited, _ = reap(cg, slot, pid, t1)
    else:
        cg.remove(slot)
    sock.close()
    shutil.rmtree(sockdir, ignore_errors=True)
    return ready, stop, exited


def describe(xs, unit="ms", scale=1000, digits=0):
    if not xs:
        return "—"
    q = statistics.quantiles(xs, n=10) if len(xs) >= 10 else [min(xs)] * 8 + [max(xs)]
    f = f".{digits}f"
    return (f"{statistics.median(xs) * scale:{f}} {unit} "
            f"({q[0] * scale:{f}}–{q[-1] * scale:{f}})")


def ratio(a, b):
    return f"{statistics.median(a) / statistics.median(b):.2f}×" if a and b else "—"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nixrun", type=Path)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--boots", type=int, default=10)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("userns.py: run as root (it starts containers)")
    if not shutil.which("systemd-nspawn"):
        sys.exit("userns.py: missing systemd-nspawn (apt-get install systemd-container)")
    nixrun = str(args.nixrun.resolve() if args.nixrun else build_nixrun())
    debian = fixture("debian.sh")
    # As compare.py runs nspawn, and as NixOS's container@.service does.
    env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
    work = Path(tempfile.mkdtemp(prefix="uns-bench.", dir="/var/tmp"))
    cg = Cgroups()
    logf = open(work / "runtimes.log", "ab")
    try:
        names = ["nixrun -U", "nixrun", "systemd-nspawn -U", "systemd-nspawn"]
        roots = {}
        for name in names:
            roots[name] = work / name.replace(" ", "")
            subprocess.run(["cp", "-a", str(debian), str(roots[name])], check=True)

        def argv(name, tail):
            r = str(roots[name])
            u = ["-U"] if "-U" in name else []
            if name.startswith("nixrun"):
                return [nixrun, "-D", r, "-q", "--console=pipe", *u, *tail]
            return [shutil.which("systemd-nspawn"), *NSPAWN[1:], "-D", r, "--console=pipe", *u, *tail]

        times = {n: [] for n in names}
        fails = {n: 0 for n in names}
        log(f"exec /bin/true: {args.rounds} interleaved rounds of {', '.join(names)}")
        for r in range(args.rounds + 3):
            for n in names[r % len(names):] + names[: r % len(names)]:
                dt, rc, left = run_once(cg, argv(n, ["/bin/true"]), env, logf)
                if rc != 0 or left:
                    fails[n] += 1
                elif r >= 3:
                    times[n].append(dt)

        boot = ["--notify-ready=yes", "-b"]
        ready = {n: [] for n in names}
        stop = {n: [] for n in names}
        bfails = {n: 0 for n in names}
        log(f"boot/stop: {args.boots} interleaved cycles of {', '.join(names)}")
        for r in range(args.boots + 1):
            for n in names[r % len(names):] + names[: r % len(names)]:
                rd, st, rc = boot_once(cg, argv(n, boot), env, logf)
                if rd is None or rc != 0:
                    bfails[n] += 1
                elif r >= 1:
                    ready[n].append(rd)
                    stop[n].append(st)

        load = open("/proc/loadavg").read().split()[:3]
        print(f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {' '.join(load)}, "
              f"{os.cpu_count()} cores, kernel {os.uname().release}; medians (p10–p90); "
              f"SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 for both runtimes.\n")
        print(f"| exec `/bin/true` (Debian root), {args.rounds} rounds | wall time | nixrun -U / this | failed |")
        print("|---|---|---|---|")
        for n in names:
            print(f"| {n} | {describe(times[n], 'ms', 1000, 1)} | {ratio(times['nixrun -U'], times[n])} | {fails[n]} |")
        print()
        print(f"| Debian guest, {args.boots} cycles | boot → READY=1 | SIGTERM → exit | nixrun -U / this (boot) | failed |")
        print("|---|---|---|---|---|")
        for n in names:
            print(f"| {n} | {describe(ready[n])} | {describe(stop[n])} | "
                  f"{ratio(ready['nixrun -U'], ready[n])} | {bfails[n]} |")
    finally:
        logf.close()
        cg.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
