"""A full or read-only disk, imitated inside one sepbench process (SQLite's I/O-error tests are
the model): every call that writes below the watched folders is a numbered *write point*, and
from the N-th on each one fails as that disk would.

    SEPBENCH_FAULT=count:FILE       count the points, fail none
    SEPBENCH_FAULT=ENOSPC:N[:FILE]  point N fails: No space left on device
    SEPBENCH_FAULT=EROFS:N[:FILE]   point N and every later one fail: Read-only file system
    SEPBENCH_FAULT_ROOT=DIR[:DIR]   the watched folders (required)

FILE gets, at exit, the number of points, `fired K` (the first failed point, or `none`) and one
line per point (`K op path`, paths relative to the first root), so a test can tell which call a
failure came from and check that every run makes the same calls.

Write points: open() and io.open() for writing, os.open for writing, os.write, os.pwrite and
os.fsync on such files, os.mkdir (of a missing path), os.replace, os.rename, os.link, os.symlink, and the two C writers
sepbench hands a path to, which open() does not see: torch.save (or to an open file) and
soundfile (libsndfile) opened for writing. shutil, pathlib and tempfile write through these.
Another C writer given a path (torch.jit.save) would not be seen: the test checks that every
file a command makes was the target of a point. Python's bytecode cache is never a point, nor a call that fails on any disk (a missing parent
folder, an existing folder to make, a missing file to rename).

How each fails is how the kernel and the C writers fail (seen on a full and a read-only tmpfs):
ENOSPC at open() creates or truncates the file as asked and hands back a stream on /dev/full, so
the error comes from write/flush/close without a file name; EROFS fails at open() with the name.
torch.save to a path raises its C++ writer's RuntimeError, libsndfile its LibsndfileError with
no errno at all. A full disk fails once (SQLite's transient error:
the cleanup that follows frees space and succeeds); a read-only one stays so (SQLite's
persistent error): every later point fails, and unlink, rmdir, chmod, utime and truncate too,
so whatever the cleanup could not undo stays for the next run to find.
Only the process that read SEPBENCH_FAULT is injected: the variable is removed for its children.
"""
from __future__ import annotations

import atexit
import builtins
import errno
import importlib.abc
import importlib.util
import io
import os
import sys

ENV, ROOT_ENV = "SEPBENCH_FAULT", "SEPBENCH_FAULT_ROOT"
ERRNOS = {"ENOSPC": errno.ENOSPC, "EROFS": errno.EROFS}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# PyTorch 2.x's C++ writer (caffe2/serialize/inline_container.cc) on a file it cannot open; on a
# full disk it is really run on /dev/full.
_TORCH_OPEN_FAILED = "[enforce fail at inline_container.cc:747] . open file failed with strerror: {}"

_real = {}


class _State:
    def __init__(self):
        self.roots: tuple[str, ...] = ()
        self.code: int | None = None  # errno to inject; None: count only
        self.start = 0  # first failing point (1-based)
        self.report: str | None = None
        self.count = 0
        self.fired: int | None = None
        self.log: list[str] = []
        self.fds: dict[int, str] = {}  # descriptors opened for writing below a root


_state = _State()


def configure(spec: str | None, roots) -> None:
    """(Re)start counting with `spec` (see the module doc; None: watch nothing)."""
    global _state
    _state = _State()
    if not spec:
        return
    _state.roots = tuple(os.path.abspath(r) for r in roots)
    if not _state.roots:
        raise RuntimeError(f"{ENV}={spec}: {ROOT_ENV} names no folder")
    mode, _, rest = spec.partition(":")
    if mode == "count":
        _state.report = rest or None
        return
    if mode not in ERRNOS:
        raise RuntimeError(f"{ENV}={spec}: expected count:FILE, ENOSPC:N[:FILE] or EROFS:N[:FILE]")
    number, _, report = rest.partition(":")
    _state.code, _state.start, _state.report = ERRNOS[mode], int(number), report or None
    if _state.start < 1:
        raise RuntimeError(f"{ENV}={spec}: points count from 1")


def install_from_env() -> None:
    spec = os.environ.pop(ENV, "")
    if spec:
        install()
        configure(spec, [r for r in os.environ.get(ROOT_ENV, "").split(os.pathsep) if r])


