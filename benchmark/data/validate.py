"""`sepbench validate DATA_DIR`: every problem of a data set, one line each, before anything trains.

DATA_DIR is a root (train/ and test/ required, val/ optional) or one split folder (a folder
whose subfolders are numbered). Structure comes from `recipes.folder.scan_split`; then every clip
is decoded and measured. Errors make the data set unusable (exit 1); warnings describe data the
benchmark can use but whose numbers need care (exit 0). Nothing is fixed or rescaled here.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from recipes.files import Stamp, atomic_write_text
from recipes.folder import FOLDER_RE, Clip, Problem, scan_split, train_split_problem

SPLITS = ("train", "val", "test")
# Bump when a check is added or changed: a set that passed the old checks is then read again.
CHECKS_VERSION = 1
REQUIRED_SPLITS = ("train", "test")
RESIDUAL_WARN = 0.05  # rms(mix - (voice + noise)) / rms(mix); 16-bit rounding alone stays far below
SNR_WARN_DB = 3.0
SILENT_DBFS = -50.0
SILENT_UNDER_NOISE_DB = 40.0
CLIP_LEVEL = 0.999
CLIP_RUN = 3  # one full-scale sample can be a legitimate peak; a run of them is clipping


@dataclass
class ClipStats:
    split: str
    id: str
    folder: Path
    snr_label: float
    sample_rate: int
    frames: int
    snr_measured: float  # 10 log10(|voice|^2 / |noise|^2) of the stems as stored
    residual: float  # rms(mix - (voice + noise)) / rms(mix)
    gain_voice: float  # least-squares gains: mix ~ gain_voice * voice + gain_noise * noise
    gain_noise: float
    voice_dbfs: float
    noise_dbfs: float
    warnings: tuple[str, ...] = ()  # kinds: "residual", "label", "silent", "clipping"


@dataclass
class Report:
    path: Path
    problems: list[Problem] = field(default_factory=list)
    clips: list[ClipStats] = field(default_factory=list)
    scanned: dict[str, list[Clip]] = field(default_factory=dict)  # split -> structurally sound clips

    @property
    def ok(self) -> bool:
        return not any(p.level == "error" for p in self.problems)

    def count(self, level: str) -> int:
        return sum(p.level == level for p in self.problems)

    @property
    def stats(self) -> dict[str, dict]:
        return {split: split_stats(clips, [c for c in self.clips if c.split == split])
                for split, clips in self.scanned.items()}


def run(args) -> int:
    result = checked(args.data_dir, downmix=args.downmix, force=args.force)
    print(result.text)
    if result.cached:
        print(f"(unchanged since it passed: no file was read again; --force reads them; {result.stamp})")
    return 0 if result.ok else 1


@dataclass
class Checked:
    ok: bool
    warnings: int
    text: str     # format_report's
    cached: bool  # true: the files are those that passed before, and were not read
    stamp: Path


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sepbench" / "validated"


def checked(path: str | Path, downmix: bool = False, force: bool = False) -> Checked:
    """validate(path), unless these very files passed it before (with `sepbench validate` or
    run_all, which share the record): reading every clip again was most of a re-run with nothing
    to do (7 s of 11 on the real-speech set). Files are compared by path, size and modification
    time (a stat each, no read), with CHECKS_VERSION (the checks may change). The
    record lives in the user's cache (XDG_CACHE_HOME), one per data folder's absolute path, so
    no data folder, however read-only, is written to; only a set that passed is recorded."""
    path = Path(path)
    where = path.resolve()
    name = hashlib.sha256(str(where).encode("utf-8")).hexdigest()[:32]
    saved = cache_dir() / f"{name}.report.json"
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else []
    stamp = Stamp(cache_dir() / f"{name}.json", key={"data": str(where), "checks": CHECKS_VERSION, "downmix": downmix},
                  stat=files, outputs=[saved])
    if not force and stamp.fresh():
        try:
            stored = json.loads(saved.read_text(encoding="utf-8"))
            return Checked(True, int(stored["warnings"]), str(stored["text"]), True, stamp.path)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # unreadable: validate again
    report = validate(path, downmix=downmix)
    result = Checked(report.ok, report.count("warning"), format_report(report), False, stamp.path)
    if report.ok:
        try:
            atomic_write_text(saved, json.dumps({"warnings": result.warnings, "text": result.text}) + "\n")
            stamp.write()
        except OSError:  # no writable cache: the next call validates again, nothing worse
            pass
    return result


def validate(path: str | Path, downmix: bool = False) -> Report:
    path = Path(path)
    report = Report(path)
    splits, problems = find_splits(path)
    report.problems.extend(problems)
    for name, split_dir in splits.items():
        try:
            clips, found = scan_split(split_dir)
        except OSError as exc:  # an unlistable folder
            clips, found = [], [Problem("error", Path(exc.filename or split_dir), f"cannot read ({exc.strerror})")]
        report.scanned[name] = clips
        report.problems.extend(found)
        for clip in clips:
            stats, found = check_clip(name, clip, downmix)
            report.problems.extend(found)
            if stats is not None:
                report.clips.append(stats)
        report.problems.extend(check_split_rates([c for c in report.clips if c.split == name]))
    report.problems.extend(check_dataset_rates(path, report.clips))
    if "train" in report.scanned and report.scanned["train"]:
        problem = train_split_problem(len(report.scanned["train"]), has_val=bool(report.scanned.get("val")))
        if problem:
            report.problems.append(Problem("error", splits["train"], problem))
    return report


def find_splits(path: Path) -> tuple[dict[str, Path], list[Problem]]:
    """{split name: folder}: the folder itself when it holds numbered folders, else its splits."""
    if not path.exists():
        return {}, [Problem("error", path, "does not exist")]
    if not path.is_dir():
        return {}, [Problem("error", path, "is not a folder")]
    try:
        children = [p for p in path.iterdir() if p.is_dir()]
    except OSError as exc:
        return {}, [Problem("error", path, f"cannot list the folder ({exc.strerror})")]
    if any(FOLDER_RE.match(p.name) for p in children):
        return {path.name: path}, []
    if not any(p.name in SPLITS for p in children):
        return {}, [Problem("error", path, "neither a data set root (train/, test/) nor a split (numbered clip folders)")]
    # Missing required splits go through scan_split, which reports them.
    return {s: path / s for s in SPLITS if s in REQUIRED_SPLITS or (path / s).is_dir()}, []


def check_clip(split: str, clip: Clip, downmix: bool) -> tuple[ClipStats | None, list[Problem]]:
    audio, problems = {}, []
    for role, p in (("mix", clip.mix), ("voice", clip.voice), ("noise", clip.noise)):
        data, sr, found = decode(p, downmix)
        problems.extend(found)
        if data is not None:
            audio[role] = (data, sr)
    if len(audio) < 3 or any(p.level == "error" for p in problems):
        return None, problems
    found = check_shapes(clip, audio)
    if found:
        return None, problems + found
    stats = measure(split, clip, audio)
    return stats, problems + level_warnings(stats, clip, audio)


def decode(path: Path, downmix: bool) -> tuple[np.ndarray | None, int, list[Problem]]:
    """Mono float64 samples of one file, or None, with the file's decoding problems."""
    truncated = wav_truncation(path)
    if truncated:
        return None, 0, [Problem("error", path, truncated)]
    try:
        data, sr = sf.read(str(path), dtype="float64", always_2d=True)
    except Exception as exc:  # soundfile raises several types for unreadable files
        empty = " (empty file)" if path.is_file() and path.stat().st_size == 0 else ""
        return None, 0, [Problem("error", path, f"unreadable audio{empty}: {short_error(exc, path)}")]
    problems = []
    if data.shape[1] > 1 and not downmix:
        problems.append(Problem("error", path, f"has {data.shape[1]} channels; sepbench needs mono (--downmix averages them)"))
    if len(data) == 0:
        return None, sr, problems + [Problem("error", path, "zero-length audio (no samples)")]
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        problems.append(Problem("error", path, f"{bad} non-finite samples (NaN or infinity)"))
    return data.mean(axis=1), int(sr), problems


