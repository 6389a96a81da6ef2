"""Data-parallel training for real: 2 CPU processes (gloo) through the same command line a user
runs, against one process on the same global batch."""
import subprocess
import sys

import torch


def _train(data, out, extra):
    cmd = [sys.executable, "-m", "benchmark.cli", "train", "conv_tasnet", "--data", str(data), "--profile", "smoke",
           "--out", str(out), "trainer.max_epochs=2", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return torch.load(out / "conv_tasnet" / "smoke" / "best.pt", weights_only=True)


def test_two_processes_match_one_on_the_same_global_batch(tiny_data, tmp_path):
    one = _train(tiny_data, tmp_path / "one", ["optim.batch_size=4"])
    two = _train(tiny_data, tmp_path / "two", ["--devices", "2", "--strategy", "ddp", "optim.batch_size=2"])
    diff = max((one["state_dict"][k] - two["state_dict"][k]).abs().max().item() for k in one["state_dict"])
    assert diff < 1e-5, f"weights differ by {diff}"
    assert two["meta"]["epoch"] == one["meta"]["epoch"]
    # Both runs really trained (equal weights are not two untouched initialisations).
    log = (tmp_path / "two" / "conv_tasnet" / "smoke" / "log.csv").read_text().splitlines()
    assert len(log) == 3 and float(log[2].split(",")[3]) < float(log[1].split(",")[3])
