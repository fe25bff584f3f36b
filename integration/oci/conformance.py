#!/usr/bin/env python3
"""The OCI runtime conformance suite (opencontainers/runtime-tools validation/,
at commit 408c51e) against nixrun-oci and runc, side by side.

Builds the suite from the source tarball in ../shared/third-party (its Go
dependencies are vendored: Debian 12's golang-go builds it offline) once into
the fixture cache (keyed by the tarball's hash), runs the validation tests one
at a time, prints one table (per test: TAP lines ok/planned for each runtime),
writes it as JSON with --json FILE, and exits 1 if nixrun-oci fails a test
that runc passes, unless the test is one of the DIVERGENCES below, each named
with its reason (nixrun-oci's `features` must name exactly these).

Modes (the two runtimes never run at the same time: the cgroup tests of both
use the same absolute cgroupsPath, /cgrouptest):
  full  every test against runc, then every test against nixrun-oci, one at a
        time (the table in docs/oci.md);
  ci    every test against nixrun-oci, in --lanes lanes at once (the tests
        using the suite's fixed cgroups one after the other in one lane), then
        runc, one test at a time, only on the tests nixrun-oci failed: a test
        nixrun-oci passes cannot be a regression, whatever runc does. This is
        what `cargo test --test oci` runs.

A test passes when it exits 0, its plan is complete and every TAP line is ok;
a test whose plan is 1..0 passes when it printed no diagnostic (those tests
report their failure only as a YAML error block).

When runc passes a test nixrun-oci fails, each runs it alone RERUNS more
times, runc first. Some tests race with the runtime (pidfile kills a container
whose process is `true`, and passes only if `state` still sees it running): a
test runc fails in one of its runs is not held against nixrun-oci (the table
says so, with the counts). Otherwise it is a regression unless nixrun-oci
passes every one of its reruns (its first run may have failed under the
lanes' load). The table shows every run's count.

Host hygiene, checked after every test of either runtime: no mount left below
the test's private TMPDIR (bundles go there), no state left in the runtime's
--root (a private one per test, through a wrapper that also logs the
container ids), no cgroup left named after one of the test's containers or
(for the tests that use them) the suite's cgroupsPaths (cgrouptest, testdir),
no process in one, the propagation of the mounts on the way to the bundle
unchanged, and the host-global cgroup settings unchanged (the hierarchy roots'
subtree_control, limits and release agents). What runc leaves is removed and
listed; anything nixrun-oci leaves fails the run. Global cgroup settings a
test changed are restored and the run fails, whichever runtime changed them.

usage: conformance.py NIXRUN_OCI [--reference runc] [--mode full|ci] [--json FILE]
                      [--only t1,t2] [--logs DIR]
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARBALL = os.environ.get(
    "NIXRUN_RUNTIME_TOOLS",
    os.path.join(REPO, "..", "shared", "third-party", "runtime-tools-408c51e.tar.gz"),
)
CACHE = os.environ.get("NIXRUN_FIXTURES", "/var/cache/nixrun-fixtures")
TIMEOUT = 120
RERUNS = 3

# Tests runc passes here that nixrun-oci fails on purpose. Each must be named
# the same way in `nixrun-oci features` (annotation
# org.nixrun.divergence.<test>) and in docs/oci.md.
DIVERGENCES = {
    "linux_ns_itype": (
        "a config without a mount namespace is refused: runc runs it in the host's "
        "mount namespace, mounting the container's /proc, /dev, /sys onto the "
        "bundle on the host's own tree (left mounted after delete) after making "
        "the host's / a recursive slave, with a chroot as the only wall"
    ),
}

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# cgroupsPaths of the suite's cgroup tests (runtime-tools cgroups/cgroups.go).
SUITE_CGROUPS = ("cgrouptest", "testdir")
# Cgroups a test makes itself (not through the runtime) and removes only in
# a deferred call that its early exits (util.Fatal) skip: left empty by such
# an exit, they are the test's, not the runtime's. A process in one still is.
TEST_OWN_CGROUPS = {"delete_only_create_resources": ("/sys/fs/cgroup/pids/cgrouptest",)}
TEST_OWN = "the test's own, left by its early exit: "


def die(msg):
    print(f"conformance.py: {msg}", file=sys.stderr)
    sys.exit(2)


def build():
    """The built suite's directory (cached by the tarball's sha256)."""
    if not os.path.isfile(TARBALL):
        die(f"missing prerequisite: the runtime-tools tarball {TARBALL} (the shared/ copy beside the checkout, or $NIXRUN_RUNTIME_TOOLS)")
    if shutil.which("go") is None:
        die("missing prerequisite: go (apt-get install golang-go)")
    with open(TARBALL, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    top = os.path.join(CACHE, f"runtime-tools-{digest}")
    src = os.path.join(top, "runtime-tools-408c51e")
    stamp = os.path.join(top, "built")
    if os.path.exists(stamp):
        return src
    shutil.rmtree(top, ignore_errors=True)
    os.makedirs(top)
    subprocess.run(["tar", "-xzf", TARBALL, "-C", top], check=True)
    env = dict(os.environ, GOFLAGS="-mod=vendor", GOPROXY="off", GOCACHE=os.path.join(top, "gocache"))
    t0 = time.monotonic()
    r = subprocess.run(["make", "runtimetest", "validation-executables"], cwd=src, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        print(r.stdout[-4000:], file=sys.stderr)
        die("building runtime-tools failed (output above)")
    print(f"built runtime-tools validation in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    open(stamp, "w").close()
    return src


def tests(src):
    vdir = os.path.join(src, "validation")
    return sorted(d for d in os.listdir(vdir) if os.path.isfile(os.path.join(vdir, d, d + ".t")))


def score(rc, out):
    """(ok, planned, passed) from one test's TAP output."""
    ok = len(re.findall(r"^ok ", out, re.M))
    notok = len(re.findall(r"^not ok ", out, re.M))
    m = re.search(r"^1\.\.(\d+)", out, re.M)
    planned = int(m.group(1)) if m else None
    if planned == 0:
        passed = rc == 0 and notok == 0 and '"error"' not in out
        return (1 if passed else 0, 1, passed)
    total = max(planned or 0, ok + notok)
    passed = rc == 0 and planned is not None and notok == 0 and ok == planned
    return (ok, total, passed)


