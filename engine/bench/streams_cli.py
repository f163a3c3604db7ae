"""``ouvir bench --streams N``: how many concurrent real-time streams one model sustains in this process, ouvir
batched vs one at a time, and with ``--against sherpa-onnx`` sherpa-onnx batched on the same ONNX files
(streams.py). The model: ``--model`` or the shipped default model as it is, or one configuration of ``--config``
(``--backend``, ``--quantize``, ``--int8-method``, ``--lookahead-ms``; exported into the cache as ``ouvir bench``
does). Writes streams.json and streams.md to ``--out``.

    ouvir bench --streams 128 --config large --backend onnx --quantize int8 --int8-method static --lookahead-ms 480
                --threads 2 --seconds 20 --against sherpa-onnx --out bench/streams
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ouvir.engine.bench.cli import default_audio, model_source
from ouvir.engine.bench.machine import machine_info
from ouvir.engine.bench.models import configurations, sherpa_files
from ouvir.engine.bench.paths import portable_paths
from ouvir.engine.bundle import read_manifest


def run_streams(args: argparse.Namespace) -> int:
    from ouvir.engine.backends import open_backend
    from ouvir.engine.bench.audio import read_audio
    from ouvir.engine.bench.engines import TimedBackend
    from ouvir.engine.bench.harness import Counters
    from ouvir.engine.bench.streams import OuvirLoop, capacity, chunk_seconds, markdown
    from ouvir.engine.recognizer import Recognizer

    if args.streams < 1:
        print("ouvir bench --streams: N >= 1", file=sys.stderr)
        return 2
    audio_path = args.audio or default_audio()
    samples, _ = read_audio(audio_path)
    opened = _streams_model(args, samples, audio_path)
    if isinstance(opened, str):
        print(f"ouvir bench --streams: {opened}", file=sys.stderr)
        return 2
    model, backend, precision, lookahead = opened
    counters = Counters()  # the encoder's and heads' time (TimedBackend)
    runtime = open_backend(model, backend, precision, lookahead, args.threads, args.device)
    rec = Recognizer(TimedBackend(runtime, time.perf_counter, counters), args.decoder)
    rate, chunk_s = rec.info.features.sample_rate, chunk_seconds(rec)
    loops: list[Any] = [OuvirLoop(rec, True, counters), OuvirLoop(rec, False, counters)]
    if args.against == "sherpa-onnx":
        if (sherpa := _sherpa_loop(model, rec, args.threads, args.device)) is None:
            print("ouvir bench --streams --against sherpa-onnx: needs an ONNX bundle on the CPU", file=sys.stderr)
            return 2
        loops.append(sherpa)
    quantization = (read_manifest(model).get("quantization") or {}) if model.is_dir() else {}
    result = {"command": ["ouvir", *sys.argv[1:]], "created": datetime.now(UTC).isoformat(timespec="seconds"),
              "config": args.config, "model": str(model), "backend": rec.backend.name,
              "precision": rec.backend.precision, "int8_method": quantization.get("method"),
              "lookahead_ms": rec.info.lookahead_ms, "decoder": rec.decoder, "threads": args.threads,
              "batch_exact": rec.backend.batch_exact, "audio": str(audio_path),
              "machine": machine_info(args.threads, args.device),
              **capacity(loops, samples, args.streams, args.seconds, chunk_s, rate)}
    result = portable_paths(result)  # relative to the project, or names (paths.py)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "streams.json").write_text(json.dumps(result, indent=1) + "\n")
    text = markdown(result)
    (args.out / "streams.md").write_text(text)
    print(text)
    print(f"ouvir bench: wrote {args.out / 'streams.json'}, {args.out / 'streams.md'}", file=sys.stderr)
    return 0


def _sherpa_loop(model: Path, rec: Any, threads: int, device: str) -> Any:
    """sherpa-onnx's side of the loop on the ONNX files ``rec`` runs (its look-ahead and decoder); None if it has
    none (not an ONNX bundle, or not on the CPU)."""
    from ouvir.engine.bench.engines import sherpa_recognizer
    from ouvir.engine.bench.streams import SherpaLoop

    files = sherpa_files(model, rec.info.lookahead_ms, rec.decoder) if rec.backend.name == "onnx" else None
    if files is None or device != "cpu":
        return None
    paths = {role: model / name for role, name in files.items()}
    rate = rec.info.features.sample_rate
    return SherpaLoop(sherpa_recognizer(paths, threads, rate, rec.info.features.features), rate)


def _streams_model(args: argparse.Namespace, samples: Any, audio_path: Path
                   ) -> tuple[Path, str | None, str | None, int | None] | str:
    """``--streams``: (model, backend, precision, look-ahead) to open: ``--model`` or the default model as it is, or
    the one configuration ``--config`` with ``--backend``, ``--quantize``, ``--int8-method``, ``--lookahead-ms``
    names (exported into the cache as ``ouvir bench`` does); or why not."""
    from ouvir.engine.default_model import default_model

    backend = args.backend[0] if args.backend else None
    lookahead = args.lookahead_ms[0] if args.lookahead_ms else None
    if args.config is None:
        model, backend = (args.model, backend) if args.model is not None else default_model(backend, None)
        return model, backend, None, lookahead
    configs, _ = configurations(args.backend or ["torch"], args.quantize, args.lookahead_ms or [None],
                                args.int8_method)
    if len(configs) != 1:  # before the model is built
        return f"--config measures one configuration at a time; these name {len(configs)}"
    source, lookaheads = model_source(args, samples, audio_path)
    cfg = replace(configs[0], lookahead_ms=lookaheads[0])  # the config's default look-ahead if none was given
    return source.path(cfg), cfg.backend, cfg.precision, cfg.lookahead_ms
