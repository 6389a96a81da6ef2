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
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from recipes.stft_masking import make_stft, pad_to_hops, stft_sizes

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


def kind(name: str) -> str:
    return REFERENCES[name][0]


def estimate(name: str, mix: np.ndarray, sources: np.ndarray, sample_rate: int) -> np.ndarray:
    """Estimates [2, T] (voice, noise) of reference `name` for one clip."""
    mix, sources = np.asarray(mix), np.asarray(sources)
    if not (mix.ndim == 1 and sources.shape == (2, mix.shape[0])):
        raise ValueError(f"need a mixture [T] and sources [2, T], got {mix.shape} and {sources.shape}")
    return REFERENCES[name][1](mix, sources, sample_rate)
