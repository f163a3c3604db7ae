"""``ouvir bench --streams N``: how many concurrent real-time streams one machine sustains, batched
(``Recognizer.decode_streams``) vs one at a time (``Recognizer.decode`` per stream).

A server's loop is simulated on one thread: every chunk period (``chunk_s``, the audio of one later encoder step)
each of the ``n`` streams receives one chunk's audio (its own offset into the looped file, so streams differ);
the loop decodes them as soon as it is free. A chunk's latency (one per stream and round) is the time from its
audio's arrival to the end of its stream's decoding: arrivals follow the real-time schedule, decoding times are
measured, and a loop that falls behind carries its queue over (``start = max(arrival, previous end)``), so no
time is spent sleeping. ``n`` streams are sustained when the p99 chunk latency stays under ``chunk_s``. Counts
tried: 1, 2, 4, ... up to ``N``, and ``N``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ouvir.engine.recognizer import Recognizer, Stream

MODES = ("batched", "one_at_a_time")


def chunk_seconds(rec: Recognizer) -> float:
    """Audio of one later encoder step: the real-time budget of each decoding round."""
    geo, features = rec.info.geometry, rec.info.features
    return geo.shift_size[1] * features.hop_length / features.sample_rate


def serve(rec: Recognizer, audio: np.ndarray, n: int, batched: bool, seconds: float,
          clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """``n`` streams of ``seconds`` each through one loop; per-chunk latencies (s) and their summary."""
    chunk_s = chunk_seconds(rec)
    rate = rec.info.features.sample_rate
    step = round(chunk_s * rate)
    streams = [rec.create_stream() for _ in range(n)]
    offsets = [i * len(audio) // n for i in range(n)]
    looped = np.concatenate([audio, audio])  # (2 x samples,): any offset has a chunk after it
    latencies: list[float] = []
    end = 0.0  # simulated time the loop is free again
    ticks = max(1, round(seconds / chunk_s))
    for tick in range(ticks + 1):  # the last tick finishes every stream
        for s, offset in zip(streams, offsets, strict=True):
            if tick < ticks:
                start = (offset + tick * step) % len(audio)
                s.accept_waveform(looped[start : start + step], rate)
            else:
                s.input_finished()
        arrival = tick * chunk_s
        begin = max(arrival, end)
        t0 = clock()
        done = _decode(rec, streams, batched, clock)  # seconds after t0 at which each stream was done
        end = begin + (clock() - t0)
        latencies += [begin + d - arrival for d in done]
    lat = np.array(latencies)
    p99 = float(np.percentile(lat, 99))
    return {"streams": n, "mode": MODES[0] if batched else MODES[1], "chunks": len(lat), "chunk_s": chunk_s,
            "p50_s": float(np.percentile(lat, 50)), "p99_s": p99, "max_s": float(lat.max()),
            "sustained": p99 < chunk_s}


def _decode(rec: Recognizer, streams: list[Stream], batched: bool, clock: Callable[[], float]) -> list[float]:
    t0 = clock()
    if batched:
        for _ in rec.decode_streams(streams):
            pass
        return [clock() - t0] * len(streams)
    done = []
    for s in streams:
        for _ in rec.decode(s):
            pass
        done.append(clock() - t0)
    return done


def counts(most: int) -> list[int]:
    """1, 2, 4, ... below ``most``, then ``most``."""
    out = [1]
    while out[-1] * 2 < most:
        out.append(out[-1] * 2)
    return [*out, most] if most > 1 else out


def capacity(rec: Recognizer, audio: np.ndarray, most: int, seconds: float,
             clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Every count of ``counts(most)`` in both modes, and the most streams each mode sustained (0: none). A
    discarded run of ``most`` batched streams first warms the runtime up."""
    serve(rec, audio, most, True, min(seconds, 1.0), clock)
    runs = [serve(rec, audio, n, mode == MODES[0], seconds, clock) for mode in MODES for n in counts(most)]
    best = {mode: max((r["streams"] for r in runs if r["mode"] == mode and r["sustained"]), default=0)
            for mode in MODES}
    return {"chunk_s": chunk_seconds(rec), "seconds_per_stream": seconds, "runs": runs, "sustained": best}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Concurrent real-time streams ({result['chunk_s'] * 1000:.0f} ms chunks, "
             f"{result['seconds_per_stream']:g} s each): sustained batched {result['sustained']['batched']}, "
             f"one at a time {result['sustained']['one_at_a_time']}", "",
             "| streams | mode | p50 ms | p99 ms | max ms | sustained |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['streams']} | {r['mode']} | {r['p50_s'] * 1000:.1f} | {r['p99_s'] * 1000:.1f} | "
              f"{r['max_s'] * 1000:.1f} | {'yes' if r['sustained'] else 'no'} |" for r in result["runs"]]
    return "\n".join(lines) + "\n"
