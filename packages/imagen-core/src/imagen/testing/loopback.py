"""Loopback HTTP servers for upstream stand-ins, run in a thread on 127.0.0.1."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["LoopbackHandler", "LoopbackServer", "serve"]


class LoopbackHandler(BaseHTTPRequestHandler):
    """A request handler for stand-ins: keep-alive HTTP/1.1, quiet, with JSON helpers."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def read_json(self) -> Any:
        """The request body as JSON (``{}`` when there is none)."""
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def send(
        self,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        """Answer ``status`` with ``body`` (bytes as they are, anything else as JSON)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class LoopbackServer(ThreadingHTTPServer):
    """A threading HTTP server on a free loopback port; ``url`` is its base URL.

    Subclass it to hold the stand-in's state (queued runs, failures to inject) and read it
    from the handler as ``self.server``.
    """

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._paused = 0
        self._paused_lock = threading.Lock()

    @property
    def paused(self) -> int:
        """How many requests :meth:`pause` is holding right now."""
        return self._paused

    def pause(self, seconds: float) -> bool:
        """Hold a handler for ``seconds`` (a slow upstream); False if the server stopped first.

        Use it instead of ``time.sleep`` in a handler: a stopped stand-in releases its held
        requests at once, so no client is left waiting on it after the test.
        """
        with self._paused_lock:
            self._paused += 1
        try:
            return not self._stopping.wait(seconds)
        finally:
            with self._paused_lock:
                self._paused -= 1

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> Self:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release paused handlers and close the socket."""
        self._stopping.set()
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve ``handler`` on a free loopback port for the duration; yields the base URL."""
    with LoopbackServer(handler) as server:
        yield server.url
