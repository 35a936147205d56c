"""``submit_job``, ``job_status`` and ``cancel_job``: the imagen-worker queue, for agents.

Every statement runs as the caller under the schema's row-level security, as
``imagen serve`` runs them (:class:`imagen_worker.serve.store.Store`): a caller sees and
cancels only their own jobs, and another owner's job looks exactly like a missing one.
Each job is checked before it is inserted (:func:`check_job`), so a job a worker would
refuse never enters the queue.

A job's input images are read and checked as ``generate_image`` reads them, then kept in
the caller's folder of the inputs directory (``serve.inputs_dir``), as ``imagen serve``
keeps its uploads, and named in the job by their SHA-256: the workers of this host read
them there and check the bytes again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import anyio
import psycopg
from mcp.server.mcpserver import Context as ToolContext
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, ContentBlock, TextContent
from psycopg import sql
from psycopg_pool import PoolTimeout
from pydantic import BaseModel, Field

from imagen.config import Config
from imagen.inputs import InputImage
from imagen.pipeline import BackendPool
from imagen.styles import parse_size
from imagen_mcp.errors import refusals
from imagen_mcp.generation import Ask
from imagen_mcp.images import MIME_TYPES, ImageShelf, image_blocks
from imagen_mcp.inputs import InputReader
from imagen_mcp.progress import TOTAL
from imagen_mcp.settings import McpSettings
from imagen_worker import submission
from imagen_worker.database import web_role
from imagen_worker.job_inputs import forget_uploads, inputs_dir, keep_uploads
from imagen_worker.serve.store import Store

__all__ = ["ENDED", "JobImage", "JobView", "Queue", "check_job"]

ENDED = ("done", "failed", "cancelled")
_COLUMNS = sql.SQL(
    "id, status, prompt, negative_prompt, backend, style, width, height, steps, seed, count, "
    "options, attempts, cancel_requested, error, progress, created_at, started_at, finished_at"
)
_POLL_S = 0.5
_CHUNK = 1 << 20


class JobImage(BaseModel):
    path: str | None
    uri: str | None = Field(
        description="its imagen://images/ resource, when this server can read it"
    )
    mime_type: str
    storage_location: str | None = Field(description="where cloud sync put it, if it did")
    shown: Literal["inline", "preview", "link", "none"]


class JobView(BaseModel):
    """A queued job as its owner sees it."""

    id: int
    status: Literal["pending", "running", "done", "failed", "cancelled"]
    prompt: str
    backend: str | None
    style: str | None
    count: int
    attempts: int
    cancel_requested: bool
    progress: str | None = Field(description="the backend's last progress report")
    error: str | None
    created_at: str
    finished_at: str | None
    images: list[JobImage] = Field(description="what a done job made")


def check_job(
    config: Config,
    settings: McpSettings,
    ask: Ask,
    pool: BackendPool | None = None,
    inputs: tuple[InputImage, ...] = (),
) -> dict[str, Any]:
    """The ``imagen.jobs`` row ``ask`` becomes; ToolError (and no job) when it cannot run.

    The door every job of this server goes through: imagen-worker's own check
    (:func:`imagen_worker.submission.check_job`: the queue's bounds, known names, and the
    backend's own refusal of what it can never make, input images included), with
    ``mcp.max_count``.

    :param inputs: ``ask``'s input images, read and checked; the row names them by digest.
    """
    fields: dict[str, Any] = {"prompt": ask.prompt, "count": ask.count}
    if ask.size is not None:
        try:
            fields["width"], fields["height"] = parse_size(ask.size)
        except ValueError as exc:
            raise ToolError(f"size: {exc}") from None
    for name in ("negative_prompt", "backend", "style", "steps", "seed"):
        value = getattr(ask, name)
        if value not in (None, ""):
            fields[name] = value
    if ask.options:
        fields["options"] = dict(ask.options)
    if inputs:
        fields["inputs"] = [
            {"role": image.role, "upload": image.sha256, "name": image.name} for image in inputs
        ]
    if ask.strength is not None:
        fields["strength"] = ask.strength
    with refusals():
        submission.check_job(
            config, fields, pool=pool, max_images=settings.max_count, inputs=inputs
        )
    for column in ("options", "inputs"):
        if column in fields:
            fields[column] = json.dumps(fields[column], allow_nan=False)
    return fields


class Queue:
    """The queue as one server's callers reach it, through a pool opened on first use."""

    def __init__(
        self,
        config: Config,
        settings: McpSettings,
        url: str,
        shelf: ImageShelf,
        pool: BackendPool | None = None,
    ) -> None:
        self.config = config
        self.settings = settings
        self.shelf = shelf
        self.pool = pool
        self.store = Store(url, web_role(config), max_size=4)
        self._opened = False
        self._lock = anyio.Lock()

    async def _ready(self) -> Store:
        async with self._lock:
            if not self._opened:
                await self.store.open()
                self._opened = True
        return self.store

    @asynccontextmanager
    async def _database(self) -> AsyncIterator[Store]:
        """The store; a database that fails is a tool error saying so, not a crash."""
        try:
            yield await self._ready()
        except psycopg.errors.CheckViolation as exc:  # what the check above let through
            field = submission.constraint_field(exc.diag.constraint_name)
            raise ToolError(f"{field}: refused by the queue's database") from None
        except psycopg.errors.UndefinedTable:
            raise ToolError(
                "the queue's database has no imagen schema: run imagen db migrate"
            ) from None
        except (psycopg.Error, PoolTimeout) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ToolError(f"the queue's database failed: {reason}") from None

    async def close(self) -> None:
        if self._opened:
            await self.store.close()
            self._opened = False

    async def submit(self, ask: Ask, owner: str) -> JobView:
        """Check ``ask`` (its input images too) and queue it as a job of ``owner``."""
        settings = self.settings
        reader = InputReader(self.shelf, settings.input_roots, settings.input_max_bytes, owner)
        try:
            inputs = await anyio.to_thread.run_sync(reader.read, ask.inputs)
            fields = await anyio.to_thread.run_sync(
                check_job, self.config, settings, ask, self.pool, inputs
            )
            kept = await anyio.to_thread.run_sync(_keep, inputs, inputs_dir(self.config), owner)
        finally:  # data inputs' scratch files
            await anyio.to_thread.run_sync(reader.__exit__, None, None, None)
        columns = list(fields)
        query = sql.SQL("INSERT INTO imagen.jobs ({}) VALUES ({}) RETURNING {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            _COLUMNS,
        )
        try:
            async with self._database() as store:
                row = await store.fetch_one(owner, query, [fields[c] for c in columns])
        except BaseException:
            await anyio.to_thread.run_sync(forget_uploads, kept)
            raise
        assert row is not None  # INSERT … RETURNING always returns the row
        return _view(row, [])

    async def status(
        self, job_id: int, owner: str, wait_s: float, ctx: ToolContext[Any, Any]
    ) -> CallToolResult:
        """The job (once it has ended, or when ``wait_s`` runs out), with its images."""
        deadline = time.monotonic() + wait_s
        last = None
        reported = 0.0
        while True:
            row = await self._row(job_id, owner)
            progress = _progress_text(row)
            if wait_s and progress and progress != last:
                last = progress
                reported = min(reported + 1, TOTAL - 1)
                await ctx.report_progress(reported, None, f"job {job_id}: {progress}")
            if row["status"] in ENDED or time.monotonic() >= deadline:
                break
            await anyio.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))
        images = await self._images(job_id, owner) if row["status"] == "done" else []
        return await anyio.to_thread.run_sync(self._result, row, images, owner)

    async def cancel(self, job_id: int, owner: str) -> JobView:
        """Ask for ``owner``'s job to be cancelled: at once when pending, by its worker when running."""
        async with self._database() as store:
            flagged = await store.fetch_one(
                owner,
                "UPDATE imagen.jobs SET cancel_requested = true WHERE id = %s RETURNING id",
                (job_id,),
            )
        row = await self._row(job_id, owner)
        if flagged is None:
            raise ToolError(f"job {job_id} has already ended ({row['status']})")
        return _view(row, [])

    async def _row(self, job_id: int, owner: str) -> dict[str, Any]:
        query = sql.SQL("SELECT {} FROM imagen.jobs WHERE id = %s").format(_COLUMNS)
        async with self._database() as store:
            row = await store.fetch_one(owner, query, (job_id,))
        if row is None:  # another owner's job looks exactly like a missing one
            raise ToolError(f"no job {job_id}")
        return row

    async def _images(self, job_id: int, owner: str) -> list[dict[str, Any]]:
        async with self._database() as store:
            return await store.fetch_all(
                owner,
                "SELECT local_path, storage_location, mime_type FROM imagen.images "
                "WHERE job_id = %s ORDER BY id",
                (job_id,),
            )

    def _result(
        self, row: dict[str, Any], images: list[dict[str, Any]], owner: str
    ) -> CallToolResult:
        budget = self.settings.inline_max_bytes
        shown: list[JobImage] = []
        pictures: list[ContentBlock] = []
        for image in images:
            path = Path(image["local_path"]) if image["local_path"] else None
            uri = None
            mode: Literal["inline", "preview", "link", "none"] = "none"
            readable = (
                path is not None
                and path.suffix.lower() in MIME_TYPES
                and path.is_file()
                and self.shelf.uri(path) is not None
            )
            if readable and path is not None:
                self.shelf.add(path, owner)
                uri = self.shelf.uri(path)
                blocks, how = image_blocks(
                    path, image["mime_type"], uri, budget, self.settings.previews
                )
                budget -= how.bytes
                pictures += blocks
                mode = how.mode  # type: ignore[assignment]
            shown.append(
                JobImage(
                    path=str(path) if path else None,
                    uri=uri,
                    mime_type=image["mime_type"],
                    storage_location=image["storage_location"],
                    shown=mode,
                )
            )
        view = _view(row, shown)
        text = f"job {view.id}: {view.status}"
        if view.progress and view.status in ("pending", "running"):
            text += f" ({view.progress})"
        if view.error:
            text += f": {view.error}"
        text += "".join(f"\n{i.path or i.storage_location}" for i in shown)
        return CallToolResult(
            content=[TextContent(text=text), *pictures],
            structured_content=view.model_dump(mode="json"),
        )


