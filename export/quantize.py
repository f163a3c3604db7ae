"""int8 export: ONNX Runtime (dynamic, or static QDQ) and ExecuTorch PT2E with the XNNPACK quantizer
(dynamic or static), weights per output channel, and an accuracy report against fp32.

Calibration: the graphs are run eagerly behind the engine's Recognizer on the calibration audio, for every
look-ahead and decoder (export/calibration.py); every graph's inputs are recorded there.

Kept in float, because measurement showed they must be:
* the relative-position products ``(q + v) @ p^T``: ``p`` is a constant folded per chunk shape, and ONNX
  Runtime's per-channel dynamic MatMul rejects it at run time ("b zero point is not valid"); XNNPACK's
  dynamic quantizer has no kernel for a constant left operand either;
* in ONNX, the subsampling and depthwise convolutions (tiny weights): as ConvInteger they made the
  hybrid fixture's step 2.3x slower (4.7 vs 2.1 ms); the pointwise (kernel 1) convolutions are int8, rewritten
  as matrix products first (``onnx_pointwise_convs_as_matmul``; in PT2E ``pointwise_convs_as_linear``);
* ONNX static QDQ quantizes only MatMul / Gemm / Conv (the default op set tripled the drift), and the RNNT
  decoder / joiner stay dynamic there (one token at a time: no activation range to calibrate cheaply);
* PT2E static quantizes only linear layers too. XNNPACK's static patterns also take adds, multiplies and
  concatenations: the ctc fixture's encoder error was 0.23 instead of 0.09, and the large recipe lowered for
  over 35 minutes (3 of its layers: 4 partitions). Linear-only lowers like dynamic, to one partition, and
  runs faster on long weights: XNNPACK's dynamic int8 GEMM slows with the rows where static does not (a
  512 x 2048 linear among 120 MB of weights, 2 threads: 41 / 64 / 118 us at 1 / 4 / 7 rows, static 39 / 57 /
  59 us; the large recipe's 560 ms step 23.2 -> 17.8 ms).
"""

from __future__ import annotations

import json
import operator
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from ouvir.export.calibration import EagerGraphs, RecordingEncoder, decode, read_audio
from ouvir.export.graphs import GraphSpec, graph_specs, lookahead_name
from ouvir.models.asr import LoadedModel
from ouvir.models.geometry import streaming_geometry
from ouvir.models.train.wer import edit_distance, word_error_rate


def onnx_float_nodes(model: onnx.ModelProto) -> dict[str, str]:
    """Nodes kept in float, with the reason: MatMuls whose second operand is a constant of rank >= 3 (the
    folded position projections) and every Conv (``onnx_pointwise_convs_as_matmul`` turned the pointwise ones
    into MatMuls)."""
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    keep = {}
    for node in model.graph.node:
        weight = shapes.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type == "MatMul" and weight is not None and len(weight) >= 3:
            keep[node.name] = "relative-position product"
        elif node.op_type == "Conv":
            keep[node.name] = "subsampling / depthwise conv"
    return keep


