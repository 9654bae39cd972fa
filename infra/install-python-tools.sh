#!/usr/bin/env bash
# Python tools the tests and benchmarks use beside netgpt, in a virtualenv
# under $NETGPT_HOME/py (from PyPI, pinned):
#  - duckdb: reads the offload logs and datasets unchanged (interoperability
#    test) and runs the same dataset SQL (`netgpt bench datasets`);
#  - moto[server]: a real S3-compatible server on loopback for the archiver's
#    S3 test.
# Idempotent: does nothing when the pinned versions are installed and import.
set -euo pipefail
home="${NETGPT_HOME:-$HOME/.cache/netgpt}"
venv="$home/py"
pins=("duckdb==2.0.1" "moto[server]==5.2.6")
stamp=".installed-$(printf '%s ' "${pins[@]}" | sha256sum | cut -c1-16)"
# Installed and still working (the interpreter under a venv can change).
if [[ -f "$venv/$stamp" ]] && "$venv/bin/python" -c 'import duckdb, moto' 2>/dev/null; then
  exit 0
fi
python=$(command -v python3 || true)
[[ -n "$python" ]] || { echo "install-python-tools: python3 is needed (apt-get install python3 python3-venv)" >&2; exit 1; }
# Built in a folder of its own (a venv cannot move: its scripts name their
# interpreter's path) and switched to by the symlink only when complete, so a
# failed (say, offline) re-run leaves the working environment in place.
build="$venv-$(date +%s)-$$"
"$python" -m venv "$build"
"$build/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
touch "$build/$stamp"
[[ -L "$venv" ]] || rm -rf "$venv"
ln -sfn "$build" "$venv.link"
mv -T "$venv.link" "$venv"
# Earlier environments and failed builds.
for d in "$venv"-*; do
  if [[ "$d" != "$build" ]]; then rm -rf "$d"; fi
done
echo "install-python-tools: ${pins[*]} in $venv" >&2
