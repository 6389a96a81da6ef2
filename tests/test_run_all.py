"""The one command, end to end on generated data: everything is produced, a second run redoes
nothing, a killed training is resumed, a failing recipe does not stop the others."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = "conv_tasnet,lstm_mask"


def run_all(data, tmp, *extra):
    cmd = [str(ROOT / "run_all.sh"), "--data", str(data), "--profile", "smoke", "--recipes", RECIPES,
           "--runs", str(tmp / "runs"), "--out", str(tmp / "lb"), "--jobs", "1", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp)


def mtimes(folder):
    """Output files by modification time; lock files (rewritten by every call) are not outputs."""
    return {p: p.stat().st_mtime_ns for p in sorted(Path(folder).rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


@pytest.mark.slow
def test_end_to_end_then_nothing_redone(tiny_data, tmp_path):
    started = time.monotonic()
    first = run_all(tiny_data, tmp_path)
    first_seconds = time.monotonic() - started
    assert first.returncode == 0, first.stderr[-3000:]
    lb = tmp_path / "lb"
    for name in ("results.csv", "summary.csv", "LEADERBOARD.md", "si_sdri_by_snr.png", "listen/index.html"):
        assert (lb / name).is_file(), name
    board = (lb / "LEADERBOARD.md").read_text()
    assert "conv_tasnet" in board and "lstm_mask" in board and "oracle_irm" in board
    assert "conv_tasnet" in first.stdout  # the table is printed at the end
    runs_before, cache_before = mtimes(tmp_path / "runs"), mtimes(lb / "cache")

    page_before = mtimes(lb / "listen")
    started = time.monotonic()
    second = run_all(tiny_data, tmp_path)
    second_seconds = time.monotonic() - started
    assert second.returncode == 0, second.stderr[-3000:]
    assert "already trained" in second.stderr
    # Nothing to redo: no data check, no training process, no separation for the page.
    assert "unchanged since it was validated" in second.stderr
    assert "listening page up to date" in second.stdout + second.stderr
    assert mtimes(lb / "listen") == page_before, "the listening page was rebuilt"
    assert second_seconds < first_seconds / 2, (first_seconds, second_seconds)
    assert mtimes(tmp_path / "runs") == runs_before, "a finished training was redone"
    assert mtimes(lb / "cache") == cache_before, "a cached evaluation was redone"


@pytest.mark.slow
def test_killed_training_is_resumed_by_run_all(tiny_data, tmp_path):
    # The same command run_all issues, killed with SIGKILL after its first finished epoch.
    cmd = [sys.executable, "-m", "benchmark.cli", "train", "lstm_mask", "--data", str(tiny_data),
           "--profile", "smoke", "--out", str(tmp_path / "runs")]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run = tmp_path / "runs" / "lstm_mask" / "smoke"
    deadline = time.time() + 300
    while time.time() < deadline and not (run / "last.ckpt").exists():
        assert proc.poll() is None, "training ended before it could be killed"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    card = json.loads((run / "card.json").read_text())
    assert card["status"] == "running"
    done = run_all(tiny_data, tmp_path, "--recipes", "lstm_mask")
    assert done.returncode == 0, done.stderr[-3000:]
    epochs = [int(line.split(",")[0]) for line in (run / "log.csv").read_text().splitlines()[1:]]
    assert epochs.count(0) == 1 and epochs[-1] == 2, f"not resumed: epochs {epochs}"
    assert json.loads((run / "card.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_a_failing_recipe_is_reported_and_the_others_still_run(tiny_data, tmp_path):
    # A run folder holding an unfinished run with another config makes that training refuse.
    bad = tmp_path / "runs" / "lstm_mask" / "smoke"
    bad.mkdir(parents=True)
    (bad / "last.ckpt").write_bytes(b"not a checkpoint")
    (bad / "config.yaml").write_text("seed: 12345\n")
    done = run_all(tiny_data, tmp_path)
    assert done.returncode == 1
    assert "FAILED: lstm_mask" in done.stderr
    assert "conv_tasnet" in (tmp_path / "lb" / "LEADERBOARD.md").read_text()


def test_scale_flags_reach_every_training_command(monkeypatch, tmp_path):
    """--devices/--num-nodes/--strategy/--precision go to each `sepbench train`, which owns them;
    a CLI that accepts a flag and drops it would train on one device in float32 without a word."""
    from benchmark import run_all
    from benchmark.launch import local

    calls = []
    monkeypatch.setattr(local.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    args = run_all.parse_args(["--devices", "4", "--num-nodes", "2", "--strategy", "ddp", "--precision",
                               "bf16-mixed", "--runs", str(tmp_path), "--profile", "gpu"])
    assert local.train(run_all.plan(args, tmp_path, ["conv_tasnet", "lstm_mask"])) == []
    assert len(calls) == 2
    for cmd in calls:
        tail = " ".join(cmd[cmd.index("train"):])
        for flag in ("--devices 4", "--num-nodes 2", "--strategy ddp", "--precision bf16-mixed", "--profile gpu"):
            assert flag in tail, (flag, tail)


@pytest.mark.parametrize("flag, expected", [(None, "default"), ("all", "all"), ("lstm_mask", "lstm_mask")])
def test_default_recipe_set_and_all(monkeypatch, tiny_data, tmp_path, flag, expected):
    """A plain run trains the default set (the three seed methods among them), --recipes all every
    registered recipe: 12 recipes x 10 cpu minutes would not fit the hour a default run aims for."""
    import recipes
    from benchmark import run_all
    from benchmark.launch import local

    trained = []
    monkeypatch.setattr(local, "run", lambda plan, options: trained.extend(
        t.run_dir.parent.name for t in plan.trainings) or ["stop"])
    assert run_all.main(["--data", str(tiny_data), "--runs", str(tmp_path), "--out", str(tmp_path / "lb")]
                        + (["--recipes", flag] if flag else [])) == 1
    want = {"default": recipes.default_names(), "all": recipes.names()}.get(expected, [expected])
    assert trained == want
    assert {"lstm_mask", "spec_unet", "conv_tasnet"} <= set(recipes.default_names()) < set(recipes.names())


def test_finished_runs_start_no_process(monkeypatch, tmp_path, capsys):
    """A re-run decides from the run folders: a finished run (complete card + best.pt) starts no
    `sepbench train` process; an unfinished one, or any with --force, does. Each start says the
    overall position and the training time left."""
    import json

    from benchmark import run_all
    from benchmark.launch import local

    for name, status in (("lstm_mask", "complete"), ("spec_unet", "running")):
        run = tmp_path / name / "cpu"
        run.mkdir(parents=True)
        (run / "card.json").write_text(json.dumps({"status": status}))
        (run / "best.pt").write_bytes(b"x")
    calls = []
    monkeypatch.setattr(local.subprocess, "call", lambda cmd: calls.append(cmd[cmd.index("train") + 1]) or 0)
    names = ["lstm_mask", "spec_unet", "conv_tasnet"]

    def train_all(argv):
        return local.train(run_all.plan(run_all.parse_args(argv), tmp_path, names))

    assert train_all(["--runs", str(tmp_path)]) == []
    assert calls == ["spec_unet", "conv_tasnet"]
    err = capsys.readouterr().err
    assert "lstm_mask: already trained (1/3)" in err
    # The cpu profile gives every recipe 10 minutes: the overall time left counts what remains.
    assert "training spec_unet (2/3, profile cpu; at most 20 min of training left)" in err
    assert "training conv_tasnet (3/3, profile cpu; at most 10 min of training left)" in err
    calls.clear()
    train_all(["--runs", str(tmp_path), "--force"])
    assert calls == names


def test_seeds_train_seed_by_seed_into_their_own_folders(monkeypatch, tmp_path, capsys):
    """--seeds 2: every recipe's seed 0, then every recipe's seed 1 (in <profile>-seed1/, with
    --seed 1); a finished seed is skipped like any finished run."""
    import json

    from benchmark import run_all
    from benchmark.launch import local

    run = tmp_path / "lstm_mask" / "cpu-seed1"
    run.mkdir(parents=True)
    (run / "card.json").write_text(json.dumps({"status": "complete"}))
    (run / "best.pt").write_bytes(b"x")
    calls = []
    monkeypatch.setattr(local.subprocess, "call", lambda cmd: calls.append(
        (cmd[cmd.index("train") + 1], cmd[cmd.index("--seed") + 1] if "--seed" in cmd else None)) or 0)
    args = run_all.parse_args(["--runs", str(tmp_path), "--seeds", "2"])
    assert local.train(run_all.plan(args, tmp_path, ["lstm_mask", "spec_unet"])) == []
    assert calls == [("lstm_mask", None), ("spec_unet", None), ("spec_unet", "1")]
    assert "lstm_mask seed 1: already trained (3/4)" in capsys.readouterr().err


def test_validation_is_skipped_for_files_that_passed_it_unchanged(monkeypatch, tiny_copy, tmp_path, capsys):
    from benchmark import run_all
    from benchmark.data import validate as validate_module

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert run_all.check_data(tiny_copy)
    calls = []
    real = validate_module.validate
    monkeypatch.setattr(validate_module, "validate", lambda data, **kw: calls.append(data) or real(data, **kw))
    assert run_all.check_data(tiny_copy) and calls == []
    assert "unchanged since it was validated" in capsys.readouterr().err
    assert run_all.check_data(tiny_copy, force=True) and len(calls) == 1
    voice = next((tiny_copy / "test").glob("*/voice.wav"))
    voice.write_bytes(voice.read_bytes()[:100])  # truncated: the data set changed and is now broken
    assert not run_all.check_data(tiny_copy) and len(calls) == 2
    assert "not usable" in capsys.readouterr().err
