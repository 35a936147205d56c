"""The MCP server: imagen's tools and its image resources, on the SDK's ``MCPServer``.

:func:`build_server` builds it for a config; ``imagen mcp`` runs it over stdio or HTTP.
The tools' parameters are typed here, so the SDK publishes their JSON schemas and refuses
arguments that break them before a tool runs, as a tool error naming the field.

No ``from __future__ import annotations`` here: the tools' annotations are built from the
config (the backend and style names become enums) and must be live objects.
"""

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Literal

import anyio
import anyio.to_thread
from mcp.server.auth.settings import AuthSettings
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp_types import CallToolResult, ToolAnnotations
from mcp_types import Resource as MCPResource
from mcp_types import ResourceTemplate as MCPResourceTemplate
from pydantic import Field

from imagen.config import Config
from imagen.pipeline import SEED_LIMIT
from imagen.tokens import Credentials
from imagen_mcp import __version__
from imagen_mcp.auth import ImagenTokenVerifier, caller
from imagen_mcp.catalog import (
    Backends,
    SharedPool,
    Styles,
    describe_backends,
    describe_styles,
    image_facts,
)
from imagen_mcp.errors import refusals
from imagen_mcp.generation import Ask, Generated, Generator
from imagen_mcp.images import MIME_TYPES, URI_PREFIX, URI_TEMPLATE, ImageShelf, NotAnImage
from imagen_mcp.limits import ImageLimit
from imagen_mcp.settings import McpSettings

__all__ = ["TOOLS", "ImagenServer", "build_server"]

log = logging.getLogger("imagen")

TOOLS = ("generate_image", "list_backends", "list_styles", "image_info")
QUEUE_TOOLS = ("submit_job", "job_status", "cancel_job")
MAX_PROMPT = 8000  # characters; no upstream takes more
MAX_OPTIONS = 32

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
    try:
        import json

        prompt = json.loads(sidecar.read_text(encoding="utf-8")).get("prompt")
    except (OSError, ValueError, AttributeError):
        pass
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
    _add_tools(server, config, settings, generator, pool, shelf, http=credentials is not None)
    if queue is not None:
        from imagen_mcp.jobs import Queue

        jobs = Queue(config, settings, queue, shelf)
        server.closers.append(jobs.close)
        _add_queue_tools(server, config, settings, jobs)
    return server


def _names(values: list[str], what: str) -> Any:
    """An enum of ``values`` for the schema, or a plain string when there are none."""
    if not values:
        return Annotated[str, Field(description=f"no {what} are configured")]
    return Literal[tuple(values)]  # type: ignore[valid-type]


def _request_parameters(config: Config, settings: McpSettings) -> SimpleNamespace:
    """The annotated parameters ``generate_image`` and ``submit_job`` share."""
    backends = _names(list(config.backends), "backends")
    styles = _names(list(config.styles), "styles")
    return SimpleNamespace(
        prompt=Annotated[
            str,
            Field(
                min_length=1,
                max_length=MAX_PROMPT,
                pattern=r"\S",
                description="What the image shows, in plain words; the more concrete the "
                "better (subject, setting, light, medium).",
            ),
        ],
        negative_prompt=Annotated[
            str,
            Field(
                max_length=MAX_PROMPT,
                description="What to keep out of the image. Some backends ignore it (the "
                "result says so).",
            ),
        ],
        size=Annotated[
            str | None,
            Field(
                pattern=r"^\s*[0-9]{1,5}\s*[xX]\s*[0-9]{1,5}\s*$",
                description="WIDTHxHEIGHT in pixels, such as 1024x1024 or 1216x832. Omit it "
                "for the style's or the backend's default. Each backend has its own bounds.",
            ),
        ],
        count=Annotated[
            int,
            Field(
                ge=1,
                le=settings.max_count,
                description=f"How many images to make, 1 to {settings.max_count}.",
            ),
        ],
        seed=Annotated[
            int | None,
            Field(
                ge=0,
                lt=SEED_LIMIT,
                description="Seed for the sampler; omit for a random one (it is returned). "
                "The same seed and prompt make the same image again on reproducible backends.",
            ),
        ],
        backend=Annotated[
            backends | None,
            Field(
                description="Which configured backend makes it (see list_backends); omit "
                f'for the default, "{config.default_backend}".'
            ),
        ],
        style=Annotated[
            styles | None,
            Field(description="A style preset to apply (see list_styles)."),
        ],
        steps=Annotated[
            int | None,
            Field(ge=1, le=1000, description="Sampling steps, for backends that have them."),
        ],
        options=Annotated[
            dict[
                Annotated[str, Field(min_length=1, max_length=64)],
                str | int | Annotated[float, Field(allow_inf_nan=False)] | bool,
            ]
            | None,
            Field(
                max_length=MAX_OPTIONS,
                description="Backend-specific options, only those the backend documents "
                "(the built-in mock backend takes delay, fail and format).",
            ),
        ],
    )


