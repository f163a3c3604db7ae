"""Heads and greedy decoding against NeMo's fixture, fed with the fixture's stored encoder outputs.

Offline and streaming (every look-ahead, chunks split as NeMo's steps produced them): tokens, timestamps,
carried RNNT state after every step, per-step texts. Plus synthetic cases: repeats across chunk
boundaries, max_symbols, padded batches.
"""

from __future__ import annotations

import functools
import itertools
import json

import numpy as np
import pytest
import torch

from ouvir.models.config import RNNTConfig
from ouvir.models.decoding import (
    CTCState,
    ctc_greedy,
    ctc_initial_state,
    rnnt_greedy,
    rnnt_initial_state,
)
from ouvir.models.heads import RNNTJoint, RNNTPredictor, predict
from ouvir.models.nemo import load_nemo
from tests.conftest import FIXTURE_MODELS, NEMO_FIXTURES

STATE_FIELDS = {"pred_state_0": "h", "pred_state_1": "c", "pred_output": "pred_output", "label": "label",
                "decoded_length": "decoded_length"}


@functools.cache
def _load(name: str):
    loaded = load_nemo(NEMO_FIXTURES / f"{name}.nemo")
    with np.load(NEMO_FIXTURES / f"{name}_reference.npz") as z:
        arrays = {k: z[k] for k in z.files}
    return loaded, arrays, json.loads((NEMO_FIXTURES / f"{name}_reference.json").read_text())


@pytest.fixture(params=FIXTURE_MODELS)
def fixture(request, nemo_dir):
    return _load(request.param)


@pytest.fixture
def hybrid(nemo_dir):
    """The fixture with an RNNT head."""
    return _load("hybrid_multi")


def _contexts(ref):
    return [f"c{a}_{b}" for a, b in ref["att_context_size_all"]]


def _chunks(z, ctx):
    """The stored streaming encoder output, split into NeMo's steps: [(k, encoded (1, D, t))]."""
    enc = torch.from_numpy(z[f"stream.{ctx}.encoded_concat"])
    bounds = np.cumsum([0, *z[f"stream.{ctx}.encoded_len_per_step"].tolist()])
    return [(k, enc[:, :, a:b]) for k, (a, b) in enumerate(itertools.pairwise(bounds))]


def _assert_rnnt_state(state, z, prefix):
    for key, field in STATE_FIELDS.items():
        ours = getattr(state, field)
        ours = ours[:, 0] if field in ("h", "c") else ours if field == "pred_output" else ours[0]
        np.testing.assert_allclose(ours.numpy(), z[prefix + key], rtol=0, atol=1e-6, err_msg=prefix + key)


@torch.no_grad()
def test_ctc_offline(fixture):
    loaded, z, ref = fixture
    head, blank, tok = loaded.model.ctc, loaded.config.blank_id, loaded.tokenizer
    for ctx in _contexts(ref):
        encoded = torch.from_numpy(z[f"offline.{ctx}.encoded"])  # (1, D, T)
        log_probs = head(encoded)
        np.testing.assert_allclose(log_probs.numpy(), z[f"offline.{ctx}.ctc_log_probs"], rtol=0, atol=1e-5)
        assert log_probs.argmax(-1)[0].tolist() == z[f"offline.{ctx}.ctc_argmax"].tolist()
        hyp, state = ctc_greedy(log_probs, torch.tensor([encoded.shape[-1]]), ctc_initial_state(1, blank))
        assert hyp.tokens[0] == z[f"offline.{ctx}.ctc_token_ids"].tolist() == ref["offline"][ctx]["ctc_token_ids"]
        assert tok.decode(hyp.tokens[0]) == ref["offline"][ctx]["ctc_text"] == ref["transcribe_api"]["ctc"]
        assert state.decoded_length.tolist() == [encoded.shape[-1]]


@torch.no_grad()
def test_ctc_streaming_every_step(fixture):
    loaded, z, ref = fixture
    head, tok = loaded.model.ctc, loaded.tokenizer
    for ctx in _contexts(ref):
        state, tokens, argmax, texts = ctc_initial_state(1, loaded.config.blank_id), [], [], []
        for k, encoded in _chunks(z, ctx):
            log_probs = head(encoded)  # (1, t, V+1)
            if f"stream.{ctx}.step{k:03d}.ctc_log_probs" in z:
                np.testing.assert_allclose(log_probs.numpy(), z[f"stream.{ctx}.step{k:03d}.ctc_log_probs"], atol=1e-5)
            hyp, state = ctc_greedy(log_probs, torch.tensor([encoded.shape[-1]]), state)
            tokens += hyp.tokens[0]
            argmax += log_probs.argmax(-1)[0].tolist()
            texts.append(tok.decode(tokens))
        assert argmax == z[f"stream.{ctx}.ctc_argmax_cum"].tolist()
        assert tokens == z[f"stream.{ctx}.ctc_token_ids"].tolist()
        assert texts == ref["streaming"][ctx]["ctc_text_per_step"]


