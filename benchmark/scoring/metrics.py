"""Per-clip separation metrics: pure functions on numpy arrays, shapes asserted, no I/O.

Sources are always scored in their fixed order (0 = voice, 1 = noise): a model that swaps its
outputs must score badly, so nothing here searches over permutations. A metric that cannot be
computed raises MetricFailure; score_clip turns that into NaN plus a reason, never a number.

Every metric is a function of its input alone: the same arrays give the same bits in any call,
process or `--jobs` setting, whatever numpy's global random state or the BLAS thread count. The
mixture row relies on it: scoring the mixture as an estimate repeats the baseline bit for bit,
so its improvements are exactly 0.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import math
import re
from dataclasses import dataclass

import numpy as np
import pesq as pesq_lib
import scipy.linalg  # noqa: F401  (loads scipy's own OpenBLAS, for _blas() to find and limit)
import threadpoolctl

from recipes.audio import resample
from recipes.mixing import mixture_gains  # noqa: F401  (one definition; references.py and tests import it from here too)

# Relative floor of SI-SDR's energy ratio: keeps log10 finite and caps a perfect estimate at
# 150 dB while staying exactly scale-invariant (it scales with the estimate's own energy).
SI_SDR_FLOOR = 1e-15
SDR_CLAMP_DB = 150.0
SDR_FILTER = 512  # BSS-eval's distortion filter length (taps), as in mir_eval / museval
# pystoi's ESTOI adds eps-sized noise before each normalisation, drawn from numpy's global random
# state, so the same estimate scored differently from call to call. estoi() draws the same kind
# of noise from a generator of its own, seeded with this, in pystoi's order.
ESTOI_SEED = 0


class MetricFailure(Exception):
    """A metric is undefined for this input; the message is the reason shown to the user."""


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool | None  # None: a description of the input, not a score
    unit: str
    label: str
    digits: int = 2

    @property
    def arrow(self) -> str:
        return {True: "↑", False: "↓", None: ""}[self.higher_is_better]


_METRIC_LIST = [
    Metric("voice_sisdr", True, "dB", "Voice SI-SDR"),
    Metric("voice_sisdri", True, "dB", "Voice SI-SDRi"),
    Metric("voice_sdr", True, "dB", "Voice SDR"),
    Metric("voice_sdri", True, "dB", "Voice SDRi"),
    Metric("voice_pesq_nb", True, "MOS-LQO", "PESQ-NB"),
    Metric("voice_pesq_wb", True, "MOS-LQO", "PESQ-WB"),
    Metric("voice_stoi", True, "", "STOI", 3),
    Metric("voice_estoi", True, "", "ESTOI", 3),
    Metric("voice_dnsmos_sig", True, "MOS", "DNSMOS SIG"),
    Metric("voice_dnsmos_bak", True, "MOS", "DNSMOS BAK"),
    Metric("voice_dnsmos_ovrl", True, "MOS", "DNSMOS OVRL"),
    Metric("noise_sisdr", True, "dB", "Noise SI-SDR"),
    Metric("noise_sisdri", True, "dB", "Noise SI-SDRi"),
    Metric("input_voice_sisdr", None, "dB", "Input voice SI-SDR"),
    Metric("input_noise_sisdr", None, "dB", "Input noise SI-SDR"),
    Metric("input_voice_sdr", None, "dB", "Input voice SDR"),
    Metric("input_voice_pesq_nb", None, "MOS-LQO", "Input PESQ-NB"),
    Metric("input_voice_pesq_wb", None, "MOS-LQO", "Input PESQ-WB"),
    Metric("input_voice_stoi", None, "", "Input STOI", 3),
    Metric("input_voice_estoi", None, "", "Input ESTOI", 3),
    Metric("input_voice_dnsmos_sig", None, "MOS", "Input DNSMOS SIG"),
    Metric("input_voice_dnsmos_bak", None, "MOS", "Input DNSMOS BAK"),
    Metric("input_voice_dnsmos_ovrl", None, "MOS", "Input DNSMOS OVRL"),
    Metric("snr_measured", None, "dB", "Measured SNR"),
    Metric("sep_seconds", False, "s", "Separation time", 3),
    Metric("rtf", False, "", "RTF", 3),
]
METRICS: dict[str, Metric] = {m.name: m for m in _METRIC_LIST}


@functools.lru_cache(maxsize=1)
def _blas() -> threadpoolctl.ThreadpoolController:
    # Made at the first metric call, when numpy's and scipy's OpenBLAS are both loaded (this
    # module imports scipy.linalg); made once because finding the libraries takes ~6 ms.
    return threadpoolctl.ThreadpoolController()


def one_blas_thread(fn):
    """Run `fn` with one BLAS thread. OpenBLAS splits dot products (and the LU solve behind SDR)
    between its threads, so SI-SDR and SDR differed by ~1e-14 between 1 and 2 threads, and the
    caller's thread count is not ours to know (spawned workers, a user's OPENBLAS_NUM_THREADS)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _blas().limit(limits=1, user_api="blas"):
            return fn(*args, **kwargs)
    return wrapper


