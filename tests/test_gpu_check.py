"""The prepared GPU check (scripts/gpu_check.sh, perf/gpu_*.py): its --dry-run runs the real
run's code path on the CPU and must write a report whose figures make sense; bad input is one
line and a non-zero exit before anything starts; the carried wheels install as the GPU machine
installs them."""
from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
TAGS = ["conv_tasnet-bf16", "conv_tasnet-fp32", "lstm_mask-bf16", "spec_unet-bf16"]
STAGES = ["install", "dependencies", "machine", "prepare", "oracle on validation crops", *[f"train {t}" for t in TAGS],
          "bf16 vs fp32 on one batch", "evaluate", "separation vs metrics per row", "bf16 vs fp32 at the same minutes"]
N_TEST = 6  # perf/gpu_stages.py DRY_DATA
DRY_MINUTES = 0.05  # perf/gpu_check.py
CARRIED = {"asteroid", "asteroid-filterbanks", "pb-bss-eval", "cached-property", "mir-eval", "decorator", "torch-stoi",
           "torch-optimizer", "pytorch-ranger", "julius", "soundfile", "cffi", "pycparser", "pyloudnorm", "fast-bss-eval",
           "pesq", "pystoi", "submitit", "pandas"}  # perf/gpu_carry.py, canonical names


def run_check(*args, timeout=300):
    # The test's own Python (the .venv's in the suite); one OpenMP thread: on a busy 2-core
    # machine spinning threads made tiny models 10-100x slower, and the figures here are not timed.
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _positive(x) -> bool:
    return _number(x) and x > 0


