"""recipes.files.Stamp: fresh only while every input and every output is as written."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from recipes.files import Stamp


@pytest.fixture
def made(tmp_path) -> dict[str, Path]:
    files = {"table": tmp_path / "table.csv", "audio": tmp_path / "clip.wav", "out": tmp_path / "out" / "page.html"}
    files["table"].write_text("a,b\n1,2\n")
    files["audio"].write_bytes(b"RIFF" + bytes(100))
    files["out"].parent.mkdir()
    files["out"].write_text("<p>page</p>\n")
    Stamp(tmp_path / "cache" / "stamp.json", key={"version": 1}, content=[files["table"]], stat=[files["audio"]],
          outputs=[files["out"]]).write()
    return files


def _stamp(tmp_path, files, key=None) -> Stamp:
    return Stamp(tmp_path / "cache" / "stamp.json", key={"version": 1} if key is None else key,
                 content=[files["table"]], stat=[files["audio"]], outputs=[files["out"]])


def test_unchanged_stays_fresh(tmp_path, made):
    assert _stamp(tmp_path, made).fresh()
    assert _stamp(tmp_path, made).fresh()  # checking changes nothing


def test_no_stamp_or_a_damaged_one_is_not_fresh(tmp_path, made):
    (tmp_path / "cache" / "stamp.json").write_text("{not json")
    assert not _stamp(tmp_path, made).fresh()
    (tmp_path / "cache" / "stamp.json").unlink()
    assert not _stamp(tmp_path, made).fresh()


def test_an_edited_content_input_invalidates(tmp_path, made):
    st = made["table"].stat()
    made["table"].write_text("a,b\n1,3\n")  # same size, and the same time put back: only the bytes differ
    os.utime(made["table"], ns=(st.st_atime_ns, st.st_mtime_ns))
    assert not _stamp(tmp_path, made).fresh()


def test_a_touched_stat_input_invalidates(tmp_path, made):
    st = made["audio"].stat()
    os.utime(made["audio"], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, new time
    assert not _stamp(tmp_path, made).fresh()


def test_a_deleted_input_invalidates(tmp_path, made):
    made["audio"].unlink()
    assert not _stamp(tmp_path, made).fresh()


def test_an_edited_output_invalidates(tmp_path, made):
    made["out"].write_text("<p>edited by hand</p>\n")
    assert not _stamp(tmp_path, made).fresh()


def test_a_deleted_output_invalidates(tmp_path, made):
    made["out"].unlink()
    assert not _stamp(tmp_path, made).fresh()


def test_another_key_or_another_output_list_invalidates(tmp_path, made):
    assert not _stamp(tmp_path, made, key={"version": 2}).fresh()
    extra = Stamp(tmp_path / "cache" / "stamp.json", key={"version": 1}, content=[made["table"]],
                  stat=[made["audio"]], outputs=[made["out"], tmp_path / "other.png"])
    assert not extra.fresh()


def test_write_records_the_new_state(tmp_path, made):
    made["out"].write_text("<p>rebuilt</p>\n")
    stamp = _stamp(tmp_path, made, key={"version": 2})
    stamp.write()
    assert _stamp(tmp_path, made, key={"version": 2}).fresh() and not _stamp(tmp_path, made).fresh()
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["stamp.json"]  # no temporary left


def test_a_folder_output_stands_for_every_file_under_it(tmp_path):
    page = tmp_path / "page"
    (page / "audio").mkdir(parents=True)
    (page / "index.html").write_text("<p>page</p>\n")
    (page / "audio" / "01.wav").write_bytes(b"RIFF" + bytes(10))

    def stamp() -> Stamp:
        return Stamp(page / ".stamp.json", key=1, outputs=[page])  # the stamp inside its own output
    stamp().write()
    assert stamp().fresh()
    (page / "audio" / "02.wav").write_bytes(b"RIFF")
    assert not stamp().fresh()  # a file added
    (page / "audio" / "02.wav").unlink()
    assert stamp().fresh()
    (page / "audio" / "01.wav").unlink()
    assert not stamp().fresh()  # a file removed
