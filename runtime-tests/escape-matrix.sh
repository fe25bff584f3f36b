#!/usr/bin/env bash
# Runs `nixrun-probe escape` in the same guests under systemd-nspawn (the
# reference runtime) and under nixrun, and prints one markdown table row per
# attack with each run's verdict, so the runtimes can be compared attack by
# attack (runtime-tests/README.md records the table this printed).
#
# Usage: runtime-tests/escape-matrix.sh [RUN...]
#   RUN is one of (default: all of them, in this order)
#     nspawn-minimal  nixrun-minimal   the minimal guest, probe as PID 1
#     nspawn-debian   nixrun-debian    booted Debian guest, probe as a service
#     nspawn-nixos    nixrun-nixos     booted NixOS-shaped guest, probe as a service
#   $NIXRUN  the nixrun binary (default: target/x86_64-unknown-linux-gnu/release/nixrun)
#   $OUT     directory for the full reports, RUN.out and RUN.err (default: new dir in /tmp)
#
# In the booted guests the probe runs the way the integration tests run it:
# `systemd-run --wait --pipe --quiet` entered with nsenter, so it is a child of
# the guest's systemd and carries PID 1's seccomp filter and bounding set.
# Guests boot with SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 under nspawn, as NixOS
# containers do; the minimal guest gets nspawn's default layout.
#
# nspawn runs with --keep-unit --register=no (there is no systemd as PID 1 on
# the test machines) inside fresh cgroups of its own: with --keep-unit it
# creates payload/ and supervisor/ under its caller's cgroup, so two must never
# share one.  Root only.  Everything it creates is removed on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() {
	echo "escape-matrix: $*" >&2
	exit 1
}
[[ $EUID == 0 ]] || die "run as root: it starts containers"
command -v systemd-nspawn >/dev/null || die "systemd-nspawn missing (apt-get install systemd-container)"

ALL=(nspawn-minimal nixrun-minimal nspawn-debian nixrun-debian nspawn-nixos nixrun-nixos)
runs=("$@")
((${#runs[@]})) || runs=("${ALL[@]}")

NIXRUN=$(readlink -f "${NIXRUN:-target/x86_64-unknown-linux-gnu/release/nixrun}")
probe=$(integration/fixtures/probe.sh | tail -n1)
OUT=${OUT:-$(mktemp -d /tmp/escape-matrix.XXXXXX)}
mkdir -p "$OUT"
cache=${NIXRUN_FIXTURES:-/var/cache/nixrun-fixtures}
mkdir -p "$cache"
work=$(mktemp -d "$cache/.escape-matrix.XXXXXX")

# The hierarchies a process must be moved in to own a cgroup.
cg_roots=()
if [[ -d /sys/fs/cgroup/unified ]]; then
	cg_roots=(/sys/fs/cgroup/unified)
	[[ -d /sys/fs/cgroup/systemd ]] && cg_roots+=(/sys/fs/cgroup/systemd)
else
	cg_roots=(/sys/fs/cgroup)
fi
cg_name=escape-matrix-$$

bg_pid=
cleanup() {
	if [[ -n $bg_pid ]]; then
		kill -KILL "$bg_pid" 2>/dev/null || true
		wait "$bg_pid" 2>/dev/null || true
	fi
	remove_cgroups
	rm -rf --one-file-system "$work"
}
trap cleanup EXIT

remove_cgroups() {
	local r i
	for r in "${cg_roots[@]}"; do
		[[ -d $r/$cg_name ]] || continue
		# Emptied cgroups can take a moment to become removable.
		for ((i = 0; i < 50; i++)); do
			find "$r/$cg_name" -depth -type d -exec rmdir {} + 2>/dev/null || true
			[[ -d $r/$cg_name ]] || break
			sleep 0.1
		done
	done
}

# in_own_cgroup CMD...: exec CMD as the only process of fresh cgroups.
in_own_cgroup() {
	local r
	for r in "${cg_roots[@]}"; do
		mkdir -p "$r/$cg_name"
		echo "$BASHPID" >"$r/$cg_name/cgroup.procs"
	done
	exec "$@"
}

store=$work/store
mkdir -p "$store/abc-pkg"
echo "store content" >"$store/abc-pkg/file"

# guest KIND: a fresh copy of the fixture with the probe at /nixrun-probe;
# prints the root, then the runtime arguments, one per line.
guest() {
	local kind=$1 root=$work/$1-$RANDOM
	case $kind in
	minimal)
		cp -a "$(integration/fixtures/minimal.sh | tail -n1)" "$root"
		mkdir -p "$root/usr" # nspawn refuses a root without /usr
		printf '%s\n' "$root" "--bind-ro=$store:/nix/store"
		;;
	debian)
		cp -a "$(integration/fixtures/debian.sh | tail -n1)" "$root"
		install -m 0755 "$probe" "$root/nixrun-probe"
		printf '%s\n' "$root" "--bind-ro=$store:/nix/store" -b
		;;
	nixos)
		local nixos
		nixos=$(integration/fixtures/nixos.sh | tail -n1)
		cp -a "$nixos/root" "$root"
		install -m 0755 "$probe" "$root/nixrun-probe"
		printf '%s\n' "$root" "--bind-ro=$nixos/store:/nix/store" --kill-signal=SIGRTMIN+3 \
			--notify-ready=yes /nix/var/nix/profiles/system/init
		;;
	esac
}