def wav_truncation(path: Path) -> str | None:
    """libsndfile reads a cut-off WAV silently as a shorter one; the header's data size tells."""
    if path.suffix.lower() != ".wav":
        return None
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
                return None  # not plain RIFF/WAVE: soundfile judges it
            pos = 12
            while pos + 8 <= size:
                f.seek(pos)
                chunk, length = struct.unpack("<4sI", f.read(8))
                if chunk == b"data":
                    available = size - pos - 8
                    if length not in (0, 0xFFFFFFFF) and length > available:  # 0/max: streamed writers
                        return f"truncated WAV: header declares {length} bytes of audio, the file holds {available}"
                    return None
                pos += 8 + length + (length & 1)
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    return None


def short_error(exc: Exception, path: Path) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text.split(f"'{path}': ", 1)[-1]  # soundfile repeats the path


def check_shapes(clip: Clip, audio: dict) -> list[Problem]:
    rates = {role: sr for role, (_, sr) in audio.items()}
    lengths = {role: len(x) for role, (x, _) in audio.items()}
    problems = []
    if len(set(rates.values())) > 1:
        listed = ", ".join(f"{role} {sr} Hz" for role, sr in rates.items())
        problems.append(Problem("error", clip.folder, f"sample rates differ between files: {listed}"))
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{role} {n}" for role, n in lengths.items())
        problems.append(Problem("error", clip.folder, f"lengths differ between files: {listed} samples"))
    return problems


