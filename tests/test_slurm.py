"""`run_all.sh --launcher slurm` on a real one-node SLURM (slurmctld + slurmd + munge, started here
as root and stopped after): the trainings, the evaluation's shard array and its merge run as
jobs; a training signalled mid-epoch as at its time limit is requeued and resumes from its
checkpoint; the leaderboard equals the local launcher's; a re-run submits nothing.

Never skipped: without SLURM (scripts/system_packages.sh installs slurm-wlm and munge) or root it
fails and says why. The training that is requeued pauses in its second epoch until it gets
SLURM's signal (a sitecustomize.py the jobs load through the launcher's `setup` lines): a smoke
epoch lasts a fraction of a second, too short to hit from outside."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPES = "lstm_mask,conv_tasnet"
REQUEUED = "sepbench-lstm_mask-smoke"  # the job name the launcher gives lstm_mask's smoke run
SHARDS = 2
# Timing columns, and where the checkpoint lies: not scores.
NOT_SCORES = ["sep_seconds", "rtf", "checkpoint", "checkpoint_hash", "evaluated_at", "git_commit"]
DAEMONS = ("slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "sinfo", "munged", "munge", "unmunge")

HOOK = '''
import os, sys, time
from pathlib import Path

MARK = os.environ.get("SEPBENCH_TEST_PAUSE")
if MARK and os.environ.get("SLURM_JOB_NAME") == "%s" and not int(os.environ.get("SLURM_RESTART_COUNT") or 0):
    import importlib.abc, importlib.util

    def _patch(module):
        step = module.SeparationSystem.training_step

        def training_step(self, batch, batch_nb):
            # Second batch of the second epoch: wait for SLURM's signal (Lightning saves and
            # requeues, SLURM then sends SIGTERM), at most 2 minutes.
            if self.current_epoch == 1 and batch_nb == 1 and not Path(MARK).exists():
                Path(MARK).write_text(str(os.getpid()))
                deadline = time.time() + 120
                while not self.trainer.received_sigterm and time.time() < deadline:
                    time.sleep(0.05)
            return step(self, batch, batch_nb)
        module.SeparationSystem.training_step = training_step

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name != "recipes.system":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)
                _patch(module)
            spec.loader.exec_module = exec_module
            return spec
    sys.meta_path.insert(0, _Finder())
''' % REQUEUED


def _sh(*cmd, check=True, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.is_file() else f"(no {path})"


def _munge() -> int | None:
    """A working munged: the running one, or one started here (its PID, to stop it after)."""
    if subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode == 0:
        return None
    key, run = Path("/etc/munge/munge.key"), Path("/run/munge")
    if not key.is_file():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_bytes(secrets.token_bytes(1024))
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
    run.mkdir(parents=True, exist_ok=True)
    shutil.chown(run, "munge", "munge")
    started = _sh("runuser", "-u", "munge", "--", "/usr/sbin/munged", check=False)
    if started.returncode or subprocess.run("munge -n | unmunge", shell=True, capture_output=True).returncode:
        pytest.fail(f"munged does not start: {started.stderr.strip() or 'munge -n | unmunge fails'}")
    return int((run / "munged.pid").read_text())


def _stop(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A private one-node cluster (2 CPUs) whose configuration SLURM_CONF names for this process
    and its children; its job-completion log says which jobs ran and how they ended."""
    missing = [tool for tool in DAEMONS if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists()]
    if missing:
        pytest.fail(f"SLURM is not installed (no {', '.join(missing)}): run scripts/system_packages.sh")
    if os.geteuid() != 0:
        pytest.fail("starting slurmctld/slurmd needs root (this test runs SLURM as SlurmUser=root)")
    munged = _munge()
    tmp, host = tmp_path_factory.mktemp("slurm"), socket.gethostname().split(".")[0]
    for sub in ("state", "spool"):
        (tmp / sub).mkdir()
    conf = tmp / "slurm.conf"
    conf.write_text(f"""ClusterName=sepbench-test
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={tmp}/jobcomp.log
KillWait=5
StateSaveLocation={tmp}/state
SlurmdSpoolDir={tmp}/spool
SlurmctldPidFile={tmp}/slurmctld.pid
SlurmdPidFile={tmp}/slurmd.pid
SlurmctldLogFile={tmp}/slurmctld.log
SlurmdLogFile={tmp}/slurmd.log
NodeName={host} CPUs=2 RealMemory=20000 State=UNKNOWN
PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(conf)
    try:
        for daemon in ("slurmctld", "slurmd"):
            done = _sh(f"/usr/sbin/{daemon}", "-f", str(conf), check=False)
            if done.returncode:
                pytest.fail(f"{daemon} does not start: {done.stderr.strip()}\n{_tail(tmp / f'{daemon}.log')}")
        deadline = time.time() + 30
        while _sh("sinfo", "--noheader", "--format", "%T", check=False).stdout.strip() != "idle":
            if time.time() > deadline:
                pytest.fail(f"the node never became idle:\n{_tail(tmp / 'slurmctld.log')}\n{_tail(tmp / 'slurmd.log')}")
            time.sleep(0.5)
        yield tmp
    finally:
        subprocess.run(["scancel", "--user", "root"], capture_output=True, timeout=60)
        _stop(tmp / "slurmd.pid")
        _stop(tmp / "slurmctld.pid")
        if munged:
            os.kill(munged, signal.SIGTERM)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


def _jobcomp(slurm: Path) -> list[dict]:
    path = slurm / "jobcomp.log"
    lines = path.read_text().splitlines() if path.is_file() else []
    return [dict(field.split("=", 1) for field in line.split() if "=" in field) for line in lines]


def _run_all(data, where: Path, *extra) -> list[str]:
    return [str(ROOT / "run_all.sh"), "--data", str(data), "--profile", "smoke", "--recipes", RECIPES,
            "--runs", str(where / "runs"), "--out", str(where / "lb"), "--jobs", "1", *extra]


def _wait_for(what: str, check, proc, timeout: float):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"run_all ended (exit {proc.returncode}) before {what}:\n{err[-3000:]}")
        time.sleep(0.1)
    pytest.fail(f"no {what} within {timeout} s")


def _scores(results: Path) -> pd.DataFrame:
    df = pd.read_csv(results, keep_default_na=False, dtype=str).drop(columns=NOT_SCORES)
    return df.sort_values(["model", "profile", "seed", "clip_id"]).reset_index(drop=True)


@pytest.mark.slow
def test_slurm_launcher_requeue_shards_and_rerun(slurm, tiny_data, tmp_path, capsys):
    started = time.monotonic()
    local, cluster, hook = tmp_path / "local", tmp_path / "slurm", tmp_path / "hook"
    for folder in (local, cluster, hook):
        folder.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    mark = tmp_path / "paused"
    config = tmp_path / "cluster.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "evaluate_shards": SHARDS, "evaluate_cpus": 1, "evaluate_time_min": 15, "poll_seconds": 1,
        "setup": [f"export PYTHONPATH={hook}", f"export SEPBENCH_TEST_PAUSE={mark}"]}))
    slurm_cmd = _run_all(tiny_data, cluster, "--launcher", "slurm", "--launcher-config", str(config))
    on_slurm = subprocess.Popen(slurm_cmd, cwd=cluster, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    on_here = subprocess.Popen(_run_all(tiny_data, local), cwd=local, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        # The paused training: signalled as SLURM does before a time limit (SIGUSR1 to its step).
        _wait_for("pause in lstm_mask's second epoch", mark.exists, on_slurm, 240)
        record = json.loads((cluster / "runs" / ".slurm" / "jobs.json").read_text())
        job = record["trainings"][str((cluster / "runs" / "lstm_mask" / "smoke").resolve())]
        _sh("scancel", "--signal=USR1", job)
        # SLURM holds a requeued job back for 2 minutes (BeginTime); let it start again now.
        _wait_for("requeue", lambda: "PENDING" in _sh("squeue", "--noheader", "--format", "%T", "--jobs", job,
                                                       check=False).stdout, on_slurm, 60)
        _sh("scontrol", "update", f"JobId={job}", "StartTime=now")
        out, err = on_slurm.communicate(timeout=600)
        here_out, here_err = on_here.communicate(timeout=600)
    finally:
        for proc in (on_slurm, on_here):
            if proc.poll() is None:
                proc.kill()
    assert on_slurm.returncode == 0, err[-4000:]
    assert on_here.returncode == 0, here_err[-4000:]
    first_seconds = time.monotonic() - started

    # Every job ran under SLURM and ended COMPLETED; the requeued one first ended requeued (PENDING).
    comp = _jobcomp(slurm)
    by_name: dict[str, list[str]] = {}
    for row in comp:
        by_name.setdefault(row["Name"], []).append(row["JobState"])
    assert by_name == {REQUEUED: ["PENDING", "COMPLETED"], "sepbench-conv_tasnet-smoke": ["COMPLETED"],
                       "sepbench-evaluate-shard": ["COMPLETED"] * SHARDS, "sepbench-evaluate": ["COMPLETED"]}, comp
    assert sorted(r.get("ArrayTaskId") for r in comp if r["Name"] == "sepbench-evaluate-shard") == ["0", "1"]
    assert f"submitted {SHARDS} shard jobs as array" in err
    # Each job's states as they change, up to its end: 2 trainings, the shards, the merge.
    assert f"job {job} (lstm_mask): " in err and err.count("-> COMPLETED") == 2 + SHARDS + 1, err[-3000:]
    for k in range(1, SHARDS + 1):
        assert any((cluster / "lb" / "cache" / "shards" / str(SHARDS) / str(k)).glob("trained-*.csv"))
    # The merge scored nothing itself: every row (models, references) came from the shards.
    merge = record["evaluation"]["merge"]
    merge_log = (cluster / "runs" / ".slurm" / f"{merge}_0_log.out").read_text()
    from benchmark import baselines
    rows = 2 + 4 + len(baselines.available())  # the models, mixture and oracles, the pretrained rows installed
    assert merge_log.count(f"merged from {SHARDS} shards") == rows and " clips in " not in merge_log, merge_log

    # What the test's USR1 stands for: SLURM's warning before the time limit, which the job asks for.
    script = (cluster / "runs" / ".slurm" / f"{job}_submission.sh").read_text()
    assert "#SBATCH --signal=USR1@120" in script and "#SBATCH --requeue" in script, script
    # Resumed from Lightning's mid-epoch save, not restarted: epoch 1 (0-based) is logged once.
    run = cluster / "runs" / "lstm_mask" / "smoke"
    job_log = (cluster / "runs" / ".slurm" / f"{job}_0_log.err").read_text()
    assert "resuming from hpc_ckpt_1.ckpt after epoch 1" in job_log, job_log[-3000:]
    assert (run / "hpc_ckpt_1.ckpt").is_file()
    epochs = [int(line.split(",")[0]) for line in (run / "log.csv").read_text().splitlines()[1:]]
    assert epochs == [0, 1, 2], epochs

    # The same scores as the local launcher's, the requeued model's included.
    pd.testing.assert_frame_equal(_scores(cluster / "lb" / "results.csv"), _scores(local / "lb" / "results.csv"))
    assert (cluster / "lb" / "listen" / "index.html").is_file()

    # A re-run finds everything done and submits nothing.
    again = subprocess.run(slurm_cmd, cwd=cluster, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stderr.count("already trained") == 2 and "evaluation: up to date" in again.stderr, again.stderr
    assert "submitted" not in again.stderr
    assert len(_jobcomp(slurm)) == len(comp)
    assert _sh("squeue", "--noheader").stdout.strip() == ""
    with capsys.disabled():
        print(f"\n[test_slurm] first run (slurm and local side by side) {first_seconds:.0f} s, "
              f"whole test {time.monotonic() - started:.0f} s; load {os.getloadavg()[0]:.2f}", file=sys.stderr)


def test_bad_launcher_input_is_one_line(tmp_path, monkeypatch, capsys):
    """No SLURM commands on PATH, a mistyped setting, a slurm option with the local launcher:
    one line naming the cause, exit 2, before any data is made."""
    from benchmark import run_all
    from benchmark.launch import settings
    from recipes.errors import SepbenchError

    base = ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lb"), "--data", str(tmp_path / "none")]
    monkeypatch.setenv("PATH", str(tmp_path))
    assert run_all.main(base + ["--launcher", "slurm"]) == 2
    assert "--launcher slurm: no `sbatch`" in capsys.readouterr().err
    monkeypatch.undo()
    bad = tmp_path / "cluster.yaml"
    bad.write_text("evaluate_shard: 2\n")
    with pytest.raises(SepbenchError, match=f"{bad}: unknown launcher setting.*evaluate_shard"):
        settings.load(bad)
    bad.write_text("evaluate_shards: 0\n")
    with pytest.raises(SepbenchError, match="evaluate_shards=0: must be an integer >= 1"):
        settings.load(bad)
    assert run_all.main(base + ["--partition", "gpu"]) == 2
    err = capsys.readouterr().err
    assert "--partition: only with --launcher slurm" in err and "Traceback" not in err
    assert not (tmp_path / "lb").exists()


def test_squeue_rows_of_a_job_array_are_spelled_out_task_by_task():
    from benchmark.launch.queue import parse

    rows = parse("12_[1-3%4]|PENDING\n12_0|RUNNING\n13|COMPLETED\n")
    assert rows == {"12_0": "RUNNING", "12_1": "PENDING", "12_2": "PENDING", "12_3": "PENDING", "13": "COMPLETED"}
