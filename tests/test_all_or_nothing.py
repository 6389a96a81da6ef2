"""Writes that land whole or not at all, and failures said in one line: a set of outputs
(recipes.files.atomic_files), the data set writers' lock, damaged CSVs and the CLI's OSError
boundary."""
from __future__ import annotations

import errno
import os
import threading

import pandas as pd
import pytest

from benchmark import cli
from benchmark.data import demo
from benchmark.scoring import aggregate
from recipes.errors import SepbenchError
from recipes.files import atomic_files
from recipes.folder import new_dataset_dir

NAMES = ("a.csv", "b.png", "c.md")


def _old_set(folder):
    folder.mkdir(exist_ok=True)
    for name in NAMES:
        (folder / name).write_text(f"old {name}\n")
    return {name: (folder / name).read_bytes() for name in NAMES}


def _write_new(folder):
    with atomic_files({n: folder / n for n in NAMES}) as tmp:
        for name, path in tmp.items():
            path.write_text(f"new {name}\n")


@pytest.mark.parametrize("fail_at", range(len(NAMES)))
def test_a_failed_rename_puts_back_every_earlier_file(tmp_path, monkeypatch, fail_at):
    """The n-th rename of the set fails (for every n): all of the old set is still there, byte
    for byte, and no temporary or backup file is left."""
    old = _old_set(tmp_path)
    real, calls = os.replace, []

    def replace(src, dst):
        if str(dst).endswith(NAMES) and not str(src).endswith(".tmp.old"):
            calls.append(dst)
            if len(calls) == fail_at + 1:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst)
    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError):
        _write_new(tmp_path)
    assert {n: (tmp_path / n).read_bytes() for n in NAMES} == old
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)
    monkeypatch.undo()
    _write_new(tmp_path)
    assert all((tmp_path / n).read_text() == f"new {n}\n" for n in NAMES)


def test_a_target_that_is_a_folder_stops_the_set_before_any_rename(tmp_path):
    old = _old_set(tmp_path)
    (tmp_path / "c.md").unlink()
    (tmp_path / "c.md").mkdir()
    with pytest.raises(IsADirectoryError):
        _write_new(tmp_path)
    assert all((tmp_path / n).read_bytes() == old[n] for n in NAMES[:2])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)


def test_a_failing_block_writes_nothing(tmp_path):
    old = _old_set(tmp_path)
    with pytest.raises(RuntimeError), atomic_files({n: tmp_path / n for n in NAMES}) as tmp:
        tmp["a.csv"].write_text("new")
        raise RuntimeError("stop")
    assert {n: (tmp_path / n).read_bytes() for n in NAMES} == old
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(NAMES)


def test_a_second_writer_of_one_data_set_is_refused(tmp_path):
    """Two demo-data runs into one new folder: the second is refused while the first writes, and
    the first one's half-built folder is not touched (it used to be cleared as a crash's leftover)."""
    out = tmp_path / "set"
    inside, release = threading.Event(), threading.Event()

    def first():
        with new_dataset_dir(out, force=False) as tmp:
            (tmp / "train").mkdir()
            inside.set()
            release.wait(10)
    t = threading.Thread(target=first)
    t.start()
    try:
        assert inside.wait(10)
        with pytest.raises(SepbenchError, match="locked by another sepbench data set writer"):
            demo.generate(out, n_train=1, n_test=1, seconds=0.5)
        assert [p for p in tmp_path.glob(".set.new-*") if (p / "train").is_dir()]
    finally:
        release.set()
        t.join()
    assert (out / "train").is_dir()


def test_demo_data_refuses_clips_too_short_for_a_voice(tmp_path, capsys):
    out = tmp_path / "short"
    assert cli.main(["demo-data", str(out), "--seconds", "0.1", "--n-train", "30", "--n-test", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "--seconds 0.1" in err and "too short" in err
    assert not out.exists()


def test_demo_data_under_a_regular_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert cli.main(["demo-data", str(tmp_path / "file" / "set"), "--n-train", "1", "--n-test", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "Traceback" not in err and str(tmp_path / "file") in err


@pytest.mark.parametrize("code,said", [(errno.ENOSPC, "cannot write {p}: No space left on device"),
                                       (errno.EROFS, "cannot write {p}: Read-only file system"),
                                       (errno.EISDIR, "{p}: Is a directory")])
def test_an_os_error_is_one_line_with_exit_2(tmp_path, monkeypatch, capsys, code, said):
    target = tmp_path / "set" / "manifest.csv"

    def full(*_a, **_k):
        raise OSError(code, os.strerror(code), str(target))
    monkeypatch.setattr(demo, "write_clip", full)
    assert cli.main(["demo-data", str(tmp_path / "set"), "--n-train", "1", "--n-test", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "sepbench demo-data: error: " + said.format(p=target)
    assert not (tmp_path / "set").exists()


@pytest.mark.parametrize("damage", ["empty", "other csv", "column missing", "cut mid-row", "not text"])
def test_a_damaged_results_file_is_named_in_one_line(tmp_path, damage):
    path = tmp_path / "results.csv"
    rows = pd.DataFrame({"model": ["m", "m"], "profile": ["p", "p"], "kind": ["trained"] * 2,
                         "clip_id": ["0001", "0002"], "snr_label": [0.0, 1.0], "voice_sisdr": [1.5, 2.5]})
    aggregate.write_csv(rows, path)
    assert aggregate.read_results(path)["clip_id"].tolist() == ["0001", "0002"]
    text = path.read_bytes()
    path.write_bytes({"empty": b"", "other csv": b"a,b\n1,2\n", "column missing": text.replace(b"kind", b"kinds"),
                      "cut mid-row": text[:-4], "not text": b"\xff\xfe\x00\x81\n"}[damage])
    with pytest.raises(SepbenchError, match="results.csv is damaged .*; re-run `sepbench evaluate --force`") as exc:
        aggregate.read_results(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)
