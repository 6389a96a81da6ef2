"""The one training entry for every recipe: train(...) -> summary dict (also `sepbench train`)."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from . import config as config_mod
from . import get
from .callbacks import (
    AtomicCheckpointIO,
    BestExport,
    CosineSchedule,
    EpochLog,
    ReplaceOld,
    TensorBoardExtras,
    TimeBudget,
)
from .checkpoint import finished_run, git_commit, versions
from .data import FolderDataset, check_limits, data_splits
from .errors import SepbenchError, naming
from .files import atomic_write_text
from .folder import content_hash
from .lock import exclusive_lock
from .losses import build_loss
from .runs import run_folder
from .sampling import GlobalBatchSampler

# Keys that change how fast or how long a run goes, or what it reports, not what it computes: a
# resumed run may change them without being refused as "a different experiment".
_RESUMABLE_KEYS = {("trainer", "max_minutes"), ("trainer", "max_epochs"), ("data", "num_workers"),
                   ("trainer", "devices"), ("trainer", "num_nodes"), ("trainer", "strategy"),
                   ("trainer", "logger"), ("trainer", "tb_audio_every")}


def _global_batch(cfg: dict):
    trainer, optim = cfg.get("trainer", {}), cfg.get("optim", {})
    devices, nodes, batch = trainer.get("devices"), trainer.get("num_nodes", 1), optim.get("batch_size")
    if isinstance(devices, (list, tuple)):
        devices = len(devices)
    if not all(isinstance(v, int) and v >= 1 for v in (devices, nodes, batch)):
        return None  # "auto"/-1: the count is only known inside Lightning
    return batch * devices * nodes


def _config_diff(old: dict, new: dict, prefix=()) -> list[str]:
    """Differences that make `new` another experiment than `old`. The per-device batch size may
    change with the device count as long as the global batch stays: that is the same training
    (recipes/sampling.py), which is how a run resumes on a different number of GPUs."""
    diffs = []
    if not prefix and None not in (_global_batch(old), _global_batch(new)):
        before, after = _global_batch(old), _global_batch(new)
        if before != after:
            per_device = before * new["optim"]["batch_size"] // after
            hint = (f" (optim.batch_size={per_device} keeps it)" if before % (after // new["optim"]["batch_size"]) == 0
                    else "")
            diffs.append(f"global batch (optim.batch_size x devices x num_nodes): {before} -> {after}{hint}")
        old = {**old, "optim": {**old["optim"], "batch_size": new["optim"]["batch_size"]}}
    for key in sorted(set(old) | set(new)):
        path = prefix + (key,)
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _config_diff(a, b, path)
        elif a != b and path not in _RESUMABLE_KEYS:
            diffs.append(f"{'.'.join(path)}: {a!r} -> {b!r}")
    return diffs


def _resume_point(run_dir: Path, last: Path) -> Path | None:
    """The newest of last.ckpt (end of an epoch) and Lightning's SLURM preemption saves
    (hpc_ckpt_N.ckpt, mid-epoch, written into the run dir): a requeued job loses no steps."""
    found = [p for p in [last, *run_dir.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime_ns) if found else None


def _check_resumable(path: Path) -> int:
    """Refuse an unreadable or tampered checkpoint in one line. Lightning's own error is a long
    traceback that ends by suggesting weights_only=False, which would run the file's code."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        ok = isinstance(state, dict) and isinstance(state.get("state_dict"), dict) and "epoch" in state
        why = "not a training checkpoint"
    except Exception:  # truncated zip, foreign pickle, disallowed global: all just unusable. torch's
        # own message is not repeated: it advises weights_only=False, i.e. running the file's code.
        ok, why = False, "unreadable, truncated, or holding objects a plain checkpoint does not"
    if not ok:
        raise SepbenchError(f"{path}: cannot resume from it ({why}); move it aside or use --force")
    # Lightning's "epoch" is the 0-based index of the epoch being trained when it saved: an
    # end-of-epoch save has finished epoch+1 epochs, a mid-epoch one (hpc_ckpt) epoch of them.
    return int(state["epoch"]) + (0 if path.name.startswith("hpc_ckpt") else 1)


