"""The bodies the API takes and answers with; FastAPI checks them and documents them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field

__all__ = [
    "ImageDeleted",
    "ImageList",
    "ImageView",
    "ImagesRequest",
    "ImagesResponse",
    "JobList",
    "JobRequest",
    "JobView",
    "ModelList",
    "Session",
    "SignIn",
]

_PROMPT = Field(min_length=1, max_length=32_000)
# A time as every answer gives it, whatever the database session's time zone: ISO 8601 in
# UTC, "2025-06-01T14:03:07.120331Z" (imagen jobs --json prints the same).
Time = Annotated[datetime, AfterValidator(lambda value: value.astimezone(UTC))]


class ImagesRequest(BaseModel):
    """``POST /v1/images/generations``, as OpenAI's Images API takes it."""

    prompt: str = _PROMPT
    model: str | None = Field(None, description="a backend instance or a style (GET /v1/models)")
    n: int = Field(1, ge=1, description="how many images (at most serve.max_images)")
    size: str | None = Field(None, description="WIDTHxHEIGHT, or auto")
    quality: str | None = Field(None, description="passed to the backend as the quality option")
    response_format: Literal["b64_json", "url"] = "b64_json"
    output_format: Literal["png", "jpeg", "webp"] | None = Field(
        None, description="the images' format; converted on the server when the backend's differs"
    )
    output_compression: int | None = Field(
        None, ge=0, le=100, description="0-100: quality for jpeg and webp, zlib level for png"
    )
    background: Literal["transparent", "opaque", "auto"] | None = Field(
        None, description="passed to the backend as the background option (auto: its default)"
    )
    moderation: Literal["auto", "low"] | None = Field(
        None, description="passed to the backend as the moderation option (auto: its default)"
    )
    user: str | None = Field(None, description="accepted and ignored: the token names the owner")


class ImageDatum(BaseModel):
    b64_json: str | None = None
    url: str | None = None


class ImagesResponse(BaseModel):
    """OpenAI's images answer, with imagen's facts (the job, image ids, cost) under ``imagen``."""

    created: int
    data: list[ImageDatum]
    output_format: Literal["png", "jpeg", "webp"] | None = None
    size: str | None = Field(None, description="WIDTHxHEIGHT of the images made")
    quality: str | None = None
    background: str | None = None
    usage: dict[str, Any] | None = Field(None, description="the backend's token usage, if any")
    imagen: dict[str, Any]


class Model(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class JobRequest(BaseModel):
    """``POST /v1/jobs``: what ``imagen jobs submit`` takes."""

    prompt: str = _PROMPT
    negative_prompt: str | None = Field(None, max_length=32_000)
    backend: str | None = Field(None, description="a backend instance; default: the default one")
    style: str | None = None
    size: str | None = Field(None, description="WIDTHxHEIGHT")
    steps: int | None = Field(None, ge=1, le=1000)
    seed: int | None = Field(None, ge=0, le=2**53 - 1)
    count: int = Field(1, ge=1, description="how many images (at most serve.max_images)")
    options: dict[str, Any] = Field(default_factory=dict, description="backend options")
    inputs: list[Any] | None = Field(
        None,
        description="input image references: {role, upload} (an image sent to "
        "/v1/images/edits before) or {role, object} (in the caller's folder imagen-inputs/"
        "OWNER/ of the cloud bucket); see worker.md",
    )
    strength: float | None = Field(None, ge=0, le=1, description="0-1, for image-to-image")


class JobView(BaseModel):
    """One job, as its owner sees it."""

    id: int
    status: Literal["pending", "running", "done", "failed", "cancelled"]
    prompt: str
    negative_prompt: str
    backend: str | None
    style: str | None
    width: int | None
    height: int | None
    steps: int | None
    seed: int | None
    count: int
    options: dict[str, Any]
    inputs: list[Any] | None = None
    strength: float | None = None
    attempts: int
    cancel_requested: bool
    error: str | None
    error_kind: (
        Literal["request", "config", "backend", "transient", "budget", "output", "internal", "lost"]
        | None
    ) = Field(None, description="what kind of failure ended the job, when one did")
    image_id: int | None
    progress: dict[str, Any] | None
    queue_position: int | None = Field(
        None, description="a pending job's place in the queue (1: next), in GET /v1/jobs/{id}"
    )
    created_at: Time
    started_at: Time | None
    finished_at: Time | None


class JobList(BaseModel):
    data: list[JobView]
    next: str | None = Field(description="the next page, or null on the last")


class ImageView(BaseModel):
    """One image, as its owner sees it, with the request that made it (for "make again")."""

    id: int
    job_id: int | None
    prompt: str
    backend: str
    seed: int | None
    width: int | None
    height: int | None
    mime_type: str
    cost_usd: float | None
    created_at: Time
    file: str
    thumbnail: str
    metadata: dict[str, Any] | None = Field(None, description="the backend's metadata")
    request: dict[str, Any] | None = Field(None, description="the job's parameters")


class ImageDeleted(BaseModel):
    """``DELETE /v1/images/{id}``: the row is gone; ``file_removed`` says whether the file went."""

    id: int
    object: Literal["image"] = "image"
    deleted: Literal[True] = True
    file_removed: bool


class ImageList(BaseModel):
    data: list[ImageView]
    next: str | None = Field(description="the next page, or null on the last")


class SignIn(BaseModel):
    """``POST /v1/session``: an API key or a JWT, kept in a cookie for the gallery page."""

    token: str = Field(min_length=1, max_length=8192)


class Session(BaseModel):
    owner: str
