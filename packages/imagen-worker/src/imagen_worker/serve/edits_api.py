"""OpenAI's image edits over the queue: ``POST /v1/images/edits`` (and variations, refused).

The body is multipart, as the official SDKs send it: one or more ``image`` (or ``image[]``)
files, an optional ``mask``, and the text fields of a generation. Each file is spooled to
disk as it arrives (never held whole), checked by its bytes (:func:`imagen.inputs.load_input`:
type, size, pixels, decompression bombs), and judged by the backend's declared input
support; only then is it kept in the owner's folder of the inputs directory, where the
worker reads it (:mod:`imagen_worker.job_inputs`), and the job queued. A refused request
leaves no job and no file.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException

from imagen.errors import RequestError
from imagen.inputs import MAX_INPUTS, InputImage, check_inputs, load_input, spool
from imagen_worker.job_inputs import forget_uploads, inputs_dir, keep_uploads
from imagen_worker.serve.auth import Owner
from imagen_worker.serve.bodies import ImagesRequest, ImagesResponse
from imagen_worker.serve.errors import ApiError, documented
from imagen_worker.serve.openai_api import answer_for
from imagen_worker.serve.queue import (
    check_fields,
    drop_unknown_soft_options,
    fields_from_images_request,
    insert_job,
)
from imagen_worker.serve.services import ServicesDep

__all__ = ["router"]

router = APIRouter(tags=["OpenAI-compatible"])

_TEXT_FIELDS = frozenset(
    {
        *ImagesRequest.model_fields,
        "input_fidelity",
        "strength",
        "stream",
        "partial_images",
        "wait",
    }
)
_MAX_FIELD_BYTES = 64 * 1024  # a text field (the prompt is at most 32,000 characters)
_FIDELITY = ("low", "high")

_FORM = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image", "prompt"],
                    "properties": {
                        "image": {
                            "description": f"1 to {MAX_INPUTS} PNG, JPEG or WebP files "
                            "(also as image[])",
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                        },
                        "mask": {
                            "description": "where to edit: transparent (or white) pixels; "
                            "the size of the first image",
                            "type": "string",
                            "format": "binary",
                        },
                        "prompt": {"type": "string"},
                        "model": {"type": "string"},
                        "n": {"type": "integer"},
                        "size": {"type": "string"},
                        "quality": {"type": "string"},
                        "background": {"type": "string"},
                        "input_fidelity": {"type": "string", "enum": list(_FIDELITY)},
                        "output_format": {"type": "string"},
                        "output_compression": {"type": "integer"},
                        "response_format": {"type": "string"},
                        "strength": {
                            "description": "imagen: 0-1, how far image-to-image may depart "
                            "from the image",
                            "type": "number",
                        },
                        "wait": {
                            "description": "imagen: wait at most this many seconds for the "
                            "job (0: answer 202 with the job at once; the gallery does)",
                            "type": "number",
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "/v1/images/edits",
    summary="Edit images (OpenAI-compatible, multipart)",
    response_model=ImagesResponse,
    responses={202: {"model": ImagesResponse}, **documented(404, 409, 413, 429, 500)},
    openapi_extra=_FORM,
)
async def edits(request: Request, services: ServicesDep, owner: Owner) -> JSONResponse:
    """Queue an edit of the uploaded images, and answer as ``/v1/images/generations`` does."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(
            400,
            f"Invalid Content-Type header ({content_type or 'none'}), expected "
            "multipart/form-data.",
        )
    try:
        form = await request.form(
            max_files=MAX_INPUTS + 1, max_fields=32, max_part_size=_MAX_FIELD_BYTES
        )
    except MultiPartException as exc:
        raise ApiError(400, f"The multipart body cannot be read: {exc.message}") from None
    try:  # the spooled files are closed (and removed) once the uploads are checked
        body, extra = _text_fields(form)
        uploads = _uploads(form)
        fields = fields_from_images_request(services.config, services.settings, body)
        if extra.get("input_fidelity") is not None:
            fields.setdefault("options", {})["input_fidelity"] = extra["input_fidelity"]
        if extra.get("strength") is not None:
            fields["strength"] = extra["strength"]
        ignored = await drop_unknown_soft_options(services, fields)
        directory = inputs_dir(services.config)
        inputs = await to_thread.run_sync(_check_uploads, uploads, directory / "incoming")
    finally:
        await form.close()
    try:
        fields["inputs"] = [
            {"role": image.role, "upload": image.sha256, "name": image.name} for image in inputs
        ]
        await check_fields(services, fields, owner, tuple(inputs))
        kept = await to_thread.run_sync(keep_uploads, directory, owner, inputs)
        try:
            job = await insert_job(services, owner, fields)
        except BaseException:
            await to_thread.run_sync(forget_uploads, kept)
            raise
    finally:
        for image in inputs:
            image.path.unlink(missing_ok=True)
    return await answer_for(
        services, request, owner, job["id"], body, extra.get("wait"), ignored=ignored
    )


