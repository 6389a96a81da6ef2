"""benchmark.scoring.metrics: exact values on constructed signals, fixed source order, failures as NaN."""
from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.scoring import metrics
from benchmark.scoring.metrics import METRICS, MetricFailure

SR = 8000


def speechlike(n: int, sr: int = SR, seed: int = 0) -> np.ndarray:
    """Harmonics of a gliding f0 under a syllable-rate envelope: enough for PESQ/STOI to find speech."""
    t = np.arange(n) / sr
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    voice = sum(np.sin(k * phase) / k for k in range(1, 12))
    return (0.1 * voice * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2).astype(np.float32)


def clip(n: int = 2 * SR, snr_db: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    voice = speechlike(n, seed=seed)
    noise = rng.standard_normal(n)
    noise *= np.sqrt(np.sum(voice.astype(np.float64) ** 2) / np.sum(noise**2)) * 10 ** (-snr_db / 20)
    sources = np.stack([voice, noise.astype(np.float32)])
    return sources, sources.sum(axis=0)


def test_true_voice_scores_over_100_db_at_any_gain():
    voice = speechlike(SR)
    assert metrics.si_sdr(voice, voice) > 100
    assert metrics.si_sdr(-0.01 * voice, voice) > 100
    assert metrics.si_sdr(voice + 0.01 * speechlike(SR, seed=3), voice) < 60


def test_si_sdr_of_a_scaled_noisy_estimate_matches_the_hand_computation():
    rng = np.random.default_rng(1)
    ref = rng.standard_normal(4000) + 0.3  # a DC offset, which SI-SDR's zero-mean step removes
    err = rng.standard_normal(4000)
    r, e = ref - ref.mean(), err - err.mean()
    e -= (e @ r) / (r @ r) * r  # orthogonal to the reference: the projection is exactly 0.7 * r
    e *= np.sqrt(0.49 * (r @ r) / (e @ e)) * 10 ** (-7 / 20)  # residual 7 dB below the target
    est = 0.7 * ref + e + 5.0  # any offset in the estimate is removed as well
    assert metrics.si_sdr(est, ref) == pytest.approx(7.0, abs=1e-9)
    # and against the textbook formula on an arbitrary estimate
    est = 0.5 * ref + 0.8 * err
    x, y = est - est.mean(), ref - ref.mean()
    target = (x @ y) / (y @ y) * y
    expected = 10 * np.log10((target @ target) / ((x - target) @ (x - target)))
    assert metrics.si_sdr(est, ref) == pytest.approx(expected, abs=1e-9)


def test_mixture_as_estimate_gives_exactly_zero_improvement():
    sources, mix = clip(snr_db=-3.0)
    inputs = metrics.input_scores(sources, mix, SR)
    np.random.seed(1)  # ESTOI once drew noise from here: the baseline and the row differed
    row = metrics.score_clip(np.stack([mix, mix]), sources, mix, SR, inputs)
    # Exact because every metric is computed again on the same arrays and is deterministic:
    # nothing copies the baseline into the row.
    assert row["voice_sisdri"] == 0.0 and row["voice_sdri"] == 0.0 and row["noise_sisdri"] == 0.0
    for name in ("voice_sisdr", "voice_sdr", "voice_pesq_nb", "voice_stoi", "voice_estoi"):
        assert row[name] == row[f"input_{name}"], name
    assert row["noise_sisdr"] == row["input_noise_sisdr"] and row["failure_reason"] == ""
    # a nearly identical estimate lands next to the baseline, not just exactly on it
    nudged = np.stack([mix, mix]).astype(np.float64) * (1 + 1e-12)
    row = metrics.score_clip(nudged, sources, mix, SR)
    assert abs(row["voice_sisdri"]) < 1e-6 and abs(row["noise_sisdri"]) < 1e-6 and abs(row["voice_sdri"]) < 1e-6
    assert row["voice_pesq_nb"] == pytest.approx(row["input_voice_pesq_nb"], abs=1e-3)


@pytest.mark.parametrize("case", ["speech", "silent voice", "too short for stoi"])
def test_the_mixture_row_read_off_the_baseline_is_the_scored_one(case):
    """evaluate builds the mixture row from the baseline (mixture_scores) instead of scoring the
    mixture again: it must be score_clip's row bit for bit, failures and their reasons included."""
    sources, mix = clip(n=SR // 4 if case == "too short for stoi" else 2 * SR, snr_db=-3.0)
    if case == "silent voice":
        sources[0] = 0.0
        mix = sources.sum(axis=0)
    inputs = metrics.input_scores(sources, mix, SR)
    scored = metrics.score_clip(np.stack([mix, mix]), sources, mix, SR, inputs)
    read = metrics.mixture_scores(inputs, SR)
    assert list(read) == list(scored)
    for name, value in scored.items():
        assert read[name] == value or (isinstance(value, float) and math.isnan(value) and math.isnan(read[name])), name
    assert (scored["failure_reason"] != "") == (case != "speech")


def test_true_sources_improve_and_swapped_outputs_score_negative():
    sources, mix = clip(snr_db=0.0)
    good = metrics.score_clip(sources, sources, mix, SR)
    assert good["voice_sisdr"] > 100 and good["voice_sisdri"] > 90 and good["noise_sisdri"] > 90
    assert good["voice_sdr"] > 100 and good["failure_reason"] == ""
    swapped = metrics.score_clip(sources[::-1].copy(), sources, mix, SR)
    assert swapped["voice_sisdri"] < -10 and swapped["noise_sisdri"] < -10 and swapped["voice_sdri"] < -10


def test_sources_are_scored_in_fixed_order():
    sources, mix = clip(snr_db=3.0)
    rng = np.random.default_rng(2)
    est = sources + 0.3 * rng.standard_normal(sources.shape).astype(np.float32) * sources.std(axis=1, keepdims=True)
    a = metrics.score_clip(est, sources, mix, SR)
    b = metrics.score_clip(est[::-1].copy(), sources, mix, SR)
    assert a["voice_sisdr"] > 5 and b["voice_sisdr"] < -5
    assert a["voice_sdr"] != pytest.approx(b["voice_sdr"], abs=1.0)


def test_sdr_equals_the_least_squares_projection_on_delayed_references():
    """BSS-eval: project the estimate onto 512 delayed copies of its reference (zero-padded
    full convolution, as mir_eval does), SDR = energy of the projection over the rest."""
    rng = np.random.default_rng(3)
    n, taps = 1500, metrics.SDR_FILTER
    ref = rng.standard_normal(n)
    est = np.convolve(ref, [0.9, -0.3, 0.2])[:n] + 0.2 * rng.standard_normal(n)
    padded = np.concatenate([ref, np.zeros(taps - 1)])
    delayed = np.stack([np.roll(padded, k) for k in range(taps)], axis=1)
    target = np.concatenate([est, np.zeros(taps - 1)])
    proj = delayed @ np.linalg.lstsq(delayed, target, rcond=None)[0]
    expected = 10 * np.log10((proj @ proj) / ((target - proj) @ (target - proj)))
    assert metrics.sdr(est, ref) == pytest.approx(expected, abs=1e-6)
    # the distortion filter forgives the filtering that SI-SDR counts as error
    assert metrics.sdr(est, ref) > metrics.si_sdr(est, ref) + 3


def test_pesq_on_a_silent_voice_is_nan_with_a_reason_never_zero():
    sources, mix = clip()
    sources[0] = 0.0
    mix = sources.sum(axis=0)
    row = metrics.score_clip(np.stack([mix, mix]), sources, mix, SR)
    assert math.isnan(row["voice_pesq_nb"]) and math.isnan(row["voice_sisdr"]) and math.isnan(row["voice_stoi"])
    assert "voice_pesq_nb: silent reference" in row["failure_reason"]
    assert not math.isnan(row["noise_sisdr"])  # the other source is still scored


def test_pesq_no_utterances_becomes_a_metric_failure():
    # PESQ levels its inputs, so only a reference without speech-band energy has "no utterances".
    whistle = (0.3 * np.sin(2 * np.pi * 3950 * np.arange(2 * SR) / SR)).astype(np.float32)
    with pytest.raises(MetricFailure, match="no utterances"):
        metrics.pesq(speechlike(2 * SR), whistle, SR)
    sources, mix = clip()
    sources[0] = whistle
    row = metrics.score_clip(sources, sources, mix, SR)
    assert math.isnan(row["voice_pesq_nb"]) and row["voice_sisdr"] > 100
    assert row["failure_reason"].startswith("input_voice_pesq_nb: pesq found no utterances")


def test_stoi_on_too_little_speech_fails_instead_of_returning_1e_5():
    voice = speechlike(SR // 4)
    with pytest.raises(MetricFailure, match="stoi"):
        metrics.stoi(voice, voice, SR)
    assert metrics.stoi(speechlike(SR), speechlike(SR), SR) > 0.99


@pytest.mark.parametrize("sr", [8000, 10000, 16000])
def test_stoi_and_estoi_equal_pystoi(sr):
    """Our STOI/ESTOI share pystoi's front end between the two measures; values must be pystoi's.
    Several different pairs in a row also check that the shared front end is never reused stale.
    pystoi's ESTOI adds 2.2e-16-scaled noise from numpy's global random state; ours draws the
    same numbers from its own generator, seeded with ESTOI_SEED."""
    from pystoi import stoi as pystoi

    rng = np.random.default_rng(1)
    ref = speechlike(2 * sr, sr).astype(np.float64)
    for k, noise_level in enumerate((0.01, 0.05, 0.2)):
        est = ref + noise_level * rng.standard_normal(ref.shape)
        # Our vectorised sums and pystoi's per-frame loop may round apart in the last bits, by
        # CPU (2e-16 seen on an AMD EPYC): 1e-14 is that, and far below any real difference.
        forward = metrics.stoi(est, ref, sr)
        assert forward == pytest.approx(pystoi(ref, est, sr), abs=1e-14)
        np.random.seed(k + 1)  # any global state: ours must not depend on it
        ours = metrics.estoi(est, ref, sr)
        # Other noise moves pystoi's score on these inputs by 1e-16 to 1e-12 (1e-2 where the
        # estimate has digital silence); anything beyond that is a real difference.
        assert ours == pytest.approx(pystoi(ref, est, sr, extended=True), abs=1e-11)
        np.random.seed(metrics.ESTOI_SEED)
        assert ours == pystoi(ref, est, sr, extended=True)  # the same noise: the same bits
        swapped = metrics.stoi(ref, est, sr)  # roles swapped: not the cached pair
        assert swapped == pytest.approx(pystoi(est, ref, sr), abs=1e-14)
        assert abs(swapped - forward) > 1e-6  # so the tolerance cannot hide a reused front end


def test_silent_estimate_is_a_failure_not_a_score():
    sources, mix = clip()
    row = metrics.score_clip(np.zeros_like(sources), sources, mix, SR)
    assert math.isnan(row["voice_sisdr"]) and math.isnan(row["voice_sisdri"]) and math.isnan(row["voice_pesq_nb"])
    assert "silent estimate" in row["failure_reason"]


@pytest.mark.parametrize("sr, mode, rate", [(8000, "nb", 8000), (16000, "wb", 16000), (11025, "wb", 16000)])
def test_pesq_mode_follows_the_sample_rate_and_names_the_column(sr, mode, rate):
    assert metrics.pesq_mode(sr) == (mode, rate)
    sources, mix = clip(n=sr * 2)
    row = metrics.score_clip(sources, sources, mix, sr)
    assert f"voice_pesq_{mode}" in row and row["pesq_sample_rate"] == rate
    assert 1.0 < row[f"voice_pesq_{mode}"] <= 4.65


def test_every_score_column_is_registered():
    for sr in (8000, 16000):
        for col in metrics.score_columns(sr):
            if col != "pesq_sample_rate":
                assert col in METRICS, col
    assert all(METRICS[c].higher_is_better for c in METRICS if c.startswith(("voice_", "noise_")))
    assert METRICS["rtf"].higher_is_better is False and METRICS["rtf"].arrow == "↓"


def test_shapes_are_asserted():
    sources, mix = clip()
    with pytest.raises(ValueError):
        metrics.score_clip(sources[:1], sources, mix, SR)
    with pytest.raises(ValueError):
        metrics.si_sdr(mix[:-1], mix)


def test_measured_snr_uses_the_stems_as_they_sit_in_the_mixture():
    sources, mix = clip(snr_db=4.0)
    assert metrics.snr_measured(sources, mix) == pytest.approx(4.0, abs=1e-4)
    # stems stored at other gains than in the mixture: the mixture's own SNR is still found
    assert metrics.snr_measured(sources * np.array([[0.5], [2.0]], np.float32), mix) == pytest.approx(4.0, abs=1e-4)