def install() -> None:
    """Put the wrappers in place (once per process); they watch nothing until configure()."""
    if _real:
        return
    _real["open"] = builtins.open
    for name in ("open", "write", "pwrite", "fsync", "mkdir", "replace", "rename", "link", "symlink", "close",
                 "unlink", "remove", "rmdir", "chmod", "utime", "truncate", "ftruncate"):
        _real[name if name != "open" else "os.open"] = getattr(os, name)
    builtins.open = io.open = _open
    os.open, os.write, os.pwrite, os.fsync, os.close = _os_open, _os_write, _os_pwrite, _os_fsync, _os_close
    os.mkdir = _mkdir
    os.replace, os.rename = _renamer("replace"), _renamer("rename")
    os.link, os.symlink = _renamer("link"), _renamer("symlink")
    for name in ("unlink", "remove", "rmdir", "chmod", "utime", "truncate", "ftruncate"):
        setattr(os, name, _remover(name))
    # shutil.rmtree and others choose their code path by these sets of the original functions.
    for originals in (os.supports_dir_fd, os.supports_fd, os.supports_follow_symlinks):
        for name, real in list(_real.items()):
            if real in originals:
                originals.add(getattr(os, name.removeprefix("os.")))
    sys.meta_path.insert(0, _ImportHook())
    atexit.register(write_report)


def write_report() -> None:
    if _state.report is None:
        return
    fired = "none" if _state.fired is None else str(_state.fired)
    with _real["open"](_state.report, "w", encoding="utf-8") as f:
        f.write(f"{_state.count}\nfired {fired}\n" + "".join(line + "\n" for line in _state.log))


# ------------------------------------------------------------------------------- which calls count

def _below(path, dir_fd=None) -> str | None:
    """The absolute path if it lies below a watched root (and is no bytecode cache), else None."""
    if not _state.roots or isinstance(path, int):
        return None
    try:
        p = os.fsdecode(path)
    except TypeError:
        return None
    if dir_fd is not None and not os.path.isabs(p):
        p = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), p)
    p = os.path.abspath(p)
    if "__pycache__" in p or p.endswith(".pyc"):
        return None
    return p if any(p == r or p.startswith(r + os.sep) for r in _state.roots) else None


def _show(path: str) -> str:
    return "." + path[len(_state.roots[0]):] if path.startswith(_state.roots[0]) else path


def _point(op: str, *paths: str) -> bool:
    """Count one write point; True if it must fail."""
    _state.count += 1
    _state.log.append(f"{_state.count} {op} " + " -> ".join(_show(p) for p in paths))
    if _state.code is None or _state.count < _state.start:
        return False
    if _state.fired is None:
        _state.fired = _state.count
        return True
    return _state.code == errno.EROFS


def _can_fail(path: str) -> bool:
    """A missing parent folder is ENOENT on any disk: the kernel looks the path up first."""
    return os.path.isdir(os.path.dirname(path))


def _error(name=None, name2=None) -> OSError:
    return OSError(_state.code, os.strerror(_state.code), name, None, name2)


def _writes(mode) -> bool:
    return isinstance(mode, str) and any(c in mode for c in "wax+")


# ---------------------------------------------------------------------------------------- wrappers

def _open(file, mode="r", *args, **kwargs):
    # With an opener (tempfile's), `file` is only a label: the opener's os.open is the point.
    path = _below(file) if _writes(mode) and kwargs.get("opener") is None else None
    if path is None or not _can_fail(path) or not _point("open", path):
        f = _real["open"](file, mode, *args, **kwargs)
        if path is not None:
            _state.fds[f.fileno()] = path
        return f
    if _state.code != errno.ENOSPC:
        raise _error(file)
    _real["open"](file, mode, *args, **kwargs).close()  # creating or truncating needs no space
    full_mode = mode.replace("x", "w").replace("a", "w")
    return _real["open"]("/dev/full", full_mode, *args, **{k: v for k, v in kwargs.items() if k != "opener"})


