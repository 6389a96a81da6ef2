"""train never loses a finished run and refuses bad input before it writes anything (issue 13)."""
import subprocess
import sys
import textwrap

import pytest

from benchmark.cli import main
from recipes.errors import SepbenchError
from recipes.train import train


def _snapshot(run_dir):
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name.endswith((".pt", ".json", ".csv"))}


@pytest.fixture
def finished(tiny_data, tmp_path):
    result = train("lstm_mask", tiny_data, "smoke", out=tmp_path / "runs", overrides=["trainer.max_epochs=1"],
                   progress=False)
    return result["run_dir"], _snapshot(result["run_dir"])


@pytest.mark.parametrize("bad", [{"data": "TYPO"}, {"overrides": ["optim.lr=abc"]}, {"overrides": ["model.hidden=-3"]},
                                 {"overrides": ["trainer.accelerator=tpu"]}])
def test_force_with_bad_input_keeps_the_finished_run(finished, tiny_data, tmp_path, bad):
    run_dir, before = finished
    args = {"data": tiny_data, "overrides": ["trainer.max_epochs=1"], **bad}
    with pytest.raises(SepbenchError):
        train("lstm_mask", args["data"], "smoke", out=tmp_path / "runs", overrides=args["overrides"], force=True,
              progress=False)
    assert _snapshot(run_dir) == before


def test_force_failing_before_its_first_checkpoint_restores_the_old_run(finished, tiny_data, tmp_path, monkeypatch):
    from recipes.system import SeparationSystem

    run_dir, before = finished

    def crash(self, *args):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(SeparationSystem, "training_step", crash)
    with pytest.raises(RuntimeError, match="out of memory"):
        train("lstm_mask", tiny_data, "smoke", out=tmp_path / "runs", overrides=["trainer.max_epochs=1"], force=True,
              progress=False)
    assert _snapshot(run_dir) == before
    assert not (run_dir.parent / ".smoke.replaced").exists()


def test_force_killed_before_its_first_checkpoint_gets_the_old_run_back_next_time(finished, tiny_data, tmp_path):
    """kill -9 between moving the old run aside and the new run's first best.pt: the next call
    puts the old run back instead of resuming a run that has nothing."""
    run_dir, before = finished
    aside = run_dir.parent / ".smoke.replaced"
    run_dir.rename(aside)
    run_dir.mkdir()
    (run_dir / "card.json").write_text('{"status": "running"}')
    result = train("lstm_mask", tiny_data, "smoke", out=tmp_path / "runs", overrides=["trainer.max_epochs=1"],
                   progress=False)
    assert result["status"] == "skipped" and _snapshot(run_dir) == before and not aside.exists()


def test_force_replaces_the_run_once_the_new_one_has_a_checkpoint(finished, tiny_data, tmp_path):
    run_dir, before = finished
    # Another learning rate (not another seed: a seed has its own run folder) makes another model.
    result = train("lstm_mask", tiny_data, "smoke", out=tmp_path / "runs",
                   overrides=["trainer.max_epochs=1", "optim.lr=0.005"], force=True, progress=False)
    assert result["status"] == "trained" and result["run_dir"] == run_dir
    assert _snapshot(run_dir)["best.pt"] != before["best.pt"]
    assert not (run_dir.parent / ".smoke.replaced").exists()


def test_a_second_training_of_the_same_run_is_refused_with_the_holders_pid(tiny_data, tmp_path, capfd):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from recipes.lock import exclusive_lock
        with exclusive_lock({str(tmp_path / "runs" / "lstm_mask")!r}, "training", name=".smoke.lock"):
            print("held", flush=True)
            time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code = main(["train", "lstm_mask", "--data", str(tiny_data), "--profile", "smoke", "--out",
                     str(tmp_path / "runs")])
        err = capfd.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and f"PID {holder.pid}" in err[0] and "locked" in err[0]
        assert not (tmp_path / "runs" / "lstm_mask" / "smoke").exists()
    finally:
        holder.kill()
        holder.wait()
    # The kernel dropped the killed holder's lock: the same command now trains.
    assert main(["train", "lstm_mask", "--data", str(tiny_data), "--profile", "smoke", "--out",
                 str(tmp_path / "runs"), "trainer.max_epochs=1"]) == 0


