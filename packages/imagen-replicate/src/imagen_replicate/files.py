"""Input images for Replicate: the upload form, ``data:`` URLs, and checks against a schema.

Files go as the ``replicate`` SDK sends a file given in ``input`` (``encode_json``):
uploaded with ``files.create`` (``POST /v1/files``, multipart field ``content``: a file
name, the open file, its content type), the file's ``urls.get`` in its place; or, with
``file_encoding_strategy="base64"``, as a ``data:`` URL.
"""

from __future__ import annotations

import base64
from typing import IO, Any

from imagen.inputs import InputImage
from imagen_replicate.settings import ReplicateSettings

__all__ = ["data_url", "form", "missing_input", "recordable"]

_BASE64_CHUNK = 3 << 18  # a multiple of 3: the pieces encode without padding between them
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


def form(image: InputImage, handle: IO[bytes]) -> dict[str, Any]:
    """The ``files=`` of the upload: the SDK's form (``replicate.file._create_file_params``).

    The name is the role's (``image.png``), never the user's own file name, which may come
    from a web user and stays on this machine. httpx streams ``handle`` in 64 KiB pieces.
    """
    name = image.role + _EXTENSIONS.get(image.mime_type, "")
    return {"content": (name, handle, image.mime_type)}


def data_url(image: InputImage) -> str:
    """``image`` as a ``data:`` URL, encoded piece by piece from its file.

    The SDK's ``base64_encode_file`` reads the whole file, then encodes it; this holds the
    encoded text alone (4/3 of the file), which the JSON body needs anyway.
    """
    encoded = bytearray(f"data:{image.mime_type};base64,".encode())
    with image.open() as handle:
        while chunk := handle.read(_BASE64_CHUNK):
            encoded += base64.b64encode(chunk)
    return encoded.decode("ascii")


def recordable(inputs: Any) -> Any:
    """The prediction's input for the metadata, with ``data:`` URLs cut to their header."""
    if not isinstance(inputs, dict):
        return inputs
    return {
        key: f"{value.partition(',')[0]},… ({len(value)} characters)"
        if isinstance(value, str) and value.startswith("data:")
        else value
        for key, value in inputs.items()
    }


def missing_input(settings: ReplicateSettings, version: Any) -> tuple[str, str] | None:
    """The first model input the mapping names that the version's ``Input`` schema lacks.

    Replicate drops an input a model does not have without a word, so a wrong name in
    ``inputs:`` (or a family that does not fit the model) would quietly do nothing. Returns
    the message and the slice key to blame, or None (all there, or no schema to read).
    """
    try:
        properties = version["openapi_schema"]["components"]["schemas"]["Input"]["properties"]
    except (KeyError, TypeError):
        return None
    if not isinstance(properties, dict):
        return None
    listed = ", ".join(properties)
    for field_name, name in settings.names.items():
        if name and name not in properties:
            where = f"inputs.{field_name}" if field_name in settings.overrides else "family"
            message = f"{settings.owner_name} has no input {name!r} for {field_name}"
            return f"{message} (its inputs: {listed})", where
    for name in settings.fixed:
        if name not in properties:
            return f"{settings.owner_name} has no input {name!r} (its inputs: {listed})", (
                f"input.{name}"
            )
    return None
