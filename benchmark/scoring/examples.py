"""The audio examples of the listening page: which clips and models it shows, and the folder in
which `sepbench evaluate` leaves their estimates for `sepbench listen` to read, so the page is
built without loading a model. Torch-free on purpose: benchmark/report imports it.

OUT/cache/listen/ (written whole by scoring/write_examples.py, or not at all):
  index.json                 {"format", "sample_rate", "per_bucket", "clips": [clip id, ...],
                              "models": [{"label", "model", "profile", "kind", "checkpoint_hash",
                                          "folder", "failed": {clip id: reason},
                                          "note" (pretrained rows only: out of domain)}, ...]}
  <folder>/<clip id>/voice.wav, noise.wav
                             the model's estimates as float32 WAV (its exact output); <folder> is
                             the model's index ("01", ...), never a name read from a file. A clip
                             in "failed" has no files, only the reason shown in its cell.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from recipes.errors import SepbenchError

ORACLE = "oracle_irm"  # the one reference the page plays beside the models (from the true stems)
FORMAT = 2  # 2: index.json records clips_hash, the content hash of the clips shown
INDEX = "index.json"
SOURCES = ("voice", "noise")
_CLIP_ID = re.compile(r"^\d+$")  # the data format's numbered clip folders
_FOLDER = re.compile(r"^\d{2,}$")


@dataclass(frozen=True)
class Shown:
    """One model column of the page: a trained model (its lowest seed), a pretrained enhancer or
    the oracle."""
    model: str
    profile: str
    kind: str
    checkpoint: str = ""  # trained: the file separated with ('' for the oracle)
    checkpoint_hash: str = ""  # pretrained: its package and version (what its estimates come from)
    note: str = ""  # pretrained: where it is out of its training domain, shown beside its column

    @property
    def label(self) -> str:
        return f"{self.model}/{self.profile}" if self.kind == "trained" else self.model


def oracle() -> Shown:
    return Shown(ORACLE, "-", "oracle")


def folder(out: str | Path) -> Path:
    return Path(out) / "cache" / "listen"


def first_seed(results):
    """Only each model's lowest seed (`run_all --seeds N`): the page plays one checkpoint per
    model, and the scores beside its players must be that checkpoint's."""
    if "seed" not in results.columns:
        return results
    seed = results["seed"].map(lambda s: int(s) if str(s).isdigit() else -1)
    lowest = seed.groupby([results["model"], results["profile"], results["kind"]]).transform("min")
    return results[seed == lowest].reset_index(drop=True)


def listen_clips(results, per_bucket: int) -> list[str]:
    """Clip ids: per SNR label, the `per_bucket` scored clips around the median input voice
    SI-SDR (ties and even counts resolved by clip id, lower median first): typical clips, not
    the best or the worst. Labels in increasing order."""
    source = results if "input_voice_sisdr" in results else results[results["model"] == "mixture"]
    column = "input_voice_sisdr" if "input_voice_sisdr" in results else "voice_sisdr"
    level = {cid: float(v) for cid, v in zip(source["clip_id"], source[column])}
    labels: dict[float, set[str]] = {}
    for cid, label in zip(results["clip_id"], results["snr_label"]):
        labels.setdefault(float(label), set()).add(cid)
    chosen = []
    for label in sorted(labels):
        bucket = sorted(labels[label], key=lambda c: (math.inf if math.isnan(level.get(c, math.nan)) else level[c], c))
        k = min(per_bucket, len(bucket))
        start = (len(bucket) - k) // 2
        chosen += bucket[start:start + k]
    return chosen


def read_index(where: Path) -> dict:
    """index.json of an estimates folder, checked so that no value read from it can name a path
    outside it; SepbenchError (one line) when it is missing or damaged."""
    try:
        index = json.loads((where / INDEX).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SepbenchError(f"{where}: no estimates for the listening page") from None
    except (OSError, ValueError) as exc:
        raise SepbenchError(f"{where / INDEX}: unreadable ({exc})") from None
    ok = (isinstance(index, dict) and index.get("format") == FORMAT and isinstance(index.get("sample_rate"), int)
          and isinstance(index.get("clips_hash"), str)
          and all(isinstance(c, str) and _CLIP_ID.match(c) for c in index.get("clips", [None]))
          and all(isinstance(m, dict) and isinstance(m.get("folder"), str) and _FOLDER.match(m["folder"])
                  and isinstance(m.get("failed"), dict) for m in index.get("models", [None])))
    if not ok:
        raise SepbenchError(f"{where / INDEX}: not an estimates index of this sepbench version")
    return index


def estimate_path(where: Path, entry: dict, clip_id: str, source: str) -> Path:
    return where / entry["folder"] / clip_id / f"{source}.wav"
