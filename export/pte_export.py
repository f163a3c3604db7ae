"""ExecuTorch export: every graph of the bundle is a method of one ``model.pte``, lowered to XNNPACK.

Shapes are fixed and the batch is 1 (the joint: one row per frame of a step); ExecuTorch plans memory for
the exact shapes. The method signatures are the ONNX ones (export/wrappers.py). XNNPACK's weight store is
keyed by content, so look-aheads that share weights store them once.

Each encoder step lowers to one XNNPACK partition (the large recipe's step was 21, one per layer: 23.4 ->
21.8 ms per 560 ms int8 step on two threads). ExecuTorch 1.5.1's XNNPACK partitioner has no layer norm, no
``where``, no ``select`` and merges its partitions in one pass, so these rewrites run first, each exact or
equal to rounding:
* ``aten.layer_norm`` -> mean / subtract / mean of squares / rsqrt / scale / shift, with the means as
  XNNPACK's global average pooling over a (N, 1, 1, D) view;
* ``aten.masked_fill`` with a float fill -> ``x * (1 - m) + m * fill`` (identical for finite x);
* ``alias_copy``, and ``expand_copy`` to the shape it already has -> removed;
* ``(un)squeeze_copy`` -> ``view_copy``; ``select_copy`` -> ``slice_copy`` + ``view_copy``;
  ``split_with_sizes_copy`` -> ``slice_copy`` per piece; the LSTM -> its cell equations (PyTorch's
  decomposition: the int8 quantizer then sees its gate projections as linear layers);
* common subexpressions merged (each layer re-derived the same masks from the lengths);
and ``StepPartitioner`` keeps the length bookkeeping off XNNPACK and merges
partitions until none can be.
What remains outside XNNPACK is that bookkeeping on lengths and masks (counted per method in the
manifest's ``export.delegation``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.devtools.backend_debug import get_delegation_info
from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower
from executorch.exir.dialects._ops import ops as exir_ops
from torch._decomp import decomposition_table
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind
from torch.fx.passes.dialect.common.cse_pass import CSEPass
from torch.fx.passes.infra.partitioner import Partition
from torch.fx.passes.infra.pass_base import PassBase, PassResult
from torch.fx.passes.utils.fuser_utils import validate_partition
from tqdm import tqdm

from ouvir.export.graphs import GraphSpec, trace

PROGRAM_FILE = "model.pte"
aten = torch.ops.aten


def _layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    d = math.prod(normalized_shape)
    x4 = x.reshape(-1, 1, 1, d)  # (N, 1, 1, D): XNNPACK averages the two innermost axes
    centred = x4 - aten.mean.dim(x4, [2, 3], True)
    var = aten.mean.dim(centred * centred, [2, 3], True)  # (N, 1, 1, 1)
    y = (centred * aten.rsqrt(var + eps)).reshape(x.shape)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def _masked_fill(x, mask, value):
    if not x.is_floating_point():
        return aten.where.self(mask, aten.scalar_tensor(value, dtype=x.dtype), x)
    m = mask.to(x.dtype)
    return x * (1 - m) + m * value if value != 0 else x * (1 - m)


DECOMPOSITIONS = {
    aten.layer_norm.default: _layer_norm,
    aten.masked_fill.Scalar: _masked_fill,
    # PyTorch's own: the LSTM's gate projections become linear layers, which the int8 quantizer then sees
    aten.lstm.input: decomposition_table[aten.lstm.input],
}


class DropNoopCopies(PassBase):
    """Remove ``alias_copy`` nodes and ``expand_copy`` nodes whose output shape equals their input's."""

    def call(self, gm: torch.fx.GraphModule) -> PassResult:
        changed = False
        edge = exir_ops.edge.aten
        for node in list(gm.graph.nodes):
            if node.op == "call_function" and (node.target == edge.alias_copy.default or (
                    node.target == edge.expand_copy.default
                    and tuple(node.args[0].meta["val"].shape) == tuple(node.meta["val"].shape))):
                node.replace_all_uses_with(node.args[0])
                gm.graph.erase_node(node)
                changed = True
        gm.recompile()
        return PassResult(gm, changed)


