"""One training step's loss and the validation pass (greedy RNNT and CTC word error rates)."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable
from typing import NamedTuple

import torch

from ouvir.models.asr import ASRModel
from ouvir.models.decoding import ctc_greedy, ctc_initial_state, rnnt_greedy, rnnt_initial_state
from ouvir.models.tokenizer import Tokenizer
from ouvir.models.train.batching import Batch
from ouvir.models.train.loss import ctc_loss, rnnt_loss
from ouvir.models.train.wer import word_errors


class Losses(NamedTuple):
    total: torch.Tensor  # () (1 - w) * rnnt + w * ctc
    rnnt: torch.Tensor  # () mean per-utterance transducer NLL
    ctc: torch.Tensor  # () mean per-utterance CTC NLL


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (losses are computed in fp32 regardless); plain fp32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class Outputs(NamedTuple):
    encoded: torch.Tensor  # (B, D, T) encoder output
    lengths: torch.Tensor  # (B,) int64 valid encoder frames
    log_probs: torch.Tensor  # (B, T, V+1) CTC log-probs
    logits: torch.Tensor | None  # (B, T, U+1, V+1) raw joint logits for every (frame, label prefix); None: CTC only


def forward(model: ASRModel, batch: Batch, context: tuple[int, int], rnnt: bool = True,
            train_encoder: bool = True) -> Outputs:
    """Encoder at ``context`` -> CTC head, and (``rnnt``) the RNNT joint over the targets (teacher forcing).

    ``rnnt=False`` (a CTC-only phase) skips the prediction net and the (B, T, U+1, V+1) joint: on one CPU thread
    they and the transducer loss are 30 % of a hybrid step. ``train_encoder=False`` (an RNNT-head phase over a
    trained encoder) runs the encoder and CTC head without autograd, so only the prediction net and joint learn.
    """
    blank = model.config.blank_id
    device = batch.features.device
    with autocast(device):
        with torch.set_grad_enabled(train_encoder and torch.is_grad_enabled()):
            encoded, enc_len = model.encoder(batch.features, batch.lengths, context)  # (B, D, T)
            log_probs = model.ctc(encoded)  # (B, T, V+1)
        if not rnnt:
            return Outputs(encoded, enc_len, log_probs, None)
        batch_size = batch.targets.shape[0]
        sos = torch.full((batch_size, 1), blank, dtype=torch.int64, device=device)  # (B, 1)
        g, _ = model.predictor(torch.cat([sos, batch.targets], dim=1), model.predictor.initial_state(batch_size))
        enc_proj = model.joint.joint_enc(encoded.transpose(1, 2))  # (B, T, J)
        pred_proj = model.joint.joint_pred(g)  # (B, U+1, J)
        logits = model.joint(enc_proj[:, :, None], pred_proj[:, None])  # (B, T, U+1, V+1)
    return Outputs(encoded, enc_len, log_probs, logits)


def hybrid_loss(out: Outputs, batch: Batch, blank: int, ctc_weight: float, fastemit_lambda: float = 0.0) -> Losses:
    """``(1 - ctc_weight) * RNNT + ctc_weight * CTC``, each the per-utterance NLL averaged over the batch.

    Outputs without joint logits (``forward(..., rnnt=False)``) need ``ctc_weight`` 1; their RNNT loss reads 0.
    """
    ctc = ctc_loss(out.log_probs, batch.targets, out.lengths, batch.target_lengths, blank).mean()
    if out.logits is None:
        if ctc_weight != 1.0:
            raise ValueError(f"no RNNT joint outputs for a loss with ctc_weight {ctc_weight}")
        return Losses(ctc, ctc.new_zeros(()), ctc)
    rnnt = rnnt_loss(out.logits, batch.targets, out.lengths, batch.target_lengths, blank, fastemit_lambda).mean()
    return Losses((1.0 - ctc_weight) * rnnt + ctc_weight * ctc, rnnt, ctc)


class Evaluation(NamedTuple):
    wer_rnnt: float
    wer_ctc: float
    loss: float  # hybrid loss (no FastEmit), mean over batches
    utterances: int
    examples: list[tuple[str, str, str]]  # (reference, RNNT hypothesis, CTC hypothesis), the first few


@torch.no_grad()
def evaluate(model: ASRModel, batches: Iterable[Batch], tokenizer: Tokenizer, device: torch.device,
             ctc_weight: float, n_examples: int = 3) -> Evaluation:
    """Offline encoder at the default look-ahead (= streaming output), batched greedy decoding on CPU.

    With ``ctc_weight`` 1 (a CTC-only phase) the untrained RNNT head is neither run nor scored: its WER reads 1.
    """
    rnnt = ctc_weight < 1.0
    was_training = model.training
    model.eval()
    context = model.config.encoder.default_context
    predictor, joint = model.predictor, model.joint
    if device.type != "cpu":  # the greedy decoders build their state tensors on the CPU
        predictor, joint = copy.deepcopy(predictor).cpu(), copy.deepcopy(joint).cpu()
    max_symbols = model.config.rnnt.max_symbols
    errors = {"rnnt": 0, "ctc": 0}
    words = utterances = 0
    loss_sum, loss_batches = 0.0, 0
    examples: list[tuple[str, str, str]] = []
    for batch in batches:
        batch = batch.to(device)
        out = forward(model, batch, context, rnnt)
        loss_sum += float(hybrid_loss(out, batch, model.config.blank_id, ctc_weight).total)
        loss_batches += 1
        encoded, enc_len, log_probs = out.encoded.float().cpu(), out.lengths.cpu(), out.log_probs.float().cpu()
        size = encoded.shape[0]
        ctc_hyp, _ = ctc_greedy(log_probs, enc_len, ctc_initial_state(size, model.config.blank_id))
        if rnnt:
            rnnt_tokens = rnnt_greedy(predictor, joint, encoded, enc_len, rnnt_initial_state(predictor, joint, size),
                                      max_symbols)[0].tokens
        else:
            rnnt_tokens = [[] for _ in range(size)]
        for ref, r_tok, c_tok in zip(batch.texts, rnnt_tokens, ctc_hyp.tokens, strict=True):
            r_text, c_text = tokenizer.decode(r_tok), tokenizer.decode(c_tok)
            e_r, n = word_errors(ref, r_text)
            e_c, _ = word_errors(ref, c_text)
            errors["rnnt"] += e_r
            errors["ctc"] += e_c
            words += n
            utterances += 1
            if len(examples) < n_examples:
                examples.append((ref, r_text, c_text))
    model.train(was_training)
    denom = max(words, 1)
    return Evaluation(errors["rnnt"] / denom, errors["ctc"] / denom, loss_sum / max(loss_batches, 1), utterances,
                      examples)
