#!/usr/bin/env bash
# Set up everything mlperf_track needs on a fresh Debian/Ubuntu machine with Python 3.11:
# a virtual environment in .venv with the package and all extras, and PostgreSQL's server binaries
# (used by the multi-worker tuning tests). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'

if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  else
    echo "note: PostgreSQL server binaries not found and cannot be installed (not root); its tests will be skipped" >&2
  fi
fi
