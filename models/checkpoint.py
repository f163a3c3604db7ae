"""ouvir's own checkpoint: an uncompressed tar read back through the safe archive reader.

Members: ``ouvir.json`` (format, version, ``ModelConfig.to_dict()``), ``weights.pt`` (the model's state
dict, ``torch.save``, float32 or float16 weights; loaded with ``weights_only=True`` into the float32 model),
``frontend.pt`` (window and filterbank) and ``tokenizer.model`` (SentencePiece). Writing is atomic (temporary
file, then rename).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from ouvir.models.archive import DEFAULT_LIMITS, ArchiveError, ArchiveLimits, read_members
from ouvir.models.asr import ASRModel, CheckpointError, LoadedModel
from ouvir.models.config import ModelConfig
from ouvir.models.tokenizer import Tokenizer

FORMAT, VERSION = "ouvir-checkpoint", 1
META, WEIGHTS, FRONTEND, TOKENIZER = "ouvir.json", "weights.pt", "frontend.pt", "tokenizer.model"


def _torch_bytes(obj: object) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_checkpoint(path: str | Path, loaded: LoadedModel, half: bool = False) -> None:
    """``half``: floating-point weights stored as float16 (half the file); they load back into the float32 model,
    which computes in float32 as always (what the default model ships: its builds are exported from those weights)."""
    path = Path(path)
    meta = {"format": FORMAT, "version": VERSION, "config": loaded.config.to_dict()}
    weights = {k: _stored(v.detach().cpu().contiguous(), half) for k, v in loaded.model.state_dict().items()}
    frontend = {"window": torch.from_numpy(loaded.window.copy()), "fb": torch.from_numpy(loaded.fb.copy())}
    members = {
        META: json.dumps(meta, indent=1, ensure_ascii=False).encode(),
        WEIGHTS: _torch_bytes(weights),
        FRONTEND: _torch_bytes(frontend),
        TOKENIZER: loaded.tokenizer_model,
    }
    tmp = path.with_name(path.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, path)


def _stored(tensor: torch.Tensor, half: bool) -> torch.Tensor:
    return tensor.half() if half and tensor.is_floating_point() else tensor


def load_tensors(data: bytes, what: str) -> dict[str, torch.Tensor]:
    """``torch.load(weights_only=True)`` of a plain ``{name: tensor}`` dict; anything else is refused."""
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
        raise CheckpointError(f"{what}: refused or unreadable ({e})") from None
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f"{what} is not a plain dict of tensors")
    return obj


def load_checkpoint(path: str | Path, limits: ArchiveLimits = DEFAULT_LIMITS) -> LoadedModel:
    path = Path(path)
    names = (META, WEIGHTS, FRONTEND, TOKENIZER)
    members = read_members(path, lambda n: n in names, limits)
    absent = [n for n in names if n not in members]
    if absent:
        raise ArchiveError(f"{path}: not an ouvir checkpoint, missing {absent}")
    meta = json.loads(members[META])
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: unsupported format {meta.get('format')!r} version {meta.get('version')!r}")
    cfg = ModelConfig.from_dict(meta["config"])
    if Tokenizer(members[TOKENIZER]).pieces != cfg.vocabulary:
        raise CheckpointError(f"{path}: the tokenizer's pieces differ from the config's vocabulary")
    model = ASRModel(cfg)
    try:
        model.load_state_dict(load_tensors(members[WEIGHTS], f"{path}: {WEIGHTS}"), strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: {e}") from None
    model.eval()
    frontend = load_tensors(members[FRONTEND], f"{path}: {FRONTEND}")
    if set(frontend) != {"window", "fb"}:
        raise CheckpointError(f"{path}: {FRONTEND} holds {sorted(frontend)}, expected ['fb', 'window']")
    window, fb = (np.ascontiguousarray(frontend[k].numpy(), dtype=np.float32) for k in ("window", "fb"))
    return LoadedModel(model, cfg, members[TOKENIZER], window, fb)
