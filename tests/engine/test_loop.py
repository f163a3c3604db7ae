"""The real-time loop under a fake clock: a fake microphone delivers audio as fake time passes, a fake
backend spends fake time per encoder step. Deterministic: the clock only moves when the decode side
sleeps or computes, and it waits until the microphone has delivered everything due by then."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ouvir.engine.audio import ArraySource
from ouvir.engine.events import Final, Lag, Overload, Partial
from ouvir.engine.loop import AudioQueue, LoopConfig, PacedSource, RealtimeLoop
from ouvir.engine.recognizer import Recognizer

from .fakes import ScriptedBackend
from .reference import ReplayBackend, head_weights, reference

BLOCK = 1600  # 100 ms microphone blocks
US = 1_000_000


class FakeClock:
    def __init__(self) -> None:
        self.us = 0
        self.cond = threading.Condition()
        self.mic: FakeMic | None = None

    def now(self) -> float:
        with self.cond:
            return self.us / US

    def sleep(self, seconds: float) -> None:
        with self.cond:
            self.us += round(seconds * US)
            self.cond.notify_all()
            assert self.cond.wait_for(lambda: self.mic is None or self.mic.caught_up(self.us), timeout=10)


class FakeMic:
    """Block i (100 ms) can be read once the clock reaches its end, (i + 1) * 100 ms."""

    def __init__(self, clock: FakeClock, audio: np.ndarray) -> None:
        self.clock = clock
        clock.mic = self
        self.blocks = [audio[i : i + BLOCK] for i in range(0, len(audio), BLOCK)]
        self.next = 0
        self.waiting = False  # inside read(), everything before block `next` handed over
        self.ended = False
        self.conversion = None

    def due_us(self, i: int) -> int:
        return (i + 1) * BLOCK * US // 16000

    def caught_up(self, now_us: int) -> bool:
        return self.ended or (self.waiting and self.due_us(self.next) > now_us)

    def read(self, timeout: float | None = None) -> np.ndarray | None:
        with self.clock.cond:
            if self.next == len(self.blocks):
                self.ended = True
                self.clock.cond.notify_all()
                return None
            self.waiting = True
            self.clock.cond.notify_all()
            assert self.clock.cond.wait_for(lambda: self.clock.us >= self.due_us(self.next), timeout=10)
            self.waiting = False
            self.next += 1
            return self.blocks[self.next - 1]

    def close(self) -> None:
        with self.clock.cond:
            self.ended = True
            self.clock.cond.notify_all()


def test_audio_queue_drops_the_oldest_samples_beyond_capacity():
    q = AudioQueue(capacity=10)
    for start in (0, 4, 8):
        q.put(np.arange(start, start + 4))
    assert (q.queued, q.dropped, q.high_water) == (10, 2, 10)
    assert q.get().tolist() == [2, 3] and q.get().tolist() == [4, 5, 6, 7]  # the oldest block was trimmed
    q.put(np.arange(100, 125))  # larger than the whole queue: only its newest 10 samples stay
    assert (q.queued, q.dropped) == (10, 2 + 4 + 15)
    assert q.get().tolist() == list(range(115, 125)) and q.get() is None


@pytest.fixture(scope="module")
def hybrid_weights(nemo_dir):
    return head_weights(nemo_dir / "hybrid_multi.nemo")


def test_keeps_up_with_a_fast_backend(nemo_dir, hybrid_weights):
    ref, _ = reference(nemo_dir, "hybrid_multi")
    audio = np.load(nemo_dir / "test_audio_f32.npy")
    clock = FakeClock()
    rec = Recognizer(ReplayBackend(nemo_dir, "hybrid_multi", "c70_13", hybrid_weights))
    loop = RealtimeLoop(rec, FakeMic(clock, audio), LoopConfig(max_lag_s=1.0, lag_report_s=0.5), clock)
    events = list(loop.run())
    finals = [e for e in events if isinstance(e, Final)]
    assert [f.text for f in finals] == [ref["streaming"]["c70_13"]["rnnt_text"]]
    assert not [e for e in events if isinstance(e, Overload)]
    lags = [e for e in events if isinstance(e, Lag)]
    assert len(lags) >= 15  # every 0.5 s of the 8 s, and once at the end
    assert all(0.0 <= lag.lag_s <= 0.1 for lag in lags)  # never more than the block being decoded
    assert (lags[-1].captured_s, lags[-1].decoded_s, lags[-1].lag_s) == (8.0, 8.0, 0.0)
    assert loop.queue.dropped == 0 and loop.queue.high_water == BLOCK
    assert 8.0 <= clock.now() <= 8.1


def test_slow_backend_reports_lag_drops_oldest_audio_and_stays_bounded():
    clock = FakeClock()
    script = {f: [5 + f % 2] for f in range(0, 125, 5)}  # a token every 0.4 s of the 10 s
    backend = ScriptedBackend(script, on_encode=lambda: clock.sleep(0.5))  # 160 ms of audio per 0.5 s step
    rec = Recognizer(backend)
    cfg = LoopConfig(max_lag_s=1.0, lag_report_s=0.5)
    loop = RealtimeLoop(rec, FakeMic(clock, np.zeros(160000, np.float32)), cfg, clock)
    events, buffered = [], []
    for event in loop.run():
        events.append(event)
        buffered.append(loop.stream.scheduler.buffered)
    overloads = [e for e in events if isinstance(e, Overload)]
    lags = [e for e in events if isinstance(e, Lag)]
    assert overloads and lags
    dropped = loop.queue.dropped
    assert sum(o.dropped_s for o in overloads) == pytest.approx(dropped / 16000)
    assert overloads[-1].dropped_total_s == dropped / 16000
    assert 0.5 * 10.0 <= dropped / 16000 <= 0.8 * 10.0  # decoding runs at ~1/3 real time
    # Bounded: the queue never held more than max_lag_s, the lag never exceeded it by more than a block.
    assert loop.queue.high_water <= 16000
    assert max(lag.lag_s for lag in lags) <= 1.0 + 0.1 + 1e-9
    assert max(lag.lag_s for lag in lags[:-1]) >= 0.9  # and it was reported while behind
    assert max(buffered) <= 16 + 9 + 10  # feature columns held by the stream
    # Every captured sample was either decoded or dropped, and the loop finished with a Final.
    assert (lags[-1].captured_s, lags[-1].decoded_s, lags[-1].lag_s) == (10.0, 10.0, 0.0)
    assert loop.decoded + dropped == 160000
    finals = [e for e in events if isinstance(e, Final)]
    assert finals and finals[-1] is [e for e in events if isinstance(e, Final | Partial)][-1]
    assert all(o.stream_s <= loop.decoded / 16000 for o in overloads)


def test_stop_ends_with_a_final_for_the_audio_already_captured():
    clock = FakeClock()
    rec = Recognizer(ScriptedBackend({5: [1], 6: [2], 80: [3]}))  # "hello" at 0.4 s, "wor" at 6.4 s
    loop = RealtimeLoop(rec, FakeMic(clock, np.zeros(128000, np.float32)), LoopConfig(), clock)
    events = []
    for event in loop.run():
        events.append(event)
        if isinstance(event, Partial):
            loop.stop()  # like Ctrl-C
    finals = [e for e in events if isinstance(e, Final)]
    assert [f.text for f in finals] == ["hello"]
    assert loop.captured < 128000 // 2 and loop.decoded == loop.captured


def test_capture_error_is_raised_after_the_final():
    class Broken:
        conversion = None

        def __init__(self) -> None:
            self.reads = 0

        def read(self, timeout=None):
            self.reads += 1
            if self.reads > 10:
                raise OSError("device unplugged")
            return np.zeros(BLOCK, np.float32)

        def close(self) -> None:
            pass

    rec = Recognizer(ScriptedBackend({3: [1], 4: [2]}))
    events = []
    with pytest.raises(OSError, match="unplugged"):
        for event in RealtimeLoop(rec, Broken(), LoopConfig(idle_s=0.001)).run():
            events.append(event)
    assert [e.text for e in events if isinstance(e, Final)] == ["hello"]


def test_paced_source_releases_blocks_at_real_time():
    clock = FakeClock()
    source = PacedSource(ArraySource(np.zeros(16000, np.float32), 16000, block_s=0.1), clock)
    times = []
    while (block := source.read()) is not None:
        times.append((len(block), clock.now()))
    assert times == [(1600, round(0.1 * (i + 1), 6)) for i in range(10)] + [(0, 1.0)]
