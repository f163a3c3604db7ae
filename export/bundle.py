"""``export_bundle``: a .nemo / ouvir checkpoint -> a bundle directory (engine/bundle.py reads it).

Layout (everything listed with its sha256 in manifest.json):

    manifest.json
    features/window.npy, features/filterbank.npy   the front end stored with the model
    tokenizer.model                                 SentencePiece model (text)
    onnx:  encoder_first.<la>.onnx, encoder_next.<la>.onnx, ctc_model.<la>.onnx, ctc_head.onnx,
           decoder.onnx, joiner.onnx, weights.bin (shared by all graphs), tokens.txt (sherpa-onnx)
    pte:   model.pte (every graph a method; XNNPACK delegates share identical weights)
    quantization_report.json                        int8 only: accuracy against fp32

``<la>`` names a look-ahead by its attention context, e.g. ``70_13``.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ouvir.engine.backends.torch_backend import chunk_geometry
from ouvir.engine.bundle import sha256_file
from ouvir.export.bundle_writer import (
    check_target,
    publish,
    save_array,
    staging_dir,
    write_bytes,
    write_manifest,
    write_text,
)
from ouvir.export.cli import FORMATS, METHODS, QUANTIZE
from ouvir.export.graphs import graph_specs, lookahead_name
from ouvir.models.asr import LoadedModel
from ouvir.models.config import ModelConfig
from ouvir.models.geometry import streaming_geometry
from ouvir.models.state import state_spec


def load_model(path: str | Path) -> LoadedModel:
    """A ``.nemo`` file or an ouvir checkpoint, eval mode, no gradients."""
    path = Path(path)
    if path.suffix == ".nemo":
        from ouvir.models.nemo import load_nemo

        loaded = load_nemo(path)
    else:
        from ouvir.models.checkpoint import load_checkpoint

        loaded = load_checkpoint(path)
    loaded.model.eval().requires_grad_(False)
    return loaded


def select_contexts(
    cfg: ModelConfig, lookaheads: Sequence[int | str | tuple[int, int]] | None
) -> list[tuple[int, int]]:
    """Attention contexts to export: all (None), or each given as look-ahead ms, ``"70_13"`` or (70, 13)."""
    contexts = list(cfg.encoder.att_context_size)
    if lookaheads is None:
        return contexts
    geos = {ctx: streaming_geometry(cfg.encoder, ctx, cfg.features.window_stride) for ctx in contexts}
    chosen = []
    for want in lookaheads:
        hits = [ctx for ctx, geo in geos.items() if want in (lookahead_name(ctx), ctx, list(ctx))
                or (isinstance(want, int) and round(geo.lookahead_ms) == want)]
        if not hits:
            have = ", ".join(f"{round(g.lookahead_ms)} ms ({lookahead_name(c)})" for c, g in geos.items())
            raise ValueError(f"the model has no look-ahead {want!r}; it has {have}")
        chosen += [c for c in hits if c not in chosen]
    return chosen


def _common_files(loaded: LoadedModel, out: Path, fmt: str) -> dict[str, Any]:
    cfg = loaded.config
    features = {
        "config": cfg.features.to_dict(),
        "window": save_array(out, "features/window.npy", loaded.window),
        "filterbank": save_array(out, "features/filterbank.npy", loaded.fb),
    }
    tokens = {"pieces": list(cfg.vocabulary), "blank_id": cfg.blank_id,
              "tokenizer": write_bytes(out, "tokenizer.model", loaded.tokenizer_model)}
    if fmt == "onnx":
        from ouvir.export.onnx_export import sherpa_tokens

        tokens["sherpa_tokens"] = write_text(out, "tokens.txt", sherpa_tokens(cfg.vocabulary))
    return {"features": features, "tokens": tokens}


def _lookahead_entries(cfg: ModelConfig, contexts: list[tuple[int, int]], graphs: dict[str, dict]) -> dict[str, Any]:
    out = {}
    for ctx in contexts:
        name = lookahead_name(ctx)
        geo = streaming_geometry(cfg.encoder, ctx, cfg.features.window_stride)
        entry_graphs = {role: graphs[f"{role}.{name}"] for role in ("encoder_first", "encoder_next")}
        if f"ctc_model.{name}" in graphs:
            entry_graphs["sherpa_ctc"] = graphs[f"ctc_model.{name}"]
        out[name] = {
            "att_context_size": list(ctx),
            "geometry": geo.to_dict(),
            "chunk_geometry": dataclasses.asdict(chunk_geometry(geo)),
            "state": state_spec(cfg.encoder, ctx).to_dict(),
            "graphs": entry_graphs,
        }
    return out


def _producer(fmt: str) -> dict[str, str]:
    names = ["ouvir", "torch"] + (["onnx", "onnxruntime"] if fmt == "onnx" else ["executorch"])
    return {n: version(n) for n in names}


def export_bundle(
    model_path: str | Path,
    out_dir: str | Path,
    fmt: str = "onnx",
    quantize: str = "none",
    calibration: Sequence[str | Path] | None = None,
    lookaheads: Sequence[int | str | tuple[int, int]] | None = None,
    *,
    method: str = "dynamic",
    references: Sequence[str] | None = None,
    force: bool = False,
    progress: bool = True,
) -> Path:
    """Export ``model_path`` (.nemo or ouvir checkpoint) as a bundle in ``out_dir``.

    ``fmt`` "onnx" | "pte"; ``quantize`` "none" | "int8" with ``method`` "dynamic" | "static". Static needs
    ``calibration`` audio for its scales; the accuracy report is measured on it, or, for dynamic int8 without
    it, on the samples shipped with ouvir (shipped_report_audio). ``references``, one transcript per
    calibration file, add WER. ``lookaheads``: None = all of the model's, else look-ahead
    ms / "70_13" / (70, 13). Returns the bundle directory.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {FORMATS}")
    if quantize not in QUANTIZE:
        raise ValueError(f"quantize {quantize!r} is not one of {QUANTIZE}")
    if method not in METHODS:
        raise ValueError(f"int8 method {method!r} is not one of {METHODS}")
    shipped = quantize == "int8" and not calibration
    if shipped:
        calibration, references = shipped_report_audio(method, references)
    out = Path(out_dir)
    check_target(out, force)
    started = time.perf_counter()
    loaded = load_model(model_path)
    contexts = select_contexts(loaded.config, lookaheads)
    quantizer = None
    if quantize == "int8":
        from ouvir.export.quantize import Int8Quantizer

        quantizer = Int8Quantizer(loaded, contexts, [Path(p) for p in calibration], fmt, method, progress, shipped)
    staged = staging_dir(out)
    try:
        _write(loaded, Path(model_path), staged, fmt, contexts, quantizer, references, progress, started)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return publish(staged, out, force)


