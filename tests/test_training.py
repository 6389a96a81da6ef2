"""The shared training entry and config layering (recipe-independent behaviour)."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from asteroid.losses import PITLossWrapper, pairwise_neg_sisdr

from benchmark.cli import main
from recipes import config
from recipes.errors import SepbenchError
from recipes.losses import NegSISDR, NegSNR, SpecL1, si_sdr
from recipes.train import train


def test_fixed_order_loss_catches_swapped_outputs():
    torch.manual_seed(0)
    sources = torch.randn(4, 2, 8000)
    est = sources + 0.1 * torch.randn_like(sources)
    swapped = est.flip(1)  # noise where the voice should be
    loss = NegSISDR()
    assert loss(est, sources) < -15
    assert loss(swapped, sources) > 15
    # A PIT loss would forgive the swap: exactly the failure the fixed order is there to catch.
    pit = PITLossWrapper(pairwise_neg_sisdr, pit_from="pw_mtx")
    assert torch.isclose(pit(swapped, sources), pit(est, sources), atol=1e-4)
    spec = SpecL1(8000, 64, 16)
    assert spec(swapped, sources) > 5 * spec(est, sources)


def test_snr_loss_punishes_what_si_sdr_forgives():
    """A voice estimate at the wrong level on a DC offset: perfect for SI-SDR, bad for SNR."""
    torch.manual_seed(0)
    sources = torch.randn(2, 2, 8000)
    off = sources * 0.05 - 0.3
    assert NegSISDR()(off, sources) < -60
    assert NegSNR()(off, sources) > -1 and NegSNR()(sources, sources) < -60  # SNR under 1 dB vs perfect
    assert NegSNR()(sources.flip(1), sources) > 0  # fixed order, like every loss here


def test_si_sdr_matches_hand_computation():
    ref = torch.tensor([1.0, -1.0, 1.0, -1.0])
    est = 2 * ref + torch.tensor([0.5, 0.5, -0.5, -0.5])
    # zero-mean signals; projection of est on ref is 2*ref, residual energy 1.0, target 16.0
    assert torch.isclose(si_sdr(est, ref), 10 * torch.log10(torch.tensor(16.0)), atol=1e-4)


def test_losses_are_computed_in_float32_under_mixed_precision():
    """A bf16 model output (autocast) must not make the loss coarse: the mean removal alone, done
    in bf16, moves a 40 dB SI-SDR by ~0.2 dB."""
    torch.manual_seed(0)
    ref = torch.randn(4, 16000) + 0.3
    est = (ref + 0.01 * torch.randn_like(ref)).bfloat16()
    exact = si_sdr(est.double(), ref.double())
    assert si_sdr(est, ref).dtype == torch.float32
    assert (si_sdr(est, ref).double() - exact).abs().max() < 1e-3
    sources = torch.stack([ref, ref.flip(-1)], 1)
    loss_bf16 = SpecL1(8000, 64, 16)(sources.bfloat16(), sources)
    assert loss_bf16.dtype == torch.float32
    assert torch.isclose(loss_bf16, SpecL1(8000, 64, 16)(sources.bfloat16().float(), sources), atol=1e-6)


def test_bf16_mixed_training_runs_and_exports_float32(tiny_data, tmp_path):
    """--precision bf16-mixed, the GPU setting, exercised on the CPU (same autocast path)."""
    result = train("conv_tasnet", tiny_data, "smoke", out=tmp_path, overrides=["trainer.precision=bf16-mixed"],
                   progress=False)
    payload = torch.load(result["best"], weights_only=True)
    assert {v.dtype for v in payload["state_dict"].values() if v.is_floating_point()} == {torch.float32}
    losses = [float(line.split(",")[3]) for line in (result["run_dir"] / "log.csv").read_text().splitlines()[1:]]
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_config_layers_and_unknown_keys():
    cfg = config.resolve("conv_tasnet", "smoke", ["optim.lr=3e-4", "model.n_blocks=3"])
    assert cfg["optim"]["lr"] == 3e-4 and cfg["model"]["n_blocks"] == 3
    assert cfg["trainer"]["limit_train_batches"] == 4  # from base's smoke profile
    assert cfg["model"]["n_filters"] == 16  # from the recipe's smoke profile
    with pytest.raises(SepbenchError, match="unknown config key 'lrr'"):
        config.resolve("conv_tasnet", "smoke", ["optim.lrr=1"])
    with pytest.raises(SepbenchError, match="unknown profile"):
        config.resolve("conv_tasnet", "laptop")
    with pytest.raises(SepbenchError, match="bad model config"):
        config.model_args("conv_tasnet", 8000, {"n_blokcs": 2})
    args = config.model_args("conv_tasnet", 16000, {"n_blocks": 2})
    assert args["sample_rate"] == 16000 and args["n_blocks"] == 2 and args["kernel_ms"] == 2.0


@pytest.mark.parametrize("override", ["trainer.limit_val_batches=0", "trainer.limit_train_batches=0",
                                      "trainer.limit_val_batches=abc"])
def test_settings_that_would_crash_inside_lightning_are_refused_up_front(override):
    with pytest.raises(SepbenchError, match=override.replace(".", r"\.").split("=")[0]):
        config.resolve("conv_tasnet", "smoke", [override])
    assert config.resolve("conv_tasnet", "smoke", ["trainer.limit_val_batches=0.5"])["trainer"]["limit_val_batches"] == 0.5


def test_stft_sizes_follow_the_sample_rate():
    from recipes.stft_masking import stft_sizes
    assert stft_sizes(8000, 32, 8) == (256, 64)
    assert stft_sizes(16000, 32, 8) == (512, 128)


def test_resolved_config_saved_and_changed_config_refused(tiny_data, tmp_path):
    train("lstm_mask", tiny_data, "smoke", out=tmp_path, overrides=["trainer.max_epochs=1"], progress=False)
    run = tmp_path / "lstm_mask" / "smoke"
    saved = config.yaml.safe_load((run / "config.yaml").read_text())
    assert saved["trainer"]["max_epochs"] == 1 and saved["recipe"] == "lstm_mask"
    with pytest.raises(SepbenchError, match="another config.*optim.lr"):
        train("lstm_mask", tiny_data, "smoke", out=tmp_path, overrides=["optim.lr=0.5"], resume=True, progress=False)
    card = config.yaml.safe_load((run / "card.json").read_text())
    assert card["data"]["hash"] and card["n_params"] > 0 and card["model_args"]["sample_rate"] == 8000


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["train", "lstm_mask", "--data", str(tmp_path / "nope"), "--profile", "smoke"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and "does not exist" in err[0]
    assert main(["train", "no_such_recipe", "--data", str(tmp_path)]) == 2
    assert "unknown recipe" in capsys.readouterr().err


def test_kill_9_then_rerun_resumes(tiny_data, tmp_path):
    """A training killed with SIGKILL continues from last.ckpt when the same command is re-run."""
    cmd = [sys.executable, "-m", "benchmark.cli", "train", "lstm_mask", "--data", str(tiny_data),
           "--profile", "smoke", "--out", str(tmp_path), "trainer.max_epochs=8"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=os.getcwd())
    log = tmp_path / "lstm_mask" / "smoke" / "log.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
        assert proc.poll() is None, "training exited before it could be killed"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert log.exists(), "training did not start"
    done_before = len(log.read_text().splitlines()) - 1
    assert done_before < 8
    result = train("lstm_mask", tiny_data, "smoke", out=tmp_path, overrides=["trainer.max_epochs=8"], progress=False)
    epochs = [int(line.split(",")[0]) for line in log.read_text().splitlines()[1:]]
    # Epochs continue after the last checkpoint instead of restarting from 0.
    assert epochs.count(0) == 1
    assert epochs[done_before] >= done_before - 1
    assert result["card"]["status"] == "complete"
    assert result["card"]["epochs"] == 8 or result["card"]["stop_reason"] == "early stopping"


def test_mid_epoch_checkpoint_resumes_with_the_remaining_batches(tiny_data, tmp_path, monkeypatch):
    """A checkpoint written mid-epoch (SLURM's preemption save, hpc_ckpt_N.ckpt, newer than
    last.ckpt) is the one resumed, and continues with the epoch's remaining batches and crops:
    the weights of an uninterrupted run. Lightning alone would replay the epoch from its start."""
    from recipes.system import SeparationSystem

    args = dict(overrides=["trainer.max_epochs=3"], progress=False)
    whole = train("lstm_mask", tiny_data, "smoke", out=tmp_path / "whole", **args)

    run_dir = tmp_path / "cut" / "lstm_mask" / "smoke"

    def preempt(self, outputs, batch, batch_idx):
        if self.current_epoch == 1 and batch_idx == 1:
            self.trainer.save_checkpoint(run_dir / "hpc_ckpt_1.ckpt")
            raise RuntimeError("preempted")

    monkeypatch.setattr(SeparationSystem, "on_train_batch_end", preempt, raising=False)
    with pytest.raises(RuntimeError, match="preempted"):
        train("lstm_mask", tiny_data, "smoke", out=tmp_path / "cut", **args)
    monkeypatch.undo()
    assert (run_dir / "last.ckpt").is_file()  # epoch 0's, older: resuming from it would redo steps
    steps, step = [], SeparationSystem.training_step
    monkeypatch.setattr(SeparationSystem, "training_step", lambda self, *a: steps.append(1) or step(self, *a))
    resumed = train("lstm_mask", tiny_data, "smoke", out=tmp_path / "cut", **args)
    assert len(steps) == 2 + 4  # the rest of epoch 1, then epoch 2 (4 batches each)
    a, b = (torch.load(r["best"], weights_only=True) for r in (whole, resumed))
    assert a["meta"]["epoch"] == b["meta"]["epoch"]
    diff = max((a["state_dict"][k] - b["state_dict"][k]).abs().max().item() for k in a["state_dict"])
    assert diff < 1e-6, f"weights differ by {diff}"


def test_each_seed_trains_in_its_own_run_folder(tiny_data, tmp_path):
    """seed 0 keeps the plain runs/<recipe>/<profile>/ folder; seed K goes to <profile>-seedK/,
    so seeds never resume or overwrite each other, and the card records the seed."""
    import json

    one = ["trainer.max_epochs=1", "model.hidden=8"]
    first = train("lstm_mask", tiny_data, "smoke", out=tmp_path, overrides=one, progress=False)
    other = train("lstm_mask", tiny_data, "smoke", out=tmp_path, overrides=one + ["seed=3"], progress=False)
    assert first["run_dir"] == tmp_path / "lstm_mask" / "smoke" and first["status"] == "trained"
    assert other["run_dir"] == tmp_path / "lstm_mask" / "smoke-seed3" and other["status"] == "trained"
    assert json.loads((other["run_dir"] / "card.json").read_text())["seed"] == 3
    assert not torch.equal(*(torch.load(r["best"], weights_only=True)["state_dict"]["masker.rnn.weight_ih_l0"]
                             for r in (first, other)))
