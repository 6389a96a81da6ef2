"""benchmark.scoring.dnsmos against speechmos's own DNSMOS on the same input (to 1e-4), and what
the scores must say about real speech (tests/fixtures/speech_8k.flac): clean above noisy."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from recipes.audio import resample

dnsmos = pytest.importorskip("benchmark.scoring.dnsmos")
if dnsmos.available() is not None:  # the test command installs the extra; this is for bare clones
    pytest.skip(dnsmos.available(), allow_module_level=True)

SPEECH = Path(__file__).parent / "fixtures" / "speech_8k.flac"
KEYS = {"dnsmos_sig": "sig_mos", "dnsmos_bak": "bak_mos", "dnsmos_ovrl": "ovrl_mos", "dnsmos_p808": "p808_mos"}


@pytest.fixture(scope="module")
def speech16() -> np.ndarray:
    audio, sr = sf.read(SPEECH, dtype="float64")
    return resample(audio, sr, dnsmos.SR)


def _noisy(voice: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(voice))
    noise *= np.sqrt(np.mean(voice ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
    mix = voice + noise
    return 0.9 * mix / np.max(np.abs(mix))  # speechmos refuses samples outside [-1, 1]


@pytest.mark.parametrize("seconds", [3.0, 9.5, 23.0])  # tiled up; one window; many, with the short ones skipped
def test_equals_speechmos_on_the_same_input(speech16, seconds):
    from speechmos import dnsmos as reference
    n = int(seconds * dnsmos.SR)
    clip = _noisy(np.resize(speech16, n), 5.0).astype(np.float32)
    theirs = reference.run(clip, dnsmos.SR)
    ours = dnsmos.scores(clip, dnsmos.SR)
    for key, their_key in KEYS.items():
        assert ours[key] == pytest.approx(float(theirs[their_key]), abs=1e-4), key


def test_features_equal_librosa(speech16):
    import librosa
    seg = np.resize(speech16, int(dnsmos.WINDOW_S * dnsmos.SR) - dnsmos.HOP).astype(np.float32)
    mel = librosa.feature.melspectrogram(y=seg, sr=dnsmos.SR, n_fft=dnsmos.N_FFT, hop_length=dnsmos.HOP,
                                         n_mels=dnsmos.N_MELS)
    theirs = ((librosa.power_to_db(mel, ref=np.max) + 40) / 40).T
    ours = dnsmos.p808_features(seg[None, :])[0]
    assert ours.shape == theirs.shape == (900, dnsmos.N_MELS)
    np.testing.assert_allclose(ours, theirs, atol=2e-4)


def test_clean_speech_scores_above_the_same_speech_in_noise(speech16):
    clean = 0.9 * speech16 / np.max(np.abs(speech16))
    clean_s, noisy_s = dnsmos.scores(clean, dnsmos.SR), dnsmos.scores(_noisy(speech16, 0.0), dnsmos.SR)
    assert clean_s["dnsmos_ovrl"] > noisy_s["dnsmos_ovrl"] + 0.5
    assert clean_s["dnsmos_bak"] > noisy_s["dnsmos_bak"] + 0.5
    assert all(1.0 <= v <= 5.5 for v in (*clean_s.values(), *noisy_s.values()))


def test_any_rate_is_resampled_to_16k(speech16):
    audio, sr = sf.read(SPEECH, dtype="float64")
    at_8k = dnsmos.scores(audio, sr)
    at_16k = dnsmos.scores(resample(audio, sr, dnsmos.SR), dnsmos.SR)
    assert at_8k == pytest.approx(at_16k, abs=1e-9)


@pytest.mark.parametrize("bad, match", [(np.zeros(0), "non-empty mono"), (np.zeros((2, 100)), "non-empty mono"),
                                        (np.array([0.0, np.nan]), "finite")])
def test_refuses_what_it_cannot_score(bad, match):
    with pytest.raises(ValueError, match=match):
        dnsmos.scores(bad, dnsmos.SR)


def test_bench_dnsmos_quick(tmp_path):
    import json
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "dnsmos.json"
    proc = subprocess.run([sys.executable, str(root / "perf" / "bench_dnsmos.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| clip |" in proc.stdout and "load average (1/5/15 min) at end" in proc.stdout
    figures = json.loads(out.read_text())
    (length,) = figures["lengths"].values()
    assert length["windows"] >= 1 and all(ms > 0 for ms in length["ms"].values())
    assert length["max_abs_diff"] < 1e-4  # the benchmark times the same scores it checks
    assert figures["first_call_ms"] > 0
