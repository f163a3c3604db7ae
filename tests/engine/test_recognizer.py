"""Recognizer / Stream: audio in, NeMo's streaming results out, with partial / final event semantics."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ouvir.engine.errors import NonFiniteAudioError
from ouvir.engine.events import Final, Partial
from ouvir.engine.recognizer import Recognizer
from tests.conftest import REPO

from .fakes import ScriptedBackend
from .reference import ReplayBackend, head_weights, reference

RUNS = [("hybrid_multi", c, d) for c in ("c70_13", "c70_6", "c70_1", "c70_0") for d in ("rnnt", "ctc")]
RUNS.append(("ctc_conformer", "c64_7", "ctc"))


@pytest.fixture(scope="module")
def weights(nemo_dir):
    return {m: head_weights(nemo_dir / f"{m}.nemo") for m in ("hybrid_multi", "ctc_conformer")}


@pytest.fixture(scope="module")
def audio(nemo_dir):
    return np.load(nemo_dir / "test_audio_f32.npy")


def _feed(rec, stream, audio, seed=0):
    """Feed ``audio`` in random pieces (0 to 5000 samples), decoding after each; then finish."""
    rng = np.random.default_rng(seed)
    events, pos = [], 0
    while pos < len(audio):
        n = int(rng.integers(0, 5000))
        stream.accept_waveform(audio[pos : pos + n], 16000)
        pos += n
        events += rec.decode(stream)
    stream.input_finished()
    return events + list(rec.decode(stream))


def _dedup(texts):
    return [t for t, _ in itertools.groupby(texts) if t]


@pytest.mark.parametrize(("model", "ctx", "decoder"), RUNS)
def test_stream_reproduces_nemo_streaming(nemo_dir, weights, audio, model, ctx, decoder):
    """Features + scheduler + decoder, fed NeMo's encoder steps: chunks (checked inside the backend),
    tokens, frames, partial texts and the final text all equal NeMo's streaming run."""
    ref, z = reference(nemo_dir, model)
    backend = ReplayBackend(nemo_dir, model, ctx, weights[model])
    rec = Recognizer(backend, decoder)
    events = _feed(rec, rec.create_stream(), audio)
    stream_ref = ref["streaming"][ctx]
    assert backend.step == stream_ref["num_steps"]
    finals = [e for e in events if isinstance(e, Final)]
    partials = [e for e in events if isinstance(e, Partial)]
    assert len(finals) == 1 and events[-1] is finals[0]  # one segment: endpointing does not split the file
    final = finals[0]
    assert final.text == stream_ref[f"{decoder}_text"]
    assert (final.segment, final.start_s, final.end_s) == (0, 0.0, 8.0)
    assert [t.id for t in final.tokens] == z[f"stream.{ctx}.{decoder}_token_ids"].tolist()
    frame_s = 0.08 if model == "hybrid_multi" else 0.04
    assert all(t.start_s == t.frame * frame_s and t.piece == ref["tokenizer"]["vocab"][t.id] for t in final.tokens)
    if decoder == "rnnt":
        assert [t.frame for t in final.tokens] == z[f"stream.{ctx}.rnnt_timestamps"].tolist()
    assert [p.text for p in partials] == _dedup(stream_ref[f"{decoder}_text_per_step"])
    assert all(p.segment == 0 and p.start_s == 0.0 for p in partials)
    assert partials[-1].text == final.text


def test_torch_backend_matches_nemo_tokens_and_times(nemo_dir, audio):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    ref, z = reference(nemo_dir, "hybrid_multi")
    for lookahead_ms, ctx in ((1040, "c70_13"), (0, "c70_0")):
        rec = Recognizer.open(nemo_dir / "hybrid_multi.nemo", lookahead_ms=lookahead_ms)
        cfg = ref["streaming_cfg"][ctx]
        geo = rec.info.geometry
        assert (list(geo.chunk_size), list(geo.shift_size), list(geo.pre_encode_cache_size)) == (
            cfg["chunk_size"], cfg["shift_size"], cfg["pre_encode_cache_size"])
        assert geo.drop_extra_pre_encoded == cfg["drop_extra_pre_encoded"] and rec.info.lookahead_ms == lookahead_ms
        (final,) = [e for e in _feed(rec, rec.create_stream(), audio) if isinstance(e, Final)]
        assert [t.id for t in final.tokens] == z[f"stream.{ctx}.rnnt_token_ids"].tolist()
        assert [t.frame for t in final.tokens] == z[f"stream.{ctx}.rnnt_timestamps"].tolist()
    with pytest.raises(ValueError, match="no 500 ms look-ahead; it has 1040 ms"):
        Recognizer.open(nemo_dir / "hybrid_multi.nemo", lookahead_ms=500)
    with pytest.raises(ValueError, match="decoder 'rnnt' is not in this model"):
        Recognizer.open(nemo_dir / "ctc_conformer.nemo", decoder="rnnt")


