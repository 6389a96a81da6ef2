"""One sepbench process at a time per folder (a training run folder, an evaluation output folder).

The lock is an flock(2) on `<folder>/.lock`: the kernel drops it when the holder exits or is
killed (even with kill -9), so a crash never leaves a folder locked. The file itself stays; it
only carries the holder's PID for the refusal message. Imports nothing heavy (no torch), so the
evaluation and separation entry points can take it before loading models.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from .errors import SepbenchError, naming

LOCK_NAME = ".lock"


@contextlib.contextmanager
def exclusive_lock(folder: str | Path, what: str, name: str = LOCK_NAME):
    """Hold an exclusive, non-blocking lock on `folder` for the block.

    `what` names the kind of work ("training", "evaluation") in the refusal:
    "<folder>: locked by another sepbench <what> (PID n); wait for it or stop it". `name` is the
    lock file's name in `folder` (training locks `.<profile>.lock` beside its run folder, which
    `--force` moves aside while the lock is held).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # O_RDWR without O_TRUNC: truncating here would wipe the holder's PID before we know
        # whether we may take the lock.
        fd = os.open(folder / name, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise SepbenchError(f"{folder}: cannot create the lock file ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise SepbenchError(f"{folder}: cannot lock ({exc.strerror or exc})") from None
            pid = _read_pid(fd)
            holder = f"PID {pid}" if pid else "PID unknown"
            raise SepbenchError(f"{folder}: locked by another sepbench {what} ({holder}); "
                                "wait for it or stop it") from None
        with naming(folder / name):
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            # Clear the PID before unlocking so a later refusal never names a finished process.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
