"""--launcher slurm: one SLURM job per recipe x seed, submitted with submitit, each with the
resources of its profile; then the evaluation, after them (afterok): a job array of
`evaluate_shards` tasks, each scoring every N-th test clip, and one job, after the array, that
merges the shards into the leaderboard and builds the listening page. Waits and reports each
job's state as it changes (follow.py), unless --no-wait. What was submitted is recorded in
RUNS/.slurm/jobs.json (record.py), so that a re-run submits only what is missing.

Requeue: Lightning's SLURM plugin owns it. The jobs ask SLURM for SIGUSR1 `signal_delay_s`
before their time limit (and --requeue); Lightning, running in the job's own process, then saves
hpc_ckpt_N.ckpt mid-epoch into the run folder and runs `scontrol requeue`, and the requeued job
calls the same pickled `sepbench train`, which resumes from that checkpoint. submitit's own
mechanism listens on SIGUSR2, which these jobs never get, so the two never both act on one
signal; Lightning's was chosen because it keeps the steps of an unfinished epoch.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

from submitit import SlurmExecutor
from submitit.core.utils import pickle_load

from recipes.checkpoint import finished_run
from recipes.errors import SepbenchError
from recipes.lock import exclusive_lock

from . import Plan, Training, record, say, settings
from .follow import MERGE, SHARD, TRAIN, scancel, wait
from .jobs import MergeJob, ShardJob, TrainJob
from .queue import LIVE, Job, squeue_states

TOOLS = ("sbatch", "squeue", "scancel", "srun")
# Lightning's SLURMEnvironment requeues on this signal (its default requeue_signal).
REQUEUE_SIGNAL = "USR1"


class Executor(SlurmExecutor):
    job_class = Job  # states from squeue: no accounting database needed


def check(options: dict) -> None:
    """Before any work: the SLURM commands are here and the settings are valid."""
    missing = [f"`{tool}`" for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise SepbenchError(f"--launcher slurm: no {', '.join(missing)} on PATH (run on a machine that can "
                            "submit SLURM jobs, or use --launcher local)")
    # submitit takes the signal named here for its own requeue, and Lightning then leaves it alone.
    if os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "").upper().removeprefix("SIG") == REQUEUE_SIGNAL:
        raise SepbenchError(f"SUBMITIT_PREEMPT_SIGNAL={REQUEUE_SIGNAL}: submitit would take over the signal "
                            "Lightning saves and requeues on; unset it")
    _settings(options)


def _settings(options: dict) -> dict:
    return settings.load(options.get("launcher_config"), partition=options.get("partition"),
                         account=options.get("account"))


def train_resources(t: Training, cfg: dict, s: dict, time_min: int | None) -> dict:
    """A training job's resources, read from its resolved config: Lightning under SLURM wants one
    task per device (it checks), and the data loader's workers each want a core."""
    tr = cfg["trainer"]
    devices = len(tr["devices"]) if isinstance(tr["devices"], list) else tr["devices"]
    if isinstance(devices, bool) or not isinstance(devices, int) or devices < 1:
        raise SepbenchError(f"{t.what}: trainer.devices={tr['devices']!r}: a SLURM job needs a number of devices "
                            "per node (--devices N)")
    budget = tr["max_minutes"]
    limit = time_min or (math.ceil(budget + s["budget_margin_min"]) if budget else s["train_time_min"])
    res = {"nodes": tr["num_nodes"], "ntasks_per_node": devices, "cpus_per_task": cfg["data"]["num_workers"] + 1,
           "time": limit}
    if tr["accelerator"] in ("gpu", "cuda"):
        res["gpus_per_node"] = devices
    return res


def evaluate_resources(s: dict) -> dict:
    res = {"nodes": 1, "ntasks_per_node": 1, "cpus_per_task": s["evaluate_cpus"], "time": s["evaluate_time_min"]}
    if s["evaluate_gpus"]:
        res["gpus_per_node"] = s["evaluate_gpus"]
    return res


