import math

import numpy as np
import torch
from asteroid import complex_nn
from asteroid.masknn.base import BaseDCUMaskNet
from asteroid.masknn.convolutional import DCUNetComplexDecoderBlock, DCUNetComplexEncoderBlock
from asteroid.masknn.recurrent import DCCRMaskNet, DCCRMaskNetRNN
from asteroid.models import DCCRNet

from .. import register
from ..errors import SepbenchError
from ..framing import FullFrames, filterbank_stride, full_frames_min_length

KERNEL, STRIDE, PAD, OUT_PAD = (5, 2), (2, 1), (2, 0), (1, 0)  # (freq, time), as in the paper


class CastDCCRMaskNet(DCCRMaskNet):
    """asteroid's DCCRMaskNet, built from a list of (complex) channel counts.

    The build bug: asteroid 0.7.0's `DCCRMaskNet.__init__` gives the complex LSTM its input size
    as `np.prod(...)`, a numpy int64, which `torch.nn.LSTM` refuses ("input_size should be of type
    int"), so no DCCRNet can be built. This `__init__` is asteroid's with that one value cast to
    int; the layers and the forward pass are asteroid's own.
    """

    @classmethod
    def default_architecture(cls, architecture: str, n_src: int = 1, channels=(16, 32, 64, 128, 128, 128),
                             **kwargs):
        if architecture != "DCCRN-CL":
            raise SepbenchError(f"dccrnet: only the DCCRN-CL architecture is built here, not {architecture!r}")
        chans = [1, *channels]
        encoders = [(chans[i], chans[i + 1], KERNEL, STRIDE, PAD) for i in range(len(channels))]
        decoders = [(2 * chans[i + 1], chans[i] if i else n_src, KERNEL, STRIDE, PAD, OUT_PAD)
                    for i in reversed(range(len(channels)))]
        return cls(encoders, decoders, **kwargs)

    def __init__(self, encoders, decoders, n_freqs, rnn_hidden: int = 128, rnn_layers: int = 2, **kwargs):
        self.encoders_stride_product = np.prod([enc[3] for enc in encoders], axis=0)
        freq_prod, _ = self.encoders_stride_product
        rnn_in = int(encoders[-1][1] * math.ceil(n_freqs / freq_prod))  # the cast
        BaseDCUMaskNet.__init__(
            self,
            encoders=[*(DCUNetComplexEncoderBlock(*args, activation="prelu") for args in encoders),
                      DCCRMaskNetRNN(rnn_in, hid_size=rnn_hidden, n_layers=rnn_layers)],
            decoders=[torch.nn.Identity(),
                      *(DCUNetComplexDecoderBlock(*args, activation="prelu") for args in decoders[:-1])],
            output_layer=complex_nn.ComplexConvTranspose2d(*decoders[-1]),
            **kwargs,
        )


class PaddedDCCRNet(FullFrames, DCCRNet):
    """asteroid's DCCRNet on the cast mask net, with full-overlap padding (any length in, same out)."""

    masknet_class = CastDCCRMaskNet


@register("dccrnet", "DCCRN-CL (Hu et al. 2020): complex conv encoder/decoder with a complex LSTM, complex ratio masks",
          frame_stride=filterbank_stride, min_length=full_frames_min_length,
          cannot_export={"onnx": "ONNX has no complex tensors"})  # asteroid's complex layers (aten::view_as_complex)
def build(sample_rate: int, win_ms: float = 25.0, hop_ms: float = 6.25,
          channels: list = [16, 32, 64, 128, 128, 128],  # noqa: B006 (a plain list for the checkpoint; never mutated)
          rnn_hidden: int = 128, rnn_layers: int = 2, mask_bound: str = "tanh"):
    # The paper: 400-sample window, hop 100, 512-point FFT at 16 kHz (25 ms / 6.25 ms); channels
    # {32, 64, 128, 256, 256, 256} and 256 LSTM units counted as real + imaginary halves, which is
    # asteroid's complex 16..128 and 128. The FFT size is the next power of two above the window and
    # half of it must be divisible by 2 ** len(channels) (the frequency strides).
    win = max(2, round(win_ms * sample_rate / 1000))
    hop = max(1, round(hop_ms * sample_rate / 1000))
    n_fft = 2 ** math.ceil(math.log2(win))
    channels = [int(c) for c in channels]
    if (n_fft // 2) % 2 ** len(channels):
        raise SepbenchError(f"dccrnet: {n_fft // 2} frequency bins are not divisible by 2**{len(channels)}; "
                            "use a longer window or fewer encoder layers")
    model = PaddedDCCRNet("DCCRN-CL", n_src=2, stft_n_filters=n_fft, stft_kernel_size=win, stft_stride=hop,
                          sample_rate=sample_rate, channels=channels, rnn_hidden=rnn_hidden,
                          rnn_layers=rnn_layers, mask_bound=mask_bound)
    model.min_frames = len(channels) + 1  # each encoder's unpadded 2-frame time kernel drops a frame
    return model
