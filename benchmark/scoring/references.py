"""Reference rows scored beside the trained models on the same test set.

- `mixture` (kind "reference"): the unprocessed mixture as the estimate of both sources. Its
  scores are the baseline's, read off it rather than computed again (metrics.mixture_scores:
  every metric is deterministic, tested equal to scoring it), so its improvements are exactly 0
  and it anchors every other row.
- `oracle_irm`, `oracle_ibm`, `oracle_wiener` (kind "oracle"): masks computed from the true
  stems, applied to the MIXTURE's STFT (the same 32 ms / 8 ms sqrt-Hann STFT as lstm_mask's
  default), keeping the mixture phase. They bound what a magnitude-masking model on this STFT can
  reach, as in the Conv-TasNet paper's table (Luo & Mesgarani 2019, eqs. 14-16):
    IRM    = |V| / (|V| + |N|)          (magnitude ratio, not the sqrt-power-ratio variant)
    IBM    = 1 where |V| > |N|, else 0  (noise gets the complement)
    Wiener = |V|^2 / (|V|^2 + |N|^2)
  Stored stems need not sum to the mixture (data sets keep stems at other gains), so the stems
  are first scaled by their least-squares gains inside the mixture; for mix = voice + noise the
  gains are 1 and this changes nothing.
- the pretrained enhancers of benchmark/baselines (kind "pretrained", `evaluate --pretrained`):
  estimated by name here too, so they run in the same worker processes, per clip, on one torch
  thread (as a trained model's CPU forward pass: the same bits with any --jobs, and an RTF of one
  thread); each adapter returns (voice, mixture - voice).
"""
from __future__ import annotations

import contextlib
import functools

import numpy as np
import torch

from recipes.stft_masking import make_stft, pad_to_hops, stft_sizes

from ..baselines import domain_note
from .metrics import mixture_gains, one_blas_thread

WIN_MS, HOP_MS = 32.0, 8.0
MIXTURE = "mixture"  # its rows are the baseline's (scoring/workers.mixture_rows), never scored again


def _mixture(mix: np.ndarray, sources: np.ndarray, sample_rate: int) -> np.ndarray:
    return np.stack([mix, mix])


class _STFT:
    """Forward/inverse STFT in float64, padded exactly as STFTMaskModel pads its input."""

    def __init__(self, sample_rate: int):
        enc, dec = make_stft(sample_rate, WIN_MS, HOP_MS)
        self.enc, self.dec = enc.double().eval(), dec.double().eval()
        self.hop = stft_sizes(sample_rate, WIN_MS, HOP_MS)[1]

    @torch.no_grad()
    def forward(self, x: np.ndarray) -> torch.Tensor:
        """[C, T] -> complex [C, F, frames] (asteroid stacks real then imaginary halves)."""
        t = pad_to_hops(torch.from_numpy(np.asarray(x, np.float64)), self.hop)
        spec = self.enc(t[:, None])
        half = spec.shape[-2] // 2
        return torch.complex(spec[..., :half, :], spec[..., half:, :])

    @torch.no_grad()
    def inverse(self, spec: torch.Tensor, length: int) -> np.ndarray:
        stacked = torch.cat([spec.real, spec.imag], dim=-2)
        return self.dec(stacked)[:, 0, :length].numpy()


@functools.lru_cache(maxsize=None)
def _stft(sample_rate: int) -> _STFT:
    return _STFT(sample_rate)


