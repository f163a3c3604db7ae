"""Thin torch modules that give the models' streaming pieces the exported tensor interface.

Every forward only re-lays tensors and calls what ouvir.models defines (``ConformerEncoder.step``, the CTC
head, the RNNT predictor and joint): there is no second implementation. The interface is NeMo's ONNX
export (``forward_for_export``), which sherpa-onnx binds by position:

* encoder step: ``audio_signal (B, F, T), length (B,), cache_last_channel (B, L, C, D),
  cache_last_time (B, L, D, K-1), cache_last_channel_len (B,)`` -> ``outputs (B, D, T'),
  encoded_lengths (B,)`` + the three next caches. Caches are batch-first here (NeMo's export layout);
  ``models.state`` keeps the layer-first layout and names them.
* CTC head: ``encoded (B, D, T')`` -> ``logprobs (B, T', V+1)``.
* RNNT decoder (prediction net): ``targets (B, 1) int32, target_length (B,) int32, h, c (P, B, H)`` ->
  ``outputs (B, H, 1), prednet_lengths, h, c`` (the raw LSTM output, as NeMo's ``RNNTDecoder`` export).
* RNNT joiner: ``encoder_outputs (B, D, 1), decoder_outputs (B, H, 1)`` -> raw logits ``(B, 1, 1, V+1)``.
"""

from __future__ import annotations

import torch
from torch import nn

from ouvir.models.encoder import ConformerEncoder
from ouvir.models.heads import PredictorState, RNNTJoint, RNNTPredictor
from ouvir.models.state import EncoderState, state_spec


def encoder_io_names(encoder: ConformerEncoder, context: tuple[int, int]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    spec = state_spec(encoder.cfg, context)
    return ("audio_signal", "length", *spec.input_names), ("outputs", "encoded_lengths", *spec.output_names)


class EncoderStep(nn.Module):
    """``encoder.step`` at one attention context with a fixed ``drop_extra``; batch-first caches."""

    def __init__(self, encoder: ConformerEncoder, context: tuple[int, int], drop_extra: int):
        super().__init__()
        self.encoder = encoder
        self.context = context
        self.drop_extra = drop_extra

    def forward(
        self,
        audio_signal: torch.Tensor,  # (B, F, T)
        length: torch.Tensor,  # (B,)
        cache_last_channel: torch.Tensor,  # (B, L, C, D)
        cache_last_time: torch.Tensor,  # (B, L, D, K-1)
        cache_last_channel_len: torch.Tensor,  # (B,)
    ) -> tuple[torch.Tensor, ...]:
        state = EncoderState(
            cache_last_channel.transpose(0, 1), cache_last_time.transpose(0, 1), cache_last_channel_len
        )  # layer-first
        encoded, lengths, nxt = self.encoder.step(audio_signal, length, state, self.context, self.drop_extra)
        return (
            encoded,  # (B, D, T')
            lengths,  # (B,)
            nxt.cache_last_channel.transpose(0, 1),  # (B, L, C, D)
            nxt.cache_last_time.transpose(0, 1),  # (B, L, D, K-1)
            nxt.cache_last_channel_len,  # (B,)
        )


class EncoderCTC(nn.Module):
    """Encoder step followed by the CTC head: sherpa-onnx's NeMo CTC ``model.onnx`` (out0 = log-probs)."""

    def __init__(self, step: EncoderStep, ctc: nn.Module):
        super().__init__()
        self.step = step
        self.ctc = ctc

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        encoded, *rest = self.step(*inputs)
        return (self.ctc(encoded), *rest)  # (B, T', V+1), ...


class RNNTDecoderStep(nn.Module):
    """One prediction-network step, NeMo ``RNNTDecoder`` export layout (sherpa-onnx ``decoder.onnx``)."""

    def __init__(self, predictor: RNNTPredictor):
        super().__init__()
        self.predictor = predictor

    def forward(
        self, targets: torch.Tensor, target_length: torch.Tensor, h: torch.Tensor, c: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        # targets (B, 1) int32, target_length (B,) int32, h / c (P, B, H)
        g, state = self.predictor(targets.to(torch.int64), PredictorState(h, c))  # (B, 1, H)
        return g.transpose(1, 2), target_length, state.h, state.c  # (B, H, 1), (B,), (P, B, H) x 2


class RNNTJoiner(nn.Module):
    """Joint of one encoder frame and one prediction output -> raw logits (sherpa-onnx ``joiner.onnx``)."""

    def __init__(self, joint: RNNTJoint):
        super().__init__()
        self.joint = joint

    def forward(self, encoder_outputs: torch.Tensor, decoder_outputs: torch.Tensor) -> torch.Tensor:
        enc = self.joint.joint_enc(encoder_outputs.transpose(1, 2))  # (B, 1, J)
        pred = self.joint.joint_pred(decoder_outputs.transpose(1, 2))  # (B, 1, J)
        return self.joint(enc[:, :, None], pred[:, None])  # (B, 1, 1, V+1)
