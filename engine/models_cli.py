"""``ouvir models list`` and ``ouvir models pull NAME [--format onnx|pte] [--quantize int8]`` (engine/hub.py).

A pull downloads the checkpoint (engine/hub_download.py) and exports it into the store with
``ouvir.export.bundle.export_bundle`` (torch and the exporters: the ``export`` extra), once: a build whose
bundle was exported from the same file (sha256) with the same look-aheads is kept as it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ouvir.engine.hub import HOME_ENV, REGISTRY, build_dir, builds, home, lookup, read_source, write_source

FORMATS = ("onnx", "pte")
QUANTIZE = ("none", "int8")


def pull(name: str, fmt: str = "onnx", quantize: str = "none", lookaheads: Sequence[int | str] | None = None,
         cache_dir: str | Path | None = None, force: bool = False, progress: bool = True,
         calibration: Sequence[Path] | None = None) -> Path:
    """Download ``name`` (once) and export it (once) as a ``fmt`` bundle; returns the bundle directory.
    ``calibration``: audio for the int8 accuracy report (export_bundle's; default: ouvir's shipped samples)."""
    from ouvir.engine.hub_download import download

    entry = lookup(name)
    got = download(entry, cache_dir)
    write_source(entry.name, {
        "name": entry.name, "source": entry.source, "revision": entry.revision, "commit": got.commit,
        "file": entry.filename, "checkpoint": str(got.path), "sha256": got.sha256, "sha256_checked": got.checked,
    })
    if not got.checked:
        print(f"ouvir: warning: {got.path}: sha256 {got.sha256} not checked ({entry.source} publishes no digest "
              "for it and ouvir's registry knows none)", file=sys.stderr)
    out = build_dir(entry.name, fmt, "int8" if quantize == "int8" else "fp32")
    if not force and _current(out, got.path, got.sha256, lookaheads):
        return out
    from ouvir.export.bundle import export_bundle

    return export_bundle(got.path, out, fmt, quantize, calibration, lookaheads, force=out.exists(), progress=progress)


def _current(bundle: Path, checkpoint: Path, sha256: str, lookaheads: Sequence[int | str] | None) -> bool:
    """``bundle`` was exported from this checkpoint with exactly the look-aheads asked for."""
    manifest_path = bundle / "manifest.json"
    if not manifest_path.is_file():
        return False
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest["source"]["sha256"] != sha256:
        return False
    from ouvir.export.bundle import select_contexts
    from ouvir.models.config import ModelConfig

    wanted = select_contexts(ModelConfig.from_dict(manifest["model"]), lookaheads)
    return sorted(tuple(la["att_context_size"]) for la in manifest["lookaheads"].values()) == sorted(wanted)


def run_list(args: argparse.Namespace) -> int:
    del args
    for entry in REGISTRY.values():
        have = builds(entry.name)
        source = read_source(entry.name)
        pulled = ", ".join(f"{f}-{p}" for f, p in have) or ("downloaded" if source else "-")
        print(f"{entry.name}\n    {entry.what}\n    from {entry.source}/{entry.filename}; pulled: {pulled}")
    return 0


def run_pull(args: argparse.Namespace) -> int:
    out = pull(args.name, args.format, args.quantize, args.lookahead, args.cache_dir, args.force, not args.quiet,
               args.calibration)
    name = lookup(args.name).name
    print(f"{name}: {out} (from {read_source(name)['checkpoint']})\n"
          f"run it: ouvir transcribe --model {name} FILE" + ("" if args.format == "onnx" else " --backend pte"))
    return 0


def _lookahead(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def add_models_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("models", help="NVIDIA's published streaming checkpoints by name: list, pull")
    sub = p.add_subparsers(dest="models_command", required=True)
    q = sub.add_parser("list", help="the published models ouvir knows, and which are pulled")
    q.set_defaults(func=run_list)
    q = sub.add_parser("pull", help="download a published model (once) and export it as a bundle (once)",
                       description=f"Downloads into the Hugging Face cache (HF_HOME, HF_ENDPOINT, HF_HUB_OFFLINE "
                                   f"honoured), checks the sha256, exports into {home() / 'models'}/NAME/ "
                                   f"(${HOME_ENV}). Then: ouvir transcribe --model NAME FILE.")
    q.add_argument("name", metavar="NAME", help=f"one of: {', '.join(REGISTRY)}")
    q.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (ONNX Runtime) or pte (ExecuTorch)")
    q.add_argument("--quantize", choices=QUANTIZE, default="none", help="int8: dynamic int8 weights")
    q.add_argument("--lookahead", type=_lookahead, nargs="+", metavar="MS|L_R",
                   help="look-aheads to export, as ms (1040) or attention context (70_13); default: all")
    q.add_argument("--calibration", type=Path, nargs="+", metavar="AUDIO",
                   help="int8: audio for the accuracy report (default: the samples shipped with ouvir)")
    q.add_argument("--cache-dir", type=Path, default=None, help="download cache (default: the Hugging Face cache)")
    q.add_argument("--force", action="store_true", help="export again even if the bundle is current")
    q.add_argument("--quiet", action="store_true", help="no export progress bars")
    q.set_defaults(func=run_pull)
    return p
