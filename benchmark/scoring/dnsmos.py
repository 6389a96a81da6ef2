"""DNSMOS (Reddy et al., ICASSP 2021 and 2022): a non-intrusive estimate of speech quality as
listeners rate it, from the clip alone. P.835's SIG (the speech), BAK (the background) and OVRL
(overall), and P.808's single MOS, on the 1-5 scale.

The ONNX models are the ones speechmos (MIT) ships; this module computes what speechmos.dnsmos.run
computes by default (non-personalized P.835 model and its polynomial fits), to 1e-4, with its
quirks kept so that the numbers are the ones other papers report with it. The P.808 features
(librosa's mel spectrogram) are rebuilt in numpy, so scoring needs neither librosa nor requests.
"""
from __future__ import annotations

import functools
import importlib.util

import numpy as np

from benchmark.baselines._runtime import onnx_session, package_files, shipped
from recipes.audio import resample

SR = 16000  # the rate the models were trained at
WINDOW_S = 9.01  # seconds the P.835 model takes
INSTALL = "pip install -e .[baselines]"
PACKAGE = "speechmos"
P835_MODEL = "dnsmos_models/sig_bak_ovr.onnx"  # run()'s default model_type "dnsmos"; pdnsmos_models/ is personalized
P808_MODEL = "dnsmos_models/model_v8.onnx"
# speechmos's non-personalized fits from raw network output to MOS (numpy.poly1d order: highest power first).
FIT_SIG = (-0.08397278, 1.22083953, 0.0052439)
FIT_BAK = (-0.13166888, 1.60915514, -0.39604546)
FIT_OVRL = (-0.06766283, 1.11546468, 0.04602535)
# P.808's features: librosa.feature.melspectrogram(n_fft=321, hop_length=160, n_mels=120), then
# power_to_db(ref=max) with librosa's amin and top_db, mapped by (dB + 40) / 40.
N_FFT, HOP, N_MELS, AMIN, TOP_DB = 321, 160, 120, 1e-10, 80.0
# Windows per session.run. One: on one onnxruntime thread the P.835 network took 2.48 s for 7
# windows run one by one and 3.00 s for the same 7 in one batch (2 cores, load 1.5), so batching
# costs time here; one window at a time also keeps memory flat on any clip length.
BATCH = 1
KEYS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")


def available() -> str | None:
    """None when DNSMOS can run here, else one line saying what to install."""
    for module in ("onnxruntime", PACKAGE):
        if importlib.util.find_spec(module) is None:
            return f"DNSMOS needs the optional extra ({module} is not installed): {INSTALL}"
    for path in (P835_MODEL, P808_MODEL):
        if not package_files(PACKAGE).joinpath(path).is_file():
            return f"DNSMOS: {path} is missing from the installed {PACKAGE} (reinstall it: {INSTALL})"
    return None


@functools.cache
def _session(path: str):
    # One per model per process: creating one costs ~0.1 s, more than scoring a short clip.
    return onnx_session(shipped(PACKAGE, path, INSTALL).read_bytes())


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    # Slaney's scale (librosa's htk=False): linear to 1 kHz, logarithmic above.
    f = np.asarray(f, dtype=np.float64)
    step = np.log(6.4) / 27.0
    return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-300) / 1000.0) / step, f * 3.0 / 200.0)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    step = np.log(6.4) / 27.0
    return np.where(m >= 15.0, 1000.0 * np.exp(step * (m - 15.0)), m * 200.0 / 3.0)


@functools.cache
def _mel_basis() -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=321, n_mels=120): triangles between mel-spaced edges
    from 0 to 8 kHz, each scaled to unit area (norm="slaney"); [N_MELS, N_FFT // 2 + 1]."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SR / 2), N_MELS + 2))
    ramps = edges[:, None] - np.fft.rfftfreq(N_FFT, 1.0 / SR)[None, :]
    width = np.diff(edges)
    rising, falling = -ramps[:-2] / width[:-1, None], ramps[2:] / width[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    # librosa stores the bank in float32; rounding it the same way keeps the features bit-close.
    return (weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]).astype(np.float32).astype(np.float64)


def p808_features(segments: np.ndarray) -> np.ndarray:
    """[n, samples] -> [n, frames, N_MELS] float32: librosa's centred STFT (periodic Hann of
    N_FFT, zero padding of N_FFT // 2 at both ends), power, mel bank, dB relative to each
    segment's own maximum floored at TOP_DB below it, then (dB + 40) / 40."""
    x = np.pad(np.asarray(segments, dtype=np.float64), ((0, 0), (N_FFT // 2, N_FFT // 2)))
    frames = np.lib.stride_tricks.sliding_window_view(x, N_FFT, axis=1)[:, ::HOP]
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    mel = power @ _mel_basis().T
    db = 10.0 * np.log10(np.maximum(AMIN, mel))
    db -= 10.0 * np.log10(np.maximum(AMIN, mel.max(axis=(1, 2), keepdims=True)))
    db = np.maximum(db, db.max(axis=(1, 2), keepdims=True) - TOP_DB)
    return ((db + 40.0) / 40.0).astype(np.float32)


def windows(audio: np.ndarray) -> np.ndarray:
    """speechmos's 9.01 s windows of a 16 kHz clip, [n, 144160]: a clip shorter than that is
    doubled until it is not, then windows start every second. Its bounds come from float
    arithmetic, so e.g. windows 7 to 23 come out one sample short and speechmos skips them: kept,
    so that the scores stay speechmos's."""
    length = int(WINDOW_S * SR)
    while len(audio) < length:
        audio = np.concatenate([audio, audio])
    n_hops = int(np.floor(len(audio) / SR) - WINDOW_S) + 1
    bounds = [(int(i * SR), int((i + WINDOW_S) * SR)) for i in range(n_hops)]
    return np.stack([audio[a:b] for a, b in bounds if len(audio[a:b]) >= length])


def _fit(coefficients, raw: np.ndarray) -> np.ndarray:
    return np.polyval(np.asarray(coefficients), raw.astype(np.float64))


def scores(audio: np.ndarray, sample_rate: int) -> dict:
    """DNSMOS of one mono clip at any rate (resampled to 16 kHz): the mean over its windows of
    SIG, BAK, OVRL and P.808 MOS. The samples are scored as they are (no level change);
    speechmos refuses values outside [-1, 1], this does not, since a separated estimate may
    overshoot a little."""
    audio = np.asarray(audio)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(f"DNSMOS needs one non-empty mono signal, got shape {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise ValueError("DNSMOS needs finite samples (got NaN or inf)")
    segments = windows(resample(audio, sample_rate, SR))
    p835, p808 = _session(P835_MODEL), _session(P808_MODEL)
    raw, mos808 = [], []
    for i in range(0, len(segments), BATCH):
        batch = segments[i:i + BATCH]
        raw.append(p835.run(None, {"input_1": batch.astype(np.float32)})[0])
        # P.808 sees each window less its last 10 ms, as in speechmos (900 frames).
        mos808.append(p808.run(None, {"input_1": p808_features(batch[:, :-HOP])})[0][:, 0])
    sig, bak, ovrl = np.concatenate(raw).T
    return {"dnsmos_sig": float(np.mean(_fit(FIT_SIG, sig))), "dnsmos_bak": float(np.mean(_fit(FIT_BAK, bak))),
            "dnsmos_ovrl": float(np.mean(_fit(FIT_OVRL, ovrl))),
            "dnsmos_p808": float(np.mean(np.concatenate(mos808).astype(np.float64)))}