def _reader(names: Sequence[str], rows: list[tuple[np.ndarray, ...]]):
    """An onnxruntime CalibrationDataReader over recorded input tuples."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._rows = iter([dict(zip(names, row, strict=True)) for row in rows])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._rows, None)

    return Reader()


def _pointwise(weight: onnx.TensorProto, attrs: dict[str, Any]) -> bool:
    """A 1-D Conv with kernel 1, stride 1, dilation 1, no padding and one group."""
    return (list(weight.dims)[2:] == [1] and attrs.get("group", 1) == 1
            and attrs.get("auto_pad", b"NOTSET") == b"NOTSET"
            and all(v == 1 for v in [*attrs.get("strides", []), *attrs.get("dilations", [])])
            and not any(attrs.get("pads", [])))


def onnx_pointwise_convs_as_matmul(model: onnx.ModelProto) -> int:
    """Rewrite each pointwise 1-D Conv (kernel 1, stride 1, no padding, one group, constant weight) of ``model``
    as ``Transpose -> MatMul (-> Add) -> Transpose``, the same product: ONNX Runtime quantizes a MatMul into its
    fast dynamic int8 MatMul, a Conv into ConvInteger, which on the large recipe took 28 % of the int8 step
    (10 ms of 42 on one thread), as long as the float convolutions. Returns how many were rewritten."""
    from onnx import helper, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    nodes: list[onnx.NodeProto] = []
    added: dict[str, str] = {}  # conv weight -> its (in, out) MatMul weight
    count = 0
    for node in model.graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if weight is None or not _pointwise(weight, {a.name: helper.get_attribute_value(a) for a in node.attribute}):
            nodes.append(node)
            continue
        if weight.name not in added:
            added[weight.name] = f"{weight.name}_as_matmul"
            w = numpy_helper.to_array(weight)[:, :, 0].T  # (in, out)
            model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(w), added[weight.name]))
        tag = node.name or node.output[0]
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        product = f"{tag}/xw" if bias else f"{tag}/y_bt"
        nodes.append(helper.make_node("Transpose", [node.input[0]], [f"{tag}/x_bt"], f"{tag}/to_btc", perm=[0, 2, 1]))
        nodes.append(helper.make_node("MatMul", [f"{tag}/x_bt", added[weight.name]], [product], f"{tag}/matmul"))
        if bias:
            nodes.append(helper.make_node("Add", [product, bias], [f"{tag}/y_bt"], f"{tag}/bias"))
        nodes.append(helper.make_node("Transpose", [f"{tag}/y_bt"], [node.output[0]], f"{tag}/to_bct", perm=[0, 2, 1]))
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    for name in added:  # the conv weights, unless something else reads them too
        if name not in used:
            model.graph.initializer.remove(inits[name])
    return count


def pointwise_convs_as_linear(gm: torch.fx.GraphModule) -> int:
    """Rewrite each pointwise convolution (kernel 1, stride 1, no padding, one group) of an unlifted graph as
    ``permute -> linear -> permute``, the same product: XNNPACK's dynamic int8 quantizer covers linear layers
    only, and the conformer's pointwise convolutions hold a third of its encoder weights (they stayed float,
    which left the large recipe's int8 .pte at 38 % of fp32). Returns how many were rewritten."""
    aten = torch.ops.aten
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target != aten.conv1d.default or node.kwargs:
            continue
        x, w, bias, stride, padding, dilation, groups = (*node.args, *(None, [1], [0], [1], 1)[len(node.args) - 2 :])
        if w.op != "get_attr":
            continue
        weight = operator.attrgetter(w.target)(gm)
        if weight.shape[-1] != 1 or groups != 1 or list(stride) != [1] or list(padding) != [0] \
                or list(dilation) != [1]:
            continue
        name = f"{w.target.replace('.', '_')}_as_linear"
        gm.register_buffer(name, weight.detach()[..., 0].clone())  # (out, in)
        with gm.graph.inserting_before(node):
            w2 = gm.graph.get_attr(name)
            w2.meta["val"] = gm.get_buffer(name)
            xt = gm.graph.call_function(aten.permute.default, (x, [0, 2, 1]))
            xt.meta["val"] = x.meta["val"].permute(0, 2, 1)
            y = gm.graph.call_function(aten.linear.default, (xt, w2, bias))
            y.meta["val"] = node.meta["val"].permute(0, 2, 1)
            out = gm.graph.call_function(aten.permute.default, (y, [0, 2, 1]))
            out.meta["val"] = node.meta["val"]
        for key in ("nn_module_stack", "stack_trace"):
            if key in node.meta:
                for new in (xt, y, out):
                    new.meta[key] = node.meta[key]
        node.replace_all_uses_with(out)
        gm.graph.erase_node(node)
        count += 1
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return count


def _outside_rel_pos(node: torch.fx.Node) -> bool:
    """False for nodes of a ``linear_pos`` module (its input is the constant position table)."""
    return not any("linear_pos" in str(path) for path, _ in node.meta.get("nn_module_stack", {}).values())


