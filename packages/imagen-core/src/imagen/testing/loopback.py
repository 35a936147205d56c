"""Loopback HTTP servers for upstream stand-ins, run in a thread on 127.0.0.1.

A :class:`LoopbackServer` records every request in its :class:`~imagen.testing.Traffic`
and, for the requests its ``submission_routes`` name, can hang, drop the connection or
answer any status instead of running them: the generic half of the
:class:`~imagen.testing.StandIn` contract, so a stand-in only adds what needs its protocol.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from imagen.testing.standin import Exchange, Traffic

__all__ = ["LoopbackHandler", "LoopbackServer", "serve"]

_HANG_S = 24 * 3600.0  # "for ever": a stopped server releases it at once


@dataclass(frozen=True)
class _Fault:
    kind: Literal["hang", "drop", "answer"]
    status: int = 0
    body: Any = None
    headers: Mapping[str, str] | None = None


class _Discard(io.RawIOBase):
    """Where the answer to a dropped submission goes."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(data)


class _Replay:
    """The request body already read, then the connection's own stream (keep-alive)."""

    def __init__(self, body: bytes, raw: Any) -> None:
        self._buffer = io.BytesIO(body)
        self._left = len(body)
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        if not self._left:
            return self._raw.read(size)
        data = self._buffer.read(size if size is not None and size >= 0 else self._left)
        self._left -= len(data)
        return data

    def readline(self, limit: int = -1) -> bytes:
        if not self._left:
            return self._raw.readline(limit)
        data = self._buffer.readline(limit)
        self._left -= len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class LoopbackHandler(BaseHTTPRequestHandler):
    """A request handler for stand-ins: keep-alive HTTP/1.1, quiet, with JSON helpers."""

    protocol_version = "HTTP/1.1"
    server: Any

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        intercept = getattr(self.server, "_intercept", None)
        return True if intercept is None else intercept(self)

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
    from the handler as ``self.server``. Name the requests that start a run in
    ``submission_routes`` and those that stop one in ``cancel_routes``, as
    ``"METHOD /path"`` patterns where ``*`` matches anything::

        class AcmeStandIn(LoopbackServer):
            submission_routes = ("POST /v1/runs",)
            cancel_routes = ("POST /v1/runs/*/cancel",)

    Then :attr:`traffic` counts them, and :meth:`hang_next`, :meth:`drop_next` and
    :meth:`answer_next` act on the next submission before the handler sees it.
    """

    daemon_threads = True
    submission_routes: ClassVar[tuple[str, ...]] = ()
    """``"METHOD /path"`` patterns of the requests that start (and may bill) a run."""
    cancel_routes: ClassVar[tuple[str, ...]] = ()
    """``"METHOD /path"`` patterns of the requests that ask the upstream to stop a run."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._paused = 0
        self._paused_lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._faults_lock = threading.Lock()
        self.traffic = Traffic()
        """Every request that reached the server; submissions and cancels among them."""

    # -- the generic half of the stand-in contract ------------------------------------------

    def hang_next(self) -> None:
        """Read the next submission whole, then hold it unanswered until the server stops."""
        self._add_fault(_Fault("hang"))

    def drop_next(self) -> None:
        """Let the next submission run, then close its connection before the answer.

        The upstream did the work (and would bill it); only the answer is lost, as when a
        proxy or the network fails after the request was sent.
        """
        self._add_fault(_Fault("drop"))

    def answer_next(
        self,
        status: int,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` submissions with ``status`` instead of running them.

        ``body`` is sent as :meth:`LoopbackHandler.send` sends it; None sends a short plain
        text, as a proxy or load balancer in front of the upstream would.
        """
        self._add_fault(_Fault("answer", status, body, headers), times)

    def _add_fault(self, fault: _Fault, times: int = 1) -> None:
        if not self.submission_routes:
            raise TypeError(
                f"{type(self).__name__}.submission_routes is empty: name the requests that "
                'start a run, such as ("POST /v1/runs",)'
            )
        with self._faults_lock:
            self._faults += [fault] * times

    def _intercept(self, handler: LoopbackHandler) -> bool:
        """Record the request; carry out a fault on a submission. False: it was answered."""
        raw = handler.__dict__.setdefault("_raw_rfile", handler.rfile)
        length = int(handler.headers.get("Content-Length") or 0)
        body = raw.read(length) if length > 0 else b""
        handler.rfile = _Replay(body, raw)  # type: ignore[assignment]
        path = urlsplit(handler.path).path
        route = f"{handler.command} {path}"
        submission = any(fnmatchcase(route, pattern) for pattern in self.submission_routes)
        cancel = any(fnmatchcase(route, pattern) for pattern in self.cancel_routes)
        exchange = Exchange(handler.command, path, dict(handler.headers.items()), body)
        self.traffic.record(exchange, submission=submission, cancel=cancel)
        if not submission:
            return True
        with self._faults_lock:
            fault = self._faults.pop(0) if self._faults else None
        if fault is None:
            return True
        if fault.kind == "answer":
            # No handler will read this request's body: it must not be left to be read as
            # the next request line (the connection stays open for the next request).
            handler.rfile = raw
            body = fault.body
            if body is None:
                body = f"imagen conformance check: status {fault.status}\n".encode()
                handler.send(fault.status, body, dict(fault.headers or {}), "text/plain")
            else:
                handler.send(fault.status, body, dict(fault.headers or {}))
            return False
        handler.close_connection = True  # no answer, ever, on this connection
        if fault.kind == "drop":
            handler.wfile = _Discard()  # type: ignore[assignment]  # the handler runs, unheard
            return True
        self.pause(_HANG_S)
        return False

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
