"""Dynamic mixing (data.dynamic_mixing) and the cosine learning-rate schedule (optim.schedule)."""
import csv
import math

import numpy as np
import pytest
import soundfile as sf

from recipes.callbacks import cosine_factor
from recipes.data import FolderDataset
from recipes.errors import SepbenchError
from recipes.folder import load_split
from recipes.mixing import mixture_gains, remix
from recipes.train import train


def _clips_with_other_gains(write_clip, tone_and_noise, root, n=4):
    """Clips whose stored stems are NOT at their level in the mixture (voice x0.5 and noise x3 in
    the files), as in the original data set."""
    for i in range(n):
        voice, noise = tone_and_noise(n=8000, snr_db=[-4, 0, 2, 4][i], seed=i)
        voice = voice * (1 + i)
        write_clip(root / "train" / f"{i + 1:04d}", 0.5 * voice, 3 * noise, snr=[-4, 0, 2, 4][i], mix=voice + noise,
                    subtype="FLOAT")
    return load_split(root / "train")


def test_remixed_examples_are_sums_of_their_scaled_stems(write_clip, tone_and_noise, tmp_path):
    clips = _clips_with_other_gains(write_clip, tone_and_noise, tmp_path)
    ds = FolderDataset(clips, segment=4000, seed=3, dynamic_mixing=True)
    for index in range(len(ds)):
        mix, sources = ds[index]
        assert np.allclose(mix.numpy(), sources.sum(0).numpy(), atol=1e-6)
        voice_file, _ = sf.read(clips[index].voice, dtype="float32")
        # The voice target is this clip's stored voice brought back to its mixture level (x2).
        voice = sources[0].numpy()
        found = any(np.allclose(voice, 2 * voice_file[s:s + 4000], atol=1e-4) for s in range(0, 4001))
        assert found, f"clip {index}: the voice target is not a crop of its own voice at gain 2"
        snr = 10 * math.log10(np.mean(voice.astype(np.float64) ** 2) / np.mean(sources[1].numpy().astype(np.float64) ** 2))
        assert -4 - 1e-3 <= snr <= 4 + 1e-3  # drawn from the training labels' range


def test_dynamic_mixing_is_deterministic_from_seed_and_epoch(write_clip, tone_and_noise, tmp_path):
    clips = _clips_with_other_gains(write_clip, tone_and_noise, tmp_path)
    a = FolderDataset(clips, segment=4000, seed=3, dynamic_mixing=True)
    b = FolderDataset(clips, segment=4000, seed=3, dynamic_mixing=True)
    assert all(np.array_equal(a[i][0], b[i][0]) for i in range(len(a)))
    b.set_epoch(1)
    assert not all(np.array_equal(a[i][0], b[i][0]) for i in range(len(a)))
    c = FolderDataset(clips, segment=4000, seed=4, dynamic_mixing=True)
    assert not all(np.array_equal(a[i][0], c[i][0]) for i in range(len(a)))


def test_mixture_gains_and_silent_stems():
    rng = np.random.default_rng(0)
    sources = rng.standard_normal((2, 1000))
    assert np.allclose(mixture_gains(sources, 0.5 * sources[0] + 3 * sources[1]), [0.5, 3])
    mix, stems = remix(np.zeros(100), rng.standard_normal(100), 5.0)  # a silent voice keeps the noise level
    assert np.isfinite(mix).all() and np.allclose(mix, stems[1])
    with pytest.raises(ValueError):
        mixture_gains(sources, np.zeros(999))


def test_cosine_factor_warms_up_then_decays_to_its_floor():
    assert cosine_factor(0, 0.0, 10, 0.1) == pytest.approx(0.1)
    assert cosine_factor(9, 0.0, 10, 0.1) == pytest.approx(1.0)
    assert cosine_factor(100, 0.5, 10, 0.1) == pytest.approx(0.55)
    assert cosine_factor(100, 1.0, 10, 0.1) == pytest.approx(0.1)
    assert cosine_factor(100, 3.0, 10, 0.1) == pytest.approx(0.1)  # past the budget: the floor
    values = [cosine_factor(s, s / 50, 0, 0.0) for s in range(51)]
    assert all(x >= y for x, y in zip(values, values[1:]))


def test_training_with_dynamic_mixing_and_cosine_schedule(tiny_data, tmp_path):
    result = train("lstm_mask", tiny_data, "smoke", out=tmp_path, progress=False,
                   overrides=["data.dynamic_mixing=true", "optim.schedule=cosine", "optim.warmup_steps=2",
                              "optim.final_lr_factor=0.1", "trainer.max_epochs=4"])
    rows = list(csv.DictReader(open(result["run_dir"] / "log.csv")))
    lrs = [float(r["lr"]) for r in rows]
    # Over 4 epochs of 4 steps the LR decays along the cosine; the last step is near the floor.
    assert lrs == sorted(lrs, reverse=True) and lrs[0] < 1e-3 and lrs[-1] < 0.2e-3
    assert result["card"]["status"] == "complete"