def measure(split: str, clip: Clip, audio: dict) -> ClipStats:
    (mix, sr), (voice, _), (noise, _) = audio["mix"], audio["voice"], audio["noise"]
    ev, en, em, vn = dot(voice, voice), dot(noise, noise), dot(mix, mix), dot(voice, noise)
    gains = np.linalg.lstsq(np.array([[ev, vn], [vn, en]]), np.array([dot(voice, mix), dot(noise, mix)]), rcond=None)[0]
    residual = math.sqrt(np.mean((mix - voice - noise) ** 2) / (em / len(mix))) if em > 0 else math.nan
    return ClipStats(split, clip.id, clip.folder, clip.snr_label, sr, len(mix), db(ev, en), residual,
                     float(gains[0]), float(gains[1]), db(ev / len(voice), 1.0), db(en / len(noise), 1.0))


def dot(a: np.ndarray, b: np.ndarray) -> float:
    # Not `a @ b`: OpenBLAS's threads spin against other busy processes on a small machine
    # (measured 26 ms instead of 0.2 ms per clip); an elementwise product never threads.
    return float(np.multiply(a, b).sum())


def db(num: float, den: float) -> float:
    if num <= 0:
        return -math.inf
    return math.inf if den <= 0 else 10 * math.log10(num / den)


def level_warnings(stats: ClipStats, clip: Clip, audio: dict) -> list[Problem]:
    problems, kinds = [], []
    if math.isnan(stats.residual):
        problems.append(Problem("warning", clip.mix, "mixture is silent"))
    elif stats.residual > RESIDUAL_WARN:
        mix, voice, noise = (audio[r][0] for r in ("mix", "voice", "noise"))
        fit = mix - stats.gain_voice * voice - stats.gain_noise * noise
        fit_residual = math.sqrt(np.mean(fit**2) / np.mean(mix**2))
        problems.append(Problem("warning", clip.folder,
                                f"mixture is not voice + noise: residual {stats.residual:.3f}; best fit mix = "
                                f"{stats.gain_voice:.3f}*voice + {stats.gain_noise:.3f}*noise (residual {fit_residual:.3f})"))
        kinds.append("residual")
    off = stats.snr_measured - stats.snr_label
    if not abs(off) <= SNR_WARN_DB:  # also catches an infinite SNR from a silent stem
        mixed = db(stats.gain_voice**2 * 10 ** (stats.snr_measured / 10), stats.gain_noise**2) if "residual" in kinds else None
        extra = f"; at the mixture's fitted gains {mixed:.1f} dB" if mixed is not None and math.isfinite(mixed) else ""
        problems.append(Problem("warning", clip.mix, f"label {stats.snr_label:g} dB but the stems measure "
                                f"{stats.snr_measured:.1f} dB ({off:+.1f} dB){extra}"))
        kinds.append("label")
    if stats.voice_dbfs < SILENT_DBFS or stats.voice_dbfs < stats.noise_dbfs - SILENT_UNDER_NOISE_DB:
        problems.append(Problem("warning", clip.voice, f"near-silent voice: RMS {stats.voice_dbfs:.1f} dBFS, "
                                f"{stats.noise_dbfs - stats.voice_dbfs:.1f} dB under the noise"))
        kinds.append("silent")
    for path, (x, _) in zip((clip.mix, clip.voice, clip.noise), audio.values()):
        samples, runs = clipped(x)
        if runs:
            problems.append(Problem("warning", path, f"clipping: {samples} samples at |x| >= {CLIP_LEVEL} "
                                    f"in {runs} runs of {CLIP_RUN} or more"))
            kinds.append("clipping")
    stats.warnings = tuple(kinds)
    return problems


