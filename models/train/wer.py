"""Word error rate: Levenshtein distance over whitespace-separated words, summed over a corpus."""

from __future__ import annotations

from collections.abc import Sequence


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Minimum substitutions + deletions + insertions turning ``ref`` into ``hyp``."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        diag, row[0] = row[0], i
        for j, h in enumerate(hyp, start=1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (r != h))
    return row[-1]


def word_errors(ref: str, hyp: str) -> tuple[int, int]:
    """(word edits, reference words) for one utterance."""
    ref_words, hyp_words = ref.split(), hyp.split()
    return edit_distance(ref_words, hyp_words), len(ref_words)


def word_error_rate(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Corpus WER = total edits / total reference words (1.0 per inserted word when there are none)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    edits = words = 0
    for ref, hyp in zip(refs, hyps, strict=True):
        e, n = word_errors(ref, hyp)
        edits, words = edits + e, words + n
    return edits / max(words, 1)
