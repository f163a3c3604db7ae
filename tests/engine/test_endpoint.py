"""Endpoint rules (pure function) and how the recognizer applies them to segments."""

from __future__ import annotations

import numpy as np
import pytest

from ouvir.engine.endpoint import EndpointConfig, SegmentProgress, is_endpoint
from ouvir.engine.events import Final, Partial
from ouvir.engine.recognizer import Recognizer

from .fakes import ScriptedBackend
from .reference import reference

CFG = EndpointConfig()  # 1.2 s after speech, 2.4 s without, 20 s at most


@pytest.mark.parametrize(
    ("length", "silence", "speech", "expected"),
    [
        (3.0, 1.19, True, False),
        (3.0, 1.2, True, True),  # rule 1: trailing silence after speech
        (3.0, 2.39, False, False),  # without speech the 1.2 s rule does not apply...
        (3.0, 2.4, False, True),  # ...rule 2 does
        (19.99, 0.0, True, False),
        (20.0, 0.0, True, True),  # rule 3: maximum length, even mid-speech
        (20.0, 0.0, False, True),
    ],
)
def test_rules(length, silence, speech, expected):
    assert is_endpoint(CFG, SegmentProgress(length, silence, speech)) is expected


def test_disabled_never_ends_a_segment():
    assert not is_endpoint(EndpointConfig(enabled=False), SegmentProgress(1e6, 1e6, True))


def test_fixture_audio_has_no_token_gap_long_enough_to_split_it(nemo_dir):
    """The transcribe bar needs the whole fixture file as one segment: its longest run of blank frames
    after a token stays well below 1.2 s for every look-ahead and decoder."""
    for model, frame_s in (("hybrid_multi", 0.08), ("ctc_conformer", 0.04)):
        ref, z = reference(nemo_dir, model)
        blank = ref["tokenizer"]["blank_id"]
        for ctx in ref["streaming"]:
            argmax = z[f"stream.{ctx}.ctc_argmax_cum"]
            frame_lists = [np.flatnonzero(argmax != blank)]
            if f"stream.{ctx}.rnnt_timestamps" in z:
                frame_lists.append(z[f"stream.{ctx}.rnnt_timestamps"])
            for frames in frame_lists:
                gaps = np.diff(np.concatenate([frames, [len(argmax)]])) - 1  # blank frames after each token
                assert gaps.max() * frame_s < CFG.silence_after_speech_s
                assert frames[0] * frame_s < CFG.silence_without_speech_s


def _events(script, seconds, endpoint=CFG, decoder="rnnt"):
    rec = Recognizer(ScriptedBackend(script), decoder, endpoint)
    stream = rec.create_stream()
    stream.accept_waveform(np.zeros(int(seconds * 16000), np.float32), 16000)
    events = list(rec.decode(stream))
    stream.input_finished()
    return events + list(rec.decode(stream))


@pytest.mark.parametrize("decoder", ["rnnt", "ctc"])
def test_silence_after_speech_ends_the_segment(decoder):
    # "hello" at frames 2-3, then 15 blank frames (1.2 s) -> endpoint at frame 19 (1.52 s); "world" at 30-31.
    events = _events({2: [1], 3: [2], 30: [3], 31: [4]}, seconds=4.0, decoder=decoder)
    finals = [e for e in events if isinstance(e, Final)]
    assert [(f.text, f.segment) for f in finals] == [("hello", 0), ("world", 1)]
    first, second = finals
    assert first.start_s == 0.0 and first.end_s >= 4 * 0.08 + 1.2 and first.end_s <= 4 * 0.08 + 1.2 + 0.16
    assert second.start_s == pytest.approx(first.end_s)  # segments tile the stream
    assert 32 * 0.08 + 1.2 <= second.end_s <= 32 * 0.08 + 1.2 + 0.16  # an endpoint too, before the end (4 s)
    assert [(t.piece, t.frame, t.start_s) for t in second.tokens] == [("▁wor", 30, 30 * 0.08), ("ld", 31, 31 * 0.08)]
    partials = [e for e in events if isinstance(e, Partial)]
    assert [(p.text, p.segment) for p in partials] == [("hello", 0), ("world", 1)]  # 2 frames per chunk
    assert all(p.start_s == (0.0 if p.segment == 0 else second.start_s) for p in partials)


def test_long_silence_without_speech_restarts_the_segment_silently():
    events = _events({40: [5]}, seconds=4.0)  # 3.2 s of silence, then "a"
    finals = [e for e in events if isinstance(e, Final)]
    assert len(finals) == 1
    final = finals[0]
    assert (final.text, final.segment) == ("a", 0)  # the empty segment produced nothing and used no number
    assert 2.4 <= final.start_s <= 2.4 + 0.16  # it starts where the silent one was cut


def test_maximum_length_splits_continuous_speech():
    script = {f: [5 + f % 2] for f in range(0, 400, 4)}  # a token every 4 frames (0.32 s) for 32 s
    events = _events(script, seconds=32.0, endpoint=EndpointConfig(max_segment_s=10.0))
    finals = [e for e in events if isinstance(e, Final)]
    assert [f.segment for f in finals] == [0, 1, 2, 3]
    assert [round(f.end_s - f.start_s) for f in finals[:3]] == [10, 10, 10]
    tokens = [t for f in finals for t in f.tokens]
    assert [t.frame for t in tokens] == sorted(script)  # nothing lost or repeated at the cuts
