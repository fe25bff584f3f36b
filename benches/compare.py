#!/usr/bin/env python3
"""Benchmarks nixrun against systemd-nspawn and its peers (bwrap, runc, crun).

This is the project's benchmark command (issue "Benchmarks against
systemd-nspawn and peers").  It measures, on this machine, with the project's own
fixture guests:

  1. exec latency: `/bin/true` in the Debian guest, per runtime, plus the floor
     `unshare -m -p -u -i --fork chroot ROOT /bin/true`;
  2. boot (spawn -> READY=1 on $NOTIFY_SOCKET) and stop (SIGTERM -> exit) of the
     Debian guest and the NixOS-shaped guest, nixrun vs systemd-nspawn;
  2a. ephemeral: boot and stop of the Debian guest with `-x` (nixrun's overlay
     against nspawn's copy of the tree), the trees compared before and after;
  3. the runtime's own memory (RSS, VmHWM, PSS) while a guest runs;
  4. scale: N NixOS-shaped guests started at once (time until all are READY,
     host memory per guest, clean stop), nixrun vs systemd-nspawn;
  5. soak: nixrun alone, 1,000 start/stop cycles of `/bin/true` and 100
     boot/stop cycles of the Debian guest, and what they left on the host
     (mounts, cgroups, processes, lock files, paths in /run);
  6. net: private networking, nixrun vs systemd-nspawn: exec latency of
     `/bin/true` with `--private-network` (against the floor `unshare -n -m -p
     -u -i --fork chroot`), boot/stop of both guests with `-n` (a veth pair),
     and N NixOS-shaped guests with `-n` at once (all READY, and no link
     left afterwards); all inside a network namespace of the benchmark's own
     (`ip netns add nxbench-<pid>`), never the machine's;

comparisons always interleaved (A B A B ...), never all of A then all of B:
the machines are shared and noisy, so only ratios from one interleaved run mean
much.  It writes docs/benchmarks.md and the plot docs/benchmarks-scale.svg.

Usage (root):
    python3 benches/compare.py            # full run, ~10 min on 2 cores, writes docs/
    python3 benches/compare.py --quick    # about a minute, N=10 only, writes
                                          # target/bench/quick/ unless --out
    python3 benches/compare.py --quick --skip exec,boot,scale,soak
                                          # the net part alone, ~40 s
Other options: --nixrun PATH (default: build it with cargo into target/bench),
--out DIR, --scale 10,25,50,100, --exec-rounds K, --boot-cycles K,
--soak-cycles K, --soak-boots K, --net-scale N (default 100, quick 10; the net
part's rounds, cycles and repetitions are --exec-rounds, --boot-cycles,
--scale-reps), --skip PARTS (exec,boot,ephemeral,scale,net,soak; --quick skips soak
unless a --soak-* count is given), --report-only target/bench/results.json
(write the report again, measure nothing).

What it does to the host while it runs, and undoes: cgroups below its own
(nixrun-bench.<pid>), a 16 GiB sparse ext4 image on a loop device under
/var/tmp for the guest roots, higher fs.inotify limits during the scale and
net parts (--keep-sysctl to leave them), and the network namespace
nxbench-<pid> during the net part.  The raw results stay in target/bench/results.json,
the runtimes' output of the last run in target/bench/logs/.

Python standard library only, so it runs on any host the tests run on.
"""

import argparse
import collections
import contextlib
import ctypes
import datetime
import errno
import hashlib
import json
import os
import platform
import random
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_TARGET = REPO / "target" / "bench"
FIXTURES = REPO / "integration" / "fixtures"
NIXOS_INIT = "/nix/var/nix/profiles/system/init"
MIB = 1024 * 1024


def log(*args):
    # Progress goes to stderr, so that a long run shows where it is.
    print(*args, file=sys.stderr, flush=True)


def loadavg():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_busy(interval=1.0):
    """Share of the host's CPU time (all cores) that was busy over INTERVAL."""

    def sample():
        f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = f[3] + f[4]  # idle + iowait
        return sum(f[:8]), idle

    t0, i0 = sample()
    time.sleep(interval)
    t1, i1 = sample()
    return 100.0 * (1 - (i1 - i0) / max(1, t1 - t0))


def cpu_times():
    """(busy, total) jiffies of the host since boot, all cores."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(f[:8]) - f[3] - f[4], sum(f[:8])


# --quick waits less for a calm host (see wait_calm), to stay near a minute.
CALM_LIMIT = {"limit": 15.0}


def wait_calm(limit=None, threshold=25.0):
    """Waits (at most LIMIT seconds) until the host is mostly idle, so that one
    part's aftermath (guests still shutting down, writeback) does not land in
    the next; returns the last busy share.  Others' work on a shared machine
    may keep it busy: then we go on and the report shows the number."""
    end = time.monotonic() + (CALM_LIMIT["limit"] if limit is None else limit)
    busy = cpu_busy()
    while busy > threshold and time.monotonic() < end:
        busy = cpu_busy()
    return busy


def meminfo_all():
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, rest = line.split(":", 1)
        out[name] = int(rest.split()[0]) * (1024 if rest.strip().endswith("kB") else 1)
    return out


def meminfo(field):
    return meminfo_all()[field]


# /proc/meminfo fields whose growth says where a guest's memory goes.
MEM_FIELDS = ("AnonPages", "Shmem", "SUnreclaim", "SReclaimable", "KernelStack", "PageTables", "Cached")


# ---------------------------------------------------------------------------
# cgroups: every runtime instance is started in a cgroup of its own, like a
# systemd unit.  nspawn --keep-unit needs that (it puts payload/ and supervisor/
# into the cgroup it finds itself in); doing the same for every runtime keeps
# the comparison fair.  This host's PID 1 is not systemd, so we play its part:
# create <own cgroup>/nixrun-bench.<pid>/<slot> in the cgroup2 hierarchy and in
# systemd's named v1 hierarchy (hybrid hosts), move ourselves there, spawn, and
# move back.  Moving ourselves (rather than the child after fork) lets us use
# posix_spawn, so that the launcher costs the same tiny amount for everybody.


class Cgroups:
    def __init__(self):
        own = {}
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            hid, ctrl, path = line.split(":", 2)
            if hid == "0" and ctrl == "":
                own["v2"] = path
            elif ctrl == "name=systemd":
                own["systemd"] = path
        mounts = {}
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, right = line.split(" - ", 1)
            fields = left.split()
            fstype, _src, opts = right.split()[:3]
            root, point = fields[3], fields[4]
            if fstype == "cgroup2" and "v2" not in mounts:
                mounts["v2"] = (root, point)
            elif fstype == "cgroup" and "name=systemd" in opts.split(","):
                mounts.setdefault("systemd", (root, point))
        self.dirs = []  # our own cgroup in each hierarchy we manage
        for key in ("v2", "systemd"):
            if key in mounts and key in own:
                root, point = mounts[key]
                rel = os.path.relpath(own[key], root)
                self.dirs.append(Path(point) / ("" if rel == "." else rel))
        if not self.dirs or "v2" not in mounts:
            raise SystemExit("compare.py: no cgroup2 hierarchy mounted (see /proc/self/mountinfo)")
        self.origin = list(self.dirs)
        self.base = [d / f"nixrun-bench.{os.getpid()}" for d in self.dirs]
        for b in self.base:
            b.mkdir()
        # cgroup2 allows no processes in an inner cgroup once controllers are
        # delegated below it: park ourselves in a leaf of our own.
        self.home = self.slot("bench")
        self._enter(self.home)

    def slot(self, name):
        paths = [b / name for b in self.base]
        for p in paths:
            p.mkdir()
        return paths

    def _enter(self, paths):
        for p in paths:
            (p / "cgroup.procs").write_text(str(os.getpid()))

    def spawn(self, slot, argv, env, stdin, stdout, stderr):
        """posix_spawn ARGV inside SLOT; returns (pid, perf_counter at spawn)."""
        self._enter(slot)
        try:
            t0 = time.perf_counter()
            pid = os.posix_spawn(
                argv[0],
                argv,
                env,
                file_actions=[
                    (os.POSIX_SPAWN_DUP2, stdin, 0),
                    (os.POSIX_SPAWN_DUP2, stdout, 1),
                    (os.POSIX_SPAWN_DUP2, stderr, 2),
                ],
                # The scale part runs the launcher at real-time priority (see
                # there); the runtimes themselves always run as normal tasks.
                scheduler=(os.SCHED_OTHER, os.sched_param(0)),
            )
        finally:
            self._enter(self.home)
        return pid, t0

    @staticmethod
    def pids(slot):
        """Every process left anywhere below SLOT, in any hierarchy."""
        out = set()
        for top in slot:
            for d, _subdirs, _files in os.walk(top):
                try:
                    out.update(int(x) for x in (Path(d) / "cgroup.procs").read_text().split())
                except FileNotFoundError:
                    pass
        return out

    @staticmethod
    def subdirs(slot):
        """Cgroups the runtime created below SLOT and left behind (relative)."""
        out = set()
        for top in slot:
            for d, _subdirs, _files in os.walk(top):
                if Path(d) != top:
                    out.add(os.path.relpath(d, top))
        return sorted(out)

    @staticmethod
    def remove(slot):
        """Removes SLOT and everything below it.  A cgroup whose last process
        was just reaped can stay busy for a moment (the kernel still tears the
        dead PID namespace down), hence the retries."""
        for top in slot:
            for d, _subdirs, _files in sorted(os.walk(top), key=lambda w: -len(w[0])):
                for attempt in range(200):
                    try:
                        os.rmdir(d)
                        break
                    except FileNotFoundError:
                        break
                    except OSError as e:
                        if e.errno != errno.EBUSY or attempt == 199:
                            raise
                        time.sleep(0.005)

    def close(self):
        self._enter(self.origin)
        for b in self.base:
            if b.exists():
                for child in b.iterdir():
                    if child.is_dir():
                        self.remove([child])
                b.rmdir()


# ---------------------------------------------------------------------------
# the net part's network namespace: both runtimes make their veths in a
# namespace of the benchmark's own, never in the machine's.

CLONE_NEWNET = 0x40000000


def setns(fd, nstype):
    if hasattr(os, "setns"):  # Python 3.12
        os.setns(fd, nstype)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, nstype) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


class NetNs:
    """`ip netns add nxbench-<pid>`: the net part's "host" network, deleted
    again by close() (on failure and ^C too: the callers' finally).

    The benchmark's own thread joins it (setns, as `nsenter --net=` does) for
    the net part, so that every runtime it spawns starts there, and leaves it
    afterwards.  Not `ip netns exec`: that remounts /sys in a private mount
    namespace and hides /sys/fs/cgroup, and nspawn then fails.  Not an
    `nsenter --net=` prefix either: that is one more exec in every timed run
    (0.6 ms here, against a 3-4 ms floor), which would shrink the exec part's
    ratios."""

    def __init__(self):
        self.name = f"nxbench-{os.getpid()}"
        self.path = Path("/run/netns") / self.name
        self.fd = self.home = None
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        try:
            self.fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            self.home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            self.run("ip", "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def run(self, *argv):
        return subprocess.run(["nsenter", f"--net={self.path}", *argv], capture_output=True, text=True,
                              check=True).stdout

    @contextlib.contextmanager
    def entered(self):
        setns(self.fd, CLONE_NEWNET)
        try:
            yield
        finally:
            setns(self.home, CLONE_NEWNET)

    def links(self):
        """The links in the namespace but lo, with their kind."""
        return sorted(f"{x['ifname']} ({x.get('linkinfo', {}).get('info_kind', '?')})"
                      for x in json.loads(self.run("ip", "-j", "-d", "link", "show") or "[]")
                      if x["ifname"] != "lo")

    def wait_no_links(self, timeout):
        """Polls until no link but lo is left or TIMEOUT passed: (seconds
        waited, links left)."""
        t0 = time.perf_counter()
        left = self.links()
        while left and time.perf_counter() - t0 < timeout:
            time.sleep(0.01)
            left = self.links()
        return time.perf_counter() - t0, left

    def close(self):
        for fd in (self.fd, self.home):
            if fd is not None:
                os.close(fd)
        self.fd = self.home = None
        if self.path.exists():
            subprocess.run(["ip", "netns", "del", self.name])


# nixrun's network journal (src/supervisor/network.rs): what it set up, so the
# next start undoes a killed run's links; removed when it exits.
NIXRUN_NET_JOURNAL = Path("/run/nixrun/network")


# ---------------------------------------------------------------------------
# process helpers


def host_pidns():
    return os.readlink("/proc/self/ns/pid")


def children(pid):
    try:
        kids = set()
        for t in Path(f"/proc/{pid}/task").iterdir():
            kids.update(int(x) for x in (t / "children").read_text().split())
        return kids
    except (FileNotFoundError, ProcessLookupError):
        return set()


def supervisor_pids(pid, pidns):
    """The runtime's own processes: PID and its descendants that live in the
    host's PID namespace.  The guest (its PID 1 and everything below) lives in
    a new PID namespace and is excluded; so is anything it forks."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            if os.readlink(f"/proc/{p}/ns/pid") != pidns:
                continue
        except FileNotFoundError:
            continue
        out.append(p)
        todo.extend(children(p))
    return out


def proc_memory(pid):
    """(VmRSS, VmHWM, Pss) in bytes, or None if the process is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None

    def field(text, name):
        m = re.search(rf"^{name}:\s+(\d+) kB", text, re.M)
        return int(m.group(1)) * 1024 if m else 0

    return field(status, "VmRSS"), field(status, "VmHWM"), field(rollup, "Pss")


def runtime_memory(pid, pidns):
    """Summed (RSS, HWM, PSS, process count) of the runtime's own processes."""
    rss = hwm = pss = n = 0
    for p in supervisor_pids(pid, pidns):
        m = proc_memory(p)
        if m:
            rss, hwm, pss, n = rss + m[0], hwm + m[1], pss + m[2], n + 1
    return rss, hwm, pss, n


def unit_cpu(v2_cgroup):
    """CPU seconds used by everything that ever ran in a cgroup2 cgroup and
    below it (cpu.stat is there even without the cpu controller), or None."""
    try:
        text = (v2_cgroup / "cpu.stat").read_text()
    except FileNotFoundError:
        return None
    for line in text.splitlines():
        if line.startswith("usage_usec "):
            return int(line.split()[1]) / 1e6
    return None


def guest_root_cgroup(slot, pidns):
    """The guest's root cgroup below SLOT, found without knowing the runtime's
    layout: the common ancestor of every cgroup holding a process of another
    PID namespace (the guest's).  Once the guest's systemd runs, those are
    init.scope and its units' cgroups, so the ancestor is the guest's root."""
    dirs = []
    for d, _subdirs, _files in os.walk(slot):
        try:
            pids = (Path(d) / "cgroup.procs").read_text().split()
        except FileNotFoundError:
            continue
        for p in pids:
            try:
                if os.readlink(f"/proc/{p}/ns/pid") != pidns:
                    dirs.append(d)
                    break
            except FileNotFoundError:
                pass
    return Path(os.path.commonpath(dirs)) if dirs else None


def guest_unit_cpu(guest_cgroup):
    """CPU seconds per cgroup below the guest's root cgroup (the guest's
    systemd makes one per unit: init.scope, system.slice/dbus.service, ...)."""
    out = {}
    for d, subdirs, _files in os.walk(guest_cgroup):
        if d != str(guest_cgroup) and not subdirs:
            v = unit_cpu(Path(d))
            if v is not None:
                out[os.path.relpath(d, guest_cgroup)] = v
    total = unit_cpu(Path(guest_cgroup))
    if total is not None:
        # Removed cgroups hand their usage up to the parent, so this is what ran
        # before systemd made its cgroups (NixOS activation, early PID 1) plus
        # units that have finished already.
        out["(rest: before systemd's cgroups, finished units)"] = total - sum(out.values())
    return out


def host_mounts():
    return {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}


def pss_of(pids):
    """Summed PSS of PIDS (bytes); processes that vanished count 0."""
    total = 0
    for p in pids:
        try:
            m = re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{p}/smaps_rollup").read_text(), re.M)
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += int(m.group(1)) * 1024 if m else 0
    return total


def wait_exit(pidfds, deadline):
    """Waits until the processes behind PIDFDS ({pidfd: pid}) exit or DEADLINE
    passes.  Returns {pid: (exit code or -signal, perf_counter at exit)}."""
    done = {}
    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    left = dict(pidfds)
    while left:
        timeout = deadline - time.perf_counter()
        if timeout <= 0:
            break
        for fd, _ev in poller.poll(timeout * 1000):
            now = time.perf_counter()
            pid = left.pop(fd)
            poller.unregister(fd)
            _, status = os.waitpid(pid, 0)
            done[pid] = (os.waitstatus_to_exitcode(status), now)
    return done


# ---------------------------------------------------------------------------
# what a runtime can leave on the host (the soak part compares snapshots)

# nixrun takes nspawn's lock files (src/supervisor/locks.rs) and removes them
# when it exits; the directory itself stays, as nspawn's does.
NSPAWN_LOCKS = Path("/run/systemd/nspawn/locks")

# The soak part's limits per cycle: far beyond what a healthy cycle takes
# (milliseconds for /bin/true, a second or two for a boot), so that only a
# hang fails.
SOAK_EXEC_TIMEOUT = 30
SOAK_READY_TIMEOUT = 60
SOAK_STOP_TIMEOUT = 60
# nixrun sends READY=1 through a socket it opens for the message and closes
# right after (sd_notify does): read at once, 1 cycle in 10 counts that
# socket too.  The supervisor's fds and RSS are read this long after READY=1.
SOAK_SETTLE = 0.1
# What a cycle or a phase can leave behind, as the report names it.
SOAK_CATEGORIES = (("mounts", "host mounts"), ("cgroups", "cgroups"), ("processes", "processes"),
                   ("locks", "lock files"), ("run", "new paths in /run"))



def mount_table():
    """The host's mounts as "mount point fs-type source" (a multiset: mounts
    stack).  Ids change with every mount and say nothing about what is left."""
    out = collections.Counter()
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        fstype, source = right.split()[:2]
        out[f"{left.split()[4]} {fstype} {source}"] += 1
    return out


def run_listing():
    """Every path under /run (symlinks not followed)."""
    out = set()
    for d, dirs, files in os.walk("/run"):
        out.update(os.path.join(d, x) for x in dirs + files)
    return out


def live_procs(pids):
    """{pid: comm} of those PIDS still running.  A zombie (state Z) has exited
    and holds nothing but its exit status for its parent: it does not count."""
    out = {}
    for p in pids:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        comm, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 1:]
        if rest.split()[0] != "Z":
            out[p] = comm
    return out


