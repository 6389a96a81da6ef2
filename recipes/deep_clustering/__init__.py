from .. import register
from ..framing import filterbank_kernel, filterbank_stride
from .model import DeepClusteringModel


@register("deep_clustering", "Deep clustering (Hershey et al. 2016) + Chimera++ mask-inference head: BiLSTM on the STFT",
          system="recipes.deep_clustering.system:DeepClusteringSystem",
          frame_stride=filterbank_stride, min_length=filterbank_kernel)
def build(sample_rate: int, win_ms: float = 32.0, hop_ms: float = 8.0, hidden: int = 600, n_layers: int = 4,
          embedding_dim: int = 20, dropout: float = 0.3, dc_weight: float = 0.975, vad_db: float = 40.0,
          inference: str = "mi"):
    return DeepClusteringModel(sample_rate, win_ms, hop_ms, hidden, n_layers, embedding_dim, dropout,
                               dc_weight, vad_db, inference)
