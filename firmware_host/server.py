"""The WebSocket caption server: any number of local clients (up to ``max_clients``) receive what is published.

It runs its own asyncio loop in a thread. ``publish`` is called from the decoding thread and never blocks: it
hands the encoded message to the loop, which puts it in each subscribed client's bounded queue. A client whose
queue is full (it stopped reading) is dropped with close code 1008, so no client can stall capture or the
others. Clients may only send the small inbound set of ``schema`` (subscribe, ping); anything else gets an
error and close code 1008 (1003 for binary frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from ouvir.firmware_host import schema
from ouvir.firmware_host.access import ServerConfig, check_config, request_error
from ouvir.firmware_host.monitor import ClientStats

log = logging.getLogger("ouvir.host.server")

CLOSE_POLICY = 1008
CLOSE_UNSUPPORTED = 1003
CLOSE_TRY_LATER = 1013


@dataclass(eq=False)  # hashed by identity: kept in a set
class _Client:
    ws: ServerConnection
    queue: asyncio.Queue[str]
    events: frozenset[str] = frozenset(schema.BROADCAST)
    sender: asyncio.Task[None] | None = None
    dropped: bool = False
    unsent: int = 0  # queued or being sent


@dataclass
class ServerStats:
    connected: int = 0  # open now
    accepted: int = 0  # since start
    dropped_slow: int = 0
    rejected_http: int = 0  # refused handshakes (token, path, limit, origin)
    rejected_protocol: int = 0  # closed for a frame outside the inbound set
    by_status: dict[int, int] = field(default_factory=dict)


class CaptionServer:
    """``start()`` binds (``OSError`` / ``AccessConfigError``); ``publish(msg)``; ``stop()`` drains and closes."""

    def __init__(self, config: ServerConfig, hello: dict[str, Any]) -> None:
        check_config(config)
        self.config = config
        self.stats = ServerStats()
        self._hello = schema.encode(hello)
        self._clients: set[_Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._closing = False
        self._tasks: set[asyncio.Future[None]] = set()
        self._last_health: str | None = None

    # ------------------------------------------------------------------ lifecycle (any thread)
    def start(self) -> tuple[str, int]:
        self._thread = threading.Thread(target=self._run, name="ouvir-host-ws", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            self._thread.join()
            raise self._startup_error
        return self.address

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None
        host, port = next(iter(self._server.sockets)).getsockname()[:2]
        return host, port

    def client_stats(self) -> ClientStats:
        return ClientStats(self.stats.connected, self.stats.dropped_slow,
                           self.stats.rejected_http + self.stats.rejected_protocol)

    def publish(self, msg: dict[str, Any]) -> None:
        """Queue ``msg`` for every client subscribed to its type (every client: ``error``). Thread-safe, never
        blocks."""
        if self._loop is None or self._closing:
            return
        text = schema.encode(msg)
        with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
            self._loop.call_soon_threadsafe(self._fanout, msg["type"], text)

    def stop(self, bye_reason: str = "shutdown") -> None:
        """Send ``bye``, give clients ``drain_timeout_s`` to receive what is queued, close them (1001), join."""
        if self._loop is None or self._thread is None or self._closing:
            return
        self._closing = True
        bye = schema.encode(schema.message("bye", reason=bye_reason))
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._begin_stop, bye)
        self._thread.join(self.config.drain_timeout_s + self.config.close_timeout_s + 5.0)

    # ------------------------------------------------------------------ the loop thread
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(loop))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        cfg = self.config
        self._stop = asyncio.Event()
        try:
            self._server = await serve(
                self._handle, cfg.host, cfg.port,
                process_request=self._check_request,
                origins=[None, *cfg.origins],
                max_size=cfg.max_inbound_bytes,
                max_queue=4,
                close_timeout=cfg.close_timeout_s,
                compression=None,  # small frames; avoids per-client zlib state
                server_header="ouvir-host",
            )
        except BaseException as e:  # bind errors reach start() in the caller's thread
            self._startup_error = e
            self._ready.set()
            return
        self._loop = loop
        self._ready.set()
        await self._stop.wait()
        await self._drain()
        self._server.close(close_connections=True)
        await self._server.wait_closed()

    def _begin_stop(self, bye: str) -> None:
        for client in list(self._clients):
            self._offer(client, bye)
        assert self._stop is not None
        self._stop.set()

    async def _drain(self) -> None:
        """Wait (bounded) until every client has been sent its queue; abort the ones that could not take it."""
        deadline = asyncio.get_running_loop().time() + self.config.drain_timeout_s
        while any(c.unsent for c in self._clients) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        for client in list(self._clients):
            if client.unsent:
                client.ws.transport.abort()

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        refusal = request_error(request.path, request.headers.get("Authorization"), self.config.token)
        if refusal is None:
            refusal = self._capacity_refusal(connection)
        if refusal is None:
            return None
        status, reason = refusal
        self.stats.rejected_http += 1
        self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
        log.warning("refused %s %s: %d %s", connection.remote_address, request.path.split("?")[0], status,
                    reason.strip())
        return connection.respond(status, reason)

    async def _handle(self, ws: ServerConnection) -> None:
        if self._closing or len(self._clients) >= self.config.max_clients:
            await ws.close(CLOSE_TRY_LATER, "server full or stopping")
            return
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.config.socket_send_buffer)
        client = _Client(ws, asyncio.Queue(self.config.queue_messages))
        self._clients.add(client)
        self.stats.accepted += 1
        self.stats.connected = len(self._clients)
        self._offer(client, self._hello)
        if self._last_health is not None:  # a new client learns the host's state at once
            self._offer(client, self._last_health)
        client.sender = asyncio.create_task(self._send_loop(client))
        try:
            await self._serve(client)
        except ConnectionClosed:
            pass
        finally:
            client.sender.cancel()
            self._clients.discard(client)
            self.stats.connected = len(self._clients)

    def _capacity_refusal(self, connection: ServerConnection) -> tuple[int, str] | None:
        """(HTTP status, reason) when one more client would exceed the limits, else None."""
        if len(self._clients) >= self.config.max_clients:
            return 503, f"at most {self.config.max_clients} clients\n"
        return None

    async def _serve(self, client: _Client) -> None:
        """Answer the client's requests until it goes away (a caption client only subscribes and pings)."""
        async for frame in client.ws:
            try:
                request = schema.parse_inbound(frame)
            except schema.ProtocolError as e:
                await self._refuse(client, e)
                return
            self._answer(client, request)

    def _answer(self, client: _Client, request: schema.Subscribe | schema.Ping) -> None:
        if isinstance(request, schema.Subscribe):
            client.events = request.events
        else:
            self._offer(client, schema.encode(schema.message("pong", id=request.id)))

    async def _refuse(self, client: _Client, e: schema.ProtocolError) -> None:
        self.stats.rejected_protocol += 1
        log.warning("client %s sent a frame outside the protocol: %s", client.ws.remote_address, e)
        code = CLOSE_UNSUPPORTED if e.code == "binary_frame" else CLOSE_POLICY
        assert client.sender is not None
        client.sender.cancel()
        with contextlib.suppress(ConnectionClosed, TimeoutError):
            await asyncio.wait_for(client.ws.send(schema.encode(schema.error(e.code, str(e)))), 1.0)
        await self._close_or_abort(client.ws, code, e.code)

    async def _send_loop(self, client: _Client) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                text = await client.queue.get()
                await client.ws.send(text)
                client.unsent -= 1

    def _fanout(self, kind: str, text: str) -> None:
        if kind == "health":
            self._last_health = text
        for client in list(self._clients):
            if kind in client.events or kind not in schema.BROADCAST:  # errors reach every client
                self._offer(client, text)

    def _offer(self, client: _Client, text: str) -> None:
        if client.dropped:
            return
        try:
            client.queue.put_nowait(text)
        except asyncio.QueueFull:
            self._drop_slow(client)
        else:
            client.unsent += 1

    def _drop_slow(self, client: _Client) -> None:
        client.dropped = True
        self.stats.dropped_slow += 1
        log.warning("dropping client %s: it let %d messages queue up", client.ws.remote_address,
                    client.queue.qsize())
        if client.sender is not None:
            client.sender.cancel()
        while not client.queue.empty():  # release the queued messages now
            client.queue.get_nowait()
        client.unsent = 0
        self._spawn(self._close_or_abort(client.ws, CLOSE_POLICY, "slow consumer"))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` on the loop, keeping a reference until it is done."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_or_abort(self, ws: ServerConnection, code: int, reason: str) -> None:
        """A close handshake, bounded: websockets' close() waits for the write buffer to drain, which a stuck
        client never lets happen, so the transport is aborted after ``close_timeout_s``."""
        try:
            await asyncio.wait_for(ws.close(code, reason), self.config.close_timeout_s)
        except TimeoutError:
            ws.transport.abort()
