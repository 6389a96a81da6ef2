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


# What asteroid-encoder recipes declare to the registry (recipes/__init__.py), read from the
# filterbank because asteroid's wrappers (the gated encoder, SuDO-RM-RF's padder) do not all
# repeat its sizes.
def filterbank_stride(model) -> int:
    """Hop of the learned or STFT filterbank: chunks started on it see the whole signal's frames."""
    return model.encoder.filterbank.stride


def filterbank_kernel(model) -> int:
    """A filterbank cannot frame fewer samples than its kernel (conv1d refuses them)."""
    return model.encoder.filterbank.kernel_size


def full_frames_min_length(model: FullFrames) -> int:
    """Shortest input of a FullFrames model whose padding is a single path: below it forward's
    max() pads up to `min_frames` frames, with zeros, so padding the input with zeros to this
    length first gives the same samples and the same output, and a traced export (which records
    one branch of the max()) stays right. Never less than the kernel, the length separation has
    always padded to."""
    fb = model.encoder.filterbank
    return max(fb.kernel_size, fb.kernel_size + (model.min_frames - 1) * fb.stride - 2 * (fb.kernel_size - fb.stride))
