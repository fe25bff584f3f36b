#!/usr/bin/env python3
"""A/B of nixrun builds against each other, for one optimisation at a time.

compare.py measures one nixrun against its peers; this measures two or more
nixrun binaries (and the floor and bwrap) side by side in one interleaved run,
with compare.py's own machinery (scratch file system, a cgroup per instance,
posix_spawn), so that a change's effect is a ratio from the same run on this
noisy shared machine, not a difference between two runs.

Usage (root):
    python3 benches/ab.py NAME=PATH NAME=PATH ... [--rounds 200] [--phases 60]
                                                  [--boots 6] [--no-peers]
  exec: /bin/true in the Debian guest, ROUNDS interleaved rounds;
  phases: per-phase medians (NIXRUN_PHASE_TIMES=1) of each binary, interleaved;
  boots: Debian boot/stop cycles per binary, interleaved, with the supervisor's
         RSS 0.5 s after READY=1 (as compare.py measures it);
  paired: PAIRS starts of the first two binaries, alternating (the order swapped
         every pair), each in a fresh cgroup as in the exec rounds: the median
         of the per-pair differences (wall and to the runtime's exit) and each
         build's deciles. Repeat it: on this shared 2-CPU machine the paired
         median of the same two builds moved by up to 100 µs between runs
         (drift of the machine's state, not sampling error), so a change of
         20-50 µs needs several runs agreeing, or a plain spawn loop.
"""

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402


def phases_once(bench, exe, env):
    """One phase-timed /bin/true run of EXE: [(phase, µs)]."""
    argv = [exe, "-D", str(bench.exec_root), "-q", "--console=pipe", "/bin/true"]
    return [(name, dt * 1e6) for name, dt in bench.phase_run(argv, env)]


def paired(bench, bins, pairs):
    """PAIRS alternating starts of the first two of BINS (see the docstring)."""
    (na, pa), (nb, pb) = list(bins.items())[:2]
    argv = {n: [str(Path(p).resolve()), "-D", str(bench.exec_root), "-q", "--console=pipe", "/bin/true"]
            for n, p in ((na, pa), (nb, pb))}
    times = {na: [], nb: []}
    diffs = []
    exits = []
    for i in range(pairs + 5):
        order = (na, nb) if i % 2 else (nb, na)
        t, e = {}, {}
        for n in order:
            t[n], e[n] = bench.run_once(argv[n], f"paired-{n}.log")[:2]
        if i >= 5:
            for n in order:
                times[n].append(t[n])
            diffs.append(t[nb] - t[na])
            exits.append(e[nb] - e[na])
    diffs.sort()
    q = len(diffs) // 4
    print(f"paired, {pairs} pairs in fresh cgroups: median({nb} - {na}) {statistics.median(diffs) * 1e6:+.1f} µs"
          f" (quartiles {diffs[q] * 1e6:+.0f}, {diffs[3 * q] * 1e6:+.0f}); to the runtime's exit"
          f" {statistics.median(exits) * 1e6:+.1f} µs")
    for n in (na, nb):
        xs = sorted(times[n])
        dec = [xs[len(xs) * k // 10] * 1e3 for k in range(1, 10)]
        print(f"  {n:12} median {statistics.median(xs) * 1e3:.3f} ms, deciles "
              + " ".join(f"{d:.2f}" for d in dec))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bins", nargs="+", help="NAME=PATH")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--phases", type=int, default=60)
    ap.add_argument("--boots", type=int, default=0)
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--paired", type=int, default=0, metavar="PAIRS")
    a = ap.parse_args()
    bins = dict(b.split("=", 1) for b in a.bins)
    args = compare.argparse.Namespace(nixrun=list(bins.values())[0], settle=0.5, quick=False)
    bench = compare.Bench(args)
    try:
        bench.setup()
        cmds = {name: (lambda exe: lambda i: [exe, "-D", str(bench.exec_root), "-q", "--console=pipe",
                                              "/bin/true"])(str(Path(p).resolve())) for name, p in bins.items()}
        if not a.no_peers:
            peers = bench.exec_commands()
            for k in ("bwrap", "unshare+chroot (floor)"):
                if k in peers:
                    cmds[k] = peers[k]
        if a.rounds:
            res = bench.exec_rounds(cmds, a.rounds, 5, "ab")
            first = list(bins)[0]
            print(f"exec /bin/true, {a.rounds} interleaved rounds (busy at start: {bench.results['busy']['ab']:.0f} %,"
                  f" load {' → '.join(bench.results['loadavg']['ab'])})")
            base = res.get("unshare+chroot (floor)")
            for n, s in res.items():
                t, c = s["time"], s["cpu"]
                extra = ""
                if base:
                    extra += f"  /floor {t['median'] / base['time']['median']:.3f}×"
                if "bwrap" in res:
                    extra += f"  /bwrap {t['median'] / res['bwrap']['time']['median']:.3f}×"
                if n in bins and first in res:
                    extra += f"  /{first} {t['median'] / res[first]['time']['median']:.3f}×"
                print(f"  {n:24} wall {t['median'] * 1e3:.2f} ms ({t['min'] * 1e3:.2f}–{t['max'] * 1e3:.2f})"
                      f"  cpu {c['median'] * 1e3:.2f} ms  failed {s['failures']}{extra}")
        if a.phases:
            env = dict(bench.env, NIXRUN_PHASE_TIMES="1")
            rows = {n: {} for n in bins}
            for i in range(a.phases + 3):
                # Rotated like the exec rounds: a build that always runs right
                # after the same neighbour was seen 5-10 % off in some phases.
                names = list(bins)
                names = names[i % len(names):] + names[: i % len(names)]
                for n, p in ((n, bins[n]) for n in names):
                    row = phases_once(bench, str(Path(p).resolve()), env)
                    if i >= 3:
                        for k, v in row:
                            rows[n].setdefault(k, []).append(v)
            names = list(rows[list(bins)[0]])
            for n in bins:
                for k in rows[n]:
                    if k not in names:
                        names.append(k)
            print(f"phases (µs, medians of {a.phases} interleaved runs)")
            print("  " + f"{'phase':20}" + "".join(f"{n:>12}" for n in bins))
            for k in names:
                print("  " + f"{k:20}" + "".join(
                    f"{statistics.median(rows[n][k]):12.0f}" if k in rows[n] else f"{'-':>12}" for n in bins))
        if a.paired:
            paired(bench, bins, a.paired)
        if a.boots:
            root = bench.copy_debian("ab-boot")
            out = {n: [] for n in bins}
            for c in range(a.boots + 1):
                order = list(bins) if c % 2 == 0 else list(reversed(bins))
                for n in order:
                    bench.nixrun = str(Path(bins[n]).resolve())
                    r = bench.boot_cycle("nixrun", "debian", root, f"ab-boot-{n}-{c}")
                    if c:
                        out[n].append(r)
            print(f"debian boot/stop, {a.boots} interleaved cycles")
            for n, rs in out.items():
                ok = [r for r in rs if r["ready"] is not None]
                rss = [r["mem"][0] / compare.MIB for r in ok if r["mem"]]
                print(f"  {n:12} ready {statistics.median([r['ready'] for r in ok]):.3f} s  "
                      f"stop {statistics.median([r['stop'] for r in ok]):.3f} s  "
                      f"rss {statistics.median(rss):.3f} MiB (max {max(rss):.3f})  "
                      f"not ready {len(rs) - len(ok)}, exit≠0 {sum(r['rc'] != 0 for r in rs)}")
    finally:
        bench.close()


if __name__ == "__main__":
    main()
