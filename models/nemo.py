"""Load a NeMo ``.nemo`` checkpoint (a tar) safely: no pickle code execution, no extraction to disk.

Weights are read with ``torch.load(weights_only=True)`` and renamed through an explicit NeMo -> ouvir key
table built from the config; a NeMo key the table does not use, or an ouvir key it does not fill, is an
error naming the key(s). Layouts: hybrid RNNT+CTC (``decoder.prediction``, ``joint``, ``ctc_decoder``),
CTC-only (``decoder.decoder_layers.0``) and RNNT-only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from ouvir.models.archive import DEFAULT_LIMITS, ArchiveError, ArchiveLimits, read_members
from ouvir.models.asr import ASRModel, CheckpointError, LoadedModel
from ouvir.models.checkpoint import load_tensors
from ouvir.models.config import ModelConfig, UnsupportedConfig, from_nemo
from ouvir.models.tokenizer import Tokenizer

CONFIG, WEIGHTS, TOKENIZER_SUFFIX = "model_config.yaml", "model_weights.ckpt", "tokenizer.model"
FRONTEND_KEYS = {"window": "preprocessor.featurizer.window", "fb": "preprocessor.featurizer.fb"}


def _wanted(name: str) -> bool:
    return name in (CONFIG, WEIGHTS) or name.endswith(TOKENIZER_SUFFIX)


def head_key_table(cfg: ModelConfig, ctc_prefix: str) -> dict[str, str]:
    """NeMo key -> ouvir key for the CTC / RNNT heads described by ``cfg``."""
    table: dict[str, str] = {}
    params = ("weight", "bias")
    if cfg.ctc is not None:
        table.update({f"{ctc_prefix}.decoder_layers.0.{p}": f"ctc.conv.{p}" for p in params})
    if cfg.rnnt is not None:
        table["decoder.prediction.embed.weight"] = "predictor.embed.weight"
        for layer in range(cfg.rnnt.pred_rnn_layers):
            for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                table[f"decoder.prediction.dec_rnn.lstm.{p}_l{layer}"] = f"predictor.lstm.{p}_l{layer}"
        for nemo, ours in (("enc", "enc"), ("pred", "pred"), ("joint_net.2", "out")):
            table.update({f"joint.{nemo}.{p}": f"joint.{ours}.{p}" for p in params})
    return table


def key_table(model: ASRModel, ctc_prefix: str) -> dict[str, str]:
    """Encoder keys are NeMo's own (the encoder's modules mirror NeMo's names); heads are renamed."""
    table = {k: k for k in model.encoder.state_dict(prefix="encoder.")}
    table.update(head_key_table(model.config, ctc_prefix))
    return table


def rename_state_dict(
    nemo_sd: dict[str, torch.Tensor], table: dict[str, str], expected: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Apply ``table`` to ``nemo_sd``; every NeMo key must be used and every ``expected`` key filled with
    a tensor of its shape."""
    unused = sorted(set(nemo_sd) - set(table))
    missing = sorted(k for k in table if k not in nemo_sd)
    unfilled = sorted(set(expected) - set(table.values()))
    if unused or missing or unfilled:
        raise CheckpointError(
            "state dict does not match the model: "
            + "; ".join(f"{what}: {keys}" for what, keys in (("unused NeMo keys", unused),
                        ("missing NeMo keys", missing), ("ouvir keys without a source", unfilled)) if keys)
        )
    out = {}
    for nemo_key, ours in table.items():
        t = nemo_sd[nemo_key]
        if t.shape != expected[ours].shape:
            raise CheckpointError(f"{nemo_key} has shape {tuple(t.shape)}, {ours} needs {tuple(expected[ours].shape)}")
        out[ours] = t
    return out


def ctc_prefix(model_cfg: dict[str, Any]) -> str:
    """Where the CTC head lives: ``decoder`` in CTC models (ConvASRDecoder), ``ctc_decoder`` in hybrids."""
    target = str((model_cfg.get("decoder") or {}).get("_target_", ""))
    return "decoder" if target.endswith("ConvASRDecoder") else "ctc_decoder"


def _tokenizer_bytes(members: dict[str, bytes], path: Path) -> bytes:
    found = sorted(n for n in members if n.endswith(TOKENIZER_SUFFIX))
    if len(found) != 1:
        raise ArchiveError(f"{path}: expected one *{TOKENIZER_SUFFIX} (SentencePiece) member, found {found}")
    return members[found[0]]


def _check_vocabulary(model_cfg: dict[str, Any], pieces: tuple[str, ...]) -> None:
    for where in ((model_cfg.get("joint") or {}), ((model_cfg.get("aux_ctc") or {}).get("decoder") or {}),
                  (model_cfg.get("decoder") or {})):
        vocab = where.get("vocabulary")
        if vocab and tuple(str(v) for v in vocab) != pieces:
            raise UnsupportedConfig(f"the config's vocabulary ({len(vocab)} entries) differs from the tokenizer's "
                                    f"({len(pieces)} pieces)")


def load_nemo(path: str | Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> LoadedModel:
    """``.nemo`` -> an eval-mode ``ASRModel`` with its config, tokenizer bytes and front-end window / fb."""
    path = Path(path)
    members = read_members(path, _wanted, limits)
    for name in (CONFIG, WEIGHTS):
        if name not in members:
            raise ArchiveError(f"{path}: no {name} member")
    yaml_cfg = yaml.safe_load(members[CONFIG])
    model_cfg = yaml_cfg.get("model", yaml_cfg)
    tokenizer_model = _tokenizer_bytes(members, path)
    pieces = Tokenizer(tokenizer_model).pieces
    _check_vocabulary(model_cfg, pieces)
    cfg = from_nemo(yaml_cfg, vocabulary=pieces)
    nemo_sd = load_tensors(members[WEIGHTS], f"{path}: {WEIGHTS}")
    frontend = {}
    for name, key in FRONTEND_KEYS.items():
        if key not in nemo_sd:
            raise CheckpointError(f"{path}: missing NeMo key {key}")
        frontend[name] = nemo_sd.pop(key).to(torch.float32).numpy()
    model = ASRModel(cfg)
    ours = rename_state_dict(nemo_sd, key_table(model, ctc_prefix(model_cfg)), model.state_dict())
    model.load_state_dict(ours, strict=True)
    model.eval()
    fb = frontend["fb"][0] if frontend["fb"].ndim == 3 else frontend["fb"]  # NeMo stores (1, F, K)
    return LoadedModel(model, cfg, tokenizer_model, np.ascontiguousarray(frontend["window"]), np.ascontiguousarray(fb))
