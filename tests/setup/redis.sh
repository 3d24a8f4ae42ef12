#!/usr/bin/env bash
# Make `redis-server` (and `redis-cli`) available for the tests, installing Debian's
# `redis-server` package when missing. Prints the directory holding redis-server on
# stdout (the last line) and exits 0; exits non-zero with the reason on stderr when it
# cannot be installed (not root, no apt-get, no registry).
#
# It only installs: it never starts the Debian service (policy-rc.d refuses it in
# containers, and we do not enable it). The tests start their own redis-server on
# 127.0.0.1 and a free port, without persistence, and stop it afterwards.
set -euo pipefail

have() { command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; }

if have; then
    dirname "$(command -v redis-server)"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "redis-server not found and apt-get is not available: install Redis >= 6.2 by hand" >&2
    exit 2
fi
if [ "$(id -u)" != "0" ]; then
    echo "redis-server not found and not running as root: run 'sudo apt-get install -y redis-server'" >&2
    exit 3
fi

export DEBIAN_FRONTEND=noninteractive
# One installer at a time, even if several test processes ask together.
exec 9>/tmp/fairgate-apt-redis.lock
flock -w 600 9

if ! have; then
    # A fresh machine has no package lists yet (or a stale one): update once first.
    if ! apt-cache policy redis-server 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        apt-get update -q >&2
    fi
    if ! apt-get install -y -q --no-install-recommends redis-server >&2; then
        apt-get update -q >&2
        apt-get install -y -q --no-install-recommends redis-server >&2
    fi
fi

if ! have; then
    echo "installing the Debian package 'redis-server' did not provide redis-server and redis-cli" >&2
    exit 4
fi
dirname "$(command -v redis-server)"