def _common(s: dict) -> dict:
    params = {k: s[k] for k in ("partition", "account", "qos") if s[k]}
    if s["mem_gb"]:
        params["mem"] = f"{math.ceil(s['mem_gb'] * 1024)}M"
    if s["setup"]:
        params["setup"] = list(s["setup"])
    # --requeue: preemption and Lightning's `scontrol requeue` put the job back in the queue
    # even where the cluster's default (JobRequeue) would not; chdir: relative paths in the
    # pickled call mean what they mean here.
    params["additional_parameters"] = {"signal": f"{REQUEUE_SIGNAL}@{s['signal_delay_s']}", "requeue": True,
                                       "chdir": str(Path.cwd())}
    return params


def _submit(folder: Path, name: str, fn, params: dict, array: list | None = None) -> list[Job]:
    """One job (or, with `array`, one task per item, called with it) in `folder`. The folder is
    flat (no folder per job): the evaluation takes every folder two levels down RUNS for a run."""
    ex = Executor(folder=folder)
    # Since SLURM 22.05 srun no longer inherits sbatch's --cpus-per-task: without this the step
    # (the training, the scoring) would get one core of the cores the job holds.
    srun = [f"--cpus-per-task={params['cpus_per_task']}"]
    try:
        ex.update_parameters(job_name=name, srun_args=srun, **params)
        jobs = ex.map_array(fn, array) if array else [ex.submit(fn)]
    except Exception as exc:  # sbatch's refusal (bad partition, account, limits) as submitit relays it
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        why = next((ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else type(exc).__name__)
        raise SepbenchError(f"sbatch refused job {name}: {why}") from None
    # map_array returns submitit's own job class, which would ask sacct for the states.
    return [Job(folder, j.job_id) for j in jobs]


def _result(folder: Path, job_id: str):
    """What a finished job's function returned; None if it did not return (yet)."""
    path = Job(folder, job_id).paths.result_pickle
    try:
        outcome, value = pickle_load(path)
    except Exception:  # no result file, or a damaged one: no result
        return None
    return value if outcome == "success" else None


def run(plan: Plan, options: dict) -> list[str]:
    s = _settings(options)
    folder = plan.runs.resolve() / ".slurm"
    with exclusive_lock(folder, "slurm submission", name=".submit.lock"):
        jobs, failed = _submit_missing(plan, options, s, folder)
    if not jobs:
        return failed
    if not options.get("wait", True):
        say(f"not waiting (--no-wait); a re-run of the same command waits for these jobs or submits what is "
            f"missing; logs in {folder}/<job id>_0_log.err")
        return failed
    return failed + wait(jobs, s["poll_seconds"])


def _submit_missing(plan: Plan, options: dict, s: dict, folder: Path) -> tuple[dict, list[str]]:
    rec = record.load(folder)
    ev = rec["evaluation"]
    known = list(rec["trainings"].values()) + ([ev["merge"]] + ([ev["shards"]] if ev["shards"] else []) if ev else [])
    try:
        states = squeue_states(known)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SepbenchError(f"squeue: cannot ask for the states of the jobs in {folder / record.NAME} ({exc})") from None
    live = {job_id for job_id, state in states.items() if state in LIVE}
    common, jobs, failed, after, submitted = _common(s), {}, [], [], False
    for t in plan.trainings:
        old = rec["trainings"].get(str(t.run_dir.resolve()))
        if old in live:
            if plan.force:
                raise SepbenchError(f"{t.what}: job {old} is still {states[old]}; wait for it or `scancel {old}`, "
                                    "then --force")
            say(f"{t.what}: already queued as job {old} ({states[old]})")
            jobs[t.what], after = (TRAIN, Job(folder, old)), after + [old]
            continue
        if not plan.force and finished_run(t.run_dir):
            say(f"{t.what}: already trained; --force to retrain")
            continue
        if t.cfg is None:
            say(f"{t.what}: FAILED before submission: {t.problem}")
            failed.append(t.what)
            continue
        res = train_resources(t, t.cfg, s, options.get("slurm_time"))
        [job] = _submit(folder, f"sepbench-{t.run_dir.parent.name}-{t.run_dir.name}",
                        TrainJob(plan.sepbench, list(t.argv), plan.force), {**common, **res})
        rec["trainings"][str(t.run_dir.resolve())] = job.job_id
        record.save(folder, rec)  # after each: a later refusal must not forget the jobs already queued
        gpus = f", {res['gpus_per_node']} GPU(s) per node" if "gpus_per_node" in res else ""
        say(f"{t.what}: submitted job {job.job_id} ({res['nodes']} node(s) x {res['ntasks_per_node']} task(s), "
            f"{res['cpus_per_task']} CPU(s) per task{gpus}, {res['time']} min)")
        jobs[t.what], after, submitted = (TRAIN, job), after + [job.job_id], True
    jobs.update(_evaluation(plan, s, folder, rec, states, after, submitted))
    return jobs, failed


def _evaluation(plan: Plan, s: dict, folder: Path, rec: dict, states: dict, after: list[str], submitted: bool):
    """The evaluation's jobs to wait for: those already queued when they still fit (the same
    evaluation, after the same trainings, no shard failed), none when a finished one is current,
    else new ones (and the old ones cancelled)."""
    key = json.dumps({"runs": sorted(str(t.run_dir.resolve()) for t in plan.trainings), "finish": plan.finish_key},
                     sort_keys=True)
    ev = rec["evaluation"]
    same = ev is not None and ev["key"] == key and not plan.force
    if same and states.get(ev["merge"]) in LIVE and not submitted and set(after) <= set(ev["after"]):
        tasks = [f"{ev['shards']}_{k - 1}" for k in range(1, ev["n"] + 1)] if ev["shards"] else []
        if all(states.get(t, "COMPLETED") in LIVE | {"COMPLETED"} for t in tasks):
            say(f"evaluation: already queued as job {ev['merge']} ({states[ev['merge']]})")
            jobs = {f"evaluation shard {k}/{ev['n']}": (SHARD, Job(folder, t))
                    for k, t in enumerate(tasks, 1) if states.get(t) in LIVE}
            return {**jobs, "evaluation": (MERGE, Job(folder, ev["merge"]))}
    if same and not after:
        done = _result(folder, ev["merge"])
        if isinstance(done, dict) and not done["failed"] and done["inputs"] == plan.inputs():
            say(f"evaluation: up to date (job {ev['merge']}, nothing it read or wrote has changed); --force to redo it")
            return {}
    for old in (ev["shards"], ev["merge"]) if ev else ():
        if states.get(old) in LIVE:
            scancel(old)
            say(f"evaluation job {old} cancelled: replaced by one that waits for every training")
    n = min(s["evaluate_shards"], plan.test_clips())
    params = {**_common(s), **evaluate_resources(s)}
    jobs, array = {}, None
    if n > 1:
        shards = _submit(folder, "sepbench-evaluate-shard", ShardJob(plan.finish, n),
                         {**params, **_after(after)}, array=list(range(1, n + 1)))
        array = shards[0].job_id.split("_")[0]
        jobs = {f"evaluation shard {k}/{n}": (SHARD, job) for k, job in enumerate(shards, 1)}
        say(f"evaluation: submitted {n} shard jobs as array {array} ({params['cpus_per_task']} CPU(s) each)"
            + (f", after job(s) {', '.join(after)} succeed" if after else ""))
    try:
        [merge] = _submit(folder, "sepbench-evaluate", MergeJob(plan.finish, plan.inputs, n > 1),
                          {**params, **_after([array] if array else after)})
    except SepbenchError:
        if array:
            scancel(array)  # nothing would merge it, and the record does not know it yet
        raise
    rec["evaluation"] = {"key": key, "after": after, "shards": array, "n": n, "merge": merge.job_id}
    record.save(folder, rec)
    waits = f"array {array}" if array else ", ".join(after)
    say(f"evaluation: submitted job {merge.job_id}, " + ("the merge and listening page" if array else
        "the whole evaluation and listening page") + (f", after {waits} succeed" if waits else ""))
    return {**jobs, "evaluation": (MERGE, merge)}


def _after(job_ids: list[str]) -> dict:
    return {"dependency": "afterok:" + ":".join(job_ids)} if job_ids else {}
