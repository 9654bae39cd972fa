#!/usr/bin/env bash
# Set-up, release build, then `netgpt ARGS...` (demo.sh and eval.sh run through this).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/env.sh"
bash "$here/setup.sh"
cd "$here/.."
cargo build --release --locked -p netgpt
exec "$CARGO_TARGET_DIR/release/netgpt" "$@"
