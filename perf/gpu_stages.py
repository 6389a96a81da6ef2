"""The stages of the prepared GPU check (perf/gpu_check.py runs them): each writes its figures
into the report, and the report is rewritten after every stage, so a run cut short keeps what it
did. A stage that fails is recorded with its reason and the check goes on, unless the rest
depends on it."""
from __future__ import annotations

import contextlib
import datetime
import gc
import io
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
import time
import traceback
from pathlib import Path

import gpu_carry
from gpu_report import _f, markdown

RECIPES = ("conv_tasnet", "lstm_mask", "spec_unet")
# The recipe also trained in fp32: Conv-TasNet, whose paper claims to beat the ideal ratio mask,
# and whose convolutions are where bf16 should pay most.
FP32_RECIPE = "conv_tasnet"
# The real run's data set: scripts/make_real_dev.sh's recipe (800 + 200 clips of 4 s at 8 kHz).
REAL_DATA = {"n_train": 800, "n_test": 200, "seconds": 4.0, "sr": 8000, "snrs": "-5,0,5,10", "seed": 0}
# 2 s, not less: STOI needs 30 non-silent frames and fails a row on shorter clips.
DRY_DATA = {"n_train": 24, "n_test": 6, "seconds": 2.0, "sr": 8000, "snrs": "-5,0,5,10", "seed": 0}
EVAL_BATCH = 16  # `sepbench evaluate`'s default on a GPU; named, so the dry run takes the same batched path
ROW_COST_CLIPS = {"real": 32, "dry": 6}
# Equal minutes for every run: neither early stopping nor an epoch cap may end one first.
EQUAL_MINUTES = ["trainer.early_stop_patience=1000000", "trainer.max_epochs=1000000"]


class StopCheck(Exception):
    """A stage the rest depends on failed."""


def runs_planned() -> list[tuple[str, str, str]]:
    """(tag, recipe, precision), most important first: a run cut short still has Conv-TasNet's
    bf16 and fp32 pair."""
    bf16 = [(f"{r}-bf16", r, "bf16-mixed") for r in RECIPES]
    return [bf16[0], (f"{FP32_RECIPE}-fp32", FP32_RECIPE, "32-true"), *bf16[1:]]


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _finite(x) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


