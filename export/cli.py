"""``python -m ouvir.export MODEL -o DIR --format onnx|pte --quantize none|int8 ...`` (also ``ouvir export``).

Importing this module is cheap (no torch): torch and the exporters load when an export runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FORMATS = ("onnx", "pte")
QUANTIZE = ("none", "int8")
METHODS = ("dynamic", "static")


def _lookahead(value: str) -> int | str:
    return int(value) if value.lstrip("-").isdigit() else value


def add_export_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("model", type=Path, help="a NeMo .nemo file or an ouvir checkpoint")
    p.add_argument("-o", "--out", type=Path, required=True, help="bundle directory to write")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (ONNX Runtime, sherpa-onnx) or pte "
                   "(ExecuTorch, XNNPACK)")
    p.add_argument("--quantize", choices=QUANTIZE, default="none",
                   help="int8: weights per channel; its accuracy against fp32 goes to quantization_report.json")
    p.add_argument("--method", choices=METHODS, default="dynamic",
                   help="int8: dynamic activation scales, or static ones calibrated on --calibration")
    p.add_argument("--calibration", type=Path, nargs="+", metavar="AUDIO",
                   help="audio files for static scales and the int8 accuracy report (static needs them; without "
                        "them dynamic int8 reports on the samples shipped with ouvir)")
    p.add_argument("--references", type=Path, metavar="TXT",
                   help="one reference transcript per line, in --calibration order: adds WER to the report")
    p.add_argument("--lookahead", type=_lookahead, nargs="+", metavar="MS|L_R",
                   help="look-aheads to include, as ms (1040) or attention context (70_13); default: all")
    p.add_argument("--force", action="store_true", help="replace an existing bundle at --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run_export)
    return p


def add_export_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """``ouvir export ...``: wire into the engine CLI; the parser's ``func`` returns the exit code."""
    return add_export_arguments(subparsers.add_parser("export", help="export a model as an ONNX / ExecuTorch bundle"))


def run_export(args: argparse.Namespace) -> int:
    from ouvir.engine.bundle import load_bundle
    from ouvir.export.bundle import export_bundle

    references = None
    if args.references is not None:
        references = [line.strip() for line in args.references.read_text(encoding="utf-8").splitlines()]
    try:
        out = export_bundle(args.model, args.out, args.format, args.quantize, args.calibration, args.lookahead,
                            method=args.method, references=references, force=args.force, progress=not args.quiet)
    except (ValueError, FileExistsError, FileNotFoundError) as e:
        print(f"ouvir export: {e}", file=sys.stderr)
        return 2
    bundle = load_bundle(out)
    size = sum(f["bytes"] for f in bundle.manifest["files"].values())
    print(f"{out}: {bundle.backend} {bundle.precision}, look-aheads {', '.join(bundle.lookaheads)}, "
          f"{len(bundle.manifest['files'])} files, {size / 2**20:.2f} MiB, "
          f"{bundle.manifest['export']['seconds']:.0f} s")
    if bundle.manifest["quantization"]:
        print(f"accuracy report: {out / bundle.manifest['quantization']['report']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = add_export_arguments(argparse.ArgumentParser(prog="python -m ouvir.export", description=__doc__))
    args = parser.parse_args(argv)
    return args.func(args)
