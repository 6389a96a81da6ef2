"""What every `sepbench` subcommand accepts, declared apart from what it does: `sepbench --help`
and `sepbench X --help` build every parser, and importing the commands' modules would cost
seconds (torch, scipy.signal) before argparse has looked at argv. So this module imports nothing
heavy; each command names the module whose `run(args) -> exit code` implements it, and
benchmark.cli imports that one after parsing. Constants a declaration shows live here (or in a
light module below) and the implementation imports them, so each is defined once."""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from benchmark.scoring.choices import BUCKET_MODES, OPTIONAL_METRICS, RANK_METRIC
from benchmark.separate.formats import FORMATS
from recipes.config import PROFILES

DEFAULT_GPU_BATCH = 16  # evaluate: clips per forward pass on a GPU
CONTEXT_SECONDS = 1.0  # separate: covers the paper-size Conv-TasNet's receptive field (0.77 s each side)


@dataclass(frozen=True)
class Command:
    module: str  # implements run(args) -> exit code; imported only when this command runs
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]


def allow_negative_lists(parser) -> None:
    # argparse takes "-4,-3" for an option name, so `--snrs -4,-3` would fail; as in Python
    # 3.13's argparse, anything starting with a minus and a digit is a value. A private
    # attribute, kept because the public way (`--snrs=-4,-3`) is what users forget;
    # test_cli_takes_negative_lists (tests/test_demo.py) fails if argparse stops honouring it.
    parser._negative_number_matcher = re.compile(r"^-\.?\d")


def validate(parser) -> None:
    parser.add_argument("data_dir", type=Path, help="data set root (train/, test/, optional val/) or one split folder")
    parser.add_argument("--downmix", action="store_true", help="accept multi-channel files (averaged to mono)")
    parser.add_argument("--force", action="store_true", help="read every file even if the set passed before "
                        "unchanged (path, size, modification time)")


def demo_data(parser) -> None:
    parser.add_argument("out", type=Path, help="output folder (must be empty or missing unless --force)")
    parser.add_argument("--n-train", type=int, default=400)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=4.0, help="clip length")
    parser.add_argument("--sr", type=int, default=8000, help="sample rate in Hz")
    parser.add_argument("--snrs", default="-4,-3,-2,-1,0,1,2,3,4", help="comma-separated SNR labels in dB, cycled evenly")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quirks", action="store_true",
                        help="imitate a messy data set (stems at other gains, a few wrong labels, near-silent voices) to exercise `validate`")
    parser.add_argument("--force", action="store_true", help="replace an existing data set in OUT")
    allow_negative_lists(parser)