def shipped_report_audio(method: str, references: Sequence[str] | None) -> tuple[list[Path], list[str]]:
    """Dynamic int8 without calibration audio: its accuracy report runs on the default model's samples, which
    ship with ouvir, against their transcripts. Static int8 needs audio of the model's own domain for its
    scales, and references go with the calibration files they transcribe."""
    from ouvir.engine.default_model import samples

    if method == "static":
        raise ValueError("static int8 export needs calibration audio (--calibration): its activation scales are "
                         "measured on it (dynamic int8, the default, needs none)")
    if references is not None:
        raise ValueError("references transcribe the --calibration files: give both, or neither")
    try:
        shipped = samples()
    except FileNotFoundError as e:
        raise ValueError(f"dynamic int8 without --calibration reports its accuracy on ouvir's shipped samples: {e}; "
                         "pass --calibration AUDIO") from e
    return [s.path for s in shipped], [s.text for s in shipped]


def _write(loaded: LoadedModel, model_path: Path, out: Path, fmt: str, contexts: list[tuple[int, int]],
           quantizer: Any, references: Sequence[str] | None, progress: bool, started: float) -> None:
    cfg = loaded.config
    specs = graph_specs(loaded.model, contexts)
    common = _common_files(loaded, out, fmt)
    export_report: dict[str, Any] = {}
    if fmt == "onnx":
        from ouvir.export.onnx_export import export_graphs

        graphs = export_graphs(cfg, specs, out, quantizer.onnx if quantizer else None, progress)
    else:
        from ouvir.export.pte_export import export_program

        graphs, export_report = export_program(specs, out, quantizer.pt2e if quantizer else None, progress)
    default = cfg.encoder.default_context if cfg.encoder.default_context in contexts else contexts[0]
    manifest: dict[str, Any] = {
        "producer": _producer(fmt),
        "source": {"file": model_path.name, "sha256": sha256_file(model_path)},
        "backend": fmt,
        "precision": "fp32" if quantizer is None else "int8",
        "quantization": None if quantizer is None else quantizer.describe(),
        "model": cfg.to_dict(),
        **common,
        "decoders": list(cfg.decoders),
        "default_lookahead": lookahead_name(default),
        "lookaheads": _lookahead_entries(cfg, contexts, graphs),
        "heads": {s.role: graphs[s.name] for s in specs if s.role in ("ctc", "rnnt_decoder", "rnnt_joint")},
        "export": {**export_report, "seconds": round(time.perf_counter() - started, 1)},
    }
    write_manifest(out, manifest)
    if quantizer is not None:
        manifest["quantization"]["report"] = write_text(out, "quantization_report.json",
                                                        quantizer.report(out, references))
        write_manifest(out, manifest)
