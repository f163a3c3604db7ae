"""Bundles exported once per test session (exporting is slow: see each fixture's note) and eager references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ouvir.engine.features import log_mel
from ouvir.export.bundle import export_bundle, load_model
from ouvir.models.geometry import streaming_geometry
from ouvir.models.state import state_spec
from ouvir.models.streaming import stream_encoder

MODELS = ("hybrid_multi", "ctc_conformer")


@pytest.fixture(scope="session")
def bundles(nemo_dir, tmp_path_factory):
    """``bundles(model, fmt, quantize="none", method="dynamic")`` -> the bundle directory, exported on first use.

    Times on 2 cores: onnx fp32 hybrid_multi ~85 s, ctc_conformer ~25 s; pte fp32 ~3 min / ~35 s."""
    root = tmp_path_factory.mktemp("bundles")
    made: dict[tuple, Path] = {}

    def get(model: str, fmt: str, quantize: str = "none", method: str = "dynamic") -> Path:
        key = (model, fmt, quantize, method)
        if key not in made:
            torch.set_num_threads(1)
            calibration = [nemo_dir / "test_audio.wav"] if quantize == "int8" else None
            made[key] = export_bundle(nemo_dir / f"{model}.nemo", root / "-".join(key), fmt, quantize, calibration,
                                      method=method, progress=False)
        return made[key]

    return get


@pytest.fixture(scope="session")
def loaded_models(nemo_dir):
    return {m: load_model(nemo_dir / f"{m}.nemo") for m in MODELS}


@pytest.fixture(scope="session")
def audio(nemo_dir) -> np.ndarray:
    return np.load(nemo_dir / "test_audio_f32.npy")


def eager_steps(loaded, context: tuple[int, int], audio: np.ndarray) -> list:
    """NeMo default-mode streaming of ``audio`` through the eager encoder: one StepOutput per chunk."""
    cfg = loaded.config
    features = torch.from_numpy(log_mel(audio, cfg.features, loaded.window, loaded.fb))[None]  # (1, F, T)
    geo = streaming_geometry(cfg.encoder, context, cfg.features.window_stride)
    state = state_spec(cfg.encoder, context).initial(1)
    with torch.inference_mode():
        return list(stream_encoder(loaded.model.encoder, features, torch.tensor([features.shape[2]]), geo, state))
