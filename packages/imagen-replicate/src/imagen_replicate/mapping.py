"""How a Request becomes a Replicate model's ``input``: one mapping per model family.

Each family names the model inputs that receive the request's fields and how the size is
expressed (an aspect ratio, a custom width and height, or plain width and height). A field
the family has no input for is listed as ignored. The slice's ``inputs:`` overrides any
name (or drops a field with ``null``); its ``input:`` adds fixed inputs.

Input images go the same way: the mapping names the model input that takes the request's
``image``, ``reference`` and ``mask`` (one file each) and its ``strength``. A role with no
input is one the model does not take: imagen refuses it before anything is sent
(:func:`input_support`). The files themselves are uploaded by the backend; :func:`plan`
says which input each goes to.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imagen import PermanentBackendError, Request
from imagen.inputs import InputImage, InputSupport

__all__ = [
    "FAMILIES",
    "FIELDS",
    "ROLES",
    "Family",
    "Plan",
    "family_for",
    "input_support",
    "plan",
]

ROLES = ("image", "reference", "mask")
"""The input-image roles a mapping may send (one file each)."""
FIELDS = ("prompt", "negative_prompt", "seed", "steps", "count", "width", "height")
"""The request fields a mapping may send, besides the roles and ``strength``."""

FLUX_RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
PRO_RATIOS = ("1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3")
KONTEXT_RATIOS = (
    *("1:1", "16:9", "9:16", "4:3", "3:4", "3:2", "2:3", "4:5", "5:4", "21:9", "9:21"),
    *("2:1", "1:2"),
)


@dataclass(frozen=True)
class Family:
    """A model family's input names and size rule.

    :param inputs: request field → model input name (``count`` is the outputs per call).
    :param size: ``aspect_ratio`` (nearest of ``ratios``), ``custom`` (``aspect_ratio:
        custom`` with width and height in steps of ``step`` within ``bounds``), ``width_height``
        or ``none``.
    :param max_outputs: images one prediction can make; more means several predictions.
    :param match_ratio: the aspect ratio that keeps the input image's shape
        (``match_input_image``), sent when a request with an image asks no size.
    """

    name: str
    inputs: Mapping[str, str]
    size: str = "width_height"
    ratios: tuple[str, ...] = ()
    bounds: tuple[int, int] = (64, 2048)
    step: int = 8
    max_outputs: int = 4
    match_ratio: str | None = None
    doc: str = ""


_FLUX_INPUTS = {
    "prompt": "prompt",
    "seed": "seed",
    "count": "num_outputs",
    "steps": "num_inference_steps",
}

FAMILIES: dict[str, Family] = {
    "flux-schnell": Family(
        "flux-schnell",
        _FLUX_INPUTS,
        size="aspect_ratio",
        ratios=FLUX_RATIOS,
        max_outputs=4,
        doc="black-forest-labs/flux-schnell: aspect_ratio, num_outputs ≤ 4, steps ≤ 4",
    ),
    "flux-dev": Family(
        "flux-dev",
        {**_FLUX_INPUTS, "image": "image", "strength": "prompt_strength"},
        size="aspect_ratio",
        ratios=FLUX_RATIOS,
        max_outputs=4,
        doc="black-forest-labs/flux-dev: aspect_ratio, num_outputs ≤ 4, steps ≤ 50",
    ),
    "flux-pro": Family(
        "flux-pro",
        {"prompt": "prompt", "seed": "seed", "reference": "image_prompt"},
        size="custom",
        ratios=PRO_RATIOS,
        bounds=(256, 1440),
        step=32,
        max_outputs=1,
        doc="black-forest-labs/flux-1.1-pro: one image per prediction; aspect_ratio custom with "
        "width and height, 256-1440 in steps of 32",
    ),
    "sdxl": Family(
        "sdxl",
        {
            "prompt": "prompt",
            "negative_prompt": "negative_prompt",
            "seed": "seed",
            "count": "num_outputs",
            "steps": "num_inference_steps",
            "width": "width",
            "height": "height",
            "image": "image",
            "mask": "mask",
            "strength": "prompt_strength",
        },
        size="width_height",
        max_outputs=4,
        doc="stability-ai/sdxl and models with the same inputs: width, height, num_outputs ≤ 4; "
        "img2img and inpainting",
    ),
    "flux-kontext": Family(
        "flux-kontext",
        {"prompt": "prompt", "seed": "seed", "image": "input_image"},
        size="aspect_ratio",
        ratios=KONTEXT_RATIOS,
        max_outputs=1,
        match_ratio="match_input_image",
        doc="black-forest-labs/flux-kontext-pro and -max: edits one input image; one image per "
        "prediction, no strength",
    ),
    "flux-kontext-dev": Family(
        "flux-kontext-dev",
        {
            "prompt": "prompt",
            "seed": "seed",
            "steps": "num_inference_steps",
            "image": "input_image",
        },
        size="aspect_ratio",
        ratios=KONTEXT_RATIOS,
        max_outputs=1,
        match_ratio="match_input_image",
        doc="black-forest-labs/flux-kontext-dev: edits one input image (required); one image "
        "per prediction, steps ≤ 50",
    ),
    "flux-fill": Family(
        "flux-fill",
        {"prompt": "prompt", "seed": "seed", "steps": "steps", "image": "image", "mask": "mask"},
        size="none",
        max_outputs=1,
        doc="black-forest-labs/flux-fill-pro: inpaints an image (required) where the mask is "
        "white; the output keeps the image's size",
    ),
    "flux-fill-dev": Family(
        "flux-fill-dev",
        {
            **_FLUX_INPUTS,
            "image": "image",
            "mask": "mask",
        },
        size="none",
        max_outputs=4,
        doc="black-forest-labs/flux-fill-dev: inpaints an image (required); num_outputs ≤ 4",
    ),
    "flux-redux": Family(
        "flux-redux",
        {
            "seed": "seed",
            "count": "num_outputs",
            "steps": "num_inference_steps",
            "reference": "redux_image",
        },
        size="aspect_ratio",
        ratios=FLUX_RATIOS,
        max_outputs=4,
        doc="black-forest-labs/flux-redux-dev and -schnell: variations of a reference image "
        "(required; --reference), which takes the place of the prompt",
    ),
}


def family_for(model: str) -> str:
    """The family a model reference most likely belongs to (``sdxl`` when unknown)."""
    name = model.split(":")[0].split("/")[-1].lower()
    for word, family in (("kontext", "flux-kontext"), ("fill", "flux-fill")):
        if "flux" in name and word in name:
            return f"{family}-dev" if "dev" in name else family
    if "flux" in name and "redux" in name:
        return "flux-redux"
    if "schnell" in name:
        return "flux-schnell"
    if "flux" in name and "pro" in name:
        return "flux-pro"
    if "flux" in name:
        return "flux-dev"
    return "sdxl"


def input_support(names: Mapping[str, str | None]) -> InputSupport:
    """What input images a mapping can send: one per role that has a model input."""
    return InputSupport(
        images=1 if names.get("image") else 0,
        references=1 if names.get("reference") else 0,
        mask=bool(names.get("mask")),
        strength=bool(names.get("strength")),
    )


@dataclass
class Plan:
    """The inputs of the predictions that make one request.

    ``files`` maps a model input to the input image it takes: the backend uploads each
    once and puts its URL in every batch.
    """

    batches: list[dict[str, Any]]
    ignored: list[str] = field(default_factory=list)
    size_note: str | None = None
    files: dict[str, InputImage] = field(default_factory=dict)


def _nearest_ratio(width: int, height: int, ratios: tuple[str, ...]) -> str:
    def distance(ratio: str) -> float:
        w, h = (int(part) for part in ratio.split(":"))
        return abs(math.log(width / height) - math.log(w / h))

    return min(ratios, key=distance)


def _size(
    request: Request, family: Family, names: Mapping[str, str | None]
) -> tuple[dict[str, Any], str | None]:
    width, height = request.width, request.height
    if not width and not height:
        return {}, None
    width = width or height
    height = height or width
    assert width is not None
    assert height is not None
    if family.size == "aspect_ratio":
        ratio = _nearest_ratio(width, height, family.ratios)
        return {"aspect_ratio": ratio}, f"{width}x{height} asked: aspect ratio {ratio} sent"
    if family.size == "custom":
        low, high = family.bounds
        if not (low <= width <= high and low <= height <= high):
            raise PermanentBackendError(
                f"{family.name} takes widths and heights from {low} to {high} (in steps of "
                f"{family.step}), not {width}x{height}; or one of the aspect ratios "
                f"{', '.join(family.ratios)}"
            )
        snapped = [round(side / family.step) * family.step for side in (width, height)]
        note = (
            None
            if snapped == [width, height]
            else f"{width}x{height} rounded to {snapped[0]}x{snapped[1]}"
        )
        return {"aspect_ratio": "custom", "width": snapped[0], "height": snapped[1]}, note
    sized = {}
    for key, value in (("width", width), ("height", height)):
        name = names.get(key)
        if name:
            sized[name] = value
    return sized, None


def plan(
    request: Request,
    family: Family,
    overrides: Mapping[str, str | None],
    fixed: Mapping[str, Any],
) -> Plan:
    """The predictions (and their inputs) that make ``request`` on a model of ``family``."""
    names: dict[str, str | None] = {**family.inputs, **overrides}
    base: dict[str, Any] = dict(fixed)
    ignored: list[str] = []
    values = {
        "prompt": request.prompt,
        "negative_prompt": request.negative_prompt,
        "seed": request.seed,
        "steps": request.steps,
    }
    for field_name, value in values.items():
        if value in (None, ""):
            continue
        if names.get(field_name):
            base[names[field_name]] = value  # type: ignore[index]
        else:
            ignored.append(field_name)
    files: dict[str, InputImage] = {}
    for role in ROLES:
        given = request.inputs_of(role)
        if not given:
            continue
        name = names.get(role)
        if not name or len(given) > 1:  # the pipeline refuses these before calling us
            raise PermanentBackendError(
                f"{family.name} takes {'no' if not name else 'one'} {role} input "
                f"({len(given)} given); see `inputs:` in the slice"
            )
        files[name] = given[0]
    if request.strength is not None:
        if names.get("strength"):
            base[names["strength"]] = request.strength  # type: ignore[index]
        else:
            ignored.append("strength")
    size, note = ({}, None)
    if family.size in ("aspect_ratio", "custom") or names.get("width") or names.get("height"):
        size, note = _size(request, family, names)
    elif request.width or request.height:
        ignored += [name for name in ("width", "height") if getattr(request, name)]
    if not size and family.match_ratio and request.inputs_of("image"):
        size = {"aspect_ratio": family.match_ratio}
    base.update(size)
    base.update(request.options)  # --opt KEY=VALUE: passed through as model inputs
    per_call = family.max_outputs if names.get("count") else 1
    batches = []
    remaining = request.count
    offset = 0
    while remaining > 0:
        count = min(per_call, remaining)
        batch = dict(base)
        if names.get("count"):
            batch[names["count"]] = count  # type: ignore[index]
        if offset and "seed" in values and request.seed is not None and names.get("seed"):
            batch[names["seed"]] = request.seed + offset  # type: ignore[index]
        batches.append(batch)
        remaining -= count
        offset += count
    return Plan(batches, ignored, note, files)
