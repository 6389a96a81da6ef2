"""Source folders of real recordings for `sepbench prepare`, built from installed Debian packages.

    python scripts/real_dev_sources.py build OUT [--seed 0]   # OUT/speech/<speaker>/, OUT/noise/<kind>/
    python scripts/real_dev_sources.py summary OUT [--data DATA]

Called by scripts/make_real_dev.sh, which installs the packages first. Every file's pieces are
read from the package's own file list (`dpkg-query -L`), so only packaged recordings go in.

Speech: the studio prompts of 7 voice talents (asterisk-core-sounds-*-wav, asterisk-prompt-*).
Prompts are 0.3-6 s; `sepbench prepare` skips files shorter than a clip, so each speaker's prompts
are trimmed of leading/trailing silence and joined, in a seeded random order with 0.2-0.5 s pauses,
into 20-40 s files. One file holds one speaker, and each prompt goes into exactly one file, so
prepare's split by file keeps train and test recordings disjoint (speakers are shared).

Noise, one folder per kind:
  machines, vehicles, nature, city: recorded sound effects of OpenSFX (openttd-opensfx, edited
      freesound.org / pdsounds.org recordings; the few made-from-scratch or cartoon "Toyland" ones
      are left out) and LinCity-NG (lincity-ng-data). Pieces cut from one recording (same OpenSFX
      original, same LinCity name) stay in one file; files of 8-14 s, so that each kind has
      a number of files near those of babble and music (prepare draws noise files uniformly).
  music: whole tracks, one file each (asterisk-moh-opsound-wav, and the songs of lincity-ng-data
      and xmoto-data).
  babble: 3-6 voices talking at once, 15-25 s; the voices are KTuberling's recorded words
      (ktuberling-data, ~20 languages, one recording set each), never the target speakers, and
      each word is used once.
Files joining pieces of different sample rates are written at 16 kHz, all others at their
native rate; prepare resamples to the data set's rate. FLAC, mono, 16 bit. SOURCES.csv lists
the pieces of every file. Deterministic from --seed.

The work is in scripts/real_dev/, one module per job: catalogue (packages, what is taken from
each, the stamp), sound (reading, trimming, writing), pieces (each package's recordings),
joining (pieces into files, babble), build (the folders), report (summary, tuning-set links).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from real_dev.build import build
from real_dev.catalogue import stamp
from real_dev.report import link_train_files, summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="write the source folders")
    b.add_argument("out", type=Path)
    b.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("summary", help="source files per kind (and per split of a prepared data set)")
    s.add_argument("out", type=Path)
    s.add_argument("--data", type=Path, help="a data set prepared from OUT: count its files per split")
    t = sub.add_parser("tune", help="link the recordings of a prepared data set's train split into OUT/{speech,noise}")
    t.add_argument("sources", type=Path)
    t.add_argument("data", type=Path)
    t.add_argument("out", type=Path)
    sub.add_parser("stamp", help="print what the sources depend on (packages, this script, the seed)").add_argument(
        "--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "build":
        build(args.out, args.seed)
    elif args.command == "summary":
        print(summary(args.out, args.data))
    elif args.command == "tune":
        print(f"linked {link_train_files(args.sources, args.data, args.out)} train recordings into {args.out}")
    else:
        print(stamp(args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
