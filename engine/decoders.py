"""Greedy CTC and RNNT decoding in numpy, one stream, state carried across chunks (NeMo semantics).

Both are pure steps: ``tokens, state = step(..., state)``. Emitted tokens are ``(token id, global encoder
frame)`` pairs; the frame counter lives in the state, so timestamps are global over the stream.

* CTC: per-frame argmax, collapse repeats (also across chunk boundaries: the state keeps the previous
  frame's argmax, blank included), drop blank. A token's frame is the first frame of its run.
* RNNT (NeMo greedy / greedy_batch): the predictor state starts after feeding ``<SOS>`` (= blank id).
  Per frame: argmax of ``joint(frame, prediction)``; blank -> next frame; a token -> emit it, advance the
  predictor with it and retry the same frame, at most ``max_symbols`` tokens per frame.
  Heads with ``batched_joint`` score all remaining frames of the chunk under the current prediction in one
  call (rows = frames) and skip to the first non-blank one: the same decisions with far fewer calls, since
  most frames are blank. Heads whose graph takes one row at a time score one frame per call.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from ouvir.engine.backends.base import PredictorState


class CTCState(NamedTuple):
    previous: int  # argmax of the last decoded frame (blank id at the start)
    frames: int  # frames decoded so far


class RNNTState(NamedTuple):
    predictor: PredictorState  # LSTM (h, c) after <SOS> and every emitted token
    prediction: np.ndarray  # (1, P) predictor output for the last label, as the joint consumes it
    label: int  # last emitted label (blank id = <SOS>)
    frames: int  # frames decoded so far


class TransducerHeads(Protocol):
    batched_joint: bool  # joint() of many rows costs about one call: score a chunk's frames together

    def predict(self, token: np.ndarray, state: PredictorState) -> tuple[np.ndarray, PredictorState]: ...

    def joint(self, encoded_frame: np.ndarray, prediction: np.ndarray) -> np.ndarray: ...

    def initial_predictor_state(self, batch: int = 1) -> PredictorState: ...


Emitted = list[tuple[int, int]]  # (token id, global frame)


def ctc_initial_state(blank: int) -> CTCState:
    return CTCState(previous=blank, frames=0)


def ctc_greedy_step(log_probs: np.ndarray, state: CTCState, blank: int) -> tuple[Emitted, CTCState]:
    """log_probs (T, V+1) of the chunk's valid frames."""
    best = np.argmax(log_probs, axis=-1)  # (T,)
    previous = np.concatenate([[state.previous], best[:-1]])  # (T,)
    keep = np.flatnonzero((best != blank) & (best != previous))
    emitted = [(int(best[t]), state.frames + int(t)) for t in keep]
    last = int(best[-1]) if len(best) else state.previous
    return emitted, CTCState(previous=last, frames=state.frames + len(best))


def rnnt_initial_state(heads: TransducerHeads, blank: int) -> RNNTState:
    prediction, predictor = heads.predict(np.array([blank], dtype=np.int64), heads.initial_predictor_state(1))
    return RNNTState(predictor=predictor, prediction=prediction, label=blank, frames=0)


def rnnt_greedy_step(
    heads: TransducerHeads, encoded: np.ndarray, state: RNNTState, blank: int, max_symbols: int
) -> tuple[Emitted, RNNTState]:
    """encoded (T, D) of the chunk's valid frames."""
    emitted: Emitted = []
    predictor, prediction, label = state.predictor, state.prediction, state.label
    frames = encoded.shape[0]
    width = frames if heads.batched_joint else 1
    t, symbols = 0, 0  # the frame being decoded, tokens emitted on it so far
    while t < frames and max_symbols > 0:
        rows = encoded[t : t + width]  # (n, D)
        best = np.argmax(heads.joint(rows, np.repeat(prediction, len(rows), axis=0)), axis=-1)  # (n,)
        hits = np.flatnonzero(best != blank)
        if not hits.size:  # blank on every scored frame
            t, symbols = t + len(rows), 0
            continue
        if hits[0]:  # blanks first: the token falls on a later frame
            t, symbols = t + int(hits[0]), 0
        token = int(best[hits[0]])
        emitted.append((token, state.frames + t))
        prediction, predictor = heads.predict(np.array([token], dtype=np.int64), predictor)
        label, symbols = token, symbols + 1
        if symbols == max_symbols:
            t, symbols = t + 1, 0
    return emitted, RNNTState(predictor, prediction, label, state.frames + frames)
