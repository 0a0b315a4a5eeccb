#!/usr/bin/env bash
# The tests need promtool and prometheus (Debian's prometheus package): promtool
# lints the live /metrics and checks and unit-tests the alert rules, and a real
# Prometheus scrapes a worker to test every dashboard query. Installs them when
# missing (as root, or with passwordless sudo); otherwise says how.
set -euo pipefail
if command -v promtool >/dev/null && command -v prometheus >/dev/null; then
    exit 0
fi
if [ "$(id -u)" = 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "promtool and prometheus are needed by the tests: install Debian's prometheus package" >&2
    echo "  (sudo apt-get install prometheus), then run make test again." >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "no apt-get here: install Prometheus (promtool and prometheus on PATH) yourself" >&2
    exit 1
fi
echo "installing Debian's prometheus package (promtool, prometheus) for the tests..."
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get install -y -q --no-install-recommends prometheus >/dev/null ||
    { "${SUDO[@]}" apt-get update -q >/dev/null && "${SUDO[@]}" apt-get install -y -q --no-install-recommends prometheus >/dev/null; }
promtool --version | head -1
