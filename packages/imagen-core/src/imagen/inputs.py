"""Input images: what a request may carry besides its prompt, checked before anyone pays.

An input image has a *role*: ``image`` (the picture to edit, or to start from in
image-to-image), ``reference`` (a picture to take a subject or style from) or ``mask``
(where an edit may change the image: transparent, or white, is to be repainted). Every
input is untrusted (a web user may have uploaded it), so :func:`load_input` checks it
before anything else reads it: a PNG, JPEG or WebP by its own bytes, at most
:data:`MAX_INPUT_BYTES`, at most :data:`MAX_INPUT_PIXELS` once decoded (a small file that
decodes to 50,000 × 50,000 pixels is refused by its header, never decoded), and not
truncated. It is hashed as it is read, and handed to backends as a file: they stream it
(:meth:`InputImage.open`), nothing holds it whole in memory twice.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from imagen.errors import RequestError
from imagen.metadata import sniff

__all__ = [
    "ACCEPTED_TYPES",
    "INPUT_ROLES",
    "MAX_INPUTS",
    "MAX_INPUT_BYTES",
    "MAX_INPUT_PIXELS",
    "InputImage",
    "InputRole",
    "InputSupport",
    "check_inputs",
    "load_input",
    "spool",
]

InputRole = Literal["image", "reference", "mask"]
INPUT_ROLES: tuple[InputRole, ...] = ("image", "reference", "mask")
ACCEPTED_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
MAX_INPUTS = 16
"""Input images in one request, every role counted (OpenAI's edits take up to 16)."""
MAX_INPUT_BYTES = 50 * 1024 * 1024
"""The largest input file (OpenAI's limit for an edit's image)."""
MAX_INPUT_PIXELS = 8192 * 8192
"""The most pixels an input may decode to."""
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class InputImage:
    """One checked input image, backed by a file.

    :param role: ``image``, ``reference`` or ``mask`` (see the module docstring).
    :param path: where its bytes are; read it with :meth:`open`.
    :param name: the name it was given as (a file name, ``-`` for standard input, an
        upload's name), for the record and for upstreams that want a file name.
    :param mime_type: ``image/png``, ``image/jpeg`` or ``image/webp``, from its bytes.
    :param width: its width in pixels.
    :param height: its height in pixels.
    :param size: its size in bytes.
    :param sha256: the hex SHA-256 of its bytes: how ``--from`` finds it again.
    :param origin: the absolute path the user gave, when it was a file of theirs (not
        standard input or an upload): recorded, so ``--from`` looks there first.
    """

    role: InputRole
    path: Path
    name: str
    mime_type: str
    width: int
    height: int
    size: int
    sha256: str
    origin: str | None = None

    @classmethod
    def from_record(cls, record: Any) -> InputImage:
        """An input known by its :meth:`record` alone (a resumed run's, to record again).

        Its path is the recorded one, if any: it can be opened only while that file is
        still there. :raises RequestError: when ``record`` is not an input's record.
        """
        try:
            role = record["role"]
            fields = {
                "name": str(record["name"]),
                "mime_type": str(record["mime_type"]),
                "width": int(record["width"]),
                "height": int(record["height"]),
                "size": int(record["size"]),
                "sha256": str(record["sha256"]),
            }
        except (KeyError, TypeError, ValueError):
            raise RequestError(f"not an input image's record: {record!r:.200}") from None
        if role not in INPUT_ROLES:
            raise RequestError(f"not an input image's record (role {role!r})")
        origin = record.get("path")
        origin = str(origin) if origin else None
        return cls(role=role, path=Path(origin or "-"), origin=origin, **fields)

    def open(self) -> BinaryIO:
        """The file, for reading (the caller closes it): stream it, don't hold it.

        :raises RequestError: when the file is gone or unreadable (a resumed run whose
            input was moved since), naming it.
        """
        try:
            return self.path.open("rb")
        except OSError as exc:
            raise RequestError(
                f"input image {self.name}: cannot read {self.path} any more ({exc.strerror or exc})"
            ) from None

    def record(self) -> dict[str, Any]:
        """What the sidecar and imagen's chunk record of this input."""
        record = {
            "role": self.role,
            "name": self.name,
            "mime_type": self.mime_type,
            "width": self.width,
            "height": self.height,
            "size": self.size,
            "sha256": self.sha256,
        }
        if self.origin is not None:
            record["path"] = self.origin
        return record


@dataclass(frozen=True)
class InputSupport:
    """What input images a backend accepts; the default accepts none.

    :param images: how many inputs of role ``image`` (to edit, or to start from).
    :param references: how many inputs of role ``reference``.
    :param mask: whether a ``mask`` is accepted (with an image).
    :param strength: whether the request's ``strength`` is honoured (image-to-image).
    """

    images: int = 0
    references: int = 0
    mask: bool = False
    strength: bool = False

    @property
    def any(self) -> bool:
        """Whether any input image is accepted at all."""
        return bool(self.images or self.references or self.mask)

    def refusal(self, inputs: Sequence[InputImage]) -> str | None:
        """Why these inputs can't be honoured (one sentence), or None when they can."""
        if inputs and not self.any:
            return "takes no input images"
        counts = {role: sum(1 for item in inputs if item.role == role) for role in INPUT_ROLES}
        # Worded by role, which every door shares (the CLI's --image, --reference and --mask,
        # the queue's and MCP's input roles, the edits API's image and mask).
        for role, allowed in (("image", self.images), ("reference", self.references)):
            if counts[role] > allowed:
                if allowed == 0:
                    return f"takes no {role} input"
                inputs = "input" if allowed == 1 else "inputs"
                return f"takes at most {allowed} {role} {inputs}, not {counts[role]}"
        if counts["mask"] and not self.mask:
            return "takes no mask"
        return None


def load_input(
    path: Path,
    role: str = "image",
    *,
    name: str | None = None,
    origin: str | None = None,
    max_bytes: int = MAX_INPUT_BYTES,
    max_pixels: int = MAX_INPUT_PIXELS,
) -> InputImage:
    """Check the file at ``path`` as an input image of ``role``; the checked input.

    :raises RequestError: one line naming the input (by ``name``) and what is wrong with it.
    """
    label = name or str(path)
    if role not in INPUT_ROLES:
        raise RequestError(
            f"{label}: unknown input role {role!r} (known: {', '.join(INPUT_ROLES)})"
        )
    try:
        size = path.stat().st_size
        handle = path.open("rb")
    except OSError as exc:
        raise RequestError(f"{label}: cannot read it ({exc.strerror or exc})") from None
    with handle:
        if size > max_bytes:
            raise RequestError(
                f"{label}: {_mb(size)}, more than the {_mb(max_bytes)} an input may be"
            )
        head = handle.read(32)
        mime_type = sniff(head)
        if mime_type not in ACCEPTED_TYPES:
            raise RequestError(f"{label}: not a PNG, JPEG or WebP image")
        digest = hashlib.sha256(head)
        read = len(head)
        while chunk := handle.read(_CHUNK):
            read += len(chunk)
            if read > max_bytes:  # it grew while we read it
                raise RequestError(f"{label}: more than the {_mb(max_bytes)} an input may be")
            digest.update(chunk)
    width, height = _dimensions(path, label, max_pixels)
    return InputImage(
        role=role,  # type: ignore[arg-type]
        path=path,
        name=name or path.name,
        mime_type=mime_type,
        width=width,
        height=height,
        size=read,
        sha256=digest.hexdigest(),
        origin=origin,
    )


def _dimensions(path: Path, label: str, max_pixels: int) -> tuple[int, int]:
    """The image's size from its header, and its structure checked, without decoding it."""
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as picture:
                width, height = picture.size
                if width * height > max_pixels:
                    raise _too_many(label, width, height, max_pixels)
                picture.verify()  # the chunks and their checksums, not the pixels
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise RequestError(
                f"{label}: decodes to far more than the {max_pixels:,} pixels an input may "
                "have (a decompression bomb)"
            ) from None
        except RequestError:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise RequestError(f"{label}: a damaged image ({exc})") from None
    if width < 1 or height < 1:
        raise RequestError(f"{label}: an image of {width}×{height} pixels")
    return width, height


def _too_many(label: str, width: int, height: int, max_pixels: int) -> RequestError:
    return RequestError(
        f"{label}: {width}×{height} is {width * height:,} pixels, more than the "
        f"{max_pixels:,} an input may have"
    )


def check_inputs(inputs: Sequence[InputImage]) -> None:
    """Check a request's inputs together: how many, and a mask the size of its image.

    :raises RequestError: naming what is wrong.
    """
    if len(inputs) > MAX_INPUTS:
        raise RequestError(f"{len(inputs)} input images, more than the {MAX_INPUTS} allowed")
    masks = [item for item in inputs if item.role == "mask"]
    if len(masks) > 1:
        raise RequestError("more than one mask")
    images = [item for item in inputs if item.role == "image"]
    if masks and not images:
        raise RequestError("a mask needs an image to apply to")
    if masks and images:
        mask, image = masks[0], images[0]
        if (mask.width, mask.height) != (image.width, image.height):
            raise RequestError(
                f"{mask.name}: the mask is {mask.width}×{mask.height}, its image "
                f"{image.name} is {image.width}×{image.height}: they must be the same size"
            )


def spool(
    stream: BinaryIO, directory: Path | None = None, max_bytes: int = MAX_INPUT_BYTES
) -> Path:
    """Copy ``stream`` (standard input, an upload) to a temporary file, up to ``max_bytes``.

    The caller removes the file. :raises RequestError: when the stream is longer.
    """
    handle, name = tempfile.mkstemp(prefix="imagen-input-", dir=directory)
    path = Path(name)
    try:
        with os.fdopen(handle, "wb") as out:
            copied = 0
            while chunk := stream.read(_CHUNK):
                copied += len(chunk)
                if copied > max_bytes:
                    raise RequestError(f"the input is more than the {_mb(max_bytes)} allowed")
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"