def test_ctc_collapses_repeats_across_chunks():
    a, b, blank = 1, 2, 3
    frames = [a, a, a, blank, a, b, b, blank, blank, b]
    log_probs = torch.nn.functional.one_hot(torch.tensor(frames), 4).float().log()[None]  # (1, 10, 4)
    whole, _ = ctc_greedy(log_probs, torch.tensor([10]), ctc_initial_state(1, blank))
    assert whole.tokens == [[a, a, b, b]] and whole.timestamps == [[0, 4, 5, 9]]
    state, tokens, times = ctc_initial_state(1, blank), [], []
    for lo, hi in ((0, 1), (1, 3), (3, 4), (4, 6), (6, 10)):  # "a | a a | blank | a b | b ...": a spans chunks
        hyp, state = ctc_greedy(log_probs[:, lo:hi], torch.tensor([hi - lo]), state)
        tokens += hyp.tokens[0]
        times += hyp.timestamps[0]
    assert (tokens, times) == ([a, a, b, b], [0, 4, 5, 9])
    assert state.prev_label.tolist() == [b] and state.decoded_length.tolist() == [10]


def test_ctc_padded_batch_keeps_state_of_short_rows():
    a, b, blank = 1, 2, 3
    log_probs = torch.nn.functional.one_hot(torch.tensor([[a, b, b], [b, a, a]]), 4).float().log()  # (2, 3, 4)
    hyp, state = ctc_greedy(log_probs, torch.tensor([3, 1]), CTCState(torch.tensor([a, blank]), torch.tensor([5, 7])))
    assert hyp.tokens == [[b], [b]] and hyp.timestamps == [[6], [7]]
    assert state.prev_label.tolist() == [b, b] and state.decoded_length.tolist() == [8, 8]
    hyp, state = ctc_greedy(log_probs[:, :0], torch.tensor([0, 0]), state)
    assert hyp.tokens == [[], []] and state.prev_label.tolist() == [b, b]


@torch.no_grad()
def test_rnnt_offline(hybrid):
    loaded, z, ref = hybrid
    m = loaded.model
    for ctx in _contexts(ref):
        encoded = torch.from_numpy(z[f"offline.{ctx}.encoded"])
        state0 = rnnt_initial_state(m.predictor, m.joint, 1)
        hyp, state = rnnt_greedy(m.predictor, m.joint, encoded, torch.tensor([encoded.shape[-1]]), state0,
                                 loaded.config.rnnt.max_symbols)
        assert hyp.tokens[0] == z[f"offline.{ctx}.rnnt_token_ids"].tolist()
        assert hyp.timestamps[0] == z[f"offline.{ctx}.rnnt_timestamps"].tolist()
        assert loaded.tokenizer.decode(hyp.tokens[0]) == ref["offline"][ctx]["rnnt_text"]
        _assert_rnnt_state(state, z, f"offline.{ctx}.rnnt_final_state.")


@torch.no_grad()
def test_rnnt_streaming_every_step(hybrid):
    loaded, z, ref = hybrid
    m = loaded.model
    for ctx in _contexts(ref):
        state, tokens, times, counts, texts = rnnt_initial_state(m.predictor, m.joint, 1), [], [], [], []
        for k, encoded in _chunks(z, ctx):
            step = f"stream.{ctx}.step{k:03d}."
            if step + "encoded" in z:  # the default look-ahead stores every step's own output
                np.testing.assert_array_equal(encoded.numpy(), z[step + "encoded"])
            hyp, state = rnnt_greedy(m.predictor, m.joint, encoded, torch.tensor([encoded.shape[-1]]), state,
                                     loaded.config.rnnt.max_symbols)
            tokens += hyp.tokens[0]
            times += hyp.timestamps[0]
            counts.append(len(tokens))
            texts.append(loaded.tokenizer.decode(tokens))
            if step + "rnnt_token_ids_cum" in z:
                assert tokens == z[step + "rnnt_token_ids_cum"].tolist()
                _assert_rnnt_state(state, z, step + "rnnt_state.")
        assert counts == z[f"stream.{ctx}.rnnt_num_tokens_per_step"].tolist()
        assert tokens == z[f"stream.{ctx}.rnnt_token_ids"].tolist()
        assert times == z[f"stream.{ctx}.rnnt_timestamps"].tolist()
        assert texts == ref["streaming"][ctx]["rnnt_text_per_step"]
        _assert_rnnt_state(state, z, f"stream.{ctx}.rnnt_final_state.")
    assert any(f"stream.{c}.step000.rnnt_state.label" in z for c in _contexts(ref))


