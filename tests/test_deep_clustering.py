"""deep_clustering: the DC loss, the training targets, k-means and the cluster-to-source rule."""
import math

import pytest
import torch
from asteroid.losses import deep_clustering_loss

import recipes
from recipes.deep_clustering.model import assign_voice_cluster, dc_loss, kmeans2, stem_gains
from recipes.deep_clustering.system import DeepClusteringSystem


def _one_hot_embeddings(target, dim=4):
    """Unit embeddings: source k -> basis vector k."""
    return torch.nn.functional.one_hot(target, dim).float()


def test_registered_with_its_own_system():
    assert recipes.get("deep_clustering").system_class() is DeepClusteringSystem


def test_dc_loss_is_zero_for_ideal_embeddings_and_prefers_them():
    g = torch.Generator().manual_seed(0)
    target = torch.randint(0, 2, (3, 17, 11), generator=g)
    weight = torch.ones(3, 17, 11)
    ideal = _one_hot_embeddings(target)
    assert torch.allclose(dc_loss(ideal, target, weight), torch.zeros(3), atol=1e-6)
    # Permutation-free: the cluster labels do not matter, only the partition.
    assert torch.allclose(dc_loss(_one_hot_embeddings(1 - target), target, weight), torch.zeros(3), atol=1e-6)
    # A partition that differs from the truth on 30% of the bins, and random unit embeddings, cost more.
    flip = torch.rand(target.shape, generator=g) < 0.3
    wrong = _one_hot_embeddings(torch.where(flip, 1 - target, target))
    noisy = torch.nn.functional.normalize(torch.randn(3, 17, 11, 4, generator=g), dim=-1)
    assert (dc_loss(wrong, target, weight) > 0.1).all()
    assert (dc_loss(noisy, target, weight) > dc_loss(wrong, target, weight) * 0.5).all()
    # Embeddings close to ideal score better than the wrong partition.
    near = torch.nn.functional.normalize(ideal + 0.1 * torch.randn(ideal.shape, generator=g), dim=-1)
    assert (dc_loss(near, target, weight) < dc_loss(wrong, target, weight)).all()


def test_dc_loss_matches_asteroid_up_to_normalisation():
    g = torch.Generator().manual_seed(1)
    emb = torch.nn.functional.normalize(torch.randn(2, 9, 7, 5, generator=g), dim=-1)
    target = torch.randint(0, 2, (2, 9, 7), generator=g)
    weight = (torch.rand(2, 9, 7, generator=g) > 0.2).float()
    ours = dc_loss(emb, target, weight)
    theirs = deep_clustering_loss(emb.reshape(2, -1, 5), target, binary_mask=weight)
    assert torch.allclose(ours * weight.sum(dim=(1, 2)), theirs, rtol=1e-5)


def test_dc_loss_ignores_silent_bins_and_survives_one_source():
    target = torch.zeros(1, 8, 6, dtype=torch.long)
    target[..., :3] = 1
    weight = torch.ones(1, 8, 6)
    weight[..., 3:] = 0
    emb = _one_hot_embeddings(target)
    garbage = emb.clone()
    garbage[..., 3:, :] = torch.nn.functional.normalize(torch.randn(1, 8, 3, 4), dim=-1)
    # Only silent bins changed: same loss. Active bins all from source 1 (asteroid's loss fails here).
    assert torch.allclose(dc_loss(emb, target, weight), dc_loss(garbage, target, weight))
    assert torch.isfinite(dc_loss(emb, target, weight)).all()


def test_stem_gains_recovers_the_mixing_gains():
    g = torch.Generator().manual_seed(2)
    sources = torch.randn(2, 2, 4000, generator=g)
    gains = torch.tensor([[0.5, 2.0], [3.0, 0.1]])
    mix = (gains[:, :, None] * sources).sum(1)
    assert torch.allclose(stem_gains(mix, sources), gains, rtol=1e-4)
    silent = sources.clone()
    silent[0, 0] = 0
    assert torch.isfinite(stem_gains(mix, silent)).all()


def test_dc_targets_use_the_stems_at_their_mixture_gains():
    torch.manual_seed(0)
    model = recipes.get("deep_clustering").build(8000, hidden=8, n_layers=1, embedding_dim=3).eval()
    t = torch.arange(8000) / 8000
    voice = 0.1 * torch.sin(2 * math.pi * 300 * t)  # a low tone
    noise = 0.1 * torch.sin(2 * math.pi * 2500 * t)  # a high tone
    sources = torch.stack([voice, noise])[None]
    mix = voice + noise
    target, weight = model.dc_targets(mix[None], sources)
    freqs = torch.linspace(0, 4000, target.shape[1])
    mid = target.shape[2] // 2
    assert target[0, (freqs - 300).abs().argmin(), mid] == 0
    assert target[0, (freqs - 2500).abs().argmin(), mid] == 1
    assert weight[0, (freqs - 300).abs().argmin(), mid] == 1
    # Stored stems at other gains (noise stem 100x too quiet): the same targets wherever one
    # source clearly dominates (elsewhere only window leakage and float rounding compete).
    target2, _ = model.dc_targets(mix[None], torch.stack([voice * 3, noise / 100])[None])
    stems = model.magnitude(sources)[0]
    clear = weight[0].bool() & ((stems[0] > 3 * stems[1]) | (stems[1] > 3 * stems[0]))
    assert clear.sum() > 100
    assert torch.equal(target2[0][clear], target[0][clear])
    naive = model.magnitude(torch.stack([voice * 3, noise / 100])[None]).argmax(dim=1)
    assert (naive[0][clear] != target[0][clear]).float().mean() > 0.1  # ignoring the gains gets them wrong