class Check:
    def __init__(self, args, plan: dict, started: float):
        self.args, self.dry, self.out = args, args.dry_run, args.out
        self.work = args.work or Path(tempfile.mkdtemp(prefix="sepbench-gpu-check-"))
        self.own_work = args.work is None
        self.work.mkdir(parents=True, exist_ok=True)
        self.profile = "smoke" if self.dry else "gpu"
        self.data_spec = DRY_DATA if self.dry else REAL_DATA
        self.started = started
        self.report = {"schema": 1, "status": "running", "dry_run": self.dry, "started": _now(), "plan": plan,
                       "profile": self.profile, "stages": [], "errors": [], "trainings": []}
        self.device = None
        self.failed = False

    # -- bookkeeping
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def write(self) -> None:
        self.report["elapsed_s"] = round(self.elapsed(), 1)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "report.json").write_text(json.dumps(self.report, indent=2, default=str) + "\n")
        (self.out / "report.md").write_text(markdown(self.report))

    def stage(self, name: str, fn, fatal: bool = False):
        """Run one stage; a failure is recorded (its traceback goes to the log), the report
        rewritten, and the check goes on unless the stage is `fatal` for the rest."""
        budget = self.report["plan"]["budget_s"]
        if self.elapsed() > budget:
            self.report["stages"].append({"name": name, "status": "skipped", "seconds": 0.0,
                                          "error": f"over the {budget / 60:g}-minute budget"})
            self.report["errors"].append(f"{name}: skipped, over the {budget / 60:g}-minute budget")
            self.failed = True
            self.write()
            return None
        print(f"\n== {name} (at {self.elapsed():.0f} s)", flush=True)
        t = time.monotonic()
        record = {"name": name, "status": "ok"}
        try:
            return fn()
        except Exception as exc:  # recorded and reported: one stage's failure must not lose the others' figures
            traceback.print_exc()
            message = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            record.update(status="failed", error=message)
            self.report["errors"].append(f"{name}: {message}")
            self.failed = True
            if fatal:
                raise StopCheck(name) from None
            return None
        finally:
            record["seconds"] = round(time.monotonic() - t, 1)
            self.report["stages"].append(record)
            self.write()

    # -- stages
    def install(self) -> None:
        from gpu_install import install, plan_only

        if self.dry:
            self.report["install"] = plan_only(self.args.carry)
            return
        size = gpu_carry.carried_size(self.args.carry)
        print(size["line"])
        build = self.args.carry / "BUILD.json"
        self.report["carry"] = {**size, "build": json.loads(build.read_text()) if build.is_file() else None}
        self.report["install"] = install(self.args.carry, self.work / "site")

    def dependencies(self) -> None:
        from gpu_install import check_imports, verify

        self.report["dependencies"] = {**verify(), "imports": check_imports()}

    def machine(self) -> None:
        import numpy
        import pytorch_lightning
        import torch

        from recipes.checkpoint import git_commit

        cuda = torch.cuda.is_available() and not self.dry
        self.device = torch.device("cuda" if cuda else "cpu")
        info = {"date": _now(), "host": platform.node(), "python": platform.python_version(),
                "cpu_cores": os.cpu_count(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version() if cuda else None,
                "lightning": pytorch_lightning.__version__, "numpy": numpy.__version__, "git_commit": git_commit(),
                "device": str(self.device),
                # What "fp32" means on this GPU: cuDNN convolutions use TF32 unless told not to.
                "float32_matmul_precision": torch.get_float32_matmul_precision(),
                "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}
        if cuda:
            props = torch.cuda.get_device_properties(0)
            info.update(gpu=torch.cuda.get_device_name(0), gpu_memory_mib=round(props.total_memory / 2**20),
                        gpu_capability=f"{props.major}.{props.minor}", gpu_multiprocessors=props.multi_processor_count)
            smi = shutil.which("nvidia-smi")
            query = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                                   capture_output=True, text=True) if smi else None
            ok = query is not None and query.returncode == 0
            info["nvidia_smi"] = (query.stdout.strip() if ok
                                  else f"nvidia-smi {'not found' if not smi else 'failed: ' + query.stderr.strip()[:200]}")
            info["driver"] = info["nvidia_smi"].split(", ")[1] if ok else None
        else:
            info.update(gpu=None, driver=None, note="dry run on the CPU: no GPU figures (memory, CUDA events)")
        self.report["machine"] = info
        print(json.dumps(info, indent=2))

    def prepare(self) -> None:
        from benchmark import cli

        speech, noise = self._sources()
        data, spec = self.work / "data", self.data_spec
        argv = ["prepare", "--speech", str(speech), "--noise", str(noise), "--out", str(data),
                "--n-train", str(spec["n_train"]), "--n-test", str(spec["n_test"]), "--seconds", str(spec["seconds"]),
                "--sr", str(spec["sr"]), "--snrs", spec["snrs"], "--seed", str(spec["seed"])]
        t = time.monotonic()
        if cli.main(argv) != 0:
            raise RuntimeError(f"sepbench {' '.join(argv)} failed (its error is above)")
        self.report["data"] = {**spec, "command": "sepbench " + " ".join(argv), "prepare_s": round(time.monotonic() - t, 1),
                               "sources": "generated (demo-data voices and noises)" if self.dry
                               else f"{self.args.carry.name}/sources: a subset of data/real_dev_sources (perf/gpu_carry.py)"}
        self.data = data

    def _sources(self) -> tuple[Path, Path]:
        if not self.dry:
            return self.args.carry / "sources" / "speech", self.args.carry / "sources" / "noise"
        from benchmark.data.demo import generate

        made = self.work / "generated"
        with contextlib.redirect_stdout(io.StringIO()):
            generate(made, n_train=10, n_test=1, seconds=3.0, sample_rate=8000, snrs=[0.0], seed=1)
        speech, noise = self.work / "sources" / "speech", self.work / "sources" / "noise"
        for folder in (speech, noise):
            folder.mkdir(parents=True)
        for clip in sorted((made / "train").iterdir()):
            shutil.copy(clip / "voice.wav", speech / f"{clip.name}.wav")
            shutil.copy(clip / "noise.wav", noise / f"{clip.name}.wav")
        return speech, noise

    def oracle_val(self) -> None:
        """The oracle IRM's voice SI-SDRi on the validation crops training scores itself on."""
        import numpy as np
        import torch

        from benchmark.scoring import references
        from recipes import config
        from recipes.data import FolderDataset, data_splits
        from recipes.losses import si_sdr

        keys = set()
        for recipe in RECIPES:
            d = config.resolve(recipe, self.profile)["data"]
            keys.add((d["val_fraction"], d["segment_seconds"], d["short_policy"], d["downmix"]))
        if len(keys) != 1:
            raise RuntimeError(f"the recipes' validation crops differ ({sorted(keys)}): one oracle cannot serve all")
        fraction, seconds, policy, downmix = keys.pop()
        seed = int(config.resolve(RECIPES[0], self.profile)["seed"])
        splits = data_splits(self.data, fraction, seed)
        probe = FolderDataset(splits["val"][:1])
        val = FolderDataset(splits["val"], segment=int(round(seconds * probe.sample_rate)), seed=seed,
                            short_policy=policy, downmix=downmix)
        gains = []
        for i in range(len(val)):
            mix, sources = val[i]
            est = references.estimate("oracle_irm", mix.numpy(), sources.numpy(), val.sample_rate)
            voice = torch.from_numpy(np.asarray(est[0], np.float32))
            gains.append(float(si_sdr(voice, sources[0]) - si_sdr(mix, sources[0])))
        self.report["oracle"] = {"val_irm_sisdri": float(np.mean(gains)), "val_clips": len(gains),
                                 "val_crop_s": seconds}

    def train(self, tag: str, recipe: str, precision: str) -> None:
        import torch
        from gpu_timing import StepTimer

        from recipes import config
        from recipes.train import train

        overrides = [f"trainer.max_minutes={self.args.minutes}", f"trainer.precision={precision}", *EQUAL_MINUTES]
        cfg = config.resolve(recipe, self.profile, overrides)
        cuda = self.device.type == "cuda"
        if cuda:
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        timer = StepTimer(warmup=2 if self.dry else 5)
        result = train(recipe, self.data, profile=self.profile, out=self.work / "runs" / tag, overrides=overrides,
                       force=True, progress=False, extra_callbacks=[timer])
        card, figures = result["card"], timer.figures()
        entry = {"tag": tag, "recipe": recipe, "precision": precision, "profile": self.profile,
                 "run_dir": str(result["run_dir"]), "minutes": self.args.minutes,
                 "batch_size": cfg["optim"]["batch_size"], "segment_s": cfg["data"]["segment_seconds"],
                 "num_workers": cfg["data"]["num_workers"], "dynamic_mixing": cfg["data"]["dynamic_mixing"],
                 "n_params": card["n_params"], "epochs": card["epochs"], "stop_reason": card["stop_reason"],
                 "train_seconds": card["train_seconds"], "best_epoch": card["best_epoch"],
                 "val_sisdri": _finite(result["metrics"]["best_val_sisdri"]),
                 **figures, "audio_s_per_s": figures["samples_per_s"] * cfg["data"]["segment_seconds"],
                 "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
                 "peak_gpu_reserved_mib": torch.cuda.max_memory_reserved() / 2**20 if cuda else None}
        irm = self.report.get("oracle", {}).get("val_irm_sisdri")
        entry["val_share_of_irm"] = entry["val_sisdri"] / irm if irm and entry["val_sisdri"] is not None else None
        self.report["trainings"].append(entry)
        del result
        print(f"{tag}: {entry['steps_per_s']:.2f} steps/s, {entry['samples_per_s']:.1f} samples/s, "
              f"busy {100 * entry['busy_share']:.0f} %, val SI-SDRi {_f(entry['val_sisdri'], unit=' dB')}, "
              f"stopped by {entry['stop_reason']}", flush=True)

    def same_batch(self) -> None:
        import torch
        from gpu_timing import same_batch

        from recipes import config, get
        from recipes.data import data_splits
        from recipes.losses import build_loss
        from recipes.train import loaders

        cfg = config.resolve(FP32_RECIPE, self.profile, ["data.num_workers=0"])
        seed = int(cfg["seed"])
        train_loader, _, sr = loaders(cfg, data_splits(self.data, cfg["data"]["val_fraction"], seed), seed)
        torch.manual_seed(seed)
        model = get(FP32_RECIPE).build(**config.model_args(FP32_RECIPE, sr, cfg["model"]))
        figures = same_batch(model, build_loss(cfg["loss"], sr), next(iter(train_loader)), self.device,
                             cfg["optim"]["grad_clip"], steps=3 if self.dry else 10, warmup=1 if self.dry else 3)
        self.report.setdefault("bf16_vs_fp32", {})["same_batch"] = {"recipe": FP32_RECIPE, **figures}

    def evaluate(self) -> None:
        """`sepbench evaluate`: the references once, then each run alone into the same folder
        (the mixture's scores are cached there), so each run has its own wall time."""
        import pandas as pd

        from benchmark import cli

        board = self.work / "leaderboard"
        common = ["--data", str(self.data), "--out", str(board), "--device", self.device.type,
                  "--batch", str(EVAL_BATCH)]
        if self.dry:
            common += ["--jobs", "1"]  # 2 busy cores: spawning workers would cost more than it saves
        evals = self.report["evaluation"] = {"commands": []}

        def run(extra: list[str]):
            argv = ["evaluate", *common, *extra]
            evals["commands"].append("sepbench " + " ".join(argv))
            t = time.monotonic()
            code = cli.main(argv)
            if code != 0:
                raise RuntimeError(f"sepbench {' '.join(argv)} exited {code} (its error is above)")
            rows = pd.read_csv(board / "results.csv")
            rows["failure_reason"] = rows["failure_reason"].fillna("")
            return rows, time.monotonic() - t

        refs, seconds = run(["--references-only"])
        evals["references_s"] = round(seconds, 1)
        oracle = refs[refs["model"] == "oracle_irm"]
        irm = float(oracle["voice_sisdri"].mean())
        self.report.setdefault("oracle", {}).update(test_irm_sisdri=irm, test_clips=len(oracle))
        for entry in self.report["trainings"]:
            rows, seconds = run(["--runs", str(self.work / "runs" / entry["tag"]), "--no-references"])
            rows = rows[rows["kind"] == "trained"]
            separated = rows[rows["sep_seconds"].notna()]  # a failed separation has no time (a metric may fail alone)
            separation = float(separated["sep_seconds"].sum())
            entry["test_sisdri"] = _finite(rows["voice_sisdri"].mean())  # over the clips it was computed on
            entry["test_share_of_irm"] = entry["test_sisdri"] / irm if entry["test_sisdri"] is not None else None
            entry["eval"] = {"rows": len(rows), "failed_separations": len(rows) - len(separated),
                             "rows_with_a_failed_metric": int((rows["failure_reason"] != "").sum()),
                             "voice_sisdri_rows": int(rows["voice_sisdri"].notna().sum()), "wall_s": round(seconds, 2),
                             "ms_per_row": 1000 * seconds / max(1, len(rows)), "separation_s": separation,
                             "separation_share_of_wall": separation / seconds}
        failed = [f"{t['tag']} {t['eval']['failed_separations']}" for t in self.report["trainings"]
                  if t["eval"]["failed_separations"]]
        if failed:
            raise RuntimeError(f"test clips that failed to separate: {', '.join(failed)}")

    def row_costs(self) -> None:
        """Separation against metrics per row, one process, for every trained run (goal: separation
        under 10 % of a row's cost)."""
        from gpu_timing import row_costs

        from recipes.folder import load_split

        clips = load_split(self.data / "test")[:ROW_COST_CLIPS["dry" if self.dry else "real"]]
        for entry in self.report["trainings"]:
            entry["row_cost"] = costs = row_costs(Path(entry["run_dir"]) / "best.pt", clips, self.device, EVAL_BATCH)
            costs["goal_met"] = costs["separation_share"] < 0.10
            print(f"{entry['tag']}: separation {costs['separation_ms_per_row']:.2f} ms/row (alone "
                  f"{costs['separation_ms_per_row_alone']:.2f}), metrics {costs['metrics_ms_per_row']:.1f} ms/row: "
                  f"separation {100 * costs['separation_share']:.1f} % of the row", flush=True)

    def compare_precisions(self) -> None:
        runs = {t["precision"]: t for t in self.report["trainings"] if t["recipe"] == FP32_RECIPE}
        if set(runs) != {"bf16-mixed", "32-true"}:
            raise RuntimeError(f"{FP32_RECIPE}: needs both its bf16-mixed and 32-true runs, has {sorted(runs)}")
        keys = ("steps_per_s", "samples_per_s", "step_ms_median", "busy_share", "peak_gpu_mib", "val_sisdri",
                "test_sisdri")
        same = {p: {k: runs[p].get(k) for k in keys} for p in ("bf16-mixed", "32-true")}
        ratio = {k: same["bf16-mixed"][k] / same["32-true"][k] for k in ("steps_per_s", "samples_per_s", "peak_gpu_mib")
                 if same["32-true"][k]}
        self.report.setdefault("bf16_vs_fp32", {})["same_minutes"] = {
            "recipe": FP32_RECIPE, "minutes": self.args.minutes, **same, "bf16_over_fp32": ratio}

    def run(self) -> int:
        try:
            self.stage("install", self.install, fatal=True)
            self.stage("dependencies", self.dependencies, fatal=True)
            self.stage("machine", self.machine, fatal=True)
            self.stage("prepare", self.prepare, fatal=True)
            self.stage("oracle on validation crops", self.oracle_val)
            for tag, recipe, precision in runs_planned():
                self.stage(f"train {tag}", lambda: self.train(tag, recipe, precision))
            self.stage("bf16 vs fp32 on one batch", self.same_batch)
            if self.report["trainings"]:
                self.stage("evaluate", self.evaluate)
                self.stage("separation vs metrics per row", self.row_costs)
            self.stage("bf16 vs fp32 at the same minutes", self.compare_precisions)
        except StopCheck:
            pass
        budget = self.report["plan"]["budget_s"]
        if self.elapsed() > budget:  # the device call is sized to the budget: over it, a rerun may be cut off
            self.report["errors"].append(f"took {self.elapsed():.0f} s, over the {budget:.0f} s budget: lower --minutes")
            self.failed = True
        self.report["status"] = "failed" if self.failed else "complete"
        self.report["finished"] = _now()
        self.write()
        print(f"\ngpu check {self.report['status']} in {self.elapsed():.0f} s (budget {budget:.0f} s); "
              f"report: {self.out / 'report.md'}")
        for error in self.report["errors"]:
            print(f"  error: {error}")
        if self.own_work:
            shutil.rmtree(self.work, ignore_errors=True)
        return 1 if self.failed else 0
