"""The folder format, written in one place (demo-data, prepare and the tests' fixtures):
ROOT/<split>/<id>/mix_snr_<label>.wav, voice.wav, noise.wav, and ROOT/manifest.csv."""
from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import numpy as np
import soundfile as sf

from recipes.errors import SepbenchError
from recipes.files import atomic_folder

DATASET_ENTRIES = {"train", "val", "test", "manifest.csv"}


def mix_name(snr: float | str, suffix: str = ".wav") -> str:
    """File name carrying the label: -4.0 -> mix_snr_-4.wav, 2.5 -> mix_snr_2.5.wav (a string
    label is used as it is, for tests of malformed names)."""
    return f"mix_snr_{snr if isinstance(snr, str) else f'{float(snr):g}'}{suffix}"


def write_audio(path: Path, data: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    # Through memory: closing a real file makes libsndfile fsync it, which cost more than the
    # synthesis on a busy disk. The data set's folder is renamed into place only when complete.
    buffer = io.BytesIO()
    sf.write(buffer, data, sample_rate, subtype=subtype, format="FLAC" if path.suffix == ".flac" else "WAV")
    path.write_bytes(buffer.getvalue())


def write_clip(folder: Path, voice: np.ndarray, noise: np.ndarray, mix: np.ndarray, sample_rate: int,
               snr: float | str, subtype: str = "PCM_16", suffix: str = ".wav") -> Path:
    """One clip folder. Arrays are [T] or [T, channels]; the mixture is written as given (it
    need not be voice + noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in ((mix_name(snr, suffix), mix), (f"voice{suffix}", voice), (f"noise{suffix}", noise)):
        write_audio(folder / name, data, sample_rate, subtype)
    return folder


def to_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


@contextlib.contextmanager
def new_dataset_dir(out: str | Path, force: bool):
    """Yield an empty temporary folder beside `out`, renamed to `out` only if the block succeeds:
    an interrupted run never leaves half a data set, nor destroys the old one."""
    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise SepbenchError(f"{out}: exists and is not a folder")
    existing = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if existing and not force:
        raise SepbenchError(f"{out}: folder is not empty (use --force to replace it)")
    foreign = [name for name in existing if name not in DATASET_ENTRIES]
    if foreign:
        # --force must never wipe a folder that is not a data set (a typo like `demo-data ~`).
        raise SepbenchError(f"{out}: holds other things than a data set ({', '.join(foreign[:5])}); not replacing it")
    with atomic_folder(out) as tmp:
        yield tmp
