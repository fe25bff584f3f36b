#!/bin/bash
# The end-to-end test of container@foo.service, run inside the VM (systemd PID 1,
# cgroup2 only) by nrvm-run from the per-run disk. One line per check goes to
# ttyS1, which run.sh parses:  VMTEST ok NAME[: detail] | VMTEST FAIL NAME: why,
# then VMTEST DONE. Checks never stop the script: a check whose precondition
# failed is reported as FAIL "not run", so a broken runtime cannot pass by omission.
set -uo pipefail

inject=/run/nrvm/inject
# shellcheck source=/dev/null
. "$inject/config" # RUNTIME MACHINE BOOT_TIMEOUT STOP_TIMEOUT KILL_GRACE INTERACTIVE

m=$MACHINE
unit=container@$m.service
root=/var/lib/containers/$m
unit_cg=/sys/fs/cgroup/machine.slice/$unit
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export SYSTEMD_PAGER='' SYSTEMD_COLORS=0

exec 3>/dev/ttyS1
npass=0
nfail=0
finished=0
leader_how=
# A bug here must not look like a hung VM: say so before the VM powers off.
trap '[ "$finished" = 1 ] || say "FAIL vmtest: the test script aborted (status $?, see the console log)"' EXIT

say() {
    # One result = one line, whatever the detail contains.
    local line
    line="VMTEST $(printf '%s' "$*" | tr '\n\r\t' '   ' | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-900)"
    printf '%s\n' "$line" >&3
    printf '%s\n' "$line"
}
ok() { npass=$((npass + 1)); say "ok $1${2:+: $2}"; }
fail() { nfail=$((nfail + 1)); say "FAIL $1: $2"; }
not_run() { local c; for c in "$@"; do fail "$c" "not run: $why_not"; done; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1fs", b - a }'; }
cursor() { journalctl -q -n 0 --show-cursor | sed -n 's/^-- cursor: //p'; }
# One line per end of the runtime, written by the unit's ExecStopPost.
exits_file=/run/nrvm/exits-$m
exits_seen() { wc -l 2>/dev/null <"$exits_file" || echo 0; }
exits_since() { tail -n +$(($1 + 1)) "$exits_file" 2>/dev/null | tr '\n' ',' | sed 's/,$//'; }
main_pid() { systemctl show -p MainPID --value "$unit"; }
prop() { systemctl show -p "$1" --value "$unit"; }

# The container's PID 1: a process whose innermost PID is 1 one PID namespace down.
# nspawn and nixrun make it a child of the main PID; the cgroup scan is a fallback
# so that a different process tree still gets its other checks run.
is_ns_init() { awk '/^NSpid:/ { exit !(NF == 3 && $3 == 1) }' "/proc/$1/status" 2>/dev/null; }
find_leader() { # MAINPID -> sets leader, leader_how
    local mp=$1 p
    leader=
    for p in $(cat /proc/"$mp"/task/*/children 2>/dev/null); do
        if is_ns_init "$p"; then leader=$p leader_how=child; return 0; fi
    done
    # shellcheck disable=SC2046
    for p in $(cat $(find "$unit_cg" -name cgroup.procs 2>/dev/null) 2>/dev/null); do
        if is_ns_init "$p"; then leader=$p leader_how=cgroup; return 0; fi
    done
    return 1
}

# Commands "in the guest": nsenter gives the guest's view (namespaces, root) but
# keeps the test's own cgroup and capabilities; guest_run starts the command as a
# transient service of the guest's own systemd, i.e. as a real guest process.
in_guest() {
    timeout 120 nsenter -t "$leader" -a -- /usr/bin/env -i \
        PATH=/usr/sbin:/usr/bin:/sbin:/bin SYSTEMD_COLORS=0 "$@"
}
guest_run() { in_guest systemd-run --quiet --wait --pipe --collect -- "$@"; }

guest_wait_running() { # -> prints the state; success iff "running"
    local st deadline=$(( $(date +%s) + BOOT_TIMEOUT ))
    while :; do
        st=$(timeout "$BOOT_TIMEOUT" nsenter -t "$leader" -a -- /usr/bin/env -i \
            PATH=/usr/sbin:/usr/bin:/sbin:/bin systemctl is-system-running --wait 2>&1)
        # --wait does not wait for the guest manager's socket to appear.
        case $st in *"Failed to connect"*) ;; *) break ;; esac
        [ "$(date +%s)" -lt "$deadline" ] || break
        sleep 1
    done
    echo "${st:-no answer}"
    [ "$st" = running ]
}
# The guest's systemd finished starting, even if a unit failed (that is for
# guest-no-failed to judge): enough for the later checks to go on.
booted() { case $1 in running | degraded) return 0 ;; esac; return 1; }
guest_failed_units() { # -> unit names; fails if the guest could not be asked
    local out
    out=$(in_guest systemctl list-units --failed --plain --no-legend --no-pager 2>&1) ||
        { echo "(systemctl failed: $out)"; return 1; }
    echo "$out" | awk 'NF { print $1 }'
}

pidns_of() { stat -L -c %i "/proc/$1/ns/pid" 2>/dev/null; }
procs_in_pidns() { # NS-INODE -> "pid:comm ..." of every process in that PID namespace
    local p found=()
    # One stat for all processes: forking per process takes seconds under TCG.
    for p in $(stat -L -c '%i %n' /proc/[0-9]*/ns/pid 2>/dev/null |
        awk -v ns="$1" '$1 == ns { split($2, a, "/"); print a[3] }'); do
        found+=("$p:$(cat "/proc/$p/comm" 2>/dev/null)")
    done
    echo "${found[*]}"
}
# NS-INODE TICKS -> "pid:comm ..." of the processes in that PID namespace that
# started before TICKS (clock ticks since boot) and are not zombies: after a
# kill, a restarted unit's new namespace may get the freed inode number, and
# its processes are not survivors.
survivors_in_pidns() {
    local ns=$1 before=$2 p stat state start found=()
    for p in $(stat -L -c '%i %n' /proc/[0-9]*/ns/pid 2>/dev/null |
        awk -v ns="$ns" '$1 == ns { split($2, a, "/"); print a[3] }'); do
        read -r stat 2>/dev/null <"/proc/$p/stat" || continue
        # shellcheck disable=SC2086 # the fields after "(comm)", split
        set -- ${stat##*) }
        state=$1 start=${20}
        [ "$state" != Z ] && [ "$start" -le "$before" ] || continue
        found+=("$p:$(cat "/proc/$p/comm" 2>/dev/null)")
    done
    echo "${found[*]}"
}
# Now in clock ticks since boot (USER_HZ), rounded up: /proc/PID/stat's unit.
uptime_ticks() {
    local u hz
    hz=$(getconf CLK_TCK)
    read -r u _ </proc/uptime
    echo $(( (${u%.*} * 100 + 10#${u#*.}) * hz / 100 + 1 ))
}

diagnose() {
    echo "---- diagnostics: systemctl status $unit"
    systemctl status --no-pager -l "$unit" 2>&1 | head -n 40
    echo "---- diagnostics: journalctl -u $unit"
    journalctl --no-pager -q -u "$unit" -n 400 2>&1
    if [ -n "${leader:-}" ] && [ -e "/proc/$leader" ]; then
        local u
        for u in $(guest_failed_units 2>/dev/null); do
            echo "---- diagnostics: in the guest, systemctl status $u; journalctl -u $u"
            in_guest systemctl status --no-pager -l "$u" 2>&1 | head -n 30
            in_guest journalctl --no-pager -q -b -u "$u" -n 40 2>&1
        done
    fi
    echo "---- diagnostics: machinectl list"
    machinectl list --no-pager 2>&1
    echo "---- diagnostics: cgroup tree"
    find /sys/fs/cgroup/machine.slice -maxdepth 4 -type d 2>&1 | head -n 60
    echo "---- end of diagnostics"
}

# ---------------------------------------------------------------- setup

say "begin runtime=$RUNTIME kernel=$(uname -r) $(systemctl --version | head -n1)"

check_vm_host() {
    local fs pid1 lines
    fs=$(stat -fc %T /sys/fs/cgroup)
    pid1=$(cat /proc/1/comm)
    lines=$(wc -l </proc/self/cgroup)
    if [ "$fs" = cgroup2fs ] && [ "$pid1" = systemd ] && [ "$lines" = 1 ]; then
        ok vm-host "PID 1 is systemd, /sys/fs/cgroup is cgroup2 only"
    else
        fail vm-host "expected systemd PID 1 on pure cgroup2, got pid1=$pid1 fs=$fs cgroup-lines=$lines"
    fi
}
check_vm_host

setup() {
    local exe
    mkdir -p "$root" || return 1
    if ! mountpoint -q "$root"; then
        mount LABEL=nrvm-ct "$root" || { echo "cannot mount the container root disk"; return 1; }
    fi
    [ -x "$root/sbin/init" ] || [ -L "$root/sbin/init" ] || { echo "no /sbin/init in the container root"; return 1; }
    case $RUNTIME in
        nixrun)
            install -m 0755 "$inject/nixrun" /usr/local/bin/nixrun || return 1
            install -m 0755 "$inject/nixrunctl" /usr/local/bin/nixrunctl || return 1
            exe=/usr/local/bin/nixrun ;;
        nspawn) exe=/usr/bin/systemd-nspawn ;;
        *) echo "unknown RUNTIME=$RUNTIME"; return 1 ;;
    esac
    [ -x "$exe" ] || { echo "$exe missing"; return 1; }
    install -m 0644 "$inject/container@.service" /etc/systemd/system/container@.service || return 1
    install -m 0644 "$inject/nrvm-marker.service" "$root/etc/systemd/system/nrvm-marker.service" || return 1
    mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
    ln -sf /etc/systemd/system/nrvm-marker.service \
        "$root/etc/systemd/system/multi-user.target.wants/nrvm-marker.service"
    rm -f "$root/var/lib/nrvm-marker"
    systemctl daemon-reload
}
if out=$(setup 2>&1); then
    ok setup "$(grep -m1 '^ExecStart=' /etc/systemd/system/container@.service | cut -d' ' -f1)"
    setup_ok=1
else
    fail setup "$out"
    setup_ok=0
fi

# ---------------------------------------------------------------- start

running=0
started_once=0
leader=
mp=
if [ "$setup_ok" = 1 ]; then
    t0=$(now)
    out=$(timeout "$BOOT_TIMEOUT" systemctl start "$unit" 2>&1)
    rc=$?
    state=$(systemctl is-active "$unit")
    mp=$(main_pid)
    if [ "$rc" = 0 ] && [ "$state" = active ] && [ "$mp" != 0 ]; then
        ok start "systemctl start returned after $(since "$t0"), unit active, MainPID $mp"
        running=1 started_once=1
    else
        fail start "rc=$rc state=$state result=$(prop Result) $out"
    fi
else
    why_not="setup failed"
    not_run start
fi

checks_running=(start-ready guest-running guest-no-failed guest-cgroup2 guest-cgroupns
    guest-mkcgroup host-cgroups guest-cgroup-confined)
if [ "$running" = 1 ] && ! find_leader "$mp"; then
    fail leader "no process with NSpid '<host> 1' among MainPID $mp's children or in $unit_cg"
    running=0
fi
if [ "$running" = 1 ]; then
    [ "$leader_how" = child ] ||
        say "info container PID 1 ($leader) is not a child of MainPID $mp (found via the cgroup)"

    # READY=1 must be the guest's own (sent when its boot finished), not the runtime's.
    st=$(in_guest systemctl is-system-running 2>&1)
    case $st in
        running | degraded) ok start-ready "guest state right after start returned: $st" ;;
        *) fail start-ready "unit was active while the guest was still '$st': READY=1 was not the guest's" ;;
    esac

    st=$(guest_wait_running)
    if [ "$st" = running ]; then
        ok guest-running "is-system-running --wait: running"
    else
        fail guest-running "is-system-running --wait: $st (failed: $(guest_failed_units | tr '\n' ' '))"
    fi

    if ! failed=$(guest_failed_units); then
        fail guest-no-failed "$failed"
    elif [ -z "$failed" ]; then
        ok guest-no-failed "0 failed units"
    else
        fail guest-no-failed "$(echo "$failed" | wc -l) failed: $(echo "$failed" | tr '\n' ' ')"
    fi

    fs=$(in_guest stat -fc %T /sys/fs/cgroup 2>&1)
    if [ "$fs" = cgroup2fs ]; then ok guest-cgroup2 "/sys/fs/cgroup is cgroup2fs"
    else fail guest-cgroup2 "/sys/fs/cgroup is '$fs'"; fi

    # A guest service sees its cgroup relative to the container (cgroup namespace),
    # and only the unified hierarchy.
    init_cg=$(in_guest cat /proc/1/cgroup 2>&1)
    svc_cg=$(guest_run cat /proc/self/cgroup 2>&1)
    if [ "$init_cg" = "0::/init.scope" ] && [[ $svc_cg =~ ^0::/system\.slice/run-[^/]+\.service$ ]]; then
        ok guest-cgroupns "guest PID 1: $init_cg; guest service: $svc_cg"
    else
        fail guest-cgroupns "want 0::/init.scope and 0::/system.slice/run-*.service, got PID 1 '$init_cg', service '$svc_cg'"
    fi

    # The guest's systemd created its own cgroups (the transient service above, and
    # system.slice, which appear on the host under payload/); a guest process may too.
    mk=$(guest_run sh -c 'mkdir /sys/fs/cgroup/nrvm-probe && rmdir /sys/fs/cgroup/nrvm-probe && echo made' 2>&1)
    if [ "$mk" = made ] && [ -d "$unit_cg/payload/system.slice" ] && [ -d "$unit_cg/payload/init.scope" ]; then
        ok guest-mkcgroup "guest systemd made payload/{init.scope,system.slice,run-*.service}; a guest process made and removed a cgroup"
    else
        fail guest-mkcgroup "mkdir in guest: '$mk'; payload/system.slice $([ -d "$unit_cg/payload/system.slice" ] && echo exists || echo missing)"
    fi

    # Host view: runtime in supervisor/, guest in payload/, nothing in the unit's own
    # cgroup (cgroup2's no-internal-processes rule), and the guest's cgroup root is
    # exactly payload/ (same kernfs inode from both sides).
    problems=()
    mp_cg=$(cat "/proc/$mp/cgroup")
    [ "$mp_cg" = "0::/machine.slice/$unit/supervisor" ] || problems+=("MainPID $mp is in '$mp_cg'")
    ld_cg=$(cat "/proc/$leader/cgroup")
    [[ $ld_cg == "0::/machine.slice/$unit/payload"* ]] || problems+=("container PID 1 is in '$ld_cg'")
    own=$(tr '\n' ' ' <"$unit_cg/cgroup.procs" 2>/dev/null)
    [ -z "$own" ] || problems+=("processes in the unit cgroup itself: $own")
    host_pidns=$(readlink /proc/self/ns/pid)
    # (the guest names its cgroups: read paths whole)
    while IFS= read -r f; do
        d=${f%/cgroup.procs}
        rel=${d#"$unit_cg"}
        for p in $(<"$f"); do
            case $rel in
                /payload | /payload/*)
                    [ "$(readlink "/proc/$p/ns/pid")" != "$host_pidns" ] ||
                        problems+=("host-namespace process $p ($(cat "/proc/$p/comm")) in payload$rel") ;;
                /supervisor) ;;
                *) problems+=("process $p ($(cat "/proc/$p/comm" 2>/dev/null)) in '${rel:-/}'") ;;
            esac
        done
    done < <(find "$unit_cg" -name cgroup.procs 2>/dev/null)
    host_ino=$(stat -c %i "$unit_cg/payload" 2>/dev/null)
    guest_ino=$(in_guest stat -c %i /sys/fs/cgroup 2>/dev/null)
    [ -n "$host_ino" ] && [ "$host_ino" = "$guest_ino" ] ||
        problems+=("guest /sys/fs/cgroup (inode $guest_ino) is not payload/ (inode $host_ino)")
    if [ ${#problems[@]} = 0 ]; then
        ok host-cgroups "runtime in /machine.slice/$unit/supervisor, guest in .../payload ($ld_cg)"
    else
        fail host-cgroups "$(printf '%s; ' "${problems[@]}")"
    fi

    # Every cgroup directory outside payload/ is a host cgroup the guest must not be
    # able to write; cgroup-probe.sh, run as a guest service, looks for them.
    outside=$(find /sys/fs/cgroup -xdev -path "$unit_cg/payload" -prune -o -type d -printf '%i\n' | sort -u | tr '\n' ' ')
    install -m 0755 "$inject/cgroup-probe.sh" "$root/var/lib/nrvm-cgroup-probe.sh"
    # shellcheck disable=SC2086 # one argument per inode
    res=$(guest_run /bin/sh /var/lib/nrvm-cgroup-probe.sh $outside 2>&1)
    writable=$(echo "$res" | grep '^WRITABLE' | cut -d' ' -f2- | head -n 5 | tr '\n' ' ')
    visible=$(echo "$res" | grep -c '^VISIBLE')
    scanned=$(echo "$res" | grep '^SCANNED' | awk '{ printf "%s%s (%s dirs)", (NR > 1 ? ", " : ""), $2, $3 }')
    fresh=$(echo "$res" | grep -m1 -E '^(SCANNED /run/nrvm-cg|FRESH)')
    case $fresh in FRESH*) scanned="$scanned, fresh cgroup2 mount: ${fresh#FRESH }" ;; esac
    if ! echo "$res" | grep -q '^CONTROL' || ! echo "$res" | grep -q '^SCANNED /sys/fs/cgroup ' ||
        [ -z "$fresh" ]; then
        fail guest-cgroup-confined "probe did not run as expected: $(echo "$res" | head -c 400)"
    elif [ -n "$writable" ]; then
        fail guest-cgroup-confined "guest can write host cgroup files: $writable"
    else
        ok guest-cgroup-confined "no writable host cgroup file; scanned $scanned; $visible host cgroup dirs visible read-only"
    fi
else
    why_not=${why_not:-container not started}
    not_run "${checks_running[@]}"
fi

# ---------------------------------------------------------------- machined

# The container is a machine that machined knows (the runtime registered it):
# found, entered and asked the way NixOS's tools and a user do.
checks_machined=(machine-registered machinectl-status machinectl-shell systemctl-M journalctl-M reload)
if [ "$running" = 1 ]; then
    ml=$(machinectl list --no-legend --no-pager 2>&1)
    munit=$(machinectl show "$m" -p Unit --value 2>&1)
    mleader=$(machinectl show "$m" -p Leader --value 2>&1)
    if echo "$ml" | grep -q "^$m " && [ "$munit" = "$unit" ] && [ "$mleader" = "$leader" ]; then
        ok machine-registered "machinectl list shows $m; Unit $munit, Leader $mleader"
    else
        fail machine-registered "list: '$ml'; Unit '$munit' (want $unit); Leader '$mleader' (want $leader)"
    fi

    out=$(timeout 120 machinectl status "$m" --no-pager 2>&1)
    rc=$?
    if [ "$rc" = 0 ] && echo "$out" | grep -q "Leader: $leader"; then
        ok machinectl-status "$(echo "$out" | grep -m1 'Unit:' | sed 's/^ *//')"
    else
        fail machinectl-status "rc=$rc: $(echo "$out" | head -c 300)"
    fi

    out=$(timeout 120 machinectl shell "$m" /bin/sh -c 'echo shell-ok-$((20 + 22))' 2>&1)
    rc=$?
    if [ "$rc" = 0 ] && echo "$out" | grep -q shell-ok-42; then
        ok machinectl-shell "machinectl shell $m ran a command in the guest"
    else
        fail machinectl-shell "rc=$rc: $(echo "$out" | head -c 300)"
    fi

    st=$(timeout 120 systemctl -M "$m" is-system-running 2>&1)
    if [ "$st" = running ]; then ok systemctl-M "systemctl -M $m is-system-running: running"
    else fail systemctl-M "systemctl -M $m is-system-running: $st"; fi

    jl=$(timeout 120 journalctl -M "$m" -n1 --no-pager -q 2>&1)
    rc=$?
    if [ "$rc" = 0 ] && [ -n "$jl" ]; then ok journalctl-M "journalctl -M $m -n1: $jl"
    else fail journalctl-M "rc=$rc: '$jl'"; fi

    # A stand-in for a NixOS system's switch-to-configuration records its run.
    sw=$root/nix/var/nix/profiles/system/bin/switch-to-configuration
    mkdir -p "$(dirname "$sw")"
    printf '#!/bin/sh\necho "reloaded $*" >>/var/lib/nrvm-reload\n' >"$sw"
    chmod 0755 "$sw"
    rm -f "$root/var/lib/nrvm-reload"
    out=$(timeout 120 systemctl reload "$unit" 2>&1)
    rc=$?
    got=$(cat "$root/var/lib/nrvm-reload" 2>/dev/null)
    if [ "$rc" = 0 ] && [ "$got" = "reloaded test" ]; then
        ok reload "systemctl reload $unit ran switch-to-configuration test in the guest"
    else
        fail reload "rc=$rc, recorded '$got': $out"
    fi
else
    why_not=${why_not:-container not running}
    not_run "${checks_machined[@]}"
fi

# ---------------------------------------------------------------- guest reboot

marker_tail() { tail -n "$1" "$root/var/lib/nrvm-marker" 2>/dev/null | tr '\n' ' ' | sed 's/ $//'; }

if [ "$running" = 1 ]; then
    old_mp=$mp
    old_restarts=$(prop NRestarts)
    n_exits=$(exits_seen)
    t0=$(now)
    in_guest systemctl reboot >/dev/null 2>&1
    deadline=$(( $(date +%s) + BOOT_TIMEOUT ))
    while :; do
        mp=$(main_pid)
        st=$(systemctl is-active "$unit")
        if [ "$st" = active ] && [ "$mp" != 0 ] && [ "$mp" != "$old_mp" ]; then break; fi
        [ "$(date +%s)" -lt "$deadline" ] || break
        sleep 1
    done
    ends=$(exits_since "$n_exits")
    if [ "$ends" = "success exited 133" ]; then
        ok reboot-exit-133 "the runtime exited 133 on guest reboot"
    else
        fail reboot-exit-133 "want one exit 'success exited 133', got '${ends:-none}' (SERVICE_RESULT EXIT_CODE EXIT_STATUS)"
    fi
    restarts=$(prop NRestarts)
    if [ "$st" = active ] && [ "$mp" != "$old_mp" ] && [ "$restarts" = $((old_restarts + 1)) ]; then
        ok reboot-restart "active again after $(since "$t0") with MainPID $mp (was $old_mp), NRestarts $restarts"
        gst="no container PID 1 found"
        find_leader "$mp" && gst=$(guest_wait_running)
        if [ "$gst" = running ] && [ "$(marker_tail 3)" = "start stop start" ]; then
            ok reboot-guest "guest running again; marker: start, stop (clean shutdown), start"
        else
            fail reboot-guest "guest state '$gst', marker tail '$(marker_tail 3)' (want running and 'start stop start')"
            booted "$gst" || running=0
        fi
    else
        fail reboot-restart "state=$st MainPID $mp (was $old_mp) NRestarts $restarts (was $old_restarts)"
        why_not="guest reboot did not bring the unit back"
        not_run reboot-guest
        running=0
    fi
else
    why_not=${why_not:-container not running}
    not_run reboot-exit-133 reboot-restart reboot-guest
fi

# If the reboot or the kill broke things, still try the later checks from a fresh
# start; only once, and only if a start ever worked, so that a runtime that hangs
# cannot stretch the run past run.sh's timeout.
restarted_fresh=0
restart_fresh() {
    [ "$started_once" = 1 ] && [ "$restarted_fresh" = 0 ] || return 1
    restarted_fresh=1
    timeout "$STOP_TIMEOUT" systemctl stop "$unit" >/dev/null 2>&1
    systemctl reset-failed "$unit" >/dev/null 2>&1
    timeout "$BOOT_TIMEOUT" systemctl start "$unit" >/dev/null 2>&1 &&
        mp=$(main_pid) && find_leader "$mp" && booted "$(guest_wait_running)"
}
if [ "$running" = 0 ] && restart_fresh; then
    say "info restarted the container to run the remaining checks"
    running=1
fi

# ---------------------------------------------------------------- kill -9 of the runtime

if [ "$running" = 1 ]; then
    old_mp=$mp
    pidns=$(pidns_of "$leader")
    n_exits=$(exits_seen)
    c=$(cursor)
    t0=$(now)
    kill -KILL "$mp"
    killed_at=$(uptime_ticks)
    deadline=$(( $(date +%s) + KILL_GRACE ))
    while left=$(survivors_in_pidns "$pidns" "$killed_at") && [ -n "$left" ] && [ "$(date +%s)" -lt "$deadline" ]; do
        sleep 0.2
    done
    if [ -n "$pidns" ] && [ -z "$left" ]; then
        ok kill9-no-survivors "every guest process gone $(since "$t0") after SIGKILL of MainPID $old_mp"
        say "info exits after the kill: $(exits_since "$n_exits")"
    else
        fail kill9-no-survivors "after ${KILL_GRACE}s still alive in the guest's PID namespace: $left"
    fi
    t0=$(now)
    out=$(timeout "$BOOT_TIMEOUT" systemctl start "$unit" 2>&1)
    rc=$?
    mp=$(main_pid)
    st=$(systemctl is-active "$unit")
    gst=
    if [ "$rc" = 0 ] && [ "$st" = active ] && [ "$mp" != "$old_mp" ] && find_leader "$mp"; then
        gst=$(guest_wait_running)
    fi
    if [ "$gst" = running ]; then
        ok kill9-restart "systemctl start worked ($(since "$t0")), MainPID $mp, guest running"
    else
        why=$(journalctl -q --no-pager -u "$unit" --after-cursor="$c" -o cat |
            grep -v 'Failed with result' | grep -m1 -iE 'fail|error|refus|exist')
        fail kill9-restart "rc=$rc state=$st MainPID $mp (killed: $old_mp) guest '${gst:-}'; unit journal: ${why:-nothing}; $out"
        booted "$gst" || running=0
    fi
else
    why_not=${why_not:-container not running}
    not_run kill9-no-survivors kill9-restart
fi

if [ "$running" = 0 ] && restart_fresh; then
    say "info restarted the container to run the remaining checks"
    running=1
fi

# ---------------------------------------------------------------- stop

if [ "$running" = 1 ]; then
    pidns=$(pidns_of "$leader")
    c=$(cursor)
    n_exits=$(exits_seen)
    t0=$(now)
    out=$(timeout "$STOP_TIMEOUT" systemctl stop "$unit" 2>&1)
    rc=$?
    took=$(since "$t0")
    ends=$(exits_since "$n_exits")
    if [ "$rc" = 0 ] && [ "$ends" = "success exited 0" ]; then
        ok stop "systemctl stop took $took; the runtime exited 0"
    else
        fail stop "rc=$rc after $took; want exit 'success exited 0', got '${ends:-none}' $out"
    fi

    # The guest's own shutdown ran (marker), and its console said so in the journal.
    jr=$(journalctl -q --no-pager -u "$unit" --after-cursor="$c" -o cat)
    shut=$(echo "$jr" | grep -m1 -E 'Halting system|Powering off|Reached target.*(System Halt|Power-Off)')
    if [ "$(marker_tail 1)" = stop ] && [ -n "$shut" ]; then
        ok stop-guest-shutdown "guest ran its shutdown; journal: $shut"
    else
        fail stop-guest-shutdown "marker tail '$(marker_tail 2)' (want '... stop'); guest shutdown in journal: '${shut:-none}'"
    fi

    problems=()
    left=$(procs_in_pidns "$pidns")
    [ -z "$left" ] || problems+=("processes left in the guest's PID namespace: $left")
    [ ! -e "$unit_cg" ] || problems+=("$unit_cg still exists: $(find "$unit_cg" -type d | tr '\n' ' ')")
    stray=$(grep -l "/machine.slice/$unit" /proc/[0-9]*/cgroup 2>/dev/null | tr '\n' ' ')
    [ -z "$stray" ] || problems+=("processes still in the unit's cgroup: $stray")
    mnts=$(findmnt -rn -o TARGET | grep -F "$root/" | tr '\n' ' ')
    [ -z "$mnts" ] || problems+=("host mounts left under $root: $mnts")
    if [ ${#problems[@]} = 0 ]; then
        ok stop-clean "no process, cgroup or mount of the container left"
    else
        fail stop-clean "$(printf '%s; ' "${problems[@]}")"
    fi
    if machinectl list --no-legend --no-pager 2>&1 | grep -q "^$m "; then
        fail unregistered "machinectl still lists $m after the stop"
    else
        ok unregistered "machinectl no longer lists $m"
    fi
else
    why_not=${why_not:-container not running}
    not_run stop stop-guest-shutdown stop-clean unregistered
fi

# ---------------------------------------------------------------- machinectl poweroff

# machined asks the guest's PID 1 (SIGRTMIN+4); the runtime sees the guest power
# off, exits 0, and the unit ends without a restart.
if [ "$started_once" = 1 ]; then
    systemctl reset-failed "$unit" >/dev/null 2>&1
    n_exits=$(exits_seen)
    if timeout "$BOOT_TIMEOUT" systemctl start "$unit" >/dev/null 2>&1 && mp=$(main_pid) &&
        find_leader "$mp" && booted "$(guest_wait_running)"; then
        t0=$(now)
        timeout 60 machinectl poweroff "$m" >/dev/null 2>&1
        deadline=$(( $(date +%s) + STOP_TIMEOUT ))
        while [ "$(systemctl is-active "$unit")" != inactive ] && [ "$(date +%s)" -lt "$deadline" ]; do
            sleep 0.5
        done
        ends=$(exits_since "$n_exits")
        if [ "$(systemctl is-active "$unit")" = inactive ] && [ "$ends" = "success exited 0" ]; then
            ok machinectl-poweroff "the guest powered off, the runtime exited 0 after $(since "$t0")"
        else
            fail machinectl-poweroff "unit $(systemctl is-active "$unit"), exits '${ends:-none}' after $(since "$t0")"
        fi
    else
        fail machinectl-poweroff "not run: the container did not start again"
    fi
else
    why_not=${why_not:-container never started}
    not_run machinectl-poweroff
fi

# ---------------------------------------------------------------- started by hand

# Without --keep-unit on a systemd host the runtime makes a scope of its own in
# machine.slice (machined then names it), as nspawn does.
if [ "$RUNTIME" = nixrun ] && [ "$started_once" = 1 ]; then
    /usr/local/bin/nixrun -D "$root" -M bar --notify-ready=yes -b >/run/nrvm/bar.log 2>&1 &
    bpid=$!
    deadline=$(( $(date +%s) + BOOT_TIMEOUT ))
    bunit=
    while [ "$(date +%s)" -lt "$deadline" ] && kill -0 "$bpid" 2>/dev/null; do
        bunit=$(machinectl show bar -p Unit --value 2>/dev/null)
        [ -z "$bunit" ] || break
        sleep 0.5
    done
    bcg=$(cat "/proc/$bpid/cgroup" 2>/dev/null)
    kill -TERM "$bpid" 2>/dev/null
    timeout "$STOP_TIMEOUT" tail --pid="$bpid" -f /dev/null
    wait "$bpid"
    brc=$?
    left=$(systemctl is-active 'machine-bar.scope' 2>/dev/null)
    if [ "$bunit" = machine-bar.scope ] && [ "$bcg" = "0::/machine.slice/machine-bar.scope/supervisor" ] &&
        [ "$brc" = 0 ] && [ "$left" != active ]; then
        ok hand-started-scope "registered as machine-bar.scope, runtime in its supervisor/, exit 0, scope gone"
    else
        fail hand-started-scope "unit '$bunit', cgroup '$bcg', exit $brc, scope afterwards '$left'; log: $(tail -n 3 /run/nrvm/bar.log | tr '\n' ' ')"
    fi
fi

# ---------------------------------------------------------------- device policy

# On a cgroup2 host the runtime's own device policy is a BPF program. The unit
# above has DevicePolicy=closed, which would hide a missing one, so this runs the
# runtime in a transient unit without any device policy; the guest command tries
# to create and open /dev/mem (c 1:1), which only the runtime's policy forbids.
# (nspawn leaves the device policy to the unit, so under it this check is n/a.)
if [ "$RUNTIME" = nixrun ] && [ -x /usr/local/bin/nixrun ]; then
    out=$(timeout 120 systemd-run --quiet --wait --pipe --collect -p Delegate=yes \
        /usr/local/bin/nixrun --keep-unit -M devtest -D "$root" -q --console=pipe /bin/sh -c \
        'cd /tmp; rm -f nrvm-mem
         if mknod nrvm-mem c 1 1 2>/dev/null; then
             if head -c1 nrvm-mem >/dev/null 2>&1; then echo OPENED; else echo DENIED-OPEN; fi
             rm -f nrvm-mem
         else echo DENIED-MKNOD; fi
         echo x >/dev/null && echo NULL-OK' 2>&1)
    case $out in
        *OPENED*) fail guest-devices-closed "the guest created and opened /dev/mem without a unit device policy: $out" ;;
        *DENIED-*NULL-OK*) ok guest-devices-closed "without a unit device policy: /dev/mem refused ($(echo "$out" | head -n1)), /dev/null usable" ;;
        *) fail guest-devices-closed "unexpected output: $(echo "$out" | head -c 300)" ;;
    esac
fi

# ---------------------------------------------------------------- private network

# container@net.service as NixOS makes it for privateNetwork = true with
# hostAddress/localAddress: the conf's fields, --network-veth, the fields
# --setenv'd for a container init that renames host0 to eth0 and configures
# it. In the guest, a unit before sysinit.target must reach a service on the
# host address. nspawn (the reference) gets NixOS's own container-init and
# postStart, which configures the host side only after READY=1; nixrun gets
# --host-address/--local-address (both sides configured before the guest's
# init) and nixrun-container-init. Under nspawn, net-early is expected to
# FAIL: that is the race NixOS users report (nixpkgs #18440, #425417).
net_unit=container@net.service
net_root=/var/lib/containers/net
net_leader=
net_setup() {
    mkdir -p /etc/nixos-containers /run/nrvm/ovl/net/upper/etc/systemd/system/sysinit.target.wants \
        /run/nrvm/ovl/net/work "$net_root" || return 1
    printf 'PRIVATE_NETWORK=1\nHOST_ADDRESS=10.233.5.1\nLOCAL_ADDRESS=10.233.5.2\n' \
        >/etc/nixos-containers/net.conf || return 1
    local up=/run/nrvm/ovl/net/upper init common
    install -m 0644 "$inject/nrvm-early-net.service" "$up/etc/systemd/system/" || return 1
    ln -sf ../nrvm-early-net.service "$up/etc/systemd/system/sysinit.target.wants/nrvm-early-net.service"
    case $RUNTIME in
        nixrun) init=nixrun-container-init ;;
        *) init=nixos-container-init ;;
    esac
    install -m 0755 "$inject/$init" "$up/container-init" || return 1
    mount -t overlay overlay -o "lowerdir=$root,upperdir=$up,workdir=/run/nrvm/ovl/net/work" "$net_root" ||
        return 1
    install -m 0644 "$inject/nrvm-echo.socket" "$inject/nrvm-echo@.service" /run/systemd/system/ || return 1
    mkdir -p "/run/systemd/system/$net_unit.d"
    common="--keep-unit -M %i -D $net_root --notify-ready=yes --kill-signal=SIGRTMIN+3 --private-network --network-veth"
    common="$common --setenv=PRIVATE_NETWORK=1 --setenv=HOST_ADDRESS=\${HOST_ADDRESS} --setenv=LOCAL_ADDRESS=\${LOCAL_ADDRESS}"
    case $RUNTIME in
        nixrun)
            printf '[Service]\nExecStart=\nExecStart=/usr/local/bin/nixrun %s --host-address=${HOST_ADDRESS} --local-address=${LOCAL_ADDRESS} /container-init /lib/systemd/systemd\n' \
                "$common" ;;
        *)
            # NixOS's postStart, run once the guest reported READY=1.
            printf '[Service]\nExecStart=\nExecStart=/usr/bin/systemd-nspawn %s /container-init /lib/systemd/systemd\n' "$common"
            printf 'ExecStartPost=/bin/sh -ec "ip link set dev ve-%%i up; ip addr add ${HOST_ADDRESS} dev ve-%%i; ip route add ${LOCAL_ADDRESS} dev ve-%%i"\n' ;;
    esac >"/run/systemd/system/$net_unit.d/nrvm-net.conf" || return 1
    systemctl daemon-reload && systemctl start nrvm-echo.socket
}
if net_setup; then
    t0=$(now)
    out=$(timeout "$BOOT_TIMEOUT" systemctl start "$net_unit" 2>&1)
    rc=$?
    mp=$(systemctl show -p MainPID --value "$net_unit")
    net_st=
    if [ "$rc" = 0 ]; then
        for p in $(cat /proc/"$mp"/task/*/children 2>/dev/null); do
            if is_ns_init "$p"; then net_leader=$p; fi
        done
    fi
    if [ -n "$net_leader" ]; then
        net_st=$(leader=$net_leader guest_wait_running)
    fi
    if [ "$rc" = 0 ] && booted "$net_st"; then
        ok net-start "started in $(since "$t0"), guest $net_st"
        early=$(cat "$net_root/var/lib/nrvm-early-net" 2>/dev/null)
        if [ "$early" = pong ]; then
            ok net-early "a unit before sysinit.target reached the host address: $early"
        else
            fail net-early "a unit before sysinit.target got '${early:-nothing}' from 10.233.5.1:7000 (host side configured only after READY=1?)"
        fi
        g=$(leader=$net_leader in_guest ip -o addr show 2>&1 | awk '$2 != "lo" { print $2, $4 }' | tr '\n' ' ')
        h=$(ip -o addr show dev ve-net 2>&1 | awk '{ print $4 }' | tr '\n' ' ')
        if [[ $g == *"eth0 10.233.5.2/32"* ]] && [[ $g != *host0* ]] && [[ $h == *10.233.5.1/32* ]]; then
            ok net-addresses "guest: $g; host ve-net: $h"
        else
            fail net-addresses "guest: '$g' (want eth0 10.233.5.2/32, no host0); host ve-net: '$h' (want 10.233.5.1/32)"
        fi
        late=$(leader=$net_leader in_guest timeout 10 bash -c 'exec 3<>/dev/tcp/10.233.5.1/7000 && read -r -t 5 l <&3 && echo "$l"' 2>&1)
        if [ "$late" = pong ]; then
            ok net-booted "the booted guest reaches the host: $late"
        else
            fail net-booted "the booted guest got '$late' from 10.233.5.1:7000"
        fi
    else
        fail net-start "rc=$rc guest '${net_st:-}' after $(since "$t0"): $out $(journalctl -q --no-pager -u "$net_unit" -n 5 -o cat | tr '\n' ' ')"
        why_not="container@net did not start"
        not_run net-early net-addresses net-booted
    fi
    out=$(timeout "$STOP_TIMEOUT" systemctl stop "$net_unit" 2>&1)
    left=$(ip -o link show 2>/dev/null | grep -o 've-net[^:]*' | tr '\n' ' ')
    if [ "$(systemctl is-active "$net_unit")" = inactive ] && [ -z "$left" ]; then
        ok net-stop-clean "stopped; no ve-net link left on the host"
    else
        fail net-stop-clean "unit $(systemctl is-active "$net_unit"), links left: '$left' $out"
    fi
    systemctl stop nrvm-echo.socket
    umount "$net_root" 2>/dev/null
else
    why_not="setting up container@net failed"
    not_run net-start net-early net-addresses net-booted net-stop-clean
fi

# ---------------------------------------------------------------- user namespace

# container@uns.service as NixOS makes it for privateUsers = "pick": the conf
# says PRIVATE_USERS=pick and the unit passes --private-users=$PRIVATE_USERS
# (NixOS's script adds :idmap to its /nix binds; this Debian guest has none).
# On this pure cgroup2 host the guest's systemd must reach running with its
# own subtree chowned to the range. The root is the one the checks above used,
# bound (not copied: an ID-mapped root changes nothing on disk).
uns_unit=container@uns.service
uns_root=/var/lib/containers/uns
uns_setup() {
    mkdir -p /etc/nixos-containers "$uns_root" "/run/systemd/system/$uns_unit.d" || return 1
    printf 'PRIVATE_USERS=pick\n' >/etc/nixos-containers/uns.conf || return 1
    mount --bind "$root" "$uns_root" || return 1
    local bin
    case $RUNTIME in
        nixrun) bin=/usr/local/bin/nixrun ;;
        *) bin=/usr/bin/systemd-nspawn ;;
    esac
    printf '[Service]\nExecStart=\nExecStart=%s --keep-unit -M %%i -D %s --notify-ready=yes --kill-signal=SIGRTMIN+3 --private-users=${PRIVATE_USERS} -b\n' \
        "$bin" "$uns_root" >"/run/systemd/system/$uns_unit.d/nrvm-uns.conf" || return 1
    systemctl daemon-reload
}
if uns_setup; then
    t0=$(now)
    out=$(timeout "$BOOT_TIMEOUT" systemctl start "$uns_unit" 2>&1)
    rc=$?
    mp=$(systemctl show -p MainPID --value "$uns_unit")
    uns_leader=
    if [ "$rc" = 0 ]; then
        for p in $(cat /proc/"$mp"/task/*/children 2>/dev/null); do
            if is_ns_init "$p"; then uns_leader=$p; fi
        done
    fi
    uns_st=
    [ -z "$uns_leader" ] || uns_st=$(leader=$uns_leader guest_wait_running)
    umap=$(cat "/proc/$uns_leader/uid_map" 2>/dev/null | tr -s ' ' | sed 's/^ //')
    gmap=$(cat "/proc/$uns_leader/gid_map" 2>/dev/null | tr -s ' ' | sed 's/^ //')
    shift_=${umap#0 }
    shift_=${shift_%% *}
    if [ "$rc" = 0 ] && [ "$uns_st" = running ]; then
        ok uns-running "PRIVATE_USERS=pick: started in $(since "$t0"), guest running"
    else
        fail uns-running "rc=$rc guest '${uns_st:-}' after $(since "$t0"): $out $(journalctl -q --no-pager -u "$uns_unit" -n 8 -o cat | tr '\n' ' ')"
    fi
    if [ -n "$uns_leader" ] && booted "$uns_st"; then
        failed=$(leader=$uns_leader guest_failed_units | tr '\n' ' ')
        if [ -z "$failed" ]; then ok uns-no-failed; else fail uns-no-failed "$failed"; fi
    else
        why_not="container@uns did not boot"
        not_run uns-no-failed
    fi
    # One line, 0 SHIFT 65536, the same for gids (what machined's
    # GetMachineUIDShift accepts); SHIFT 64K-aligned in nspawn's pick range.
    if [ "$(echo "$umap" | wc -l)" = 1 ] && [ "$umap" = "$gmap" ] && [ "${umap% *}" = "0 $shift_" ] &&
        [ "${umap##* }" = 65536 ] && [ $((shift_ % 65536)) = 0 ] && [ "$shift_" -ge 524288 ]; then
        ok uns-map "uid_map and gid_map: $umap; lock $(ls /run/systemd/nspawn-uid/ 2>/dev/null | tr '\n' ' ')"
    else
        fail uns-map "uid_map '$umap' gid_map '$gmap'"
    fi
    # machined reads the shift from PID 1's uid_map (nsenter -U, machinectl
    # shell and bind use it).
    ms=$(busctl call org.freedesktop.machine1 /org/freedesktop/machine1 \
        org.freedesktop.machine1.Manager GetMachineUIDShift s uns 2>&1)
    if [ -n "$shift_" ] && [ "$ms" = "u $shift_" ]; then
        ok uns-machined-shift "GetMachineUIDShift uns: $ms"
    else
        fail uns-machined-shift "GetMachineUIDShift uns: '$ms', uid_map shift '$shift_'"
    fi
    # machinectl shell enters through the guest's systemd (nixpkgs#57083:
    # nixos-container run/login enter without the user namespace; this works).
    out=$(timeout 120 machinectl shell uns /bin/sh -c 'echo "uid=$(id -u) shadow=$(stat -c %u /etc/shadow)"' 2>&1)
    if echo "$out" | grep -q 'uid=0 shadow=0'; then
        ok uns-machinectl-shell "$(echo "$out" | grep -m1 uid=)"
    else
        fail uns-machinectl-shell "$(echo "$out" | head -c 300)"
    fi
    out=$(timeout "$STOP_TIMEOUT" systemctl stop "$uns_unit" 2>&1)
    if [ "$(systemctl is-active "$uns_unit")" = inactive ] && [ -n "$shift_" ] &&
        [ ! -e "/run/systemd/nspawn-uid/$shift_" ]; then
        ok uns-stop-clean "stopped; the range's lock file is gone"
    else
        fail uns-stop-clean "unit $(systemctl is-active "$uns_unit"), lock files: $(ls /run/systemd/nspawn-uid/ 2>/dev/null | tr '\n' ' ') $out"
    fi
    umount "$uns_root" 2>/dev/null
else
    why_not="setting up container@uns failed"
    not_run uns-running uns-no-failed uns-map uns-machined-shift uns-machinectl-shell uns-stop-clean
fi

# ---------------------------------------------------------------- host shutdown

# The last act: five containers running, then a normal poweroff of the VM
# (every unit stopped in order). run.sh times it from the shutdown-begin line to
# QEMU's exit. The containers run on overlays of the one root.
shut_n=0
if [ "$started_once" = 1 ] && [ "${INTERACTIVE:-0}" != 1 ]; then
    for i in 1 2 3 4 5; do
        mkdir -p "/run/nrvm/ovl/c$i/upper" "/run/nrvm/ovl/c$i/work" "/var/lib/containers/c$i"
        mount -t overlay overlay -o "lowerdir=$root,upperdir=/run/nrvm/ovl/c$i/upper,workdir=/run/nrvm/ovl/c$i/work" \
            "/var/lib/containers/c$i" && systemctl start --no-block "container@c$i.service"
    done
    deadline=$(( $(date +%s) + BOOT_TIMEOUT ))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        shut_n=$(systemctl list-units --no-legend --plain --state=active 'container@c*.service' | wc -l)
        [ "$shut_n" -lt 5 ] || break
        sleep 1
    done
    say "info $shut_n of 5 containers running for the host shutdown"
fi

[ "$nfail" = 0 ] || diagnose
say "DONE pass=$npass fail=$nfail"
finished=1

if [ "${INTERACTIVE:-0}" = 1 ]; then
    echo "nrvm: tests finished; the VM stays up (root shell on the console, 'poweroff' to end)"
    exec sleep infinity
fi

if [ "$shut_n" -gt 0 ]; then
    # A normal poweroff, not the test unit's poweroff-force, so that the
    # containers' units are stopped as on a real host.
    mkdir -p /run/systemd/system/nrvm-test.service.d
    printf '[Unit]\nSuccessAction=none\nFailureAction=none\n' >/run/systemd/system/nrvm-test.service.d/shutdown.conf
    systemctl daemon-reload
    say "info shutdown-begin $shut_n-containers"
    systemctl poweroff
    exec sleep infinity
fi
