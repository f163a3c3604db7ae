"""``ouvir bench --streams N``: how many concurrent real-time streams one machine sustains: ouvir batched
(``Recognizer.decode_streams``), ouvir one at a time (``Recognizer.decode`` per stream) and, with
``--against sherpa-onnx``, sherpa-onnx batched (``OnlineRecognizer.decode_streams``) on the same ONNX files.

A server's loop is simulated on one thread, the same for every engine: every chunk period (``chunk_s``, the audio
of one later encoder step) each of the ``n`` streams receives one chunk's audio (its own offset into the looped
file, so streams differ); the loop takes it in (features) and decodes, as soon as it is free. A chunk's latency
(one per stream and round) is the time from its audio's arrival to the end of its stream's decoding: arrivals
follow the real-time schedule, the loop's work is measured, and a loop that falls behind carries its queue over
(``start = max(arrival, previous end)``), so no time is spent sleeping. ``n`` streams are sustained when the p99
chunk latency stays under ``chunk_s``; a run stops early once more than 1 % of its chunks (and one more) are
late, which already puts its p99 at or over ``chunk_s``. Counts tried per engine: 1, 2, 4, ... while sustained
(up to ``N``), then a bisection between the most sustained and the fewest not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from ouvir.engine.bench.harness import Counters
from ouvir.engine.events import Final
from ouvir.engine.recognizer import Recognizer, Stream

Clock = Callable[[], float]


class Loop(Protocol):
    """One engine's side of the simulated server loop."""

    mode: str  # "batched" | "one_at_a_time" | "sherpa-onnx batched"

    def open(self, n: int) -> list[Any]: ...  # n fresh streams (and a fresh token count)

    def accept(self, stream: Any, samples: np.ndarray) -> None: ...  # samples (n,) at the model rate

    def finish(self, stream: Any) -> None: ...

    def decode(self, streams: Sequence[Any], clock: Clock) -> list[float]: ...  # seconds after the call's start
    # at which each stream's ready chunks were decoded

    def tokens(self, streams: Sequence[Any]) -> int: ...  # tokens decoded since ``open``

    def parts(self) -> dict[str, float]: ...  # seconds spent in parts of the work since ``open`` (where known)


class OuvirLoop:
    """ouvir's Recognizer, batched (one ``decode_streams`` call) or one stream after another (``decode``).
    ``counters``: those of the recognizer's ``TimedBackend`` (engines.py), for the encoder's and heads' shares."""

    def __init__(self, rec: Recognizer, batched: bool, counters: Counters | None = None) -> None:
        self.rec, self.batched, self.counters = rec, batched, counters
        self.mode = "batched" if batched else "one_at_a_time"
        self.rate = rec.info.features.sample_rate
        self.final_tokens = 0
        self.start = Counters()

    def open(self, n: int) -> list[Stream]:
        self.final_tokens = 0
        self.start = replace(self.counters) if self.counters is not None else Counters()
        return [self.rec.create_stream() for _ in range(n)]

    def accept(self, stream: Stream, samples: np.ndarray) -> None:
        stream.accept_waveform(samples, self.rate)

    def finish(self, stream: Stream) -> None:
        stream.input_finished()

    def decode(self, streams: Sequence[Stream], clock: Clock) -> list[float]:
        t0 = clock()
        if self.batched:
            self._take(event for _, event in self.rec.decode_streams(streams))
            return [clock() - t0] * len(streams)
        done = []
        for s in streams:
            self._take(self.rec.decode(s))
            done.append(clock() - t0)
        return done

    def tokens(self, streams: Sequence[Stream]) -> int:
        return self.final_tokens

    def parts(self) -> dict[str, float]:
        if self.counters is None:
            return {}
        return {"encoder_s": self.counters.encoder_s - self.start.encoder_s,
                "heads_s": self.counters.heads_s - self.start.heads_s}

    def _take(self, events: Any) -> None:
        self.final_tokens += sum(len(e.tokens) for e in events if isinstance(e, Final))


class SherpaLoop:
    """sherpa-onnx's OnlineRecognizer (``engines.sherpa_recognizer``), every ready stream in one
    ``decode_streams`` call, repeated while any is ready (as its own servers do)."""

    mode = "sherpa-onnx batched"

    def __init__(self, recognizer: Any, rate: int) -> None:
        self.recognizer, self.rate = recognizer, rate

    def open(self, n: int) -> list[Any]:
        return [self.recognizer.create_stream() for _ in range(n)]

    def accept(self, stream: Any, samples: np.ndarray) -> None:
        stream.accept_waveform(self.rate, samples)

    def finish(self, stream: Any) -> None:
        stream.input_finished()

    def decode(self, streams: Sequence[Any], clock: Clock) -> list[float]:
        t0 = clock()
        while ready := [s for s in streams if self.recognizer.is_ready(s)]:
            self.recognizer.decode_streams(ready)
        return [clock() - t0] * len(streams)

    def tokens(self, streams: Sequence[Any]) -> int:
        return sum(len(self.recognizer.get_result_all(s).tokens) for s in streams)

    def parts(self) -> dict[str, float]:
        return {}  # inside sherpa-onnx (C++)


def chunk_seconds(rec: Recognizer) -> float:
    """Audio of one later encoder step: the real-time budget of each decoding round."""
    geo, features = rec.info.geometry, rec.info.features
    return geo.shift_size[1] * features.hop_length / features.sample_rate


