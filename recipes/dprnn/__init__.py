from asteroid.models import DPRNNTasNet

from .. import register
from ..framing import FullFrames, filterbank_stride, full_frames_min_length


class PaddedDPRNNTasNet(FullFrames, DPRNNTasNet):
    """asteroid's DPRNNTasNet with full-overlap padding: any input length in, the same length out."""


@register("dprnn", "Dual-path RNN TasNet (Luo, Chen & Yoshioka 2020): intra/inter-chunk BiLSTMs on a learned filterbank",
          frame_stride=filterbank_stride, min_length=full_frames_min_length)
def build(sample_rate: int, kernel_ms: float = 0.25, n_filters: int = 64, bn_chan: int = 64,
          hid_size: int = 128, chunk_size: int = 250, n_repeats: int = 6, num_layers: int = 1,
          norm_type: str = "gLN", mask_act: str = "sigmoid", dropout: float = 0.0):
    # The paper's best configuration: N=64 filters of L=2 samples at 8 kHz (0.25 ms), 6 blocks of
    # BLSTMs with 128 units per direction on 64 features, chunks of K=250 frames (2.6 M parameters).
    # chunk_size counts encoder frames, whose duration the ms-based kernel keeps fixed across rates.
    kernel = max(2, round(kernel_ms * sample_rate / 1000))
    return PaddedDPRNNTasNet(n_src=2, sample_rate=sample_rate, kernel_size=kernel, stride=kernel // 2,
                             n_filters=n_filters, bn_chan=bn_chan, hid_size=hid_size,
                             chunk_size=chunk_size, hop_size=chunk_size // 2, n_repeats=n_repeats,
                             num_layers=num_layers, norm_type=norm_type, mask_act=mask_act,
                             dropout=dropout)