def _write_card(path: Path, card: dict) -> None:
    atomic_write_text(path, json.dumps(card, indent=2, sort_keys=True) + "\n")


def loaders(cfg: dict, splits: dict, seed: int):
    """(train DataLoader, validation DataLoader, sample rate) as training builds them, from a
    resolved config and data_splits(...); also what the perf scripts time."""
    seg_seconds = cfg["data"]["segment_seconds"]
    probe = FolderDataset(splits["train"][:1])
    segment = int(round(seg_seconds * probe.sample_rate))
    common = dict(segment=segment, seed=seed, short_policy=cfg["data"]["short_policy"], downmix=cfg["data"]["downmix"])
    train_set = FolderDataset(splits["train"], dynamic_mixing=cfg["data"]["dynamic_mixing"],
                              babble=cfg["data"]["babble"], babble_voices=tuple(cfg["data"]["babble_voices"]),
                              eq=cfg["data"]["eq"], speed=cfg["data"]["speed"], **common)
    val_set = FolderDataset(splits["val"], **common)  # always the stored mixtures: comparable across runs
    if train_set.sample_rate != val_set.sample_rate:
        raise SepbenchError(f"train and validation sample rates differ ({train_set.sample_rate} vs {val_set.sample_rate})")
    bs, workers = cfg["optim"]["batch_size"], cfg["data"]["num_workers"]
    devices = cfg["trainer"]["devices"]
    # the training processes on this machine, each with its own loader ('auto' or -1: at least one)
    local = len(devices) if isinstance(devices, (list, tuple)) else max(1, devices if isinstance(devices, int) else 1)
    check_limits(train_set, seg_seconds, bs, workers, processes=local)
    sampler = GlobalBatchSampler(len(train_set), bs, seed)
    train = torch.utils.data.DataLoader(train_set, batch_size=bs, sampler=sampler, num_workers=workers)
    val = torch.utils.data.DataLoader(val_set, batch_size=bs, shuffle=False, num_workers=workers)
    return train, val, train_set.sample_rate


def train(recipe: str, data: str | Path, profile: str = "cpu", out: str | Path = "runs",
          overrides: list[str] | tuple = (), resume: bool = False, force: bool = False,
          progress: bool | None = None, extra_callbacks: list | tuple = ()) -> dict:
    """Train `recipe` on `data`; returns {'status', 'run_dir', 'best', 'card', 'metrics'}.

    Re-running a finished run is a no-op unless `force`. An unfinished run (last.ckpt, no
    complete card) is continued automatically; `resume=True` insists on a last.ckpt and also
    extends a finished run (e.g. with a larger trainer.max_epochs). `extra_callbacks` are more
    Lightning callbacks, e.g. the step timing of perf/gpu_check.py; they change no result.
    """
    cfg = config_mod.resolve(recipe, profile, overrides)
    run_dir = Path(out) / recipe / run_folder(profile, cfg["seed"])  # one folder per seed (recipes/runs.py)
    if _launch_rank() > 0:  # a DDP process started by rank 0, which holds the lock and moved nothing
        return _train(recipe, data, profile, cfg, run_dir, resume, force=False, progress=progress,
                      extra_callbacks=extra_callbacks)
    with exclusive_lock(run_dir.parent, f"training of {recipe}/{run_dir.name}", name=f".{run_dir.name}.lock"):
        _restore_interrupted_force(run_dir)
        return _train(recipe, data, profile, cfg, run_dir, resume, force, progress, extra_callbacks)


