"""Job states from squeue, for submitit and for the waiting run_all. submitit's own watcher asks
sacct only, which needs an accounting database: without one (common on small clusters, and on
the test's one-node SLURM) sacct fails and every state reads UNKNOWN forever. squeue needs
nothing: it lists queued and running jobs, and with `--states all` those that ended within the
last MinJobAge seconds (300 by default), which the launcher, asking every few seconds, does not
miss. A job array is asked for by its id and answers one row per task ("12_0"), or one row for
tasks still pending together ("12_[1-3]")."""
from __future__ import annotations

import subprocess

from submitit.slurm.slurm import SlurmInfoWatcher, SlurmJob, read_job_id

# States in which a job still holds or waits for resources (squeue's long names). Anything else
# is an end: COMPLETED, FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ...
LIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
                  "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "PREEMPTED"})


def _command(ids) -> list[str]:
    return ["squeue", "--noheader", "--states", "all", "--format", "%i|%T", "--jobs", ",".join(sorted(ids))]


def parse(text: str) -> dict[str, str]:
    """{job or array task id: state}, array ranges spelled out task by task."""
    states = {}
    for line in text.splitlines():
        if "|" not in line:
            continue
        job_id, state = (x.strip() for x in line.split("|", 1))
        for part in read_job_id(job_id):  # ("12",), ("12", "0"), or ("12", "1", "3") for 12_[1-3]
            if len(part) == 1:
                states[part[0]] = state
            for task in range(int(part[1]), int(part[-1]) + 1) if len(part) > 1 else ():
                states[f"{part[0]}_{task}"] = state
    return states


def squeue_states(job_ids) -> dict[str, str]:
    """{job id: state} of the given jobs that squeue still knows, a job array's under its own id
    (the first live state of its tasks, else the first that did not complete, else COMPLETED) as
    well as task by task. Raises OSError or subprocess.CalledProcessError when squeue cannot be asked."""
    ids = {str(i) for i in job_ids}
    if not ids:
        return {}
    rows = parse(subprocess.run(_command(ids), capture_output=True, text=True, check=True, timeout=60).stdout)
    for main in ids - set(rows):
        tasks = [state for task, state in rows.items() if task.split("_")[0] == main]
        if tasks:
            rows[main] = next((s for s in tasks if s in LIVE), next((s for s in tasks if s != "COMPLETED"), "COMPLETED"))
    return rows


class SqueueWatcher(SlurmInfoWatcher):
    """submitit's watcher (one squeue call for all the jobs it follows, at most every delay_s),
    asking squeue instead of sacct; a job squeue no longer lists keeps the last state seen."""

    def _make_command(self):
        ids = {x.split("_")[0] for x in self._registered - self._finished}
        return _command(ids) if ids else None

    def read_info(self, string) -> dict[str, dict[str, str]]:
        text = string.decode() if isinstance(string, bytes) else string
        return {job_id: {"JobID": job_id, "State": state} for job_id, state in parse(text).items()}

    def is_done(self, job_id: str, mode: str = "standard") -> bool:
        # submitit's list of unfinished states lacks CONFIGURING, SUSPENDED, ...: such a job would
        # be taken as finished and never asked about again.
        state = self.get_state(job_id, mode=mode)
        return state != "UNKNOWN" and state.split()[0] not in LIVE


class Job(SlurmJob):
    watcher = SqueueWatcher(delay_s=1)
