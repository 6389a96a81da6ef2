"""results.csv + test clips + checkpoints -> OUT/listen/index.html, the "audio examples" page:
for a few clips per SNR label, the mixture, the true stems and every model's voice and noise
estimates, each with a player, a spectrogram and the SI-SDR(i) the benchmark gave it; above them
the leaderboard's ranking (summary.csv) and its per-SNR plot, and a choice of the models shown.

Levels: every estimate is scaled to the integrated loudness (ITU-R BS.1770, pyloudnorm) of the
true stem it estimates, so switching players compares separation quality, not level. Clips
shorter than pyloudnorm's 0.4 s gating block cannot be measured that way and are matched by RMS.
Then ONE gain per row (<= 0 dB, the same for every file of the row, so level relations survive)
keeps all peaks below -0.2 dBFS in the 16-bit files; the row header states it.

The page is static: inline CSS and one inline script, the template's own, which the
Content-Security-Policy allows by its hash (and nothing else but files of its own folder); it only
keeps the model choice in the URL: hiding a model is CSS, so the page works without it.
Audio and image file names are built from indices, never from a model, run or clip name; those
are only displayed, as text the template (templates/listen.html) autoescapes. The folder is built
beside listen/ and swapped in at the end, so an interrupted build leaves the previous page. Same
inputs, same bytes; and when a hash of the inputs equals the one stored with the page, nothing is
rebuilt, so re-running ./run_all.sh costs no separations.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import jinja2
import markupsafe
import numpy as np
import soundfile as sf

from recipes.audio import read_audio
from recipes.checkpoint import load_model
from recipes.data import load_split
from recipes.errors import SepbenchError
from recipes.files import atomic_folder, file_hash

from ..data.loudness import match_loudness
from ..scoring import references
from ..scoring.aggregate import ALL, RANK_METRIC, bucket_label, read_results, read_summary, summarize
from ..scoring.metrics import METRICS
from ..separate.core import separate_clip
from . import render
from .render import PLOT_NAME

ORACLE = "oracle_irm"
PEAK = 10 ** (-0.2 / 20)
SPEC_RANGE_DB = 80.0
IMG_W, IMG_H, DPI = 210, 80, 100  # 210 px: the narrowest audio player whose buttons all show (Chromium)
STAMP = ".inputs.sha256"  # hidden: static hosts tend not to publish dotfiles, and it names no path
PLOT_FILE = "img/si_sdri_by_snr.png"
# The ranking's columns, as in LEADERBOARD.md's main table (those summary.csv holds).
_TEMPLATE_DIR = Path(__file__).parent / "templates"
_TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATE_DIR), autoescape=True,
                                keep_trailing_newline=True)


@dataclass(frozen=True)
class _Column:
    label: str  # displayed (as text: the template escapes it)
    key: tuple[str, str, str]  # (model, profile, kind) in results.csv
    checkpoint: Path | None  # None: the oracle, computed from the true stems
    hashes: tuple[str, ...] = ()  # checkpoint hashes results.csv scored (checked only when rebuilding)


def _mean(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else -math.inf


def _resolve(value: str, runs_dir) -> Path | None:
    """checkpoint column -> file: absolute, or relative to the runs folder's parent as evaluate
    writes it (runs/<recipe>/<profile>/best.pt); also tried inside runs_dir if it was renamed."""
    p = Path(value)
    candidates = [p] if p.is_absolute() or runs_dir is None else \
        [Path(runs_dir).parent / p, Path(runs_dir).joinpath(*p.parts[1:])]
    return next((c for c in candidates if c.is_file()), None)


def _first_seed(results):
    """Only each model's lowest seed (`run_all --seeds N`): the page plays one checkpoint per
    model, and the scores beside its players must be that checkpoint's."""
    if "seed" not in results.columns:
        return results
    seed = results["seed"].map(lambda s: int(s) if str(s).isdigit() else -1)
    lowest = seed.groupby([results["model"], results["profile"], results["kind"]]).transform("min")
    return results[seed == lowest].reset_index(drop=True)


