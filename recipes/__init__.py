"""Recipe registry: a recipe is one folder here, registered under the folder's own name.

A builder takes the sample rate plus its config's `model:` section and returns a module whose
forward maps a mixture [B, T] to estimates [B, 2, T] in fixed order (0 = voice, 1 = noise).
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import SepbenchError


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


def _load(name: str | None = None) -> None:
    """Import one recipe folder (or all of them); each registers itself on import. Late on
    purpose, the slow-import exception: recipes import torch and asteroid (seconds), which
    `from recipes.errors import ...` in the command line must not pay."""
    folders = [name] if name else [m.name for m in pkgutil.iter_modules(__path__) if m.ispkg]
    for folder in folders:
        if (Path(__file__).parent / folder / "__init__.py").is_file():
            importlib.import_module(f"{__name__}.{folder}")


def get(name: str) -> Recipe:
    if name not in _REGISTRY and name.isidentifier():
        _load(name)
    if name not in _REGISTRY:
        raise SepbenchError(f"unknown recipe {name!r}; available: {', '.join(names())}")
    return _REGISTRY[name]


def names() -> list[str]:
    """Every recipe folder: adding a recipe is one new folder, no line to add here."""
    _load()
    return sorted(_REGISTRY)


def default_names() -> list[str]:
    return sorted(n for n in names() if _REGISTRY[n].default)