def test_kmeans_separates_two_groups():
    g = torch.Generator().manual_seed(3)
    a = torch.nn.functional.normalize(torch.tensor([1.0, 0, 0]) + 0.1 * torch.randn(50, 3, generator=g), dim=-1)
    b = torch.nn.functional.normalize(torch.tensor([0, 1.0, 0]) + 0.1 * torch.randn(30, 3, generator=g), dim=-1)
    labels = kmeans2(torch.cat([a, b]))
    assert labels[:50].unique().numel() == 1 and labels[50:].unique().numel() == 1
    assert labels[0] != labels[50]


@pytest.mark.parametrize("voice_label", [0, 1])
def test_voice_cluster_is_the_one_the_mi_head_calls_voice(voice_label):
    labels = torch.tensor([0] * 6 + [1] * 4)
    voice_mask = torch.where(labels == voice_label, 0.7, 0.2)
    weight = torch.ones(10)
    assert assign_voice_cluster(labels, voice_mask, weight) == voice_label
    # Weighting by magnitude: a loud bin counts more than many quiet ones.
    labels = torch.tensor([0, 1, 1, 1])
    voice_mask = torch.tensor([0.9, 0.95, 0.1, 0.1])
    assert assign_voice_cluster(labels, voice_mask, torch.tensor([1.0, 1.0, 1.0, 1.0])) == 0
    assert assign_voice_cluster(labels, voice_mask, torch.tensor([1.0, 100.0, 1.0, 1.0])) == 1


def test_single_cluster_goes_to_voice_only_if_the_mi_head_agrees():
    labels = torch.zeros(5, dtype=torch.long)
    weight = torch.ones(5)
    assert assign_voice_cluster(labels, torch.full((5,), 0.8), weight) == 0
    assert assign_voice_cluster(labels, torch.full((5,), 0.2), weight) == 1


def test_cluster_separate_follows_the_rule_end_to_end():
    """With embeddings that split bins by frequency and an MI head that calls the low band voice,
    clustering gives the low band to the voice output, and flipping the MI head flips it."""
    torch.manual_seed(0)
    model = recipes.get("deep_clustering").build(8000, hidden=8, n_layers=1, embedding_dim=2).eval()
    n_freq = model.n_freq
    low = torch.arange(n_freq) < n_freq // 2

    class FakeHeads(torch.nn.Module):
        def __init__(self, voice_low: bool):
            super().__init__()
            self.voice_low = voice_low

        def heads(self, magnitude):
            b, f, t = magnitude.shape
            emb = torch.zeros(b, f, t, 2)
            emb[:, low, :, 0], emb[:, ~low, :, 1] = 1.0, 1.0
            v = (low if self.voice_low else ~low).float()[None, :, None].expand(b, f, t) * 0.5 + 0.25
            return emb, torch.stack([v, 1 - v], dim=1)

    t = torch.arange(8000) / 8000
    lo_tone, hi_tone = torch.sin(2 * math.pi * 500 * t), torch.sin(2 * math.pi * 3000 * t)
    mix = (lo_tone + hi_tone)[None]
    for voice_low in (True, False):
        model.masker = FakeHeads(voice_low)
        est = model.cluster_separate(mix)
        assert est.shape == (1, 2, 8000)
        voice_ref = lo_tone if voice_low else hi_tone
        core = slice(1000, 7000)
        err = (est[0, 0, core] - voice_ref[core]).pow(2).mean() / voice_ref[core].pow(2).mean()
        assert err < 0.01, err
        model.inference = "dc"
        assert torch.allclose(model(mix), est)
        model.inference = "mi"


def test_training_step_combines_both_losses():
    torch.manual_seed(0)
    model = recipes.get("deep_clustering").build(8000, hidden=8, n_layers=1, embedding_dim=3, dropout=0.0)
    from recipes.losses import NegSISDR
    system = DeepClusteringSystem(model, torch.optim.Adam(model.parameters()), NegSISDR(), train_loader=None)
    mix, sources = torch.randn(2, 4000), torch.randn(2, 2, 4000)
    out = model.heads(mix)
    target, weight = model.dc_targets(mix, sources)
    expected = (model.dc_weight * dc_loss(out["embedding"], target, weight).mean()
                + (1 - model.dc_weight) * NegSISDR()(out["wavs"], sources))
    loss = system.common_step((mix, sources), 0, train=False)
    assert torch.allclose(loss, expected)
    loss.backward()
    assert model.masker.embed.weight.grad.abs().sum() > 0 and model.masker.mask.weight.grad.abs().sum() > 0
