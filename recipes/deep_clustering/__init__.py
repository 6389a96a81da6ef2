from ..system import SeparationSystem
from .. import register
from .model import DeepClusteringModel, dc_loss


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


@register("deep_clustering", "Deep clustering (Hershey et al. 2016) + Chimera++ mask-inference head: BiLSTM on the STFT",
          system=DeepClusteringSystem)
def build(sample_rate: int, win_ms: float = 32.0, hop_ms: float = 8.0, hidden: int = 600, n_layers: int = 4,
          embedding_dim: int = 20, dropout: float = 0.3, dc_weight: float = 0.975, vad_db: float = 40.0,
          inference: str = "mi"):
    return DeepClusteringModel(sample_rate, win_ms, hop_ms, hidden, n_layers, embedding_dim, dropout,
                               dc_weight, vad_db, inference)
