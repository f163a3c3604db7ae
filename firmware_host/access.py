"""Who may connect: bind-address policy, token checks, request-target checks and the server's limits.

Safe defaults: bind 127.0.0.1; any bind that is not loopback needs a token; a WebSocket client presents the
token as ``Authorization: Bearer TOKEN`` (or ``?token=TOKEN`` for clients that cannot set headers). Only
the path ``/`` is served and ``token`` is the only query parameter: a request can name nothing else.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from ouvir.firmware_host.schema import MAX_INBOUND_BYTES

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MIN_TOKEN_CHARS = 16


class AccessConfigError(ValueError):
    """A server configuration that the safety rules refuse (exit code 2 at the CLI)."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # 0 picks a free port (tests)
    token: str | None = None
    max_clients: int = 16
    queue_messages: int = 64  # per-client send queue; a client that lets it fill is dropped
    socket_send_buffer: int = 64 * 1024  # SO_SNDBUF per client: bounds what the kernel holds for a stuck one
    max_inbound_bytes: int = MAX_INBOUND_BYTES
    origins: tuple[str, ...] = ()  # browser Origins allowed (none by default: pages cannot read captions)
    close_timeout_s: float = 2.0
    drain_timeout_s: float = 2.0  # at shutdown: how long clients get to receive the last finals


@dataclass(frozen=True)
class AudioLimits:
    """Per-client limits of the audio server (``--input clients``)."""

    max_per_address: int = 4  # connections from one IP address (HTTP 429 beyond)
    max_frame_bytes: int = 256 * 1024  # one binary frame (about 1.4 s of 48 kHz mono f32le; close 1009 beyond)
    start_timeout_s: float = 10.0  # the start message must come this soon after the handshake


def is_loopback(host: str) -> bool:
    """True for literal loopback addresses and 'localhost'; names are never resolved (a name could lie)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_config(cfg: ServerConfig) -> None:
    """Refuse unsafe or meaningless settings before anything binds."""
    if not is_loopback(cfg.host) and cfg.token is None:
        raise AccessConfigError(
            f"refusing to serve on {cfg.host!r} without a token: a non-loopback bind needs --token "
            "(or OUVIR_HOST_TOKEN); clients then send 'Authorization: Bearer TOKEN'")
    if cfg.token is not None and (len(cfg.token) < MIN_TOKEN_CHARS or not cfg.token.isprintable()
                                  or any(c.isspace() for c in cfg.token)):
        raise AccessConfigError(f"the token must be >= {MIN_TOKEN_CHARS} printable characters without spaces")
    if not 0 <= cfg.port <= 65535:
        raise AccessConfigError(f"port {cfg.port} is out of range")
    if cfg.max_clients < 1 or cfg.queue_messages < 1:
        raise AccessConfigError("max_clients and queue_messages must be >= 1")


def parse_hostport(text: str) -> tuple[str, int]:
    """'HOST:PORT', '[::1]:PORT' or ':PORT' (= 127.0.0.1)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise AccessConfigError(f"--serve expects HOST:PORT, got {text!r}")
    host = host.strip("[]") or DEFAULT_HOST
    return host, int(port)


def request_error(path: str, authorization: str | None, token: str | None) -> tuple[int, str] | None:
    """(HTTP status, reason) when the handshake must be refused, else None."""
    parts = urlsplit(path)
    if parts.path != "/":
        return 404, "only / is served\n"
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query), max_num_fields=2)
    except ValueError:
        return 400, "bad query string\n"
    if set(query) - {"token"} or len(query.get("token", ())) > 1:
        return 400, "the only query parameter is token\n"
    if token is None:
        return None
    presented = query["token"][0] if "token" in query else None
    if authorization is not None:
        scheme, _, value = authorization.partition(" ")
        presented = value.strip() if scheme.lower() == "bearer" else None
    if presented is None or not hmac.compare_digest(presented.encode(), token.encode()):
        return 401, "a valid token is required\n"
    return None
