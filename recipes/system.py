"""The one LightningModule: asteroid's System plus validation SI-SDR and per-epoch crops.

A recipe needing another training step overrides `common_step` in a subclass, nothing more."""
from __future__ import annotations

import torch
from asteroid.engine.system import System

from .losses import si_sdr


class SeparationSystem(System):
    def on_train_start(self) -> None:
        # Different dropout/noise per rank; the weights themselves were broadcast by DDP.
        if self.trainer.world_size > 1:
            torch.manual_seed(self.trainer.current_epoch * 1000 + self.trainer.global_rank + 1)
        # Resumed from a mid-epoch checkpoint (SLURM's preemption save): Lightning would restart
        # the data at the epoch's first batch and skip on_train_epoch_start. Continue after the
        # batches whose optimizer step is in the checkpoint instead ("processed": a checkpoint
        # written in on_train_batch_end has not yet counted that batch as "completed").
        done = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if getattr(self.trainer.fit_loop, "restarted_mid_epoch", False) and done:
            loader = self.trainer.train_dataloader
            if hasattr(loader.sampler, "resume_at"):
                loader.sampler.resume_at(self.current_epoch, done)
            self.on_train_epoch_start()

    def on_train_epoch_start(self) -> None:
        # New random crops every epoch, reproducible from (seed, epoch, clip).
        dataset = self.trainer.train_dataloader.dataset
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(self.current_epoch)

    def training_step(self, batch, batch_nb):
        loss = self.common_step(batch, batch_nb, train=True)
        self.log("train_loss", loss, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch, batch_nb):
        mix, sources = batch
        est = self(mix)
        loss = self.loss_func(est, sources)
        voice = si_sdr(est[:, 0], sources[:, 0])
        voice_in = si_sdr(mix, sources[:, 0])
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("val_sisdr", voice.mean(), on_epoch=True, sync_dist=True)
        self.log("val_sisdri", (voice - voice_in).mean(), on_epoch=True, prog_bar=True, sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        # asteroid's version logs hp_metric through the logger; we keep our own CSV log.
        pass
