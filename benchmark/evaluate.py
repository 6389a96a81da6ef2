"""`sepbench evaluate`: every checkpoint (plus mixture and oracle rows, and with --pretrained the
pretrained enhancers of benchmark/baselines) x every test clip -> tidy per-clip rows (results.csv)
-> summary.csv -> LEADERBOARD.md and a plot.

Each model's rows are cached under OUT/cache/ by (checkpoint content hash, test set content hash,
benchmark version; a pretrained row by its name and its package's version, which ship its
weights; `--metrics +dnsmos` adds DNSMOS's own version), so a re-run evaluates nothing new. The mixture's own scores (the baseline of
every improvement) are computed once per clip and cached the same way. How rows are computed
(worker processes, batched inference): scoring/workers.py. Every output is written to a temporary
file and renamed, so an interrupted run leaves the previous leaderboard as it was; one evaluation
at a time holds OUT (recipes/lock.py), and one that finds no checkpoint to score is an error
that writes nothing. Model and profile names come from the run folders' names (never from
card.json) and cache file names are hashes, so no name read from a file becomes a path.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import threadpoolctl

from recipes.checkpoint import git_commit, load_model
from recipes.data import FolderDataset
from recipes.errors import SepbenchError
from recipes.files import Stamp, atomic_files, file_hash, remove_stale_temps
from recipes.folder import content_hash, load_split, test_split_dir
from recipes.lock import exclusive_lock
from recipes.runs import parse_run_folder
from recipes.safe_names import RULE, is_safe_name

from . import __version__
from .commands import DEFAULT_GPU_BATCH
from .report import render
from .scoring import aggregate, compare, references, shards
from .scoring.choices import parse_metrics
from .scoring.workers import Runner, mixture_rows, run_batched, run_per_clip
from .scoring.write_examples import shown_models, write_examples
from .separate.core import pick_device

SCORING_VERSION = 2  # bump when scores change: it invalidates every cache entry (2: seeded ESTOI noise)
BENCHMARK_VERSION = f"{__version__}+s{SCORING_VERSION}"


@dataclass(frozen=True)
class Entry:
    """One leaderboard row source: a trained checkpoint or a reference."""
    model: str
    profile: str
    kind: str
    checkpoint: str = ""  # absolute path; '' for references
    checkpoint_rel: str = ""
    checkpoint_hash: str = ""
    seed: str = ""  # trained runs only: the training seed, as text ('' for references)
    card: dict = field(default_factory=dict, compare=False, hash=False)  # trained: card.json; pretrained: its facts

    @property
    def key(self) -> str:
        """What the row's scores depend on besides the clips and the benchmark: the checkpoint's
        content, or a pretrained row's package and version (its weights ship with it)."""
        return self.checkpoint_rel if self.kind == "pretrained" else self.checkpoint_hash

    @property
    def label(self) -> str:
        if self.kind != "trained":
            return self.model
        return f"{self.model}/{self.profile}" + (f" seed {self.seed}" if self.seed not in ("", "0") else "")

    @property
    def spec(self) -> tuple[str, str]:
        return ("trained", self.checkpoint) if self.kind == "trained" else ("reference", self.model)


