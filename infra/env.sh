# Sourced by the infra scripts: one build cache outside the clone, shared by the
# demo, the tests and CI (a speed-up only: a cold build works the same).
export NETGPT_HOME="${NETGPT_HOME:-$HOME/.cache/netgpt}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$NETGPT_HOME/target}"
