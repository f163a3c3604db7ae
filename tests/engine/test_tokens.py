"""Detokenization from the vocabulary pieces equals SentencePiece's decode_ids, prefixes included."""

from __future__ import annotations

import itertools
import tarfile

import numpy as np
import pytest

from ouvir.engine.tokens import Detokenizer

from .reference import reference


@pytest.mark.parametrize("model", ["hybrid_multi", "ctc_conformer"])
def test_matches_sentencepiece_on_random_ids_and_every_prefix(nemo_dir, model):
    spm = pytest.importorskip("sentencepiece")
    with tarfile.open(nemo_dir / f"{model}.nemo") as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("tokenizer.model"))
        sp = spm.SentencePieceProcessor(model_proto=tar.extractfile(member).read())
    ref, _ = reference(nemo_dir, model)
    detok = Detokenizer(ref["tokenizer"]["vocab"])
    rng = np.random.default_rng(0)
    for _ in range(200):
        ids = rng.integers(0, sp.get_piece_size(), size=int(rng.integers(1, 12))).tolist()
        assert detok.text(ids) == sp.decode_ids(ids), ids
    example = ref["tokenizer"]["example_ids"]
    prefixes = [detok.text(example[:n]) for n in range(len(example) + 1)]
    assert prefixes == [sp.decode_ids(example[:n]) for n in range(len(example) + 1)]
    assert prefixes[-1] == ref["tokenizer"]["example_text"]
    assert all(b.startswith(a) for a, b in itertools.pairwise(prefixes))  # partial texts only grow


def test_word_boundaries_unknown_control_and_blank():
    detok = Detokenizer(["<unk>", "<s>", "▁he", "llo", "▁wor", "ld", "▁"])
    assert detok.text([2, 3, 4, 5]) == "hello world"
    assert detok.text([2, 3, 4]) == "hello wor"
    assert detok.text([1, 2, 3]) == "hello"  # control pieces render as nothing
    assert detok.text([2, 0, 4]) == "he \u2047  wor"
    assert detok.text([6, 2]) == " he"  # only the first piece's leading boundary is dropped
    assert detok.text([2, 7, 3]) == "hello"  # the blank id (len(vocabulary)) is no piece


def test_byte_fallback_pieces_decode_as_utf8_and_hold_back_an_unfinished_character():
    detok = Detokenizer(["▁caf", "<0xC3>", "<0xA9>", "▁ok"])
    assert detok.text([0, 1, 2, 3]) == "café ok"
    assert detok.text([0, 1]) == "caf"  # half of "é": not shown as a replacement character
    assert detok.text([0, 1, 2]) == "café"
