"""perf/bench_scale.py --quick runs every stage on a tiny demo set and writes figures that make
sense: the second validate reuses the record and the 2-shard merge equals one process."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("generate", "validate (first)", "validate (unchanged)", "evaluate, 1 CLI process, jobs 1",
          "evaluate, 2 shards at once", "merge")


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
