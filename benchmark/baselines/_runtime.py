"""What the adapters share: finding a package's shipped files, and the onnxruntime session."""
from __future__ import annotations

import importlib.resources
import importlib.util
from typing import TYPE_CHECKING

from recipes.errors import SepbenchError

if TYPE_CHECKING:  # importlib.resources.abc is Python 3.11+; sepbench supports 3.10
    from importlib.resources.abc import Traversable


def package_files(module: str) -> Traversable:
    """The installed files of package `module`, found without running its `__init__`: GTCRN's and
    DTLN's packages import fasr or livekit-agents there, which sepbench installs neither of."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise SepbenchError(f"package {module} is not installed")
    return importlib.resources.files(importlib.util.module_from_spec(spec))


def shipped(module: str, path: str, install: str) -> Traversable:
    """One file the package ships; a one-line error when the installed copy lacks it."""
    file = package_files(module).joinpath(path)
    if not file.is_file():
        raise SepbenchError(f"{file}: missing from the installed {module} (reinstall it: {install})")
    return file


def onnx_session(model: bytes):
    """An onnxruntime session on one thread: evaluation runs one worker per core, and a session per
    worker that spreads over every core would have them fight."""
    # Late: onnxruntime costs ~0.3 s to import, which listing the baselines must not pay.
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def graph_error(name: str, what: str) -> SepbenchError:
    return SepbenchError(f"{name}: the shipped model is not the one this adapter was written for ({what})")
