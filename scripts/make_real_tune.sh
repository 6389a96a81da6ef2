#!/usr/bin/env bash
# A tuning set cut from the real-speech development set's train recordings only:
#
#   scripts/make_real_tune.sh [OUT]      # default data/real_tune; needs data/real_dev (make_real_dev.sh)
#
# The validation split that training carves from train/ shares recordings with it, so it rewards
# memorising them; this set's test split holds other recordings (of the train split of
# data/real_dev), and none of data/real_dev's test recordings is in either split. Tune settings on
# its test split, then report on data/real_dev's. 640 train + 240 test clips, seed 1.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-data/real_tune}
DEV=data/real_dev
[[ -f $DEV/manifest.csv ]] || { echo "real_tune: $DEV/manifest.csv is missing: run scripts/make_real_dev.sh first" >&2; exit 1; }
if [[ -f $OUT/manifest.csv ]]; then echo "real_tune: $OUT already exists"; exit 0; fi
LINKS=$(mktemp -d)
trap 'rm -rf "$LINKS"' EXIT
.venv/bin/python scripts/real_dev_sources.py tune data/real_dev_sources "$DEV" "$LINKS"
.venv/bin/sepbench prepare --speech "$LINKS/speech" --noise "$LINKS/noise" --out "$OUT" \
  --snrs -5,0,5,10 --n-train 640 --n-test 240 --seconds 4 --sr 8000 --seed 1
.venv/bin/sepbench validate "$OUT"
