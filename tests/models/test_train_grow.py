"""models/train/grow.py: a deeper encoder that starts as the same function (new layers are identities)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ouvir.models.checkpoint import load_checkpoint, save_checkpoint
from ouvir.models.geometry import streaming_geometry
from ouvir.models.nemo import load_nemo
from ouvir.models.state import state_spec
from ouvir.models.streaming import stream_encoder
from ouvir.models.train.grow import grow, main, new_positions

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_new_layers_spread_over_the_depth():
    assert new_positions(6, 7) == [5]
    assert new_positions(6, 8) == [2, 5]
    assert new_positions(2, 6) == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="not growing"):
        new_positions(6, 5)


@torch.no_grad()
def _encoded(loaded, features):
    offline, _ = loaded.model.encoder(features, torch.tensor([features.shape[-1]]))
    cfg = loaded.config.encoder
    context = cfg.att_context_size[-1]
    geo = streaming_geometry(cfg, context, loaded.config.features.window_stride)
    steps = stream_encoder(loaded.model.encoder, features, torch.tensor([features.shape[-1]]), geo,
                           state_spec(cfg, context).initial(1))
    return offline, torch.cat([s.encoded for s in steps], dim=-1)


def test_the_grown_model_computes_what_the_original_did(nemo_dir, tmp_path):
    loaded = load_nemo(nemo_dir / "hybrid_multi.nemo")
    layers = loaded.config.encoder.n_layers
    save_checkpoint(tmp_path / "small.ouvir", loaded)
    main([str(tmp_path / "small.ouvir"), "--layers", str(layers + 2), "--out", str(tmp_path / "big.ouvir")])
    grown = load_checkpoint(tmp_path / "big.ouvir")
    assert grown.config.encoder.n_layers == layers + 2
    assert sum(p.numel() for p in grown.model.parameters()) > sum(p.numel() for p in loaded.model.parameters())
    features = torch.from_numpy(np.load(nemo_dir / "hybrid_multi_reference.npz")["preproc.features"])
    for before, after in zip(_encoded(loaded, features), _encoded(grown, features), strict=True):
        assert before.shape == after.shape
        torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    # Not a copy: the new layers' inner weights are fresh, their output projections zero.
    new, previous = grown.model.encoder.layers[layers + 1], grown.model.encoder.layers[layers]
    assert not torch.equal(new.feed_forward1.linear1.weight, previous.feed_forward1.linear1.weight)
    assert not new.self_attn.linear_out.weight.any()


def test_grow_is_deterministic(nemo_dir):
    loaded = load_nemo(nemo_dir / "hybrid_multi.nemo")
    a, b = (grow(load_nemo(nemo_dir / "hybrid_multi.nemo"), loaded.config.encoder.n_layers + 1) for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values(),
                                                  strict=True))
