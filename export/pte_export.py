"""ExecuTorch export: every graph of the bundle is a method of one ``model.pte``, lowered to XNNPACK.

Shapes are fixed and the batch is 1 (ExecuTorch plans memory for the exact shapes). The method signatures
are the ONNX ones (export/wrappers.py). XNNPACK's weight store is keyed by content, so look-aheads that
share weights store them once.

Three graph rewrites keep the step in as few XNNPACK partitions as possible (ExecuTorch 1.5.1's XNNPACK
partitioner has no layer norm and no ``where``, and a no-op ``expand_copy`` from a 4-D matmul splits the
graph); each is exact or equal to rounding:
* ``aten.layer_norm`` -> mean / subtract / mean of squares / rsqrt / scale / shift, with the means as
  XNNPACK's global average pooling over a (N, 1, 1, D) view;
* ``aten.masked_fill`` with a float fill -> ``x * (1 - m) + m * fill`` (identical for finite x);
* ``expand_copy`` to the shape it already has -> removed.
What remains outside XNNPACK is integer / boolean bookkeeping on lengths and masks (counted per method in
the manifest's ``export.delegation``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
from executorch.devtools.backend_debug import get_delegation_info
from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower
from executorch.exir.dialects._ops import ops as exir_ops
from torch.export import ExportedProgram
from torch.fx.passes.infra.pass_base import PassBase, PassResult
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


DECOMPOSITIONS = {aten.layer_norm.default: _layer_norm, aten.masked_fill.Scalar: _masked_fill}


class DropNoopExpand(PassBase):
    """Remove ``expand_copy`` nodes whose output shape equals their input's."""

    def call(self, gm: torch.fx.GraphModule) -> PassResult:
        changed = False
        for node in list(gm.graph.nodes):
            if node.op == "call_function" and node.target == exir_ops.edge.aten.expand_copy.default \
                    and tuple(node.args[0].meta["val"].shape) == tuple(node.meta["val"].shape):
                node.replace_all_uses_with(node.args[0])
                gm.graph.erase_node(node)
                changed = True
        gm.recompile()
        return PassResult(gm, changed)


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
            programs, transform_passes=[DropNoopExpand()], partitioner=[XnnpackPartitioner()],
            compile_config=EdgeCompileConfig(_check_ir_validity=False),
        )
        report = {method: delegation(edge.exported_program(method).graph_module) for method in programs}
        program = edge.to_executorch()
        bar.update()
    (out_dir / PROGRAM_FILE).write_bytes(program.buffer)
    entries = {}
    for spec in specs:
        method = method_name(spec)
        inputs = [_describe(n, x) for n, x in zip(spec.inputs, spec.example_batch(1), strict=True)]
        outputs = [{"name": n} for n in spec.outputs]
        entries[spec.name] = {"file": PROGRAM_FILE, "method": method, "inputs": inputs, "outputs": outputs,
                              **spec.info}
    return entries, {"delegation": report}


def _describe(name: str, x: torch.Tensor) -> dict[str, Any]:
    return {"name": name, "shape": list(x.shape), "dtype": str(x.dtype).removeprefix("torch.")}
