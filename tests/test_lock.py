"""recipes/lock.py: one sepbench process per folder, refusals name the holder, and the kernel frees
the lock when the holder dies (kill -9 included)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from recipes.errors import SepbenchError
from recipes.lock import exclusive_lock

ROOT = Path(__file__).resolve().parents[1]

# Holds the lock until killed or its stdin closes; prints "held" once it has it.
HOLDER = """
import sys
from pathlib import Path
from recipes.lock import exclusive_lock
with exclusive_lock(Path(sys.argv[1]), "evaluation"):
    print("held", flush=True)
    sys.stdin.read()
"""


def _start_holder(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], cwd=ROOT, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _refusal(folder: Path) -> str:
    with pytest.raises(SepbenchError) as info:
        with exclusive_lock(folder, "evaluation"):
            pass
    return str(info.value)


def test_second_holder_is_refused_with_pid_and_lock_frees_on_exit(tmp_path):
    folder = tmp_path / "out"
    proc = _start_holder(folder)
    try:
        message = _refusal(folder)
        assert message == (f"{folder}: locked by another sepbench evaluation (PID {proc.pid}); "
                           "wait for it or stop it")
        assert "\n" not in message
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
    with exclusive_lock(folder, "evaluation"):
        assert (folder / ".lock").read_text().strip() == str(os.getpid())


def test_lock_frees_after_kill_9(tmp_path):
    folder = tmp_path / "out"
    proc = _start_holder(folder)
    assert str(proc.pid) in _refusal(folder)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with exclusive_lock(folder, "training"):
        pass


def test_lock_is_not_reentrant_within_a_process_and_releases_on_error(tmp_path):
    # A second open file description conflicts even in the same process: two evaluations in one
    # Python process (tests, notebooks) are refused just like two processes.
    with exclusive_lock(tmp_path, "evaluation"):
        assert f"PID {os.getpid()}" in _refusal(tmp_path)
    with pytest.raises(RuntimeError):
        with exclusive_lock(tmp_path, "evaluation"):
            raise RuntimeError("boom")
    with exclusive_lock(tmp_path, "evaluation"):
        pass


def test_unlockable_folder_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SepbenchError, match=r"^.*file/sub: cannot create the lock file"):
        with exclusive_lock(blocker / "sub", "evaluation"):
            pass


def test_released_lock_file_holds_no_stale_pid(tmp_path):
    with exclusive_lock(tmp_path, "evaluation"):
        pass
    assert (tmp_path / ".lock").read_text() == ""
