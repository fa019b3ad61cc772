#!/usr/bin/env bash
# The whole test suite, as CI runs it (as root on a fresh Debian machine):
# one release build reused by every test, with this package's modules (and so the
# daemons, Bench and the tests themselves) under AddressSanitizer and instrumented for
# libFuzzer, so that the same build makes the fuzz binary; every test but the soak, in two
# processes side by side; the soak test while every fuzz target runs briefly; then the
# concurrency tests under ThreadSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

# VXSWITCH_ASAN=1 (Package.swift) instruments only this package's modules: the
# dependencies stay those of a plain release build. VXSWITCH_FUZZ=1 adds libFuzzer's
# coverage instrumentation to the modules the fuzz targets reach, and the fuzz binary;
# the daemons, Bench and the tests link the sanitizer only, whose runtime answers the
# coverage hooks with empty functions (one build instead of two).
# Leak detection is off: LeakSanitizer cannot see the references Swift keeps in enum spare
# bits and reference-count words, and each such false report ends its process with exit
# code 23 before its output is written (README, "Tests"); growth under churn is what the
# soak test measures.
# VXSWITCH_TESTABLE=1 compiles this package's modules (and not its dependencies) for
# @testable imports, and there is no debug information (sanitizer reports and crashes name
# functions, not lines): the two took the build from 31.5 to 27.6 min of CPU time, 17.3 to
# 15.1 min on two cores (README, "Tests").
export VXSWITCH_ASAN=1 VXSWITCH_FUZZ=1 VXSWITCH_TESTABLE=1
build_options=(-c release -debug-info-format none)
echo "== release build under AddressSanitizer (products, tests and the fuzz binary, testable), then every test"
mkdir -p .build
swift build "${build_options[@]}" --build-tests 2>&1 \
  | grep -Ev '^\[[0-9]+/[0-9]+\] |Cannot export local symbol' | tail -20
echo "   (built at $((SECONDS / 60)) min $((SECONDS % 60)) s)"

# The ThreadSanitizer build (a debug build of its own, from scratch, of the dataplane and
# its tests alone: no package dependency) runs meanwhile, at the lowest priority: the tests
# wait on the network and on timers much of the time, and take the CPU back whenever they
# want it. Its own session, so that an early exit ends it whole.
VXSWITCH_ASAN=0 VXSWITCH_FUZZ=0 VXSWITCH_DATAPLANE_ONLY=1 \
  setsid nice -n 19 swift build --sanitize=thread --build-tests --scratch-path .build-tsan \
  >.build/tsan-build.log 2>&1 &
tsan_build=$!
trap 'kill -- -$tsan_build 2>/dev/null || true' EXIT
# Every process of the run (the test binary, the daemons and tools the tests start)
# writes a sanitizer report to its own file in .build/asan: a daemon's report would
# otherwise reach us only as far as the test quotes its log, often just the tail.
rm -rf .build/asan && mkdir -p .build/asan
sanitizer_options=${ASAN_OPTIONS:-detect_leaks=0}:log_path=$PWD/.build/asan/report
run_tests() {
  ASAN_OPTIONS=$sanitizer_options swift test "${build_options[@]}" --skip-build "$@"
}
# Every test but the soak (it runs after them, next to the fuzz runs, below), in two
# processes side by side: the lab, daemon and site-channel tests, which wait on daemons,
# peers and timers much of the time, and the others, which mostly compute (3.5 and 3
# minutes of the 7 they took one after the other). Namespaces, lab state directories and
# ports are named or chosen per process, so the two never collide. The waiting ones run
# from the test binary itself, given their names: `swift test` holds SwiftPM's build
# database for its whole run, even with --skip-build, and a second one beside it finds no
# tests.
waiting='^(IntegrationTests|PeeringTests)\.'
tests_binary=.build/release/vxswitchPackageTests.xctest
waiting_tests=$(ASAN_OPTIONS=$sanitizer_options "$tests_binary" --list-tests \
  | grep -E "$waiting" | grep -v '^IntegrationTests\.SoakTests/' | paste -sd,)
