"""What the sources hold (per kind, and per split of a data set prepared from them), and the
links to a data set's train recordings that a tuning set is prepared from."""
from __future__ import annotations

import collections
import csv
from pathlib import Path

import numpy as np


def summary(out: Path, data: Path | None = None) -> str:
    with open(out / "SOURCES.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    split_of, clips = {}, collections.Counter()
    if data is not None and (data / "manifest.csv").is_file():
        with open(data / "manifest.csv", newline="") as f:
            for r in csv.DictReader(f):
                split_of[("speech/" + r["speech_file"])] = r["split"]
                split_of[("noise/" + r["noise_file"])] = r["split"]
                clips[(r["noise_file"].split("/")[0], r["split"])] += 1
    by_kind = collections.defaultdict(list)
    for r in rows:
        by_kind[r["kind"]].append(r)
    lines = [f"{'kind':<9} {'files':>5} {'minutes':>8} {'mean s':>7}" +
             ("  files train/test  clips train/test" if split_of else "") + "  what"]
    for kind in ["speech"] + sorted(k for k in by_kind if k != "speech"):
        rs = by_kind[kind]
        secs = [float(r["seconds"]) for r in rs]
        sources = [s for r in rs for s in r["sources"].split(" ; ")]
        if kind == "speech":
            groups = collections.Counter(r["group"].split(" (")[0] for r in rs)
            g = f"{len(sources)} prompts; files per speaker: " + ", ".join(f"{k} {v}" for k, v in sorted(groups.items()))
        elif kind == "babble":
            g = f"{len(sources)} words of {len({s.split(':')[1].split('/')[0] for s in sources})} voices"
        else:
            packages = collections.Counter(s.split(":")[0] for s in sources)
            g = f"{len(sources)} recordings: " + ", ".join(f"{k} {v}" for k, v in sorted(packages.items()))
        line = f"{kind:<9} {len(rs):>5} {sum(secs) / 60:>8.1f} {np.mean(secs):>7.1f}"
        if split_of:
            used = collections.Counter(split_of.get(r["file"], "-") for r in rs)
            # every clip has one speech file; noise clips count per kind
            n = [sum(v for (k, split), v in clips.items() if split == want and kind in (k, "speech"))
                 for want in ("train", "test")]
            line += f"  {used['train']:>11}/{used['test']:<4}  {n[0]:>11}/{n[1]:<4}"
        lines.append(f"{line}  {g}")
    total = [float(r["seconds"]) for r in rows]
    noise = [float(r["seconds"]) for r in rows if r["kind"] != "speech"]
    lines.append(f"total: {len(rows)} files, {sum(total) / 60:.1f} min "
                 f"(speech {(sum(total) - sum(noise)) / 60:.1f} min, noise {sum(noise) / 60:.1f} min)")
    return "\n".join(lines)


def link_train_files(sources: Path, data: Path, out: Path) -> int:
    """Symbolic links to the recordings that `data`'s train split was cut from, in the layout of
    `sources`: prepared again, they give a tuning set whose test split shares no recording with
    its train split and none with `data`'s test split."""
    with open(data / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "train"]
    files = {("speech", r["speech_file"]) for r in rows} | {("noise", r["noise_file"]) for r in rows}
    for kind, name in sorted(files):
        link = out / kind / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to((sources / kind / name).resolve())
    return len(files)
