"""Models for deployment: a sepbench checkpoint exported to ONNX or TorchScript, checked against
PyTorch before it is written, and read back as a model `separate` runs through the same chunked
code path (benchmark.separate.core) as a checkpoint.

The exported graph maps a mixture [batch, time] to estimates [batch, 2, time] (0 = voice,
1 = noise), both axes dynamic. The file carries what `separate` needs (recipe, sample rate, model
arguments, the source checkpoint's hash and metadata): ONNX metadata_props / TorchScript
_extra_files, under the key `sepbench`.

ONNX exporter: torch.onnx's TorchScript-based exporter (dynamo=False) with dynamic_axes. Tried on
every recipe (torch 2.14): it exports 8 of the 12 with a dynamic time axis; the dynamo exporter
(torch.export with dynamic_shapes) only 2, because torch.export stops on asteroid's norms
(gLN/cLN reduce over `dims` it sees as data-dependent), which most recipes use.
TorchScript: torch.jit.trace (every recipe traces; torch.jit.script fails on all of them:
asteroid uses set comprehensions, mixed return types and module attributes script rejects).

Tracing records the path the example input took, so an export could silently fix a shape or a
branch. Every export is therefore run on inputs of other lengths and batch sizes and compared
with PyTorch (CHECKS, TOLERANCE) before it is written; a mismatch refuses the export.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import warnings
import zipfile
from pathlib import Path

import torch

from recipes.checkpoint import load_model
from recipes.errors import SepbenchError
from recipes.files import atomic_path, file_hash
from recipes.lock import exclusive_lock

from .core import frame_stride, min_length
from .formats import FORMATS

LABELS = {"onnx": "ONNX", "torchscript": "TorchScript"}
META_KEY = "sepbench"  # ONNX metadata_props key; TorchScript extra file `sepbench.json`
EXPORT_FORMAT, EXPORT_VERSION = "sepbench-export", 1
# 18, not 17: dprnn/dptnet fold their chunks back with aten::col2im, ONNX Col2Im from opset 18.
OPSET = 18
# Parity: max |exported - PyTorch| <= TOLERANCE x the larger of the mixture's and PyTorch's
# estimates' peaks. float32 graphs differ by reordered sums: at most 1.5e-6 measured over the
# exportable recipes' smoke, cpu and gpu profiles.
TOLERANCE = 1e-4
# (batch, seconds) of the checks; the first is the traced example. Odd lengths, another batch
# size, and inputs shorter and longer than the example; then the shortest input core passes a
# model (min_length samples): what separating files in chunks feeds a model.
TRACE_SECONDS = 1.0
CHECKS = ((1, TRACE_SECONDS), (2, 0.377), (1, 2.501))


def find_checkpoint(run: str | Path) -> Path:
    """RUN of `sepbench export`: a run folder holding best.pt, or a checkpoint file."""
    run = Path(run)
    if run.is_dir():
        if not (run / "best.pt").is_file():
            raise SepbenchError(f"{run}: no best.pt in this run folder (training not finished, or not a run folder)")
        return run / "best.pt"
    if not run.is_file():
        raise SepbenchError(f"{run}: no such run folder or checkpoint file")
    return run


def export(checkpoint: str | Path, fmt: str, out: str | Path) -> dict:
    """Write `checkpoint`'s model as `fmt` to `out` (atomic), after checking it against PyTorch.
    Returns what was done: recipe, format, output, the checks' max relative differences."""
    if fmt not in FORMATS:
        raise SepbenchError(f"--format {fmt}: unknown format (choose {' or '.join(FORMATS)})")
    checkpoint, out = Path(checkpoint), Path(out)
    if out.suffix != FORMATS[fmt]:
        # `separate` tells an ONNX file from a TorchScript one by its suffix.
        raise SepbenchError(f"{out}: {LABELS[fmt]} exports must be named *{FORMATS[fmt]}")
    if out.exists() and out.resolve() == checkpoint.resolve():
        raise SepbenchError(f"{out}: is the checkpoint being exported; choose another --out")
    model, payload = load_model(checkpoint)
    model.to("cpu")
    name, rate = payload["recipe"], payload["sample_rate"]
    meta = {"format": EXPORT_FORMAT, "format_version": EXPORT_VERSION, "exported_as": fmt, "recipe": name,
            "sample_rate": rate, "model_args": payload["model_args"], "checkpoint": checkpoint.name,
            "checkpoint_hash": file_hash(checkpoint), "checkpoint_meta": payload.get("meta", {}),
            # what core.iter_separate reads from the model to chunk exactly; gone after export
            "frame_stride": frame_stride(model), "min_length": min_length(model), "torch": torch.__version__}
    inputs = _check_inputs(rate, meta["min_length"])
    with torch.no_grad():
        expected = [model(x) for x in inputs]
    with _quiet():
        if fmt == "onnx":
            data = _onnx_bytes(model, inputs[0], meta, name)
            exported = OnnxModel(data, meta, "cpu")
        else:
            data = _torchscript_bytes(model, inputs[0], meta, name)
            exported = TorchScriptModel(torch.jit.load(io.BytesIO(data), map_location="cpu"), meta)
    diffs = _compare(exported, inputs, expected, name, fmt)
    if out.is_dir():
        raise SepbenchError(f"{out}: is a folder; --out names the exported file")
    # The write alone is atomic; the lock makes a second export of the same file wait its turn
    # in a refusal rather than race to it.
    with exclusive_lock(out.parent, "export", name=f".{out.name}.lock"), atomic_path(out) as tmp:
        Path(tmp).write_bytes(data)
    return {"recipe": name, "format": fmt, "out": out, "bytes": len(data), "sample_rate": rate,
            "checks": [(tuple(x.shape), d) for x, d in zip(inputs, diffs)], "max_rel_diff": max(diffs)}


