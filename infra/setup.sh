#!/usr/bin/env bash
# One-time set-up on a fresh Debian/Ubuntu machine, safe to re-run:
#  - the C toolchain pieces rdkafka's bundled librdkafka build needs
#    (cmake; OpenSSL and curl headers for TLS/SASL/OIDC support),
#  - the local Kafka-protocol broker (infra/install-broker.sh),
#  - DuckDB and an S3 server for tests and benchmarks (infra/install-python-tools.sh).
# Rust itself (cargo) must already be installed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v make >/dev/null 2>&1 || need+=(make)
for pkg in libssl-dev libcurl4-openssl-dev zlib1g-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}" >&2
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
bash "$here/install-broker.sh"
bash "$here/install-python-tools.sh"