# --- the host's state -------------------------------------------------------

def mountinfo():
    """[(mount id, mount point, propagation)] of our mount namespace."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left = line.split(" - ")[0].split(" ")
            point = left[4].encode().decode("unicode_escape")
            out.append((left[0], point, " ".join(t for t in left[6:] if ":" in t)))
    return out


def hierarchies():
    """Mount points of every cgroup hierarchy, cgroup2 first."""
    v2, v1 = [], []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fstype = right.split(" ")[0]
            point = left.split(" ")[4]
            if fstype == "cgroup2":
                v2.append(point)
            elif fstype == "cgroup":
                v1.append(point)
    return v2 + v1


GLOBAL_V2 = ("cgroup.subtree_control", "cgroup.max.depth", "cgroup.max.descendants")
GLOBAL_V1 = ("release_agent", "notify_on_release", "cgroup.clone_children")


def global_cgroup_settings():
    """The settings of the hierarchies' roots: a test may change none."""
    out = {}
    for h in hierarchies():
        for name in GLOBAL_V2 + GLOBAL_V1:
            p = os.path.join(h, name)
            try:
                with open(p) as f:
                    out[p] = f.read()
            except OSError:
                pass
    return out


def restore_settings(before, now):
    for p, v in before.items():
        if now.get(p) == v:
            continue
        if p.endswith("cgroup.subtree_control"):
            # Written one controller at a time: "-x" for the added, "+x" for the dropped.
            was, cur = set(v.split()), set(now.get(p, "").split())
            for c in sorted(cur - was):
                write_quietly(p, f"-{c}")
            for c in sorted(was - cur):
                write_quietly(p, f"+{c}")
        else:
            write_quietly(p, v.strip() or "\n")


def write_quietly(p, v):
    try:
        with open(p, "w") as f:
            f.write(v)
    except OSError as e:
        print(f"conformance.py: restoring {p}: {e}", file=sys.stderr)


def cgroups_named(names):
    """Cgroups in any hierarchy whose name is one of `names`, with everything
    below them, deepest first."""
    found = []
    for h in hierarchies():
        for d, subdirs, _ in os.walk(h):
            for s in subdirs:
                if s in names:
                    found.append(os.path.join(d, s))
    tops = [p for p in found if not any(p.startswith(q + "/") for q in found)]
    out = []
    for t in tops:
        for d, _, _ in os.walk(t, topdown=False):
            out.append(d)
    return out


