"""Each benchmark script runs in --quick mode on tiny inputs, prints its table and the machine,
and writes figures that make sense. One child process runs all of them (imports paid once); it
gets one OpenMP thread, because spinning threads on a busy 2-core machine made tiny models
10-100x slower and the point here is that the scripts work, not their figures."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import recipes

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("bench_training", "bench_loading", "bench_eval", "bench_inference", "bench_batch", "bench_export")
DRIVER = """
import sys
sys.path.insert(0, sys.argv[1])
out = sys.argv[2]
for name in sys.argv[3:]:
    code = __import__(name).main(["--quick", "--out", f"{out}/{name}.json"])
    print(f"== {name} exit {code}", flush=True)
"""


def test_benchmark_scripts_run_quick(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(ROOT / "perf"), str(tmp_path), *SCRIPTS],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in SCRIPTS:
        assert f"== {name} exit 0" in out, out[-3000:]
    assert out.count("load average (1/5/15 min) at end") == len(SCRIPTS)
    assert out.count("machine: ") == len(SCRIPTS)
    figs = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in SCRIPTS}

    for recipe, f in figs["bench_training"]["recipes"].items():
        for clock in ("wall", "cpu"):
            c = f[clock]
            assert c["steps_per_side"] >= 1 and 0 < c["plain_s_median"] and 0 < c["sepbench_s_median"], (recipe, c)
            assert math.isclose(c["ratio_of_medians"], c["sepbench_s_median"] / c["plain_s_median"])
            assert 0 < c["ratio_paired_median"] < math.inf
    assert "| conv_tasnet |" in out and "| lstm_mask |" in out

    for f in figs["bench_loading"]["recipes"].values():
        assert 0 < f["load_share_warm"] < 1 and 0 < f["load_share_cold"] < 1 and f["step_clips_per_s"] > 0

    ev = figs["bench_eval"]
    assert set(ev["clips_per_s"]) == {"asteroid", "sepbench_jobs_default", "sepbench_jobs_1"}
    assert all(v > 0 for v in ev["clips_per_s"].values())
    assert all(v > 0 for v in ev["further_model_clips_per_s"].values())
    assert ev["sepbench_phases_s"]["default"]["workers"] > 0  # the pool was really used
    # The two implementations must agree on the same estimates (float32 vs float64 aside).
    for column, d in {**ev["diffs"], **{f"{k} (jobs default)": v for k, v in ev["diffs_jobs_default"].items()
                                          if isinstance(v, dict)}}.items():
        if not isinstance(d, dict) or d["n"] == 0:
            continue
        assert d["max_abs_diff"] < (1e-3 if "sisdr" in column else 1e-6), (column, d)
    assert ev["diffs"]["voice_sisdr"]["n"] == ev["n_clips"]

    inf = figs["bench_inference"]["recipes"]
    assert set(inf) == set(recipes.names())  # every registered recipe, including new ones
    for name, f in inf.items():
        for key in ("short", "long"):
            assert f[key]["rtf"] > 0 and f[key]["peak_mib"] >= f[key]["base_mib"] > 0, (name, key, f)

    batch = figs["bench_batch"]["recipes"]
    assert set(batch) == set(recipes.names())
    for name, f in batch.items():
        assert f["one_s_per_clip"] > 0 and f["batch_s_per_clip"] > 0, (name, f)
        assert math.isclose(f["speedup"], f["one_s_per_clip"] / f["batch_s_per_clip"])
        assert f["max_abs_diff"] < 1e-4, (name, f)  # batching must not change an output

    exported = figs["bench_export"]["recipes"]
    assert set(exported) == set(recipes.default_names())
    for name, f in exported.items():
        assert f["rtf"]["torch"] > 0 and f["rtf"]["torchscript"] > 0, (name, f)  # every recipe traces
        assert set(f["rtf"]) | set(f["errors"]) == {"torch", "onnxruntime", "torchscript"}, (name, f)
        assert all(d <= 1e-4 for d in f["max_rel_diff"].values()), (name, f)  # export.TOLERANCE
