"""How a Request becomes a Replicate model's ``input``: one mapping per model family.

Each family names the model inputs that receive the request's fields and how the size is
expressed (an aspect ratio, a custom width and height, or plain width and height). A field
the family has no input for is listed as ignored. The slice's ``inputs:`` overrides any
name (or drops a field with ``null``); its ``input:`` adds fixed inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from imagen import PermanentBackendError, Request

__all__ = ["FAMILIES", "MODEL_INPUTS", "Family", "Plan", "family_for", "plan"]

FLUX_RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
PRO_RATIOS = ("1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3")


@dataclass(frozen=True)
class Family:
    """A model family's input names and size rule.

    :param inputs: request field → model input name (``count`` is the outputs per call).
    :param size: ``aspect_ratio`` (nearest of ``ratios``), ``custom`` (``aspect_ratio:
        custom`` with width and height in steps of ``step`` within ``bounds``), ``width_height``
        or ``none``.
    :param max_outputs: images one prediction can make; more means several predictions.
    """

    name: str
    inputs: Mapping[str, str]
    size: str = "width_height"
    ratios: tuple[str, ...] = ()
    bounds: tuple[int, int] = (64, 2048)
    step: int = 8
    max_outputs: int = 4
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
        _FLUX_INPUTS,
        size="aspect_ratio",
        ratios=FLUX_RATIOS,
        max_outputs=4,
        doc="black-forest-labs/flux-dev: aspect_ratio, num_outputs ≤ 4, steps ≤ 50",
    ),
    "flux-pro": Family(
        "flux-pro",
        {"prompt": "prompt", "seed": "seed"},
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
        },
        size="width_height",
        max_outputs=4,
        doc="stability-ai/sdxl and models with the same inputs: width, height, num_outputs ≤ 4",
    ),
}


_FLUX_COMMON = {
    "prompt": "the prompt (imagen sends the request's)",
    "aspect_ratio": "aspect ratio (imagen picks the nearest to --size)",
    "num_outputs": "images per prediction, 1-4 (imagen sends -n)",
    "seed": "seed (imagen sends the request's)",
    "output_format": "webp, jpg or png",
    "output_quality": "0-100, for webp and jpg",
    "go_fast": "faster fp8 inference (true by default)",
    "megapixels": '"1" or "0.25"',
    "disable_safety_checker": "turn the safety checker off",
}
MODEL_INPUTS: dict[str, dict[str, str]] = {
    "black-forest-labs/flux-schnell": {
        **_FLUX_COMMON,
        "num_inference_steps": "steps, 1-4 (imagen sends --steps)",
    },
    "black-forest-labs/flux-dev": {
        **_FLUX_COMMON,
        "num_inference_steps": "steps, 1-50 (imagen sends --steps)",
        "guidance": "guidance, 0-10 (3 by default)",
        "image": "an input image URL, for image-to-image",
        "prompt_strength": "how far to move from the input image, 0-1",
    },
    "black-forest-labs/flux-1.1-pro": {
        "prompt": "the prompt (imagen sends the request's)",
        "aspect_ratio": "aspect ratio, or custom with width and height",
        "width": "256-1440, with aspect_ratio custom",
        "height": "256-1440, with aspect_ratio custom",
        "seed": "seed (imagen sends the request's)",
        "safety_tolerance": "1 (strictest) to 6",
        "prompt_upsampling": "let the model rewrite the prompt",
        "output_format": "webp, jpg or png",
        "output_quality": "0-100, for webp and jpg",
        "image_prompt": "an image URL to guide the composition",
    },
    "stability-ai/sdxl": {
        "prompt": "the prompt (imagen sends the request's)",
        "negative_prompt": "what to keep out (imagen sends --negative)",
        "width": "width (imagen sends --size)",
        "height": "height (imagen sends --size)",
        "num_outputs": "images per prediction, 1-4 (imagen sends -n)",
        "num_inference_steps": "steps, 1-500 (imagen sends --steps)",
        "guidance_scale": "classifier-free guidance, 1-50 (7.5 by default)",
        "scheduler": "DDIM, DPMSolverMultistep, HeunDiscrete, KarrasDPM, K_EULER_ANCESTRAL, "
        "K_EULER or PNDM",
        "seed": "seed (imagen sends the request's)",
        "refine": "no_refiner, expert_ensemble_refiner or base_image_refiner",
        "high_noise_frac": "the share of steps the expert refiner takes",
        "refine_steps": "steps of the base image refiner",
        "apply_watermark": "watermark the image (true by default)",
        "lora_scale": "LoRA strength, for fine-tuned versions",
        "prompt_strength": "how far to move from the input image, 0-1",
        "image": "an input image URL, for image-to-image",
        "mask": "a mask image URL, for inpainting",
        "disable_safety_checker": "turn the safety checker off",
    },
}
"""The inputs of the models imagen knows by name (from their Replicate API pages): the
options a request may set for them. Any other model takes options free-form."""


def family_for(model: str) -> str:
    """The family a model reference most likely belongs to (``sdxl`` when unknown)."""
    name = model.split(":")[0].split("/")[-1].lower()
    if "schnell" in name:
        return "flux-schnell"
    if "flux" in name and "pro" in name:
        return "flux-pro"
    if "flux" in name:
        return "flux-dev"
    return "sdxl"


@dataclass
class Plan:
    """The inputs of the predictions that make one request."""

    batches: list[dict[str, Any]]
    ignored: list[str] = field(default_factory=list)
    size_note: str | None = None


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
    size, note = ({}, None)
    if family.size in ("aspect_ratio", "custom") or names.get("width") or names.get("height"):
        size, note = _size(request, family, names)
    elif request.width or request.height:
        ignored += [name for name in ("width", "height") if getattr(request, name)]
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
    return Plan(batches, ignored, note)
