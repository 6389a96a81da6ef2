"""`sepbench export` and exported models in `sepbench separate`, parametrised over the recipe
registry: every recipe exports to both formats or fails with the one-line reason it declares
(register(..., cannot_export={format: words of the refusal}), recipes/__init__.py).

Parity: max |exported - PyTorch| <= export.TOLERANCE (1e-4) x the larger of the mixture's and the
PyTorch estimates' peaks, on input lengths and batch sizes other than the traced one."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
import torch

import recipes
from benchmark import cli
from benchmark.separate import export
from benchmark.separate.core import separate
from recipes import config
from recipes.checkpoint import load_model, save_model
from recipes.errors import SepbenchError
from recipes.files import file_hash

RATE = 8000
ALL = recipes.names()


def write_run(root: Path, name: str, seed: int = 0) -> Path:
    """runs/<name>/smoke/best.pt with random smoke-size weights, written as training's BestExport does."""
    args = config.model_args(name, RATE, config.resolve(name, "smoke")["model"])
    torch.manual_seed(seed)
    model = recipes.get(name).build(**args).eval()
    run = root / "runs" / name / "smoke"
    save_model(run / "best.pt", model, name, args, RATE, epoch=0, val_loss=-1.0, val_sisdri=1.0)
    return run


def torch_model(run: Path):
    return load_model(run / "best.pt")[0]


def assert_close(got: np.ndarray, ref: np.ndarray, mix: np.ndarray) -> float:
    assert got.shape == ref.shape
    rel = float(np.abs(got - ref).max()) / max(float(np.abs(mix).max()), float(np.abs(ref).max()))
    assert rel <= export.TOLERANCE, rel
    return rel


def cli_main(argv, capsys) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("fmt", list(export.FORMATS))
@pytest.mark.parametrize("name", ALL)
def test_export_matches_pytorch_at_two_lengths(name, fmt, tmp_path):
    run = write_run(tmp_path, name)
    out = tmp_path / f"model{export.FORMATS[fmt]}"
    refused = recipes.get(name).cannot_export.get(fmt)
    if refused:
        with pytest.raises(SepbenchError) as err:
            export.export(run / "best.pt", fmt, out)
        message = str(err.value)
        assert "\n" not in message and message.startswith(f"{name}: cannot be exported to {export.LABELS[fmt]}")
        assert refused in message, message
        assert not out.exists()
        return
    done = export.export(run / "best.pt", fmt, out)
    assert done["max_rel_diff"] <= export.TOLERANCE
    model, payload = export.load_separator(out)
    meta = payload["export"]
    assert (payload["recipe"], payload["sample_rate"]) == (name, RATE)
    assert payload["model_args"] == config.model_args(name, RATE, config.resolve(name, "smoke")["model"])
    assert meta["checkpoint_hash"] == file_hash(run / "best.pt") and meta["exported_as"] == fmt
    assert payload["meta"]["val_sisdri"] == 1.0  # the checkpoint's own metadata travels along
    reference = torch_model(run)
    rng = np.random.default_rng(1)
    # Neither length nor batch is the traced one (1 x 8001): the axes are dynamic.
    for shape in ((2, 3001), (1, 12345)):
        mix = (0.3 * rng.standard_normal(shape)).astype(np.float32)
        with torch.no_grad():
            ref = reference(torch.from_numpy(mix)).numpy()
            got = model(torch.from_numpy(mix)).numpy()
        assert_close(got, ref, mix)


@pytest.mark.parametrize("fmt", list(export.FORMATS))
def test_export_then_separate_equals_the_checkpoint(fmt, tmp_path, capsys):
    """The command line end to end: export, then separate a WAV at another rate in chunks with the
    export and with the checkpoint; same files within the tolerance."""
    run = write_run(tmp_path, "conv_tasnet")
    out = tmp_path / f"model{export.FORMATS[fmt]}"
    code, err = cli_main(["export", run, "--format", fmt, "--out", out], capsys)
    assert code == 0, err
    t = np.arange(int(1.7 * 11025)) / 11025
    mix = 0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * np.random.default_rng(0).standard_normal(len(t))
    sf.write(tmp_path / "in.wav", mix.astype(np.float32), 11025, subtype="FLOAT")
    chunks = ["--chunk-seconds", "0.5", "--context-seconds", "0.1"]
    for model, folder in ((out, "exported"), (run / "best.pt", "checkpoint")):
        code, err = cli_main(["separate", "--checkpoint", model, tmp_path / "in.wav", "--out", tmp_path / folder,
                              *chunks], capsys)
        assert code == 0, err
    for stem in ("voice", "noise"):
        got, sr = sf.read(tmp_path / "exported" / f"in_{stem}.wav")
        ref, _ = sf.read(tmp_path / "checkpoint" / f"in_{stem}.wav")
        assert sr == 11025 and len(got) == len(mix)
        assert_close(got, ref, mix)


