#!/usr/bin/env bash
# Instructions per frame of the in-memory switch, from callgrind:
#   Ir/frame = (Ir(rounds R) - Ir(rounds 0)) / (R x frames)
# for the encap input (access.pcap into vm1) and the decap input (underlay.pcap into
# eth1): 64-byte frames, FDB filled to 64k MACs. Rounds 0 loads, builds, fills and warms
# up exactly as rounds R does, so the difference is the measured loop alone.
#
# Also checks with memcheck that the measured loop does not allocate:
#   heap allocs(rounds 3) - heap allocs(rounds 0) must be 0.
#
# Two traffic sets: SOURCES x DESTINATIONS (16 x 16: 256 flows, which the per-worker
# flow cache holds, so frames take the cached fast path) and MANY_SOURCES x
# MANY_DESTINATIONS (251 x 256, coprime: 64k flows over the 10000 frames, so nearly every
# frame misses the flow cache and is looked up in the FDB). MANY_SOURCES=0 skips the
# second set.
#
# Environment: ROUNDS (default 10), FRAMES per file (10000), FDB_SIZE (65536),
# SOURCES/DESTINATIONS (16), MANY_SOURCES/MANY_DESTINATIONS (251/256), UNDERLAY (ipv4),
# BENCH (binary; built when unset), MEMORY_FLAGS (more `Bench memory` flags, e.g.
# --underlay-gso: the underlay ring joins datagrams into UDP GSO frames, as live),
# SKIP_REFERENCE=1 (no C yardstick column; it is left out anyway with MEMORY_FLAGS,
# which it does not implement).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-10}
FRAMES=${FRAMES:-10000}
FDB_SIZE=${FDB_SIZE:-65536}
SOURCES=${SOURCES:-16}
DESTINATIONS=${DESTINATIONS:-16}
MANY_SOURCES=${MANY_SOURCES:-251}
MANY_DESTINATIONS=${MANY_DESTINATIONS:-256}
UNDERLAY=${UNDERLAY:-ipv4}
MEMORY_FLAGS=${MEMORY_FLAGS:-}
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install -y valgrind)" >&2; exit 1; }
if [[ -z "${BENCH:-}" ]]; then
  swift build -c release --product Bench >&2
  BENCH=.build/release/Bench
fi

dir=$(mktemp -d /tmp/vxb-callgrind.XXXXXX)
trap 'rm -rf "$dir"' EXIT
# Valgrind 3.19 cannot read the DWARF that Swift 6 emits ("Possibly corrupted debuginfo
# file"): run a copy without debug info (symbols stay, so callgrind_annotate still works).
cp "$BENCH" "$dir/Bench"
strip --strip-debug "$dir/Bench"
BENCH="$dir/Bench"
"$BENCH" gen --out "$dir" --size 64 --frames "$FRAMES" --sources "$SOURCES" \
  --destinations "$DESTINATIONS" --underlay "$UNDERLAY" >/dev/null
if [[ "$MANY_SOURCES" != 0 ]]; then
  mkdir -p "$dir/many"
  "$BENCH" gen --out "$dir/many" --size 64 --frames "$FRAMES" --sources "$MANY_SOURCES" \
    --destinations "$MANY_DESTINATIONS" --underlay "$UNDERLAY" >/dev/null
fi

# Ir of one run: the "summary:" (or "totals:") line of the callgrind output file.
# $4: the Bench command (memory, or reference for the C yardstick).
ir() {
  local config=$1 input=$2 rounds=$3 command=${4:-memory} out="$dir/callgrind.$RANDOM" flags=$MEMORY_FLAGS
  [[ "$command" == reference ]] && flags=
  valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$BENCH" "$command" --config "$config" --in "$input" --rounds "$rounds" --fdb-size "$FDB_SIZE" $flags \
    >"$out.stdout" 2>"$out.log" || { cat "$out.stdout" "$out.log" >&2; return 1; }
  awk '/^(summary|totals):/ { print $2; exit }' "$out"
}

# Ir/frame of the measured rounds alone.
per_frame() {
  local config=$1 input=$2 command=${3:-memory} before after
  before=$(ir "$config" "$input" 0 "$command")
  after=$(ir "$config" "$input" "$ROUNDS" "$command")
  awk -v a="$before" -v b="$after" -v r="$ROUNDS" -v f="$FRAMES" 'BEGIN { printf "%.1f", (b - a) / (r * f) }'
}

allocs() {
  local input=$1 rounds=$2
  valgrind --tool=memcheck "$BENCH" memory --config "$dir/site.toml" --in "$input" --rounds "$rounds" \
    --fdb-size 1024 2>&1 >/dev/null | sed -n 's/.*total heap usage: \([0-9,]*\) allocs.*/\1/p' | tr -d ,
}

# The C yardstick (`Bench reference`, Sources/CReference) does the same work as the
# pipeline's fast path that bypasses the flow cache: its column is that work's cost in
# C, the last column the pipeline's count over it.
reference=0
[[ -z "$MEMORY_FLAGS" && "${SKIP_REFERENCE:-0}" != 1 ]] && reference=1
printf '%-6s %-10s %-28s %8s %7s %10s %12s %9s\n' direction traffic input frames rounds Ir/frame "C reference" "vs C"
sets=("$dir ${SOURCES}x${DESTINATIONS}")
[[ "$MANY_SOURCES" != 0 ]] && sets+=("$dir/many ${MANY_SOURCES}x${MANY_DESTINATIONS}")
for set in "${sets[@]}"; do
  read -r base flows <<<"$set"
  for spec in "encap vm1=$base/access.pcap" "decap eth1=$base/underlay.pcap"; do
    read -r direction input <<<"$spec"
    per=$(per_frame "$base/site.toml" "$input")
    yardstick=- ratio=-
    if [[ $reference == 1 ]]; then
      yardstick=$(per_frame "$base/site.toml" "$input" reference)
      ratio=$(awk -v a="$per" -v c="$yardstick" 'BEGIN { printf "%.2fx", a / c }')
    fi
    printf '%-6s %-10s %-28s %8d %7d %10s %12s %9s\n' "$direction" "$flows" \
      "${input%%=*}=$(basename "${input#*=}")" "$FRAMES" "$ROUNDS" "$per" "$yardstick" "$ratio"
  done
done
echo "(64-byte frames, $UNDERLAY underlay, FDB $FDB_SIZE entries; traffic = sources x destinations; the first fits the flow cache, the second misses it)"

if [[ "${SKIP_ALLOC_CHECK:-0}" != 1 ]]; then
  for spec in "encap vm1=$dir/access.pcap" "decap eth1=$dir/underlay.pcap"; do
    read -r direction input <<<"$spec"
    a0=$(allocs "$input" 0)
    a3=$(allocs "$input" 3)
    echo "memcheck $direction: heap allocations rounds 0: $a0, rounds 3: $a3, in the measured loop: $((a3 - a0))"
  done
fi
