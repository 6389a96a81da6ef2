"""results.csv + the estimates evaluate kept + test clips -> OUT/listen/index.html, the "audio
examples" page: for a few clips per SNR label, the mixture, the true stems and every model's voice
and noise estimates, each with a player, a spectrogram and the SI-SDR(i) the benchmark gave it;
above them the leaderboard's ranking (summary.csv) and its per-SNR plot, and a choice of the
models shown. No model is loaded here: `sepbench evaluate` leaves the estimates of the chosen
clips in OUT/cache/listen/ (scoring/examples.py), and this module only reads files.

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
inputs, same bytes; and while its inputs and files are those of the last build (a Stamp),
nothing is rebuilt.
"""
from __future__ import annotations

import base64
import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

import jinja2
import markupsafe
import numpy as np

from recipes.audio import read_audio
from recipes.errors import SepbenchError
from recipes.files import Stamp, atomic_folder
from recipes.folder import content_hash, load_split, write_audio
from recipes.lock import exclusive_lock

from ..data.loudness import match_loudness
from ..scoring import examples
from ..scoring.aggregate import ALL, RANK_METRIC, bucket_label, read_results, read_summary, summarize
from ..scoring.metrics import DNSMOS_COLUMNS, DNSMOS_PARTS, METRICS
from . import render
from .render import PLOT_NAME

PEAK = 10 ** (-0.2 / 20)
SPEC_RANGE_DB = 80.0
IMG_W, IMG_H, DPI = 210, 80, 100  # 210 px: the narrowest audio player whose buttons all show (Chromium)
STAMP = ".stamp.json"  # hidden: static hosts tend not to publish dotfiles, and it names no path
PLOT_FILE = "img/si_sdri_by_snr.png"
_TEMPLATE_DIR = Path(__file__).parent / "templates"
_TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(_TEMPLATE_DIR), autoescape=True,
                                keep_trailing_newline=True)


@dataclass(frozen=True)
class _Column:
    label: str  # displayed (as text: the template escapes it)
    key: tuple[str, str, str]  # (model, profile, kind) in results.csv
    entry: dict  # its entry in the estimates index (folder, failed clips)

    @property
    def note(self) -> str:
        """A pretrained row's out-of-domain note, shown under its name."""
        return str(self.entry.get("note", ""))


