"""The caption server over real loopback WebSockets: delivery, the inbound protocol, auth, limits, slow
consumers, resource stability across connect/disconnect cycles, and shutdown draining."""

from __future__ import annotations

import json
import os
import socket
import threading
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from ouvir.engine.events import Final, Partial
from ouvir.firmware_host import schema
from ouvir.firmware_host.access import AccessConfigError, ServerConfig
from ouvir.firmware_host.monitor import rss_bytes
from ouvir.firmware_host.server import CaptionServer

TOKEN = "t0k3n-for-tests-0123456789"
HELLO = schema.message("hello", server="ouvir-host", protocol=schema.VERSION)


@pytest.fixture
def make_server(serve):
    def make(**kw) -> tuple[CaptionServer, str]:
        return serve(CaptionServer(ServerConfig(**{"host": "127.0.0.1", "port": 0, **kw}), HELLO))

    return make


def recv_json(ws, timeout: float = 5.0) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def sync_point(ws) -> None:
    """Ping/pong: every request sent before has been handled by the server."""
    ws.send(json.dumps({"v": 1, "type": "ping", "id": "sync"}))
    while (msg := recv_json(ws))["type"] != "pong":
        pass
    assert msg == {"v": 1, "type": "pong", "id": "sync"}


def caption(event, seq: int) -> dict:
    return {**schema.caption(event, event.segment, 0.0), "seq": seq}


def test_partial_and_final_reach_every_client(make_server):
    server, url = make_server()
    with connect(url) as a, connect(url) as b, connect(url) as finals_only:
        for ws in (a, b, finals_only):
            assert recv_json(ws) == HELLO
        finals_only.send(json.dumps({"v": 1, "type": "subscribe", "events": ["final"]}))
        sync_point(finals_only)
        partial = caption(Partial("hello wor", 0, 0.24), 0)
        final = caption(Final("hello world", 0, 0.24, 1.6, ()), 1)
        server.publish(partial)
        server.publish(final)
        for ws in (a, b):
            assert recv_json(ws) == {"v": 1, "type": "partial", "segment": 0, "text": "hello wor", "start_s": 0.24,
                                     "seq": 0}
            assert recv_json(ws) == {"v": 1, "type": "final", "segment": 0, "text": "hello world",
                                     "start_s": 0.24, "end_s": 1.6, "seq": 1}
        assert recv_json(finals_only)["text"] == "hello world"
        server.publish({**schema.error("input_lost", "audio device x: gone; retrying in 1 s"), "seq": 2})
        for ws in (a, b, finals_only):  # errors reach every client, whatever it subscribed to
            assert recv_json(ws) == {"v": 1, "type": "error", "code": "input_lost",
                                     "message": "audio device x: gone; retrying in 1 s", "seq": 2}
        assert server.stats.connected == 3


@pytest.mark.parametrize(
    ("frame", "code", "close_code"),
    [
        ('{"v":1,"type":"open","path":"/etc/passwd"}', "bad_request", 1008),
        ('{"v":1,"type":"subscribe","events":["final"],"file":"/etc/passwd"}', "bad_request", 1008),
        ('{"v":2,"type":"ping"}', "bad_version", 1008),
        ("not json", "bad_json", 1008),
        (b"\x00\x01", "binary_frame", 1003),
    ],
)
def test_frames_outside_the_protocol_are_rejected(make_server, frame, code, close_code):
    server, url = make_server()
    with connect(url) as ws:
        recv_json(ws)
        ws.send(frame)
        reply = recv_json(ws)
        assert reply["type"] == "error" and reply["code"] == code
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == close_code
    assert server.stats.rejected_protocol == 1


