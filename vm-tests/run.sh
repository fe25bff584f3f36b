#!/usr/bin/env bash
# nixrun's VM test: boots a Debian VM whose PID 1 is systemd on a cgroup2-only host
# and runs container@foo.service (NixOS-style unit) end to end against nixrun, or
# against systemd-nspawn as the reference. See vm-tests/README.md.
#
# Exit status: 0 all checks passed; 1 a check failed; 2 the VM run did not
# complete (no boot, crash, timeout before "VMTEST DONE"); 3 setup problem
# (missing prerequisite, binary not found, image build failed, bad arguments).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
    cat <<EOF
usage: $0 [--runtime nixrun|nspawn] [--bin PATH] [--ctl-bin PATH] [--interactive]
  --runtime   runtime in container@.service's ExecStart (env NIXRUN_VM_RUNTIME, default nixrun)
  --bin       nixrun binary to test (env NIXRUN_BIN; default: the newer of
              target/<arch>-unknown-linux-gnu/release/nixrun and target/release/nixrun)
  --ctl-bin   nixrunctl binary (env NIXRUN_CTL_BIN; default: nixrunctl next to --bin)
  --interactive  console on this terminal, VM stays up after the tests (env NIXRUN_VM_INTERACTIVE=1)
env: NIXRUN_VM_ACCEL=auto|kvm|tcg  NIXRUN_VM_CACHE (default /var/cache/nixrun-vm)
     NIXRUN_VM_TIMEOUT (whole run, seconds)  NIXRUN_VM_OUT (log directory)
     NIXRUN_VM_CONTAINER_ROOT (a container root tree instead of the cached Debian one)
     NIXRUN_VM_EXTRA_ARGS (more runtime flags in ExecStart, before -b)
     NIXRUN_VM_MEM (MiB, 2048)  NIXRUN_VM_CPUS (2)  NIXRUN_VM_MIRROR (Debian mirror)
EOF
}

# The checkout's newest build: .cargo/config.toml names the target explicitly, so
# cargo puts it under target/<triple>/, but a plain target/release/ may exist too.
default_bin() {
    local c best=$here/../target/release/nixrun
    for c in "$here/../target/$(uname -m)-unknown-linux-gnu/release/nixrun" "$here/../target/release/nixrun"; do
        if [ -x "$c" ] && { [ ! -x "$best" ] || [ "$c" -nt "$best" ]; }; then best=$c; fi
    done
    echo "$best"
}
runtime=${NIXRUN_VM_RUNTIME:-nixrun}
bin=${NIXRUN_BIN:-$(default_bin)}
ctl_bin=${NIXRUN_CTL_BIN:-}
interactive=${NIXRUN_VM_INTERACTIVE:-0}
while [ $# -gt 0 ]; do
    case $1 in
        --runtime) runtime=${2:?}; shift 2 ;;
        --runtime=*) runtime=${1#*=}; shift ;;
        --bin) bin=${2:?}; shift 2 ;;
        --bin=*) bin=${1#*=}; shift ;;
        --ctl-bin) ctl_bin=${2:?}; shift 2 ;;
        --ctl-bin=*) ctl_bin=${1#*=}; shift ;;
        --interactive) interactive=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; exit 3 ;;
    esac
done

cache=${NIXRUN_VM_CACHE:-/var/cache/nixrun-vm}
export NIXRUN_VM_CACHE=$cache
mem=${NIXRUN_VM_MEM:-2048}
cpus=${NIXRUN_VM_CPUS:-2}

say() { printf 'vm-tests: %s\n' "$*" >&2; }
setup_error() { say "error: $*"; exit 3; }

# ---------------------------------------------------------------- prerequisites

check_prereqs() {
    local missing=() c
    [ "$(id -u)" = 0 ] || setup_error "must run as root (debootstrap, chroot and mkfs.ext4 -d with ownership)"
    for c in qemu-system-x86_64:qemu-system-x86 debootstrap:debootstrap mkfs.ext4:e2fsprogs \
        dpkg-deb:dpkg flock:util-linux cpio:cpio gzip:gzip timeout:coreutils \
        chroot:coreutils sha256sum:coreutils; do
        command -v "${c%%:*}" >/dev/null || missing+=("${c%%:*} (package ${c#*:})")
    done
    [ ${#missing[@]} = 0 ] || setup_error "missing prerequisites: $(printf '%s, ' "${missing[@]}" | sed 's/, $//')"
    case $runtime in
        nixrun)
            if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then
                setup_error "nixrun binary not found or not executable: $bin (cargo build --release, or set NIXRUN_BIN / --bin; --runtime nspawn tests the harness)"
            fi
            ctl_bin=${ctl_bin:-$(dirname "$bin")/nixrunctl}
            if [ ! -f "$ctl_bin" ] || [ ! -x "$ctl_bin" ]; then
                setup_error "nixrunctl binary not found or not executable: $ctl_bin (set NIXRUN_CTL_BIN / --ctl-bin)"
            fi ;;
        nspawn) ;;
        *) setup_error "unknown runtime '$runtime' (nixrun or nspawn)" ;;
    esac
    if [ -n "${NIXRUN_VM_CONTAINER_ROOT:-}" ] && [ ! -d "$NIXRUN_VM_CONTAINER_ROOT" ]; then
        setup_error "NIXRUN_VM_CONTAINER_ROOT=$NIXRUN_VM_CONTAINER_ROOT is not a directory"
    fi
}
check_prereqs

