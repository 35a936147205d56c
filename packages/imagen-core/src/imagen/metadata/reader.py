"""Read how an image was made: imagen's chunk, its sidecar, or another tool's metadata."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagen.errors import RequestError
from imagen.metadata import IMAGEN_KEY, PARAMETERS_KEY, jpeg, png, sniff, webp
from imagen.metadata.a1111 import parse_parameters
from imagen.metadata.comfyui import summarize_graph
from imagen.metadata.exif import read_user_comment

__all__ = ["ImageInfo", "read_image_info", "sidecar_path"]


def sidecar_path(image: Path) -> Path:
    """Where the sidecar of ``image`` lives: beside it, ``.json`` for its extension."""
    return image.with_suffix(".json")


@dataclass
class ImageInfo:
    """How an image was made, from whichever source had it.

    :param source: ``imagen`` (the PNG chunk), ``sidecar``, ``a1111``, ``comfyui``, or
        None when the file says nothing.
    :param fields: the normalized parameters: prompt, negative_prompt, seed, steps,
        width, height, backend, style, count, options, ...
    :param record: imagen's full record, when the source is imagen's.
    :param raw: the source text as found (A1111 text, ComfyUI graph).
    """

    path: Path
    mime_type: str | None
    width: int | None
    height: int | None
    source: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    record: dict[str, Any] | None = None
    raw: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "mime_type": self.mime_type,
            "width": self.width,
            "height": self.height,
            "source": self.source,
            "fields": self.fields,
            "record": self.record,
            "raw": self.raw,
        }

    def replay(self) -> dict[str, Any]:
        """The request fields (and backend instance) that make this image again."""
        if not self.source:
            raise RequestError(f"{self.path} carries no generation parameters imagen can read")
        keys = (
            "prompt",
            "negative_prompt",
            "final_prompt",
            "final_negative_prompt",
            "width",
            "height",
            "steps",
            "style",
            "backend",
            "options",
            "inputs",
            "strength",
        )
        replay = {key: self.fields.get(key) for key in keys}
        if self.fields.get("image_seed") is not None:
            replay.update(seed=self.fields["image_seed"], count=1)
        else:
            replay.update(seed=self.fields.get("seed"), count=self.fields.get("count") or 1)
        if not replay.get("prompt"):
            raise RequestError(f"{self.path} has generation parameters but no prompt")
        return replay


def _from_record(record: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "prompt",
        "negative_prompt",
        "final_prompt",
        "final_negative_prompt",
        "style",
        "backend",
        "backend_type",
        "seed",
        "image_seed",
        "width",
        "height",
        "steps",
        "count",
        "index",
        "options",
        "reproducible",
        "created",
        "duration_s",
        "inputs",
        "strength",
    )
    return {key: record.get(key) for key in keys}


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _from_a1111(text: str) -> dict[str, Any]:
    prompt, negative, params = parse_parameters(text)
    fields: dict[str, Any] = {
        "prompt": prompt,
        "negative_prompt": negative,
        "seed": _int(params.get("Seed")),
        "steps": _int(params.get("Steps")),
    }
    if "x" in params.get("Size", ""):
        width, _, height = params["Size"].partition("x")
        fields.update(width=_int(width), height=_int(height))
    if params.get("Batch size"):
        fields["count"] = _int(params["Batch size"])
        batch_pos = _int(params.get("Batch pos"))
        fields["index"] = None if batch_pos is None else batch_pos + 1
    if params.get("Imagen backend"):
        fields["backend"] = params["Imagen backend"]
    with contextlib.suppress(ValueError):  # a strength that is not a number is no strength
        fields["strength"] = float(params.get("Denoising strength") or "")
    if params.get("Model"):
        fields["model"] = params["Model"]
    fields["reproducible"] = None
    fields["parameters"] = params
    return fields


def read_image_info(path: Path) -> ImageInfo:
    """Everything imagen can learn of ``path``'s making.

    :raises RequestError: the file is missing or is not an image imagen can read.
    """
    try:
        with path.open("rb") as src:
            mime = sniff(src.read(16))
            src.seek(0)
            texts: dict[str, str] = {}
            size = None
            if mime == "image/png":
                texts, size = png.read_text(src)
            elif mime in ("image/jpeg", "image/webp"):
                exif, size = (jpeg if mime == "image/jpeg" else webp).read_exif(src)
                comment = read_user_comment(exif) if exif else None
                if comment:
                    texts[PARAMETERS_KEY] = comment
    except FileNotFoundError:
        raise RequestError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise RequestError(f"{path} is a directory, not an image") from None
    except ValueError as exc:
        raise RequestError(f"{path} is not a readable image: {exc}") from None
    if mime is None:
        raise RequestError(f"{path} is not a PNG, JPEG or WebP image")
    width, height = size or (None, None)
    info = ImageInfo(path, mime, width, height)

    record = _json(texts.get(IMAGEN_KEY))
    source = "imagen"
    if record is None:
        record, source = _sidecar(path), "sidecar"
    if isinstance(record, dict) and "final_prompt" in record:
        info.source, info.record, info.fields = source, record, _from_record(record)
        return info
    if texts.get(PARAMETERS_KEY):
        info.source, info.raw = "a1111", texts[PARAMETERS_KEY]
        info.fields = _from_a1111(texts[PARAMETERS_KEY])
        return info
    graph = _json(texts.get("prompt"))
    if isinstance(graph, dict):
        info.source, info.raw = "comfyui", graph
        info.fields = summarize_graph(graph)
    return info


def _json(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return None


def _sidecar(path: Path) -> Any:
    try:
        return json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
