#!/usr/bin/env bash
# The prepared GPU check (perf/gpu_check.py; docs/clusters.md, section "GPU check"):
#
#   scripts/gpu_check.sh --build                     here: .gpu_check/ (wheels + recordings) to carry
#   scripts/gpu_check.sh --out DIR [--minutes 1.0]   on a machine with CUDA: install, prepare, train,
#                                                    evaluate; DIR/report.json + report.md, in < 9 min
#   scripts/gpu_check.sh --dry-run --out DIR         here, on the CPU: the same code path in seconds
#
# Python: the GPU machine's own python3 (it holds the CUDA torch the check runs on) for a real
# run, the checkout's .venv for --dry-run and --build; $PYTHON overrides both.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n ${PYTHON:-} ]]; then
  PY=$PYTHON
elif [[ " $* " == *" --dry-run "* || " $* " == *" --build "* ]]; then
  PY=.venv/bin/python
  [[ -x $PY ]] || { echo "gpu_check: error: $PY not found; run scripts/install.sh first" >&2; exit 2; }
else
  PY=python3
fi
export PYTHONUNBUFFERED=1
exec "$PY" perf/gpu_check.py "$@"
