#!/usr/bin/env bash
# Format benchmark (not a test): `stemcell convert` / `stemcell package` (release build) against
# the commands a user would otherwise run (qemu-img convert, tar, sha1sum), on ONE input disk,
# in the same run. Prints a Markdown table: median wall time of RUNS runs, speed ratio, CPU
# time (the fairer figure when the machine is shared), output
# size, size ratio and peak RSS (GNU time %M). Commands that fail (a format or command not
# implemented yet) show "n/a" instead of aborting the run.
#
# Usage: ci/bench.sh [WORKDIR]        (default: a fresh directory under /var/tmp)
# Environment: RUNS (default 3), ONLY (regex of row groups to run: qcow2|vmdk|vhd|vhd-fixed|openstack|cloudstack),
#              STEMCELL (binary to use instead of building target/release/stemcell),
#              DISKS (raw disks of real stemcells, space-separated, e.g. what `stemcell build
#              --keep-disks` leaves in <work-dir>/disks/: qcow2 and VMDK rows for each, beside
#              the synthetic disk).
#
# The input disk: 5 GiB virtual, about 700 MiB of data laid out like a root filesystem image:
# a tar stream of host files from /usr (text, binaries, already-compressed files), 100 MiB of
# random data (incompressible, like packed archives), 64 MiB of written zeros, and holes.
set -euo pipefail

RUNS=${RUNS:-3}
ONLY=${ONLY:-.}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d /var/tmp/stemcell-bench.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
TIME=/usr/bin/time

for tool in qemu-img tar sha1sum bzip2 "$TIME"; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 1; }
done

if [[ -z "${STEMCELL:-}" ]]; then
    (cd "$repo" && cargo build --release --quiet)
    STEMCELL=$repo/target/release/stemcell
fi

MIB=$((1024 * 1024))
disk=$work/disk.raw

# --- the input disk ---------------------------------------------------------------------------
build_disk() {
    echo "bench: building the input disk in $disk" >&2
    rm -f "$disk"
    truncate -s 5G "$disk"
    # Host files as a filesystem would hold them: 500 MiB at 1 MiB, 100 MiB more at 4 GiB.
    tar cf - --ignore-failed-read /usr/lib /usr/share /usr/bin 2>/dev/null \
        | head -c $((600 * MIB)) > "$work/usr.tar" || true
    dd if="$work/usr.tar" of="$disk" bs=1M count=500 seek=1 conv=notrunc,fsync status=none
    dd if="$work/usr.tar" of="$disk" bs=1M skip=500 count=100 seek=4096 conv=notrunc,fsync status=none
    rm -f "$work/usr.tar"
    # Incompressible data and written zeros.
    head -c $((100 * MIB)) /dev/urandom | dd of="$disk" bs=1M seek=1536 conv=notrunc status=none
    dd if=/dev/zero of="$disk" bs=1M count=64 seek=3072 conv=notrunc,fsync status=none
    truncate -s 5G "$disk"
}
[[ -f "$disk" && $(stat -c %s "$disk") -eq $((5 * 1024 * MIB)) ]] || build_disk

# --- measuring --------------------------------------------------------------------------------
# measure NAME OUTPUT CMD...: runs CMD RUNS times (OUTPUT removed before each run); records the
# median wall time and CPU time, the largest peak RSS and the size of OUTPUT (a file or a directory).
declare -A T CPU RSS SIZE
median() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'; }
measure() {
    local name=$1 out=$2; shift 2
    local times=() cpus=() rss=0 i
    for ((i = 0; i < RUNS; i++)); do
        rm -rf "$out"
        sync
        if ! "$TIME" -f '%e %M %U %S' -o "$work/time.txt" "$@" >"$work/cmd.log" 2>&1; then
            echo "bench: $name failed: $(tail -n 1 "$work/cmd.log")" >&2
            T[$name]=n/a; CPU[$name]=n/a; RSS[$name]=n/a; SIZE[$name]=n/a
            rm -rf "$out"
            return 0
        fi
        read -r t m u s < <(tail -n 1 "$work/time.txt")
        times+=("$t")
        cpus+=("$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')")
        ((m > rss)) && rss=$m
    done
    T[$name]=$(printf '%s\n' "${times[@]}" | median)
    CPU[$name]=$(printf '%s\n' "${cpus[@]}" | median)
    RSS[$name]=$((rss / 1024))
    SIZE[$name]=$(du -s --apparent-size -B1 "$out" | cut -f1)
    echo "bench: $name: ${T[$name]} s (CPU ${CPU[$name]} s), ${RSS[$name]} MiB peak, ${SIZE[$name]} bytes" >&2
}

# The official OpenStack packing sequence (bosh-linux-stemcell-builder), timed as one command.
official_openstack() {
    local dir=$1
    mkdir -p "$dir" && cd "$dir"
    qemu-img convert -c -O qcow2 -o compat=0.10 "$disk" root.img
    tar zcf image root.img
    local sha1
    sha1=$(sha1sum image | cut -d' ' -f1)
    printf -- "---\nname: bosh-openstack-kvm-ubuntu-noble-go_agent\nversion: '0.1'\nbosh_protocol: '1'\napi_version: 3\nsha1: %s\noperating_system: ubuntu-noble\nstemcell_formats:\n- openstack-qcow2\ncloud_properties:\n  name: bosh-openstack-kvm-ubuntu-noble-go_agent\n  version: '0.1'\n" "$sha1" >stemcell.MF
    : >packages.txt
    : >dev_tools_file_list.txt
    tar zcf stemcell.tgz stemcell.MF packages.txt dev_tools_file_list.txt image
    rm -f root.img image
}
# The official CloudStack packing: a dynamic VHD, bzip2 (single-threaded) as the image member.
official_cloudstack() {
    local dir=$1
    mkdir -p "$dir" && cd "$dir"
    qemu-img convert -O vpc -o subformat=dynamic "$disk" root.vhd
    bzip2 -9 -c root.vhd > image
    local sha1
    sha1=$(sha1sum image | cut -d' ' -f1)
    printf -- "---\nname: bosh-cloudstack-xen-ubuntu-noble-go_agent\nversion: '0.1'\nbosh_protocol: '1'\napi_version: 3\nsha1: %s\noperating_system: ubuntu-noble\nstemcell_formats:\n- cloudstack-vhdx\ncloud_properties:\n  name: bosh-cloudstack-xen-ubuntu-noble-go_agent\n  version: '0.1'\n" "$sha1" >stemcell.MF
    : >packages.txt
    : >dev_tools_file_list.txt
    tar zcf stemcell.tgz stemcell.MF packages.txt dev_tools_file_list.txt image
    rm -f root.vhd image
}
export -f official_openstack official_cloudstack
export disk