@router.post(
    "/v1/images/variations",
    summary="Not supported: an OpenAI-shaped 400",
    responses=documented(),
    include_in_schema=True,
)
async def variations(owner: Owner) -> JSONResponse:
    """DALL-E 2's variations have no counterpart here: edit with a prompt instead."""
    raise ApiError(
        400,
        "Image variations are not supported by this server: use POST /v1/images/edits with "
        "a prompt.",
        code="unsupported_endpoint",
    )


def _text_fields(form: FormData) -> tuple[ImagesRequest, dict[str, Any]]:
    """The request's text fields, checked as a generation's are, and the edit's own."""
    values: dict[str, Any] = {}
    for key, value in form.multi_items():
        if key in ("image", "image[]", "mask"):
            continue
        if key not in _TEXT_FIELDS:
            continue  # as OpenAI's SDKs expect of unknown fields: ignored
        if isinstance(value, UploadFile):
            raise ApiError(400, f"'{key}' must be a text field, not a file.", param=key)
        if key in values:
            raise ApiError(400, f"'{key}' is given more than once.", param=key)
        values[key] = value
    if values.pop("stream", "false").lower() not in ("false", "0", ""):
        raise ApiError(400, "Streaming edits are not supported by this server.", param="stream")
    values.pop("partial_images", None)
    extra = {
        key: values.pop(key) for key in ("input_fidelity", "strength", "wait") if key in values
    }
    if "prompt" not in values:
        raise ApiError(400, "Missing required parameter: 'prompt'.", param="prompt")
    try:
        body = ImagesRequest.model_validate(values)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or None
        raise ApiError(400, f"Invalid '{where}': {problem['msg']}.", param=where) from None
    fidelity = extra.get("input_fidelity")
    if fidelity is not None and fidelity not in _FIDELITY:
        raise ApiError(
            400, f"Invalid 'input_fidelity': must be low or high, not {fidelity!r:.40}.",
            param="input_fidelity",
        )  # fmt: skip
    if "strength" in extra:
        extra["strength"] = _number(extra["strength"], "strength", 1, "a number from 0 to 1")
    if "wait" in extra:
        extra["wait"] = _number(extra["wait"], "wait", 3600, "seconds")
    return body, extra


def _number(text: str, param: str, high: float, expected: str) -> float:
    """Form field ``param`` as a number from 0 to ``high``; ApiError 400 saying ``expected``."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= high:  # NaN too
        raise ApiError(400, f"Invalid '{param}': {expected}, not {text!r:.40}.", param=param)
    return value


def _uploads(form: FormData) -> list[tuple[str, str, UploadFile]]:
    """The files, as (role, field, file): the images in order, then the mask."""
    images = [*form.getlist("image"), *form.getlist("image[]")]
    masks = form.getlist("mask")
    if not images:
        raise ApiError(400, "Missing required parameter: 'image'.", param="image")
    if len(masks) > 1:
        raise ApiError(400, "Only one 'mask' may be given.", param="mask")
    files = [("image", "image", item) for item in images] + [
        ("mask", "mask", item) for item in masks
    ]
    for _, field, item in files:
        if not isinstance(item, UploadFile):
            raise ApiError(400, f"'{field}' must be a file, not a text field.", param=field)
    return files  # type: ignore[return-value]


def _check_uploads(uploads: list[tuple[str, str, UploadFile]], incoming: Path) -> list[InputImage]:
    """Each upload spooled to ``incoming`` and checked; all removed if any is refused."""
    incoming.mkdir(parents=True, exist_ok=True, mode=0o700)
    checked: list[InputImage] = []
    try:
        for index, (role, field, upload) in enumerate(uploads):
            name = _file_name(upload.filename, f"{field}-{index}")
            upload.file.seek(0)
            try:
                path = spool(upload.file, incoming)
            except RequestError as exc:
                raise ApiError(400, f"{name}: {exc}.", param=field) from None
            try:
                image = load_input(path, role, name=name)
            except RequestError as exc:
                path.unlink(missing_ok=True)
                raise ApiError(400, f"{exc}.", param=field) from None
            checked.append(image)
        try:
            check_inputs(checked)
        except RequestError as exc:
            raise ApiError(
                400, f"{exc}.", param="mask" if "mask" in str(exc) else "image"
            ) from None
    except BaseException:
        for image in checked:
            image.path.unlink(missing_ok=True)
        raise
    return checked


def _file_name(given: str | None, fallback: str) -> str:
    """An upload's file name as records may hold it: its last part, printable, short."""
    name = (given or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] not in "CZ" or c == " ")
    return name.strip()[:100] or fallback
