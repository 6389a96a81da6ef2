"""Memory and speed of `sepbench separate` on long files (a script, not a test).

    .venv/bin/python perf/separate_long.py [--minutes 1 10] [--rate 16000] [--keep DIR]

Generates mono PCM_16 files of each length at --rate, separates each in a FRESH process with the
cpu-profile Conv-TasNet (runs/conv_tasnet/cpu/best.pt if it exists, else the same architecture
from recipes/conv_tasnet/config.yaml with untrained weights: speed and memory do not depend on
the weights), and prints real-time factor and peak RSS. A fresh process per file matters: peak
RSS is a process-lifetime maximum, so one process would report the larger run for both.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cpu_checkpoint(folder: Path, runs: Path) -> tuple[Path, str]:
    trained = runs / "conv_tasnet" / "cpu" / "best.pt"
    if trained.is_file():
        return trained, f"trained run {trained}"
    import recipes
    from recipes.checkpoint import save_model
    from recipes.config import model_args, resolve

    rate = 8000  # the models' rate in this project's demo data; the input is resampled to it
    args = model_args("conv_tasnet", rate, resolve("conv_tasnet", "cpu")["model"])
    model = recipes.get("conv_tasnet").build(**args)
    path = folder / "conv_tasnet_cpu_untrained.pt"
    save_model(path, model, recipe="conv_tasnet", model_args=args, sample_rate=rate)
    n_params = sum(p.numel() for p in model.parameters())
    return path, f"untrained cpu profile ({n_params / 1e6:.2f} M params, {args}) at {rate} Hz"


def make_file(path: Path, minutes: float, rate: int) -> None:
    """Speech-like bursts over noise, written block by block so this process stays small too."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    block = rate * 10
    with sf.SoundFile(str(path), "w", samplerate=rate, channels=1, subtype="PCM_16") as out:
        for start in range(0, int(minutes * 60 * rate), block):
            t = (start + np.arange(block)) / rate
            voice = 0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
            out.write((voice + 0.05 * rng.standard_normal(block)).astype("float32"))


def child(ckpt: str, wav: str, out: str, chunk: float) -> None:
    """One separation; prints a JSON line with timings and RSS (ru_maxrss is KiB on Linux)."""
    from benchmark.separate_cmd import separate_files
    from recipes.checkpoint import load_model

    load_model(ckpt)  # imports and model build count in the baseline, not in the separation
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Current RSS sampled through the run: flat after the first chunks means bounded memory.
    samples, stop = [], threading.Event()

    def sample():
        page = os.sysconf("SC_PAGE_SIZE")
        while not stop.wait(0.5):
            samples.append(int(open("/proc/self/statm").read().split()[1]) * page / 2**20)
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    summary = separate_files(ckpt, [wav], out, chunk_seconds=chunk, overwrite=True)
    stop.set()
    thread.join()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    quarters = [round(samples[min(len(samples) - 1, len(samples) * q // 4)]) for q in (1, 2, 3, 4)] if samples else []
    print(json.dumps({"audio_s": summary["audio_seconds"], "wall_s": summary["wall_seconds"], "rtf": summary["rtf"],
                      "base_mib": base / 1024, "peak_mib": peak / 1024, "rss_quarters": quarters,
                      "failed": summary["failed"]}))


def machine() -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    return (f"{platform.node()} | {cpu} | {os.cpu_count()} cores | torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads | python {platform.python_version()} | "
            f"LD_PRELOAD={os.environ.get('LD_PRELOAD', '(none: glibc malloc)')} | "
            f"load average {os.getloadavg()[0]:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--rate", type=int, default=16000, help="input files' sample rate")
    parser.add_argument("--chunk-seconds", type=float, default=8.0)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs")
    parser.add_argument("--keep", type=Path, help="work folder to keep (default: a temp folder, removed)")
    parser.add_argument("--child", nargs=3, metavar=("CKPT", "WAV", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.chunk_seconds)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ckpt, what = cpu_checkpoint(work, args.runs)
        print(f"machine: {machine()}")
        print(f"model:   {what}")
        print(f"input:   mono PCM_16 at {args.rate} Hz; chunk {args.chunk_seconds} s")
        print(f"{'minutes':>8} {'audio s':>8} {'wall s':>8} {'RTF':>7} {'base RSS MiB':>13} {'peak RSS MiB':>13} {'growth MiB':>11}  RSS at 25/50/75/100 % of the run")
        for minutes in args.minutes:
            wav = work / f"long_{minutes:g}min.wav"
            make_file(wav, minutes, args.rate)
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, __file__, "--chunk-seconds", str(args.chunk_seconds),
                                   "--child", str(ckpt), str(wav), str(work / "out")],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
                return 1
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{minutes:>8g} {r['audio_s']:>8.0f} {r['wall_s']:>8.1f} {r['rtf']:>7.4f} {r['base_mib']:>13.0f} "
                  f"{r['peak_mib']:>13.0f} {r['peak_mib'] - r['base_mib']:>11.0f}  {r['rss_quarters']}"
                  f" (process total {time.perf_counter() - t0:.0f} s)")
            wav.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
