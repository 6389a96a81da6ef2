"""Data-parallel training for real: 2 CPU processes (gloo) through the same command line a user
runs, against one process on the same global batch; and a run resumed on another device count."""
import subprocess
import sys

import pytest
import torch

RUN = ("conv_tasnet", "smoke")
TWO = ["--devices", "2", "--strategy", "ddp", "optim.batch_size=2"]
ONE = ["optim.batch_size=4"]


def _train(data, out, extra, epochs=2, resume=False):
    cmd = [sys.executable, "-m", "benchmark.cli", "train", RUN[0], "--data", str(data), "--profile", RUN[1],
           "--out", str(out), f"trainer.max_epochs={epochs}", *(["--resume"] if resume else []), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _weights(out) -> dict:
    return torch.load(out.joinpath(*RUN, "best.pt"), weights_only=True)


def _max_diff(a, b) -> float:
    return max((a["state_dict"][k] - b["state_dict"][k]).abs().max().item() for k in a["state_dict"])


@pytest.fixture(scope="module")
def one_process(tiny_data, tmp_path_factory):
    """The reference: 2 epochs in one process, global batch 4."""
    out = tmp_path_factory.mktemp("one")
    done = _train(tiny_data, out, ONE)
    assert done.returncode == 0, done.stderr[-2000:]
    return out


def test_two_processes_match_one_on_the_same_global_batch(tiny_data, tmp_path, one_process):
    done = _train(tiny_data, tmp_path, TWO)
    assert done.returncode == 0, done.stderr[-2000:]
    one, two = _weights(one_process), _weights(tmp_path)
    assert _max_diff(one, two) < 1e-5
    assert two["meta"]["epoch"] == one["meta"]["epoch"]
    # Both runs really trained (equal weights are not two untouched initialisations).
    log = tmp_path.joinpath(*RUN, "log.csv").read_text().splitlines()
    assert len(log) == 3 and float(log[2].split(",")[3]) < float(log[1].split(",")[3])


@pytest.mark.parametrize("first,then", [(TWO, ONE), (ONE, TWO)], ids=["2to1", "1to2"])
def test_resume_on_another_device_count_continues_the_same_training(tiny_data, tmp_path, one_process, first, then):
    """Epoch 1 on one device count, epoch 2 resumed from last.ckpt on the other, global batch kept:
    the weights of the uninterrupted one-process run (optimizer and sampler state carried over)."""
    done = _train(tiny_data, tmp_path, first, epochs=1)
    assert done.returncode == 0, done.stderr[-2000:]
    after_one = _weights(tmp_path)
    done = _train(tiny_data, tmp_path, then, epochs=2, resume=True)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed, reference = _weights(tmp_path), _weights(one_process)
    assert resumed["meta"]["epoch"] == reference["meta"]["epoch"] == after_one["meta"]["epoch"] + 1
    assert _max_diff(resumed, reference) < 1e-5
    assert _max_diff(resumed, after_one) > 1e-4  # epoch 2 did happen


def test_resume_that_would_change_the_global_batch_is_refused(tiny_data, tmp_path):
    done = _train(tiny_data, tmp_path, ONE, epochs=1)
    assert done.returncode == 0, done.stderr[-2000:]
    done = _train(tiny_data, tmp_path, ["--devices", "2", "--strategy", "ddp"] + ONE, epochs=2, resume=True)
    assert done.returncode != 0
    line = done.stderr.strip().splitlines()[-1]
    assert "global batch" in line and "4 -> 8" in line and "optim.batch_size=2 keeps it" in line
    assert "Traceback" not in done.stderr
