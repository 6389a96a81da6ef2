"""`sepbench score-unlabelled`: recordings without stems through every checkpoint and pretrained
enhancer, scored by DNSMOS. Bad input is one line and writes nothing; then real speech in noise
at two rates through a tiny checkpoint, a test-registered deterministic enhancer (the plumbing)
and a real registered one, with the real DNSMOS (skipped, with the reason, without the extra)."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import recipes
from benchmark import baselines, cli
from benchmark import unlabelled_cmd as cmd
from benchmark.scoring import references
from recipes.audio import resample
from recipes.checkpoint import save_model
from recipes.lock import exclusive_lock

dnsmos = pytest.importorskip("benchmark.scoring.dnsmos", reason="benchmark/scoring/dnsmos.py is not there")
SPEECH = Path(__file__).parent / "fixtures" / "speech_8k.flac"
REAL = "spectral_gating"
FAKE = "test_half"  # registered by the `fake_enhancer` fixture only


def _missing() -> str | None:
    entry = baselines.registered().get(REAL)
    return dnsmos.available() or (f"{REAL} is not registered" if entry is None else baselines.missing(entry))


def _recordings(folder: Path) -> Path:
    """Speech in noise: 5 s at 16 kHz, and 5 s at 8 kHz in a subfolder (DNSMOS scores a clip
    under 9.01 s doubled until it is not, a window a second: 5 s costs 2 windows, 4.5 s 10)."""
    voice, sr = sf.read(SPEECH, dtype="float64")
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    wide = resample(voice[: 5 * sr], sr, 16000)
    sf.write(folder / "a_wide.wav", 0.5 * wide + 0.05 * rng.standard_normal(len(wide)), 16000)
    narrow = voice[sr:]
    sf.write(folder / "sub" / "b_narrow.wav", 0.5 * narrow + 0.05 * rng.standard_normal(len(narrow)), 8000)
    return folder


def _run(runs: Path) -> Path:
    args = {"sample_rate": 8000, "hidden": 16, "n_layers": 1}
    torch.manual_seed(0)
    model = recipes.get("lstm_mask").build(**args)
    folder = runs / "lstm_mask" / "tiny"
    folder.mkdir(parents=True)
    save_model(folder / "best.pt", model, "lstm_mask", args, 8000, profile="tiny", seed=0, config={})
    (folder / "card.json").write_text(json.dumps({"recipe": "lstm_mask", "profile": "tiny", "status": "complete"}))
    return runs


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("case", ["empty", "not_audio", "stereo", "missing"])
def test_bad_input_is_one_line_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dnsmos, "available", lambda: None)  # the input is checked, not the extra
    rec = tmp_path / "rec"
    rec.mkdir()
    if case == "not_audio":
        sf.write(rec / "ok.wav", np.zeros(800), 8000)
        (rec / "notes.wav").write_text("not audio")
    elif case == "stereo":
        sf.write(rec / "two.wav", np.zeros((800, 2)), 8000)
    elif case == "missing":
        rec = tmp_path / "nowhere"
    out = tmp_path / "out"
    rc = cli.main(["score-unlabelled", str(rec), "--out", str(out), "--runs", str(tmp_path / "runs")])
    err = _one_line(capsys)
    assert rc == 2 and not out.exists()
    expected = {"empty": f"{rec}: no recording in it", "not_audio": f"{rec / 'notes.wav'}: cannot read audio",
                "stereo": f"{rec / 'two.wav'}: has 2 channels", "missing": f"{rec}: not a folder"}[case]
    assert expected in err


def test_without_dnsmos_it_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dnsmos, "available", lambda: "speechmos is not installed: pip install -e .[baselines]")
    rc = cli.main(["score-unlabelled", str(_recordings(tmp_path / "rec")), "--out", str(tmp_path / "out")])
    assert rc == 2 and "DNSMOS cannot run here: speechmos is not installed" in _one_line(capsys)
    assert not (tmp_path / "out").exists()


def test_nothing_to_run_and_a_locked_out_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dnsmos, "available", lambda: None)
    rec = _recordings(tmp_path / "rec")
    rc = cli.main(["score-unlabelled", str(rec), "--out", str(tmp_path / "out"), "--no-pretrained",
                   "--runs", str(tmp_path / "empty_runs")])
    assert rc == 2 and "empty_runs: runs folder not found" in _one_line(capsys)
    (tmp_path / "empty_runs").mkdir()
    rc = cli.main(["score-unlabelled", str(rec), "--out", str(tmp_path / "out"), "--no-pretrained",
                   "--runs", str(tmp_path / "empty_runs")])
    assert rc == 2 and "nothing to run" in _one_line(capsys)
    with exclusive_lock(tmp_path / "out", "scoring of unlabelled recordings"):
        rc = cli.main(["score-unlabelled", str(rec), "--out", str(tmp_path / "out"), "--runs", str(_run(tmp_path / "r"))])
    assert rc == 2 and "locked by another sepbench" in _one_line(capsys)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [".lock"]


@pytest.fixture
def fake_enhancer(monkeypatch):
    """A deterministic enhancer registered for this test only (in this process: the command runs
    here): half the mixture as the voice, at the input's rate."""
    import numpy as np_module

    entry = baselines.Baseline(FAKE, "half the input", None, 0, "MIT", "numpy", np_module.__version__, "numpy",
                               "(none)", None, "a test stand-in: no training domain",
                               lambda: (lambda x, rate: 0.5 * x))
    baselines.registered()  # the real entries register first
    monkeypatch.setitem(baselines._REGISTRY, FAKE, entry)
    references._baseline.cache_clear()
    yield entry
    references._baseline.cache_clear()