def _mean(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else -math.inf


def _columns(results, index: dict, where: Path, models) -> tuple[list[_Column], list[str]]:
    """The models of the estimates index, trained ones in leaderboard order (mean voice SI-SDRi
    over all clips), then the pretrained enhancers in the same order, then the oracle; `models`
    picks some by name (recipe, recipe/profile, an enhancer or oracle_irm), and a name that picks
    nothing is an error, not a page without that column."""
    wanted = None if models is None else [models] if isinstance(models, str) else list(models)
    known = {n for e in index["models"] for n in (e["model"], e["label"])}
    unknown = [m for m in wanted or [] if m not in known]
    if unknown:
        raise SepbenchError(f"--models {','.join(unknown)}: not among the models whose estimates {where} holds "
                            f"({', '.join(e['label'] for e in index['models'])})")
    notes, ranked = [], []
    for entry in index["models"]:
        if wanted is not None and entry["model"] not in wanted and entry["label"] not in wanted:
            continue
        key = (entry["model"], entry["profile"], entry["kind"])
        rows = _rows_of(results, key)
        if rows.empty and entry["kind"] in ("trained", "pretrained"):  # the oracle plays from the stems
            raise SepbenchError(f"{where}: holds estimates of {entry['label']}, which results.csv does not score; "
                                "re-run `sepbench evaluate`")
        if entry["kind"] == "trained" and entry["checkpoint_hash"] not in set(rows["checkpoint_hash"]):
            raise SepbenchError(f"{where}: the estimates of {entry['label']} come from another checkpoint than "
                                "results.csv scores; re-run `sepbench evaluate`")
        tier = {"trained": 0, "pretrained": 1}.get(entry["kind"], 2)
        order = (tier, 0.0 if tier == 2 else -_mean(rows[RANK_METRIC]))
        ranked.append((order, entry["label"], _Column(entry["label"], key, entry)))
    shown = {(e["model"], e["profile"]) for e in index["models"]}
    trained = results[results["kind"] == "trained"]
    for model, profile in sorted(set(zip(trained["model"], trained["profile"])) - shown):
        if wanted is None or model in wanted or f"{model}/{profile}" in wanted:
            notes.append(f"{model}/{profile}: left out, no estimates of it in {where} (re-run `sepbench evaluate`)")
    return [c for _, _, c in sorted(ranked, key=lambda r: r[:2])], notes


def _clips(results, index: dict, per_bucket: int | None, where: Path) -> list[str]:
    """The clip ids shown: all that evaluate kept, or the `per_bucket` around each label's median
    (a subset of them, as the choice is centred on the median)."""
    if per_bucket is None or per_bucket == index["per_bucket"]:
        return list(index["clips"])
    if per_bucket > index["per_bucket"]:
        raise SepbenchError(f"--clips-per-bucket {per_bucket}: {where} holds estimates of {index['per_bucket']} "
                            f"clips per SNR label; re-run `sepbench evaluate --listen-clips {per_bucket}`")
    chosen = examples.listen_clips(results, per_bucket)
    missing = sorted(set(chosen) - set(index["clips"]))
    if missing:
        raise SepbenchError(f"{where}: no estimates of clip {missing[0]}; re-run `sepbench evaluate`")
    return chosen


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


def _score(results, key, clip_id: str, source: str, improvement: bool = True) -> tuple[str, str, str]:
    """(SI-SDR text, improvement text or "", DNSMOS text or "") of one cell, all plain text."""
    rows = _rows_of(results, key)
    row = rows[rows["clip_id"] == clip_id]
    extra = dnsmos_text({p: row[c].iloc[0] for p, c in zip(DNSMOS_PARTS, DNSMOS_COLUMNS)}) if (
        source == "voice" and not row.empty and DNSMOS_COLUMNS[-1] in row.columns) else ""
    if row.empty or math.isnan(float(row[f"{source}_sisdr"].iloc[0])):
        return "SI-SDR –", "", extra
    # round() + 0.0: a value that rounds to zero is shown as 0.0, not -0.0.
    value, gain = (round(float(row[f"{source}_{m}"].iloc[0]), 1) + 0.0 for m in ("sisdr", "sisdri"))
    return f"SI-SDR {value:.1f} dB", ("" if math.isnan(gain) or not improvement else f"{gain:+.1f} dB"), extra


def dnsmos_text(scores: dict) -> str:
    """'DNSMOS OVRL 2.91 (SIG 3.20, BAK 3.71)' from {sig, bak, ovrl}; '–' for a NaN score."""
    def f(part):
        v = float(scores.get(part, math.nan))
        return "–" if math.isnan(v) else f"{v:.2f}"
    return f"DNSMOS OVRL {f('ovrl')} (SIG {f('sig')}, BAK {f('bak')})"


def _estimate(where: Path, column: _Column, clip, n: int):
    """The column's estimates [2, T] of a clip as evaluate kept them, or the reason it has none."""
    if clip.id in column.entry["failed"]:
        return str(column.entry["failed"][clip.id])
    est = []
    for source in examples.SOURCES:
        path = examples.estimate_path(where, column.entry, clip.id, source)
        try:
            x, _ = read_audio(path)
        except SepbenchError as exc:
            raise SepbenchError(f"{exc}; re-run `sepbench evaluate`") from None
        if len(x) != n:
            raise SepbenchError(f"{path}: {len(x)} samples, the test clip has {n}: the estimates were not made "
                                "from this test set; re-run `sepbench evaluate`")
        est.append(x)
    return np.stack(est).astype(np.float64)


def _row(i, clip, columns, where: Path, results, folder: Path) -> dict:
    """Write one row's audio and images into `folder`; return the row's data for the template:
    the mixture, the true stems, and per column its voice and noise estimates."""

    mix, sr = read_audio(clip.mix)
    sources = np.stack([read_audio(clip.voice)[0], read_audio(clip.noise)[0]])
    mix_score = _score(results, ("mixture", "-", "reference"), clip.id, "voice", improvement=False)
    cells = [("mix", mix, "mixture", "voice " + mix_score[0], "", mix_score[2]),
             ("voice", sources[0], "true voice", "reference", "", ""),
             ("noise", sources[1], "true noise", "reference", "", "")]
    for j, column in enumerate(columns, 1):
        est = _estimate(where, column, clip, len(mix))
        for s, source in enumerate(examples.SOURCES):
            audio = est if not isinstance(est, np.ndarray) else match_loudness(est[s], sources[s], sr)
            cells.append((f"m{j:02d}_{source}", audio, f"{column.label} {source}",
                          *_score(results, column.key, clip.id, source)))
    out, gain = write_cells(i, cells, sr, folder)
    return {"clip_id": clip.id, "snr_label": bucket_label(clip.snr_label),
            "gain_db": f"{round(20 * math.log10(gain), 1) + 0.0:.1f}", "mix": out[0], "stems": out[1:3],
            "models": [out[k:k + 2] for k in range(3, len(out), 2)]}


def write_cells(i: int, cells, sr: int, folder: Path) -> tuple[list[dict], float]:
    """Write one page row's audio and spectrograms into `folder` (audio/, img/): cells are (slot,
    audio [T] or the reason it has none, title, score, improvement, extra), all at rate `sr`.
    ONE gain (<= 1) for the whole row keeps every peak below PEAK; one colour scale for its
    spectrograms. Returns the cells' template data and that gain."""
    signals = [c[1] for c in cells if isinstance(c[1], np.ndarray)]
    peak = max(float(np.max(np.abs(x))) if x.size else 0.0 for x in signals)
    gain = min(1.0, PEAK / peak) if peak > 0 else 1.0
    specs = {c[0]: _spectrogram(c[1] * gain, sr) for c in cells if isinstance(c[1], np.ndarray)}
    vmax = max(float(s.max()) for s in specs.values())  # one colour scale for the whole row
    out = []
    for slot, audio, title, score, improvement, extra in cells:
        source = slot.rpartition("_")[2] if slot != "mix" else "mixture"
        if not isinstance(audio, np.ndarray):
            out.append({"source": source, "missing": audio or "not available"})
            continue
        name = f"{i:02d}_{slot}"
        # Through memory: libsndfile given a path says only "System error" on a full disk.
        write_audio(folder / "audio" / f"{name}.wav", audio * gain, sr, subtype="PCM_16")
        (folder / "img" / f"{name}.png").write_bytes(_png(specs[slot], vmax))
        out.append({"source": source, "missing": "", "audio": f"audio/{name}.wav", "img": f"img/{name}.png",
                    "title": title, "score": score, "improvement": improvement, "extra": extra})
    return out, gain


class _Board:
    """The leaderboard's ranking for the top of the page: render's SummaryTable (so a cell reads
    as in LEADERBOARD.md), with the metric columns that summary.csv holds."""

    def __init__(self, summary):
        self.summary = render.SummaryTable(summary)
        present = {k[4] for k in self.summary.rows if k[3] == ALL}
        self.metrics = [m for m in map(self.summary.metric, self.summary.table_metrics) if m in present]

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


def _page(rows, columns, notes, n_clips, board: _Board, plot: bool, index: dict) -> str:
    """The page's HTML: plain data into templates/listen.html, which escapes every value."""
    table = board.table()
    ranks = {(r["model"], r["profile"], r["kind"]): r["rank"] for r in table["rows"]}
    heads = [{"slot": f"m{j:02d}", "label": c.label, "model": c.key[0], "rank": ranks.get(c.key, ""),
              "score": board.cell(c.key, RANK_METRIC), "note": c.note} for j, c in enumerate(columns, 1)]
    # Every pretrained row's note, shown or not: the ranking on top lists them all.
    kinds = {(r["model"], r["kind"]) for r in table["rows"]}
    domain = [{"model": e["model"], "note": e["note"]} for e in index["models"]
              if e.get("note") and (e["model"], e["kind"]) in kinds]
    dnsmos = render.dnsmos_note(int(index["sample_rate"])) if board.summary.dnsmos else ""
    return page_html(rows=rows, columns=heads, notes=notes, board=table, plot=PLOT_FILE if plot else "",
                     domain=domain, dnsmos=dnsmos, n_clips=n_clips, stems=True, unit=" dB")


def page_html(**data) -> str:
    """templates/listen.html with `data`: rows, columns, notes, board, plot, domain, dnsmos, unit
    (of the columns' scores), and the mode's own: n_clips and stems=True for a test set;
    stems=False, n_files and rank_label for recordings without stems."""
    return _TEMPLATES.get_template("listen.html").render(
        **{"spec_range_db": f"{SPEC_RANGE_DB:.0f}", "img_w": IMG_W, "img_h": IMG_H,
           "rank_label": METRICS[RANK_METRIC].label, **data})


def build_listening_page(results_csv, test_dir, out_dir, clips_per_bucket: int | None = None,
                         models=None, log=print, force: bool = False) -> Path:
    """Write OUT/listen/ (index.html, audio/, img/) and return the path of index.html.

    The estimates are those evaluate kept in OUT/cache/listen/ (for the page: never a model run
    here); `clips_per_bucket` shows fewer of them per SNR label (default: all). `models`: names
    ("recipe" or "recipe/profile", and "oracle_irm") to show; default all. summary.csv and the
    per-SNR plot are read beside results.csv. When the inputs and the page's files are those of
    the last build, nothing is written (`force`: rebuild anyway)."""

    results_csv = Path(results_csv)
    out_dir = Path(out_dir)
    # A second build of the same page would clear this one's half-built folder as a crash's
    # leftover (two `listen --force` at once: the first died with FileNotFoundError).
    with exclusive_lock(out_dir, "listening page", name=".listen.lock"):
        return _build(results_csv, test_dir, out_dir, clips_per_bucket, models, log, force)


def _build(results_csv: Path, test_dir, out_dir: Path, clips_per_bucket, models, log, force) -> Path:
    where = examples.folder(results_csv.parent)
    index = examples.read_index(where)
    results = examples.first_seed(read_results(results_csv))
    clips = {c.id: c for c in load_split(test_dir)}
    columns, notes = _columns(results, index, where, models)
    chosen = []
    for cid in _clips(results, index, clips_per_bucket, where):
        if cid not in clips:
            raise SepbenchError(f"{test_dir}: has no clip {cid}, which the leaderboard shows: is it the test set "
                                "it was scored on?")
        chosen.append(clips[cid])
    # Same ids are not the same clips (a demo set made again with another seed): the stems the
    # estimates were made from must be these, or the page would play one set against another.
    if content_hash([clips[cid] for cid in index["clips"] if cid in clips]) != index["clips_hash"]:
        raise SepbenchError(f"{test_dir}: its clips differ from those {results_csv.parent} was scored on; "
                            f"pass the test set of that evaluation, or re-run `sepbench evaluate` on this one")
    for column in columns:
        scored = set(_rows_of(results, column.key)["clip_id"])
        if not scored and column.key[2] != "trained":
            continue  # an unscored oracle (evaluate --no-references): its cells say "SI-SDR –"
        lost = [c.id for c in chosen if c.id not in scored]
        if lost:
            raise SepbenchError(f"{results_csv}: no row of {column.label} for clip {lost[0]}: it does not match "
                                f"the estimates in {where}; re-run `sepbench evaluate`")
    summary_csv, plot = results_csv.parent / "summary.csv", results_csv.parent / PLOT_NAME
    dest = out_dir / "listen"
    own = [Path(__file__), *sorted(p for p in _TEMPLATE_DIR.iterdir() if p.is_file())]
    estimates = [examples.estimate_path(where, c.entry, clip.id, s) for c in columns for clip in chosen
                 if clip.id not in c.entry["failed"] for s in examples.SOURCES]
    # Tables, plot and index by content (evaluate may rewrite them unchanged); audio by path,
    # size and time, so that finding nothing changed reads no audio.
    stamp = Stamp(dest / STAMP, key={"n_clips": len(clips), "clips": [c.id for c in chosen],
                                     "columns": [c.label for c in columns]},
                  content=[*own, results_csv, summary_csv, plot, where / examples.INDEX],
                  stat=[*estimates, *(Path(p) for c in chosen for p in (c.mix, c.voice, c.noise))], outputs=[dest])
    for n in notes:
        log(f"listening page: {n}")
    if not force and stamp.fresh():
        log(f"listening page up to date: {dest / 'index.html'}")
        return dest / "index.html"
    board = _Board(_summary(summary_csv, results))
    with atomic_folder(dest) as tmp:
        (tmp / "audio").mkdir()
        (tmp / "img").mkdir()
        rows = [_row(i, clip, columns, where, results, tmp) for i, clip in enumerate(chosen, 1)]
        has_plot = plot.is_file()
        if has_plot:  # a copy, not a link: the folder must stand alone on a web host
            (tmp / PLOT_FILE).write_bytes(plot.read_bytes())
        (tmp / "index.html").write_text(_page(rows, columns, notes, len(clips), board, has_plot, index),
                                        encoding="utf-8")
        stamp.write(staged={dest: tmp})
    return dest / "index.html"
