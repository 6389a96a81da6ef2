"""The command line declares every subcommand without importing it: `--help` and `validate` must
not pay for torch and scipy.signal (2 s of a 3 s `sepbench --help`), and moving the declarations
out of the commands' modules must not change what any command accepts."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark import cli, commands

HEAVY = ("torch", "scipy.signal")
# Run in a fresh interpreter (this one has imported everything): every --help, then validate,
# then optionally something heavy to prove the check can see it; prints exit codes and HEAVY loaded.
SCRIPT = """
import contextlib, io, json, sys
from benchmark import cli
codes = {}
for argv in [["--help"]] + [[name, "--help"] for name in cli.COMMANDS] + [["validate", sys.argv[1]]]:
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            codes[" ".join(argv)] = cli.main(argv)
        except SystemExit as exc:
            codes[" ".join(argv)] = exc.code
if sys.argv[2]:
    __import__(sys.argv[2])
print(json.dumps({"codes": codes, "heavy": [m for m in %r if m in sys.modules]}))
""" % (HEAVY,)


@pytest.fixture
def tiny_set(tmp_path, write_clip, tone_and_noise) -> Path:
    for split, clip in (("train", "0001"), ("train", "0002"), ("test", "0001")):
        write_clip(tmp_path / "data" / split / clip, *tone_and_noise(n=800))
    return tmp_path / "data"


def _fresh(data: Path, also_import: str = "") -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(data), also_import], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_help_and_validate_import_neither_torch_nor_scipy_signal(tiny_set):
    seen = _fresh(tiny_set)
    assert seen["codes"] == {"--help": 0, **{f"{name} --help": 0 for name in cli.COMMANDS},
                             f"validate {tiny_set}": 0}
    assert seen["heavy"] == []


def test_the_check_sees_a_heavy_import(tiny_set):
    # Without this the test above could pass by never looking.
    assert _fresh(tiny_set, also_import="benchmark.evaluate")["heavy"] == list(HEAVY)


@pytest.mark.parametrize("argv, expected", [
    (["validate", "d"], {"data_dir": Path("d"), "downmix": False, "force": False}),
    (["demo-data", "o", "--snrs", "-4,-3"], {"out": Path("o"), "n_train": 400, "n_test": 100, "seconds": 4.0,
                                              "sr": 8000, "snrs": "-4,-3", "seed": 0, "quirks": False, "force": False}),
    (["train", "lstm_mask", "a=1", "--data", "d"], {
        "recipe": "lstm_mask", "data": "d", "profile": "cpu", "out": "runs", "max_minutes": None, "seed": None,
        "devices": None, "num_nodes": None, "strategy": None, "precision": None, "resume": False, "force": False,
        "overrides": ["a=1"]}),
    (["evaluate", "--data", "d", "--bucket-edges", "1,2.5"], {
        "data": "d", "runs": "runs", "references_only": False, "out": "leaderboard", "jobs": None, "device": "auto",
        "batch": None, "force": False, "no_references": False, "bucket": "label", "bucket_edges": [1.0, 2.5],
        "shard": None, "listen_clips": 1, "pretrained": None, "metrics": None}),
    (["separate", "--best", "x.wav"], {
        "run": None, "checkpoint": None, "best": True, "inputs": [Path("x.wav")], "out": Path("separated"),
        "device": "cpu", "chunk_seconds": 8.0, "context_seconds": 1.0, "downmix": False, "overwrite": False,
        "leaderboard": Path("leaderboard"), "runs": Path("runs")}),
    (["export", "r", "--format", "onnx", "--out", "f"], {"run": Path("r"), "fmt": "onnx", "out": Path("f")}),
    (["listen", "--data", "d"], {"data": "d", "out": "leaderboard", "clips_per_bucket": None,
                                 "models": None, "force": False}),
    (["score-unlabelled", "rec", "--out", "o"], {"recordings": Path("rec"), "runs": "runs", "out": Path("o"),
                                                 "no_pretrained": False, "downmix": False, "device": "cpu"}),
])
def test_parsed_arguments_and_defaults(argv, expected):
    assert vars(cli.build_parser().parse_args(argv)) == {"command": argv[0], **expected}


def test_every_command_is_implemented_by_the_module_it_names():
    assert cli.COMMANDS == {name: c.module for name, c in commands.COMMANDS.items()}
    for name, module in cli.COMMANDS.items():
        assert callable(importlib.import_module(module).run), name


def test_a_wrong_value_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["evaluate", "--data", "d", "--bucket-edges", "1,x"])
    assert exc.value.code == 2
    assert "expected numbers separated by commas" in capsys.readouterr().err
