#!/usr/bin/env python3
"""create + start + wait + delete of /bin/true, nixrun-oci against runc and
crun, on this machine; prints a table (median and p90 of N cycles, ms).

Cycles of the runtimes are interleaved. Each cycle: `create` (stdio to /dev/null), `start`, poll `state` until
"stopped", `delete`. The same bundle (a static busybox root, `runc spec`'s
config) serves every runtime. A runtime that cannot create a container here
is listed with the reason it gave (crun 1.8.1 refuses this hybrid cgroup
layout).

usage (root): python3 benches/oci.py [--cycles N] [--nixrun-oci PATH]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def bundle(top):
    b = os.path.join(top, "bundle")
    root = os.path.join(b, "rootfs")
    os.makedirs(os.path.join(root, "bin"))
    for d in ("proc", "sys", "dev", "tmp"):
        os.makedirs(os.path.join(root, d))
    bb = shutil.which("busybox")
    if bb is None:
        sys.exit("benches/oci.py: missing busybox (apt-get install busybox-static)")
    shutil.copy(bb, os.path.join(root, "bin/busybox"))
    os.symlink("busybox", os.path.join(root, "bin/true"))
    subprocess.run(["runc", "spec"], cwd=b, check=True)
    with open(os.path.join(b, "config.json")) as f:
        c = json.load(f)
    c["process"]["terminal"] = False
    c["process"]["args"] = ["/bin/true"]
    with open(os.path.join(b, "config.json"), "w") as f:
        json.dump(c, f)
    return b


def cycle(rt, state_root, b, cid):
    def call(*args):
        r = subprocess.run([rt, "--root", state_root, *args], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise RuntimeError((r.stderr or r.stdout).strip().splitlines()[-1:] or ["failed"])
        return r.stdout
    # create's stdio is the container's: not a pipe, which the parked init
    # would hold open until it exits.
    err = os.path.join(state_root + ".err")
    t0 = time.perf_counter()
    with open(err, "w") as e:
        r = subprocess.run([rt, "--root", state_root, "create", "--bundle", b, cid],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=e)
    if r.returncode != 0:
        raise RuntimeError(open(err).read().strip().splitlines()[-1:] or ["failed"])
    call("start", cid)
    while json.loads(call("state", cid))["status"] != "stopped":
        time.sleep(0.0005)
    call("delete", cid)
    return (time.perf_counter() - t0) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cycles", type=int, default=50)
    ap.add_argument("--nixrun-oci", default=os.path.join(REPO, "target/x86_64-unknown-linux-gnu/release/nixrun-oci"))
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("benches/oci.py: must run as root")
    if not os.path.exists(a.nixrun_oci):
        sys.exit(f"benches/oci.py: {a.nixrun_oci} missing (cargo build --release)")
    top = tempfile.mkdtemp(prefix="oci-bench-", dir="/var/tmp")
    try:
        b = bundle(top)
        # Interleaved (A B C, B C A, ...), as benches/compare.py runs: on a
        # shared machine load drifts, and ratios from one run are what count.
        runtimes, times, errs = [], {}, {}
        for name, rt in (("nixrun-oci", a.nixrun_oci), ("runc", shutil.which("runc")), ("crun", shutil.which("crun"))):
            runtimes.append(name)
            times[name] = []
            if rt is None:
                errs[name] = "not installed"
                continue
            try:
                cycle(rt, os.path.join(top, "state-" + name), b, "oci-bench-warm")
            except RuntimeError as e:
                errs[name] = " ".join(e.args[0])
                subprocess.run([rt, "--root", os.path.join(top, "state-" + name), "delete", "--force",
                                "oci-bench-warm"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        paths = {"nixrun-oci": a.nixrun_oci, "runc": shutil.which("runc"), "crun": shutil.which("crun")}
        live = [n for n in runtimes if n not in errs]
        for i in range(a.cycles):
            k = i % len(live)
            for name in live[k:] + live[:k]:
                times[name].append(cycle(paths[name], os.path.join(top, "state-" + name), b, f"oci-bench-{i}"))
        rows = [(n, times[n], errs.get(n)) for n in runtimes]
        print(f"create+start+wait+delete of /bin/true, {a.cycles} cycles (ms)")
        print(f"{'runtime':12} {'median':>8} {'p90':>8} {'min':>8}")
        for name, times, err in rows:
            if times:
                q = statistics.quantiles(times, n=10)
                ratio = statistics.median(times) / statistics.median(rows[0][1]) if rows[0][1] else 0
                print(f"{name:12} {statistics.median(times):8.1f} {q[8]:8.1f} {min(times):8.1f}"
                      + ("" if name == rows[0][0] else f"   nixrun-oci = {1 / ratio:.2f}x"))
            else:
                print(f"{name:12} {'-':>8} {'-':>8} {'-':>8}  ({err})")
    finally:
        shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main()
