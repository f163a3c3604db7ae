"""int8 bundles: ONNX Runtime dynamic / static QDQ and ExecuTorch PT2E dynamic / static, each with its
accuracy report against fp32 on the calibration audio. Slow (each export quantizes and re-lowers)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from ouvir.engine.bundle import load_bundle

pytestmark = pytest.mark.slow
# (model, format, method, largest encoder error / largest fp32 encoder value, least greedy token agreement)
# Measured: encoder error 0.03-0.04 (dynamic), 0.07 (ORT static), 0.09 (PT2E static, linear layers only; 0.23
# when XNNPACK's static patterns also took adds and multiplies) against values up to ~3; ORT static and PT2E
# dynamic, since the pointwise convolutions are int8 too, turn one of ctc_conformer's 56 tokens ("please" ->
# "pleae"): its fitted CTC head has a top-1 margin of only 0.074 (fixture README section 3).
CASES = [
    ("hybrid_multi", "onnx", "dynamic", 0.03, 1.0),
    ("ctc_conformer", "onnx", "static", 0.05, 0.95),
    ("ctc_conformer", "pte", "dynamic", 0.03, 0.98),
    ("ctc_conformer", "pte", "static", 0.05, 0.95),
]


def graph_bytes(bundle) -> int:
    """Bytes of the graphs and weights (what quantization can shrink; not the tokenizer or the filterbank)."""
    return sum(f["bytes"] for name, f in bundle.manifest["files"].items() if name.endswith((".onnx", ".bin", ".pte")))


@pytest.mark.parametrize(("model", "fmt", "method", "max_rel_error", "min_agreement"), CASES)
def test_int8_bundle_reports_its_accuracy_against_fp32(bundles, model, fmt, method, max_rel_error, min_agreement):
    path = bundles(model, fmt, "int8", method)
    bundle = load_bundle(path)
    assert (bundle.backend, bundle.precision) == (fmt, "int8")
    q = bundle.manifest["quantization"]
    assert (q["scheme"], q["method"], q["per_channel"], q["calibration"]) == ("int8", method, True, ["test_audio.wav"])
    report = json.loads((path / q["report"]).read_text())
    assert set(report["lookaheads"]) == set(bundle.lookaheads)
    for la, decoders in report["lookaheads"].items():
        assert set(decoders) == set(bundle.decoders)
        for decoder, r in decoders.items():
            assert 0 < r["encoder_max_abs_error"] <= max_rel_error * r["encoder_max_abs_fp32"], (la, decoder, r)
            assert r["steps"] >= 8 and r["tokens_fp32"] >= 28
            assert r["token_agreement"] >= min_agreement, (la, decoder, r["texts"])
            assert r["identical_tokens"] == (r["token_edits"] == 0)
    assert report["size"]["graph_and_weight_bytes"] == graph_bytes(bundle)
    if fmt == "pte":  # int8 linear layers only: each encoder step still lowers to one XNNPACK partition
        delegation = bundle.manifest["export"]["delegation"]
        assert all(r["partitions"] == 1 for m, r in delegation.items() if m.startswith("encoder")), delegation
    fp32 = load_bundle(bundles(model, fmt))
    # The fixtures are tiny (0.2-0.4 M parameters): graph structure and the float relative-position constants
    # of every look-ahead weigh about as much as the weights. The weight store alone shrinks clearly.
    store = "weights.bin" if fmt == "onnx" else "model.pte"
    ratio = bundle.manifest["files"][store]["bytes"] / fp32.manifest["files"][store]["bytes"]
    assert ratio < 0.6, ratio


def test_onnx_int8_keeps_the_position_products_float(bundles):
    bundle = load_bundle(bundles("hybrid_multi", "onnx", "int8", "dynamic"))
    kept = bundle.manifest["quantization"]["kept_float"]
    assert set(kept) == {f"{role}.{la}" for la in bundle.lookaheads for role in ("encoder_first", "encoder_next")}
    graph = onnx.load(bundle.path(bundle.lookahead().encoder_next.file), load_external_data=False)
    ops = {n.op_type for n in graph.graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops and "MatMul" in ops  # int8 weights, float positions
    reasons = list(kept["encoder_next.70_13"].values())
    assert reasons.count("relative-position product") == 3  # one per layer
    assert reasons.count("subsampling / depthwise conv") == 5 + 3  # conv.0/2/3/5/6 + one depthwise per layer



def test_pointwise_convs_become_linear_layers_with_the_same_output():
    import torch

    from ouvir.export.pte_export import DECOMPOSITIONS
    from ouvir.export.quantize import pointwise_convs_as_linear
    from ouvir.models.conv import ConformerConvolution

    torch.manual_seed(0)
    module = ConformerConvolution(16, 5, "layer_norm", use_bias=True).eval()  # pointwise 16->32, depthwise, 16->16
    x, cache = torch.randn(2, 7, 16), torch.randn(2, 16, 4)
    gm = torch.export.export(module, (x, None, cache)).run_decompositions(DECOMPOSITIONS).module()
    expected = gm(x, None, cache)
    assert pointwise_convs_as_linear(gm) == 2  # the depthwise convolution stays a convolution
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert targets.count(torch.ops.aten.linear.default) == 2
    assert targets.count(torch.ops.aten.conv1d.default) == 1
    for got, want in zip(gm(x, None, cache), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_onnx_pointwise_convs_become_matmuls_with_the_same_output():
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from ouvir.export.quantize import onnx_pointwise_convs_as_matmul

    rng = np.random.default_rng(0)
    weights = {"pw1": rng.standard_normal((32, 16, 1)), "b1": rng.standard_normal(32),
               "dw": rng.standard_normal((32, 1, 5)), "pw2": rng.standard_normal((16, 32, 1))}
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "pw1", "b1"], ["h1"], "pointwise_bias"),
         helper.make_node("Conv", ["h1", "dw"], ["h2"], "depthwise", group=32, pads=[2, 2]),
         helper.make_node("Conv", ["h2", "pw2"], ["y"], "pointwise")],
        "convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 16, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 16, 7])],
        [numpy_helper.from_array(w.astype(np.float32), name) for name, w in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((2, 16, 7)).astype(np.float32)

    def run(m: onnx.ModelProto) -> np.ndarray:
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]

    expected = run(model)
    assert onnx_pointwise_convs_as_matmul(model) == 2
    onnx.checker.check_model(model)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 1 and ops.count("MatMul") == 2  # the depthwise convolution stays a convolution
    assert {t.name for t in model.graph.initializer} == {"b1", "dw", "pw1_as_matmul", "pw2_as_matmul"}
    np.testing.assert_allclose(run(model), expected, rtol=0, atol=1e-5)



def test_dynamic_int8_without_calibration_reports_on_the_shipped_samples(nemo_dir, tmp_path, capsys):
    """``ouvir export m.nemo -o b --format onnx --quantize int8``: dynamic int8 needs no scales, so no audio; its
    accuracy report runs on the default model's samples (shipped with ouvir) against their transcripts and says
    so. The bundle then transcribes without --precision / --backend."""
    from ouvir.engine.cli import main
    from ouvir.engine.default_model import samples

    out = tmp_path / "int8"
    assert main(["export", str(nemo_dir / "ctc_conformer.nemo"), "-o", str(out), "--format", "onnx",
                 "--quantize", "int8", "--quiet"]) == 0
    bundle = load_bundle(out)
    q = bundle.manifest["quantization"]
    names = [s.path.name for s in samples()]
    assert (bundle.precision, q["method"], q["calibration"]) == ("int8", "dynamic", [])
    report = json.loads((out / q["report"]).read_text())
    assert report["report_audio"] == q["report_audio"]
    assert report["report_audio"]["files"] == names and "shipped samples" in report["report_audio"]["source"]
    (entry,) = report["lookaheads"]["64_7"].values()
    assert len(entry["texts"]) == len(names) and entry["tokens_fp32"] > 0 and entry["token_agreement"] > 0.9
    assert entry["wer_fp32"] >= 0 and entry["wer_change"] == entry["wer_int8"] - entry["wer_fp32"]
    capsys.readouterr()
    assert main(["transcribe", "--model", str(out), str(nemo_dir / "test_audio.wav")]) == 0
    assert len(capsys.readouterr().out.split()) >= 8  # the fixture says a sentence
