#!/usr/bin/env bash
# Build timings (not a test): the README's "Build timings" rows, measured with the release binary
# against the host's Debian mirror, stand-in agent and blobstore CLI, SOURCE_DATE_EPOCH set.
#   os-image    `stemcell os-image --os $OS` from an empty work directory (export included)
#   openstack   `stemcell build --infrastructure openstack` from a cached OS image
#   three       openstack + vsphere + cloudstack in one invocation, from a cached OS image
# "From a cached OS image" means a fresh work directory holding a copy of the layers the first
# os-image run left, and nothing else. Prints a Markdown table: median wall time of RUNS runs,
# CPU seconds (user + sys, the fairer figure on a shared machine), and the slowest steps.
#
# Usage: ci/build-timings.sh [WORKDIR]   (default: a fresh directory under /var/tmp)
# Environment: RUNS (default 3), ONLY (regex of rows: os-image|openstack|three), OS (default
#              debian-bookworm), STEMCELL (binary instead of building target/release/stemcell),
#              BASELINE (another stemcell binary: each row is also run with it, alternating,
#              and the table gains its median and the ratio), KEEP (keep each run's OS image
#              tarball as $WORKDIR/LABEL-os-image-N.tgz, to compare builds byte for byte).
set -euo pipefail

RUNS=${RUNS:-3}
ONLY=${ONLY:-.}
OS=${OS:-debian-bookworm}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d /var/tmp/stemcell-timings.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
TIME=/usr/bin/time
[[ -x $TIME ]] || { echo "build-timings: $TIME is missing (apt-get install time)" >&2; exit 1; }
if [[ -z "${STEMCELL:-}" ]]; then
    (cd "$repo" && cargo build --release --quiet)
    STEMCELL=$repo/target/release/stemcell
fi
export SOURCE_DATE_EPOCH=1700000000
agent=$repo/tests/fixtures/standin-agent/bosh-agent
cli=$repo/tests/fixtures/standin-blobstore/bosh-blobstore-dav
inputs=(--version 0.0.1 --agent "$agent" --agent-sha256 "$(sha256sum "$agent" | cut -d' ' -f1)" --grub-password timings)
for c in dav gcs s3 azure-storage; do
    inputs+=("--blobstore-$c" "$cli" "--blobstore-$c-sha256" "$(sha256sum "$cli" | cut -d' ' -f1)")
done

# run BINARY LABEL ROW: one measured run; appends "wall cpu steps" to $work/LABEL-ROW.runs.
run() {
    local bin=$1 label=$2 row=$3 w=$work/$2-$3
    rm -rf "$w"
    case $row in
        os-image) mkdir -p "$w"; set -- "$bin" os-image --os "$OS" --work-dir "$w" -o "$w/os.tgz" ;;
        *)  cp -a "$work/$label-layers" "$w"
            local infra=(--infrastructure openstack)
            [[ $row == three ]] && infra+=(--infrastructure vsphere --infrastructure cloudstack)
            set -- "$bin" build --os "$OS" "${infra[@]}" "${inputs[@]}" --work-dir "$w" -o "$w/out" ;;
    esac
    "$TIME" -f '%e %U %S' -o "$w.time" "$@" > "$w.log" 2>&1 || { echo "build-timings: $label $row failed, see $w.log" >&2; exit 1; }
    read -r wall user sys < "$w.time"
    # The three slowest steps of the duration report ("  name   12.3s").
    local steps
    steps=$(awk '/^  [^ ]/ && $NF ~ /^[0-9.]+s$/ && $1 != "total" && $1 != "wall" {print $NF+0, $1}' "$w.log" | sort -rn | head -3 \
        | awk '{printf "%s%s %ss", (NR>1?", ":""), $2, $1}')
    echo "$wall $(awk -v u="$user" -v s="$sys" 'BEGIN {print u + s}') $steps" >> "$work/$label-$row.runs"
    if [[ $row == os-image && -n ${KEEP:-} ]]; then
        mv "$w/os.tgz" "$work/$label-os-image-$(wc -l < "$work/$label-$row.runs").tgz"
    fi
    if [[ $row == os-image && ! -d $work/$label-layers ]]; then
        mkdir -p "$work/$label-layers" && cp -a "$w/layers" "$work/$label-layers/"
    fi
    rm -rf "$w"
}

median() { sort -n | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }

labels=(new); [[ -n ${BASELINE:-} ]] && labels+=(baseline)
rows=()
for row in os-image openstack three; do
    [[ $row =~ $ONLY || $row == os-image ]] && rows+=("$row") # the OS image layers feed the others
done
for row in "${rows[@]}"; do
    for ((i = 0; i < RUNS; i++)); do
        for label in "${labels[@]}"; do
            bin=$STEMCELL; [[ $label == baseline ]] && bin=$BASELINE
            echo "build-timings: $row, $label, run $((i + 1)) of $RUNS" >&2
            run "$bin" "$label" "$row"
        done
    done
done

echo
echo "| what | wall (s, median of $RUNS) | CPU-s | slowest steps (last run) |${BASELINE:+ baseline wall (s) | ratio |}"
echo "|---|---|---|---|${BASELINE:+---|---|}"
for row in "${rows[@]}"; do
    f=$work/new-$row.runs
    wall=$(cut -d' ' -f1 "$f" | median)
    cpu=$(cut -d' ' -f2 "$f" | median)
    line="| $row | $wall | $cpu | $(tail -1 "$f" | cut -d' ' -f3-) |"
    if [[ -n ${BASELINE:-} ]]; then
        base=$(cut -d' ' -f1 "$work/baseline-$row.runs" | median)
        line+=" $base | $(awk -v b="$base" -v w="$wall" 'BEGIN {printf "%.2f", b / w}')× |"
    fi
    echo "$line"
done
rm -rf "$work"/*-layers # the logs and timings of each run stay in $work
