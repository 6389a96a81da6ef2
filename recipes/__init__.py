"""Recipe registry: a recipe is one folder here, registered under the folder's own name.

A builder takes the sample rate plus its config's `model:` section and returns a module whose
forward maps a mixture [B, T] to estimates [B, 2, T] in fixed order (0 = voice, 1 = noise).
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import SepbenchError

SOURCES = ("voice", "noise")


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    builder: Callable
    folder: Path
    # "module:Class" of a SeparationSystem subclass, for recipes with their own training step.
    # A name rather than the class: importing it imports PyTorch Lightning (seconds), which
    # separation and evaluation workers never need. (The class itself is accepted too.)
    system: str | type | None = None
    # Trained by a plain ./run_all.sh (--recipes all trains every recipe): the cpu profile gives each
    # recipe 10 minutes, so the default set keeps the whole run under about an hour on 2 cores.
    default: bool = False

    def build(self, sample_rate: int, **model_args):
        return self.builder(sample_rate=sample_rate, **model_args)

    def system_class(self):
        """The LightningModule class that trains this recipe."""
        if isinstance(self.system, type):
            return self.system
        module, _, attr = (self.system or "recipes.system:SeparationSystem").partition(":")
        return getattr(importlib.import_module(module), attr)


_REGISTRY: dict[str, Recipe] = {}


def register(name: str, description: str, system: str | None = None, default: bool = False):
    def decorator(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"recipe {name!r} is registered twice")
        folder = Path(inspect.getfile(builder)).resolve().parent
        _REGISTRY[name] = Recipe(name, description, builder, folder, system, default)
        return builder
    return decorator


def get(name: str) -> Recipe:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise SepbenchError(f"unknown recipe {name!r}; available: {', '.join(sorted(_REGISTRY))}") from None


def names() -> list[str]:
    return sorted(_REGISTRY)


def default_names() -> list[str]:
    return sorted(n for n, r in _REGISTRY.items() if r.default)


# One line per recipe.
from . import conv_tasnet  # noqa: E402,F401
from . import lstm_mask  # noqa: E402,F401
from . import spec_unet  # noqa: E402,F401
from . import lstm_tasnet  # noqa: E402,F401
from . import dprnn  # noqa: E402,F401
from . import dcunet  # noqa: E402,F401
from . import dccrnet  # noqa: E402,F401
from . import wave_unet  # noqa: E402,F401
from . import deep_clustering  # noqa: E402,F401
from . import sudormrf  # noqa: E402,F401
from . import dptnet  # noqa: E402,F401
from . import gtcrn  # noqa: E402,F401
