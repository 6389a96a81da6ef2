"""perf/bench_scale.py --quick runs every stage on a tiny demo set and writes figures that make
sense: the second validate reuses the record and the 2-shard merge equals one process; the
training start and the models' evaluation are measured. perf/bench_metrics.py --quick prints and
writes each metric's cost. Neither checks a timing goal: that is the full-size run's job."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import recipes

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("generate", "validate (first)", "validate (unchanged)", "evaluate, 1 CLI process, jobs 1",
          "evaluate, 2 shards at once", "merge", "evaluate, models + references (run_all)")


def test_bench_scale_quick(tmp_path):
    out = tmp_path / "scale.json"
    # Own validation record folder: the user's must neither be read nor written.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, str(ROOT / "perf" / "bench_scale.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figs = json.loads(out.read_text())
    stages = figs["stages"]
    assert set(STAGES) <= set(stages), sorted(stages)
    assert any(name.startswith("evaluate in this process, jobs ") for name in stages), sorted(stages)
    for name, s in stages.items():
        assert math.isfinite(s["wall_s"]) and s["wall_s"] > 0, (name, s)
        assert math.isfinite(s["cpu_s"]) and s["cpu_s"] >= 0, (name, s)
    assert stages["validate (first)"]["cached"] is False
    assert stages["validate (unchanged)"]["cached"] is True
    assert figs["shards"] == 2 and stages["evaluate, 2 shards at once"]["shards"] == 2
    assert len(stages["evaluate, 2 shards at once"]["shard_wall_s"]) == 2
    assert stages["merge"]["merged_from"] == [2]
    assert figs["merge_identical"] is True
    assert figs["n_test"] == 12
    assert figs["speedup_2_shards"] > 0
    assert "merge identical: yes" in proc.stdout
    assert "| validate (unchanged) |" in proc.stdout

    # --quick trains the first recipe of run_all's default set only
    (recipe,) = figs["recipes"]
    assert recipe in recipes.default_names()
    train = stages[f"train {recipe} (2 steps)"]
    assert 0 < figs["train_start_s"][recipe] == train["first_step_s"] < train["wall_s"]
    models = stages["evaluate, models + references (run_all)"]
    assert {f"{recipe}/cpu", "oracle_irm", "(mixture baseline)"} <= set(models["rows_s"]), models["rows_s"]
    cores = figs["machine"]["cores"]
    assert math.isclose(figs["models_wall_per_cpu"], models["wall_s"] / (models["cpu_s"] / cores))
    assert figs["models_wall_per_cpu_ok"] is (figs["models_wall_per_cpu"] <= 1.15)
    assert f"train start (launch to first step): {recipe} " in proc.stdout
    assert "wall / (CPU / cores) = " in proc.stdout


def test_bench_metrics_quick(tmp_path):
    out = tmp_path / "metrics.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "perf" / "bench_metrics.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    figs = json.loads(out.read_text())
    assert figs["n_clips"] == 2 and figs["repeats"] == 1
    names = {"voice SI-SDR + noise SI-SDR", "SDR (512 taps)", "PESQ (nb)", "STOI alone (its own front end)",
             "ESTOI alone (its own front end)", "STOI + ESTOI front end", "STOI + ESTOI, shared front end (after)",
             "STOI + ESTOI, pystoi twice (before)", "snr_measured (stem gains)", "whole row (score_clip)"}
    for clock in ("wall_ms", "cpu_ms"):
        assert set(figs[clock]) == names, sorted(figs[clock])
        assert all(math.isfinite(v) and v > 0 for v in figs[clock].values()), figs[clock]
    both = figs["stoi_estoi"]
    assert both["before_ms"] == figs["wall_ms"]["STOI + ESTOI, pystoi twice (before)"]
    assert both["after_ms"] == figs["wall_ms"]["STOI + ESTOI, shared front end (after)"]
    assert math.isclose(both["speedup"], both["before_ms"] / both["after_ms"])
    assert both["max_abs_diff"] == 0.0  # the shared front end computes pystoi's values exactly
    for name in names:
        assert f"| {name} |" in proc.stdout
    assert "STOI + ESTOI: before " in proc.stdout
