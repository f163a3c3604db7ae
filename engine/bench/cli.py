"""``ouvir bench``: the subcommand (wired into engine/cli.py with ``add_bench_parser``).

    ouvir bench [--model M | --config large] [--backend torch onnx pte] [--quantize none int8]
                [--int8-method dynamic static] [--lookahead-ms 480 80] [--decoder rnnt|ctc] [--threads N]
                [--device cpu|cuda] [--audio FILE] [--seconds S] [--warmup-s S] [--against sherpa-onnx] [--minutes N]
                [--out DIR] [--cache DIR] [--seed N] [--profile]
    ouvir bench --streams N [--model M | --config C --quantize Q --int8-method I] [--backend B] [--lookahead-ms MS]
                [--decoder D] [--threads N] [--audio FILE] [--seconds S] [--against sherpa-onnx] [--out DIR]

Every configuration (backend x precision x look-ahead) runs in a fresh process (worker.py) on the same
audio, looped to ``--seconds``, after a warm-up stream; with ``--against sherpa-onnx`` sherpa-onnx runs
each onnx configuration's ONNX files right after it, with the same audio and threads; ``--minutes N`` adds
a long run of the first configuration that ran. Writes bench.json, bench.md and PNG plots to ``--out``; exits
with 1 when an export or a run failed (the others are still measured and reported).

``--streams N`` instead measures how many concurrent real-time streams the model sustains in this process
(streams_cli.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, replace
from importlib.resources import files
from pathlib import Path
from typing import Any

from ouvir.engine.backends import BACKENDS, CPU_ONLY, DEVICES
from ouvir.engine.bench.machine import machine_info, usable_cores
from ouvir.engine.bench.models import (
    PRECISION,
    Config,
    ModelSource,
    configurations,
    default_cache,
    file_source,
    large_source,
    model_bytes,
    published_source,
    sherpa_files,
)
from ouvir.engine.bench.worker import RunSpec
from ouvir.engine.hub import pulled_model

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
LARGE_DEFAULT_LOOKAHEAD_MS = 1040  # the recipe's att_context_size [70, 13]


def add_bench_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from ouvir.models.published import PUBLISHED  # names only: no torch

    p = subparsers.add_parser("bench", help="measure real-time factor, chunk latency, memory; against sherpa-onnx")
    src = p.add_mutually_exclusive_group()  # one of them is required, except with --streams
    src.add_argument("--model", type=Path, help="a .nemo / ouvir checkpoint, a bundle directory, or a pulled model's "
                     "name (ouvir models list)")
    src.add_argument("--config", choices=("large", *PUBLISHED),
                     help="large: NeMo's 114M-parameter streaming recipe with seeded random weights; a published "
                          "model's name: its config with seeded random weights")
    p.add_argument("--backend", nargs="+", choices=sorted(BACKENDS), default=None,
                   help="default: the model's own (torch for a checkpoint or --config large)")
    p.add_argument("--quantize", nargs="+", choices=sorted(PRECISION), default=["none"])
    p.add_argument("--int8-method", nargs="+", choices=("dynamic", "static"), default=["dynamic"],
                   help="int8 exports to measure (static is calibrated on --audio)")
    p.add_argument("--lookahead-ms", nargs="+", type=int, default=None,
                   help=f"default: the model's (--config large: {LARGE_DEFAULT_LOOKAHEAD_MS})")
    p.add_argument("--decoder", choices=("rnnt", "ctc"), default=None, help="default: rnnt when the model has it")
    p.add_argument("--threads", type=int, default=usable_cores(), help="threads per run (default: usable cores)")
    p.add_argument("--device", choices=DEVICES, default="cpu",
                   help="cuda: the torch backend on the GPU, onnx through ONNX Runtime's CUDA provider "
                        "(onnxruntime-gpu); pte and sherpa-onnx runs stay CPU-only and are skipped")
    p.add_argument("--audio", type=Path, default=None,
                   help="speech file, looped (default: 8 s of speech shipped with ouvir)")
    p.add_argument("--seconds", type=float, default=60.0, help="audio streamed per measured run")
    p.add_argument("--warmup-s", type=float, default=5.0, help="audio streamed through a discarded stream first")
    p.add_argument("--against", choices=("sherpa-onnx",), default=None,
                   help="also run sherpa-onnx on every onnx configuration's files")
    p.add_argument("--minutes", type=float, default=None,
                   help="add a long run (RSS and latency over time) of the first configuration that ran")
    p.add_argument("--out", type=Path, default=Path("bench"), help="report folder (default: bench/)")
    p.add_argument("--cache", type=Path, default=None, help=f"exports and built models (default {default_cache()})")
    p.add_argument("--seed", type=int, default=0, help="--config: weight and tokenizer seed")
    p.add_argument("--profile", action="store_true",
                   help="sample every run with py-spy (pip install py-spy): profile-<run>.svg flame graphs in --out")
    p.add_argument("--streams", type=int, default=None, metavar="N",
                   help="concurrent real-time streams sustained (at most N), ouvir batched vs one at a time (and "
                        "sherpa-onnx batched with --against); default model: the shipped one")
    p.set_defaults(func=run_bench)
    return p


def published_default_ms(name: str) -> int:
    """A published model's default look-ahead (its first attention context): chunk - one 80 ms frame."""
    from ouvir.models.large import FRAME_MS
    from ouvir.models.published import PUBLISHED

    return PUBLISHED[name].chunk_ms[0] - FRAME_MS


