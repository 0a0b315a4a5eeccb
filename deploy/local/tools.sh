#!/usr/bin/env bash
# Tools the tests run for real, from Debian's packages, installed when missing
# (as root, or with passwordless sudo); otherwise says how:
#   promtool, prometheus (prometheus)  lint /metrics, unit-test the alert rules,
#                                      scrape a worker for every dashboard query
#   kcat (kcat)                        a producer that is not ours: compressed
#                                      input as librdkafka clients send it
#   chromium (chromium)                headless screenshots of the pages
set -euo pipefail
declare -A PACKAGE=([promtool]=prometheus [prometheus]=prometheus [kcat]=kcat [chromium]=chromium)
missing=()
for tool in "${!PACKAGE[@]}"; do
    command -v "$tool" >/dev/null || missing+=("${PACKAGE[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" = 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "the tests need Debian's packages: $packages" >&2
    echo "  (sudo apt-get install $packages), then run make test again." >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "no apt-get here: install $packages yourself (the tests run them)" >&2
    exit 1
fi
echo "installing Debian's packages for the tests: $packages..."
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
"${SUDO[@]}" apt-get install -y -q --no-install-recommends $packages >/dev/null ||
    { "${SUDO[@]}" apt-get update -q >/dev/null &&
      "${SUDO[@]}" apt-get install -y -q --no-install-recommends $packages >/dev/null; }
