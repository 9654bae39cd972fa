#!/usr/bin/env bash
# The whole pipeline end to end on embedded defaults: set-up, build, then
# `netgpt demo` (local broker, topics, stages, load, summary). Extra arguments
# go to `netgpt demo`, e.g. `bash infra/demo.sh --seconds 60`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/env.sh"
bash "$here/setup.sh"
cd "$here/.."
cargo build --release --locked -p netgpt
exec "$CARGO_TARGET_DIR/release/netgpt" demo "$@"
