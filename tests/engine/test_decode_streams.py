"""Recognizer.decode_streams: 8 streams of different lengths and start times, decoded in batches, get exactly the
events (tokens, frames, partial and final texts, times) that one-at-a-time decoding gives them, on every backend."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from ouvir.engine.default_model import default_model, root, samples
from ouvir.engine.events import Final
from ouvir.engine.recognizer import Recognizer, Stream

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STREAMS = 8
# (model, backend, decoder): the NeMo fixture eagerly, the shipped default model in every build it ships.
RUNS = [
    ("hybrid_multi", "torch", "rnnt"),
    ("hybrid_multi", "torch", "ctc"),
    ("default", "torch", "rnnt"),
    ("onnx-fp32", "onnx", "rnnt"),
    ("onnx-fp32", "onnx", "ctc"),
    ("onnx-int8", "onnx", "rnnt"),
    ("pte-int8", "pte", "rnnt"),
    ("pte-int8", "pte", "ctc"),
]


class SpyBackend:
    """The backend, recording each encoder call's (first, chunk_len) and whether its state was the previous call's
    output handed back whole (the streams' rows not copied into a new batch)."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.calls: list[tuple[bool, list[int]]] = []
        self.reused: list[bool] = []
        self.last = None

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def encode(self, chunk, chunk_len, state, first):
        self.calls.append((first, chunk_len.tolist()))
        self.reused.append(state is self.last)
        encoded, lengths, self.last = self.backend.encode(chunk, chunk_len, state, first)
        return encoded, lengths, self.last


def _wav(path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768


def _open(name: str, backend: str, decoder: str, nemo_dir) -> tuple[Recognizer, np.ndarray]:
    if name == "hybrid_multi":
        path, audio = nemo_dir / "hybrid_multi.nemo", np.load(nemo_dir / "test_audio_f32.npy")
    else:
        path = root() / "model.ouvir" if name == "default" else default_model(backend, name.split("-")[1])[0]
        audio = np.concatenate([_wav(s.path) for s in samples()])
    if backend == "torch":
        pytest.importorskip("torch")
    return Recognizer.open(path, backend, decoder=decoder), audio


def _plans(audio: np.ndarray, seed: int = 0) -> list[tuple[int, list[np.ndarray]]]:
    """Per stream: the loop iteration it starts at and the pieces it is fed, one per iteration (0 to 24000
    samples) - slices of ``audio`` of different offsets and lengths (0.3 s to all of it)."""
    rng = np.random.default_rng(seed)
    plans = []
    for i in range(STREAMS):
        start = int(rng.integers(0, len(audio) // 2))
        length = [4800, len(audio)][i % 2] if i < 2 else int(rng.integers(4800, len(audio) - start))
        cuts = np.cumsum(rng.integers(0, 24000, size=len(audio) // 4000))
        x = audio[start : start + length]
        pieces = np.split(x, cuts[cuts < len(x)])
        plans.append((int(rng.integers(0, 6)) if i >= 2 else 0, pieces))
    return plans


def _one_at_a_time(rec: Recognizer, pieces: list[np.ndarray]) -> list:
    stream, events = rec.create_stream(), []
    for piece in pieces:
        stream.accept_waveform(piece, 16000)
        events += rec.decode(stream)
    stream.input_finished()
    return events + list(rec.decode(stream))


def _batched(rec: Recognizer, plans) -> list[list]:
    """All streams in one loop: stream b is created at its start iteration, fed one piece per iteration and
    finished after its last one; every iteration decodes every live stream in one ``decode_streams`` call."""
    streams: dict[int, Stream] = {}
    events: list[list] = [[] for _ in plans]
    for step in range(max(start + len(pieces) for start, pieces in plans) + 1):
        for b, (start, pieces) in enumerate(plans):
            if step == start:
                streams[b] = rec.create_stream()
            if step - start in range(len(pieces)):
                streams[b].accept_waveform(pieces[step - start], 16000)
            elif step - start == len(pieces):
                streams[b].input_finished()
        index = {id(s): b for b, s in streams.items()}
        for stream, event in rec.decode_streams(list(streams.values())):
            events[index[id(stream)]].append(event)
    assert all(s.ended for s in streams.values())
    return events


@pytest.mark.parametrize(("name", "backend", "decoder"), RUNS)
def test_batched_streams_get_the_events_of_one_at_a_time(nemo_dir, name, backend, decoder):
    rec, audio = _open(name, backend, decoder, nemo_dir)
    plans = _plans(audio)
    one = SpyBackend(rec.backend)
    alone = [_one_at_a_time(Recognizer(one, decoder), pieces) for _, pieces in plans]
    spy = SpyBackend(rec.backend)
    batched = _batched(Recognizer(spy, decoder), plans)

    for b in range(STREAMS):
        assert batched[b] == alone[b], f"stream {b}"
    finals = [tuple(e.text for e in ev if isinstance(e, Final)) for ev in alone]
    assert sum(map(bool, finals)) >= STREAMS - 2 and len(set(finals)) > 2  # words, different ones per stream
    assert sum(len(lengths) for _, lengths in spy.calls) == len(one.calls)  # the same chunks
    if not rec.backend.batch_exact:  # dynamically quantized int8 ONNX: one call per stream
        assert {len(lengths) for _, lengths in spy.calls} == {1}
        return
    # It really batched: many streams per call, first steps together, a last short chunk beside full ones.
    assert max(len(lengths) for _, lengths in spy.calls) >= 4
    assert any(first and len(lengths) > 1 for first, lengths in spy.calls)
    assert any(not first and len(set(lengths)) > 1 for first, lengths in spy.calls)
    assert len(spy.calls) < len(one.calls) / 2
    # The same streams in consecutive calls: the batch of the call before goes back in, nothing stacked.
    assert any(reused and len(lengths) > 1 for reused, (_, lengths) in zip(spy.reused, spy.calls, strict=True))


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_onnx_batch_exact_only_without_dynamic_quantization(precision):
    """Why int8 ONNX is not batched: its activation scale spans the batch, so a stream's encoder output moves with
    the other streams of the call; fp32's rows are exactly their one-at-a-time values."""
    rec = Recognizer.open(default_model("onnx", precision)[0], "onnx")
    backend, rng = rec.backend, np.random.default_rng(0)
    width = rec.info.geometry.chunk_size[0]
    chunks = rng.standard_normal((3, rec.info.features.features, width)).astype(np.float32)  # (B, F, T)
    chunks[1] *= 5
    lengths = np.array([width, width, width - 20], np.int64)
    encoded, encoded_len, _ = backend.encode(chunks, lengths, backend.initial_state(3), True)  # (B, T', D)
    diffs = []
    for b in range(3):
        alone, alone_len, _ = backend.encode(chunks[b : b + 1], lengths[b : b + 1], backend.initial_state(1), True)
        assert alone_len[0] == encoded_len[b]
        diffs.append(np.abs(alone[0, : alone_len[0]] - encoded[b, : encoded_len[b]]).max())
    assert backend.batch_exact == (precision == "fp32")
    assert (max(diffs) == 0) == backend.batch_exact
