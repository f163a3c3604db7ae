"""Shared test fixtures: where the NeMo-written reference data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NEMO_FIXTURES = Path(os.environ.get("OUVIR_NEMO_FIXTURES", REPO / "tests" / "fixtures" / "nemo"))
FIXTURE_MODELS = ("hybrid_multi", "ctc_conformer")


@pytest.fixture(scope="session")
def nemo_dir() -> Path:
    assert (NEMO_FIXTURES / "hybrid_multi.nemo").is_file(), f"NeMo fixtures missing in {NEMO_FIXTURES}"
    return NEMO_FIXTURES


@pytest.fixture
def one_torch_thread():
    """NeMo's fixtures were made on 1 thread; tiny per-chunk ops on a 2-core box are also faster on one."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
