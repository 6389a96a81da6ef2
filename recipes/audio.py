"""Audio reading and atomic file writing shared by training, benchmark and tools."""
from __future__ import annotations

import contextlib
import os
import tempfile
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


def to_mono(data: np.ndarray, path: str | Path, downmix: bool) -> np.ndarray:
    """[frames, channels] -> [frames]; several channels are an error unless `downmix` (mean)."""
    if data.shape[1] > 1:
        if not downmix:
            raise SepbenchError(f"{path}: has {data.shape[1]} channels; sepbench needs mono (use the downmix option)")
        return np.ascontiguousarray(data.mean(axis=1))
    return np.ascontiguousarray(data[:, 0])


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    try:
        return sf.info(str(path))
    except Exception as exc:
        raise SepbenchError(f"{path}: cannot read audio header ({_short(exc)})") from None


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds,
    so an interruption never leaves a half-written file where a good one was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; outputs get the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def write_audio(path: str | Path, data: np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Atomic write; `data` is [T] or [T, C]. The format follows the suffix (WAV or FLAC)."""
    path = Path(path)
    fmt = "FLAC" if path.suffix.lower() == ".flac" else "WAV"
    with atomic_path(path) as tmp:
        sf.write(str(tmp), data, sample_rate, subtype=subtype, format=fmt)
