"""Jobs as the server handles them: checked, queued as the caller, read back, followed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from anyio import to_thread
from psycopg import sql
from psycopg.types.json import Jsonb

from imagen.config import Config
from imagen.styles import parse_size
from imagen_worker import queries
from imagen_worker.fleet import NO_WORKER
from imagen_worker.limits import MAX_SIDE
from imagen_worker.serve.bodies import ImagesRequest, JobRequest
from imagen_worker.serve.errors import ApiError
from imagen_worker.serve.services import Services
from imagen_worker.serve.settings import ServeSettings
from imagen_worker.submission import JobRejected, constraint_field

__all__ = [
    "ENDED",
    "JOB_COLUMNS",
    "check_fields",
    "drop_unknown_soft_options",
    "fields_from_images_request",
    "fields_from_job_request",
    "follow",
    "images_of",
    "insert_job",
    "queue_position",
    "read_job",
    "still_waiting",
    "wait_for_end",
]

ENDED = ("done", "failed", "cancelled")
JOB_COLUMNS = sql.SQL(
    "id, status, prompt, negative_prompt, backend, style, width, height, steps, seed, count, "
    "options, inputs, strength, attempts, cancel_requested, error, error_kind, image_id, "
    "progress, created_at, "
    "started_at, "
    "finished_at"
)
_RECHECK_S = 1.0  # how often a follower looks again without being told (a missed NOTIFY)
# How long a request waits for a worker to appear when none is running: one restarting
# (systemd's RestartSec, a --with-worker process starting) is back within this.
_NO_WORKER_WAIT_S = 10.0
_KEEPALIVE_S = 15.0  # an SSE comment this often keeps proxies from closing an idle stream


def fields_from_images_request(
    config: Config, settings: ServeSettings, body: ImagesRequest
) -> dict[str, Any]:
    """The job row an OpenAI-style request asks for (checked by :func:`check_fields` next)."""
    if body.n > settings.max_images:  # in the words of this API, before the job's own check
        raise ApiError(400, f"n must be at most {settings.max_images}.", param="n")
    job: dict[str, Any] = {"prompt": body.prompt, "count": body.n}
    model = body.model or config.default_backend
    if model in config.backends:
        job["backend"] = model
    elif model in config.styles:
        job["style"] = model
    else:
        raise ApiError(
            404,
            f"The model '{model}' does not exist (GET /v1/models lists them).",
            param="model",
            code="model_not_found",
        )
    if body.size and body.size != "auto":
        job["width"], job["height"] = _size(body.size)
    options = {
        name: value
        for name in ("quality", "background", "moderation")
        if (value := getattr(body, name)) not in (None, "auto")  # auto: the backend's default
    }
    if options:
        job["options"] = options
    return job


# The request fields OpenAI's API has that imagen passes to the backend as options. A backend
# that does not declare one gets the request without it, and the answer lists it ignored.
SOFT_OPTIONS = ("quality", "background", "moderation", "input_fidelity")


async def drop_unknown_soft_options(services: Services, fields: dict[str, Any]) -> list[str]:
    """Remove from ``fields`` the OpenAI fields its backend does not take; their names."""
    options = fields.get("options") or {}
    soft = [name for name in SOFT_OPTIONS if name in options]
    if not soft:
        return []
    known = await to_thread.run_sync(services.backend_options, fields.get("backend"))
    if known is None:
        return []
    ignored = [name for name in soft if name not in known]
    for name in ignored:
        del options[name]
    if not options:
        fields.pop("options", None)
    return [f"options.{name}" for name in ignored]


def fields_from_job_request(body: JobRequest) -> dict[str, Any]:
    """The job row ``POST /v1/jobs`` asks for (checked by :func:`check_fields` next)."""
    fields: dict[str, Any] = {"prompt": body.prompt, "count": body.count}
    for name in ("negative_prompt", "backend", "style", "steps", "seed"):
        if getattr(body, name) is not None:
            fields[name] = getattr(body, name)
    if body.size:
        fields["width"], fields["height"] = _size(body.size)
    if body.options:
        fields["options"] = body.options
    if body.inputs is not None:
        fields["inputs"] = body.inputs
    if body.strength is not None:
        fields["strength"] = body.strength
    return fields


async def check_fields(
    services: Services,
    fields: dict[str, Any],
    owner: str | None = None,
    inputs: tuple[Any, ...] = (),
) -> None:
    """The door: ApiError 400 (404 for a name that doesn't exist), and no job, for a bad one.

    See :func:`imagen_worker.submission.check_job`.
    """
    try:
        await to_thread.run_sync(services.check_job, fields, owner, inputs)
    except JobRejected as exc:
        raise _api_error(exc) from None


def _api_error(exc: JobRejected) -> ApiError:
    if exc.code in ("unknown_backend", "unknown_style"):
        return ApiError(404, f"{exc}.", param=exc.field, code="model_not_found")
    return ApiError(400, f"{exc}.", param=exc.field, code=exc.code)


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = parse_size(text)
    except ValueError as exc:
        raise ApiError(400, f"Invalid size '{text}': {exc}", param="size") from None
    if max(width, height) > MAX_SIDE:
        raise ApiError(
            400, f"Invalid size '{text}': at most {MAX_SIDE} pixels a side.", param="size"
        )
    return width, height


async def insert_job(services: Services, owner: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Queue a job as ``owner`` (row-level security checks that it is theirs); its row."""
    columns = list(fields)
    query = sql.SQL("INSERT INTO imagen.jobs ({}) VALUES ({}) RETURNING {}").format(
        sql.SQL(", ").join(map(sql.Identifier, columns)),
        sql.SQL(", ").join(sql.Placeholder() * len(columns)),
        JOB_COLUMNS,
    )
    values = [Jsonb(fields[c]) if c in ("options", "inputs") else fields[c] for c in columns]
    try:
        row = await services.store.fetch_one(owner, query, values)
    except psycopg.errors.CheckViolation as exc:  # the database's own check, past the door's
        field = constraint_field(exc.diag.constraint_name)
        raise ApiError(400, f"{field}: refused by the database's checks.", param=field) from None
    assert row is not None  # INSERT … RETURNING always returns the row
    return row


async def read_job(services: Services, owner: str, job_id: int) -> dict[str, Any]:
    """``owner``'s job ``job_id``; ApiError 404 when there is none they may see."""
    query = sql.SQL("SELECT {} FROM imagen.jobs WHERE id = %s").format(JOB_COLUMNS)
    row = await services.store.fetch_one(owner, query, (job_id,))
    if row is None:  # another owner's job looks exactly like a missing one
        raise ApiError(404, f"No job {job_id}.", code="not_found")
    return row


async def images_of(services: Services, owner: str, job_id: int) -> list[dict[str, Any]]:
    """The images job ``job_id`` made, in order."""
    return await services.store.fetch_all(
        owner,
        "SELECT id, local_path, mime_type, width, height, metadata FROM imagen.images "
        "WHERE job_id = %s "
        "ORDER BY id",
        (job_id,),
    )


async def wait_for_end(
    services: Services, owner: str, job_id: int, timeout: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The job once it has ended (and its images), or as it stands when ``timeout`` runs out.

    A pending job with no worker running to take it is waited for at most 10 s more (a
    worker restarting comes back within that), not the whole ``timeout``.
    """
    deadline = time.monotonic() + timeout
    alone_since: float | None = None
    with services.watcher.follow(job_id) as changed:
        while True:
            changed.clear()
            row = await read_job(services, owner, job_id)
            now = time.monotonic()
            left = deadline - now
            if row["status"] in ENDED or left <= 0 or services.stopping.is_set():
                break
            if row["status"] == "pending" and (await services.fleet()).workers == 0:
                alone_since = now if alone_since is None else alone_since
                if now - alone_since >= _NO_WORKER_WAIT_S:
                    break
            else:
                alone_since = None
            await _until(changed, min(left, _RECHECK_S))
    images = await images_of(services, owner, job_id)
    return row, images


async def queue_position(services: Services, job_id: int) -> int | None:
    """A pending job's place in the queue (1: next); counted with the server's own rights."""
    row = await services.store.server_fetch_one(queries.QUEUE_POSITION, {"id": job_id})
    return None if row is None else int(row["position"])


async def still_waiting(services: Services, row: dict[str, Any]) -> dict[str, Any]:
    """What a caller whose job has not ended yet is told: where to follow it, and why it waits.

    ``position`` is a pending job's place in the queue, ``workers`` how many workers are
    running; ``note`` says so when none is.
    """
    reference: dict[str, Any] = {
        "job": row["id"],
        "status": row["status"],
        "poll": f"/v1/jobs/{row['id']}",
        "events": f"/v1/jobs/{row['id']}/events",
    }
    if row["status"] == "pending":
        reference["position"] = await queue_position(services, row["id"])
    fleet = await services.fleet()
    reference["workers"] = fleet.workers
    if fleet.workers == 0:
        reference["note"] = NO_WORKER
    return reference


async def follow(services: Services, owner: str, job_id: int, base: str) -> AsyncIterator[str]:
    """Server-sent events for a job, until it ends.

    ``queued`` (with the job's ``position`` in the queue, again whenever it moves up, and a
    ``note`` while no worker is running), ``running``, ``progress`` (as the backend reports
    it), then ``done`` (with the images' links), ``failed`` or ``cancelled``; a comment every
    15 s keeps the stream open through proxies. Each event is sent once, when what it says
    first becomes true. When the server is stopping the stream ends (a browser's
    EventSource reconnects).
    """
    last: tuple[str, str] | None = None
    quiet_since = time.monotonic()
    with services.watcher.follow(job_id) as changed:
        while True:
            changed.clear()
            row = await read_job(services, owner, job_id)
            status, progress = row["status"], (row["progress"] or {}).get("last")
            waiting = await still_waiting(services, row) if status == "pending" else {}
            queued = {key: waiting[key] for key in ("position", "note") if key in waiting}
            state = (
                status,
                json.dumps(queued if status == "pending" else progress, sort_keys=True),
            )
            if state != last:
                last, quiet_since = state, time.monotonic()
                if status == "done":
                    images = await images_of(services, owner, job_id)
                    yield _sse(
                        "done",
                        {
                            "id": job_id,
                            "image_ids": [image["id"] for image in images],
                            "images": [f"{base}/v1/images/{i['id']}/file" for i in images],
                        },
                    )
                    return
                if status in ("failed", "cancelled"):
                    yield _sse(status, {"id": job_id, "error": row["error"]})
                    return
                if status == "pending":
                    yield _sse("queued", {"id": job_id, **queued})
                elif progress:
                    yield _sse("progress", {"id": job_id, **progress})
                else:
                    yield _sse("running", {"id": job_id})
            elif time.monotonic() - quiet_since >= _KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield ": keepalive\n\n"
            if services.stopping.is_set():
                yield ": the server is stopping\n\n"
                return
            await _until(changed, _RECHECK_S)


async def _until(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"
