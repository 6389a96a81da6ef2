from .. import register
from ..framing import filterbank_kernel, filterbank_stride
from ..stft_masking import STFTMaskModel
from .model import UNetMasker


@register("spec_unet", "spectrogram U-Net (Jansson et al. 2017): masks on the STFT magnitude, mixture phase", default=True,
          frame_stride=filterbank_stride, min_length=filterbank_kernel)
def build(sample_rate: int, win_ms: float = 128.0, hop_ms: float = 32.0, base: int = 16, depth: int = 6,
          dropout: float = 0.5, n_dropout: int = 3, input_power: float = 1.0):
    return STFTMaskModel(UNetMasker(base, depth, dropout, n_dropout, input_power), sample_rate, win_ms, hop_ms)
