"""The audio server (``ouvir-host BUNDLE --input clients --serve HOST:PORT``): clients send their own audio and get
their own captions on the same WebSocket; all clients share one recognizer and one batching loop (batcher.py).

A connection: ``hello`` -> the client's ``start`` (format, rate, channels, realtime; the first frame, within
``start_timeout_s``) -> ``health`` (how its audio is converted, its overload policy) -> binary PCM frames from the
client, ``partial`` / ``final`` to it (``seq`` counts this connection's captions and health) -> the client's
``end`` -> the last ``final``, ``bye`` ("end of input") and close 1000. The caption server (server.py) does the
rest as for the host's caption clients: token auth (401), the path and query checks, browser origins, at most
``max_clients`` (503), the bounded send queue that drops a client which stops reading (1008 "slow consumer").
Per-address limit: ``max_per_address`` connections from one IP address (429). A frame that is not PCM in the
declared format (a partial sample, NaN), audio before ``start`` or any frame outside the protocol gets an
``error`` and closes that connection (1008); a frame over ``max_frame_bytes`` closes it with 1009.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection

from ouvir.engine.audio.edge import EdgeConverter
from ouvir.engine.audio.pcm import decode, pcm_format
from ouvir.engine.errors import NonFiniteAudioError
from ouvir.engine.events import Event, Final, Overload, Partial
from ouvir.engine.recognizer import Recognizer
from ouvir.firmware_host import schema
from ouvir.firmware_host.access import AudioLimits, ServerConfig
from ouvir.firmware_host.batcher import BatchConfig, ServerStream, StreamBatcher
from ouvir.firmware_host.monitor import HostMonitor
from ouvir.firmware_host.server import CaptionServer, _Client

DEFAULT_BATCH = BatchConfig()
DEFAULT_LIMITS = AudioLimits()


class _Audio:
    """One connection's audio: its converter to 16 kHz mono, its stream in the batcher, its counters."""

    def __init__(self, start: schema.Start, source: str, stream: ServerStream, policy: str) -> None:
        self.start = start
        self.fmt = pcm_format(start.format)
        self.edge = EdgeConverter(source, self.fmt, start.rate, start.channels)
        self.stream = stream
        self.room = asyncio.Event()  # set when the batcher took audio from the queue
        self.monitor = HostMonitor(policy)
        self.monitor.session_started(self.edge.conversion.describe())
        self.seq = 0
        self.ended = False  # the client sent end

    def convert(self, frame: bytes) -> np.ndarray:
        try:
            return self.edge.convert(decode(frame, self.fmt, self.start.channels))
        except (ValueError, NonFiniteAudioError) as e:
            raise schema.ProtocolError("bad_audio", f"not {self.start.format} audio: {e}") from None


class AudioServer(CaptionServer):
    """``start()`` binds and starts the batching loop; ``stop()`` says bye, drains and closes, then stops it."""

    def __init__(self, config: ServerConfig, hello: dict[str, Any], recognizer: Recognizer,
                 limits: AudioLimits = DEFAULT_LIMITS, batch: BatchConfig = DEFAULT_BATCH) -> None:
        super().__init__(dataclasses.replace(config, max_inbound_bytes=limits.max_frame_bytes), hello)
        self.limits = limits
        self.batcher = StreamBatcher(recognizer, batch)
        self.policies = {True: f"drop_oldest beyond {batch.max_lag_s:g} s of lag",
                         False: f"back_pressure beyond {batch.max_lag_s:g} s queued"}

    def start(self) -> tuple[str, int]:
        address = super().start()
        self.batcher.start()
        return address

    def stop(self, bye_reason: str = "shutdown") -> None:
        super().stop(bye_reason)
        self.batcher.stop()

    def _capacity_refusal(self, connection: ServerConnection) -> tuple[int, str] | None:
        address = connection.remote_address[0]
        if sum(c.ws.remote_address[0] == address for c in self._clients) >= self.limits.max_per_address:
            return 429, f"at most {self.limits.max_per_address} connections from one address\n"
        return super()._capacity_refusal(connection)

    async def _serve(self, client: _Client) -> None:
        try:
            async with asyncio.timeout(self.limits.start_timeout_s):
                first = await client.ws.recv()
            audio = self._open(client, self._start_of(first))
        except TimeoutError:
            await self._refuse(client, schema.ProtocolError(
                "bad_request", f"no start message within {self.limits.start_timeout_s:g} s"))
            return
        except schema.ProtocolError as e:
            await self._refuse(client, e)
            return
        try:
            async for frame in client.ws:
                await self._receive(client, audio, frame)
        except schema.ProtocolError as e:
            await self._refuse(client, e)
        finally:
            self.batcher.close(audio.stream)

    @staticmethod
    def _start_of(frame: str | bytes) -> schema.Start:
        if isinstance(frame, bytes):
            raise schema.ProtocolError("bad_request", "the first frame is a start message (JSON text)")
        request = schema.parse_inbound(frame, schema.AUDIO_INBOUND)
        if not isinstance(request, schema.Start):
            raise schema.ProtocolError("bad_request", "the first frame is a start message")
        return request

    def _open(self, client: _Client, start: schema.Start) -> _Audio:
        loop = asyncio.get_running_loop()
        audio: _Audio

        def on_event(event: Event | None) -> None:  # the batching thread
            loop.call_soon_threadsafe(self._deliver, client, audio, event)

        stream = self.batcher.open(start.realtime, on_event, lambda: loop.call_soon_threadsafe(audio.room.set))
        host, port = client.ws.remote_address[:2]
        audio = _Audio(start, f"client {host}:{port}", stream, self.policies[start.realtime])
        self._send_own(client, audio, audio.monitor.health())
        return audio

    async def _receive(self, client: _Client, audio: _Audio, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            if audio.ended:
                raise schema.ProtocolError("bad_request", "audio after end")
            self.batcher.put(audio.stream, audio.convert(frame))
            while audio.stream.full and not audio.start.realtime and not client.dropped:
                audio.room.clear()  # back-pressure: no more frames are read until the batcher takes some
                await audio.room.wait()
            return
        request = schema.parse_inbound(frame, schema.AUDIO_INBOUND)
        if isinstance(request, schema.Start):
            raise schema.ProtocolError("bad_request", "start was already sent")
        if isinstance(request, schema.End):
            if not audio.ended:
                audio.ended = True
                self.batcher.put(audio.stream, audio.edge.finish())
                self.batcher.finish(audio.stream)
            return
        self._answer(client, request)

    def _deliver(self, client: _Client, audio: _Audio, event: Event | None) -> None:
        """An event of the client's stream, on the server's loop: captions and overloads go to that client."""
        if event is None:  # the last final is out
            self._offer(client, schema.encode(schema.message("bye", reason="end of input")))
            self._spawn(self._close_after_sent(client))
        elif isinstance(event, Partial | Final):
            self._send_own(client, audio, schema.caption(event, event.segment, 0.0))
        elif isinstance(event, Overload):
            audio.monitor.record(event)
            self._send_own(client, audio, audio.monitor.health())

    def _send_own(self, client: _Client, audio: _Audio, msg: dict[str, Any]) -> None:
        if msg["type"] in client.events:
            msg["seq"] = audio.seq
            audio.seq += 1
            self._offer(client, schema.encode(msg))

    async def _close_after_sent(self, client: _Client) -> None:
        while client.unsent and not client.dropped:
            await asyncio.sleep(0.01)
        await self._close_or_abort(client.ws, 1000, "end of input")
