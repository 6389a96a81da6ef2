"""Inference speed (real-time factor) and peak memory of every registered recipe's cpu profile.

    .venv/bin/python perf/bench_inference.py [--recipes NAME ...] [--short 10] [--long 600]
        [--repeats 3] [--timeout 600] [--quick] [--out FILE.json]

For each recipe in recipes.names() (recipes added later are picked up): the cpu-profile model
with UNTRAINED weights (speed and memory do not depend on the weights) saved as a sepbench
checkpoint, then separated through benchmark.separate.core.separate: a --short input whole, as the
benchmark does, and a --long input in chunks with `sepbench separate`'s defaults (chunk, context,
fade). Mono white noise at the model's rate (8 kHz), batch 1, CPU, float32.
Every measurement runs in its own fresh process (forked from a server that has only imported the
libraries), because peak RSS is a per-process maximum: one process would report the largest
run's peak for all. Inside it: load the checkpoint, separate 1 s once (first-call costs stay out
of the timing), read VmRSS (base), time the separation(s), read VmHWM (peak). Growth = peak - base:
activations plus input and output arrays (10 min at 8 kHz: 18 MiB in, 37 MiB out).
"""
from __future__ import annotations

import inspect
import multiprocessing
import tempfile
import time
from pathlib import Path

import common


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1]) / 1024  # kB


def _child(conn, ckpt: str, seconds: float, chunking: dict | None, repeats: int) -> None:
    try:
        import numpy as np

        from benchmark.separate.core import separate
        from recipes.checkpoint import load_model

        model, payload = load_model(ckpt)
        sr = payload["sample_rate"]
        rng = np.random.default_rng(0)
        separate(model, (0.1 * rng.standard_normal(sr)).astype(np.float32))
        base = _status_mib("VmRSS")
        x = (0.1 * rng.standard_normal(int(round(seconds * sr)))).astype(np.float32)
        kw = {}
        if chunking:
            chunk = round(chunking["chunk_s"] * sr)
            kw = dict(chunk=chunk, context=round(chunking["context_s"] * sr), fade=min(round(chunking["fade_s"] * sr), chunk // 2))
        walls = []
        for _ in range(repeats):
            t = time.perf_counter()
            est = separate(model, x, **kw)
            walls.append(time.perf_counter() - t)
            assert est.shape == (2, len(x)), est.shape
        conn.send({"base_mib": base, "peak_mib": _status_mib("VmHWM"), "walls_s": walls})
    except BaseException as exc:  # reported as the row's error; the other recipes go on
        conn.send({"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"})


def measure(ctx, ckpt: Path, seconds: float, chunking: dict | None, repeats: int, timeout: float) -> dict:
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, str(ckpt), seconds, chunking, repeats))
    proc.start()
    send.close()
    result = recv.recv() if recv.poll(timeout) else {"error": f"no result within {timeout:g} s"}
    if proc.is_alive():
        proc.terminate()
    proc.join()
    if "walls_s" in result:
        result["rtf"] = common.median(result["walls_s"]) / seconds
        result["growth_mib"] = result["peak_mib"] - result["base_mib"]
    return result


def main(argv=None) -> int:
    from benchmark.separate_cmd import CONTEXT_SECONDS, FADE_SECONDS, separate_files

    p = common.parser(__doc__)
    p.add_argument("--recipes", nargs="+", help="default: every registered recipe")
    p.add_argument("--short", type=float, default=10.0, help="seconds, separated whole")
    p.add_argument("--long", type=float, default=600.0, help="seconds, separated in chunks")
    p.add_argument("--chunk-seconds", type=float, default=inspect.signature(separate_files).parameters["chunk_seconds"].default,
                   help="default: sepbench separate's")
    p.add_argument("--repeats", type=int, default=3, help="timed runs of the short input (the long one runs once)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per measurement before it is given up")
    p.add_argument("--profile", default="cpu")
    args = p.parse_args(argv)
    if args.quick:
        args.short, args.long, args.chunk_seconds, args.repeats, args.profile = 0.5, 3.0, 1.0, 1, "smoke"
    report = common.Report("bench_inference", args)
    import recipes
    from recipes import config
    from recipes.checkpoint import save_model

    chunking = {"chunk_s": args.chunk_seconds, "context_s": CONTEXT_SECONDS, "fade_s": FADE_SECONDS}
    names = args.recipes or recipes.names()
    ctx = multiprocessing.get_context("forkserver")
    # The server imports these once; each measurement is a fork of it that has run nothing yet.
    # The function's own module is preloaded too, so the children can find _child.
    ctx.set_forkserver_preload(["torch", "recipes", "benchmark.separate.core", __name__])
    rows, figures = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            entry = {}
            try:
                args_ = config.model_args(name, 8000, config.resolve(name, args.profile)["model"])
                model = recipes.get(name).build(**args_)
                entry["n_params"] = sum(p.numel() for p in model.parameters())
                ckpt = Path(tmp) / f"{name}.pt"
                save_model(ckpt, model, recipe=name, model_args=args_, sample_rate=8000)
                entry["short"] = measure(ctx, ckpt, args.short, None, args.repeats, args.timeout)
                entry["long"] = measure(ctx, ckpt, args.long, chunking, 1, args.timeout)
            except Exception as exc:
                entry["error"] = f"{type(exc).__name__}: {exc}"
            figures[name] = entry
            cells = []
            for key in ("short", "long"):
                r = entry.get(key, {"error": entry.get("error", "?")})
                cells += ([r["rtf"], r["peak_mib"], r["growth_mib"]] if "rtf" in r else [f"failed: {r['error']}", "", ""])
            rows.append([name, f"{entry.get('n_params', 0) / 1e6:.2f} M", *cells])
            print(f"{name}: {cells}", flush=True)
    print()
    print(f"Inference, {args.profile} profile, untrained weights, 8 kHz mono, batch 1, CPU; {args.short:g} s whole "
          f"(median of {args.repeats}); {args.long:g} s in chunks of {args.chunk_seconds:g} s with {CONTEXT_SECONDS:g} s "
          f"context, {FADE_SECONDS:g} s fade (once); RSS of a fresh process per measurement")
    print(common.table(["recipe", "params", f"RTF {args.short:g} s", "peak RSS MiB", "growth MiB",
                        f"RTF {args.long:g} s chunked", "peak RSS MiB", "growth MiB"], rows))
    report.figures = {"profile": args.profile, "short_s": args.short, "long_s": args.long, "chunking": chunking,
                      "weights": "untrained", "recipes": figures}
    report.finish()
    failed = [n for n, e in figures.items() if "error" in e or any("error" in e.get(k, {}) for k in ("short", "long"))]
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
