"""RNNT beam search: beam 1 is greedy (one token per frame) on NeMo's recorded steps, the n-gram's pull decides
near ties, and through the Recognizer partials follow the best hypothesis while Finals never change."""

from __future__ import annotations

import numpy as np
import pytest

from ouvir.engine.backends.base import PredictorState
from ouvir.engine.beam import BeamSearch, beam_initial_state, rnnt_beam_step
from ouvir.engine.decoders import rnnt_greedy_step, rnnt_initial_state
from ouvir.engine.events import Final, Partial
from ouvir.engine.ngram import build
from ouvir.engine.recognizer import Recognizer

from .fakes import ScriptedBackend
from .reference import NumpyHeads, head_weights, reference, step_encoded


@pytest.mark.parametrize("ctx", ["c70_13", "c70_0"])
def test_beam_of_one_is_greedy_with_one_symbol_per_frame(nemo_dir, ctx):
    heads = NumpyHeads(head_weights(nemo_dir / "hybrid_multi.nemo"))
    blank = reference(nemo_dir, "hybrid_multi")[0]["tokenizer"]["blank_id"]
    greedy, beam, tokens = rnnt_initial_state(heads, blank), beam_initial_state(heads, blank), []
    steps = step_encoded(nemo_dir, "hybrid_multi", ctx)
    assert len(steps) >= 2
    for encoded in steps:
        emitted, greedy = rnnt_greedy_step(heads, encoded, greedy, blank, max_symbols=1)
        tokens += emitted
        beam = rnnt_beam_step(heads, encoded, beam, blank, BeamSearch(beam=1))
        assert list(zip(beam.best.tokens, beam.best.frames, strict=True)) == tokens
        assert beam.frames == greedy.frames
    assert tokens  # the fixture says something


class TieHeads:
    """Frame 0 says token 0 or 1 almost equally (0 slightly ahead); every later frame says blank."""

    batched_joint = True

    def initial_predictor_state(self, batch: int = 1) -> PredictorState:
        return PredictorState(np.zeros((1, batch, 1), np.float32), np.zeros((1, batch, 1), np.float32))

    def predict(self, token, state):
        h = state.h + 1
        return h[0].copy(), PredictorState(h, state.c)  # (B, 1): tokens fed so far (<SOS> included)

    def joint(self, encoded_frame, prediction):
        logits = np.full((len(encoded_frame), 4), -10.0, np.float32)  # V = 3, blank = 3
        first = (encoded_frame[:, 0] == 0) & (prediction[:, 0] == 1)
        logits[first, 0], logits[first, 1] = 2.0, 1.9
        logits[~first, 3] = 5.0
        return logits


def test_the_lm_decides_a_near_tie():
    heads, encoded = TieHeads(), np.arange(3, dtype=np.float32)[:, None]  # (T, 1)
    plain = rnnt_beam_step(heads, encoded, beam_initial_state(heads, 3), 3, BeamSearch(beam=2))
    assert plain.best.tokens == (0,) and len(plain.hyps) == 2 and plain.hyps[1].tokens == (1,)
    lm = build([[1, 2]] * 5 + [[0, 2]], vocab=3, order=2)  # sentences start with 1 far more often
    fused = rnnt_beam_step(heads, encoded, beam_initial_state(heads, 3), 3, BeamSearch(beam=2, lm_weight=0.5), lm)
    assert fused.best.tokens == (1,) and fused.best.frames == (0,)
    assert fused.best.context == (3, 1)


def test_recognizer_partials_follow_the_best_and_segments_keep_one_hypothesis():
    """The scripted model in the Recognizer: each segment's Final is what greedy decoding gives, and once it is
    given the beam holds one hypothesis with no tokens of the old segment."""
    script = {3: [1], 4: [2], 30: [3], 31: [4]}  # "hello" early, "world" after a long pause (an endpoint between)
    audio = np.zeros(16000 * 6, np.float32)
    texts = {}
    for name, search in (("greedy", None), ("beam", BeamSearch(beam=3))):
        rec = Recognizer(OneRowJoint(script), search=search)
        stream = rec.create_stream()
        events = []
        for block in np.split(audio, 12):
            stream.accept_waveform(block, 16000)
            events += rec.decode(stream)
        stream.input_finished()
        events += rec.decode(stream)
        texts[name] = [e.text for e in events if isinstance(e, Final)]
        assert [e.segment for e in events if isinstance(e, Final)] == list(range(len(texts[name])))
        assert all(isinstance(e, Partial | Final) for e in events)
        if search is not None:
            assert stream.decoder_state.best.tokens == ()  # the last Final took them
    assert texts["beam"] == texts["greedy"] == ["hello", "world"]


class OneRowJoint(ScriptedBackend):
    """The scripted backend with a joint that scores every row it is given (beam search sends one per hypothesis),
    one token per frame."""

    def __init__(self, script):
        super().__init__(script)
        self.info = type(self.info)(self.info.features, self.info.vocabulary, self.info.geometry, ("rnnt",), 1)

    def joint(self, encoded_frame, prediction):
        return np.concatenate([super(OneRowJoint, self).joint(encoded_frame[i : i + 1], prediction[i : i + 1])
                               for i in range(len(encoded_frame))])

    def predict(self, token, state):
        h = state.h + 1
        return h[0].copy(), PredictorState(h, state.c)


def test_options_are_checked():
    backend = OneRowJoint({})
    with pytest.raises(ValueError, match="beam must be >= 1"):
        BeamSearch(beam=0)
    with pytest.raises(ValueError, match="give a BeamSearch too"):
        Recognizer(backend, lm=build([[1, 2]], vocab=7, order=2))
    with pytest.raises(ValueError, match="the n-gram LM has 3 tokens, the model 7"):
        Recognizer(backend, search=BeamSearch(), lm=build([[1, 2]], vocab=3, order=2))
    with pytest.raises(ValueError, match="needs the rnnt decoder"):
        Recognizer(ScriptedBackend({}), decoder="ctc", search=BeamSearch())