def _check_inputs(rate: int, shortest: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    shapes = [(batch, max(shortest, round(seconds * rate) | 1)) for batch, seconds in CHECKS] + [(1, shortest)]
    return [0.3 * torch.randn(*shape, generator=gen) for shape in shapes]


@contextlib.contextmanager
def _quiet():
    """The exporters' warnings (tracer, deprecation) are noise to a command-line user, and on a
    failure the ONNX exporter prints the whole graph from C++ onto file descriptor 1; the
    exception still says what failed."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        os.dup2(null.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def _reason(exc: BaseException) -> str:
    """One line from an exporter's exception (they append graph dumps and advice)."""
    lines = str(exc).strip().splitlines()
    first = lines[0].split(" [Caused by")[0].split(" Status Message:")[0].strip() if lines else ""
    text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    if "complex" in first.lower():
        text += " (ONNX has no complex tensors)"
    return text[:300]


def _col2im(g, x, output_size, block_shape, dilation, padding, stride):
    """aten::col2im -> ONNX Col2Im. torch 2.14's own symbolic lists the pads as [h, h, w, w] where
    ONNX wants [h_begin, w_begin, h_end, w_end] (ONNX Runtime then refuses dprnn's fold), and it
    needs output_size to have a static shape, which a dynamic time axis does not give."""
    return g.op("Col2Im", x, output_size, block_shape, dilations_i=dilation, pads_i=list(padding) * 2,
                strides_i=stride)


def _onnx_bytes(model: torch.nn.Module, example: torch.Tensor, meta: dict, name: str) -> bytes:
    # Slow imports, only for ONNX export.
    import onnx
    from torch.onnx import symbolic_helper

    symbolic = symbolic_helper.parse_args("v", "v", "v", "is", "is", "is")(_col2im)
    torch.onnx.register_custom_op_symbolic("aten::col2im", symbolic, OPSET)
    buffer = io.BytesIO()
    try:
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=OPSET,
                          input_names=["mixture"], output_names=["estimates"],
                          dynamic_axes={"mixture": {0: "batch", 1: "time"}, "estimates": {0: "batch", 2: "time"}})
    except Exception as exc:  # the exporter raises many types; each means "cannot export"
        raise SepbenchError(f"{name}: cannot be exported to ONNX ({_reason(exc)})") from None
    finally:
        torch.onnx.unregister_custom_op_symbolic("aten::col2im", OPSET)
    proto = onnx.load_from_string(buffer.getvalue())
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    return proto.SerializeToString()


def _torchscript_bytes(model: torch.nn.Module, example: torch.Tensor, meta: dict, name: str) -> bytes:
    buffer = io.BytesIO()
    try:
        traced = torch.jit.trace(model, example, check_trace=False)
        torch.jit.save(traced, buffer, _extra_files={f"{META_KEY}.json": json.dumps(meta)})
    except Exception as exc:
        raise SepbenchError(f"{name}: cannot be exported to TorchScript ({_reason(exc)})") from None
    return buffer.getvalue()


def _compare(exported, inputs, expected, name: str, fmt: str) -> list[float]:
    """Max |exported - PyTorch| / peak per check input; SepbenchError if one fails or differs."""
    diffs = []
    for x, ref in zip(inputs, expected):
        shape = "x".join(map(str, x.shape))
        try:
            with torch.no_grad():
                got = exported(x)
        except Exception as exc:
            raise SepbenchError(f"{name}: cannot be exported to {LABELS[fmt]}: the graph keeps the traced input's shapes "
                                f"(traced on [1x{inputs[0].shape[-1]}] samples, it failed on [{shape}]: "
                                f"{_reason(exc)})") from None
        if tuple(got.shape) != tuple(ref.shape):
            raise SepbenchError(f"{name}: the {LABELS[fmt]} export returns shape {tuple(got.shape)} for input [{shape}], "
                                f"PyTorch {tuple(ref.shape)}")
        peak = max(float(x.abs().max()), float(ref.abs().max()))
        diff = float((got.float() - ref).abs().max()) / peak
        if not diff <= TOLERANCE:  # NaN fails too
            raise SepbenchError(f"{name}: the {LABELS[fmt]} export differs from PyTorch by {diff:.2g} x the peak on input "
                                f"[{shape}] (tolerance {TOLERANCE:g})")
        diffs.append(diff)
    return diffs