def clipped(x: np.ndarray) -> tuple[int, int]:
    """(samples, runs) in runs of at least CLIP_RUN consecutive full-scale samples."""
    hot = np.concatenate([[False], np.abs(x) >= CLIP_LEVEL, [False]])
    edges = np.flatnonzero(np.diff(hot.astype(np.int8)))
    lengths = edges[1::2] - edges[::2]
    long = lengths[lengths >= CLIP_RUN]
    return int(long.sum()), len(long)


def check_split_rates(clips: list[ClipStats]) -> list[Problem]:
    rates = Counter(c.sample_rate for c in clips)
    if len(rates) < 2:
        return []
    common, count = rates.most_common(1)[0]
    return [Problem("error", c.folder, f"sample rate {c.sample_rate} Hz differs from the split's {common} Hz "
                    f"({count} folders)") for c in clips if c.sample_rate != common]


def check_dataset_rates(path: Path, clips: list[ClipStats]) -> list[Problem]:
    by_split = {}
    for c in clips:
        by_split.setdefault(c.split, Counter())[c.sample_rate] += 1
    common = {split: rates.most_common(1)[0][0] for split, rates in by_split.items()}
    if len(set(common.values())) < 2:
        return []
    listed = ", ".join(f"{split} {sr} Hz" for split, sr in common.items())
    return [Problem("error", path, f"sample rates differ between splits: {listed}")]


def split_stats(scanned: list[Clip], clips: list[ClipStats]) -> dict:
    seconds = [c.frames / c.sample_rate for c in clips]
    diffs = [abs(c.snr_measured - c.snr_label) for c in clips]
    residuals = [c.residual for c in clips if not math.isnan(c.residual)]
    return {
        "folders": len(scanned),
        "checked": len(clips),
        "labels": dict(sorted(Counter(c.snr_label for c in scanned).items())),
        "sample_rates": dict(Counter(c.sample_rate for c in clips)),
        "seconds": (min(seconds), float(np.median(seconds)), max(seconds)) if seconds else None,
        "snr_abs_diff_mean": float(np.mean(diffs)) if diffs and all(map(math.isfinite, diffs)) else None,
        "snr_far": sum("label" in c.warnings for c in clips),
        "residual_median": float(np.median(residuals)) if residuals else None,
        "residual_max": max(residuals) if residuals else None,
        "near_silent": sum("silent" in c.warnings for c in clips),
        "clipping": sum("clipping" in c.warnings for c in clips),
    }


def format_report(report: Report) -> str:
    lines = [f"data set: {report.path}"]
    for split, s in report.stats.items():
        lines.append(f"\n[{split}] {s['folders']} complete clip folders, {s['checked']} decoded and measured")
        lines.append("  SNR labels: " + (", ".join(f"{k:g} dB x{v}" for k, v in s["labels"].items()) or "none"))
        if not s["checked"]:
            continue
        lines.append("  sample rates: " + ", ".join(f"{sr} Hz x{n}" for sr, n in s["sample_rates"].items()))
        lines.append("  duration s: min {:.2f}, median {:.2f}, max {:.2f}".format(*s["seconds"]))
        diff = "n/a (silent stems)" if s["snr_abs_diff_mean"] is None else f"{s['snr_abs_diff_mean']:.2f} dB"
        lines.append(f"  measured SNR vs label: mean |diff| {diff}, {s['snr_far']} clips more than {SNR_WARN_DB:g} dB off")
        if s["residual_median"] is not None:
            lines.append(f"  mixture residual rms(mix-(voice+noise))/rms(mix): median {s['residual_median']:.4f}, "
                         f"max {s['residual_max']:.4f}")
        lines.append(f"  near-silent voices: {s['near_silent']}; clips with clipping: {s['clipping']}")
    if report.problems:
        lines.append("")
        order = {"error": 0, "warning": 1, "note": 2}
        lines += [str(p) for p in sorted(report.problems, key=lambda p: order.get(p.level, 3))]
    verdict = "usable" if report.ok else "NOT usable"
    counts = ", ".join(f"{report.count(level)} {level}{'' if report.count(level) == 1 else 's'}"
                       for level in ("error", "warning", "note"))
    lines.append(f"\n{counts}: {verdict}")
    return "\n".join(lines)
