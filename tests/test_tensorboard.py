"""trainer.logger=tensorboard: the run's metrics and validation audio in TensorBoard event files,
read back as TensorBoard reads them; the default csv logger writes none; a run may resume under
another logger and trains exactly as it would have."""
import csv
import io
import re
import wave

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from benchmark.cli import main
from recipes.train import train

RECIPE = "lstm_mask"
TB = ["trainer.logger=tensorboard", "trainer.tb_audio_every=2", "trainer.max_epochs=3"]
SCALARS = {"train_loss", "val_loss", "val_sisdr", "val_sisdri", "lr"}
AUDIO = re.compile(r"val_audio/(?P<clip>[^/]+)/(?P<what>mixture|voice_estimate|noise_estimate|voice_reference)")


def _events(run_dir) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"audio": 0, "scalars": 0})
    acc.Reload()
    return acc


def _log(run_dir) -> list[dict]:
    with open(run_dir / "log.csv") as f:
        return list(csv.DictReader(f))


def _steps(acc, tag) -> list[int]:
    return [e.step for e in (acc.Audio(tag) if tag.startswith("val_audio/") else acc.Scalars(tag))]


@pytest.fixture(scope="module")
def tb_run(tiny_data, tmp_path_factory):
    """3 epochs, audio every 2: at the first epoch and the third."""
    return train(RECIPE, tiny_data, "smoke", out=tmp_path_factory.mktemp("tb"), overrides=TB, progress=False)


def test_tensorboard_holds_the_metrics_and_the_validation_audio(tb_run):
    run = tb_run["run_dir"]
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert not (run / "lightning_logs").exists()
    log = _log(run)
    assert [int(row["epoch"]) for row in log] == [0, 1, 2]  # log.csv whatever the logger
    acc = _events(run)
    assert SCALARS <= set(acc.Tags()["scalars"])
    for name in ("train_loss", "val_loss", "val_sisdri"):  # the same numbers as log.csv
        assert [e.value for e in acc.Scalars(name)] == pytest.approx([float(row[name]) for row in log], abs=1e-5)
    assert [e.step for e in acc.Scalars("lr")] == [0, 4, 8]  # first step of each epoch (4 batches each)

    audio = [AUDIO.fullmatch(tag) for tag in acc.Tags()["audio"]]
    assert all(audio)
    clips = {m["clip"] for m in audio}
    assert len(clips) == min(3, tb_run["card"]["data"]["n_val"])
    epoch_steps = _steps(acc, "val_loss")  # audio of an epoch sits at that epoch's validation step
    for clip in clips:
        for what in ("mixture", "voice_estimate", "noise_estimate"):
            assert _steps(acc, f"val_audio/{clip}/{what}") == [epoch_steps[0], epoch_steps[2]]
        assert _steps(acc, f"val_audio/{clip}/voice_reference") == [epoch_steps[0]]
    for tag in acc.Tags()["audio"]:
        for event in acc.Audio(tag):
            assert event.sample_rate == 8000 and event.length_frames == 4000  # the data's rate, 0.5 s crops
            with wave.open(io.BytesIO(event.encoded_audio_string)) as w:
                assert w.getframerate() == 8000
                samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            peak = np.abs(samples).max() / 32767
            assert 0.85 < peak < 0.95, f"{tag}: peak {peak:.2f}, not normalised"


def test_csv_logger_writes_no_tensorboard_and_a_run_resumes_under_another_logger(tiny_data, tmp_path, tb_run):
    first = train(RECIPE, tiny_data, "smoke", out=tmp_path, overrides=["trainer.max_epochs=1"], progress=False)
    run = first["run_dir"]
    assert not (run / "tensorboard").exists()
    resumed = train(RECIPE, tiny_data, "smoke", out=tmp_path, overrides=TB, resume=True, progress=False)
    assert resumed["status"] == "trained" and [int(row["epoch"]) for row in _log(run)] == [0, 1, 2]
    acc = _events(run)
    clip = AUDIO.fullmatch(acc.Tags()["audio"][0])["clip"]
    assert _steps(acc, "val_loss") == [7, 11]  # the resumed epochs only, after 4 steps each
    # The session's first audio epoch (the third) brings the reference along.
    assert _steps(acc, f"val_audio/{clip}/mixture") == _steps(acc, f"val_audio/{clip}/voice_reference") == [11]
    # The logger and its extra forward pass change nothing: the weights of the one-session run.
    a, b = (torch.load(r["run_dir"] / "last.ckpt", weights_only=True)["state_dict"] for r in (tb_run, resumed))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6


@pytest.mark.parametrize("override", ["trainer.logger=wandb", "trainer.tb_audio_every=0"])
def test_bad_logger_settings_are_one_line_errors(tiny_data, tmp_path, capsys, override):
    assert main(["train", RECIPE, "--data", str(tiny_data), "--profile", "smoke", "--out", str(tmp_path), override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and override.split("=")[0] in err[0], err
    assert not (tmp_path / RECIPE).exists()
