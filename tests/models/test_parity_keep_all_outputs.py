"""``keep_all_outputs`` as NeMo's infer script sets it: ``streaming_buffer.is_buffer_empty()`` after the step was
cut. When the columns left after a step are fewer than the next one needs (the subsampling factor), NeMo's
buffer stops there and no step had the flag; at the fixture's own length the last step reaches the end and has
it. tests/fixtures/nemo_edge/ holds NeMo's own run at such a length, once as the infer script runs and once
with the flag on every step: identical outputs (a chunked_limited step yields at most ``valid_out_len`` frames,
so the flag's trim never cuts anything), and ouvir matches it group by group."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from ouvir.models.nemo import load_nemo
from ouvir.models.parity import compare
from ouvir.models.parity_run import produce
from tests.conftest import NEMO_FIXTURES, REPO

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CONTEXTS = ("c70_13", "c70_6", "c70_1", "c70_0")
EDGE_SAMPLES = 124_960  # 782 feature columns: every look-ahead's last step leaves 5 (< 8) unread
EDGE_REFERENCE = REPO / "tests" / "fixtures" / "nemo_edge" / "edge_reference.npz"


def _flags(audio) -> dict[str, tuple[list[bool], list[int], int]]:
    loaded = load_nemo(NEMO_FIXTURES / "hybrid_multi.nemo")
    out = produce(loaded, audio, {f"stream.{c}.encoded_concat" for c in CONTEXTS})
    columns = int(out["stream.streams_length"][0])
    return {c: (out[f"stream.{c}.keep_all_outputs_per_step"].tolist(),
                out[f"stream.{c}.buffer_idx_after_per_step"].tolist(), columns) for c in CONTEXTS}


def test_keep_all_outputs_is_set_only_when_the_buffer_is_emptied(tmp_path):
    with np.load(NEMO_FIXTURES / "hybrid_multi_reference.npz") as z:
        for c, (flags, _, _) in _flags(NEMO_FIXTURES / "test_audio.wav").items():
            assert flags == z[f"stream.{c}.keep_all_outputs_per_step"].tolist()  # NeMo's: the last step only
            assert flags[-1] and not any(flags[:-1])
    for c, (flags, idx_after, columns) in _flags(_edge_audio(tmp_path)).items():
        assert columns == 782 and 0 < columns - idx_after[-1] < 8, c
        assert not any(flags), c


def _edge_audio(tmp_path):
    edge = tmp_path / "edge.wav"
    audio, rate = sf.read(NEMO_FIXTURES / "test_audio.wav", dtype="int16")
    sf.write(edge, audio[:EDGE_SAMPLES], rate, subtype="PCM_16")
    return edge


def test_nemo_written_edge_reference(tmp_path):
    with np.load(EDGE_REFERENCE) as z:
        ref = {k: z[k] for k in z.files}
    for c in CONTEXTS:  # NeMo itself: the flag on every step changes no output
        assert not ref[f"stream.{c}.keep_all_outputs_per_step"].any()
        for key in ("encoded_concat", "rnnt_token_ids", "ctc_token_ids"):
            np.testing.assert_array_equal(ref[f"stream_keep_all.{c}.{key}"], ref[f"stream.{c}.{key}"])
    nemo_run = {k: v for k, v in ref.items() if k.startswith("stream.")}
    produced = produce(load_nemo(NEMO_FIXTURES / "hybrid_multi.nemo"), _edge_audio(tmp_path), set(nemo_run))
    results = compare(nemo_run, produced, set())
    assert len(results) == 4 * 6 and [r.line() for r in results if not r.ok] == []
