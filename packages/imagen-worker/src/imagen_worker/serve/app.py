"""The ASGI application: routes, auth, OpenAI-shaped errors, queries as the caller."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at runtime,
# and they name dependencies local to create_app.

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import psycopg
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from psycopg import sql
from psycopg.rows import dict_row
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from imagen import __version__
from imagen.config import Config
from imagen.styles import parse_size
from imagen_worker.serve.settings import ServeSettings, hash_key

__all__ = ["ApiError", "create_app"]

_ENDED = ("done", "failed", "cancelled")
_JOB_COLUMNS = (
    "id, status, prompt, negative_prompt, backend, style, width, height, steps, seed, count, "
    "attempts, error, image_id, progress, created_at, finished_at"
)
_REFUSED = "refused before calling the backend"


class ApiError(Exception):
    """An error answered in OpenAI's shape: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        *,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = (
            status, message, kind, param, code
        )  # fmt: skip

    def response(self) -> JSONResponse:
        body = {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse({"error": body}, status_code=self.status, headers=headers)


class ImagesRequest(BaseModel):
    """``POST /v1/images/generations``, as OpenAI's Images API takes it."""

    prompt: str = Field(min_length=1, max_length=32_000)
    model: str | None = Field(None, description="a backend instance or a style (GET /v1/models)")
    n: int = Field(1, ge=1)
    size: str | None = Field(None, description="WIDTHxHEIGHT, or auto")
    quality: str | None = None
    response_format: Literal["b64_json", "url"] = "b64_json"
    user: str | None = None


class JobRequest(BaseModel):
    """``POST /v1/jobs``: what ``imagen jobs submit`` takes."""

    prompt: str = Field(min_length=1, max_length=32_000)
    negative_prompt: str | None = None
    backend: str | None = None
    style: str | None = None
    size: str | None = Field(None, description="WIDTHxHEIGHT")
    steps: int | None = Field(None, ge=1, le=1000)
    seed: int | None = Field(None, ge=0, lt=2**63)
    count: int = Field(1, ge=1)
    options: dict[str, Any] = Field(default_factory=dict)


def create_app(config: Config, url: str, settings: ServeSettings) -> FastAPI:
    """The app for ``config``'s backends and styles, queueing into the database at ``url``."""
    app = FastAPI(title="imagen", version=__version__, summary="Images through any backend")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":
            return ApiError(400, "We could not parse the JSON body of your request.").response()
        where = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
        return ApiError(400, f"{where}: {first.get('msg')}", param=where).response()

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return ApiError(exc.status_code, str(exc.detail), code=None).response()

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > settings.max_body_bytes:
            return ApiError(
                413, f"the request body is over {settings.max_body_bytes} bytes"
            ).response()
        return await call_next(request)

    def caller(authorization: Annotated[str | None, Header()] = None) -> str:
        """The owner the bearer token acts for."""
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "You didn't provide an API key.", code="missing_api_key")
        owner = settings.api_keys.get(hash_key(token))
        if owner is not None:
            return owner
        if settings.jwt_secret is not None and token.count(".") == 2:
            return _jwt_owner(token, settings.jwt_secret)
        raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    @contextmanager
    def as_owner(owner: str) -> Iterator[psycopg.Connection]:
        """A transaction with the caller's identity, under the schema's row-level security."""
        role = sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(settings.web_role))
        claims = json.dumps({"sub": owner, "role": settings.web_role})
        with (
            psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn,
            conn.transaction(),
        ):
            conn.execute(role)
            conn.execute("SELECT set_config('request.jwt.claims', %s, true)", (claims,))
            yield conn

    @app.get("/v1/models", summary="The backends and styles a request's model may name")
    def models(owner: Annotated[str, Depends(caller)]) -> dict[str, Any]:
        names = [(name, "backend") for name in config.backends]
        names += [(name, "style") for name in config.styles if name not in config.backends]
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": 0, "owned_by": f"imagen {kind}"}
                for name, kind in names
            ],
        }

    @app.post("/v1/images/generations", summary="Generate images (OpenAI-compatible)")
    def generations(
        body: ImagesRequest, request: Request, owner: Annotated[str, Depends(caller)]
    ) -> JSONResponse:
        job = _job_fields(config, settings, body)
        with as_owner(owner) as conn:
            columns = list(job)
            query = sql.SQL("INSERT INTO imagen.jobs ({}) VALUES ({}) RETURNING id").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            )
            job_id = conn.execute(query, [job[c] for c in columns]).fetchone()["id"]
        row = _wait(as_owner, owner, job_id, settings.wait_s)
        if row["status"] not in _ENDED:
            reference = {"job": job_id, "status": row["status"], "poll": f"/v1/jobs/{job_id}"}
            return JSONResponse({"created": int(time.time()), "data": [], "imagen": reference}, 202)
        if row["status"] != "done":
            raise _job_error(row)
        with as_owner(owner) as conn:
            images = conn.execute(
                "SELECT id, local_path, mime_type FROM imagen.images WHERE job_id = %s ORDER BY id",
                (job_id,),
            ).fetchall()
        base = str(request.base_url).rstrip("/")
        data = [_image_datum(image, body.response_format, base) for image in images]
        cost = _job_cost(url, job_id)
        extra = {"job": job_id, "images": [image["id"] for image in images], "cost_usd": cost}
        return JSONResponse({"created": int(time.time()), "data": data, "imagen": extra})

    @app.get("/v1/jobs/{job_id}", summary="One of the caller's jobs")
    def job(job_id: int, owner: Annotated[str, Depends(caller)]) -> dict[str, Any]:
        with as_owner(owner) as conn:
            row = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM imagen.jobs WHERE id = %s", (job_id,)
            ).fetchone()
        if row is None:  # another owner's job looks exactly like a missing one
            raise ApiError(404, f"No job {job_id}.", code="not_found")
        return _jsonable(row)

    @app.post("/v1/jobs", status_code=201, summary="Queue a job (the fields of imagen jobs submit)")
    def submit(body: JobRequest, owner: Annotated[str, Depends(caller)]) -> dict[str, Any]:
        fields = _submitted_fields(config, settings, body)
        with as_owner(owner) as conn:
            columns = list(fields)
            query = sql.SQL("INSERT INTO imagen.jobs ({}) VALUES ({}) RETURNING {}").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)),
                sql.SQL(", ").join(sql.Placeholder() * len(columns)),
                sql.SQL(_JOB_COLUMNS),
            )
            row = conn.execute(query, [fields[c] for c in columns]).fetchone()
        return _jsonable(row)

    @app.get("/v1/jobs", summary="The caller's jobs, newest first")
    def list_jobs(
        owner: Annotated[str, Depends(caller)],
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        before: Annotated[int | None, Query(ge=1)] = None,
    ) -> dict[str, Any]:
        with as_owner(owner) as conn:
            rows = conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM imagen.jobs WHERE id < %s ORDER BY id DESC LIMIT %s",
                (before or 2**62, limit),
            ).fetchall()
        more = len(rows) == limit
        return {
            "data": [_jsonable(row) for row in rows],
            "next": f"/v1/jobs?limit={limit}&before={rows[-1]['id']}" if more else None,
        }

    @app.delete("/v1/jobs/{job_id}", summary="Cancel one of the caller's jobs")
    def cancel(job_id: int, owner: Annotated[str, Depends(caller)]) -> dict[str, Any]:
        with as_owner(owner) as conn:
            row = conn.execute("SELECT status FROM imagen.jobs WHERE id = %s", (job_id,)).fetchone()
            if row is None:
                raise ApiError(404, f"No job {job_id}.", code="not_found")
            if row["status"] in _ENDED:
                raise ApiError(409, f"Job {job_id} has already ended ({row['status']}).")
            conn.execute("UPDATE imagen.jobs SET cancel_requested = true WHERE id = %s", (job_id,))
        return {"id": job_id, "cancel_requested": True}

    @app.get("/v1/jobs/{job_id}/events", summary="A job's progress, as server-sent events")
    def events(
        job_id: int, request: Request, owner: Annotated[str, Depends(caller)]
    ) -> StreamingResponse:
        with as_owner(owner) as conn:
            if (
                conn.execute("SELECT 1 FROM imagen.jobs WHERE id = %s", (job_id,)).fetchone()
                is None
            ):
                raise ApiError(404, f"No job {job_id}.", code="not_found")
        base = str(request.base_url).rstrip("/")
        return StreamingResponse(
            _event_stream(as_owner, owner, job_id, base),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get("/v1/images/{image_id}", summary="One of the caller's images: its facts")
    def image(
        image_id: int, request: Request, owner: Annotated[str, Depends(caller)]
    ) -> dict[str, Any]:
        with as_owner(owner) as conn:
            row = conn.execute(
                "SELECT id, job_id, prompt, backend, seed, width, height, mime_type, metadata, "
                "storage_location, created_at FROM imagen.images WHERE id = %s",
                (image_id,),
            ).fetchone()
        if row is None:
            raise ApiError(404, f"No image {image_id}.", code="not_found")
        return {
            **_jsonable(row),
            "file": f"{str(request.base_url).rstrip('/')}/v1/images/{image_id}/file",
        }

    @app.get("/v1/images/{image_id}/file", summary="An image's file, streamed")
    def image_file(image_id: int, owner: Annotated[str, Depends(caller)]) -> FileResponse:
        with as_owner(owner) as conn:
            row = conn.execute(
                "SELECT local_path, mime_type FROM imagen.images WHERE id = %s", (image_id,)
            ).fetchone()
        if row is None or not row["local_path"] or not Path(row["local_path"]).is_file():
            raise ApiError(404, f"No image {image_id}.", code="not_found")
        return FileResponse(
            row["local_path"],
            media_type=row["mime_type"],
            headers={"Cache-Control": "private, max-age=31536000, immutable"},
        )

    return app


def _job_fields(config: Config, settings: ServeSettings, body: ImagesRequest) -> dict[str, Any]:
    """The job row a request asks for; ApiError (and no job) when it is impossible."""
    if body.n > settings.max_images:
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
        try:
            job["width"], job["height"] = parse_size(body.size)
        except ValueError as exc:
            raise ApiError(400, f"Invalid size '{body.size}': {exc}", param="size") from None
    if body.quality:
        job["options"] = json.dumps({"quality": body.quality})
    return job


def _submitted_fields(config: Config, settings: ServeSettings, body: JobRequest) -> dict[str, Any]:
    if body.count > settings.max_images:
        raise ApiError(400, f"count must be at most {settings.max_images}.", param="count")
    if body.backend is not None and body.backend not in config.backends:
        raise ApiError(
            404, f"No backend instance '{body.backend}'.", param="backend", code="model_not_found"
        )
    if body.style is not None and body.style not in config.styles:
        raise ApiError(404, f"No style '{body.style}'.", param="style", code="model_not_found")
    fields: dict[str, Any] = {"prompt": body.prompt, "count": body.count}
    for name in ("negative_prompt", "backend", "style", "steps", "seed"):
        if getattr(body, name) is not None:
            fields[name] = getattr(body, name)
    if body.size:
        try:
            fields["width"], fields["height"] = parse_size(body.size)
        except ValueError as exc:
            raise ApiError(400, f"Invalid size '{body.size}': {exc}", param="size") from None
    if body.options:
        fields["options"] = json.dumps(body.options)
    return fields


def _jwt_owner(token: str, secret: str) -> str:
    """The ``sub`` of a valid HS256 JWT; 401 without saying more than what is wrong."""
    import jwt

    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={"require": ["sub", "exp"], "verify_aud": False},
        )
    except jwt.ExpiredSignatureError:
        raise ApiError(401, "The token has expired.", code="token_expired") from None
    except jwt.PyJWTError:
        raise ApiError(401, "The token is not valid.", code="invalid_token") from None
    owner = claims.get("sub")
    if not isinstance(owner, str) or not owner:
        raise ApiError(401, "The token names no owner.", code="invalid_token")
    return owner