def _add_tools(
    server: ImagenServer,
    config: Config,
    settings: McpSettings,
    generator: Generator,
    pool: SharedPool,
    shelf: ImageShelf,
    *,
    http: bool,
) -> None:
    p = _request_parameters(config, settings)

    async def generate_image(
        ctx: Context[Any, Any],
        prompt: p.prompt,
        negative_prompt: p.negative_prompt = "",
        size: p.size = None,
        count: p.count = 1,
        seed: p.seed = None,
        backend: p.backend = None,
        style: p.style = None,
        steps: p.steps = None,
        options: p.options = None,
    ) -> Annotated[CallToolResult, Generated]:
        ask = Ask(prompt, negative_prompt, size, count, seed, backend, style, steps, options or {})
        return await generator(ask, ctx, caller(settings.owner))

    server.add_tool(
        generate_image,
        title="Generate images",
        description="Make images from a text prompt with one of the image backends "
        "configured on this machine, save them, and return them: each image as image "
        "content (a preview and a link when it is large) with its saved path, seed and the "
        "run's cost. Takes seconds to minutes; progress is reported and the call can be "
        "cancelled. Spending caps and a per-session image limit apply: a refused call says "
        "why. Use list_backends and list_styles to choose `backend` and `style`.",
        annotations=ToolAnnotations(
            title="Generate images",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=True,
        ),
    )

    async def list_backends() -> Backends:
        with refusals():
            return await anyio.to_thread.run_sync(describe_backends, config, pool)

    server.add_tool(
        list_backends,
        title="List image backends",
        description="List the image backends configured on this machine: which one is the "
        "default, whether each can be used right now (and why not), whether its seeds "
        "reproduce an image exactly, and its estimated price per image when known.",
        annotations=_reading("List image backends"),
    )

    async def list_styles() -> Styles:
        return describe_styles(config)

    server.add_tool(
        list_styles,
        title="List style presets",
        description="List the style presets generate_image's `style` takes: the text each "
        "adds to the prompt and the negative prompt, and its default size and steps.",
        annotations=_reading("List style presets"),
    )

    async def image_info(
        image: Annotated[
            str,
            Field(
                min_length=1,
                max_length=4096,
                description="An imagen://images/ URI, or the path of an image file"
                + (" under the server's output directory." if http else "."),
            ),
        ],
    ) -> dict[str, Any]:
        owner = caller(settings.owner)

        def read() -> dict[str, Any]:
            if image.startswith(URI_PREFIX) or http:
                uri = image if image.startswith(URI_PREFIX) else shelf.uri(Path(image))
                if uri is None:
                    raise ToolError(
                        "over HTTP only the images made for you can be read: give one's "
                        "imagen://images/ URI or its path under the output directory"
                    )
                try:
                    path = shelf.resolve(uri, owner)
                except NotAnImage as exc:
                    raise ToolError(str(exc)) from None
            else:
                path = Path(image).expanduser()
            try:
                with refusals():
                    return image_facts(path)
            except OSError as exc:
                raise ToolError(f"cannot read {path}: {exc.strerror or exc}") from None

        return await anyio.to_thread.run_sync(read)

    server.add_tool(
        image_info,
        title="Read an image's parameters",
        description="Read how an image was made: its prompt, negative prompt, seed, size, "
        "steps, backend, style and model, from the parameters imagen (or A1111, or "
        "ComfyUI) wrote into the file or beside it. Use it to make a variation of an image: "
        "pass its prompt and seed back to generate_image.",
        annotations=_reading("Read an image's parameters"),
        structured_output=True,
    )


def _add_queue_tools(
    server: ImagenServer, config: Config, settings: McpSettings, jobs: Any
) -> None:
    from imagen_mcp.jobs import JobView

    p = _request_parameters(config, settings)
    job_id = Annotated[int, Field(ge=1, lt=2**63, description="The job's id, from submit_job.")]

    async def submit_job(
        prompt: p.prompt,
        negative_prompt: p.negative_prompt = "",
        size: p.size = None,
        count: p.count = 1,
        seed: p.seed = None,
        backend: p.backend = None,
        style: p.style = None,
        steps: p.steps = None,
        options: p.options = None,
    ) -> JobView:
        ask = Ask(prompt, negative_prompt, size, count, seed, backend, style, steps, options or {})
        return await jobs.submit(ask, caller(settings.owner))

    server.add_tool(
        submit_job,
        title="Queue an image job",
        description="Queue an image generation for imagen's background workers and return "
        "its job id at once, instead of waiting as generate_image does. For long or many "
        "generations; follow it with job_status (which can wait) and stop it with cancel_job.",
        annotations=ToolAnnotations(
            title="Queue an image job",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=True,
        ),
    )

    async def job_status(
        ctx: Context[Any, Any],
        job_id: job_id,
        wait_s: Annotated[
            float,
            Field(
                ge=0,
                le=120,
                allow_inf_nan=False,
                description="Wait up to this many seconds for the job to end (reporting its "
                "progress) before answering; 0 answers at once.",
            ),
        ] = 0,
    ) -> Annotated[CallToolResult, JobView]:
        return await jobs.status(job_id, caller(settings.owner), wait_s, ctx)

    server.add_tool(
        job_status,
        title="Check an image job",
        description="A queued job's status (pending, running, done, failed, cancelled), its "
        "progress or error, and once done its images, shown as generate_image shows them.",
        annotations=_reading("Check an image job"),
    )

    async def cancel_job(job_id: job_id) -> JobView:
        return await jobs.cancel(job_id, caller(settings.owner))

    server.add_tool(
        cancel_job,
        title="Cancel an image job",
        description="Cancel a queued job: at once when it is still pending, through its "
        "worker when it is running. A job that has ended cannot be cancelled.",
        annotations=ToolAnnotations(
            title="Cancel an image job",
            read_only_hint=False,
            destructive_hint=True,
            idempotent_hint=True,
            open_world_hint=False,
        ),
    )


def _reading(title: str) -> ToolAnnotations:
    return ToolAnnotations(
        title=title,
        read_only_hint=True,
        destructive_hint=False,
        idempotent_hint=True,
        open_world_hint=False,
    )
