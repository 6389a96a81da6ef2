"""Length handling for asteroid encoder/masker/decoder models (lstm_tasnet, dprnn, dcunet, dccrnet).

Asteroid's encoders frame without padding and its base model zero-fills the output up to the input
length, so the first `kernel - stride` samples are covered by fewer frames than the rest and the
last partial frame comes back as zeros. Padding `kernel - stride` samples on both sides (plus a
few on the right so the frames fit exactly) gives every input sample full overlap; the estimates
are then cropped to the input's span, so any input length T maps to [B, 2, T]. The left pad is a
whole number of hops whenever the kernel is, which keeps the frame grid of chunked separation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def frame_padding(n: int, kernel: int, stride: int, min_frames: int = 1) -> tuple[int, int]:
    """(left, right) zero padding for n samples so frames of `kernel`/`stride` cover each sample
    fully, with at least `min_frames` frames."""
    left = kernel - stride
    total = max(n + 2 * left, kernel + (min_frames - 1) * stride)
    right = total - n - left + (-(total - kernel)) % stride
    return left, right


class FullFrames:
    """Mixin placed before an asteroid `BaseEncoderMaskerDecoder` subclass: [B, T] -> [B, n_src, T].
    A masker that needs several frames (unpadded time convolutions) sets `min_frames`."""

    min_frames = 1

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        fb = self.encoder.filterbank
        n = wav.shape[-1]
        left, right = frame_padding(n, fb.kernel_size, fb.stride, self.min_frames)
        out = super().forward(F.pad(wav, (left, right)))
        return out[..., left:left + n]
