from asteroid.models import ConvTasNet

from .. import register
from ..framing import filterbank_kernel, filterbank_stride


@register("conv_tasnet", "Conv-TasNet (Luo & Mesgarani 2019): learned filterbank, TCN mask estimator", default=True,
          frame_stride=filterbank_stride, min_length=filterbank_kernel,
          find_unused_parameters=True)  # asteroid's last TCN block computes a residual nothing reads
def build(sample_rate: int, kernel_ms: float = 2.0, n_filters: int = 512, bn_chan: int = 128,
          hid_chan: int = 512, skip_chan: int = 128, n_blocks: int = 8, n_repeats: int = 3,
          conv_kernel_size: int = 3, norm_type: str = "gLN", mask_act: str = "relu"):
    # The paper's L=16 samples at 8 kHz is 2 ms; keeping it in ms follows the data's rate.
    kernel = max(2, round(kernel_ms * sample_rate / 1000))
    return ConvTasNet(n_src=2, sample_rate=sample_rate, kernel_size=kernel, stride=kernel // 2,
                      n_filters=n_filters, bn_chan=bn_chan, hid_chan=hid_chan, skip_chan=skip_chan,
                      n_blocks=n_blocks, n_repeats=n_repeats, conv_kernel_size=conv_kernel_size,
                      norm_type=norm_type, mask_act=mask_act)
