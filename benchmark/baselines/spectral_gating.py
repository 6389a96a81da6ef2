"""Non-stationary spectral gating (noisereduce, Sainburg et al.): a classic method with nothing
trained. Each frequency's noise floor is tracked by smoothing its magnitude over time; bins not
far enough above it are attenuated by a smoothed sigmoid mask. It runs at the input's rate."""
from __future__ import annotations

import numpy as np

from . import register

PACKAGE, VERSION, MODULE = "noisereduce", "3.0.3", "noisereduce"


@register("spectral_gating", "noisereduce's non-stationary spectral gating, its default settings",
          sample_rate=None, delay=0, licence="MIT (noisereduce: Tim Sainburg)", package=PACKAGE, version=VERSION,
          module=MODULE, install="pip install -e .[baselines]", parameters=None,
          out_of_domain="not trained, so it has no training domain; its frames are 1024 samples (128 ms at "
                        "8 kHz, 64 ms at 16 kHz), so its time resolution depends on the rate")
def load():
    # Late: noisereduce is only installed with the extra, and imports scipy.signal (~0.7 s).
    import noisereduce

    def enhance(x: np.ndarray, rate: int) -> np.ndarray:
        # chunk_size=None: the whole clip in memory, where longer clips would otherwise go
        # through a memory-mapped temporary file.
        y = noisereduce.reduce_noise(y=x, sr=rate, stationary=False, n_jobs=1, chunk_size=None)
        return np.asarray(y, np.float32)

    return enhance
