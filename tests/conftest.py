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
