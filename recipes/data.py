"""The folder data set as training and evaluation see it: train/val splits and the torch
Dataset of (mixture, sources) examples, crops and dynamic remixes. The folder format itself
(names, reading, writing) is recipes.folder. Sources come in a fixed order (0 = voice,
1 = noise); the mixture is read as stored, nothing is rescaled here.
"""
from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from .audio import to_mono
from .errors import SepbenchError
from .folder import Clip, clip_lengths, load_split, train_split_problem
from .mixing import SILENT_POWER, mixture_gains, random_eq, remix, resample_to, speed_crop_length


def split_train_val(clips: list[Clip], fraction: float, seed: int) -> tuple[list[Clip], list[Clip]]:
    """Seeded validation split, stratified by SNR label: each label gives round(fraction * n)."""
    if not 0 <= fraction < 1:
        raise SepbenchError(f"val_fraction must be in [0, 1), got {fraction}")
    groups: dict[float, list[Clip]] = defaultdict(list)
    for c in clips:
        groups[c.snr_label].append(c)
    rng = np.random.default_rng(seed)
    val_ids: set[str] = set()
    # round(fraction * n) clips in all (at least 1), shared among the labels by largest remainder:
    # rounding per label gave 0 of 40 when each label held few clips.
    total = max(1, int(round(fraction * len(clips)))) if fraction > 0 and len(clips) >= 2 else 0
    labels = sorted(groups)
    quota = {label: fraction * len(groups[label]) for label in labels}
    counts = {label: int(quota[label]) for label in labels}
    for label in sorted(labels, key=lambda lb: (-(quota[lb] - counts[lb]), lb))[:max(0, total - sum(counts.values()))]:
        counts[label] += 1
    for label in labels:
        group = sorted(groups[label], key=lambda c: c.id)
        val_ids.update(group[i].id for i in rng.permutation(len(group))[:counts[label]])
    train = [c for c in clips if c.id not in val_ids]
    val = [c for c in clips if c.id in val_ids]
    return train, val


def data_splits(data_dir: str | Path, val_fraction: float, seed: int) -> dict[str, list[Clip]]:
    """train/val clips of a data set root: `val/` when present, else carved from `train/`."""
    root = Path(data_dir)
    if root.exists() and not root.is_dir():
        raise SepbenchError(f"{root} is a file, not a data folder (one holding train/)")
    if not root.is_dir():
        raise SepbenchError(f"{root}: data folder does not exist")
    train = load_split(root / "train")
    if (root / "val").is_dir():
        return {"train": train, "val": load_split(root / "val")}
    problem = train_split_problem(len(train), has_val=False)
    if problem:
        raise SepbenchError(f"{root / 'train'}: {problem}")
    train, val = split_train_val(train, val_fraction, seed)
    if not val:
        raise SepbenchError(f"{root / 'train'}: too few clips to carve a validation split")
    return {"train": train, "val": val}


SIGNALS = 3  # a training example holds the mixture and its two sources


def batch_bytes(batch: int, segment: int, workers: int) -> int:
    """A floor on the host memory the training loader holds at once: float32 examples, each
    batch twice (its items, then their collated copy), and the batches in flight: the one trained
    on plus 2 prefetched per loader worker (DataLoader's prefetch_factor). The model's
    activations come on top, so a batch over this floor cannot fit."""
    return 2 * batch * segment * SIGNALS * 4 * (1 + 2 * workers)