def problems(r: dict) -> list[str]:
    """What is missing or not sane in a dry run's report.json; [] when all is well."""
    out = []

    def need(ok, what):
        if not ok:
            out.append(what)

    need(r.get("status") == "complete" and r.get("dry_run") is True and r.get("errors") == [], "status/errors")
    need([s.get("name") for s in r.get("stages", [])] == STAGES, "every stage, in order")
    need(all(s.get("status") == "ok" for s in r.get("stages", [])), "every stage ok")
    m = r.get("machine", {})
    need(all(m.get(k) for k in ("torch", "python", "git_commit", "device", "lightning")), "machine versions")
    need(m.get("gpu") is None and "no GPU" in m.get("note", ""), "the dry run says it has no GPU")
    need(_number(r.get("elapsed_s")) and r["elapsed_s"] <= r.get("plan", {}).get("budget_s", 0), "inside the budget")
    runs = {t.get("tag"): t for t in r.get("trainings", [])}
    need(sorted(runs) == sorted(TAGS), f"the four runs {TAGS}")
    o = r.get("oracle", {})
    need(_number(o.get("test_irm_sisdri")) and o["test_irm_sisdri"] > 3, "test oracle IRM SI-SDRi (demo data: ~12 dB)")
    need(_number(o.get("val_irm_sisdri")) and o["val_irm_sisdri"] > 3, "validation oracle IRM SI-SDRi")
    for tag, t in runs.items():
        need(t.get("precision") == ("32-true" if tag.endswith("fp32") else "bf16-mixed"), f"{tag}: precision")
        need(t.get("timer") == "host clock" and t.get("peak_gpu_mib") is None, f"{tag}: CPU timer, no GPU memory")
        # Equal minutes: the time budget ends every run, after about the minutes asked for.
        need(t.get("stop_reason") == "time budget" and _number(t.get("train_seconds"))
             and 60 * DRY_MINUTES <= t["train_seconds"] < 60 * DRY_MINUTES + 5, f"{tag}: stopped by its minutes")
        need(isinstance(t.get("steps_total"), int) and t["steps_total"] > t.get("warmup_steps_left_out", 99) + 1,
             f"{tag}: steps")
        for key in ("steps_per_s", "samples_per_s", "audio_s_per_s", "step_ms_median", "steps_per_s_in_epochs"):
            need(_positive(t.get(key)), f"{tag}: {key} > 0")
        need(_number(t.get("samples_per_s")) and _number(t.get("steps_per_s"))
             and math.isclose(t["samples_per_s"], t["steps_per_s"] * t.get("batch_size", 0), rel_tol=1e-6),
             f"{tag}: samples/s = steps/s x batch (every batch is full)")
        busy, wait = t.get("busy_share"), t.get("loader_wait_share")
        need(_number(busy) and _number(wait) and 0 <= busy <= 1 and math.isclose(busy + wait, 1), f"{tag}: busy share")
        shares = t.get("wall_shares", {})
        need(len(shares) == 3 and all(_number(v) and 0 <= v <= 1 for v in shares.values())
             and math.isclose(sum(shares.values()), 1, rel_tol=1e-6), f"{tag}: wall shares sum to 1")
        need(_number(t.get("val_sisdri")) and _number(t.get("test_sisdri")), f"{tag}: val and test SI-SDRi")
        need(_number(t.get("test_share_of_irm")) and _number(o.get("test_irm_sisdri"))
             and math.isclose(t["test_share_of_irm"], t["test_sisdri"] / o["test_irm_sisdri"]), f"{tag}: share of the IRM")
        need(_number(t.get("val_share_of_irm")), f"{tag}: validation share of the IRM")
        e = t.get("eval", {})
        need(e.get("rows") == N_TEST and e.get("failed_separations") == 0 and e.get("rows_with_a_failed_metric") == 0,
             f"{tag}: every test clip separated and scored")
        need(_number(e.get("separation_share_of_wall")) and 0 < e["separation_share_of_wall"] < 1,
             f"{tag}: separation share of the evaluation's wall")
        c = t.get("row_cost", {})
        need(c.get("rows") == N_TEST and c.get("rows_with_a_failed_metric") == 0, f"{tag}: row costs over the test clips")
        need(all(_positive(c.get(k)) for k in ("separation_ms_per_row", "separation_ms_per_row_alone",
                                               "metrics_ms_per_row", "input_scores_ms_per_clip")), f"{tag}: row costs > 0")
        need(_number(c.get("separation_share")) and _number(c.get("separation_ms_per_row"))
             and math.isclose(c["separation_share"], c["separation_ms_per_row"]
                              / (c["separation_ms_per_row"] + c.get("metrics_ms_per_row", math.nan)))
             and c.get("goal_met") == (c["separation_share"] < 0.1), f"{tag}: separation share of a row")
    b = r.get("bf16_vs_fp32", {})
    same = b.get("same_minutes", {})
    need(all(_positive(same.get(p, {}).get("samples_per_s")) for p in ("bf16-mixed", "32-true"))
         and _positive(same.get("bf16_over_fp32", {}).get("steps_per_s")), "bf16 vs fp32 at the same minutes")
    one = b.get("same_batch", {})
    need(all(_positive(one.get(p, {}).get("step_ms_median")) for p in ("bf16-mixed", "32-true"))
         and _positive(one.get("speedup_bf16")), "bf16 vs fp32 on one batch")
    # bf16 keeps 8 bits of mantissa: its output should sit well above 10 dB from fp32's, not equal it.
    need(_number(one.get("bf16_output_vs_fp32_db")) and 10 < one["bf16_output_vs_fp32_db"] < 80,
         "bf16's output differs from fp32's, but little")
    inst = r.get("install", {})
    planned = {*inst.get("would_install", {}), *inst.get("kept_machine", {})}
    need(inst.get("dry_run") is True and planned == CARRIED, "the dry run plans the install over every carried wheel")
    need(inst.get("would_install") == {}, "the .venv has every carried distribution at a pinned version: nothing to install")
    need(not r.get("dependencies", {}).get("machine_own_versions"), "the .venv matches pyproject.toml's pins")
    return out


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu_check")
    out = tmp / "out"
    # A carried folder never built: the plan is over CARRIED, whether or not .gpu_check/ exists here.
    proc = run_check("--dry-run", "--out", out, "--carry", tmp / "not-built")
    return proc, out


@pytest.mark.slow
def test_dry_run_reports_sane_figures(dry_run):
    proc, out = dry_run
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    report = json.loads((out / "report.json").read_text())
    assert problems(report) == []
    md = (out / "report.md").read_text()
    assert "DRY RUN" in md and "## Training at equal minutes" in md and "## bf16-mixed against fp32" in md
    assert "## Evaluation" in md and all(f"| {tag} |" in md for tag in TAGS)
    log = (out / "gpu_check.log").read_text()
    assert "GPU check plan" in log and "gpu check complete" in proc.stdout


