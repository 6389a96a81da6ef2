#!/usr/bin/env bash
# The real-speech development set, built from Debian packages of real recordings
# (README.md, "The real-speech development set"):
#
#   scripts/make_real_dev.sh [OUT] [--force] [more `sepbench prepare` options, e.g. --sr 16000]
#
# 1. installs the packages (apt-get; skipped when installed),
# 2. joins their short prompts and sound effects into data/real_dev_sources/{speech,noise}/
#    (scripts/real_dev_sources.py and scripts/real_dev/; rebuilt only when the packages or that code change),
# 3. `sepbench prepare`s OUT (default data/real_dev): 800 train + 200 test clips of 4 s at 8 kHz,
#    SNRs -5/0/5/10 dB, seed 0; options given here are passed on and win over these,
# 4. validates it and prints the source files per kind and per split.
# An existing OUT is kept (a second run takes seconds) unless --force, which rebuilds everything.
set -euo pipefail
cd "$(dirname "$0")/.."

SOURCES=data/real_dev_sources
OUT=data/real_dev
FORCE=()
EXTRA=()
if [[ $# -gt 0 && $1 != -* ]]; then OUT=$1; shift; fi
for arg in "$@"; do
  case $arg in
    --force) FORCE=(--force) ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) EXTRA+=("$arg") ;;
  esac
done
PY=.venv/bin/python
HELPER=scripts/real_dev_sources.py

if [[ -f $OUT/manifest.csv && ${#FORCE[@]} -eq 0 ]]; then
  echo "real_dev: $OUT already exists ($(ls "$OUT/train" | wc -l) train / $(ls "$OUT/test" | wc -l) test clips); --force rebuilds it"
  [[ -f $SOURCES/SOURCES.csv && -x $PY ]] && "$PY" "$HELPER" summary "$SOURCES" --data "$OUT"
  exit 0
fi

scripts/install.sh

# 1. Packages: 7 voice talents' telephone prompts (8 kHz studio recordings); recorded sound
#    effects, city ambience and music; KTuberling's recorded words for babble; sox for raw GSM.
PACKAGES=(
  asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav
  asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav asterisk-prompt-it-menardi-wav
  asterisk-prompt-fr-armelle asterisk-prompt-es-co
  openttd-opensfx lincity-ng-data asterisk-moh-opsound-wav xmoto-data ktuberling-data sox
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q ' installed$' || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}")
  if [[ $(id -u) -eq 0 ]]; then SUDO=()
  elif sudo -n true 2>/dev/null; then SUDO=(sudo)
  else
    echo "real_dev: needs packages that are not installed; run this once, then run $0 again:" >&2
    echo "  sudo ${install[*]}" >&2
    exit 1
  fi
  echo "real_dev: installing ${missing[*]}"
  "${SUDO[@]}" "${install[@]}" || { "${SUDO[@]}" apt-get update -q && "${SUDO[@]}" "${install[@]}"; }
fi

# 2. Source folders.
if [[ ${#FORCE[@]} -eq 0 && -f $SOURCES/.stamp && "$(cat "$SOURCES/.stamp")" == "$("$PY" "$HELPER" stamp)" ]]; then
  echo "real_dev: $SOURCES is up to date"
else
  echo "real_dev: building $SOURCES"
  "$PY" "$HELPER" build "$SOURCES"
fi

# 3. The data set (prepare writes to a temporary folder and renames it: never half a data set).
.venv/bin/sepbench prepare --speech "$SOURCES/speech" --noise "$SOURCES/noise" --out "$OUT" \
  --snrs -5,0,5,10 --n-train 800 --n-test 200 --seconds 4 --sr 8000 --seed 0 "${FORCE[@]}" "${EXTRA[@]}"

# 4. Check it, and say what went in.
.venv/bin/sepbench validate "$OUT"
echo "real_dev: source files per kind (files used in train/test: disjoint by construction)"
"$PY" "$HELPER" summary "$SOURCES" --data "$OUT"
echo "real_dev: done in ${SECONDS} s"
