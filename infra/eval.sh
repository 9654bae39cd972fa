#!/usr/bin/env bash
# Every evaluation experiment, then the results document: set-up, release
# build, then `netgpt eval all` (writes docs/results.md and docs/results/).
# Extra arguments go to `netgpt eval all`, e.g. `bash infra/eval.sh --seeds 1,2,3,4`.
exec bash "$(dirname "$0")/release.sh" eval all "$@"
