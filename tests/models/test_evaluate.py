"""The WER tool: streaming through the engine and offline through torch, on a one-utterance manifest whose
reference is NeMo's own transcript of the fixture audio."""

from __future__ import annotations

import json
import shutil

import pytest

from ouvir.models.train.evaluate import breakdown, main
from ouvir.models.train.wer import word_error_rate

pytest.importorskip("torch")


def _streaming_and_offline(nemo_dir, folder, ctx, lookahead_ms, *options):
    """Evaluate the fixture model on its audio, transcribed as NeMo's streaming text at ``ctx``, streaming and
    offline: (NeMo's streaming text, NeMo's offline text, the report's scores)."""
    ref = json.loads((nemo_dir / "hybrid_multi_reference.json").read_text())
    streaming, offline = ref["streaming"][ctx]["rnnt_text"], ref["offline"][ctx]["rnnt_text"]
    shutil.copy(nemo_dir / "test_audio.wav", folder / "a.wav")
    (folder / "test.jsonl").write_text(json.dumps({"audio_filepath": "a.wav", "duration": 8.0, "text": streaming})
                                       + "\n")
    report = folder / "report.json"
    assert main(["--model", str(nemo_dir / "hybrid_multi.nemo"), "--data", str(folder), "--lookahead-ms",
                 str(lookahead_ms), "--offline", "--out", str(report), *options]) == 0
    return streaming, offline, json.loads(report.read_text())["scores"]


def test_streaming_and_offline_wer_against_nemos_transcripts(nemo_dir, tmp_path, capsys):
    streaming, offline, scores = _streaming_and_offline(nemo_dir, tmp_path, "c70_0", 0)
    assert [s["mode"] for s in scores] == ["streaming", "offline"]
    assert scores[0]["hypotheses"] == [streaming] and scores[0]["wer"] == 0.0
    assert scores[1]["hypotheses"] == [offline]
    assert scores[1]["wer"] == word_error_rate([streaming], [offline])
    assert "WER   0.00 %" in capsys.readouterr().out
    assert all("breakdown" not in s for s in scores)  # the manifest names no synthesizer or voice


def test_breakdown_by_synthesizer_and_voice(nemo_dir, tmp_path, capsys):
    ref = json.loads((nemo_dir / "hybrid_multi_reference.json").read_text())
    streaming = ref["streaming"]["c70_0"]["rnnt_text"]
    shutil.copy(nemo_dir / "test_audio.wav", tmp_path / "a.wav")
    rows = [{"audio_filepath": "a.wav", "duration": 8.0, "text": text, "engine": engine, "voice": voice}
            for text, engine, voice in ((streaming, "espeak-ng", "espeak-ng:en-us+m7"), ("no such words here", "flite",
                                        "flite:rms"))]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = tmp_path / "report.json"
    assert main(["--model", str(nemo_dir / "hybrid_multi.nemo"), "--data", str(tmp_path), "--lookahead-ms", "0",
                 "--out", str(report)]) == 0
    (score,) = json.loads(report.read_text())["scores"]
    wrong = round(word_error_rate(["no such words here"], [streaming]), 4)  # the same audio, another text
    assert wrong > 1.0 and score["wer"] == pytest.approx(word_error_rate([streaming, rows[1]["text"]], [streaming] * 2))
    assert score["breakdown"]["engine"] == {"espeak-ng": 0.0, "flite": wrong}
    assert score["breakdown"]["voice"] == {"espeak-ng:en-us+m7": 0.0, "flite:rms": wrong}
    assert f"espeak-ng 0.0 %  flite {100 * wrong:.1f} %" in capsys.readouterr().out
    assert breakdown(["a b", "c d"], ["a b", "c"], [{"engine": "x", "voice": "x:1"}] * 2)["engine"] == {"x": 0.25}


def test_beam_search_streaming_and_offline(nemo_dir, tmp_path, capsys):
    """--beam: the streaming engine's beam search and the same search over the offline encoder's frames; on the
    fixture (NeMo's model reads it cleanly) both find NeMo's own greedy transcript."""
    streaming, offline, scores = _streaming_and_offline(nemo_dir, tmp_path, "c70_13", 1040, "--beam", "4")
    assert [s["mode"] for s in scores] == ["streaming", "offline"]
    assert [s["hypotheses"] for s in scores] == [[streaming], [offline]]
    assert scores[0]["search"] == {"beam": 4, "lm_weight": 0.0, "token_bonus": 0.0, "oov_penalty": 0.0}
    assert "beam 4, lm weight 0.0" in capsys.readouterr().out
