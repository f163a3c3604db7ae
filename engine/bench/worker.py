"""One benchmark configuration in a fresh process, so peak RSS, load time and imports belong to it alone.

    python -m ouvir.engine.bench.worker SPEC.json RESULT.json

``SPEC.json`` is a ``RunSpec``; the result is the summary plus the per-chunk and RSS series. The parent
(cli.py) sets the thread environment before the runtimes are imported.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any

from ouvir.engine.audio.edge import MODEL_RATE
from ouvir.engine.backends.base import Backend
from ouvir.engine.bench.audio import LoopedAudio, read_audio
from ouvir.engine.bench.harness import REAL_METERS, Engine, Meters, run_stream, summarize
from ouvir.engine.bench.machine import current_rss_bytes, load_average, peak_rss_bytes
from ouvir.engine.bench.stats import latency_drift, rss_growth


@dataclass(frozen=True)
class RunSpec:
    label: str  # "onnx int8 480 ms", "sherpa-onnx int8 480 ms"
    engine: str  # "ouvir" | "sherpa-onnx"
    model: str  # ouvir: a .nemo / checkpoint file or a bundle directory; sherpa-onnx: the directory of `files`
    backend: str  # torch | onnx | pte (sherpa-onnx: onnx)
    precision: str  # fp32 | int8
    lookahead_ms: int | None
    threads: int
    audio: str
    seconds: float  # audio streamed in the measured run
    warmup_s: float  # audio streamed first through a stream that is thrown away
    model_bytes: int  # bytes of the files this configuration loads
    chunk_samples: int | None = None  # block size; None: one chunk's shift of new audio at the model's look-ahead
    decoder: str | None = None
    long: bool = False  # a long run: sample RSS, compare first and last windows
    rss_every_s: float = 1.0  # long runs: RSS sampling period in stream seconds
    files: dict[str, str] = field(default_factory=dict)  # sherpa-onnx: role -> file
    paired_with: str | None = None  # sherpa-onnx: the label of the ouvir run on the same files
    device: str = "cpu"  # ouvir: where the network runs (cuda: torch on the GPU, ONNX Runtime's CUDA provider)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        return cls(**d)


def open_engine(spec: RunSpec) -> tuple[Engine, int, int | None]:
    """The engine for ``spec``, its block size in samples at ``MODEL_RATE`` (the rate the audio is read at)
    and its look-ahead in ms."""
    if spec.engine == "sherpa-onnx":
        from ouvir.engine.bench.engines import SherpaEngine

        if spec.chunk_samples is None:
            raise ValueError("a sherpa-onnx run needs chunk_samples (the paired ouvir run's)")
        files = {role: Path(spec.model) / name for role, name in spec.files.items()}
        engine = SherpaEngine(files, spec.threads, MODEL_RATE, 80, spec.label)
        return engine, spec.chunk_samples, spec.lookahead_ms
    from ouvir.engine.bench.engines import OuvirEngine

    backend = open_backend(spec)
    info = backend.info
    block = spec.chunk_samples or round(info.geometry.shift_size[1] * info.features.window_stride * MODEL_RATE)
    return OuvirEngine(backend, spec.decoder, perf_counter, spec.label), block, info.lookahead_ms


def open_backend(spec: RunSpec) -> Backend:
    """The engine's backend for ``spec`` with ``spec.threads`` threads on ``spec.device``."""
    from ouvir.engine.backends import open_backend as open_engine_backend

    return open_engine_backend(spec.model, spec.backend, spec.precision, spec.lookahead_ms, spec.threads, spec.device)


def run(spec: RunSpec, meters: Meters = REAL_METERS) -> dict[str, Any]:
    samples, conversion = read_audio(spec.audio)
    rss_start = current_rss_bytes()
    t0 = meters.clock()
    engine, block, lookahead_ms = open_engine(spec)
    load_s = meters.clock() - t0
    rss_loaded = current_rss_bytes()
    audio, rate = LoopedAudio(samples, MODEL_RATE), MODEL_RATE
    if spec.warmup_s > 0:
        run_stream(engine, audio, block, max(block, round(spec.warmup_s * rate)), meters)
    load_before = load_average()
    every = max(1, round(spec.rss_every_s * rate / block)) if spec.long else None
    trace = run_stream(engine, audio, block, round(spec.seconds * rate), meters, rss_every=every)
    result: dict[str, Any] = {
        "spec": asdict(spec),
        "audio_conversion": conversion,
        "load_s": load_s,
        "model_bytes": spec.model_bytes,
        "chunk_samples": block,
        "lookahead_ms": lookahead_ms,
        "rss": {"start_bytes": rss_start, "loaded_bytes": rss_loaded, "peak_bytes": peak_rss_bytes()},
        "load_average": {"before": load_before, "after": load_average()},
        "summary": summarize(trace, block / rate, engine.has_parts),
        "series": {"at_s": trace.at_s.tolist(), "latency_s": trace.latency_s.tolist(),
                   "cpu_s": trace.cpu_block_s.tolist(), "chunks": trace.chunks.tolist()},
    }
    if spec.long:
        one = trace.chunks == 1
        result["long"] = {
            "drift": latency_drift(trace.at_s[one], trace.latency_s[one], trace.audio_s).to_dict(),
            "rss_growth": rss_growth(trace.rss_at_s, trace.rss_bytes, spec.warmup_s).to_dict(),
            "rss_series": {"at_s": trace.rss_at_s.tolist(), "bytes": trace.rss_bytes.tolist()},
        }
    return result


def main(argv: list[str] | None = None) -> int:
    spec_path, result_path = argv if argv is not None else sys.argv[1:]
    spec = RunSpec.from_dict(json.loads(Path(spec_path).read_text()))
    Path(result_path).write_text(json.dumps(run(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
