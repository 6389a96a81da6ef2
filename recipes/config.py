"""Layered configuration: base.yaml -> recipe config.yaml -> profile (base's, then the recipe's)
-> key=value overrides. Unknown keys are errors, so a typo never silently does nothing."""
from __future__ import annotations

import copy
import inspect
from pathlib import Path

import yaml

from . import get
from .errors import SepbenchError

BASE = Path(__file__).parent / "base.yaml"
PROFILES = ("smoke", "cpu", "gpu")


def _load(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SepbenchError(f"{path}: cannot read config ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise SepbenchError(f"{path}: config must be a mapping")
    return data


def _merge(base: dict, over: dict, where: str, free: bool = False) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if key not in out and not free:
            raise SepbenchError(f"{where}: unknown config key {key!r}")
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, f"{where}.{key}", free=free or key == "model")
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(text: str) -> dict:
    """'optim.lr=3e-4' -> {'optim': {'lr': 0.0003}} (values parsed as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise SepbenchError(f"override {text!r} is not key=value")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string; a number is meant
        try:
            value = float(value)
        except ValueError:
            pass
    for part in reversed(key.split(".")):
        value = {part: value}
    return value


def resolve(recipe: str, profile: str, overrides: list[str] | tuple = ()) -> dict:
    if profile not in PROFILES:
        raise SepbenchError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    rec = get(recipe)
    base = _load(BASE)
    base_profiles = base.pop("profiles")
    own_path = rec.folder / "config.yaml"
    own = _load(own_path) if own_path.exists() else {}
    own_profiles = own.pop("profiles", {}) or {}
    unknown = set(own_profiles) - set(PROFILES)
    if unknown:
        raise SepbenchError(f"{own_path}: unknown profile(s) {sorted(unknown)}")
    cfg = _merge(base, own, str(own_path))
    cfg = _merge(cfg, base_profiles.get(profile) or {}, f"{BASE}:profiles.{profile}")
    cfg = _merge(cfg, own_profiles.get(profile) or {}, f"{own_path}:profiles.{profile}")
    for text in overrides:
        cfg = _merge(cfg, parse_override(text), f"override {text!r}")
    cfg["recipe"], cfg["profile"] = recipe, profile
    _check(cfg)
    return cfg


def _check(cfg: dict) -> None:
    """Values Lightning would accept but that break a run later, deep inside a callback."""
    for key, why in (("limit_val_batches", "the best checkpoint, early stopping and the LR schedule follow "
                      "val_loss"), ("limit_train_batches", "nothing would be trained")):
        value = cfg["trainer"][key]
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise SepbenchError(f"trainer.{key}={value!r}: must be a positive count or fraction, or null ({why})")


def model_args(recipe: str, sample_rate: int, model_cfg: dict) -> dict:
    """The builder's full argument set (defaults filled in): what the checkpoint records."""
    sig = inspect.signature(get(recipe).builder)
    try:
        bound = sig.bind(sample_rate=sample_rate, **model_cfg)
    except TypeError as exc:
        raise SepbenchError(f"recipe {recipe!r}: bad model config ({exc}); "
                            f"allowed keys: {', '.join(p for p in sig.parameters if p != 'sample_rate')}") from None
    bound.apply_defaults()
    return dict(bound.arguments)


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
