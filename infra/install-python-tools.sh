#!/usr/bin/env bash
# Python tools the tests and benchmarks use beside netgpt, in a virtualenv
# under $NETGPT_HOME/py (from PyPI, pinned):
#  - duckdb: reads the offload logs and datasets unchanged (interoperability
#    test) and runs the same dataset SQL (`netgpt bench datasets`);
#  - moto[server]: a real S3-compatible server on loopback for the archiver's
#    S3 test.
# Idempotent: does nothing when the pinned versions are installed.
set -euo pipefail
home="${NETGPT_HOME:-$HOME/.cache/netgpt}"
venv="$home/py"
pins=("duckdb==2.0.1" "moto[server]==5.2.6")
stamp="$venv/.installed-$(printf '%s ' "${pins[@]}" | sha256sum | cut -c1-16)"
[[ -f "$stamp" ]] && exit 0
python=$(command -v python3 || true)
[[ -n "$python" ]] || { echo "install-python-tools: python3 is needed (apt-get install python3 python3-venv)" >&2; exit 1; }
rm -rf "$venv"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
touch "$stamp"
echo "install-python-tools: ${pins[*]} in $venv" >&2
