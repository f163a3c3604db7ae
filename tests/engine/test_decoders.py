"""Numpy greedy CTC / RNNT decoders against NeMo's streaming results, step by step, every look-ahead."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from ouvir.engine.backends.base import PredictorState
from ouvir.engine.decoders import (
    ctc_greedy_step,
    ctc_initial_state,
    rnnt_greedy_step,
    rnnt_initial_state,
)
from ouvir.engine.tokens import Detokenizer

from .reference import NumpyHeads, head_weights, reference, step_encoded

HYBRID_CONTEXTS = ("c70_13", "c70_6", "c70_1", "c70_0")
ALL_CONTEXTS = [("hybrid_multi", c) for c in HYBRID_CONTEXTS] + [("ctc_conformer", "c64_7")]


@pytest.fixture(scope="module")
def heads(nemo_dir):
    return {m: NumpyHeads(head_weights(nemo_dir / f"{m}.nemo")) for m in ("hybrid_multi", "ctc_conformer")}


def _step_log_probs(nemo_dir, heads, model, ctx):
    """NeMo's own per-step CTC log-probs where stored (default look-ahead), else the numpy head's."""
    _, z = reference(nemo_dir, model)
    steps = step_encoded(nemo_dir, model, ctx)
    stored = [z.get(f"stream.{ctx}.step{k:03d}.ctc_log_probs") for k in range(len(steps))]
    head = heads[model]
    return [lp[0] if lp is not None else head.ctc_log_probs(e[None])[0] for lp, e in zip(stored, steps, strict=True)]


@pytest.mark.parametrize(("model", "ctx"), ALL_CONTEXTS)
def test_ctc_streaming_matches_nemo(nemo_dir, heads, model, ctx):
    ref, z = reference(nemo_dir, model)
    blank = ref["tokenizer"]["blank_id"]
    detok = Detokenizer(ref["tokenizer"]["vocab"])
    state, tokens, texts = ctc_initial_state(blank), [], []
    for log_probs in _step_log_probs(nemo_dir, heads, model, ctx):
        emitted, state = ctc_greedy_step(log_probs, state, blank)
        tokens += emitted
        texts.append(detok.text(t for t, _ in tokens))
    stream = ref["streaming"][ctx]
    assert [t for t, _ in tokens] == z[f"stream.{ctx}.ctc_token_ids"].tolist()
    assert texts == stream["ctc_text_per_step"]
    assert texts[-1] == stream["ctc_text"]
    # Each token's frame is the first frame of its run in NeMo's per-frame argmax.
    argmax = z[f"stream.{ctx}.ctc_argmax_cum"]
    assert state.frames == len(argmax)
    for token, frame in tokens:
        assert argmax[frame] == token and (frame == 0 or argmax[frame - 1] != token)
    runs = [f for f in range(len(argmax)) if argmax[f] != blank and (f == 0 or argmax[f - 1] != argmax[f])]
    assert [f for _, f in tokens] == runs


def test_ctc_collapses_repeats_across_chunk_boundaries():
    blank = 3
    one_hot = np.log(np.eye(4, dtype=np.float32)[[1, 1, 3, 2, 2, 2, 3, 3, 1]] + 1e-6)  # (9, 4)
    state, out = ctc_initial_state(blank), []
    for a, b in ((0, 1), (1, 4), (4, 5), (5, 9)):  # a split inside every run
        emitted, state = ctc_greedy_step(one_hot[a:b], state, blank)
        out += emitted
    assert out == [(1, 0), (2, 3), (1, 8)]
    assert state == (1, 9)


def _scoring(heads, batched):
    """``heads`` scoring a chunk's frames together (batched) or one frame per joint call."""
    out = copy.copy(heads)
    out.batched_joint = batched
    return out


