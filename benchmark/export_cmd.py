"""`sepbench export RUN --format onnx|torchscript --out FILE`: a trained model for deployment,
a thin wrapper around benchmark.separate.export.export."""
from __future__ import annotations

from pathlib import Path

from .separate import export as exporter

HELP = "export a trained model to ONNX or TorchScript (dynamic batch and time axes), checked against PyTorch"


def add_arguments(p) -> None:
    p.add_argument("run", type=Path, metavar="RUN", help="run folder runs/<recipe>/<profile> (its best.pt) or a "
                   "sepbench checkpoint file")
    # Checked in run(), not by argparse's choices, so a wrong value is one error line like any other.
    p.add_argument("--format", required=True, metavar="|".join(exporter.FORMATS), dest="fmt",
                   help="onnx (FILE.onnx, ONNX Runtime) or torchscript (FILE.pt, torch.jit.load)")
    p.add_argument("--out", required=True, type=Path, metavar="FILE",
                   help="the exported model (replaced if it exists); `sepbench separate --checkpoint FILE` runs it")


def run(args) -> int:
    checkpoint = exporter.find_checkpoint(args.run)
    done = exporter.export(checkpoint, args.fmt, args.out)
    worst = max(done["checks"], key=lambda check: check[1])
    print(f"export: {done['recipe']} ({checkpoint}, {done['sample_rate']} Hz) -> {done['out']} "
          f"({exporter.LABELS[done['format']]}, {done['bytes'] / 1e6:.2f} MB, dynamic batch and time)")
    print(f"export: equals PyTorch on {len(done['checks'])} inputs of other sizes within {exporter.TOLERANCE:g} x the "
          f"peak (largest difference {worst[1]:.1e} x the peak, on {'x'.join(map(str, worst[0]))} samples)")
    return 0