def memory_bytes() -> int:
    """This machine's physical memory."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_limits(train_set: FolderDataset, segment_seconds: float, batch: int, workers: int,
                 processes: int = 1) -> None:
    """Refuse, before any run folder is written, a segment longer than every training clip (all
    padding: it died allocating terabytes in the first batch) and a batch over batch_bytes'
    floor of memory, for each of the `processes` training on this machine (DDP ranks: each has
    its own loader). From the lengths the data set read already: no audio is opened again."""
    where, rate, segment = train_set.clips[0].folder.parent, train_set.sample_rate, train_set.segment
    longest = max(train_set.lengths)
    if segment > longest:
        raise SepbenchError(f"data.segment_seconds={segment_seconds:g} is longer than every training clip in {where} "
                            f"(longest {longest / rate:g} s): every crop would be mostly padding; lower data.segment_seconds")
    items = min(batch, len(train_set))  # a data set smaller than a batch is one batch (sampling.py)
    need, have = processes * batch_bytes(items, segment, workers), memory_bytes()
    if need > have:
        raise SepbenchError(f"optim.batch_size={batch}: {items} segments of {segment_seconds:g} s from {where} need at "
                            f"least {need / 2**30:.1f} GiB of memory with data.num_workers={workers}"
                            f"{f' in each of {processes} processes' if processes > 1 else ''}, more than this "
                            f"machine's {have / 2**30:.1f} GiB; lower optim.batch_size or data.segment_seconds")


class FolderDataset(torch.utils.data.Dataset):
    """Mixture [T] and sources [2, T] (voice, noise).

    segment=None: whole clips, items are (mix, sources, meta).
    segment=N samples: training mode, items are (mix, sources) cut at a random offset drawn from
    (seed, epoch, index), so every epoch sees new crops yet a rerun sees the same ones.
    Clips shorter than the segment are zero-padded at the end (short_policy="pad") or left out
    of the data set at construction (short_policy="skip").
    """

    def __init__(self, clips, segment: int | None = None, seed: int = 0,
                 short_policy: str = "pad", downmix: bool = False, dynamic_mixing: bool = False,
                 babble: float = 0.0, babble_voices: tuple[int, int] = (3, 6), eq: float = 0.0,
                 speed: float = 0.0):
        if short_policy not in ("pad", "skip"):
            raise SepbenchError(f"short_policy must be 'pad' or 'skip', got {short_policy!r}")
        info = [clip_lengths(c) for c in clips]
        rates = {sr for _, sr in info}
        if len(rates) > 1:
            raise SepbenchError(f"{clips[0].folder.parent}: clips have different sample rates {sorted(rates)}")
        self.sample_rate = rates.pop() if rates else None
        keep = [i for i, (n, _) in enumerate(info) if n > 0 and (segment is None or short_policy == "pad" or n >= segment)]
        self.clips = [clips[i] for i in keep]
        self.lengths = [info[i][0] for i in keep]
        if not self.clips:
            longest = max((n for n, _ in info), default=0)
            if segment is not None and 0 < longest < segment:
                raise SepbenchError(f"{clips[0].folder.parent}: no usable clips: the segment ({segment / self.sample_rate:g} s) "
                                    f"is longer than every clip (longest {longest / self.sample_rate:g} s), and "
                                    "short_policy skip leaves them all out")
            raise SepbenchError(f"no usable clips (segment {segment} samples, short_policy {short_policy})")
        self.segment, self.seed, self.downmix, self.epoch = segment, seed, downmix, 0
        if dynamic_mixing and (segment is None or len(self.clips) < 2):
            raise SepbenchError("dynamic mixing needs training crops (a segment length) and at least 2 clips")
        self.dynamic_mixing = dynamic_mixing
        if babble and not dynamic_mixing:
            raise SepbenchError("data.babble needs data.dynamic_mixing: true (babble replaces a remixed example's noise)")
        low, high = babble_voices
        if babble and not 1 <= low <= high <= len(self.clips) - 1:
            raise SepbenchError(f"babble of {low}-{high} voices needs at least {high + 1} training clips, "
                                f"got {len(self.clips)}")
        self.babble, self.babble_voices = babble, (low, high)
        if (eq or speed) and not dynamic_mixing:
            raise SepbenchError("data.eq and data.speed need data.dynamic_mixing: true (they alter a remixed example's stems)")
        if not 0 <= speed < 1:
            raise SepbenchError(f"data.speed must be in [0, 1), got {speed}")
        self.eq, self.speed = eq, speed
        labels = [c.snr_label for c in self.clips]
        self.snr_range = (min(labels), max(labels))
        self._gains: dict[int, np.ndarray] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips)

    def _read(self, path: Path, start: int, stop: int) -> np.ndarray:
        data, _ = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
        return to_mono(data, path, self.downmix)

    def _crop(self, index: int, rng, length: int | None = None) -> tuple[int, int]:
        n, length = self.lengths[index], length or self.segment
        if length is None:
            return 0, n
        start = int(rng.integers(0, n - length + 1)) if n > length else 0
        return start, min(n, start + length)

    def _fit(self, x: np.ndarray) -> np.ndarray:
        return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, self.segment - x.shape[-1])]) if self.segment else x

    def _stem_gains(self, index: int) -> np.ndarray:
        """Gains that bring the stored stems of clip `index` to their level in its mixture."""
        if index not in self._gains:
            clip, n = self.clips[index], self.lengths[index]
            stems = np.stack([self._read(clip.voice, 0, n), self._read(clip.noise, 0, n)])
            self._gains[index] = mixture_gains(stems, self._read(clip.mix, 0, n))
        return self._gains[index]

    def _remixed(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This clip's voice, another clip's noise, an SNR drawn from the labels' range: all from
        (seed, epoch, index), so a rerun or a resumed run sees the same examples."""
        rng = np.random.default_rng((self.seed, self.epoch, index, 1))
        other = int(rng.integers(len(self.clips) - 1))
        other += other >= index
        snr = float(rng.uniform(*self.snr_range))
        voice, noise = self._stem(index, 0, rng), self._stem(other, 1, rng)
        if self.babble and rng.uniform() < self.babble:
            noise = self._babble(index, rng)
        mix, sources = remix(voice, noise, snr)
        return torch.from_numpy(mix), torch.from_numpy(sources)

    def _stem(self, index: int, which: int, rng) -> np.ndarray:
        """A random crop of stem `which` (0 voice, 1 noise) of clip `index` at its level in its own
        mixture; played faster or slower (data.speed) and coloured (data.eq) when asked."""
        path = (self.clips[index].voice, self.clips[index].noise)[which]
        if self.speed:
            length, up, down = speed_crop_length(self.segment, rng, self.speed)
            x = self._read(path, *self._crop(index, rng, length))
            x = resample_to(np.pad(x, (0, length - len(x))), up, down, self.segment)
        else:
            x = self._fit(self._read(path, *self._crop(index, rng)))
        if self.eq and rng.uniform() < self.eq:
            x = random_eq(x, rng)
        return x * self._stem_gains(index)[which]

    def _babble(self, index: int, rng) -> np.ndarray:
        """Other clips' voices summed, each at its own level within +-3 dB: a noise of talkers that
        the stored noise recordings hold too few of for a model to learn to ignore a voice."""
        count = int(rng.integers(self.babble_voices[0], self.babble_voices[1] + 1))
        others = rng.choice(len(self.clips) - 1, size=count, replace=False)
        talkers = np.zeros(self.segment, np.float64)
        for other in others + (others >= index):
            voice = self._fit(self._read(self.clips[other].voice, *self._crop(int(other), rng))).astype(np.float64)
            power = float(np.mean(voice**2))
            if power > SILENT_POWER:
                talkers += voice / np.sqrt(power) * 10.0 ** (rng.uniform(-3, 3) / 20)
        return talkers

    def __getitem__(self, index: int):
        if self.dynamic_mixing:
            return self._remixed(index)
        clip = self.clips[index]
        start, stop = self._crop(index, np.random.default_rng((self.seed, self.epoch, index)))
        mix = self._fit(self._read(clip.mix, start, stop))
        sources = self._fit(np.stack([self._read(clip.voice, start, stop), self._read(clip.noise, start, stop)]))
        mix, sources = torch.from_numpy(mix), torch.from_numpy(sources)
        if self.segment is not None:
            return mix, sources
        meta = {"id": clip.id, "snr_label": clip.snr_label, "sample_rate": self.sample_rate, "path": str(clip.folder)}
        return mix, sources, meta
