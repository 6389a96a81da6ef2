"""Deep clustering (Hershey et al. 2016) with the Chimera++ mask-inference head (Wang, Le Roux &
Hershey 2018), for two fixed-order outputs (0 = voice, 1 = noise).

One BiLSTM stack on the log-magnitude STFT feeds two heads:
- the DC head: a unit-norm D-dimensional embedding per time-frequency bin, trained with the deep
  clustering loss so that bins dominated by the same source get parallel embeddings;
- the MI head: a sigmoid voice mask and a sigmoid noise mask, in fixed order.
`forward` uses the MI head (no cluster-to-source ambiguity). `cluster_separate` is the classic DC
inference instead: k-means with 2 clusters on the embeddings of active bins, binary masks, and the
voice cluster chosen by the rule in `assign_voice_cluster`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from asteroid.dsp.vad import ebased_vad
from asteroid.utils.torch_utils import pad_x_to_y
from asteroid_filterbanks.transforms import mag
from torch import nn

from ..stft_masking import STFTMaskModel

N_SRC = 2


class ChimeraMasker(nn.Module):
    """Magnitude [B, F, frames] -> embeddings [B, F, frames, D] (unit norm), masks [B, 2, F, frames]."""

    def __init__(self, n_freq: int, hidden: int, n_layers: int, embedding_dim: int, dropout: float):
        super().__init__()
        self.n_freq, self.embedding_dim = n_freq, embedding_dim
        # Normalising the log-magnitude per utterance and bin makes the network blind to input gain.
        self.norm = nn.LayerNorm(n_freq)
        self.rnn = nn.LSTM(n_freq, hidden, num_layers=n_layers, dropout=dropout if n_layers > 1 else 0.0,
                           batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.embed = nn.Linear(2 * hidden, n_freq * embedding_dim)
        self.mask = nn.Linear(2 * hidden, N_SRC * n_freq)

    def heads(self, magnitude: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, f, t = magnitude.shape
        feats = torch.log(magnitude + 1e-6).transpose(1, 2)
        feats = feats - feats.mean(dim=(1, 2), keepdim=True)
        h, _ = self.rnn(self.norm(feats))
        h = self.dropout(h)
        emb = torch.tanh(self.embed(h)).view(b, t, f, self.embedding_dim).transpose(1, 2)
        emb = F.normalize(emb, dim=-1, eps=1e-8)
        masks = torch.sigmoid(self.mask(h)).view(b, t, N_SRC, f).permute(0, 2, 3, 1)
        return emb, masks

    def forward(self, magnitude: torch.Tensor) -> torch.Tensor:
        return self.heads(magnitude)[1]


def dc_loss(embedding: torch.Tensor, target: torch.Tensor, weight: torch.Tensor, n_src: int = N_SRC) -> torch.Tensor:
    """Deep clustering loss |V V^T - Y Y^T|_F^2 per utterance, over weighted bins, divided by the
    squared number of active bins (the mean squared affinity error, 0 for perfect embeddings).

    embedding [B, F, frames, D] (unit norm), target [B, F, frames] (index of the dominant source),
    weight [B, F, frames] (1 = active bin, 0 = silent). Same cost as asteroid's
    `deep_clustering_loss`, which divides by the number of active bins once and infers the
    number of sources from the batch (so it breaks when one source dominates every bin, e.g. a
    segment where the voice is silent); here n_src is fixed.
    """
    b, d = embedding.shape[0], embedding.shape[-1]
    w = weight.reshape(b, -1, 1).to(embedding.dtype)
    v = embedding.reshape(b, -1, d) * w
    y = F.one_hot(target.reshape(b, -1), n_src).to(embedding.dtype) * w
    cost = (torch.linalg.matrix_norm(v.transpose(1, 2) @ v) ** 2
            - 2 * torch.linalg.matrix_norm(v.transpose(1, 2) @ y) ** 2
            + torch.linalg.matrix_norm(y.transpose(1, 2) @ y) ** 2)
    return cost / w.sum(dim=(1, 2)).clamp_min(1.0) ** 2


def stem_gains(mix: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """Least-squares gains [B, 2] with mix ~ g0 * voice + g1 * noise.

    The stems may be stored at other gains than they have in the mixture (the mixture is not
    always voice + noise), and which source dominates a bin depends on those gains. A silent or
    degenerate stem keeps gain 1.
    """
    norms = sources.pow(2).sum(-1).sqrt()  # [B, 2]
    silent = norms <= 1e-6 * norms.amax(dim=1, keepdim=True).clamp_min(1e-12)
    unit = sources / norms.clamp_min(1e-12).unsqueeze(-1)
    # Normal equations on unit-energy stems (well scaled whatever the stored gains), a tiny ridge
    # for stems that are (nearly) the same signal.
    a = unit @ unit.transpose(1, 2) + 1e-6 * torch.eye(2, dtype=sources.dtype, device=sources.device)
    gains = torch.linalg.solve(a, unit @ mix.unsqueeze(-1)).squeeze(-1) / norms.clamp_min(1e-12)
    return torch.where(silent | ~torch.isfinite(gains), torch.ones_like(gains), gains.abs())


def kmeans2(points: torch.Tensor, n_iter: int = 30) -> torch.Tensor:
    """Labels in {0, 1} for points [N, D]: Lloyd's k-means with 2 clusters, deterministic
    farthest-point start (the point farthest from the mean, then the point farthest from it)."""
    if points.shape[0] < 2:
        return torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
    c0 = points[(points - points.mean(0)).pow(2).sum(-1).argmax()]
    c1 = points[(points - c0).pow(2).sum(-1).argmax()]
    centres = torch.stack([c0, c1])
    labels = torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
    for it in range(n_iter):
        new = torch.cdist(points, centres).argmin(dim=1)
        if it > 0 and torch.equal(new, labels):
            break
        labels = new
        for k in range(2):
            if (labels == k).any():
                centres[k] = points[labels == k].mean(0)
    return labels


def assign_voice_cluster(labels: torch.Tensor, voice_mask: torch.Tensor, weight: torch.Tensor) -> int:
    """Which of clusters 0/1 is the voice.

    Rule: the cluster on whose bins the MI head's voice mask is higher on average, each bin
    weighted by `weight` (the mixture magnitude). labels, voice_mask, weight: [N] over the clustered
    bins. An empty cluster scores 0.5 (neutral), so a lone cluster is the voice only if the MI head
    calls its bins mostly voice.
    """
    scores = []
    for k in range(2):
        sel = labels == k
        total = weight[sel].sum()
        scores.append(float((weight[sel] * voice_mask[sel]).sum() / total) if total > 0 else 0.5)
    return 0 if scores[0] >= scores[1] else 1


def _as_3d(wav: torch.Tensor) -> torch.Tensor:
    return wav.unsqueeze(1) if wav.dim() == 2 else wav


class DeepClusteringModel(STFTMaskModel):
    """Mixture [B, T] -> (voice, noise) [B, 2, T] from the MI head, or from clustering when
    `inference == "dc"`. Also carries its training-objective settings (dc_weight, vad_db), so the
    checkpoint records them with the model arguments."""

    def __init__(self, sample_rate: int, win_ms: float, hop_ms: float, hidden: int, n_layers: int,
                 embedding_dim: int, dropout: float, dc_weight: float, vad_db: float, inference: str):
        super().__init__(nn.Identity(), sample_rate, win_ms, hop_ms)
        self.masker = ChimeraMasker(self.n_freq, hidden, n_layers, embedding_dim, dropout)
        if not 0.0 <= dc_weight <= 1.0:
            raise ValueError(f"dc_weight must be in [0, 1], got {dc_weight}")
        if inference not in ("mi", "dc"):
            raise ValueError(f"inference must be 'mi' or 'dc', got {inference!r}")
        self.dc_weight, self.vad_db, self.inference = dc_weight, vad_db, inference

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if self.inference == "dc":
            return self.cluster_separate(wav)
        return super().forward(wav)

    def magnitude(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, T] -> [B, F, frames] or [B, C, T] -> [B, C, F, frames], on the model's (padded) frames.
        Exact (no epsilon floor, which would not scale with the stem gains); not for gradients."""
        return mag(self.forward_encoder(_as_3d(wav)), EPS=0.0)

    def heads(self, wav: torch.Tensor) -> dict:
        """Everything a training step needs: MI waveforms [B, 2, T], embeddings, masks, magnitude."""
        tf_rep = self.forward_encoder(_as_3d(wav))
        magnitude = mag(tf_rep)
        emb, masks = self.masker.heads(magnitude)
        wavs = pad_x_to_y(self.forward_decoder(self.apply_masks(tf_rep, masks)), wav)
        return {"wavs": wavs, "embedding": emb, "masks": masks, "magnitude": magnitude}

    @torch.no_grad()
    def dc_targets(self, mix: torch.Tensor, sources: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(dominant source index [B, F, frames], VAD weight [B, F, frames]) from the true stems.

        The stems are brought to their gains in the mixture first (`stem_gains`); silent bins,
        more than `vad_db` below the mixture's loudest bin, get weight 0."""
        stems = self.magnitude(sources) * stem_gains(mix, sources)[:, :, None, None]
        target = stems.argmax(dim=1)
        weight = ebased_vad(self.magnitude(mix), self.vad_db).float()
        return target, weight

    @torch.no_grad()
    def cluster_separate(self, wav: torch.Tensor) -> torch.Tensor:
        """DC-head inference: k-means (2 clusters) on the embeddings of active bins, binary masks,
        voice cluster by `assign_voice_cluster`; bins below the VAD threshold keep the MI masks."""
        tf_rep = self.forward_encoder(_as_3d(wav))
        magnitude = mag(tf_rep)
        emb, mi_masks = self.masker.heads(magnitude)
        active = ebased_vad(magnitude, self.vad_db)
        masks = mi_masks.clone()
        for i in range(wav.shape[0]):
            act = active[i]
            labels = kmeans2(emb[i][act])
            voice = assign_voice_cluster(labels, mi_masks[i, 0][act], magnitude[i][act])
            is_voice = (labels == voice).to(masks.dtype)
            masks[i, 0][act], masks[i, 1][act] = is_voice, 1 - is_voice
        return pad_x_to_y(self.forward_decoder(self.apply_masks(tf_rep, masks)), wav)