# ---------------------------------------------------------------- image

t_start=$(date +%s)
img=
for attempt in 1 2; do
    img=$("$here/lib/build-image.sh" | tail -n 1) || setup_error "building the VM image failed (see above)"
    # Held for the whole run: a concurrent build of a newer image will not delete it.
    exec {inuse_fd}<"$img/.inuse"
    flock -s "$inuse_fd"
    [ -e "$img/.complete" ] && break
    exec {inuse_fd}<&-
    [ "$attempt" = 1 ] || setup_error "image $img vanished while starting"
done
t_image=$(($(date +%s) - t_start))

# ---------------------------------------------------------------- accelerator

qemu_version=$(qemu-system-x86_64 --version | head -n 1)

# KVM is used only if a guest really runs under it here: on some hosts /dev/kvm
# exists but the guest hangs (or QEMU aborts on -cpu host). The probe boots the
# kernel without a root disk, which must reach its "Kernel panic" within seconds;
# the verdict is cached until the host reboots.
probe_kvm() {
    local key f log t0 rc
    if [ ! -c /dev/kvm ] || [ ! -r /dev/kvm ] || [ ! -w /dev/kvm ]; then
        kvm_why="no usable /dev/kvm"
        return 1
    fi
    key=$( (cat /proc/sys/kernel/random/boot_id; echo "$qemu_version"; cat "$img/vmlinuz") | sha256sum | cut -c1-16)
    f=$cache/kvm-probe.$key
    if [ -f "$f" ]; then
        kvm_why="$(cut -d' ' -f2- "$f") (cached)"
        [ "$(cut -d' ' -f1 "$f")" = yes ]
        return
    fi
    log=$(mktemp)
    t0=$(date +%s)
    rc=0
    timeout -k 2 20 qemu-system-x86_64 -accel kvm -cpu host -m 256 -nodefaults -no-user-config \
        -display none -no-reboot -kernel "$img/vmlinuz" -append "console=ttyS0 panic=-1" \
        -serial "file:$log" >"$log.err" 2>&1 &
    wait $! 2>/dev/null || rc=$? # (bash would print "Aborted" for a crashing QEMU)
    rm -f "$cache"/kvm-probe.*
    if grep -q 'Kernel panic' "$log"; then
        echo "yes KVM probe booted a kernel in $(($(date +%s) - t0))s" >"$f"
    elif [ "$rc" = 124 ]; then
        echo "no KVM probe: guest hung ($(grep -c . "$log") console lines in 20s)" >"$f"
    else
        echo "no KVM probe: QEMU exited $rc: $(grep -m1 . "$log.err" | cut -c1-100)" >"$f"
    fi
    rm -f "$log" "$log.err"
    kvm_why=$(cut -d' ' -f2- "$f")
    [ "$(cut -d' ' -f1 "$f")" = yes ]
}

kvm_why=
case ${NIXRUN_VM_ACCEL:-auto} in
    kvm) accel=kvm; kvm_why="NIXRUN_VM_ACCEL=kvm" ;;
    tcg) accel=tcg; kvm_why="NIXRUN_VM_ACCEL=tcg" ;;
    auto) if probe_kvm; then accel=kvm; else accel=tcg; fi ;;
    *) setup_error "NIXRUN_VM_ACCEL must be auto, kvm or tcg" ;;
esac
if [ "$accel" = kvm ]; then
    accel_args=(-accel kvm -cpu host)
    # Generous: a guest boot is seconds under KVM, but CI hosts can be slow.
    boot_timeout=120 stop_timeout=90 run_timeout=${NIXRUN_VM_TIMEOUT:-1800}
else
    accel_args=(-accel tcg -cpu max)
    # Emulation is far slower than KVM: a container boots in ~10 s here and the
    # whole run takes ~1.5 min, so these are 20-30x margins for slower machines. The
    # run timeout covers the worst case of a runtime that hangs at every step.
    boot_timeout=300 stop_timeout=180 run_timeout=${NIXRUN_VM_TIMEOUT:-3600}
