"""A token-level n-gram language model for shallow fusion (numpy only: the device host loads it too).

The model counts n-grams of the acoustic model's own SentencePiece ids over text (``build``), smoothed by
interpolated Kneser-Ney (one discount) and stored in backoff form, as an ARPA file would be:

    p(w | h) = max(c(h w) - D, 0) / c(h)  +  gamma(h) * p(w | h'),   gamma(h) = D * N1+(h .) / c(h)

where h' drops h's oldest token and the unigram level backs off to the uniform 1 / V. Below the highest
order c counts distinct preceding tokens (continuation counts), except for n-grams that begin a sentence.
For a seen n-gram the file stores log p(w | h) itself; an unseen one is ``log gamma(h) + log p(w | h')``.
Sentences start with the begin-of-sentence id (= the blank id, never a text token).

File (``.npz``, no pickles): ``order``, ``vocab`` (V, text tokens), ``discount``, and per context length
k = 0 .. order-1: ``keys{k}`` (sorted int64 context keys, 9 bits per token), ``backoff{k}`` (log gamma per
context), ``offsets{k}`` (CSR row starts), ``words{k}`` / ``logp{k}`` (each context's seen next tokens and
their log p; log values in float16: 0.01 nats matter nothing to a fused score). ``log_probs(context)``
returns the whole next-token distribution, cached per context.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BITS = 9  # bits per token id in a context key: V + 1 <= 512
CACHE = 4096  # contexts whose distribution is kept


class LMFormatError(ValueError):
    """An n-gram file that is not one, or does not fit the model it is used with."""


@dataclass(frozen=True, eq=False)
class _Level:
    keys: np.ndarray  # (C,) int64 sorted context keys
    backoff: np.ndarray  # (C,) float16 log gamma(h)
    offsets: np.ndarray  # (C + 1,) int32
    words: np.ndarray  # (E,) uint16 next tokens
    logp: np.ndarray  # (E,) float16 log p(w | h)


def context_key(context: Sequence[int]) -> int:
    key = 0
    for t in context:
        key = (key << BITS) | (int(t) + 1)  # + 1: the empty context and a leading id 0 differ
    return key


class NgramLM:
    """Next-token log-probabilities over ``vocab`` text tokens given up to ``order - 1`` previous ids."""

    def __init__(self, order: int, vocab: int, discount: float, levels: Sequence[_Level]) -> None:
        self.order = order
        self.vocab = vocab
        self.discount = discount
        self.bos = vocab  # the blank id starts every sentence
        self._levels = tuple(levels)
        self._cache: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()

    def log_probs(self, context: Sequence[int]) -> np.ndarray:
        """(V,) float32 log p(. | the last order-1 ids of ``context``); do not modify the array."""
        context = tuple(context[len(context) - self.order + 1 :]) if self.order > 1 else ()
        if (hit := self._cache.get(context)) is not None:
            self._cache.move_to_end(context)
            return hit
        out = np.full(self.vocab, -np.log(self.vocab), dtype=np.float32)
        for k in range(len(context) + 1):
            level = self._levels[k]
            key = context_key(context[len(context) - k :])
            i = int(np.searchsorted(level.keys, key))
            if i == len(level.keys) or level.keys[i] != key:
                break  # an unseen context: every longer one is unseen too
            out += level.backoff[i]
            lo, hi = level.offsets[i], level.offsets[i + 1]
            out[level.words[lo:hi]] = level.logp[lo:hi]
        self._cache[context] = out
        if len(self._cache) > CACHE:
            self._cache.popitem(last=False)
        return out

    def score(self, tokens: Sequence[int]) -> float:
        """log p of a sentence's tokens after <s> (no end-of-sentence term: streams have none)."""
        history = [self.bos]
        total = 0.0
        for t in tokens:
            total += float(self.log_probs(history)[t])
            history.append(t)
        return total

    @classmethod
    def load(cls, path: str | Path) -> NgramLM:
        try:
            with np.load(path, allow_pickle=False) as z:
                order, vocab, discount = int(z["order"]), int(z["vocab"]), float(z["discount"])
                levels = [
                    _Level(z[f"keys{k}"], z[f"backoff{k}"], z[f"offsets{k}"], z[f"words{k}"], z[f"logp{k}"])
                    for k in range(order)
                ]
        except (OSError, ValueError, KeyError) as e:
            raise LMFormatError(f"{path}: not an ouvir n-gram file ({e})") from None
        for k, lv in enumerate(levels):
            if len(lv.offsets) != len(lv.keys) + 1 or int(lv.offsets[-1]) != len(lv.words) != len(lv.logp):
                raise LMFormatError(f"{path}: level {k} is inconsistent (offsets, words and log p disagree)")
            if len(lv.words) and int(lv.words.max()) >= vocab:
                raise LMFormatError(f"{path}: level {k} holds token ids outside 0..{vocab - 1}")
        return cls(order, vocab, discount, levels)

    def save(self, path: str | Path) -> None:
        arrays: dict[str, np.ndarray] = {
            "order": np.array(self.order), "vocab": np.array(self.vocab), "discount": np.array(self.discount),
        }  # fmt: skip
        for k, lv in enumerate(self._levels):
            arrays |= {f"keys{k}": lv.keys, f"backoff{k}": lv.backoff, f"offsets{k}": lv.offsets,
                       f"words{k}": lv.words, f"logp{k}": lv.logp}  # fmt: skip
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)


