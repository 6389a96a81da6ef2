"""`sepbench score-unlabelled DIR --out OUT [--runs runs]`: noisy recordings without stems, run
through every finished checkpoint and every installed pretrained enhancer, scored by DNSMOS (the
one metric here that needs no reference): OUT/dnsmos.csv (per recording x row), dnsmos_summary.csv
(mean and 95% CI per row), DNSMOS.md and a listening page, OUT/listen/index.html.

Recordings: every .wav/.flac under DIR (not under OUT), any sample rate, mono (or --downmix).
Checkpoints run at the rate they were trained at (the recording resampled to it, their estimate
resampled back for the page); pretrained enhancers take the recording's own rate (baselines
resample to their native rate and back). `mixture` is the recording, `mixture@R` the recording
at a checkpoint's rate R: what that model hears, and the fair baseline of its DNSMOS.

Reliability as `sepbench evaluate`: one run at a time holds OUT, every file is checked before a
model runs, the tables are replaced as one set and the page as one folder (an interruption leaves
the previous ones), and bad input is one line naming it. Nothing is cached: each run scores anew.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from recipes.audio import AUDIO_SUFFIXES, audio_info, read_audio, resample
from recipes.checkpoint import load_model
from recipes.errors import SepbenchError
from recipes.files import atomic_files, atomic_folder, remove_stale_temps
from recipes.lock import exclusive_lock

from .data.loudness import Meter
from .evaluate import discover
from .report import listen
from .report import unlabelled as report
from .scoring import metrics, references
from .scoring.metrics import DNSMOS_COLUMNS, DNSMOS_PARTS
from .separate.core import pick_device, separate_clip

CSV_COLUMNS = ["file", "row", "kind", "sample_rate", "duration_s", *DNSMOS_COLUMNS, "sep_seconds", "rtf",
               "failure_reason"]


@dataclass
class Row:
    """One table row / page column: `estimate(mix, sr)` -> (voice [T'], noise [T'] or None, rate of
    both), its kind "input", "trained" or "pretrained"."""
    label: str
    kind: str
    estimate: Callable


def run(args) -> int:
    result = score_unlabelled(args.recordings, args.runs, args.out, pretrained=not args.no_pretrained,
                              downmix=args.downmix, device=args.device, log=lambda m: print(m, file=sys.stderr))
    print(f"DNSMOS table: {result['markdown']}  listening page: {result['page']}", file=sys.stderr)
    return 1 if result["failed"] else 0


def find_recordings(folder: Path, out: Path, downmix: bool) -> list[Path]:
    """Every audio file under `folder` (sorted; none under `out`, whose page holds audio), each
    checked readable, non-empty and mono (unless `downmix`) before any model runs."""
    if not folder.is_dir():
        raise SepbenchError(f"{folder}: not a folder of recordings")
    out = out.resolve()
    found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
                   and out not in p.resolve().parents)
    if not found:
        raise SepbenchError(f"{folder}: no recording in it (.wav or .flac files, searched recursively)")
    for path in found:
        info = audio_info(path)  # a file that is not audio: one line naming it
        if info.frames == 0:
            raise SepbenchError(f"{path}: holds no samples")
        if info.channels > 1 and not downmix:
            raise SepbenchError(f"{path}: has {info.channels} channels; score-unlabelled needs mono recordings "
                                "(or --downmix to average the channels)")
    return found


def _rows(runs: Path, pretrained: bool, device: str, log) -> tuple[list[Row], dict, list[str], list[str]]:
    """(rows, {pretrained name: facts}, skipped notes, failures): every checkpoint of `runs` that
    loads, every installed pretrained enhancer, and the mixture at each checkpoint's rate."""
    failed, trained = [], []
    if runs.is_dir():
        entries, failed = discover(runs, log)
        for entry in entries:
            try:
                net, payload = load_model(entry.checkpoint)
            except SepbenchError as exc:
                failed.append(str(exc))
                continue
            if payload.get("recipe") != entry.model:
                failed.append(f"{entry.checkpoint_rel}: a checkpoint of recipe {payload.get('recipe')!r} in a run "
                              f"folder of {entry.model!r}; not run")
                continue
            trained.append((entry.label, net.to(device), int(payload["sample_rate"])))
    elif runs != Path("runs"):  # the default may simply not exist: the pretrained enhancers still run
        raise SepbenchError(f"{runs}: runs folder not found")
    for message in failed:
        log(f"error: {message}")
    facts, skipped = {}, []
    if pretrained:
        # Late: the registry imports each enhancer's package only when it is used.
        from . import baselines

        skipped = list(baselines.skipped())
        facts = {name: references.pretrained_facts(b) for name, b in baselines.available().items()}
    for note in skipped:
        log(f"note: {note}")
    if not trained and not facts:
        raise SepbenchError(f"nothing to run: no finished checkpoint in {runs} and no pretrained enhancer installed"
                            f"{'' if pretrained else ' (--no-pretrained)'}")
    rows = [Row("mixture", "input", lambda mix, sr: (mix, None, sr))]
    rows += [Row(f"mixture@{rate}Hz", "input", _at(rate)) for rate in sorted({r for _, _, r in trained})]
    rows += [Row(label, "trained", _checkpoint(net, rate, device)) for label, net, rate in trained]
    rows += [Row(name, "pretrained", _pretrained(name)) for name in facts]
    return rows, facts, skipped, failed


