"""`sepbench export RUN --format onnx|torchscript --out FILE`: a trained model for deployment,
a thin wrapper around benchmark.separate.export.export."""
from __future__ import annotations

from .separate import export as exporter


def run(args) -> int:
    checkpoint = exporter.find_checkpoint(args.run)
    done = exporter.export(checkpoint, args.fmt, args.out)
    worst = max(done["checks"], key=lambda check: check[1])
    print(f"export: {done['recipe']} ({checkpoint}, {done['sample_rate']} Hz) -> {done['out']} "
          f"({exporter.LABELS[done['format']]}, {done['bytes'] / 1e6:.2f} MB, dynamic batch and time)")
    print(f"export: equals PyTorch on {len(done['checks'])} inputs of other sizes within {exporter.TOLERANCE:g} x the "
          f"peak (largest difference {worst[1]:.1e} x the peak, on {'x'.join(map(str, worst[0]))} samples)")
    return 0
