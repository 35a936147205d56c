"""Job rows in, image rows out: what a worker reads from a row and what it writes back.

A job row is written by a web user, so it is read as hostile: every field is checked again
here (rows older than the database's own checks, or from a database whose roles were
granted too much, reach this point too), and a row that cannot make a valid request gives
a :class:`~imagen.errors.RequestError` that fails the job with a clear message. What goes
back into the database is made storable first: a value the database would refuse (a NUL
in a string, a seed beyond bigint) must never keep a job from being recorded.
"""

from __future__ import annotations

import math
from typing import Any

from imagen import Request, secrets
from imagen.errors import RequestError
from imagen_worker.limits import MAX_BIGINT, Unreadable
from imagen_worker.submission import check_fields

__all__ = ["clean_text", "image_row", "request_from_row", "storable"]

_INT = 2**31 - 1
_MAX_ERROR = 2_000  # characters of an error kept in the row
_MAX_DEPTH = 32


def request_from_row(row: dict[str, Any]) -> Request:
    """The Request a job row asks for; RequestError naming the field when it can't be made."""
    options = row.get("options")
    if isinstance(options, Unreadable):
        raise RequestError(f"options: {options.reason}")
    fields = {
        "prompt": row.get("prompt"),
        "negative_prompt": row.get("negative_prompt") or "",
        "width": row.get("width"),
        "height": row.get("height"),
        "steps": row.get("steps"),
        "seed": row.get("seed"),
        "style": row.get("style"),
        "count": row.get("count") or 1,
        "options": {} if options is None else options,
        "backend": row.get("backend"),
    }
    check_fields({**fields, "inputs": row.get("inputs"), "strength": row.get("strength")},
                 row.get("owner"))  # fmt: skip
    fields.pop("backend")
    return Request(**fields)


def clean_text(text: str, limit: int = _MAX_ERROR) -> str:
    """``text`` as a row may hold it: credentials scrubbed, no NUL, at most ``limit`` chars."""
    text = secrets.redact(text).replace("\x00", "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def image_row(image: Any) -> dict[str, Any]:
    """A saved image as the DONE statement's JSON record, every value storable."""
    record = image.record
    return storable(
        {
            "local_path": str(image.path),
            "storage_bucket": (record.get("cloud") or {}).get("bucket"),
            "storage_location": (record.get("cloud") or {}).get("path"),
            "prompt": record.get("prompt") or "",
            "backend": record.get("backend") or "",
            "seed": _bounded(record.get("image_seed", record.get("seed")), 0, MAX_BIGINT),
            "width": _bounded(record.get("width"), 1, _INT),
            "height": _bounded(record.get("height"), 1, _INT),
            "mime_type": image.mime_type,
            "metadata": _with_inputs(record),
        }
    )


def _with_inputs(record: dict[str, Any]) -> dict[str, Any]:
    """The backend's metadata, and the inputs the image was made from (role, name, hash)."""
    metadata = dict(record.get("metadata") or {})
    if record.get("inputs"):
        keep = ("role", "name", "size", "sha256", "width", "height")
        metadata["inputs"] = [
            {key: item.get(key) for key in keep}
            for item in record["inputs"]
            if isinstance(item, dict)
        ]
    if record.get("strength") is not None:
        metadata["strength"] = record["strength"]
    return metadata


def _bounded(value: Any, low: int, high: int) -> int | None:
    """``value`` when it is a whole number the column holds; None otherwise.

    A backend may report a seed beyond bigint (ComfyUI's reach 2^64 - 1): the image's own
    metadata keeps it, the column stays empty rather than refusing the whole job.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if low <= value <= high else None


def storable(value: Any, depth: int = 0) -> Any:
    """``value`` as jsonb stores it.

    NUL is removed from strings and keys, non-finite numbers become null, and anything
    nested past 32 levels or not JSON at all becomes a short string.
    """
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= _MAX_DEPTH:
        return "<nested too deeply>"
    if isinstance(value, dict):
        return {str(k).replace("\x00", ""): storable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(item, depth + 1) for item in value]
    return storable(str(value), depth + 1)