# leader_of PID: the child of PID that lives in another PID namespace.
leader_of() {
	local pid=$1 ours child ns i
	ours=$(readlink /proc/self/ns/pid)
	for ((i = 0; i < 200; i++)); do
		for child in $(pgrep -P "$pid"); do
			ns=$(readlink "/proc/$child/ns/pid" 2>/dev/null) || continue
			if [[ $ns != "$ours" ]]; then
				echo "$child"
				return 0
			fi
		done
		sleep 0.1
	done
	return 1
}

run_one() {
	local run=$1 runtime=${1%%-*} kind=${1#*-} lines root args cmd leader state i rc=0
	mapfile -t lines < <(guest "$kind")
	root=${lines[0]}
	args=("${lines[@]:1}")
	local env=(env)
	if [[ $runtime == nspawn ]]; then
		cmd=(systemd-nspawn -q -D "$root" --keep-unit --register=no)
		[[ $kind == minimal ]] || env+=(SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1)
	else
		[[ -x $NIXRUN ]] || die "no nixrun binary at $NIXRUN (cargo build --release, or set NIXRUN)"
		cmd=("$NIXRUN" -D "$root" -q)
	fi
	local host_pid=--setenv=NIXRUN_PROBE_HOST_PID=$$
	if [[ $kind == minimal ]]; then
		(in_own_cgroup "${env[@]}" "${cmd[@]}" "${args[@]}" "$host_pid" /nixrun-probe escape) \
			>"$OUT/$run.out" 2>"$OUT/$run.err" || rc=$?
	else
		# passive: the console goes to the log; nspawn 252 with --console=pipe
		# lets a booted Debian's systemd exit 255 at once on this kind of host.
		(in_own_cgroup "${env[@]}" "${cmd[@]}" --console=passive "${args[@]}") \
			</dev/null >"$OUT/$run.console" 2>&1 &
		bg_pid=$!
		leader=$(leader_of "$bg_pid") || die "$run: no container leader (see $OUT/$run.console)"
		local enter=(nsenter -t "$leader" -a --)
		# Until the boot is over (or 3 minutes have passed: the probe also runs in
		# a guest still starting, and a hung boot is the runtime's problem).
		local deadline=$((SECONDS + 180))
		while ((SECONDS < deadline)); do
			state=$(timeout 10 "${enter[@]}" systemctl is-system-running 2>/dev/null) || true
			case $state in running | degraded | maintenance) break ;; esac
			kill -0 "$bg_pid" 2>/dev/null || break
			sleep 0.5
		done
		echo "$run: guest state $state" >"$OUT/$run.err"
		timeout 300 "${enter[@]}" systemd-run --wait --pipe --quiet "$host_pid" \
			/nixrun-probe escape >"$OUT/$run.out" 2>>"$OUT/$run.err" || rc=$?
		kill -TERM "$bg_pid" 2>/dev/null || true
		for ((i = 0; i < 300; i++)); do
			kill -0 "$bg_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$bg_pid" 2>/dev/null || true
		wait "$bg_pid" 2>/dev/null || true
		bg_pid=
	fi
	echo "$run: probe exit $rc, $(wc -l <"$OUT/$run.out") lines" >&2
	remove_cgroups
}

for run in "${runs[@]}"; do
	[[ " ${ALL[*]} " == *" $run "* ]] || die "unknown run $run (one of: ${ALL[*]})"
	run_one "$run"
done

# The table: one row per attack the probe knows, one column per run.
printf '| attack |'
printf ' %s |' "${runs[@]}"
printf '\n|---|'
printf -- '---|%.0s' "${runs[@]}"
printf '\n'
while read -r name; do
	printf '| %s |' "$name"
	for run in "${runs[@]}"; do
		verdict=$(awk -v n="$name" '{ w = $2; sub(/:$/, "", w) } w == n { print $1; exit }' "$OUT/$run.out")
		printf ' %s |' "${verdict:-—}"
	done
	printf '\n'
done < <("$probe" escape --list)
echo "full reports: $OUT" >&2
