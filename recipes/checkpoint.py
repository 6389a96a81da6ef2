"""Self-describing model checkpoints: the benchmark rebuilds a model from the file alone.

The file is a plain dict of strings, numbers, lists and tensors, loaded with
`torch.load(weights_only=True)`: a file crafted to run code on unpickling is refused, never run.
"""
from __future__ import annotations

import json
import pickle
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from . import get
from .errors import SepbenchError
from .files import atomic_path

FORMAT = "sepbench-model"
FORMAT_VERSION = 1
_PACKAGES = ("torch", "torchaudio", "asteroid", "asteroid-filterbanks", "pytorch-lightning", "numpy", "sepbench")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).parent, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def save_model(path, model: torch.nn.Module, recipe: str, model_args: dict, sample_rate: int, **meta) -> None:
    """Atomic write of weights plus everything needed to rebuild and trace the model."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "recipe": recipe,
        "model_args": dict(model_args), "sample_rate": int(sample_rate),
        "state_dict": state, "meta": {"git_commit": git_commit(), "versions": versions(), **meta},
    }
    # Through a Python file: given a path, PyTorch's C++ writer reports a full disk as
    # "RuntimeError: [enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0", with
    # neither the file nor the reason; a Python file raises the OSError (No space left on device).
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)


def read_checkpoint(path) -> dict:
    """The checkpoint dict, checked; SepbenchError with the reason for anything else."""
    path = Path(path)
    if not path.is_file():
        raise SepbenchError(f"{path}: checkpoint file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc):  # the safe unpickler met a class or callable it will not run
            raise SepbenchError(f"{path}: refused: the file holds objects other than tensors and plain data "
                                "(not a sepbench checkpoint, or tampered with); it was not loaded") from None
        raise SepbenchError(f"{path}: not a readable checkpoint (corrupt or not a torch file)") from None
    except Exception as exc:
        raise SepbenchError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise SepbenchError(f"{path}: not a sepbench model checkpoint (written by another tool?)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise SepbenchError(f"{path}: checkpoint format version {payload.get('format_version')} "
                            f"is not supported (expected {FORMAT_VERSION})")
    for key, kind in (("recipe", str), ("model_args", dict), ("sample_rate", int), ("state_dict", dict)):
        if not isinstance(payload.get(key), kind):
            raise SepbenchError(f"{path}: checkpoint field {key!r} is missing or malformed")
    rate = payload["sample_rate"]
    # Every length is seconds x rate: a rate of 0 divides by zero far from here, and a bool
    # passes isinstance(int).
    if isinstance(rate, bool) or rate <= 0:
        raise SepbenchError(f"{path}: checkpoint sample rate {rate!r} is not a positive number of Hz "
                            "(tampered with or written by another tool); it was not loaded")
    return payload


def load_model(path) -> tuple[torch.nn.Module, dict]:
    """(model in eval mode, checkpoint dict without the weights)."""
    payload = read_checkpoint(path)
    recipe = get(payload["recipe"])
    try:
        model = recipe.build(**{"sample_rate": payload["sample_rate"], **payload["model_args"]})
        model.load_state_dict(payload.pop("state_dict"))
    except (TypeError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise SepbenchError(f"{path}: weights do not fit recipe {recipe.name!r} ({first})") from None
    return model.eval(), payload


def finished_run(run_dir: str | Path) -> dict | None:
    """The run card of a finished run (card.json says complete and best.pt exists), else None.
    The one rule for "already trained": `sepbench train` skips such a run unless --force, and
    run_all does not even start a process for it."""
    run_dir = Path(run_dir)
    try:
        card = json.loads((run_dir / "card.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    done = isinstance(card, dict) and card.get("status") == "complete" and (run_dir / "best.pt").is_file()
    return card if done else None
