"""The token n-gram: Kneser-Ney probabilities worked by hand, normalization, the file round trip and bad files."""

from __future__ import annotations

import numpy as np
import pytest

from ouvir.engine.ngram import LMFormatError, NgramLM, build

# bos = 3. Bigrams: (3,0) x3, (0,1) x2, (0,2) x1. Unigram continuation counts: 0, 1, 2 each follow one token.
SENTENCES = [[0, 1], [0, 1], [0, 2]]


def test_bigram_kneser_ney_by_hand():
    lm = build(SENTENCES, vocab=3, order=2, discount=0.5)
    # Unigrams: continuation counts 1, 1, 1 (total 3, gamma 0.5 * 3 / 3): (1 - 0.5) / 3 + 0.5 / 3 = 1/3 each.
    np.testing.assert_allclose(np.exp(lm.log_probs([])), [1 / 3] * 3, atol=1e-3)
    # After 0: counts 1:2, 2:1 (total 3), gamma = 0.5 * 2 / 3.
    gamma = 1 / 3
    want = [gamma / 3, 1.5 / 3 + gamma / 3, 0.5 / 3 + gamma / 3]
    np.testing.assert_allclose(np.exp(lm.log_probs([0])), want, atol=1e-3)
    # After <s>: only 0 was seen (3 times), gamma = 0.5 / 3.
    np.testing.assert_allclose(np.exp(lm.log_probs([3])), [2.5 / 3 + 0.5 / 9, 0.5 / 9, 0.5 / 9], atol=1e-3)
    # An unseen context backs off to the unigrams; only the last order-1 ids count.
    np.testing.assert_allclose(lm.log_probs([1]), lm.log_probs([]), atol=1e-6)
    np.testing.assert_allclose(lm.log_probs([2, 2, 0]), lm.log_probs([0]), atol=1e-6)
    assert lm.score([0, 1]) == pytest.approx(np.log(2.5 / 3 + 0.5 / 9) + np.log(1.5 / 3 + gamma / 3), abs=2e-3)


def test_every_context_is_a_distribution():
    rng = np.random.default_rng(0)
    sentences = [rng.integers(0, 20, size=rng.integers(1, 12)).tolist() for _ in range(300)]
    lm = build(sentences, vocab=20, order=4, discount=0.7, min_count=2)
    for context in ([], [20], [20, 3], sentences[0][:3], sentences[5], [19, 19, 19, 19]):
        assert np.exp(lm.log_probs(context).astype(np.float64)).sum() == pytest.approx(1.0, abs=5e-3)
    # What the text says often is likelier than what it never says.
    seen = sentences[7]
    assert lm.score(seen) > lm.score(list(reversed(seen))) or seen == list(reversed(seen))


def test_save_load_round_trip(tmp_path):
    lm = build(SENTENCES * 3 + [[2, 2, 1, 0]], vocab=3, order=3, discount=0.6)
    lm.save(tmp_path / "lm.npz")
    again = NgramLM.load(tmp_path / "lm.npz")
    assert (again.order, again.vocab, again.discount) == (3, 3, pytest.approx(0.6))
    for context in ([], [3], [0], [3, 0], [2, 2], [1, 1]):
        np.testing.assert_array_equal(again.log_probs(context), lm.log_probs(context))


def test_bad_files_are_refused_by_name(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(LMFormatError, match=r"junk\.npz: not an ouvir n-gram file"):
        NgramLM.load(junk)
    lm = build(SENTENCES, vocab=3, order=2)
    lm.save(tmp_path / "lm.npz")
    with np.load(tmp_path / "lm.npz") as z:
        arrays = dict(z)
    arrays["words1"] = arrays["words1"] + 7  # ids past the vocabulary
    np.savez(tmp_path / "tampered.npz", **arrays)
    with pytest.raises(LMFormatError, match=r"token ids outside 0\.\.2"):
        NgramLM.load(tmp_path / "tampered.npz")
    del arrays["logp0"]
    np.savez(tmp_path / "short.npz", **arrays)
    with pytest.raises(LMFormatError, match=r"short\.npz"):
        NgramLM.load(tmp_path / "short.npz")
    with pytest.raises(ValueError, match=r"order must be 2\.\.8"):
        build(SENTENCES, vocab=3, order=9)
