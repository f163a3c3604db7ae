"""``ouvir bench --streams``: the simulated real-time server loop (ouvir batched and one at a time, sherpa-onnx
batched), timed with an injected clock; the command on the torch fixture and on the default model's ONNX files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ouvir.engine.bench.streams import OuvirLoop, SherpaLoop, capacity, chunk_seconds, search, serve
from ouvir.engine.default_model import default_model
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


class FakeSherpaStream:
    def __init__(self) -> None:
        self.buffered, self.finished, self.decoded = 0, False, 0

    def accept_waveform(self, rate: int, samples: np.ndarray) -> None:
        self.buffered += len(samples)

    def input_finished(self) -> None:
        self.finished = True


class FakeSherpa:
    """sherpa-onnx's OnlineRecognizer as the loop uses it: a stream is ready with a chunk of audio (or the last
    part of one); ``decode_streams`` costs ``fixed + per_row * streams`` on the clock and emits a token per chunk."""

    def __init__(self, chunk: int, clock: CostClock) -> None:
        self.chunk, self.clock, self.calls = chunk, clock, []

    def create_stream(self) -> FakeSherpaStream:
        return FakeSherpaStream()

    def is_ready(self, s: FakeSherpaStream) -> bool:
        return s.buffered >= self.chunk or (s.finished and s.buffered > 0)

    def decode_streams(self, streams: list[FakeSherpaStream]) -> None:
        self.calls.append(len(streams))
        self.clock.t += self.clock.fixed + self.clock.per_row * len(streams)
        for s in streams:
            s.buffered, s.decoded = max(0, s.buffered - self.chunk), s.decoded + 1

    def get_result_all(self, s: FakeSherpaStream):
        return type("Result", (), {"tokens": ["x"] * s.decoded})


@pytest.fixture(scope="module")
def hybrid(nemo_dir):
    pytest.importorskip("torch")
    return Recognizer.open(nemo_dir / "hybrid_multi.nemo"), np.load(nemo_dir / "test_audio_f32.npy")


def test_search_doubles_then_bisects():
    def upto(k):
        return lambda n: {"streams": n, "sustained": n <= k}

    def tried(k, most):
        return [r["streams"] for r in search(upto(k), most)]

    assert tried(13, 64) == [1, 2, 4, 8, 16, 12, 14, 13]
    assert tried(64, 64) == [1, 2, 4, 8, 16, 32, 64]
    assert tried(100, 6) == [1, 2, 4, 6]
    assert tried(5, 6) == [1, 2, 4, 6, 5]
    assert tried(0, 8) == [1]
    assert tried(1, 1) == [1]


def test_batching_a_call_with_a_fixed_cost_sustains_more_streams(hybrid):
    """A call costs 0.3 chunk + 0.06 chunk per stream: one at a time n streams take 0.36 n chunks per round (2
    sustained, 3 fall behind), ouvir batched 0.3 + 0.06 n (11 sustained: 0.96 chunk; 12: 1.02). sherpa-onnx's loop
    (a fake recognizer on the same clock, 0.1 + 0.07 n) sustains 12 (0.94 chunk; 13: 1.01)."""
    rec, audio = hybrid
    c = chunk_seconds(rec)
    rate = rec.info.features.sample_rate
    clock = CostClock(0.3 * c, 0.06 * c)
    timed = Recognizer(CostBackend(rec.backend, clock), rec.decoder)
    sherpa_clock = CostClock(0.1 * c, 0.07 * c)
    sherpa = FakeSherpa(round(c * rate), sherpa_clock)
    ouvir = capacity([OuvirLoop(timed, True), OuvirLoop(timed, False)], audio, 16, 12 * c, c, rate, clock)
    result = capacity([SherpaLoop(sherpa, rate)], audio, 16, 12 * c, c, rate, sherpa_clock)
    assert ouvir["sustained"] == {"batched": 11, "one_at_a_time": 2}
    assert result["sustained"] == {"sherpa-onnx batched": 12}
    runs = {(r["mode"], r["streams"]): r for r in ouvir["runs"] + result["runs"]}
    assert [n for mode, n in runs if mode == "batched"] == [1, 2, 4, 8, 16, 12, 10, 11]
    assert [n for mode, n in runs if mode == "one_at_a_time"] == [1, 2, 4, 3]
    assert runs["one_at_a_time", 1]["p50_s"] == pytest.approx(0.36 * c)  # one call per round, no queue
    assert runs["batched", 8]["p50_s"] == pytest.approx(0.78 * c)
    assert runs["sherpa-onnx batched", 12]["p99_s"] == pytest.approx(0.94 * c)
    assert runs["batched", 4]["chunks"] == 4 * 13 and not runs["batched", 4]["stopped_early"]
    late = runs["one_at_a_time", 3]  # 1.08 chunk per round: its queue grows every round
    assert late["stopped_early"] and late["p99_s"] >= c and late["tokens_per_s"] is None
    assert runs["sherpa-onnx batched", 4]["tokens_per_s"] == pytest.approx(1 / c)  # one token per decoded chunk
    assert set(sherpa.calls) >= {4, 12}  # every ready stream in one call


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


def test_streams_command_runs_sherpa_onnx_on_the_same_files(tmp_path):
    """The default model's ONNX fp32 bundle through ouvir (batched, one at a time) and sherpa-onnx (batched): both
    decode the same speech into tokens."""
    pytest.importorskip("sherpa_onnx")
    model = default_model("onnx", "fp32")[0]
    out = subprocess.run([str(OUVIR), "bench", "--streams", "2", "--model", str(model), "--against", "sherpa-onnx",
                          "--seconds", "3", "--threads", "1", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "streams.json").read_text())
    assert [(r["mode"], r["streams"]) for r in report["runs"]] == [
        (mode, n) for mode in ("batched", "one_at_a_time", "sherpa-onnx batched") for n in (1, 2)]
    assert report["sustained"] == {"batched": 2, "one_at_a_time": 2, "sherpa-onnx batched": 2}
    assert report["batch_exact"] and report["precision"] == "fp32" and report["model"].endswith(model.name)
    for r in report["runs"]:
        assert 0 < r["p50_s"] <= r["p99_s"] < r["chunk_s"]
        assert r["chunks"] == r["streams"] * (round(3 / r["chunk_s"]) + 1)
        assert r["tokens_per_s"] > 0.5, r  # speech: both engines emit tokens
        ouvir = r["mode"] != "sherpa-onnx batched"  # ouvir's encoder is timed; sherpa-onnx's is inside C++
        assert (0 < r["encoder_s"] < r["busy_s"]) if ouvir else "encoder_s" not in r
    assert "| 2 | sherpa-onnx batched |" in (tmp_path / "streams.md").read_text()


def test_streams_command_measures_one_configuration(tmp_path):
    out = subprocess.run([str(OUVIR), "bench", "--streams", "4", "--config", "large", "--backend", "onnx",
                          "--quantize", "none", "int8", "--out", str(tmp_path)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2 and "one configuration at a time; these name 2" in out.stderr
    assert not (tmp_path / "streams.json").exists()


def test_serve_feeds_each_stream_its_own_audio(hybrid):
    rec, audio = hybrid
    c, rate = chunk_seconds(rec), rec.info.features.sample_rate
    result = serve(OuvirLoop(rec, True), audio, 3, 2.0, c, rate)
    assert result["streams"] == 3 and result["chunks"] == 3 * (round(2.0 / c) + 1)
