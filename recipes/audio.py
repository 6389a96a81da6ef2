"""Audio reading and atomic file writing shared by training, benchmark and tools."""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import tempfile
import time
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


# Temporary files are named `.<target>.sepbench-<pid>-<host>-<random>.tmp<suffix>` (or `.f32` for
# separate's raw streams): the writer's PID and host let remove_stale_temps tell the leftovers
# of a killed run from the files of one still running. <host> is a hash: hostnames may hold any
# character.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TEMP_RE = re.compile(r"\..+\.sepbench-(?P<pid>[0-9]+)-(?P<host>[0-9a-f]{8})-[a-z0-9_]{8}"
                      r"\.(?:tmp(?:\.[A-Za-z0-9]+)?|f32)")
# Names written before the PID was part of them: `.<target>.<random>.tmp<suffix>` and `.f32`.
_LEGACY_TEMP_RE = re.compile(r"\..+\.[a-z0-9_]{8}\.(?:tmp(?:\.[A-Za-z0-9]+)?|f32)")
STALE_SECONDS = 3600.0  # a temp whose writer cannot be checked is left alone this long
_DEAD_GRACE_SECONDS = 60.0  # PID namespaces can hide a live writer; a running writer touches its file


def temp_prefix(path: str | Path) -> str:
    """mkstemp prefix for a temporary file beside `path` (see remove_stale_temps)."""
    return f".{Path(path).name}.sepbench-{os.getpid()}-{_HOST}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process (or a PID we cannot check): assume alive
    return True


def remove_stale_temps(folder: str | Path, max_age: float = STALE_SECONDS) -> list[Path]:
    """Delete this tool's temporary files in `folder` (not recursive) left by killed runs, and
    return them. A temp file is stale when its writer (PID on this host) is dead and the file
    has not changed for a minute, or, when the writer cannot be checked (another host, an older
    sepbench), when it is older than `max_age` seconds. Anything else, including every file not
    named like this tool's temps, is kept."""
    removed, now = [], time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed  # no folder (yet) or unreadable: nothing of ours to clean
    for entry in entries:
        if not entry.name.startswith("."):
            continue
        new, legacy = _TEMP_RE.fullmatch(entry.name), _LEGACY_TEMP_RE.fullmatch(entry.name)
        if not (new or legacy):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if new and new["host"] == _HOST:
            stale = age > _DEAD_GRACE_SECONDS and not _alive(int(new["pid"]))
        else:
            stale = age > max_age
        if stale:
            with contextlib.suppress(OSError):  # cleaning is best effort: never fail a run over it
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds,
    so an interruption never leaves a half-written file where a good one was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp" + path.suffix, dir=path.parent)
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
