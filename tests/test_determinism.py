"""Scores are functions of the audio alone: the same estimate gives the same bits in every call,
process and `--jobs` setting, whatever numpy's global random state or the BLAS thread count."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import threadpoolctl
import torch

import recipes
from benchmark import cli
from benchmark.scoring import metrics, references
from recipes.checkpoint import save_model

SR = 8000
# What may differ between two evaluations of the same files: wall-clock times and when/where.
VARYING = ["sep_seconds", "rtf", "evaluated_at", "git_commit"]


def _bits(value) -> bytes:
    """A float's bytes: NaN equals NaN here, and 0.0 differs from -0.0."""
    return struct.pack("<d", value) if isinstance(value, float) else repr(value).encode()


def _row_bits(row: dict) -> dict:
    return {k: _bits(v) for k, v in row.items()}


def _clip(seconds: float = 3.0):
    """A speech-like voice (gliding harmonics, syllable envelope), white noise at 0 dB, and an
    estimate that is digitally silent for 1.5 s: a whole band of a 384 ms segment is then exactly
    0, and there pystoi's ESTOI is decided by its eps-sized noise."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    phase = 2 * np.pi * np.cumsum(140 + 30 * np.sin(2 * np.pi * 0.7 * t)) / SR
    voice = 0.1 * sum(np.sin(k * phase) / k for k in range(1, 12)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2
    noise = np.random.default_rng(0).standard_normal(n)
    noise *= np.sqrt(np.sum(voice**2) / np.sum(noise**2))
    sources = np.stack([voice, noise]).astype(np.float32)
    mix = sources.sum(axis=0)
    est = sources + 0.3 * mix
    est[0, SR:int(2.5 * SR)] = 0.0
    return est, sources, mix


def _all_metrics(est, sources, mix) -> dict:
    """Every metric function, as bytes, with the STOI front end's one-entry cache emptied first,
    so the whole computation runs each time."""
    metrics._SEGMENTS[:] = [None, None]
    voice, ref = est[0], sources[0]
    values = {"si_sdr": metrics.si_sdr(voice, ref), "sdr": metrics.sdr(voice, ref),
              "pesq": metrics.pesq(voice, ref, SR), "stoi": metrics.stoi(voice, ref, SR),
              "estoi": metrics.estoi(voice, ref, SR), "snr_measured": metrics.snr_measured(sources, mix)}
    metrics._SEGMENTS[:] = [None, None]
    values.update({f"clip.{k}": v for k, v in metrics.score_clip(est, sources, mix, SR).items()})
    return _row_bits(values)


def _same_random_state(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_the_noisy_estimate_is_one_where_pystoi_varies():
    """The estimate used below is a hard case, not a lucky one: pystoi's own ESTOI of it moves
    in the third decimal with numpy's global seed (on ordinary estimates, in the 15th)."""
    from pystoi import stoi as pystoi

    est, sources, _ = _clip()
    values = []
    for seed in range(3):
        np.random.seed(seed)
        values.append(pystoi(sources[0], est[0], SR, extended=True))
    assert max(values) - min(values) > 1e-4


def test_metrics_repeat_bit_for_bit_and_leave_numpy_random_alone():
    est, sources, mix = _clip()
    results = []
    for seed in (0, 1, 12345):
        np.random.seed(seed)  # a caller's seed must change nothing...
        before = np.random.get_state()
        results.append(_all_metrics(est, sources, mix))
        assert _same_random_state(before, np.random.get_state())  # ...and must not be advanced
    assert results[0] == results[1] == results[2]
    assert results[0]["clip.failure_reason"] == _bits("")  # every metric was computed


def _blas_threads() -> int:
    return min(lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas")


def test_metrics_and_oracles_do_not_depend_on_thread_counts():
    """OpenBLAS splits sums between its threads (SI-SDR and SDR differed by ~1e-14 between 1 and
    2 threads); the metrics run on one thread whatever the caller set."""
    est, sources, mix = _clip()
    torch_threads = torch.get_num_threads()
    seen = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
                if _blas_threads() < threads:
                    pytest.skip("OpenBLAS was started with a single thread here")
                oracles = [references.estimate(name, mix, sources, SR).tobytes()
                           for name in references.names() if references.kind(name) == "oracle"]
                seen.append((_all_metrics(est, sources, mix), oracles))
    finally:
        torch.set_num_threads(torch_threads)
    assert seen[0] == seen[1]


# ---- whole evaluations ----

def _make_run(runs: Path) -> None:
    """One tiny untrained lstm_mask (as tests/test_evaluate.py makes them)."""
    args = {"sample_rate": SR, "hidden": 16, "n_layers": 1}
    torch.manual_seed(0)
    model = recipes.get("lstm_mask").build(**args)
    folder = runs / "lstm_mask" / "tiny"
    folder.mkdir(parents=True)
    save_model(folder / "best.pt", model, "lstm_mask", args, SR, profile="tiny", seed=0, config={})
    card = {"recipe": "lstm_mask", "profile": "tiny", "model_args": args, "sample_rate": SR, "status": "complete",
            "n_params": sum(p.numel() for p in model.parameters()), "train_seconds": 1.0}
    (folder / "card.json").write_text(json.dumps(card), encoding="utf-8")


def _scores(path: Path) -> pd.DataFrame:
    """results.csv as the text it holds, without the columns that may vary between runs."""
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert set(VARYING) <= set(df.columns)
    return df.drop(columns=VARYING)


@pytest.mark.slow
def test_evaluations_repeat_byte_for_byte_with_any_jobs(tiny_data, tmp_path):
    """--force twice, then --jobs 2: the same per-clip scores, byte for byte, for the model, the
    mixture (whose baseline comes from another process with --jobs 2) and the oracles."""
    _make_run(tmp_path / "runs")

    def evaluate(out: str, jobs: int) -> pd.DataFrame:
        rc = cli.main(["evaluate", "--data", str(tiny_data / "test"), "--runs", str(tmp_path / "runs"), "--out",
                       str(tmp_path / out), "--jobs", str(jobs), "--device", "cpu", "--force"])
        assert rc == 0
        return _scores(tmp_path / out / "results.csv")

    # No thread pinning here: evaluate runs every CPU forward pass on one torch thread itself.
    torch_threads = torch.get_num_threads()
    first, again = evaluate("a", 1), evaluate("a", 1)
    assert torch.get_num_threads() == torch_threads  # restored after each forward pass
    two_jobs = evaluate("b", 2)
    assert len(first) == 5 * 9 and (first["failure_reason"] == "").all()
    pd.testing.assert_frame_equal(first, again)
    pd.testing.assert_frame_equal(first, two_jobs)
    mixture = first[first["model"] == "mixture"]
    assert (mixture["voice_sisdri"] == "0.0").all() and (mixture["voice_estoi"] == mixture["input_voice_estoi"]).all()