def test_exported_model_separates_through_the_core_like_the_checkpoint(tmp_path):
    """Chunked separation needs the model's frame stride and minimum length, which an exported
    graph no longer shows: they travel in the metadata (a 1-sample input is padded, not refused)."""
    run = write_run(tmp_path, "dprnn")
    export.export(run / "best.pt", "onnx", tmp_path / "m.onnx")
    model, _ = export.load_separator(tmp_path / "m.onnx")
    reference = torch_model(run)
    assert (model.frame_stride, model.min_length) == (reference.frame_stride, reference.min_length)
    assert reference.frame_stride > 1
    mix = (0.3 * np.random.default_rng(0).standard_normal(5003)).astype(np.float32)
    for kw in ({}, dict(chunk=1200, context=300, fade=100)):
        assert_close(separate(model, mix, **kw), separate(reference, mix, **kw), mix)
    assert separate(model, mix[:1]).shape == (2, 1)


# torch.jit's and the legacy ONNX exporter's deprecations, for the hand-made files without metadata
@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::DeprecationWarning")
@pytest.mark.parametrize("argv, words", [
    (["export", "{tmp}/nowhere", "--format", "onnx", "--out", "{tmp}/m.onnx"], "no such run folder or checkpoint"),
    (["export", "{tmp}", "--format", "onnx", "--out", "{tmp}/m.onnx"], "no best.pt in this run folder"),
    (["export", "{run}", "--format", "tflite", "--out", "{tmp}/m.onnx"], "--format tflite: unknown format"),
    (["export", "{run}", "--format", "onnx", "--out", "{tmp}/m.pt"], "ONNX exports must be named *.onnx"),
    (["export", "{run}/best.pt", "--format", "torchscript", "--out", "{run}/best.pt"], "is the checkpoint being"),
    (["separate", "--checkpoint", "{tmp}/corrupt.onnx", "{tmp}/x.wav", "--out", "{tmp}/o"], "not a readable ONNX model"),
    (["separate", "--checkpoint", "{tmp}/plain.onnx", "{tmp}/x.wav", "--out", "{tmp}/o"], "holds no sepbench metadata"),
    (["separate", "--checkpoint", "{tmp}/plain_ts.pt", "{tmp}/x.wav", "--out", "{tmp}/o"], "holds no sepbench metadata"),
])
def test_bad_input_is_exit_2_and_one_line(argv, words, tmp_path, capsys):
    run = write_run(tmp_path, "conv_tasnet")
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x07 this is not a protobuf" * 10)
    model = torch.nn.Conv1d(1, 2, 3, padding=1).eval()
    torch.onnx.export(model, (torch.zeros(1, 1, 50),), tmp_path / "plain.onnx", dynamo=False)
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 1, 50)), tmp_path / "plain_ts.pt")
    sf.write(tmp_path / "x.wav", np.zeros(800, np.float32), RATE)
    capsys.readouterr()
    code, err = cli_main([a.format(tmp=tmp_path, run=run) for a in argv], capsys)
    assert code == 2
    assert err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "o").exists() and not (tmp_path / "m.onnx").exists()


def test_checkpoints_still_load_as_checkpoints(tmp_path):
    """torch.save writes a zip like torch.jit.save: best.pt must not be mistaken for TorchScript."""
    run = write_run(tmp_path, "conv_tasnet")
    assert zipfile.is_zipfile(run / "best.pt")
    model, payload = export.load_separator(run / "best.pt")
    assert isinstance(model, torch.nn.Module) and "export" not in payload


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.load's deprecation
def test_metadata_is_stored_inside_the_files(tmp_path):
    run = write_run(tmp_path, "conv_tasnet")
    export.export(run / "best.pt", "onnx", tmp_path / "m.onnx")
    export.export(run / "best.pt", "torchscript", tmp_path / "m.pt")
    props = {p.key: p.value for p in onnx.load(tmp_path / "m.onnx").metadata_props}
    extra = {"sepbench.json": ""}
    torch.jit.load(tmp_path / "m.pt", _extra_files=extra)
    for meta in (json.loads(props["sepbench"]), json.loads(extra["sepbench.json"])):
        assert (meta["recipe"], meta["sample_rate"]) == ("conv_tasnet", RATE)
        assert meta["checkpoint_hash"] == file_hash(run / "best.pt")
        assert meta["model_args"]["n_filters"] == config.resolve("conv_tasnet", "smoke")["model"]["n_filters"]
