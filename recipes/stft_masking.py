"""Shared base of the STFT magnitude-masking recipes (lstm_mask, spec_unet): asteroid's STFT
filterbank as encoder/decoder, a masker that sees the magnitude and returns a voice and a noise
mask, both masks applied to the real AND imaginary halves (mixture phase kept)."""
from __future__ import annotations

import math

import numpy as np
import torch
from asteroid.models.base_models import BaseEncoderMaskerDecoder
from asteroid_filterbanks import STFTFB, Decoder, Encoder
from asteroid_filterbanks.stft_fb import perfect_synthesis_window
from asteroid_filterbanks.transforms import apply_mag_mask, mag


def stft_sizes(sample_rate: int, win_ms: float, hop_ms: float) -> tuple[int, int]:
    """Window (a power of two, for speed) and hop in samples, from durations: the same config
    then means the same time/frequency resolution at any sample rate."""
    n_fft = 2 ** max(3, round(math.log2(win_ms * sample_rate / 1000)))
    # The hop divides the window by a power of two (at least 2) so overlap-add is exact.
    ratio = n_fft / max(1.0, hop_ms * sample_rate / 1000)
    return n_fft, n_fft >> max(1, round(math.log2(ratio)))


def pad_to_hops(x: torch.Tensor, hop: int) -> torch.Tensor:
    """Right-pad to a whole number of hops: otherwise make_stft's decoder drops the last samples."""
    return torch.nn.functional.pad(x, (0, (-(x.shape[-1] - hop)) % hop))


def make_stft(sample_rate: int, win_ms: float, hop_ms: float) -> tuple[Encoder, Decoder]:
    """STFT pair with sqrt-Hann analysis and its perfect-synthesis window; padding of one window
    minus a hop on both sides so every output sample is covered by full overlap."""
    n_fft, hop = stft_sizes(sample_rate, win_ms, hop_ms)
    window = np.hanning(n_fft + 1)[:-1] ** 0.5
    pad = n_fft - hop
    enc = Encoder(STFTFB(n_fft, n_fft, hop, window=window, sample_rate=sample_rate), padding=pad)
    dec = Decoder(STFTFB(n_fft, n_fft, hop, window=perfect_synthesis_window(window, hop),
                         sample_rate=sample_rate), padding=pad)
    return enc, dec


class STFTMaskModel(BaseEncoderMaskerDecoder):
    """`masker` maps a magnitude [B, F, frames] to masks [B, 2, F, frames] in [0, 1]."""

    def __init__(self, masker: torch.nn.Module, sample_rate: int, win_ms: float, hop_ms: float):
        enc, dec = make_stft(sample_rate, win_ms, hop_ms)
        super().__init__(enc, masker, dec)

        self.n_fft, self.hop = stft_sizes(sample_rate, win_ms, hop_ms)

    @property
    def n_freq(self) -> int:
        return self.encoder.n_feats_out // 2

    def forward_encoder(self, wav: torch.Tensor) -> torch.Tensor:
        return super().forward_encoder(pad_to_hops(wav, self.hop))

    def forward_masker(self, tf_rep: torch.Tensor) -> torch.Tensor:
        return self.masker(mag(tf_rep))

    def apply_masks(self, tf_rep: torch.Tensor, est_masks: torch.Tensor) -> torch.Tensor:
        return apply_mag_mask(tf_rep.unsqueeze(1), est_masks)
