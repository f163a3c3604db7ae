"""RNNT beam search with optional n-gram shallow fusion, one stream, state carried across chunks.

icefall's ``modified_beam_search`` (at most one token per frame, as in k2's pruned RNNT decoding): per
encoder frame, every hypothesis is scored by one joint call (rows = hypotheses); each candidate either stays
(blank) or grows by one token, scored

    score + log p_rnnt(k | frame, hypothesis) + lm_weight * log p_lm(k | last tokens) + token_bonus
          - oov_penalty (where k spells the hypothesis out of the lexicon: engine/lexicon.py)

(fusion and bonus on text tokens only; the lexicon is checked on the best ``4 * beam`` candidates only);
candidates with the same tokens are merged (log-add) and the best ``beam`` go on; the ones that grew get their
prediction-net step in one batched call.

Hypotheses hold the tokens of the open segment only: when a segment ends the recognizer keeps the best one
(``keep_best``), so a Final never changes and a long stream keeps flat memory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ouvir.engine.backends.base import PREDICTOR_BATCH_AXES, PredictorState, batch_row, stack_batch
from ouvir.engine.decoders import TransducerHeads
from ouvir.engine.lexicon import START, Lexicon, Spelling, Word
from ouvir.engine.ngram import NgramLM

CONTEXT = 8  # previous ids kept per hypothesis without an LM (enough for any order it may be given)


@dataclass(frozen=True)
class BeamSearch:
    beam: int = 4
    lm_weight: float = 0.0  # the n-gram's log p scale (0: no fusion)
    token_bonus: float = 0.0  # added per emitted token (counters the LM's pull towards fewer tokens)
    oov_penalty: float = 0.0  # subtracted once per word that leaves the lexicon (0: no lexicon)

    def __post_init__(self) -> None:
        if self.beam < 1:
            raise ValueError(f"beam must be >= 1, got {self.beam}")


class Decoding(NamedTuple):
    """A model's recommended decoding: the search and what it fuses."""

    search: BeamSearch
    lm: NgramLM | None
    lexicon: Lexicon | None


def describe(search: BeamSearch | None, lm: NgramLM | None, lexicon: Lexicon | Spelling | None) -> str:
    """How a recognizer decodes, for a log line: "" (greedy) or " (beam 8 + n-gram x 0.3 + lexicon)"."""
    if search is None:
        return ""
    fused = f" + n-gram x {search.lm_weight:g}" if lm is not None and search.lm_weight else ""
    held = " + lexicon" if lexicon is not None and search.oov_penalty else ""
    return f" (beam {search.beam}{fused}{held})"


def load_decoding(path: Path) -> Decoding:
    """``decoding.json``: the ``BeamSearch`` fields, ``lm`` (an n-gram file beside it, or null) and ``lexicon`` (a
    word list beside it, or null)."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        search = BeamSearch(**{f.name: d[f.name] for f in fields(BeamSearch)})
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a decoding file ({e!r})") from None
    lm = NgramLM.load(path.parent / d["lm"]) if d.get("lm") else None
    return Decoding(search, lm, Lexicon.load(path.parent / d["lexicon"]) if d.get("lexicon") else None)


class Hypothesis(NamedTuple):
    tokens: tuple[int, ...]  # the open segment's tokens
    frames: tuple[int, ...]  # global encoder frame of each token
    score: float  # log p_rnnt + lm_weight * log p_lm + bonuses, over everything decoded
    context: tuple[int, ...]  # the last ids (the LM's history; begins with <s> = blank)
    word: Word  # the word being spelled (lexicon)
    predictor: PredictorState  # (P, 1, H)
    prediction: np.ndarray  # (1, P)


class BeamState(NamedTuple):
    hyps: tuple[Hypothesis, ...]  # best first
    frames: int  # frames decoded so far

    @property
    def best(self) -> Hypothesis:
        return self.hyps[0]


def beam_initial_state(heads: TransducerHeads, blank: int) -> BeamState:
    prediction, predictor = heads.predict(np.array([blank], dtype=np.int64), heads.initial_predictor_state(1))
    return BeamState((Hypothesis((), (), 0.0, (blank,), START, predictor, prediction),), 0)


def keep_best(state: BeamState, tokens: tuple[int, ...], frames: tuple[int, ...]) -> BeamState:
    """Only the best hypothesis goes on, holding ``tokens`` / ``frames`` (the open segment's) from now."""
    return BeamState((state.best._replace(tokens=tokens, frames=frames),), state.frames)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def rnnt_beam_step(heads: TransducerHeads, encoded: np.ndarray, state: BeamState, blank: int,
                   search: BeamSearch, lm: NgramLM | None = None, spelling: Spelling | None = None) -> BeamState:
    """encoded (T, D) of the chunk's valid frames."""
    hyps = list(state.hyps)
    keep = max(CONTEXT, lm.order - 1 if lm is not None else 0)
    for t in range(len(encoded)):
        frame = state.frames + t
        logits = heads.joint(np.repeat(encoded[t : t + 1], len(hyps), axis=0),
                             np.concatenate([h.prediction for h in hyps]))  # (B, V+1)
        scores = _log_softmax(logits.astype(np.float64)) + np.array([h.score for h in hyps])[:, None]  # (B, V+1)
        scores[:, :blank] += search.token_bonus
        if lm is not None and search.lm_weight:
            scores[:, :blank] += search.lm_weight * np.stack([lm.log_probs(h.context) for h in hyps])  # (B, V)
        flat = scores.ravel()  # (B * (V+1),) a view: penalties land in scores too
        if spelling is not None and search.oov_penalty:
            top = np.argpartition(-flat, min(4 * search.beam, flat.size) - 1)[: 4 * search.beam]
            for i in top:
                b, k = divmod(int(i), scores.shape[1])
                if k != blank and spelling.step(hyps[b].word, k)[1]:
                    flat[i] -= search.oov_penalty
        else:
            top = np.argpartition(-flat, min(search.beam, flat.size - 1))[: search.beam]
        merged: dict[tuple[int, ...], tuple[float, int, int]] = {}  # tokens -> (score, parent, token or blank)
        for i in top[np.argsort(-flat[top])][: search.beam]:
            b, k = divmod(int(i), scores.shape[1])
            key = hyps[b].tokens if k == blank else (*hyps[b].tokens, k)
            old = merged.get(key)
            merged[key] = (float(flat[i]), b, k) if old is None else (float(np.logaddexp(old[0], flat[i])), *old[1:])
        grown = {(b, k): i for i, (b, k) in enumerate((b, k) for _, b, k in merged.values() if k != blank)}
        if grown:
            predictor = stack_batch([hyps[b].predictor for b, _ in grown], PREDICTOR_BATCH_AXES)
            prediction, predictor = heads.predict(np.array([k for _, k in grown], dtype=np.int64), predictor)
        new = []
        for score, b, k in merged.values():
            h = hyps[b]
            if k == blank:
                new.append(h._replace(score=score))
                continue
            i = grown[(b, k)]
            word = spelling.step(h.word, k)[0] if spelling is not None else h.word
            new.append(Hypothesis((*h.tokens, k), (*h.frames, frame), score, (*h.context, k)[-keep:], word,
                                  batch_row(predictor, i, PREDICTOR_BATCH_AXES), prediction[i : i + 1]))
        hyps = sorted(new, key=lambda h: -h.score)
    return BeamState(tuple(hyps), state.frames + len(encoded))
