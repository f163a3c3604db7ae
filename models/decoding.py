"""Greedy CTC and RNNT decoding (torch) with explicit state carried across streaming chunks (spec §8.7).

Both decoders take one chunk of encoder frames and a state, and return the tokens emitted in that chunk
with their global encoder-frame indices, plus the next state. Decoding a whole utterance is the same call
on all frames with the initial state.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ouvir.models.heads import PredictorState, RNNTJoint, RNNTPredictor, predict


class Hypotheses(NamedTuple):
    tokens: list[list[int]]  # per batch element, the token ids emitted in this call
    timestamps: list[list[int]]  # matching global encoder-frame indices


class CTCState(NamedTuple):
    prev_label: torch.Tensor  # (B,) int64 argmax of the last frame seen (blank included); blank at start
    decoded_length: torch.Tensor  # (B,) int64 frames consumed so far


class RNNTState(NamedTuple):
    """NeMo's label-looping ``dec_state`` (fixture keys ``rnnt_state.*``)."""

    h: torch.Tensor  # (L, B, H) LSTM hidden after <SOS> and every emitted token ("pred_state_0")
    c: torch.Tensor  # (L, B, H) LSTM cell ("pred_state_1")
    pred_output: torch.Tensor  # (B, J) joint.pred(prediction output), projected ("pred_output")
    label: torch.Tensor  # (B,) int64 last emitted label, blank (= <SOS>) before any ("label")
    decoded_length: torch.Tensor  # (B,) int64 encoder frames consumed so far ("decoded_length")


def ctc_initial_state(batch: int, blank_id: int) -> CTCState:
    return CTCState(torch.full((batch,), blank_id, dtype=torch.int64), torch.zeros(batch, dtype=torch.int64))


def ctc_greedy(log_probs: torch.Tensor, lengths: torch.Tensor, state: CTCState) -> tuple[Hypotheses, CTCState]:
    """log_probs (B, T, V+1) -> tokens where the argmax is not blank and differs from the previous frame's.

    Repeats collapse across chunk boundaries through ``state.prev_label``.
    """
    blank = log_probs.shape[-1] - 1
    best = log_probs.argmax(dim=-1)  # (B, T)
    prev = torch.cat([state.prev_label[:, None], best[:, :-1]], dim=1)  # (B, T)
    frames = torch.arange(best.shape[1])  # (T,)
    valid = frames[None, :] < lengths[:, None]  # (B, T)
    emit = valid & (best != blank) & (best != prev)  # (B, T)
    tokens, times = [], []
    for b in range(best.shape[0]):
        idx = emit[b].nonzero()[:, 0]
        tokens.append(best[b, idx].tolist())
        times.append((idx + state.decoded_length[b]).tolist())
    if best.shape[1] == 0:
        return Hypotheses(tokens, times), state
    last = best.gather(1, (lengths - 1).clamp(min=0)[:, None])[:, 0]  # (B,)
    prev_label = torch.where(lengths > 0, last, state.prev_label)
    return Hypotheses(tokens, times), CTCState(prev_label, state.decoded_length + lengths)


def rnnt_initial_state(predictor: RNNTPredictor, joint: RNNTJoint, batch: int) -> RNNTState:
    """The state after feeding <SOS> (= blank, whose embedding is zero) to a zero LSTM state."""
    sos = torch.full((batch,), predictor.blank_id, dtype=torch.int64)
    pred_output, (h, c) = predict(predictor, joint, sos, predictor.initial_state(batch))
    return RNNTState(h, c, pred_output, sos, torch.zeros(batch, dtype=torch.int64))


def rnnt_greedy(
    predictor: RNNTPredictor,
    joint: RNNTJoint,
    encoded: torch.Tensor,
    lengths: torch.Tensor,
    state: RNNTState,
    max_symbols: int,
) -> tuple[Hypotheses, RNNTState]:
    """Greedy transducer decoding of encoded (B, D, T): per frame, emit argmax tokens until blank or
    ``max_symbols`` (the count restarts every frame); each emitted token advances the prediction network."""
    blank = predictor.blank_id
    enc_proj = joint.joint_enc(encoded.transpose(1, 2))  # (B, T, J)
    h, c, g, label, done = state
    batch = enc_proj.shape[0]
    tokens: list[list[int]] = [[] for _ in range(batch)]
    times: list[list[int]] = [[] for _ in range(batch)]
    for t in range(enc_proj.shape[1]):
        active = t < lengths  # (B,)
        for _ in range(max_symbols):
            k = joint(enc_proj[:, t], g).argmax(dim=-1)  # (B,)
            emit = active & (k != blank)  # (B,)
            if not bool(emit.any()):
                break
            for b in emit.nonzero()[:, 0].tolist():
                tokens[b].append(int(k[b]))
                times[b].append(int(done[b]) + t)
            g_new, (h_new, c_new) = predict(predictor, joint, k, PredictorState(h, c))
            g = torch.where(emit[:, None], g_new, g)  # (B, J)
            h = torch.where(emit[None, :, None], h_new, h)  # (L, B, H)
            c = torch.where(emit[None, :, None], c_new, c)  # (L, B, H)
            label = torch.where(emit, k, label)  # (B,)
            active = emit
    return Hypotheses(tokens, times), RNNTState(h, c, g, label, done + lengths)
