"""Recipe registry: a recipe is one folder here, registered under the folder's own name.

A builder takes the sample rate plus its config's `model:` section and returns a module whose
forward maps a mixture [B, T] to estimates [B, 2, T] in fixed order (0 = voice, 1 = noise).

`register` also takes what the rest of sepbench must know about the model and may not guess from
its internals (tests/test_recipes.py checks every declaration against what the model does):
  frame_stride    samples between analysis frames: chunked separation starts chunks on this grid
  min_length      the shortest input the model accepts; benchmark.separate pads shorter ones
  cannot_export   {"onnx" | "torchscript": words the exporter's one-line refusal contains}
  find_unused_parameters  DDP must look for parameters a training step leaves unused
frame_stride and min_length are ints or functions of the built model (they may depend on its
arguments); `Recipe.build` sets the resulting ints on the model as `model.frame_stride` and
`model.min_length`, the two attributes an exported model carries too.
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Union

from .errors import SepbenchError

# An int, or a function of the built model returning one.
Fact = Union[int, Callable[..., int]]
EXPORT_FORMATS = ("onnx", "torchscript")


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
    # Declared by every recipe folder (`register` requires them). The defaults, a model without
    # frames (any length, chunks start anywhere), serve entries made directly, as tests do.
    frame_stride: Fact = 1
    min_length: Fact = 1
    cannot_export: dict = field(default_factory=dict)
    find_unused_parameters: bool = False

    def build(self, sample_rate: int, **model_args):
        model = self.builder(sample_rate=sample_rate, **model_args)
        for fact in ("frame_stride", "min_length"):
            declared = getattr(self, fact)
            value = declared(model) if callable(declared) else declared
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"recipe {self.name!r}: {fact} must be a positive int, got {value!r}")
            setattr(model, fact, value)
        return model

    def system_class(self):
        """The LightningModule class that trains this recipe."""
        if isinstance(self.system, type):
            return self.system
        module, _, attr = (self.system or "recipes.system:SeparationSystem").partition(":")
        return getattr(importlib.import_module(module), attr)


_REGISTRY: dict[str, Recipe] = {}


def register(name: str, description: str, *, frame_stride: Fact, min_length: Fact,
             cannot_export: dict[str, str] | None = None, find_unused_parameters: bool = False,
             system: str | None = None, default: bool = False):
    cannot_export = dict(cannot_export or {})
    if set(cannot_export) - set(EXPORT_FORMATS):
        raise ValueError(f"recipe {name!r}: cannot_export keys must be among {EXPORT_FORMATS}")

    def decorator(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"recipe {name!r} is registered twice")
        folder = Path(inspect.getfile(builder)).resolve().parent
        _REGISTRY[name] = Recipe(name, description, builder, folder, system, default, frame_stride, min_length,
                                 cannot_export, find_unused_parameters)
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
