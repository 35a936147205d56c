"""The caller's images: listed newest first or searched, their facts, files and thumbnails.

Deleting one removes its row (row-level security lets owners delete their own only), then
its file, sidecar and every copy the server made of it.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from psycopg import sql

from imagen.metadata.reader import sidecar_path
from imagen_worker.serve.auth import Owner
from imagen_worker.serve.bodies import ImageDeleted, ImageList, ImageView
from imagen_worker.serve.copies import copy_path, forget_copies
from imagen_worker.serve.errors import ApiError, documented
from imagen_worker.serve.formats import OutputFormat, in_format
from imagen_worker.serve.paging import (
    Before,
    ImageId,
    JobFilter,
    Limit,
    newest_first,
    next_page,
)
from imagen_worker.serve.services import Services, ServicesDep

__all__ = ["router", "search_words"]

log = logging.getLogger("imagen")

# An image's file never changes under its id: browsers may keep it as long as they like.
_IMMUTABLE = {"Cache-Control": "private, max-age=31536000, immutable"}
_THUMBNAIL_PX = 384
_COLUMNS = sql.SQL(
    "i.id, i.job_id, i.prompt, i.backend, i.seed, i.width, i.height, i.mime_type, "
    "i.created_at, i.local_path, "
    # The backend's cost is the run's, shared by the images it made (its job's count, which
    # stays what it was when some of them are deleted).
    "(i.metadata ->> 'cost_usd')::numeric / greatest(1, coalesce("
    "(SELECT j.count FROM imagen.jobs j WHERE j.id = i.job_id), "
    "(SELECT count(*) FROM imagen.images x WHERE x.job_id = i.job_id))) AS cost_usd"
)
_WORD = re.compile(r"[^\W_]+")  # letters and digits of any script
_MAX_WORDS = 16

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
    job: JobFilter = None,
    q: Annotated[
        str | None,
        Query(
            max_length=500,
            description="only images whose prompt has each of these words, or a word that "
            "starts with it (letters and digits of any script; case does not matter)",
        ),
    ] = None,
) -> ImageList:
    params = {"before": before, "job": job, "limit": limit, "words": search_words(q or "")}
    if params["words"]:
        # Through the indexed search function, which applies the owner rule itself.
        source = (
            "imagen.search_images(to_tsquery('simple', %(words)s), %(before)s, %(job)s, "
            "%(limit)s) i"
        )
        query = newest_first(_COLUMNS, source, "i.id", [])
    else:
        filters = {"i.id < %(before)s": before, "i.job_id = %(job)s": job}
        where = [condition for condition, value in filters.items() if value is not None]
        query = newest_first(_COLUMNS, "imagen.images i", "i.id", where)
    rows = await services.store.fetch_all(owner, query, params)
    base = str(request.base_url).rstrip("/")
    following = next_page("/v1/images", rows, limit, job=job, q=q if params["words"] else None)
    return ImageList(data=[_view(row, base) for row in rows], next=following)


def search_words(text: str) -> str | None:
    """The text search query for what was typed: each word, or a word starting with it.

    Only letters and digits reach the query (of any script, lowercased), so nothing typed
    can be text search syntax; None when nothing is left to search for.
    """
    words = _WORD.findall(text.lower())[:_MAX_WORDS]
    return " & ".join(f"{word}:*" for word in words) or None


@router.get(
    "/v1/images/{image_id}",
    summary="One of the caller's images: its facts, metadata and the request that made it",
    response_model=ImageView,
    responses=documented(404),
)
async def image(
    image_id: ImageId, request: Request, services: ServicesDep, owner: Owner
) -> ImageView:
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
    image_id: ImageId,
    services: ServicesDep,
    owner: Owner,
    format: Annotated[
        OutputFormat | None, Query(description="convert to this format (a cached copy)")
    ] = None,
    compression: Annotated[
        int | None, Query(ge=0, le=100, description="0-100, with format")
    ] = None,
    download: Annotated[
        bool, Query(description="as an attachment, under the file's own name")
    ] = False,
) -> FileResponse:
    row = await _stored(services, owner, image_id)
    source = Path(row["local_path"])
    path, mime_type = await to_thread.run_sync(
        in_format, source, row["mime_type"], format, compression, services.thumbnails
    )
    name = source.with_suffix(path.suffix).name if download else None
    return FileResponse(path, media_type=mime_type, headers=_IMMUTABLE, filename=name)


@router.delete(
    "/v1/images/{image_id}",
    summary="Delete one of the caller's images, and its file",
    response_model=ImageDeleted,
    responses=documented(404),
)
async def delete_image(image_id: ImageId, services: ServicesDep, owner: Owner) -> ImageDeleted:
    """Delete the image's row, then its file, sidecar and cached copies.

    The job that made it stays, with its other images; its ``image_id`` is cleared when it
    named this one. The file is removed when it is in this server's output directory and
    no other image row names it; ``file_removed`` says whether it was.
    """
    row = await services.store.fetch_one(
        owner, "DELETE FROM imagen.images WHERE id = %s RETURNING local_path", (image_id,)
    )
    if row is None:  # another owner's image looks exactly like a missing one
        raise ApiError(404, f"No image {image_id}.", code="not_found")
    removed = False
    if row["local_path"]:
        shared = await services.store.server_fetch_one(
            "SELECT count(*) AS n FROM imagen.images WHERE local_path = %s", (row["local_path"],)
        )
        if shared is None or shared["n"] == 0:
            removed = await to_thread.run_sync(
                _remove_file,
                Path(row["local_path"]),
                services.config.output.directory,
                services.thumbnails,
            )
    return ImageDeleted(id=image_id, file_removed=removed)


def _remove_file(path: Path, outputs: Path, cache: Path) -> bool:
    """Remove an image file and what was made of it; whether the file itself was removed.

    Only a file under ``outputs``: a row names its path, and a row that names anything
    else (written by a role granted more than the design allows) must not delete it.
    """
    try:
        inside = path.resolve().is_relative_to(outputs.expanduser().resolve())
    except OSError:
        inside = False
    if not inside:
        log.warning("not removing %s: it is not in the output directory %s", path, outputs)
        return False
    forget_copies(cache, path)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc.strerror)
        return False
    sidecar_path(path).unlink(missing_ok=True)
    return True


@router.get(
    "/v1/images/{image_id}/thumbnail",
    summary=f"An image's thumbnail: WebP, at most {_THUMBNAIL_PX} pixels a side",
    response_class=FileResponse,
    responses={200: {"content": {"image/webp": {}}}, **documented(404)},
)
async def thumbnail(image_id: ImageId, services: ServicesDep, owner: Owner) -> FileResponse:
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
    path = copy_path(cache, source, f"thumbnail-{_THUMBNAIL_PX}", "webp")
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
