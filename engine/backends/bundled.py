"""What the onnx and pte backends share: opening a bundle for one backend, and the state each stream starts with."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ouvir.engine.backends.base import EncoderState, PredictorState
from ouvir.engine.bundle import Bundle, BundleError, Lookahead, load_bundle


def load_for(path: Path, backend: str, precision: str | None) -> Bundle:
    """The verified bundle at ``path``, refused unless it holds ``backend`` graphs in ``precision`` (None: the
    precision it holds, whichever that is)."""
    bundle = load_bundle(path)
    if bundle.backend != backend:
        raise BundleError(path, f"its graphs are {bundle.backend!r}, not {backend}")
    if precision is not None and precision != bundle.precision:
        raise BundleError(path, f"it holds {bundle.precision} graphs, not {precision}")
    return bundle


class BundledBackend:
    """Initial encoder and predictor states from the bundle's manifest (state spec, RNNT sizes)."""

    def __init__(self, bundle: Bundle, lookahead: Lookahead) -> None:
        self.bundle = bundle
        self.lookahead = lookahead
        self.precision = bundle.precision
        self.info = bundle.model_info(lookahead)
        self._state = lookahead.state["tensors"]
        rnnt = bundle.model_config.get("rnnt")
        self._predictor_shape = (rnnt["pred_rnn_layers"], rnnt["pred_hidden"]) if rnnt else None

    @staticmethod
    def fit_chunk(chunk: np.ndarray, width: int) -> np.ndarray:
        """``chunk`` (B, F, T) as float32 at the graph's fixed width: the last, shorter chunk gets zero columns
        after it (its ``length`` stays the real width, so its valid frames are unchanged)."""
        if chunk.shape[2] > width:
            raise ValueError(f"chunk of {chunk.shape[2]} columns is wider than the graph's {width}")
        chunk = np.pad(chunk, ((0, 0), (0, 0), (0, width - chunk.shape[2])))
        return np.ascontiguousarray(chunk, dtype=np.float32)  # (B, F, width)

    def initial_state(self, batch: int = 1) -> EncoderState:
        return EncoderState(*(
            np.zeros([batch if d == "B" else d for d in t["shape"]], dtype=t["dtype"]) for t in self._state
        ))

    def initial_predictor_state(self, batch: int = 1) -> PredictorState:
        if self._predictor_shape is None:
            raise ValueError("this bundle has no RNNT decoder")
        layers, hidden = self._predictor_shape
        zeros = np.zeros((layers, batch, hidden), np.float32)  # (P, B, H)
        return PredictorState(zeros, zeros.copy())
