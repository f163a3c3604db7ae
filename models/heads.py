"""CTC head, RNNT prediction network and RNNT joint (NeMo ConvASRDecoder / RNNTDecoder / RNNTJoint).

The step-level pieces used by greedy decoding and by export are ``predict`` (token -> projected
prediction output), ``RNNTJoint.joint_enc`` (encoder projection) and ``RNNTJoint.forward`` (joint
logits from the two projections). The joint returns raw logits (NeMo applies log_softmax on CPU only,
which changes no argmax).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ouvir.models.config import CTCConfig, RNNTConfig

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class CTCHead(nn.Module):
    """Conv1d(k=1) D -> V+1, then log_softmax over the classes (NeMo ``decoder_layers.0``)."""

    def __init__(self, cfg: CTCConfig):
        super().__init__()
        self.conv = nn.Conv1d(cfg.feat_in, cfg.num_classes + 1, kernel_size=1)

    def forward(self, encoded: torch.Tensor) -> torch.Tensor:
        # encoded (B, D, T) -> log-probs (B, T, V+1)
        return self.conv(encoded).transpose(1, 2).log_softmax(dim=-1)


class PredictorState(NamedTuple):
    h: torch.Tensor  # (L, B, H) LSTM hidden (NeMo dec_state[0], "pred_state_0")
    c: torch.Tensor  # (L, B, H) LSTM cell (NeMo dec_state[1], "pred_state_1")


class RNNTPredictor(nn.Module):
    """Embedding (V+1, H) with the blank row as zero padding, then an LSTM stack (NeMo ``decoder.prediction``)."""

    def __init__(self, cfg: RNNTConfig):
        super().__init__()
        self.blank_id = cfg.vocab_size
        self.embed = nn.Embedding(cfg.vocab_size + 1, cfg.pred_hidden, padding_idx=cfg.vocab_size)
        dropout = cfg.pred_dropout if cfg.pred_rnn_layers > 1 else 0.0
        self.lstm = nn.LSTM(cfg.pred_hidden, cfg.pred_hidden, cfg.pred_rnn_layers, dropout=dropout)
        self.dropout = nn.Dropout(cfg.pred_dropout)

    def initial_state(self, batch: int) -> PredictorState:
        w = self.embed.weight
        zeros = w.new_zeros(self.lstm.num_layers, batch, self.lstm.hidden_size)  # (L, B, H)
        return PredictorState(zeros, zeros.clone())

    def forward(self, tokens: torch.Tensor, state: PredictorState) -> tuple[torch.Tensor, PredictorState]:
        """tokens (B, U) int64 (blank = start of sequence) -> outputs (B, U, H), next state."""
        x = self.embed(tokens).transpose(0, 1)  # (U, B, H)
        g, (h, c) = self.lstm(x, (state.h, state.c))  # (U, B, H)
        return self.dropout(g.transpose(0, 1)), PredictorState(h, c)


class RNNTJoint(nn.Module):
    """``out(act(enc(f) + pred(g)))`` -> raw logits over V+1 classes (NeMo ``joint.enc/pred/joint_net.2``)."""

    def __init__(self, cfg: RNNTConfig):
        super().__init__()
        self.enc = nn.Linear(cfg.encoder_hidden, cfg.joint_hidden)
        self.pred = nn.Linear(cfg.pred_hidden, cfg.joint_hidden)
        self.activation = ACTIVATIONS[cfg.activation]()
        self.dropout = nn.Dropout(cfg.joint_dropout)
        self.out = nn.Linear(cfg.joint_hidden, cfg.vocab_size + 1)

    def joint_enc(self, encoded: torch.Tensor) -> torch.Tensor:
        return self.enc(encoded)  # (B, T, D) -> (B, T, J)

    def joint_pred(self, g: torch.Tensor) -> torch.Tensor:
        return self.pred(g)  # (..., H) -> (..., J)

    def forward(self, enc_proj: torch.Tensor, pred_proj: torch.Tensor) -> torch.Tensor:
        """(B, J) + (B, J) -> (B, V+1); any broadcastable shapes, e.g. (B, T, 1, J) + (B, 1, U, J) in training."""
        return self.out(self.dropout(self.activation(enc_proj + pred_proj)))


def predict(
    predictor: RNNTPredictor, joint: RNNTJoint, token: torch.Tensor, state: PredictorState
) -> tuple[torch.Tensor, PredictorState]:
    """One prediction-network step: token (B,) -> (joint.pred(g) (B, J), next state)."""
    g, state = predictor(token[:, None], state)  # (B, 1, H)
    return joint.joint_pred(g[:, 0]), state
