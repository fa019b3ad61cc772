#!/usr/bin/env bash
# The main job: installs what is missing, builds vxswitch (release) and starts a lab of
# three sites in network namespaces, one VNI extended across them, VMs pinging each other.
# Extra arguments go to `vxswitch lab` (e.g. --check, --kernel-peer, --down).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
swift build -c release --product vxswitch 2>&1 | grep -Ev '^\[[0-9]+/[0-9]+\] ' | tail -5
exec .build/release/vxswitch lab "$@"
