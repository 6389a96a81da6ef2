"""The folder format, read and written in one place:
ROOT/<split>/<numbered folder>/{mix_snr_<label>.wav, voice.wav, noise.wav}, and ROOT/manifest.csv.

Read by training, evaluation and the validator; written by demo-data, prepare and the tests'
fixtures. Sources come in a fixed order (0 = voice, 1 = noise). The mixture is read and written
as given: it is NOT assumed to equal voice + noise (the original data stores the stems at other
gains), and nothing is rescaled here.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio import AUDIO_SUFFIXES, audio_info
from .errors import SepbenchError
from .files import atomic_folder
from .lock import exclusive_lock

SOURCES = ("voice", "noise")
MIX_RE = re.compile(r"^mix_snr_(?P<snr>.*)\.(?:wav|flac)$", re.IGNORECASE)
FOLDER_RE = re.compile(r"^\d+$")
# A plain decimal number: float() alone would also take "1_0", " 3", "1e1" and "infinity".
NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
DATASET_ENTRIES = {"train", "val", "test", "manifest.csv"}


# ---------------------------------------------------------------------------------------- names

def mix_name(snr: float | str, suffix: str = ".wav") -> str:
    """File name carrying the label: -4.0 -> mix_snr_-4.wav, 2.5 -> mix_snr_2.5.wav (a string
    label is used as it is, for tests of malformed names)."""
    return f"mix_snr_{snr if isinstance(snr, str) else f'{float(snr):g}'}{suffix}"


def parse_snr(name: str) -> float | None:
    """SNR label from a mixture file name (`mix_snr_-4.wav` -> -4.0); None if not parseable."""
    m = MIX_RE.match(name)
    if not m or not NUMBER_RE.match(m.group("snr")):
        return None
    return float(m.group("snr"))


# ---------------------------------------------------------------------------------------- reading

@dataclass(frozen=True)
class Clip:
    id: str
    folder: Path
    mix: Path
    voice: Path
    noise: Path
    snr_label: float


@dataclass(frozen=True)
class Problem:
    level: str  # "error", "warning" or "note"
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.path}: {self.message}"


def _find_stem(folder: Path, stem: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def scan_folder(folder: Path) -> tuple[Clip | None, list[Problem]]:
    """Structural checks of one numbered folder (no audio decoding)."""
    problems: list[Problem] = []
    files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    mixes = [p for p in files if p.name.lower().startswith("mix_snr_")]
    known: set[Path] = set(mixes)
    if not mixes:
        problems.append(Problem("error", folder, "missing mixture file mix_snr_XX.wav"))
    elif len(mixes) > 1:
        problems.append(Problem("error", folder, f"more than one mixture file: {', '.join(p.name for p in mixes)}"))
    snr = None
    if len(mixes) == 1:
        snr = parse_snr(mixes[0].name)
        if snr is None:
            problems.append(Problem("error", mixes[0], "cannot parse the SNR label from the file name (expected mix_snr_<number>.wav)"))
    stems = {}
    for stem in SOURCES:
        p = _find_stem(folder, stem)
        if p is None:
            problems.append(Problem("error", folder, f"missing file {stem}.wav"))
        else:
            stems[stem] = p
            known.add(p)
    for p in files:
        if p not in known:
            problems.append(Problem("warning", p, "unexpected extra file (ignored)"))
    if any(p.level == "error" for p in problems):
        return None, problems
    return Clip(folder.name, folder, mixes[0], stems["voice"], stems["noise"], snr), problems


def scan_split(split_dir: str | Path) -> tuple[list[Clip], list[Problem]]:
    """All clips of one split folder, sorted by folder id, with every structural problem found."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        return [], [Problem("error", split_dir, "split folder is missing")]
    clips, problems = [], []
    for entry in sorted(split_dir.iterdir()):
        if entry.name.startswith("."):
            problems.append(Problem("note", entry, "hidden entry (ignored)"))
            continue
        if not entry.is_dir() or not FOLDER_RE.match(entry.name):
            problems.append(Problem("note", entry, "not a numbered clip folder (ignored)"))
            continue
        clip, found = scan_folder(entry)
        problems.extend(found)
        if clip is not None:
            clips.append(clip)
    if not clips and not any(p.level == "error" for p in problems):
        problems.append(Problem("error", split_dir, "split has no clip folders"))
    return clips, problems


def test_split_dir(data: str | Path) -> Path:
    """A test split folder as given, or the test/ of a data set root (a folder holding test/ and
    no clip folders of its own): what `sepbench evaluate` and `sepbench listen` accept."""
    data = Path(data)
    if not data.is_dir():
        raise SepbenchError(f"{data}: test folder does not exist")
    if (data / "test").is_dir() and not any(FOLDER_RE.match(p.name) for p in data.iterdir() if p.is_dir()):
        return data / "test"
    return data


