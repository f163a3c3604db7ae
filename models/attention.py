"""Relative-position multi-head self-attention (Transformer-XL style, NeMo ``RelPositionMultiHeadAttention``),
its sinusoidal relative position table (``RelPositionalEncoding``) and the chunked_limited masks.

Masks are boolean with True = masked (NeMo's convention). Masked scores are set to -10000 before the
softmax and their probabilities to 0 after it, so fully masked rows (padded queries) give zeros.
"""

from __future__ import annotations

import math

import torch
from torch import nn

INF_VAL = 10000.0


def chunked_limited_visible(n: int, context: tuple[int, int], device: torch.device | None = None) -> torch.Tensor:
    """(n, n) bool, True where frame i may attend to frame j: ``0 <= i//(r+1) - j//(r+1) <= left//(r+1)``."""
    left, right = context
    chunk = torch.arange(n, device=device) // (right + 1)  # (n,)
    diff = chunk[:, None] - chunk[None, :]  # (n, n)
    return (diff >= 0) & (diff <= left // (right + 1))


def attention_masks(
    valid: torch.Tensor, context: tuple[int, int], n_queries: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``valid`` (B, N) key-position validity; queries are the last ``n_queries`` positions.

    Returns ``att_mask`` (B, n_queries, N) and ``pad_mask`` (B, n_queries), True = masked.
    """
    n = valid.size(1)
    visible = chunked_limited_visible(n, context, valid.device)[n - n_queries:]  # (Tq, N)
    q_valid = valid[:, n - n_queries:]  # (B, Tq)
    att = visible[None] & q_valid[:, :, None] & valid[:, None, :]  # (B, Tq, N)
    return ~att, ~q_valid


class RelPositionalEncoding(nn.Module):
    """xscaling + input dropout, and the relative position table ``pe`` (1, 2*Lmax-1, D).

    Row i of ``pe`` encodes relative position ``Lmax - 1 - i`` (descending), computed in float32. The
    table is a non-persistent buffer (not in checkpoints); it grows on demand.
    """

    def __init__(self, d_model: int, max_len: int, xscale: float | None, dropout: float, dropout_emb: float):
        super().__init__()
        self.d_model = d_model
        self.xscale = xscale
        self.dropout = nn.Dropout(dropout)
        self.dropout_emb = nn.Dropout(dropout_emb) if dropout_emb > 0 else None
        self.register_buffer("pe", self._table(max_len), persistent=False)

    def _table(self, length: int) -> torch.Tensor:
        positions = torch.arange(length - 1, -length, -1, dtype=torch.float32)[:, None]  # (2L-1, 1)
        w = torch.exp(torch.arange(0, self.d_model, 2, dtype=torch.float32) * -(math.log(INF_VAL) / self.d_model))
        pe = torch.zeros(positions.size(0), self.d_model)
        pe[:, 0::2] = torch.sin(positions * w)
        pe[:, 1::2] = torch.cos(positions * w)
        return pe[None]  # (1, 2L-1, D)

    def extend(self, length: int) -> None:
        """Make the table cover inputs of ``length`` frames (no-op when it already does)."""
        if self.pe.size(1) < 2 * length - 1:
            self.pe = self._table(length).to(device=self.pe.device, dtype=self.pe.dtype)

    def forward(self, x: torch.Tensor, cache_len: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (B, T, D) -> (scaled x, pos_emb (1, 2(T+cache_len)-1, D)) for positions T+C-1 ... -(T+C-1)."""
        if self.xscale:
            x = x * self.xscale
        n = x.size(1) + cache_len
        self.extend(n)
        center = self.pe.size(1) // 2 + 1
        pos_emb = self.pe[:, center - n:center + n - 1]  # (1, 2n-1, D)
        if self.dropout_emb is not None:
            pos_emb = self.dropout_emb(pos_emb)
        return self.dropout(x), pos_emb


class RelPositionMultiHeadAttention(nn.Module):
    def __init__(self, n_heads: int, d_model: int, dropout: float, use_bias: bool,
                 pos_bias_u: nn.Parameter | None = None, pos_bias_v: nn.Parameter | None = None):
        super().__init__()
        self.h, self.d_k = n_heads, d_model // n_heads
        self.s_d_k = math.sqrt(self.d_k)
        self.linear_q = nn.Linear(d_model, d_model, bias=use_bias)
        self.linear_k = nn.Linear(d_model, d_model, bias=use_bias)
        self.linear_v = nn.Linear(d_model, d_model, bias=use_bias)
        self.linear_out = nn.Linear(d_model, d_model, bias=use_bias)
        self.dropout = nn.Dropout(dropout)
        self.linear_pos = nn.Linear(d_model, d_model, bias=False)
        # untie_biases=False: the encoder passes one shared pair to every layer (NeMo keeps the per-layer keys).
        self.pos_bias_u = pos_bias_u if pos_bias_u is not None else nn.Parameter(torch.zeros(n_heads, self.d_k))
        self.pos_bias_v = pos_bias_v if pos_bias_v is not None else nn.Parameter(torch.zeros(n_heads, self.d_k))

    @staticmethod
    def rel_shift(x: torch.Tensor) -> torch.Tensor:
        """(B, H, Tq, P) scores against descending positions -> (B, H, Tq, P) aligned to key index."""
        b, h, tq, p = x.shape
        x = nn.functional.pad(x, (1, 0))  # (B, H, Tq, P+1)
        x = x.view(b, h, p + 1, tq)[:, :, 1:]  # (B, H, P, Tq)
        return x.reshape(b, h, tq, p)

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor, mask: torch.Tensor | None,
                cache: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` (B, T, D) normalised input, ``pos_emb`` (1, 2N-1, D), ``mask`` (B, T, N) True = masked,
        ``cache`` (B, C, D) previous inputs (N = C + T). Returns (B, T, D) and the next cache (B, C, D)."""
        b, t, _ = x.shape
        kv = x if cache is None else torch.cat([cache, x], dim=1)  # (B, N, D)
        next_cache = None if cache is None else kv[:, kv.size(1) - cache.size(1):]  # (B, C, D)
        q = self.linear_q(x).view(b, t, self.h, self.d_k)  # (B, T, H, dk)
        k = self.linear_k(kv).view(b, -1, self.h, self.d_k).transpose(1, 2)  # (B, H, N, dk)
        v = self.linear_v(kv).view(b, -1, self.h, self.d_k).transpose(1, 2)  # (B, H, N, dk)
        p = self.linear_pos(pos_emb).view(pos_emb.size(0), -1, self.h, self.d_k).transpose(1, 2)  # (1, H, P, dk)
        q_u = (q + self.pos_bias_u).transpose(1, 2)  # (B, H, T, dk)
        q_v = (q + self.pos_bias_v).transpose(1, 2)  # (B, H, T, dk)
        matrix_bd = self.rel_shift(torch.matmul(q_v, p.transpose(-2, -1)))  # (B, H, T, P)
        matrix_ac = torch.matmul(q_u, k.transpose(-2, -1))  # (B, H, T, N)
        scores = (matrix_ac + matrix_bd[..., : matrix_ac.size(-1)]) / self.s_d_k  # (B, H, T, N)
        if mask is not None:
            m = mask[:, None]  # (B, 1, T, N)
            attn = torch.softmax(scores.masked_fill(m, -INF_VAL), dim=-1).masked_fill(m, 0.0)
        else:
            attn = torch.softmax(scores, dim=-1)
        out = torch.matmul(self.dropout(attn), v)  # (B, H, T, dk)
        out = out.transpose(1, 2).reshape(b, t, self.h * self.d_k)  # (B, T, D)
        return self.linear_out(out), next_cache