def test_babble_replaces_the_noise_with_other_clips_voices(write_clip, tmp_path):
    rng = np.random.default_rng(0)
    for i in range(4):  # every clip's voice its own random signal, so a crop tells whose it is
        voice = (0.1 * rng.standard_normal(8000)).astype(np.float32)
        noise = (0.05 * np.sin(2 * np.pi * 300 * np.arange(8000) / 8000)).astype(np.float32)
        write_clip(tmp_path / "train" / f"{i + 1:04d}", 0.5 * voice, noise, snr=[-4, 0, 2, 4][i],
                   mix=voice + noise, subtype="FLOAT")
    clips = load_split(tmp_path / "train")
    voices = [sf.read(c.voice, dtype="float32")[0] for c in clips]
    ds = FolderDataset(clips, segment=4000, seed=3, dynamic_mixing=True, babble=1.0, babble_voices=(1, 1))
    for index in range(len(ds)):
        mix, sources = ds[index]
        assert np.allclose(mix.numpy(), sources.sum(0).numpy(), atol=1e-6)
        noise = sources[1].numpy().astype(np.float64)
        # One talker: the noise target is a crop of another clip's voice file, at some gain.
        def is_scaled_crop(voice):
            for s in range(0, len(voice) - 4000 + 1):
                crop = voice[s:s + 4000].astype(np.float64)
                gain = crop @ noise / (crop @ crop)
                if np.allclose(gain * crop, noise, atol=1e-4 * np.abs(noise).max()):
                    return True
            return False
        assert any(is_scaled_crop(voices[j]) for j in range(len(clips)) if j != index)
        assert not is_scaled_crop(voices[index])
    again = FolderDataset(clips, segment=4000, seed=3, dynamic_mixing=True, babble=1.0, babble_voices=(1, 1))
    assert all(np.array_equal(ds[i][1], again[i][1]) for i in range(len(ds)))


def test_babble_share_and_its_one_line_errors(write_clip, tone_and_noise, tmp_path):
    clips = _clips_with_other_gains(write_clip, tone_and_noise, tmp_path)
    plain = FolderDataset(clips, segment=4000, seed=3, dynamic_mixing=True)
    none = FolderDataset(clips, segment=4000, seed=3, dynamic_mixing=True, babble=0.0)
    assert all(np.array_equal(plain[i][0], none[i][0]) for i in range(len(plain)))  # off: the examples as before
    with pytest.raises(SepbenchError, match="needs data.dynamic_mixing"):
        FolderDataset(clips, segment=4000, babble=0.5)
    with pytest.raises(SepbenchError, match="at least 7 training clips"):
        FolderDataset(clips, segment=4000, dynamic_mixing=True, babble=0.5, babble_voices=(3, 6))


def _tone_clips(write_clip, root, freq=500.0, n=4, seconds=2.0):
    sr = 8000
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(0)
    for i in range(n):
        voice = (0.1 * np.sin(2 * np.pi * freq * t + i)).astype(np.float32)
        noise = (0.05 * rng.standard_normal(len(t))).astype(np.float32)
        write_clip(root / "train" / f"{i + 1:04d}", voice, noise, snr=[-4, 0, 2, 4][i], mix=voice + noise, subtype="FLOAT")
    return load_split(root / "train")


def _peak_hz(x, sr=8000):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), 8 * len(x)))
    return np.argmax(spectrum) * sr / (8 * len(x))


def test_speed_perturbation_moves_the_pitch_within_its_range(write_clip, tmp_path):
    clips = _tone_clips(write_clip, tmp_path)
    ds = FolderDataset(clips, segment=4000, seed=3, dynamic_mixing=True, speed=0.1)
    peaks = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        for index in range(len(ds)):
            mix, sources = ds[index]
            assert sources.shape == (2, 4000)
            assert np.allclose(mix.numpy(), sources.sum(0).numpy(), atol=1e-6)
            peaks.append(_peak_hz(sources[0].numpy()))
    # A 500 Hz voice played at 0.9x-1.1x sits at 450-550 Hz, and not always at the same speed.
    assert all(448 <= p <= 552 for p in peaks), peaks
    assert max(peaks) - min(peaks) > 20


def test_random_eq_colours_stems_and_stays_stable(write_clip, tmp_path):
    clips = _tone_clips(write_clip, tmp_path)
    plain = FolderDataset(clips, segment=4000, seed=3, dynamic_mixing=True)
    coloured = FolderDataset(clips, segment=4000, seed=3, dynamic_mixing=True, eq=1.0)
    again = FolderDataset(clips, segment=4000, seed=3, dynamic_mixing=True, eq=1.0)
    for index in range(len(plain)):
        mix, sources = coloured[index]
        assert np.isfinite(sources.numpy()).all()
        assert np.allclose(mix.numpy(), sources.sum(0).numpy(), atol=1e-6)
        assert np.array_equal(sources, again[index][1])  # deterministic from seed and epoch
        # White noise through the filter is no longer white: its spectrum tilts or dips.
        bands = np.abs(np.fft.rfft(sources[1].numpy())) ** 2
        low, high = bands[: len(bands) // 2].mean(), bands[len(bands) // 2:].mean()
        plain_bands = np.abs(np.fft.rfft(plain[index][1][1].numpy())) ** 2
        plain_ratio = plain_bands[: len(bands) // 2].mean() / plain_bands[len(bands) // 2:].mean()
        assert abs(10 * math.log10(low / high) - 10 * math.log10(plain_ratio)) > 0.1
    default = FolderDataset(clips, segment=4000, seed=3, dynamic_mixing=True, eq=0.0, speed=0.0)
    assert all(np.array_equal(plain[i][0], default[i][0]) for i in range(len(plain)))  # off: as before
    with pytest.raises(SepbenchError, match="need data.dynamic_mixing"):
        FolderDataset(clips, segment=4000, eq=0.5)
