"""On the GPU machine: install the carried wheels it lacks (perf/gpu_carry.py builds them) and check
sepbench's dependencies against what its Python can then import.

`install` puts the wheels into a folder of their own (pip --target, no index, no dependency
resolution) that goes first on sys.path and on PYTHONPATH, so the evaluation's spawned workers
see it too. The machine's torch family is kept whatever pyproject.toml pins: a CUDA torch wheel is
far larger than what can travel, and replacing numpy or scipy under it would test another stack
than the machine's. The dry run calls `plan_only`, `verify` and `check_imports` on the checkout's
.venv.
"""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from gpu_carry import CARRIED, ROOT, CarryError, check_wheels, wheel_name

# Kept as the machine has them, whatever pyproject.toml pins: built against its CUDA and ABI.
MACHINE_OWN = ("torch", "torchaudio", "numpy", "scipy")
# A mismatch known and accepted: asteroid is installed without its metadata's dependencies
# (scripts/install.sh), which pin torchmetrics<=0.11.4; pyproject.toml lists its real needs.
NOT_WALKED = ("asteroid",)
IMPORTS = ("asteroid", "asteroid_filterbanks", "soundfile", "pyloudnorm", "fast_bss_eval", "pesq", "pystoi",
           "torch_stoi", "pandas", "pytorch_lightning")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def project_requirements() -> list:
    import tomllib  # Python 3.11+: the check's Pythons (3.12 there, the .venv here)
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [Requirement(r) for r in project["dependencies"]] + [Requirement("asteroid==0.7.0")]


def carried_wheels(carry: Path) -> list[Path]:
    wheels = sorted((carry / "wheels").glob("*.whl"))
    if not wheels:
        raise CarryError(f"{carry / 'wheels'}: no wheels; build them here with `scripts/gpu_check.sh --build` and name "
                         f"{carry.name} in the device call's carry")
    check_wheels(wheels)
    return wheels


def plan(candidates: dict[str, str]) -> dict:
    """Which carried distributions ({name: version}) to install here: those this Python lacks,
    or has at a version sepbench's pin refuses (any version will do for one sepbench does not
    pin directly). The rest are kept as the machine has them."""
    from packaging.utils import canonicalize_name

    pins = {canonicalize_name(r.name): r.specifier for r in project_requirements()}
    install, kept = {}, {}
    for name, version in sorted(candidates.items()):
        have = _version(name)
        if have is not None and (name not in pins or pins[name].contains(have, prereleases=True)):
            kept[name] = have
        else:
            install[name] = version
    return {"install": install, "kept_machine": kept}


def install(carry: Path, site: Path, log=print) -> dict:
    """Install the carried wheels that this machine lacks (`plan`) into `site` and put it first
    on the path of this process and of every process it starts."""
    wheels = {wheel_name(w)[0]: w for w in carried_wheels(carry)}
    chosen = plan({name: wheel_name(w)[1] for name, w in wheels.items()})
    if chosen["install"]:
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--disable-pip-version-check", "--target", str(site),
               *(str(wheels[name]) for name in chosen["install"])]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise CarryError(f"pip install of the carried wheels failed: {' '.join((proc.stderr or proc.stdout).split())[-400:]}")
    activate(site)
    kept = chosen["kept_machine"]
    log(f"install: {len(chosen['install'])} carried wheels into {site}; kept the machine's {', '.join(kept) or 'none'}")
    return {"site": str(site), "installed": chosen["install"], "kept_machine": kept}


def plan_only(carry: Path, log=print) -> dict:
    """The dry run's install stage: the plan `install` would follow with this Python, pip left
    out (the carried wheels are for CPython 3.12; the .venv may be another). With no carried
    folder built, the plan is over CARRIED at the versions --build would carry (this Python's)."""
    from packaging.utils import canonicalize_name

    if (carry / "wheels").is_dir():
        candidates = {wheel_name(w)[0]: wheel_name(w)[1] for w in carried_wheels(carry)}
        source = f"{carry / 'wheels'}"
    else:
        candidates = {canonicalize_name(n): _version(n) or "?" for n in CARRIED}
        source = f"CARRIED in perf/gpu_carry.py ({carry} not built)"
    chosen = plan(candidates)
    log(f"install (dry run, pip left out): would install {', '.join(chosen['install']) or 'nothing'}; would keep "
        f"{len(chosen['kept_machine'])} of {len(candidates)} as this Python has them; wheels from {source}")
    return {"dry_run": True, "from": source, "would_install": chosen["install"], "kept_machine": chosen["kept_machine"]}


def activate(site: Path) -> None:
    site = str(site)
    if site not in sys.path:
        sys.path.insert(0, site)
    os.environ["PYTHONPATH"] = os.pathsep.join([site, str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    importlib.invalidate_caches()


def verify() -> dict:
    """sepbench's dependency tree against what this Python can import. Errors: a direct
    dependency missing, or at a version its pin refuses (the machine's torch family aside), or a
    carried package's dependency missing. Only reported: other transitive mismatches and gaps,
    which are the machine image's own (the import check below still has to pass)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    carried = {canonicalize_name(n) for n in CARRIED}
    env = {"extra": ""}
    machine_own, errors, notes = {}, [], []
    todo = [(r, None) for r in project_requirements()]
    seen = set()
    while todo:
        req, parent = todo.pop()
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = canonicalize_name(req.name)
        have = _version(name)
        where = f"{req} (needed by {parent or 'sepbench'})"
        if have is None:
            (errors if parent is None or parent in carried else notes).append(f"{where}: not installed")
            continue
        if not req.specifier.contains(have, prereleases=True):
            if parent is None and name in MACHINE_OWN:
                machine_own[name] = {"pinned": str(req.specifier), "machine": have}
            elif parent is None:
                errors.append(f"{where}: {have} installed")
            else:
                notes.append(f"{where}: {have} installed")
        if name in seen or name in NOT_WALKED:
            continue
        seen.add(name)
        todo += [(Requirement(r), name) for r in (metadata.requires(name) or [])]
    if errors:
        raise CarryError("dependencies not met: " + "; ".join(sorted(errors)))
    return {"machine_own_versions": machine_own, "transitive_mismatches": sorted(notes),
            "distributions_checked": len(seen)}


def check_imports() -> dict:
    """Import what the check runs and score one pair with pesq: the compiled extension must load."""
    import numpy as np

    found = {}
    for module in IMPORTS:
        try:
            found[module] = getattr(importlib.import_module(module), "__file__", "") or ""
        except Exception as exc:  # any import failure: one line naming the module
            raise CarryError(f"import {module} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    import pesq

    t = np.arange(16000) / 8000
    clean = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    noisy = clean + 0.03 * np.random.default_rng(0).standard_normal(t.size).astype(np.float32)
    score = float(pesq.pesq(8000, clean, noisy, "nb"))
    if not -0.5 <= score <= 4.7:  # PESQ's own range; NaN fails too
        raise CarryError(f"pesq returned {score} on a test pair: the extension is broken")
    return {"modules": found, "pesq_probe": score}