class OnnxModel:
    """An ONNX file behind the torch model's call interface ([B, T] tensor -> [B, 2, T] tensor)
    plus the two facts core.iter_separate reads from a model to chunk exactly."""

    def __init__(self, data: bytes | str, meta: dict, device: str = "cpu"):
        import onnxruntime as ort  # slow import, only for ONNX models

        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise SepbenchError(f"--device {device}: this ONNX Runtime has no CUDA provider (it has "
                                    f"{', '.join(ort.get_available_providers())}); use --device cpu")
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        # The threads sepbench gives torch (OMP_NUM_THREADS, torch.set_num_threads), not ONNX
        # Runtime's one per core: the two runtimes then share a machine the same way.
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        # ONNX Runtime's workers spin on after each run by default, taking the cores from whatever
        # runs next (torch right after it: 2x slower). Stopped at the end of each run they still
        # spin within it (without spinning at all ONNX Runtime itself was 1.1-1.4x slower).
        options.add_session_config_entry("session.force_spinning_stop", "1")
        options.log_severity_level = 4  # fatal only: a failure raises, with ONNX Runtime's message
        self.session = ort.InferenceSession(data, options, providers=providers)
        self.meta, self.frame_stride, self.min_length = meta, int(meta["frame_stride"]), int(meta["min_length"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        (out,) = self.session.run(None, {"mixture": x.detach().float().cpu().numpy()})
        return torch.from_numpy(out)


class TorchScriptModel:
    """A TorchScript module with the same interface as OnnxModel."""

    def __init__(self, module, meta: dict):
        self.module, self.meta = module, meta
        self.frame_stride, self.min_length = int(meta["frame_stride"]), int(meta["min_length"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def _is_torchscript(path: Path) -> bool:
    """torch.save and torch.jit.save both write zip archives; only TorchScript's holds code. A
    damaged archive is left to the checkpoint reader, whose errors name the problem."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _checked_meta(path: Path, text: str | None) -> dict:
    if not text:
        raise SepbenchError(f"{path}: holds no sepbench metadata (not written by `sepbench export`)")
    try:
        meta = json.loads(text)
    except ValueError:
        raise SepbenchError(f"{path}: its sepbench metadata is not valid JSON (damaged file?)") from None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise SepbenchError(f"{path}: its sepbench metadata is not an export's (written by another tool?)")
    if meta.get("format_version") != EXPORT_VERSION:
        raise SepbenchError(f"{path}: export format version {meta.get('format_version')} is not supported "
                            f"(expected {EXPORT_VERSION})")
    rate = meta.get("sample_rate")
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0:
        raise SepbenchError(f"{path}: export metadata sample rate {rate!r} is not a positive number of Hz")
    for key in ("frame_stride", "min_length"):
        if isinstance(meta.get(key), bool) or not isinstance(meta.get(key), int) or meta[key] < 1:
            raise SepbenchError(f"{path}: export metadata field {key!r} is missing or malformed")
    return meta


def load_onnx(path: str | Path, device: str = "cpu") -> OnnxModel:
    path = Path(path)
    import onnx  # slow import, only for ONNX models

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's decode errors and onnx's own
        raise SepbenchError(f"{path}: not a readable ONNX model ({_reason(exc)})") from None
    meta = _checked_meta(path, {p.key: p.value for p in proto.metadata_props}.get(META_KEY))
    try:
        return OnnxModel(proto.SerializeToString(), meta, device)
    except SepbenchError:
        raise
    except Exception as exc:  # parsed, but ONNX Runtime cannot build it (an op it lacks, a bad graph)
        raise SepbenchError(f"{path}: not a runnable ONNX model ({_reason(exc)})") from None


def load_torchscript(path: str | Path, device: str = "cpu") -> TorchScriptModel:
    path = Path(path)
    extra = {f"{META_KEY}.json": ""}
    try:
        with warnings.catch_warnings():  # torch 2.14 deprecates torch.jit for torch.export, which fails here
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as exc:
        raise SepbenchError(f"{path}: not a readable TorchScript model ({_reason(exc)})") from None
    return TorchScriptModel(module.eval(), _checked_meta(path, extra[f"{META_KEY}.json"]))


def load_separator(path: str | Path, device: str = "cpu"):
    """(model on `device`, checkpoint-like dict with recipe, sample_rate, model_args, meta) for a
    sepbench checkpoint, an ONNX export (*.onnx) or a TorchScript export."""
    path = Path(path)
    if path.is_file() and path.suffix == ".onnx":
        exported = load_onnx(path, device)
    elif path.is_file() and _is_torchscript(path):
        exported = load_torchscript(path, device)
    else:
        model, payload = load_model(path)
        return model.to(device), payload
    meta = exported.meta
    return exported, {"recipe": meta.get("recipe"), "sample_rate": meta["sample_rate"],
                      "model_args": meta.get("model_args"), "meta": meta.get("checkpoint_meta", {}), "export": meta}