run() { [[ $1 =~ $ONLY ]]; }
q=$work/out
mkdir -p "$q"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# Reference:ours row pairs of the report, in order.
PAIRS=()
# compressed_rows SUFFIX DISK: the qcow2 and VMDK rows for one input disk.
compressed_rows() {
    local sfx=$1 in=$2
    if run qcow2; then
        measure "qemu-img qcow2$sfx" "$q/ref.qcow2" qemu-img convert -c -O qcow2 -o compat=0.10 "$in" "$q/ref.qcow2"
        measure "stemcell qcow2$sfx" "$q/our.qcow2" "$STEMCELL" convert --format qcow2 --compat 0.10 "$in" "$q/our.qcow2"
        PAIRS+=("qemu-img qcow2$sfx:stemcell qcow2$sfx")
    fi
    if run vmdk; then
        measure "qemu-img vmdk$sfx" "$q/ref.vmdk" qemu-img convert -O vmdk -o subformat=streamOptimized "$in" "$q/ref.vmdk"
        measure "stemcell vmdk$sfx" "$q/our.vmdk" "$STEMCELL" convert --format vmdk "$in" "$q/our.vmdk"
        PAIRS+=("qemu-img vmdk$sfx:stemcell vmdk$sfx")
    fi
}
compressed_rows "" "$disk"
for real in ${DISKS:-}; do
    [[ -f $real ]] || { echo "bench: $real: no such disk" >&2; exit 1; }
    compressed_rows " ($(basename "$real"), $(du -B1M "$real" | cut -f1) MiB allocated)" "$real"
done
if run 'vhd$|vhd-dyn'; then
    measure "qemu-img vhd" "$q/ref.vhd" qemu-img convert -O vpc -o subformat=dynamic "$disk" "$q/ref.vhd"
    measure "stemcell vhd" "$q/our.vhd" "$STEMCELL" convert --format vhd "$disk" "$q/our.vhd"
fi
if run vhd-fixed; then
    measure "qemu-img vhd-fixed" "$q/ref-fixed.vhd" qemu-img convert -O vpc -o subformat=fixed "$disk" "$q/ref-fixed.vhd"
    measure "stemcell vhd-fixed" "$q/our-fixed.vhd" "$STEMCELL" convert --format vhd-fixed "$disk" "$q/our-fixed.vhd"
fi
if run openstack; then
    measure "official openstack" "$q/official" bash -c 'official_openstack "$0"' "$q/official"
    # The qcow2 tarball only, like the official sequence (openstack also has a -raw tarball).
    measure "stemcell openstack" "$q/ours" "$STEMCELL" package --infrastructure openstack --os ubuntu-noble \
        --version 0.1 --disk-format qcow2 --disk "$disk" -o "$q/ours"
fi
if run cloudstack; then
    measure "official cloudstack" "$q/official-cs" bash -c 'official_cloudstack "$0"' "$q/official-cs"
    measure "stemcell cloudstack" "$q/ours-cs" "$STEMCELL" package --infrastructure cloudstack --os ubuntu-noble \
        --version 0.1 --disk "$disk" -o "$q/ours-cs"
fi
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report -----------------------------------------------------------------------------------
ratio() { # ratio A B: A/B with 2 decimals, or n/a (speed: reference time / our time)
    [[ $1 == n/a || $2 == n/a || -z $1 || -z $2 ]] && { echo n/a; return; }
    awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'
}
echo
echo "Input: $disk, 5 GiB virtual, $(du -B1M "$disk" | cut -f1) MiB allocated; $(nproc) cores;" \
    "load average before $load_before, after $load_after; $RUNS runs, median."
echo
echo "| tool | time median (s) | speed vs reference | CPU user+sys (s) | size (bytes) | size vs reference | peak RSS (MiB) |"
echo "|---|---|---|---|---|---|---|"
for pair in "${PAIRS[@]}" "qemu-img vhd:stemcell vhd" \
    "qemu-img vhd-fixed:stemcell vhd-fixed" "official openstack:stemcell openstack" \
    "official cloudstack:stemcell cloudstack"; do
    ref=${pair%%:*} ours=${pair#*:}
    [[ -n ${T[$ref]:-} ]] || continue
    echo "| $ref | ${T[$ref]} | 1.00 | ${CPU[$ref]} | ${SIZE[$ref]} | 1.00 | ${RSS[$ref]} |"
    echo "| $ours | ${T[$ours]} | $(ratio "${T[$ref]}" "${T[$ours]}") | ${CPU[$ours]} | ${SIZE[$ours]} |" \
        "$(ratio "${SIZE[$ours]}" "${SIZE[$ref]}") | ${RSS[$ours]} |"
done

# Outputs are large (a fixed VHD is the full 5 GiB); the input disk is kept for the next run.
rm -rf "$q"