def test_oversized_frame_closes_with_1009(make_server):
    _, url = make_server()
    with connect(url) as ws:
        recv_json(ws)
        ws.send(json.dumps({"v": 1, "type": "ping", "id": "x" * 4000}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == 1009


@pytest.mark.parametrize(("path", "status"), [("/etc/passwd", 404), ("/?file=/etc/passwd", 400),
                                              ("/?token=a&token=b", 400)])
def test_request_targets_other_than_root_are_refused(make_server, path, status):
    _, url = make_server()
    with pytest.raises(InvalidStatus) as refused:
        connect(url.rstrip("/") + path)
    assert refused.value.response.status_code == status


def test_browser_origins_are_refused_by_default(make_server):
    _, url = make_server()
    with pytest.raises(InvalidStatus) as refused:
        connect(url, origin="http://evil.example")
    assert refused.value.response.status_code == 403
    _, url = make_server(origins=("http://captions.local",))
    with connect(url, origin="http://captions.local") as ws:
        assert recv_json(ws)["type"] == "hello"


def test_non_loopback_bind_requires_a_token(make_server):
    for host in ("0.0.0.0", "::", "192.168.1.20", "example.com"):
        with pytest.raises(AccessConfigError, match="without a token"):
            CaptionServer(ServerConfig(host=host, port=0), HELLO)
    with pytest.raises(AccessConfigError, match="16 printable"):
        CaptionServer(ServerConfig(host="0.0.0.0", port=0, token="short"), HELLO)
    server, url = make_server(host="0.0.0.0", token=TOKEN)
    for headers, path in [({}, ""), ({"Authorization": "Bearer wrong-token-0123456789"}, ""),
                          ({}, f"?token={TOKEN}x"), ({"Authorization": f"Basic {TOKEN}"}, "")]:
        with pytest.raises(InvalidStatus) as refused:
            connect(url + path, additional_headers=headers)
        assert refused.value.response.status_code == 401
    with connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        assert recv_json(ws)["type"] == "hello"
    with connect(url + f"?token={TOKEN}") as ws:
        assert recv_json(ws)["type"] == "hello"
    assert server.stats.by_status == {401: 4}


def test_client_limit(make_server):
    server, url = make_server(max_clients=2)
    with connect(url) as a, connect(url) as b:
        recv_json(a), recv_json(b)
        with pytest.raises(InvalidStatus) as refused:
            connect(url)
        assert refused.value.response.status_code == 503
    deadline = time.monotonic() + 5
    while server.stats.connected and time.monotonic() < deadline:
        time.sleep(0.01)
    with connect(url) as c:
        assert recv_json(c)["type"] == "hello"


def test_slow_client_is_dropped_without_stalling_publisher_or_others(make_server):
    server, url = make_server(queue_messages=16, socket_send_buffer=16 * 1024, close_timeout_s=0.5)
    n, text = 400, "x" * 8000
    slow_sock = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1].strip("/"))))
    slow_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    received: list[int] = []
    with connect(url, sock=slow_sock, max_queue=2, close_timeout=0.5) as slow, connect(url) as fast:
        recv_json(fast)

        def read_fast() -> None:
            while len(received) < n:
                msg = recv_json(fast)
                received.append(msg["seq"])

        reader = threading.Thread(target=read_fast)
        reader.start()
        worst = 0.0
        for seq in range(n):
            t0 = time.perf_counter()
            server.publish({**schema.message("partial", segment=0, text=text, start_s=0.0), "seq": seq})
            worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.001)
        reader.join(timeout=20)
        assert received == list(range(n))  # the fast client got everything, in order
        assert worst < 0.05, f"publish blocked for {worst:.3f} s"
        assert server.stats.dropped_slow == 1
        deadline = time.monotonic() + 10
        while server.stats.connected > 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server.stats.connected == 1
        with pytest.raises(ConnectionClosed):  # the slow one was disconnected (1008, or aborted mid-stream)
            while True:
                slow.recv(timeout=5)


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_connect_disconnect_cycles_leave_fds_and_rss_stable(make_server):
    server, url = make_server()

    def cycle() -> None:
        with connect(url) as ws:
            assert recv_json(ws)["type"] == "hello"
            server.publish({**schema.message("partial", segment=0, text="abc", start_s=0.0), "seq": 0})
            assert recv_json(ws)["text"] == "abc"

    for _ in range(10):  # warm up allocator pools and lazy imports
        cycle()
    time.sleep(0.1)
    fds, rss = _fd_count(), rss_bytes()
    for _ in range(100):
        cycle()
    deadline = time.monotonic() + 5
    while (server.stats.connected or _fd_count() > fds) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.stats.accepted == 110
    assert server.stats.connected == 0
    assert _fd_count() == fds
    assert rss_bytes() - rss < 4 * 2**20, f"RSS grew by {(rss_bytes() - rss) / 2**20:.1f} MiB"


def test_stop_sends_queued_finals_then_bye(make_server):
    server, url = make_server()
    with connect(url) as ws:
        recv_json(ws)
        server.publish(caption(Final("last words", 3, 9.0, 10.5, ()), 7))
        server.stop()
        assert recv_json(ws)["text"] == "last words"
        assert recv_json(ws) == {"v": 1, "type": "bye", "reason": "shutdown"}
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == 1001


def test_new_client_gets_the_latest_health_after_hello(make_server):
    server, url = make_server()
    server.publish({**schema.message("health", status="ok", uptime_s=1.0), "seq": 0})
    server.publish({**schema.message("health", status="input_lost", uptime_s=2.0), "seq": 1})
    with connect(url) as ws:
        assert recv_json(ws) == HELLO
        assert recv_json(ws) == {"v": 1, "type": "health", "status": "input_lost", "uptime_s": 2.0, "seq": 1}
