"""Files written whole or not at all: atomic files and folders, cleanup of the temporaries a
killed run leaves, content hashes, and the stamps that let a step skip work whose inputs and
outputs are unchanged. Shared by training, the benchmark and its tools."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from pathlib import Path

from .errors import naming

# Temporary files are named `.<target>.sepbench-<pid>-<host>-<random>.tmp<suffix>` (or `.f32` for
# separate's raw streams): the writer's PID and host let remove_stale_temps tell the leftovers
# of a killed run from the files of one still running. <host> is a hash: hostnames may hold any
# character.
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
_TEMP_RE = re.compile(r"\..+\.sepbench-(?P<pid>[0-9]+)-(?P<host>[0-9a-f]{8})-[a-z0-9_]{8}"
                      r"\.(?:tmp(?:\.[A-Za-z0-9]+)?|f32)")
# Names written before the PID was part of them: `.<target>.<random>.tmp<suffix>` and `.f32`.
_LEGACY_TEMP_RE = re.compile(r"\..+\.[a-z0-9_]{8}\.(?:tmp(?:\.[A-Za-z0-9]+)?|f32)")
STALE_SECONDS = 3600.0  # a temp whose writer cannot be checked is left alone this long
_DEAD_GRACE_SECONDS = 60.0  # PID namespaces can hide a live writer; a running writer touches its file


def temp_prefix(path: str | Path) -> str:
    """mkstemp prefix for a temporary file beside `path` (see remove_stale_temps)."""
    return f".{Path(path).name}.sepbench-{os.getpid()}-{_HOST}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process (or a PID we cannot check): assume alive
    return True


def remove_stale_temps(folder: str | Path, max_age: float = STALE_SECONDS) -> list[Path]:
    """Delete this tool's temporary files in `folder` (not recursive) left by killed runs, and
    return them. A temp file is stale when its writer (PID on this host) is dead and the file
    has not changed for a minute, or, when the writer cannot be checked (another host, an older
    sepbench), when it is older than `max_age` seconds. Anything else, including every file not
    named like this tool's temps, is kept."""
    removed, now = [], time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed  # no folder (yet) or unreadable: nothing of ours to clean
    for entry in entries:
        if not entry.name.startswith("."):
            continue
        new, legacy = _TEMP_RE.fullmatch(entry.name), _LEGACY_TEMP_RE.fullmatch(entry.name)
        if not (new or legacy):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if new and new["host"] == _HOST:
            stale = age > _DEAD_GRACE_SECONDS and not _alive(int(new["pid"]))
        else:
            stale = age > max_age
        if stale:
            with contextlib.suppress(OSError):  # cleaning is best effort: never fail a run over it
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _new_temp(path: Path) -> Path:
    """An empty temporary file beside `path`, named for remove_stale_temps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600 files; outputs get the usual permissions
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds,
    so an interruption never leaves a half-written file where a good one was."""
    tmp = _new_temp(Path(path))
    try:
        with naming(path):
            yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_files(paths: dict):
    """Yield {key: temporary path} for a set of outputs {key: path}; if the block succeeds, every
    file of the set is put in place, or (when any cannot be) none is. Every target is checked
    before the first rename, the old files are kept under a second name (a hard link: no copy)
    until all renames are done, and a failed rename puts the earlier ones back. Only a kill in
    the microseconds between two renames can leave the set mixed."""
    targets = {k: Path(p) for k, p in paths.items()}
    temps: dict = {}
    try:
        for key, path in targets.items():
            temps[key] = _new_temp(path)
        # A write fails on a descriptor of one of the temporaries: the set's folder is named.
        with naming(os.path.commonpath([p.absolute() for p in targets.values()]) if targets else "."):
            yield dict(temps)
        _commit(targets, temps)
    finally:
        for tmp in temps.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def _commit(targets: dict, temps: dict) -> None:
    for path in targets.values():
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    backups, done = {}, []
    try:
        for key, path in targets.items():
            if path.exists():
                backup = path.with_name(f"{temp_prefix(path)}{secrets.token_hex(4)}.tmp.old")
                try:
                    os.link(path, backup)
                except OSError:  # a file system without hard links
                    shutil.copy2(path, backup)
                backups[key] = backup
        for key, path in targets.items():
            os.replace(temps[key], path)
            done.append(key)
    except BaseException:
        for key in reversed(done):
            with contextlib.suppress(OSError):
                if key in backups:
                    os.replace(backups.pop(key), targets[key])
                else:
                    os.unlink(targets[key])
        raise
    finally:
        for backup in backups.values():
            with contextlib.suppress(OSError):
                os.unlink(backup)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_folder(dest: str | Path):
    """Yield an empty temporary folder beside `dest` (permissions from the umask, not mkdtemp's
    0700, so a web server can read a page); if the block succeeds it replaces `dest` by two
    renames: the old folder is moved aside, the new one renamed in, the old one deleted. A crash
    between the two renames leaves the old folder aside; the next atomic_folder(dest) puts it
    back first."""
    dest = Path(dest).absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    recover_folder(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.new-", dir=dest.parent))
    try:
        os.chmod(tmp, 0o777 & ~umask())
        with naming(dest):
            yield tmp
        aside = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        if dest.exists():
            os.replace(dest, aside / dest.name)
        try:
            os.replace(tmp, dest)
        except BaseException:  # a full disk can refuse the second rename: the old folder goes back
            if (aside / dest.name).exists():
                os.replace(aside / dest.name, dest)
            with contextlib.suppress(OSError):
                os.rmdir(aside)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def recover_folder(dest: str | Path) -> None:
    """Undo what a crash inside atomic_folder(dest) left: the old folder is put back if `dest` is
    missing, and abandoned new folders are deleted."""
    dest = Path(dest).absolute()
    for leftover in sorted(dest.parent.glob(f".{dest.name}.old-*")):
        if not dest.exists() and (leftover / dest.name).is_dir():
            os.replace(leftover / dest.name, dest)
        shutil.rmtree(leftover, ignore_errors=True)
    for leftover in dest.parent.glob(f".{dest.name}.new-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def file_hash(path: str | Path) -> str:
    """First 16 hex digits of the file's SHA-256 (a checkpoint's identity in caches)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class Stamp:
    """"Skip if unchanged", recorded in the JSON file `path`: `fresh()` is true only when the
    inputs hash as they did at the last `write()` AND every output is still the exact file
    written then (an output deleted or edited by hand is made again).

    Inputs: `key`, any JSON-able value (versions, options, hashes the caller already has);
    `content`, files hashed by their bytes (small ones, or ones rewritten unchanged); `stat`,
    files known by path, size and modification time (large audio: no read to find nothing
    changed). A missing input file counts as a value of its own. `outputs`: the files made from
    them, recorded by content hash under their path relative to the stamp's folder; a folder
    stands for every file under it (the stamp itself excepted), so a file added there counts too.
    The inputs are hashed once, at the first fresh() or write(): a file edited while the caller
    builds makes the next run build again instead of trusting what this one read."""

    def __init__(self, path: str | Path, key=None, content=(), stat=(), outputs=()):
        self.path = Path(path)
        self.key, self.content, self.stat = key, [Path(p) for p in content], [Path(p) for p in stat]
        self.outputs = [Path(p) for p in outputs]
        self._inputs: str | None = None

    def inputs_hash(self) -> str:
        if self._inputs is None:
            parts = {"key": self.key,
                     "content": [[str(p), file_hash(p) if p.is_file() else None] for p in self.content],
                     "stat": [[str(p), *_signature(p)] for p in self.stat]}
            text = json.dumps(parts, sort_keys=True, default=str)
            self._inputs = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return self._inputs

    def _output_hashes(self, staged: dict | None = None) -> dict[str, str | None]:
        where, hashes = _staging(staged), {}
        for p in self.outputs:
            src, own = where(p), where(self.path).absolute()
            files = sorted(f for f in src.rglob("*") if f.is_file() and f.absolute() != own) if src.is_dir() else [src]
            for f in files:
                final = p / f.relative_to(src) if src.is_dir() else p
                hashes[os.path.relpath(final, self.path.parent)] = file_hash(f) if f.is_file() else None
        return hashes

    def fresh(self) -> bool:
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # no stamp yet, or a damaged one: build again
            return False
        return (isinstance(stored, dict) and stored.get("inputs") == self.inputs_hash()
                and stored.get("outputs") == self._output_hashes())

    def write(self, staged: dict | None = None) -> None:
        """Record the inputs and the outputs as they are now; call it after the outputs are
        complete (a run killed before it leaves the old stamp, which no longer matches).
        `staged`: {final path: its temporary} of outputs not yet renamed into place (what
        atomic_files yields, or {folder: atomic_folder's temporary}), the stamp's own among them
        or inside them: the outputs are hashed there and the stamp is written there, so that it
        is replaced with them as one (written after, a full disk could leave new outputs under
        the old stamp)."""
        record = {"inputs": self.inputs_hash(), "outputs": self._output_hashes(staged)}
        text = json.dumps(record, sort_keys=True, indent=1) + "\n"
        target = _staging(staged)(self.path)
        if target != self.path:
            target.write_text(text, encoding="utf-8")  # a temporary already, renamed with the rest
        else:
            atomic_write_text(self.path, text)


def _staging(staged: dict | None):
    """final path -> where it is now: its temporary, or inside a temporary folder."""
    pairs = [(Path(final).absolute(), Path(tmp)) for final, tmp in (staged or {}).items()]

    def where(path: Path) -> Path:
        full = Path(path).absolute()
        for final, tmp in pairs:
            if full == final or final in full.parents:
                return tmp / full.relative_to(final)
        return Path(path)
    return where


def _signature(path: Path) -> list:
    try:
        st = path.stat()
    except FileNotFoundError:
        return [None, None]
    return [st.st_size, st.st_mtime_ns]
