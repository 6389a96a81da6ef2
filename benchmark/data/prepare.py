"""`sepbench prepare`: the folder format built from any directories of speech and noise recordings.

Files (WAV/FLAC, searched recursively, hidden ones skipped) at least --seconds long are usable;
shorter ones are skipped with a note rather than padded or looped, which would put silence or
seams into the references. Each clip takes a random --seconds segment of a speech file and of a
noise file, downmixed to mono, resampled to --sr with a polyphase filter, and mixed with the
level policy of `sepbench demo-data` (voice at a pyloudnorm target loudness, noise at the
labelled power SNR, no clipping, mix == voice + noise in the files).

The file lists are split before any clip is drawn, so no speech or noise recording feeds both
train and test (a model must not be scored on recordings it heard). A manifest.csv records
each clip's sources, offsets and gains. Everything is drawn from the seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from recipes.audio import AUDIO_SUFFIXES, resample
from recipes.errors import SepbenchError
from recipes.files import atomic_write_text
from recipes.folder import new_dataset_dir, to_csv, write_clip

from .demo import Leveller, check_sizes, parse_snrs

QUIET_LUFS = -60.0  # a segment below this is mostly silence: draw another offset
ATTEMPTS = 8


@dataclass(frozen=True)
class Source:
    path: Path
    name: str  # relative to the directory given, for the manifest
    frames: int
    sample_rate: int


def run(args) -> int:
    prepare(args.speech, args.noise, args.out, parse_snrs(args.snrs), args.n_train, args.n_test,
            args.seconds, args.sr, args.seed, force=args.force)
    return 0


def prepare(speech_dir, noise_dir, out, snrs=(-5, 0, 5, 10), n_train: int = 1000, n_test: int = 200,
            seconds: float = 4.0, sample_rate: int = 8000, seed: int = 0, force: bool = False, log=print) -> Path:
    """Write the data set to `out` and return its path."""
    snrs = [float(s) for s in snrs]
    check_sizes(n_train, n_test, seconds, sample_rate, snrs, seed)
    pools = {}
    for k, (kind, directory) in enumerate((("speech", Path(speech_dir)), ("noise", Path(noise_dir)))):
        sources = find_sources(directory, seconds, kind, log)
        pools[kind] = split_files(sources, n_train, n_test, np.random.default_rng([seed, 1, k]), directory)
    leveller = Leveller(sample_rate)
    n = int(round(seconds * sample_rate))
    rows = []
    with new_dataset_dir(out, force) as tmp:
        for split, count, first in (("train", n_train, 1), ("test", n_test, n_train + 1)):
            speech_pool, noise_pool = pools["speech"][split], pools["noise"][split]
            for i in range(count):
                folder_id = f"{first + i:0{max(4, len(str(n_train + n_test)))}d}"
                label = snrs[i % len(snrs)]
                rng = np.random.default_rng([seed, int(folder_id)])
                # Speech files cycle so each is used about equally; noise files are drawn at random.
                voice, speech_offset = draw_segment(speech_pool[i % len(speech_pool)], n, sample_rate, leveller, rng)
                noise_src = noise_pool[int(rng.integers(len(noise_pool)))]
                noise, noise_offset = draw_segment(noise_src, n, sample_rate, leveller, rng)
                qv, qn, qm, gain_v, gain_n = leveller.mix(voice, noise, label)
                write_clip(tmp / split / folder_id, qv, qn, qm, sample_rate, label)
                rows.append({"folder": folder_id, "split": split, "snr": f"{label:g}",
                             "speech_file": speech_pool[i % len(speech_pool)].name, "speech_offset_s": f"{speech_offset:.6f}",
                             "noise_file": noise_src.name, "noise_offset_s": f"{noise_offset:.6f}",
                             "speech_gain": f"{gain_v:.6g}", "noise_gain": f"{gain_n:.6g}"})
        atomic_write_text(tmp / "manifest.csv", to_csv(rows))
    log(f"wrote {n_train} train + {n_test} test clips to {out} from {describe(pools)}")
    return Path(out)


def find_sources(directory: Path, seconds: float, kind: str, log=print) -> list[Source]:
    if not directory.is_dir():
        raise SepbenchError(f"{directory}: --{kind} folder does not exist")
    files = sorted(p for p in directory.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(directory).parts))
    usable, short, unreadable = [], [], []
    for p in files:
        name = p.relative_to(directory).as_posix()
        try:
            info = sf.info(str(p))
        except Exception:  # soundfile raises several types; the file is just not usable
            unreadable.append(name)
            continue
        if info.frames < math.ceil(seconds * info.samplerate):
            short.append(name)
        else:
            usable.append(Source(p, name, info.frames, info.samplerate))
    for what, names in ((f"shorter than {seconds:g} s", short), ("unreadable", unreadable)):
        if names:
            examples = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            log(f"note: {directory}: skipped {len(names)} {kind} files {what} ({examples})")
    if not usable:
        raise SepbenchError(f"{directory}: no usable {kind} audio: {len(files)} WAV/FLAC files found, "
                            f"{len(short)} shorter than {seconds:g} s, {len(unreadable)} unreadable")
    return usable


def split_files(sources: list[Source], n_train: int, n_test: int, rng, directory: Path) -> dict[str, list[Source]]:
    """Disjoint train/test file lists, sized like the clip counts, each shuffled."""
    if len(sources) < 2:
        raise SepbenchError(f"{directory}: needs at least 2 usable files so that train and test use different "
                            f"recordings, found 1 ({sources[0].name})")
    order = [sources[i] for i in rng.permutation(len(sources))]
    n_test_files = min(len(order) - 1, max(1, round(len(order) * n_test / (n_train + n_test))))
    return {"test": order[:n_test_files], "train": order[n_test_files:]}


def draw_segment(src: Source, n: int, sample_rate: int, leveller: Leveller, rng) -> tuple[np.ndarray, float]:
    """n samples at sample_rate from a random offset of `src`, avoiding near-silent stretches."""
    best = None
    for _ in range(ATTEMPTS):
        frames = min(src.frames, math.ceil(n * src.sample_rate / sample_rate))
        start = int(rng.integers(0, src.frames - frames + 1))
        try:
            data, _ = sf.read(str(src.path), start=start, frames=frames, dtype="float64", always_2d=True)
        except Exception as exc:
            raise SepbenchError(f"{src.path}: cannot read audio ({' '.join(str(exc).split())})") from None
        x = resample(data.mean(axis=1), src.sample_rate, sample_rate)
        x = np.pad(x[:n], (0, max(0, n - len(x))))  # rounding can leave one sample short
        loudness = leveller.loudness(x)
        if best is None or loudness > best[0]:
            best = (loudness, x, start / src.sample_rate)
        if loudness > QUIET_LUFS:
            break
    return best[1], best[2]


def describe(pools: dict) -> str:
    return " and ".join(f"{len(p['train'])}/{len(p['test'])} train/test {kind} files" for kind, p in pools.items())
