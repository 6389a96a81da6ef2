import torch.nn.functional as F
from asteroid.models import SuDORMRFImprovedNet

from .. import register
from ..framing import filterbank_kernel


class EdgePaddedSuDORMRF(SuDORMRFImprovedNet):
    """asteroid's SuDORMRFImprovedNet with the last samples covered like all the others.

    asteroid already maps any length to the same length: its encoder pads kernel // 2 samples on
    both sides with stride kernel // 2 (every sample inside two frames), a `_Padder` zero-fills
    the right end up to a multiple of lcm(kernel // 2, 2 ** upsampling_depth) samples, and the
    base model crops the decoder's output to the input. But when T already is such a multiple,
    nothing is added on the right and the last stride - 1 samples fall in one frame only (checked
    by counting frames per sample). One extra stride of zeros on the right, cropped again, gives
    the end the same two-frame overlap as the start, whatever T is.
    """

    def forward(self, wav):
        n = wav.shape[-1]
        out = super().forward(F.pad(wav, (0, self.encoder.filterbank.stride)))
        return out[..., :n]


@register("sudormrf", "SuDO-RM-RF improved (Tzinis et al. 2020/2022): learned filterbank, U-ConvBlocks of successive down/up-sampling",
          # Stride 1, not the filterbank's hop: what chunked separation has always used here (the
          # padder hid the hop from it); the hop would change chunked outputs and exports.
          frame_stride=1, min_length=filterbank_kernel)
def build(sample_rate: int, kernel_ms: float = 2.625, n_filters: int = 512, bn_chan: int = 128,
          num_blocks: int = 16, upsampling_depth: int = 4, mask_act: str = "relu"):
    # asteroid's (and the paper's) configuration: 512 filters of 21 samples at 8 kHz (2.625 ms),
    # stride half of it, 16 U-ConvBlocks of 128 channels with 4 resolutions each (2.6 M parameters).
    # Keeping the filter in ms gives the same time resolution at any sample rate.
    kernel = max(3, round(kernel_ms * sample_rate / 1000))
    return EdgePaddedSuDORMRF(n_src=2, sample_rate=sample_rate, kernel_size=kernel, stride=kernel // 2,
                              n_filters=n_filters, bn_chan=bn_chan, num_blocks=num_blocks,
                              upsampling_depth=upsampling_depth, mask_act=mask_act)
