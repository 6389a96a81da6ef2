"""benchmark.evaluate (+ references): tiny untrained models on the tiny generated data set."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import recipes
from benchmark import cli
from benchmark import evaluate as ev
from benchmark.scoring import aggregate, references, write_examples
from benchmark.scoring import workers as eval_workers
from recipes.checkpoint import save_model
from recipes.data import FolderDataset
from recipes.files import temp_prefix
from recipes.folder import load_split

TINY = {"conv_tasnet": dict(n_blocks=2, n_repeats=1, n_filters=32, bn_chan=16, hid_chan=32, skip_chan=16),
        "lstm_mask": dict(hidden=16, n_layers=1)}
N_MODELS = 2 + len(references.names())
TIMING = ["sep_seconds", "rtf", "evaluated_at", "git_commit"]


def assert_same_scores(path_a, path_b, tol=0.0):
    """Equal rows of the models in b, ignoring timings; floats to `tol` (0: bit-identical)."""
    a, b = (aggregate.read_results(p).drop(columns=TIMING) for p in (path_a, path_b))
    a = a[a["model"].isin(set(b["model"]))].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=tol, atol=tol)


def make_run(runs: Path, recipe: str, profile: str = "tiny", sample_rate: int = 8000, **card) -> Path:
    args = {"sample_rate": sample_rate, **TINY[recipe]}
    torch.manual_seed(0)
    model = recipes.get(recipe).build(**args)
    folder = runs / recipe / profile
    folder.mkdir(parents=True)
    save_model(folder / "best.pt", model, recipe, args, sample_rate, profile=profile, seed=0, config={})
    card = {"recipe": recipe, "profile": profile, "model_args": args, "sample_rate": sample_rate, "status": "complete",
            "n_params": sum(p.numel() for p in model.parameters()), "train_seconds": 12.0, **card}
    (folder / "card.json").write_text(json.dumps(card), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def first(tiny_data, tmp_path_factory):
    """One full evaluation (2 tiny models + references), shared by the tests below, read-only."""
    root = tmp_path_factory.mktemp("eval")
    for recipe in TINY:
        make_run(root / "runs", recipe)
    lines = []
    result = ev.evaluate(tiny_data / "test", root / "runs", root / "out", jobs=1, device="cpu", log=lines.append)
    return result, root, lines


def copy_of(first, tmp_path) -> tuple[Path, Path]:
    """Private copies of the runs and of the output folder (with its cache)."""
    _, root, _ = first
    return Path(shutil.copytree(root / "runs", tmp_path / "runs")), Path(shutil.copytree(root / "out", tmp_path / "out"))


def test_every_output_is_written(first):
    result, root, lines = first
    for key in ("results", "summary", "leaderboard", "plot"):
        assert Path(result[key]).is_file() and Path(result[key]).stat().st_size > 0, key
    assert result["evaluated"] == N_MODELS and result["cached"] == 0 and result["failed"] == []
    assert sum("clips/s" in line for line in lines) == N_MODELS + 1  # one line per model + the baseline
    text = Path(result["leaderboard"]).read_text(encoding="utf-8")
    assert "conv_tasnet" in text and "lstm_mask" in text and "oracle_wiener" in text
    hidden = {p.name for p in (root / "out").iterdir() if p.name.startswith(".")}
    assert hidden == {".lock"}  # no temp files left; the lock file stays, naming no one
    assert (root / "out" / ".lock").read_text() == ""


def test_rows_columns_and_references(first, tiny_data):
    result, _, _ = first
    df = aggregate.read_results(result["results"])
    assert len(df) == N_MODELS * 9 and df["failure_reason"].eq("").all()
    assert list(df.columns[:9]) == ["model", "profile", "kind", "seed", "clip_id", "snr_label", "snr_measured",
                                    "sample_rate", "duration_s"]
    for col in ("voice_sisdr", "voice_sisdri", "voice_sdr", "voice_sdri", "voice_pesq_nb", "voice_stoi",
                "voice_estoi", "noise_sisdr", "noise_sisdri", "input_voice_sisdr", "input_noise_sisdr",
                "input_voice_pesq_nb", "input_voice_stoi", "sep_seconds", "rtf", "failure_reason",
                "checkpoint", "checkpoint_hash"):
        assert col in df.columns, col
    kinds = df.groupby("model")["kind"].first().to_dict()
    assert kinds == {"conv_tasnet": "trained", "lstm_mask": "trained", "mixture": "reference",
                     "oracle_irm": "oracle", "oracle_ibm": "oracle", "oracle_wiener": "oracle"}
    trained = df[df["kind"] == "trained"]
    assert set(trained["checkpoint"]) == {"runs/conv_tasnet/tiny/best.pt", "runs/lstm_mask/tiny/best.pt"}
    assert (trained["rtf"] > 0).all() and trained["checkpoint_hash"].str.fullmatch("[0-9a-f]{16}").all()
    assert sorted(set(df["clip_id"])) == sorted(p.name for p in (tiny_data / "test").iterdir() if p.is_dir())
    assert set(df["snr_label"]) == {-3.0, 0.0, 3.0}
    assert np.allclose(df["snr_measured"], df["snr_label"], atol=0.05)  # the demo sets the label exactly


def test_mixture_improvement_is_exactly_zero_and_the_oracle_beats_it(first):
    df = aggregate.read_results(first[0]["results"])
    mixture, irm = df[df["model"] == "mixture"], df[df["model"] == "oracle_irm"]
    assert (mixture["voice_sisdri"] == 0.0).all() and (mixture["noise_sisdri"] == 0.0).all()
    assert (mixture["voice_sdri"] == 0.0).all()
    assert (irm["voice_sisdri"].to_numpy() > 0).all() and irm["voice_sisdri"].mean() > 3
    assert irm["voice_stoi"].mean() > mixture["voice_stoi"].mean()


def test_second_call_is_a_cache_noop(first, tmp_path, tiny_data, monkeypatch):
    result, root, _ = first
    runs, out = copy_of(first, tmp_path)
    monkeypatch.setattr(eval_workers, "_run_task", lambda task: pytest.fail("a cached model was evaluated again"))
    again = ev.evaluate(tiny_data / "test", runs, out, jobs=1, device="cpu", log=lambda *_: None)
    assert again["evaluated"] == 0 and again["cached"] == N_MODELS
    for key in ("results", "summary", "leaderboard", "plot"):
        assert Path(again[key]).read_bytes() == Path(result[key]).read_bytes(), key


def test_listening_estimates_are_kept_and_score_as_results_says(first, tmp_path, tiny_data, monkeypatch):
    """evaluate keeps, per SNR label, the median clip's estimates of every trained model and the
    oracle (OUT/cache/listen), and they are the audio that was scored: their SI-SDR is the row's.
    A no-op re-run leaves them untouched and loads no model; the page is built from them."""
    from benchmark.report.listen import build_listening_page
    from benchmark.scoring import examples
    from benchmark.scoring.metrics import si_sdr
    from recipes.audio import read_audio

    result, root, _ = first
    where = Path(result["listen_audio"])
    index = examples.read_index(where)
    assert [m["label"] for m in index["models"]] == ["conv_tasnet/tiny", "lstm_mask/tiny", "oracle_irm"]
    assert len(index["clips"]) == 3 and index["per_bucket"] == 1  # one per SNR label (-3, 0, 3)
    df = aggregate.read_results(result["results"])
    clips = {c.id: c for c in load_split(tiny_data / "test")}
    for entry in index["models"]:
        assert entry["failed"] == {}
        for cid in index["clips"]:
            est = read_audio(examples.estimate_path(where, entry, cid, "voice"))[0]
            row = df[(df["model"] == entry["model"]) & (df["clip_id"] == cid)]
            assert abs(si_sdr(est, read_audio(clips[cid].voice)[0]) - row["voice_sisdr"].iloc[0]) < 1e-3

    runs, out = copy_of(first, tmp_path)
    before = {p: p.stat().st_mtime_ns for p in (out / "cache" / "listen").rglob("*")}
    with monkeypatch.context() as m:
        m.setattr(write_examples, "load_model", lambda *a: pytest.fail("a model was loaded for unchanged estimates"))
        ev.evaluate(tiny_data / "test", runs, out, jobs=1, device="cpu", log=lambda *_: None)
    assert {p: p.stat().st_mtime_ns for p in (out / "cache" / "listen").rglob("*")} == before
    page = build_listening_page(out / "results.csv", tiny_data / "test", out, log=lambda *_: None)
    assert page.read_text(encoding="utf-8").count("<audio") == 3 * (3 + 2 * 3)
    ev.evaluate(tiny_data / "test", runs, out, jobs=1, device="cpu", log=lambda *_: None, listen_clips=2)
    assert examples.read_index(out / "cache" / "listen")["per_bucket"] == 2
    assert len(examples.read_index(out / "cache" / "listen")["clips"]) == 6


def test_outputs_are_made_again_only_when_an_input_or_an_output_changed(first, tmp_path, tiny_data, monkeypatch):
    """Unchanged inputs: no output is rewritten and nothing is summarised or drawn again. An output
    edited by hand, or another grouping, or another run card, makes them again."""
    runs, out = copy_of(first, tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    lines = []
    with monkeypatch.context() as m:
        m.setattr(ev.render, "plot_png", lambda *a, **k: pytest.fail("the plot was drawn again"))
        ev.evaluate(tiny_data / "test", runs, out, jobs=1, device="cpu", log=lines.append)
    assert any("is up to date" in line for line in lines) and any("conv_tasnet" in line for line in lines)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file() and p.name != ".lock"} == before
    board = out / "LEADERBOARD.md"
    original = board.read_text(encoding="utf-8")
    board.write_text("edited by hand\n", encoding="utf-8")
    ev.evaluate(tiny_data / "test", runs, out, jobs=1, device="cpu", log=lambda *_: None)
    assert board.read_text(encoding="utf-8") == original
    ev.evaluate(tiny_data / "test", runs, out, jobs=1, device="cpu", log=lambda *_: None, bucket="measured")
    assert "measured on the stems" in board.read_text(encoding="utf-8")
    card = runs / "lstm_mask" / "tiny" / "card.json"
    card.write_text(card.read_text().replace('"train_seconds": 12.0', '"train_seconds": 7200.0'))
    ev.evaluate(tiny_data / "test", runs, out, jobs=1, device="cpu", log=lambda *_: None)
    assert "2.0 h" in board.read_text(encoding="utf-8")


def test_force_reevaluates_with_the_same_scores(first, tmp_path, tiny_data):
    runs, out = copy_of(first, tmp_path)
    again = ev.evaluate(tiny_data / "test", runs, out, jobs=1, force=True, device="cpu", with_references=False,
                        log=lambda *_: None)
    assert again["evaluated"] == 2 and again["cached"] == 0
    assert_same_scores(first[0]["results"], again["results"])


@pytest.mark.slow
def test_parallel_workers_give_the_serial_scores(first, tmp_path, tiny_data):
    runs, _ = copy_of(first, tmp_path)
    par = ev.evaluate(tiny_data / "test", runs, tmp_path / "par", jobs=2, device="cpu", with_references=False,
                      log=lambda *_: None)
    assert par["evaluated"] == 2
    assert_same_scores(first[0]["results"], par["results"])  # one torch thread per forward, any --jobs


@pytest.mark.parametrize("jobs", [1, 2])
def test_batched_inference_gives_the_per_clip_scores(first, tmp_path, tiny_data, write_clip, tone_and_noise, jobs):
    """--batch: the model runs on batches of equal-length clips in this process, workers score.
    Clips of three lengths (one group larger than the batch) must give the per-clip rows."""
    data = Path(shutil.copytree(tiny_data / "test", tmp_path / "test"))
    for k, n in enumerate((6000, 6000, 12000)):
        write_clip(data / f"{9001 + k}", *tone_and_noise(n, seed=k), snr=0)
    runs, _ = copy_of(first, tmp_path)
    kw = dict(jobs=jobs, device="cpu", with_references=False, log=lambda *_: None)
    one = ev.evaluate(data, runs, tmp_path / "one", batch=1, **kw)
    lengths = FolderDataset(load_split(data)).lengths
    assert sorted(map(len, eval_workers.batches(lengths, 4, 8000))) == [1, 1, 2, 4, 4]
    batched = ev.evaluate(data, runs, tmp_path / "batched", batch=4, **kw)
    assert len(aggregate.read_results(batched["results"])) == 2 * 12
    assert_same_scores(one["results"], batched["results"], tol=1e-4)
    assert aggregate.read_results(batched["results"])["failure_reason"].eq("").all()


def test_a_failing_batch_marks_its_clips_and_the_rest_is_scored(first, tmp_path, tiny_data, monkeypatch):
    runs, _ = copy_of(first, tmp_path)
    real = eval_workers.separate

    def fail_on_big_batches(model, mixes, **kw):
        if len(mixes) > 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(model, mixes, **kw)

    monkeypatch.setattr(eval_workers, "separate", fail_on_big_batches)
    result = ev.evaluate(tiny_data / "test", runs, tmp_path / "fresh", jobs=1, device="cpu", batch=4,
                         with_references=False, log=lambda *_: None)
    df = aggregate.read_results(result["results"])
    bad = df[df["failure_reason"] != ""]
    assert len(bad) == 2 * 8 and bad["voice_sisdr"].isna().all()  # 9 clips: batches of 4, 4 and 1
    assert bad["failure_reason"].str.contains("RuntimeError: CUDA out of memory.*batch of 4: try --batch 1").all()
    assert df[df["failure_reason"] == ""]["voice_sisdr"].notna().sum() == 2


def test_a_broken_checkpoint_is_one_line_and_the_others_continue(first, tmp_path, tiny_data, capsys):
    runs, out = copy_of(first, tmp_path)
    shutil.copytree(runs / "lstm_mask" / "tiny", runs / "lstm_mask" / "broken")
    (runs / "lstm_mask" / "broken" / "best.pt").write_bytes(b"not a checkpoint")
    make_run(runs, "conv_tasnet", "wideband", sample_rate=16000)
    rc = cli.main(["evaluate", "--data", str(tiny_data / "test"), "--runs", str(runs), "--out", str(out),
                   "--jobs", "1", "--device", "cpu"])
    printed = capsys.readouterr()
    assert rc == 1
    errors = [line for line in (printed.out + printed.err).splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert any("broken/best.pt" in e for e in errors) and any("wideband/best.pt: trained at 16000 Hz" in e for e in errors)
    df = aggregate.read_results(out / "results.csv")
    assert set(df["model"]) == {"conv_tasnet", "lstm_mask", "mixture", "oracle_irm", "oracle_ibm", "oracle_wiener"}
    assert set(df["profile"]) == {"tiny", "-"}


def test_unfinished_runs_are_skipped_with_a_note(first, tmp_path, tiny_data, capsys):
    runs, out = copy_of(first, tmp_path)
    (runs / "conv_tasnet" / "tiny" / "card.json").unlink()
    make_run(runs, "lstm_mask", "running", status="running")
    rc = cli.main(["evaluate", "--data", str(tiny_data / "test"), "--runs", str(runs), "--out", str(out),
                   "--jobs", "1", "--device", "cpu"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "note: skipped" in printed and "no card.json" in printed and "'running'" in printed
    models = set(aggregate.read_results(out / "results.csv")["model"])
    assert "lstm_mask" in models and "conv_tasnet" not in models


def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, capsys, write_clip, tone_and_noise):
    rc = cli.main(["evaluate", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "sepbench evaluate: error:" in err and "missing" in err
    assert not (tmp_path / "out").exists()
    write_clip(tmp_path / "one" / "0001", *tone_and_noise(8000))
    rc = cli.main(["evaluate", "--data", str(tmp_path / "one"), "--batch", "0", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--batch 0: must be at least 1" in err
    if not torch.cuda.is_available():
        rc = cli.main(["evaluate", "--data", str(tmp_path / "one"), "--device", "cuda", "--out", str(tmp_path / "out")])
        assert rc == 2 and "no CUDA device" in capsys.readouterr().err


def test_an_interrupted_run_leaves_the_previous_leaderboard(first, tmp_path, tiny_data, monkeypatch):
    from benchmark.report import render

    runs, out = copy_of(first, tmp_path)
    (out / "cache" / "outputs.json").unlink()  # outputs made again: they are what gets interrupted
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(render, "plot_png", interrupt)
    with pytest.raises(KeyboardInterrupt):
        ev.evaluate(tiny_data / "test", runs, out, jobs=1, device="cpu", log=lambda *_: None)
    monkeypatch.undo()
    monkeypatch.setattr(ev, "run_per_clip", interrupt)  # in this process: the scoring itself runs in a worker
    with pytest.raises(KeyboardInterrupt):
        ev.evaluate(tiny_data / "test", runs, out, jobs=1, force=True, device="cpu", log=lambda *_: None)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_a_failing_pesq_is_an_empty_cell_and_a_reason(tmp_path, write_clip):
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 8000
    speech = (0.2 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2).astype(np.float32)
    whistle = (0.2 * np.sin(2 * np.pi * 3950 * t)).astype(np.float32)  # no speech-band energy at all
    noise = (0.05 * rng.standard_normal(8000)).astype(np.float32)
    write_clip(tmp_path / "test/0001", speech, noise, snr=0)
    write_clip(tmp_path / "test/0002", whistle, noise, snr=0)
    result = ev.evaluate(tmp_path / "test", None, tmp_path / "out", jobs=1, device="cpu", log=lambda *_: None)
    lines = Path(result["results"]).read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    col, reason = header.index("voice_pesq_nb"), header.index("failure_reason")
    whistle_rows = [line.split(",") for line in lines[1:] if line.split(",")[header.index("clip_id")] == "0002"]
    assert len(whistle_rows) == len(references.names())
    for cells in whistle_rows:
        assert cells[col] == "" and "pesq found no utterances" in cells[reason]
        assert cells[header.index("voice_sisdr")] != ""  # other metrics of that clip are kept
    summary = aggregate.read_summary(result["summary"])
    row = summary[(summary["model"] == "mixture") & (summary["metric"] == "voice_pesq_nb") & (summary["snr_bucket"] == "all")]
    assert row["n"].item() == 1 and row["n_failed"].item() == 1


# ---- references on their own ----

def _clip(seed=0, n=16000):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 8000
    voice = np.sin(2 * np.pi * 200 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t)) ** 2
    noise = 0.5 * rng.standard_normal(n)
    return np.stack([voice, noise]).astype(np.float32)


@pytest.mark.parametrize("name", ["oracle_irm", "oracle_ibm", "oracle_wiener"])
def test_oracle_masks_split_the_mixture_and_beat_it(name):
    from benchmark.scoring.metrics import si_sdr

    sources = _clip()
    mix = sources.sum(axis=0)
    est = references.estimate(name, mix, sources, 8000)
    assert est.shape == sources.shape and references.kind(name) == "oracle"
    assert np.allclose(est.sum(axis=0), mix, atol=1e-4)  # complementary masks: nothing added or lost
    assert si_sdr(est[0], sources[0]) > si_sdr(mix, sources[0]) + 5


def test_oracles_use_the_stems_gains_inside_the_mixture():
    from benchmark.scoring.metrics import si_sdr

    sources = _clip(1)
    mix = 2.0 * sources[0] + 0.25 * sources[1]  # stems stored at other gains than in the mixture
    consistent = np.stack([2.0 * sources[0], 0.25 * sources[1]])
    for name in ("oracle_irm", "oracle_wiener"):
        a = references.estimate(name, mix, sources, 8000)
        b = references.estimate(name, mix, consistent, 8000)
        assert si_sdr(a[0], sources[0]) == pytest.approx(si_sdr(b[0], sources[0]), abs=1e-3)


def test_mixture_reference_is_the_mixture_twice():
    sources = _clip()
    mix = sources.sum(axis=0)
    assert references.kind("mixture") == "reference"
    assert np.array_equal(references.estimate("mixture", mix, sources, 8000), np.stack([mix, mix]))


# ---- never lose a leaderboard, never trust a name ----

def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _evaluate_cli(data, runs, out, *extra) -> int:
    return cli.main(["evaluate", "--data", str(data), "--runs", str(runs), "--out", str(out), "--jobs", "1",
                     "--device", "cpu", *extra])


def _one_error_line(capsys) -> str:
    printed = capsys.readouterr()
    assert "Traceback" not in printed.err and printed.err.count("\n") == 1, printed.err
    return printed.err


@pytest.mark.parametrize("case", ["mistyped", "empty", "unfinished"])
def test_finding_no_checkpoint_is_an_error_and_keeps_the_leaderboard(first, tmp_path, tiny_data, capsys, case):
    runs, out = copy_of(first, tmp_path)
    before = _files(out)
    if case == "mistyped":
        runs = tmp_path / "rnus"
    elif case == "empty":
        runs = tmp_path / "empty_runs"
        runs.mkdir()
    else:
        for card in runs.glob("*/*/card.json"):
            card.unlink()
    rc = _evaluate_cli(tiny_data / "test", runs, out)
    err = _one_error_line(capsys)
    assert rc == 2 and f"{runs}:" in err and f"{out} was left as it was" in err
    assert _files(out) == before


def test_no_scorable_checkpoint_is_an_error_and_keeps_the_leaderboard(first, tmp_path, tiny_data, capsys,
                                                                       monkeypatch):
    runs, out = copy_of(first, tmp_path)
    for ckpt in runs.glob("*/*/best.pt"):
        ckpt.write_bytes(b"not a checkpoint")
    before = _files(out)
    monkeypatch.setattr(eval_workers, "_run_task", lambda task: pytest.fail("nothing should be computed"))
    rc = _evaluate_cli(tiny_data / "test", runs, out, "--force")
    printed = capsys.readouterr()
    assert rc == 2 and "Traceback" not in printed.err
    assert f"{runs}: no checkpoint could be scored" in printed.err and printed.err.count("\n") == 1
    assert _files(out) == before


def test_references_only_is_explicit(tmp_path, tiny_data, capsys):
    rc = cli.main(["evaluate", "--data", str(tiny_data / "test"), "--references-only", "--runs",
                   str(tmp_path / "ignored"), "--out", str(tmp_path / "out"), "--jobs", "1", "--device", "cpu"])
    assert rc == 0
    assert set(aggregate.read_results(tmp_path / "out" / "results.csv")["kind"]) == {"reference", "oracle"}
    assert "No trained models yet" in (tmp_path / "out" / "LEADERBOARD.md").read_text(encoding="utf-8")


def test_a_second_evaluation_of_the_same_folder_is_refused(first, tmp_path, tiny_data, capsys):
    from recipes.lock import exclusive_lock

    runs, out = copy_of(first, tmp_path)
    before = _files(out)
    with exclusive_lock(out, "evaluation"):
        rc = _evaluate_cli(tiny_data / "test", runs, out)
        err = _one_error_line(capsys)
    assert rc == 2
    assert f"{out}: locked by another sepbench evaluation (PID {os.getpid()}); wait for it or stop it" in err
    assert _files(out) == before  # the holder's .lock was not touched either


def test_names_come_from_folder_names_and_never_leave_the_output_folder(first, tmp_path, tiny_data, capsys):
    runs, out = copy_of(first, tmp_path)
    outside = tmp_path / "outside"
    card = runs / "conv_tasnet" / "tiny" / "card.json"
    # Relative ../ and an absolute recipe: each used to put a cache file outside --out.
    card.write_text(json.dumps({**json.loads(card.read_text()), "recipe": str(outside / "evil"),
                                "profile": "../../../../../../x"}), encoding="utf-8")
    shutil.copytree(runs / "lstm_mask" / "tiny", runs / "lstm_mask" / "bad name")
    before = {p for p in tmp_path.rglob("*") if out not in p.parents}
    rc = _evaluate_cli(tiny_data / "test", runs, out, "--force", "--no-references")
    printed = capsys.readouterr()
    assert rc == 1  # the run folder with the unsafe name is an error; the others are scored
    errors = [line for line in printed.out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad name: run folder names must use only letters" in errors[0]
    assert "differs from the folder name; using 'conv_tasnet'" in printed.out
    assert {p for p in tmp_path.rglob("*") if out not in p.parents} == before
    assert not outside.exists()
    df = aggregate.read_results(out / "results.csv")
    assert set(zip(df["model"], df["profile"])) == {("conv_tasnet", "tiny"), ("lstm_mask", "tiny")}
    assert all(re.fullmatch(r"(trained|inputs|reference|oracle)-[0-9a-f]{32}\.csv|outputs\.json|listen|listen\.json", p.name)
               for p in (out / "cache").iterdir())


def test_stale_temp_files_of_a_killed_run_are_removed_at_start(first, tmp_path, tiny_data, capsys):
    runs, out = copy_of(first, tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    host = temp_prefix(out / "x").split("-")[2]
    stale = [out / f".results.csv.sepbench-{dead}-{host}-abcd_123.tmp.csv",  # its writer is gone
             out / "cache" / ".inputs-0.csv.k2j4h5g6.tmp.csv"]  # an older sepbench's, hours old
    kept = [out / f".summary.csv.sepbench-{os.getppid()}-{host}-zzzzzzzz.tmp.csv",  # writer alive
            out / ".my_notes.txt"]  # not ours
    for path in stale + kept:
        path.write_bytes(b"x" * 100)
        os.utime(path, (time.time() - 7200, time.time() - 7200))
    rc = _evaluate_cli(tiny_data / "test", runs, out)
    printed = capsys.readouterr().out
    assert rc == 0
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    assert all(f"note: removed {p}" in printed for p in stale)


def test_learning_curves_come_from_each_runs_log(tiny_data, tmp_path):
    """learning_curves.png plots every trained run's log.csv and LEADERBOARD.md points to it; a
    run without a log is left out of the plot, and with no log at all there is no plot."""
    runs = tmp_path / "runs"
    with_log = make_run(runs, "lstm_mask")
    (with_log / "log.csv").write_text("epoch,step,train_loss,val_loss,val_sisdr,val_sisdri,lr,train_seconds\n"
                                      "0,4,1,1,1,2.5,0.001,30\n1,8,1,1,1,4.0,0.001,60\n")
    make_run(runs, "conv_tasnet")
    entries, _ = ev.discover(runs, log=lambda *a: None)
    assert ev.learning_curves(entries) == {"lstm_mask/tiny": [(0.5, 2.5), (1.0, 4.0)]}
    out = tmp_path / "lb"
    ev.evaluate(tiny_data / "test", runs=runs, out=out, jobs=1, with_references=False, log=lambda *a: None)
    assert (out / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "(learning_curves.png)" in (out / "LEADERBOARD.md").read_text()
    (with_log / "log.csv").unlink()
    ev.evaluate(tiny_data / "test", runs=runs, out=tmp_path / "lb2", jobs=1, with_references=False, log=lambda *a: None)
    assert not (tmp_path / "lb2" / "learning_curves.png").exists()
    assert "learning_curves.png" not in (tmp_path / "lb2" / "LEADERBOARD.md").read_text()


def test_shards_merge_into_what_one_process_writes(first, tmp_path, tiny_data, monkeypatch, capsys):
    """--shard K/N scores every N-th clip into a folder of its own (holding only that folder's
    lock, so shards run side by side) and writes no leaderboard; the next plain evaluate merges
    the shards without scoring anything: the rows one process wrote, timings aside."""
    from recipes.lock import exclusive_lock

    result, root, _ = first
    runs = Path(shutil.copytree(root / "runs", tmp_path / "runs"))
    out = tmp_path / "out"
    with exclusive_lock(out, "evaluation"):  # another process holding OUT does not stop a shard
        for k in (1, 2):
            part = ev.evaluate(tiny_data / "test", runs, out, jobs=1, device="cpu", shard=f"{k}/2", log=lambda *_: None)
            assert part["evaluated"] == N_MODELS and Path(part["shard"]) == out / "cache" / "shards" / "2" / str(k)
    assert not (out / "results.csv").exists() and not (out / "LEADERBOARD.md").exists()
    ids = sorted(p.name for p in (tiny_data / "test").iterdir() if p.is_dir())
    first_shard = next((out / "cache" / "shards" / "2" / "1").glob("trained-*.csv"))
    assert sorted(aggregate.read_results(first_shard)["clip_id"]) == ids[0::2]

    lines = []
    monkeypatch.setattr(eval_workers, "_run_task", lambda task: pytest.fail("a shard's rows were scored again"))
    merged = ev.evaluate(tiny_data / "test", runs, out, jobs=1, device="cpu", log=lines.append)
    assert merged["evaluated"] == 0 and merged["cached"] == N_MODELS
    assert sum("merged from 2 shards" in line for line in lines) == N_MODELS
    assert_same_scores(result["results"], merged["results"])
    one, two = (Path(r["leaderboard"]).read_text(encoding="utf-8").splitlines() for r in (result, merged))
    # Timing aside: the date line, and the RTF cells (separation time is measured per run), found
    # through each table's own header.
    def timeless(lines):
        rtf, kept = [], []
        for line in lines:
            cells = line.split("|")
            if any(c.strip().startswith("RTF") for c in cells):
                rtf = [i for i, c in enumerate(cells) if c.strip().startswith("RTF")]
            kept.append("- Results of:" if line.startswith("- Results of:")
                        else [c for i, c in enumerate(cells) if i not in rtf])
        return kept, rtf
    (a, rtf), (b, _) = timeless(one), timeless(two)
    assert rtf and len(one) == len(two)
    assert [(x, y) for x, y in zip(a, b) if x != y] == []

    monkeypatch.undo()
    assert cli.main(["evaluate", "--data", str(tiny_data / "test"), "--out", str(tmp_path / "x"), "--shard", "3/2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "--shard 3/2" in err and not (tmp_path / "x").exists()


def test_outputs_are_replaced_as_one_set(first, tmp_path, tiny_data, capsys):
    """An output that cannot be put in place (LEADERBOARD.md is a folder) leaves every other
    output as it was, the plots included: never half a leaderboard; the error is one line."""
    runs, out = copy_of(first, tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    (out / "LEADERBOARD.md").unlink()
    (out / "LEADERBOARD.md").mkdir()
    make_run(runs, "lstm_mask", profile="other")  # a new row: every output would change
    assert _evaluate_cli(tiny_data / "test", runs, out) == 2
    err = _one_error_line(capsys)
    assert "LEADERBOARD.md: Is a directory" in err
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    assert after == {k: v for k, v in before.items() if k != "LEADERBOARD.md"}


def test_a_checkpoint_of_another_recipe_in_a_run_folder_is_not_scored(first, tmp_path, tiny_data, capsys):
    """conv_tasnet's best.pt copied into runs/lstm_mask/tiny/ used to be published as lstm_mask
    with conv_tasnet's scores and size: the checkpoint's own recipe decides, and it is an error."""
    runs, out = copy_of(first, tmp_path)
    shutil.copy(runs / "conv_tasnet" / "tiny" / "best.pt", runs / "lstm_mask" / "tiny" / "best.pt")
    assert _evaluate_cli(tiny_data / "test", runs, out, "--no-references") == 1
    errors = [line for line in capsys.readouterr().out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "checkpoint of recipe 'conv_tasnet' in a run folder of 'lstm_mask'" in errors[0]
    df = aggregate.read_results(out / "results.csv")
    assert set(df.loc[df["kind"] == "trained", "model"]) == {"conv_tasnet"}


def test_sigterm_stops_the_worker_pool_in_one_line(first, tmp_path, tiny_data):
    """SIGTERM to `evaluate --jobs 2` while its workers score: one line and exit 143, no worker
    traceback (BrokenPipeError), no leaked semaphores, and the previous outputs as they were."""
    runs, out = copy_of(first, tmp_path)
    before = _files(out)
    proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "evaluate", "--data", str(tiny_data / "test"),
                             "--runs", str(runs), "--out", str(out), "--jobs", "2", "--device", "cpu", "--force"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("started 2 worker processes"):
            break
    else:
        pytest.fail(f"the pool never started: {proc.wait()} {proc.stderr.read()}")
    proc.terminate()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip() == "sepbench evaluate: stopped (SIGTERM)", err
    assert _files(out) == before
