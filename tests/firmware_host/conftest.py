"""A real ONNX bundle of the NeMo fixture model for the host tests, exported once and cached.

Exporting takes about 30 s here, so the bundle is kept in pytest's cache, keyed by the sha256 of the exporter
and model sources and of the checkpoint: any change to them exports anew.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO

LOOKAHEAD_MS = 80  # the fixture model's [70, 1] context: short chunks, quick first partial


def _source_key(nemo: Path) -> str:
    h = hashlib.sha256(nemo.read_bytes())
    for folder in ("export", "models", "engine"):
        for path in sorted((REPO / folder).rglob("*.py")):
            h.update(path.relative_to(REPO).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def onnx_bundle(request, nemo_dir) -> Path:
    from ouvir.engine.bundle import BundleError, load_bundle

    nemo = nemo_dir / "hybrid_multi.nemo"
    out = Path(request.config.cache.mkdir("ouvir-host-bundle")) / _source_key(nemo)
    try:
        load_bundle(out)
        return out
    except BundleError:  # not there yet, or left half-written by an interrupted run
        shutil.rmtree(out, ignore_errors=True)
    import torch

    from ouvir.export.bundle import export_bundle

    torch.set_num_threads(1)
    return export_bundle(nemo, out, fmt="onnx", lookaheads=[LOOKAHEAD_MS], force=True, progress=False)


@pytest.fixture
def serve():
    """``serve(server)`` starts a caption or audio server on loopback and stops it after the test: (server, url)."""
    servers = []

    def start(server):
        _, port = server.start()
        servers.append(server)
        return server, f"ws://127.0.0.1:{port}/"

    yield start
    for s in servers:
        s.stop()
