"""The one exception type the command line turns into a one-line message (no traceback), and the
one line it gives an OSError."""
from __future__ import annotations

import contextlib
import errno


class SepbenchError(Exception):
    """A problem with user input: a file, folder, config or checkpoint. The message names it."""


# Failures of the machine's storage rather than of the program: said in one line, never a traceback.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG}


def os_error_line(exc: OSError) -> str:
    """One line for an OSError: `cannot write PATH: No space left on device` for a full or
    read-only disk, `PATH: Is a directory` and the like for the rest (which of read or write
    failed is the caller's knowledge, not the error's)."""
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return f"cannot write: {reason}" if exc.errno in _WRITE_ERRNOS else reason
    where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 is not None else "")
    return f"cannot write {where}: {reason}" if exc.errno in _WRITE_ERRNOS else f"{where}: {reason}"


@contextlib.contextmanager
def naming(path):
    """A storage failure inside the block that names no file is said to be `path`'s: write(2),
    close(2) and fsync(2) know only a descriptor, and `cannot write: No space left on device`
    would leave the user to guess which disk."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or exc.errno not in _WRITE_ERRNOS:
            raise
        raise OSError(exc.errno, exc.strerror, str(path)) from exc