def _masks(name: str, v: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Voice mask from stem magnitudes; bins where both stems are silent split evenly."""
    if name == "oracle_ibm":
        return (v > n).astype(np.float64)
    p = 1 if name == "oracle_irm" else 2
    num, den = v ** p, v ** p + n ** p
    return np.divide(num, den, out=np.full_like(den, 0.5), where=den > 0)


def _oracle(name: str):
    @one_blas_thread  # the stems' least-squares gains: the same bits whatever the caller's threads
    def estimate(mix: np.ndarray, sources: np.ndarray, sample_rate: int) -> np.ndarray:
        stft = _stft(sample_rate)
        scaled = mixture_gains(sources, mix)[:, None] * np.asarray(sources, np.float64)
        spec = stft.forward(np.stack([np.asarray(mix, np.float64), scaled[0], scaled[1]]))
        mag = spec[1:].abs().numpy()
        voice_mask = torch.from_numpy(_masks(name, mag[0], mag[1]))
        masked = torch.stack([spec[0] * voice_mask, spec[0] * (1 - voice_mask)])
        return stft.inverse(masked, mix.shape[-1]).astype(np.float32)
    return estimate


# name -> (kind, estimate(mix [T], sources [2, T], sample_rate) -> [2, T])
REFERENCES = {
    MIXTURE: ("reference", _mixture),
    "oracle_irm": ("oracle", _oracle("oracle_irm")),
    "oracle_ibm": ("oracle", _oracle("oracle_ibm")),
    "oracle_wiener": ("oracle", _oracle("oracle_wiener")),
}


def names() -> list[str]:
    return list(REFERENCES)


@functools.lru_cache(maxsize=None)
def _baseline(name: str):
    """The registered pretrained enhancer `name`, looked up once per process (its weights load
    with it, not on every clip)."""
    # Late: the enhancers' packages are an optional extra, imported only by a run that uses them.
    from .. import baselines

    found = baselines.available()
    if name not in found:
        raise KeyError(f"{name!r} is neither a reference nor an installed pretrained enhancer")
    return found[name]


def pretrained_facts(baseline, rates=()) -> dict:
    """What the leaderboard and the listening page show about a pretrained row, as plain values
    (they are written into files), all from its registration (baselines.register): only an
    installed package of the declared version is available, so `source` keys its cached rows.
    rates: the input's sample rates, for the out-of-domain note (baselines.domain_note)."""

    return {"sample_rate": baseline.sample_rate, "delay": int(baseline.delay), "licence": str(baseline.licence),
            "package": str(baseline.package), "version": str(baseline.version),
            "source": f"{baseline.package}=={baseline.version}", "n_params": baseline.parameters,
            "out_of_domain": domain_note(str(baseline.out_of_domain), baseline.sample_rate, rates)}


@contextlib.contextmanager
def one_torch_thread():
    """Torch CPU work on one thread: a scoring task (a model's forward, the oracles' STFT;
    scoring/workers.py) or a pretrained enhancer's forward.
    How a float reduction is split across threads changes the last bits of an estimate (about
    1e-8 for lstm_mask and conv_tasnet between 1 and 2 threads), so a score would depend on
    --jobs (in-process with jobs=1, one thread per worker otherwise). And parallelism comes from
    processes (workers or shards): two --jobs 1 shards side by side with torch's 2 OpenMP
    threads each took 1.1-1.5x the wall time of 1-thread ones on 2 cores (idle threads spin).
    The metrics run on numpy (SDR too: fast_bss_eval's numpy backend), not on torch."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _pretrained(name: str, mix: np.ndarray, sample_rate: int) -> np.ndarray:
    baseline = _baseline(name)
    with one_torch_thread():
        est = baseline.separate(np.asarray(mix, np.float32), sample_rate)
    return np.asarray(est, np.float32)


def kind(name: str) -> str:
    return REFERENCES[name][0]


def estimate(name: str, mix: np.ndarray, sources: np.ndarray, sample_rate: int) -> np.ndarray:
    """Estimates [2, T] (voice, noise) of reference `name` (or pretrained enhancer) for one clip."""
    mix, sources = np.asarray(mix), np.asarray(sources)
    if not (mix.ndim == 1 and sources.shape == (2, mix.shape[0])):
        raise ValueError(f"need a mixture [T] and sources [2, T], got {mix.shape} and {sources.shape}")
    if name not in REFERENCES:
        return _pretrained(name, mix, sample_rate)
    return REFERENCES[name][1](mix, sources, sample_rate)


def enhance(name: str, mix: np.ndarray, sample_rate: int) -> np.ndarray:
    """A pretrained enhancer's estimates [2, T] of a recording without stems (score-unlabelled)."""
    mix = np.asarray(mix)
    if mix.ndim != 1:
        raise ValueError(f"need a mixture [T], got {mix.shape}")
    return _pretrained(name, mix, sample_rate)
