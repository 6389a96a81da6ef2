"""Fixed-order training losses on waveforms [B, 2, T] (0 = voice, 1 = noise). Never PIT: a model
that swaps its outputs must be penalised, not forgiven."""
from __future__ import annotations

import torch
from torch import nn

from .errors import SepbenchError
from .stft_masking import stft_sizes


def si_sdr(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR in dB over the last axis (zero-mean signals). Always in float32: under
    bf16/fp16 autocast the model's output is half precision, whose 8-bit mantissa makes energy sums
    over thousands of samples, and so the loss and its gradient, far too coarse."""
    est, ref = est.float(), ref.float()
    est = est - est.mean(dim=-1, keepdim=True)
    ref = ref - ref.mean(dim=-1, keepdim=True)
    alpha = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + eps)
    target = alpha * ref
    return 10 * torch.log10((target.pow(2).sum(-1) + eps) / ((est - target).pow(2).sum(-1) + eps))


class NegSISDR(nn.Module):
    """-(SI-SDR_voice + w * SI-SDR_noise) / (1 + w), averaged over the batch."""

    measure = staticmethod(si_sdr)

    def __init__(self, noise_weight: float = 1.0):
        super().__init__()
        self.noise_weight = noise_weight

    def forward(self, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        s = self.measure(est, ref)
        return -((s[:, 0] + self.noise_weight * s[:, 1]) / (1 + self.noise_weight)).mean()


def snr(est: torch.Tensor, ref: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Plain SNR in dB over the last axis: unlike SI-SDR it punishes a wrong scale or a DC offset."""
    est, ref = est.float(), ref.float()  # float32 under autocast too (see si_sdr)
    return 10 * torch.log10((ref.pow(2).sum(-1) + eps) / ((ref - est).pow(2).sum(-1) + eps))


class NegSNR(NegSISDR):
    """-(SNR_voice + w * SNR_noise) / (1 + w). For models whose output level is not tied to the
    mixture: SI-SDR leaves scale and DC free, and a Wave-U-Net trained on it returned a voice 17x
    too quiet on a -0.32 DC offset (SI-SDRi +7 dB, SDRi -23 dB)."""

    measure = staticmethod(snr)


class SpecL1(nn.Module):
    """L1 between estimated and true STFT magnitudes (Jansson et al. 2017), computed from the
    waveforms so every recipe keeps the same (waveform in, waveforms out) contract."""

    def __init__(self, sample_rate: int, win_ms: float, hop_ms: float, noise_weight: float = 1.0):
        super().__init__()
        self.n_fft, self.hop = stft_sizes(sample_rate, win_ms, hop_ms)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.noise_weight = noise_weight

    def _mag(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stft(x.reshape(-1, x.shape[-1]), self.n_fft, self.hop, window=self.window,
                          return_complex=True).abs().view(*x.shape[:-1], -1, x.shape[-1] // self.hop + 1)

    def forward(self, est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        est, ref = est.float(), ref.float()  # float32 under autocast too (see si_sdr)
        err = (self._mag(est) - self._mag(ref)).abs().mean(dim=(-2, -1))
        return ((err[:, 0] + self.noise_weight * err[:, 1]) / (1 + self.noise_weight)).mean()


def build_loss(cfg: dict, sample_rate: int) -> nn.Module:
    name = cfg["name"]
    if name == "neg_sisdr":
        return NegSISDR(cfg["noise_weight"])
    if name == "neg_snr":
        return NegSNR(cfg["noise_weight"])
    if name == "spec_l1":
        return SpecL1(sample_rate, cfg["stft_win_ms"], cfg["stft_hop_ms"], cfg["noise_weight"])
    raise SepbenchError(f"unknown loss {name!r}; choose neg_sisdr, neg_snr or spec_l1")
