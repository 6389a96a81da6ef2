"""Wave-U-Net (Stoller, Ewert & Dixon, ISMIR 2018), written in torch for 2 fixed-order outputs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class WaveUNet(nn.Module):
    """Mixture [B, T] -> (voice, noise) [B, 2, T].

    `n_layers` downsampling blocks: a 1-D convolution (kernel `down_kernel`, `n_filters * i`
    channels at level i, leaky ReLU) whose output is kept for the skip connection, then decimation
    (every other sample, no filter). A bottleneck convolution. `n_layers` upsampling blocks: linear
    interpolation by 2, concatenation with the skip of the same level, a 1-D convolution (kernel
    `up_kernel`, `n_filters * i` channels, leaky ReLU). The mixture is concatenated to the last
    features and a 1x1 convolution gives the outputs (tanh). With `difference_output` only the voice
    is estimated and the noise is the mixture minus the voice (the paper's difference output).

    Deviation: convolutions use 'same' padding and the input is zero-padded to a multiple of
    2 ** n_layers (then cropped), where the paper uses valid convolutions on an input with context.
    """

    def __init__(self, n_layers: int = 12, n_filters: int = 24, down_kernel: int = 15, up_kernel: int = 5,
                 difference_output: bool = True):
        super().__init__()
        for k, name in ((down_kernel, "down_kernel"), (up_kernel, "up_kernel")):
            if k < 1 or k % 2 == 0:
                raise ValueError(f"{name} must be odd for 'same' padding, got {k}")
        self.n_layers, self.difference_output = n_layers, difference_output
        chans = [1] + [n_filters * i for i in range(1, n_layers + 2)]
        self.down = nn.ModuleList(nn.Conv1d(chans[i], chans[i + 1], down_kernel, padding=down_kernel // 2)
                                  for i in range(n_layers))
        self.bottleneck = nn.Conv1d(chans[n_layers], chans[n_layers + 1], down_kernel, padding=down_kernel // 2)
        # Level i (1-based) upsampling conv sees the upsampled features of level i+1 plus the skip.
        self.up = nn.ModuleList(nn.Conv1d(chans[i + 1] + chans[i], chans[i], up_kernel, padding=up_kernel // 2)
                                for i in reversed(range(1, n_layers + 1)))
        self.out = nn.Conv1d(chans[1] + 1, 1 if difference_output else 2, 1)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        n = mix.shape[-1]
        x = F.pad(mix.unsqueeze(1), (0, -n % 2 ** self.n_layers))
        inp, skips = x, []
        for conv in self.down:
            x = F.leaky_relu(conv(x), 0.2)
            skips.append(x)
            x = x[..., ::2]
        x = F.leaky_relu(self.bottleneck(x), 0.2)
        for conv in self.up:
            x = F.interpolate(x, scale_factor=2, mode="linear", align_corners=False)
            x = F.leaky_relu(conv(torch.cat([x, skips.pop()], dim=1)), 0.2)
        est = torch.tanh(self.out(torch.cat([x, inp], dim=1)))[..., :n]
        if self.difference_output:
            est = torch.cat([est, mix.unsqueeze(1) - est], dim=1)
        return est
