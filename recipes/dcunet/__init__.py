import math

from asteroid.masknn._dcunet_architectures import DCUNET_ARCHITECTURES
from asteroid.masknn.convolutional import DCUMaskNet
from asteroid.models import DCUNet

from .. import register
from ..errors import SepbenchError
from ..framing import FullFrames, filterbank_stride, full_frames_min_length


class ScaledDCUMaskNet(DCUMaskNet):
    """asteroid's named DCUNet architectures with every channel count multiplied by `width`
    (1.0 = the paper's; smaller for CPU training). Kernels, strides and depth are unchanged."""

    @classmethod
    def default_architecture(cls, architecture: str, n_src: int = 1, width: float = 1.0, **kwargs):
        if architecture not in DCUNET_ARCHITECTURES:
            raise SepbenchError(f"dcunet: unknown architecture {architecture!r}; "
                                f"choose from {', '.join(DCUNET_ARCHITECTURES)}")
        encoders, decoders = DCUNET_ARCHITECTURES[architecture]

        def scale(c: int) -> int:
            if c == 1:  # the mixture input and the mask output
                return 1
            if abs(c * width - round(c * width)) > 1e-9 or round(c * width) < 1:
                raise SepbenchError(f"dcunet: width {width} does not give whole channel counts ({c} channels)")
            return round(c * width)

        encoders = [(scale(i), scale(o), *rest) for i, o, *rest in encoders]
        decoders = [(scale(i), scale(o), *rest) for i, o, *rest in decoders]
        in_chan, _, *rest = decoders[-1]
        return cls(encoders, (*decoders[:-1], (in_chan, n_src, *rest)), **kwargs)


class PaddedDCUNet(FullFrames, DCUNet):
    """asteroid's DCUNet (scalable width) with full-overlap padding: any input length in, the same length out."""

    masknet_class = ScaledDCUMaskNet


@register("dcunet", "Deep Complex U-Net (Choi et al. 2019): complex-valued U-Net, bounded complex ratio masks", default=True,
          frame_stride=filterbank_stride, min_length=full_frames_min_length,
          cannot_export={"onnx": "ONNX has no complex tensors"})  # asteroid's complex layers (aten::view_as_complex)
def build(sample_rate: int, architecture: str = "Large-DCUNet-20", width: float = 1.0, win_ms: float = 64.0,
          hop_ms: float = 16.0, mask_bound: str = "tanh"):
    # The paper's STFT (1024-point window, hop 256 at 16 kHz) is 64 ms / 16 ms; the window is
    # rounded to a power of two, which the U-Net's frequency strides need.
    n_fft = 2 ** max(4, round(math.log2(win_ms * sample_rate / 1000)))
    hop = max(1, round(hop_ms * sample_rate / 1000))
    # fix_length_mode="pad": the masker pads the frame count to a multiple of its time strides and
    # crops back (without it asteroid refuses most lengths); FullFrames handles the sample edges.
    return PaddedDCUNet(architecture, n_src=2, stft_n_filters=n_fft, stft_kernel_size=n_fft, stft_stride=hop,
                        sample_rate=sample_rate, fix_length_mode="pad", mask_bound=mask_bound, width=width)