def _at(rate: int):
    return lambda mix, sr: (resample(mix, sr, rate).astype(np.float32), None, rate)


def _checkpoint(net, rate: int, device: str):
    def estimate(mix, sr):
        est = separate_clip(net, resample(mix, sr, rate).astype(np.float32), rate, device=device)
        return est[0], est[1], rate
    return estimate


def _pretrained(name: str):
    def estimate(mix, sr):
        est = references.enhance(name, mix, sr)
        return est[0], est[1], sr
    return estimate


def score_unlabelled(recordings, runs="runs", out="unlabelled", *, pretrained: bool = True, downmix: bool = False,
                     device: str = "cpu", log=print) -> dict:
    """Score every recording with every row (see the module's docstring); returns the output paths
    and `failed` (checkpoints that could not be run)."""
    # Late: DNSMOS is an optional extra's model; the command module loads (its --help, its
    # registration's check) without it.
    from .scoring import dnsmos

    recordings, runs, out = Path(recordings), Path(runs), Path(out)
    problem = dnsmos.available()
    if problem is not None:
        raise SepbenchError(f"DNSMOS cannot run here: {problem}")
    files = find_recordings(recordings, out, downmix)
    device = pick_device(device)
    with exclusive_lock(out, "scoring of unlabelled recordings"):
        for path in remove_stale_temps(out):
            log(f"note: removed {path}, left by an interrupted run")
        rows, facts, skipped, failed = _rows(runs, pretrained, device, log)
        return {**_score_all(files, recordings, out, rows, facts, skipped, downmix, log), "failed": failed}


def _score_all(files, recordings: Path, out: Path, rows: list[Row], facts, skipped, downmix, log) -> dict:
    paths = {"csv": out / "dnsmos.csv", "summary": out / "dnsmos_summary.csv", "markdown": out / "DNSMOS.md"}
    columns = [{"slot": f"m{j:02d}", "label": r.label, "model": r.label, "kind": r.kind}
               for j, r in enumerate(rows[1:], 1)]
    scored, page_rows, rates = [], [], set()
    with atomic_folder(out / "listen") as tmp:
        (tmp / "audio").mkdir()
        (tmp / "img").mkdir()
        for i, path in enumerate(files, 1):
            start = time.perf_counter()
            mix, sr = read_audio(path, downmix)
            rates.add(sr)
            name = path.relative_to(recordings).as_posix()
            results = [_one(row, mix, sr) for row in rows]
            scored += [{"file": name, "row": row.label, "kind": row.kind, **r["scores"]} for row, r in zip(rows, results)]
            page_rows.append(_page_row(i, name, mix, sr, rows, results, tmp))
            log(f"{name}: {len(rows)} rows in {time.perf_counter() - start:.1f} s")
        table = pd.DataFrame(scored, columns=CSV_COLUMNS)
        summary = report.summarize(table)
        order = [label for label, _ in report.rows_in_order(summary)]
        # Columns in the table's order (best mean OVRL first), each page row's cells with them.
        rank = sorted(range(len(columns)), key=lambda k: order.index(columns[k]["label"]))
        for row in page_rows:
            row["models"] = [row["models"][k] for k in rank]
        info = {"recordings": str(recordings), "n_files": len(files), "rates": sorted(rates), "skipped": skipped}
        if facts:
            from . import baselines  # late, as in _rows: only imported when enhancers run
        for name in facts:  # the note names the recordings' rates, known only now
            facts[name] = references.pretrained_facts(baselines.registered()[name], rates)
        html = report.page(page_rows, [columns[k] for k in rank], summary, facts, [f"not run: {n}" for n in skipped],
                           report._low_rates(table))
        (tmp / "index.html").write_text(html, encoding="utf-8")
        with atomic_files(paths) as t:
            for key, df in (("csv", table), ("summary", summary)):
                df.to_csv(t[key], index=False, na_rep="", lineterminator="\n")
            t["markdown"].write_text(report.markdown(table, summary, facts, info), encoding="utf-8")
    log(f"wrote {paths['markdown']}, {paths['csv']} and {out / 'listen' / 'index.html'}")
    return {**paths, "page": out / "listen" / "index.html"}


