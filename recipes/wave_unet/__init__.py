from .. import register
from .model import WaveUNet


@register("wave_unet", "Wave-U-Net (Stoller, Ewert & Dixon 2018): time-domain 1-D conv U-Net, noise = mixture - voice",
          # Any length: forward pads to a multiple of 2 ** n_layers itself. Stride 1, not that
          # multiple: what chunked separation has always used; another would change its outputs.
          frame_stride=1, min_length=1)
def build(sample_rate: int, n_layers: int = 12, n_filters: int = 24, down_kernel: int = 15, up_kernel: int = 5,
          difference_output: bool = True):
    # Kernels count samples at every level, as in the paper (at 22.05 kHz); the receptive field in
    # seconds therefore grows at lower sample rates. `sample_rate` is unused by the network.
    return WaveUNet(n_layers, n_filters, down_kernel, up_kernel, difference_output)
