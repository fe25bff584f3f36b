#!/usr/bin/env python3
"""Benchmarks sandboxes inside a guest: what the mount guard's fresh procfs
costs (issue "Sandboxes inside the guest").

Measured on this machine, with the booted Debian guest of integration/fixtures:

  1. the round trip of one fresh-procfs mount(2) through the mount guard,
     from a guest process in a new PID namespace (nixrun-probe time-mount
     proc: the call alone), next to a tmpfs mount through the guard (its
     fixed cost) and to the same procfs mount inside an nspawn 252 guest and
     on the host, where no guard is asked;
  2. the exec latency of `unshare -m -p -f --mount-proc true` inside the guest
     (nixrun-probe time-exec), nixrun against systemd-nspawn 252.

Runtimes are measured interleaved (nixrun, nspawn, nixrun, ...), since the
machines are shared and noisy. Prints one table (medians, with the 10th and
90th percentiles) on stdout; progress on stderr. Standalone for now, to be
folded into benches/compare.py.

Usage (root):  python3 benches/nesting.py [--nixrun PATH] [--rounds K] [--count N]
  --nixrun PATH  the binary to measure (default: cargo build --release into
                 target/bench, as compare.py does)
  --rounds K     interleaved rounds per runtime (default 3)
  --count N      mounts or execs per round (default 200 and 50)

Python standard library only. What it starts it stops: each guest is a copy of
the fixture in a temporary directory, each runtime runs in a cgroup of its own
(nspawn needs --keep-unit --register=no on hosts without systemd as PID 1).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "integration" / "fixtures"
BOOT_TIMEOUT = 120


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def fixture(script):
    out = subprocess.run(["bash", str(FIXTURES / script)], stdout=subprocess.PIPE, check=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def build_nixrun():
    env = dict(os.environ, CARGO_TARGET_DIR=str(REPO / "target" / "bench"))
    log("building nixrun (cargo build --release, CARGO_TARGET_DIR=target/bench)")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, env=env, check=True)
    found = sorted((REPO / "target" / "bench").glob("*/release/nixrun"))
    if not found:
        sys.exit("nesting.py: cargo built no nixrun under target/bench")
    return found[0]


def cgroup_roots():
    if Path("/sys/fs/cgroup/unified").is_dir():
        roots = [Path("/sys/fs/cgroup/unified")]
        if Path("/sys/fs/cgroup/systemd").is_dir():
            roots.append(Path("/sys/fs/cgroup/systemd"))
        return roots
    return [Path("/sys/fs/cgroup")]


class Cgroup:
    """A cgroup of our own in every hierarchy nspawn and nixrun look at."""

    def __init__(self, name):
        self.dirs = [r / name for r in cgroup_roots()]
        for d in self.dirs:
            d.mkdir(exist_ok=True)

    def enter(self):
        for d in self.dirs:
            (d / "cgroup.procs").write_text("0")

    def remove(self):
        for d in self.dirs:
            for _ in range(50):
                subs = sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
                for s in subs:
                    try:
                        s.rmdir()
                    except OSError:
                        pass
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)


def other_pidns_child(pid):
    """The child of PID in another PID namespace: the guest's leader."""
    ours = os.readlink("/proc/self/ns/pid")
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            kids = []
        for k in kids:
            try:
                if os.readlink(f"/proc/{k}/ns/pid") != ours:
                    return int(k)
            except OSError:
                pass
        time.sleep(0.05)
    raise RuntimeError(f"no guest leader below {pid}")