@pytest.mark.slow
def test_report_checks_catch_broken_figures(dry_run):
    """The checks above fail on a report with an impossible or missing figure."""
    report = json.loads((dry_run[1] / "report.json").read_text())
    breakages = [lambda r: r["trainings"][0].update(busy_share=1.5),
                 lambda r: r["trainings"][1].update(samples_per_s=0.0),
                 lambda r: r["trainings"][2].update(test_sisdri=float("nan")),
                 lambda r: r["trainings"].pop(1),
                 lambda r: r["bf16_vs_fp32"].pop("same_minutes"),
                 lambda r: r["trainings"][3]["wall_shares"].update(in_step=2.0),
                 lambda r: r["trainings"][0].update(stop_reason="early stopping"),
                 lambda r: r["trainings"][1]["row_cost"].update(goal_met=not r["trainings"][1]["row_cost"]["goal_met"]),
                 lambda r: r["trainings"][2].pop("row_cost"),
                 lambda r: r["stages"].pop(),
                 lambda r: r.update(status="failed"),
                 lambda r: r["install"]["kept_machine"].pop("pesq"),
                 lambda r: r["bf16_vs_fp32"]["same_batch"].update(speedup_bf16=math.inf),
                 lambda r: r["machine"].pop("torch")]
    for breaking in breakages:
        broken = copy.deepcopy(report)
        breaking(broken)
        assert problems(broken), breaking


def test_bad_input_is_one_line_and_nonzero(tmp_path):
    cases = {("--dry-run", "--out", tmp_path / "o", "--frobnicate"): "unrecognized arguments",
             ("--dry-run",): "--out DIR is required",
             ("--dry-run", "--out", tmp_path / "o", "--minutes", "-1"): "must be a positive number",
             ("--out", tmp_path / "o", "--minutes", "30"): "over the 9-minute budget",
             ("--out", tmp_path / "o", "--carry", tmp_path / "nothing"): "no carried wheels"}
    for args, message in cases.items():
        proc = run_check(*args, timeout=120)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (args, proc.stderr)
        assert not (tmp_path / "o" / "report.json").exists()


def _fake_carry(carry: Path) -> Path:
    for sub in ("wheels", "sources/speech", "sources/noise"):
        (carry / sub).mkdir(parents=True)
    (carry / "wheels" / "x-1.0-py3-none-any.whl").write_bytes(b"")
    return carry


def test_real_run_without_cuda_is_refused(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the check would start for real")
    proc = run_check("--out", tmp_path / "o", "--carry", _fake_carry(tmp_path / "carry"), timeout=120)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "carried:" in proc.stdout and "of 64 MiB" in proc.stdout, proc.stdout


def test_carry_over_the_limit_is_refused(tmp_path):
    carry = _fake_carry(tmp_path / "carry")
    with open(carry / "sources" / "speech" / "big.flac", "wb") as f:
        f.truncate(65 * 2**20)  # sparse: its size counts, no disk is used
    proc = run_check("--out", tmp_path / "o", "--carry", carry, timeout=120)
    assert proc.returncode == 2 and "over the limit a device call carries" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# ---- installing the carried wheels, as on the GPU machine (here with the .venv's Python)

def _wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel of a module `name` that holds VALUE = version."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {f"{name}.py": f"VALUE = {version!r}\n",
             f"{info}/METADATA": "Metadata-Version: 2.1\n" f"Name: {name}\nVersion: {version}\n"
             + "".join(f"Requires-Dist: {r}\n" for r in requires),
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{n},,\n" for n in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(path, "w") as z:
        for n, text in files.items():
            z.writestr(n, text)
    return path


@pytest.fixture
def gpu_modules(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "perf"))
    import gpu_carry
    import gpu_install

    return gpu_carry, gpu_install