def _tiny_rnnt(seed: int = 0) -> tuple[RNNTPredictor, RNNTJoint]:
    torch.manual_seed(seed)
    cfg = RNNTConfig(vocab_size=5, pred_hidden=6, pred_rnn_layers=2, joint_hidden=7, encoder_hidden=4)
    return RNNTPredictor(cfg).eval(), RNNTJoint(cfg).eval()


@torch.no_grad()
def test_predictor_sos_is_zero_embedding_and_predict_projects():
    pred, joint = _tiny_rnnt()
    assert torch.count_nonzero(pred.embed.weight[5]) == 0  # blank row = padding
    state = rnnt_initial_state(pred, joint, 2)
    g, (h, c) = pred.lstm(torch.zeros(1, 2, 6))  # zero input, zero state
    torch.testing.assert_close(state.pred_output, joint.pred(g[0]))
    torch.testing.assert_close((state.h, state.c), (h, c))
    assert state.label.tolist() == [5, 5] and state.decoded_length.tolist() == [0, 0]
    out, nxt = predict(pred, joint, torch.tensor([2, 3]), pred.initial_state(2))
    assert out.shape == (2, 7) and nxt.h.shape == (2, 2, 6)
    logits = joint(joint.joint_enc(torch.randn(2, 3, 4))[:, :, None], out[:, None, None])  # (2, 3, 1, 6)
    assert logits.shape == (2, 3, 1, 6)


@torch.no_grad()
def test_rnnt_max_symbols_caps_each_frame():
    pred, joint = _tiny_rnnt()
    joint.out.bias.data[:] = torch.tensor([0.0, 0.0, 100.0, 0.0, 0.0, -100.0])  # always token 2, never blank
    encoded = torch.randn(1, 4, 3)
    hyp, state = rnnt_greedy(pred, joint, encoded, torch.tensor([3]), rnnt_initial_state(pred, joint, 1), 4)
    assert hyp.tokens == [[2] * 12] and hyp.timestamps == [[0] * 4 + [1] * 4 + [2] * 4]
    assert state.label.tolist() == [2] and state.decoded_length.tolist() == [3]


@torch.no_grad()
def test_rnnt_padded_batch_equals_single_rows():
    pred, joint = _tiny_rnnt(seed=4)
    joint.out.bias.data[5] = 1.0  # blank often enough to mix emitting and silent frames
    encoded = torch.randn(2, 4, 9, generator=torch.Generator().manual_seed(0)) * 3
    lengths = torch.tensor([9, 5])
    batch, bstate = rnnt_greedy(pred, joint, encoded, lengths, rnnt_initial_state(pred, joint, 2), 3)
    assert 0 < len(batch.tokens[0]) < 3 * 9 and 0 < len(batch.tokens[1]) < 3 * 5
    for b in range(2):
        one, ostate = rnnt_greedy(pred, joint, encoded[b : b + 1, :, : lengths[b]], lengths[b : b + 1],
                                  rnnt_initial_state(pred, joint, 1), 3)
        assert one.tokens[0] == batch.tokens[b] and one.timestamps[0] == batch.timestamps[b]
        torch.testing.assert_close(ostate.h[:, 0], bstate.h[:, b])
        torch.testing.assert_close(ostate.pred_output[0], bstate.pred_output[b])
        assert ostate.label[0] == bstate.label[b] and ostate.decoded_length[0] == bstate.decoded_length[b]


def test_tokenizer_matches_fixture(fixture):
    loaded, _, ref = fixture
    tok = loaded.tokenizer
    assert list(tok.pieces) == ref["tokenizer"]["vocab"] == list(loaded.config.vocabulary)
    assert loaded.config.blank_id == ref["tokenizer"]["blank_id"]
    assert tok.encode(ref["tokenizer"]["example_text"]) == ref["tokenizer"]["example_ids"]
    assert tok.decode(ref["tokenizer"]["example_ids"]) == ref["tokenizer"]["example_text"]
