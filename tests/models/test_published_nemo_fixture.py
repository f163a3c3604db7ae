"""A NeMo-written checkpoint with what the published streaming models add to the hybrid fixture
(tests/fixtures/nemo_published/README.md): 128 mels, bias-free conformer layers, a 2-layer prediction LSTM,
``<EOU>`` / ``<EOB>`` appended to the vocabulary. ouvir loads it unchanged and reproduces NeMo's offline and
streaming encoder outputs and RNNT tokens at both look-aheads; where NeMo's text spells ``<EOU>``, the
Recognizer ends the segment instead."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ouvir.engine.endpoint import EndpointConfig
from ouvir.engine.events import Final
from ouvir.engine.recognizer import Recognizer
from ouvir.models.nemo import load_nemo
from ouvir.models.parity import compare
from ouvir.models.parity_run import produce
from tests.conftest import NEMO_FIXTURES, REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")
HERE = REPO / "tests" / "fixtures" / "nemo_published"
CHECKPOINT = HERE / "published_rnnt.nemo"
EOU, EOB = 64, 65


def _reference() -> dict[str, np.ndarray]:
    with np.load(HERE / "published_rnnt_reference.npz") as z:
        return {k: z[k] for k in z.files}


def test_loads_unchanged_and_reproduces_nemo():
    loaded = load_nemo(CHECKPOINT)
    cfg = loaded.config
    assert (cfg.features.features, cfg.encoder.use_bias, cfg.rnnt.pred_rnn_layers) == (128, False, 2)
    assert cfg.vocabulary[EOU:] == ("<EOU>", "<EOB>") and cfg.decoders == ("rnnt",)
    reference = _reference()
    results = compare(reference, produce(loaded, NEMO_FIXTURES / "test_audio.wav", set(reference)), set())
    assert len(results) == 6 and [r.line() for r in results if not r.ok] == []


def test_recognizer_ends_a_segment_at_every_eou_nemo_emits():
    nemo_tokens = _reference()["stream.c70_6.rnnt_token_ids"].tolist()
    assert nemo_tokens.count(EOU) == 30
    assert "<EOU>" in json.loads((HERE / "published_rnnt_reference.json").read_text())["texts"]["c70_6"]
    segments, current = [], []
    for token in nemo_tokens:
        if token in (EOU, EOB):
            segments, current = segments + [current] * bool(current), []
        else:
            current.append(token)
    segments += [current] * bool(current)
    rec = Recognizer.open(CHECKPOINT, lookahead_ms=480, endpoint=EndpointConfig(enabled=False))
    stream = rec.create_stream()
    stream.accept_waveform(np.load(NEMO_FIXTURES / "test_audio_f32.npy"), 16000)
    stream.input_finished()
    finals = [e for e in rec.decode(stream) if isinstance(e, Final)]
    assert [[t.id for t in f.tokens] for f in finals] == segments and len(segments) == 9
    assert not any("<" in f.text for f in finals)
    assert all(f.start_s <= f.tokens[0].start_s and f.tokens[-1].start_s <= f.end_s for f in finals)