def _event_stream(as_owner: Any, owner: str, job_id: int, base: str) -> Iterator[str]:
    """``queued``, ``progress``, then ``done`` (with image links), ``failed`` or ``cancelled``."""
    last: tuple[Any, ...] | None = None
    while True:
        with as_owner(owner) as conn:
            row = conn.execute(
                "SELECT status, progress, error FROM imagen.jobs WHERE id = %s", (job_id,)
            ).fetchone()
            images = (
                conn.execute(
                    "SELECT id FROM imagen.images WHERE job_id = %s ORDER BY id", (job_id,)
                ).fetchall()
                if row is not None and row["status"] == "done"
                else []
            )
        if row is None:
            return
        progress = (row["progress"] or {}).get("last")
        state = (row["status"], json.dumps(progress, sort_keys=True))
        if state != last:
            last = state
            status = row["status"]
            if status == "done":
                links = [f"{base}/v1/images/{image['id']}/file" for image in images]
                yield _sse("done", {"id": job_id, "images": links})
                return
            if status in ("failed", "cancelled"):
                yield _sse(status, {"id": job_id, "error": row["error"]})
                return
            if status == "pending":
                yield _sse("queued", {"id": job_id})
            elif progress:
                yield _sse("progress", {"id": job_id, **progress})
        time.sleep(0.2)


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(row, default=str))


