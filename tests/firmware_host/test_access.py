"""Pure checks of the access rules, the inbound schema, and the systemd unit."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from ouvir.firmware_host import schema
from ouvir.firmware_host.access import is_loopback, parse_hostport, request_error
from tests.conftest import REPO

TOKEN = "0123456789abcdef-token"


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("10.0.0.5", False), ("localhost.evil.example", False),
    ("pi.local", False),
])
def test_only_literal_loopback_counts_as_loopback(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(("text", "hostport"), [
    ("127.0.0.1:8765", ("127.0.0.1", 8765)), ("[::1]:9000", ("::1", 9000)), (":8765", ("127.0.0.1", 8765)),
    ("0.0.0.0:0", ("0.0.0.0", 0)),
])
def test_parse_hostport(text, hostport):
    assert parse_hostport(text) == hostport


@pytest.mark.parametrize(("path", "auth", "token", "refusal"), [
    ("/", None, None, None),
    ("/", None, TOKEN, (401, "a valid token is required\n")),
    ("/", f"Bearer {TOKEN}", TOKEN, None),
    ("/", f"bearer   {TOKEN}", TOKEN, None),
    (f"/?token={TOKEN}", None, TOKEN, None),
    (f"/?token={TOKEN}", "Bearer nope", TOKEN, (401, "a valid token is required\n")),  # the header decides
    ("/captions", None, None, (404, "only / is served\n")),
    ("/../etc/passwd", None, None, (404, "only / is served\n")),
    ("/?path=/etc/passwd", None, None, (400, "the only query parameter is token\n")),
    ("/?token", None, TOKEN, (400, "bad query string\n")),
    ("/?token=", None, TOKEN, (401, "a valid token is required\n")),
])
def test_request_error(path, auth, token, refusal):
    assert request_error(path, auth, token) == refusal


def test_inbound_schema_accepts_only_the_documented_requests():
    assert schema.parse_inbound('{"v":1,"type":"subscribe","events":["final","health"]}') == schema.Subscribe(
        frozenset({"final", "health"}))
    assert schema.parse_inbound('{"v":1,"type":"ping","id":7}') == schema.Ping(7)
    assert schema.parse_inbound('{"v":1,"type":"ping"}') == schema.Ping(None)
    for frame, code in [
        ('{"v":1,"type":"subscribe","events":["error"]}', "bad_request"),
        ('{"v":1,"type":"subscribe","events":[]}', "bad_request"),
        ('{"v":1,"type":"ping","id":true}', "bad_request"),
        ('{"v":1,"type":"ping","id":"' + "x" * 65 + '"}', "bad_request"),
        ('{"v":1,"type":"load","bundle":"/tmp/evil"}', "bad_request"),
        ('["v",1]', "bad_request"),
        ('{"type":"ping"}', "bad_version"),
        ("{" * 2000, "too_big"),
    ]:
        with pytest.raises(schema.ProtocolError) as e:
            schema.parse_inbound(frame)
        assert e.value.code == code, frame


def test_outbound_messages_have_no_nan():
    msg = schema.message("metrics", rtf=float("nan"), lag={"max": float("inf")}, ok=1.5)
    assert schema.encode(msg) == '{"v":1,"type":"metrics","rtf":null,"lag":{"max":null},"ok":1.5}'


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_is_valid(tmp_path):
    unit = (REPO / "firmware_host" / "deploy" / "ouvir-host.service").read_text()
    assert "ExecStart=/opt/ouvir/venv/bin/ouvir-host " in unit
    path = tmp_path / "ouvir-host.service"  # point ExecStart at an executable that exists here
    path.write_text(unit.replace("/opt/ouvir/venv/bin/ouvir-host", sys.executable))
    proc = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0 and "ouvir-host.service" not in proc.stderr, proc.stderr
