"""The engines a benchmark drives: ouvir's Recognizer / Stream (with its backend timed) and sherpa-onnx."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ouvir.engine.audio.edge import MODEL_RATE
from ouvir.engine.backends.base import Backend, EncoderState, PredictorState
from ouvir.engine.bench.harness import Counters
from ouvir.engine.events import Event, Final
from ouvir.engine.recognizer import Recognizer


class TimedBackend:
    """A Backend that adds the time of every encoder step and head call to ``counters``; otherwise the same."""

    def __init__(self, backend: Backend, clock: Callable[[], float], counters: Counters) -> None:
        self.backend = backend
        self.clock = clock
        self.counters = counters
        self.name = backend.name
        self.precision = backend.precision
        self.batched_joint = backend.batched_joint
        self.batch_exact = backend.batch_exact
        self.info = backend.info

    def initial_state(self, batch: int = 1) -> EncoderState:
        return self.backend.initial_state(batch)

    def initial_predictor_state(self, batch: int = 1) -> PredictorState:
        return self.backend.initial_predictor_state(batch)

    def encode(
        self, chunk: np.ndarray, chunk_len: np.ndarray, state: EncoderState, first: bool
    ) -> tuple[np.ndarray, np.ndarray, EncoderState]:
        t0 = self.clock()
        out = self.backend.encode(chunk, chunk_len, state, first)
        self.counters.encoder_s += self.clock() - t0
        self.counters.chunks += 1
        return out

    def ctc_log_probs(self, encoded: np.ndarray) -> np.ndarray:
        return self._head(self.backend.ctc_log_probs, encoded)

    def predict(self, token: np.ndarray, state: PredictorState) -> tuple[np.ndarray, PredictorState]:
        return self._head(self.backend.predict, token, state)

    def joint(self, encoded_frame: np.ndarray, prediction: np.ndarray) -> np.ndarray:
        return self._head(self.backend.joint, encoded_frame, prediction)

    def _head(self, fn: Callable[..., Any], *args: Any) -> Any:
        t0 = self.clock()
        out = fn(*args)
        self.counters.heads_s += self.clock() - t0
        return out


class _Engine:
    """What both engines share: a recognizer that makes streams, and the tokens of the current one."""

    recognizer: Any
    stream: Any
    tokens: int

    def new_stream(self) -> None:
        self.stream = self.recognizer.create_stream()
        self.tokens = 0


class OuvirEngine(_Engine):
    """The whole ouvir pipeline: Stream.accept_waveform (log-mel, scheduling) + Recognizer.decode.

    Audio comes at ``MODEL_RATE`` (16 kHz); the stream resamples only for a model with another rate."""

    has_parts = True

    def __init__(self, backend: Backend, decoder: str | None, clock: Callable[[], float], label: str) -> None:
        self.label = label
        self.counters = Counters()
        self.clock = clock
        self.recognizer = Recognizer(TimedBackend(backend, clock, self.counters), decoder)
        self.stream = self.recognizer.create_stream()
        self.tokens = 0

    def feed(self, samples: np.ndarray) -> None:
        t0 = self.clock()
        self.stream.accept_waveform(samples, MODEL_RATE)
        self.counters.features_s += self.clock() - t0
        self._take(self.recognizer.decode(self.stream))

    def finish(self) -> None:
        self.stream.input_finished()
        self._take(self.recognizer.decode(self.stream))

    def _take(self, events: Iterable[Event]) -> None:
        for event in events:
            if isinstance(event, Final):
                self.tokens += len(event.tokens)


def sherpa_recognizer(files: dict[str, Path], threads: int, sample_rate: int, feature_dim: int) -> Any:
    """sherpa-onnx's OnlineRecognizer on ``files`` (``models.sherpa_files`` roles, as paths), greedy, on the CPU."""
    import sherpa_onnx

    if "model" in files:
        return sherpa_onnx.OnlineRecognizer.from_nemo_ctc(
            model=str(files["model"]), tokens=str(files["tokens"]), num_threads=threads,
            sample_rate=sample_rate, feature_dim=feature_dim, provider="cpu",
        )
    return sherpa_onnx.OnlineRecognizer.from_transducer(
        encoder=str(files["encoder"]), decoder=str(files["decoder"]), joiner=str(files["joiner"]),
        tokens=str(files["tokens"]), num_threads=threads, sample_rate=sample_rate,
        feature_dim=feature_dim, decoding_method="greedy_search", provider="cpu",
    )


class SherpaEngine(_Engine):
    """sherpa-onnx's OnlineRecognizer on ONNX files (transducer: encoder/decoder/joiner; or a NeMo CTC model).

    Its features, chunking and decoding run inside sherpa (C++), so only whole-block times are known.
    """

    has_parts = False

    def __init__(self, files: dict[str, Path], threads: int, sample_rate: int, feature_dim: int, label: str) -> None:
        self.label = label
        self.counters = Counters()
        self.rate = sample_rate
        self.recognizer = sherpa_recognizer(files, threads, sample_rate, feature_dim)
        self.stream = self.recognizer.create_stream()
        self.tokens = 0

    def feed(self, samples: np.ndarray) -> None:
        self.stream.accept_waveform(self.rate, samples)
        self._decode()

    def finish(self) -> None:
        self.stream.input_finished()
        self._decode()
        self.tokens = len(self.recognizer.get_result_all(self.stream).tokens)

    def _decode(self) -> None:
        while self.recognizer.is_ready(self.stream):
            self.recognizer.decode_stream(self.stream)
            self.counters.chunks += 1