def prepare(parser) -> None:
    parser.add_argument("--speech", type=Path, required=True, help="folder of speech recordings (searched recursively)")
    parser.add_argument("--noise", type=Path, required=True, help="folder of noise recordings (searched recursively)")
    parser.add_argument("--out", type=Path, required=True, help="output folder (must be empty or missing unless --force)")
    parser.add_argument("--snrs", default="-5,0,5,10", help="comma-separated SNR labels in dB, cycled evenly")
    parser.add_argument("--n-train", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=4.0, help="clip length; shorter recordings are skipped")
    parser.add_argument("--sr", type=int, default=8000, help="output sample rate in Hz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="replace an existing data set in OUT")
    allow_negative_lists(parser)


def recipes(p) -> None:
    p.add_argument("--sample-rate", type=int, default=8000, help="rate the models are built for (default 8000)")


def train(p) -> None:
    p.add_argument("recipe", help="registered recipe name (see `sepbench recipes`)")
    p.add_argument("--data", required=True, help="data set root with train/ (and optionally val/)")
    p.add_argument("--profile", default="cpu", choices=PROFILES)
    p.add_argument("--out", default="runs", help="runs folder; the run goes to OUT/RECIPE/PROFILE (seed 0) or "
                   "OUT/RECIPE/PROFILE-seedK")
    p.add_argument("--max-minutes", type=float, help="wall-clock budget (overrides trainer.max_minutes)")
    p.add_argument("--seed", type=int, help="overrides seed (default 0); each seed trains in its own run folder")
    p.add_argument("--devices", help="overrides trainer.devices (e.g. 4, or 'auto')")
    p.add_argument("--num-nodes", type=int, help="overrides trainer.num_nodes")
    p.add_argument("--strategy", help="overrides trainer.strategy (auto, ddp, ...)")
    p.add_argument("--precision", help="overrides trainer.precision (32-true, bf16-mixed, ...)")
    p.add_argument("--resume", action="store_true", help="insist on continuing from last.ckpt")
    p.add_argument("--force", action="store_true", help="delete the run folder and train from scratch")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.lr=3e-4")


def evaluate(parser) -> None:
    parser.add_argument("--data", required=True, help="test split folder (numbered clip folders), or a data set "
                        "root holding test/")
    parser.add_argument("--runs", default="runs", help="runs folder: runs/<recipe>/<profile>/best.pt + card.json "
                        "(finding no checkpoint there is an error)")
    parser.add_argument("--references-only", action="store_true", help="score only the mixture and oracle rows "
                        "(and with --pretrained the pretrained enhancers), no trained models (ignores --runs)")
    parser.add_argument("--out", default="leaderboard", help="output folder (results, summary, LEADERBOARD.md, cache/)")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: number of cores)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where models run")
    parser.add_argument("--batch", type=int, default=None, help="clips of equal length per forward pass "
                        f"(default {DEFAULT_GPU_BATCH} on a GPU, 1 on the CPU, where batching slows some models)")
    parser.add_argument("--force", action="store_true", help="re-evaluate even what the cache holds")
    parser.add_argument("--no-references", action="store_true", help="skip the mixture and oracle rows")
    parser.add_argument("--pretrained", nargs="?", const="all", default=None, metavar="NAMES",
                        help="also score the pretrained enhancers whose extra is installed (pip install -e "
                        ".[baselines]; all, or NAME,NAME...) as rows of their own kind; ./run_all.sh does by default")
    _metrics_option(parser)
    parser.add_argument("--bucket", choices=BUCKET_MODES, default="label",
                        help="SNR buckets: the label in the file name (default), or the SNR measured on the stems")
    parser.add_argument("--bucket-edges", type=_edges, default=None, metavar="A,B,...",
                        help="--bucket measured: bin edges in dB (default: halfway between the distinct labels)")
    parser.add_argument("--shard", metavar="K/N", help="score only shard K of N (every N-th clip) into "
                        "OUT/cache/shards/N/K and write no leaderboard; run again without it to merge")
    parser.add_argument("--listen-clips", type=int, default=1, metavar="N",
                        help="clips per SNR label whose estimates are kept for the listening page (default 1)")


def _metrics_option(parser) -> None:
    parser.add_argument("--metrics", default=None, metavar="+NAME[,+NAME]",
                        help=f"optional metrics added to the fixed set ({', '.join('+' + m for m in OPTIONAL_METRICS)}: "
                        "SIG, BAK and OVRL of every row, the mixture's included; needs its extra)")


