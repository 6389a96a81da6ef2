#!/usr/bin/env bash
# The test command: installs the system packages the tests need and .venv when missing or
# stale, then runs the whole suite and the linter.
set -euo pipefail
cd "$(dirname "$0")"
scripts/system_packages.sh
scripts/install.sh
.venv/bin/python -m pytest -q "$@"
.venv/bin/ruff check --no-cache .