def test_install_puts_missing_wheels_first_and_keeps_what_meets_the_pins(gpu_modules, tmp_path, monkeypatch):
    gpu_carry, gpu_install = gpu_modules
    wheels = tmp_path / "carry" / "wheels"
    wheels.mkdir(parents=True)
    _wheel(wheels, "sepbench_probe_pkg", "1.0")
    _wheel(wheels, "pandas", "0.1")  # the .venv's pandas meets pyproject.toml's pin: kept, this one not installed
    monkeypatch.setattr(gpu_carry, "CARRIED", ("sepbench-probe-pkg", "pandas"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "")
    site = tmp_path / "site"
    result = gpu_install.install(tmp_path / "carry", site, log=lambda *_: None)
    assert result["installed"] == {"sepbench-probe-pkg": "1.0"} and "pandas" in result["kept_machine"]
    assert (site / "sepbench_probe_pkg.py").is_file() and not (site / "pandas").exists()
    assert sys.path[0] == str(site) and os.environ["PYTHONPATH"].split(os.pathsep)[0] == str(site)
    import sepbench_probe_pkg

    assert sepbench_probe_pkg.VALUE == "1.0"


def test_wheel_checks_name_what_is_wrong(gpu_modules, tmp_path, monkeypatch):
    gpu_carry, _ = gpu_modules
    monkeypatch.setattr(gpu_carry, "CARRIED", ("alpha", "beta"))
    alpha = _wheel(tmp_path, "alpha", "1.0", requires=("beta>=1", "torch", "nothere-pkg; python_version < '3'"))
    with pytest.raises(gpu_carry.CarryError, match="no wheel for beta"):
        gpu_carry.check_wheels([alpha])
    beta = _wheel(tmp_path, "beta", "2.0", requires=("missing-pkg>=3",))
    gpu_carry.check_wheels([alpha, beta])
    # torch is the machine's and the python_version < '3' marker is false there: only missing-pkg is a gap
    with pytest.raises(gpu_carry.CarryError, match="beta needs missing-pkg>=3") as gap:
        gpu_carry.check_closure([alpha, beta])
    assert "torch" not in str(gap.value) and "nothere" not in str(gap.value)
    cp311 = tmp_path / "gamma-1.0-cp311-cp311-manylinux_2_17_x86_64.whl"
    cp311.write_bytes(b"")
    with pytest.raises(gpu_carry.CarryError, match="not a wheel for CPython 3.12"):
        gpu_carry.check_wheels([alpha, beta, cp311])


def test_install_plan_replaces_what_the_pins_refuse(gpu_modules, monkeypatch):
    from packaging.requirements import Requirement

    _, gpu_install = gpu_modules
    monkeypatch.setattr(gpu_install, "project_requirements", lambda: [Requirement("pandas==0.1.*")])
    chosen = gpu_install.plan({"pandas": "0.1.5", "pyyaml": "1.0", "sepbench-not-installed": "2.0"})
    # pandas: the pin refuses this Python's; pyyaml: not pinned, any version is kept; the third is missing
    assert chosen["install"] == {"pandas": "0.1.5", "sepbench-not-installed": "2.0"}
    assert list(chosen["kept_machine"]) == ["pyyaml"]


@pytest.mark.slow
def test_gpu_loader_benchmark_figures(tmp_path):
    """perf/bench_loading.py --gpu-loader, which sets the gpu profile's num_workers: its rates,
    estimate and advice are there and agree with each other."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "perf" / "bench_loading.py"), "--gpu-loader", "--quick",
                           "--out", str(tmp_path / "f.json")], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    f = json.loads((tmp_path / "f.json").read_text())
    assert f["mode"] == "gpu_loader" and f["segment_s"] == 4.0 and {lo["mixing"] for lo in f["loaders"].values()} == {
        "dynamic", "stored"}
    for lo in f["loaders"].values():
        assert _positive(lo["samples_per_s"]) and math.isclose(lo["samples_per_s_per_worker"],
                                                                lo["samples_per_s"] / lo["workers"])
    demand = f["gpu_demand"]
    assert demand and all(_positive(d["est_samples_per_s"]) and _positive(d["gflop_per_step"]) for d in demand.values())
    assert math.isclose(f["needed_samples_per_s"], 2 * max(d["est_samples_per_s"] for d in demand.values()))
    for mixing, n in f["workers_for_2x"].items():
        rate = min(lo["samples_per_s_per_worker"] for lo in f["loaders"].values() if lo["mixing"] == mixing)
        assert n == math.ceil(f["needed_samples_per_s"] / rate), mixing
        assert f["fits_target_cores"][mixing] == (n <= f["target_cores"] - 1)


def test_build_without_python312_says_what_is_missing(gpu_modules, monkeypatch):
    gpu_carry, _ = gpu_modules
    monkeypatch.delenv("PYTHON312", raising=False)
    monkeypatch.setattr(gpu_carry.shutil, "which", lambda name: None)
    monkeypatch.setattr(gpu_carry.glob, "glob", lambda pattern: [])
    with pytest.raises(gpu_carry.CarryError, match="no Python 3.12 found .* pesq and fast-bss-eval wheels"):
        gpu_carry.find_python312()
    monkeypatch.setenv("PYTHON312", sys.executable if sys.version_info[:2] != (3, 12) else "/nonexistent/python")
    with pytest.raises(gpu_carry.CarryError, match="PYTHON312=.*: not a Python 3.12 that runs here"):
        gpu_carry.find_python312()
