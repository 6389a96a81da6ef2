"""Audio reading and resampling shared by training, benchmark and tools (audio is written through
recipes.folder, other files through recipes.files)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf

from .errors import SepbenchError

AUDIO_SUFFIXES = (".wav", ".flac")


def read_audio(path: str | Path, downmix: bool = False) -> tuple[np.ndarray, int]:
    """Read a file as float32 mono [T]. Multi-channel is an error unless `downmix` (channel mean)."""
    path = Path(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for unreadable/truncated files
        raise SepbenchError(f"{path}: cannot read audio ({_short(exc)})") from None
    return to_mono(data, path, downmix), int(sr)


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """`x` sampled at `rate_in` re-sampled to `rate_out` with scipy's polyphase filter (its
    default Kaiser window); `x` itself when the rates agree. The one resampler of sample-rate
    conversion (prepare, PESQ, the real-speech tools) and of speed perturbation (rates = the
    speed's up/down)."""
    if rate_in == rate_out:
        return x
    # Late: scipy.signal costs ~0.7 s to import, which `sepbench validate` must not pay.
    import scipy.signal

    g = math.gcd(rate_in, rate_out)
    return scipy.signal.resample_poly(x, rate_out // g, rate_in // g)


def to_mono(data: np.ndarray, path: str | Path, downmix: bool) -> np.ndarray:
    """[frames, channels] -> [frames]; several channels are an error unless `downmix` (mean)."""
    if data.shape[1] > 1:
        if not downmix:
            raise SepbenchError(f"{path}: has {data.shape[1]} channels; sepbench needs mono (use the downmix option)")
        return np.ascontiguousarray(data.mean(axis=1))
    return np.ascontiguousarray(data[:, 0])


def audio_info(path: str | Path):
    """soundfile's header info (frames, samplerate, channels, format, subtype); one-line error."""
    try:
        return sf.info(str(path))
    except Exception as exc:
        raise SepbenchError(f"{path}: cannot read audio header ({_short(exc)})") from None


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
