"""What a bench run measures: the configurations (backend x precision x look-ahead) and the model files
each one opens: the given checkpoint or bundle, or bundles exported from a checkpoint into a cache.

A ``.nemo`` / ouvir checkpoint runs on the torch backend as it is; onnx / pte runs of it use bundles
exported once into ``<cache>/<checkpoint sha256>/<backend>-<precision>`` (ouvir.export, imported only
then). A bundle directory runs only as what it is (its backend and precision). ``--config large`` first
writes the random-weight large model (ouvir.models.large) as a checkpoint in the cache, ``--config NAME`` a
published model's config with random weights (ouvir.models.published).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ouvir.engine.bundle import MANIFEST, load_bundle, read_manifest, sha256_file

PRECISION = {"none": "fp32", "int8": "int8"}


def default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ouvir" / "bench"


@dataclass(frozen=True)
class Config:
    backend: str  # torch | onnx | pte
    precision: str  # fp32 | int8
    lookahead_ms: int | None  # None: the model's default
    method: str | None = None  # int8 only: "dynamic" | "static" quantization (export_bundle's ``method``)

    @property
    def label(self) -> str:
        method = f" {self.method}" if self.method else ""
        lookahead = "" if self.lookahead_ms is None else f" {self.lookahead_ms} ms"
        return f"{self.backend} {self.precision}{method}{lookahead}"


def configurations(
    backends: list[str], quantize: list[str], lookaheads: list[int | None], methods: list[str]
) -> tuple[list[Config], list[str]]:
    """Every combination in the given order (int8 once per quantization method), and why the impossible
    ones (torch int8) are skipped."""
    out, skipped = [], []
    for la in lookaheads:
        for b in backends:
            for q in quantize:
                if b == "torch" and q != "none":
                    skipped.append(f"torch {PRECISION[q]}: the torch backend runs fp32 only")
                    continue
                out += [Config(b, PRECISION[q], la, m) for m in (methods if q == "int8" else [None])]
    return out, sorted(set(skipped))


@dataclass
class ModelSource:
    """Where each configuration of one model lives; bundles are exported on first use."""

    name: str
    info: dict[str, Any]  # for the report
    checkpoint: Path | None = None  # a .nemo / ouvir checkpoint file (torch, and the source of exports)
    bundle: Path | None = None  # a given bundle directory
    cache: Path | None = None  # where exports of ``checkpoint`` go
    lookaheads: list[int] | None = None  # look-aheads to export (None: all of the model's)
    calibration: Path | None = None  # int8 exports: calibration audio (and their accuracy report)
    failed: dict[Path, str] = field(default_factory=dict)  # exports that failed in this run, and why

    def unavailable(self, cfg: Config) -> str | None:
        """Why ``cfg`` cannot run on this model, or None."""
        if self.bundle is not None:
            m = read_manifest(self.bundle)
            if (cfg.backend, cfg.precision) != (m["backend"], m["precision"]):
                return f"{cfg.label}: the bundle {self.bundle} is {m['backend']} {m['precision']}"
        return None

    def path(self, cfg: Config) -> Path:
        """The file or bundle directory ``cfg`` opens (exporting it first when needed)."""
        if self.bundle is not None:
            return self.bundle
        assert self.checkpoint is not None and self.cache is not None
        if cfg.backend == "torch":
            return self.checkpoint
        las = "all" if self.lookaheads is None else "+".join(str(x) for x in self.lookaheads)
        name = f"{cfg.backend}-{cfg.precision}" + (f"-{cfg.method}" if cfg.method else "") + f"-{las}"
        return export_cached(self, cfg, self.cache / name)


def export_cached(source: ModelSource, cfg: Config, out: Path) -> Path:
    """A bundle of ``source.checkpoint`` for ``cfg`` at ``out``, exported unless already there."""
    if (out / MANIFEST).is_file():
        return out
    from ouvir.export.bundle import export_bundle

    assert source.checkpoint is not None
    partial = out.with_name(out.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    if out in source.failed:
        raise RuntimeError(f"{source.failed[out]} (the same export failed earlier in this run)")
    print(f"ouvir bench: exporting {source.checkpoint.name} as {cfg.label} into {out} (once; cached)", flush=True)
    try:
        export_bundle(
            source.checkpoint, partial, fmt=cfg.backend, quantize="none" if cfg.precision == "fp32" else "int8",
            calibration=[source.calibration] if cfg.precision == "int8" else None, lookaheads=source.lookaheads,
            method=cfg.method or "dynamic",
        )
    except Exception as e:
        source.failed[out] = f"{type(e).__name__}: {e}"
        shutil.rmtree(partial, ignore_errors=True)
        raise
    partial.rename(out)
    return out


def model_bytes(path: Path) -> int:
    """Size of what a configuration loads: the checkpoint file, or the whole bundle (its graphs share
    weights across look-aheads: ONNX through one weights.bin, a .pte as one program)."""
    if path.is_file():
        return path.stat().st_size
    return sum(f["bytes"] for f in read_manifest(path)["files"].values())


def sherpa_files(bundle_dir: Path, lookahead_ms: int | None, decoder: str | None) -> dict[str, str] | None:
    """The files sherpa-onnx loads for this look-ahead of an ONNX bundle (role -> file; None: not ONNX):
    the transducer (encoder_next, decoder, joiner) or, for the CTC decoder, the merged NeMo CTC model."""
    bundle = load_bundle(bundle_dir, verify=False)
    if bundle.backend != "onnx":
        return None
    la = bundle.select(lookahead_ms)
    tokens = bundle.manifest["tokens"]["sherpa_tokens"]
    if (decoder or bundle.decoders[0]) == "ctc":
        return {"model": la.extra["sherpa_ctc"].file, "tokens": tokens}
    return {"encoder": la.encoder_next.file, "decoder": bundle.heads["rnnt_decoder"].file,
            "joiner": bundle.heads["rnnt_joint"].file, "tokens": tokens}


def file_source(model: Path, cache: Path, lookaheads: list[int] | None, calibration: Path) -> ModelSource:
    if model.is_dir():
        m = read_manifest(model)
        return ModelSource(model.name, {"name": str(model), "kind": "bundle", "backend": m["backend"],
                                        "precision": m["precision"]}, bundle=model)
    digest = sha256_file(model)
    return ModelSource(model.name, {"name": str(model), "kind": "checkpoint", "sha256": digest},
                       checkpoint=model, cache=cache / digest[:16], lookaheads=lookaheads, calibration=calibration)


def large_source(lookaheads: list[int], seed: int, audio: np.ndarray, audio_path: Path, cache: Path) -> ModelSource:
    """The random-weight large model with exactly these look-aheads, built once per (look-aheads, seed,
    calibration audio) into the cache."""
    from ouvir.models.large import CALIBRATION_S, EMISSION_RATE, RECIPE, build_large, context_for

    contexts = [context_for(ms) for ms in lookaheads]
    calibration = np.resize(audio, int(CALIBRATION_S * 16000))  # the bench audio, looped, sets the blank bias
    key = hashlib.sha256(json.dumps([RECIPE, contexts, seed, EMISSION_RATE, CALIBRATION_S]).encode()
                         + calibration.tobytes())
    # keyed by what shapes the weights; rebuild by deleting the folder when models/large.py changes
    root = cache / f"large-{key.hexdigest()[:16]}"
    checkpoint, info_path = root / "model.ouvir", root / "model.json"
    if not (checkpoint.is_file() and info_path.is_file()):
        print(f"ouvir bench: building the random-weight large model in {root} (once; cached)", flush=True)
        info = build_large(checkpoint, contexts, seed, calibration)
        info_path.write_text(json.dumps(info, indent=1))
    info = {"name": "large (NeMo streaming recipe, seeded random weights)", "kind": "checkpoint",
            **json.loads(info_path.read_text())}
    return ModelSource("large", info, checkpoint=checkpoint, cache=root, lookaheads=lookaheads, calibration=audio_path)



def published_source(name: str, lookaheads: list[int], seed: int, audio: np.ndarray, audio_path: Path,
                     cache: Path) -> ModelSource:
    """A published model's config with seeded random weights (every look-ahead calibrated), built once per
    (name, seed, calibration audio) into the cache; ``lookaheads`` are the ones exported."""
    from ouvir.models.large import CALIBRATION_S, EMISSION_RATE
    from ouvir.models.published import PUBLISHED, build_published

    calibration = np.resize(audio, int(CALIBRATION_S * 16000))
    key = hashlib.sha256(json.dumps([name, repr(PUBLISHED[name]), seed, EMISSION_RATE, CALIBRATION_S]).encode()
                         + calibration.tobytes())
    root = cache / f"{name}-{key.hexdigest()[:16]}"
    checkpoint, info_path = root / "model.ouvir", root / "model.json"
    if not (checkpoint.is_file() and info_path.is_file()):
        print(f"ouvir bench: building {name} with random weights in {root} (once; cached)", flush=True)
        info = build_published(checkpoint, name, seed, calibration)
        info_path.write_text(json.dumps(info, indent=1))
    info = {"name": f"{name} (published config, seeded random weights)", "kind": "checkpoint",
            **json.loads(info_path.read_text())}
    return ModelSource(name, info, checkpoint=checkpoint, cache=root, lookaheads=lookaheads, calibration=audio_path)
