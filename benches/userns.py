#!/usr/bin/env python3
"""Benchmarks guests in a user namespace (issue "User namespaces and throw-away
roots"): nixrun -U against systemd-nspawn 252 on this host.

  1. exec latency of `/bin/true` in the Debian root: nixrun, nixrun -U,
     systemd-nspawn and systemd-nspawn -U (nspawn with --keep-unit
     --register=no, as it must run here); wall time until the runtime exited.
     Each runtime has its own copy of the root, so that no run sees a tree
     another one shifted.
  2. boot (spawn -> READY=1 on $NOTIFY_SOCKET) and stop (SIGTERM -> exit) of
     the Debian guest: nixrun -U, nixrun and systemd-nspawn. nspawn -U cannot
     boot a guest on a hybrid-cgroup host (its guest's systemd fails: "Failed to
     create /init.scope control group: Permission denied"): it is tried once
     and its exit reported, not timed.

Runs are interleaved (A B C ... A B C ..., order rotated each round): the
machines are shared and noisy, only ratios from one run mean much. Prints a
markdown table (medians with p10-p90) on stdout, progress on stderr.

Usage (root):  python3 benches/userns.py [--nixrun PATH] [--rounds K] [--boots K]
  --nixrun PATH  binary to measure (default: cargo build --release into
                 target/bench, as compare.py does)
  --rounds K     exec rounds (default 30)
  --boots K      boot/stop cycles per runtime (default 10)

Python standard library only; shares nesting.py's helpers. What it starts it
stops: guests run in cgroups of their own, copies of the fixture in a
temporary directory.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nesting import Cgroup, build_nixrun, fixture, log  # noqa: E402

BOOT_TIMEOUT = 120
NSPAWN = ["systemd-nspawn", "--keep-unit", "--register=no", "-q"]


def run_in_cgroup(argv, env, tag):
    """Runs ARGV to completion in a fresh cgroup; (seconds, exit code)."""
    cg = Cgroup(f"uns-bench-{os.getpid()}-{tag}-{time.monotonic_ns()}")
    t0 = time.perf_counter()
    p = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, preexec_fn=cg.enter)
    dt = time.perf_counter() - t0
    cg.remove()
    return dt, p.returncode, p.stderr.decode(errors="replace")


def boot_once(argv, env, tag, logf):
    """Boots ARGV with its own notify socket; (seconds to READY=1, seconds
    from SIGTERM to exit, exit code), or (None, None, code) if it never got
    ready."""
    sockdir = Path(tempfile.mkdtemp(prefix="uns-bench-notify."))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sockdir / "s"))
    sock.settimeout(0.2)
    cg = Cgroup(f"uns-bench-{os.getpid()}-{tag}-{time.monotonic_ns()}")
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, env=dict(env, NOTIFY_SOCKET=str(sockdir / "s")),
                         stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                         preexec_fn=cg.enter)
    ready = None
    while ready is None and time.perf_counter() - t0 < BOOT_TIMEOUT and p.poll() is None:
        try:
            if b"READY=1" in sock.recv(4096).split(b"\n"):
                ready = time.perf_counter() - t0
        except socket.timeout:
            pass
    stop = None
    if p.poll() is None:
        t1 = time.perf_counter()
        p.terminate()
        try:
            p.wait(60)
            stop = time.perf_counter() - t1
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    sock.close()
    shutil.rmtree(sockdir, ignore_errors=True)
    cg.remove()
    return ready, (stop if ready is not None else None), p.returncode


def describe(xs, unit="ms", scale=1000):
    if not xs:
        return "—"
    q = statistics.quantiles(xs, n=10) if len(xs) >= 10 else [min(xs)] * 8 + [max(xs)]
    return f"{statistics.median(xs) * scale:.0f} {unit} ({q[0] * scale:.0f}–{q[-1] * scale:.0f})"


def ratio(a, b):
    return f"{statistics.median(a) / statistics.median(b):.2f}×" if a and b else "—"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nixrun", type=Path)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--boots", type=int, default=10)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("userns.py: run as root (it starts containers)")
    if not shutil.which("systemd-nspawn"):
        sys.exit("userns.py: missing systemd-nspawn (apt-get install systemd-container)")
    nixrun = str(args.nixrun.resolve() if args.nixrun else build_nixrun())
    debian = fixture("debian.sh")
    env = dict(os.environ, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY="1")
    work = Path(tempfile.mkdtemp(prefix="uns-bench.", dir="/var/tmp"))
    try:
        roots = {}
        for name in ("nixrun", "nixrun -U", "systemd-nspawn", "systemd-nspawn -U"):
            roots[name] = work / name.replace(" ", "")
            subprocess.run(["cp", "-a", str(debian), str(roots[name])], check=True)

        def exec_argv(name):
            r = str(roots[name])
            u = ["-U"] if name.endswith("-U") else []
            if name.startswith("nixrun"):
                return [nixrun, "-D", r, "-q", "--console=pipe", *u, "/bin/true"]
            return [*NSPAWN, "-D", r, "--console=pipe", *u, "/bin/true"]

        names = list(roots)
        times = {n: [] for n in names}
        fails = {n: 0 for n in names}
        log(f"exec /bin/true: {args.rounds} interleaved rounds of {', '.join(names)}")
        for r in range(args.rounds + 2):
            for n in names[r % len(names):] + names[: r % len(names)]:
                dt, rc, err = run_in_cgroup(exec_argv(n), env, "x")
                if rc != 0:
                    fails[n] += 1
                    log(f"  {n}: exit {rc}: {err.strip().splitlines()[-1:] }")
                elif r >= 2:
                    times[n].append(dt)

        def boot_argv(name):
            r = str(roots[name])
            u = ["-U"] if name.endswith("-U") else []
            if name.startswith("nixrun"):
                return [nixrun, "-D", r, "--notify-ready=yes", "--console=pipe", *u, "-b"]
            return [*NSPAWN, "-D", r, "--notify-ready=yes", "--console=pipe", *u, "-b"]

        logs = open(work / "boot.log", "ab")
        nsp_u = boot_once(boot_argv("systemd-nspawn -U"), env, "nspu", logs)
        logs.flush()
        why = [line for line in (work / "boot.log").read_text(errors="replace").splitlines()
               if "init.scope" in line or "Failed to allocate manager" in line]
        log(f"systemd-nspawn -U -b: ready={nsp_u[0]} exit={nsp_u[2]}: {why[:1]}")
        bnames = ["nixrun -U", "nixrun", "systemd-nspawn"]
        ready = {n: [] for n in bnames}
        stop = {n: [] for n in bnames}
        bfails = {n: 0 for n in bnames}
        log(f"boot/stop: {args.boots} interleaved cycles of {', '.join(bnames)}")
        for r in range(args.boots + 1):
            for n in bnames[r % 3:] + bnames[: r % 3]:
                rd, st, rc = boot_once(boot_argv(n), env, "b", logs)
                if rd is None or rc not in (0, None):
                    bfails[n] += 1
                elif r >= 1:
                    ready[n].append(rd)
                    stop[n].append(st)
        logs.close()

        load = open("/proc/loadavg").read().split()[:3]
        print(f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {' '.join(load)}, "
              f"{os.cpu_count()} cores, kernel {os.uname().release}; medians (p10–p90).\n")
        print("| exec `/bin/true` (Debian root) | wall time | ratio to nixrun -U | failed |")
        print("|---|---|---|---|")
        for n in names:
            print(f"| {n} | {describe(times[n])} | {ratio(times['nixrun -U'], times[n])} | {fails[n]} |")
        print()
        print("| Debian guest | boot → READY=1 | SIGTERM → exit | ratio nixrun -U/this (boot) | failed |")
        print("|---|---|---|---|---|")
        for n in bnames:
            print(f"| {n} | {describe(ready[n])} | {describe(stop[n])} | "
                  f"{ratio(ready['nixrun -U'], ready[n])} | {bfails[n]} |")
        print(f"| systemd-nspawn -U | never ready (exit {nsp_u[2]}: "
              f"{why[0].strip() if why else 'see boot.log'}) | – | – | 1 of 1 |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
