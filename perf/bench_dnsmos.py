"""What DNSMOS costs per clip, and where the time goes: sepbench's scoring (benchmark/scoring/dnsmos.py)
against speechmos.dnsmos.run on the same clips, by clip length.

    .venv/bin/python perf/bench_dnsmos.py [--seconds 4,10,30] [--sr 8000] [--repeats 3] [--quick] [--out F.json]

The clips are tests/fixtures/speech_8k.flac (real speech) tiled to each length, in white noise at
0 dB, at --sr and resampled to 16 kHz as evaluation does. Parts, each timed alone: the resampling,
the P.835 network (SIG/BAK/OVRL) on every 9.01 s window, the P.808 features (a mel spectrogram),
and the P.808 network. Everything on one onnxruntime thread, as a scoring worker runs it. The first
call of a process (two ONNX sessions made) is timed apart: evaluation pays it once per worker.
Both sides' scores are compared too.
"""
from __future__ import annotations

import time

import common

FIXTURE = common.ROOT / "tests" / "fixtures" / "speech_8k.flac"


def _clip(seconds: float, sr: int):
    import numpy as np
    import soundfile as sf

    from recipes.audio import resample

    speech, rate = sf.read(FIXTURE, dtype="float64")
    voice = np.resize(resample(speech, rate, sr), int(seconds * sr))
    noise = np.random.default_rng(0).standard_normal(len(voice)) * np.sqrt(np.mean(voice ** 2))
    mix = voice + noise
    return (0.9 * mix / np.max(np.abs(mix))).astype(np.float32)


def _ms(fn, repeats: int) -> tuple[float, float]:
    """Median wall and CPU ms (CPU counts every thread: speechmos's sessions use all cores)."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return 1e3 * common.median(wall), 1e3 * common.median(cpu)


def main(argv=None) -> int:
    p = common.parser(__doc__)
    p.add_argument("--seconds", default="4,10,30", help="clip lengths, comma-separated")
    p.add_argument("--sr", type=int, default=8000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    lengths = [float(s) for s in args.seconds.split(",")]
    if args.quick:
        lengths, args.repeats = [2.0], 1
    report = common.Report("bench_dnsmos", args)
    import numpy as np

    from benchmark.scoring import dnsmos
    from recipes.audio import resample

    if dnsmos.available() is not None:
        print(dnsmos.available())
        return 1
    try:
        from speechmos import dnsmos as theirs
    except ImportError as exc:  # the comparison needs librosa and requests (the test extra)
        theirs, why = None, str(exc)

    first = _clip(lengths[0], args.sr)
    t = time.perf_counter()
    dnsmos.scores(first, args.sr)
    first_ms = 1e3 * (time.perf_counter() - t)
    rows, figures = [], {}
    for seconds in lengths:
        clip = _clip(seconds, args.sr)
        at16 = resample(clip, args.sr, dnsmos.SR).astype(np.float32)
        segments = dnsmos.windows(at16)
        p835, p808 = dnsmos._session(dnsmos.P835_MODEL), dnsmos._session(dnsmos.P808_MODEL)
        feats = dnsmos.p808_features(segments[:, :-dnsmos.HOP])
        parts = {
            "resample": _ms(lambda: resample(clip, args.sr, dnsmos.SR), args.repeats),
            "P.835 network, windows batched": _ms(lambda: p835.run(None, {"input_1": segments.astype(np.float32)}),
                                                  args.repeats),
            "P.835 network, one window per run": _ms(lambda: [p835.run(None, {"input_1": w[None].astype(np.float32)})
                                                              for w in segments], args.repeats),
            "P.808 features": _ms(lambda: dnsmos.p808_features(segments[:, :-dnsmos.HOP]), args.repeats),
            "P.808 network": _ms(lambda: p808.run(None, {"input_1": feats}), args.repeats),
            "sepbench scores()": _ms(lambda: dnsmos.scores(clip, args.sr), args.repeats),
        }
        ours = dnsmos.scores(at16, dnsmos.SR)
        diff = float("nan")
        if theirs is not None:
            theirs.run(at16, dnsmos.SR)  # its session is made on the first call
            parts["speechmos run()"] = _ms(lambda: theirs.run(at16, dnsmos.SR), args.repeats)
            ref = theirs.run(at16, dnsmos.SR)
            diff = max(abs(ours[k] - float(ref[r])) for k, r in
                       (("dnsmos_sig", "sig_mos"), ("dnsmos_bak", "bak_mos"), ("dnsmos_ovrl", "ovrl_mos"),
                        ("dnsmos_p808", "p808_mos")))
        figures[f"{seconds:g}"] = {"windows": len(segments), "ms": {k: w for k, (w, _) in parts.items()},
                                   "cpu_ms": {k: c for k, (_, c) in parts.items()}, "max_abs_diff": diff,
                                   "scores": ours}
        for name, (wall, cpu) in parts.items():
            rows.append([f"{seconds:g} s", len(segments), name, wall, cpu, cpu / seconds])
    print(f"\nreal speech in white noise at 0 dB, {args.sr} Hz -> 16 kHz, one onnxruntime thread, "
          f"median of {args.repeats}\n")
    print(common.table(["clip", "9.01 s windows", "part", "wall ms per clip", "CPU ms per clip", "CPU ms per s of audio"], rows))
    print(f"\nfirst call of a process (two sessions made): {first_ms:.0f} ms")
    if theirs is None:
        print(f"speechmos not compared: {why}")
    else:
        print("largest |sepbench - speechmos| over SIG/BAK/OVRL/P.808: "
              f"{max(f['max_abs_diff'] for f in figures.values()):.2g}")
    report.figures = {"sample_rate": args.sr, "repeats": args.repeats, "first_call_ms": first_ms, "lengths": figures}
    report.finish()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