def _os_open(path, flags, mode=0o777, *, dir_fd=None):
    where = _below(path, dir_fd) if flags & _WRITE_FLAGS else None
    if where is not None and _can_fail(where) and _point("os.open", where):
        raise _error(path)
    fd = _real["os.open"](path, flags, mode, dir_fd=dir_fd)
    if where is not None:
        _state.fds[fd] = where
    return fd


def _os_write(fd, data):
    if fd in _state.fds and _point("write", _state.fds[fd]):
        raise _error()
    return _real["write"](fd, data)


def _os_pwrite(fd, data, offset):
    if fd in _state.fds and _point("pwrite", _state.fds[fd]):
        raise _error()
    return _real["pwrite"](fd, data, offset)


def _os_fsync(fd):
    fd = fd if isinstance(fd, int) else fd.fileno()
    if fd in _state.fds and _point("fsync", _state.fds[fd]):
        raise _error()
    return _real["fsync"](fd)


def _os_close(fd):
    _state.fds.pop(fd, None)
    return _real["close"](fd)


def _mkdir(path, mode=0o777, *, dir_fd=None):
    where = _below(path, dir_fd)
    # An existing path is refused with EEXIST on any disk (os.makedirs(exist_ok=True) relies on it).
    if where is not None and not os.path.lexists(where) and _can_fail(where) and _point("mkdir", where):
        raise _error(path)
    return _real["mkdir"](path, mode, dir_fd=dir_fd)


def _renamer(name):
    def wrapper(src, dst, *args, **kwargs):
        a = _below(src, kwargs.get("src_dir_fd")) if name != "symlink" else None
        b = _below(dst, kwargs.get("dst_dir_fd" if name != "symlink" else "dir_fd"))
        missing = a is not None and not os.path.lexists(a)  # ENOENT on any disk
        if (a or b) and not missing and _point(name, *[p for p in (a, b) if p]):
            raise _error(src, dst)
        return _real[name](src, dst, *args, **kwargs)
    wrapper.__name__ = name
    return wrapper


def _remover(name):
    def wrapper(path, *args, **kwargs):
        where = path if name == "ftruncate" else _below(path, kwargs.get("dir_fd"))
        if _state.code == errno.EROFS and _state.fired is not None and (
                where in _state.fds if name == "ftruncate" else where is not None):
            raise _error() if name == "ftruncate" else _error(path)
        return _real[name](path, *args, **kwargs)
    wrapper.__name__ = name
    return wrapper


def _patch_torch(torch) -> None:
    save = torch.save

    def wrapped_save(obj, f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)):
            path = _below(f)
            if path is not None and _point("torch.save", path):
                if _state.code != errno.ENOSPC:
                    raise RuntimeError(_TORCH_OPEN_FAILED.format(os.strerror(_state.code)))
                _real["open"](f, "wb").close()
                save(obj, "/dev/full", *args, **kwargs)  # raises the C++ writer's own error
        else:
            name = getattr(f, "name", None)
            path = _below(name) if isinstance(name, str) else None
            if path is not None and _point("torch.save", path):
                raise _error()  # what the Python-file writer raises: no file name
        return save(obj, f, *args, **kwargs)

    torch.save = wrapped_save


def _patch_soundfile(soundfile) -> None:
    init = soundfile.SoundFile.__init__

    def wrapped_init(self, file, mode="r", *args, **kwargs):
        path = _below(file) if isinstance(file, (str, os.PathLike)) and _writes(mode) else None
        if path is not None and _can_fail(path) and _point("soundfile", path):
            if _state.code == errno.ENOSPC:
                _real["open"](file, "wb").close()
            # libsndfile's own words for both disks: it passes no errno on
            raise soundfile.LibsndfileError(2, f"Error opening {os.fsdecode(file)!r}: ")
        init(self, file, mode, *args, **kwargs)

    soundfile.SoundFile.__init__ = wrapped_init


_PATCHES = {"torch": _patch_torch, "soundfile": _patch_soundfile}


class _ImportHook(importlib.abc.MetaPathFinder):
    """Wraps the C writers right after their module is imported, so that each is loaded only by
    the commands that load it."""

    def find_spec(self, name, path=None, target=None):
        if name not in _PATCHES:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            _PATCHES[name](module)

        spec.loader.exec_module = exec_module
        return spec
