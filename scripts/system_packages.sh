#!/usr/bin/env bash
# Debian packages the project uses beyond Python: chromium + chromium-driver (the listening
# page's browser test), libjemalloc2 (run_all.sh preloads it: 3-4x faster CPU inference on
# long files), and slurm-wlm + munge (tests/test_slurm.py runs `run_all.sh --launcher slurm` on
# a real one-node SLURM it starts itself). Installs the missing ones when it can (root, or sudo
# without a password); otherwise stops with the one command to run.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
ls /usr/lib/*/libjemalloc.so.2 >/dev/null 2>&1 || missing+=(libjemalloc2)
# The daemons live in /usr/sbin, which a user's PATH often lacks.
has() { command -v "$1" >/dev/null || [[ -x /usr/sbin/$1 ]]; }
has slurmctld && has slurmd && has sbatch || missing+=(slurm-wlm)
has munged || missing+=(munge)
[[ ${#missing[@]} -eq 0 ]] && exit 0
if [[ $(id -u) -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "sepbench: missing system packages: ${missing[*]}; install them with:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "sepbench: missing system packages (${missing[*]}) and no apt-get here: install their equivalents" >&2
  exit 1
fi
echo "sepbench: installing system packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq
"${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
