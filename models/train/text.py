"""Training sentences from Debian text packages, normalized to the alphabet ``a-z``, apostrophe, space.

Sources (all Debian `main`): fortunes-min (``/usr/share/games/fortunes``), wordnet-base (the quoted
example sentences in ``/usr/share/wordnet/data.*``), bible-kjv (the ``bible`` program prints the KJV
text), wamerican (``/usr/share/dict/words``: the vocabulary every kept word must belong to, and the
words of "word-list" sentences).

The text fed to a synthesizer is the normalized text itself, so the transcript always matches the
audio. Integers are spelled out; any other digit makes a sentence go. Every word must be a dictionary
word (acronyms, vowel-less abbreviations such as "mr" or "ft" and single letters other than "a"/"i"
are not), which keeps out what a synthesizer would spell or expand.

The test split is chosen by a salted hash of the normalized text (`is_test_text`), so a held-out
sentence can never be drawn for training, whichever source or generator produced it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MIN_WORDS, MAX_WORDS = 3, 16
TEST_FRACTION = 0.05
_SPLIT_SALT = b"ouvir-synth-v1"

_ONES = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_SCALES = ((10**6, "million"), (10**3, "thousand"))

_NUMBER = re.compile(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?!\w|[.,]\d)")
_REJECT = re.compile(r"[$%@+=/\\<>|^~_{}]")
_NOT_ALPHABET = re.compile(r"[^a-z']+")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_CLAUSE_END = re.compile(r"(?<=[;:])\s+|\s+--+\s*|--+")
_DICTIONARY_ENTRY = re.compile(r"[A-Za-z][a-z']*")
_COMMON_ENTRY = re.compile(r"[a-z]+")
_VOWEL = re.compile(r"[aeiouy]")
_NOT_SPOKEN_AS_WRITTEN = frozenset({"etc"})  # dictionary words a synthesizer expands


def spell_number(n: int) -> str:
    """Cardinal English words for 0 <= n < 10**9: 1984 -> 'one thousand nine hundred eighty four'."""
    if not 0 <= n < 10**9:
        raise ValueError(f"cannot spell {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + spell_number(n % 100))
    for scale, name in _SCALES:
        if n >= scale:
            rest = n % scale
            return spell_number(n // scale) + " " + name + ("" if rest == 0 else " " + spell_number(rest))
    raise AssertionError("unreachable")


def load_vocabulary(words_file: Path, common_only: bool = False) -> frozenset[str]:
    """Lowercased dictionary words a synthesizer reads as written (see the module docstring).

    `common_only` leaves out the proper nouns (the capitalized entries: Moses, Rasalhague).
    """
    entry_pattern = _COMMON_ENTRY if common_only else _DICTIONARY_ENTRY
    vocabulary = set()
    for entry in words_file.read_text(encoding="utf-8").split():
        if not entry_pattern.fullmatch(entry):
            continue  # acronyms (NASA, PhD), non-ASCII entries
        word = entry.lower()
        if (len(word) > 1 and _VOWEL.search(word)) or word in ("a", "i"):
            vocabulary.add(word)
    return frozenset(vocabulary - _NOT_SPOKEN_AS_WRITTEN)


def _spell_match(match: re.Match[str]) -> str:
    n = int(match.group(1).replace(",", ""))
    return f" {spell_number(n)} " if n < 10**9 else match.group(1)


def normalize(raw: str, vocabulary: frozenset[str]) -> str | None:
    """One sentence -> lowercase words over a-z and apostrophe, or None when it cannot be kept."""
    text = raw.replace("\u2019", "'").replace("\u2018", "'").replace("&", " and ")
    if _REJECT.search(text):
        return None
    text = _NUMBER.sub(_spell_match, text)
    if any(c.isdigit() for c in text):
        return None
    words = [w.strip("'") for w in _NOT_ALPHABET.sub(" ", text.lower()).split()]
    words = [w for w in words if w]
    if not MIN_WORDS <= len(words) <= MAX_WORDS:
        return None
    if any(w not in vocabulary for w in words):
        return None
    return " ".join(words)


def split_sentences(paragraph: str) -> list[str]:
    """Sentences at . ! ? ; a sentence longer than MAX_WORDS is split again at ; : and dashes."""
    pieces = []
    for sentence in _SENTENCE_END.split(" ".join(paragraph.split())):
        if len(sentence.split()) <= MAX_WORDS:
            pieces.append(sentence)
        else:
            pieces.extend(_CLAUSE_END.split(sentence))
    return [p for p in pieces if p.strip()]


def fortune_paragraphs(directory: Path) -> list[str]:
    """Fortune cookies (``%``-separated), without attribution lines (``-- Mark Twain``) and Q:/A: tags."""
    paragraphs = []
    for path in sorted(directory.iterdir()):
        if path.suffix or not path.is_file():
            continue  # .dat indexes and .u8 duplicates
        for cookie in path.read_text(encoding="utf-8", errors="replace").split("\n%\n"):
            lines = [ln.strip() for ln in cookie.splitlines() if not ln.strip().startswith("--")]
            lines = [re.sub(r"^[QA]:\s*", "", ln) for ln in lines if ln.strip()]
            if _is_dialogue(lines):
                paragraphs.extend(lines)
            else:
                paragraphs.append(" ".join(lines))
    return paragraphs


def _is_dialogue(lines: list[str]) -> bool:
    """Knock-knock jokes and Q/A riddles: each line is its own utterance."""
    return len(lines) > 1 and all(len(ln.split()) <= MAX_WORDS for ln in lines) and any(
        ln.endswith("?") for ln in lines
    )


def wordnet_paragraphs(directory: Path) -> list[str]:
    """The quoted usage examples after the ``|`` of each synset line in ``data.{noun,verb,adj,adv}``."""
    examples = []
    for part in ("noun", "verb", "adj", "adv"):
        for line in (directory / f"data.{part}").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("  ") or " | " not in line:
                continue  # the licence header
            examples.extend(re.findall(r'"([^"]+)"', line.split(" | ", 1)[1]))
    return examples


def bible_paragraphs(command: str = "bible") -> list[str]:
    """Every verse of the King James Bible, as printed by bible-kjv's ``bible`` program."""
    out = subprocess.run(
        [command, "-l100000", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True
    ).stdout
    return [m.group(1) for m in re.finditer(r"^\s*\d+ (.+)$", out, flags=re.MULTILINE)]


def is_test_text(text: str, fraction: float = TEST_FRACTION) -> bool:
    """True for the held-out sentences: a salted hash of the text, independent of any seed."""
    digest = hashlib.blake2b(text.encode(), digest_size=8, salt=_SPLIT_SALT).digest()
    return int.from_bytes(digest, "big") < fraction * 2**64


@dataclass(frozen=True)
class TextSources:
    fortunes: Path = Path("/usr/share/games/fortunes")
    wordnet: Path = Path("/usr/share/wordnet")
    words: Path = Path("/usr/share/dict/words")
    bible_command: str = "bible"


@dataclass(frozen=True)
class Corpus:
    """Deduplicated, sorted normalized sentences, each as (source, text)."""

    train: tuple[tuple[str, str], ...]
    test: tuple[tuple[str, str], ...]
    words: tuple[str, ...]  # common dictionary words (no names, no apostrophes), for word-list sentences

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for split, items in (("train", self.train), ("test", self.test)):
            for source, _ in items:
                out.setdefault(split, {}).setdefault(source, 0)
                out[split][source] += 1
        return out


def load_corpus(sources: TextSources = TextSources()) -> Corpus:
    vocabulary = load_vocabulary(sources.words)
    raw = (
        ("fortunes", fortune_paragraphs(sources.fortunes)),
        ("wordnet", wordnet_paragraphs(sources.wordnet)),
        ("bible", bible_paragraphs(sources.bible_command)),
    )
    seen: dict[str, str] = {}
    for source, paragraphs in raw:
        for paragraph in paragraphs:
            for sentence in split_sentences(paragraph):
                text = normalize(sentence, vocabulary)
                if text is not None:
                    seen.setdefault(text, source)
    items = sorted((text, source) for text, source in seen.items())
    train = tuple((s, t) for t, s in items if not is_test_text(t))
    test = tuple((s, t) for t, s in items if is_test_text(t))
    words = tuple(sorted(load_vocabulary(sources.words, common_only=True)))
    return Corpus(train=train, test=test, words=words)


def save_corpus(corpus: Corpus, path: Path | str) -> None:
    """Write `corpus` as gzipped JSON (a machine without the Debian text packages reads it with `read_corpus`)."""
    data = {"train": corpus.train, "test": corpus.test, "words": corpus.words}
    Path(path).write_bytes(gzip.compress(json.dumps(data).encode(), mtime=0))


def read_corpus(path: Path | str) -> Corpus:
    """A corpus written by `save_corpus`."""
    data = json.loads(gzip.decompress(Path(path).read_bytes()))
    pairs = {split: tuple((str(s), str(t)) for s, t in data[split]) for split in ("train", "test")}
    return Corpus(train=pairs["train"], test=pairs["test"], words=tuple(data["words"]))


def word_list_sentence(rng: np.random.Generator, words: tuple[str, ...]) -> str:
    """3-8 random dictionary words (vocabulary coverage); never a held-out test text."""
    while True:
        n = int(rng.integers(MIN_WORDS, 9))
        text = " ".join(words[i] for i in rng.integers(0, len(words), size=n))
        if not is_test_text(text):
            return text