@pytest.mark.skipif(_missing() is not None, reason=f"the baselines extra: {_missing()}")
def test_every_row_over_every_recording(fake_enhancer, tmp_path, monkeypatch):
    real = baselines.available()[REAL]
    monkeypatch.setattr(baselines, "available", lambda: {FAKE: fake_enhancer, REAL: real})
    rec, out = _recordings(tmp_path / "rec"), tmp_path / "rec" / "out"  # OUT inside DIR: its audio is not input
    lines = []
    result = cmd.score_unlabelled(rec, _run(tmp_path / "runs"), out, log=lines.append)
    assert result["failed"] == []
    (tmp_path / "first.csv").write_bytes((out / "dnsmos.csv").read_bytes())
    table = pd.read_csv(out / "dnsmos.csv", dtype={"failure_reason": str}, keep_default_na=False,
                        na_values={c: [""] for c in ("voice_dnsmos_sig", "voice_dnsmos_bak", "voice_dnsmos_ovrl",
                                                     "sep_seconds", "rtf")})
    rows = ["mixture", "mixture@8000Hz", "lstm_mask/tiny", FAKE, REAL]
    assert sorted(set(table["file"])) == ["a_wide.wav", "sub/b_narrow.wav"]
    assert sorted(table["row"]) == sorted(rows * 2) and table["failure_reason"].eq("").all()
    for col in ("voice_dnsmos_sig", "voice_dnsmos_bak", "voice_dnsmos_ovrl"):
        assert table[col].between(1, 5).all(), col
    # Each row's scores are DNSMOS of that row's own voice estimate, at the rate it was made.
    mix, sr = sf.read(rec / "a_wide.wav", dtype="float32")
    wide = table[table["file"] == "a_wide.wav"].set_index("row")
    assert wide.at["mixture", "sample_rate"] == 16000 and wide.at["lstm_mask/tiny", "sample_rate"] == 8000
    for name, audio, rate in [("mixture", mix, 16000), (FAKE, 0.5 * mix, 16000),
                              (REAL, real.separate(mix, 16000)[0], 16000),
                              ("mixture@8000Hz", resample(mix, 16000, 8000), 8000)]:
        assert wide.at[name, "voice_dnsmos_ovrl"] == pytest.approx(dnsmos.scores(audio, rate)["dnsmos_ovrl"],
                                                                   abs=1e-5), name
    assert math.isnan(wide.at["mixture", "rtf"]) and wide.at[REAL, "rtf"] > 0
    summary = pd.read_csv(out / "dnsmos_summary.csv")
    mean = summary[(summary["row"] == REAL) & (summary["metric"] == "voice_dnsmos_ovrl")]["mean"].iloc[0]
    assert mean == pytest.approx(table[table["row"] == REAL]["voice_dnsmos_ovrl"].mean())
    md = (out / "DNSMOS.md").read_text(encoding="utf-8")
    for name in rows:
        assert re.search(rf"^\| {re.escape(name)} +\|", md, re.M), name
    assert f"{real.out_of_domain}; run on the 8 kHz input as it is; run on the 16 kHz input as it is" in md
    assert "upsampled to 16 kHz" in md and "8000 Hz, 16000 Hz" in md
    # The page: one row per recording, every column's players present and named from indices.
    page = (out / "listen" / "index.html").read_text(encoding="utf-8")
    assert page.lower().count("<script") == 1 and '<td data-label="true stems">' not in page
    assert "a_wide.wav<br>16000 Hz, 5.0 s" in page and "sub/b_narrow.wav<br>8000 Hz, 5.0 s" in page
    links = re.findall(r'src="(audio/[^"]+)"', page)
    assert len(links) == 2 * (1 + 1 + 2 * 3)  # per recording: itself, mixture@8000Hz, 3 models x 2
    for link in links:
        assert re.fullmatch(r"audio/\d\d_(mix|m\d\d_(voice|noise|input))\.wav", link)
        assert sf.info(str(out / "listen" / link)).samplerate in (8000, 16000)
    assert "DNSMOS OVRL" in page and real.out_of_domain in page
    # A second run finds the same recordings (not the page's own audio under OUT), same scores.
    cmd.score_unlabelled(rec, tmp_path / "runs", out, log=lambda *_: None)
    timing = ["sep_seconds", "rtf"]
    pd.testing.assert_frame_equal(pd.read_csv(out / "dnsmos.csv").drop(columns=timing),
                                  pd.read_csv(tmp_path / "first.csv").drop(columns=timing))