def procs_in(cgroup):
    try:
        with open(os.path.join(cgroup, "cgroup.procs")) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class Hygiene:
    """What one test run left on the host, and its removal. Its containers
    are known by the ids its runtime wrapper logged; the suite's own
    cgroupsPaths (cgrouptest, testdir) only where `suite_cgroups` (those
    tests run one at a time)."""

    def __init__(self, tmpdir, state_root, idlog, suite_cgroups, own=()):
        self.tmpdir, self.state_root, self.idlog = tmpdir, state_root, idlog
        self.own = own
        self.suite_cgroups = suite_cgroups
        self.mounts = mountinfo()
        self.settings = global_cgroup_settings()
        self.before = set(cgroups_named(SUITE_CGROUPS)) if suite_cgroups else set()

    def ids(self):
        try:
            with open(self.idlog) as f:
                return {w for w in f.read().split() if UUID.match(w)}
        except FileNotFoundError:
            return set()

    def check_and_clean(self):
        left = []
        names = set(self.ids())
        if self.suite_cgroups:
            names |= set(SUITE_CGROUPS)
        # Processes first: a live container would keep its cgroups and mounts.
        new_cgroups = [c for c in cgroups_named(names) if c not in self.before]
        for c in new_cgroups:
            for pid in procs_in(c):
                left.append(f"process {pid} in {c}")
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        before_ids = {m[0]: m for m in self.mounts}
        now = mountinfo()
        # runc makes / a recursive slave in the namespace it runs in; the
        # mounts on the way to the bundle show that.
        on_path = [(mid, p, prop) for (mid, p, prop) in now
                   if p == "/" or (self.tmpdir + "/").startswith(p.rstrip("/") + "/")]
        for mid, point, prop in on_path:
            if mid in before_ids and before_ids[mid][2] != prop:
                left.append(f"propagation of {point} changed: {before_ids[mid][2] or 'private'} -> {prop or 'private'}")
        stray = [p for (mid, p, _) in now if mid not in before_ids
                 and (p.startswith(self.tmpdir + "/") or p.startswith(self.state_root + "/"))]
        for p in sorted(stray, key=lambda p: -p.count("/")):
            left.append(f"mount {p}")
            subprocess.run(["umount", "-l", p], stderr=subprocess.DEVNULL)
        if os.path.isdir(self.state_root):
            for e in os.listdir(self.state_root):
                left.append(f"state {os.path.join(self.state_root, e)}")
        hs = hierarchies()
        where = {}
        for c in new_cgroups:
            if c in self.own:
                # Held against the runtime only for a process in it (above).
                left.append(f"{TEST_OWN}cgroup {c}")
                continue
            h = max((h for h in hs if c.startswith(h + "/")), key=len, default="")
            where.setdefault(c[len(h):], []).append(os.path.basename(h) or h)
        for rel, names in sorted(where.items()):
            left.append(f"cgroup {rel} (in {len(names)} hierarchies: {' '.join(sorted(names))})")
        for c in new_cgroups:
            for _ in range(50):
                try:
                    os.rmdir(c)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        now_settings = global_cgroup_settings()
        changed = [f"{p}: {self.settings[p].strip()!r} -> {now_settings.get(p, '').strip()!r}"
                   for p in self.settings if now_settings.get(p) != self.settings[p]]
        if changed:
            restore_settings(self.settings, now_settings)
        shutil.rmtree(self.state_root, ignore_errors=True)
        return left, changed


# --- running ------------------------------------------------------------------

def wrapper(tmpdir, runtime):
    """A runtime command with a private --root that logs its arguments
    (runtime-tools takes a command path, no arguments)."""
    root = os.path.join(tmpdir, "runtime-root")
    log = os.path.join(tmpdir, "runtime-args")
    path = os.path.join(tmpdir, "runtime")
    with open(path, "w") as f:
        f.write(f"#!/bin/sh\necho \"$@\" >> {log}\nexec {runtime} --root {root} \"$@\"\n")
    os.chmod(path, 0o755)
    return path, root, log


def uses_suite_cgroups(name):
    """Tests whose containers use the suite's fixed cgroupsPaths: never two
    at once, of either runtime."""
    return name.startswith("linux_cgroups_") or name in ("delete_resources", "delete_only_create_resources")