def _columns(results, runs_dir, models) -> tuple[list[_Column], list[str]]:
    """Trained models in leaderboard order (mean voice SI-SDRi over all clips), then the oracle."""

    wanted = None if models is None else {models} if isinstance(models, str) else set(models)
    columns, notes, ranked = [], [], []
    trained = results[results["kind"] == "trained"]
    for (model, profile), group in trained.groupby(["model", "profile"], sort=True):
        label = f"{model}/{profile}"
        if wanted is None or model in wanted or label in wanted:
            ranked.append((-_mean(group[RANK_METRIC]), model, profile, group))
    for _, model, profile, group in sorted(ranked, key=lambda r: r[:3]):
        label, ckpt = f"{model}/{profile}", sorted(set(group["checkpoint"]) - {""})
        path = _resolve(ckpt[0], runs_dir) if ckpt else None
        if path is None:
            notes.append(f"{label}: left out, its checkpoint {ckpt[0] if ckpt else '(none)'} was not found")
            continue
        hashes = tuple(sorted(set(group.get("checkpoint_hash", [])) - {""}))
        columns.append(_Column(label, (model, profile, "trained"), path, hashes))
    if wanted is None or ORACLE in wanted:
        columns.append(_Column(ORACLE, (ORACLE, "-", "oracle"), None))
    return columns, notes


def _select(results, clips, per_bucket: int) -> list:
    """Per SNR label, the `per_bucket` clips around the median input voice SI-SDR (ties and even
    counts resolved by clip id, lower median first): typical clips, not the best or the worst."""
    scored = set(results["clip_id"])
    source = results if "input_voice_sisdr" in results else results[results["model"] == "mixture"]
    column = "input_voice_sisdr" if "input_voice_sisdr" in results else "voice_sisdr"
    level = {cid: float(v) for cid, v in zip(source["clip_id"], source[column])}
    chosen = []
    for label in sorted({c.snr_label for c in clips}):
        bucket = sorted((c for c in clips if c.snr_label == label and c.id in scored),
                        key=lambda c: (math.inf if math.isnan(level.get(c.id, math.nan)) else level[c.id], c.id))
        k = min(per_bucket, len(bucket))
        start = (len(bucket) - k) // 2
        chosen += bucket[start:start + k]
    return chosen


def _separator(column: _Column, sample_rate: int):
    if column.checkpoint is None:
        return lambda mix, sources: references.estimate(ORACLE, mix, sources, sample_rate)
    model, payload = load_model(column.checkpoint)
    if payload["sample_rate"] != sample_rate:
        raise SepbenchError(f"trained at {payload['sample_rate']} Hz, the test set is {sample_rate} Hz")

    return lambda mix, sources: separate_clip(model, mix, sample_rate)  # as evaluate scored it


