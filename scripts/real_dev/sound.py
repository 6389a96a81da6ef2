"""Reading, trimming, fading and writing the recordings; the pieces they become."""
from __future__ import annotations

import hashlib
import io
import subprocess
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

from recipes.folder import write_audio


def read_mono(path: str) -> tuple[np.ndarray, int]:
    if path.endswith(".gsm"):  # raw GSM 06.10, 8 kHz: libsndfile cannot read it, sox can
        raw = subprocess.run(["sox", "-t", "gsm", "-r", "8000", "-c", "1", path, "-t", "f32", "-"],
                             capture_output=True, check=True).stdout
        return np.frombuffer(raw, dtype="<f4").astype(np.float64), 8000
    data, rate = sf.read(path, dtype="float64", always_2d=True)
    return data.mean(axis=1), rate


def read_buffer(data: bytes) -> tuple[np.ndarray, int]:
    x, rate = sf.read(io.BytesIO(data), dtype="float64", always_2d=True)
    return x.mean(axis=1), rate


def trim(x: np.ndarray, rate: int, below_peak_db: float, floor_db: float = -60.0, margin_s: float = 0.04) -> np.ndarray:
    """Cut leading/trailing stretches quieter than the loudest 10 ms frame minus below_peak_db."""
    hop = max(1, rate // 100)
    n = len(x) // hop
    if n == 0:
        return x[:0]
    energy = 10 * np.log10(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(energy > max(energy.max() - below_peak_db, floor_db))
    if len(loud) == 0:
        return x[:0]
    margin = int(margin_s * rate)
    return x[max(0, loud[0] * hop - margin): min(len(x), (loud[-1] + 1) * hop + margin)]


def fade(x: np.ndarray, rate: int, seconds: float = 0.01) -> np.ndarray:
    k = min(len(x) // 2, int(seconds * rate))
    if k > 0:
        x = x.copy()
        ramp = np.sin(np.linspace(0, np.pi / 2, k)) ** 2
        x[:k] *= ramp
        x[-k:] *= ramp[::-1]
    return x


def rng_for(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


class Unique:
    """Drops recordings whose samples were seen before: packages ship some files twice under
    other names (LinCity's Harbor3 is Water2, CoalMine2 is Tip2), which would otherwise put one
    recording into two files, possibly one in train and one in test."""

    def __init__(self):
        self.seen = set()

    def __call__(self, x: np.ndarray) -> bool:
        digest = hashlib.sha1(np.round(x * 32768).astype(np.int32).tobytes()).digest()
        new = digest not in self.seen
        self.seen.add(digest)
        return new


class Piece:
    """One trimmed recording, ready to be joined."""

    def __init__(self, label: str, x: np.ndarray, rate: int):
        self.label, self.x, self.rate = label, x, rate

    @property
    def seconds(self) -> float:
        return len(self.x) / self.rate


def write(path: Path, x: np.ndarray, rate: int) -> None:
    peak = np.max(np.abs(x)) if len(x) else 0.0
    if peak > 0.95:
        x = x * (0.95 / peak)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_audio(path, x, rate)  # 16-bit PCM; FLAC by the path's suffix
