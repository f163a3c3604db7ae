"""Calibration and reference runs: the export wrappers run eagerly behind the engine's Backend protocol.

``EagerGraphs`` gives the engine's Recognizer (features, chunk scheduler, greedy decoders) the graphs a
bundle will hold, run in torch with exactly the exported interface, and records every graph's inputs:
those are the calibration samples of static int8 quantization, and its decoded tokens / encoder outputs
are the fp32 reference of the accuracy report.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ouvir.engine.audio import FileSource
from ouvir.engine.backends.base import Backend, EncoderState, PredictorState
from ouvir.engine.backends.torch_backend import TorchBackend
from ouvir.engine.events import Final
from ouvir.engine.recognizer import Recognizer
from ouvir.export.graphs import GraphSpec, lookahead_name
from ouvir.models.asr import LoadedModel


def read_audio(path: Path) -> np.ndarray:
    """A whole file as 16 kHz mono float32, converted once at the engine's edge."""
    with FileSource(path, block_s=10.0) as source:
        blocks = []
        while (block := source.read()) is not None:
            blocks.append(block)
    return np.concatenate(blocks).astype(np.float32, copy=False) if blocks else np.zeros(0, np.float32)


class EagerGraphs:
    """Backend over the export wrappers (batch-first caches, fixed widths, raw prediction output), batch 1."""

    name = "eager"
    precision = "fp32"
    batched_joint = False
    batch_exact = False  # batch 1

    def __init__(self, loaded: LoadedModel, specs: dict[str, GraphSpec], context: tuple[int, int]) -> None:
        la = lookahead_name(context)
        self._torch = TorchBackend(loaded, context)  # info and initial states
        self.info = self._torch.info
        self._first, self._next = specs[f"encoder_first.{la}"], specs[f"encoder_next.{la}"]
        self._heads = {s.role: s for s in specs.values() if s.lookahead is None}
        self.inputs: dict[str, list[tuple[np.ndarray, ...]]] = defaultdict(list)  # graph name -> input tuples
        self.encoded: list[np.ndarray] = []  # (T', D) valid frames of every encoder step

    def _run(self, spec: GraphSpec, *inputs: np.ndarray) -> list[np.ndarray]:
        inputs = tuple(np.ascontiguousarray(x) for x in inputs)
        self.inputs[spec.name].append(inputs)
        with torch.inference_mode():
            out = spec.module(*(torch.from_numpy(x) for x in inputs))
        return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]

    def initial_state(self, batch: int = 1) -> EncoderState:
        return self._torch.initial_state(batch)

    def encode(
        self, chunk: np.ndarray, chunk_len: np.ndarray, state: EncoderState, first: bool
    ) -> tuple[np.ndarray, np.ndarray, EncoderState]:
        spec = self._first if first else self._next
        width = spec.info["chunk_frames"]
        chunk = np.pad(chunk.astype(np.float32), ((0, 0), (0, 0), (0, width - chunk.shape[2])))
        encoded, lengths, c1, c2, c3 = self._run(
            spec, chunk, chunk_len.astype(np.int64), state.cache_last_channel.swapaxes(0, 1),
            state.cache_last_time.swapaxes(0, 1), state.cache_last_channel_len.astype(np.int64))
        out = encoded[:, :, : int(lengths.max())].transpose(0, 2, 1)  # (B, T', D)
        self.encoded.append(out[0])
        return out, lengths, EncoderState(c1.swapaxes(0, 1), c2.swapaxes(0, 1), c3)

    def ctc_log_probs(self, encoded: np.ndarray) -> np.ndarray:
        spec = self._heads["ctc"]
        n = encoded.shape[1]
        padded = np.pad(encoded.transpose(0, 2, 1), ((0, 0), (0, 0), (0, spec.info["frames"] - n)))  # (B, D, f)
        return self._run(spec, padded.astype(np.float32))[0][:, :n]

    def predict(self, token: np.ndarray, state: PredictorState) -> tuple[np.ndarray, PredictorState]:
        out, _, h, c = self._run(self._heads["rnnt_decoder"], token.astype(np.int32)[:, None],
                                 np.ones(len(token), np.int32), state.h, state.c)
        return out[:, :, 0], PredictorState(h, c)

    def joint(self, encoded_frame: np.ndarray, prediction: np.ndarray) -> np.ndarray:
        return self._run(self._heads["rnnt_joint"], encoded_frame[:, :, None].astype(np.float32),
                         prediction[:, :, None].astype(np.float32))[0][:, 0, 0]

    def initial_predictor_state(self, batch: int = 1) -> PredictorState:
        return self._torch.initial_predictor_state(batch)


@dataclass
class Decoded:
    tokens: list[int]
    text: str
    encoded: list[np.ndarray]  # (T', D) per encoder step


def decode(backend: Backend, decoder: str, audio: np.ndarray) -> Decoded:
    """Run ``audio`` through a Recognizer on ``backend``; encoder outputs are captured when it records them."""
    rec = Recognizer(backend, decoder)
    stream = rec.create_stream()
    stream.accept_waveform(audio, rec.info.features.sample_rate)
    stream.input_finished()
    finals = [e for e in rec.decode(stream) if isinstance(e, Final)]
    tokens = [t.id for f in finals for t in f.tokens]
    return Decoded(tokens, " ".join(f.text for f in finals), list(getattr(backend, "encoded", [])))


class RecordingEncoder:
    """Wraps a backend and keeps the valid encoder frames of every step (for error measurements)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.info = backend.info
        self.name, self.precision = backend.name, backend.precision
        self.encoded: list[np.ndarray] = []

    def __getattr__(self, attr: str):
        return getattr(self.backend, attr)

    def encode(self, chunk, chunk_len, state, first):
        out, lengths, state = self.backend.encode(chunk, chunk_len, state, first)
        self.encoded.append(out[0, : int(lengths[0])])
        return out, lengths, state
