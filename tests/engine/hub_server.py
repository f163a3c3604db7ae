"""A local stand-in for the Hugging Face hub and NGC over real HTTP, for huggingface_hub's real download code.

Files are served at the hub's ``/{repo_id}/resolve/{revision}/{filename}`` with the headers huggingface_hub
reads (an LFS file's: ``ETag``, ``X-Linked-Etag`` = its sha256, ``X-Linked-Size``, ``X-Repo-Commit``,
``Content-Length``, ``Accept-Ranges``), and at NGC's ``/v2/models/{model path}/files/{filename}``. GET honours
``Range: bytes=N-`` (206). Faults, for the tests: ``cut_once`` (the first GET sends half of what it was asked
for, then drops the connection), ``cut_after`` (every GET stops at that byte offset: the client gives up), ``corrupt``
(one byte of the body flipped; the headers still name the true sha256). Every request is recorded.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubServer:
    files: dict[str, bytes]  # URL path -> content
    cut_once: bool = False
    cut_after: int | None = None
    corrupt: bool = False
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range)

    def __post_init__(self) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def ranges(self, method: str = "GET") -> list[str | None]:
        return [r for m, _, r in self.requests if m == method]


def hf_path(repo_id: str, filename: str, revision: str = "main") -> str:
    return f"/{repo_id}/resolve/{revision}/{filename}"


def ngc_path(model: str, filename: str) -> str:
    return f"/v2/models/{model}/files/{filename}"


def _handler(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            server.requests.append((self.command, self.path, self.headers.get("Range")))
            data = server.files.get(self.path)
            if data is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.send_header("X-Error-Code", "EntryNotFound")
                self.end_headers()
                return
            digest = hashlib.sha256(data).hexdigest()
            if server.corrupt:
                data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
            start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0]) if self.headers["Range"] else 0
            self.send_response(206 if start else 200)
            self.send_header("ETag", f'"{digest}"')
            self.send_header("X-Linked-Etag", f'"{digest}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return
            stop = len(data)
            if server.cut_once:
                server.cut_once = False
                stop = start + (len(data) - start) // 2
            if server.cut_after is not None:
                stop = min(stop, server.cut_after)
            self.wfile.write(data[start:stop])
            if stop < len(data):
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # drop the connection mid-body

    return Handler
