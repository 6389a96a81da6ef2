"""The one separation code path: whole clips for the benchmark, bounded-memory chunks for long
files (`sepbench separate`). Chunks are run with `context` extra samples on each side, which are
thrown away, and adjacent kept parts are cross-faded over `fade` samples.

Exactness: each chunk's first sample is moved back to a multiple of the model's frame stride
(a few samples more context), so a chunk's frames sit on the same grid as the whole signal's.
For a model whose receptive field fits inside the context (Conv-TasNet with the per-frame cLN,
STFT maskers without utterance-level state) chunked output then equals whole-file output up to
float rounding, and the cross-fade blends two equal signals. For models with utterance-level
state (gLN, BiLSTMs, per-utterance normalisation) it cannot be exact; the fade hides the seams."""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch

from recipes.errors import SepbenchError


def pick_device(device: str) -> str:
    """`auto`: cuda when there is one, else cpu; asking for cuda without one is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SepbenchError(f"--device {device}: no CUDA device is available here (use --device auto or cpu)")
    return device


def _stated(model, fact: str) -> int:
    """A fact the model states about itself: recipes.Recipe.build sets `frame_stride` and
    `min_length` from the recipe's registration, an exported model (benchmark.separate.export)
    carries them in its metadata."""
    value = getattr(model, fact, None)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise TypeError(f"{type(model).__name__} states no {fact} (models come from recipes.get(name).build, "
                        "a checkpoint or an export)")
    return value


def frame_stride(model) -> int:
    """Samples between the model's analysis frames; chunks start on this grid."""
    return _stated(model, "frame_stride")


def min_length(model) -> int:
    """The shortest input the model accepts; shorter ones are padded with zeros and cropped."""
    return _stated(model, "min_length")


@torch.no_grad()
def _run(model: torch.nn.Module, x: np.ndarray, device: str) -> np.ndarray:
    """[T] -> [2, T] or [C, T] -> [C, 2, T]; channels go through the model as a batch, which is
    exact because every model here treats batch items independently."""
    n = x.shape[-1]
    # Trailing zeros are the same zeros the whole-signal run would see beyond the end, and they
    # are cut off again.
    short = min_length(model) - n
    if short > 0:
        x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, short)])
    batch = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device)
    est = model(batch if x.ndim == 2 else batch[None]).float().cpu().numpy()[..., :n]
    return est if x.ndim == 2 else est[0]


