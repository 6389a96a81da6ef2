"""Remake docs/listen.png, the README's picture of the listening page with 12 models:

    .venv/bin/python docs/listen_screenshot.py [--out docs/listen.png] [--keep DIR]

Synthetic demo clips and 12 *untrained* tiny lstm_mask checkpoints (seeds 1-12, named
untrained_01..12 so nobody reads their scores as results), scored here with the benchmark's own
SI-SDR, summarised and plotted as evaluate does, built into a page and shot in Debian's headless
chromium at 1280 px, then reduced to a palette PNG (the README's image should stay small).
A layout picture, not a benchmark: it needs no training and runs in well under a minute.
"""
from __future__ import annotations

import argparse
import base64
import io
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

import recipes
from benchmark.data.demo import generate
from benchmark.report import listen, render
from benchmark.scoring import aggregate, references
from benchmark.scoring.examples import Shown, oracle
from benchmark.scoring.metrics import si_sdr
from benchmark.scoring.write_examples import write_examples
from benchmark.separate.core import separate
from recipes.audio import read_audio
from recipes.checkpoint import load_model, save_model
from recipes.files import atomic_path, file_hash
from recipes.folder import load_split

SR = 8000
N_MODELS = 12
ARGS = {"sample_rate": SR, "win_ms": 32.0, "hop_ms": 8.0, "hidden": 8, "n_layers": 1, "dropout": 0.0}
MAX_BYTES = 200_000


def _scores(model, profile, kind, clip, est, sources, mix, ckpt="", digest="") -> dict:
    row = {"model": model, "profile": profile, "kind": kind, "clip_id": clip.id, "snr_label": clip.snr_label,
           "checkpoint": ckpt, "checkpoint_hash": digest, "failure_reason": ""}
    for s, name in enumerate(("voice", "noise")):
        before = si_sdr(mix, sources[s])
        row[f"input_{name}_sisdr"] = before
        row[f"{name}_sisdr"] = si_sdr(est[s], sources[s])
        row[f"{name}_sisdri"] = row[f"{name}_sisdr"] - before
    return row


def make_leaderboard(root: Path) -> tuple[Path, Path, Path]:
    """Data, checkpoints, and a results.csv + summary.csv + plot + kept estimates as evaluate
    writes them."""
    data = generate(root / "data", n_train=1, n_test=8, seconds=2.0, sample_rate=SR, snrs=[-5, 0, 5, 10], seed=0)
    clips, runs, rows = load_split(data / "test"), root / "runs", []
    for seed in range(1, N_MODELS + 1):
        torch.manual_seed(seed)
        path = runs / f"untrained_{seed:02d}" / "smoke" / "best.pt"
        save_model(path, recipes.get("lstm_mask").build(**ARGS), "lstm_mask", ARGS, SR)
    models = {p.parent.parent.name: p for p in sorted(runs.glob("*/smoke/best.pt"))}
    loaded = {name: load_model(p)[0] for name, p in models.items()}
    digests = {name: file_hash(p) for name, p in models.items()}
    for clip in clips:
        mix = read_audio(clip.mix)[0]
        sources = np.stack([read_audio(clip.voice)[0], read_audio(clip.noise)[0]])
        rows.append(_scores("mixture", "-", "reference", clip, np.stack([mix, mix]), sources, mix))
        rows.append(_scores("oracle_irm", "-", "oracle", clip, references.estimate("oracle_irm", mix, sources, SR),
                            sources, mix))
        for name, model in loaded.items():
            rows.append(_scores(name, "smoke", "trained", clip, separate(model, mix), sources, mix,
                                f"runs/{name}/smoke/best.pt", digests[name]))
    board = root / "leaderboard"
    board.mkdir()
    aggregate.write_csv(aggregate.sort_results(pd.DataFrame(rows)), board / "results.csv")
    summary = aggregate.summarize(aggregate.read_results(board / "results.csv"))
    aggregate.write_csv(summary, board / "summary.csv")
    render.plot(summary, board / render.PLOT_NAME)
    shown = [Shown(name, "smoke", "trained", str(p), digests[name]) for name, p in models.items()]
    write_examples(board, aggregate.read_results(board / "results.csv"), clips, [*shown, oracle()], 1, "cpu", {})
    return data / "test", runs, board


def screenshot(page: Path) -> bytes:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    with tempfile.TemporaryDirectory() as profile:
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--mute-audio", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", f"--user-data-dir={profile}"):
            options.add_argument(arg)
        # An explicit driver path: Selenium Manager never runs, so nothing is downloaded.
        driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
        try:
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                   {"width": 1280, "height": 820, "deviceScaleFactor": 1, "mobile": False})
            driver.get(page.as_uri())
            driver.set_script_timeout(60)
            driver.execute_async_script("""const done = arguments[0];
              const ready = () => [...document.querySelectorAll('audio')].every(a => a.readyState >= 1 || a.error)
                && [...document.images].every(i => i.complete);
              (function wait() { ready() ? done() : setTimeout(wait, 100); })();""")
            driver.execute_script("document.getElementById('pick').scrollIntoView()")
            return base64.b64decode(driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})["data"])
        finally:
            driver.quit()


def small_png(png: bytes) -> bytes:
    """A palette PNG: the spectrograms' noise makes a full-colour one several times larger."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    for colors in (128, 64, 32):
        buffer = io.BytesIO()
        image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= MAX_BYTES:
            break
    return buffer.getvalue()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).with_name("listen.png")))
    parser.add_argument("--keep", help="build in this folder and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        test_dir, _, board = make_leaderboard(root)
        page = listen.build_listening_page(board / "results.csv", test_dir, board)
        png = small_png(screenshot(page))
    with atomic_path(args.out) as tmp:
        Path(tmp).write_bytes(png)
    print(f"{args.out}: {len(png)} bytes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
