"""`sepbench evaluate`'s last step: the estimates of the clips the listening page shows
(examples.py has the choice and the folder's format). The few chosen clips are separated once
more, in this process, rather than kept from the scoring: a model whose rows came from the cache
is not run at all there, and the workers would have to ship audio back for it.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from recipes.audio import read_audio
from recipes.checkpoint import load_model
from recipes.errors import SepbenchError
from recipes.files import Stamp, atomic_folder
from recipes.folder import content_hash, write_audio

from ..separate.core import separate_clip
from . import references
from .examples import FORMAT, INDEX, SOURCES, Shown, estimate_path, first_seed, folder, listen_clips, oracle


def shown_models(results, entries) -> list[Shown]:
    """The page's columns: every trained model's lowest-seed checkpoint, every pretrained enhancer
    scored, then the oracle (shown with or without its rows in results: its estimate needs only
    the stems)."""
    first = first_seed(results[results["kind"] == "trained"])
    seeds = set(zip(first["model"], first["profile"], first["seed"].astype(str)))
    trained = [Shown(e.model, e.profile, "trained", e.checkpoint, e.checkpoint_hash) for e in entries
               if e.kind == "trained" and (e.model, e.profile, e.seed) in seeds]
    scored = set(results.loc[results["kind"] == "pretrained", "model"])
    pretrained = [Shown(e.model, e.profile, "pretrained", "", e.checkpoint_rel, e.card.get("out_of_domain", ""))
                  for e in entries if e.kind == "pretrained" and e.model in scored]
    return (sorted(trained, key=lambda m: (m.model, m.profile)) + sorted(pretrained, key=lambda m: m.model)
            + [oracle()])


def write_examples(out: Path, results, clips, models: list[Shown], per_bucket: int, device: str, key: dict,
                   force: bool = False, log=print) -> Path:
    """Write OUT/cache/listen/ for `per_bucket` clips per SNR label, unless the one there was
    made from the same models, clips and `key` (data and benchmark versions) and is untouched."""
    if per_bucket < 1:
        raise SepbenchError(f"--listen-clips {per_bucket}: must be at least 1")
    where, by_id = folder(out), {c.id: c for c in clips}
    chosen = [by_id[cid] for cid in listen_clips(first_seed(results), per_bucket)]
    stamp = Stamp(where.with_suffix(".json"), outputs=[where],
                  key={**key, "format": FORMAT, "per_bucket": per_bucket, "clips": [c.id for c in chosen],
                       "models": [[m.label, m.kind, m.checkpoint_hash, *([m.note] if m.note else [])] for m in models]})
    if not force and stamp.fresh():
        return where
    audio = {c.id: _read(c) for c in chosen}
    sample_rate = next(iter(audio.values()))[2] if audio else 0
    entries = []
    with atomic_folder(where) as tmp:
        for j, model in enumerate(models, 1):
            entry = {"label": model.label, "model": model.model, "profile": model.profile, "kind": model.kind,
                     "checkpoint_hash": model.checkpoint_hash, "folder": f"{j:02d}", "failed": {},
                     **({"note": model.note} if model.note else {})}
            run = _separator(model, sample_rate, device)
            for clip in chosen:
                mix, sources, _ = audio[clip.id]
                problem, est = _estimate(run, mix, sources)
                if problem:
                    entry["failed"][clip.id] = problem
                    continue
                for s, source in enumerate(SOURCES):
                    path = estimate_path(tmp, entry, clip.id, source)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    # Through memory: libsndfile given a path says only "System error" on a full disk.
                    write_audio(path, est[s], sample_rate, subtype="FLOAT")
            entries.append(entry)
        index = {"format": FORMAT, "sample_rate": sample_rate, "per_bucket": per_bucket,
                 "clips": [c.id for c in chosen], "clips_hash": content_hash(chosen), "models": entries}
        (tmp / INDEX).write_text(json.dumps(index, indent=1) + "\n", encoding="utf-8")
    stamp.write()
    log(f"{'(listening page audio)':<28} {len(chosen)} clips x {len(models)} models in {where}")
    return where


def _read(clip):
    mix, sr = read_audio(clip.mix)
    return mix, np.stack([read_audio(clip.voice)[0], read_audio(clip.noise)[0]]), sr


def _separator(model: Shown, sample_rate: int, device: str):
    if model.kind != "trained":
        return lambda mix, sources: references.estimate(model.model, mix, sources, sample_rate)
    try:
        net, payload = load_model(model.checkpoint)
    except SepbenchError as exc:  # scored a moment ago; if it cannot be loaded now, its cells say why
        reason = f"not separated: {exc}"
        return lambda mix, sources: reason
    if payload["sample_rate"] != sample_rate:
        reason = f"not separated: trained at {payload['sample_rate']} Hz, the test set is {sample_rate} Hz"
        return lambda mix, sources: reason
    net = net.to(device)
    return lambda mix, sources: separate_clip(net, mix, sample_rate, device=device)  # as the scoring did


def _estimate(run, mix, sources) -> tuple[str, np.ndarray | None]:
    """(reason, None) when the clip has no estimate to play, else ('', estimates [2, T])."""
    try:
        est = run(mix, sources)
    except Exception as exc:  # one clip's failure is a note in its cell, not a lost page
        return f"separation failed: {type(exc).__name__}", None
    if isinstance(est, str):
        return est, None
    est = np.asarray(est, np.float32)
    if est.shape != sources.shape:
        return f"separation failed: estimate has shape {tuple(est.shape)}", None
    if not np.all(np.isfinite(est)):
        return "the model's output is not finite", None
    return "", est
