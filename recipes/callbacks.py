"""Lightning callbacks of the shared training entry. All file writes happen on global rank 0."""
from __future__ import annotations

import csv
import math
import os
import shutil
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from .checkpoint import save_model
from .files import atomic_path

LOG_FIELDS = ("epoch", "step", "train_loss", "val_loss", "val_sisdr", "val_sisdri", "lr", "train_seconds")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's own save stages the file in the system's temporary folder and then moves it,
    which across file systems is a copy: a full disk left a truncated last.ckpt (348,160 of
    880,193 bytes) that every re-run then refused to resume. Here the file is written and synced
    beside its target and renamed over it, so last.ckpt is the old file or the new one, whole."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())


def _metric(trainer: pl.Trainer, name: str) -> float:
    value = trainer.callback_metrics.get(name)
    return float(value) if value is not None else math.nan


class TimeBudget(pl.Callback):
    """Wall-clock budget summed over every resumed session (its state rides in last.ckpt), so an
    interrupted run does not get a fresh budget each time it is restarted."""

    def __init__(self, max_minutes: float | None):
        self.budget = None if max_minutes is None else 60.0 * max_minutes
        self.previous = 0.0
        self.started = time.monotonic()
        self.exhausted = False

    @property
    def elapsed(self) -> float:
        return self.previous + time.monotonic() - self.started

    def on_train_start(self, trainer, pl_module) -> None:
        self.started = time.monotonic()

    def on_train_batch_end(self, trainer, *args) -> None:
        if self.budget is not None and self.elapsed >= self.budget:
            self.exhausted = True
            trainer.should_stop = True

    def state_dict(self) -> dict:
        return {"elapsed": self.elapsed}

    def load_state_dict(self, state: dict) -> None:
        self.previous = float(state.get("elapsed", 0.0))


def cosine_factor(step: int, progress: float, warmup_steps: int, final: float) -> float:
    """Linear warm-up over `warmup_steps`, then a cosine from 1 down to `final` as `progress`
    goes from 0 to 1 (and `final` after that)."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    p = min(max(progress, 0.0), 1.0)
    return warm * (final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * p)))


class CosineSchedule(pl.Callback):
    """Warm-up then cosine decay over the run's length, set before every optimizer step. With a
    wall-clock budget the length IS the budget (progress = budget spent), so the learning rate
    reaches its floor as time runs out whatever the machine's speed; without one, it is the
    max_epochs' step count. Stateless: a resumed run recomputes it from the step and the budget."""

    def __init__(self, lr: float, warmup_steps: int, final_factor: float, budget: TimeBudget):
        self.lr, self.warmup, self.final, self.budget = lr, warmup_steps, final_factor, budget

    def progress(self, trainer) -> float:
        if self.budget.budget is not None:
            return self.budget.elapsed / self.budget.budget
        return trainer.global_step / max(1, trainer.estimated_stepping_batches)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        lr = self.lr * cosine_factor(trainer.global_step, self.progress(trainer), self.warmup, self.final)
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = lr


class BestExport(pl.Callback):
    """Writes best.pt (a self-describing sepbench checkpoint) whenever val_loss improves."""

    def __init__(self, path: Path, recipe: str, model_args: dict, sample_rate: int, meta: dict):
        self.path, self.recipe, self.model_args, self.sample_rate, self.meta = path, recipe, model_args, sample_rate, meta
        self.best, self.best_epoch, self.best_sisdri = math.inf, -1, math.nan

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        loss = _metric(trainer, "val_loss")
        if not loss < self.best:
            return
        self.best, self.best_epoch, self.best_sisdri = loss, trainer.current_epoch, _metric(trainer, "val_sisdri")
        if trainer.is_global_zero:
            model = getattr(pl_module.model, "_orig_mod", pl_module.model)  # unwrap torch.compile
            save_model(self.path, model, self.recipe, self.model_args, self.sample_rate,
                       epoch=self.best_epoch, val_loss=loss, val_sisdri=self.best_sisdri, **self.meta)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_sisdri": self.best_sisdri}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch = float(state["best"]), int(state["best_epoch"])
        self.best_sisdri = float(state.get("best_sisdri", math.nan))


class ReplaceOld(pl.Callback):
    """`train --force` keeps the old run aside until the new one has its first best.pt."""

    def __init__(self, best: Path, old: Path):
        self.best, self.old = best, old

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and self.best.exists() and self.old.exists():
            shutil.rmtree(self.old)


