"""Issue 27, round 3: limits checked before any work starts, `evaluate --jobs 1` survives a crash
in native code, and misleading messages about folders where files belong (and the reverse)."""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import recipes
from benchmark.cli import main
from benchmark.scoring import aggregate
from benchmark.scoring.workers import CRASH_REASON, Runner
from recipes import data as data_mod
from recipes.checkpoint import save_model

ROOT = Path(__file__).resolve().parents[1]
SR = 8000


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


# ---- 1. limits before work ----

@pytest.mark.parametrize("policy", ["pad", "skip"])
def test_a_segment_longer_than_every_clip_is_refused_before_a_run_folder_exists(tiny_data, tmp_path, capsys, policy):
    # It used to die in the first batch with "Unable to allocate 29.1 TiB", its run marked running.
    code = main(["train", "lstm_mask", "--data", str(tiny_data), "--profile", "smoke", "--out", str(tmp_path / "runs"),
                 "data.segment_seconds=1e9", f"data.short_policy={policy}"])
    line = _one_error_line(capsys)
    said = "data.segment_seconds=1e+09 is" if policy == "pad" else "the segment (1e+09 s) is"
    assert code == 2 and f"{said} longer than every" in line, line
    assert str(tiny_data / "train") in line and "longest 1 s" in line, line
    assert not (tmp_path / "runs" / "lstm_mask" / "smoke").exists()


def test_the_batch_memory_estimate_counts_what_the_loader_holds():
    # 4 examples of 3 float32 signals (mix, voice, noise), held twice (items, collated batch),
    # and 2 batches prefetched per loader worker besides the one trained on.
    per_batch = 4 * 1000 * 3 * 4
    assert data_mod.batch_bytes(batch=4, segment=1000, workers=0) == 2 * per_batch
    assert data_mod.batch_bytes(batch=4, segment=1000, workers=3) == 2 * per_batch * (1 + 2 * 3)