def load_split(split_dir: str | Path) -> list[Clip]:
    """Clips of a split; raises on the first structural error (run `sepbench validate` for all)."""
    clips, problems = scan_split(split_dir)
    errors = [p for p in problems if p.level == "error"]
    if errors:
        more = f" (and {len(errors) - 1} more; run `sepbench validate`)" if len(errors) > 1 else ""
        raise SepbenchError(f"{errors[0].path}: {errors[0].message}{more}")
    return clips


def train_split_problem(n_train: int, has_val: bool) -> str | None:
    """The one rule, shared by `train` and `validate`, for a train split to be usable."""
    if not has_val and n_train < 2:
        return (f"{n_train} clip(s): training needs at least 2 (one is carved out for validation) "
                "or a val/ folder")
    return None


def clip_lengths(clip: Clip) -> tuple[int, int]:
    """(frames, sample rate) of a clip; raises if its three files disagree."""
    infos = {p: audio_info(p) for p in (clip.mix, clip.voice, clip.noise)}
    rates = {i.samplerate for i in infos.values()}
    frames = {i.frames for i in infos.values()}
    if len(rates) > 1:
        raise SepbenchError(f"{clip.folder}: sample rates differ between files ({sorted(rates)})")
    if len(frames) > 1:
        raise SepbenchError(f"{clip.folder}: lengths differ between files ({sorted(frames)} samples)")
    return frames.pop(), rates.pop()


# ---------------------------------------------------------------------------------------- writing

def write_audio(path: Path, data: np.ndarray, sample_rate: int, subtype: str = "PCM_16") -> None:
    # Through memory: closing a real file makes libsndfile fsync it, which cost more than the
    # synthesis on a busy disk. The data set's folder is renamed into place only when complete.
    buffer = io.BytesIO()
    sf.write(buffer, data, sample_rate, subtype=subtype, format="FLAC" if path.suffix == ".flac" else "WAV")
    path.write_bytes(buffer.getvalue())


class _Sink:
    """A file for libsndfile's virtual I/O that keeps the first OSError and reports the call as
    failed: raised inside a callback it would be printed, traceback and all, and lost (cffi)."""

    def __init__(self, f):
        self._f, self.error = f, None

    def _call(self, name: str, *args, failed):
        if self.error is None:
            try:
                return getattr(self._f, name)(*args)
            except OSError as exc:
                self.error = exc
        return failed

    def write(self, data):
        return self._call("write", data, failed=0)

    def read(self, n):
        return self._call("read", n, failed=b"")

    def seek(self, *args):
        return self._call("seek", *args, failed=-1)

    def tell(self):
        return self._call("tell", failed=-1)


@contextlib.contextmanager
def sound_writer(path: Path, **kwargs):
    """soundfile.SoundFile(path, "w", **kwargs) for audio written block by block (too long for
    write_audio's memory), through a Python file: libsndfile given a path says only "System
    error" on a full or read-only disk, this raises the OSError of the call that failed."""
    with open(path, "w+b") as f:
        sink = _Sink(f)
        try:
            with sf.SoundFile(sink, "w", **kwargs) as out:
                yield out
        except Exception:  # libsndfile's error, or soundfile's assert on a short write
            if sink.error is not None:
                raise sink.error from None
            raise
        if sink.error is not None:  # failed while finishing the header at close
            raise sink.error


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
    if out.parent.exists() and not out.parent.is_dir():
        raise SepbenchError(f"{out.parent}: is not a folder")
    # Beside the data set, not in it (it is replaced whole): a second writer of the same OUT is
    # refused instead of clearing the first one's half-built folder as a crash's leftover.
    with exclusive_lock(out.parent, "data set writer", name=f".{out.name}.lock"), _replacing(out, force) as tmp:
        yield tmp


@contextlib.contextmanager
def _replacing(out: Path, force: bool):
    existing = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if existing and not force:
        raise SepbenchError(f"{out}: folder is not empty (use --force to replace it)")
    foreign = [name for name in existing if name not in DATASET_ENTRIES]
    if foreign:
        # --force must never wipe a folder that is not a data set (a typo like `demo-data ~`).
        raise SepbenchError(f"{out}: holds other things than a data set ({', '.join(foreign[:5])}); not replacing it")
    with atomic_folder(out) as tmp:
        yield tmp


def content_hash(clips: list[Clip]) -> str:
    """Hash of every clip's id, label and file bytes: a data set changed in any way hashes anew."""
    h = hashlib.sha256()
    for clip in sorted(clips, key=lambda c: c.id):
        h.update(f"{clip.id}|{clip.snr_label}|".encode())
        for p in (clip.mix, clip.voice, clip.noise):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]
