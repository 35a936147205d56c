"""The MCP server: imagen's tools and its image resources, on the SDK's ``MCPServer``.

:func:`build_server` builds it for a config; ``imagen mcp`` runs it over stdio or HTTP.
The tools themselves are in :mod:`imagen_mcp.tools`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from mcp.server.auth.settings import AuthSettings
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp_types import Resource as MCPResource
from mcp_types import ResourceTemplate as MCPResourceTemplate

from imagen.config import Config
from imagen.tokens import Credentials
from imagen_mcp import __version__
from imagen_mcp.auth import ImagenTokenVerifier, caller
from imagen_mcp.catalog import (
    SharedPool,
)
from imagen_mcp.generation import Generator
from imagen_mcp.images import MIME_TYPES, URI_PREFIX, URI_TEMPLATE, ImageShelf, NotAnImage
from imagen_mcp.limits import ImageLimit
from imagen_mcp.settings import McpSettings

__all__ = ["ImagenServer", "build_server"]

log = logging.getLogger("imagen")

INSTRUCTIONS = """\
imagen makes images from text prompts through the image backends configured on this
machine (ComfyUI, Replicate, OpenAI, an offline placeholder backend, ...). Call
list_backends to see them and their prices, list_styles for presets, generate_image to
make images (they come back inline and are saved on the server), image_info to read how
an image was made. Images made earlier are resources under imagen://images/. Spending
caps and a per-session image limit apply: a refused call says why; do not retry it
unchanged."""


class ImagenServer(MCPServer[Any]):
    """``MCPServer`` whose resources are the recent images, listed fresh each time."""

    def __init__(self, shelf: ImageShelf, owner: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.shelf = shelf
        self.owner = owner
        self.closers: list[Any] = []

    async def list_resources(self) -> list[MCPResource]:
        listed = await super().list_resources()
        paths = await anyio.to_thread.run_sync(self.shelf.recent, caller(self.owner))
        return listed + [_resource(path, uri) for path in paths if (uri := self.shelf.uri(path))]

    async def list_resource_templates(self) -> list[MCPResourceTemplate]:
        return [
            *await super().list_resource_templates(),
            MCPResourceTemplate(
                uri_template=URI_TEMPLATE,
                name="image",
                title="An image imagen made",
                description="An image under the output directory, by its path there "
                "(PNG, JPEG or WebP). generate_image gives each image's URI.",
            ),
        ]

    async def read_resource(self, uri: Any, context: Any = None) -> Any:
        if not str(uri).startswith(URI_PREFIX):
            return await super().read_resource(uri, context)
        try:
            data, mime_type = await anyio.to_thread.run_sync(
                self.shelf.read, str(uri), caller(self.owner)
            )
        except NotAnImage as exc:
            raise ResourceNotFoundError(str(exc)) from None
        return [ReadResourceContents(content=data, mime_type=mime_type)]

    async def aclose(self) -> None:
        """Release the queue's connections and the built backends."""
        for close in reversed(self.closers):
            await close()

    def run_stdio(self) -> None:
        """Serve over stdio until the client closes the pipe."""

        async def main() -> None:
            try:
                await self.run_stdio_async()
            finally:
                with anyio.CancelScope(shield=True):
                    await self.aclose()

        anyio.run(main)


def _resource(path: Path, uri: str) -> MCPResource:
    prompt = None
    sidecar = path.with_suffix(".json")
    with contextlib.suppress(OSError, ValueError, AttributeError):
        prompt = json.loads(sidecar.read_text(encoding="utf-8")).get("prompt")
    try:
        size = path.stat().st_size
    except OSError:
        size = None
    return MCPResource(
        uri=uri,
        name=path.name,
        description=f"prompt: {prompt}" if isinstance(prompt, str) else None,
        mime_type=MIME_TYPES.get(path.suffix.lower()),
        size=size,
    )


def build_server(
    config: Config,
    settings: McpSettings,
    *,
    queue: str | None = None,
    credentials: Credentials | None = None,
    base_url: str = "http://127.0.0.1",
) -> ImagenServer:
    """The server for ``config``.

    :param queue: the queue's database URL: adds ``submit_job``, ``job_status`` and
        ``cancel_job`` (needs imagen-worker).
    :param credentials: who may call over HTTP; None for stdio (the caller is the local
        user, ``mcp.owner``).
    :param base_url: where the HTTP server listens (it names the token issuer, which is
        imagen itself: no OAuth metadata is published).
    """
    shelf = ImageShelf(
        config.output.directory, settings.recent_images, scoped=credentials is not None
    )
    auth: dict[str, Any] = {}
    if credentials is not None:
        auth = {
            "auth": AuthSettings(issuer_url=base_url, resource_server_url=None),
            "token_verifier": ImagenTokenVerifier(credentials),
        }
    server = ImagenServer(
        shelf,
        settings.owner,
        name="imagen",
        title="imagen",
        description="Images from any configured backend: ComfyUI, Replicate, OpenAI and more.",
        version=__version__,
        instructions=INSTRUCTIONS,
        website_url="https://github.com/imagen-dev/imagen",
        log_level="WARNING",
        **auth,
    )
    pool = SharedPool(config)
    generator = Generator(config, settings, pool, shelf, ImageLimit(settings.max_session_images))

    async def close_pool() -> None:
        await anyio.to_thread.run_sync(pool.close)

    server.closers.append(close_pool)
    from imagen_mcp.tools import add_queue_tools, add_tools

    add_tools(server, config, settings, generator, pool, shelf, http=credentials is not None)
    if queue is not None:
        from imagen_mcp.jobs import Queue

        jobs = Queue(config, settings, queue, shelf, pool)
        server.closers.append(jobs.close)
        add_queue_tools(server, config, settings, jobs)
    return server
