"""``generate_image``: the pipeline in a worker thread, with progress, cancellation and limits.

The pipeline is the one ``imagen generate`` and the worker drive: styles, naming, metadata,
sidecars, cloud sync, usage records and spending caps (``usage.budget``) all apply. The
call runs in a worker thread; the backend's progress becomes MCP progress notifications;
a client that cancels the call cancels the generation through its ``imagen.Context``,
and the server waits for the backend to stop (so its usage is recorded) before it moves on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import anyio
import anyio.to_thread
from mcp.server.mcpserver import Context as ToolContext
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ContentBlock, TextContent
from pydantic import BaseModel, Field

from imagen import Context
from imagen.config import Config
from imagen.inputs import InputImage
from imagen.pipeline import Outcome
from imagen.pipeline import generate as run_pipeline
from imagen.request import Request
from imagen.styles import parse_size
from imagen_mcp.catalog import SharedPool
from imagen_mcp.errors import refusals
from imagen_mcp.images import ImageShelf, image_blocks
from imagen_mcp.inputs import ImageInput, InputReader
from imagen_mcp.limits import ImageLimit, LimitReached
from imagen_mcp.progress import ProgressRelay
from imagen_mcp.settings import McpSettings

__all__ = ["Ask", "Generated", "Generator", "ImageMade", "session_key"]

log = logging.getLogger("imagen")
T = TypeVar("T")
CANCEL_GRACE_S = 60.0  # how long a cancelled backend gets to stop before it is left running


@dataclass(frozen=True)
class Ask:
    """What ``generate_image`` or ``edit_image`` was asked for, checked against the schema.

    ``inputs`` name the input images (:class:`~imagen_mcp.inputs.ImageInput`); the
    generator reads and checks them (:class:`~imagen_mcp.inputs.InputReader`) and hands
    them to :meth:`request` with ``strength``.
    """

    prompt: str
    negative_prompt: str = ""
    size: str | None = None
    count: int = 1
    seed: int | None = None
    backend: str | None = None
    style: str | None = None
    steps: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    inputs: tuple[ImageInput, ...] = ()
    strength: float | None = None

    def request(self, config: Config, inputs: tuple[InputImage, ...] = ()) -> Request:
        """The pipeline request with ``inputs`` (the checked :attr:`inputs`).

        :raises ImagenError: a RequestError when it is impossible (a mask of another size).
        """
        width = height = None
        if self.size is not None:
            try:
                width, height = parse_size(self.size)
            except ValueError as exc:
                raise ToolError(f"size: {exc}") from None
        if self.style is not None:
            config.style(self.style)  # unknown: a RequestError naming the known ones
        return Request(
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            width=width,
            height=height,
            steps=self.steps,
            seed=self.seed,
            style=self.style,
            count=self.count,
            options=self.options,
            inputs=inputs,
            strength=self.strength,
        )


class ImageMade(BaseModel):
    """One saved image."""

    path: str = Field(description="where it was saved, on the server's disk")
    uri: str | None = Field(description="its imagen://images/ resource, to read it again")
    mime_type: str
    width: int | None
    height: int | None
    seed: int | None = Field(description="the seed that makes this very image again")
    bytes: int
    shown: Literal["inline", "preview", "link"] = Field(
        description="how this result carries it: whole, as a smaller preview, or as a link only"
    )


class Generated(BaseModel):
    """What ``generate_image`` made."""

    backend: str
    images: list[ImageMade]
    cost_usd: float | None = Field(description="what the run cost, when the backend says")
    duration_s: float
    ignored: list[str] = Field(description="request fields the backend did not honour")
    notes: list[str]


def session_key(ctx: ToolContext[Any, Any], owner: str) -> Hashable:
    """Which session a call counts against for ``mcp.max_session_images``.

    Over stdio the session is the process. Over HTTP it is the caller's ``Mcp-Session-Id``
    session; a caller without one (the 2026-07-28 protocol has no sessions over HTTP)
    counts as one session for as long as the server runs.
    """
    request = ctx.request_context.request
    headers = getattr(request, "headers", None)
    if headers is None:
        return ("stdio",)
    return ("http", owner, headers.get("mcp-session-id"))


class Generator:
    """Runs ``generate_image`` calls for one server."""

    def __init__(
        self,
        config: Config,
        settings: McpSettings,
        pool: SharedPool,
        shelf: ImageShelf,
        limit: ImageLimit,
    ) -> None:
        self.config = config
        self.settings = settings
        self.pool = pool
        self.shelf = shelf
        self.limit = limit

    async def __call__(self, ask: Ask, ctx: ToolContext[Any, Any], owner: str) -> CallToolResult:
        settings = self.settings
        reader = InputReader(self.shelf, settings.input_roots, settings.input_max_bytes, owner)
        try:
            inputs = await anyio.to_thread.run_sync(reader.read, ask.inputs)
            with refusals():
                request = ask.request(self.config, inputs)
            return await self._generate(request, ask, ctx, owner)
        finally:
            with anyio.CancelScope(shield=True):  # the decoded inputs go, however it ends
                await anyio.to_thread.run_sync(reader.__exit__, None, None, None)

    async def _generate(
        self, request: Request, ask: Ask, ctx: ToolContext[Any, Any], owner: str
    ) -> CallToolResult:
        session = session_key(ctx, owner)
        try:
            self.limit.reserve(session, request.count)
        except LimitReached as exc:
            raise ToolError(str(exc)) from None
        made = 0
        try:
            outcome = await self._run(request, ask.backend, owner, ctx)
            made = len(outcome.images)
        finally:
            self.limit.settle(session, request.count, made)
        for image in outcome.images:
            self.shelf.add(image.path, owner)
        return await anyio.to_thread.run_sync(self._result, outcome, ask.backend)

    async def _run(
        self, request: Request, backend: str | None, owner: str, ctx: ToolContext[Any, Any]
    ) -> Outcome:
        relay = ProgressRelay(ctx.report_progress)
        context = Context(on_progress=relay)

        def generate() -> Outcome:
            return run_pipeline(
                self.config,
                request,
                backend=backend,
                context=context,
                preview=False,  # no tmux windows from a server
                pool=self.pool,
                keep_partial=False,  # a failed call returns no image: leave none behind
                labels={"entry": "mcp", "owner": owner},
            )

        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(relay.forward)
                try:
                    with refusals():
                        outcome = await _cancellable(generate, context)
                finally:
                    tasks.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # anyio groups what the body raised: unwrap it
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        count = len(outcome.images)
        await relay.done(f"saved {count} image{'s' if count != 1 else ''}")
        return outcome

    def _result(self, outcome: Outcome, backend: str | None) -> CallToolResult:
        budget = self.settings.inline_max_bytes
        images: list[ImageMade] = []
        pictures: list[ContentBlock] = []
        for saved in outcome.images:
            uri = self.shelf.uri(saved.path)
            blocks, shown = image_blocks(
                saved.path, saved.mime_type, uri, budget, self.settings.previews
            )
            budget -= shown.bytes
            pictures += blocks
            record = saved.record
            images.append(
                ImageMade(
                    path=str(saved.path),
                    uri=uri,
                    mime_type=saved.mime_type,
                    width=record.get("width"),
                    height=record.get("height"),
                    seed=record.get("image_seed", record.get("seed")),
                    bytes=saved.path.stat().st_size,
                    shown=shown.mode,  # type: ignore[arg-type]
                )
            )
        notes = list(outcome.notes) + [f"{f.hook}: {f}" for f in outcome.step_failures]
        cost = outcome.metadata.get("cost_usd")
        made = Generated(
            backend=backend or self.config.default_backend,
            images=images,
            cost_usd=float(cost) if isinstance(cost, int | float) else None,
            duration_s=round(outcome.duration_s, 3),
            ignored=outcome.ignored,
            notes=notes,
        )
        summary = TextContent(text=_summary(made))
        return CallToolResult(
            content=[summary, *pictures], structured_content=made.model_dump(mode="json")
        )


def _summary(made: Generated) -> str:
    count = len(made.images)
    lines = [f'Made {count} image{"s" if count != 1 else ""} with backend "{made.backend}"']
    if made.cost_usd is not None:
        lines[0] += f" for ${made.cost_usd:.4f}"
    lines[0] += f" in {made.duration_s:.1f} s:"
    shown = {"inline": "shown below", "preview": "a preview below", "link": "not shown inline"}
    for number, image in enumerate(made.images, 1):
        size = f"{image.width}x{image.height}" if image.width and image.height else "?"
        lines.append(
            f"{number}. {image.path} ({size}, seed {image.seed}, {shown[image.shown]}"
            + (f"; {image.uri}" if image.uri else "")
            + ")"
        )
    if made.ignored:
        lines.append(f"The backend ignored: {', '.join(made.ignored)}.")
    lines += made.notes
    return "\n".join(lines)


async def _cancellable(call: Callable[[], T], context: Context) -> T:
    """``call()`` in a worker thread; cancelling the caller cancels ``context`` and waits."""
    finished = threading.Event()

    def run() -> T:
        try:
            return call()
        finally:
            finished.set()

    try:
        return await anyio.to_thread.run_sync(run, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        context.cancel()
        with anyio.CancelScope(shield=True):
            stopped = await anyio.to_thread.run_sync(finished.wait, CANCEL_GRACE_S)
        if not stopped:
            log.warning("a cancelled generation did not stop within %.0f s", CANCEL_GRACE_S)
        raise
