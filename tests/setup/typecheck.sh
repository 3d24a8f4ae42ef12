#!/usr/bin/env bash
# Type-check the installed package `fairgate` with mypy (`make lint` runs this after ruff).
#
# setuptools maps the repository's folders under one name (pyproject.toml, package-dir):
# client/ -> fairgate.client, guardrails/ -> fairgate.guardrails, models/ -> fairgate.models,
# service/ -> fairgate.service.
# The editable install resolves that with an import hook mypy cannot follow, so this script
# lays out the same package as symlinks in build/typecheck/fairgate/ and runs `mypy -p fairgate`
# there with the configuration in pyproject.toml ([tool.mypy]: strict for fairgate.guardrails).
# The links point at whole folders, so a new or renamed module needs no change here.
#
# Usage: tests/setup/typecheck.sh [extra mypy arguments]; exits with mypy's status.
# MYPY=/path/to/mypy overrides the venv's mypy.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
mypy="${MYPY:-$root/.venv/bin/mypy}"
out="$root/build/typecheck"
pkg="$out/fairgate"

case "$mypy" in
    /*) ;;
    */*) mypy="$PWD/$mypy" ;;  # relative to the caller's directory; the run below is elsewhere
esac
if ! command -v "$mypy" >/dev/null 2>&1; then
    echo "mypy not found at $mypy: run 'make install' (mypy is in the [test] extra)" >&2
    exit 2
fi

mkdir -p "$pkg"
# -n replaces an existing link instead of following it, so reruns (even concurrent ones) are safe.
ln -sfn "$root/fairgate/__init__.py" "$pkg/__init__.py"
ln -sfn "$root/fairgate/py.typed" "$pkg/py.typed"
ln -sfn "$root/client" "$pkg/client"
ln -sfn "$root/guardrails" "$pkg/guardrails"
ln -sfn "$root/models" "$pkg/models"
ln -sfn "$root/service" "$pkg/service"

cd "$out"
# From here ./fairgate is the package mypy checks, not the editable install's import hook.
exec "$mypy" --config-file "$root/pyproject.toml" --cache-dir "$out/.mypy_cache" -p fairgate "$@"