def _check_pair(est: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    est, ref = np.asarray(est, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    if not (est.ndim == 1 and est.shape == ref.shape):
        raise ValueError(f"need two equal 1-D signals, got {est.shape} and {ref.shape}")
    if not (np.all(np.isfinite(est)) and np.all(np.isfinite(ref))):
        raise MetricFailure("non-finite samples (NaN or inf)")
    if not np.any(ref):
        raise MetricFailure("silent reference")
    if not np.any(est):
        raise MetricFailure("silent estimate")
    return est, ref


@one_blas_thread
def si_sdr(est: np.ndarray, ref: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), both signals made zero-mean first."""
    est, ref = _check_pair(est, ref)
    est, ref = est - est.mean(), ref - ref.mean()
    ref_energy = float(ref @ ref)
    if ref_energy == 0.0:
        raise MetricFailure("constant reference")
    target = (float(est @ ref) / ref_energy) * ref
    residual = est - target
    floor = SI_SDR_FLOOR * float(est @ est) + np.finfo(np.float64).tiny
    return 10.0 * math.log10((float(target @ target) + floor) / (float(residual @ residual) + floor))


@one_blas_thread
def sdr(est: np.ndarray, ref: np.ndarray) -> float:
    """BSS-eval SDR (v4 style: 512-tap distortion filter, exact solve) of one estimate against
    its own reference only. Per-source SDR depends on that pair alone, so scoring each source on
    its own is the same number as bss_eval's, without its permutation search."""
    # Late: fast_bss_eval imports torch (seconds), which pure callers of this module may not need.
    import fast_bss_eval

    est, ref = _check_pair(est, ref)
    # pairwise=True on one pair: fast_bss_eval's pairwise=False path crashes under numpy 2.
    # The clamp gives a perfect estimate the same 150 dB ceiling as si_sdr instead of inf.
    with np.errstate(divide="ignore"):
        value = -float(fast_bss_eval.sdr_loss(est[None], ref[None], filter_length=SDR_FILTER, pairwise=True,
                                              clamp_db=SDR_CLAMP_DB)[0, 0])
    if not math.isfinite(value):
        raise MetricFailure("SDR is not finite (degenerate reference)")
    return value


def pesq_mode(sample_rate: int) -> tuple[str, int]:
    """(mode, rate PESQ runs at): narrow-band at 8 kHz, wide-band at 16 kHz, any other rate
    resampled to 16 kHz wide-band."""
    return ("nb", 8000) if sample_rate == 8000 else ("wb", 16000)


# pesq 0.0.4's C code is only defined for short inputs: at 8 kHz a 120 s pair already scores
# nonsense (4.59 for a pair that scores 1.3 in 60 s pieces) and 130 s or more segfaults. Longer
# clips are scored as equal pieces of at most this long, averaged by length.
PESQ_MAX_SECONDS = 60.0


def pesq_segments(n: int, rate: int) -> list[tuple[int, int]]:
    """(start, stop) of the equal pieces PESQ scores a clip of `n` samples in."""
    pieces = max(1, math.ceil(n / (PESQ_MAX_SECONDS * rate)))
    bounds = [round(k * n / pieces) for k in range(pieces + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def pesq(est: np.ndarray, ref: np.ndarray, sample_rate: int) -> float:
    """ITU-T P.862 MOS-LQO of `est` against the clean `ref` (mode from pesq_mode); on a clip
    longer than PESQ_MAX_SECONDS, the length-weighted mean over its pieces that hold speech."""
    est, ref = _check_pair(est, ref)
    mode, rate = pesq_mode(sample_rate)
    if rate != sample_rate:
        est, ref = resample(est, sample_rate, rate), resample(ref, sample_rate, rate)
    pieces = pesq_segments(len(ref), rate)
    if len(pieces) == 1:
        return _pesq_piece(est, ref, rate, mode)
    scores, weights, first_failure = [], [], None
    for a, b in pieces:
        try:
            scores.append(_pesq_piece(est[a:b], ref[a:b], rate, mode))
            weights.append(b - a)
        except MetricFailure as exc:  # a silent piece of a long clip: the others still score it
            first_failure = first_failure or exc
    if not scores:
        raise first_failure
    return float(np.average(scores, weights=weights))


def _pesq_piece(est: np.ndarray, ref: np.ndarray, rate: int, mode: str) -> float:
    try:
        return float(pesq_lib.pesq(rate, ref, est, mode))
    except pesq_lib.NoUtterancesError:
        raise MetricFailure("pesq found no utterances in the reference") from None
    except pesq_lib.BufferTooShortError:
        raise MetricFailure("clip too short for pesq (needs 0.25 s)") from None
    except (pesq_lib.PesqError, ValueError) as exc:
        raise MetricFailure(f"pesq failed ({str(exc).strip() or type(exc).__name__})") from None


# STOI and ESTOI share pystoi's whole front end (10 kHz resampling, silent-frame removal, STFT,
# one-third octave bands, 384 ms segments), which is most of their cost; it is computed once
# for the pair of signals that score_clip asks both measures about. One entry, keyed by content.
_SEGMENTS: list = [None, None]


def _pystoi():
    """pystoi's stoi module (its constants and utils): `pystoi.stoi` itself names the function.
    pystoi's internals are used on purpose: STOI and ESTOI share the whole front end, which
    pystoi would otherwise run twice per pair: 41.7 against 61.9 ms per 4 s clip at 8 kHz for
    both measures (2 cores, load 0.3, 2026-12-01). tests/test_metrics.py
    (test_stoi_and_estoi_equal_pystoi) compares both with pystoi's public function, so an
    upstream change to these internals fails there."""
    return importlib.import_module("pystoi.stoi")


@one_blas_thread
def _stoi_segments(est: np.ndarray, ref: np.ndarray, sample_rate: int):
    """pystoi's (clean, processed) segment arrays [J, bands, N], in pystoi's own steps and order,
    so the measures below equal pystoi.stoi's (tested)."""
    est, ref = _check_pair(est, ref)
    key = (sample_rate, est.shape, hashlib.blake2b(est.tobytes()).digest(), hashlib.blake2b(ref.tobytes()).digest())
    if _SEGMENTS[0] == key:
        return _SEGMENTS[1]
    st = _pystoi()
    x, y = ref, est
    if sample_rate != st.FS:
        x, y = st.utils.resample_oct(x, st.FS, sample_rate), st.utils.resample_oct(y, st.FS, sample_rate)
    x, y = st.utils.remove_silent_frames(x, y, st.DYN_RANGE, st.N_FRAME, int(st.N_FRAME / 2))
    x_spec = st.utils.stft(x, st.N_FRAME, st.NFFT, overlap=2).transpose()
    y_spec = st.utils.stft(y, st.N_FRAME, st.NFFT, overlap=2).transpose()
    # pystoi returns 1e-5 with only a warning here: that is no score.
    if x_spec.shape[-1] < st.N:
        raise MetricFailure("too few non-silent frames for stoi (needs ~0.4 s of speech)")
    x_tob = np.sqrt(np.matmul(st.OBM, np.square(np.abs(x_spec))))
    y_tob = np.sqrt(np.matmul(st.OBM, np.square(np.abs(y_spec))))
    frames = range(st.N, x_tob.shape[1] + 1)
    segments = (np.array([x_tob[:, m - st.N:m] for m in frames]), np.array([y_tob[:, m - st.N:m] for m in frames]))
    _SEGMENTS[:] = [key, segments]
    return segments


def stoi(est: np.ndarray, ref: np.ndarray, sample_rate: int) -> float:
    """STOI (Taal et al. 2011) of `est` against the clean `ref`, as pystoi computes it."""
    st = _pystoi()
    x, y = _stoi_segments(est, ref, sample_rate)
    y = y * (np.linalg.norm(x, axis=2, keepdims=True) / (np.linalg.norm(y, axis=2, keepdims=True) + st.utils.EPS))
    y = np.minimum(y, x * (1 + 10 ** (-st.BETA / 20)))  # clip at the lower SDR bound
    y = y - np.mean(y, axis=2, keepdims=True)
    x = x - np.mean(x, axis=2, keepdims=True)
    y /= np.linalg.norm(y, axis=2, keepdims=True) + st.utils.EPS
    x /= np.linalg.norm(x, axis=2, keepdims=True) + st.utils.EPS
    return float(np.sum(y * x) / (x.shape[0] * x.shape[1]))


def _row_col_normalize(x: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """pystoi.utils.row_col_normalize with its noise drawn from `rng`. pystoi multiplies by
    diagonal matrices; scaling rows and columns directly gives the same bits (each product has a
    single non-zero term) without a BLAS call."""
    eps = _pystoi().utils.EPS
    x = x + eps * rng.standard_normal(x.shape)
    x -= np.mean(x, axis=-1, keepdims=True)
    x *= 1.0 / np.sqrt(np.sum(x ** 2, axis=-1, keepdims=True))
    x += eps * rng.standard_normal(x.shape)
    x -= np.mean(x, axis=1, keepdims=True)
    x *= 1.0 / np.sqrt(np.sum(x ** 2, axis=1, keepdims=True))
    return x


def estoi(est: np.ndarray, ref: np.ndarray, sample_rate: int) -> float:
    """Extended STOI (Jensen & Taal 2016), as pystoi computes it after np.random.seed(ESTOI_SEED).

    The noise (2.2e-16 x standard normal) moves a typical score by 1e-15 to 1e-12, but where the
    estimate is digitally silent in a band for a whole 384 ms segment it is that band's whole
    signal there, and its draw moved the score by up to ~1e-2. A fixed seed makes that one
    reproducible draw; numpy's global random state is neither read nor advanced."""
    st = _pystoi()
    x, y = _stoi_segments(est, ref, sample_rate)
    # RandomState, not default_rng: NumPy keeps its stream frozen across versions (NEP 19), and
    # it draws the numbers pystoi draws after np.random.seed, which the tests compare with.
    rng = np.random.RandomState(ESTOI_SEED)
    x_n = _row_col_normalize(x, rng)
    y_n = _row_col_normalize(y, rng)  # second: pystoi draws the clean segments' noise first
    return float(np.sum(x_n * y_n / st.N) / x_n.shape[0])


@one_blas_thread
def snr_measured(sources: np.ndarray, mix: np.ndarray) -> float:
    """Voice-to-noise energy ratio in dB of the stems as they sit in the mixture."""
    g = mixture_gains(sources, mix)
    voice, noise = g[0] * np.asarray(sources[0], np.float64), g[1] * np.asarray(sources[1], np.float64)
    ev, en = float(voice @ voice), float(noise @ noise)
    if ev == 0.0 and en == 0.0:
        return math.nan
    return math.inf if en == 0.0 else (-math.inf if ev == 0.0 else 10.0 * math.log10(ev / en))


def _voice_metrics(sample_rate: int) -> list[tuple[str, callable]]:
    mode, _ = pesq_mode(sample_rate)
    return [("sisdr", lambda e, r: si_sdr(e, r)), ("sdr", lambda e, r: sdr(e, r)),
            (f"pesq_{mode}", lambda e, r: pesq(e, r, sample_rate)),
            ("stoi", lambda e, r: stoi(e, r, sample_rate)), ("estoi", lambda e, r: estoi(e, r, sample_rate))]


def _apply(fn, est, ref, name: str, row: dict, reasons: list[str]) -> None:
    try:
        row[name] = fn(est, ref)
    except MetricFailure as exc:
        row[name] = math.nan
        reasons.append(f"{name}: {exc}")


# DNSMOS (optional: `evaluate --metrics +dnsmos`) scores the voice estimate without a reference.
# A run that asks for it has these columns in its baseline (input_scores), and that is how every
# later row of the run knows to score it too: the flag travels with the data, not as a setting.
DNSMOS_PARTS = ("sig", "bak", "ovrl")
DNSMOS_COLUMNS = tuple(f"voice_dnsmos_{p}" for p in DNSMOS_PARTS)


def has_dnsmos(inputs: dict) -> bool:
    return "input_voice_dnsmos_ovrl" in inputs


def add_dnsmos(audio: np.ndarray, sample_rate: int, prefix: str, row: dict, reasons: list[str]) -> None:
    """row[prefix_sig/bak/ovrl] from scoring.dnsmos; NaN and one reason when it cannot score."""
    # Late: DNSMOS is an optional extra (onnxruntime sessions), imported only by a run using it.
    from . import dnsmos

    audio = np.asarray(audio, np.float64)
    try:
        if not np.all(np.isfinite(audio)):
            raise MetricFailure("non-finite samples (NaN or inf)")
        if not np.any(audio):
            raise MetricFailure("silent estimate")
        got = dnsmos.scores(audio, sample_rate)
        values = {p: float(got[f"dnsmos_{p}"]) for p in DNSMOS_PARTS}
    except Exception as exc:  # an external model: whatever it raises is this clip's reason, not the run's end
        row.update({f"{prefix}_{p}": math.nan for p in DNSMOS_PARTS})
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        reasons.append(f"{prefix}: {text}")
        return
    row.update({f"{prefix}_{p}": v for p, v in values.items()})


def input_scores(sources: np.ndarray, mix: np.ndarray, sample_rate: int, dnsmos: bool = False) -> dict:
    """The unprocessed mixture scored against each stem: the baseline of every improvement.
    Independent of the model, so the benchmark computes it once per clip. `dnsmos`: also the
    mixture's DNSMOS (input_voice_dnsmos_*), which makes score_clip score it for every row."""
    sources, mix = np.asarray(sources), np.asarray(mix)
    if not (sources.ndim == 2 and sources.shape[0] == 2 and sources.shape[1:] == mix.shape):
        raise ValueError(f"need sources [2, T] and a mixture [T], got {sources.shape} and {mix.shape}")
    row, reasons = {}, []
    for suffix, fn in _voice_metrics(sample_rate):
        _apply(fn, mix, sources[0], f"input_voice_{suffix}", row, reasons)
    _apply(si_sdr, mix, sources[1], "input_noise_sisdr", row, reasons)
    if dnsmos:
        add_dnsmos(mix, sample_rate, "input_voice_dnsmos", row, reasons)
    row["snr_measured"] = snr_measured(sources, mix)
    row["pesq_sample_rate"] = pesq_mode(sample_rate)[1]
    row["failure_reason"] = "; ".join(reasons)
    return row


def score_columns(sample_rate: int, dnsmos: bool = False) -> list[str]:
    """The metric columns of score_clip's row, in order (the PESQ mode is in the name); with
    `dnsmos`, DNSMOS's columns of the voice estimate and of the mixture last."""
    mode, _ = pesq_mode(sample_rate)
    voice = ["voice_sisdr", "voice_sisdri", "voice_sdr", "voice_sdri", f"voice_pesq_{mode}", "voice_stoi", "voice_estoi"]
    inputs = ["input_voice_sisdr", "input_noise_sisdr", "input_voice_sdr", f"input_voice_pesq_{mode}",
              "input_voice_stoi", "input_voice_estoi"]
    extra = [*DNSMOS_COLUMNS, *(f"input_{c}" for c in DNSMOS_COLUMNS)] if dnsmos else []
    return voice + ["noise_sisdr", "noise_sisdri"] + inputs + ["pesq_sample_rate"] + extra


def failed_row(sample_rate: int, inputs: dict, reason: str) -> dict:
    """The row of a clip whose separation itself failed: every estimate metric NaN."""
    row = {c: inputs.get(c, math.nan) for c in score_columns(sample_rate, has_dnsmos(inputs))}
    row["failure_reason"] = "; ".join(r for r in (reason, inputs.get("failure_reason", "")) if r)
    return row


def score_clip(est: np.ndarray, sources: np.ndarray, mix: np.ndarray, sample_rate: int,
               inputs: dict | None = None) -> dict:
    """One tidy row: voice_*, noise_*, input_* values and `failure_reason` ('' if all computed).

    est, sources: [2, T] in fixed order (voice, noise); mix: [T]. `inputs` is input_scores()
    of this clip when already known. Failed metrics are NaN, never 0.
    """
    est, sources, mix = np.asarray(est), np.asarray(sources), np.asarray(mix)
    if not (est.shape == sources.shape and est.ndim == 2 and est.shape[0] == 2 and mix.shape == sources.shape[1:]):
        raise ValueError(f"need estimates and sources [2, T] and a mixture [T], got {est.shape}, {sources.shape} "
                         f"and {mix.shape}")
    if inputs is None:
        inputs = input_scores(sources, mix, sample_rate)
    row, reasons = {}, []
    for suffix, fn in _voice_metrics(sample_rate):
        _apply(fn, est[0], sources[0], f"voice_{suffix}", row, reasons)
    _apply(si_sdr, est[1], sources[1], "noise_sisdr", row, reasons)
    if has_dnsmos(inputs):
        add_dnsmos(est[0], sample_rate, "voice_dnsmos", row, reasons)
    # Differences of NaN stay NaN: an improvement is only shown when both ends were computed.
    row["voice_sisdri"] = row["voice_sisdr"] - inputs["input_voice_sisdr"]
    row["voice_sdri"] = row["voice_sdr"] - inputs["input_voice_sdr"]
    row["noise_sisdri"] = row["noise_sisdr"] - inputs["input_noise_sisdr"]
    out = {c: row[c] if c in row else inputs[c] for c in score_columns(sample_rate, has_dnsmos(inputs))}
    out["failure_reason"] = "; ".join(r for r in (inputs.get("failure_reason", ""), *reasons) if r)
    return out


_INPUT_REASON = re.compile(r"; (?=input_(?:voice|noise)_)")


def mixture_scores(inputs: dict, sample_rate: int) -> dict:
    """score_clip's row for the unprocessed mixture as the estimate of both sources, read off the
    baseline instead of scored again: every metric is a function of its input alone, so the
    mixture row IS the baseline (improvements exactly 0, the same failures under the row's
    names). At the original data set's size, scoring it again cost 308 s of one core."""
    columns = score_columns(sample_rate, has_dnsmos(inputs))
    row = {c: inputs[c] for c in columns if c.startswith("input_") or c == "pesq_sample_rate"}
    for column in columns:
        if column.startswith(("voice_", "noise_")) and not column.endswith(("sisdri", "sdri")):
            row[column] = inputs[f"input_{column}"]
    row["voice_sisdri"] = row["voice_sisdr"] - inputs["input_voice_sisdr"]
    row["voice_sdri"] = row["voice_sdr"] - inputs["input_voice_sdr"]
    row["noise_sisdri"] = row["noise_sisdr"] - inputs["input_noise_sisdr"]
    baseline = inputs.get("failure_reason", "") or ""
    own = [r[len("input_"):] for r in _INPUT_REASON.split(baseline) if r]
    out = {c: row[c] for c in columns}
    out["failure_reason"] = "; ".join(r for r in (baseline, *own) if r)
    return out
