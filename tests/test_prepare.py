"""`sepbench prepare`: any rates and channel counts in, the folder format at --sr out."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import soundfile as sf

from benchmark import cli
from benchmark.data import demo_synth
from benchmark.data.prepare import prepare
from benchmark.data.validate import validate
from recipes.errors import SepbenchError

ARGS = dict(snrs=[-5, 0, 5], n_train=8, n_test=4, seconds=1.0, sample_rate=8000, seed=0)


def corpus(root, kind, seed):
    """Speech at 16 kHz mono WAV and 44.1 kHz stereo FLAC (nested), noise at 44.1 kHz stereo WAV
    and 16 kHz mono; plus one file too short to use and one that is not audio."""
    rng = np.random.default_rng(seed)
    files = [("a.wav", 16000, 1), ("b.wav", 16000, 1), ("sub/c.flac", 44100, 2), ("sub/deeper/d.flac", 44100, 2)]
    if kind == "noise":
        files = [("n1.wav", 44100, 2), ("n2.wav", 44100, 2), ("n3.wav", 16000, 1)]
    for name, sr, channels in files:
        n = int(rng.uniform(1.5, 3.0) * sr)
        if kind == "speech":
            x = demo_synth.voice(n, sr, demo_synth.random_speaker(rng), rng)
        else:
            x = demo_synth.noise(n, sr, rng)[0]
        x = 0.1 * np.stack([x, np.roll(x, 7)][:channels], axis=1)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(root / name), x, sr)
    sf.write(str(root / "short.wav"), np.zeros(8000), 16000)  # 0.5 s < --seconds
    (root / "notes.flac").write_text("not audio")
    return root


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    base = tmp_path_factory.mktemp("corpora")
    return corpus(base / "speech", "speech", 1), corpus(base / "noise", "noise", 2)


@pytest.fixture(scope="module")
def built(sources, tmp_path_factory):
    notes = []
    out = prepare(*sources, tmp_path_factory.mktemp("prepared") / "data", log=notes.append, **ARGS)
    return out, notes


def test_builds_a_valid_data_set_at_the_target_rate(built):
    out, notes = built
    report = validate(out)
    assert report.ok and [p for p in report.problems if p.level != "note"] == []
    assert report.stats["train"]["checked"] == 8 and report.stats["test"]["checked"] == 4
    assert {c.sample_rate for c in report.clips} == {8000} and {c.frames for c in report.clips} == {8000}
    assert max(abs(c.snr_measured - c.snr_label) for c in report.clips) < 0.05
    assert any("skipped 1 speech files shorter than 1 s (short.wav)" in n for n in notes)
    assert any("skipped 1 noise files unreadable (notes.flac)" in n for n in notes)


def test_manifest_and_disjoint_files(built, sources):
    out, _ = built
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    assert [r["folder"] for r in rows] == [f"{i:04d}" for i in range(1, 13)]
    assert [float(r["snr"]) for r in rows[:4]] == [-5, 0, 5, -5]
    for kind, directory in zip(("speech", "noise"), sources):
        used = {split: {r[f"{kind}_file"] for r in rows if r["split"] == split} for split in ("train", "test")}
        assert used["train"] and used["test"] and not used["train"] & used["test"]
        for r in rows:
            info = sf.info(str(directory / r[f"{kind}_file"]))
            assert 0 <= float(r[f"{kind}_offset_s"]) <= info.duration - 1.0 + 1e-6
            assert float(r[f"{kind}_gain"]) > 0


def test_stereo_44k_segment_matches_its_source(built, sources):
    """The written voice is the manifest's segment, downmixed, resampled and scaled by its gain."""
    out, _ = built
    rows = list(csv.DictReader(open(out / "manifest.csv")))
    row = next(r for r in rows if r["speech_file"].endswith(".flac"))
    info = sf.info(str(sources[0] / row["speech_file"]))
    start = round(float(row["speech_offset_s"]) * info.samplerate)
    src = sf.read(str(sources[0] / row["speech_file"]), start=start, frames=44100)[0].mean(axis=1)
    voice = sf.read(str(out / row["split"] / row["folder"] / "voice.wav"))[0]
    from scipy.signal import resample_poly
    expected = resample_poly(src, 80, 441)[:8000] * float(row["speech_gain"])
    inner = slice(200, -200)  # the filter's edges differ by design (zero padding)
    assert np.max(np.abs(voice[inner] - expected[inner])) < 2e-4


def test_deterministic(sources, built, tmp_path):
    again = prepare(*sources, tmp_path / "again", log=lambda _: None, **ARGS)
    first = built[0]
    for p in sorted(first.rglob("*.*")):
        assert (again / p.relative_to(first)).read_bytes() == p.read_bytes(), p


def test_no_usable_audio_names_the_directory(sources, tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SepbenchError, match=f"{empty}: no usable noise audio: 0 WAV/FLAC files found"):
        prepare(sources[0], empty, tmp_path / "out", log=lambda _: None, **ARGS)
    monkeypatch.setattr(cli, "COMMANDS", {"prepare": "benchmark.data.prepare"})
    rc = cli.main(["prepare", "--speech", str(empty), "--noise", str(sources[1]), "--out", str(tmp_path / "o"),
                   "--snrs", "-5,0"])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == f"sepbench prepare: error: {empty}: no usable speech audio: 0 WAV/FLAC files found, 0 shorter than 4 s, 0 unreadable"
    assert not (tmp_path / "o").exists()


def test_one_file_cannot_be_split(sources, tmp_path):
    single = tmp_path / "single"
    single.mkdir()
    (single / "only.wav").write_bytes((sources[0] / "a.wav").read_bytes())
    with pytest.raises(SepbenchError, match="at least 2 usable files"):
        prepare(single, sources[1], tmp_path / "out", log=lambda _: None, **ARGS)
