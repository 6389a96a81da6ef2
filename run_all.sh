#!/usr/bin/env bash
# One command for everything: install (if needed), data, validate, train, evaluate, leaderboard.
# Options: --data DIR --profile smoke|cpu|gpu --recipes a,b --force (see --help).
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh
# jemalloc with decay disabled makes long CPU inference several times faster (default ConvTasNet, 10 s at 16 kHz: 6.6-7.2 s -> 1.5-1.9 s);
# used only when the system has it (Debian package libjemalloc2).
JEMALLOC=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
if [[ -z "${LD_PRELOAD:-}" && -f $JEMALLOC ]]; then
  export LD_PRELOAD=$JEMALLOC MALLOC_CONF=${MALLOC_CONF:-dirty_decay_ms:-1,muzzy_decay_ms:-1}
fi
exec .venv/bin/python -m benchmark.run_all "$@"
