"""ONNX export following the sherpa-onnx / NeMo contract (shared/reference/sherpa-onnx-nemo-contract.md).

* One graph per ``GraphSpec`` (dynamo exporter, opset 18, dynamic batch, fixed time axis for encoders).
* ``encoder_next.<la>`` is NeMo's exported encoder (pad_and_drop semantics: window = chunk_size[1] +
  pre_encode_cache_size[1], drop 2) and carries sherpa-onnx's metadata; ``ctc_model.<la>`` is that encoder
  merged with the CTC head (sherpa-onnx's NeMo CTC ``model.onnx``), made by graph composition, not a
  second trace. ``decoder`` has four outputs (sherpa picks its NeMo transducer path by that).
* ``share_weights`` moves every initializer of >= 1 KiB into one ``weights.bin``, stored once per distinct
  content, so the look-aheads' graphs (and the CTC model) share their weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import onnx
import torch
from onnx import numpy_helper
from onnx.compose import merge_models
from onnx.external_data_helper import set_external_data
from tqdm import tqdm

from ouvir.export.graphs import GraphSpec, trace
from ouvir.models.config import ModelConfig
from ouvir.models.geometry import StreamingGeometry, streaming_geometry

OPSET = 18
WEIGHTS_FILE = "weights.bin"
_ALIGN = 64


def to_onnx(spec: GraphSpec) -> onnx.ModelProto:
    """Trace ``spec`` (dynamic batch) and convert it; tensor names are the spec's."""
    program = torch.onnx.export(
        trace(spec, dynamic_batch=True), spec.example, input_names=list(spec.inputs),
        output_names=list(spec.outputs), opset_version=OPSET, dynamo=True, external_data=False, verbose=False,
    )
    model = program.model_proto
    for node in model.graph.node:  # the exporter's debug records: stack traces with local paths, fx nodes
        del node.metadata_props[:]
    del model.graph.value_info[:]  # intermediate shapes: runtimes infer them
    got = (tuple(i.name for i in model.graph.input), tuple(o.name for o in model.graph.output))
    if got != (spec.inputs, spec.outputs):
        raise RuntimeError(f"{spec.name}: exported tensor names {got} differ from {(spec.inputs, spec.outputs)}")
    return model


def sherpa_ctc_model(encoder: onnx.ModelProto, head: onnx.ModelProto) -> onnx.ModelProto:
    """encoder_next + CTC head -> sherpa-onnx's NeMo CTC model: out0 ``logprobs`` (B, T', V+1), then the
    encoder's lengths and next caches (sherpa binds by position)."""
    merged = merge_models(encoder, head, io_map=[("outputs", "encoded")], prefix2="ctc/")
    outputs = {o.name: o for o in merged.graph.output}
    order = ["ctc/logprobs"] + [o.name for o in encoder.graph.output if o.name != "outputs"]
    del merged.graph.output[:]
    merged.graph.output.extend(outputs[name] for name in order)
    rename = {"ctc/logprobs": "logprobs"}
    for node in merged.graph.node:
        node.output[:] = [rename.get(n, n) for n in node.output]
    merged.graph.output[0].name = "logprobs"
    return merged


def sherpa_metadata(cfg: ModelConfig, geo: StreamingGeometry) -> dict[str, str]:
    """sherpa-onnx's metadata_props for an encoder / CTC model of look-ahead ``geo`` (contract §1)."""
    enc = cfg.encoder
    meta = {
        "window_size": geo.chunk_size[1] + geo.pre_encode_cache_size[1],
        "chunk_shift": geo.chunk_size[1],
        "subsampling_factor": enc.subsampling_factor,
        "vocab_size": len(cfg.vocabulary),
        "cache_last_channel_dim1": enc.n_layers,
        "cache_last_channel_dim2": geo.last_channel_cache_size,
        "cache_last_channel_dim3": enc.d_model,
        "cache_last_time_dim1": enc.n_layers,
        "cache_last_time_dim2": enc.d_model,
        "cache_last_time_dim3": geo.conv_cache_size,
        "normalize_type": "",
        "model_type": {("ctc", "rnnt"): "EncDecHybridRNNTCTCBPEModel", ("ctc",): "EncDecCTCModelBPE",
                       ("rnnt",): "EncDecRNNTBPEModel"}[tuple(sorted(cfg.decoders))],
        "version": "1",
        "model_author": "ouvir",
        "comment": f"att_context_size {list(geo.att_context_size)}, look-ahead {geo.lookahead_ms:g} ms",
    }
    if cfg.rnnt is not None:
        meta.update(pred_rnn_layers=cfg.rnnt.pred_rnn_layers, pred_hidden=cfg.rnnt.pred_hidden)
    return {k: str(v) for k, v in meta.items()}


