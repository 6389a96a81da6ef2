"""`sepbench validate`: every error and warning class gives one line naming the file or folder."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile as sf

from benchmark import cli
from benchmark.data.demo import generate
from benchmark.data.validate import validate

CLIP = "train/0002"  # label 0 dB (labels cycle -3, 0, 3)


def run_cli(monkeypatch, capsys, *args):
    # Only the subcommand under test is imported, so these tests don't hang on other modules.
    monkeypatch.setattr(cli, "COMMANDS", {"validate": "benchmark.data.validate"})
    rc = cli.main(["validate", *map(str, args)])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return rc, out.out


def ints(path):
    return sf.read(str(path), dtype="int16")[0].astype(np.int32)


def rewrite(path, data, sr=8000, subtype="PCM_16"):
    sf.write(str(path), data, sr, subtype=subtype)


def mix_of(folder):
    return next(folder.glob("mix_snr_*"))


# Each case breaks the copy of the tiny data set and returns (level, path named, words in the message).
def missing_file(root):
    (root / CLIP / "voice.wav").unlink()
    return "error", root / CLIP, "missing file voice.wav"


def two_mixes(root):
    shutil.copy(mix_of(root / CLIP), root / CLIP / "mix_snr_7.wav")
    return "error", root / CLIP, "more than one mixture file"


def bad_label(root):
    target = root / CLIP / "mix_snr_loud.wav"
    mix_of(root / CLIP).rename(target)
    return "error", target, "cannot parse the SNR label"


def garbage(root):
    (root / CLIP / "noise.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk" * 20)
    return "error", root / CLIP / "noise.wav", "unreadable audio"


def empty_file(root):
    (root / CLIP / "noise.wav").write_bytes(b"")
    return "error", root / CLIP / "noise.wav", "unreadable audio (empty file)"


def truncated(root):
    path = root / CLIP / "voice.wav"
    path.write_bytes(path.read_bytes()[:-1000])
    return "error", path, "truncated WAV: header declares 16000 bytes of audio, the file holds 15000"


def zero_length(root):
    rewrite(root / CLIP / "noise.wav", np.zeros(0, np.int16))
    return "error", root / CLIP / "noise.wav", "zero-length audio"


def length_mismatch(root):
    path = root / CLIP / "noise.wav"
    rewrite(path, ints(path)[:-10].astype(np.int16))
    return "error", root / CLIP, "lengths differ between files: mix 8000, voice 8000, noise 7990 samples"


def rate_in_folder(root):
    path = root / CLIP / "noise.wav"
    rewrite(path, ints(path).astype(np.int16), sr=16000)
    return "error", root / CLIP, "sample rates differ between files: mix 8000 Hz, voice 8000 Hz, noise 16000 Hz"


def rate_in_split(root):
    for path in (root / CLIP).iterdir():
        rewrite(path, ints(path).astype(np.int16), sr=16000)
    return "error", root / CLIP, "sample rate 16000 Hz differs from the split's 8000 Hz (23 folders)"


def rate_between_splits(root):
    for path in (root / "test").glob("*/*.wav"):
        rewrite(path, ints(path).astype(np.int16), sr=16000)
    return "error", root, "sample rates differ between splits: train 8000 Hz, test 16000 Hz"


def stereo(root):
    path = root / CLIP / "voice.wav"
    x = ints(path).astype(np.int16)
    rewrite(path, np.stack([x, x], axis=1))
    return "error", path, "has 2 channels; sepbench needs mono (--downmix averages them)"


def non_finite(root):
    path = root / CLIP / "voice.wav"
    x = sf.read(str(path), dtype="float32")[0]
    x[[5, 50, 500]] = [np.nan, np.inf, -np.inf]
    rewrite(path, x, subtype="FLOAT")
    return "error", path, "3 non-finite samples"


def empty_split(root):
    for folder in (root / "test").iterdir():
        shutil.rmtree(folder)
    return "error", root / "test", "split has no clip folders"


def missing_split(root):
    shutil.rmtree(root / "test")
    return "error", root / "test", "split folder is missing"


def not_the_sum(root):
    for name in ("voice.wav", "noise.wav"):  # both halved: the stems' SNR stays, only the gains differ
        rewrite(root / CLIP / name, (ints(root / CLIP / name) // 2).astype(np.int16))
    return "warning", root / CLIP, "best fit mix = 2.000*voice + 2.000*noise"


def label_far(root):
    target = root / CLIP / "mix_snr_10.wav"
    mix_of(root / CLIP).rename(target)
    return "warning", target, "label 10 dB but the stems measure"


def near_silent(root):
    folder = root / CLIP
    voice = np.round(ints(folder / "voice.wav") * 1e-3).astype(np.int32)
    rewrite(folder / "voice.wav", voice.astype(np.int16))
    rewrite(mix_of(folder), (voice + ints(folder / "noise.wav")).astype(np.int16))
    return "warning", folder / "voice.wav", "near-silent voice"


def clipping(root):
    folder = root / CLIP
    voice, noise = ints(folder / "voice.wav"), ints(folder / "noise.wav")
    noise[100:120], voice[100:120] = 16000, 32767 - 16000  # the mixture hits full scale, still the sum
    for name, x in (("voice.wav", voice), ("noise.wav", noise), (mix_of(folder).name, voice + noise)):
        rewrite(folder / name, x.astype(np.int16))
    return "warning", mix_of(folder), "clipping: 20 samples"


def extra_file(root):
    (root / CLIP / "notes.txt").write_text("recorded on a Tuesday")
    return "warning", root / CLIP / "notes.txt", "unexpected extra file"


def readme(root):
    (root / "train" / "README.md").write_text("hello")
    return "note", root / "train" / "README.md", "not a numbered clip folder"


def hidden(root):
    (root / "train" / ".DS_Store").write_bytes(b"\0")
    return "note", root / "train" / ".DS_Store", "hidden entry"


ERRORS = [missing_file, two_mixes, bad_label, garbage, empty_file, truncated, zero_length, length_mismatch,
          rate_in_folder, rate_in_split, rate_between_splits, stereo, non_finite, empty_split, missing_split]
WARNINGS = [not_the_sum, label_far, near_silent, clipping, extra_file, readme, hidden]


@pytest.mark.parametrize("case", ERRORS + WARNINGS, ids=lambda f: f.__name__)
def test_each_problem_is_one_line_naming_the_path(case, tiny_copy, monkeypatch, capsys):
    level, path, words = case(tiny_copy)
    report = validate(tiny_copy)
    hits = [p for p in report.problems if p.level == level and p.path == path and words in p.message]
    assert len(hits) == 1, [str(p) for p in report.problems]
    line = str(hits[0])
    assert "\n" not in line and line.startswith(f"{level}: {path}: ")
    # Nothing else is an error: a problem must not cascade into unrelated complaints.
    assert [str(p) for p in report.problems if p.level == "error"] == ([line] if level == "error" else [])
    if case is near_silent:  # 60 dB quieter: its label is far off too, and said so
        assert any(p.path.name.startswith("mix_snr_") and "stems measure" in p.message for p in report.problems)
    elif level == "warning":
        assert [p for p in report.problems if p.level == "warning"] == hits
    rc, out = run_cli(monkeypatch, capsys, tiny_copy)
    assert rc == (1 if level == "error" else 0)
    assert line in out.splitlines()


def test_every_problem_is_listed_not_only_the_first(tiny_copy):
    missing_file(tiny_copy)
    (tiny_copy / "test/0030/noise.wav").write_bytes(b"")
    (tiny_copy / "train/0005/extra.wav").write_bytes(b"")
    report = validate(tiny_copy)
    assert sorted(str(p.path.relative_to(tiny_copy)) for p in report.problems) == [
        "test/0030/noise.wav", "train/0002", "train/0005/extra.wav"]
    assert not report.ok


def test_downmix_accepts_multichannel(tiny_copy, monkeypatch, capsys):
    stereo(tiny_copy)
    assert validate(tiny_copy, downmix=True).ok
    assert run_cli(monkeypatch, capsys, tiny_copy, "--downmix")[0] == 0


def test_demo_data_is_clean_and_summarised(tiny_data, monkeypatch, capsys):
    report = validate(tiny_data)
    assert report.ok and report.problems == []
    train = report.stats["train"]
    assert train["folders"] == train["checked"] == 24
    assert train["labels"] == {-3.0: 8, 0.0: 8, 3.0: 8}
    assert train["sample_rates"] == {8000: 24} and train["seconds"] == (1.0, 1.0, 1.0)
    assert train["snr_abs_diff_mean"] < 0.05 and train["residual_max"] == 0.0
    rc, out = run_cli(monkeypatch, capsys, tiny_data)
    assert rc == 0 and "0 errors, 0 warnings, 0 notes: usable" in out


def test_one_split_folder_is_accepted(tiny_data):
    report = validate(tiny_data / "test")
    assert report.ok and list(report.stats) == ["test"] and report.stats["test"]["checked"] == 9


@pytest.mark.parametrize("make", [lambda p: p / "nowhere", lambda p: (p / "file.txt", p.joinpath("file.txt").write_text("x"))[0],
                                  lambda p: p], ids=["missing", "a file", "empty folder"])
def test_not_a_data_set(make, tmp_path, monkeypatch, capsys):
    path = make(tmp_path)
    rc, out = run_cli(monkeypatch, capsys, path)
    assert rc == 1 and f"error: {path}: " in out


def test_quirky_demo_data_is_usable_with_warnings(tmp_path):
    root = generate(tmp_path / "q", n_train=30, n_test=6, seconds=0.5, snrs=[-3, 0, 3], seed=1, quirks=True)
    report = validate(root)
    kinds = {kind for clip in report.clips for kind in clip.warnings}
    assert report.ok and kinds == {"residual", "label", "silent"}
    assert report.stats["train"]["near_silent"] == 1


def test_an_unchanged_set_that_passed_is_not_read_again(monkeypatch, capsys, tiny_copy, tmp_path):
    """The second `sepbench validate` of the same files reads no audio and prints the same
    report (run_all shares the record); a touched file, or --force, reads them all again."""
    import time

    from benchmark.data import validate as validate_module

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rc, first = run_cli(monkeypatch, capsys, tiny_copy)
    assert rc == 0
    reads = []
    real = validate_module.decode
    monkeypatch.setattr(validate_module, "decode", lambda path, downmix: reads.append(path) or real(path, downmix))
    started = time.monotonic()
    rc, second = run_cli(monkeypatch, capsys, tiny_copy)
    assert rc == 0 and reads == [] and time.monotonic() - started < 2
    assert second.startswith(first.rstrip("\n")) and "no file was read again" in second
    n_files = len(reads)
    rc, _ = run_cli(monkeypatch, capsys, tiny_copy, "--force")
    assert rc == 0 and len(reads) > n_files
    reads.clear()
    voice = tiny_copy / CLIP / "voice.wav"
    voice.write_bytes(voice.read_bytes())  # same bytes, new modification time
    rc, _ = run_cli(monkeypatch, capsys, tiny_copy)
    assert rc == 0 and reads
