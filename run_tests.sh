#!/usr/bin/env bash
# The test command: installs .venv when missing or stale, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh
exec .venv/bin/python -m pytest -q "$@"
