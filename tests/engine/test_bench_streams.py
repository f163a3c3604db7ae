"""``ouvir bench --streams``: the simulated real-time server loop, timed with an injected clock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ouvir.engine.bench.streams import capacity, chunk_seconds, counts, serve
from ouvir.engine.recognizer import Recognizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")
OUVIR = Path(sys.executable).with_name("ouvir")


class CostClock:
    """Time passes only in encoder calls: ``fixed + per_row * rows`` seconds each."""

    def __init__(self, fixed: float, per_row: float) -> None:
        self.t, self.fixed, self.per_row = 0.0, fixed, per_row

    def __call__(self) -> float:
        return self.t


class CostBackend:
    def __init__(self, backend, clock: CostClock) -> None:
        self.backend, self.clock = backend, clock

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def encode(self, chunk, chunk_len, state, first):
        self.clock.t += self.clock.fixed + self.clock.per_row * len(chunk)
        return self.backend.encode(chunk, chunk_len, state, first)


@pytest.fixture(scope="module")
def hybrid(nemo_dir):
    pytest.importorskip("torch")
    return Recognizer.open(nemo_dir / "hybrid_multi.nemo"), np.load(nemo_dir / "test_audio_f32.npy")


def test_counts():
    assert counts(1) == [1] and counts(2) == [1, 2] and counts(8) == [1, 2, 4, 8] and counts(6) == [1, 2, 4, 6]


def test_batching_a_call_with_a_fixed_cost_sustains_more_streams(hybrid):
    """A call costs 0.3 chunk + 0.05 chunk per stream: one at a time n streams take 0.35 n chunks per round (2
    sustained, 4 fall behind), batched 0.3 + 0.05 n (8 sustained)."""
    rec, audio = hybrid
    c = chunk_seconds(rec)
    clock = CostClock(0.3 * c, 0.05 * c)
    timed = Recognizer(CostBackend(rec.backend, clock), rec.decoder)
    result = capacity(timed, audio, 8, 12 * c, clock)
    assert result["sustained"] == {"batched": 8, "one_at_a_time": 2}
    runs = {(r["mode"], r["streams"]): r for r in result["runs"]}
    assert runs["one_at_a_time", 1]["p50_s"] == pytest.approx(0.35 * c)  # one call per round, no queue
    assert runs["batched", 8]["p50_s"] == pytest.approx(0.7 * c)
    assert runs["one_at_a_time", 4]["p99_s"] > 2 * c  # its queue grows every round
    assert runs["batched", 4]["chunks"] == 4 * 13


def test_streams_command_writes_its_report(nemo_dir, tmp_path):
    out = subprocess.run([str(OUVIR), "bench", "--streams", "2", "--model", str(nemo_dir / "hybrid_multi.nemo"),
                          "--seconds", "1", "--threads", "1", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "streams.json").read_text())
    assert [(r["mode"], r["streams"]) for r in report["runs"]] == [
        ("batched", 1), ("batched", 2), ("one_at_a_time", 1), ("one_at_a_time", 2)]
    assert report["backend"] == "torch" and all(r["p99_s"] > 0 for r in report["runs"])
    assert "| 2 | batched |" in (tmp_path / "streams.md").read_text()


def test_serve_feeds_each_stream_its_own_audio(hybrid):
    rec, audio = hybrid
    result = serve(rec, audio, 3, True, 2.0)
    assert result["streams"] == 3 and result["chunks"] == 3 * (round(2.0 / chunk_seconds(rec)) + 1)
