"""What the prepared GPU check carries to a GPU machine that has no network, built here by
`scripts/gpu_check.sh --build` into .gpu_check/ (ignored by git; the device call names it in
`carry`):

  wheels/   the packages sepbench needs that the GPU machine's image lacks, for its Python 3.12:
            binary wheels from PyPI (cp312, abi3 or pure), and wheels built here with a local
            Python 3.12 for the two that PyPI has as source only (pesq, a C extension, and
            fast-bss-eval), so that nothing compiles there. Versions are the ones installed in
            this checkout's .venv, i.e. the tested ones.
  sources/  speech/ and noise/ recordings for `sepbench prepare`: a subset of
            data/real_dev_sources/ at 8 kHz, the data set's rate (the whole folder is ~180 MB;
            a device call takes 64 MiB in all, working tree included).

Installing them there is perf/gpu_install.py.
"""
from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARRY = ROOT / ".gpu_check"
LIMIT_MIB = 64  # what a device call carries: the working tree plus the carried folders

# Distributions carried as wheels: sepbench's dependencies absent from the GPU image, the
# runtime needs of those, and pandas, whose pin (3.1) the image's version may not meet.
CARRIED = ("asteroid", "asteroid-filterbanks", "pb-bss-eval", "cached-property", "mir-eval", "decorator",
           "torch-stoi", "torch-optimizer", "pytorch-ranger", "julius", "soundfile", "cffi", "pycparser",
           "pyloudnorm", "fast-bss-eval", "pesq", "pystoi", "submitit", "pandas")
SOURCE_ONLY = ("pesq", "fast-bss-eval")  # PyPI has no wheel of these: built here with Python 3.12
# The GPU image's Python packages (read on such a machine on 2026-11-17; versions are checked
# there, by gpu_install.verify): what a carried wheel may require without carrying it.
MACHINE_HAS = frozenset("""
    cloudpickle einops filelock huggingface-hub jinja2 lightning matplotlib numpy onnx onnxruntime onnxscript
    packaging python-dateutil pytorch-lightning pyyaml requests scipy tabulate tensorboard threadpoolctl torch
    torchaudio torchmetrics tqdm typing-extensions""".split())
PY_TAGS = ("cp312", "abi3", "py3", "py2.py3")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")

SPEECH_EVERY = 5       # every 5th recording of each speaker (sorted by name): all 7 speakers stay
LONG_NOISE_S = 60.0    # noise files longer than this (the music tracks, ~2.5 min) ...
EXCERPT_S = 30.0       # ... travel as their middle 30 s
RATE = 8000


class CarryError(Exception):
    """One line for the user: what is wrong and what to do."""


def mib(n_bytes: int) -> float:
    return n_bytes / 2**20


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def find_python312() -> str:
    """A local Python 3.12 to build the source-only wheels with: $PYTHON312, python3.12 on the
    PATH, a pyenv install, or uv's (`uv python find 3.12`)."""
    def is_312(exe: str) -> bool:
        try:
            probe = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
                                   capture_output=True, text=True)
        except OSError:  # not there, or not a program
            return False
        return probe.returncode == 0 and probe.stdout.strip() == "True"

    given = os.environ.get("PYTHON312")
    if given:  # named by the user: the others are not what was asked for
        if not is_312(given):
            raise CarryError(f"PYTHON312={given}: not a Python 3.12 that runs here")
        return given
    candidates = [shutil.which("python3.12") or ""]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")), reverse=True)
    if shutil.which("uv"):
        found = subprocess.run(["uv", "python", "find", "3.12"], capture_output=True, text=True)
        candidates.append(found.stdout.strip() if found.returncode == 0 else "")
    for exe in filter(None, candidates):
        if is_312(exe):
            return exe
    raise CarryError(f"no Python 3.12 found (PYTHON312, python3.12, ~/.pyenv/versions/3.12*, uv) to build the "
                     f"{' and '.join(SOURCE_ONLY)} wheels for the GPU machine; set PYTHON312=/path/to/python3.12 "
                     "(e.g. from `uv python install 3.12` or pyenv)")


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        tail = " | ".join(line for line in (proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise CarryError(f"{what} failed: {tail}")


def _local_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        raise CarryError(f"{name} is not installed in this Python ({sys.executable}); run scripts/install.sh first") from None


def build_wheels(out: Path, log=print) -> list[Path]:
    """Every CARRIED distribution as a wheel for CPython 3.12 on x86-64 Linux, at the version
    installed here."""
    pins = {name: _local_version(name) for name in CARRIED}
    py312 = find_python312()  # before any download: without it the carry cannot be complete
    binary = [f"{n}=={v}" for n, v in pins.items() if n not in SOURCE_ONLY]
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    log(f"wheels: downloading {len(binary)} binary wheels for CPython 3.12")
    _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
          "--implementation", "cp", *platforms, "-d", str(out), *binary], "pip download")
    log(f"wheels: building {', '.join(SOURCE_ONLY)} with {py312}")
    with tempfile.TemporaryDirectory() as tmp:
        # A throw-away build environment: pesq's setup.py imports numpy and Cython itself, so
        # pip's isolated build cannot build it; these are the build tools, not what travels.
        venv = Path(tmp) / "venv"
        _run([py312, "-m", "venv", str(venv)], "making a Python 3.12 build environment")
        pip = [str(venv / "bin" / "python"), "-m", "pip"]
        _run([*pip, "install", "-q", f"numpy=={_local_version('numpy')}", "cython", "setuptools", "wheel"],
             "installing build tools into the Python 3.12 environment")
        sdists = Path(tmp) / "sdists"
        _run([*pip, "download", "-q", "--no-deps", "--no-binary", ":all:", "-d", str(sdists),
              *[f"{n}=={pins[n]}" for n in SOURCE_ONLY]], "downloading the source distributions")
        _run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), *map(str, sdists.iterdir())],
             "building the source-only wheels")
    wheels = sorted(out.glob("*.whl"))
    check_wheels(wheels)
    check_closure(wheels)
    return wheels


