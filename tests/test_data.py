"""The folder data set: formats, labels, channels, segments, splits, and no silent rescaling."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from recipes.data import FolderDataset, data_splits, split_train_val
from recipes.errors import SepbenchError
from recipes.folder import load_split, parse_snr


@pytest.mark.parametrize("subtype,suffix,tolerance", [
    ("PCM_16", ".wav", 2**-15), ("PCM_24", ".wav", 2**-23), ("PCM_32", ".wav", 2**-31),
    ("FLOAT", ".wav", 0.0), ("PCM_16", ".flac", 2**-15), ("PCM_24", ".flac", 2**-23)])
def test_formats_load_as_written(tmp_path, subtype, suffix, tolerance, write_clip, tone_and_noise):
    voice, noise = tone_and_noise(1000)
    write_clip(tmp_path / "train/0001", voice, noise, snr=0, subtype=subtype, suffix=suffix)
    mix, sources, meta = FolderDataset(load_split(tmp_path / "train"))[0]
    assert mix.dtype == sources.dtype == torch.float32 and sources.shape == (2, 1000)
    np.testing.assert_allclose(sources[0].numpy(), voice, atol=tolerance)  # 0 = voice, 1 = noise
    np.testing.assert_allclose(sources[1].numpy(), noise, atol=tolerance)
    np.testing.assert_allclose(mix.numpy(), voice + noise, atol=tolerance)
    assert meta["sample_rate"] == 8000


@pytest.mark.parametrize("name,label", [("mix_snr_-4.wav", -4.0), ("mix_snr_2.5.wav", 2.5), ("mix_snr_-0.5.flac", -0.5),
                                        ("MIX_SNR_10.WAV", 10.0), ("mix_snr_+3.wav", 3.0), ("mix_snr_.5.wav", 0.5),
                                        ("mix_snr_abc.wav", None), ("mix_snr_.wav", None), ("mix_snr_nan.wav", None),
                                        ("mix_snr_inf.wav", None), ("mix_snr_1e1.wav", None), ("mix_snr_1_0.wav", None),
                                        ("mix_snr_3.mp3", None), ("mix_3.wav", None)])
def test_parse_snr(name, label):
    assert parse_snr(name) == label


def test_negative_and_fractional_labels_reach_the_metadata(tmp_path, write_clip, tone_and_noise):
    for i, snr in enumerate(["-4", "2.5", "-0.25"], start=1):
        write_clip(tmp_path / f"test/{i:04d}", *tone_and_noise(500, seed=i), snr=snr)
    ds = FolderDataset(load_split(tmp_path / "test"))
    assert [ds[i][2]["snr_label"] for i in range(3)] == [-4.0, 2.5, -0.25]
    assert [ds[i][2]["id"] for i in range(3)] == ["0001", "0002", "0003"]
    assert ds[1][2]["path"] == str(tmp_path / "test/0002")


def test_multichannel_is_an_error_unless_downmixed(tmp_path, write_clip, tone_and_noise):
    voice, noise = tone_and_noise(800)
    stereo = np.stack([voice, 0.5 * voice], axis=1)
    write_clip(tmp_path / "train/0001", stereo, np.stack([noise, noise], axis=1), snr=0)
    clips = load_split(tmp_path / "train")
    with pytest.raises(SepbenchError, match="mix_snr_0.wav: has 2 channels"):
        FolderDataset(clips)[0]
    _, sources, _ = FolderDataset(clips, downmix=True)[0]
    np.testing.assert_allclose(sources[0].numpy(), 0.75 * voice, atol=2**-14)


def test_mixture_is_returned_as_stored_not_rescaled(tmp_path, write_clip, tone_and_noise):
    voice, noise = tone_and_noise(600)
    stored = 0.3 * voice + 2.0 * noise  # the course data's stems are at other gains than in the mix
    write_clip(tmp_path / "train/0001", voice, noise, mix=stored, snr=0, subtype="FLOAT")
    mix, sources, _ = FolderDataset(load_split(tmp_path / "train"))[0]
    np.testing.assert_array_equal(mix.numpy(), stored)
    np.testing.assert_array_equal(sources[0].numpy(), voice)


@pytest.fixture
def varied_lengths(tmp_path, write_clip, tone_and_noise):
    for i, n in enumerate([3000, 2000, 1000, 400], start=1):
        voice, noise = tone_and_noise(n, seed=i)
        write_clip(tmp_path / f"train/{i:04d}", voice, noise, snr=0)
    return load_split(tmp_path / "train")


def test_segments_are_seeded_fixed_length_and_aligned(varied_lengths):
    ds = FolderDataset(varied_lengths, segment=800, seed=1)
    items = [ds[i] for i in range(len(ds))]
    assert all(m.shape == (800,) and s.shape == (2, 800) for m, s in items)
    for m, s in items:  # one offset for all three files
        torch.testing.assert_close(m, s.sum(0), atol=2**-14, rtol=0)
    same = FolderDataset(varied_lengths, segment=800, seed=1)
    assert all(torch.equal(ds[0][0], same[0][0]) for _ in range(2))
    other_seed = FolderDataset(varied_lengths, segment=800, seed=2)
    same.set_epoch(1)
    assert not torch.equal(ds[0][0], other_seed[0][0]) and not torch.equal(ds[0][0], same[0][0])


def test_short_clips_padded_or_skipped(varied_lengths):
    padded = FolderDataset(varied_lengths, segment=800, short_policy="pad")
    assert len(padded) == 4
    mix, sources = padded[3]  # the 400-sample clip
    assert mix.shape == (800,) and torch.all(mix[400:] == 0) and torch.all(sources[:, 400:] == 0)
    assert torch.any(mix[:400] != 0)
    skipped = FolderDataset(varied_lengths, segment=800, short_policy="skip")
    assert [c.id for c in skipped.clips] == ["0001", "0002", "0003"]
    with pytest.raises(SepbenchError, match="no usable clips"):
        FolderDataset(varied_lengths, segment=5000, short_policy="skip")


def test_eval_mode_gives_whole_clips_and_meta(varied_lengths):
    ds = FolderDataset(varied_lengths)
    mix, sources, meta = ds[2]
    assert mix.shape == (1000,) and sources.shape == (2, 1000)
    assert meta == {"id": "0003", "snr_label": 0.0, "sample_rate": 8000, "path": str(varied_lengths[2].folder)}


def test_validation_split_is_stratified_and_seeded(tiny_data):
    clips = load_split(tiny_data / "train")  # 8 clips at each of -3, 0, 3 dB
    train, val = split_train_val(clips, 0.25, seed=0)
    assert Counter(c.snr_label for c in val) == {-3.0: 2, 0.0: 2, 3.0: 2}
    assert len(train) == 18 and not {c.id for c in train} & {c.id for c in val}
    assert [c.id for c in split_train_val(clips, 0.25, seed=0)[1]] == [c.id for c in val]
    assert [c.id for c in split_train_val(clips, 0.25, seed=5)[1]] != [c.id for c in val]
    splits = data_splits(tiny_data, 0.25, seed=0)
    assert [c.id for c in splits["val"]] == [c.id for c in val]


def test_val_folder_is_used_when_present(tiny_copy):
    (tiny_copy / "test").rename(tiny_copy / "val")
    splits = data_splits(tiny_copy, 0.25, seed=0)
    assert len(splits["train"]) == 24 and [c.id for c in splits["val"]] == [f"{i:04d}" for i in range(25, 34)]


def test_validation_share_is_kept_when_labels_hold_few_clips(write_clip, tone_and_noise, tmp_path):
    """40 clips at val_fraction 0.1 give 4 validation clips even when every label has one clip
    (rounding per label gave 0, then a fallback of 1)."""
    from recipes.data import split_train_val
    for i in range(40):
        write_clip(tmp_path / "train" / f"{i + 1:04d}", *tone_and_noise(n=800, seed=i), snr=i / 4)
    clips = load_split(tmp_path / "train")
    train, val = split_train_val(clips, 0.1, seed=0)
    assert len(val) == 4 and len(train) == 36
    assert split_train_val(clips, 0.1, seed=0) == (train, val)  # seeded


def test_validate_and_train_agree_on_a_one_clip_train_split(write_clip, tone_and_noise, tmp_path):
    from benchmark.data.validate import validate
    from recipes.data import data_splits
    write_clip(tmp_path / "train" / "0001", *tone_and_noise(n=800))
    write_clip(tmp_path / "test" / "0002", *tone_and_noise(n=800))
    report = validate(tmp_path)
    errors = [p for p in report.problems if p.level == "error"]
    assert not report.ok and len(errors) == 1 and "at least 2" in errors[0].message
    with pytest.raises(SepbenchError, match="at least 2"):
        data_splits(tmp_path, 0.1, 0)