# Given no name, the binary would run every test.
[[ -n $waiting_tests ]] || { echo "no lab, daemon or site-channel test listed by $tests_binary" >&2; exit 1; }
ASAN_OPTIONS=$sanitizer_options "$tests_binary" "$waiting_tests" >.build/waiting-output.txt 2>&1 &
waiting_run=$!
trap 'kill -- -$tsan_build $waiting_run 2>/dev/null || true' EXIT
set +e  # a failing test must not end the script before the reports are printed
run_tests --skip "$waiting" 2>&1 | tee .build/test-output.txt | grep -Ev '^Test Case .* (started|passed)'
status=${PIPESTATUS[0]}
set -e
wait "$waiting_run" || status=$?
grep -Ev '^Test Case .* (started|passed)' .build/waiting-output.txt
sanitizer_reports() {
  for report in .build/asan/report.*; do
    [[ -e $report && $report != *.shown && ! -e $report.shown ]] || continue
    echo "== sanitizer report $report"
    head -60 "$report"
    touch "$report.shown"
    if grep -q 'ERROR: AddressSanitizer' "$report"; then status=1; fi
  done
}
sanitizer_reports
echo "   (tests done at $((SECONDS / 60)) min $((SECONDS % 60)) s)"
[[ $status -eq 0 ]] || exit "$status"

# The 60-second soak test (two lab sites at a fixed rate, MAC and route churn: it waits
# most of the time) and meanwhile each fuzz target for a short run (scripts/fuzz.sh; the
# long runs are in README, "Fuzzing") with the fuzz binary of the build above, two at a
# time at the lowest priority, so that the soak's daemons get the CPU whenever they want it.
echo "== the soak test; meanwhile the fuzz targets, ${VXSWITCH_FUZZ_SECONDS:=20} s each, two at a time"
run_tests --filter SoakTests >.build/soak-output.txt 2>&1 &
soak=$!
fuzz_targets=(pipeline bgp config api peering)
fuzz_status=0
for ((first = 0; first < ${#fuzz_targets[@]}; first += 2)); do
  runs=()
  for target in "${fuzz_targets[@]:first:2}"; do
    VXSWITCH_FUZZ_SCRATCH=.build VXSWITCH_FUZZ_BINARY=.build/release/vxswitch-fuzz \
      nice -n 19 scripts/fuzz.sh "$target" "$VXSWITCH_FUZZ_SECONDS" >".build/fuzz-$target.out" 2>&1 &
    runs+=($!)
  done
  for run in "${runs[@]}"; do wait "$run" || fuzz_status=1; done
done
for target in "${fuzz_targets[@]}"; do cat ".build/fuzz-$target.out"; done
echo "   (fuzz runs done at $((SECONDS / 60)) min $((SECONDS % 60)) s)"
wait "$soak" || status=$?
grep -Ev '^Test Case .* (started|passed)' .build/soak-output.txt
sanitizer_reports
echo "   (soak test done at $((SECONDS / 60)) min $((SECONDS % 60)) s)"
[[ $status -eq 0 ]] || exit "$status"
[[ $fuzz_status -eq 0 ]] || exit 1

echo "== FDB, snapshot, reload and pipeline-worker concurrency tests under ThreadSanitizer"
echo "   (waiting for the ThreadSanitizer build)"
if ! wait "$tsan_build"; then
  grep -Ev '^\[[0-9]+/[0-9]+\] ' .build/tsan-build.log | tail -30
  echo "the ThreadSanitizer build failed" >&2
  exit 1
fi
trap - EXIT
VXSWITCH_ASAN=0 VXSWITCH_FUZZ=0 VXSWITCH_DATAPLANE_ONLY=1 \
  swift test --sanitize=thread --skip-build --scratch-path .build-tsan \
  --filter 'ForwardingTableTests/testConcurrentReadersNeverSeeTornEntries|SnapshotCellTests|ReloadIndexReuseTests|PipelineWorkerConcurrencyTests|LiveSwitchTests/testPingWithTwoFanoutWorkers' 2>&1 | grep -E 'Executed|ThreadSanitizer|error' | tail -5

# One closing line for the whole run, from the XCTest summaries of the three runs above:
# "Executed N tests, with [K tests skipped and] M failures".
total=0 failed=0 skipped=0
for output in .build/test-output.txt .build/waiting-output.txt .build/soak-output.txt; do
  summary=$(grep -E "^\s+Executed [0-9]+ tests?, with " "$output" | tail -1)
  total=$((total + $(sed -E 's/.*Executed ([0-9]+) tests?.*/\1/' <<<"$summary")))
  failed=$((failed + $(grep -oE "[0-9]+ failures?" <<<"$summary" | head -1 | cut -d' ' -f1)))
  skipped=$((skipped + $(grep -cE "Test Case .* skipped" "$output" || true)))
done
echo "tests: $((total - failed - skipped)) passed, $failed failed, $skipped skipped ($((SECONDS / 60)) min $((SECONDS % 60)) s in all)"