def wheel_name(path: Path):
    from packaging.utils import canonicalize_name, parse_wheel_filename

    name, version, _, tags = parse_wheel_filename(path.name)
    return canonicalize_name(name), str(version), tags


def check_wheels(wheels: list[Path]) -> None:
    """One wheel per carried distribution, each installable on CPython 3.12 / x86-64 Linux."""
    from packaging.utils import canonicalize_name

    seen = {}
    for w in wheels:
        try:
            name, version, tags = wheel_name(w)
        except ValueError:
            raise CarryError(f"{w.name}: not a wheel file name") from None
        if name in seen:
            raise CarryError(f"two wheels of {name} ({seen[name]}, {version}): pip would refuse both")
        seen[name] = version
        if not any(t.interpreter in PY_TAGS and (t.platform == "any" or t.platform.endswith("x86_64")) for t in tags):
            raise CarryError(f"{w.name}: not a wheel for CPython 3.12 on x86-64 Linux")
    missing = sorted({canonicalize_name(n) for n in CARRIED} - set(seen))
    if missing:
        raise CarryError(f"no wheel for {', '.join(missing)}")


def check_closure(wheels: list[Path]) -> None:
    """Every requirement of a carried wheel (for CPython 3.12 on Linux) is carried too or in the
    GPU image: pip there installs with --no-deps, so a gap would only show as an ImportError."""
    import zipfile

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
           "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
    have = {canonicalize_name(n) for n in CARRIED} | MACHINE_HAS
    gaps = []
    for w in wheels:
        with zipfile.ZipFile(w) as z:
            meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
            lines = z.read(meta).decode("utf-8", "replace").splitlines()
        for line in lines:
            if line.startswith("Requires-Dist:"):
                req = Requirement(line.split(":", 1)[1].strip())
                if (req.marker is None or req.marker.evaluate(env)) and canonicalize_name(req.name) not in have:
                    gaps.append(f"{wheel_name(w)[0]} needs {req}")
    if gaps:
        raise CarryError("carried wheels need what neither the GPU image nor the carry has: " + "; ".join(gaps)
                         + " (add it to CARRIED in perf/gpu_carry.py)")


