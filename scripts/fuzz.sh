#!/usr/bin/env bash
# scripts/fuzz.sh TARGET SECONDS [libFuzzer options...]
#
# Builds the libFuzzer binary (this package's modules instrumented for libFuzzer and
# AddressSanitizer, see Package.swift) and runs one target for SECONDS on its seed corpus
# (Tests/Fixtures/fuzz/TARGET, left as it is; what the run finds goes to a working corpus
# in the scratch path). Prints the executions; exits non-zero on a crash, a failed
# invariant or a timeout, keeping the input that caused it in fuzz-artifacts/.
#
# TARGET: pipeline, bgp, config, api, peering. The build reuses the release build's
# dependencies when it shares its scratch path (VXSWITCH_FUZZ_SCRATCH, .build-fuzz by
# default): scripts/test.sh points it at .build. VXSWITCH_FUZZ_BINARY=PATH runs a binary built
# before (a copy kept for long runs while the scratch path is rebuilt) without building.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(pipeline bgp config api peering)
target=${1:-}
seconds=${2:-}
if [[ -z $target || -z $seconds || ! " ${targets[*]} " == *" $target "* ]]; then
  echo "usage: scripts/fuzz.sh {${targets[*]// /|}} SECONDS [libFuzzer options...]" >&2
  exit 2
fi
shift 2

scratch=${VXSWITCH_FUZZ_SCRATCH:-.build-fuzz}
# Same configuration and flags as the release test build, so that the dependencies
# compiled for it are reused; -enable-testing for the targets' @testable imports.
mkdir -p "$scratch"
if [[ -n ${VXSWITCH_FUZZ_BINARY:-} ]]; then
  binary=$VXSWITCH_FUZZ_BINARY
elif ! VXSWITCH_FUZZ=1 swift build -c release -Xswiftc -enable-testing --product vxswitch-fuzz \
  --scratch-path "$scratch" >"$scratch/fuzz-build.log" 2>&1; then
  # The linker's warnings about AddressSanitizer's local symbols are noise.
  grep -Ev '^\[[0-9]+/[0-9]+\] |Cannot export local symbol' "$scratch/fuzz-build.log" | tail -30 >&2
  echo "fuzz: the build failed (libFuzzer ships with the Swift toolchain: is it Swift 6 on Linux?)" >&2
  exit 1
else
  binary="$scratch/release/vxswitch-fuzz"
fi

# Largest inputs worth trying: a jumbo frame, an oversize BGP message, a large file.
declare -A max_len=([pipeline]=9300 [bgp]=4300 [config]=8192 [api]=4096 [peering]=4096)
corpus="$scratch/fuzz-corpus/$target"
artifacts=fuzz-artifacts
mkdir -p "$corpus" "$artifacts"
log="$scratch/fuzz-$target.log"
echo "== fuzz $target for ${seconds}s"
status=0
started=$SECONDS
# Leak detection off: the targets keep a switch, a speaker or two sites across inputs on
# purpose. -timeout: one input taking 10 s is a hang.
VXSWITCH_FUZZ_TARGET=$target ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} "$binary" \
  -max_total_time="$seconds" -max_len="${max_len[$target]}" -timeout=10 -detect_leaks=0 \
  -print_final_stats=1 -artifact_prefix="$artifacts/$target-" "$@" \
  "$corpus" "Tests/Fixtures/fuzz/$target" >"$log" 2>&1 || status=$?

# Without coverage counters libFuzzer still runs, blindly: a build that lost the
# instrumentation (one -sanitize= option overriding another) must not pass for a fuzz run.
if ((status == 0)) && ! grep -qE 'Loaded [0-9]+ modules +\([1-9][0-9]* inline 8-bit counters\)' "$log"; then
  echo "fuzz $target: $binary has no coverage instrumentation (no inline 8-bit counters loaded)" >&2
  exit 1
fi
executions=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
rate=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || true)
if ((status != 0)); then
  grep -E 'ERROR|fuzz invariant|Fatal error|SUMMARY|Test unit written|crash-|timeout-|leak-' "$log" | head -20 >&2
  echo "fuzz $target: FAILED after ${executions:-?} executions (exit $status); input kept in $artifacts/, log $log" >&2
  exit "$status"
fi
echo "fuzz $target: ${executions:-?} executions in $((SECONDS - started)) s (${rate:-?} exec/s), no crash; corpus $(ls "$corpus" | wc -l) inputs"