class Guest:
    """The Debian guest booted by one runtime, the probe at /nixrun-probe."""

    def __init__(self, runtime, nixrun, debian, probe, work, n):
        self.runtime = runtime
        self.root = work / f"{runtime}-{n}"
        subprocess.run(["cp", "-a", str(debian), str(self.root)], check=True)
        shutil.copy(probe, self.root / "nixrun-probe")
        os.chmod(self.root / "nixrun-probe", 0o755)
        self.cgroup = Cgroup(f"nest-bench-{os.getpid()}-{runtime}-{n}")
        name = f"nest-bench-{runtime}-{n}"
        env = dict(os.environ)
        if runtime == "nixrun":
            argv = [str(nixrun), "-D", str(self.root), "-M", name, "-b", "--register=no", "--console=passive"]
        else:
            argv = ["systemd-nspawn", "-q", "-D", str(self.root), "-M", name, "--keep-unit",
                    "--register=no", "-b", "--console=passive"]
            env["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "1"
        self.log = open(work / f"{name}.log", "w")
        self.proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, preexec_fn=self.cgroup.enter)
        self.leader = other_pidns_child(self.proc.pid)
        deadline = time.time() + BOOT_TIMEOUT
        state = ""
        while time.time() < deadline:
            state = self.enter(["systemctl", "is-system-running"], check=False).strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"{runtime}: guest not up ({state!r}), see {self.log.name}")

    def enter(self, argv, check=True):
        out = subprocess.run(["nsenter", "-t", str(self.leader), "-a", "--"] + argv,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if check and out.returncode != 0:
            raise RuntimeError(f"{self.runtime}: {argv} failed: {out.stderr.strip()}")
        return out.stdout

    def service(self, argv):
        """ARGV as a service of the guest's systemd: with PID 1's seccomp
        filters, so under nixrun its mounts go through the mount guard."""
        return self.enter(["systemd-run", "--wait", "--pipe", "--quiet", "--"] + argv)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        self.cgroup.remove()


def numbers(text):
    return [int(x) for x in text.split()]


def describe(xs, unit="µs"):
    if not xs:
        return "—"
    q = statistics.quantiles(xs, n=10) if len(xs) >= 10 else [min(xs)] * 9
    return f"{statistics.median(xs):.0f} {unit} (p10 {q[0]:.0f}, p90 {q[-1]:.0f}, n={len(xs)})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nixrun", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--count", type=int, default=0, help="mounts/execs per round")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("nesting.py: run as root (it boots containers)")
    for tool in ("systemd-nspawn", "nsenter"):
        if not shutil.which(tool):
            sys.exit(f"nesting.py: missing {tool} (apt-get install systemd-container util-linux)")
    nixrun = args.nixrun.resolve() if args.nixrun else build_nixrun()
    probe = fixture("probe.sh")
    debian = fixture("debian.sh")
    mounts = args.count or 200
    execs = args.count or 50
    results = {k: [] for k in ("nixrun-proc", "nixrun-tmpfs", "nspawn-proc", "host-proc",
                               "nixrun-unshare", "nspawn-unshare", "host-unshare")}
    unshare = ["unshare", "-m", "-p", "-f", "--mount-proc", "true"]
    with tempfile.TemporaryDirectory(prefix="nest-bench.", dir="/var/tmp") as tmp:
        work = Path(tmp)
        for rnd in range(args.rounds):
            for runtime in ("nixrun", "nspawn"):
                log(f"round {rnd + 1}/{args.rounds}: {runtime}")
                g = Guest(runtime, nixrun, debian, probe, work, rnd)
                try:
                    results[f"{runtime}-proc"] += numbers(g.service(["/nixrun-probe", "time-mount", "proc", str(mounts)]))
                    if runtime == "nixrun":
                        results["nixrun-tmpfs"] += numbers(g.service(["/nixrun-probe", "time-mount", "tmpfs", str(mounts)]))
                    results[f"{runtime}-unshare"] += numbers(g.service(["/nixrun-probe", "time-exec", str(execs)] + unshare))
                finally:
                    g.stop()
            # The floor: the host itself, no container, no guard.
            results["host-proc"] += numbers(subprocess.run([str(probe), "time-mount", "proc", str(mounts)],
                                                           stdout=subprocess.PIPE, check=True, text=True).stdout)
            results["host-unshare"] += numbers(subprocess.run([str(probe), "time-exec", str(execs)] + unshare,
                                                              stdout=subprocess.PIPE, check=True, text=True).stdout)

    kernel = os.uname().release
    print(f"Sandboxes inside the guest: nixrun {nixrun} against systemd-nspawn "
          f"({subprocess.run(['systemd-nspawn', '--version'], stdout=subprocess.PIPE, text=True).stdout.split()[1]}), "
          f"kernel {kernel}, {os.cpu_count()} CPUs, {args.rounds} interleaved rounds, the Debian guest.\n")
    print("| measurement | nixrun | systemd-nspawn | host, no container |")
    print("|---|---|---|---|")
    print(f"| fresh procfs mount(2) from a new PID namespace | {describe(results['nixrun-proc'])} | "
          f"{describe(results['nspawn-proc'])} | {describe(results['host-proc'])} |")
    print(f"| tmpfs mount(2) (the guard's fixed cost) | {describe(results['nixrun-tmpfs'])} | — | — |")
    print(f"| `unshare -m -p -f --mount-proc true`, exec to exit | {describe(results['nixrun-unshare'])} | "
          f"{describe(results['nspawn-unshare'])} | {describe(results['host-unshare'])} |")
    n, s = results["nixrun-unshare"], results["nspawn-unshare"]
    if n and s:
        print(f"\nunshare --mount-proc, nixrun/nspawn: {statistics.median(n) / statistics.median(s):.2f}x "
              "(under nspawn the guest mounts an unmasked procfs itself, which nixrun's guard refuses to do)")


if __name__ == "__main__":
    main()