def set_metadata(model: onnx.ModelProto, meta: dict[str, str]) -> None:
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, meta)


def share_weights(models: dict[str, onnx.ModelProto], min_bytes: int = 1024) -> bytes:
    """Point every initializer of >= ``min_bytes`` of every model into one blob (``WEIGHTS_FILE``, each
    distinct content once, 64-byte aligned); returns the blob. The models are modified in place."""
    blob = bytearray()
    where: dict[bytes, tuple[int, int]] = {}
    for model in models.values():
        for tensor in model.graph.initializer:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                raise ValueError(f"initializer {tensor.name} already has external data")
            if not tensor.HasField("raw_data"):
                tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))
            raw = tensor.raw_data
            if len(raw) < min_bytes:
                continue
            key = hashlib.sha256(raw).digest()
            if key not in where:
                blob += b"\0" * (-len(blob) % _ALIGN)
                where[key] = (len(blob), len(raw))
                blob += raw
            offset, length = where[key]
            set_external_data(tensor, WEIGHTS_FILE, offset=offset, length=length)
            tensor.data_location = onnx.TensorProto.EXTERNAL
            tensor.ClearField("raw_data")
    return bytes(blob)


def io_description(model: onnx.ModelProto) -> tuple[list[dict], list[dict]]:
    """Inputs and outputs as ``{"name", "shape" (ints, or names of dynamic axes), "dtype"}``."""

    def describe(values) -> list[dict]:
        out = []
        for v in values:
            t = v.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
            out.append({"name": v.name, "shape": shape,
                        "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name})
        return out

    return describe(model.graph.input), describe(model.graph.output)


def sherpa_tokens(vocabulary: tuple[str, ...]) -> str:
    """tokens.txt: ``<piece> <id>`` per line, then ``<blk> V`` (the blank is the last id; contract §1)."""
    return "".join(f"{piece} {i}\n" for i, piece in enumerate(vocabulary)) + f"<blk> {len(vocabulary)}\n"


def export_graphs(
    cfg: ModelConfig,
    specs: list[GraphSpec],
    out_dir: Path,
    quantize: Callable[[GraphSpec, onnx.ModelProto], onnx.ModelProto] | None = None,
    progress: bool = True,
) -> dict[str, dict]:
    """Export (and optionally quantize) every spec, add the sherpa-onnx CTC models and metadata, share the
    weights, write ``<name>.onnx`` + ``weights.bin`` into ``out_dir``. Returns manifest entries by name."""
    models: dict[str, onnx.ModelProto] = {}
    by_name = {s.name: s for s in specs}
    for spec in tqdm(specs, desc="onnx export", unit="graph", disable=not progress):
        model = to_onnx(spec)
        models[spec.name] = quantize(spec, model) if quantize is not None else model
    info: dict[str, dict] = {s.name: dict(s.info) for s in specs}
    for spec in specs:
        if spec.role != "encoder_next":
            continue
        geo = streaming_geometry(cfg.encoder, tuple(spec.info["att_context_size"]), cfg.features.window_stride)
        meta = sherpa_metadata(cfg, geo)
        set_metadata(models[spec.name], meta)
        if "ctc_head" in models:
            name = f"ctc_model.{spec.lookahead}"
            models[name] = sherpa_ctc_model(models[spec.name], models["ctc_head"])
            set_metadata(models[name], meta)
            info[name] = dict(by_name[spec.name].info)
    blob = share_weights(models)
    (out_dir / WEIGHTS_FILE).write_bytes(blob)
    entries = {}
    for name, model in models.items():
        onnx.save(model, out_dir / f"{name}.onnx")
        inputs, outputs = io_description(model)
        entries[name] = {"file": f"{name}.onnx", "inputs": inputs, "outputs": outputs, **info[name]}
    return entries