def default_audio() -> Path:
    """8 s of speech shipped with ouvir (``ouvir/engine/bench/data/``, the NeMo fixtures' test audio): the
    benchmark's input without --audio, and what --config large calibrates its blank bias on."""
    return Path(str(files("ouvir.engine.bench") / "data" / "test_audio.wav"))


def run_bench(args: argparse.Namespace) -> int:
    from ouvir.engine.bench.audio import read_audio

    if args.streams is not None:
        from ouvir.engine.bench.streams_cli import run_streams

        return run_streams(args)
    if args.model is None and args.config is None:
        print("ouvir bench: one of the arguments --model --config is required", file=sys.stderr)
        return 2
    machine = machine_info(args.threads, args.device)  # load average before this run adds its own
    audio_path = args.audio or default_audio()
    samples, conversion = read_audio(audio_path)
    source, lookaheads = model_source(args, samples, audio_path)
    backends = args.backend or [source.info.get("backend", "torch")]
    configs, skipped = configurations(backends, args.quantize, lookaheads, args.int8_method)
    profiler = _py_spy(args.out) if args.profile else None
    base = RunSpec(label="", engine="ouvir", model="", backend="", precision="", lookahead_ms=None,
                   threads=args.threads, audio=str(audio_path), seconds=args.seconds, warmup_s=args.warmup_s,
                   model_bytes=0, decoder=args.decoder, device=args.device)
    runs: list[dict[str, Any]] = []
    ran: list[RunSpec] = []
    failed: list[str] = []
    for cfg in configs:
        if (why := source.unavailable(cfg) or _off_device(cfg, args.device)) is not None:
            skipped.append(why)
            continue
        spec = _prepare(base, source, cfg, failed)
        if spec is None or (result := _measure(spec, failed, profiler)) is None:
            continue
        runs.append(result)
        ran.append(spec)
        if args.against == "sherpa-onnx" and cfg.backend == "onnx":
            sherpa = _sherpa_spec(base, source, cfg, result, skipped)
            if sherpa is not None and (r := _measure(sherpa, failed, profiler)) is not None:
                runs.append(r)
    if args.minutes and ran:
        long = replace(ran[0], label=f"{ran[0].label} long", seconds=args.minutes * 60, long=True)
        if (result := _measure(long, failed, profiler)) is not None:
            runs.append(result)
    if not runs:
        print("ouvir bench: nothing was measured: " + "; ".join(skipped + failed), file=sys.stderr)
        return 1
    audio = {"file": str(audio_path), "conversion": conversion, "file_s": len(samples) / 16000,
             "seconds": args.seconds, "warmup_s": args.warmup_s}
    _write(args, machine, source, audio, runs, skipped, failed)
    return 1 if failed else 0


def model_source(args: argparse.Namespace, samples: Any, audio_path: Path) -> tuple[ModelSource, list[int | None]]:
    """The model ``--config`` or ``--model`` names, and the look-aheads to measure."""
    cache = args.cache or default_cache()
    if args.config == "large":
        lookaheads: list[int | None] = list(args.lookahead_ms or [LARGE_DEFAULT_LOOKAHEAD_MS])
        source = large_source([int(x) for x in lookaheads if x is not None], args.seed, samples, audio_path, cache)
    elif args.config is not None:
        lookaheads = list(args.lookahead_ms or [published_default_ms(args.config)])
        source = published_source(args.config, [int(x) for x in lookaheads if x is not None], args.seed, samples,
                                  audio_path, cache)
    else:
        lookaheads = list(args.lookahead_ms or [None])
        model = args.model if args.model.exists() else pulled_model(str(args.model), None, None)[0]  # a pulled name
        source = file_source(model, cache, args.lookahead_ms, audio_path)
    return source, lookaheads


def _prepare(base: RunSpec, source: ModelSource, cfg: Config, failed: list[str]) -> RunSpec | None:
    """The run spec of ``cfg`` (exporting its bundle first if needed); None, noted, if the export fails."""
    try:
        return _spec(base, source, cfg)
    except Exception as e:  # an export that fails takes only its configuration down
        failed.append(f"{cfg.label}: export failed ({type(e).__name__}: {e})")
        print(f"ouvir bench: {cfg.label}: export failed: {e}", file=sys.stderr)
        return None