class Int8Quantizer:
    def __init__(self, loaded: LoadedModel, contexts: list[tuple[int, int]], calibration: list[Path], fmt: str,
                 method: str, progress: bool = True, shipped: bool = False) -> None:
        """``calibration``: the audio of static scales and of the accuracy report; ``shipped``: it is ouvir's
        shipped samples, standing in for calibration audio the user did not give (dynamic int8 only)."""
        self.loaded, self.contexts, self.fmt, self.method = loaded, contexts, fmt, method
        self.calibration = calibration
        self.shipped = shipped
        self.audio = [read_audio(p) for p in calibration]
        self.specs = {s.name: s for s in graph_specs(loaded.model, contexts)}
        self.kept_float: dict[str, dict[str, str]] = {}  # graph -> node -> why it stays float
        self.reference: dict[tuple[str, str], list] = {}  # (look-ahead, decoder) -> Decoded per audio
        self.inputs: dict[str, list[tuple[np.ndarray, ...]]] = {}
        cfg = loaded.config
        geos = [streaming_geometry(cfg.encoder, ctx, cfg.features.window_stride) for ctx in contexts]
        self.lookahead_ms = {lookahead_name(g.att_context_size): round(g.lookahead_ms) for g in geos}
        for ctx in contexts:
            for decoder in loaded.config.decoders:
                runs = []
                for audio in self.audio:
                    eager = EagerGraphs(loaded, self.specs, ctx)
                    runs.append(decode(eager, decoder, audio))
                    for name, rows in eager.inputs.items():
                        self.inputs.setdefault(name, []).extend(rows)
                self.reference[(lookahead_name(ctx), decoder)] = runs

    # ------------------------------------------------------------------------------------------ ONNX

    def onnx(self, spec: GraphSpec, model: onnx.ModelProto) -> onnx.ModelProto:
        from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

        onnx_pointwise_convs_as_matmul(model)
        keep = onnx_float_nodes(model)
        self.kept_float[spec.name] = keep
        static = self.method == "static" and spec.role in ("encoder_first", "encoder_next", "ctc")
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            # weights beside the graph: a protobuf holds at most 2 GB (nemotron's 618 M fp32 weights are 2.4 GB);
            # this moves ``model``'s tensors out of it, and the fp32 graph is not used after quantization
            onnx.save(model, src, save_as_external_data=True, location="fp32.onnx.data")
            if static:
                quantize_static(
                    src, dst, _reader(spec.inputs, self.inputs[spec.name]), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["MatMul", "Gemm", "Conv"], per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=list(keep),
                    use_external_data_format=True,
                )
            else:
                quantize_dynamic(src, dst, op_types_to_quantize=["MatMul", "Gemm", "Conv", "LSTM"], per_channel=True,
                                 weight_type=QuantType.QInt8, nodes_to_exclude=list(keep),
                                 use_external_data_format=True)
            quantized = onnx.load(dst)
        del quantized.graph.value_info[:]
        return quantized

    # ------------------------------------------------------------------------------------------ PT2E

    def pt2e(self, spec: GraphSpec) -> torch.export.ExportedProgram:
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from executorch.exir.operator.util import _QUANT_PRIMITIVES
        from executorch.exir.passes.constant_prop_pass import constant_prop_pass, get_default_skip_targets_no_quant
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        from ouvir.export.pte_export import DECOMPOSITIONS

        example = spec.fixed_example
        module = torch.export.export(spec.module, example).run_decompositions(DECOMPOSITIONS).module()
        pointwise_convs_as_linear(module)
        if spec.role.startswith("encoder"):
            self.kept_float[spec.name] = {"self_attn.linear_pos": "relative-position product"}
        # linear layers only (the pointwise convolutions are linear layers by now), as ONNX static: MatMul / Gemm
        quantizer = XNNPACKQuantizer().set_operator_type(
            torch.ops.aten.linear.default,
            get_symmetric_quantization_config(is_per_channel=True, is_dynamic=self.method == "dynamic"))
        quantizer.set_filter_function(_outside_rel_pos)
        prepared = prepare_pt2e(module, quantizer)
        with torch.no_grad():
            for row in self.inputs[spec.name][:64] if self.method == "static" else [tuple(x.numpy() for x in example)]:
                # recorded one stream, one row at a time: repeated up to the graph's fixed batch
                prepared(*(torch.from_numpy(np.repeat(x, spec.fixed_batch // x.shape[axis], axis))
                           for x, axis in zip(row, spec.batch_axes, strict=True)))
        converted = convert_pt2e(prepared)
        # Fold the chunk's constants but keep the (de)quantize ops: XNNPACK needs them to see int8 weights.
        keep = set(_QUANT_PRIMITIVES) | get_default_skip_targets_no_quant()
        return constant_prop_pass(torch.export.export(converted, example), custom_skip_targets=keep)

    # ------------------------------------------------------------------------------------------ report

    def describe(self) -> dict[str, Any]:
        tool = "onnxruntime.quantization" if self.fmt == "onnx" else "torchao PT2E + XNNPACKQuantizer"
        return {"scheme": "int8", "method": self.method, "tool": tool, "per_channel": True,
                "weights": "int8 symmetric", "calibration": [] if self.shipped else [p.name for p in self.calibration],
                "report_audio": self.report_audio(), "kept_float": {k: v for k, v in self.kept_float.items() if v}}

    def report_audio(self) -> dict[str, Any]:
        """What the accuracy report was measured on, and where that audio came from."""
        source = ("ouvir's shipped samples (the default model's held-out synthetic speech, ouvir/default_model/"
                  "samples): no --calibration audio was given" if self.shipped else "--calibration")
        return {"files": [p.name for p in self.calibration], "source": source}

    def report(self, bundle: Path, references: Sequence[str] | None) -> str:
        """Per look-ahead and decoder: encoder error vs fp32 over the chained steps, greedy token agreement,
        and WER of both when ``references`` (one per calibration file) are given."""
        from ouvir.engine.backends import open_backend

        if references is not None and len(references) != len(self.audio):
            raise ValueError(f"{len(references)} references for {len(self.audio)} calibration files")
        manifest = json.loads((bundle / "manifest.json").read_text())
        stored = sum(f["bytes"] for name, f in manifest["files"].items() if name.endswith((".onnx", ".bin", ".pte")))
        params = sum(p.numel() for p in self.loaded.model.parameters())
        out: dict[str, Any] = {
            "calibration": [] if self.shipped else [p.name for p in self.calibration],
            "report_audio": self.report_audio(),
            "size": {"parameters": params, "parameters_fp32_bytes": 4 * params, "graph_and_weight_bytes": stored},
            "lookaheads": {},
        }
        for (la, decoder), fp32_runs in self.reference.items():
            int8_runs = []
            for audio in self.audio:
                backend = RecordingEncoder(open_backend(bundle, self.fmt, "int8", self.lookahead_ms[la]))
                int8_runs.append(decode(backend, decoder, audio))
            errors = [float(np.abs(a - b).max()) for f, q in zip(fp32_runs, int8_runs, strict=True)
                      for a, b in zip(f.encoded, q.encoded, strict=True) if a.size]
            scale = max(float(np.abs(a).max()) for f in fp32_runs for a in f.encoded if a.size)
            token_edits = sum(edit_distance(f.tokens, q.tokens) for f, q in zip(fp32_runs, int8_runs, strict=True))
            n_tokens = sum(len(f.tokens) for f in fp32_runs)
            entry = {
                "encoder_max_abs_error": max(errors),
                "encoder_mean_step_max_abs_error": float(np.mean(errors)),
                "encoder_max_abs_fp32": scale,
                "steps": len(errors),
                "tokens_fp32": n_tokens,
                "token_edits": token_edits,
                "token_agreement": 1.0 - token_edits / max(n_tokens, 1),
                "identical_tokens": all(f.tokens == q.tokens for f, q in zip(fp32_runs, int8_runs, strict=True)),
                "texts": [{"fp32": f.text, "int8": q.text} for f, q in zip(fp32_runs, int8_runs, strict=True)],
            }
            if references is not None:
                entry["wer_fp32"] = word_error_rate(references, [f.text for f in fp32_runs])
                entry["wer_int8"] = word_error_rate(references, [q.text for q in int8_runs])
                entry["wer_change"] = entry["wer_int8"] - entry["wer_fp32"]
            out["lookaheads"].setdefault(la, {})[decoder] = entry
        return json.dumps(out, indent=1) + "\n"
