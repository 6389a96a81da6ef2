"""Where one results row's scoring time goes: each metric of benchmark/scoring/metrics.py timed on
its own, per clip (default 10 demo clips of 10 s at 8 kHz), and STOI + ESTOI before and after
sharing their front end.

    .venv/bin/python perf/bench_metrics.py [--n-clips 10] [--seconds 10] [--sr 8000]
        [--repeats 3] [--quick] [--out FILE.json]

The estimate scored is oracle_irm's (a separated signal, as a model row has; a metric's cost
hardly depends on the quality). One row = voice SI-SDR, SDR, PESQ, STOI, ESTOI and noise SI-SDR
(score_clip); the clip's baseline row adds the same on the mixture plus the measured SNR (its
stem gains: mixture_gains). "Before": pystoi's public stoi(..., extended=False) and
stoi(..., extended=True), each running pystoi's whole front end (10 kHz resampling, silent-frame
removal, STFT, one-third octave bands, 384 ms segments); "after": metrics.stoi + metrics.estoi,
which compute it once per pair. The values of both are compared too.

Everything runs as a scoring worker does: one BLAS thread, one torch thread. Each measure is
run once per clip and repeat, the measures interleaved; the figure is the median per clip.
"""
from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import common

N_CALLS = {"voice SI-SDR + noise SI-SDR": 2}  # calls per row; the others are called once


def _timed(fn, clear) -> tuple[float, float, object]:
    clear()  # the front-end cache must not carry one measure's work into the next
    wall, cpu = time.perf_counter(), time.process_time()
    value = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, value


def measures(m, pystoi, est, sources, mix, sr, inputs: dict) -> dict:
    """name -> a call doing that part of the scoring for this clip (`inputs`: its baseline row)."""
    import numpy as np

    voice, ref = est[0], sources[0]

    def pystoi_both():
        a = pystoi.stoi(ref, voice, sr, extended=False)
        # pystoi's ESTOI draws its eps-sized noise from numpy's global state: seeded as
        # metrics.estoi's own generator is, so that the values can be compared.
        np.random.seed(m.ESTOI_SEED)
        return a, pystoi.stoi(ref, voice, sr, extended=True)

    return {
        "voice SI-SDR + noise SI-SDR": lambda: (m.si_sdr(voice, ref), m.si_sdr(est[1], sources[1])),
        "SDR (512 taps)": lambda: m.sdr(voice, ref),
        f"PESQ ({m.pesq_mode(sr)[0]})": lambda: m.pesq(voice, ref, sr),
        "STOI alone (its own front end)": lambda: m.stoi(voice, ref, sr),
        "ESTOI alone (its own front end)": lambda: m.estoi(voice, ref, sr),
        "STOI + ESTOI front end": lambda: m._stoi_segments(voice, ref, sr),
        "STOI + ESTOI, shared front end (after)": lambda: (m.stoi(voice, ref, sr), m.estoi(voice, ref, sr)),
        "STOI + ESTOI, pystoi twice (before)": pystoi_both,
        "snr_measured (stem gains)": lambda: m.snr_measured(sources, mix),
        "whole row (score_clip)": lambda: m.score_clip(est, sources, mix, sr, inputs),
    }


def main(argv=None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--n-clips", type=int, default=10)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--sr", type=int, default=8000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    if args.quick:
        args.n_clips, args.seconds, args.repeats = 2, 2.0, 1
    report = common.Report("bench_metrics", args)
    # Late: the scoring modules import torch and scipy (seconds); --help must not pay that.
    import importlib

    import threadpoolctl
    import torch

    from benchmark.scoring import metrics as m
    from benchmark.scoring import references
    from recipes.data import FolderDataset
    from recipes.folder import load_split

    pystoi = importlib.import_module("pystoi")

    def clear():
        m._SEGMENTS[:] = [None, None]

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench_metrics-") as tmp, \
            threadpoolctl.threadpool_limits(limits=1, user_api="blas"):
        data = common.demo_data(Path(tmp) / "data", n_train=2, n_test=args.n_clips, seconds=args.seconds,
                                sample_rate=args.sr)
        dataset = FolderDataset(load_split(data / "test"))
        clips = []
        for i in range(len(dataset)):
            mix, sources, _ = dataset[i]
            mix, sources = mix.numpy(), sources.numpy()
            est = references.estimate("oracle_irm", mix, sources, args.sr)
            clips.append(measures(m, pystoi, est, sources, mix, args.sr, m.input_scores(sources, mix, args.sr)))
        names = list(clips[0])
        wall = {n: [] for n in names}
        cpu = {n: [] for n in names}
        diffs = []
        for r in range(args.repeats):
            for c in clips:
                values = {}
                for n in (names if r % 2 == 0 else names[::-1]):  # alternate the order: drift hits all
                    w, t, values[n] = _timed(c[n], clear)
                    wall[n].append(w)
                    cpu[n].append(t)
                pairs = zip(values["STOI + ESTOI, shared front end (after)"], values["STOI + ESTOI, pystoi twice (before)"])
                diffs.append(max(abs(a - b) for a, b in pairs))
    ms = {n: 1e3 * common.median(wall[n]) for n in names}
    cpu_ms = {n: 1e3 * common.median(cpu[n]) for n in names}
    row_parts = ["voice SI-SDR + noise SI-SDR", "SDR (512 taps)", next(n for n in names if n.startswith("PESQ")),
                 "STOI + ESTOI, shared front end (after)"]
    row_sum = sum(ms[n] for n in row_parts)
    rows = [[n, N_CALLS.get(n, 1), ms[n], cpu_ms[n], f"{100 * ms[n] / row_sum:.0f} %" if n in row_parts else ""]
            for n in names]
    print(f"\n{len(clips)} demo clips of {args.seconds:g} s at {args.sr} Hz, oracle_irm estimates, "
          f"{args.repeats} repeats, median per clip, one BLAS and one torch thread\n")
    print(common.table(["measure", "calls per row", "wall ms", "CPU ms", "share of a row"], rows))
    before, after = ms["STOI + ESTOI, pystoi twice (before)"], ms["STOI + ESTOI, shared front end (after)"]
    front = ms["STOI + ESTOI front end"]
    print(f"\nSTOI + ESTOI: before {before:.1f} ms, after {after:.1f} ms per clip ({before / after:.2f}x); "
          f"the front end is {front:.1f} ms of it")
    print(f"a row's metrics summed: {row_sum:.1f} ms; score_clip as a whole: {ms['whole row (score_clip)']:.1f} ms")
    print(f"largest |pystoi - sepbench| over STOI and ESTOI: {max(diffs):.3g}")
    report.figures = {"n_clips": len(clips), "seconds": args.seconds, "sample_rate": args.sr, "repeats": args.repeats,
                      "wall_ms": ms, "cpu_ms": cpu_ms, "row_sum_ms": row_sum,
                      "stoi_estoi": {"before_ms": before, "after_ms": after, "front_end_ms": front,
                                     "speedup": before / after, "max_abs_diff": max(diffs)}}
    report.finish()
    return 0 if all(math.isfinite(v) for v in ms.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
