"""benchmark.report.render: a fixed snapshot for fixed inputs, byte-identical output, table layout.

To accept an intended change of the layout: SEPBENCH_UPDATE_SNAPSHOTS=1 pytest tests/test_render.py,
then review the diff of tests/snapshots/ like any other change.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.report import render
from benchmark.scoring import aggregate, compare

SNAPSHOT = Path(__file__).parent / "snapshots" / "LEADERBOARD.md"
INFO = {"data": "data/demo/test", "data_hash": "0123456789abcdef", "n_clips": 6, "date": "2025-01-02T03:04:05Z",
        "git_commit": "abc1234", "version": "0.1.0+s1", "sample_rate": 8000}
CARDS = {("conv_tasnet", "cpu"): {"n_params": 321_456, "train_seconds": 1830.0},
         ("lstm_mask", "cpu"): {"n_params": 2_345_678, "train_seconds": 95.0}}
# model, profile, kind, mean voice SI-SDRi
MODELS = [("lstm_mask", "cpu", "trained", 6.0), ("conv_tasnet", "cpu", "trained", 9.0),
          ("oracle_irm", "-", "oracle", 14.0), ("mixture", "-", "reference", 0.0)]


def fixed_results() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for model, profile, kind, level in MODELS:
        for i, label in enumerate([-3.0, -3.0, 0.0, 0.0, 3.0, 3.0]):
            gain = 0.0 if model == "mixture" else round(level + label / 3 + rng.normal(0, 1), 3)
            rows.append({"model": model, "profile": profile, "kind": kind, "clip_id": f"{i + 1:04d}",
                         "snr_label": label, "voice_sisdri": gain, "voice_sdri": round(gain * 1.05, 3),
                         "voice_pesq_nb": round(1.5 + gain / 10, 3), "voice_stoi": round(0.7 + gain / 100, 4),
                         "voice_estoi": round(0.5 + gain / 100, 4), "noise_sisdri": gain,
                         "rtf": 0.01 if kind == "trained" else 0.001, "failure_reason": ""})
    df = pd.DataFrame(rows)
    df.loc[(df["model"] == "lstm_mask") & (df["clip_id"] == "0002"), "voice_pesq_nb"] = math.nan
    return df


@pytest.fixture(scope="module")
def summary() -> pd.DataFrame:
    return aggregate.summarize(fixed_results())


@pytest.fixture(scope="module")
def pairs() -> pd.DataFrame:
    return compare.pairs(fixed_results())


def test_matches_the_snapshot(summary, pairs):
    text = render.render(summary, CARDS, INFO, pairs)
    if os.environ.get("SEPBENCH_UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(text, encoding="utf-8")
    assert SNAPSHOT.is_file(), "no snapshot yet: run with SEPBENCH_UPDATE_SNAPSHOTS=1 and review it"
    assert text == SNAPSHOT.read_text(encoding="utf-8")


def test_same_inputs_give_byte_identical_output(summary, pairs):
    first = render.render(summary, CARDS, INFO, pairs)
    assert render.render(summary.copy(), dict(CARDS), dict(INFO), compare.pairs(fixed_results())) == first
    # row order of the input does not matter either
    shuffled = fixed_results().sample(frac=1, random_state=1)
    assert render.render(summary.sample(frac=1, random_state=1), CARDS, INFO, compare.pairs(shuffled)) == first


def test_layout(summary):
    text = render.render(summary, CARDS, INFO)
    lines = text.splitlines()
    assert "Generated" in lines[0] and "do not edit" in lines[0]
    assert INFO["data_hash"] in text and "6 clips" in text and INFO["date"] in text and "abc1234" in text
    main = text.split("## Trained models")[1].split("## References")[0]
    assert main.index("conv_tasnet") < main.index("lstm_mask")  # ranked by voice SI-SDRi
    assert "oracle_irm" not in main and "mixture" not in main  # references stay apart
    assert "Voice SI-SDRi (dB) ↑" in main and "RTF ↓" in main and "PESQ-NB ↑" in main
    assert "321.5 k" in main and "2.35 M" in main and "30.5 min" in main and "95 s" in main
    lstm_row = next(line for line in main.splitlines() if "lstm_mask" in line)
    assert lstm_row.rstrip(" |").endswith("1")  # the clip whose PESQ failed is counted
    refs = text.split("## References")[1].split("## Voice SI-SDRi")[0]
    assert "oracle_irm" in refs and "0.00 ± 0.00" in refs
    assert "| SNR -3 dB" in text and "SNR 3 dB" in text and render.PLOT_NAME in text
    assert "± " in main and "How to read this" in text and "narrow-band" in text


def test_changed_numbers_change_the_output(summary):
    changed = summary.copy()
    changed.loc[changed["metric"] == "voice_sisdri", "mean"] += 0.01
    assert render.render(changed, CARDS, INFO) != render.render(summary, CARDS, INFO)


def test_no_trained_models_and_no_references_are_said_plainly(summary):
    refs_only = summary[summary["kind"] != "trained"]
    assert "No trained models yet" in render.render(refs_only, {}, INFO)
    assert "--no-references" in render.render(summary[summary["kind"] == "trained"], CARDS, INFO)


def test_plot_is_a_deterministic_png(summary, tmp_path):
    png = render.plot_png(summary)
    assert png.startswith(b"\x89PNG") and render.plot_png(summary) == png
    assert b"matplotlib" not in png  # no version stamp that would change with the library
    render.plot(summary, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes() == png


HOSTILE = ["<script>alert(1)</script>", "a|b", "$\\frac{1}{$", "$x^2$", "_hidden", "**bold** [x](y) `c` ~~s~~",
           "two\nlines", "back\\slash & co"]


@pytest.fixture(scope="module")
def hostile_summary() -> pd.DataFrame:
    df = fixed_results()
    names = {"conv_tasnet": HOSTILE[0], "lstm_mask": HOSTILE[1], "oracle_irm": HOSTILE[2]}
    df["model"] = df["model"].replace(names)
    df.loc[df["model"] == HOSTILE[0], "profile"] = "|".join(HOSTILE[3:])
    return aggregate.summarize(df)


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def test_names_are_escaped_for_markdown(hostile_summary):
    info = {**INFO, "data": "data/`x`/<b>|y</b>\n# heading", "git_commit": "<i>abc</i>|def"}
    text = render.render(hostile_summary, {}, info)
    assert "<script>" not in text and "<i>" not in text and "<b>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;i&gt;abc&lt;/i&gt;\\|def" in text
    assert "a\\|b" in text and "\\$\\\\frac{1}{\\$" in text and "\\*\\*bold\\*\\* \\[x\\](y) \\`c\\` \\~\\~s\\~\\~" in text
    assert "\\_hidden" in text and "conv_tasnet" not in text
    assert "\n# heading" not in text  # a newline in a value never starts a Markdown block
    assert "- Test set: data/\\`x\\`/&lt;b&gt;\\|y&lt;/b&gt; # heading (content hash `0123456789abcdef`" in text
    for table in (render.main_table(hostile_summary, {}), render.reference_table(hostile_summary),
                  render.snr_table(hostile_summary)):
        lines = table.splitlines()
        assert all(line.startswith("|") for line in lines)  # no row split by a newline
        assert len({_unescaped_pipes(line) for line in lines}) == 1  # no column added by a '|'


def test_plot_shows_names_as_plain_text(hostile_summary):
    # '$\frac{1}{$' used to make matplotlib's math parser raise, and no leaderboard was written.
    png = render.plot_png(hostile_summary)
    assert png.startswith(b"\x89PNG") and render.plot_png(hostile_summary) == png
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context({"text.parse_math": False}):
        ax = Figure().add_subplot()
        ax.plot([0], [0], label=render._label("_hidden"))
        assert [t.get_text() for t in ax.legend().get_texts()] == ["\u200b_hidden"]


@pytest.mark.parametrize("n", [1, 4, 10, 12, 20, 25])
def test_every_model_gets_its_own_colour_and_none_is_grey(n):
    colors = render.model_colors(n)
    assert len(set(colors)) == n
    assert not any(c[0] == c[1] == c[2] for c in colors)  # grey is for references only


def test_a_model_has_one_colour_in_every_plot():
    """The SNR plot and the learning curves draw different subsets in different orders; the map
    depends only on the set of names, so a model keeps its colour across both."""
    names = ["spec_unet/cpu", "lstm_mask/cpu", "conv_tasnet/cpu"]
    a, b = render.model_color_map(names), render.model_color_map(reversed(names + ["lstm_mask/cpu"]))
    assert a == b and len(set(map(tuple, a.values()))) == 3
