#!/usr/bin/env bash
# `make demo`: `scorer demo` with a local broker (started and stopped here unless
# one already runs).
exec bash "$(dirname "${BASH_SOURCE[0]}")/with-kafka.sh" "${1:-scorer}" demo
