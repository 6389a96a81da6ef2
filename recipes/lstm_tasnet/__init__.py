from asteroid.models import LSTMTasNet

from .. import register
from ..framing import FullFrames, full_frames_min_length


class PaddedLSTMTasNet(FullFrames, LSTMTasNet):
    """asteroid's LSTMTasNet with full-overlap padding: any input length in, the same length out."""


@register("lstm_tasnet", "TasNet (Luo & Mesgarani 2018): gated learned filterbank, deep BiLSTM mask estimator",
          # Stride 1, not the filterbank's hop: what chunked separation has always used here (the
          # gated encoder hid the hop from it); the hop would change chunked outputs and exports.
          frame_stride=1, min_length=full_frames_min_length)
def build(sample_rate: int, kernel_ms: float = 5.0, n_filters: int = 500, hid_size: int = 500,
          n_layers: int = 4, bidirectional: bool = True, dropout: float = 0.3, mask_act: str = "sigmoid"):
    # The paper's L=40 samples at 8 kHz is 5 ms; 50% overlapping frames as in asteroid.
    kernel = max(2, round(kernel_ms * sample_rate / 1000))
    return PaddedLSTMTasNet(n_src=2, sample_rate=sample_rate, kernel_size=kernel, stride=kernel // 2,
                            n_filters=n_filters, hid_size=hid_size, n_layers=n_layers,
                            bidirectional=bidirectional, dropout=dropout, mask_act=mask_act)