fi
say "runtime $runtime, accel $accel ($kvm_why), image $(basename "$img")"
[ "$runtime" != nixrun ] || say "binary $(realpath "$bin") (built $(date -r "$bin" '+%F %T'))"

# ---------------------------------------------------------------- per-run disk

out=${NIXRUN_VM_OUT:-$(mktemp -d /tmp/nixrun-vm.XXXXXX)}
mkdir -p "$out"
rm -f "$out/console.log" "$out/results.log"
stage=$(mktemp -d "$out/inject.XXXXXX")
cleanup() {
    rm -rf "$stage" "$out/inject.img" "$out/container.img"
}
trap cleanup EXIT

case $runtime in
    nixrun)
        exe=/usr/local/bin/nixrun
        install -m 0755 "$bin" "$stage/nixrun"
        install -m 0755 "$ctl_bin" "$stage/nixrunctl"
        # NixOS's ExecReload runs switch-to-configuration in the guest; with
        # nixrun that is nixrunctl's job.
        reload="/usr/local/bin/nixrunctl reload %i" ;;
    nspawn)
        exe=/usr/bin/systemd-nspawn
        # What nixos-container run does: nsenter into machined's leader.
        reload="/bin/sh -c 'exec nsenter -t \$\$(machinectl show %i -p Leader --value) -m -u -i -n -p -- /nix/var/nix/profiles/system/bin/switch-to-configuration test'" ;;
esac
extra=${NIXRUN_VM_EXTRA_ARGS:-}
sed -e "s|@RUNTIME@|$exe|" -e "s|@START_TIMEOUT@|$boot_timeout|" -e "s|@EXTRA_ARGS@|${extra:+$extra }|" \
    -e "s|@RELOAD@|$reload|" \
    "$here/guest/container@.service.in" >"$stage/container@.service"
install -m 0755 "$here/guest/vmtest.sh" "$here/guest/cgroup-probe.sh" "$stage/"
install -m 0644 "$here/guest/nrvm-marker.service" "$here/guest/nrvm-early-net.service" \
    "$here/guest/nrvm-echo.socket" "$here/guest/nrvm-echo@.service" "$stage/"
# The private-network check's container inits: nixrun's (as the NixOS module
# ships it) and, for the nspawn reference, NixOS's.
install -m 0755 "$here/../packaging/nixrun-container-init" "$here/guest/nixos-container-init" "$stage/"
cat >"$stage/config" <<EOF
RUNTIME=$runtime
MACHINE=foo
BOOT_TIMEOUT=$boot_timeout
STOP_TIMEOUT=$stop_timeout
KILL_GRACE=30
INTERACTIVE=$interactive
EOF
mb=$(( $(du -sm "$stage" | cut -f1) + 16 ))
mkfs.ext4 -q -F -L nrvm-inject -d "$stage" "$out/inject.img" "${mb}M" >/dev/null ||
    setup_error "mkfs.ext4 -d failed for the per-run disk (e2fsprogs >= 1.43 needed)"

container_img=$img/container.img
if [ -n "${NIXRUN_VM_CONTAINER_ROOT:-}" ]; then
    container_img=$out/container.img
    mb=$(( $(du -sm "$NIXRUN_VM_CONTAINER_ROOT" | cut -f1) * 12 / 10 + 512 ))
    mkfs.ext4 -q -F -L nrvm-ct -d "$NIXRUN_VM_CONTAINER_ROOT" "$container_img" "${mb}M" >/dev/null ||
        setup_error "mkfs.ext4 -d failed for $NIXRUN_VM_CONTAINER_ROOT"
fi

# ---------------------------------------------------------------- boot

# Root and container disks are snapshots: every run starts from the pristine image
# and the guest's writes are thrown away. ttyS0 is the console (kernel, systemd,
# diagnostics); ttyS1 carries only the VMTEST result lines.
qemu=(qemu-system-x86_64 -name nixrun-vmtest "${accel_args[@]}" -smp "$cpus" -m "$mem"
    -nodefaults -no-user-config -display none -no-reboot
    -kernel "$img/vmlinuz" -initrd "$img/initrd.img"
    -append "console=ttyS0 root=/dev/vda rw systemd.unified_cgroup_hierarchy=1 panic=-1"
    -drive "file=$img/root.img,if=virtio,format=raw,snapshot=on,cache=unsafe"
    -drive "file=$out/inject.img,if=virtio,format=raw,readonly=on"
    -drive "file=$container_img,if=virtio,format=raw,snapshot=on,cache=unsafe"
    -device virtio-rng-pci)

show() { # a VMTEST line -> human-readable line
    local l=${1%$'\r'}
    case $l in
        "VMTEST ok "*) printf '  ok    %s\n' "${l#VMTEST ok }" ;;
        "VMTEST FAIL "*) printf '  FAIL  %s\n' "${l#VMTEST FAIL }" ;;
        "VMTEST "*) printf '        %s\n' "${l#VMTEST }" ;;
    esac
}

