"""Backend registry: ``open_backend`` picks the module that runs a model and imports it only then.

Each backend module exposes ``open(model_path, precision, lookahead_ms, threads, device) -> Backend`` (base.py):

* ``torch``: a NeMo ``.nemo`` or an ouvir checkpoint file, run eagerly by ouvir.models (needs torch);
* ``onnx`` / ``pte``: a bundle directory (engine/bundle.py) run by onnxruntime / ExecuTorch;
* a published model's name (engine/hub.py) that ``ouvir models pull`` fetched: its build for ``backend`` /
  ``precision``.

``precision`` None runs what the model holds: a bundle's own precision (a bundle holds one), fp32 for a
checkpoint; a given one must match it. ``lookahead_ms`` selects one of the model's attention contexts (None = its
default); ``threads`` sizes the runtime's compute pool (None = its default); ``device`` "cuda" runs the torch
backend on the GPU and the onnx backend through ONNX Runtime's CUDA provider (an error where there is none);
ExecuTorch's XNNPACK is CPU only.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ouvir.engine.backends.base import Backend

BACKENDS = {
    "torch": "ouvir.engine.backends.torch_backend",
    "onnx": "ouvir.engine.backends.onnx_backend",
    "pte": "ouvir.engine.backends.pte_backend",
}
PRECISIONS = ("fp32", "int8")
DEVICES = ("cpu", "cuda")
CPU_ONLY = {"pte": "ExecuTorch's XNNPACK"}  # backend -> what keeps it on the CPU


def open_backend(
    model_path: str | Path,
    backend: str | None = None,
    precision: str | None = None,
    lookahead_ms: int | None = None,
    threads: int | None = None,
    device: str = "cpu",
) -> Backend:
    """Open ``model_path`` with ``backend`` (None: torch for a checkpoint file, the bundle's own for a dir) in
    ``precision`` (None: the bundle's own, fp32 for a checkpoint)."""
    path = Path(model_path)
    if not path.exists():  # a published model's name (ouvir models pull NAME): its pulled build
        from ouvir.engine.hub import pulled_model

        path, backend = pulled_model(str(model_path), backend, precision)
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {PRECISIONS}")
    if device not in DEVICES:
        raise ValueError(f"device {device!r} is not one of {DEVICES}")
    if backend is None:
        backend = _bundle_backend(path) if path.is_dir() else "torch"
    if backend not in BACKENDS:
        raise ValueError(f"backend {backend!r} is not one of {sorted(BACKENDS)}")
    if device != "cpu" and backend in CPU_ONLY:
        raise ValueError(f"the {backend} backend runs on the CPU ({CPU_ONLY[backend]}), not {device}: "
                         "use torch or onnx")
    if path.is_dir() == (backend == "torch"):
        need = "a .nemo or ouvir checkpoint file" if backend == "torch" else "a bundle directory"
        raise ValueError(f"backend {backend!r} needs {need}, got {path}")
    try:
        module = importlib.import_module(BACKENDS[backend])
    except ModuleNotFoundError as e:
        raise RuntimeError(f"backend {backend!r} is not available: {e}") from e
    return module.open(path, precision, lookahead_ms, threads, device)


def _bundle_backend(path: Path) -> str:
    from ouvir.engine.bundle import read_manifest

    return str(read_manifest(path)["backend"])
