"""Checkpoint averaging: the mean of every floating-point weight, and refusal of checkpoints of other models."""

from __future__ import annotations

import pytest
import torch

from ouvir.models.asr import CheckpointError
from ouvir.models.checkpoint import load_checkpoint, save_checkpoint
from ouvir.models.nemo import load_nemo
from ouvir.models.train.average import average


def test_weights_are_averaged(tmp_path, nemo_dir):
    model = load_nemo(nemo_dir / "hybrid_multi.nemo")
    save_checkpoint(tmp_path / "a.ouvir", model)
    original = {k: v.clone() for k, v in model.model.state_dict().items()}
    with torch.no_grad():
        for p in model.model.parameters():
            p.add_(1.0)
    save_checkpoint(tmp_path / "b.ouvir", model)
    average([tmp_path / "a.ouvir", tmp_path / "b.ouvir"], tmp_path / "mean.ouvir")
    mean = load_checkpoint(tmp_path / "mean.ouvir").model.state_dict()
    names = {n for n, _ in model.model.named_parameters()}
    assert names and names <= set(mean)
    for name, tensor in original.items():
        want = tensor + 0.5 if name in names else tensor
        torch.testing.assert_close(mean[name], want, atol=1e-6, rtol=0, msg=name)


def test_checkpoints_of_another_model_are_refused(tmp_path, nemo_dir):
    save_checkpoint(tmp_path / "a.ouvir", load_nemo(nemo_dir / "hybrid_multi.nemo"))
    save_checkpoint(tmp_path / "b.ouvir", load_nemo(nemo_dir / "ctc_conformer.nemo"))
    with pytest.raises(CheckpointError, match=r"b\.ouvir: another config or tokenizer"):
        average([tmp_path / "a.ouvir", tmp_path / "b.ouvir"], tmp_path / "mean.ouvir")
    assert not (tmp_path / "mean.ouvir").exists()
