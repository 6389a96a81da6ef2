"""The one separation code path: whole clips for the benchmark, bounded-memory chunks for long
files (`sepbench separate`). Chunks are run with `context` extra samples on each side, which are
thrown away, and adjacent kept parts are cross-faded over `fade` samples: for a model whose
receptive field fits inside the context, chunked output equals whole-file output (up to float
rounding); for models with utterance-level state (global norms, BiLSTMs) the cross-fade hides
the seams."""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch


@torch.no_grad()
def _run(model: torch.nn.Module, x: np.ndarray, device: str) -> np.ndarray:
    est = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None].to(device))
    return est[0].float().cpu().numpy()


def iter_separate(model: torch.nn.Module, read: Callable[[int, int], np.ndarray], n_samples: int,
                  chunk: int | None = None, context: int = 0, fade: int = 0,
                  device: str = "cpu") -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start, estimates [2, n]) blocks in order, covering [0, n_samples) exactly once.

    `read(lo, hi)` returns the mono mixture samples [hi - lo]; only one chunk plus its context is
    in memory at a time. chunk=None (or >= n_samples) runs the whole signal at once.
    """
    if chunk is None or chunk >= n_samples:
        yield 0, _run(model, read(0, n_samples), device)
        return
    if not 0 <= fade < chunk:
        raise ValueError(f"fade ({fade}) must be in [0, chunk={chunk})")
    ramp = (np.arange(fade, dtype=np.float32) + 0.5) / max(fade, 1)  # rises; 1 - ramp falls
    hop = chunk - fade
    pending = None  # the previous chunk's last `fade` samples, waiting to be cross-faded
    for start in range(0, n_samples, hop):
        stop = min(n_samples, start + chunk)
        lo, hi = max(0, start - context), min(n_samples, stop + context)
        est = _run(model, read(lo, hi), device)[:, start - lo: stop - lo]
        if pending is not None:
            k = min(fade, est.shape[1])
            est[:, :k] = est[:, :k] * ramp[:k] + pending[:, :k] * (1 - ramp[:k])
        if stop >= n_samples:
            yield start, est
            return
        pending = est[:, -fade:] if fade else None
        yield start, est[:, : est.shape[1] - fade]


def separate(model: torch.nn.Module, mix: np.ndarray, chunk: int | None = None, context: int = 0,
             fade: int = 0, device: str = "cpu") -> np.ndarray:
    """Estimates [2, T] (voice, noise) for a mono mixture [T]."""
    blocks = [b for _, b in iter_separate(model, lambda lo, hi: mix[lo:hi], len(mix), chunk, context, fade, device)]
    return np.concatenate(blocks, axis=1)