def fd_count(pid="self"):
    return len(os.listdir(f"/proc/{pid}/fd"))


def no_inherited_fds():
    """Marks every fd above 2 close-on-exec.  Whatever started us may have
    left some open and inheritable (a shell job's pipe, say), and posix_spawn
    would hand them to every runtime we start, where a service manager starts
    a unit with 0-2 only; the runtimes' own fd counts would include them."""
    for fd in os.listdir("/proc/self/fd"):
        try:
            if int(fd) > 2:
                os.set_inheritable(int(fd), False)
        except OSError:  # the directory's own fd, closed by now
            pass


def cgroup_own_dirs():
    """{mount point: our own cgroup's directory} for every mounted cgroup
    hierarchy, v1 controllers included.  The Cgroups helper moves us only in
    cgroup2 and the named systemd hierarchy; nixrun also places containers in
    the v1 devices and pids hierarchies, below whatever cgroup it started in
    there, which for a runtime we start is this one."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hid, ctrl, path = line.split(":", 2)
        own["" if hid == "0" and ctrl == "" else ctrl] = path
    out = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        fields = left.split()
        fstype, _src, opts = right.split()[:3]
        root, point = fields[3], fields[4]
        if fstype == "cgroup2":
            key = ""
        elif fstype == "cgroup":
            opts = set(opts.split(","))
            key = next((k for k in own if k and set(k.split(",")) <= opts), None)
        else:
            continue
        if key is None or key not in own:
            continue
        rel = os.path.relpath(own[key], root)
        out.setdefault(point, Path(point) / ("" if rel == "." else rel))
    return out


def machine_name(root):
    """The machine name nixrun (like nspawn) derives from a root directory's
    name (src/plan.rs, machine_from_dir)."""
    return re.sub(r"[^A-Za-z0-9.]", "-", Path(root).name)[:64].strip("-.")


def soak_count(counts, left):
    """Adds one cycle's leftovers ({category: [item]}) to COUNTS ({category:
    {item: cycles}})."""
    for cat, items in left.items():
        for x in items:
            counts[cat][x] = counts[cat].get(x, 0) + 1


def soak_left(phase):
    """{category: [(item, when)]}: what a soak phase left, after some cycles
    or at its end."""
    out = {}
    for cat, _name in SOAK_CATEGORIES:
        items = [(x, f"after {n} cycle{'s' if n != 1 else ''}")
                 for x, n in sorted(phase["left_cycles"].get(cat, {}).items())]
        out[cat] = items + [(x, "at the end") for x in phase["left_end"].get(cat, [])]
    return out


def soak_failures(phase):
    return len(phase["bad_exit"]) + len(phase.get("not_ready", [])) + len(phase["timeout"])


# ---------------------------------------------------------------------------
# statistics and formatting


def summary(xs):
    if not xs:
        return None
    # The samples are kept for ratio_interval; results.json from before they
    # were kept still reports, without intervals.
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs),
            "samples": list(xs)}


def fmt_ms(s):
    return "–" if s is None else f"{s['median'] * 1000:.1f} ms ({s['min'] * 1000:.1f}–{s['max'] * 1000:.1f})"


def fmt_s(s):
    return "–" if s is None else f"{s['median']:.3f} s ({s['min']:.3f}–{s['max']:.3f})"


def fmt_mib(s):
    return "–" if s is None else f"{s['median'] / MIB:.2f} MiB ({s['min'] / MIB:.2f}–{s['max'] / MIB:.2f})"


def ratio(a, b):
    if a is None or b is None or not b["median"]:
        return None
    return a["median"] / b["median"]


def fmt_ratio(r):
    return "–" if r is None else f"{r:.2f}×"


def ratio_interval(a, b, resamples=2000):
    """A 95 % bootstrap interval of the ratio of medians a/b: each side's
    samples resampled with replacement, independently, RESAMPLES times.  None
    without samples (or with fewer than 5 on a side).  Seeded, so that a
    report regenerated from the same results says the same."""
    xs, ys = (a or {}).get("samples"), (b or {}).get("samples")
    if not xs or not ys or len(xs) < 5 or len(ys) < 5:
        return None
    rng = random.Random(13)
    qs = []
    for _ in range(resamples):
        my = statistics.median(rng.choices(ys, k=len(ys)))
        if my:
            qs.append(statistics.median(rng.choices(xs, k=len(xs))) / my)
    if len(qs) < resamples // 2:
        return None
    qs.sort()
    return qs[int(0.025 * (len(qs) - 1))], qs[int(0.975 * (len(qs) - 1))]


def fmt_ratio_ci(a, b):
    """The ratio of medians a/b with its 95 % bootstrap interval, where the
    samples are there: "0.95× (0.88–1.03)"."""
    q = ratio(a, b)
    ci = ratio_interval(a, b) if q is not None else None
    return fmt_ratio(q) + ("" if ci is None else f" ({ci[0]:.2f}–{ci[1]:.2f})")


def verdict(ok):
    return "not run" if ok is None else "**met**" if ok else "**missed**"


# ---------------------------------------------------------------------------
# the bench


class Bench:
    def __init__(self, args):
        self.args = args
        self.pidns = host_pidns()
        self.base = Path(tempfile.mkdtemp(prefix="nixrun-bench.", dir="/var/tmp"))
        os.chmod(self.base, 0o755)
        self.work, self.loop = self.base / "work", None
        self.work.mkdir()
        self.mount_scratch_fs()
        self.logdir = self.work / "logs"
        self.logdir.mkdir()
        self.devnull = os.open("/dev/null", os.O_RDWR)
        self.cg = Cgroups()
        self.results = {"loadavg": {}, "busy": {}, "unavailable": {}}
        self.nixrun = None
        self.netns = None
        self.env = {
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            # NixOS's container@.service sets this; without it nspawn gives the
            # guest a cgroup v1 layout on this hybrid host (nixrun always gives
            # cgroup2).  Set for every runtime so that the guests match.
            "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1",
        }

    def mount_scratch_fs(self):
        """Guest roots go on a fresh ext4 file system of our own (a sparse image
        on a loop device).  Hundreds of guests create and delete hundreds of
        thousands of files, and on a shared ext4 file system recent deletions
        (ours or anyone's) make inode allocation scan for "recently deleted"
        inodes: in a first profile that was ~20 % of all CPU while 50 guests
        booted.  A fresh file system, where nothing is deleted until the end,
        keeps that out of the numbers; it is still a disk file system, as
        /var/lib/nixos-containers is."""
        img = self.base / "roots.ext4"
        with open(img, "wb") as f:
            f.truncate(16 << 30)
        # Inode tables and journal written now, so that no lazy-init thread
        # writes in the background while we measure.
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(img)],
                       check=True)
        self.loop = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", str(img)],
                                   capture_output=True, text=True, check=True).stdout.strip()
        subprocess.run(["mount", self.loop, str(self.work)], check=True)
        os.chmod(self.work, 0o755)

    def close(self):
        if self.netns:  # bench_net's finally normally did this already
            self.netns.close()
        try:
            self.cg.close()
        except OSError as e:
            log(f"compare.py: could not remove all benchmark cgroups: {e}")
        # Keep the runtimes' output of the last run for a look at failures.
        keep = BENCH_TARGET / "logs"
        shutil.rmtree(keep, ignore_errors=True)
        BENCH_TARGET.mkdir(parents=True, exist_ok=True)
        try:
            shutil.copytree(self.logdir, keep)
        except OSError as e:
            # A full disk must not cost the run its results, nor leave the
            # scratch image mounted.
            log(f"compare.py: could not keep the runtimes' logs in {keep}: {str(e)[:300]}")
        # Deleting the roots one by one would be just the churn the scratch file
        # system avoids for others: drop the whole image instead.
        if self.loop:
            for _ in range(50):
                if subprocess.run(["umount", str(self.work)], stderr=subprocess.DEVNULL).returncode == 0:
                    break
                time.sleep(0.2)
            subprocess.run(["losetup", "--detach", self.loop])
        shutil.rmtree(self.base, ignore_errors=True)

    # -- setup ---------------------------------------------------------------

    def setup(self):
        if self.args.nixrun:
            self.nixrun = str(Path(self.args.nixrun).resolve())
        else:
            log("building nixrun (cargo build --release, CARGO_TARGET_DIR=target/bench)")
            env = dict(os.environ, CARGO_TARGET_DIR=str(BENCH_TARGET))
            subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, env=env, check=True)
            found = sorted(BENCH_TARGET.glob("*/release/nixrun")) or [BENCH_TARGET / "release" / "nixrun"]
            self.nixrun = str(found[0])
        self.results["nixrun_version"] = self.git_describe()
        log("fixtures (integration/fixtures/{debian,nixos}.sh)")
        self.debian = Path(self.fixture("debian.sh"))
        self.nixos = Path(self.fixture("nixos.sh"))
        self.store = self.nixos / "store"
        self.nixos_root = self.nixos / "root"
        # One copy of the Debian guest for all exec runs: they only read it, and
        # a shared copy gives every runtime the same page-cache state.
        self.exec_root = self.copy_debian("exec")
        self.runc_bundle = self.make_bundle(self.exec_root)
        self.results["versions"] = self.versions()

    def git_describe(self):
        def git(*a):
            r = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True)
            return r.stdout.strip()

        dirty = git("status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock")
        return git("rev-parse", "--short", "HEAD") + (" + uncommitted changes in src/" if dirty else "")

    def fixture(self, script):
        out = subprocess.run([str(FIXTURES / script)], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"compare.py: {script} failed:\n{out.stderr}")
        return out.stdout.strip().splitlines()[-1]

    def copy_debian(self, name):
        dst = self.work / name
        subprocess.run(["cp", "-a", "--reflink=auto", f"{self.debian}/.", str(dst)], check=True)
        return dst

    def copy_nixos(self, name):
        dst = self.work / name
        dst.mkdir(parents=True)
        subprocess.run(["cp", "-a", f"{self.nixos_root}/.", str(dst)], check=True)
        return dst

    def make_bundle(self, rootfs):
        """A minimal OCI bundle (runc's own `runc spec` template) whose rootfs is
        the guest, with the namespaces nixrun uses: mount, PID, UTS, IPC, cgroup
        (no network namespace: nixrun shares the host's network by default)."""
        bundle = self.work / "oci-bundle"
        bundle.mkdir()
        if not shutil.which("runc"):
            return bundle
        subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
        spec = json.loads((bundle / "config.json").read_text())
        spec["root"] = {"path": str(rootfs), "readonly": False}
        spec["process"]["terminal"] = False
        spec["process"]["args"] = ["/bin/true"]
        spec["linux"]["namespaces"] = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")]
        (bundle / "config.json").write_text(json.dumps(spec, indent=1))
        return bundle

    def versions(self):
        def first_line(cmd):
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
                return (r.stdout or r.stderr).strip().splitlines()[0]
            except (OSError, IndexError, subprocess.TimeoutExpired):
                return None

        return {
            "nixrun": self.results["nixrun_version"],
            "systemd-nspawn": first_line(["systemd-nspawn", "--version"]),
            "bwrap": first_line(["bwrap", "--version"]),
            "runc": first_line(["runc", "--version"]),
            "crun": first_line(["crun", "--version"]),
            "unshare": first_line(["unshare", "--version"]),
        }

    # -- exec latency ----------------------------------------------------------

    def exec_commands(self):
        """name -> argv factory (iteration number -> argv) for /bin/true."""
        root = str(self.exec_root)
        b = str(self.runc_bundle)
        state = str(self.work / "oci-state")
        cmds = {
            "nixrun": lambda i: [self.nixrun, "-D", root, "-q", "--console=pipe", "/bin/true"],
            "systemd-nspawn": lambda i: [
                "systemd-nspawn", "-D", root, "--keep-unit", "--register=no", "-q",
                "--console=pipe", "/bin/true",
            ],
            # bwrap with the same namespaces as nixrun (mount, PID, UTS, IPC,
            # cgroup); --unshare-all would add network and user namespaces.
            "bwrap": lambda i: [
                "bwrap", "--bind", root, "/", "--proc", "/proc", "--dev", "/dev",
                "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup", "/bin/true",
            ],
            # ... and bwrap exactly as the issue spelled it, for reference.
            "bwrap --unshare-all": lambda i: [
                "bwrap", "--bind", root, "/", "--proc", "/proc", "--dev", "/dev", "--unshare-all", "/bin/true",
            ],
            "runc": lambda i: ["runc", "--root", state, "run", "--bundle", b, f"nb-runc-{i}"],
            "crun": lambda i: ["crun", "--root", state, "run", "--bundle", b, f"nb-crun-{i}"],
            "unshare+chroot (floor)": lambda i: [
                "unshare", "-m", "-p", "-u", "-i", "--fork", "chroot", root, "/bin/true",
            ],
        }
        return self.installed(cmds)

    def installed(self, cmds):
        """CMDS (name -> argv factory) with argv[0] resolved on $PATH; those not
        installed are noted as unavailable and left out."""
        out = {}
        for name, make in cmds.items():
            exe = shutil.which(make(0)[0])
            if not exe:
                self.results["unavailable"][name] = f"`{make(0)[0]}` is not installed"
                continue
            out[name] = (lambda make, exe: lambda i: [exe, *make(i)[1:]])(make, exe)
        return out

    def run_once(self, argv, logname):
        """Runs ARGV to completion in a fresh cgroup.  Returns (seconds until
        the runtime exited AND its cgroup is empty, seconds until it exited, cpu
        seconds of the runtime and its reaped children, exit code, processes
        still there 1 s later).  The cgroup matters: bwrap exits as soon as its
        PID 1 reported the status, while that PID 1 may still be dying; a
        service manager considers a unit done only when its cgroup is empty."""
        slot = self.cg.slot(f"x{time.monotonic_ns()}")
        with open(self.logdir / logname, "ab") as err:
            pid, t0 = self.cg.spawn(slot, argv, self.env, self.devnull, self.devnull, err.fileno())
            _, status, ru = os.wait4(pid, 0)
            t_exit = time.perf_counter()
        left = self.cg.pids(slot)
        while left and time.perf_counter() - t_exit < 1:
            left = self.cg.pids(slot)
        t_empty = time.perf_counter()
        self.cg.remove(slot)
        return (t_empty - t0, t_exit - t0, ru.ru_utime + ru.ru_stime, os.waitstatus_to_exitcode(status), left)

    def bench_exec(self, rounds, warmup):
        self.results["exec"] = self.exec_rounds(self.exec_commands(), rounds, warmup, "exec")
        self.results["phases"] = self.exec_phases(max(20, rounds // 2))

    def phase_run(self, argv, env):
        """One run of ARGV (a nixrun with NIXRUN_PHASE_TIMES=1 in ENV) in a
        cgroup of its own: [(phase, seconds)], each phase its mark minus the
        one before (the first minus the spawn), then `exit` (the last mark to
        the exit) and `total`."""
        slot = self.cg.slot(f"p{time.monotonic_ns()}")
        r, w = os.pipe()
        self.cg._enter(slot)
        try:
            t0 = time.monotonic_ns()
            pid = os.posix_spawn(argv[0], argv, env, file_actions=[
                (os.POSIX_SPAWN_DUP2, self.devnull, 0), (os.POSIX_SPAWN_DUP2, self.devnull, 1),
                (os.POSIX_SPAWN_DUP2, w, 2)])
        finally:
            self.cg._enter(self.cg.home)
        os.close(w)
        with os.fdopen(r, errors="replace") as f:
            text = f.read()
        os.waitpid(pid, 0)
        t1 = time.monotonic_ns()
        self.cg.remove(slot)
        prev, row = t0, []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == "nixrun-phase":
                row.append((parts[1], (int(parts[2]) - prev) / 1e9))
                prev = int(parts[2])
        row.append(("exit", (t1 - prev) / 1e9))
        row.append(("total", (t1 - t0) / 1e9))
        return row

    def exec_phases(self, runs):
        """Where nixrun's `/bin/true` start goes: RUNS runs with
        NIXRUN_PHASE_TIMES=1 (src/phase.rs: one `nixrun-phase NAME NS` line per
        phase boundary, CLOCK_MONOTONIC), each phase = its mark minus the one
        before (the first minus the spawn; `exit` = the last mark to the exit).
        Medians per phase, in the order nixrun passes them."""
        argv = self.exec_commands()["nixrun"](0)
        env = dict(self.env, NIXRUN_PHASE_TIMES="1")
        phases = {}
        log(f"exec phases: {runs} runs of nixrun with NIXRUN_PHASE_TIMES=1")
        for _ in range(runs + 3):
            row = self.phase_run(argv, env)
            if _ >= 3:  # warm-up
                for name, dt in row:
                    phases.setdefault(name, []).append(dt)
        return {name: statistics.median(v) for name, v in phases.items()}

    def exec_rounds(self, cmds, rounds, warmup, part):
        """ROUNDS interleaved rounds (after WARMUP untimed ones) of CMDS (name ->
        argv factory), each run to completion by run_once; PART names the logs
        and the load figures.  Returns {name: summaries} for those that work."""
        names = []
        for name, make in cmds.items():
            # Available = it runs /bin/true here and exits 0.
            _, _, _, rc, _ = self.run_once(make(0), f"{part}-{name}.log")
            if rc == 0:
                names.append(name)
            else:
                lines = (self.logdir / f"{part}-{name}.log").read_text(errors="replace").strip().splitlines()
                why = lines[-1] if lines else f"exit status {rc}"
                self.results["unavailable"][name] = f"fails on this host: `{why}` (exit {rc})"
                log(f"  {name}: unavailable: {why}")
        times = {n: [] for n in names}
        exits = {n: [] for n in names}
        cpu = {n: [] for n in names}
        failures = {n: 0 for n in names}
        self.results["busy"][part] = wait_calm()
        self.results["loadavg"][part] = [loadavg()]
        log(f"{part} latency: {rounds} interleaved rounds of {', '.join(names)}")
        for r in range(warmup + rounds):
            # Rotate the order every round: interleaved, and no runtime always
            # runs right after the same neighbour.
            order = names[r % len(names):] + names[: r % len(names)]
            for n in order:
                dt, de, c, rc, left = self.run_once(cmds[n](r + 1), f"{part}-{n}.log")
                if rc != 0 or left:
                    failures[n] += 1
                if r >= warmup:
                    times[n].append(dt)
                    exits[n].append(de)
                    cpu[n].append(c)
        self.results["loadavg"][part].append(loadavg())
        return {
            n: {"time": summary(times[n]), "exit": summary(exits[n]), "cpu": summary(cpu[n]),
                "failures": failures[n]}
            for n in names
        }

    # -- boot / stop / memory ----------------------------------------------------

    def boot_argv(self, runtime, guest, root, extra=()):
        """EXTRA: more flags for either runtime (the net part's `-n -M NAME`)."""
        if runtime == "nixrun":
            base = [self.nixrun, "-D", str(root), "--notify-ready=yes", *extra]
        else:
            base = [shutil.which("systemd-nspawn"), "-D", str(root), "--keep-unit", "--register=no",
                    "--notify-ready=yes", *extra]
        if guest == "debian":
            return base + ["-b"]
        return base + ["--kill-signal=SIGRTMIN+3", f"--bind-ro={self.store}:/nix/store", NIXOS_INIT]

    def start(self, argv, tag, slot):
        """Starts one runtime instance with its own notify socket."""
        sockdir = Path(tempfile.mkdtemp(dir=self.work, prefix="notify."))
        path = sockdir / "s"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        sock.bind(str(path))
        env = dict(self.env, NOTIFY_SOCKET=str(path))
        with open(self.logdir / f"{tag}.log", "ab") as out:
            pid, t0 = self.cg.spawn(slot, argv, env, self.devnull, out.fileno(), out.fileno())
        return {"pid": pid, "pidfd": os.pidfd_open(pid), "t0": t0, "sock": sock, "sockdir": sockdir,
                "slot": slot, "ready": None, "status": None, "tag": tag, "guest_cg": None,
                "cpu_unit": None, "cpu_runtime": None}

    def drain(self, inst, now):
        """Reads INST's pending notify datagrams; notes STATUS (setup done, the
        guest's init is about to run) and READY=1 times."""
        while True:
            try:
                msg = inst["sock"].recv(65536).decode(errors="replace").split("\n")
            except BlockingIOError:
                return
            if inst["status"] is None and any(m.startswith("STATUS=") for m in msg):
                inst["status"] = now - inst["t0"]
            if inst["ready"] is None and "READY=1" in msg:
                inst["ready"] = now - inst["t0"]
                # CPU the unit (runtime + guest) and the guest alone used to
                # get here; the difference is the runtime's (its helpers too).
                inst["cpu_unit"] = unit_cpu(inst["slot"][0])
                inst["guest_cg"] = guest_root_cgroup(inst["slot"][0], self.pidns)
                guest = inst["guest_cg"] and unit_cpu(inst["guest_cg"])
                if inst["cpu_unit"] is not None and guest is not None:
                    inst["cpu_runtime"] = inst["cpu_unit"] - guest

    def wait_ready(self, insts, timeout):
        """Polls the notify sockets until every instance said READY=1, one died,
        or TIMEOUT passed (or memory ran short)."""
        poller = select.poll()
        byfd = {}
        for inst in insts:
            poller.register(inst["sock"].fileno(), select.POLLIN)
            byfd[inst["sock"].fileno()] = inst
            poller.register(inst["pidfd"], select.POLLIN)
            byfd[inst["pidfd"]] = inst
        deadline = time.perf_counter() + timeout
        dead = set()
        low_memory = False
        while any(i["ready"] is None and i["pid"] not in dead for i in insts):
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            for fd, _ev in poller.poll(min(left, 0.5) * 1000):
                now = time.perf_counter()
                inst = byfd[fd]
                if fd == inst["pidfd"]:
                    dead.add(inst["pid"])
                    poller.unregister(fd)
                else:
                    self.drain(inst, now)
            if meminfo("MemAvailable") < 1024 * MIB:
                low_memory = True
                break
        return low_memory

    def stop(self, insts, timeout):
        """SIGTERM to every instance at once; returns per-instance (exit code,
        seconds from SIGTERM to exit); stragglers are SIGKILLed and get None."""
        t0 = time.perf_counter()
        for inst in insts:
            try:
                os.kill(inst["pid"], signal.SIGTERM)
            except ProcessLookupError:
                pass
        done = wait_exit({i["pidfd"]: i["pid"] for i in insts}, t0 + timeout)
        for inst in insts:
            if inst["pid"] not in done:
                os.kill(inst["pid"], signal.SIGKILL)
                os.waitpid(inst["pid"], 0)
            rc, t = done.get(inst["pid"], (None, None))
            inst["rc"] = rc
            inst["stop"] = None if t is None else t - t0
        return insts

    @staticmethod
    def release(inst):
        """Closes what start() opened for INST (not its cgroup)."""
        os.close(inst["pidfd"])
        inst["sock"].close()
        shutil.rmtree(inst["sockdir"], ignore_errors=True)

    def cleanup(self, insts, mounts_before):
        """Closes sockets; reports what the instances left on the host:
        processes in their cgroups, cgroups they created, host mounts."""
        procs, cgroups = 0, set()
        for inst in insts:
            self.release(inst)
            left = self.cg.pids(inst["slot"])
            for p in left:  # leave nothing running, whatever the runtime did
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            procs += len(left)
            cgroups.update(self.cg.subdirs(inst["slot"]))
            time.sleep(0.05 if left else 0)
            self.cg.remove(inst["slot"])
        # Only mounts that can be ours: others' work on this shared machine
        # mounts things too.
        ours = (str(self.work), str(self.store), "/run/systemd/nspawn", "/run/host", "/run/nixrun")
        mounts = sorted(m for m in host_mounts() - mounts_before if m.startswith(ours))
        return {"processes": procs, "cgroups": sorted(cgroups), "mounts": mounts}

    def boot_cycle(self, runtime, guest, root, tag, extra=(), on_ready=None):
        """One boot/stop; ON_READY() is called while the guest runs (after the
        memory look), its value kept as "on_ready"."""
        mounts_before = host_mounts()
        slot = self.cg.slot(tag)
        inst = self.start(self.boot_argv(runtime, guest, root, extra), tag, slot)
        self.wait_ready([inst], 60)
        mem = None
        if inst["ready"] is not None:
            # Let the guest settle, then look at the runtime while the guest runs.
            time.sleep(self.args.settle)
            mem = runtime_memory(inst["pid"], self.pidns)
        seen = on_ready() if on_ready and inst["ready"] is not None else None
        self.stop([inst], 60)
        left = self.cleanup([inst], mounts_before)
        return {"ready": inst["ready"], "setup": inst["status"], "stop": inst["stop"], "rc": inst["rc"],
                "mem": mem, "left": left, "cpu_unit": inst["cpu_unit"], "cpu_runtime": inst["cpu_runtime"],
                "on_ready": seen}

    def bench_boot(self, cycles):
        self.results["boot"] = {}
        self.results["busy"]["boot"] = wait_calm()
        self.results["loadavg"]["boot"] = [loadavg()]
        for guest in ("debian", "nixos"):
            roots = {}
            for rt in ("nixrun", "systemd-nspawn"):
                name = f"boot-{guest}-{rt.split('-')[-1]}"
                roots[rt] = self.copy_debian(name) if guest == "debian" else self.copy_nixos(name)
            runs = {rt: [] for rt in roots}
            # One untimed boot per runtime on a throwaway root first: otherwise the
            # first runtime's first boot pays for reading the guest into the page
            # cache and the second one's does not.
            for rt in roots:
                scratch = f"warm-{guest}-{rt.split('-')[-1]}"
                wroot = self.copy_debian(scratch) if guest == "debian" else self.copy_nixos(scratch)
                self.boot_cycle(rt, guest, wroot, scratch)
            log(f"boot/stop {guest}: 1 first boot + {cycles} cycles, nixrun and nspawn interleaved")
            for c in range(cycles + 1):
                order = list(roots) if c % 2 == 0 else list(reversed(roots))
                for rt in order:
                    r = self.boot_cycle(rt, guest, roots[rt], f"boot-{guest}-{rt}-{c}")
                    runs[rt].append(r)
                    if r["ready"] is None or r["rc"] != 0:
                        log(f"  {rt} {guest} cycle {c}: ready={r['ready']} rc={r['rc']} "
                            f"(log: {self.logdir}/boot-{guest}-{rt}-{c}.log)")
            self.results["boot"][guest] = {rt: self.boot_stats(rs) for rt, rs in runs.items()}
            for rt, root in roots.items():
                # nspawn (--link-journal=auto) creates /var/log/journal in the guest, so its
                # journald writes to disk; without it journald keeps the journal in /run (tmpfs,
                # memory that cannot be reclaimed).
                persistent = (root / "var/log/journal").is_dir()
                self.results["boot"][guest][rt]["journal"] = (
                    "persistent (/var/log/journal)" if persistent else "volatile (/run/log/journal, tmpfs)")
        self.results["loadavg"]["boot"].append(loadavg())

    @staticmethod
    def boot_stats(runs):
        first, rest = runs[0], runs[1:]
        ok = [r for r in rest if r["ready"] is not None]
        return {
            "first_ready": first["ready"],
            "ready": summary([r["ready"] for r in ok]),
            "setup": summary([r["setup"] for r in ok if r["setup"] is not None]),
            "guest": summary([r["ready"] - r["setup"] for r in ok if r["setup"] is not None]),
            "stop": summary([r["stop"] for r in ok if r["stop"] is not None]),
            "cpu_unit": summary([r["cpu_unit"] for r in ok if r["cpu_unit"] is not None]),
            "cpu_runtime": summary([r["cpu_runtime"] for r in ok if r["cpu_runtime"] is not None]),
            "rss": summary([r["mem"][0] for r in ok if r["mem"]]),
            "hwm": summary([r["mem"][1] for r in ok if r["mem"]]),
            "pss": summary([r["mem"][2] for r in ok if r["mem"]]),
            "procs": max((r["mem"][3] for r in ok if r["mem"]), default=0),
            "cycles": len(rest),
            "not_ready": len(rest) - len(ok) + (first["ready"] is None),
            "bad_exit": sum(r["rc"] != 0 for r in runs),
            "leftover_procs": sum(r["left"]["processes"] for r in runs),
            "leftover_cgroups": sorted({c for r in runs for c in r["left"]["cgroups"]}),
            "leftover_mounts": sorted({m for r in runs for m in r["left"]["mounts"]}),
        }

    # -- ephemeral ------------------------------------------------------------------

    def bench_ephemeral(self, cycles):
        """Boot/stop of the Debian guest with -x (nixrun: an overlay with a tmpfs
        upper layer; nspawn 252 on this ext4: a full copy of the tree next to it,
        removed at exit), interleaved; the tree is compared before and after."""
        self.results["busy"]["ephemeral"] = wait_calm()
        self.results["loadavg"]["ephemeral"] = [loadavg()]
        roots = {rt: self.copy_debian(f"eph-debian-{rt.split('-')[-1]}") for rt in ("nixrun", "systemd-nspawn")}
        before = {rt: tree_summary(root) for rt, root in roots.items()}
        beside = sorted(os.listdir(self.work))
        for rt in roots:
            scratch = f"warm-eph-{rt.split('-')[-1]}"
            self.boot_cycle(rt, "debian", self.copy_debian(scratch), scratch, extra=("-x",))
        log(f"ephemeral boot/stop debian: 1 first boot + {cycles} cycles, nixrun and nspawn interleaved")
        runs = {rt: [] for rt in roots}
        for c in range(cycles + 1):
            order = list(roots) if c % 2 == 0 else list(reversed(roots))
            for rt in order:
                r = self.boot_cycle(rt, "debian", roots[rt], f"eph-debian-{rt}-{c}", extra=("-x",))
                runs[rt].append(r)
                if r["ready"] is None or r["rc"] != 0:
                    log(f"  {rt} -x cycle {c}: ready={r['ready']} rc={r['rc']} "
                        f"(log: {self.logdir}/eph-debian-{rt}-{c}.log)")
        out = {}
        left_beside = sorted(set(os.listdir(self.work)) - set(beside) - {f"warm-eph-{rt.split('-')[-1]}" for rt in roots})
        for rt, root in roots.items():
            out[rt] = self.boot_stats(runs[rt])
            out[rt]["tree_unchanged"] = tree_summary(root) == before[rt]
        out["left_beside"] = left_beside
        self.results["ephemeral"] = out
        self.results["loadavg"]["ephemeral"].append(loadavg())

    # -- scale ----------------------------------------------------------------------

    def scale_run(self, runtime, n, rep, part="scale", extra=lambda i: (), on_ready=None):
        """Starts N NixOS-shaped guests at once under RUNTIME, waits for all
        READY=1, measures, stops them all at once.  PART prefixes the roots,
        cgroups and logs; EXTRA(i) gives guest i's extra runtime flags;
        ON_READY() is called once all are up and measured (kept as "on_ready")."""
        short = "a" if runtime == "nixrun" else "s"
        roots = [self.copy_nixos(f"{part}-{short}{n}r{rep}/{short}{n}r{rep}g{i:03d}") for i in range(n)]
        slots = [self.cg.slot(f"{part}-{short}{n}r{rep}g{i:03d}") for i in range(n)]
        busy_before = wait_calm()
        mounts_before = host_mounts()
        mem_before = meminfo_all()
        avail_before = mem_before["MemAvailable"]
        load_before = loadavg()
        cpu0 = cpu_times()
        # "Started at once": the first guests boot while we spawn the rest, and
        # a normal-priority launcher would get 1/N of the CPU and stretch the
        # spawning out over seconds (seen: 7-9 s for 50 nspawns).  Like a
        # service manager starting N units, spawn them all first: as a
        # real-time task for the loop (the children are reset to normal).
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        try:
            t0 = time.perf_counter()
            insts = [self.start(self.boot_argv(runtime, "nixos", r, extra(i)), f"{part}-{short}{n}r{rep}g{i:03d}", s)
                     for i, (r, s) in enumerate(zip(roots, slots))]
        finally:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        low_memory = self.wait_ready(insts, 60 + 2 * n)
        cpu1 = cpu_times()
        readies = [i["ready"] for i in insts if i["ready"] is not None]
        # From the first spawn to the last READY=1 (each "ready" counts from its own spawn).
        all_ready = max(i["t0"] + i["ready"] for i in insts) - t0 if len(readies) == n else None
        spawn_span = insts[-1]["t0"] - t0
        time.sleep(self.args.settle * 4)  # measure a settled host, not one mid-boot
        mem_after = meminfo_all()
        avail_after = mem_after["MemAvailable"]
        mem = [runtime_memory(i["pid"], self.pidns) for i in insts]
        unit_pss = sum(pss_of(self.cg.pids(i["slot"][:1])) for i in insts)
        per_unit = {}
        for i in insts:
            for unit, v in (guest_unit_cpu(i["guest_cg"]) if i["guest_cg"] else {}).items():
                per_unit.setdefault(unit, []).append(v)
        seen = on_ready() if on_ready else None
        self.stop(insts, 60 + n)
        rcs = [i["rc"] for i in insts]
        stops = [i["stop"] for i in insts if i["stop"] is not None]
        left = self.cleanup(insts, mounts_before)
        return {
            "runtime": runtime,
            "n": n,
            "ready_count": len(readies),
            "all_ready": all_ready,
            "ready_median": statistics.median(readies) if readies else None,
            "spawn_span": spawn_span,
            "mem_per_guest": (avail_before - avail_after) / n,
            "rss_sum": sum(m[0] for m in mem),
            "pss_sum": sum(m[2] for m in mem),
            "unit_pss_per_guest": unit_pss / n,
            # median over the guests; a unit that ran in only some guests counts 0 in the others
            "unit_cpu": {u: statistics.median(vs + [0.0] * (n - len(vs))) for u, vs in per_unit.items()},
            "meminfo_per_guest": {f: (mem_after[f] - mem_before[f]) / n for f in MEM_FIELDS},
            "cpu_unit_per_guest": statistics.median([i["cpu_unit"] for i in insts if i["cpu_unit"] is not None]
                                                    or [0]),
            "cpu_runtime_per_guest": statistics.median(
                [i["cpu_runtime"] for i in insts if i["cpu_runtime"] is not None] or [0]),
            "rss_per_instance": statistics.median([m[0] for m in mem]) if mem else None,
            "exit0": sum(rc == 0 for rc in rcs),
            "all_stopped": max(stops) if len(stops) == n else None,
            "left": left,
            "low_memory": low_memory,
            "load_before": load_before,
            "busy_before": busy_before,
            # If booting N guests were CPU-bound this would be ~100 %; less means
            # they also waited on something else (locks, I/O, RCU grace periods).
            "busy_booting": 100.0 * (cpu1[0] - cpu0[0]) / max(1, cpu1[1] - cpu0[1]),
            "load_after": loadavg(),
            "on_ready": seen,
        }

    def raise_inotify(self):
        """Every guest's systemd, journald, logind, dbus... takes inotify
        instances, and without user namespaces all guests are host root and
        share root's quota: at the kernel's default of 128 instances, guests
        beyond about 25 fail to boot, under nspawn and nixrun alike (seen:
        "Failed to create inotify object: Too many open files").  Hosts that run
        many containers raise this (Proxmox ships 65536); we raise it for the
        scale part and put the old values back afterwards."""
        changed = {}
        for name, want in (("max_user_instances", 8192), ("max_user_watches", 1048576)):
            path = Path("/proc/sys/fs/inotify") / name
            old = int(path.read_text())
            if old < want:
                path.write_text(str(want))
                changed[name] = (old, want)
        return changed

    @staticmethod
    def restore_inotify(changed):
        for name, (old, ours) in changed.items():
            path = Path("/proc/sys/fs/inotify") / name
            if int(path.read_text()) == ours:  # unless someone else changed it since
                path.write_text(str(old))

    def bench_scale(self, ns, reps):
        changed = {} if self.args.keep_sysctl else self.raise_inotify()
        self.results["inotify"] = {k: list(v) for k, v in changed.items()}
        try:
            self._bench_scale(ns, reps)
        finally:
            self.restore_inotify(changed)

    def _bench_scale(self, ns, reps):
        self.results["scale"] = {"nixrun": [], "systemd-nspawn": []}
        self.results["loadavg"]["scale"] = [loadavg()]
        per_guest = 64 * MIB  # first guess, replaced by what we measure
        for n in ns:
            need = n * per_guest * 2 + 2048 * MIB
            if meminfo("MemAvailable") < need:
                self.results["scale_stopped"] = (
                    f"stopped before N={n}: MemAvailable {meminfo('MemAvailable') // MIB} MiB < "
                    f"{need // MIB} MiB (2× the measured per-guest memory + 2 GiB)")
                log("  " + self.results["scale_stopped"])
                break
            # Big N take long and vary less: once is enough there.
            n_reps = reps if n <= 50 else 1
            for rep in range(n_reps):
                order = ["nixrun", "systemd-nspawn"]
                if (len(self.results["scale"]["nixrun"]) + rep) % 2:
                    order.reverse()
                for rt in order:
                    log(f"scale: N={n} {rt} (rep {rep + 1}/{n_reps})")
                    r = self.scale_run(rt, n, rep)
                    log(f"  ready {r['ready_count']}/{n} all by {r['all_ready']}, "
                        f"{r['mem_per_guest'] / MIB:.1f} MiB/guest, exit 0: {r['exit0']}/{n}")
                    self.results["scale"][rt].append(r)
                    per_guest = max(per_guest, r["mem_per_guest"])
                    if r["low_memory"]:
                        self.results["scale_stopped"] = f"stopped at N={n}: MemAvailable fell below 1 GiB"
                        return
        self.results["loadavg"]["scale"].append(loadavg())

    # -- private network ----------------------------------------------------------------

    def bench_net(self, rounds, warmup, cycles, n, reps):
        """The exec, boot and scale measurements again with a private network:
        `--private-network` (a network namespace with only lo) for exec, `-n`
        (a veth pair ve-NAME / host0) for boot and scale, nixrun vs
        systemd-nspawn, interleaved, all inside a network namespace of the
        benchmark's own."""
        missing = [t for t in ("ip", "nsenter") if not shutil.which(t)]
        if missing:
            self.results["unavailable"]["net"] = f"`{'`, `'.join(missing)}` not installed (iproute2, util-linux)"
            log("net: skipped, " + self.results["unavailable"]["net"])
            return
        net = self.results["net"] = {"rounds": rounds, "warmup": warmup, "cycles": cycles, "n": n, "reps": reps}
        self.netns = NetNs()
        net["netns"] = self.netns.name
        try:
            with self.netns.entered():
                net["exec"] = self.exec_rounds(self.net_exec_commands(), rounds, warmup, "net-exec")
                net["boot"] = self.net_boot(cycles)
                if n:
                    net["scale"] = self.net_scale(n, reps)
            net["links_at_end"] = self.netns.links()
        finally:
            self.netns.close()
            self.netns = None
        net["netns_removed"] = not Path("/run/netns", net["netns"]).exists()

    def net_exec_commands(self):
        root = str(self.exec_root)
        nspawn = ["systemd-nspawn", "-D", root, "--keep-unit", "--register=no", "-q", "--console=pipe"]
        cmds = {
            "nixrun --private-network": lambda i: [
                self.nixrun, "-D", root, "-q", "--console=pipe", "--private-network", "/bin/true"],
            "systemd-nspawn --private-network": lambda i: [*nspawn, "--private-network", "/bin/true"],
            "unshare -n +chroot (floor)": lambda i: [
                "unshare", "-n", "-m", "-p", "-u", "-i", "--fork", "chroot", root, "/bin/true"],
            # For reference, what the network namespace costs: the same without it.
            "nixrun (no private network)": lambda i: [self.nixrun, "-D", root, "-q", "--console=pipe", "/bin/true"],
            "unshare +chroot (no -n)": lambda i: [
                "unshare", "-m", "-p", "-u", "-i", "--fork", "chroot", root, "/bin/true"],
        }
        return self.installed(cmds)

    def net_left(self, names, timeout):
        """After instances with machine NAMES exited: waits up to TIMEOUT s
        for the namespace to have no link but lo; notes what is left there and
        nixrun's network journals.  Returns (seconds waited, {"links": [...],
        "journals": [...]})."""
        waited, links = self.netns.wait_no_links(timeout)
        journals = [str(NIXRUN_NET_JOURNAL / x) for x in names if (NIXRUN_NET_JOURNAL / x).exists()]
        return waited, {"links": links, "journals": journals}

    def net_boot(self, cycles):
        out = {}
        self.results["busy"]["net-boot"] = wait_calm()
        self.results["loadavg"]["net-boot"] = [loadavg()]
        for guest in ("debian", "nixos"):
            g = guest[0]
            roots = {}
            for rt in ("nixrun", "systemd-nspawn"):
                name = f"net-{guest}-{rt.split('-')[-1]}"
                roots[rt] = self.copy_debian(name) if guest == "debian" else self.copy_nixos(name)
            runs = {rt: [] for rt in roots}
            # Untimed, for the page cache (as the boot part); --quick relies on
            # the boot part's boots of the same guests, to stay near a minute.
            warm = not (self.args.quick and "boot" in self.results)
            self.results["net"]["warm"] = warm
            for rt in (roots if warm else []):
                scratch = f"netwarm-{guest}-{rt.split('-')[-1]}"
                wroot = self.copy_debian(scratch) if guest == "debian" else self.copy_nixos(scratch)
                name = f"nx{g}w"
                self.boot_cycle(rt, guest, wroot, scratch, ["-n", f"--machine={name}"])
                self.net_left([name], 2)
            log(f"net boot/stop {guest} with -n: 1 first boot + {cycles} cycles, nixrun and nspawn interleaved")
            for c in range(cycles + 1):
                # One name per cycle, the same for both runtimes: ve-nxd3 for nixrun, then for nspawn.
                name = f"nx{g}{c}"
                order = list(roots) if c % 2 == 0 else list(reversed(roots))
                for rt in order:
                    tag = f"net-boot-{guest}-{rt}-{c}"
                    r = self.boot_cycle(rt, guest, roots[rt], tag, ["-n", f"--machine={name}"],
                                        self.netns.links)
                    r["links_gone"], r["net_left"] = self.net_left([name], 1)
                    runs[rt].append(r)
                    want = [f"ve-{name} (veth)"]
                    r["veth_ok"] = r["on_ready"] == want
                    if r["ready"] is None or r["rc"] != 0 or any(r["net_left"].values()) or not r["veth_ok"]:
                        log(f"  {rt} {guest} -n cycle {c}: ready={r['ready']} rc={r['rc']} "
                            f"links while up={r['on_ready']} left={r['net_left']} (log: {self.logdir}/{tag}.log)")
            out[guest] = {}
            for rt, rs in runs.items():
                st = out[guest][rt] = self.boot_stats(rs)
                st["net_left"] = {k: sorted({x for r in rs for x in r["net_left"][k]})
                                  for k in ("links", "journals")}
                st["net_left_cycles"] = sum(any(r["net_left"].values()) for r in rs)
                # Cycles that were READY and had exactly their ve-NAME in the namespace.
                st["veth_ok"] = sum(r["veth_ok"] for r in rs)
                st["veth_bad"] = sorted({x for r in rs if not r["veth_ok"] for x in r["on_ready"] or []})
        self.results["loadavg"]["net-boot"].append(loadavg())
        return out

    def net_scale(self, n, reps):
        changed = {} if self.args.keep_sysctl else self.raise_inotify()
        self.results.setdefault("inotify", {}).update({k: list(v) for k, v in changed.items()})
        out = {"nixrun": [], "systemd-nspawn": []}
        self.results["loadavg"]["net-scale"] = [loadavg()]
        try:
            per_guest = max([x["mem_per_guest"] for rs in self.results.get("scale", {}).values() for x in rs]
                            + [64 * MIB])
            need = n * per_guest * 2 + 2048 * MIB
            if meminfo("MemAvailable") < need:
                out["stopped"] = (f"not run: MemAvailable {meminfo('MemAvailable') // MIB} MiB < {need // MIB} MiB "
                                  "(2× the per-guest memory + 2 GiB)")
                log("  net scale " + out["stopped"])
                return out
            names = [f"nxs{i:03d}" for i in range(n)]
            for rep in range(reps):
                order = ["nixrun", "systemd-nspawn"] if rep % 2 == 0 else ["systemd-nspawn", "nixrun"]
                for rt in order:
                    log(f"net scale: N={n} {rt} with -n (rep {rep + 1}/{reps})")
                    r = self.scale_run(rt, n, rep, "net-scale", lambda i: ["-n", f"--machine={names[i]}"],
                                       self.netns.links)
                    r["links_gone"], r["net_left"] = self.net_left(names, 5)
                    # The veths once all were up: ve-NAME for each guest, nothing else.
                    r["veths_up"] = sum(f"ve-{x} (veth)" in r["on_ready"] for x in names)
                    r["links_other"] = sorted(set(r["on_ready"]) - {f"ve-{x} (veth)" for x in names})
                    log(f"  ready {r['ready_count']}/{n} all by {r['all_ready']}, veths {r['veths_up']}/{n}, "
                        f"exit 0: {r['exit0']}/{n}, "
                        f"links left: {len(r['net_left']['links'])}, journals left: {len(r['net_left']['journals'])}")
                    out[rt].append(r)
                    if r["low_memory"]:
                        out["stopped"] = f"stopped at N={n}: MemAvailable fell below 1 GiB"
                        return out
        finally:
            self.restore_inotify(changed)
            self.results["loadavg"]["net-scale"].append(loadavg())
        return out

    # -- soak -------------------------------------------------------------------------

    def bench_soak(self, cycles, boots):
        """nixrun alone, cycles in sequence (nothing to interleave with): CYCLES
        start/stop cycles of /bin/true, then BOOTS boot/stop cycles of the
        Debian guest; a snapshot of the host before and after each phase."""
        self.results["busy"]["soak"] = wait_calm()
        self.results["loadavg"]["soak"] = [loadavg()]
        # One root for every boot, as the boot part reuses its roots; copied
        # before the first snapshot, so that the copy is not in the comparison.
        boot_root = self.copy_debian("soak-boot")
        ours = self.soak_ours([self.exec_root, boot_root])
        # Where an instance started in a slot makes `nixrun-<machine>` outside
        # the slot: the v1 hierarchies the Cgroups helper does not move us in.
        self.soak_v1 = [d for d in cgroup_own_dirs().values() if d not in self.cg.home]
        phases = {}
        before = self.soak_snapshot()
        for name, n, run in (("exec", cycles, lambda: self.soak_exec(cycles)),
                             ("boot", boots, lambda: self.soak_boot(boots, boot_root))):
            if not n:
                continue
            phases[name] = run()
            after = self.soak_snapshot()
            phases[name].update(self.soak_compare(before, after, ours))
            before = after
            left = sum(len(v) for v in soak_left(phases[name]).values())
            log(f"  {name}: {soak_failures(phases[name])} failed cycles, {left} things left behind")
        self.results["soak"] = phases
        self.results["loadavg"]["soak"].append(loadavg())

    def soak_locks(self, root):
        """The lock files nixrun takes for ROOT (as nspawn does)."""
        st = os.stat(root)
        return [str(NSPAWN_LOCKS / f"inode-{st.st_dev}:{st.st_ino}"),
                str(NSPAWN_LOCKS / f"name-{machine_name(root)}"),
                str(root.parent / f".#{root.name}.lck")]

    def soak_ours(self, roots):
        """What the soak's instances may create, to tell their leftovers from
        those of others' work on this shared host."""
        return {"locks": {p for r in roots for p in self.soak_locks(r)},
                "machines": {machine_name(r) for r in roots}}

    def soak_snapshot(self):
        """The host, in every respect the soak compares."""
        keep = set(self.cg.base) | set(self.cg.home)
        cgroups = set()
        for b in self.cg.base:
            for d, _subdirs, _files in os.walk(b):
                if Path(d) not in keep:
                    cgroups.add(d)
        # A `nixrun-<machine>` below the benchmark's own cgroups, in every
        # hierarchy: where an instance not given a slot of its own would make
        # its cgroups (not the benchmark's `nixrun-bench.<pid>`, walked above).
        for d in {*cgroup_own_dirs().values(), *self.cg.origin}:
            for top in d.glob("nixrun-*"):
                if top in self.cg.base:
                    continue
                for x, _subdirs, _files in os.walk(top):
                    cgroups.add(x)
        procs = live_procs(self.cg.pids(self.cg.base) - {os.getpid()})
        locks = {str(NSPAWN_LOCKS / x) for x in os.listdir(NSPAWN_LOCKS)} if NSPAWN_LOCKS.is_dir() else set()
        locks |= {str(p) for p in self.work.glob(".#*.lck")}
        return {"mounts": mount_table(), "cgroups": cgroups, "locks": locks, "run": run_listing(),
                "processes": {f"{c} (pid {p})" for p, c in procs.items()}, "fds": fd_count()}

    def soak_compare(self, before, after, ours):
        """What AFTER has and BEFORE had not, by category: `left_end` counts
        against nixrun; `elsewhere` is what can be told to be others' (another
        machine's lock files or cgroups, mounts away from every path nixrun
        uses), listed in the report but not counted; `gone` is what vanished."""
        prefixes = (str(self.base), str(self.store), "/run/systemd/nspawn", "/run/host", "/run/nixrun")

        def machine_of(path):
            return next((p.removeprefix("nixrun-") for p in Path(path).parts
                         if p.startswith("nixrun-")), None)

        def cgroup_ours(path):
            if any(Path(path).is_relative_to(b) for b in self.cg.base):
                return True
            return machine_of(path) in ours["machines"]

        # The lock directory and its parents stay by design (nspawn's do too).
        lock_dirs = {str(NSPAWN_LOCKS), *(str(p) for p in NSPAWN_LOCKS.parents)}
        judges = {
            "mounts": lambda m: any(x.startswith(prefixes) for x in m.split(" ")[::2]),
            "cgroups": cgroup_ours,
            "processes": lambda _p: True,  # in the benchmark's cgroups: ours
            "locks": lambda p: p in ours["locks"] or p.startswith(str(self.work) + "/"),
            "run": lambda p: p not in lock_dirs and (not p.startswith(str(NSPAWN_LOCKS) + "/")
                                                    or p in ours["locks"]),
        }
        out = {"left_end": {}, "elsewhere": {}, "gone": {}, "harness_fds": [before["fds"], after["fds"]]}
        for cat, ours_ in judges.items():
            if cat == "mounts":
                added = sorted((after[cat] - before[cat]).elements())
                gone = sorted((before[cat] - after[cat]).elements())
            else:
                added, gone = sorted(after[cat] - before[cat]), sorted(before[cat] - after[cat])
            out["left_end"][cat] = [x for x in added if ours_(x)]
            out["elsewhere"][cat] = [x for x in added if not ours_(x) and x not in lock_dirs]
            out["gone"][cat] = gone
        return out

    def soak_cycle_end(self, slot, t_exit, root):
        """After an instance exited: waits up to 1 s for its cgroup to empty
        (as run_once does), notes what it left (processes in its cgroup,
        cgroups below it or its `nixrun-<machine>` in the v1 hierarchies, its
        lock files), kills what still runs and removes the cgroup.  Returns
        (perf_counter when the cgroup was empty, or at the end of the wait;
        {category: [what was left]})."""
        procs = live_procs(self.cg.pids(slot))
        while procs and time.perf_counter() - t_exit < 1:
            time.sleep(0.001)
            procs = live_procs(self.cg.pids(slot))
        t_empty = time.perf_counter()
        # Looked at before the slot goes: removing it takes whatever is below.
        cgroups = [f"SLOT/{c}" for c in self.cg.subdirs(slot)]
        for d in self.soak_v1:
            cgroups += [x for x, _subdirs, _files in os.walk(d / f"nixrun-{machine_name(root)}")]
        locks = [p for p in self.soak_locks(root) if os.path.lexists(p)]
        for p in procs:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05 if procs else 0)
        try:
            self.cg.remove(slot)
        except OSError as e:
            cgroups.append(f"SLOT (not removable: {e.strerror})")
        return t_empty, {"processes": sorted(procs.values()), "cgroups": cgroups, "locks": locks}

    def soak_exec(self, cycles):
        root = self.exec_root
        argv = [self.nixrun, "-D", str(root), "-q", "--console=pipe", "/bin/true"]
        log(f"soak: {cycles} start/stop cycles of nixrun /bin/true")
        res = {"cycles": cycles, "time": [], "bad_exit": [], "timeout": [],
               "left_cycles": {"processes": {}, "cgroups": {}, "locks": {}}}
        for i in range(cycles):
            slot = self.cg.slot(f"soak-x{i}")
            with open(self.logdir / "soak-exec.log", "ab") as err:
                pid, t0 = self.cg.spawn(slot, argv, self.env, self.devnull, self.devnull, err.fileno())
            pidfd = os.pidfd_open(pid)
            try:
                # run_once waits for ever; a thousand cycles are where a rare hang shows.
                done = wait_exit({pidfd: pid}, t0 + SOAK_EXEC_TIMEOUT)
            finally:
                os.close(pidfd)
            if pid in done:
                rc, t_exit = done[pid]
                if rc != 0:
                    res["bad_exit"].append([i, rc])
            else:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                t_exit = time.perf_counter()
                res["timeout"].append(i)
            t_empty, left = self.soak_cycle_end(slot, t_exit, root)
            res["time"].append(t_empty - t0)
            soak_count(res["left_cycles"], left)
            if (i + 1) % 100 == 0:
                log(f"  {i + 1}/{cycles}: {len(res['bad_exit']) + len(res['timeout'])} failed so far")
        return res

    def soak_boot(self, cycles, root):
        log(f"soak: {cycles} boot/stop cycles of nixrun -b (debian)")
        res = {"cycles": cycles, "time": [], "ready": [], "stop": [], "fds": [], "rss": [], "fd_samples": [],
               "bad_exit": [], "not_ready": [], "timeout": [],
               "left_cycles": {"processes": {}, "cgroups": {}, "locks": {}}}
        for i in range(cycles):
            slot = self.cg.slot(f"soak-b{i}")
            inst = self.start(self.boot_argv("nixrun", "debian", root), f"soak-boot-{i}", slot)
            self.wait_ready([inst], SOAK_READY_TIMEOUT)
            if inst["ready"] is None:
                res["not_ready"].append(i)
            else:
                time.sleep(SOAK_SETTLE)
                self.soak_supervisor(inst["pid"], i, res)
            t_term = time.perf_counter()
            self.stop([inst], SOAK_STOP_TIMEOUT)
            t_exit = time.perf_counter()
            self.release(inst)
            if inst["stop"] is None:
                res["timeout"].append(i)
            elif inst["rc"] != 0:
                res["bad_exit"].append([i, inst["rc"]])
            t_empty, left = self.soak_cycle_end(slot, t_exit, root)
            # The cycle without our look at the supervisor in between.
            res["time"].append(t_empty - inst["t0"] if inst["ready"] is None else inst["ready"] + t_empty - t_term)
            res["ready"].append(inst["ready"])
            res["stop"].append(inst["stop"])
            soak_count(res["left_cycles"], left)
            if (i + 1) % 10 == 0:
                fails = len(res["bad_exit"]) + len(res["not_ready"]) + len(res["timeout"])
                log(f"  {i + 1}/{cycles}: {fails} failed so far")
        return res

    @staticmethod
    def soak_supervisor(pid, cycle, res):
        """Notes the supervisor's open fds and RSS (the nixrun process itself)
        once READY=1 came; keeps what the fds are for the first cycle and for the
        first one with each other count, to show what differs."""
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            targets = []
            for fd in fds:
                try:
                    targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except FileNotFoundError:
                    pass
        except FileNotFoundError:
            return
        mem = proc_memory(pid)
        if mem is None:
            return
        res["fds"].append(len(fds))
        res["rss"].append(mem[0])
        if len(res["fd_samples"]) < 6 and all(s["n"] != len(fds) for s in res["fd_samples"]):
            res["fd_samples"].append({"cycle": cycle, "n": len(fds), "targets": sorted(targets)})


# ---------------------------------------------------------------------------
# report


def host_line():
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    ram = meminfo("MemTotal") / 1024**3
    pid1 = Path("/proc/1/comm").read_text().strip()
    return (f"{cpu}, {os.cpu_count()} cores, {ram:.1f} GiB RAM, kernel {platform.release()}, "
            f"{distro()}, PID 1 `{pid1}`, cgroups: {cgroup_layout()}")


def distro():
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except FileNotFoundError:
        pass
    return "unknown distribution"


def cgroup_layout():
    types = {line.split()[4]: line.split(" - ")[1].split()[0]
             for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    if types.get("/sys/fs/cgroup") == "cgroup2":
        return "unified (cgroup2 only)"
    if "/sys/fs/cgroup/unified" in types:
        return "hybrid (v1 controllers + cgroup2 at /sys/fs/cgroup/unified)"
    return "legacy v1"


def scale_points(results, rt, key):
    """(N, median over repetitions of KEY) for the runs where all were READY."""
    by_n = {}
    for r in results.get("scale", {}).get(rt, []):
        v = r[key] if key != "all_ready" or r["ready_count"] == r["n"] else None
        if v is not None:
            by_n.setdefault(r["n"], []).append(v)
    return sorted((n, statistics.median(vs)) for n, vs in by_n.items())


def svg_plot(results):
    """Three panels against N: time until all READY, host memory per guest,
    and the runtimes' own RSS summed over the N instances.  Plain SVG written
    by hand: no plotting library, no fonts needed at generation time."""
    # (title, unit, [(result key, divisor, dash pattern, legend suffix)])
    panels = [
        ("time until all N guests are READY", "s", [("all_ready", 1, "", "")]),
        ("host memory per guest", "MiB", [
            ("mem_per_guest", MIB, "", " MemAvailable drop / N"),
            ("unit_pss_per_guest", MIB, "5,3", " PSS of unit (runtime+guest)"),
        ]),
        ("runtime's own RSS, summed over N", "MiB", [("rss_sum", MIB, "", "")]),
    ]
    series = [("nixrun", "#1f6fb4"), ("systemd-nspawn", "#d9541e")]
    pw, ph, ml, mr, mt = 340, 270, 55, 15, 30
    width, height = pw * len(panels), ph
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    for k, (title, unit, lines) in enumerate(panels):
        x0 = k * pw
        pts = {(rt, key): [(n, v / div) for n, v in scale_points(results, rt, key)]
               for rt, _ in series for key, div, _, _ in lines}
        ns = sorted({n for p in pts.values() for n, _ in p}) or [0, 1]
        legend_rows = len(series) * len(lines)
        vals = [v for p in pts.values() for _, v in p]
        ymax = max(vals + [1e-9]) * (1.15 + 0.08 * legend_rows)
        # A MemAvailable drop can come out negative at small N (others freed memory meanwhile).
        step = nice_step(ymax / 5)
        ymin = min(0.0, (min(vals + [0.0]) // step) * step)
        xmax = max(ns) * 1.08
        left, right, top, bottom = x0 + ml, x0 + pw - mr, mt, ph - 45

        def sx(n):
            return left + n / xmax * (right - left)

        def sy(v):
            return bottom - (v - ymin) / (ymax - ymin) * (bottom - top)

        out.append(f'<text x="{x0 + pw / 2}" y="18" text-anchor="middle" font-size="12" '
                   f'font-weight="bold">{title}</text>')
        v = ymin
        while v <= ymax:
            y = sy(v)
            out.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#ddd"/>')
            out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
            v += step
        out.append(f'<line x1="{left}" y1="{sy(0):.1f}" x2="{right}" y2="{sy(0):.1f}" stroke="black"/>')
        out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="black"/>')
        for n in ns:
            out.append(f'<line x1="{sx(n):.1f}" y1="{bottom}" x2="{sx(n):.1f}" y2="{bottom + 4}" stroke="black"/>')
            out.append(f'<text x="{sx(n):.1f}" y="{bottom + 16}" text-anchor="middle">{n}</text>')
        out.append(f'<text x="{(left + right) / 2}" y="{bottom + 32}" text-anchor="middle">N guests</text>')
        out.append(f'<text x="{x0 + 14}" y="{(top + bottom) / 2}" text-anchor="middle" '
                   f'transform="rotate(-90 {x0 + 14} {(top + bottom) / 2})">{unit}</text>')
        row = 0
        for rt, color in series:
            for key, _div, dash, suffix in lines:
                p = pts[(rt, key)]
                style = f'stroke="{color}" stroke-width="2"' + (f' stroke-dasharray="{dash}"' if dash else "")
                if len(p) > 1:
                    path = " ".join(f"{sx(n):.1f},{sy(v):.1f}" for n, v in p)
                    out.append(f'<polyline points="{path}" fill="none" {style}/>')
                for n, v in p:
                    out.append(f'<circle cx="{sx(n):.1f}" cy="{sy(v):.1f}" r="3.5" fill="{color}"/>')
                ly = top + 8 + row * 15
                out.append(f'<line x1="{left + 8}" y1="{ly}" x2="{left + 26}" y2="{ly}" {style}/>')
                out.append(f'<text x="{left + 30}" y="{ly + 4}">{rt}{suffix}</text>')
                row += 1
    out.append("</svg>")
    return "\n".join(out) + "\n"


def nice_step(raw):
    if raw <= 0:
        return 1
    mag = 10 ** int(f"{raw:e}".split("e")[1])
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def report(results, args, plot_name):
    r = results
    L = []
    L.append("# Benchmarks: nixrun vs systemd-nspawn and peers\n")
    L.append("<!-- Generated by benches/compare.py; edit that, not this file. -->\n")
    L.append(f"Ran on {r['host']}, {r['date']}; nixrun {r['nixrun_version']}. "
             f"Mode: {'quick' if args.quick else 'full'}, took {r['duration'] / 60:.1f} min.\n")
    L.append("Load average (1/5/15 min) at the start and end of each part: " + "; ".join(
        f"{part} {a} → {b}" for part, (a, b) in r["loadavg"].items()) + ". Host CPU busy (all cores, "
        "over 1 s, after waiting up to 15 s for < 25 %) when each part began: " + ", ".join(
        f"{part} {v:.0f} %" for part, v in r["busy"].items()) + " (the scale table has it per run).\n")
    L.append("Regenerate (as root, in the repository; builds nixrun into `target/bench` and the "
             "guests with `integration/fixtures/`):\n")
    L.append("```sh\n" + r["command"] + "\n```\n")
    L.append("Guest roots are copies on a fresh ext4 file system the benchmark makes for the run "
             "(a sparse image on a loop device, direct I/O): the run creates hundreds of thousands "
             "of files, and on a shared file system recent deletions, ours or anyone's, made ext4's "
             "inode allocation a fifth of all CPU while 50 guests booted.\n")
    L.append("Every runtime instance runs in a fresh cgroup of its own (as a systemd unit "
             "would; `systemd-nspawn --keep-unit` needs that), in the cgroup2 and the named "
             "`systemd` hierarchy. Runs are interleaved (A B C … A B C …, rotating the order), "
             "never all of A then all of B; medians with min–max in parentheses. The machine is "
             "shared and noisy: the **ratios nixrun/peer from the same run** are what counts.\n")

    L.append("Versions: " + "; ".join(f"{k}: `{v}`" for k, v in r["versions"].items() if v) + ".\n")
    if r["unavailable"]:
        L.append("Not measured:\n")
        for k, why in r["unavailable"].items():
            L.append(f"- **{k}**: {why}")
        L.append("")

    # targets
    targets = []
    ex = r.get("exec", {})
    floor = ex.get("unshare+chroot (floor)", {}).get("time")
    nx = ex.get("nixrun", {}).get("time")
    if nx and floor:
        q = ratio(nx, floor)
        targets.append(("exec latency ≤ 1.2× the unshare+chroot floor", fmt_ratio_ci(nx, floor), q <= 1.2))
    peers = [k for k in ex if k not in ("nixrun", "unshare+chroot (floor)")]
    if nx and peers:
        worst = min(peers, key=lambda k: ex[k]["time"]["median"])
        ok = all(nx["median"] < ex[k]["time"]["median"] for k in peers)
        targets.append(("exec latency below every peer",
                        f"fastest peer {worst}: {fmt_ratio_ci(nx, ex[worst]['time'])}", ok))
    for guest in ("debian", "nixos"):
        b = r.get("boot", {}).get(guest)
        if not b:
            continue
        q = ratio(b["nixrun"]["ready"], b["systemd-nspawn"]["ready"])
        targets.append((f"boot to READY ({guest}) ≤ 0.8× nspawn",
                        fmt_ratio_ci(b["nixrun"]["ready"], b["systemd-nspawn"]["ready"]),
                        q is not None and q <= 0.8))
        setup = b["nixrun"]["setup"]
        if setup:
            targets.append((f"the runtime's own share of a boot ({guest}: spawn → the guest's init "
                            "starts) ≤ 3 ms median", f"{setup['median'] * 1000:.2f} ms",
                            setup["median"] <= 0.003))
        q = ratio(b["nixrun"]["stop"], b["systemd-nspawn"]["stop"])
        targets.append((f"stop ({guest}) ≤ 0.9× nspawn",
                        fmt_ratio_ci(b["nixrun"]["stop"], b["systemd-nspawn"]["stop"]),
                        q is not None and q <= 0.9))
    if r.get("boot"):
        rss = [r["boot"][g]["nixrun"]["rss"] for g in r["boot"] if r["boot"][g]["nixrun"]["rss"]]
        if rss:
            worst = max(s["max"] for s in rss)
            med = max(s["median"] for s in rss)
            targets.append(("supervisor RSS ≤ 2 MiB", f"median {med / MIB:.2f} MiB, max {worst / MIB:.2f} MiB",
                            worst <= 2 * MIB))
    sc = r.get("scale", {})
    n50 = {rt: [x for x in sc.get(rt, []) if x["n"] == 50] for rt in ("nixrun", "systemd-nspawn")}
    if n50["nixrun"]:
        all_ok = all(x["ready_count"] == 50 for x in n50["nixrun"])
        a = statistics.median([x["all_ready"] or float("inf") for x in n50["nixrun"]])
        b = statistics.median([x["all_ready"] or float("inf") for x in n50["systemd-nspawn"]] or [float("inf")])
        targets.append(("N = 50: all READY, time-to-all-ready ≤ nspawn's",
                        f"{'all' if all_ok else 'NOT all'} ready; {a:.2f} s vs {b:.2f} s ({a / b:.2f}×)",
                        all_ok and a <= b))
    else:
        targets.append(("N = 50: all READY, time-to-all-ready ≤ nspawn's", "not run (quick mode or memory)", None))
    n100 = {rt: [x for x in sc.get(rt, []) if x["n"] == 100] for rt in ("nixrun", "systemd-nspawn")}
    if n100["nixrun"] and n100["systemd-nspawn"]:
        x, y = n100["nixrun"][0], n100["systemd-nspawn"][0]
        left = x.get("left") or {}
        clean = x["exit0"] == 100 and not any(left.values() if isinstance(left, dict) else left)
        both = bool(x["all_ready"] and y["all_ready"])
        ok = x["ready_count"] == 100 and both and x["all_ready"] <= 0.8 * y["all_ready"] and clean
        targets.append(("N = 100: all READY, time-to-all-ready ≤ 0.8× nspawn's, all stopped, nothing left",
                        f"{x['ready_count']}/100 ready, exit 0: {x['exit0']}/100; "
                        + (f"{x['all_ready']:.2f} s vs {y['all_ready']:.2f} s "
                           f"({x['all_ready'] / y['all_ready']:.2f}×)" if both else "not all ready"),
                        bool(ok)))
    soak = r.get("soak", {})
    soak_target = "soak: 1000 start/stop + 100 boot/stop cycles, nothing left"
    if soak:
        counts = [soak.get(k, {}).get("cycles", 0) for k in ("exec", "boot")]
        enough = counts[0] >= 1000 and counts[1] >= 100
        fails = sum(soak_failures(p) for p in soak.values())
        left = sum(len(v) for p in soak.values() for v in soak_left(p).values())
        # A harness that leaks fds could hide leaks, or fake them: no claim then.
        fds_ok = all(p["harness_fds"][0] == p["harness_fds"][1] for p in soak.values())
        targets.append((soak_target,
                        f"{counts[0]} + {counts[1]} cycles{'' if enough else ' (fewer than the target)'}, "
                        f"{fails} failed, {'nothing' if not left else left} left"
                        + ("" if fds_ok else "; the benchmark's own fd count changed"),
                        enough and not fails and not left and fds_ok))
    else:
        targets.append((soak_target, "not run (quick mode or --skip soak)", None))
    targets += net_targets(r.get("net"))
    L.append("## Targets\n")
    L.append("A ratio is nixrun's median over the peer's from this run; in parentheses, where the "
             "samples are kept, a 95 % bootstrap interval of that ratio (each side's samples "
             "resampled 2000 times): how far this run's noise alone could move it. The verdict "
             "is the ratio's own; an interval that straddles the target says one run cannot "
             "tell.\n")
    L.append("| target | this run | |\n|---|---|---|")
    for name, val, ok in targets:
        L.append(f"| {name} | {val} | {verdict(ok)} |")
    L.append("")

    if ex:
        L.append("## 1. Exec latency: `/bin/true` in the Debian guest\n")
        L.append(f"{args.exec_rounds} interleaved rounds after {args.warmup} warm-up rounds. Wall time = "
                 "spawn → the runtime exited and its cgroup is empty (a unit is done when its cgroup "
                 "is; bwrap exits while its PID 1 may still be dying); `to exit` = spawn → the "
                 "runtime's exit. The launcher is `posix_spawn` for all. CPU = user+sys of the "
                 "runtime and the children it reaped (`wait4`). Failed = exit ≠ 0 or processes left "
                 "1 s after the exit.\n")
        L.append("| runtime | wall time | ratio nixrun/this | to exit | CPU time | failed |\n"
                 "|---|---|---|---|---|---|")
        for k, v in ex.items():
            q = fmt_ratio(ratio(nx, v['time'])) if k == "nixrun" else fmt_ratio_ci(nx, v['time'])
            L.append(f"| {k} | {fmt_ms(v['time'])} | {q} | "
                     f"{fmt_ms(v['exit'])} | {fmt_ms(v['cpu'])} | {v['failures']} |")
        L.append("")
        L.append("Commands (`ROOT` = a copy of the Debian guest, `B` = an OCI bundle from `runc spec` "
                 "with `ROOT` as rootfs and the namespaces nixrun uses: mount, PID, UTS, IPC, cgroup):\n")
        L.append("- nixrun: `nixrun -D ROOT -q --console=pipe /bin/true`")
        L.append("- systemd-nspawn: `systemd-nspawn -D ROOT --keep-unit --register=no -q --console=pipe /bin/true`")
        L.append("- bwrap: `bwrap --bind ROOT / --proc /proc --dev /dev --unshare-pid --unshare-ipc "
                 "--unshare-uts --unshare-cgroup /bin/true` (nixrun's namespaces); "
                 "bwrap --unshare-all: the same with `--unshare-all` (adds network and user namespaces)")
        L.append("- runc / crun: `runc --root STATE run --bundle B ID` (create, start, wait, delete)")
        L.append("- floor: `unshare -m -p -u -i --fork chroot ROOT /bin/true`\n")
        ph = r.get("phases")
        if ph:
            L.append("### Where nixrun's start goes\n")
            L.append("Median time per phase of `nixrun -D ROOT -q --console=pipe /bin/true` "
                     "(`NIXRUN_PHASE_TIMES=1`: nixrun's own timestamps, separate runs from the "
                     "table above). Supervisor: `main` = spawn → nixrun's `main` (exec and libc "
                     "start-up), `plan` = flags → plan, `locks`, `facts`, `policy`, `cgroups` = "
                     "cgroups planned and made, `clone`, `attach` = the child put into its "
                     "cgroups (and the network set up). Child: `child-go` = sync point 1 "
                     "received, `child-mounts` = the mount table applied, `child-pivot` = "
                     "pivot_root, the mount tree locked, `child-setup` = hostname, console, "
                     "`child-seccomp-caps` = init found, filters and capabilities, `child-exec` "
                     "= signals reset, fds closed. Supervisor again: `exec-seen` = the guest's "
                     "exec seen, `reaped` = `/bin/true` ran and was reaped, `teardown` = the "
                     "boot undone (cgroups removed), `exit` = the run's undo (locks, state) "
                     "and nixrun's exit.\n")
            L.append("| phase | median | share |\n|---|---|---|")
            total = ph.get("total")
            for name, v in ph.items():
                if name == "total":
                    continue
                L.append(f"| {name} | {v * 1e6:.0f} µs | {v / total * 100:.0f} % |")
            L.append(f"| **total** | {total * 1e6:.0f} µs | |\n")

    if r.get("boot"):
        L.append("## 2. Boot and stop; 3. supervisor memory\n")
        L.append(f"Boot = spawn → `READY=1` on `$NOTIFY_SOCKET`; stop = SIGTERM → exit. "
                 f"One root per runtime and guest, reused: the first boot (a fresh copy) is shown "
                 f"separately, then {args.boot_cycles} interleaved cycles. `setup` = spawn → the "
                 "runtime's `STATUS=Container running` (sent when the guest's init is being "
                 "started: the runtime's own work), `guest` = from there to `READY=1` (the guest's "
                 "boot). CPU: `cpu.stat` of the instance's cgroup at `READY=1`; the runtime's part is what "
                 "was not charged to the guest's cgroup (a helper that works after joining the guest's "
                 "cgroup counts as the guest's, so this can undercount a runtime: compare the CPU "
                 "time of its `/bin/true` run above). Memory: the runtime's own processes (it and any descendant still in the "
                 f"host's PID namespace; the guest excluded), {args.settle:g} s after READY. "
                 "bwrap, runc and crun cannot relay the guest's `READY=1` to a service manager, "
                 "so they are not in this part.\n")
        L.append("Commands: nixrun `-D ROOT --notify-ready=yes` + `-b` (debian) or "
                 "`--kill-signal=SIGRTMIN+3 --bind-ro=STORE:/nix/store /nix/var/nix/profiles/system/init` "
                 "(nixos); systemd-nspawn the same plus `--keep-unit --register=no`; environment "
                 "`SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1` for both (as NixOS sets it). Console: the "
                 "default (read-only: stdout is not a terminal).\n")
        for guest, b in r["boot"].items():
            a, s = b["nixrun"], b["systemd-nspawn"]
            L.append(f"### {guest} guest\n")
            L.append("| | nixrun | systemd-nspawn | ratio nixrun/nspawn |\n|---|---|---|---|")
            rows = [
                ("boot → READY=1", "ready", fmt_s),
                ("  setup (spawn → STATUS)", "setup", fmt_ms),
                ("  guest (STATUS → READY=1)", "guest", fmt_s),
                ("CPU until READY=1, whole unit (runtime + guest)", "cpu_unit", fmt_s),
                ("  of which outside the guest's cgroup (the runtime)", "cpu_runtime", fmt_s),
                ("stop (SIGTERM → exit)", "stop", fmt_s),
                ("runtime RSS", "rss", fmt_mib),
                ("runtime peak RSS (VmHWM)", "hwm", fmt_mib),
                ("runtime PSS", "pss", fmt_mib),
            ]
            for label, key, f in rows:
                L.append(f"| {label} | {f(a[key])} | {f(s[key])} | {fmt_ratio_ci(a[key], s[key])} |")
            fr = [x["first_ready"] for x in (a, s)]
            L.append("| first boot → READY=1 | " + " | ".join("–" if x is None else f"{x:.3f} s" for x in fr)
                     + f" | {fmt_ratio(fr[0] / fr[1]) if None not in fr else '–'} |")
            L.append(f"| runtime processes while running | {a['procs']} | {s['procs']} | |")
            L.append(f"| guest's journal afterwards | {a.get('journal', '?')} | {s.get('journal', '?')} | |")
            L.append("| cycles not READY / exit ≠ 0 | "
                     f"{a['not_ready']} / {a['bad_exit']} | {s['not_ready']} / {s['bad_exit']} | |")
            L.append("| left behind: processes; cgroups (inside the unit's cgroup); host mounts | "
                     + " | ".join(f"{x['leftover_procs']}; {', '.join(x['leftover_cgroups']) or 'none'}; "
                                  f"{len(x['leftover_mounts'])}" for x in (a, s)) + " | |")
            L.append("")

    if r.get("ephemeral"):
        report_ephemeral(L, r["ephemeral"], args)

    if sc.get("nixrun"):
        L.append("## 4. Scale: N NixOS-shaped guests started at once\n")
        L.append("All N runtimes are spawned back to back (each in its own cgroup, each root a fresh "
                 "copy of the NixOS-shaped root, so every boot is a first boot); "
                 "`all READY` = spawn of the first → the last `READY=1`; `all spawned` = spawn of the "
                 "first → spawn of the last (the launcher runs at real-time priority for that loop, "
                 "yet a runtime that needs much CPU to start slows its own later spawns down: the "
                 "guests started first compete with them); `median READY` counts from each one's "
                 "own spawn. Memory per guest: "
                 "`unit PSS` = the proportional set size of every process in the instances' cgroups "
                 "(runtime and guest) once all are up and settled, / N; `MemAvailable` = its drop "
                 "from before the spawns to then, / N (it counts everything on this shared host, "
                 "others' work included: noisy). CPU per guest = `cpu.stat` of the instance's cgroup "
                 "(runtime + guest) at its `READY=1`, median over the N. Stop = SIGTERM to all at once → the last exit. nixrun and nspawn "
                 f"alternate; {args.scale_reps} repetition(s) per N ≤ 50 (bigger N once), medians over them below.\n")
        ns_run = sorted({x["n"] for x in sc["nixrun"] + sc["systemd-nspawn"]})

        def med(rt, n, key, div=1):
            vs = [x[key] for x in sc[rt] if x["n"] == n and x[key] is not None]
            return statistics.median(vs) / div if vs else None

        def cell(v, f):
            return "–" if v is None else f.format(v)

        L.append("| N | | all READY | unit PSS / guest | MemAvailable / guest | runtime RSS sum | "
                 "CPU / guest to READY | all stopped | all READY and exit 0 |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for n in ns_run:
            vals = {}
            for rt in ("nixrun", "systemd-nspawn"):
                runs = [x for x in sc[rt] if x["n"] == n]
                ok = sum(x["ready_count"] == n and x["exit0"] == n for x in runs)
                vals[rt] = [med(rt, n, "all_ready"), med(rt, n, "unit_pss_per_guest", MIB),
                            med(rt, n, "mem_per_guest", MIB), med(rt, n, "rss_sum", MIB),
                            med(rt, n, "cpu_unit_per_guest"), med(rt, n, "all_stopped"), f"{ok}/{len(runs)} runs"]
            fmts = ["{:.2f} s", "{:.1f} MiB", "{:.1f} MiB", "{:.1f} MiB", "{:.3f} s", "{:.2f} s"]
            for rt in ("nixrun", "systemd-nspawn"):
                L.append(f"| {n} | {rt} | " + " | ".join(cell(v, f) for v, f in zip(vals[rt], fmts))
                         + f" | {vals[rt][6]} |")
            # No ratio of a MemAvailable drop that noise made zero or negative.
            q = [None if a is None or b is None or a < 0 or b <= 0 else a / b
                 for a, b in zip(vals["nixrun"][:6], vals["systemd-nspawn"][:6])]
            L.append(f"| {n} | **nixrun/nspawn** | " + " | ".join(cell(x, "{:.2f}×") for x in q) + " | |")
        L.append("")
        big = max(ns_run)
        L.append(f"Where the memory goes at N = {big}: growth of `/proc/meminfo` fields from before "
                 "the spawns to all up and settled, / N (MiB; medians over the runs; host-wide, so "
                 "noisy):\n")
        L.append("| | " + " | ".join(MEM_FIELDS) + " |\n|---|" + "---|" * len(MEM_FIELDS))
        for rt in ("nixrun", "systemd-nspawn"):
            runs = [x["meminfo_per_guest"] for x in sc[rt] if x["n"] == big]
            if runs:
                L.append(f"| {rt} | " + " | ".join(
                    f"{statistics.median(m[f] for m in runs) / MIB:.2f}" for f in MEM_FIELDS) + " |")
        L.append("")
        L.append(f"Where the CPU goes at N = {big}: CPU seconds per guest by the guest's own "
                 "cgroups (one per unit, from `cpu.stat` once all are up), the units that differ most "
                 "between the runtimes (medians over guests and runs). The runtime cannot make a "
                 "unit cheaper or dearer, but what it offers the guest decides which units run "
                 "(capabilities, writable /sys, ...):\n")
        per = {}
        for rt in ("nixrun", "systemd-nspawn"):
            runs = [x.get("unit_cpu", {}) for x in sc[rt] if x["n"] == big]
            units = {u for r_ in runs for u in r_}
            per[rt] = {u: statistics.median(r_.get(u, 0.0) for r_ in runs) for u in units} if runs else {}
        units = set(per["nixrun"]) | set(per["systemd-nspawn"])
        diff = sorted(units, key=lambda u: (-abs(per["nixrun"].get(u, 0) - per["systemd-nspawn"].get(u, 0)), u))
        L.append("| guest cgroup | nixrun | systemd-nspawn |\n|---|---|---|")
        for u in diff[:10]:
            L.append(f"| {u} | {per['nixrun'].get(u, 0):.3f} s | {per['systemd-nspawn'].get(u, 0):.3f} s |")
        L.append("| *the guest in all* | " + " | ".join(
            f"{sum(per[rt].values()):.3f} s" for rt in ("nixrun", "systemd-nspawn")) + " |")
        L.append("")
        L.append("Every run:\n")
        L.append("| N | runtime | READY | all spawned | all READY | median READY | CPU / guest: unit; runtime | "
                 "mem / guest: unit PSS; MemAvailable | runtime RSS sum (per instance) | exit 0 | "
                 "all stopped | left: procs; cgroups; mounts | host CPU busy before; while booting |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        rows = sorted(sc["nixrun"] + sc["systemd-nspawn"], key=lambda x: x["n"])
        for x in rows:
            L.append(f"| {x['n']} | {x['runtime']} | {x['ready_count']}/{x['n']} | {x['spawn_span']:.2f} s | "
                     f"{cell(x['all_ready'], '{:.2f} s')} | {cell(x['ready_median'], '{:.2f} s')} | "
                     f"{x['cpu_unit_per_guest']:.3f}; {x['cpu_runtime_per_guest']:.3f} s | "
                     f"{x['unit_pss_per_guest'] / MIB:.1f}; {x['mem_per_guest'] / MIB:.1f} MiB | "
                     f"{x['rss_sum'] / MIB:.1f} MiB ({cell(x['rss_per_instance'] and x['rss_per_instance'] / MIB, '{:.2f}')}) | "
                     f"{x['exit0']}/{x['n']} | {cell(x['all_stopped'], '{:.2f} s')} | "
                     f"{x['left']['processes']}; {len(x['left']['cgroups'])}; {len(x['left']['mounts'])} | "
                     f"{x['busy_before']:.0f}%; {x.get('busy_booting', 0):.0f}% |")
        L.append("")
        lefts = {c for x in rows for c in x["left"]["cgroups"]}
        if lefts:
            L.append("Cgroups left inside a unit's cgroup (a service manager removes the unit's cgroup "
                     "with the unit, so these are not a leak there): " + ", ".join(sorted(lefts)[:6]) + ".\n")
        if r.get("inotify"):
            L.append("For this part the benchmark raised " + ", ".join(
                f"`fs.inotify.{k}` from {a} to {b}" for k, (a, b) in r["inotify"].items())
                + " (and restored them afterwards). Without user namespaces every guest is host "
                "root and shares root's inotify quota; at the kernel default of 128 instances "
                "guests beyond about 25 fail to boot (\"Failed to create inotify object: Too many "
                "open files\"), under nspawn and nixrun alike. `--keep-sysctl` leaves them alone.\n")
        if r.get("scale_stopped"):
            L.append(f"Scale run {r['scale_stopped']}.\n")
        L.append(f"![boot time and memory against N]({plot_name})\n")

    if soak:
        report_soak(L, soak)

    if r.get("net"):
        report_net(L, r["net"])

    notes = Path(__file__).with_name("notes.md")
    if notes.exists():
        L.append(notes.read_text())
    return "\n".join(L).rstrip() + "\n"


NET_FLOOR = "unshare -n +chroot (floor)"
NET_NIXRUN = "nixrun --private-network"
NET_N = 100


def net_left_count(x):
    """What a net scale run left that a service manager would not clean up:
    links and nixrun journals in the namespace, processes, host mounts."""
    return (len(x["net_left"]["links"]) + len(x["net_left"]["journals"]) + x["left"]["processes"]
            + len(x["left"]["mounts"]))


def net_targets(net):
    """[(target, this run, met)] of the net part (issue "private networking")."""
    if not net:
        return [("private network: the targets below", "not run (--skip net)", None)]
    out = []
    for guest in ("debian", "nixos"):
        b = net.get("boot", {}).get(guest)
        if not b:
            continue
        # A boot without its veth would not be this measurement.
        noveth = [f"{rt}: veth missing in {x['cycles'] + 1 - x['veth_ok']} cycles" for rt, x in b.items()
                  if x.get("veth_ok", x["cycles"] + 1) < x["cycles"] + 1]
        q = ratio(b["nixrun"]["ready"], b["systemd-nspawn"]["ready"])
        out.append((f"private network: boot to READY with `-n` ({guest}) ≤ 0.9× nspawn `-n`",
                    fmt_ratio_ci(b["nixrun"]["ready"], b["systemd-nspawn"]["ready"])
                    + "".join(f"; {x}" for x in noveth), q is not None and q <= 0.9 and not noveth))
        q = ratio(b["nixrun"]["stop"], b["systemd-nspawn"]["stop"])
        out.append((f"private network: stop with `-n` ({guest}) ≤ 1.0× nspawn `-n` (the boot part's target)",
                    fmt_ratio_ci(b["nixrun"]["stop"], b["systemd-nspawn"]["stop"]), q is not None and q <= 1.0))
    ex = net.get("exec", {})
    a, f = ex.get(NET_NIXRUN, {}).get("time"), ex.get(NET_FLOOR, {}).get("time")
    name = "private network: exec latency (`--private-network`) ≤ 1.5× the `unshare -n` floor"
    if a and f:
        q = ratio(a, f)
        out.append((name, fmt_ratio_ci(a, f), q <= 1.5))
    else:
        out.append((name, "not measured (see \"Not measured\")", None))
    sc = net.get("scale", {})
    name = f"private network: N = {NET_N} with `-n`: all READY, time-to-all-ready ≤ 0.8× nspawn's, nothing left"
    runs = {rt: sc.get(rt, []) for rt in ("nixrun", "systemd-nspawn")}
    if not runs["nixrun"]:
        out.append((name, sc.get("stopped", "not run (--net-scale 0)"), None))
        return out
    n = runs["nixrun"][0]["n"]
    all_ok = all(x["ready_count"] == n and x["veths_up"] == n for x in runs["nixrun"])
    a = statistics.median([x["all_ready"] or float("inf") for x in runs["nixrun"]])
    b = statistics.median([x["all_ready"] or float("inf") for x in runs["systemd-nspawn"]] or [float("inf")])
    left = sum(net_left_count(x) for x in runs["nixrun"])
    val = (f"{'' if n == NET_N else f'N = {n} only: '}{'all' if all_ok else 'NOT all'} ready with their veth; "
           f"{a:.2f} s vs {b:.2f} s ({a / b:.2f}×); {'nothing' if not left else left} left")
    out.append((name, val, (all_ok and a <= 0.8 * b and not left) if n == NET_N else None))
    return out


def report_net(L, net):
    L.append("## 6. Private network\n")
    L.append(f"Both runtimes run inside a network namespace the benchmark makes for this part "
             f"(`ip netns add {net['netns']}`, its `lo` up; deleted afterwards, "
             f"{'and it is gone' if net.get('netns_removed') else '**but it is still there**'}): "
             "every veth is made there, never in the machine's own namespace, and no traffic "
             "leaves it. The benchmark's own thread joins the namespace (`setns`, what "
             "`nsenter --net=/run/netns/NAME` does) and spawns the runtimes from there as in the "
             "other parts; an `nsenter` prefix would add an exec to every timed run. Not `ip netns "
             "exec`: it remounts `/sys` and hides `/sys/fs/cgroup` from nspawn. Machine names "
             "(`-M`) are the same for both runtimes: `nxd<cycle>` / `nxn<cycle>` in the boot "
             "cycles, `nxs000`… in the scale run, so the host side is `ve-nxd3` for either "
             "(both shorten names the same way past 15 characters).\n")
    L.append("| target | this run | |\n|---|---|---|")
    for name, val, ok in net_targets(net):
        L.append(f"| {name} | {val} | {verdict(ok)} |")
    L.append("")

    ex = net.get("exec", {})
    if ex:
        nx = ex.get(NET_NIXRUN, {}).get("time")
        L.append("### Exec latency: `/bin/true` in the Debian guest, own network namespace\n")
        L.append(f"As in part 1 (same root, wall time = spawn → exit and cgroup empty), "
                 f"{net['rounds']} interleaved rounds after {net['warmup']} warm-up rounds, "
                 "with a network namespace of only `lo` per run; the two rows without one show what "
                 "it costs (the kernel's share: the floor with and without `-n`).\n")
        L.append(f"| command | wall time | ratio {NET_NIXRUN}/this | to exit | CPU time | failed |\n"
                 "|---|---|---|---|---|---|")
        for k, v in ex.items():
            q = fmt_ratio(ratio(nx, v['time'])) if k == NET_NIXRUN else fmt_ratio_ci(nx, v['time'])
            L.append(f"| {k} | {fmt_ms(v['time'])} | {q} | "
                     f"{fmt_ms(v['exit'])} | {fmt_ms(v['cpu'])} | {v['failures']} |")
        L.append("")
        L.append("Commands: `nixrun -D ROOT -q --console=pipe --private-network /bin/true`; "
                 "`systemd-nspawn -D ROOT --keep-unit --register=no -q --console=pipe "
                 "--private-network /bin/true`; floor `unshare -n -m -p -u -i --fork chroot ROOT "
                 "/bin/true`; the references the same without `--private-network` / `-n`.\n")

    if net.get("boot"):
        L.append("### Boot and stop with a veth (`-n`)\n")
        L.append(f"As in part 2, with `-n --machine=NAME` added for both runtimes: a veth pair, "
                 "`ve-NAME` in the benchmark's namespace and `host0` in the guest's (no addresses). "
                 + ("One untimed warm-up boot per runtime, then a" if net.get("warm", True) else
                  "No warm-up boot (--quick: the boot part booted the same guests), a")
                 + f" first boot and {net['cycles']} "
                 "interleaved cycles on one root per runtime. Stop = SIGTERM → exit, which "
                 "includes the runtime removing its veth. After each exit the benchmark waits up to "
                 "1 s for the namespace to hold no link but `lo`; what is still there then, and "
                 f"nixrun network journals left in `{NIXRUN_NET_JOURNAL}/`, count as left behind.\n")
        for guest, b in net["boot"].items():
            a, s_ = b["nixrun"], b["systemd-nspawn"]
            L.append(f"#### {guest} guest\n")
            L.append("| | nixrun `-n` | systemd-nspawn `-n` | ratio nixrun/nspawn |\n|---|---|---|---|")
            for label, key, f in (("boot → READY=1", "ready", fmt_s),
                                  ("  setup (spawn → STATUS)", "setup", fmt_ms),
                                  ("  guest (STATUS → READY=1)", "guest", fmt_s),
                                  ("CPU until READY=1, whole unit", "cpu_unit", fmt_s),
                                  ("  of which outside the guest's cgroup (the runtime)", "cpu_runtime", fmt_s),
                                  ("stop (SIGTERM → exit)", "stop", fmt_s),
                                  ("runtime RSS", "rss", fmt_mib)):
                L.append(f"| {label} | {f(a[key])} | {f(s_[key])} | {fmt_ratio_ci(a[key], s_[key])} |")
            fr = [x["first_ready"] for x in (a, s_)]
            L.append("| first boot → READY=1 | " + " | ".join("–" if x is None else f"{x:.3f} s" for x in fr)
                     + f" | {fmt_ratio(fr[0] / fr[1]) if None not in fr else '–'} |")
            L.append("| cycles not READY / exit ≠ 0 | "
                     f"{a['not_ready']} / {a['bad_exit']} | {s_['not_ready']} / {s_['bad_exit']} | |")
            L.append("| cycles with exactly `ve-NAME` in the namespace while up | " + " | ".join(
                f"{x['veth_ok']}/{x['cycles'] + 1}" + (f" (also seen: {', '.join(x['veth_bad'])})" if x["veth_bad"]
                                                        else "") for x in (a, s_)) + " | |")
            L.append("| left behind: links; journals (cycles with any) | " + " | ".join(
                f"{', '.join(x['net_left']['links']) or 'none'}; {', '.join(x['net_left']['journals']) or 'none'} "
                f"({x['net_left_cycles']})" for x in (a, s_)) + " | |")
            L.append("| left behind: processes; cgroups (inside the unit's cgroup); host mounts | "
                     + " | ".join(f"{x['leftover_procs']}; {', '.join(x['leftover_cgroups']) or 'none'}; "
                                  f"{len(x['leftover_mounts'])}" for x in (a, s_)) + " | |")
            L.append("")

    sc = net.get("scale", {})
    if sc.get("nixrun") or sc.get("stopped"):
        L.append(f"### {net['n']} NixOS-shaped guests with `-n` started at once\n")
        L.append(f"As in part 4 (fresh roots, spawned back to back, the launcher at real-time "
                 f"priority; `all READY` = first spawn → last `READY=1`; stop = SIGTERM to all → "
                 f"the last exit), each guest with `-n --machine=nxsNNN`: {net['n']} veth pairs in "
                 "one namespace. `links gone` = from the cleanup after the last exit until the "
                 "namespace holds no link but `lo` (polled, at most 5 s); `left` counts links and "
                 "nixrun journals still there then, processes and host mounts. nixrun and nspawn "
                 f"alternate, {net['reps']} repetition(s).\n")
        if sc.get("stopped"):
            L.append(f"Scale run {sc['stopped']}.\n")
        L.append("| runtime | READY | veths while up | all spawned | all READY | median READY | "
                 "CPU / guest to READY | exit 0 | all stopped | links gone | "
                 "left: links; journals; procs; mounts | host CPU busy before; while booting |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        runs = [x for rt in ("nixrun", "systemd-nspawn") for x in sc.get(rt, [])]

        def c(v, f):
            return "–" if v is None else f.format(v)

        for x in runs:
            nl = x["net_left"]
            other = f" (+ {', '.join(x['links_other'])})" if x["links_other"] else ""
            L.append(f"| {x['runtime']} | {x['ready_count']}/{x['n']} | {x['veths_up']}/{x['n']}{other} | "
                     f"{x['spawn_span']:.2f} s | "
                     f"{c(x['all_ready'], '{:.2f} s')} | {c(x['ready_median'], '{:.2f} s')} | "
                     f"{x['cpu_unit_per_guest']:.3f} s | {x['exit0']}/{x['n']} | {c(x['all_stopped'], '{:.2f} s')} | "
                     f"{x['links_gone']:.2f} s | {len(nl['links'])}; {len(nl['journals'])}; "
                     f"{x['left']['processes']}; {len(x['left']['mounts'])} | "
                     f"{x['busy_before']:.0f}%; {x.get('busy_booting', 0):.0f}% |")

        def med(rt, key):
            vs = [x[key] for x in sc.get(rt, []) if x[key] is not None]
            return statistics.median(vs) if vs else None

        q = [None if med("nixrun", k) is None or not med("systemd-nspawn", k)
             else med("nixrun", k) / med("systemd-nspawn", k)
             for k in ("spawn_span", "all_ready", "ready_median", "cpu_unit_per_guest", "all_stopped")]
        L.append(f"| **nixrun/nspawn** (medians) | | | {c(q[0], '{:.2f}×')} | {c(q[1], '{:.2f}×')} | "
                 f"{c(q[2], '{:.2f}×')} | {c(q[3], '{:.2f}×')} | | {c(q[4], '{:.2f}×')} | | | |")
        L.append("")
        lefts = sorted({y for x in runs for y in x["net_left"]["links"] + x["net_left"]["journals"]})
        if lefts:
            L.append("Left behind: " + ", ".join(f"`{y}`" for y in lefts[:8])
                     + (f" … (+{len(lefts) - 8} more)" if len(lefts) > 8 else "") + ".\n")
    if net.get("links_at_end"):
        L.append("Links in the namespace at the end of the part, before it was deleted: "
                 + ", ".join(f"`{x}`" for x in net["links_at_end"]) + ".\n")


def fmt_dur(x):
    return "–" if x is None else f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"


def fmt_items(items, limit=3):
    """[(item, note)] as a table cell: the first LIMIT, and how many more."""
    if not items:
        return "none"
    cell = ", ".join(f"`{x}`" + (f" ({n})" if n else "") for x, n in items[:limit])
    return cell + (f" … (+{len(items) - limit} more)" if len(items) > limit else "")


def report_ephemeral(L, e, args):
    L.append("## Ephemeral boot (`-x`)\n")
    L.append(f"The Debian guest booted with `-x`, as in part 2 ({args.boot_cycles} interleaved cycles "
             "after a first boot, one root per runtime), on this run's ext4. nixrun puts an overlay "
             "with a tmpfs upper layer over the tree (in a mount namespace of the supervisor's own); "
             "systemd-nspawn 252, on a file system without btrfs snapshots or reflinks, copies the "
             "whole tree next to it (`.#snapshot.*`) and removes the copy at exit, so its boot time "
             "grows with the tree and its stop includes the removal.\n")
    a, s = e["nixrun"], e["systemd-nspawn"]
    L.append("| | nixrun -x | systemd-nspawn -x | ratio nixrun/nspawn |\n|---|---|---|---|")
    for label, key, f in [("boot → READY=1", "ready", fmt_s), ("  setup (spawn → STATUS)", "setup", fmt_ms),
                          ("  guest (STATUS → READY=1)", "guest", fmt_s),
                          ("CPU until READY=1, whole unit", "cpu_unit", fmt_s),
                          ("stop (SIGTERM → exit)", "stop", fmt_s), ("runtime RSS", "rss", fmt_mib)]:
        L.append(f"| {label} | {f(a[key])} | {f(s[key])} | {fmt_ratio_ci(a[key], s[key])} |")
    fr = [x["first_ready"] for x in (a, s)]
    L.append("| first boot → READY=1 | " + " | ".join("–" if x is None else f"{x:.3f} s" for x in fr)
             + f" | {fmt_ratio(fr[0] / fr[1]) if None not in fr else '–'} |")
    L.append("| tree unchanged afterwards (paths, modes, owners, sizes, mtimes) | "
             + " | ".join("yes" if x["tree_unchanged"] else "**no**" for x in (a, s)) + " | |")
    L.append("| cycles not READY / exit ≠ 0 | "
             f"{a['not_ready']} / {a['bad_exit']} | {s['not_ready']} / {s['bad_exit']} | |")
    L.append("| left behind: processes; cgroups; host mounts | "
             + " | ".join(f"{x['leftover_procs']}; {', '.join(x['leftover_cgroups']) or 'none'}; "
                          f"{len(x['leftover_mounts'])}" for x in (a, s)) + " | |")
    L.append(f"| entries left next to the roots by either runtime (snapshots, lock files) | "
             f"{', '.join(e['left_beside']) or 'none'} | | |")
    L.append("")


def report_soak(L, soak):
    n_exec, n_boot = (soak.get(k, {}).get("cycles", 0) for k in ("exec", "boot"))
    L.append("## 5. Soak: nothing left behind\n")
    L.append(f"nixrun alone, cycles in sequence: {n_exec} start/stop cycles of "
             "`nixrun -D ROOT -q --console=pipe /bin/true` (the exec part's command and root), then "
             f"{n_boot} boot/stop cycles of the Debian guest: `nixrun -D ROOT --notify-ready=yes -b` "
             "with its own `$NOTIFY_SOCKET`, SIGTERM once `READY=1` came, one copy of the guest for "
             "all cycles (so only the first is a first boot). Every cycle runs in a fresh cgroup "
             "of its own (`SLOT` below). After each exit the benchmark waits up to 1 s for that "
             "cgroup to empty (zombies do not count) and then notes what the cycle left: "
             "processes in it, cgroups below it or as `nixrun-<machine>` in the v1 hierarchies "
             "where nixrun starts outside the slot (devices and pids on a hybrid host), its lock files "
             "(`/run/systemd/nspawn/locks/inode-<dev>:<ino>`, `…/name-<machine>`, "
             "`.#<root>.lck` next to the root). Before the soak and after each phase it compares "
             "snapshots of the host: the mount table (mount point, type, source), cgroups below "
             "the benchmark's own and any `nixrun-<machine>` below them, the lock files, every path under "
             "`/run`, and the benchmark's own open fds (a leak there would hide or fake others). "
             "Time per cycle: spawn → exit and cgroup empty (boot/stop: spawn → `READY=1` plus "
             "SIGTERM → exit and cgroup empty; the benchmark's look at the supervisor in between "
             "left out). Failed: exit status ≠ 0, no `READY=1` within "
             f"{SOAK_READY_TIMEOUT} s, or no exit within {SOAK_EXEC_TIMEOUT} s of the spawn "
             f"(`/bin/true`) or {SOAK_STOP_TIMEOUT} s of SIGTERM (boot). Supervisor fds and RSS: "
             f"the nixrun process itself (`/proc/PID/fd`, `VmRSS`), read {SOAK_SETTLE:g} s after `READY=1` "
             "arrived (nixrun sends it through a socket it opens for the message and closes right "
             "after: read at once, one cycle in ten counts that socket too).\n")
    phases = [(k, t) for k, t in (("exec", "start/stop `/bin/true`"), ("boot", "boot/stop Debian")) if k in soak]
    L.append("| | " + " | ".join(t for _, t in phases) + " |\n|---|" + "---|" * len(phases))

    def row(label, cell):
        L.append(f"| {label} | " + " | ".join(cell(soak[k]) for k, _ in phases) + " |")

    def tenths(xs, f):
        k = max(1, len(xs) // 10)
        return f"{f(statistics.median(xs[:k]))} → {f(statistics.median(xs[-k:]))}" if xs else "–"

    def done(xs):
        return [x for x in xs if x is not None]

    row("cycles", lambda p: str(p["cycles"]))
    row("failed: exit ≠ 0 / not READY / timed out", lambda p: " / ".join(
        str(len(p[k])) if k in p else "–" for k in ("bad_exit", "not_ready", "timeout")))
    row("time per cycle: median (max)",
        lambda p: f"{fmt_dur(statistics.median(p['time']))} ({fmt_dur(max(p['time']))})" if p["time"] else "–")
    row("  median over the first → the last tenth of the cycles", lambda p: tenths(p["time"], fmt_dur))
    if "boot" in soak:
        row("  boot → READY=1; SIGTERM → exit: median (max)", lambda p: "; ".join(
            f"{fmt_dur(statistics.median(done(p[k])))} ({fmt_dur(max(done(p[k])))})" if done(p.get(k, []))
            else "–" for k in ("ready", "stop")) if "ready" in p else "–")
        row(f"supervisor fds {SOAK_SETTLE:g} s after READY=1: min / median / max", lambda p: (
            f"{min(p['fds'])} / {statistics.median(p['fds']):g} / {max(p['fds'])}" if p.get("fds") else "–"))
        row("  first → last cycle", lambda p: f"{p['fds'][0]} → {p['fds'][-1]}" if p.get("fds") else "–")
        row(f"supervisor RSS {SOAK_SETTLE:g} s after READY=1: median (max)", lambda p: (
            f"{statistics.median(p['rss']) / MIB:.2f} MiB ({max(p['rss']) / MIB:.2f} MiB)" if p.get("rss") else "–"))
        row("  first → last cycle", lambda p: (
            f"{p['rss'][0] / MIB:.2f} → {p['rss'][-1] / MIB:.2f} MiB" if p.get("rss") else "–"))
    for cat, name in SOAK_CATEGORIES:
        row(f"left: {name}", lambda p, cat=cat: fmt_items(soak_left(p)[cat]))
    row("benchmark's own open fds: before → after", lambda p: "{} → {}".format(*p["harness_fds"]))
    L.append("")

    for k, title in phases:
        p = soak[k]
        bad = ([f"cycle {i}: exit {rc}" for i, rc in p["bad_exit"]] + [f"cycle {i}: not READY" for i in
               p.get("not_ready", [])] + [f"cycle {i}: timed out" for i in p["timeout"]])
        if bad:
            log_name = "soak-exec.log" if k == "exec" else "soak-boot-<cycle>.log"
            L.append(f"Failed cycles of {title} (output in `target/bench/logs/{log_name}`): "
                     + ", ".join(bad[:8]) + (f" … (+{len(bad) - 8} more)" if len(bad) > 8 else "") + ".\n")
        elsewhere = [f"{name}: " + ", ".join(f"`{x}`" for x in p["elsewhere"][cat][:3])
                     + (f" … (+{len(p['elsewhere'][cat]) - 3} more)" if len(p["elsewhere"][cat]) > 3 else "")
                     for cat, name in SOAK_CATEGORIES if p["elsewhere"].get(cat)]
        if elsewhere:
            L.append(f"New on the host during {title}, and not counted above because it is others' "
                     "work on this shared machine (another machine's lock files or cgroups, mounts away "
                     "from the paths nixrun uses): " + "; ".join(elsewhere) + ".\n")
        gone = [f"{name}: " + ", ".join(f"`{x}`" for x in p["gone"][cat][:3])
                + (f" … (+{len(p['gone'][cat]) - 3} more)" if len(p["gone"][cat]) > 3 else "")
                for cat, name in SOAK_CATEGORIES if p["gone"].get(cat)]
        if gone:
            L.append(f"Gone from the host during {title} (there before, not after): " + "; ".join(gone) + ".\n")
        samples = p.get("fd_samples", [])

        # What the fds are, numbers (inodes, cycles, devices) dropped.
        def kinds(sample):
            return collections.Counter(re.sub(r"\d+", "N", re.sub(r"^/.*/nixrun-bench\.[^/]+/work/", "WORK/", t))
                                       for t in sample["targets"])

        if samples:
            L.append(f"The supervisor's {samples[0]['n']} fds in cycle {samples[0]['cycle']} (`WORK` = the "
                     "benchmark's scratch file system; `/N` and `/ptmx`: the console's pty, in the guest's "
                     "devpts): "
                     + ", ".join(f"`{x}`" + (f" ×{n}" if n > 1 else "") for x, n in sorted(kinds(samples[0]).items()))
                     + ".\n")
        if len(samples) > 1:
            lo, hi = min(samples, key=lambda x: x["n"]), max(samples, key=lambda x: x["n"])
            more = sorted((kinds(hi) - kinds(lo)).elements())
            less = sorted((kinds(lo) - kinds(hi)).elements())
            L.append(f"The supervisor's fds differ between cycles: {lo['n']} in cycle "
                     f"{lo['cycle']}, {hi['n']} in cycle {hi['cycle']}; the latter has in addition "
                     + (", ".join(f"`{x}`" for x in more) or "nothing")
                     + (", and lacks " + ", ".join(f"`{x}`" for x in less) if less else "") + ".\n")


PARTS = {"exec", "boot", "ephemeral", "scale", "net", "soak"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few iterations, N=10 only")
    ap.add_argument("--nixrun", help="the nixrun binary to test (default: build it)")
    ap.add_argument("--out", help="where benchmarks.md and the plot go (default: docs/, quick: target/bench/quick)")
    ap.add_argument("--exec-rounds", type=int)
    ap.add_argument("--boot-cycles", type=int)
    ap.add_argument("--scale", help="comma-separated N (default 10,25,50,100; quick: 10)")
    ap.add_argument("--scale-reps", type=int, help="repetitions per N ≤ 50 (default 3; quick: 1); bigger N run once")
    ap.add_argument("--settle", type=float,
                    help="seconds to let a booted guest settle (default 0.5; quick: 0.25)")
    ap.add_argument("--keep-sysctl", action="store_true",
                    help="do not raise fs.inotify limits for the scale part")
    ap.add_argument("--soak-cycles", type=int,
                    help="soak: start/stop cycles of /bin/true (default 1000; 0: none)")
    ap.add_argument("--soak-boots", type=int, help="soak: boot/stop cycles of the Debian guest (default 100; 0: none)")
    ap.add_argument("--net-scale", type=int,
                    help="net: N guests with -n started at once (default 100; quick: 10; 0: none); "
                         "its exec rounds, boot cycles and repetitions are --exec-rounds, --boot-cycles, "
                         "--scale-reps")
    ap.add_argument("--skip", default="",
                    help="comma-separated parts to skip: exec,boot,ephemeral,scale,net,soak (--quick skips soak "
                         "unless a --soak-* count is given)")
    ap.add_argument("--report-only", metavar="JSON",
                    help="measure nothing: write the report again from a run's results "
                         "(target/bench/results.json), e.g. after editing benches/notes.md")
    args = ap.parse_args()
    if args.report_only:
        results = json.loads(Path(args.report_only).read_text())
        run_args = argparse.Namespace(**results["args"])
        out = Path(args.out) if args.out else (BENCH_TARGET / "quick" if run_args.quick else REPO / "docs")
        write_report(results, run_args, out)
        return
    if os.geteuid() != 0:
        raise SystemExit("compare.py: run as root (it starts containers)")
    q = args.quick
    if q:
        CALM_LIMIT["limit"] = 3.0
    if args.settle is None:
        args.settle = 0.25 if q else 0.5
    args.exec_rounds = args.exec_rounds or (20 if q else 200)
    args.warmup = 2 if q else 5
    args.boot_cycles = args.boot_cycles or (2 if q else 20)
    ns = [int(x) for x in (args.scale or ("10" if q else "10,25,50,100")).split(",") if x]
    args.scale_reps = args.scale_reps or (1 if q else 3)
    out = Path(args.out) if args.out else (BENCH_TARGET / "quick" if q else REPO / "docs")
    skip = set(filter(None, args.skip.split(",")))
    if skip - PARTS:
        ap.error(f"--skip: unknown part(s) {','.join(sorted(skip - PARTS))} (parts: {','.join(sorted(PARTS))})")
    if q and args.soak_cycles is None and args.soak_boots is None:
        skip.add("soak")
    args.soak_cycles = 1000 if args.soak_cycles is None else args.soak_cycles
    args.soak_boots = 100 if args.soak_boots is None else args.soak_boots
    args.net_scale = (10 if q else NET_N) if args.net_scale is None else args.net_scale

    started = time.monotonic()
    no_inherited_fds()
    bench = Bench(args)
    try:
        bench.results["host"] = host_line()
        bench.results["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        argv, skip_next = [], False
        for a in sys.argv[1:]:
            if skip_next or a.startswith("--out="):
                skip_next = False
                continue
            skip_next = a == "--out"
            if not skip_next:
                argv.append(a)
        bench.results["command"] = " ".join(["python3 benches/compare.py", *argv])
        # How long each part took, so that --quick can be kept at about a minute.
        took = bench.results["took"] = {}

        def part(name, fn, *a):
            t = time.monotonic()
            fn(*a)
            took[name] = time.monotonic() - t
            log(f"{name}: {took[name]:.0f} s")

        part("setup", bench.setup)
        if "exec" not in skip:
            part("exec", bench.bench_exec, args.exec_rounds, args.warmup)
        if "boot" not in skip:
            part("boot", bench.bench_boot, args.boot_cycles)
        if "ephemeral" not in skip:
            part("ephemeral", bench.bench_ephemeral, args.boot_cycles)
        if "scale" not in skip:
            part("scale", bench.bench_scale, ns, args.scale_reps)
        if "net" not in skip:
            # --quick: one cycle per runtime and guest in the net part (its
            # boot/stop targets are the boot part's, measured there).
            part("net", bench.bench_net, args.exec_rounds, args.warmup, 1 if q else args.boot_cycles,
                 args.net_scale, args.scale_reps)
        if "soak" not in skip:
            part("soak", bench.bench_soak, args.soak_cycles, args.soak_boots)
    finally:
        bench.close()
    bench.results["duration"] = time.monotonic() - started
    bench.results["args"] = {k: getattr(args, k) for k in
                             ("quick", "exec_rounds", "warmup", "boot_cycles", "scale_reps", "settle",
                              "soak_cycles", "soak_boots", "net_scale")}
    BENCH_TARGET.mkdir(parents=True, exist_ok=True)
    (BENCH_TARGET / ("results-quick.json" if q else "results.json")).write_text(
        json.dumps(bench.results, indent=1, default=str))
    write_report(bench.results, args, out)
    log(f"took {bench.results['duration'] / 60:.1f} min")


def tree_summary(root):
    """Every entry's path, type, mode, owner, size and mtime, hashed: what an
    ephemeral run must leave as it was (contents: see integration/ephemeral.rs,
    which hashes them too)."""
    h = hashlib.sha256()
    for d, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(dirs + files):
            p = os.path.join(d, name)
            st = os.lstat(p)
            h.update(f"{p} {st.st_mode} {st.st_uid}:{st.st_gid} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def write_report(results, args, out):
    out.mkdir(parents=True, exist_ok=True)
    plot = "benchmarks-scale.svg"
    (out / plot).write_text(svg_plot(results))
    (out / "benchmarks.md").write_text(report(results, args, plot))
    log(f"wrote {out / 'benchmarks.md'} and {out / plot}")


if __name__ == "__main__":
    main()