: >"$out/results.log"
: >"$out/results.times"
t_boot=$(date +%s)
if [ "$interactive" = 1 ]; then
    say "interactive: console below (Ctrl-a x quits QEMU); results go to $out/results.log"
    qrc=0
    "${qemu[@]}" -serial mon:stdio -serial "file:$out/results.log" || qrc=$?
else
    say "booting the VM (timeout ${run_timeout}s); console log: $out/console.log"
    timeout -k 10 "$run_timeout" "${qemu[@]}" -serial "file:$out/console.log" \
        -serial "file:$out/results.log" >"$out/qemu.log" 2>&1 &
    qpid=$!
    # Results are shown as they come. Both run in the background because only
    # "wait" lets a SIGINT/SIGTERM to this script through at once (and take QEMU
    # down with it, by way of timeout).
    # Each line is shown and kept with the time it arrived: the host shutdown
    # is timed from the VM's "shutdown-begin" line to QEMU's exit.
    (tail -n +1 -F --pid="$qpid" "$out/results.log" 2>/dev/null |
        while IFS= read -r line; do
            printf '%s %s\n' "$(date +%s.%N)" "${line%$'\r'}" >>"$out/results.times"
            show "$line"
        done) &
    tpid=$!
    trap 'kill "$qpid" "$tpid" 2>/dev/null; cleanup' EXIT
    trap 'exit 130' INT TERM
    qrc=0
    wait "$qpid" 2>/dev/null || qrc=$? # (bash would print "Aborted"; qemu.log has why)
    wait "$tpid" || true
    trap cleanup EXIT
fi
t_end=$(date +%s)
t_end_ns=$(date +%s.%N)

# ---------------------------------------------------------------- verdict

tr -d '\r' <"$out/results.log" >"$out/results.txt"
npass=$(grep -c '^VMTEST ok ' "$out/results.txt" || true)
nfail=$(grep -c '^VMTEST FAIL ' "$out/results.txt" || true)
timing="image ${t_image}s, VM $((t_end - t_boot))s, total $((t_end - t_start))s"

if ! grep -q '^VMTEST DONE' "$out/results.txt"; then
    if [ "$qrc" = 124 ]; then
        why="timed out after ${run_timeout}s (NIXRUN_VM_TIMEOUT)"
    elif [ -s "$out/qemu.log" ] && [ "$qrc" != 0 ]; then
        why="QEMU exited $qrc: $(tail -n 1 "$out/qemu.log")"
    else
        why="VM powered off (QEMU exit $qrc)"
    fi
    if ! grep -q '^VMTEST begin' "$out/results.txt"; then
        reason=$(tr -d '\r' <"$out/console.log" 2>/dev/null |
            grep -m1 -E 'NRVM-INITRD-FAIL|Kernel panic|Failed to start|emergency' || true)
        say "FAILED: the VM did not boot to the test: $why${reason:+; console: $reason} (logs: $out)"
    else
        say "FAILED: no 'VMTEST DONE': $why; $npass passed, $nfail failed so far (logs: $out; $timing)"
    fi
    exit 2
fi
# The VM's last act: a normal poweroff (systemd stops every unit) with several
# containers running. NixOS hosts have waited 90 s per container for stop jobs
# (nixpkgs#6212); the runtime must stop its guest when the host goes down.
shut=$(awk '$2 == "VMTEST" && $3 == "info" && $4 == "shutdown-begin" { t = $1; n = $5 } END { if (t) print t, n }' "$out/results.times")
if [ "$interactive" != 1 ] && [ -n "$shut" ]; then
    took=$(awk -v a="${shut% *}" -v b="$t_end_ns" 'BEGIN { printf "%.1f", b - a }')
    if awk -v t="$took" 'BEGIN { exit !(t < 90) }'; then
        npass=$((npass + 1))
        show "VMTEST ok host-shutdown: poweroff with ${shut#* } running took ${took}s"
    else
        nfail=$((nfail + 1))
        show "VMTEST FAIL host-shutdown: poweroff with ${shut#* } running took ${took}s (a stop job hung)"
    fi
elif [ "$interactive" != 1 ]; then
    nfail=$((nfail + 1))
    show "VMTEST FAIL host-shutdown: not run (no shutdown-begin line from the VM)"
fi

if [ "$nfail" != 0 ]; then
    say "FAILED: $nfail of $((npass + nfail)) checks failed (runtime $runtime, accel $accel; $timing; logs: $out)"
    exit 1
fi
say "PASSED: all $npass checks (runtime $runtime, accel $accel; $timing; logs: $out)"
