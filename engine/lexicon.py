"""A word list that beam search holds hypotheses to: words spelled out of SentencePiece pieces are checked
as they grow (numpy-free; the device host loads it too).

A hypothesis carries the word it is spelling (the pieces since the last ``▁``) and whether that is still the
start of a listed word. ``Spelling.step`` says what one more piece does: a piece that makes the word a non-prefix,
or a ``▁`` piece that ends a word that is only a prefix, costs the search's ``oov_penalty`` once per word.

File: gzip text, one lower-case word per line (``python -m ouvir.models.train.lm --lexicon``).
"""

from __future__ import annotations

import bisect
import gzip
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

WORD_START = "▁"


class LexiconError(ValueError):
    """A word-list file that is not one."""


class Lexicon:
    def __init__(self, words: Iterable[str]) -> None:
        self.words = tuple(sorted({w for w in words if w}))

    def is_word(self, s: str) -> bool:
        i = bisect.bisect_left(self.words, s)
        return i < len(self.words) and self.words[i] == s

    def is_prefix(self, s: str) -> bool:
        i = bisect.bisect_left(self.words, s)
        return i < len(self.words) and self.words[i].startswith(s)

    @classmethod
    def load(cls, path: str | Path) -> Lexicon:
        try:
            text = gzip.decompress(Path(path).read_bytes()).decode("utf-8")
        except (OSError, EOFError, UnicodeDecodeError) as e:
            raise LexiconError(f"{path}: not a gzip word list ({e})") from None
        words = text.split("\n")
        if any(w != w.strip() or w != w.lower() for w in words):
            raise LexiconError(f"{path}: a word list holds one lower-case word per line, without spaces")
        return cls(words)

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(gzip.compress("\n".join(self.words).encode("utf-8"), mtime=0))


class Word(NamedTuple):
    text: str  # the pieces since the last word start
    listed: bool  # still the start of a listed word (or empty)


START = Word("", True)


class Spelling:
    """A lexicon read through one model's pieces."""

    def __init__(self, lexicon: Lexicon, pieces: tuple[str, ...]) -> None:
        self.lexicon = lexicon
        self.pieces = pieces

    def step(self, word: Word, token: int) -> tuple[Word, bool]:
        """The word after ``token``, and whether that step leaves the lexicon (is penalized)."""
        piece = self.pieces[token]
        if piece.startswith("<") and piece.endswith(">"):  # <unk>, <EOU>: not spelled
            return START, False
        if not piece.startswith(WORD_START):
            text = word.text + piece
            listed = word.listed and self.lexicon.is_prefix(text)
            return Word(text, listed), word.listed and not listed
        unfinished = word.listed and bool(word.text) and not self.lexicon.is_word(word.text)
        text = piece[len(WORD_START) :]
        listed = not text or self.lexicon.is_prefix(text)
        return Word(text, listed), unfinished or not listed
