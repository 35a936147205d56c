"""The tools, typed: the SDK publishes their JSON schemas from these signatures.

Arguments that break a schema are refused before a tool runs, as a tool error naming the
field. No ``from __future__ import annotations`` here: the annotations are built from the
config (the backend and style names become enums) and must be live objects.
"""

from pathlib import Path
from typing import Annotated, Any

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ToolAnnotations
from pydantic import Field

from imagen.config import Config
from imagen_mcp.auth import caller
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
from imagen_mcp.images import URI_PREFIX, ImageShelf, NotAnImage
from imagen_mcp.parameters import request_parameters
from imagen_mcp.server import ImagenServer
from imagen_mcp.settings import McpSettings

__all__ = ["add_queue_tools", "add_tools"]


def add_tools(
    server: ImagenServer,
    config: Config,
    settings: McpSettings,
    generator: Generator,
    pool: SharedPool,
    shelf: ImageShelf,
    *,
    http: bool,
) -> None:
    p = request_parameters(config, settings)

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
        inputs: p.inputs = None,
        strength: p.strength = None,
    ) -> Annotated[CallToolResult, Generated]:
        ask = Ask(
            prompt,
            negative_prompt,
            size,
            count,
            seed,
            backend,
            style,
            steps,
            options or {},
            inputs=tuple(inputs or ()),
            strength=strength,
        )
        return await generator(ask, ctx, caller(settings.owner))

    server.add_tool(
        generate_image,
        title="Generate images",
        description="Make images from a text prompt with one of the image backends "
        "configured on this machine, save them, and return them: each image as image "
        "content (a preview and a link when it is large) with its saved path, seed and the "
        "run's cost. Input images (to edit, to start from, references, a mask) go in "
        "`inputs`, for backends that take them. Takes seconds to minutes; progress is "
        "reported and the call can be cancelled. Spending caps and a per-session image limit "
        "apply: a refused call says why. Use list_backends and list_styles to choose "
        "`backend` and `style`.",
        annotations=ToolAnnotations(
            title="Generate images",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=False,
            open_world_hint=True,
        ),
    )

    async def edit_image(
        ctx: Context[Any, Any],
        image: p.image,
        prompt: p.prompt,
        mask: p.mask = None,
        strength: p.strength = None,
        size: p.size = None,
        count: p.count = 1,
        seed: p.seed = None,
        backend: p.backend = None,
        style: p.style = None,
    ) -> Annotated[CallToolResult, Generated]:
        inputs = [image.model_copy(update={"role": "image"})]
        if mask is not None:
            inputs.append(mask.model_copy(update={"role": "mask"}))
        ask = Ask(
            prompt,
            size=size,
            count=count,
            seed=seed,
            backend=backend,
            style=style,
            inputs=tuple(inputs),
            strength=strength,
        )
        return await generator(ask, ctx, caller(settings.owner))

    server.add_tool(
        edit_image,
        title="Edit an image",
        description='Change an existing image as the prompt says ("make the sky stormy", '
        '"replace the cup with a lamp"), with a backend that takes input images '
        "(list_backends shows which). Name the image by its path on the server, as base64 "
        "data, or by the imagen://images/ URI of an image made earlier; a mask limits the "
        "change to its white (or transparent) part. Returns the edited images as "
        "generate_image does, saved beside the others.",
        annotations=ToolAnnotations(
            title="Edit an image",
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


def add_queue_tools(server: ImagenServer, config: Config, settings: McpSettings, jobs: Any) -> None:
    from imagen_mcp.jobs import JobView
    from imagen_worker.limits import MAX_BIGINT

    p = request_parameters(config, settings)
    job_id = Annotated[
        int, Field(ge=1, le=MAX_BIGINT, description="The job's id, from submit_job.")
    ]

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
        inputs: p.inputs = None,
        strength: p.strength = None,
    ) -> JobView:
        ask = Ask(
            prompt,
            negative_prompt,
            size,
            count,
            seed,
            backend,
            style,
            steps,
            options or {},
            inputs=tuple(inputs or ()),
            strength=strength,
        )
        return await jobs.submit(ask, caller(settings.owner))

    server.add_tool(
        submit_job,
        title="Queue an image job",
        description="Queue an image generation for imagen's background workers and return "
        "its job id at once, instead of waiting as generate_image does. For long or many "
        "generations; follow it with job_status (which can wait) and stop it with cancel_job. "
        "Input images go in `inputs` as for generate_image: they are checked and kept for "
        "the workers before the job is queued.",
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
