"""The seam between the streaming engine and whatever runs the network (torch, onnxruntime, executorch).

Everything crossing it is numpy. The engine owns features, chunking and decoding; a backend owns only the
encoder step and the decoder heads. State layouts follow NeMo's PyTorch API (layer-first caches).
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np


class EncoderState(NamedTuple):
    """Cache-aware encoder state of one or more streams (NeMo names)."""

    cache_last_channel: np.ndarray  # (L, B, C, D) float32, normalized attention inputs, right-aligned
    cache_last_time: np.ndarray  # (L, B, D, K-1) float32, causal depthwise-conv history
    cache_last_channel_len: np.ndarray  # (B,) int64, valid trailing slots of cache_last_channel


class PredictorState(NamedTuple):
    """RNNT prediction-network LSTM state."""

    h: np.ndarray  # (layers, B, H) float32
    c: np.ndarray  # (layers, B, H) float32


class Backend(Protocol):
    """One loaded model at one look-ahead. Stateless: every stream passes its own state in and out."""

    name: str  # "torch" | "onnx" | "pte"
    precision: str  # "fp32" | "int8"

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
