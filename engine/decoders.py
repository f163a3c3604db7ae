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
  ``rnnt_greedy_batch`` decodes many streams with one joint call and one predict call per round.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from ouvir.engine.backends.base import PREDICTOR_BATCH_AXES, PredictorState, batch_row, stack_batch


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
    return rnnt_greedy_batch(heads, [encoded], [state], blank, max_symbols)[0]


class _Cursor(NamedTuple):
    """One stream inside ``rnnt_greedy_batch``."""

    t: int  # the frame being decoded
    symbols: int  # tokens emitted on it so far
    predictor: PredictorState  # (P, 1, H)
    prediction: np.ndarray  # (1, P)
    label: int


def rnnt_greedy_batch(
    heads: TransducerHeads, encoded: list[np.ndarray], states: list[RNNTState], blank: int, max_symbols: int
) -> list[tuple[Emitted, RNNTState]]:
    """``rnnt_greedy_step`` of many streams at once, each encoded[b] (T_b, D) with its own state: every round
    scores all unfinished streams' rows in one joint call and advances all streams that emitted a token in one
    predict call. Each stream's decisions are those of decoding it alone."""
    emitted: list[Emitted] = [[] for _ in states]
    cursors = [_Cursor(0, 0, s.predictor, s.prediction, s.label) for s in states]
    while active := [b for b, c in enumerate(cursors) if c.t < len(encoded[b]) and max_symbols > 0]:
        rows = [encoded[b][cursors[b].t : cursors[b].t + (len(encoded[b]) if heads.batched_joint else 1)]
                for b in active]  # (n_b, D) each
        logits = heads.joint(
            np.concatenate(rows), np.concatenate([np.repeat(cursors[b].prediction, len(r), axis=0)
                                                  for b, r in zip(active, rows, strict=True)])
        )  # (sum n_b, V+1)
        bests = np.split(np.argmax(logits, axis=-1), np.cumsum([len(r) for r in rows])[:-1])
        hit: list[int] = []
        for b, best in zip(active, bests, strict=True):
            c = cursors[b]
            hits = np.flatnonzero(best != blank)
            if not hits.size:  # blank on every scored frame
                cursors[b] = c._replace(t=c.t + len(best), symbols=0)
                continue
            t, symbols = (c.t + int(hits[0]), 0) if hits[0] else (c.t, c.symbols)  # blanks first: a later frame
            token = int(best[hits[0]])
            emitted[b].append((token, states[b].frames + t))
            cursors[b] = c._replace(t=t, symbols=symbols, label=token)
            hit.append(b)
        if hit:
            tokens = np.array([cursors[b].label for b in hit], dtype=np.int64)  # (H,)
            predictor = stack_batch([cursors[b].predictor for b in hit], PREDICTOR_BATCH_AXES)
            prediction, predictor = heads.predict(tokens, predictor)  # (H, P)
            for i, b in enumerate(hit):
                c = cursors[b]
                t, symbols = (c.t + 1, 0) if c.symbols + 1 == max_symbols else (c.t, c.symbols + 1)
                cursors[b] = c._replace(t=t, symbols=symbols, prediction=prediction[i : i + 1],
                                        predictor=batch_row(predictor, i, PREDICTOR_BATCH_AXES))
    return [
        (e, RNNTState(c.predictor, c.prediction, c.label, s.frames + len(x)))
        for e, c, s, x in zip(emitted, cursors, states, encoded, strict=True)
    ]
