#!/usr/bin/env bash
# The whole pipeline end to end on embedded defaults: set-up, build, then
# `netgpt demo` (local broker, topics, stages, load, summary). Extra arguments
# go to `netgpt demo`, e.g. `bash infra/demo.sh --seconds 60`.
exec bash "$(dirname "$0")/release.sh" demo "$@"