def _launch_rank() -> int:
    """This process's rank when a launcher (Lightning's DDP, torchrun, SLURM) started it; 0 otherwise."""
    return max(int(os.environ.get(k, 0) or 0) for k in ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID"))


def _aside(run_dir: Path) -> Path:
    return run_dir.with_name(f".{run_dir.name}.replaced")


def _restore_interrupted_force(run_dir: Path) -> None:
    """A --force run killed before its first checkpoint left the old run aside: put it back."""
    old = _aside(run_dir)
    if not old.exists():
        return
    if (run_dir / "best.pt").exists():
        shutil.rmtree(old)
        return
    if run_dir.exists():
        shutil.rmtree(run_dir)
    old.rename(run_dir)
    print(f"{run_dir}: restored the previous run (a --force retraining stopped before its first checkpoint)",
          file=sys.stderr)


def _train(recipe, data, profile, cfg, run_dir: Path, resume: bool, force: bool, progress,
           extra_callbacks=()) -> dict:
    card_path, last, best = run_dir / "card.json", run_dir / "last.ckpt", run_dir / "best.pt"
    card = None if force or resume else finished_run(run_dir)
    if card:
        print(f"{recipe}/{profile}: already trained ({run_dir}); --force to retrain", file=sys.stderr)
        return {"status": "skipped", "run_dir": run_dir, "best": best, "card": card, "metrics": card.get("metrics", {})}
    resume_from = None if force else _resume_point(run_dir, last)
    if resume and resume_from is None:
        raise SepbenchError(f"{last}: nothing to resume (no last checkpoint)")
    if resume_from and (run_dir / "config.yaml").exists():
        diffs = _config_diff(yaml.safe_load((run_dir / "config.yaml").read_text()), cfg)
        if diffs:
            raise SepbenchError(f"{run_dir}: holds an unfinished run with another config ({'; '.join(diffs)}); "
                                "use --force to start over")

    if resume_from is not None:
        done = _check_resumable(resume_from)
        print(f"{recipe}/{profile}: resuming from {resume_from.name} after epoch {done} "
              f"(epochs count from 1, as on the screen)", file=sys.stderr)
    seed = int(cfg["seed"])
    pl.seed_everything(seed, workers=True, verbose=False)
    splits = data_splits(data, cfg["data"]["val_fraction"], seed)
    train_loader, val_loader, sample_rate = loaders(cfg, splits, seed)
    model_args = config_mod.model_args(recipe, sample_rate, cfg["model"])
    try:
        model = get(recipe).build(**model_args)
    except (TypeError, ValueError, RuntimeError, ZeroDivisionError, IndexError) as exc:
        raise SepbenchError(f"recipe {recipe!r}: cannot build the model from its model: config "
                            f"({' '.join(str(exc).split())[:200]})") from None
    n_params = sum(p.numel() for p in model.parameters())

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["optim"]["lr"], weight_decay=cfg["optim"]["weight_decay"])
    o = cfg["optim"]
    scheduler = None  # cosine: set per step by CosineSchedule
    if o["schedule"] == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, factor=o["plateau_factor"], patience=o["plateau_patience"])
    system_cls = get(recipe).system_class()
    system = system_cls(model, optimizer, build_loss(cfg["loss"], sample_rate), train_loader, val_loader,
                        scheduler=scheduler)
    if cfg["trainer"]["compile"]:
        system.model = torch.compile(model)  # `model` stays the uncompiled handle for export

    t = cfg["trainer"]
    interactive = sys.stderr.isatty() if progress is None else progress
    budget = TimeBudget(t["max_minutes"])
    meta = {"profile": profile, "seed": seed, "config": cfg}
    best_cb = BestExport(best, recipe, model_args, sample_rate, meta)
    callbacks = [budget, best_cb, ReplaceOld(best, _aside(run_dir)), EpochLog(run_dir / "log.csv", budget, t["max_epochs"], echo=not interactive),
                 EarlyStopping("val_loss", patience=t["early_stop_patience"]),
                 ModelCheckpoint(dirpath=run_dir, filename="last", save_top_k=1, monitor=None,
                                 save_on_train_epoch_end=True, enable_version_counter=False)]
    callbacks += list(extra_callbacks)
    if o["schedule"] == "cosine":
        callbacks.append(CosineSchedule(o["lr"], o["warmup_steps"], o["final_lr_factor"], budget))
    if t["logger"] == "tensorboard":
        # version="": every session of a run writes into the same folder, so a resumed run
        # continues its curves instead of showing up as another TensorBoard run.
        logger = TensorBoardLogger(run_dir, name="tensorboard", version="", default_hp_metric=False)
        callbacks.append(TensorBoardExtras(val_loader.dataset, sample_rate, t["tb_audio_every"]))
    else:
        logger = CSVLogger(run_dir, name="lightning_logs")
    for noisy in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*(does not have many workers|Checkpoint directory|LeafSpec|logging interval"
                            r"|ended before the epoch ended).*")  # SeparationSystem resumes mid-epoch itself
    try:
        strategy = t["strategy"]
        if strategy == "ddp" and get(recipe).find_unused_parameters:
            strategy = "ddp_find_unused_parameters_true"  # the recipe says a step leaves some unused
        trainer = pl.Trainer(
            max_epochs=t["max_epochs"], limit_train_batches=t["limit_train_batches"],
            limit_val_batches=t["limit_val_batches"], accelerator=t["accelerator"], devices=t["devices"],
            num_nodes=t["num_nodes"], strategy=strategy, precision=t["precision"],
            gradient_clip_val=cfg["optim"]["grad_clip"], callbacks=callbacks, num_sanity_val_steps=0,
            logger=logger, enable_progress_bar=interactive,
            default_root_dir=run_dir,  # SLURM's SIGUSR1 hpc_ckpt lands in the run, not the submit dir
            use_distributed_sampler=False,  # GlobalBatchSampler shards by rank itself
            enable_model_summary=False, deterministic=False, plugins=[AtomicCheckpointIO()])
    except Exception as exc:  # Lightning raises MisconfigurationException for e.g. a missing GPU
        raise SepbenchError(f"cannot set up training: {str(exc).splitlines()[0]}") from None

    # Everything that can fail on the inputs has been checked: only now may --force touch the old
    # run. It waits aside until the new run's first best.pt (ReplaceOld), and comes back if the new
    # run stops before that, even after kill -9 (_restore_interrupted_force on the next call).
    replaced = None
    if force and run_dir.exists() and trainer.is_global_zero:
        replaced = _aside(run_dir)
        run_dir.rename(replaced)
    try:  # from here on, a failure puts the old run back
        data_hash = content_hash(splits["train"] + splits["val"])
        card = {"recipe": recipe, "profile": profile, "model_args": model_args, "n_params": n_params,
                "sample_rate": sample_rate, "data": {"path": str(Path(data).resolve()), "hash": data_hash,
                "n_train": len(train_loader.dataset), "n_val": len(val_loader.dataset)},
                "seed": seed, "git_commit": git_commit(), "versions": versions(), "status": "running"}
        if trainer.is_global_zero:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / "config.yaml", config_mod.dump(cfg))
            _write_card(card_path, card)

        started = time.time()
        with naming(run_dir):  # Lightning's logger writes metrics.csv itself: a full disk names no file
            trainer.fit(system, ckpt_path=resume_from, weights_only=True)
    except BaseException:
        if replaced is not None and trainer.is_global_zero:
            # On a disk gone read-only this fails too: the next call puts the old run back, and
            # the error said is the first one, not that of the cleanup.
            with contextlib.suppress(OSError):
                _restore_interrupted_force(run_dir)
        raise
    if replaced is not None and trainer.is_global_zero:
        _restore_interrupted_force(run_dir)
    if trainer.interrupted:  # Lightning swallows Ctrl-C; the run is resumable, not complete
        raise KeyboardInterrupt
    stop = "time budget" if budget.exhausted else (
        "early stopping" if trainer.current_epoch < t["max_epochs"] else "max epochs")
    metrics = {"best_val_loss": best_cb.best, "best_val_sisdri": best_cb.best_sisdri, "best_epoch": best_cb.best_epoch}
    card.update(status="complete", stop_reason=stop, epochs=trainer.current_epoch, best_epoch=best_cb.best_epoch,
                best_val_loss=best_cb.best, train_seconds=round(budget.elapsed, 1),
                session_seconds=round(time.time() - started, 1), metrics=metrics)
    if trainer.is_global_zero:
        _write_card(card_path, card)
    return {"status": "trained", "run_dir": run_dir, "best": best, "card": card, "metrics": metrics,
            "global_rank": trainer.global_rank}
