"""Layered configuration: base.yaml -> recipe config.yaml -> profile (base's, then the recipe's)
-> key=value overrides. Unknown keys are errors, so a typo never silently does nothing."""
from __future__ import annotations

import copy
import functools
import inspect
import math
from pathlib import Path

import yaml

from . import get
from .errors import SepbenchError

BASE = Path(__file__).parent / "base.yaml"


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
    base = copy.deepcopy(_base())
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


def _count(low: int):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low, f"an integer >= {low}"


def _number(low: float, high: float = math.inf, low_open: bool = False, high_open: bool = True):
    def ok(v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)
    span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    return ok, f"a number in {span}"


def _choice(*options):
    return lambda v: v in options, f"one of {', '.join(map(str, options))}"


def _or_null(rule):
    ok, what = rule
    return lambda v: v is None or ok(v), f"{what}, or null"


_BOOL = (lambda v: isinstance(v, bool), "true or false")
_TEXT = (lambda v: isinstance(v, str) and v != "", "a non-empty string")
_POSITIVE = _number(0, low_open=True)
_BATCH_LIMIT = (lambda v: v is None or (not isinstance(v, bool) and isinstance(v, (int, float)) and v > 0),
                "a positive count or fraction, or null")
# Every key of base.yaml (model: keys are checked against the builder's annotations instead).
# Checked before anything is written, so a bad value is one line, not a traceback from Adam, the
# DataLoader or Lightning, and never a half-started run.
RULES = {
    "seed": _count(0),
    "data.val_fraction": _number(0, 1), "data.segment_seconds": _POSITIVE,
    "data.short_policy": _choice("pad", "skip"), "data.downmix": _BOOL, "data.dynamic_mixing": _BOOL, "data.num_workers": _count(0),
    "data.babble": _number(0, 1), "data.eq": _number(0, 1, high_open=False), "data.speed": _number(0, 0.5), "data.babble_voices": (lambda v: isinstance(v, list) and len(v) == 2 and all(
        isinstance(x, int) and not isinstance(x, bool) for x in v) and 1 <= v[0] <= v[1], "a list [low, high] of counts, 1 <= low <= high"),
    "loss.name": _choice("neg_sisdr", "neg_snr", "spec_l1"), "loss.noise_weight": _number(0),
    "loss.stft_win_ms": _POSITIVE, "loss.stft_hop_ms": _POSITIVE,
    "optim.lr": _POSITIVE, "optim.weight_decay": _number(0), "optim.batch_size": _count(1),
    "optim.grad_clip": _or_null(_POSITIVE), "optim.plateau_patience": _count(0),
    "optim.plateau_factor": _number(0, 1, low_open=True), "optim.schedule": _choice("plateau", "cosine"),
    "optim.warmup_steps": _count(0), "optim.final_lr_factor": _number(0, 1, high_open=False),
    "trainer.max_epochs": _count(1), "trainer.early_stop_patience": _count(1),
    "trainer.max_minutes": _or_null(_POSITIVE),
    # the best checkpoint, early stopping and the LR schedule follow val_loss: 0 would break them
    "trainer.limit_train_batches": _BATCH_LIMIT, "trainer.limit_val_batches": _BATCH_LIMIT,
    "trainer.accelerator": _TEXT, "trainer.devices": (lambda v: v is not None and v != 0 and not isinstance(v, bool),
                                                       "a device count, a list of ids, 'auto' or -1"),
    "trainer.num_nodes": _count(1), "trainer.strategy": _TEXT, "trainer.precision": _TEXT,
    "trainer.compile": _BOOL, "trainer.logger": _choice("csv", "tensorboard"),
    "trainer.tb_audio_every": _or_null(_count(1)),
}


def _flat(cfg: dict, prefix: str = ""):
    for key, value in cfg.items():
        if isinstance(value, dict) and key != "model":
            yield from _flat(value, f"{prefix}{key}.")
        elif key != "model":
            yield f"{prefix}{key}", value


@functools.lru_cache(maxsize=1)
def _base() -> dict:
    """base.yaml, read once and checked: every key it and its profiles set has a rule in RULES,
    so a new default without one fails on every resolve, naming the key. Callers copy it."""
    base = _load(BASE)
    profiles = base.get("profiles")
    if not isinstance(profiles, dict) or not profiles:
        raise SepbenchError(f"{BASE}: needs a non-empty `profiles:` mapping")
    settings = {k: v for k, v in base.items() if k != "profiles"}
    keys = {key for key, _ in _flat(settings)}
    keys |= {key for over in profiles.values() for key, _ in _flat(over or {})}
    missing = sorted(keys - set(RULES))
    if missing:
        raise SepbenchError(f"{BASE}: no validation rule in recipes/config.py RULES for {', '.join(missing)}")
    return base


def _check(cfg: dict) -> None:
    for key, value in _flat({k: v for k, v in cfg.items() if k not in ("recipe", "profile")}):
        if key not in RULES:  # a section given one value (data=3), or a value given keys (seed.x=1)
            raise SepbenchError(f"{key}={value!r}: not a setting of {BASE.name} (a section is set key by key, "
                                "e.g. data.segment_seconds=2)")
        ok, what = RULES[key]
        if not ok(value):
            raise SepbenchError(f"{key}={value!r}: must be {what}")
    if not isinstance(cfg["model"], dict):
        raise SepbenchError(f"model={cfg['model']!r}: must be a section of the builder's arguments (model.<name>=...)")
    _check_model(cfg["recipe"], cfg["model"])


# The profile names, in base.yaml's order: what --profile accepts.
PROFILES: tuple[str, ...] = tuple(_base()["profiles"])


def _check_model(recipe: str, model_cfg: dict) -> None:
    """Types of the model: section against the builder's annotations (int, float, bool, str)."""
    params = inspect.signature(get(recipe).builder).parameters
    for key, value in model_cfg.items():
        if key not in params or key == "sample_rate":
            continue  # model_args() names the allowed keys
        kind = params[key].annotation
        kind = {"int": int, "float": float, "bool": bool, "str": str}.get(kind, kind)  # postponed annotations
        if kind is bool:
            good = isinstance(value, bool)
        elif kind is int:
            good = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        elif kind is float:
            good = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
        elif kind is str:
            good = isinstance(value, str)
        else:
            continue
        if not good:
            what = {bool: "true or false", int: "an integer >= 0", float: "a number >= 0", str: "a string"}[kind]
            raise SepbenchError(f"model.{key}={value!r}: must be {what} (recipe {recipe!r})")


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
