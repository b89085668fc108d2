"""A tiny HTTP(S) server answering scripted responses.

It is a real peer for what a real Prometheus does not do on demand: chosen statuses,
malformed or huge answers; and it records what the client sent (headers, body, the TLS
client certificate).
"""

from __future__ import annotations

import ssl
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

Chunks = Callable[[], Iterable[bytes]]


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_cert: dict[str, Any] | None = None


@dataclass
class Stub:
    """Answers each request with the next scripted reply; 204 when the script is done."""

    url: str = ""
    script: deque[tuple[int, dict[str, str], bytes | Chunks]] = field(default_factory=deque)
    seen: list[Seen] = field(default_factory=list)
    sent: int = 0  # body bytes of streamed replies that reached the socket

    def answer(self, status: int, body: str | bytes = b"", **headers: str) -> Stub:
        data = body.encode() if isinstance(body, str) else body
        self.script.append((status, _header_names(headers), data))
        return self

    def stream(self, status: int, chunks: Chunks, **headers: str) -> Stub:
        """Reply with the chunks as they are made, without Content-Length (the body ends
        when the connection closes), so a client that stops reading stops the stream."""
        self.script.append((status, _header_names(headers), chunks))
        return self


def _header_names(headers: dict[str, str]) -> dict[str, str]:
    return {name.replace("_", "-"): value for name, value in headers.items()}


@contextmanager
def serve_stub(tls: ssl.SSLContext | None = None) -> Iterator[Stub]:
    """A stub on a free local port, over TLS with ``tls`` (a server-side context)."""
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            cert = self.connection.getpeercert() if tls is not None else None
            state.seen.append(Seen(self.command, self.path, dict(self.headers), body,
                                   cert or None))
            status, headers, data = state.script.popleft() if state.script else (204, {}, b"")
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            if isinstance(data, bytes):
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self.end_headers()
            try:
                for chunk in data():
                    self.wfile.write(chunk)
                    state.sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass  # the client stopped reading: what the streamed tests look for

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: object) -> None:
            pass  # keep test output clean

    server = HTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    scheme = "https" if tls is not None else "http"
    state.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
