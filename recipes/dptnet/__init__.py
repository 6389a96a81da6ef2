from asteroid.models import DPTNet

from .. import register
from ..framing import FullFrames, filterbank_stride, full_frames_min_length


class PaddedDPTNet(FullFrames, DPTNet):
    """asteroid's DPTNet with full-overlap padding: any input length in, the same length out."""


@register("dptnet", "Dual-path Transformer network (Chen, Mao & Liu 2020): intra/inter-chunk attention + LSTM on a learned filterbank",
          frame_stride=filterbank_stride, min_length=full_frames_min_length,
          # torch's nn.MultiheadAttention unflattens with the traced sizes: fixed shapes in the graph
          cannot_export={"onnx": "the graph keeps the traced input's shapes"})
def build(sample_rate: int, kernel_ms: float = 0.25, n_filters: int = 64, n_heads: int = 4, ff_hid: int = 128,
          chunk_size: int = 250, n_repeats: int = 6, norm_type: str = "gLN", mask_act: str = "relu",
          bidirectional: bool = True, dropout: float = 0.0):
    # The paper's configuration: filters of L=2 samples at 8 kHz (0.25 ms), 6 dual-path blocks of
    # 4-head attention with a BLSTM of 128 units per direction as the feed-forward part, chunks
    # of K=250 frames (2.8 M parameters here). asteroid's DPTNet has no bottleneck after the
    # encoder, so its 64 features are the encoder's 64 filters (the paper: 256 filters, then 64).
    # chunk_size counts encoder frames, whose duration the ms-based kernel keeps fixed across rates.
    kernel = max(2, round(kernel_ms * sample_rate / 1000))
    return PaddedDPTNet(n_src=2, sample_rate=sample_rate, kernel_size=kernel, stride=kernel // 2,
                        n_filters=n_filters, n_heads=n_heads, ff_hid=ff_hid, chunk_size=chunk_size,
                        hop_size=chunk_size // 2, n_repeats=n_repeats, norm_type=norm_type,
                        mask_act=mask_act, bidirectional=bidirectional, dropout=dropout)