def test_a_batch_that_cannot_fit_the_memory_is_refused_before_a_run_folder_exists(tiny_data, tmp_path, capsys,
                                                                                  monkeypatch):
    # No test machine has too little memory for a real batch: give it less than the smoke
    # profile's batch needs (4 x 0.5 s at 8 kHz) and more than one item of it needs.
    need = data_mod.batch_bytes(batch=4, segment=4000, workers=0)
    monkeypatch.setattr(data_mod, "memory_bytes", lambda: need // 2)
    code = main(["train", "lstm_mask", "--data", str(tiny_data), "--profile", "smoke", "--out", str(tmp_path / "runs")])
    line = _one_error_line(capsys)
    assert code == 2 and "optim.batch_size=4" in line and "memory" in line and str(tiny_data / "train") in line, line
    assert not (tmp_path / "runs" / "lstm_mask" / "smoke").exists()
    # The same batch with the memory it needs trains: only what cannot fit is refused. Each DDP
    # process on the machine has a loader of its own.
    monkeypatch.setattr(data_mod, "memory_bytes", lambda: need)
    code = main(["train", "lstm_mask", "--data", str(tiny_data), "--profile", "smoke", "--out", str(tmp_path / "runs"),
                 "--devices", "2"])
    line = _one_error_line(capsys)
    assert code == 2 and "in each of 2 processes" in line, line
    assert main(["train", "lstm_mask", "--data", str(tiny_data), "--profile", "smoke", "--out", str(tmp_path / "runs"),
                 "trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"]) == 0


def test_the_machine_memory_is_read_from_the_system():
    assert data_mod.memory_bytes() == os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") > 2**28


# ---- 3. a file where a folder belongs, a folder where a file belongs ----

def test_train_on_a_file_says_it_is_a_file(tmp_path, capsys):
    data = tmp_path / "data.tar"
    data.write_bytes(b"not a folder")
    code = main(["train", "lstm_mask", "--data", str(data), "--profile", "smoke", "--out", str(tmp_path / "runs")])
    line = _one_error_line(capsys)
    assert code == 2 and f"{data} is a file, not a data folder" in line, line
    assert not (tmp_path / "runs" / "lstm_mask" / "smoke").exists()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    args = {"sample_rate": SR, "hidden": 8, "n_layers": 1}
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "best.pt"
    save_model(path, recipes.get("lstm_mask").build(**args), "lstm_mask", args, SR)
    return path


@pytest.mark.parametrize("overwrite", [False, True])
def test_separate_onto_a_folder_named_like_an_output_is_one_error(checkpoint, tmp_path, capsys, write_clip,
                                                                tone_and_noise, overwrite):
    write_clip(tmp_path / "in", *tone_and_noise(4000))
    src = next((tmp_path / "in").glob("mix_*.wav"))
    out = tmp_path / "out"
    blocker = out / f"{src.stem}_voice.wav"
    (blocker / "inside").mkdir(parents=True)
    code = main(["separate", "--checkpoint", str(checkpoint), str(src), "--out", str(out), "--device", "cpu",
                 *(["--overwrite"] if overwrite else [])])
    line = _one_error_line(capsys)
    assert code != 0 and f"{blocker} is a folder, not a file" in line, line
    assert "sepbench-" not in line and "kept existing" not in line  # no temporary file's name
    assert sorted(p.name for p in out.iterdir()) == [blocker.name]  # nothing separated, nothing left
    assert [p.name for p in blocker.iterdir()] == ["inside"]


# ---- 2. evaluate --jobs 1 survives a crash in native code ----

CRASH_SAMPLES = SR + 77  # the one clip of this length kills its process

# Run as the main script, this file is imported again as __mp_main__ by every spawned worker,
# so the crash happens where the scoring runs. oracle_wiener only: the listening page (made in
# the main process) plays oracle_irm.
WRAPPER = f"""
import os, signal, sys
from benchmark.scoring import references

_real = references.estimate


def estimate(name, mix, sources, sample_rate):
    if name == "oracle_wiener" and len(mix) == {CRASH_SAMPLES}:
        os.kill(os.getpid(), signal.SIGSEGV)  # what a crash in a C library does to its process
    return _real(name, mix, sources, sample_rate)


references.estimate = estimate

if __name__ == "__main__":
    from benchmark.cli import main
    sys.exit(main(sys.argv[1:]))
"""


def test_evaluate_jobs_1_turns_a_segfault_into_one_failed_row(tmp_path, write_clip, tone_and_noise):
    data = tmp_path / "test"
    for k, n in enumerate([SR] * 5 + [CRASH_SAMPLES]):
        write_clip(data / f"{k + 1:04d}", *tone_and_noise(n, seed=k), snr=(-3, 0, 3)[k % 3])
    script = tmp_path / "crashing_sepbench.py"
    script.write_text(WRAPPER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script), "evaluate", "--data", str(data), "--references-only",
                           "--jobs", "1", "--device", "cpu", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]  # was -11 (SIGSEGV) with nothing written
    assert "a worker process died" in done.stdout + done.stderr
    df = aggregate.read_results(tmp_path / "out" / "results.csv")
    failed = df[df["failure_reason"] != ""]
    assert list(zip(failed["model"], failed["clip_id"])) == [("oracle_wiener", "0006")]
    assert CRASH_REASON in failed["failure_reason"].iloc[0] and math.isnan(failed["voice_sisdr"].iloc[0])
    scored = df[df["failure_reason"] == ""]
    assert len(scored) == 4 * 6 - 1 and np.isfinite(scored["voice_sisdr"]).all()


def _item_or_die(items):
    if "die" in items:
        os.kill(os.getpid(), signal.SIGSEGV)
    return [(x, os.getpid()) for x in items]


def _split(items):
    return [[x] for x in items]


def test_one_job_retries_a_crashed_pool_on_one_process_per_crash_not_per_item():
    runner = Runner(1, lambda _: None)
    try:
        tasks = [["a", "b"], ["c", "die"], ["d", "e", "f"]]
        out = [r for part in runner.map(_item_or_die, tasks, split=_split, crashed=lambda i, why: [(why, 0)])
               for r in part]
        assert sorted(x for x, _ in out) == sorted(["a", "b", "c", "d", "e", "f", CRASH_REASON])
        # the items after the crash ran in processes of their own, but one after another in
        # the same one until the crash: at most 3 processes (the pool, before and after the crash)
        assert len({pid for _, pid in out if pid}) <= 3
    finally:
        runner.close()