@pytest.mark.parametrize("batched", [True, False], ids=["frames-together", "frame-by-frame"])
@pytest.mark.parametrize("ctx", HYBRID_CONTEXTS)
def test_rnnt_streaming_matches_nemo(nemo_dir, heads, ctx, batched):
    ref, z = reference(nemo_dir, "hybrid_multi")
    blank = ref["tokenizer"]["blank_id"]
    detok = Detokenizer(ref["tokenizer"]["vocab"])
    rnnt = _scoring(heads["hybrid_multi"], batched)
    state, tokens, texts, counts = rnnt_initial_state(rnnt, blank), [], [], []
    for k, encoded in enumerate(step_encoded(nemo_dir, "hybrid_multi", ctx)):
        emitted, state = rnnt_greedy_step(rnnt, encoded, state, blank, max_symbols=10)
        tokens += emitted
        texts.append(detok.text(t for t, _ in tokens))
        counts.append(len(tokens))
        key = f"stream.{ctx}.step{k:03d}.rnnt_state"
        if f"{key}.label" in z:  # the carried decoder state, default look-ahead
            assert np.abs(state.predictor.h[:, 0] - z[f"{key}.pred_state_0"]).max() <= 1e-5
            assert np.abs(state.predictor.c[:, 0] - z[f"{key}.pred_state_1"]).max() <= 1e-5
            assert np.abs(state.prediction - z[f"{key}.pred_output"]).max() <= 1e-5
            assert state.label == int(z[f"{key}.label"])
            assert state.frames == int(z[f"{key}.decoded_length"])
            assert [t for t, _ in tokens] == z[f"stream.{ctx}.step{k:03d}.rnnt_token_ids_cum"].tolist()
    stream = ref["streaming"][ctx]
    assert [t for t, _ in tokens] == z[f"stream.{ctx}.rnnt_token_ids"].tolist()
    assert [f for _, f in tokens] == z[f"stream.{ctx}.rnnt_timestamps"].tolist()
    assert counts == stream["rnnt_num_tokens_per_step"]
    assert texts == stream["rnnt_text_per_step"]
    assert texts[-1] == stream["rnnt_text"]
    final = f"stream.{ctx}.rnnt_final_state"
    assert np.abs(state.prediction - z[f"{final}.pred_output"]).max() <= 1e-5
    assert state.label == int(z[f"{final}.label"]) and state.frames == int(z[f"{final}.decoded_length"])


@pytest.mark.parametrize("batched", [True, False], ids=["frames-together", "frame-by-frame"])
def test_rnnt_offline_equals_streaming(nemo_dir, heads, batched):
    """One call over all frames (NeMo's offline decode) gives the same tokens and frames as the chunks."""
    ref, z = reference(nemo_dir, "hybrid_multi")
    rnnt, blank = _scoring(heads["hybrid_multi"], batched), ref["tokenizer"]["blank_id"]
    encoded = z["offline.c70_13.encoded"][0].T  # (Te, D)
    tokens, state = rnnt_greedy_step(rnnt, encoded, rnnt_initial_state(rnnt, blank), blank, max_symbols=10)
    assert [t for t, _ in tokens] == z["offline.c70_13.rnnt_token_ids"].tolist()
    assert [f for _, f in tokens] == z["offline.c70_13.rnnt_timestamps"].tolist()
    assert state.frames == encoded.shape[0]


class _AlwaysEmits:
    """A transducer whose joint always prefers token 1 (never blank): max_symbols must cap each frame."""

    def __init__(self, batched):
        self.batched_joint = batched

    def initial_predictor_state(self, batch=1):
        return PredictorState(np.zeros((1, batch, 1), np.float32), np.zeros((1, batch, 1), np.float32))

    def predict(self, token, state):
        return np.zeros((len(token), 1), np.float32), PredictorState(state.h + 1, state.c)  # h counts tokens

    def joint(self, encoded_frame, prediction):
        assert self.batched_joint or len(encoded_frame) == 1
        return np.tile(np.array([[0.0, 5.0, 1.0]], np.float32), (len(encoded_frame), 1))  # (B, V+1), blank = 2


@pytest.mark.parametrize("batched", [True, False], ids=["frames-together", "frame-by-frame"])
def test_rnnt_max_symbols_caps_each_frame(batched):
    heads = _AlwaysEmits(batched)
    state = rnnt_initial_state(heads, blank=2)
    tokens, state = rnnt_greedy_step(heads, np.zeros((2, 4), np.float32), state, blank=2, max_symbols=3)
    assert tokens == [(1, 0), (1, 0), (1, 0), (1, 1), (1, 1), (1, 1)]
    tokens, state = rnnt_greedy_step(heads, np.zeros((1, 4), np.float32), state, blank=2, max_symbols=3)
    assert tokens == [(1, 2), (1, 2), (1, 2)]  # frames stay global across calls
    assert state.frames == 3 and state.label == 1
    assert float(state.predictor.h.max()) == 1 + 9  # <SOS> + 9 tokens fed
