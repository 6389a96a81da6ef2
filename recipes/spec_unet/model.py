"""Spectrogram U-Net of Jansson et al. (ISMIR 2017), with two sigmoid mask outputs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 5, stride=2, padding=2),
                         nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2))


def _up(c_in: int, c_out: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 5, stride=2, padding=2, output_padding=1),
                         nn.BatchNorm2d(c_out), nn.ReLU(), nn.Dropout2d(dropout))


class UNetMasker(nn.Module):
    """Magnitude [B, F, T] -> masks [B, 2, F, T].

    Encoder: `depth` strided 5x5 convolutions (BN, leaky ReLU 0.2), channels doubling from `base`.
    The input is the magnitude, raised to `input_power` (1 in the paper), over its maximum.
    Decoder: 5x5 transposed convolutions (BN, ReLU), dropout in the first `n_dropout` layers, each
    fed the previous output concatenated with the encoder output of the same scale; the last layer
    gives one sigmoid mask per source.
    """

    def __init__(self, base: int = 16, depth: int = 6, dropout: float = 0.5, n_dropout: int = 3,
                 input_power: float = 1.0):
        super().__init__()
        self.input_power = input_power
        chans = [base * 2 ** i for i in range(depth)]
        self.down = nn.ModuleList(_down(c_in, c_out) for c_in, c_out in zip([1] + chans[:-1], chans))
        ups = []
        for i in reversed(range(1, depth)):
            c_in = chans[i] if i == depth - 1 else 2 * chans[i]
            ups.append(_up(c_in, chans[i - 1], dropout if len(ups) < n_dropout else 0.0))
        self.up = nn.ModuleList(ups)
        self.last = nn.ConvTranspose2d(2 * chans[0], 2, 5, stride=2, padding=2, output_padding=1)
        self.multiple = 2 ** depth

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        b, f, t = magnitude.shape
        # The paper scales the magnitude to [0, 1]; per-utterance max keeps the input gain-free.
        # input_power < 1 compresses the magnitude first, so quiet bins are not all near zero.
        x = magnitude.clamp_min(1e-8) ** self.input_power if self.input_power != 1.0 else magnitude
        x = x / x.amax(dim=(1, 2), keepdim=True).clamp_min(1e-8)
        x = F.pad(x.unsqueeze(1), (0, -t % self.multiple, 0, -f % self.multiple))
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        skips.pop()
        for layer in self.up:
            x = torch.cat([layer(x), skips.pop()], dim=1) if skips else layer(x)
        return torch.sigmoid(self.last(x))[:, :, :f, :t]
