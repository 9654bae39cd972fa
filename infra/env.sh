# Sourced by the infra scripts: one build cache outside the clone, shared by the
# demo, the tests and CI (a speed-up only: a cold build works the same).
export NETGPT_HOME="${NETGPT_HOME:-$HOME/.cache/netgpt}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$NETGPT_HOME/target}"
# candle's kernels are faster on one thread for netgpt's small models (see
# `single_threaded_kernels_by_default` in services/netgpt/src/main.rs); the
# binary defaults to it, this does the same for test binaries.
export RAYON_NUM_THREADS="${RAYON_NUM_THREADS:-1}"
