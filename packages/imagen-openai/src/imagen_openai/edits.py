"""Edits: what ``images.edit`` takes, checked before anything is sent, and its files.

From the openai 3.51 SDK's own parameter docs (``ImageEditParams``) and the API's answers:

- every gpt-image model (and ``chatgpt-image-latest``) edits: up to 16 input images
  (``image[]``), each a PNG, WebP or JPEG "less than 50MB"; the first is the one edited,
  the others guide it (imagen sends ``image`` inputs first, then ``reference`` ones);
- a mask applies to the first image: a PNG "less than 4MB", the same size as that image,
  whose fully transparent pixels are repainted (the API refuses a mask with no alpha
  channel). imagen's masks may also be white where to repaint; such a mask is turned
  into OpenAI's form (a small RGBA PNG in a temporary file) before it is sent;
- ``input_fidelity`` is ``high`` or ``low`` on ``gpt-image-1.5``, only ``low`` on
  ``gpt-image-1-mini``, and not taken by the ``gpt-image-2`` family;
- there is no strength: imagen lists a request's strength as ignored.

"Less than 50MB" and "less than 4MB" are read as decimal megabytes, the stricter reading.
The DALL·E models also edited (one square PNG under 4 MB) but were retired on 2026-05-12,
and imagen refuses them as a model already.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from imagen import Request, RequestError
from imagen.inputs import InputImage, InputSupport

__all__ = [
    "FIDELITY",
    "MAX_EDIT_IMAGES",
    "MAX_IMAGE_BYTES",
    "MAX_MASK_BYTES",
    "check_edit",
    "edit_files",
    "fidelity_refusal",
    "input_support",
]

MAX_EDIT_IMAGES = 16
MAX_IMAGE_BYTES = 50_000_000
MAX_MASK_BYTES = 4_000_000
MAX_CONVERTED_MASK_PIXELS = 4096 * 4096  # a white-means-repaint mask turned into alpha
FIDELITY = ("high", "low")


def input_support(model: str) -> InputSupport:
    """Every model the adapter takes edits; no strength. References share the 16 slots."""
    del model  # the DALL·E models, the only others, are refused as models
    return InputSupport(
        images=MAX_EDIT_IMAGES, references=MAX_EDIT_IMAGES - 1, mask=True, strength=False
    )


def fidelity_refusal(model: str, value: Any) -> str | None:
    """Why ``input_fidelity=value`` can't go to ``model``, or None when it can."""
    if value not in FIDELITY:
        return f"option input_fidelity must be high or low, not {value!r}"
    if model.startswith("gpt-image-2"):
        return f"{model} takes no input_fidelity (only gpt-image-1.5 and gpt-image-1-mini do)"
    if model == "gpt-image-1-mini" and value != "low":
        return "gpt-image-1-mini takes input_fidelity=low only"
    return None


def check_edit(model: str, request: Request) -> None:
    """Refuse what the edits endpoint would refuse, before a byte is sent.

    :raises RequestError: naming the input and what is wrong with it.
    """
    images = _edited(request)
    if len(images) > MAX_EDIT_IMAGES:
        raise RequestError(
            f"OpenAI edits take at most {MAX_EDIT_IMAGES} images "
            f"(--image and --reference together), not {len(images)}"
        )
    for image in images:
        if image.size >= MAX_IMAGE_BYTES:
            raise RequestError(
                f"{image.name}: {image.size / 1e6:.1f} MB; OpenAI takes images of less than "
                f"{MAX_IMAGE_BYTES / 1e6:.0f} MB"
            )
    (mask,) = request.inputs_of("mask") or (None,)
    if mask is not None:
        if not images:
            raise RequestError("a mask needs an image to apply to")
        first = images[0]
        if (mask.width, mask.height) != (first.width, first.height):
            raise RequestError(
                f"{mask.name}: the mask is {mask.width}×{mask.height}, the image it applies "
                f"to, {first.name}, is {first.width}×{first.height}: OpenAI needs the same size"
            )
        if _sent_as_is(mask):
            if mask.size >= MAX_MASK_BYTES:
                raise RequestError(
                    f"{mask.name}: {mask.size / 1e6:.1f} MB; OpenAI takes masks of less than "
                    f"{MAX_MASK_BYTES / 1e6:.0f} MB"
                )
        elif mask.width * mask.height > MAX_CONVERTED_MASK_PIXELS:
            raise RequestError(
                f"{mask.name}: OpenAI reads a mask's alpha channel and this one has no "
                "transparent pixel; "
                f"give it one (transparent where to repaint) or make it at most 4096×4096"
            )
    if "input_fidelity" in request.options:
        refusal = fidelity_refusal(model, request.options["input_fidelity"])
        if refusal:
            raise RequestError(refusal)


