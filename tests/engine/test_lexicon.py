"""The lexicon: words spelled out of pieces as they grow, the penalty once per word that leaves it, the file."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from ouvir.engine.backends.base import PredictorState
from ouvir.engine.beam import BeamSearch, beam_initial_state, rnnt_beam_step
from ouvir.engine.lexicon import START, Lexicon, LexiconError, Spelling, Word

PIECES = ("<unk>", "▁ca", "t", "r", "▁do", "g", "x", "▁")
LEXICON = Lexicon(["cat", "car", "dog", "a"])


def spell(tokens):
    spelling, word, penalties = Spelling(LEXICON, PIECES), START, []
    for t in tokens:
        word, penalized = spelling.step(word, t)
        penalties.append(penalized)
    return word, penalties


def test_words_grow_piece_by_piece():
    assert spell([1, 2]) == (Word("cat", True), [False, False])
    assert spell([1, 2, 4, 5]) == (Word("dog", True), [False] * 4)
    # "cax" leaves the lexicon once; growing it further costs nothing more; the next word starts clean.
    assert spell([1, 6, 2, 4]) == (Word("do", True), [False, True, False, False])
    # "ca" ended by a new word is only a prefix: penalized where it ends.
    assert spell([1, 4]) == (Word("do", True), [False, True])
    # A word-start piece that no word begins with; "▁" alone starts an empty word; <unk> is not spelled.
    assert spell([7, 6]) == (Word("x", False), [False, True])
    assert spell([1, 0, 3]) == (Word("r", False), [False, False, True])


def test_prefix_and_word_lookups():
    assert LEXICON.is_prefix("ca") and LEXICON.is_prefix("car") and not LEXICON.is_prefix("cb")
    assert LEXICON.is_word("a") and not LEXICON.is_word("ca") and not LEXICON.is_prefix("dogs")


def test_file_round_trip_and_bad_files(tmp_path):
    LEXICON.save(tmp_path / "words.txt.gz")
    assert Lexicon.load(tmp_path / "words.txt.gz").words == ("a", "car", "cat", "dog")
    (tmp_path / "plain.txt").write_text("cat\ndog\n")
    with pytest.raises(LexiconError, match=r"plain\.txt: not a gzip word list"):
        Lexicon.load(tmp_path / "plain.txt")
    (tmp_path / "upper.txt.gz").write_bytes(gzip.compress(b"Cat\ndog"))
    with pytest.raises(LexiconError, match="one lower-case word per line"):
        Lexicon.load(tmp_path / "upper.txt.gz")


class SpellHeads:
    """Frame 0: "▁ca"; frame 1: "x" a little likelier than "t"; then blank."""

    batched_joint = True

    def initial_predictor_state(self, batch=1):
        return PredictorState(np.zeros((1, batch, 1), np.float32), np.zeros((1, batch, 1), np.float32))

    def predict(self, token, state):
        h = state.h + 1
        return h[0].copy(), PredictorState(h, state.c)

    def joint(self, encoded_frame, prediction):
        logits = np.full((len(encoded_frame), len(PIECES) + 1), -10.0, np.float32)
        for r, (t, fed) in enumerate(zip(encoded_frame[:, 0], prediction[:, 0], strict=True)):
            if t == 0 and fed == 1:
                logits[r, 1] = 5.0
            elif t == 1 and fed == 2:
                logits[r, 6], logits[r, 2] = 3.0, 2.5
            else:
                logits[r, len(PIECES)] = 5.0
        return logits


def test_the_lexicon_turns_a_near_non_word_into_a_word():
    heads, encoded, blank = SpellHeads(), np.arange(3, dtype=np.float32)[:, None], len(PIECES)
    plain = rnnt_beam_step(heads, encoded, beam_initial_state(heads, blank), blank, BeamSearch(beam=3))
    assert plain.best.tokens == (1, 6)  # "cax"
    held = rnnt_beam_step(heads, encoded, beam_initial_state(heads, blank), blank,
                          BeamSearch(beam=3, oov_penalty=2.0), spelling=Spelling(LEXICON, PIECES))
    assert held.best.tokens == (1, 2) and held.best.word == Word("cat", True)
