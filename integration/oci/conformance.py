#!/usr/bin/env python3
"""The OCI runtime conformance suite (opencontainers/runtime-tools validation/,
at commit 408c51e) against nixrun-oci and runc, side by side.

Builds the suite from the source tarball in ../shared/third-party (its Go
dependencies are vendored: Debian 12's golang-go builds it offline), caches the
build by the tarball's hash, runs every validation test once per runtime (one
runtime after the other, each test alone), prints one table, writes it as JSON
with --json FILE, and exits 1 if nixrun-oci fails a test that runc passes.

A test passes when it exits 0, its plan is complete and every TAP line is ok;
a test whose plan is 1..0 passes when it printed no diagnostic (those tests
report their failure only as a YAML error block).

usage: conformance.py NIXRUN_OCI [--reference runc] [--json FILE] [--only t1,t2]
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
CACHE = "/var/cache/nixrun-fixtures"
TIMEOUT = 120


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


def run_one(src, runtime, name):
    exe = os.path.join(src, "validation", name, name + ".t")
    try:
        r = subprocess.run([exe], cwd=src, env=dict(os.environ, RUNTIME=runtime),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        rc, out = r.returncode, r.stdout
    except subprocess.TimeoutExpired as e:
        rc, out = -1, (e.stdout or b"").decode(errors="replace") + "\n(timed out)"
    return score(rc, out) + (out,)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runtime")
    ap.add_argument("--reference", default="runc")
    ap.add_argument("--json")
    ap.add_argument("--only")
    ap.add_argument("--logs", help="directory for each test's output")
    a = ap.parse_args()
    if os.geteuid() != 0:
        die("must run as root (the suite starts containers)")
    ref = shutil.which(a.reference)
    if ref is None:
        die(f"missing prerequisite: {a.reference} (apt-get install runc)")
    src = build()
    names = tests(src)
    if a.only:
        names = [n for n in names if n in a.only.split(",")]
    results = {}

    def worker(label, runtime):
        for n in names:
            results[(label, n)] = run_one(src, runtime, n)

    # One runtime after the other: the cgroup tests of both would use the
    # same absolute cgroupsPath (/cgrouptest) and remove each other's.
    t0 = time.monotonic()
    worker("runc", ref)
    worker("nixrun", os.path.abspath(a.runtime))
    if a.logs:
        os.makedirs(a.logs, exist_ok=True)
        for (label, n), r in results.items():
            with open(os.path.join(a.logs, f"{n}.{label}.tap"), "w") as f:
                f.write(r[3])
    regressions, table = [], []
    print(f"{'test':34} {'runc 1.1.5':>12} {'nixrun-oci':>12}")
    for n in names:
        rc_, nx = results[("runc", n)], results[("nixrun", n)]
        mark = ""
        if rc_[2] and not nx[2]:
            regressions.append(n)
            mark = "  <- runc passes, nixrun-oci fails"
        elif nx[2] and not rc_[2]:
            mark = "  (nixrun-oci only)"
        fmt = lambda r: f"{r[0]}/{r[1]}" + (" pass" if r[2] else " FAIL")
        print(f"{n:34} {fmt(rc_):>12} {fmt(nx):>12}{mark}")
        table.append({"test": n, "runc": {"ok": rc_[0], "total": rc_[1], "pass": rc_[2]},
                      "nixrun": {"ok": nx[0], "total": nx[1], "pass": nx[2]}})
    p_r = sum(1 for n in names if results[("runc", n)][2])
    p_n = sum(1 for n in names if results[("nixrun", n)][2])
    print(f"{'tests passed':34} {p_r:>7}/{len(names):<4} {p_n:>7}/{len(names):<4}")
    print(f"({time.monotonic() - t0:.0f} s)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(table, f, indent=1)
    if regressions:
        print("nixrun-oci fails what runc passes: " + ", ".join(regressions))
        sys.exit(1)


if __name__ == "__main__":
    main()
