"""ouvir's own checkpoint: save -> load round-trips config, weights, tokenizer, front end and outputs."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import torch

from ouvir.models.archive import ArchiveError, read_members
from ouvir.models.asr import CheckpointError
from ouvir.models.checkpoint import load_checkpoint, save_checkpoint
from ouvir.models.decoding import ctc_greedy, ctc_initial_state, rnnt_greedy, rnnt_initial_state
from ouvir.models.nemo import load_nemo
from tests.conftest import FIXTURE_MODELS


@torch.no_grad()
def _outputs(loaded, features):
    m = loaded.model
    enc, enc_len = m.encoder(features, torch.tensor([features.shape[-1] - 1]))
    out = {"encoded": enc, "ctc": m.ctc(enc) if m.ctc is not None else None}
    if m.ctc is not None:
        out["ctc_tokens"] = ctc_greedy(out["ctc"], enc_len, ctc_initial_state(1, loaded.config.blank_id))[0].tokens
    if m.predictor is not None:
        hyp, state = rnnt_greedy(m.predictor, m.joint, enc, enc_len, rnnt_initial_state(m.predictor, m.joint, 1),
                                 loaded.config.rnnt.max_symbols)
        out["rnnt_tokens"], out["rnnt_state"] = hyp.tokens, state
    return out


@pytest.mark.parametrize("name", FIXTURE_MODELS)
def test_round_trip(tmp_path, nemo_dir, name):
    original = load_nemo(nemo_dir / f"{name}.nemo")
    path = tmp_path / "model.ouvir"
    save_checkpoint(path, original)
    restored = load_checkpoint(path)
    assert restored.config == original.config
    assert restored.config.to_dict() == original.config.to_dict()
    assert restored.tokenizer_model == original.tokenizer_model
    np.testing.assert_array_equal(restored.window, original.window)
    np.testing.assert_array_equal(restored.fb, original.fb)
    a, b = original.model.state_dict(), restored.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not restored.model.training
    features = torch.from_numpy(np.load(nemo_dir / f"{name}_reference.npz")["preproc.features"])
    ours, theirs = _outputs(original, features), _outputs(restored, features)
    assert torch.equal(ours["encoded"], theirs["encoded"]) and torch.equal(ours["ctc"], theirs["ctc"])
    assert ours["ctc_tokens"] == theirs["ctc_tokens"] and len(ours["ctc_tokens"][0]) > 20
    if "rnnt_tokens" in ours:
        assert ours["rnnt_tokens"] == theirs["rnnt_tokens"]
        assert all(torch.equal(x, y) for x, y in zip(ours["rnnt_state"], theirs["rnnt_state"], strict=True))
    assert sorted(read_members(path, lambda n: True)) == ["frontend.pt", "ouvir.json", "tokenizer.model",
                                                          "weights.pt"]


def test_half_stores_float16_and_loads_the_rounded_weights_in_float32(tmp_path, nemo_dir):
    original = load_nemo(nemo_dir / "hybrid_multi.nemo")
    save_checkpoint(tmp_path / "full.ouvir", original)
    save_checkpoint(tmp_path / "half.ouvir", original, half=True)
    full, half = (read_members(tmp_path / f"{n}.ouvir", lambda n: n == "weights.pt")["weights.pt"]
                  for n in ("full", "half"))
    assert len(half) < 0.55 * len(full)
    stored = torch.load(io.BytesIO(half))
    restored = load_checkpoint(tmp_path / "half.ouvir").model.state_dict()
    for name, weight in original.model.state_dict().items():
        if weight.is_floating_point():
            assert stored[name].dtype == torch.float16 and restored[name].dtype == torch.float32
            assert torch.equal(restored[name], weight.half().float()), name
        else:  # e.g. BatchNorm's step count
            assert torch.equal(restored[name], weight)


def _rewrite(src, dst, **replace: bytes):
    members = {**read_members(src, lambda n: True), **replace}
    with tarfile.open(dst, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return dst


def test_refusals(tmp_path, nemo_dir):
    path = tmp_path / "model.ouvir"
    save_checkpoint(path, load_nemo(nemo_dir / "ctc_conformer.nemo"))
    members = read_members(path, lambda n: True)
    meta = json.loads(members["ouvir.json"])
    with pytest.raises(CheckpointError, match="unsupported format 'ouvir-checkpoint' version 99"):
        load_checkpoint(_rewrite(path, tmp_path / "v.ouvir", **{"ouvir.json": json.dumps({**meta, "version": 99})
                                                                .encode()}))
    weights = torch.load(io.BytesIO(members["weights.pt"]), weights_only=True)
    del weights["ctc.conv.bias"]
    buf = io.BytesIO()
    torch.save(weights, buf)
    with pytest.raises(CheckpointError, match=r'Missing key\(s\) in state_dict: "ctc\.conv\.bias"'):
        load_checkpoint(_rewrite(path, tmp_path / "w.ouvir", **{"weights.pt": buf.getvalue()}))
    other_tok = read_members(nemo_dir / "hybrid_multi.nemo", lambda n: n.endswith("tokenizer.model"))
    with pytest.raises(CheckpointError, match="tokenizer's pieces differ"):
        load_checkpoint(_rewrite(path, tmp_path / "t.ouvir", **{"tokenizer.model": next(iter(other_tok.values()))}))
    with pytest.raises(ArchiveError, match=r"not an ouvir checkpoint, missing \['ouvir\.json'"):
        load_checkpoint(nemo_dir / "ctc_conformer.nemo")
