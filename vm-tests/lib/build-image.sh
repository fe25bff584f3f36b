#!/usr/bin/env bash
# Builds (or finds in the cache) the VM image used by vm-tests/run.sh: a Debian
# bookworm root with systemd as PID 1 on a cgroup2-only kernel command line, the
# Debian kernel, a tiny busybox initrd, and a Debian minbase+systemd container root.
# Prints the image directory as its last line of stdout; everything else goes to stderr.
#
# Cache layout under ${NIXRUN_VM_CACHE:-/var/cache/nixrun-vm}:
#   debs/                 debootstrap's and apt's download cache (shared by all trees)
#   tree-vm-<key>/        debootstrap of the VM root + the kernel, keyed by its recipe
#   tree-ct-<key>/        debootstrap of the container root, keyed by its recipe
#   image-<key>/          vmlinuz initrd.img root.img container.img, keyed by this
#                         script and the files next to it; .inuse is flock'ed shared
#                         by runs so a newer build never deletes an image in use
# Everything is built in a .build.* directory and renamed into place, under an
# exclusive flock on .lock, so concurrent callers wait and then reuse the result.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${NIXRUN_VM_CACHE:-/var/cache/nixrun-vm}
mirror=${NIXRUN_VM_MIRROR:-http://deb.debian.org/debian}
suite=bookworm

# The trees are the slow part (minutes); they are keyed by what goes into them, not
# by this whole script, so editing the image assembly below does not re-debootstrap.
# Bump tree_rev when the tree-building code itself changes.
tree_rev=1
# iproute2 in both: the private-network check's postStart (nspawn reference)
# and container inits use ip(8).
vm_pkgs=systemd,systemd-sysv,dbus,udev,systemd-container,procps,kmod,busybox-static,iproute2
ct_pkgs=systemd,systemd-sysv,dbus,iproute2

log() { printf 'build-image: %s\n' "$*" >&2; }
die() { printf 'build-image: error: %s\n' "$*" >&2; exit 1; }

hash_of() { sha256sum | cut -c1-16; }

# A killed debootstrap can leave proc/sys mounted inside its target; never let rm
# walk into them.
safe_rm() {
    local d
    for d in "$@"; do
        [ -e "$d" ] || continue
        awk -v p="$d/" 'index($2 "/", p) == 1 { print $2 }' /proc/self/mounts |
            sort -r | while read -r m; do umount -l "$m" || true; done
        rm -rf --one-file-system "$d"
    done
}

build_tree() { # NAME PACKAGES EXTRA_STEP -> prints the tree path
    local name=$1 pkgs=$2 extra=$3 key dir tmp
    key=$(printf '%s\n' "$tree_rev" "$suite" "$mirror" "$pkgs" "$extra" | hash_of)
    dir=$cache/tree-$name-$key
    if [ -e "$dir/.complete" ]; then echo "$dir"; return; fi
    tmp=$(mktemp -d "$cache/.build.tree-$name.XXXXXX")
    log "debootstrap $suite ($name: $pkgs) — takes a few minutes the first time"
    if ! debootstrap --variant=minbase --include="$pkgs" --cache-dir="$cache/debs" \
        "$suite" "$tmp/root" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
        tail -n 30 "$tmp/debootstrap.log" >&2
        die "debootstrap of the $name tree failed (full log: $tmp/debootstrap.log)"
    fi
    # (not "cond || fn": set -e does not apply inside a function called that way)
    if [ -n "$extra" ]; then "$extra" "$tmp/root" >&2; fi
    # The trees are copied into images, never booted themselves; drop what would
    # leak from the build host or differ between builds.
    rm -f "$tmp/root/etc/hostname" "$tmp/root/etc/machine-id"
    rm -rf "$tmp/root/var/lib/apt/lists/"* "$tmp/root/var/cache/apt/"*.bin
    touch "$tmp/root/.complete"
    mv -T "$tmp/root" "$dir"
    safe_rm "$tmp"
    echo "$dir"
}

# The kernel comes from the same mirror as the root (via the tree's own apt, so the
# build host's apt configuration does not matter) and is unpacked, not installed:
# installing it would pull in initramfs-tools and build a large initramfs we replace.
add_kernel() {
    local root=$1 kver real deb
    cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
    chroot "$root" apt-get -q -o Acquire::Languages=none update >&2 ||
        die "apt-get update inside the VM tree failed (mirror $mirror reachable?)"
    real=$(chroot "$root" apt-cache depends linux-image-amd64 |
        awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
    [ -n "$real" ] || die "cannot resolve linux-image-amd64 on $mirror"
    mkdir -p "$root/tmp/kernel"
    chroot "$root" sh -c "cd /tmp/kernel && apt-get -q -o APT::Sandbox::User=root download $real" >&2 ||
        die "downloading $real failed"
    deb=$(echo "$root"/tmp/kernel/*.deb)
    cp "$deb" "$cache/debs/"
    # Not straight into the root: tar would replace the merged-/usr /lib symlink
    # with a directory.
    dpkg-deb -x "$deb" "$root/tmp/kernel/x"
    cp -a "$root/tmp/kernel/x/boot/." "$root/boot/"
    mkdir -p "$root/usr/lib/modules"
    cp -a "$root/tmp/kernel/x/lib/modules/." "$root/usr/lib/modules/"
    rm -rf "$root/tmp/kernel"
    kver=$(ls "$root/usr/lib/modules")
    chroot "$root" /usr/sbin/depmod -a "$kver"
    log "kernel $kver ($(basename "$deb"))"
}

# The initrd only loads the modules needed to reach the root disk (the Debian
# kernel has virtio and ext4 as modules) and switch_roots to systemd.
make_initrd() { # ROOTFS OUT
    local root=$1 out=$2 kver d
    kver=$(ls "$root/lib/modules")
    d=$(mktemp -d "$cache/.build.initrd.XXXXXX")
    mkdir -p "$d/bin" "$d/dev" "$d/proc" "$d/sys" "$d/newroot" "$d/lib/modules"
    cp "$root/bin/busybox" "$d/bin/busybox"
    install -m 0755 "$here/initrd-init" "$d/init"
    chroot "$root" /usr/sbin/modprobe -a -S "$kver" --show-depends virtio_pci virtio_blk ext4 |
        awk '$1 == "insmod" { print $2 }' | awk '!seen[$0]++' |
        while read -r ko; do
            cp "$root$ko" "$d/lib/modules/"
            basename "$ko" >>"$d/lib/modules/order"
        done
    [ -s "$d/lib/modules/order" ] || die "no initrd modules found for $kver"
    (cd "$d" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
    safe_rm "$d"
}

# ext4 images are filled at mkfs time (-d), so no loop mounts are needed; the slack
# is what the guest may write (it runs on a throwaway snapshot, see run.sh).
make_ext4() { # DIR IMG LABEL SLACK_MB
    local mb
    mb=$(( $(du -sm --apparent-size "$1" | cut -f1) * 12 / 10 + $4 ))
    mkfs.ext4 -q -F -L "$3" -d "$1" -E root_owner=0:0 "$2" "${mb}M" >/dev/null
}

configure_vm_root() {
    local r=$1
    echo nrvm-host >"$r/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 nrvm-host\n' >"$r/etc/hosts"
    # Fixed, so that no "first boot" logic runs; the disk is a snapshot anyway.
    tr -d - </proc/sys/kernel/random/uuid >"$r/etc/machine-id"
    # No fstab entry for /: the initrd mounts it rw, and an entry would make systemd
    # wait for a device unit and fsck a disk nobody keeps.
    : >"$r/etc/fstab"
    chroot "$r" passwd -d root >/dev/null
    mkdir -p "$r/etc/systemd/system/serial-getty@ttyS0.service.d" "$r/var/lib/containers" \
        "$r/etc/systemd/system/multi-user.target.wants"
    # A root shell on the console for NIXRUN_VM_INTERACTIVE=1 runs.
    cat >"$r/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %I $TERM
EOF
    install -m 0755 "$here/nrvm-run" "$r/usr/local/sbin/nrvm-run"
    install -m 0644 "$here/nrvm-test.service" "$r/etc/systemd/system/nrvm-test.service"
    ln -sf /etc/systemd/system/nrvm-test.service \
        "$r/etc/systemd/system/multi-user.target.wants/nrvm-test.service"
    # Nothing on this VM needs them, and under TCG every unit costs boot time.
    for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service \
        fstrim.timer getty@tty1.service systemd-timesyncd.service; do
        ln -sf /dev/null "$r/etc/systemd/system/$u"
    done
}

configure_ct_root() {
    local r=$1
    # Empty, as NixOS's startScript leaves a new container's: the guest's systemd
    # then takes $container_uuid or a random ID (the disk is a snapshot anyway).
    : >"$r/etc/machine-id"
    # The runtime names the container (-M); an /etc/hostname would override it.
    rm -f "$r/etc/hostname"
    printf '127.0.0.1 localhost\n' >"$r/etc/hosts"
}

main() {
    local key dir vmtree cttree old
    command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
    mkdir -p "$cache/debs"
    key=$( (cat "$here/build-image.sh" "$here/initrd-init" "$here/nrvm-run" \
        "$here/nrvm-test.service"; echo "$mirror") | hash_of)
    dir=$cache/image-$key
    if [ -e "$dir/.complete" ]; then echo "$dir"; return; fi

    exec 9>"$cache/.lock"
    if ! flock -n 9; then
        log "another build holds $cache/.lock; waiting"
        flock 9
    fi
    if [ -e "$dir/.complete" ]; then echo "$dir"; return; fi
    # We hold the lock, so any .build.* left over is from a build that died.
    for old in "$cache"/.build.*; do safe_rm "$old"; done

    vmtree=$(build_tree vm "$vm_pkgs" add_kernel)
    cttree=$(build_tree ct "$ct_pkgs" "")

    tmp=$(mktemp -d "$cache/.build.image.XXXXXX") # global: the EXIT trap needs it
    trap 'safe_rm "$tmp"' EXIT
    log "assembling image $key"
    cp -a "$vmtree" "$tmp/vmroot"
    rm -f "$tmp/vmroot/.complete"
    configure_vm_root "$tmp/vmroot"
    cp "$tmp"/vmroot/boot/vmlinuz-* "$tmp/vmlinuz"
    make_initrd "$tmp/vmroot" "$tmp/initrd.img"
    make_ext4 "$tmp/vmroot" "$tmp/root.img" nrvm-root 1024
    safe_rm "$tmp/vmroot"

    cp -a "$cttree" "$tmp/ctroot"
    rm -f "$tmp/ctroot/.complete"
    configure_ct_root "$tmp/ctroot"
    make_ext4 "$tmp/ctroot" "$tmp/container.img" nrvm-ct 512
    safe_rm "$tmp/ctroot"

    touch "$tmp/.inuse" "$tmp/.complete"
    mv -T "$tmp" "$dir"
    trap - EXIT

    # Drop superseded trees, and superseded images unless a run still holds them.
    for old in "$cache"/tree-vm-* "$cache"/tree-ct-*; do
        [ "$old" = "$vmtree" ] || [ "$old" = "$cttree" ] || safe_rm "$old"
    done
    for old in "$cache"/image-*; do
        [ "$old" != "$dir" ] || continue
        if flock -n -x "$old/.inuse" true 2>/dev/null; then
            log "removing superseded $(basename "$old")"
            safe_rm "$old"
        fi
    done
    echo "$dir"
}

main "$@"