def _keep(inputs: tuple[InputImage, ...], directory: Path, owner: str) -> list[Path]:
    """Copy each input into ``owner``'s folder for the workers; the files this call added.

    Copied, never moved: a ``path`` input is the caller's own file. Each copy is hashed as
    it is written, so a file that changed since it was checked is refused here rather than
    by the worker.
    """
    incoming = directory / "incoming"
    incoming.mkdir(parents=True, exist_ok=True, mode=0o700)
    staged: list[InputImage] = []
    try:
        for index, image in enumerate(inputs):
            staged.append(_copy(image, incoming, f"inputs[{index}]"))
        return keep_uploads(directory, owner, staged)
    finally:
        for image in staged:  # moved away when kept
            image.path.unlink(missing_ok=True)


def _copy(image: InputImage, incoming: Path, where: str) -> InputImage:
    handle, name = tempfile.mkstemp(dir=incoming, suffix=".input")
    copy = Path(name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(handle, "wb") as out, image.path.open("rb") as source:
            while chunk := source.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != image.sha256:
            raise ToolError(f"{where}: {image.name} changed while it was being read")
    except OSError as exc:
        copy.unlink(missing_ok=True)
        raise ToolError(f"{where}: cannot copy it ({exc.strerror or exc})") from None
    except BaseException:
        copy.unlink(missing_ok=True)
        raise
    return dataclasses.replace(image, path=copy)


def _progress_text(row: dict[str, Any]) -> str | None:
    last = (
        (row.get("progress") or {}).get("last") if isinstance(row.get("progress"), dict) else None
    )
    if not isinstance(last, dict):
        return None
    kind, current, total = last.get("kind"), last.get("current"), last.get("total")
    if kind == "step" and current is not None and total:
        return f"step {current} of {total}"
    return str(last.get("message") or kind or "") or None


def _view(row: dict[str, Any], images: list[JobImage]) -> JobView:
    return JobView(
        id=row["id"],
        status=row["status"],
        prompt=row["prompt"],
        backend=row["backend"],
        style=row["style"],
        count=row["count"],
        attempts=row["attempts"],
        cancel_requested=row["cancel_requested"],
        progress=_progress_text(row),
        error=row["error"],
        created_at=row["created_at"].isoformat(),
        finished_at=row["finished_at"].isoformat() if row["finished_at"] else None,
        images=images,
    )