VIEWS = (exir_ops.edge.aten.unsqueeze_copy.default, exir_ops.edge.aten.squeeze_copy.dims,
         exir_ops.edge.aten.select_copy.int)


class ReshapesAsViews(PassBase):
    """Rewrite ``(un)squeeze_copy`` as ``view_copy``, ``select_copy`` as ``slice_copy`` + ``view_copy`` and
    ``split_with_sizes_copy`` as slices (static shapes): XNNPACK takes views and slices, and the per-layer
    cache selects and the LSTM's gate split otherwise run as portable copies between partitions."""

    def call(self, gm: torch.fx.GraphModule) -> PassResult:
        changed = False
        edge = exir_ops.edge.aten
        for node in list(gm.graph.nodes):
            if node.op == "call_function" and node.target == edge.split_with_sizes_copy.default:
                _split_as_slices(gm, node)
                changed = True
                continue
            if node.op != "call_function" or node.target not in VIEWS:
                continue
            x, shape = node.args[0], list(node.meta["val"].shape)
            with gm.graph.inserting_before(node):
                if node.target == edge.select_copy.int:
                    val = x.meta["val"]
                    dim = node.args[1] % val.dim()
                    index = node.args[2] % val.shape[dim]
                    x = gm.graph.call_function(edge.slice_copy.Tensor, (x, dim, index, index + 1))
                    x.meta = {**node.meta, "val": val.narrow(dim, index, 1)}
                view = gm.graph.call_function(edge.view_copy.default, (x, shape))
            view.meta = dict(node.meta)
            node.replace_all_uses_with(view)
            gm.graph.erase_node(node)
            changed = True
        gm.recompile()
        return PassResult(gm, changed)


def _split_as_slices(gm: torch.fx.GraphModule, node: torch.fx.Node) -> None:
    """``split_with_sizes_copy`` (a list, read by ``getitem``) -> one ``slice_copy`` per piece."""
    x, sizes, dim = (*node.args, 0)[:3]
    dim %= x.meta["val"].dim()
    starts = list(itertools.accumulate(sizes, initial=0))
    for user in list(node.users):
        i = user.args[1]
        with gm.graph.inserting_before(user):
            piece = gm.graph.call_function(exir_ops.edge.aten.slice_copy.Tensor, (x, dim, starts[i], starts[i + 1]))
        piece.meta = dict(user.meta)
        user.replace_all_uses_with(piece)
        gm.graph.erase_node(user)
    gm.graph.erase_node(node)


def _is_quant(node: torch.fx.Node) -> bool:
    """A (de)quantize or qparams node of an int8 graph."""
    return node.op == "call_function" and any(k in str(node.target) for k in ("quantize", "choose_qparams"))


class MergeDuplicates(PassBase):
    """Common subexpressions merged (each layer re-derives the same masks from the lengths), except the int8
    (de)quantize nodes: XNNPACK takes each as part of the one operator that consumes it."""

    def call(self, gm: torch.fx.GraphModule) -> PassResult:
        quant = {getattr(n.target, "overloadpacket", n.target) for n in gm.graph.nodes if _is_quant(n)}
        return CSEPass(banned_ops=quant).call(gm)