def _wait(as_owner: Any, owner: str, job_id: int, wait_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + wait_s
    delay = 0.02
    while True:
        with as_owner(owner) as conn:
            row = conn.execute(
                "SELECT status, error FROM imagen.jobs WHERE id = %s", (job_id,)
            ).fetchone()
        if row["status"] in _ENDED or time.monotonic() >= deadline:
            return row
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 1.5, 0.5)


def _job_error(row: dict[str, Any]) -> ApiError:
    error = row.get("error") or row["status"]
    if row["status"] == "cancelled":
        return ApiError(409, "The job was cancelled.", code="cancelled")
    if _REFUSED in error:
        return ApiError(429, error, "insufficient_quota", code="insufficient_quota")
    return ApiError(500, error, "server_error", code="generation_failed")


def _image_datum(image: dict[str, Any], response_format: str, base: str) -> dict[str, Any]:
    if response_format == "url":
        return {"url": f"{base}/v1/images/{image['id']}/file"}
    data = Path(image["local_path"]).read_bytes()
    return {"b64_json": base64.b64encode(data).decode()}


def _job_cost(url: str, job_id: int) -> float | None:
    """The job's cost from its usage row (read as the server: the web role has no access)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT sum(cost_usd) FROM mai.imagen_usage WHERE job_id = %s AND status = 'done'",
            (job_id,),
        ).fetchone()
    return float(row[0]) if row and row[0] is not None else None