def score_unlabelled(p) -> None:
    p.add_argument("recordings", type=Path, metavar="DIR", help="folder of noisy recordings: every .wav/.flac in it "
                   "(searched recursively), any sample rate, mono (or --downmix)")
    p.add_argument("--runs", default="runs", help="runs folder: every finished runs/<recipe>/<profile>/best.pt is run "
                   "(default runs/; a missing folder means the pretrained enhancers only)")
    p.add_argument("--out", type=Path, required=True, metavar="OUT", help="output folder: dnsmos.csv, "
                   "dnsmos_summary.csv, DNSMOS.md and listen/index.html (replaced as one set)")
    p.add_argument("--no-pretrained", action="store_true", help="run only the checkpoints, not the pretrained "
                   "enhancers")
    p.add_argument("--downmix", action="store_true", help="accept multi-channel recordings (averaged to mono)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="where the checkpoints run")


def _edges(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers separated by commas") from None


def separate(parser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", type=Path, metavar="DIR", help="run folder runs/<recipe>/<profile> (uses its best.pt)")
    src.add_argument("--checkpoint", type=Path, metavar="FILE", help="a sepbench model checkpoint file, or a model "
                     "from `sepbench export` (FILE.onnx, or a TorchScript FILE.pt)")
    src.add_argument("--best", action="store_true", help=f"top trained model of the leaderboard by {RANK_METRIC}")
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="WAV/FLAC files or folders (recursive)")
    parser.add_argument("--out", type=Path, default=Path("separated"), metavar="DIR",
                        help="output folder; folder inputs keep their sub-paths (default: separated/)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--chunk-seconds", type=float, default=8.0, metavar="S",
                        help="model-side chunk length; 0 = whole file at once (default 8)")
    parser.add_argument("--context-seconds", type=float, default=CONTEXT_SECONDS, metavar="S",
                        help=f"extra audio each side of a chunk, thrown away (default {CONTEXT_SECONDS})")
    parser.add_argument("--downmix", action="store_true", help="average channels into one mono output")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs (default: keep them)")
    parser.add_argument("--leaderboard", type=Path, default=Path("leaderboard"), metavar="DIR",
                        help="for --best (default leaderboard/)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), metavar="DIR", help="for --best (default runs/)")


def export(p) -> None:
    p.add_argument("run", type=Path, metavar="RUN", help="run folder runs/<recipe>/<profile> (its best.pt) or a "
                   "sepbench checkpoint file")
    # Checked in run(), not by argparse's choices, so a wrong value is one error line like any other.
    p.add_argument("--format", required=True, metavar="|".join(FORMATS), dest="fmt",
                   help="onnx (FILE.onnx, ONNX Runtime) or torchscript (FILE.pt, torch.jit.load)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE",
                   help="the exported model (replaced if it exists); `sepbench separate --checkpoint FILE` runs it")


def listen(p) -> None:
    p.add_argument("--data", required=True, help="test split folder (numbered clip folders), or a data set root "
                   "holding test/ (the one the leaderboard was scored on)")
    p.add_argument("--out", default="leaderboard", help="leaderboard folder: results.csv is read from it and "
                   "listen/ written into it")
    p.add_argument("--clips-per-bucket", type=int, default=None, help="clips shown per SNR label (default: all "
                   "that `sepbench evaluate --listen-clips` kept)")
    p.add_argument("--models", help="comma-separated names to show (recipe, recipe/profile, oracle_irm); "
                   "default all trained models plus the oracle")
    p.add_argument("--force", action="store_true", help="rebuild even when the page's inputs (results.csv, "
                   "summary.csv, plot, the estimates evaluate kept, the test clips) are those it was built from")


COMMANDS = {
    "validate": Command("benchmark.data.validate", "check a data set (root with train/ and test/, or one split "
                        "folder) and report every problem", validate),
    "demo-data": Command("benchmark.data.demo", "write a synthetic demo data set (speech-like voices + varied "
                         "noises), deterministic from a seed", demo_data),
    "prepare": Command("benchmark.data.prepare", "build a data set in the folder format from directories of "
                       "speech and noise recordings", prepare),
    "recipes": Command("benchmark.recipes_cmd", "list the registered recipes with a description and parameter "
                       "counts", recipes),
    "train": Command("benchmark.train_cmd", "train one recipe (resumes an interrupted run; a finished run is a "
                     "no-op unless --force)", train),
    "evaluate": Command("benchmark.evaluate", "score every trained checkpoint on a test set and write the "
                        "leaderboard", evaluate),
    "separate": Command("benchmark.separate_cmd", "separate your own WAV/FLAC files (or folders) into "
                        "<name>_voice and <name>_noise", separate),
    "export": Command("benchmark.export_cmd", "export a trained model to ONNX or TorchScript (dynamic batch and "
                      "time axes), checked against PyTorch", export),
    "listen": Command("benchmark.listen_cmd", "build the listening page (OUT/listen/index.html) from an "
                      "evaluated leaderboard and its test clips", listen),
    "score-unlabelled": Command("benchmark.unlabelled_cmd", "run every checkpoint and pretrained enhancer over "
                                "noisy recordings without stems: a DNSMOS table and a listening page", score_unlabelled),
}
