"""The seam between the streaming engine and whatever runs the network (torch, onnxruntime, executorch).

Everything crossing it is numpy. The engine owns features, chunking and decoding; a backend owns only the
encoder step and the decoder heads. State layouts follow NeMo's PyTorch API (layer-first caches).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

import numpy as np

from ouvir.engine.features_config import FeatureConfig


@dataclass(frozen=True)
class ChunkGeometry:
    """How feature columns are cut into encoder steps at one look-ahead (NeMo ``streaming_cfg`` names).

    Pairs are [first step, later steps]. Derived once by models/geometry.py; bundles store it.
    """

    chunk_size: tuple[int, int]  # new feature columns per step
    shift_size: tuple[int, int]  # read-pointer advance per step
    pre_encode_cache_size: tuple[int, int]  # previous columns prepended (zero-padded when fewer exist)
    drop_extra_pre_encoded: int  # leading encoder frames dropped on later steps
    sampling_frames: tuple[int, int]  # a step needs at least this many new columns
    subsampling_factor: int  # feature columns per encoder frame
    att_context_size: tuple[int, int]  # (left, right) encoder frames

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChunkGeometry:
        """Inverse of ``dataclasses.asdict`` after a JSON round trip (lists back to pairs)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


@dataclass(frozen=True, eq=False)
class ModelInfo:
    """What the engine needs to know about the model a backend runs."""

    features: FeatureConfig
    vocabulary: tuple[str, ...]  # SentencePiece pieces; blank id == len(vocabulary)
    geometry: ChunkGeometry
    decoders: tuple[str, ...]  # available decoders, preferred first: "rnnt", "ctc"
    max_symbols: int  # RNNT greedy: most tokens per encoder frame (0 without an RNNT decoder)
    window: np.ndarray | None = None  # (win_length,) float32 analysis window stored with the model
    filterbank: np.ndarray | None = None  # (features, n_fft // 2 + 1) float32 mel filterbank stored with it

    @property
    def blank_id(self) -> int:
        return len(self.vocabulary)

    @property
    def frame_s(self) -> float:
        """Duration of one encoder frame in seconds."""
        return self.geometry.subsampling_factor * self.features.hop_length / self.features.sample_rate

    @property
    def lookahead_ms(self) -> int:
        return round(self.geometry.att_context_size[1] * self.frame_s * 1000)


class EncoderState(NamedTuple):
    """Cache-aware encoder state of one or more streams (NeMo names)."""

    cache_last_channel: np.ndarray  # (L, B, C, D) float32, normalized attention inputs, right-aligned
    cache_last_time: np.ndarray  # (L, B, D, K-1) float32, causal depthwise-conv history
    cache_last_channel_len: np.ndarray  # (B,) int64, valid trailing slots of cache_last_channel


class PredictorState(NamedTuple):
    """RNNT prediction-network LSTM state."""

    h: np.ndarray  # (layers, B, H) float32
    c: np.ndarray  # (layers, B, H) float32


ENCODER_BATCH_AXES = (1, 1, 0)  # EncoderState fields' batch axis
PREDICTOR_BATCH_AXES = (1, 1)  # PredictorState fields' batch axis

S = TypeVar("S", EncoderState, PredictorState)


def stack_batch(states: Sequence[S], axes: tuple[int, ...]) -> S:
    """Many streams' states as one batch: each field concatenated on its batch axis (one state: as it is)."""
    if len(states) == 1:
        return states[0]
    fields = zip(*states, strict=True)  # field i of every state
    return type(states[0])(*(np.concatenate(f, axis=a) for f, a in zip(fields, axes, strict=True)))


def batch_row(state: S, b: int, axes: tuple[int, ...]) -> S:
    """Stream ``b`` of a batched state, batch axes kept (size 1): views into the batch, nothing copied (states are
    never written in place)."""
    if state[0].shape[axes[0]] == 1:
        return state
    return type(state)(*(x[(slice(None),) * a + (slice(b, b + 1),)] for x, a in zip(state, axes, strict=True)))


class Backend(Protocol):
    """One loaded model at one look-ahead. Stateless: every stream passes its own state in and out."""

    name: str  # "torch" | "onnx" | "pte"
    precision: str  # "fp32" | "int8"
    batched_joint: bool  # joint() of many rows costs about one call (the RNNT decoder scores frames together)
    batch_exact: bool  # a row's outputs never depend on the other rows of a call: streams may share calls
    info: ModelInfo

    def initial_state(self, batch: int = 1) -> EncoderState: ...

    def encode(
        self, chunk: np.ndarray, chunk_len: np.ndarray, state: EncoderState, first: bool
    ) -> tuple[np.ndarray, np.ndarray, EncoderState]:
        """chunk (B, F, T) float32 features (pre-encode cache columns included), chunk_len (B,) int64.

        ``first`` selects NeMo's first-step behaviour (no pre-encode cache, nothing dropped).
        Returns encoded (B, T', D) float32, encoded_len (B,) int64 and the next state.
        """
        ...

    def ctc_log_probs(self, encoded: np.ndarray) -> np.ndarray:
        """encoded (B, T', D) -> CTC log-probs (B, T', V+1)."""
        ...

    def predict(self, token: np.ndarray, state: PredictorState) -> tuple[np.ndarray, PredictorState]:
        """token (B,) int64 (blank = start) -> prediction output (B, P) as the joint consumes it, next state."""
        ...

    def joint(self, encoded_frame: np.ndarray, prediction: np.ndarray) -> np.ndarray:
        """encoded_frame (B, D), prediction (B, P) -> raw logits (B, V+1)."""
        ...

    def initial_predictor_state(self, batch: int = 1) -> PredictorState: ...
