"""Shared helpers of the benchmark scripts: the machine they ran on, interleaved timing, tables
and the optional JSON of figures. Scripts here print figures; they are not timed tests."""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python perf/x.py` from anywhere
    sys.path.insert(0, str(ROOT))


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=doc)
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs, figures mean little")
    p.add_argument("--out", type=Path, help="also write the figures as JSON here")
    return p


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    import torch

    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "host": platform.node(),
            "cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "git_commit": commit,
            # The allocator changes long-input CPU speed several-fold (jemalloc: 4x on 10 s Conv-TasNet).
            "allocator": os.environ.get("LD_PRELOAD") or "glibc malloc (no LD_PRELOAD)",
            "malloc_conf": os.environ.get("MALLOC_CONF", ""),
            # Under load, OpenMP threads that spin while waiting made CPU steps several times
            # slower than one thread (see RESULTS.md): a figure needs these beside it.
            "omp_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS") if k in os.environ},
            "load_start": _load()}


class Report:
    """Machine line at the start, load average again at the end (the machine is shared, so a
    figure means little without the load it was measured under), figures to JSON."""

    def __init__(self, name: str, args):
        self.name, self.args, self.figures = name, args, {}
        self.machine = machine()
        m = self.machine
        print(f"# {name}  ({m['date']}, git {m['git_commit']}{', QUICK: tiny sizes' if args.quick else ''})")
        print(f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
              f"python {m['python']}, allocator {m['allocator']}, OpenMP env {m['omp_env'] or '(default)'}")
        print(f"command: {' '.join([Path(sys.executable).name] + sys.argv)}")
        print(f"load average (1/5/15 min) at start: {m['load_start']}", flush=True)

    def finish(self) -> dict:
        m = self.machine
        m["load_end"] = _load()
        # Judged at the start: the end's figure also counts this benchmark's own processes.
        busy = m["load_start"][0] > 0.5 * (m["cores"] or 1)
        m["load_high"] = busy
        print(f"load average (1/5/15 min) at end: {m['load_end']} (includes this benchmark)"
              + ("  -> HIGH at start: other jobs shared these cores; absolute times are inflated, "
                 "ratios of interleaved runs less so" if busy else ""))
        result = {"benchmark": self.name, "quick": bool(self.args.quick), "machine": m, **self.figures}
        if self.args.out:
            self.args.out.parent.mkdir(parents=True, exist_ok=True)
            self.args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
            print(f"wrote {self.args.out}")
        return result


def interleave(sides: dict[str, Callable[[], object]], repeats: int) -> dict[str, list]:
    """Run every side once per repeat, alternating the order (A B, B A, ...), so slow drift of a
    shared machine's load falls on both sides alike instead of on whichever ran last."""
    results: dict[str, list] = {name: [] for name in sides}
    names = list(sides)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            results[name].append(sides[name]())
    return results


def median(xs) -> float:
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def table(headers: list[str], rows: list[list]) -> str:
    """A Markdown table, so a printed result can go into RESULTS.md as it is."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def demo_data(folder: Path, n_train: int, n_test: int, seconds: float, sample_rate: int = 8000) -> Path:
    """sepbench's own synthetic data set (speech-like voices, varied noises)."""
    from benchmark.data.demo import generate

    with contextlib.redirect_stdout(io.StringIO()):
        return generate(folder, n_train=n_train, n_test=n_test, seconds=seconds, sample_rate=sample_rate,
                        snrs=[-3, 0, 3], seed=0)
