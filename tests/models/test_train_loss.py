"""RNNT loss against a brute-force sum over all alignments; CTC wrapper; FastEmit gradient scaling."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from ouvir.models.train.loss import ctc_loss, rnnt_log_probs, rnnt_loss


def brute_force_nll(logits: torch.Tensor, targets: list[int], blank: int) -> torch.Tensor:
    """-log of the summed probability of every alignment: T blanks and U labels, the last symbol a blank."""
    lp = logits.double().log_softmax(dim=-1)  # (T, U+1, V+1)
    frames, labels = lp.shape[0], len(targets)
    paths = []
    for label_moves in itertools.combinations(range(frames - 1 + labels), labels):
        t = u = 0
        score = lp.new_zeros(())
        for move in range(frames - 1 + labels):
            if move in label_moves:
                score = score + lp[t, u, targets[u]]
                u += 1
            else:
                score = score + lp[t, u, blank]
                t += 1
        paths.append(score + lp[t, u, blank])
    return -torch.logsumexp(torch.stack(paths), dim=0)


@pytest.mark.parametrize(("frames", "labels"), [(1, 0), (1, 2), (3, 1), (4, 3), (5, 2)])
def test_rnnt_matches_brute_force(frames: int, labels: int) -> None:
    gen = torch.Generator().manual_seed(frames * 10 + labels)
    vocab, blank = 5, 4
    logits = torch.randn(1, frames, labels + 1, vocab, generator=gen, dtype=torch.float64)
    targets = torch.randint(0, blank, (1, labels), generator=gen)
    got = rnnt_loss(logits, targets, torch.tensor([frames]), torch.tensor([labels]), blank)
    want = brute_force_nll(logits[0], targets[0].tolist(), blank)
    assert got.shape == (1,)
    assert got[0].item() == pytest.approx(want.item(), abs=1e-5)


def test_rnnt_gradient_matches_brute_force() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 4, 3, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([[2, 0]])
    want = brute_force_nll(logits[0], [2, 0], blank=5)
    (g_want,) = torch.autograd.grad(want, logits)
    got = rnnt_loss(logits, targets, torch.tensor([4]), torch.tensor([2]), blank=5)
    (g_got,) = torch.autograd.grad(got.sum(), logits)
    assert torch.allclose(g_got.double(), g_want, atol=1e-5)
    # d(-log P)/d logits sums to 0 over classes at every node (softmax), and blank gets positive mass somewhere.
    assert torch.allclose(g_got.sum(-1), torch.zeros(1, 4, 3, dtype=torch.float64), atol=1e-6)


def test_rnnt_padded_batch_equals_single_utterances() -> None:
    gen = torch.Generator().manual_seed(1)
    vocab, blank = 7, 6
    logits = torch.randn(3, 6, 5, vocab, generator=gen)
    targets = torch.randint(0, blank, (3, 4), generator=gen)
    frame_lengths, target_lengths = torch.tensor([6, 3, 5]), torch.tensor([4, 2, 0])
    batch = rnnt_loss(logits, targets, frame_lengths, target_lengths, blank)
    for b in range(3):
        t, u = int(frame_lengths[b]), int(target_lengths[b])
        alone = brute_force_nll(logits[b, :t, : u + 1], targets[b, :u].tolist(), blank)
        assert batch[b].item() == pytest.approx(alone.item(), abs=1e-4)


def test_rnnt_computes_in_fp32_from_bf16_logits() -> None:
    logits = torch.randn(2, 5, 3, 4, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([[0, 1], [2, 2]])
    lengths, tl = torch.tensor([5, 4]), torch.tensor([2, 1])
    blank_lp, label_lp = rnnt_log_probs(logits.bfloat16(), targets, blank=3)
    assert blank_lp.dtype == label_lp.dtype == torch.float32
    full = rnnt_loss(logits, targets, lengths, tl, blank=3)
    half = rnnt_loss(logits.bfloat16(), targets, lengths, tl, blank=3)
    assert torch.allclose(full, half, rtol=0.05)


def test_fastemit_keeps_value_and_scales_label_gradient() -> None:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(1, 4, 3, 5, generator=gen, requires_grad=True)
    targets = torch.tensor([[1, 3]])
    args = (targets, torch.tensor([4]), torch.tensor([2]))
    plain = rnnt_loss(logits, *args, blank=4)
    fast = rnnt_loss(logits, *args, blank=4, fastemit_lambda=0.5)
    assert fast.item() == pytest.approx(plain.item(), abs=1e-6)
    (g_plain,) = torch.autograd.grad(plain.sum(), logits)
    (g_fast,) = torch.autograd.grad(fast.sum(), logits)
    # The target-label logits get pushed up harder (more negative gradient) with FastEmit.
    label_plain = g_plain[0, :, 0, 1].sum() + g_plain[0, :, 1, 3].sum()
    label_fast = g_fast[0, :, 0, 1].sum() + g_fast[0, :, 1, 3].sum()
    assert label_fast.item() < label_plain.item() < 0


def test_ctc_loss_matches_hand_computed_two_frame_case() -> None:
    # T=2, target [0], blank 1: paths (0,0), (0,b), (b,0) -> p = 0.6*0.6 + 0.6*0.4 + 0.4*0.6
    probs = torch.tensor([[[0.6, 0.4], [0.6, 0.4]]])  # (B, T, V+1)
    nll = ctc_loss(probs.log(), torch.tensor([[0]]), torch.tensor([2]), torch.tensor([1]), blank=1)
    assert nll[0].item() == pytest.approx(-math.log(0.36 + 0.24 + 0.24), abs=1e-6)
    impossible = ctc_loss(probs.log(), torch.tensor([[0, 0]]), torch.tensor([2]), torch.tensor([2]), blank=1)
    assert impossible[0].item() == 0.0  # zero_infinity: needs 3 frames for "0 0"
