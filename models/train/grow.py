"""A deeper encoder from a trained one, computing the same function (progressive stacking):

    python -m ouvir.models.train.grow pkg/default_model/model.ouvir --layers 7 --out runs/grow/init.ouvir

then ``train.py --init-from runs/grow/init.ouvir``: training goes on from what the smaller model learned, with the
new layers' capacity. Each new layer goes after an existing one (spread evenly over the depth) and starts as an
identity: its four residual branches end in zeroed projections (the feed-forwards' second linear, attention's
output, the convolution's last pointwise), so only its final LayerNorm acts, and it takes over the previous layer's
final affine (that layer's own becomes 1, 0): LayerNorm of an already normalized input is that input (to eps), so
the grown model's outputs equal the original's within float rounding, offline and streaming (tested).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from ouvir.models.asr import ASRModel, LoadedModel
from ouvir.models.block import ConformerLayer
from ouvir.models.checkpoint import load_checkpoint, save_checkpoint

ZEROED = ("feed_forward1.linear2", "self_attn.linear_out", "conv.pointwise_conv2", "feed_forward2.linear2")


def new_positions(old: int, new: int) -> list[int]:
    """Indexes of the old layers each new one follows (evenly spread, the last layer last)."""
    if not 0 < old <= new:
        raise ValueError(f"grow: from {old} to {new} layers is not growing")
    return [old - 1 - (i * old) // (new - old) for i in range(new - old)][::-1]


def _identity(layer: ConformerLayer, before: ConformerLayer) -> None:
    """Make ``layer`` (placed right after ``before``) the identity on ``before``'s output."""
    for name in ZEROED:
        for p in layer.get_submodule(name).parameters():
            p.zero_()
    layer.norm_out.load_state_dict(before.norm_out.state_dict())
    before.norm_out.weight.fill_(1.0)
    before.norm_out.bias.fill_(0.0)


@torch.no_grad()
def grow(loaded: LoadedModel, layers: int, seed: int = 0) -> LoadedModel:
    cfg = loaded.config
    after = new_positions(cfg.encoder.n_layers, layers)
    grown_cfg = replace(cfg, encoder=replace(cfg.encoder, n_layers=layers))
    torch.manual_seed(seed)  # the new layers' other weights: the default initialization
    model = ASRModel(grown_cfg)
    old_state = loaded.model.state_dict()
    missing, unexpected = model.load_state_dict({k: v for k, v in old_state.items() if ".layers." not in k},
                                                strict=False)
    assert not unexpected and all(".layers." in k for k in missing), (missing, unexpected)
    old_layers, new_layers = loaded.model.encoder.layers, model.encoder.layers
    j = 0
    for i, old_layer in enumerate(old_layers):
        new_layers[j].load_state_dict(old_layer.state_dict())
        j += 1
        for _ in range(after.count(i)):
            _identity(new_layers[j], new_layers[j - 1])
            j += 1
    model.eval()
    return LoadedModel(model, grown_cfg, loaded.tokenizer_model, loaded.window, loaded.fb)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ouvir.models.train.grow", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--layers", type=int, required=True, help="encoder layers of the grown model")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    save_checkpoint(a.out, grow(load_checkpoint(a.checkpoint), a.layers, a.seed))


if __name__ == "__main__":
    main()