class EpochLog(pl.Callback):
    """Appends one row per epoch to log.csv (appending keeps the history across resumes) and, when
    no progress bar is shown, prints the same as a plain line with an ETA."""

    def __init__(self, path: Path, budget: TimeBudget, max_epochs: int, echo: bool):
        self.path, self.budget, self.max_epochs, self.echo = path, budget, max_epochs, echo

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        row = {"epoch": trainer.current_epoch, "step": trainer.global_step,
               "train_loss": _metric(trainer, "train_loss"), "val_loss": _metric(trainer, "val_loss"),
               "val_sisdr": _metric(trainer, "val_sisdr"), "val_sisdri": _metric(trainer, "val_sisdri"),
               "lr": trainer.optimizers[0].param_groups[0]["lr"], "train_seconds": round(self.budget.elapsed, 2)}
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.echo:
            done = trainer.current_epoch + 1
            per_epoch = self.budget.elapsed / max(done, 1)
            eta = per_epoch * (self.max_epochs - done)
            if self.budget.budget is not None:
                eta = min(eta, max(0.0, self.budget.budget - self.budget.elapsed))
            print(f"epoch {done}/{self.max_epochs}  train_loss {row['train_loss']:.3f}  "
                  f"val_loss {row['val_loss']:.3f}  val_sisdri {row['val_sisdri']:+.2f} dB  "
                  f"lr {row['lr']:.1e}  elapsed {row['train_seconds']:.0f}s  eta <= {eta:.0f}s",
                  file=sys.stderr, flush=True)


def _logging_step(trainer: pl.Trainer) -> int:
    # The step Lightning logs metrics at (its own LearningRateMonitor reads it too): the audio of
    # an epoch lands on the same step as that epoch's val_sisdri, where global_step is one past it.
    return trainer.fit_loop.epoch_loop._batches_that_stepped


def _peak_normalised(x: torch.Tensor) -> torch.Tensor:
    # SI-SDR-trained estimates have no meaningful level: every signal gets the same peak, so none
    # clips (add_audio cuts at +-1) and they play at comparable loudness.
    peak = x.abs().max()
    return x * (0.9 / peak) if peak > 0 else x


class TensorBoardExtras(pl.Callback):
    """What TensorBoard gets beyond the metrics SeparationSystem logs itself (train_loss, val_loss,
    val_sisdr, val_sisdri): the learning rate, and every `audio_every` epochs (the first included)
    the separations of a few fixed validation clips. Only global rank 0 writes."""

    AUDIO_TAG = "val_audio"

    def __init__(self, val_set, sample_rate: int, audio_every: int | None, n_clips: int = 3):
        self.val_set, self.sample_rate, self.audio_every = val_set, sample_rate, audio_every
        # Spread over the SNR labels (one hard, one middle, one easy clip), not the first three,
        # which may all share a label.
        order = sorted(range(len(val_set)), key=lambda i: (val_set.clips[i].snr_label, val_set.clips[i].id))
        k = min(n_clips, len(order))
        self.picks = sorted({order[round(j * (len(order) - 1) / max(k - 1, 1))] for j in range(k)})
        self.batch = None
        self.references_written = False
        self.lr_epoch = -1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        # Here the lr is the one this step uses, whichever schedule set it. Logged at the first step
        # of every epoch (smoke epochs are shorter than the interval) and at Lightning's interval:
        # every step would bloat the event file of a long GPU run.
        if not trainer.is_global_zero:
            return
        if trainer.current_epoch == self.lr_epoch and trainer.global_step % trainer.log_every_n_steps:
            return
        self.lr_epoch = trainer.current_epoch
        trainer.logger.log_metrics({"lr": optimizer.param_groups[0]["lr"]}, step=_logging_step(trainer))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if (trainer.sanity_checking or not trainer.is_global_zero or self.audio_every is None
                or trainer.current_epoch % self.audio_every):
            return
        if self.batch is None:
            items = [self.val_set[i] for i in self.picks]
            self.batch = torch.stack([mix for mix, _ in items]), torch.stack([src for _, src in items])
        mix, sources = self.batch
        device, precision = pl_module.device, trainer.precision_plugin
        # Uncompiled (as BestExport exports it): a batch of 3 would make torch.compile recompile.
        model = getattr(pl_module.model, "_orig_mod", pl_module.model)
        # The RNG is put back afterwards (a model may draw in its forward, e.g. k-means init), so
        # that the logger changes no result and a run may resume under another one.
        accelerated = device.type != "cpu"
        with torch.random.fork_rng(devices=[device] if accelerated else [],
                                   device_type=device.type if accelerated else None), \
                torch.no_grad(), precision.forward_context():
            est = model(precision.convert_input(mix.to(device))).float().cpu()
        writer, step = trainer.logger.experiment, _logging_step(trainer)
        for k, i in enumerate(self.picks):
            signals = {"mixture": mix[k], "voice_estimate": est[k, 0], "noise_estimate": est[k, 1]}
            if not self.references_written:  # the same at every step: once per session is enough
                signals["voice_reference"] = sources[k, 0]
            for name, x in signals.items():
                writer.add_audio(f"{self.AUDIO_TAG}/{self.val_set.clips[i].id}/{name}", _peak_normalised(x),
                                 step, sample_rate=self.sample_rate)
        self.references_written = True
