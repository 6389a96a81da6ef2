"""Timing for the prepared GPU check: where a training's wall time goes, and bf16 against fp32 on
one batch.

StepTimer marks the start and end of every training step (on_train_batch_start: the batch has
been fetched from the DataLoader and moved to the device; on_train_batch_end: the optimizer step
is done). On a GPU the marks are CUDA events, so the times are those of the GPU's own timeline:
the host queues kernels ahead of the GPU, and host clocks around a step would time the queueing,
not the work. Between two steps of one epoch the GPU has nothing to do until the next batch
arrives: that gap is the time the GPU waits for the data loader (plus Lightning's own
bookkeeping between steps, which is small). Gaps across an epoch boundary hold the validation and
the DataLoader's restart, and are counted apart. Inside a step the GPU counts as busy, also where
it idles because the host launches kernels slower than they run, so a launch-bound model reads
busier than it is. On the CPU (the dry run) the same marks are host clocks, which there do time
the work itself.
"""
from __future__ import annotations

import copy
import statistics
import time

import pytorch_lightning as pl
import torch

WARMUP_STEPS = 5  # left out of the rates: cuDNN's algorithm search, the allocator growing, lazy inits


class StepTimer(pl.Callback):
    def __init__(self, warmup: int = WARMUP_STEPS):
        self.warmup = warmup
        self.steps: list[tuple] = []  # (epoch, batch size, host start, host end, mark start, mark end)
        self.cuda = False
        self._open = None

    def _mark(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def on_train_start(self, trainer, pl_module) -> None:
        self.cuda = pl_module.device.type == "cuda"

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._open = (trainer.current_epoch, int(batch[0].shape[0]), time.perf_counter(), self._mark())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        epoch, size, host_start, mark_start = self._open
        mark_end = self._mark()
        self.steps.append((epoch, size, host_start, time.perf_counter(), mark_start, mark_end))

    def figures(self) -> dict:
        """Rates and shares over the steps after the warm-up; call after training."""
        if len(self.steps) <= self.warmup + 1:
            raise ValueError(f"only {len(self.steps)} training steps were timed, need more than {self.warmup + 1}: "
                             "give the training more time")
        if self.cuda:
            torch.cuda.synchronize()
            origin = self.steps[0][4]
            clock = [(origin.elapsed_time(s) / 1000.0, origin.elapsed_time(e) / 1000.0) for *_, s, e in self.steps]
        else:
            clock = [(s, e) for *_, s, e in self.steps]
        steps, clock = self.steps[self.warmup:], clock[self.warmup:]
        in_step = [e - s for s, e in clock]
        loader_gaps, epoch_gaps, host_waits = [], [], []
        for (prev, now), (c_prev, c_now) in zip(zip(steps, steps[1:]), zip(clock, clock[1:])):
            gap = max(0.0, c_now[0] - c_prev[1])
            if now[0] == prev[0]:
                loader_gaps.append(gap)
                host_waits.append(now[2] - prev[3])  # host: fetching the next batch and moving it
            else:
                epoch_gaps.append(gap)
        busy, waiting, turnover = sum(in_step), sum(loader_gaps), sum(epoch_gaps)
        wall = clock[-1][1] - clock[0][0]
        samples = sum(s[1] for s in steps)
        return {
            "timer": "cuda events" if self.cuda else "host clock",
            "steps_timed": len(steps), "warmup_steps_left_out": self.warmup, "steps_total": len(self.steps),
            "epochs_seen": len({s[0] for s in self.steps}),
            "wall_s": wall,
            # Throughput over the training loop, validation included: what a run of these minutes gets.
            "steps_per_s": len(steps) / wall, "samples_per_s": samples / wall,
            # Within epochs only: what the loader and the step allow, validation left out.
            "steps_per_s_in_epochs": len(steps) / (busy + waiting),
            "step_ms_median": 1000 * statistics.median(in_step),
            "loader_gap_ms_median": 1000 * statistics.median(loader_gaps) if loader_gaps else 0.0,
            "host_wait_ms_median": 1000 * statistics.median(host_waits) if host_waits else 0.0,
            "busy_share": busy / (busy + waiting),          # of the time within epochs
            "loader_wait_share": waiting / (busy + waiting),
            "wall_shares": {"in_step": busy / wall, "waiting_for_loader": waiting / wall,
                            "epoch_boundaries": turnover / wall},
        }


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def same_batch(model: torch.nn.Module, loss_fn, batch, device: torch.device, grad_clip: float | None,
               steps: int = 10, warmup: int = 3) -> dict:
    """bf16-mixed against fp32 on one batch, from the same initial weights: the time of a training
    step (forward, backward, clipping, Adam) and how far the bf16 forward's output is from the
    fp32 one, as the SI-SDR of one against the other (higher is closer; ~40 dB is visually exact).
    The autocast is the one Lightning's bf16-mixed uses; the losses compute in float32 themselves."""
    from recipes.losses import si_sdr

    mix, sources = (t.to(device) for t in batch)
    start = copy.deepcopy(model.state_dict())
    out, outputs = {}, {}
    for name, bf16 in (("bf16-mixed", True), ("32-true", False)):
        model.load_state_dict(start)
        model.to(device).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for i in range(warmup + steps):
            _sync(device)
            t = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with _autocast(device, bf16):
                loss = loss_fn(model(mix), sources)
            loss.backward()
            if grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            _sync(device)
            if i >= warmup:
                times.append(time.perf_counter() - t)
        model.load_state_dict(start)
        model.eval()
        with torch.no_grad(), _autocast(device, bf16):
            outputs[name] = model(mix).float()
        out[name] = {"step_ms_median": 1000 * statistics.median(times),
                     "peak_gpu_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None}
    agreement = si_sdr(outputs["bf16-mixed"][:, 0], outputs["32-true"][:, 0]).mean().item()
    return {"batch": int(mix.shape[0]), "samples_per_item": int(mix.shape[-1]), "steps": steps, **out,
            "speedup_bf16": out["32-true"]["step_ms_median"] / out["bf16-mixed"]["step_ms_median"],
            "bf16_output_vs_fp32_db": agreement}


def _time(fn, device: torch.device) -> tuple[object, float]:
    _sync(device)
    t = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t


def row_costs(checkpoint, clips, device: torch.device, batch: int) -> dict:
    """What one evaluated row costs, in this process: the model's separation on `device`, in
    batches of `batch` equal-length clips as `sepbench evaluate` runs it on a GPU and one clip
    alone, against the metrics' CPU time for the same estimate. The input scores (the mixture's
    own metrics) are computed once per clip for all models, so they are timed apart. All
    `clips` must have one length (`sepbench prepare` cuts them so)."""
    import numpy as np

    from benchmark.scoring import metrics
    from benchmark.separate.core import separate, separate_clip
    from recipes.checkpoint import load_model
    from recipes.data import FolderDataset

    model = load_model(checkpoint)[0].to(device).eval()
    data = FolderDataset(clips)
    if len(set(data.lengths)) != 1:
        raise ValueError(f"row_costs needs clips of one length, got {sorted(set(data.lengths))}")
    sr, items = data.sample_rate, [data[i] for i in range(len(data))]
    mixes = np.stack([mix.numpy() for mix, _, _ in items])
    dev = device.type
    separate_clip(model, mixes[0], sr, device=dev)  # warm-up: cuDNN's algorithm search, the allocator
    separate(model, mixes[:batch], device=dev)
    alone = [_time(lambda m=m: separate_clip(model, m, sr, device=dev), device)[1] for m in mixes]
    estimates, batched = [], 0.0
    for k in range(0, len(mixes), batch):
        est, seconds = _time(lambda k=k: separate(model, mixes[k:k + batch], device=dev), device)
        estimates.extend(est)
        batched += seconds
    inputs_s, metrics_s, failures = [], [], 0
    for (mix, sources, _), est in zip(items, estimates):
        mix, sources = mix.numpy(), sources.numpy()
        inputs, seconds = _time(lambda: metrics.input_scores(sources, mix, sr), torch.device("cpu"))
        inputs_s.append(seconds)
        row, seconds = _time(lambda: metrics.score_clip(est, sources, mix, sr, inputs), torch.device("cpu"))
        metrics_s.append(seconds)
        failures += bool(row.get("failure_reason"))
    n = len(mixes)
    sep_ms, metrics_ms = 1000 * batched / n, 1000 * statistics.mean(metrics_s)
    return {"rows": n, "batch": batch, "clip_s": data.lengths[0] / sr,
            "separation_ms_per_row": sep_ms, "separation_ms_per_row_alone": 1000 * statistics.mean(alone),
            "metrics_ms_per_row": metrics_ms, "input_scores_ms_per_clip": 1000 * statistics.mean(inputs_s),
            "separation_share": sep_ms / (sep_ms + metrics_ms), "rows_with_a_failed_metric": failures}