def build(sentences: Iterable[Sequence[int]], vocab: int, order: int = 6, discount: float = 0.7,
          min_count: int = 1) -> NgramLM:
    """Count the n-grams of tokenized sentences (ids < ``vocab``) and smooth them. N-grams of length >= 3 seen
    fewer than ``min_count`` times are dropped (their mass goes to the backoff)."""
    if not 2 <= order <= 1 + 63 // BITS:
        raise ValueError(f"order must be 2..{1 + 63 // BITS}, got {order}")
    bos = vocab
    counts: list[Counter[tuple[int, ...]]] = [Counter() for _ in range(order)]  # by context length k
    for sentence in sentences:
        ids = [bos, *sentence]
        for i in range(1, len(ids)):
            for k in range(order):
                if i - k < 0:
                    break
                counts[k][tuple(ids[i - k : i + 1])] += 1
    for k in range(order - 1):  # Kneser-Ney: a lower order counts the distinct tokens seen before each n-gram
        continuation: Counter[tuple[int, ...]] = Counter(g[1:] for g in counts[k + 1])
        counts[k] = Counter({g: (c if g[0] == bos else continuation[g]) for g, c in counts[k].items()})
    levels = []
    for k, grams in enumerate(counts):
        if k >= 2 and min_count > 1:
            grams = Counter({g: c for g, c in grams.items() if c >= min_count})
        levels.append(_level(grams, k, vocab, discount, levels))
    return NgramLM(order, vocab, discount, levels)


def _level(grams: Counter[tuple[int, ...]], k: int, vocab: int, discount: float, lower: list[_Level]) -> _Level:
    """The CSR table of contexts of length k, each with its seen next tokens' interpolated log p."""
    by_context: dict[tuple[int, ...], list[tuple[int, int]]] = {}
    for gram, c in grams.items():
        by_context.setdefault(gram[:-1], []).append((gram[-1], c))
    contexts = sorted(by_context, key=context_key)
    lm = NgramLM(k, vocab, discount, lower) if k else None  # p(w | h') of the levels below
    keys, backoff, offsets, words, logp = [], [], [0], [], []
    for h in contexts:
        seen = sorted(by_context[h])
        ids = np.array([w for w, _ in seen], dtype=np.int64)
        c = np.array([n for _, n in seen], dtype=np.float64)
        total = c.sum()
        gamma = discount * len(seen) / total
        lower_p = np.exp(lm.log_probs(h[1:])[ids]) if lm is not None else np.full(len(ids), 1.0 / vocab)
        keys.append(context_key(h))
        backoff.append(np.log(gamma))
        words.extend(ids.tolist())
        logp.extend(np.log(np.maximum(c - discount, 0.0) / total + gamma * lower_p).tolist())
        offsets.append(len(words))
    return _Level(np.array(keys, dtype=np.int64), np.array(backoff, dtype=np.float16),
                  np.array(offsets, dtype=np.int32), np.array(words, dtype=np.uint16),
                  np.array(logp, dtype=np.float16))  # fmt: skip
