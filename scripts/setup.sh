#!/usr/bin/env bash
# Installs what vxswitch needs on a fresh Debian machine (run as root), only what is
# missing: the C libraries it binds, the peers and tools its tests and lab use.
set -euo pipefail

packages=(libpcap-dev libnl-3-dev libnl-route-3-dev libxdp-dev libbpf-dev iproute2 iputils-ping ethtool tcpdump tshark gobgpd frr valgrind bridge-utils prometheus curl)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v swift >/dev/null 2>&1; then
  for candidate in /opt/swift/usr/bin /usr/share/swift/usr/bin; do
    [[ -x $candidate/swift ]] && export PATH="$candidate:$PATH"
  done
fi
command -v swift >/dev/null 2>&1 || { echo "setup: no Swift toolchain on PATH (Swift 6.x is required)" >&2; exit 1; }
# The fuzz step of scripts/test.sh links libFuzzer and AddressSanitizer, which swift.org's
# Linux toolchains ship (nothing to install); say so clearly if this one does not.
toolchain_lib="$(dirname "$(readlink -f "$(command -v swift)")")/../lib/swift/clang/lib/linux"
[[ -e $toolchain_lib/libclang_rt.fuzzer-x86_64.a || -e $toolchain_lib/libclang_rt.fuzzer-aarch64.a ]] \
  || echo "setup: this Swift toolchain has no libFuzzer ($toolchain_lib): scripts/fuzz.sh will not build" >&2
