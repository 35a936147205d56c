"""Input images into ComfyUI's input folder, named by their content.

Each input goes to ``input/imagen/<sha256>.<ext>``: the name says what the bytes are, so a
retried or resumed run finds its inputs already there (``HEAD /view``) and sends nothing
again, and two requests with the same picture share one file. Files are streamed from
disk by httpx's multipart encoder, never read whole into memory.

A mask reaches the workflow in one of two ways, depending on what ``inputs.mask`` maps to:

- a LoadImageMask (the ``inpaint`` template's): the mask is uploaded as it is, and the
  node's ``channel`` says where it is drawn: ``alpha`` when it has transparency
  (transparent = repaint, OpenAI's convention), ``red`` otherwise (white = repaint);
- the same LoadImage as ``inputs.image`` (a workflow that takes its mask from LoadImage's
  MASK output, as ComfyUI's mask editor makes them): ``POST /upload/mask`` stores the
  uploaded image again with the mask as its alpha channel, and the LoadImage loads that.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, TypeVar

from imagen import Context, PermanentBackendError, Request, run_blocking
from imagen.inputs import InputImage
from imagen.retry import RetryPolicy, call_with_retry
from imagen_comfyui.client import ComfyClient
from imagen_comfyui.workflow import Workflow

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["SUBFOLDER", "Uploader", "expected_files", "upload_name"]

SUBFOLDER = "imagen"
"""The folder under ComfyUI's ``input/`` that imagen's uploads go to."""
_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
T = TypeVar("T")
_ROLE_WORDS = {"image": "input image", "mask": "mask", "reference": "reference image"}


def upload_name(item: InputImage) -> str:
    """``<sha256>.png``: the file name an input is stored under."""
    return item.sha256 + _EXTENSIONS.get(item.mime_type, ".png")


def _merged_name(image: InputImage, mask: InputImage) -> str:
    """The name of ``image`` stored with ``mask`` as its alpha: a hash of both hashes."""
    return hashlib.sha256(f"{image.sha256}:{mask.sha256}".encode()).hexdigest() + ".png"


def _reference(subfolder: str, name: str) -> str:
    """How a LoadImage names an input file: ``subfolder/name``."""
    return f"{subfolder}/{name}" if subfolder else name


def _mask_into_image(workflow: Workflow) -> bool:
    """Whether the mask goes to the image's own LoadImage (merged into its alpha)."""
    return bool(workflow.targets.get("mask")) and set(workflow.targets["mask"]) <= set(
        workflow.targets.get("image", [])
    )


def expected_files(request: Request, workflow: Workflow) -> dict[str, str]:
    """The names the inputs have on the server once uploaded, without asking it.

    For a resumed run, whose inputs went up when it started: its graph is rebuilt for the
    record, and nothing is uploaded again.
    """
    files: dict[str, str] = {}
    (image,) = request.inputs_of("image") or (None,)
    (mask,) = request.inputs_of("mask") or (None,)
    if image is not None:
        files["image"] = _reference(SUBFOLDER, upload_name(image))
    if mask is not None:
        name = _merged_name(image, mask) if image and _mask_into_image(workflow) else None
        files["mask"] = _reference(SUBFOLDER, name or upload_name(mask))
    return files


class Uploader:
    """Uploads one request's inputs, each through :func:`imagen.run_blocking` and retries."""

    def __init__(
        self, client: ComfyClient, context: Context, policy: RetryPolicy, workflow: Workflow
    ) -> None:
        self.client = client
        self.context = context
        self.policy = policy
        self.workflow = workflow

    def files(self, request: Request) -> dict[str, str]:
        """Upload what ``request`` carries; the ``files`` for :meth:`Workflow.apply`."""
        files: dict[str, str] = {}
        (image,) = request.inputs_of("image") or (None,)
        (mask,) = request.inputs_of("mask") or (None,)
        stored_image: dict[str, str] | None = None
        if image is not None:
            stored_image = self._put(image.open, upload_name(image), image.mime_type, image)
            files["image"] = _reference(stored_image["subfolder"], stored_image["name"])
        if mask is None:
            return files
        if stored_image is not None and _mask_into_image(self.workflow):
            original = {
                "filename": stored_image["name"],
                "subfolder": stored_image["subfolder"],
                "type": "input",
            }
            with _as_alpha(mask) as opener:
                stored = self._put(opener, _merged_name(image, mask), "image/png", mask, original)
        else:
            stored = self._put(mask.open, upload_name(mask), mask.mime_type, mask)
            files["mask_channel"] = _channel(mask)
        files["mask"] = _reference(stored["subfolder"], stored["name"])
        return files

    def _put(
        self,
        opener: Callable[[], BinaryIO],
        name: str,
        mime_type: str,
        item: InputImage,
        original: dict[str, str] | None = None,
    ) -> dict[str, str]:
        size = self._blocking(
            lambda: self.client.input_size(name, SUBFOLDER),
            f"looking for the {_ROLE_WORDS[item.role]} on ComfyUI",
        )
        if size is not None and (original is not None or size == item.size):
            return {"name": name, "subfolder": SUBFOLDER, "type": "input"}

        def send() -> dict[str, str]:
            with opener() as stream:  # opened anew for each attempt
                return self.client.upload(stream, name, mime_type, SUBFOLDER, original=original)

        # The role, not the name: a web user's upload may be called anything.
        return self._blocking(send, f"uploading the {_ROLE_WORDS[item.role]}")

    def _blocking(self, call: Callable[[], T], what: str) -> T:
        return call_with_retry(
            lambda: run_blocking(call, self.context, what=what),
            what=what,
            context=self.context,
            policy=self.policy,
            safe_to_repeat=True,  # named by content: sending it again changes nothing
        )


def _has_transparency(picture: Image.Image) -> bool:
    return "A" in picture.getbands() and picture.getchannel("A").getextrema()[0] < 255


def _channel(mask: InputImage) -> str:
    """The LoadImageMask channel a mask is drawn in: ``alpha`` or ``red`` (see the module)."""
    from PIL import Image

    try:
        with mask.open() as stream, Image.open(stream) as picture:
            return "alpha" if _has_transparency(picture) else "red"
    except OSError as exc:
        raise PermanentBackendError(f"cannot read the mask: {exc}") from exc


@contextmanager
def _as_alpha(mask: InputImage) -> Iterator[Callable[[], BinaryIO]]:
    """An opener of ``mask`` with its repaint area as transparency, for ``/upload/mask``.

    A mask drawn in transparency is sent as it is; one drawn in white becomes a
    temporary PNG whose alpha is its inverted luminance (white → transparent).
    """
    from PIL import Image, ImageOps

    try:
        with mask.open() as stream, Image.open(stream) as picture:
            luminance = None if _has_transparency(picture) else picture.convert("L")
    except OSError as exc:
        raise PermanentBackendError(f"cannot read the mask: {exc}") from exc
    if luminance is None:
        yield mask.open
        return
    handle, name = tempfile.mkstemp(prefix="imagen-mask-", suffix=".png")
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            black = Image.new("L", luminance.size, 0)
            Image.merge("LA", (black, ImageOps.invert(luminance))).save(out, "PNG")
        del luminance, black
        yield lambda: path.open("rb")
    finally:
        path.unlink(missing_ok=True)
