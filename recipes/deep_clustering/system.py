"""The deep clustering training step (imported only for training: it pulls in Lightning)."""
from ..system import SeparationSystem
from .model import dc_loss


class DeepClusteringSystem(SeparationSystem):
    """Training objective dc_weight * DC loss + (1 - dc_weight) * the shared fixed-order loss on
    the MI head's waveforms. Validation (the shared step) scores the MI output alone."""

    def common_step(self, batch, batch_nb, train=True):
        mix, sources = batch
        model = self.model
        out = model.heads(mix)
        target, weight = model.dc_targets(mix, sources)
        dc = dc_loss(out["embedding"], target, weight).mean()
        mi = self.loss_func(out["wavs"], sources)
        if train:
            self.log("train_dc_loss", dc, on_step=False, on_epoch=True, sync_dist=True)
            self.log("train_mi_loss", mi, on_step=False, on_epoch=True, sync_dist=True)
        return model.dc_weight * dc + (1 - model.dc_weight) * mi