def iter_separate(model: torch.nn.Module, read: Callable[[int, int], np.ndarray], n_samples: int,
                  chunk: int | None = None, context: int = 0, fade: int = 0,
                  device: str = "cpu") -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start, estimates) blocks in order, covering [0, n_samples) exactly once.

    `read(lo, hi)` returns the mixture samples [hi - lo] (mono) or [C, hi - lo] (channels, each
    separated on its own); blocks are then [2, n] or [C, 2, n] (voice, noise). Only one chunk
    plus its context is in memory at a time. chunk=None (or >= n_samples) runs the whole signal.
    """
    if chunk is None or chunk >= n_samples:
        yield 0, _run(model, read(0, n_samples), device)
        return
    if not 0 <= fade < chunk:
        raise ValueError(f"fade ({fade}) must be in [0, chunk={chunk})")
    stride = frame_stride(model)
    ramp = (np.arange(fade, dtype=np.float32) + 0.5) / max(fade, 1)  # rises; 1 - ramp falls
    hop = chunk - fade
    pending = None  # the previous chunk's last `fade` samples, waiting to be cross-faded
    for start in range(0, n_samples, hop):
        stop = min(n_samples, start + chunk)
        lo = max(0, (start - context) // stride * stride)
        hi = min(n_samples, stop + context)
        est = _run(model, read(lo, hi), device)[..., start - lo: stop - lo]
        if pending is not None:
            k = min(fade, est.shape[-1])
            est[..., :k] = est[..., :k] * ramp[:k] + pending[..., :k] * (1 - ramp[:k])
        if stop >= n_samples:
            yield start, est
            return
        pending = est[..., -fade:] if fade else None
        yield start, est[..., : est.shape[-1] - fade]


def separate(model: torch.nn.Module, mix: np.ndarray, chunk: int | None = None, context: int = 0,
             fade: int = 0, device: str = "cpu") -> np.ndarray:
    """Estimates [2, T] (voice, noise) for a mono mixture [T] ([C, 2, T] for [C, T])."""
    blocks = [b for _, b in iter_separate(model, lambda lo, hi: mix[..., lo:hi], mix.shape[-1],
                                          chunk, context, fade, device)]
    return np.concatenate(blocks, axis=-1)


class StreamResampler:
    """julius.resample_frac(x, old_sr, new_sr, full=True) computed for any output range [j0, j1)
    from only the input samples that range needs, so files of any length are resampled in
    bounded memory and, block by block, give the same samples as resampling the whole signal
    (same kernel, same replicate padding at the true ends; float rounding aside)."""

    def __init__(self, old_sr: int, new_sr: int):
        import julius  # only needed when rates differ

        self._module = julius.ResampleFrac(int(old_sr), int(new_sr))
        self.identity = old_sr == new_sr
        # Rates reduced by their gcd: output block k (new_sr outputs) reads input samples
        # [k * old_sr - width, (k + 1) * old_sr + width).
        self.old, self.new = self._module.old_sr, self._module.new_sr
        # julius keeps the kernel's half-width only as the private `_width`; the kernel itself
        # (`kernel`, used below) is public. Recomputing the width here would duplicate julius'
        # formula; test_stream_resampler_matches_whole_signal_julius (tests/test_separate.py)
        # fails if either changes meaning upstream.
        self.width = 0 if self.identity else self._module._width

    def out_length(self, n_in: int) -> int:
        return -(-n_in * self.new // self.old)

    def needs(self, j0: int, j1: int, n_in: int) -> tuple[int, int]:
        """Input range [a, b) that outputs [j0, j1) depend on, clamped to the signal."""
        if self.identity:
            return j0, j1
        k0, k1 = j0 // self.new, -(-j1 // self.new)
        return (min(n_in - 1, max(0, k0 * self.old - self.width)),
                min(n_in, max(1, k1 * self.old + self.width)))

    def __call__(self, get: Callable[[int, int], np.ndarray], n_in: int, j0: int, j1: int) -> np.ndarray:
        """Outputs [..., j1 - j0]; `get(a, b)` returns input samples [..., b - a]."""
        if self.identity:
            return get(j0, j1)
        k0, k1 = j0 // self.new, -(-j1 // self.new)
        want_lo, want_hi = k0 * self.old - self.width, k1 * self.old + self.width
        a, b = self.needs(j0, j1, n_in)
        x = np.asarray(get(a, b), dtype=np.float32)
        lead = x.shape[:-1]
        x = torch.from_numpy(np.ascontiguousarray(x.reshape(-1, 1, b - a)))
        # Beyond the true ends only: the edge sample repeated, as julius pads the whole signal.
        x = torch.nn.functional.pad(x, (a - want_lo, want_hi - b), mode="replicate")
        with torch.no_grad():
            y = torch.nn.functional.conv1d(x, self._module.kernel, stride=self.old)
        y = y.transpose(1, 2).reshape(*lead, -1).numpy()
        return y[..., j0 - k0 * self.new: j1 - k0 * self.new]


def resample_stream(blocks: Iterator[tuple[int, np.ndarray]], resampler: StreamResampler, n_in: int,
                    n_out: int) -> Iterator[tuple[int, np.ndarray]]:
    """Resample a stream of consecutive (start, [..., n]) blocks covering [0, n_in) into blocks
    covering [0, n_out), keeping only the input samples still needed (a few kernel widths)."""
    if resampler.identity:
        yield from blocks
        return
    buf, buf_lo, done = None, 0, 0
    for start, block in blocks:
        buf = block if buf is None else np.concatenate([buf, block], axis=-1)
        buf_hi = buf_lo + buf.shape[-1]
        if start + block.shape[-1] != buf_hi:
            raise ValueError("blocks must be consecutive")
        # Outputs whose kernel reaches past what has arrived wait for the next block.
        ready = n_out if buf_hi >= n_in else min(n_out, (buf_hi - resampler.width) // resampler.old * resampler.new)
        if ready > done:
            yield done, resampler(lambda a, b: buf[..., a - buf_lo: b - buf_lo], n_in, done, ready)
            done = ready
            keep = resampler.needs(done, done + 1, n_in)[0] if done < n_out else buf_hi
            buf, buf_lo = buf[..., keep - buf_lo:], keep
    if done != n_out:
        raise ValueError(f"stream ended after {done} of {n_out} samples")


# Benchmark clips are separated whole up to a minute (models with global context see all of
# it); longer ones in 30 s chunks with 2 s of context per side, cross-faded over 0.5 s, so
# memory stays bounded. evaluate and the listening page both go through separate_clip.
LONG_CLIP_S, CHUNK_S, CONTEXT_S, FADE_S = 60.0, 30.0, 2.0, 0.5


def separate_clip(model: torch.nn.Module, mix: np.ndarray, sample_rate: int, device: str = "cpu") -> np.ndarray:
    """Estimates [2, T] of one test clip under the benchmark's whole-or-chunked policy."""
    if len(mix) <= LONG_CLIP_S * sample_rate:
        return separate(model, mix, device=device)
    return separate(model, mix, chunk=int(CHUNK_S * sample_rate), context=int(CONTEXT_S * sample_rate),
                    fade=int(FADE_S * sample_rate), device=device)
