#!/usr/bin/env bash
# Every test: set-up (broker included), then the workspace's unit, contract and
# end-to-end tests against a real local broker (each test starts its own).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/env.sh"
bash "$here/setup.sh"
cd "$here/.."
cargo test --workspace --locked "$@"