def _spectrogram(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Log-magnitude (dB) [freq, frames], ~32 ms Hann frames with 75 % overlap."""
    n_fft = 2 ** max(6, round(math.log2(0.032 * sample_rate)))
    hop = n_fft // 4
    x = np.pad(np.asarray(x, np.float64), (n_fft // 2, n_fft // 2 + (-len(x)) % hop))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    return 20 * np.log10(np.abs(np.fft.rfft(frames, axis=-1)).T + 1e-10)


def _png(db: np.ndarray, vmax: float) -> bytes:
    # Late: matplotlib takes about a second to import and only the page's images need it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(IMG_W / DPI, IMG_H / DPI), dpi=DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=vmax - SPEC_RANGE_DB, vmax=vmax,
              interpolation="bilinear")
    ax.set_axis_off()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})  # no version stamp
    return buf.getvalue()


def _rows_of(results, key):
    """The results rows of one column; references and oracles match whatever their profile."""
    mask = (results["model"] == key[0]) & (results["kind"] == key[2])
    return results[mask & (results["profile"] == key[1])] if key[2] == "trained" else results[mask]


def _score(results, key, clip_id: str, source: str, improvement: bool = True) -> tuple[str, str]:
    """(SI-SDR text, improvement text or "") of one cell, both plain text."""
    rows = _rows_of(results, key)
    row = rows[rows["clip_id"] == clip_id]
    if row.empty or math.isnan(float(row[f"{source}_sisdr"].iloc[0])):
        return "SI-SDR –", ""
    # round() + 0.0: a value that rounds to zero is shown as 0.0, not -0.0.
    value, gain = (round(float(row[f"{source}_{m}"].iloc[0]), 1) + 0.0 for m in ("sisdr", "sisdri"))
    return f"SI-SDR {value:.1f} dB", ("" if math.isnan(gain) or not improvement else f"{gain:+.1f} dB")


def _row(i, clip, columns, separators, results, folder: Path) -> dict:
    """Write one row's audio and images into `folder`; return the row's data for the template:
    the mixture, the true stems, and per column its voice and noise estimates."""

    mix, sr = read_audio(clip.mix)
    sources = np.stack([read_audio(clip.voice)[0], read_audio(clip.noise)[0]])
    mix_score = _score(results, ("mixture", "-", "reference"), clip.id, "voice", improvement=False)
    cells = [("mix", mix, "mixture", "voice " + mix_score[0], ""), ("voice", sources[0], "true voice", "reference", ""),
             ("noise", sources[1], "true noise", "reference", "")]
    for j, column in enumerate(columns, 1):
        run = separators.get(column.label)
        est = None
        if run is not None:
            try:
                est = np.asarray(run(mix, sources), np.float64)
                est = est if np.all(np.isfinite(est)) else "the model's output is not finite"
            except Exception as exc:  # one clip's failure is a note in its cell, not a lost page
                est = f"separation failed: {type(exc).__name__}"
        for s, source in enumerate(("voice", "noise")):
            audio = est if not isinstance(est, np.ndarray) else match_loudness(est[s], sources[s], sr)
            cells.append((f"m{j:02d}_{source}", audio, f"{column.label} {source}",
                          *_score(results, column.key, clip.id, source)))
    signals = [c[1] for c in cells if isinstance(c[1], np.ndarray)]
    peak = max(float(np.max(np.abs(x))) if x.size else 0.0 for x in signals)
    gain = min(1.0, PEAK / peak) if peak > 0 else 1.0
    specs = {c[0]: _spectrogram(c[1] * gain, sr) for c in cells if isinstance(c[1], np.ndarray)}
    vmax = max(float(s.max()) for s in specs.values())  # one colour scale for the whole row
    out = []
    for slot, audio, title, score, improvement in cells:
        source = slot.rpartition("_")[2] if slot != "mix" else "mixture"
        if not isinstance(audio, np.ndarray):
            out.append({"source": source, "missing": audio or "not available"})
            continue
        name = f"{i:02d}_{slot}"
        sf.write(str(folder / "audio" / f"{name}.wav"), audio * gain, sr, subtype="PCM_16")
        (folder / "img" / f"{name}.png").write_bytes(_png(specs[slot], vmax))
        out.append({"source": source, "missing": "", "audio": f"audio/{name}.wav", "img": f"img/{name}.png",
                    "title": title, "score": score, "improvement": improvement})
    return {"clip_id": clip.id, "snr_label": bucket_label(clip.snr_label),
            "gain_db": f"{round(20 * math.log10(gain), 1) + 0.0:.1f}", "mix": out[0], "stems": out[1:3],
            "models": [out[k:k + 2] for k in range(3, len(out), 2)]}


class _Board:
    """The leaderboard's ranking for the top of the page: render's SummaryTable (so a cell reads
    as in LEADERBOARD.md), with the metric columns that summary.csv holds."""

    def __init__(self, summary):
        self.summary = render.SummaryTable(summary)
        present = {k[4] for k in self.summary.rows if k[3] == ALL}
        self.metrics = [m for m in map(self.summary.metric, render.TABLE_METRICS) if m in present]

    def cell(self, key, metric) -> str:
        return self.summary.cell(key, metric)

    def table(self) -> dict:
        """The ranking as plain text cells: trained models numbered, then oracles and references."""
        rows, rank = [], 0
        for key in self.summary.models:
            rank += key[2] == "trained"
            rows.append({"rank": str(rank) if key[2] == "trained" else "", "model": key[0], "profile": key[1],
                         "kind": key[2], "cells": [self.cell(key, m) for m in self.metrics]})
        heads = [f"{METRICS[m].label}{' (dB)' if METRICS[m].unit == 'dB' else ''}" for m in self.metrics]
        return {"heads": heads, "rows": rows}


def _summary(summary_csv: Path, results):
    """summary.csv as evaluate wrote it; summarised from results.csv when it is not there."""
    return read_summary(summary_csv) if summary_csv.is_file() else summarize(results)


def _csp_source(script) -> str:
    """The CSP source that allows exactly this inline script (the template's own, not data)."""
    text = str(script)
    if "</" in text:  # it would end the <script> element early
        raise ValueError("the page's script must not contain '</'")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return markupsafe.Markup(f"'sha256-{digest}'")  # base64 and quotes only: nothing to escape


_TEMPLATES.filters["csp_source"] = _csp_source


def _page(rows, columns, notes, n_clips, board: _Board, plot: bool) -> str:
    """The page's HTML: plain data into templates/listen.html, which escapes every value."""
    table = board.table()
    ranks = {(r["model"], r["profile"], r["kind"]): r["rank"] for r in table["rows"]}
    heads = [{"slot": f"m{j:02d}", "label": c.label, "model": c.key[0], "rank": ranks.get(c.key, ""),
              "score": board.cell(c.key, RANK_METRIC)} for j, c in enumerate(columns, 1)]
    return _TEMPLATES.get_template("listen.html").render(
        rows=rows, columns=heads, notes=notes, n_clips=n_clips, spec_range_db=f"{SPEC_RANGE_DB:.0f}",
        img_w=IMG_W, img_h=IMG_H, board=table, rank_label=METRICS[RANK_METRIC].label, plot=PLOT_FILE if plot else "")


def _sha(path: Path) -> str | None:
    return file_hash(path) if path.is_file() else None


def _stat(path: Path) -> list:
    st = path.stat()
    return [str(path.absolute()), st.st_size, st.st_mtime_ns]


def _inputs_key(results_csv: Path, summary_csv: Path, plot: Path, columns, chosen, n_clips: int) -> str:
    """A hash of everything the page is made of: the code and templates that write it, the score
    tables and plot (by content: evaluate may rewrite them unchanged), and the checkpoints and
    audio files it reads (by path, size and modification time, so no audio is read to find that
    nothing changed)."""
    own = [Path(__file__), *sorted(p for p in _TEMPLATE_DIR.iterdir() if p.is_file())]
    parts = {"code": [_sha(p) for p in own], "results": _sha(results_csv), "summary": _sha(summary_csv),
             "plot": _sha(plot), "n_clips": n_clips,
             "columns": [[c.label, list(c.key), _stat(c.checkpoint) if c.checkpoint else None] for c in columns],
             "clips": [[c.id, c.snr_label, *(_stat(Path(p)) for p in (c.mix, c.voice, c.noise))] for c in chosen]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def _stored_key(dest: Path) -> str | None:
    try:
        return (dest / STAMP).read_text(encoding="ascii").strip() if (dest / "index.html").is_file() else None
    except (OSError, UnicodeDecodeError):
        return None


def build_listening_page(results_csv, test_dir, out_dir, runs_dir=None, clips_per_bucket: int = 1,
                         models=None, log=print, force: bool = False) -> Path:
    """Write OUT/listen/ (index.html, audio/, img/) and return the path of index.html.

    `models`: names ("recipe" or "recipe/profile", and "oracle_irm") to show; default all trained
    models plus the oracle. Checkpoint paths in results.csv are resolved against `runs_dir`.
    summary.csv and the per-SNR plot are read beside results.csv. When the inputs are those the
    page was built from, nothing is written (`force`: rebuild anyway)."""

    results_csv = Path(results_csv)
    results = _first_seed(read_results(results_csv))
    clips = load_split(test_dir)
    columns, notes = _columns(results, runs_dir, models)
    chosen = _select(results, clips, clips_per_bucket)
    if not chosen:
        raise SepbenchError(f"{results_csv}: no scored clip of {test_dir} to put on the listening page")
    summary_csv, plot = results_csv.parent / "summary.csv", results_csv.parent / PLOT_NAME
    dest = Path(out_dir) / "listen"
    key = _inputs_key(results_csv, summary_csv, plot, columns, chosen, len(clips))
    if not force and _stored_key(dest) == key:
        for n in notes:
            log(f"listening page: {n}")
        log(f"listening page up to date: {dest / 'index.html'}")
        return dest / "index.html"
    for column in columns:
        if column.hashes and file_hash(column.checkpoint) not in column.hashes:
            notes.append(f"{column.label}: the checkpoint changed since it was scored; its SI-SDR values are stale")
    board = _Board(_summary(summary_csv, results))
    sample_rate = read_audio(chosen[0].mix)[1]
    separators = {}
    for column in columns:
        try:
            separators[column.label] = _separator(column, sample_rate)
        except SepbenchError as exc:
            notes.append(f"{column.label}: not separated ({exc})")
    for n in notes:
        log(f"listening page: {n}")
    with atomic_folder(dest) as tmp:
        (tmp / "audio").mkdir()
        (tmp / "img").mkdir()
        rows = [_row(i, clip, columns, separators, results, tmp) for i, clip in enumerate(chosen, 1)]
        has_plot = plot.is_file()
        if has_plot:  # a copy, not a link: the folder must stand alone on a web host
            (tmp / PLOT_FILE).write_bytes(plot.read_bytes())
        (tmp / "index.html").write_text(_page(rows, columns, notes, len(clips), board, has_plot), encoding="utf-8")
        (tmp / STAMP).write_text(key + "\n", encoding="ascii")
    return dest / "index.html"