def _off_device(cfg: Config, device: str) -> str | None:
    """Why ``cfg`` cannot run on ``device``, or None."""
    if device != "cpu" and cfg.backend in CPU_ONLY:
        return f"{cfg.label} on {device}: {CPU_ONLY[cfg.backend]} runs on the CPU"
    return None


def _spec(base: RunSpec, source: ModelSource, cfg: Config) -> RunSpec:
    path = source.path(cfg)
    label = cfg.label if base.device == "cpu" else f"{cfg.label} {base.device}"
    return replace(base, label=label, model=str(path), backend=cfg.backend, precision=cfg.precision,
                   lookahead_ms=cfg.lookahead_ms, model_bytes=model_bytes(path))


def _sherpa_spec(base: RunSpec, source: ModelSource, cfg: Config, ouvir: dict[str, Any],
                 skipped: list[str]) -> RunSpec | None:
    if base.device != "cpu":
        skipped.append(f"sherpa-onnx {cfg.label}: its PyPI wheel runs on the CPU (compare on --device cpu)")
        return None
    bundle = source.path(cfg)
    files = sherpa_files(bundle, ouvir["lookahead_ms"], ouvir["spec"]["decoder"])
    if files is None:
        skipped.append(f"sherpa-onnx {cfg.label}: the bundle {bundle} holds no sherpa-onnx graphs")
        return None
    label = "sherpa-onnx " + cfg.label.removeprefix("onnx ")
    return replace(base, label=label, engine="sherpa-onnx", model=str(bundle), backend="onnx",
                   precision=cfg.precision, lookahead_ms=ouvir["lookahead_ms"], model_bytes=model_bytes(bundle),
                   chunk_samples=ouvir["chunk_samples"], files=files,
                   paired_with=ouvir["spec"]["label"])


def _py_spy(out: Path) -> Callable[[str], list[str]]:
    """``--profile``: the command prefix that samples a run with py-spy into ``out/profile-<run>.svg``."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).is_file():
        raise FileNotFoundError("--profile needs py-spy: pip install py-spy")
    out.mkdir(parents=True, exist_ok=True)

    def prefix(label: str) -> list[str]:
        slug = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")
        return [exe, "record", "--rate", "250", "--format", "flamegraph", "-o", str(out / f"profile-{slug}.svg"), "--"]

    return prefix


def _measure(spec: RunSpec, failures: list[str], profiler: Callable[[str], list[str]] | None = None,
             ) -> dict[str, Any] | None:
    """Run ``spec`` in a fresh process with the thread environment set; None (and a note) if it failed."""
    env = {**os.environ, **dict.fromkeys(THREAD_ENV, str(spec.threads))}
    print(f"ouvir bench: {spec.label} ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="ouvir-bench-") as tmp:
        spec_path, result_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
        spec_path.write_text(json.dumps(asdict(spec)))
        cmd = [sys.executable, "-m", "ouvir.engine.bench.worker", str(spec_path), str(result_path)]
        proc = subprocess.run((profiler(spec.label) if profiler else []) + cmd, env=env, stderr=subprocess.PIPE,
                              text=True)
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
            failures.append(f"{spec.label}: failed ({tail[0]})")
            print(proc.stderr, file=sys.stderr)
            return None
        result = json.loads(result_path.read_text())
    s = result["summary"]
    print(f"ouvir bench: {spec.label}: RTF {s['rtf']:.3f}, p99 {s['latency']['p99_s'] * 1000:.1f} ms "
          f"({s['p99_of_chunk']:.1%} of a {s['chunk_s'] * 1000:.0f} ms chunk)", file=sys.stderr, flush=True)
    return result


def _write(args: argparse.Namespace, machine: dict[str, Any], source: ModelSource, audio: dict[str, Any],
           runs: list[dict[str, Any]], skipped: list[str], failed: list[str]) -> None:
    from ouvir.engine.bench.plots import write_plots
    from ouvir.engine.bench.report import build_report, markdown, write_json

    report = build_report(sys.argv, machine, source.info, audio, runs, skipped, failed)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(report, args.out / "bench.json")
    text = markdown(report)
    (args.out / "bench.md").write_text(text)
    try:
        plots = [str(p) for p in write_plots(report, args.out)]
    except ImportError as e:
        plots = [f"no plots ({e}: pip install matplotlib)"]
    print(text)
    print(f"ouvir bench: wrote {args.out / 'bench.json'}, {args.out / 'bench.md'}, " + ", ".join(plots),
          file=sys.stderr)