def run_one(src, top, label, runtime, name):
    """(ok, total, passed, output, seconds, left behind, settings changed)."""
    tmpdir = tempfile.mkdtemp(prefix=f"{label}-{name}-", dir=top)
    # mkdtemp's 0700 would keep a container's mapped users out of the bundle.
    os.chmod(tmpdir, 0o755)
    cmd, root, idlog = wrapper(tmpdir, runtime)
    bundles = os.path.join(tmpdir, "tmp")
    os.mkdir(bundles)
    hyg = Hygiene(bundles, root, idlog, uses_suite_cgroups(name), TEST_OWN_CGROUPS.get(name, ()))
    exe = os.path.join(src, "validation", name, name + ".t")
    t0 = time.monotonic()
    try:
        r = subprocess.run([exe], cwd=src, env=dict(os.environ, RUNTIME=cmd, TMPDIR=bundles),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        rc, out = r.returncode, r.stdout
    except subprocess.TimeoutExpired as e:
        rc, out = -1, (e.stdout or b"").decode(errors="replace") + "\n(timed out)"
    secs = time.monotonic() - t0
    left, changed = hyg.check_and_clean()
    if os.listdir(bundles):
        # The suite's own leftovers (some tests do not remove their files).
        shutil.rmtree(bundles, ignore_errors=True)
    shutil.rmtree(tmpdir, ignore_errors=True)
    if os.path.exists(tmpdir):
        left.append(f"files in {tmpdir} that cannot be removed")
    return score(rc, out) + (out, secs, left, changed)


def in_lanes(names, lanes, one):
    """Runs `one(name)` for every test, in `lanes` threads: the tests using
    the suite's fixed cgroups all in the first, one after the other; the
    others longest first (by `EXPECTED`) wherever a lane is free."""
    import queue
    import threading
    cg = [n for n in names if uses_suite_cgroups(n)]
    rest = sorted((n for n in names if not uses_suite_cgroups(n)),
                  key=lambda n: -EXPECTED.get(n, 1))
    q = queue.Queue()
    for n in rest:
        q.put(n)

    def lane(first):
        for n in first:
            one(n)
        while True:
            try:
                n = q.get_nowait()
            except queue.Empty:
                return
            one(n)

    threads = [threading.Thread(target=lane, args=(cg if i == 0 else [],)) for i in range(max(lanes, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# Seconds a test takes here (most of it the suite's own polling: 1 s state
# intervals, 10 s timeouts); only the order of the lanes depends on it.
EXPECTED = {"delete": 16, "kill": 10, "pidfile": 10, "linux_masked_paths": 6,
            "linux_ns_path": 3, "linux_readonly_paths": 3, "linux_rootfs_propagation": 3,
            "killsig": 2, "linux_ns_path_type": 2}


def features_divergences(runtime):
    r = subprocess.run([runtime, "features"], stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        die(f"{runtime} features failed")
    ann = json.loads(r.stdout).get("annotations", {})
    prefix = "org.nixrun.divergence."
    return {k[len(prefix):] for k in ann if k.startswith(prefix)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runtime")
    ap.add_argument("--reference", default="runc")
    ap.add_argument("--mode", choices=("full", "ci"), default="full")
    ap.add_argument("--json")
    ap.add_argument("--only")
    ap.add_argument("--logs", help="directory for each test's output")
    ap.add_argument("--lanes", type=int, default=4,
                    help="ci mode: nixrun-oci's tests in this many lanes at once (most of a test is waiting)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        die("must run as root (the suite starts containers)")
    ref = shutil.which(a.reference)
    if ref is None:
        die(f"missing prerequisite: {a.reference} (apt-get install runc)")
    nixrun = os.path.abspath(a.runtime)
    declared = features_divergences(nixrun)
    if declared != set(DIVERGENCES):
        die(f"nixrun-oci features names the divergences {sorted(declared)}, this script {sorted(DIVERGENCES)}")
    src = build()
    names = tests(src)
    if a.only:
        names = [n for n in names if n in a.only.split(",")]
    top = tempfile.mkdtemp(prefix="oci-conformance-", dir="/var/tmp")
    os.chmod(top, 0o755)
    runs = {}  # (label, test) -> [result, ...]

    import threading
    lock = threading.Lock()

    def one(label, runtime, n):
        r = run_one(src, top, label, runtime, n)
        with lock:
            runs.setdefault((label, n), []).append(r)

    def go(label, runtime, which):
        for n in which:
            one(label, runtime, n)

    t0 = time.monotonic()
    try:
        if a.mode == "full":
            go("runc", ref, names)
            go("nixrun", nixrun, names)
        else:
            in_lanes(names, a.lanes, lambda n: one("nixrun", nixrun, n))
            go("runc", ref, [n for n in names if not runs[("nixrun", n)][0][2]])
        # A disagreement is settled by runs of each alone: runc again first
        # (a test runc does not pass every time cannot be held against
        # nixrun-oci), then nixrun-oci.
        for n in names:
            if (n in DIVERGENCES or ("runc", n) not in runs
                    or not runs[("runc", n)][0][2] or runs[("nixrun", n)][0][2]):
                continue
            for _ in range(RERUNS):
                one("runc", ref, n)
                if not runs[("runc", n)][-1][2]:
                    break
            else:
                for _ in range(RERUNS):
                    one("nixrun", nixrun, n)
    finally:
        shutil.rmtree(top, ignore_errors=True)
    elapsed = time.monotonic() - t0

    if a.logs:
        os.makedirs(a.logs, exist_ok=True)
        for (label, n), rs in runs.items():
            for i, r in enumerate(rs):
                with open(os.path.join(a.logs, f"{n}.{label}.{i}.tap"), "w") as f:
                    f.write(r[3])

    def cell(rs):
        if rs is None:
            return "-"
        first = f"{rs[0][0]}/{rs[0][1]}" + (" pass" if rs[0][2] else " FAIL")
        if len(rs) > 1:
            first += f" ({sum(r[2] for r in rs)}/{len(rs)} runs)"
        return first

    regressions, hygiene_fail, table = [], [], []
    print(f"{'test':32} {'runc 1.1.5':>22} {'nixrun-oci':>22}")
    for n in names:
        rr, nx = runs.get(("runc", n)), runs[("nixrun", n)]
        r_pass = sum(r[2] for r in rr) if rr else 0
        n_pass = sum(r[2] for r in nx)
        mark = ""
        if n in DIVERGENCES:
            if nx[0][2]:
                regressions.append(n)
                mark = "  <- a named divergence that nixrun-oci passes: remove it from DIVERGENCES"
            else:
                mark = "  (named divergence)"
        elif rr and rr[0][2] and not nx[0][2] and r_pass == len(rr) and (len(nx) == 1 or not all(r[2] for r in nx[1:])):
            # runc passed every run; nixrun-oci failed one of its runs alone
            # (or it had none: a deterministic failure is one run).
            regressions.append(n)
            mark = "  <- runc passes, nixrun-oci fails"
        elif rr and rr[0][2] and not nx[0][2] and r_pass < len(rr):
            mark = "  (runc does not pass it every time)"
        elif rr and rr[0][2] and not nx[0][2]:
            mark = "  (nixrun-oci passes it alone)"
        elif not rr:
            mark = "  (runc not run: nixrun-oci passes)"
        elif n_pass and not r_pass:
            mark = "  (nixrun-oci only)"
        print(f"{n:32} {cell(rr):>22} {cell(nx):>22}{mark}")
        entry = {"test": n, "nixrun": [{"ok": r[0], "total": r[1], "pass": r[2], "seconds": round(r[4], 2)} for r in nx]}
        if rr:
            entry["runc"] = [{"ok": r[0], "total": r[1], "pass": r[2], "seconds": round(r[4], 2)} for r in rr]
        if n in DIVERGENCES:
            entry["divergence"] = DIVERGENCES[n]
        table.append(entry)
        for label, rs in (("runc", rr or []), ("nixrun-oci", nx)):
            for r in rs:
                for what in r[5]:
                    print(f"    {what if what.startswith(TEST_OWN) else label + ' left behind: ' + what} (removed)")
                for what in r[6]:
                    print(f"    {label} changed a global cgroup setting: {what} (restored)")
                if r[6] or (label == "nixrun-oci" and any(not w.startswith(TEST_OWN) for w in r[5])):
                    hygiene_fail.append(f"{n} ({label})")
        # What a failed run of nixrun-oci printed, where it matters: a
        # regression, a failure its reruns did not repeat, a hygiene failure.
        if mark in ("  <- runc passes, nixrun-oci fails", "  (nixrun-oci passes it alone)") or \
                any(h.startswith(f"{n} (") for h in hygiene_fail):
            bad = next((r for r in nx if not r[2]), None)
            if bad is not None:
                print("    nixrun-oci's failed run printed (last lines):")
                for line in bad[3].strip().splitlines()[-15:]:
                    print(f"      | {line}")
    if a.mode == "full":
        p_r = sum(1 for n in names if runs[("runc", n)][0][2])
        print(f"{'tests passed (first run)':32} {p_r:>15}/{len(names):<6} "
              f"{sum(1 for n in names if runs[('nixrun', n)][0][2]):>15}/{len(names):<6}")
    else:
        print(f"{'tests passed (first run)':32} {'':>22} "
              f"{sum(1 for n in names if runs[('nixrun', n)][0][2]):>15}/{len(names):<6}")
    for n, why in DIVERGENCES.items():
        print(f"named divergence {n}: {why}")
    print(f"({elapsed:.0f} s, mode {a.mode})")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(table, f, indent=1)
    failed = False
    if regressions:
        print("nixrun-oci fails what runc passes: " + ", ".join(regressions))
        failed = True
    if hygiene_fail:
        print("host hygiene: " + ", ".join(hygiene_fail))
        failed = True
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
