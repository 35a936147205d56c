"""OpenAI's Images API over the queue: ``GET /v1/models`` and ``POST /v1/images/generations``."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from imagen_worker.serve.auth import Owner
from imagen_worker.serve.bodies import ImagesRequest, ImagesResponse, Model, ModelList
from imagen_worker.serve.errors import ApiError, documented
from imagen_worker.serve.formats import FORMATS, OutputFormat, in_format
from imagen_worker.serve.queue import (
    check_fields,
    drop_unknown_soft_options,
    fields_from_images_request,
    insert_job,
    still_waiting,
    wait_for_end,
)
from imagen_worker.serve.services import Services, ServicesDep

__all__ = ["answer_for", "router"]

_REFUSED = "refused before calling the backend"  # how a spending cap's refusal reads
_FORMAT_OF = {mime: name for name, mime in FORMATS.items()}

router = APIRouter(tags=["OpenAI-compatible"])


@router.get(
    "/v1/models",
    summary="The backends and styles a request's model may name",
    response_model=ModelList,
    responses=documented(),
)
async def models(services: ServicesDep, owner: Owner) -> ModelList:
    config = services.config
    names = [(name, "backend") for name in config.backends]
    names += [(name, "style") for name in config.styles if name not in config.backends]
    return ModelList(data=[Model(id=name, owned_by=f"imagen {kind}") for name, kind in names])


@router.post(
    "/v1/images/generations",
    summary="Generate images (OpenAI-compatible)",
    response_model=ImagesResponse,
    responses={202: {"model": ImagesResponse}, **documented(404, 409, 429, 500)},
)
async def generations(
    body: ImagesRequest, request: Request, services: ServicesDep, owner: Owner
) -> JSONResponse:
    """Queue a job, wait up to ``serve.wait_s`` for it, and answer as OpenAI would.

    A job still running when the wait is over is not failed: the answer is 202 with a
    reference to follow it by (``imagen.job``, ``imagen.poll``), its place in the queue, and a
    note when no worker is running to take it.
    """
    fields = fields_from_images_request(services.config, services.settings, body)
    ignored = await drop_unknown_soft_options(services, fields)
    await check_fields(services, fields)
    job = await insert_job(services, owner, fields)
    return await answer_for(services, request, owner, job["id"], body, ignored=ignored)


async def answer_for(
    services: Services,
    request: Request,
    owner: str,
    job_id: int,
    body: ImagesRequest,
    wait_s: float | None = None,
    *,
    ignored: list[str] | None = None,
) -> JSONResponse:
    """The OpenAI-shaped answer for a queued job: its images once it ended, or a reference.

    Shared by generations and edits (``body`` says how the caller wants the images).

    :param wait_s: how long to wait for the job (default ``serve.wait_s``; less only).
    :param ignored: request fields not passed to the backend, which does not take them.
    """
    wait = services.settings.wait_s if wait_s is None else min(wait_s, services.settings.wait_s)
    row, images = await wait_for_end(services, owner, job_id, wait)
    if row["status"] in ("pending", "running"):
        reference = await still_waiting(services, row)
        return JSONResponse({"created": int(time.time()), "data": [], "imagen": reference}, 202)
    if row["status"] != "done":
        raise _job_error(row)
    base = str(request.base_url).rstrip("/")
    wanted = Wanted(body.output_format, body.output_compression)
    data, mime_types = await to_thread.run_sync(
        _data, images, body.response_format, base, wanted, services.thumbnails
    )
    cost = await _job_cost(services, row["id"])
    extra: dict[str, Any] = {
        "job": row["id"],
        "images": [image["id"] for image in images],
        "cost_usd": cost,
    }
    ignored = [*(ignored or []), *_ignored(images)]
    if ignored:
        extra["ignored"] = list(dict.fromkeys(ignored))
    answer: dict[str, Any] = {"created": int(time.time()), "data": data}
    answer.update(_facts(images, mime_types, body))
    usage = _usage(images)
    if usage is not None:
        answer["usage"] = usage
    answer["imagen"] = extra
    return JSONResponse(answer)


@dataclass(frozen=True)
class Wanted:
    """The format a request asked its images in (None: as the backend made them)."""

    fmt: OutputFormat | None
    compression: int | None

    def query(self) -> str:
        parts = {"format": self.fmt, "compression": self.compression}
        given = {key: value for key, value in parts.items() if value is not None}
        return "?" + urlencode(given) if given else ""


def _facts(
    images: list[dict[str, Any]], mime_types: list[str], body: ImagesRequest
) -> dict[str, Any]:
    """What gpt-image answers carry beside the data: format, size, quality, background."""
    facts: dict[str, Any] = {}
    if mime_types:
        facts["output_format"] = _FORMAT_OF.get(mime_types[0])
    first = images[0] if images else {}
    if first.get("width") and first.get("height"):
        facts["size"] = f"{first['width']}x{first['height']}"
    facts["quality"] = body.quality or "auto"
    if body.background in ("transparent", "opaque"):
        facts["background"] = body.background
    return facts


def _ignored(images: list[dict[str, Any]]) -> list[str]:
    """What the backend said it did not honour (a request option it doesn't know, say)."""
    reported = (images[0]["metadata"] or {}).get("ignored") if images else None
    return [str(item) for item in reported] if isinstance(reported, list) else []


def _usage(images: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The token usage the backend reported (OpenAI's gpt-image models do), summed over calls.

    A run's metadata is shared by the images it made, so it is read once, from the first.
    """
    if not images:
        return None
    reported = (images[0]["metadata"] or {}).get("usage")
    calls = reported if isinstance(reported, list) else [reported]
    calls = [call for call in calls if isinstance(call, dict) and call]
    return _sum(calls) if calls else None


def _sum(parts: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, dict):
                total[key] = _sum([total.get(key) or {}, value])
            elif isinstance(value, int | float) and not isinstance(value, bool):
                total[key] = total.get(key, 0) + value
    return total


def _job_error(row: dict[str, Any]) -> ApiError:
    """The answer for a job that did not end done, by the kind of its failure.

    A request the backend refused is the caller's to fix (400); a spending cap is a quota
    (429). Anything else failed on the server's side (500), after the worker's own retries:
    the answer tells the client not to retry (``x-should-retry: false``, which the official
    SDKs obey), since each retry would queue, and pay for, a new job.
    """
    error = row.get("error") or row["status"]
    kind = row.get("error_kind")
    if row["status"] == "cancelled":
        return ApiError(409, "The job was cancelled.", code="cancelled")
    if kind == "budget" or (kind is None and _REFUSED in error):
        return ApiError(429, error, "insufficient_quota", code="insufficient_quota")
    if kind == "request":
        return ApiError(400, error, code="invalid_request")
    return ApiError(500, error, "server_error", code="generation_failed", retry=False)


def _data(
    images: list[dict[str, Any]], response_format: str, base: str, wanted: Wanted, cache: Path
) -> tuple[list[dict[str, str]], list[str]]:
    """Each image as the request asked (inline or a link, in its format); their types."""
    data, types = [], []
    for image in images:
        path, mime_type = in_format(
            Path(image["local_path"]), image["mime_type"], wanted.fmt, wanted.compression, cache
        )
        types.append(mime_type)
        if response_format == "url":
            data.append({"url": f"{base}/v1/images/{image['id']}/file{wanted.query()}"})
        else:
            data.append({"b64_json": base64.b64encode(path.read_bytes()).decode()})
    return data, types


async def _job_cost(services: Services, job_id: int) -> float | None:
    """The job's cost from its usage rows (read as the server: the web role has no access)."""
    row = await services.store.server_fetch_one(
        "SELECT sum(cost_usd) AS cost FROM mai.imagen_usage WHERE job_id = %s AND status = 'done'",
        (job_id,),
    )
    return float(row["cost"]) if row and row["cost"] is not None else None
