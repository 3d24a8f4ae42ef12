#!/usr/bin/env bash
# Make `prometheus` and `promtool` available for the tests, installing Debian's
# `prometheus` package when they are missing. Prints the directory holding both
# binaries on stdout (the last line) and exits 0; exits non-zero with the reason on
# stderr when they cannot be installed (not root, no apt-get, no registry).
#
# It only installs: it never starts the Debian service (the package's postinst is
# refused by policy-rc.d in containers, and we do not enable it). The tests start
# their own Prometheus on 127.0.0.1 with a temporary config.
set -euo pipefail

have() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }

if have; then
    dirname "$(command -v promtool)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "prometheus/promtool not found and apt-get is not available: install Prometheus 2.x by hand" >&2
    exit 2
fi
if [ "$(id -u)" != "0" ]; then
    echo "prometheus/promtool not found and not running as root: run 'sudo apt-get install -y prometheus'" >&2
    exit 3
fi

export DEBIAN_FRONTEND=noninteractive
# One installer at a time, even if several test processes ask together.
exec 9>/tmp/fairgate-apt-prometheus.lock
flock -w 600 9

if ! have; then
    # A fresh machine has no package lists yet (or a stale one): update once first.
    if ! apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get update -q >&2
    fi
    # --no-install-recommends: the exporters and web assets it recommends are not needed.
    if ! apt-get install -y -q --no-install-recommends prometheus >&2; then
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends prometheus >&2
    fi
fi

if ! have; then
    echo "installing the Debian package 'prometheus' did not provide prometheus and promtool" >&2
    exit 4
fi
dirname "$(command -v promtool)"