def serve(loop: Loop, audio: np.ndarray, n: int, seconds: float, chunk_s: float, rate: int,
          clock: Clock = time.perf_counter) -> dict[str, Any]:
    """``n`` streams of ``seconds`` each through one loop; per-chunk latencies (s) and their summary."""
    step = round(chunk_s * rate)
    streams = loop.open(n)
    offsets = [i * len(audio) // n for i in range(n)]
    looped = np.concatenate([audio, audio])  # (2 x samples,): any offset has a chunk after it
    latencies: list[float] = []
    end = 0.0  # simulated time the loop is free again
    ticks = max(1, round(seconds / chunk_s))
    total, late, busy = n * (ticks + 1), 0, 0.0
    for tick in range(ticks + 1):  # the last tick finishes every stream
        arrival = tick * chunk_s
        begin = max(arrival, end)
        t0 = clock()
        for s, offset in zip(streams, offsets, strict=True):
            if tick < ticks:
                start = (offset + tick * step) % len(audio)
                loop.accept(s, looped[start : start + step])
            else:
                loop.finish(s)
        taken = clock() - t0
        done = loop.decode(streams, clock)  # seconds after its start at which each stream was done
        work = clock() - t0
        end, busy = begin + work, busy + work
        latencies += [begin + taken + d - arrival for d in done]
        late += sum(x >= chunk_s for x in latencies[-n:])
        if late > 0.01 * total + 1:  # the p99 of the whole run is already >= chunk_s
            break
    lat = np.array(latencies)
    p99, stopped = float(np.percentile(lat, 99)), len(lat) < total
    return {"streams": n, "mode": loop.mode, "chunks": len(lat), "stopped_early": stopped, "chunk_s": chunk_s,
            "p50_s": float(np.percentile(lat, 50)), "p99_s": p99, "max_s": float(lat.max()),
            "busy_s": busy, **loop.parts(),  # the loop's work, and the encoder's / heads' part of it (ouvir)
            "tokens_per_s": None if stopped else loop.tokens(streams) / (n * ticks * chunk_s),  # per stream
            "sustained": p99 < chunk_s}


def search(run: Callable[[int], dict[str, Any]], most: int) -> list[dict[str, Any]]:
    """Runs at 1, 2, 4, ... while sustained (the last one at ``most``), then a bisection between the most
    streams sustained and the fewest not; every run, in order."""
    runs, good, bad, n = [], 0, None, 1
    while bad is None and good < most:
        runs.append(r := run(n))
        good, bad = (n, None) if r["sustained"] else (good, n)
        n = min(2 * n, most)
    while bad is not None and bad - good > 1:
        runs.append(r := run(n := (good + bad) // 2))
        good, bad = (n, bad) if r["sustained"] else (good, n)
    return runs


def capacity(loops: Sequence[Loop], audio: np.ndarray, most: int, seconds: float, chunk_s: float, rate: int,
             clock: Clock = time.perf_counter) -> dict[str, Any]:
    """The search of every loop, and the most streams each sustained (0: none; ``most``: maybe more). A
    discarded run of ``most`` streams (at most 1 s each) first warms each loop's runtime up."""
    runs = []
    for loop in loops:
        serve(loop, audio, most, min(seconds, 1.0), chunk_s, rate, clock)
        runs += search(lambda n, loop=loop: serve(loop, audio, n, seconds, chunk_s, rate, clock), most)
    best = {loop.mode: max((r["streams"] for r in runs if r["mode"] == loop.mode and r["sustained"]), default=0)
            for loop in loops}
    return {"chunk_s": chunk_s, "seconds_per_stream": seconds, "most": most, "runs": runs, "sustained": best}


def markdown(result: dict[str, Any]) -> str:
    best, most = result["sustained"], result["most"]
    counts = ", ".join(f"{mode} **{n}**{'+' if n == most else ''}" for mode, n in best.items())
    ratio = (f"; batched / one at a time {best['batched'] / best['one_at_a_time']:.2f}x"
             if best.get("one_at_a_time") else "")
    lines = [f"Concurrent real-time streams ({result['chunk_s'] * 1000:.0f} ms chunks, "
             f"{result['seconds_per_stream']:g} s each, p99 chunk latency under the chunk; at most {most} tried): "
             f"{counts}{ratio}", "",
             *_about(result),
             "| streams | mode | p50 ms | p99 ms | max ms | work ms per chunk | encoder share | tokens/s per stream "
             "| sustained |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    return "\n".join([*lines, *map(_row, result["runs"])]) + "\n"


def _about(result: dict[str, Any]) -> list[str]:
    """What ran (the command's report has it; a bare ``capacity`` result does not)."""
    if "model" not in result:
        return []
    method = f" ({result['int8_method']})" if result.get("int8_method") else ""
    exact = "" if result["batch_exact"] else (" ouvir's batched mode runs one encoder call per stream here: the "
                                              "model is not batch-exact (dynamically quantized int8).")
    config = f"`--config {result['config']}` " if result.get("config") else ""
    return [f"Model {config}`{result['model']}`: {result['backend']} {result['precision']}{method}, "
            f"{result['lookahead_ms']} ms look-ahead, {result['decoder']}, {result['threads']} threads; audio "
            f"`{result['audio']}`; CPU {result['machine'].get('cpu', '?')}.{exact}", ""]


def _row(r: dict[str, Any]) -> str:
    tokens = "-" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:.1f}"
    sustained = "yes" if r["sustained"] else "no (stopped early)" if r["stopped_early"] else "no"
    encoder = f"{r['encoder_s'] / r['busy_s']:.0%}" if "encoder_s" in r and r["busy_s"] > 0 else "-"
    return (f"| {r['streams']} | {r['mode']} | {r['p50_s'] * 1000:.1f} | {r['p99_s'] * 1000:.1f} | "
            f"{r['max_s'] * 1000:.1f} | {r['busy_s'] * 1000 / r['chunks']:.1f} | {encoder} | {tokens} | {sustained} |")
