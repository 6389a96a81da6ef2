"""`sepbench demo-data`: deterministic, labels exact, mix == voice + noise, no clipping."""
from __future__ import annotations

import csv
from collections import Counter

import numpy as np
import pytest
import soundfile as sf

from benchmark import cli
from benchmark.data import demo_synth
from benchmark.data.demo import PEAK, generate
from recipes.errors import SepbenchError
from recipes.folder import load_split

SMALL = dict(n_train=6, n_test=3, seconds=0.5, sample_rate=8000, snrs=[-3, 0, 3])


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_audio(tmp_path):
    a = files(generate(tmp_path / "a", seed=3, **SMALL))
    b = files(generate(tmp_path / "b", seed=3, **SMALL))
    c = files(generate(tmp_path / "c", seed=4, **SMALL))
    assert len(a) == 9 * 3 + 1 and a == b
    assert a.keys() == c.keys()  # same layout and labels ...
    assert all(a[k] != c[k] for k in a if k.endswith(".wav"))  # ... but every file differs


def test_layout_labels_and_audio(tiny_data):
    train, test = load_split(tiny_data / "train"), load_split(tiny_data / "test")
    assert [c.id for c in train] == [f"{i:04d}" for i in range(1, 25)]
    assert [c.id for c in test] == [f"{i:04d}" for i in range(25, 34)]  # test ids continue
    assert Counter(c.snr_label for c in train) == {-3.0: 8, 0.0: 8, 3.0: 8}
    for clip in train + test:
        mix, sr = sf.read(str(clip.mix))
        voice, noise = sf.read(str(clip.voice))[0], sf.read(str(clip.noise))[0]
        assert sr == 8000 and len(mix) == len(voice) == len(noise) == 8000
        np.testing.assert_array_equal(mix, voice + noise)  # integer sum of the 16-bit stems
        measured = 10 * np.log10(np.sum(voice**2) / np.sum(noise**2))
        assert abs(measured - clip.snr_label) < 0.05
        assert max(np.abs(x).max() for x in (mix, voice, noise)) <= PEAK + 1 / 32768


def test_manifest_rows(tiny_data):
    rows = list(csv.DictReader(open(tiny_data / "manifest.csv")))
    assert [r["folder"] for r in rows] == [f"{i:04d}" for i in range(1, 34)]
    assert {r["split"] for r in rows} == {"train", "test"} and not any(r["quirk"] for r in rows)


def test_shorter_than_a_loudness_block_uses_rms(tmp_path):
    root = generate(tmp_path / "short", n_train=3, n_test=3, seconds=0.2, snrs=[-2.5, 4])
    for clip in load_split(root / "test"):
        voice, noise = sf.read(str(clip.voice))[0], sf.read(str(clip.noise))[0]
        assert len(voice) == 1600
        assert abs(10 * np.log10(np.sum(voice**2) / np.sum(noise**2)) - clip.snr_label) < 0.05


def test_output_folder_safety(tmp_path):
    out = tmp_path / "d"
    generate(out, seed=0, **SMALL)
    before = files(out)
    with pytest.raises(SepbenchError, match="not empty"):
        generate(out, seed=1, **SMALL)
    assert files(out) == before
    generate(out, seed=1, force=True, **SMALL)
    assert files(out) != before and len(files(out)) == len(before)
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(SepbenchError, match="thesis.tex"):  # --force must not wipe foreign folders
        generate(out, seed=1, force=True, **SMALL)
    # No temporary folder left behind; the writers' lock file stays (empty, held by no one).
    assert sorted(p.name for p in tmp_path.iterdir()) == [".d.lock", "d"]


def test_cli_takes_negative_lists(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMANDS", {"demo-data": "benchmark.data.demo"})
    out = tmp_path / "d"
    rc = cli.main(["demo-data", str(out), "--n-train", "4", "--n-test", "2", "--seconds", "0.5",
                   "--snrs", "-6,-1.5", "--seed", "2"])
    assert rc == 0 and "wrote 4 train + 2 test clips" in capsys.readouterr().out
    assert sorted(c.snr_label for c in load_split(out / "train")) == [-6.0, -6.0, -1.5, -1.5]
    assert cli.main(["demo-data", str(tmp_path / "e"), "--snrs", "-6,loud"]) == 2
    assert "--snrs: 'loud' is not a number" in capsys.readouterr().err


def frames_and_levels(x, sr):
    n = int(0.04 * sr)
    frames = np.array([x[i : i + n] for i in range(0, len(x) - n, n)])
    rms = np.sqrt(np.mean(frames**2, axis=1))
    return frames, 20 * np.log10(rms / rms.max() + 1e-12)


def pitch(frame, sr, lo=70, hi=400):
    lags = np.arange(sr // hi, sr // lo)
    return sr / lags[np.argmax([frame[:-lag] @ frame[lag:] for lag in lags])]


@pytest.mark.parametrize("f0", [100.0, 220.0])
def test_voice_is_voiced_at_its_pitch_with_pauses(f0):
    rng = np.random.default_rng(0)
    speaker = demo_synth.Speaker(f0=f0, formant_scale=1.0, rate=4.5, breath=0.03, fricative_hz=3000)
    x = demo_synth.voice(4 * 16000, 16000, speaker, rng)
    frames, level = frames_and_levels(x, 16000)
    estimate = np.median([pitch(f, 16000) for f in frames[level > -20]])
    assert 0.75 * f0 < estimate < 1.3 * f0  # intonation moves it, but around the speaker's pitch
    assert 0.4 < np.mean(level > -30) < 0.9  # syllables and pauses, not a drone
    assert np.mean(level < -60) > 0.1  # real silence between words and phrases


def test_noise_families_all_occur():
    rng = np.random.default_rng(0)
    names = [demo_synth.noise(4000, 8000, rng)[1] for _ in range(40)]
    for family in ("noise", "hum", "babble", "transients"):
        assert any(family in name for name in names), names
    assert any("+" in name for name in names)