class StepPartitioner(XnnpackPartitioner):
    """XNNPACK, except for the bookkeeping on lengths: nodes computed from the length inputs (``length``,
    ``cache_last_channel_len``, ...) and constants only stay on ExecuTorch's portable kernels, so they all run
    before one XNNPACK partition instead of cutting it wherever a layer reads a mask derived from them."""

    def get_matched_nodes_from_configs(self, ep: ExportedProgram) -> list[list[torch.fx.Node]]:
        inputs = {s.arg.name for s in ep.graph_signature.input_specs if s.kind == InputKind.USER_INPUT}
        reads: dict[torch.fx.Node, set[bool]] = {}  # node -> the user inputs it reads: True a length, False other
        for node in ep.graph_module.graph.nodes:
            if node.name in inputs:
                reads[node] = {node.name.endswith(("length", "_len"))}
            else:
                reads[node] = set().union(*(reads[a] for a in node.all_input_nodes))
        bookkeeping = {n for n, kinds in reads.items() if kinds == {True}}
        return [g for g in super().get_matched_nodes_from_configs(ep) if not bookkeeping.intersection(g)]

    def generate_partitions(self, ep: ExportedProgram) -> list[Partition]:
        """ExecuTorch's partitions, merged pairwise until no two can be (one merging pass leaves one partition
        per conformer layer, although nothing outside XNNPACK lies between them)."""
        partitions = super().generate_partitions(ep)
        merged = True
        while merged:
            merged = False
            for a, b in itertools.combinations(partitions, 2):
                if validate_partition([*a.nodes, *b.nodes]):
                    a.nodes.update(b.nodes)
                    partitions.remove(b)
                    merged = True
                    break
        return partitions


def prepare(ep: ExportedProgram) -> ExportedProgram:
    """Apply the decompositions; drop provenance records (they only slow the lowering passes down)."""
    ep = ep.run_decompositions(DECOMPOSITIONS)
    for node in ep.graph.nodes:
        node.meta.pop("from_node", None)
    return ep


def method_name(spec: GraphSpec) -> str:
    return spec.name.replace(".", "_")


def delegation(gm: torch.fx.GraphModule) -> dict[str, Any]:
    """Operators inside XNNPACK delegates and those left to ExecuTorch's portable kernels (``getitem``, a
    tuple access, not counted)."""
    info = get_delegation_info(gm)
    ops = {op: b for op, b in info.delegation_by_operator.items() if op != "getitem"}
    portable = {op: b.non_delegated for op, b in sorted(ops.items()) if b.non_delegated}
    return {"partitions": info.num_delegated_subgraphs, "delegated_ops": sum(b.delegated for b in ops.values()),
            "portable_ops": sum(portable.values()), "portable": portable}


def export_program(
    specs: list[GraphSpec],
    out_dir: Path,
    quantize: Callable[[GraphSpec], ExportedProgram] | None = None,
    progress: bool = True,
) -> tuple[dict[str, dict], dict[str, Any]]:
    """Trace (or quantize) every spec, lower all of them into one program, write ``model.pte``.

    Returns manifest entries by graph name and an export report (delegation per method)."""
    programs = {}
    for spec in tqdm(specs, desc="pte trace" if quantize is None else "pte quantize", unit="graph",
                     disable=not progress):
        ep = quantize(spec) if quantize is not None else trace(spec, dynamic_batch=False)
        programs[method_name(spec)] = prepare(ep)
    with tqdm(total=1, desc=f"xnnpack lowering ({len(programs)} methods)", disable=not progress) as bar:
        edge = to_edge_transform_and_lower(
            programs, transform_passes=[DropNoopCopies(), ReshapesAsViews(), MergeDuplicates()],
            partitioner=[StepPartitioner()],
            compile_config=EdgeCompileConfig(_check_ir_validity=False),
        )
        report = {method: delegation(edge.exported_program(method).graph_module) for method in programs}
        program = edge.to_executorch()
        bar.update()
    (out_dir / PROGRAM_FILE).write_bytes(program.buffer)
    entries = {}
    for spec in specs:
        method = method_name(spec)
        inputs = [_describe(n, x) for n, x in zip(spec.inputs, spec.fixed_example, strict=True)]
        outputs = [{"name": n} for n in spec.outputs]
        entries[spec.name] = {"file": PROGRAM_FILE, "method": method, "inputs": inputs, "outputs": outputs,
                              **spec.info}
    return entries, {"delegation": report}


def _describe(name: str, x: torch.Tensor) -> dict[str, Any]:
    return {"name": name, "shape": list(x.shape), "dtype": str(x.dtype).removeprefix("torch.")}
