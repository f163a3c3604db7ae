"""The synthetic-speech data recipe: text normalization, split, TTS determinism, augmentation, build."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ouvir.models.train import augment
from ouvir.models.train.batching import OnlineAugment
from ouvir.models.train.data import build_dataset, engine_weights, load_manifest, plan
from ouvir.models.train.text import (
    TextSources,
    is_test_text,
    load_corpus,
    load_vocabulary,
    normalize,
    read_corpus,
    save_corpus,
    spell_number,
    split_sentences,
    word_list_sentence,
)
from ouvir.models.train.tts import SAMPLE_RATE, TEST_VOICES, TRAIN_VOICES, Prosody, Voice, synthesize

SOURCES = TextSources()
HAVE_TEXT = SOURCES.words.is_file() and SOURCES.wordnet.is_dir() and shutil.which(SOURCES.bible_command)
HAVE_TTS = all(shutil.which(b) for b in ("espeak-ng", "flite", "text2wave"))
needs_text = pytest.mark.skipif(not HAVE_TEXT, reason="wamerican, wordnet-base, bible-kjv not installed")
needs_tts = pytest.mark.skipif(not HAVE_TTS, reason="espeak-ng, flite, festival not installed")
ALPHABET_TEXT = re.compile(r"[a-z']+( [a-z']+){2,15}")


@pytest.fixture(scope="module")
def vocabulary() -> frozenset[str]:
    return load_vocabulary(SOURCES.words)


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(SOURCES)


def test_spell_number():
    assert spell_number(0) == "zero"
    assert spell_number(13) == "thirteen"
    assert spell_number(40) == "forty"
    assert spell_number(105) == "one hundred five"
    assert spell_number(1984) == "one thousand nine hundred eighty four"
    assert spell_number(2_000_017) == "two million seventeen"
    with pytest.raises(ValueError):
        spell_number(10**9)


@needs_text
def test_vocabulary_keeps_words_read_as_written(vocabulary):
    for word in ("a", "i", "don't", "dog's", "moses", "thee", "saith"):
        assert word in vocabulary
    for word in ("mr", "ft", "nasa", "phd", "etc", "b", "xv"):
        assert word not in vocabulary


@needs_text
def test_normalize(vocabulary):
    assert normalize("It's 42 degrees -- too hot!", vocabulary) == "it's forty two degrees too hot"
    assert normalize("\u2018Tis the 1,000 \u201cgreat\u201d men & women.", vocabulary) is None  # 'tis
    assert normalize("The 1,000 great men & women.", vocabulary) == "the one thousand great men and women"
    assert normalize("Version 3.5 ships on the 1st.", vocabulary) is None  # decimals, ordinals
    assert normalize("Send $5 to the office.", vocabulary) is None
    assert normalize("Mr Smith went home.", vocabulary) is None  # spelled "mister" by a synthesizer
    assert normalize("Go home.", vocabulary) is None  # < 3 words
    assert normalize(" ".join(["dog"] * 17), vocabulary) is None  # > 16 words
    assert normalize("'Come here,' she said.", vocabulary) == "come here she said"


def test_split_sentences():
    assert split_sentences("One two three. Four five six!  Seven?") == ["One two three.", "Four five six!", "Seven?"]
    long = "a b c d e f g h i; j k l m n o p q r s: t u"
    assert split_sentences(long) == ["a b c d e f g h i;", "j k l m n o p q r s:", "t u"]


@needs_text
def test_corpus_split_is_disjoint_and_clean(corpus):
    train = {t for _, t in corpus.train}
    test = {t for _, t in corpus.test}
    assert not train & test
    assert len(train) == len(corpus.train) and len(test) == len(corpus.test)  # deduplicated
    assert all(is_test_text(t) for t in test) and not any(is_test_text(t) for t in train)
    assert 0.04 < len(test) / (len(train) + len(test)) < 0.06
    counts = corpus.counts()
    assert set(counts["train"]) == {"fortunes", "wordnet", "bible"}
    assert len(train) > 40_000
    assert all(ALPHABET_TEXT.fullmatch(t) for t in train | test)
    assert [t for _, t in corpus.train] == sorted(train)


@needs_text
def test_word_list_sentences_are_seeded_and_never_test(corpus):
    a = [word_list_sentence(np.random.default_rng(7), corpus.words) for _ in range(2)]
    assert a[0] == a[1]
    texts = [word_list_sentence(np.random.default_rng(s), corpus.words) for s in range(200)]
    assert not any(is_test_text(t) for t in texts)
    assert all(3 <= len(t.split()) <= 8 for t in texts)


def test_train_and_test_voices_are_disjoint():
    train = {v for vs in TRAIN_VOICES.values() for v in vs}
    test = {v for vs in TEST_VOICES.values() for v in vs}
    assert not train & test
    assert Voice("flite", "rms") in test and Voice("espeak-ng", "en-us+m7") in test
    assert len(train) > 400


@needs_tts
@pytest.mark.parametrize(
    "voice", [Voice("espeak-ng", "en-gb-x-rp+f2"), Voice("flite", "kal"), Voice("festival", "kal_diphone"),
              Voice("festival", "ked_diphone"), Voice("festival", "cmu_us_slt_arctic_hts")],
    ids=lambda v: v.id,
)  # fmt: skip
def test_synthesis_is_deterministic_16k(voice):
    text = "the quick brown fox jumps over the lazy dog"
    slow = synthesize(text, voice, Prosody(rate=0.8, pitch=2.0))
    again = synthesize(text, voice, Prosody(rate=0.8, pitch=2.0))
    fast = synthesize(text, voice, Prosody(rate=1.15, pitch=2.0))
    assert slow.dtype == np.float32 and slow.ndim == 1
    np.testing.assert_array_equal(slow, again)
    assert 1.5 * SAMPLE_RATE < len(slow) < 6 * SAMPLE_RATE
    assert len(fast) < 0.85 * len(slow)
    assert 0.05 < np.abs(slow).max() <= 1.0


def _band_power(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    return float(spec[(f >= lo) & (f < hi)].mean())


def test_colored_noise_slopes():
    rng = np.random.default_rng(0)
    # power density falls 0 / 3 / 6 dB per octave for white / pink / brown; the bands are 3 octaves apart
    for kind, slope_db in (("white", 0.0), ("pink", 3.0), ("brown", 6.0)):
        x = augment.colored_noise(rng, 4 * SAMPLE_RATE, kind)
        assert abs(augment.rms(x) - 1.0) < 1e-4
        drop = 10 * np.log10(_band_power(x, 250, 500) / _band_power(x, 2000, 4000))
        assert abs(drop - 3 * slope_db) < 1.5, (kind, drop)


def test_room_impulse_response_decays_at_rt60():
    rir = augment.room_impulse_response(np.random.default_rng(0), rt60_s=0.4)
    assert len(rir) == int(0.4 * SAMPLE_RATE)
    assert abs(np.sum(rir**2) - 1.0) < 1e-9 and np.argmax(np.abs(rir)) == 0
    tail = rir[1:]
    first = np.sum(tail[: SAMPLE_RATE // 20] ** 2)  # 0-50 ms
    late = np.sum(tail[int(0.35 * SAMPLE_RATE) - SAMPLE_RATE // 20 : int(0.35 * SAMPLE_RATE)] ** 2)  # 300-350 ms
    assert 40 < 10 * np.log10(first / late) < 55  # -60 dB per 0.4 s -> ~45 dB over 300 ms


def _tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_apply_speed_snr_level_and_seed():
    speech = _tone(2.0)
    babble = _tone(3.0)
    params = augment.AugmentParams(
        speed=1.1, pad_start_s=0.0, pad_end_s=0.0, rt60_s=None, noise="white", snr_db=10.0,
        level_dbfs=-20.0, ramp_db=0.0,
    )  # fmt: skip
    out = augment.apply(speech, params, np.random.default_rng(3), babble)
    assert abs(len(out) - len(speech) / 1.1) <= 2
    again = augment.apply(speech, params, np.random.default_rng(3), babble)
    np.testing.assert_array_equal(out, again)
    clean = augment.apply(speech, replace(params, snr_db=300.0), np.random.default_rng(3), babble)
    assert abs(20 * np.log10(augment.rms(clean)) - -20.0) < 0.05
    snr = 20 * np.log10(augment.rms(clean) / augment.rms(out - clean))
    assert abs(snr - 10.0) < 0.05
    padded_params = replace(params, pad_start_s=0.5, pad_end_s=0.25, speed=1.0)
    padded = augment.apply(speech, padded_params, np.random.default_rng(3), babble)
    assert len(padded) == len(speech) + int(0.75 * SAMPLE_RATE)


def _pitch_hz(x: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)[np.argmax(spec)])


def test_voice_shift_moves_pitch_at_constant_duration():
    speech = _tone(1.0)  # 220 Hz
    down = augment.shift_voice(speech, -1200.0)  # an octave
    up = augment.shift_voice(speech, 700.0)  # a fifth
    assert len(down) == len(up) == len(speech)
    assert abs(_pitch_hz(down[2000:-2000]) - 110.0) < 3 and abs(_pitch_hz(up[2000:-2000]) - 329.6) < 5
    assert augment.shift_voice(speech, 0.0) is speech
    params = augment.AugmentParams(1.0, 0.0, 0.0, None, "white", 300.0, -20.0, 0.0, shift_cents=-1200.0)
    shifted = augment.apply(speech, params, np.random.default_rng(0), _tone(3.0))
    assert len(shifted) == len(speech) and abs(_pitch_hz(shifted[2000:-2000]) - 110.0) < 3


def test_voice_shifts_are_drawn_last_and_only_when_enabled():
    plain = [augment.sample_params(np.random.default_rng(s)) for s in range(200)]
    shifted = [augment.sample_params(np.random.default_rng(s), augment.AugmentConfig(p_shift=0.5)) for s in range(200)]
    assert all(p.shift_cents == 0.0 for p in plain)
    assert [replace(p, shift_cents=0.0) for p in shifted] == plain  # every other draw is synth-v1's
    cents = [p.shift_cents for p in shifted if p.shift_cents != 0.0]
    assert 0.35 < len(cents) / 200 < 0.65 and all(-500 <= c <= 300 for c in cents)


def test_sampled_params_stay_in_range():
    cfg = augment.AugmentConfig()
    params = [augment.sample_params(np.random.default_rng(s), cfg) for s in range(300)]
    assert all(0.9 <= p.speed <= 1.1 and p.noise in augment.NOISE_KINDS for p in params)
    reverb = [p.rt60_s for p in params if p.rt60_s is not None]
    assert 0.2 < len(reverb) / len(params) < 0.5 and all(0.1 <= r <= 0.6 for r in reverb)
    noisy = [p.snr_db for p in params if p.snr_db < 40]
    assert 0.6 < len(noisy) / len(params) < 0.8 and all(5 <= s <= 30 for s in noisy)


@needs_text
def test_only_training_utterances_get_voice_shifts(corpus):
    assert all(u.augment.shift_cents == 0.0 for u in plan(corpus, "test", 200, seed=0))
    shifted = sum(u.augment.shift_cents != 0.0 for u in plan(corpus, "train", 200, seed=0))
    assert 60 < shifted < 140


@needs_text
def test_plan_is_a_function_of_seed_and_index(corpus):
    small, large = plan(corpus, "train", 5, seed=1), plan(corpus, "train", 20, seed=1)
    assert small == large[:5]
    assert plan(corpus, "train", 5, seed=2) != small
    test = plan(corpus, "test", 30, seed=1)
    test_voices = {v for vs in TEST_VOICES.values() for v in vs}
    assert all(u.voice in test_voices and is_test_text(u.text) for u in test)
    train = plan(corpus, "train", 200, seed=1)
    assert not any(u.voice in test_voices or is_test_text(u.text) for u in train)
    assert {u.voice.engine for u in train} == {"espeak-ng", "flite", "festival"}
    assert {"words", "wordnet", "bible"} <= {u.source for u in train}


@needs_text
def test_a_saved_corpus_plans_the_same_utterances(corpus, tmp_path):
    save_corpus(corpus, tmp_path / "corpus.json.gz")
    saved = read_corpus(tmp_path / "corpus.json.gz")
    assert saved == corpus
    assert plan(saved, "train", 50, seed=3) == plan(corpus, "train", 50, seed=3)


@needs_text
def test_engines_restrict_the_plan_and_keep_the_test_split(corpus):
    assert engine_weights("train", ("espeak-ng", "flite")) == pytest.approx({"espeak-ng": 0.4 / 0.85,
                                                                            "flite": 0.45 / 0.85})
    train = plan(corpus, "train", 200, seed=1, engines=("espeak-ng", "flite"))
    assert {u.voice.engine for u in train} == {"espeak-ng", "flite"}
    assert not any(is_test_text(u.text) for u in train)
    assert plan(corpus, "test", 40, seed=0, engines=("espeak-ng", "flite")) == plan(corpus, "test", 40, seed=0)
    with pytest.raises(ValueError, match="no test engine"):
        plan(corpus, "test", 5, seed=0, engines=("festival",))


def test_online_voice_shift_moves_pitch_and_draws_nothing_when_off():
    t = np.arange(SAMPLE_RATE, dtype=np.float32) / SAMPLE_RATE
    tone = 0.3 * np.sin(2 * np.pi * 200.0 * t).astype(np.float32)  # (16000,)
    off = OnlineAugment(p_speed=0.0, p_noise=0.0, p_reverb=0.0)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(off(tone, rng), tone)
    assert rng.random() == np.random.default_rng(0).random(4)[3]  # the 3 draws of speed, reverb, noise: no more
    down = OnlineAugment(p_speed=0.0, p_noise=0.0, p_reverb=0.0, p_shift=1.0, shift_cents=(-1200.0, -1200.0))
    shifted = down(tone, np.random.default_rng(0))
    spectrum = np.abs(np.fft.rfft(shifted[2000:14000]))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / 12000
    assert abs(len(shifted) - len(tone)) < 200 and abs(peak_hz - 100.0) < 5.0


def test_telephone_channel_keeps_300_to_3400_hz_in_256_levels():
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    tones = {hz: 0.2 * np.sin(2 * np.pi * hz * t) for hz in (100.0, 1000.0, 3000.0, 5000.0)}
    out = augment.telephone(sum(tones.values()).astype(np.float32))
    assert out.shape == (2 * SAMPLE_RATE,) and out.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(out[4000:-4000]))
    freqs = np.fft.rfftfreq(len(out) - 8000, d=1 / SAMPLE_RATE)

    def level(hz: float) -> float:
        return float(spectrum[np.abs(freqs - hz) < 5].max())

    assert level(1000.0) > 0.8 * level(3000.0) > 0.0  # the band passes
    assert level(100.0) < 0.01 * level(1000.0) and level(5000.0) < 0.01 * level(1000.0)  # outside: gone
    loud = 0.5 * np.sin(2 * np.pi * 1000.0 * t).astype(np.float32)
    error = augment.telephone(loud)[4000:-4000] - loud[4000:-4000]
    assert 1e-4 < augment.rms(error) < 0.03 * augment.rms(loud)  # mu-law: coarse but close (~38 dB SNR)
    rng = np.random.default_rng(0)
    on = OnlineAugment(p_speed=0.0, p_noise=0.0, p_reverb=0.0, p_telephone=1.0)
    np.testing.assert_allclose(on(loud, rng), augment.telephone(loud), atol=1e-6)


def _wav_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.glob("*/*.wav"))}


@needs_text
@needs_tts
def test_build_dataset_is_deterministic_and_resumable(tmp_path):
    first = build_dataset(tmp_path / "a", n_train=5, n_test=2, seed=4, workers=1)
    train = load_manifest(tmp_path / "a" / "train.jsonl")
    test = load_manifest(tmp_path / "a" / "test.jsonl")
    assert len(train) == 5 and len(test) == 2
    assert first["splits"]["train"]["utterances"] == 5 and first["this_run"]["synthesized"] == 7
    assert first["this_run"]["audio_s_per_cpu_s"] > 1.0
    for entry in train + test:
        info = sf.info(str(entry.audio_filepath))
        assert entry.audio_filepath.is_absolute()
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
        assert abs(info.duration - entry.duration) < 1e-3
    assert all(is_test_text(e.text) for e in test) and not any(is_test_text(e.text) for e in train)
    stats = json.loads((tmp_path / "a" / "stats.json").read_text())
    assert stats["splits"] == first["splits"]

    build_dataset(tmp_path / "b", n_train=5, n_test=2, seed=4, workers=2)
    assert _wav_bytes(tmp_path / "a") == _wav_bytes(tmp_path / "b")  # same seed, 2 processes: same bytes
    assert (tmp_path / "a" / "train.jsonl").read_text() == (tmp_path / "b" / "train.jsonl").read_text()

    reference = _wav_bytes(tmp_path / "a")
    manifest = (tmp_path / "a" / "train.jsonl").read_text()
    (tmp_path / "a" / "train" / "000003.wav").unlink()
    resumed = build_dataset(tmp_path / "a", n_train=5, n_test=2, seed=4, workers=1)
    assert (resumed["this_run"]["synthesized"], resumed["this_run"]["kept"]) == (1, 6)
    assert _wav_bytes(tmp_path / "a") == reference
    assert (tmp_path / "a" / "train.jsonl").read_text() == manifest
    with pytest.raises(ValueError, match="seed"):
        build_dataset(tmp_path / "a", n_train=5, n_test=2, seed=5, workers=1)
    with pytest.raises(ValueError, match="engines"):  # a folder holds one recipe: not a subset of its engines
        build_dataset(tmp_path / "a", n_train=5, n_test=2, seed=4, workers=1, engines=("flite",))