@pytest.mark.parametrize("override", ["optim.lr=abc", "optim.lr=-1", "optim.batch_size=0", "data.segment_seconds=0",
                                      "model.hidden=abc", "data.val_fraction=1.5", "trainer.max_minutes=-2"])
def test_bad_values_are_one_line_errors_and_write_nothing(tiny_data, tmp_path, capsys, override):
    code = main(["train", "lstm_mask", "--data", str(tiny_data), "--profile", "smoke", "--out", str(tmp_path / "runs"),
                 override])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and override.split("=")[0] in err[0], err
    assert not (tmp_path / "runs" / "lstm_mask" / "smoke" / "card.json").exists()


@pytest.mark.parametrize("content", [b"not a checkpoint at all", b"PK\x03\x04truncated zip"])
def test_a_tampered_last_checkpoint_is_refused_in_one_line(tiny_data, tmp_path, capsys, content):
    run_dir = tmp_path / "runs" / "lstm_mask" / "smoke"
    train("lstm_mask", tiny_data, "smoke", out=tmp_path / "runs", overrides=["trainer.max_epochs=1"], progress=False)
    (run_dir / "last.ckpt").write_bytes(content)
    capsys.readouterr()
    code = main(["train", "lstm_mask", "--data", str(tiny_data), "--profile", "smoke", "--out", str(tmp_path / "runs"),
                 "--resume", "trainer.max_epochs=2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "last.ckpt" in err[0] and "--force" in err[0]
    assert "weights_only=False" not in err[0]


def test_resume_says_where_it_continues_and_epochs_count_alike(tiny_data, tmp_path, capsys):
    out = str(tmp_path / "runs")
    assert main(["train", "lstm_mask", "--data", str(tiny_data), "--profile", "smoke", "--out", out,
                 "trainer.max_epochs=1"]) == 0
    capsys.readouterr()
    assert main(["train", "lstm_mask", "--data", str(tiny_data), "--profile", "smoke", "--out", out, "--resume",
                 "trainer.max_epochs=2"]) == 0
    err = capsys.readouterr().err
    assert "resuming from last.ckpt after epoch 1" in err
    assert "epoch 2/2" in err  # the screen counts from 1 ...
    best = int(err.split("best epoch ")[1].split(",")[0])
    assert best in (1, 2)  # ... and so does the summary (card.json keeps Lightning's 0-based index)


def test_a_full_disk_while_saving_last_ckpt_leaves_the_previous_one_whole(tiny_data, tmp_path, monkeypatch):
    """Lightning's own save staged last.ckpt in /tmp and copied it over: a full disk left a
    truncated file that no re-run could resume. Epoch 2's save fails half-written here."""
    import errno

    import torch

    out = tmp_path / "runs"
    overrides = ["trainer.max_epochs=2", "trainer.early_stop_patience=5"]
    real_save, saves = torch.save, []

    def save(obj, f, *args, **kwargs):
        name = str(getattr(f, "name", f))
        if ".last.ckpt." in name:
            saves.append(name)
            if len(saves) == 2:
                f.write(b"half a checkpoint")
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(OSError, match="No space left"):
        train("lstm_mask", tiny_data, "smoke", out=out, overrides=overrides, progress=False)
    run_dir = out / "lstm_mask" / "smoke"
    assert len(saves) == 2
    state = torch.load(run_dir / "last.ckpt", weights_only=False)
    assert state["epoch"] == 0  # epoch 1's checkpoint, whole
    assert not [p.name for p in run_dir.iterdir() if ".tmp" in p.name]
    monkeypatch.setattr(torch, "save", real_save)
    result = train("lstm_mask", tiny_data, "smoke", out=out, overrides=overrides, progress=False)
    assert result["run_dir"] == run_dir and (run_dir / "best.pt").is_file()