def discover(runs: Path, log) -> tuple[list[Entry], list[str]]:
    """Finished runs under runs/<recipe>/<profile>[-seed<K>]/ (best.pt + card.json); others get a
    note. Recipe, profile and seed come from the folder names (recipes/runs.py): card.json is only
    displayed, never a path; a plain <profile> folder's seed is its card's."""
    entries, errors = [], []
    if not runs.is_dir():
        return entries, errors
    for run in sorted(p for p in runs.glob("*/*") if p.is_dir()):
        ckpt, card_path = run / "best.pt", run / "card.json"
        recipe, (profile, seed) = run.parent.name, parse_run_folder(run.name)
        if not (is_safe_name(recipe) and is_safe_name(profile)):
            errors.append(f"{run}: run folder names must use {RULE}; not scored")
            continue
        missing = [p.name for p in (ckpt, card_path) if not p.is_file()]
        if missing:
            log(f"note: skipped {run}: no {' or '.join(missing)} (training not finished?)")
            continue
        try:
            card = json.loads(card_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            errors.append(f"{card_path}: unreadable run card ({exc})")
            continue
        if not isinstance(card, dict):
            errors.append(f"{card_path}: unreadable run card (not a JSON object)")
            continue
        if card.get("status", "complete") != "complete":
            log(f"note: skipped {run}: run status is {card.get('status')!r}, not 'complete'")
            continue
        seed = card.get("seed", 0) if seed is None else seed
        for key, name in (("recipe", recipe), ("profile", profile), ("seed", seed)):
            if card.get(key, name) != name:
                log(f"note: {card_path}: {key} {card.get(key)!r} differs from the folder name; using {name!r}")
        entries.append(Entry(recipe, profile, "trained", str(ckpt.resolve()),
                             f"{runs.name}/{ckpt.relative_to(runs).as_posix()}", file_hash(ckpt), str(seed), card))
    return entries, errors


def pretrained_entries(log, names=None, sample_rate: int | None = None) -> tuple[list[Entry], list[str]]:
    """The pretrained enhancers (all, or those `names`) whose optional extra is installed, as rows
    of kind "pretrained", and one note per one that is not (logged; the run goes on without it).
    A name that is not registered is an error."""
    # Late: the registry imports the enhancers' packages when asked, and a run without
    # --pretrained must not pay for that.
    from . import baselines

    known = baselines.registered()
    unknown = [n for n in names or () if n not in known]
    if unknown:
        raise SepbenchError(f"--pretrained {','.join(unknown)}: not a registered enhancer ({', '.join(known)})")
    wanted = set(known if names is None else names)
    skipped = [n for n in baselines.skipped() if n.split(":", 1)[0] in wanted]
    for note in skipped:
        log(f"note: {note}")
    entries = []
    for name, b in baselines.available().items():
        if name not in wanted:
            continue
        facts = references.pretrained_facts(b, [sample_rate] if sample_rate else ())
        entries.append(Entry(name, "-", "pretrained", checkpoint_rel=facts["source"], card=facts))
    return entries, skipped


def _cache_file(cache: Path, kind: str, *key: str) -> Path:
    """A cache file named by a hash of its key: names and versions never become path parts."""
    digest = hashlib.sha256("\0".join(key).encode("utf-8")).hexdigest()[:32]
    return cache / f"{kind}-{digest}.csv"


def _test_clips(data: Path):
    data = test_split_dir(data)
    return data, load_split(data)


def _cached(path: Path, clips, force: bool, required=("clip_id",)) -> pd.DataFrame | None:
    if force or not path.is_file():
        return None
    try:
        df = aggregate.read_results(path, required)
    except Exception:  # a damaged cache file is simply recomputed
        return None
    return df if sorted(df["clip_id"]) == sorted(c.id for c in clips) else None


def _unusable(entry: Entry, sample_rate: int) -> str | None:
    """Why a checkpoint cannot be scored (checked once here, before any worker loads it)."""
    try:
        _, payload = load_model(entry.checkpoint)
    except SepbenchError as exc:
        return str(exc)
    if entry.kind == "trained" and payload.get("recipe") != entry.model:
        # Its scores and size would be published under the folder's name.
        return (f"{entry.checkpoint_rel}: a checkpoint of recipe {payload.get('recipe')!r} in a run folder of "
                f"{entry.model!r}; move it under runs/{payload.get('recipe')}/ or retrain; not scored")
    if payload["sample_rate"] != sample_rate:
        return f"{entry.checkpoint_rel}: trained at {payload['sample_rate']} Hz, test set is {sample_rate} Hz; not scored"
    return None


def evaluate(data, runs="runs", out="leaderboard", jobs: int | None = None, force: bool = False,
             with_references: bool = True, device: str = "auto", batch: int | None = None, log=print,
             bucket: str = "label", edges=None, listen_clips: int = 1, shard: str | None = None,
             pretrained: bool | str | list = False, metrics=()) -> dict:
    """Score, aggregate and render. Returns the output paths plus `evaluated` and `cached`
    (model counts) and `failed` (one message per checkpoint that could not be scored).
    `batch`: clips per forward pass (default 16 on a GPU, 1 on the CPU; see scoring/workers.py).
    `bucket`/`edges`: how clips are grouped into SNR buckets (aggregate.buckets).
    `listen_clips`: clips per SNR label whose estimates are kept in OUT/cache/listen for the page.
    `shard` "K/N": score only shard K's clips into OUT/cache/shards/N/K and write no output; a
    later call without it merges complete sets of shards (scoring/shards.py).
    `runs=None` scores the reference rows only; otherwise a runs folder without a checkpoint
    that can be scored is an error and OUT is left as it was (a mistyped --runs must not
    replace a leaderboard with one that has no trained model).
    `pretrained`: also score every pretrained enhancer whose extra is installed (True or "all"),
    or those named (a list, or "a,b"), as rows of kind "pretrained"; the others are one note each. `metrics`: optional metric sets added to the
    fixed ones (choices.OPTIONAL_METRICS: "dnsmos")."""
    data, clips = _test_clips(Path(data))
    runs, out = (None if runs is None else Path(runs)), Path(out)
    device = pick_device(device)
    batch = (DEFAULT_GPU_BATCH if device.startswith("cuda") else 1) if batch is None else batch
    if batch < 1:
        raise SepbenchError(f"--batch {batch}: must be at least 1")
    if listen_clips < 1:
        raise SepbenchError(f"--listen-clips {listen_clips}: must be at least 1")
    part = None if shard is None else shards.parse(shard)
    if bucket not in aggregate.BUCKET_MODES:
        raise SepbenchError(f"--bucket {bucket}: expected one of {', '.join(aggregate.BUCKET_MODES)}")
    if edges is not None and (bucket != "measured" or list(edges) != sorted(set(edges)) or not edges):
        raise SepbenchError("--bucket-edges: needs --bucket measured and distinct edges in increasing order")
    grouping = {"bucket": bucket, "edges": None if edges is None else [float(e) for e in edges]}
    extra = metric_key(tuple(metrics))
    sr = FolderDataset(clips).sample_rate  # also checks that every clip's files agree
    entries, failed = [], []
    if runs is not None:
        if not runs.is_dir():
            raise SepbenchError(f"{runs}: runs folder not found; nothing was evaluated and {out} was left as it was")
        entries, failed = discover(runs, log)
        for message in failed:
            log(f"error: {message}")
        if not entries:
            raise SepbenchError(f"{runs}: no finished run (<recipe>/<profile>/best.pt with card.json) in this runs "
                                f"folder; nothing was evaluated and {out} was left as it was")
    if with_references:
        entries += [Entry(name, "-", references.kind(name)) for name in references.names()]
    skipped = []
    if pretrained:
        picked = None if pretrained is True or pretrained == "all" else (
            [n.strip() for n in pretrained.split(",") if n.strip()] if isinstance(pretrained, str) else list(pretrained))
        found, skipped = pretrained_entries(log, picked, sr)
        entries += found
    if not entries:
        raise SepbenchError("nothing to evaluate: no runs folder, references are off and no pretrained enhancer "
                            "is installed")
    # A shard locks only its own folder: the shards of one OUT run at the same time.
    mine = [out, out / "cache"] if part is None else [shards.folder(out / "cache", *part)]
    with exclusive_lock(mine[0], "evaluation" if part is None else f"evaluation of shard {shard}"):
        # Only this process may write here now, so any temp file of ours is a killed run's.
        for folder in mine:
            for path in remove_stale_temps(folder):
                log(f"note: removed {path}, left by an interrupted run")
        return _evaluate_locked(clips, sr, data, runs, out, entries, failed, jobs, force, device, batch, log,
                                grouping, listen_clips, part, extra, skipped)


def metric_key(metrics: tuple[str, ...]) -> tuple[str, ...]:
    """The cache-key part of the optional metrics: () for none, so the rows of a run without them
    keep their keys; with DNSMOS, its model's version. Checks DNSMOS can run before anything does."""
    extra = []
    if "dnsmos" in metrics:
        # Late: DNSMOS is an optional extra; only a run asking for it imports it.
        from .scoring import dnsmos

        problem = dnsmos.available()
        if problem is not None:
            raise SepbenchError(f"--metrics +dnsmos: {problem}")
        # Its model ships with the package, and the module computes its features: both key the rows.
        version = importlib.metadata.version(dnsmos.PACKAGE)
        extra += ["+dnsmos", f"{dnsmos.PACKAGE}=={version}", file_hash(Path(dnsmos.__file__))]
    return tuple(extra)


def _evaluate_locked(clips, sr, data, runs, out, entries, failed, jobs, force, device, batch, log, grouping,
                     listen_clips, part=None, extra=(), skipped=()) -> dict:
    data_hash, commit = content_hash(clips), git_commit()  # of the whole set, shard or not
    cache = out / "cache" if part is None else shards.folder(out / "cache", *part)
    scored = clips if part is None else shards.clips_of(clips, *part)
    # More processes than clips only cost start-up (24 workers for 6 clips took 38 s).
    workers = max(1, min(jobs or os.cpu_count() or 1, len(scored)))
    if jobs and jobs > workers:
        log(f"note: --jobs {jobs} capped at {workers}, the number of clips")
    runner, inputs, frames = Runner(workers, log), None, []
    counts = {"evaluated": 0, "cached": 0}
    n_trained = sum(e.kind == "trained" for e in entries)
    # Metrics call numpy/scipy's OpenBLAS, whose idle threads keep spinning and took the cores
    # from the model run in this process (jobs 1, or batched): separation took 2.5x longer.
    # Spawned workers get one thread of each through their environment (scoring/workers.py).
    blas = threadpoolctl.threadpool_limits(limits=1, user_api="blas")
    try:
        for i, entry in enumerate(entries):
            if i == n_trained and runs is not None and not frames:
                # Checked before the references are computed: they would only fill a leaderboard
                # without a trained model, which must not replace the previous one.
                raise SepbenchError(f"{runs}: no checkpoint could be scored ({'; '.join(failed)}); "
                                    f"{out} was left as it was")
            path = _cache_file(cache, entry.kind, entry.model, entry.profile, entry.key, data_hash,
                               BENCHMARK_VERSION, *extra)
            df = _cached(path, scored, force)
            if df is None and part is None and not force:
                df, n = shards.merged(cache, path.name, clips) or (None, 0)
                if df is not None:
                    aggregate.write_csv(df, path)  # the next run reads it directly
                    log(f"{entry.label:<28} merged from {n} shards")
            if df is not None:
                df["checkpoint"] = entry.checkpoint_rel  # the run folder may have moved since
                df["seed"] = entry.seed
                counts["cached"] += 1
                log(f"{entry.label:<28} cached")
                frames.append(df)
                continue
            problem = _unusable(entry, sr) if entry.kind == "trained" else None
            if problem:
                failed.append(problem)
                log(f"error: {problem}")
                continue
            if inputs is None:
                inputs = _inputs(runner, scored, _cache_file(cache, "inputs", data_hash, BENCHMARK_VERSION, *extra),
                                 force, device, log, "+dnsmos" if extra else "")
            if entry.kind == "trained" and batch > 1:
                rows, wall = run_batched(runner, entry.spec, scored, inputs, device, batch)
            elif entry.spec == ("reference", references.MIXTURE):
                rows, wall = mixture_rows(scored, inputs, sr)
            else:
                rows, wall = run_per_clip(runner, entry.spec, scored, inputs, device)
            stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            df = pd.DataFrame([{"model": entry.model, "profile": entry.profile, "kind": entry.kind, "seed": entry.seed, **r,
                                "checkpoint": entry.checkpoint_rel, "checkpoint_hash": entry.checkpoint_hash,
                                "evaluated_at": stamp, "git_commit": commit} for r in rows])
            aggregate.write_csv(df, path)
            counts["evaluated"] += 1
            frames.append(df)
            n_bad = int((df["failure_reason"] != "").sum())
            rtf = df["rtf"].mean()  # NaN when every clip failed: there is no separation time to show
            speed = f"separation RTF {rtf:.4f}" if math.isfinite(rtf) else "no clip was separated"
            log(f"{entry.label:<28} {len(rows)} clips in {wall:.1f} s ({len(rows) / max(wall, 1e-9):.1f} clips/s, "
                f"{speed}){f', {n_bad} with failures' if n_bad else ''}")
    finally:
        runner.close()
        blas.restore_original_limits()
    if not frames:
        raise SepbenchError("no model could be scored: " + "; ".join(failed))
    if part is not None:
        log(f"shard {part[0]}/{part[1]}: {len(scored)} of {len(clips)} clips scored into {cache}; once every "
            "shard is done, the same `sepbench evaluate` without --shard merges them and writes the leaderboard")
        return {"shard": cache, **counts, "failed": failed}
    results = _results(frames)
    # The page's audio is made here, where the models are, so that `sepbench listen` only reads;
    # before the leaderboard, whose set is replaced last: a failure leaves the previous one.
    listen_audio = write_examples(out, results, clips, shown_models(results, entries), listen_clips, device,
                                  {"data": data_hash, "version": BENCHMARK_VERSION}, force, log)
    paths = _write_outputs(results, entries, data, data_hash, len(clips), out, log, grouping, force, skipped)
    paths["listen_audio"] = listen_audio
    return {**paths, **counts, "failed": failed}


def _inputs(runner, clips, path: Path, force: bool, device: str, log, optional: str = "") -> dict:
    """The mixture's own scores per clip (the baseline); `optional` "+dnsmos" adds its DNSMOS."""
    df = _cached(path, clips, force)
    if df is None:
        rows, wall = run_per_clip(runner, ("inputs", optional), clips, None, device)
        df = pd.DataFrame(rows)
        aggregate.write_csv(df, path)
        log(f"{'(mixture baseline)':<28} {len(rows)} clips in {wall:.1f} s ({len(rows) / wall:.1f} clips/s)")
    df["failure_reason"] = df["failure_reason"].fillna("")
    return {r["clip_id"]: r for r in df.to_dict("records")}


def _results(frames) -> pd.DataFrame:
    results = pd.concat(frames, ignore_index=True)
    results.insert(3, "seed", results.pop("seed").fillna("").astype(str))  # cached frames add it last
    return aggregate.sort_results(results)


def _write_outputs(results, entries, data, data_hash, n_clips, out: Path, log, grouping, force=False, skipped=()):
    """Write results, summary, pairs, leaderboard and plots; returns their paths."""
    by, edges = grouping["bucket"], grouping["edges"]
    cards = {}
    for e in sorted((e for e in entries if e.kind == "trained"), key=lambda e: int(e.seed or 0)):
        cards.setdefault((e.model, e.profile), e.card)  # shown: the lowest seed's (size, train time)
    info = {"data": str(data), "data_hash": data_hash, "n_clips": n_clips,
            "date": str(results["evaluated_at"].max()), "git_commit": ", ".join(sorted(set(results["git_commit"]))),
            "version": BENCHMARK_VERSION, "sample_rate": int(results["sample_rate"].iloc[0]), **grouping}
    if by == "measured" and edges is None:
        info["edges"] = aggregate.default_edges(results["snr_label"])
    shown = sorted(set(results.loc[results["kind"] == "pretrained", "model"]))
    facts = {e.model: e.card for e in entries if e.kind == "pretrained" and e.model in shown}
    if facts or skipped:  # absent otherwise: a leaderboard without them is the one it always was
        info["pretrained"] = {"rows": facts, "skipped": list(skipped)}
    paths = {"results": out / "results.csv", "summary": out / "summary.csv", "pairs": out / "pairs.csv",
             "leaderboard": out / "LEADERBOARD.md", "plot": out / render.PLOT_NAME}
    curves = learning_curves(entries)
    info["curves"] = bool(curves)
    if curves:
        paths["curves"] = out / render.CURVES_NAME
    # Everything the outputs are made from: the per-clip rows, the run cards shown, the header
    # facts (grouping and benchmark version among them) and the learning curves.
    rows_csv = results.to_csv(index=False, na_rep="", lineterminator="\n").encode("utf-8")
    stamp = Stamp(out / "cache" / "outputs.json", outputs=paths.values(),
                  key={"results": hashlib.sha256(rows_csv).hexdigest(), "info": info, "curves": curves,
                       "cards": [[list(k), cards[k]] for k in sorted(cards)]})
    if not force and stamp.fresh():
        # Nothing that goes into the outputs changed (a re-run of ./run_all.sh): the summary,
        # pairs and plots are not computed again (3.5 s of a 8 s no-op re-run on 200 clips).
        summary, pairs = aggregate.read_summary(paths["summary"]), aggregate.read_pairs(paths["pairs"])
        log("")
        log(render.main_table(summary, cards, pairs))
        log(f"\n{paths['leaderboard']} is up to date")
        return paths
    summary = aggregate.summarize(results, by, edges)
    pairs = compare.pairs(results, by=by, edges=edges)
    markdown, png = render.render(summary, cards, info, pairs), render.plot_png(summary, by == "measured")
    # One set, all or nothing: an interruption or one output that cannot be replaced (a folder
    # named LEADERBOARD.md, a full disk) leaves the previous set whole and consistent.
    # The stamp too: written after the set, a full disk could leave a new set under the old stamp.
    with atomic_files({**paths, "stamp": stamp.path}) as tmp:
        aggregate.write_csv(results, tmp["results"])
        aggregate.write_csv(summary, tmp["summary"])
        aggregate.write_csv(pairs, tmp["pairs"])
        tmp["plot"].write_bytes(png)
        if curves:
            tmp["curves"].write_bytes(render.learning_curves_png(curves))
        tmp["leaderboard"].write_text(markdown, encoding="utf-8")
        stamp.write(staged={paths[k]: tmp[k] for k in paths} | {stamp.path: tmp["stamp"]})
    log("")
    log(render.main_table(summary, cards, pairs))
    log(f"\nwrote {paths['leaderboard']}")
    return paths


def learning_curves(entries) -> dict[str, list[tuple[float, float]]]:
    """{label: [(training minutes, validation voice SI-SDRi), ...]} from each trained run's log.csv
    (beside its best.pt); a run without a readable log is left out of the plot, not an error."""
    curves = {}
    for e in entries:
        log_csv = Path(e.checkpoint).parent / "log.csv" if e.kind == "trained" else None
        if log_csv is None or not log_csv.is_file():
            continue
        try:
            log = pd.read_csv(log_csv, usecols=["train_seconds", "val_sisdri"]).dropna()
        except (OSError, ValueError):
            continue
        if len(log):
            curves[e.label] = [(s / 60.0, v) for s, v in zip(log["train_seconds"], log["val_sisdri"])]
    return curves


def run(args) -> int:
    try:
        metrics = parse_metrics(args.metrics)
    except ValueError as exc:
        raise SepbenchError(str(exc)) from None
    result = evaluate(args.data, None if args.references_only else args.runs, args.out, jobs=args.jobs, force=args.force,
                      with_references=not args.no_references, device=args.device, batch=args.batch,
                      bucket=args.bucket, edges=args.bucket_edges, listen_clips=args.listen_clips, shard=args.shard,
                      pretrained=args.pretrained or False, metrics=metrics)
    return 1 if result["failed"] else 0