def build_sources(src: Path, out: Path, log=print) -> dict:
    """The carried subset of the real-speech sources: every SPEECH_EVERY-th file of each speaker,
    every noise file (long ones as their middle EXCERPT_S seconds), all at RATE, FLAC 16 bit."""
    import numpy as np
    import soundfile as sf

    from recipes.audio import resample

    if not (src / "speech").is_dir() or not (src / "noise").is_dir():
        raise CarryError(f"{src}: no speech/ and noise/ folders; scripts/make_real_dev.sh builds them")
    rows, seconds = [], {"speech": 0.0, "noise": 0.0}
    for kind in ("speech", "noise"):
        for group in sorted(p for p in (src / kind).iterdir() if p.is_dir()):
            files = sorted(group.glob("*.flac"))
            picked = files[::SPEECH_EVERY] if kind == "speech" else files
            for path in picked:
                x, rate = sf.read(str(path), dtype="float64", always_2d=True)
                x = x.mean(axis=1)
                start = 0
                if kind == "noise" and len(x) > LONG_NOISE_S * rate:
                    start = (len(x) - int(EXCERPT_S * rate)) // 2
                    x = x[start:start + int(EXCERPT_S * rate)]
                y = np.clip(resample(x, rate, RATE), -1.0, 1.0)
                target = out / kind / group.name / path.name
                target.parent.mkdir(parents=True, exist_ok=True)
                sf.write(str(target), y, RATE, subtype="PCM_16", format="FLAC")
                seconds[kind] += len(y) / RATE
                rows.append({"file": target.relative_to(out).as_posix(), "from": path.relative_to(src).as_posix(),
                             "start_s": f"{start / rate:.3f}", "seconds": f"{len(y) / RATE:.3f}"})
    with open(out / "SOURCES.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    log(f"sources: {len(rows)} files, speech {seconds['speech'] / 60:.1f} min, noise {seconds['noise'] / 60:.1f} min "
        f"(from {src})")
    return {"files": len(rows), "speech_minutes": seconds["speech"] / 60, "noise_minutes": seconds["noise"] / 60}


def working_tree_bytes() -> int:
    """What a device call sends besides the carried folders: tracked and untracked, not ignored.
    Without git (a copied tree), every file outside the ignored run folders."""
    proc = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True)
    if proc.returncode == 0:
        paths = (ROOT / os.fsdecode(p) for p in proc.stdout.split(b"\0") if p)
        return sum(p.stat().st_size for p in paths if p.is_file())
    skip = {".git", ".venv", CARRY.name, "data", "runs"}
    return sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file() and p.relative_to(ROOT).parts[0] not in skip)


def carried_size(carry: Path) -> dict:
    """Bytes of what travels: wheels, sources and the working tree. CarryError when over LIMIT_MIB."""
    sizes = {"carry": folder_bytes(carry), "wheels": folder_bytes(carry / "wheels"),
             "sources": folder_bytes(carry / "sources"), "working_tree": working_tree_bytes()}
    total = sizes["carry"] + sizes["working_tree"]
    line = (f"carried: {carry.name}/ {mib(sizes['carry']):.1f} MiB (wheels {mib(sizes['wheels']):.1f}, sources "
            f"{mib(sizes['sources']):.1f}) + working tree {mib(sizes['working_tree']):.1f} MiB = {mib(total):.1f} "
            f"of {LIMIT_MIB} MiB")
    if mib(total) > LIMIT_MIB:
        raise CarryError(f"{line}: over the limit a device call carries; lower SPEECH_EVERY's share in "
                         "perf/gpu_carry.py and rebuild")
    return {"bytes": sizes, "total_mib": round(mib(total), 2), "limit_mib": LIMIT_MIB, "line": line}


def build(carry: Path = CARRY, sources: Path = ROOT / "data" / "real_dev_sources", log=print) -> dict:
    """Rebuild CARRY (wheels/ and sources/) and check that it travels within LIMIT_MIB."""
    if not (sources / "speech").is_dir() or not (sources / "noise").is_dir():  # before minutes of downloads
        raise CarryError(f"{sources}: no speech/ and noise/ folders; scripts/make_real_dev.sh builds them")
    staging = Path(tempfile.mkdtemp(prefix=f"{carry.name}.", dir=carry.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would survive the rename
    try:
        build_wheels(staging / "wheels", log)
        info = build_sources(sources, staging / "sources", log)
        if carry.exists():
            shutil.rmtree(carry)
        staging.rename(carry)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    wheels = sorted((carry / "wheels").glob("*.whl"))
    for w in wheels:
        log(f"  {w.name}  {w.stat().st_size / 1024:.0f} KiB")
    # The device copies the working tree, perhaps without .git: the report names this commit too.
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True)
    (carry / "BUILD.json").write_text(json.dumps({"git_commit": commit.stdout.strip() or None, "sources": info,
                                                  "python312": find_python312(),
                                                  "wheels": [w.name for w in wheels]}, indent=2) + "\n")
    size = carried_size(carry)  # raises when over: the folder stays, to be looked at
    log(size["line"])
    return {**size, **info}
