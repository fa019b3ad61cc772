#!/usr/bin/env bash
# The whole test suite, as CI runs it (as root on a fresh Debian machine):
# one release build reused by every test, a short run of every fuzz target, then the
# concurrency tests under ThreadSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "== release build (products and tests, testable), then every test"
mkdir -p .build
swift build -c release --build-tests -Xswiftc -enable-testing 2>&1 | grep -Ev '^\[[0-9]+/[0-9]+\] ' | tail -20
swift test -c release -Xswiftc -enable-testing --skip-build 2>&1 | tee .build/test-output.txt \
  | grep -Ev '^Test Case .* (started|passed)'
status=${PIPESTATUS[0]}
[[ $status -eq 0 ]] || exit "$status"

# Each fuzz target for a short run (scripts/fuzz.sh; the long runs are in README,
# "Fuzzing"). Built in .build: only this package's modules are compiled again
# (instrumented), the dependencies of the release build above are reused.
echo "== fuzz targets, ${VXSWITCH_FUZZ_SECONDS:=15} s each"
for target in pipeline bgp config api peering; do
  VXSWITCH_FUZZ_SCRATCH=.build scripts/fuzz.sh "$target" "$VXSWITCH_FUZZ_SECONDS"
done

echo "== FDB, snapshot, reload and pipeline-worker concurrency tests under ThreadSanitizer"
swift build --sanitize=thread --build-tests --scratch-path .build-tsan >/dev/null
swift test --sanitize=thread --skip-build --scratch-path .build-tsan \
  --filter 'ForwardingTableTests/testConcurrentReadersNeverSeeTornEntries|SnapshotCellTests|ReloadIndexReuseTests|PipelineWorkerConcurrencyTests|LiveSwitchTests/testPingWithTwoFanoutWorkers' 2>&1 | grep -E 'Executed|ThreadSanitizer|error' | tail -5

# One closing line for the whole run, from the main run's XCTest summary.
# The last XCTest summary (the whole run): "Executed N tests, with [K tests skipped and] M failures".
summary=$(grep -E "^\s+Executed [0-9]+ tests?, with " .build/test-output.txt | tail -1)
total=$(sed -E 's/.*Executed ([0-9]+) tests?.*/\1/' <<<"$summary")
failed=$(grep -oE "[0-9]+ failures?" <<<"$summary" | head -1 | cut -d' ' -f1)
skipped=$(grep -cE "Test Case .* skipped" .build/test-output.txt || true)
echo "tests: $((total - failed - skipped)) passed, $failed failed, $skipped skipped"
