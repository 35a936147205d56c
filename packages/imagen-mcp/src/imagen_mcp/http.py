"""Streamable HTTP: the SDK's app, behind the callers' tokens, served by uvicorn.

The socket is bound before the server is built, so ``--port 0`` works and the line
``imagen mcp: http://HOST:PORT/mcp`` on stderr always names the real port.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn
from mcp.server.transport_security import TransportSecuritySettings

from imagen_mcp.server import ImagenServer

__all__ = ["serve_http"]

log = logging.getLogger("imagen")


def serve_http(build: Callable[[str], ImagenServer], host: str, port: int, path: str) -> None:
    """Listen on ``host:port`` and serve the server ``build(base_url)`` makes at ``path``.

    Returns (exit 0) on SIGINT or SIGTERM, after open requests are done.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        from imagen.errors import ConfigError

        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)  # from now on a client's connection waits for uvicorn, never refused
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if family == socket.AF_INET6 else host
    base_url = f"http://{shown}:{bound}"
    server = build(base_url)
    # The SDK checks Host and Origin against loopback names when bound to loopback, against
    # DNS rebinding. Every request here carries a bearer token, which a rebinding page
    # cannot have, and a reverse proxy in front sends its own Host: the check would refuse
    # exactly the deployments that are safe.
    security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
    app = server.streamable_http_app(
        streamable_http_path=path, host=host, transport_security=security
    )
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with inner(app):
            try:
                yield
            finally:
                await server.aclose()

    app.router.lifespan_context = lifespan
    log.warning("imagen mcp: %s%s (streamable HTTP)", base_url, path)
    # uvicorn stops gracefully on SIGINT and SIGTERM, then raises the signal again for the
    # handler it found: let that be a quiet one, so that a stop exits 0 (for systemd).
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: None)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
