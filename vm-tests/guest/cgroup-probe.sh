#!/bin/sh
# Run inside the container as a service of the guest's systemd (vmtest.sh copies it
# into the container root): given the inode numbers of every host cgroup directory
# outside the container's payload/ cgroup, finds those directories in each cgroup
# mount the guest has and in a fresh cgroup2 mount, and tries to open each of
# their files for writing. Opening changes nothing; a read-only mount or a missing
# permission makes it fail. Prints VISIBLE/WRITABLE/SCANNED lines, and CONTROL when
# the same method finds the guest's own cgroup.procs writable (so the probe works).
# shellcheck disable=SC2044 # word-splitting on newlines only, globbing off (below)
outside=" $* "
# The guest names its own cgroups; split find's output on newlines only.
set -f
IFS='
'

scan() {
    n=0
    for entry in $(find "$1" -xdev -type d -printf '%i:%p\n' 2>/dev/null); do
        n=$((n + 1))
        ino=${entry%%:*}
        dir=${entry#*:}
        case $outside in *" $ino "*) ;; *) continue ;; esac
        echo "VISIBLE $dir"
        # Only files the kernel offers for writing (root's open ignores mode bits).
        for f in $(find "$dir" -maxdepth 1 -type f -perm -u+w); do
            if (: >>"$f") 2>/dev/null; then echo "WRITABLE $f"; fi
        done
    done
    echo "SCANNED $1 $n"
}

if [ "${NRVM_FRESH:-}" = 1 ]; then
    # Re-run by ourselves in a private mount namespace: what would a new mount show?
    mount -t cgroup2 none /run/nrvm-cg || { echo "FRESH mount refused"; exit 0; }
    scan /run/nrvm-cg
    exit 0
fi

(: >>/sys/fs/cgroup/cgroup.procs) 2>/dev/null && echo "CONTROL own cgroup.procs writable"
for mnt in $(awk '{ for (i = 7; i <= NF; i++) if ($i == "-") { if ($(i + 1) ~ /^cgroup/) print $5; break } }' /proc/self/mountinfo); do
    scan "$mnt"
done
mkdir -p /run/nrvm-cg
NRVM_FRESH=1 unshare -m --propagation private sh "$0" "$@" || echo "FRESH unshare refused"