def test_resampled_input_and_input_checks():
    rec = Recognizer(ScriptedBackend({3: [1]}))
    stream = rec.create_stream()
    tone = np.sin(np.arange(48000) * 0.05).astype(np.float32) * 0.5  # 1 s at 48 kHz
    for block in np.split(tone, 10):
        stream.accept_waveform(block, 48000)
    with pytest.raises(ValueError, match="from 48000 Hz to 16000 Hz"):
        stream.accept_waveform(tone[:10], 16000)
    stream.input_finished()
    assert stream.samples == 16000  # exactly 1 s at the model rate once the resampler's tail is in
    (final,) = [e for e in rec.decode(stream) if isinstance(e, Final)]
    assert final.text == "he" and final.end_s == 1.0
    with pytest.raises(RuntimeError, match="after input_finished"):
        stream.accept_waveform(tone, 48000)
    fresh = rec.create_stream()
    with pytest.raises(TypeError, match="int16"):
        fresh.accept_waveform(np.zeros(10, np.int16), 16000)
    fresh.accept_waveform(np.zeros(10, np.float32), 16000)
    with pytest.raises(NonFiniteAudioError, match="frame 15"):
        fresh.accept_waveform(np.array([0, 0, 0, 0, 0, np.nan], np.float32), 16000)
    with pytest.raises(ValueError, match="from 16000 Hz to 44100 Hz"):
        fresh.accept_waveform(np.zeros(10, np.float32), 44100)


def test_reset_ends_the_segment_and_finals_never_change():
    rec = Recognizer(ScriptedBackend({2: [1], 3: [2], 8: [5]}))
    stream = rec.create_stream()
    stream.accept_waveform(np.zeros(4800, np.float32), 16000)  # 0.3 s: frames 0-3 decoded
    events = list(rec.decode(stream))
    assert [(type(e), e.text, e.segment) for e in events] == [(Partial, "hello", 0)]
    final = rec.reset(stream)
    assert (final.text, final.segment, final.start_s, final.end_s) == ("hello", 0, 0.0, 0.32)
    assert rec.reset(stream) is None  # an empty segment has no Final and keeps its number
    stream.accept_waveform(np.zeros(11200, np.float32), 16000)
    stream.input_finished()
    events = list(rec.decode(stream))
    assert [(type(e), e.text, e.segment, e.start_s) for e in events] == [(Partial, "a", 1, 0.32), (Final, "a", 1, 0.32)]
    assert final.text == "hello" and [t.frame for t in final.tokens] == [2, 3]  # the earlier Final is untouched
    with pytest.raises(AttributeError):
        final.text = "changed"


def test_streams_sharing_a_recognizer_keep_their_own_state():
    script = {f: [1 + f % 4] for f in range(1, 60, 3)}
    rec = Recognizer(ScriptedBackend(script))
    alone = _feed(rec, rec.create_stream(), np.zeros(80000, np.float32), seed=1)
    a, b = rec.create_stream(), rec.create_stream()
    got_a, got_b = [], []
    for i in range(0, 80000, 1000):  # interleaved, different pace
        a.accept_waveform(np.zeros(1000, np.float32), 16000)
        got_a += rec.decode(a)
        if i % 2000 == 0:
            b.accept_waveform(np.zeros(2000, np.float32), 16000)
            got_b += rec.decode(b)
    for s, got in ((a, got_a), (b, got_b)):
        s.input_finished()
        got += rec.decode(s)
    finals = [[e for e in got if isinstance(e, Final)] for got in (alone, got_a, got_b)]
    assert finals[0] == finals[1] == finals[2] and len(finals[0]) >= 1


def test_engine_runs_without_torch(nemo_dir, weights, tmp_path):
    """features + scheduler + decoders + recognizer (+ the loop and CLI modules) import and run with torch
    blocked; the heads' weights come from an npz written here."""
    np.savez(tmp_path / "heads.npz", **weights["hybrid_multi"])
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None
        import numpy as np
        import ouvir.engine.cli, ouvir.engine.loop
        from ouvir.engine.recognizer import Recognizer
        from ouvir.engine.events import Final
        from tests.engine.reference import ReplayBackend
        from pathlib import Path
        weights = dict(np.load({str(tmp_path / "heads.npz")!r}))
        audio = np.load(Path({str(nemo_dir)!r}) / "test_audio_f32.npy")
        for decoder in ("rnnt", "ctc"):
            rec = Recognizer(ReplayBackend(Path({str(nemo_dir)!r}), "hybrid_multi", "c70_6", weights), decoder)
            stream = rec.create_stream()
            events = []
            for i in range(0, len(audio), 3200):
                stream.accept_waveform(audio[i:i + 3200], 16000)
                events += rec.decode(stream)
            stream.input_finished()
            events += rec.decode(stream)
            print(decoder, [e.text for e in events if isinstance(e, Final)])
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules if sys.modules[m] is not None)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    text = reference(nemo_dir, "hybrid_multi")[0]["streaming"]["c70_6"]["rnnt_text"]
    assert out.stdout.splitlines() == [f"rnnt {[text]}", f"ctc {[text]}"]
