"""recipes.files.remove_stale_temps: a killed run's temporary files are removed, a running
writer's and everything not ours are kept."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from recipes.files import STALE_SECONDS, remove_stale_temps, temp_prefix

ROOT = Path(__file__).resolve().parents[1]

# Opens an atomic_path temp (as every sepbench output does), says where, and waits to be killed.
WRITER = """
import sys
from recipes.files import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half a file")
    print(tmp, flush=True)
    sys.stdin.read()
"""


def _age(path: Path, seconds: float) -> Path:
    path.touch()
    os.utime(path, (time.time() - seconds, time.time() - seconds))
    return path


def test_a_killed_writers_temp_is_removed_and_a_running_writers_kept(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / f"{name}.csv")], cwd=ROOT,
                              text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE) for name in ("a", "b")]
    try:
        temps = [_age(Path(p.stdout.readline().strip()), 120) for p in procs]
        assert all(t.is_file() and t.parent == tmp_path for t in temps)
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait(timeout=30)
        assert remove_stale_temps(tmp_path) == [temps[0]]
        assert not temps[0].exists() and temps[1].exists()  # its writer is still running
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)
    assert not (tmp_path / "b.csv").exists()  # the writer was killed before its rename


def test_what_is_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True).stdout.strip()
    host = temp_prefix(tmp_path / "x").split("-")[2]
    keep = [
        _age(tmp_path / f".a.wav.sepbench-{dead}-{host}-abcdefgh.tmp.wav", 10),  # dead writer, but just written
        _age(tmp_path / ".b.wav.abcdefgh.tmp.wav", STALE_SECONDS - 60),  # an older sepbench's, not an hour old
        _age(tmp_path / f".c.f32.sepbench-1-{'0' * 8}-abcdefgh.f32", STALE_SECONDS - 60),  # another host's, young
        _age(tmp_path / f".d.wav.sepbench-{os.getpid()}-{host}-abcdefgh.tmp.wav", 7200),  # writer alive (us)
        _age(tmp_path / ".e.wav.abcdefgh.bak", 7200),  # not named like ours
        _age(tmp_path / "f.wav.abcdefgh.tmp.wav", 7200),  # not hidden: a user's file
    ]
    (tmp_path / ".g.abcdefgh.tmp").mkdir()  # a folder, not a temp file
    gone = [
        _age(tmp_path / f".h_voice.wav.sepbench-{dead}-{host}-abcdefgh.f32", 120),
        _age(tmp_path / ".i.csv.k2j4h5g6.tmp.csv", STALE_SECONDS + 60),
        _age(tmp_path / f".j.csv.sepbench-1-{'0' * 8}-abcdefgh.tmp.csv", STALE_SECONDS + 60),
    ]
    assert sorted(remove_stale_temps(tmp_path)) == sorted(gone)
    assert all(p.exists() for p in keep) and (tmp_path / ".g.abcdefgh.tmp").is_dir()
    assert remove_stale_temps(tmp_path / "missing") == []
