#!/usr/bin/env bash
# The test command: installs the system packages the tests need and .venv when missing or
# stale, then runs the whole suite, the linter and a strict build of the docs site.
set -euo pipefail
cd "$(dirname "$0")"
scripts/system_packages.sh
scripts/install.sh
.venv/bin/python -m pytest -q "$@"
.venv/bin/ruff check --no-cache .
# --strict turns broken links and pages missing from the nav into failures; the site goes to a
# temporary folder so the tree stays clean.
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
# NO_MKDOCS_2_WARNING: silences a vendor notice that mkdocs-material prints on every build.
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$site"