def _one(row: Row, mix: np.ndarray, sr: int) -> dict:
    """One row on one recording: its estimates at the recording's rate (or the reason there are
    none) and its scores row."""
    t0, failure, voice, noise, rate = time.perf_counter(), "", None, None, sr
    try:
        voice, noise, rate = row.estimate(mix, sr)
    except Exception as exc:  # one recording's failure is a row with its reason, not the end of the run
        failure = f"separation failed: {type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
    seconds = time.perf_counter() - t0
    scores, reasons = {}, [failure] if failure else []
    if voice is None:
        scores.update({c: math.nan for c in DNSMOS_COLUMNS})
    else:
        metrics.add_dnsmos(voice, rate, "voice_dnsmos", scores, reasons)
    separated = row.kind != "input" and not failure
    duration = len(mix) / sr
    scores.update(sample_rate=rate, duration_s=duration, sep_seconds=seconds if separated else math.nan,
                  rtf=seconds / duration if separated else math.nan, failure_reason="; ".join(reasons))
    back = [None if x is None else _to(x, rate, sr, len(mix)) for x in (voice, noise)]
    return {"scores": scores, "audio": back, "failure": failure}


def _to(x: np.ndarray, rate: int, sr: int, n: int) -> np.ndarray:
    y = np.asarray(resample(np.asarray(x, np.float64), rate, sr))[:n]
    return np.pad(y, (0, n - len(y)))


def _page_row(i: int, name: str, mix, sr: int, rows: list[Row], results: list[dict], folder: Path) -> dict:
    """One recording's page row: the recording (with its DNSMOS) and per column the voice and noise
    estimates, each column's pair scaled by the one factor that brings its voice to the
    recording's loudness (so the noise keeps its level relative to the voice)."""
    meter = Meter(sr)
    target = meter.level(mix)
    first = results[0]["scores"]
    cells = [("mix", mix, "recording", listen.dnsmos_text(_parts(first)), "", "")]
    for j, (row, result) in enumerate(zip(rows[1:], results[1:]), 1):
        voice, noise = result["audio"]
        level = meter.level(voice) if voice is not None else math.nan
        gain = 10 ** ((target - level) / 20) if voice is not None and np.any(voice) else 1.0
        text = listen.dnsmos_text(_parts(result["scores"]))
        # An input column plays the recording as a checkpoint hears it: named so, not "voice".
        source = "input" if row.kind == "input" else "voice"
        cells.append((f"m{j:02d}_{source}", voice * gain if voice is not None else result["failure"] or "no estimate",
                      f"{row.label} {source}", text, "", ""))
        if row.kind != "input":
            cells.append((f"m{j:02d}_noise", noise * gain if noise is not None else result["failure"] or "no estimate",
                          f"{row.label} noise", "", "", ""))
    out, gain = listen.write_cells(i, cells, sr, folder)
    models, k = [], 1
    for row in rows[1:]:
        width = 1 if row.kind == "input" else 2
        models.append(out[k:k + width])
        k += width
    return {"clip_id": name, "name": name, "info": f"{sr} Hz, {len(mix) / sr:.1f} s",
            "gain_db": f"{round(20 * math.log10(gain), 1) + 0.0:.1f}", "mix": out[0], "stems": [], "models": models}


def _parts(scores: dict) -> dict:
    return {p: scores.get(f"voice_dnsmos_{p}", math.nan) for p in DNSMOS_PARTS}
