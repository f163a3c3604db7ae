"""End-of-utterance tokens (parakeet_realtime_eou's ``<EOU>`` / ``<EOB>``): the model's own endpoint. The segment
ends at the frame the token is emitted on, the token is neither text nor a token of any Final, and the next
segment starts there (tokens emitted after it on the same frame belong to the next one)."""

from __future__ import annotations

import dataclasses

import numpy as np

from ouvir.engine.events import Final, Partial
from ouvir.engine.recognizer import Recognizer
from ouvir.engine.tokens import Detokenizer

from .fakes import VOCABULARY, ScriptedBackend

EOU, EOB = len(VOCABULARY), len(VOCABULARY) + 1  # appended to the BPE pieces, as in the published tokenizer


def _eou_backend(script: dict[int, list[int]]) -> ScriptedBackend:
    backend = ScriptedBackend(script)
    backend.info = dataclasses.replace(backend.info, vocabulary=(*VOCABULARY, "<EOU>", "<EOB>"))
    backend.blank = len(backend.info.vocabulary)
    return backend


def test_end_of_utterance_tokens_are_endpoints_not_text():
    assert Detokenizer((*VOCABULARY, "<EOU>", "<EOB>")).text([1, 2, EOU, 5, EOB]) == "hello a"
    rec = Recognizer(_eou_backend({2: [1], 3: [2, EOU], 6: [EOU], 9: [3, 4], 12: [EOB], 14: [5]}))
    stream = rec.create_stream()
    stream.accept_waveform(np.zeros(24000, np.float32), 16000)  # 1.5 s
    stream.input_finished()
    events = list(rec.decode(stream))
    finals = [e for e in events if isinstance(e, Final)]
    assert [(f.text, f.segment, f.start_s, f.end_s) for f in finals] == [
        ("hello", 0, 0.0, 0.24),  # ends where the <EOU> is emitted (frame 3)
        ("world", 1, 0.48, 0.96),  # the <EOU> alone at frame 6 ended an empty segment: no Final, same number
        ("a", 2, 0.96, 1.5),  # from the <EOB>'s frame; the last one ends with the input
    ]
    assert [[t.id for t in f.tokens] for f in finals] == [[1, 2], [3, 4], [5]]
    partials = [e for e in events if isinstance(e, Partial)]
    assert all("<" not in e.text for e in partials) and partials[-1].text == "a"
