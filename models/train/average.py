"""Average the weights of checkpoints of one run (NeMo's / icefall's checkpoint averaging):

    python -m ouvir.models.train.average runs/s10/best-step0002800.ouvir runs/s10/best-step0003200.ouvir \\
        --out runs/s10/avg.ouvir

Every checkpoint must have the same config and tokenizer; the first one's front end goes with the result.
Floating-point tensors are averaged; integer ones (counters) must agree and are kept.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ouvir.models.asr import CheckpointError
from ouvir.models.checkpoint import load_checkpoint, save_checkpoint


def average(paths: list[Path], out: Path) -> None:
    if not paths:
        raise ValueError("average: give at least one checkpoint")
    loaded = [load_checkpoint(p) for p in paths]
    first = loaded[0]
    for path, other in zip(paths[1:], loaded[1:], strict=True):
        if other.config != first.config or other.tokenizer_model != first.tokenizer_model:
            raise CheckpointError(f"{path}: another config or tokenizer than {paths[0]}: not one run's checkpoints")
    states = [m.model.state_dict() for m in loaded]
    mean = {}
    for name, tensor in states[0].items():
        if tensor.is_floating_point():
            mean[name] = torch.stack([s[name] for s in states]).mean(dim=0)
        elif all(torch.equal(s[name], tensor) for s in states):
            mean[name] = tensor
        else:
            raise CheckpointError(f"{name}: integer tensors differ between the checkpoints")
    first.model.load_state_dict(mean)
    save_checkpoint(out, first)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ouvir.models.train.average", description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", type=Path, nargs="+")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    average(a.checkpoints, a.out)


if __name__ == "__main__":
    main()
