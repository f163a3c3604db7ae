"""Transducer (RNNT) and CTC losses in plain torch; autograd gives the gradients.

RNNT (Graves 2012): with log-probabilities ``blank[t, u]`` (emit blank at frame t after u labels) and
``label[t, u]`` (emit label u + 1 there), the forward variable over the (T, U + 1) lattice is

    alpha[0, 0] = 0
    alpha[t, u] = logaddexp(alpha[t - 1, u] + blank[t - 1, u], alpha[t, u - 1] + label[t, u - 1])

and ``-log P(y | x) = -(alpha[T - 1, U] + blank[T - 1, U])``. Within one frame the recurrence along u is a
log-semiring prefix sum: with ``c[u] = sum_{j < u} label[t, j]`` and ``a[u] = alpha[t - 1, u] + blank[t - 1, u]``,
``alpha[t, u] = c[u] + logcumsumexp(a - c)[u]``, so each frame is one vectorised step over (B, U + 1) and the
loop runs T times. Every lattice node is reachable, so all alphas are finite (no -inf in the gradients).
Padded frames and labels never feed valid nodes (alpha only looks at smaller t and u), so one padded batch
gives each utterance's exact loss.

FastEmit (Yu 2021) scales the gradient of the label-emission log-probabilities by ``1 + lambda`` and leaves
the loss value unchanged, as warp-transducer / NeMo do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rnnt_log_probs(
    logits: torch.Tensor, targets: torch.Tensor, blank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Joint logits (B, T, U + 1, V + 1) -> blank log-probs (B, T, U + 1), label log-probs (B, T, U), in fp32."""
    logits = logits.float()
    norm = logits.logsumexp(dim=-1)  # (B, T, U+1)
    blank_lp = logits[..., blank] - norm  # (B, T, U+1)
    index = targets[:, None, :, None].expand(-1, logits.shape[1], -1, -1)  # (B, T, U, 1)
    label_lp = logits[:, :, :-1].gather(-1, index)[..., 0] - norm[:, :, :-1]  # (B, T, U)
    return blank_lp, label_lp


def rnnt_nll(
    blank_lp: torch.Tensor,
    label_lp: torch.Tensor,
    frame_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    fastemit_lambda: float = 0.0,
) -> torch.Tensor:
    """-log P(y | x) per utterance (B,) from blank (B, T, U + 1) and label (B, T, U) log-probs."""
    if fastemit_lambda:
        label_lp = label_lp * (1.0 + fastemit_lambda) - label_lp.detach() * fastemit_lambda
    batch, frames, _ = blank_lp.shape
    zero = blank_lp.new_zeros(batch, 1)  # (B, 1)
    alphas = []
    alpha = torch.cat([zero, label_lp[:, 0].cumsum(dim=1)], dim=1)  # (B, U+1) frame 0: labels only
    alphas.append(alpha)
    for t in range(1, frames):
        c = torch.cat([zero, label_lp[:, t].cumsum(dim=1)], dim=1)  # (B, U+1)
        a = alpha + blank_lp[:, t - 1]  # (B, U+1) arrive from frame t - 1 by a blank
        alpha = c + torch.logcumsumexp(a - c, dim=1)  # (B, U+1)
        alphas.append(alpha)
    alphas_t = torch.stack(alphas, dim=1)  # (B, T, U+1)
    rows = torch.arange(batch, device=blank_lp.device)
    last_t = frame_lengths.long() - 1
    last_u = target_lengths.long()
    return -(alphas_t[rows, last_t, last_u] + blank_lp[rows, last_t, last_u])  # (B,)


def rnnt_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    frame_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int,
    fastemit_lambda: float = 0.0,
) -> torch.Tensor:
    """Per-utterance transducer NLL (B,) from joint logits (B, T, U + 1, V + 1) and targets (B, U).

    Computed in fp32 whatever the logits' dtype. ``frame_lengths`` must be >= 1.
    """
    blank_lp, label_lp = rnnt_log_probs(logits, targets, blank)
    return rnnt_nll(blank_lp, label_lp, frame_lengths, target_lengths, fastemit_lambda)


def ctc_loss(
    log_probs: torch.Tensor,
    targets: torch.Tensor,
    frame_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int,
) -> torch.Tensor:
    """Per-utterance CTC NLL (B,) from log-probs (B, T, V + 1) and targets (B, U); impossible ones give 0."""
    return F.ctc_loss(
        log_probs.float().transpose(0, 1),  # (T, B, V+1)
        targets,
        frame_lengths.long(),
        target_lengths.long(),
        blank=blank,
        reduction="none",
        zero_infinity=True,
    )
