"""Shared test fixtures: where the NeMo-written reference data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NEMO_FIXTURES = Path(os.environ.get("OUVIR_NEMO_FIXTURES", REPO / "tests" / "fixtures" / "nemo"))
FIXTURE_MODELS = ("hybrid_multi", "ctc_conformer")
# Folders whose session fixtures export bundles (tests/export: per session; tests/firmware_host: into pytest's
# cache): under pytest-xdist each such folder runs on one worker, so every bundle is exported once.
SHARED_FIXTURE_FOLDERS = ("export", "firmware_host")


def pytest_configure(config) -> None:
    """Under pytest-xdist the workers share the cores: torch in each (and the programs tests start) runs one thread;
    two threads spin-waiting against another worker run many times slower."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(config, items) -> None:
    """``make test`` runs the suite on every core (pytest-xdist, ``--dist loadgroup``): one worker takes a whole test
    file (its module fixtures are built once), or a whole folder of ``SHARED_FIXTURE_FOLDERS``. Groups holding a
    ``slow`` test go first (in collection order otherwise, ``--no-loadscope-reorder``), so that no worker is left
    alone with a long one at the end."""
    groups = {}
    for item in items:
        path = item.path.resolve().relative_to(REPO / "tests")
        groups[item.nodeid] = path.parts[0] if path.parts[0] in SHARED_FIXTURE_FOLDERS else path.as_posix()
        item.add_marker(pytest.mark.xdist_group(groups[item.nodeid]))
    slow = {groups[item.nodeid] for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: groups[item.nodeid] not in slow)


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
