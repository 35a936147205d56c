"""The record of how an image was made: the sidecar JSON, and its A1111 rendering."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from imagen.metadata.a1111 import format_parameters
from imagen.request import Request

__all__ = ["ImageFacts", "build_record", "parameters_text"]

# Backend metadata keys that have a name in the A1111 format.
_A1111_NAMES = {
    "model": "Model",
    "sampler": "Sampler",
    "scheduler": "Schedule type",
    "cfg": "CFG scale",
}


@dataclass(frozen=True)
class ImageFacts:
    """What is known of one image of a run when its record is written."""

    index: int
    seed: int | None
    mime_type: str
    width: int | None
    height: int | None
    metadata: Mapping[str, Any]


def build_record(
    *,
    version: str,
    original: Request,
    final: Request,
    backend: str,
    backend_type: str,
    reproducible: bool,
    image: ImageFacts,
    created: datetime,
    duration_s: float,
) -> dict[str, Any]:
    """The sidecar record of one image; also embedded in PNGs as the ``imagen`` chunk.

    :param original: the request as the user gave it (before the style).
    :param final: the request the backend received (style applied, seed chosen).
    """
    steps = final.steps if final.steps is not None else image.metadata.get("steps")
    return {
        "imagen_version": version,
        "prompt": original.prompt,
        "final_prompt": final.prompt,
        "negative_prompt": original.negative_prompt,
        "final_negative_prompt": final.negative_prompt,
        "style": final.style,
        "backend": backend,
        "backend_type": backend_type,
        "seed": final.seed,
        "image_seed": image.seed,
        "width": image.width if image.width is not None else final.width,
        "height": image.height if image.height is not None else final.height,
        "steps": steps,
        "count": final.count,
        "index": image.index,
        "options": dict(final.options),
        "inputs": [item.record() for item in final.inputs],
        "strength": final.strength,
        "mime_type": image.mime_type,
        "created": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "duration_s": round(duration_s, 3),
        "reproducible": reproducible,
        "metadata": dict(image.metadata),
    }


def parameters_text(record: Mapping[str, Any]) -> str:
    """The A1111 ``parameters`` text for a record: the final prompt and its settings."""
    metadata = record.get("metadata") or {}
    own_seed = record.get("image_seed")
    fields: dict[str, Any] = {
        "Steps": record.get("steps"),
        "Seed": own_seed if own_seed is not None else record.get("seed"),
    }
    if own_seed is None and record.get("count", 1) > 1:
        fields["Batch size"] = record["count"]
        fields["Batch pos"] = record["index"] - 1
    if record.get("width") and record.get("height"):
        fields["Size"] = f"{record['width']}x{record['height']}"
    if record.get("strength") is not None:
        fields["Denoising strength"] = record["strength"]
    for key, name in _A1111_NAMES.items():
        if isinstance(metadata.get(key), str | int | float):
            fields[name] = metadata[key]
    fields["Imagen backend"] = record.get("backend")
    fields["Imagen backend type"] = record.get("backend_type")
    fields["Version"] = f"imagen {record.get('imagen_version')}"
    return format_parameters(
        record.get("final_prompt", ""), record.get("final_negative_prompt", ""), fields
    )
