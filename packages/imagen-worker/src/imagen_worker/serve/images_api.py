"""The caller's images: listed newest first, their facts, their files and thumbnails."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from psycopg import sql

from imagen_worker.serve.auth import Owner
from imagen_worker.serve.bodies import ImageList, ImageView
from imagen_worker.serve.errors import ApiError, documented
from imagen_worker.serve.formats import OutputFormat, in_format
from imagen_worker.serve.paging import Before, Limit, newest_first, next_page
from imagen_worker.serve.services import Services, ServicesDep

__all__ = ["router"]

# An image's file never changes under its id: browsers may keep it as long as they like.
_IMMUTABLE = {"Cache-Control": "private, max-age=31536000, immutable"}
_THUMBNAIL_PX = 384
_COLUMNS = sql.SQL(
    "i.id, i.job_id, i.prompt, i.backend, i.seed, i.width, i.height, i.mime_type, "
    "i.created_at, i.local_path, "
    # The backend's cost is the run's, shared by the images it made.
    "(i.metadata ->> 'cost_usd')::numeric / greatest(1, (SELECT count(*) FROM imagen.images x "
    "WHERE x.job_id = i.job_id)) AS cost_usd"
)

router = APIRouter(tags=["images"])


@router.get(
    "/v1/images",
    summary="The caller's images, newest first",
    response_model=ImageList,
    responses=documented(),
)
async def list_images(
    request: Request,
    services: ServicesDep,
    owner: Owner,
    limit: Limit = 24,
    before: Before = None,
    job: Annotated[int | None, Query(ge=1, description="only this job's images")] = None,
) -> ImageList:
    filters = {"i.id < %(before)s": before, "i.job_id = %(job)s": job}
    where = [condition for condition, value in filters.items() if value is not None]
    query = newest_first(_COLUMNS, "imagen.images i", "i.id", where)
    rows = await services.store.fetch_all(
        owner, query, {"before": before, "job": job, "limit": limit}
    )
    base = str(request.base_url).rstrip("/")
    following = next_page("/v1/images", rows, limit, job=job)
    return ImageList(data=[_view(row, base) for row in rows], next=following)


@router.get(
    "/v1/images/{image_id}",
    summary="One of the caller's images: its facts, metadata and the request that made it",
    response_model=ImageView,
    responses=documented(404),
)
async def image(image_id: int, request: Request, services: ServicesDep, owner: Owner) -> ImageView:
    query = sql.SQL(
        "SELECT {}, i.metadata, j.prompt AS job_prompt, j.negative_prompt, j.backend AS "
        "job_backend, j.style, j.steps, j.options FROM imagen.images i "
        "LEFT JOIN imagen.jobs j ON j.id = i.job_id WHERE i.id = %s"
    ).format(_COLUMNS)
    row = await services.store.fetch_one(owner, query, (image_id,))
    if row is None:
        raise ApiError(404, f"No image {image_id}.", code="not_found")
    view = _view(row, str(request.base_url).rstrip("/"))
    view.metadata = row["metadata"]
    view.request = _request_of(row)
    return view


@router.get(
    "/v1/images/{image_id}/file",
    summary="An image's file, streamed",
    response_class=FileResponse,
    responses={200: {"content": {"image/*": {}}}, **documented(404)},
)
async def image_file(
    image_id: int,
    services: ServicesDep,
    owner: Owner,
    format: Annotated[
        OutputFormat | None, Query(description="convert to this format (a cached copy)")
    ] = None,
    compression: Annotated[
        int | None, Query(ge=0, le=100, description="0-100, with format")
    ] = None,
) -> FileResponse:
    row = await _stored(services, owner, image_id)
    path, mime_type = await to_thread.run_sync(
        in_format,
        Path(row["local_path"]),
        row["mime_type"],
        format,
        compression,
        services.thumbnails,
    )
    return FileResponse(path, media_type=mime_type, headers=_IMMUTABLE)


@router.get(
    "/v1/images/{image_id}/thumbnail",
    summary=f"An image's thumbnail: WebP, at most {_THUMBNAIL_PX} pixels a side",
    response_class=FileResponse,
    responses={200: {"content": {"image/webp": {}}}, **documented(404)},
)
async def thumbnail(image_id: int, services: ServicesDep, owner: Owner) -> FileResponse:
    row = await _stored(services, owner, image_id)
    path = await to_thread.run_sync(_thumbnail, Path(row["local_path"]), services.thumbnails)
    return FileResponse(path, media_type="image/webp", headers=_IMMUTABLE)


async def _stored(services: Services, owner: str, image_id: int) -> dict[str, Any]:
    """The image's row, when the caller may see it and its file is on this host's disk."""
    row = await services.store.fetch_one(
        owner, "SELECT local_path, mime_type FROM imagen.images WHERE id = %s", (image_id,)
    )
    if row is None or not row["local_path"] or not Path(row["local_path"]).is_file():
        raise ApiError(404, f"No image {image_id}.", code="not_found")
    return row


def _thumbnail(source: Path, cache: Path) -> Path:
    """A cached WebP thumbnail of ``source``, made once (atomically) per file version."""
    stat = source.stat()
    key = hashlib.sha256(f"{source}\0{stat.st_mtime_ns}\0{stat.st_size}".encode()).hexdigest()
    path = cache / key[:2] / f"{key}-{_THUMBNAIL_PX}.webp"
    if path.is_file():
        return path
    from PIL import Image, ImageOps

    path.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(source) as picture:
        picture.draft("RGB", (_THUMBNAIL_PX, _THUMBNAIL_PX))  # JPEG: decode at a fraction
        small = ImageOps.exif_transpose(picture)
        small.thumbnail((_THUMBNAIL_PX, _THUMBNAIL_PX))
        if small.mode not in ("RGB", "RGBA"):
            small = small.convert("RGBA" if "A" in small.getbands() else "RGB")
        handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".part")
        try:
            with os.fdopen(handle, "wb") as out:
                small.save(out, "WEBP", quality=80, method=4)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return path


def _view(row: dict[str, Any], base: str) -> ImageView:
    cost = row["cost_usd"]
    return ImageView(
        id=row["id"],
        job_id=row["job_id"],
        prompt=row["prompt"],
        backend=row["backend"],
        seed=row["seed"],
        width=row["width"],
        height=row["height"],
        mime_type=row["mime_type"],
        cost_usd=round(float(cost), 6) if cost is not None else None,
        created_at=row["created_at"],
        file=f"{base}/v1/images/{row['id']}/file",
        thumbnail=f"{base}/v1/images/{row['id']}/thumbnail",
    )


def _request_of(row: dict[str, Any]) -> dict[str, Any]:
    """The parameters that make this image again: its job's, with this image's own seed."""
    request = {
        "prompt": row["job_prompt"] or row["prompt"],
        "negative_prompt": row["negative_prompt"] or None,
        "backend": row["job_backend"] or row["backend"],
        "style": row["style"],
        "size": f"{row['width']}x{row['height']}" if row["width"] and row["height"] else None,
        "steps": row["steps"],
        "seed": row["seed"],
        "count": 1,
        "options": row["options"] or {},
    }
    return {key: value for key, value in request.items() if value not in (None, "")}