def _edited(request: Request) -> tuple[InputImage, ...]:
    """The ``image[]`` files in the order sent: the images, then the references."""
    return request.inputs_of("image") + request.inputs_of("reference")


def _sent_as_is(mask: InputImage) -> bool:
    """Whether the mask is already in OpenAI's form: a PNG with transparent pixels.

    An alpha channel with no transparent pixel means imagen's other form (white where to
    repaint). A mask too large to look at is trusted to mean what its alpha channel says.
    """
    from PIL import Image

    if mask.mime_type != "image/png":
        return False
    with mask.open() as stream, Image.open(stream) as picture:
        if "transparency" in picture.info:
            return True
        if "A" not in picture.getbands():
            return False
        if mask.width * mask.height > MAX_CONVERTED_MASK_PIXELS:
            return True
        return picture.getchannel("A").getextrema()[0] < 255


@contextmanager
def edit_files(request: Request) -> Iterator[tuple[list[Any], Any]]:
    """The open ``image[]`` files and the mask, as the SDK takes them: ``(name, file, mime)``.

    The SDK hands open files to httpx, which streams them 64 KiB at a time: nothing here or
    there reads an input whole. Everything opened is closed on leaving.
    """
    with ExitStack() as stack:
        images = [
            (_part_name(number, item), stack.enter_context(item.open()), item.mime_type)
            for number, item in enumerate(_edited(request), 1)
        ]
        (mask,) = request.inputs_of("mask") or (None,)
        mask_part = None
        if mask is not None:
            path = mask.path
            if not _sent_as_is(mask):
                path = _alpha_mask(mask)
                stack.callback(path.unlink, missing_ok=True)
            if path.stat().st_size >= MAX_MASK_BYTES:
                raise RequestError(
                    f"{mask.name}: as OpenAI's transparent-means-repaint PNG it is more than "
                    f"{MAX_MASK_BYTES / 1e6:.0f} MB"
                )
            mask_part = ("mask.png", stack.enter_context(path.open("rb")), "image/png")
        yield images, mask_part


def _part_name(number: int, item: InputImage) -> str:
    """The part's file name, ``image-1.png``: never the user's own.

    An upload's name is hostile in a multipart header, and any name may say more about
    the user than OpenAI needs to know.
    """
    extension = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
    return f"image-{number}.{extension[item.mime_type]}"


def _alpha_mask(mask: InputImage) -> Path:
    """The white-means-repaint form of a mask as OpenAI's transparent-means-repaint PNG."""
    from PIL import Image, ImageOps

    with mask.open() as stream, Image.open(stream) as picture:
        alpha = ImageOps.invert(picture.convert("L"))
    converted = Image.new("RGBA", alpha.size, (0, 0, 0, 255))
    converted.putalpha(alpha)
    handle, name = tempfile.mkstemp(prefix="imagen-openai-mask-", suffix=".png")
    with os.fdopen(handle, "wb") as out:
        converted.save(out, "PNG", optimize=True)
    return Path(name)
