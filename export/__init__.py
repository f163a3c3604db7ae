"""Export: a .nemo / ouvir checkpoint -> a bundle directory of ONNX or ExecuTorch graphs (torch side).

    from ouvir.export.bundle import export_bundle
    export_bundle("model.nemo", "bundle/", fmt="onnx", quantize="none")          # or fmt="pte"
    export_bundle("model.nemo", "int8/", fmt="onnx", quantize="int8", method="dynamic",
                  calibration=["speech.wav"], references=["the reference text"])

    python -m ouvir.export model.nemo -o bundle/ --format onnx|pte --quantize none|int8 [--method static]
        [--calibration a.wav b.wav] [--references refs.txt] [--lookahead 1040 480] [--force]

Modules: wrappers (the exported interface around ouvir.models), graphs (what a bundle holds, tracing),
onnx_export (sherpa-onnx / NeMo contract, shared weights), pte_export (XNNPACK lowering), quantize (int8
and its accuracy report), calibration (eager graphs behind the engine for calibration and reference),
bundle_writer (files + manifest), bundle (``export_bundle``), cli. The runtime side is
``ouvir.engine.bundle`` and ``ouvir.engine.backends.{onnx,pte}_backend``.
"""
